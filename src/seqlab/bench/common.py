"""What every benchmark records beside its numbers: the machine and the commit."""
from __future__ import annotations

import argparse
import json
import os
import time
from datetime import date
from pathlib import Path

from seqlab.io import atomic_write_text
from seqlab.provenance import commit, machine  # noqa: F401 - re-exported for the benchmarks


def bench_parser(name: str, doc: str | None, out: str | None = None) -> argparse.ArgumentParser:
    """The parser of `seqlab bench NAME`: the module docstring's first paragraph as its
    description, defaults shown, and --out when the benchmark writes OUT.json and OUT.md."""
    p = argparse.ArgumentParser(prog=f"seqlab bench {name}", description=(doc or "").split("\n\n")[0],
                                formatter_class=argparse.ArgumentDefaultsHelpFormatter)
    if out:
        p.add_argument("--out", default=out, help="output path without extension")
    return p


def command_line(name: str, parser: argparse.ArgumentParser, args: argparse.Namespace) -> str:
    """`seqlab bench NAME` with the options that differ from their defaults: the command a
    report names, to run it again."""
    def option(k: str, v) -> str:
        flag = f" --{k.replace('_', '-')}"
        if isinstance(v, bool):                  # a store_true flag: present or not
            return flag if v else ""
        return f"{flag} {' '.join(map(str, v)) if isinstance(v, list) else v}"

    return f"seqlab bench {name}" + "".join(option(k, v) for k, v in vars(args).items() if v != parser.get_default(k))


def clock() -> tuple[float, float]:
    """(start time, 1-minute load average) at a benchmark's start, for `record`."""
    return time.perf_counter(), os.getloadavg()[0]


def record(start: tuple[float, float], command: str) -> dict:
    """What every report says of its run: wall time, the load average at its start and end,
    the machine, the commit, the date and the command that reruns it."""
    wall, load_before = start
    return {"wall_seconds": round(time.perf_counter() - wall, 1),
            "load_average": [round(load_before, 2), round(os.getloadavg()[0], 2)],
            "machine": machine(), "commit": commit(), "date": date.today().isoformat(), "command": command}


def result_path(out: str) -> Path:
    """Where the JSON of a report written to `out` goes: one layout for every benchmark,
    DIR/results/NAME.json beside DIR/NAME.md (benchmarks/results/ in the repository)."""
    out_path = Path(out)
    return out_path.parent / "results" / f"{out_path.name}.json"


def write_report(out: str, report: dict, markdown) -> dict:
    """DIR/results/NAME.json (everything) and `out`.md (the table), both atomic; print the table."""
    path = result_path(out)
    path.parent.mkdir(parents=True, exist_ok=True)
    atomic_write_text(path, json.dumps(report, indent=2) + "\n")
    text = markdown(report)
    atomic_write_text(f"{out}.md", text)
    print(text)
    return report


def provenance(r: dict, *, threads: int | None = None, machine_note: str = "", data: str | None = None,
               commit_note: str = "") -> str:
    """The lines every report ends with: the machine, the data (where given), the commit and
    the command that reruns it. `r` holds "machine", "commit", "date" and "command"; threads
    defaults to the machine's torch_threads."""
    m = r["machine"]
    threads = m.get("torch_threads") if threads is None else threads
    lines = [f"- machine: {m['cpu']}, {m['cores']} cores, {threads} torch threads, torch {m['torch']}, "
             f"Python {m['python']}, GPU: {m.get('gpu') or 'none'}{machine_note}"]
    if data:
        lines.append(f"- data: {data}")
    lines += [f"- commit: {r['commit']}, {r['date']}{commit_note}", f"- command: `{r['command']}`"]
    return "\n".join(lines) + "\n"
