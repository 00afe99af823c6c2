"""`seqlab bench list` and `seqlab bench run NAME`: published comparisons as grids of cells.

A benchmark (registered as kind "benchmark") is, per profile, a list of cells. A cell is one
measurement: one model trained on one task, returning its metrics. The runner

    1. lists the profile's cells and skips those already recorded (unless --rerun),
    2. runs the others one after another, each cell's record written at once, atomically,
       into RESULTS/NAME.json under "PROFILE/CELL" — so Ctrl-C or a crash loses at most
       the cell in progress, and a failing cell does not stop the ones after it,
    3. renders NAME.md: per table of the paper, our number beside the paper's, the data
       actually used (stand-ins named as such) and the command that reproduces each row.

    seqlab bench list
    seqlab bench run karpathy2016 --profile quick --dry-run
    seqlab bench run bai2018 --profile quick --only adding --rerun
    seqlab bench run bai2018 --profile full --device cuda

Profiles: `quick` fits on 2 CPU cores (at most about two hours per benchmark: smaller T,
fewer sizes, data subsets; each benchmark states what it shrank), `full` is the paper's
setting and wants a GPU.
"""
from __future__ import annotations

import argparse
import json
import os
import sys
import tempfile
import time
import traceback
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable

import torch

from seqlab import SeqlabError
from seqlab.bench.common import commit, machine
from seqlab.bench.speed import run_speed
from seqlab.bench.trainer_speed import run_benchmark
from seqlab.io import atomic_write_text
from seqlab.registry import find, get, names, register

PROFILES = ("quick", "full")


@dataclass(frozen=True)
class Options:
    """What the runner passes to every cell."""
    device: str = "cpu"
    progress: bool = True
    threads: int = 1                         # CPU threads per cell (torch.set_num_threads)
    log: Callable[[str], None] = print


FRESH = "runs/bench"          # `bench run` without --out: never the committed benchmarks/ folder


@dataclass(frozen=True)
class Cell:
    """One measurement. `run(options)` returns at least {"value": the primary metric}; it may add
    "metrics" (all numbers), "config" (the resolved settings), "data" (what was actually used)
    and "parameters"."""
    id: str                                  # unique in its profile, e.g. "linux/lstm-1x128"
    group: str                               # the table it belongs to, e.g. "Table 1, Linux kernel"
    label: str                               # the row's name in that table
    metric: str                              # what "value" is, e.g. "test cross-entropy (nats/char)"
    run: Callable[[Options], dict]
    estimate_s: float                        # expected wall time on the profile's machine
    paper: float | None = None               # the published number, None where we have none
    paper_note: str = ""                     # where it comes from, or why it is blank
    data: tuple[str, ...] = ()               # the corpora / datasets it reads, fetched before it runs


@dataclass(frozen=True)
class Benchmark:
    name: str
    title: str
    source: str                              # the paper, cited
    cells: Callable[[str], list[Cell]]       # profile -> cells
    notes: Callable[[str], str] = field(default=lambda profile: "")      # Markdown before the tables
    extra: Callable[[dict, str, Path], str] | None = None   # (records, profile, out dir) -> Markdown


def add(benchmark: Benchmark) -> Benchmark:
    return register("benchmark", benchmark.name)(benchmark)


def benchmarks() -> list[str]:
    return names("benchmark")     # registry._load imports the benchmark modules


def benchmark(name: str) -> Benchmark:
    return get("benchmark", name)


# -- results file ------------------------------------------------------------------------------

def results_path(out: Path, name: str) -> Path:
    return out / "results" / f"{name}.json"


def load_results(path: Path) -> dict[str, dict]:
    if not path.is_file():
        return {}
    try:
        return json.loads(path.read_text(encoding="utf-8"))["cells"]
    except (ValueError, KeyError) as e:
        raise SeqlabError(f"{path} is not a seqlab benchmark results file ({e}); move it away and rerun") from None


def save_record(path: Path, name: str, key: str, record: dict) -> None:
    """Add one cell's record to the results file (read, update, atomic rewrite)."""
    cells = load_results(path)
    cells[key] = record
    atomic_write_text(path, json.dumps({"benchmark": name, "cells": dict(sorted(cells.items()))}, indent=2) + "\n")


def command(name: str, profile: str, cell: str) -> str:
    return f"seqlab bench run {name} --profile {profile} --only {cell} --rerun"


def select(cells: list[Cell], only: list[str] | None) -> list[Cell]:
    chosen = [c for c in cells if not only or any(o in c.id for o in only)]
    if only and not chosen:
        raise SeqlabError(f"--only {' '.join(only)} matches no cell; cells: {', '.join(c.id for c in cells)}")
    return chosen


# -- running -------------------------------------------------------------------------------------

def run_cell(bench: Benchmark, cell: Cell, profile: str, options: Options) -> dict:
    torch.set_num_threads(options.threads)
    started = time.perf_counter()
    result = cell.run(options)
    wall = time.perf_counter() - started
    return {"cell": cell.id, "profile": profile, "group": cell.group, "label": cell.label,
            "metric": cell.metric, "value": result["value"], "metrics": result.get("metrics", {}),
            "paper": cell.paper, "paper_note": cell.paper_note, "parameters": result.get("parameters"),
            "config": result.get("config", {}), "data": result.get("data", ""), "wall_s": wall,
            "command": command(bench.name, profile, cell.id), "commit": commit(), "machine": machine(),
            "load_average": os.getloadavg()[0], "date": time.strftime("%Y-%m-%d %H:%M")}


def run(name: str, profile: str = "quick", only: list[str] | None = None, rerun: bool = False,
        out: str | Path = FRESH, options: Options = Options(), dry_run: bool = False) -> int:
    """Run the unfinished cells of one benchmark's profile; returns the exit status."""
    if profile not in PROFILES:
        raise SeqlabError(f"unknown profile {profile!r}; valid: {', '.join(PROFILES)}")
    bench, out = benchmark(name), Path(out)
    path = results_path(out, name)
    done = load_results(path)
    cells = select(bench.cells(profile), only)
    todo = [c for c in cells if rerun or f"{profile}/{c.id}" not in done]
    log = options.log
    log(f"{name} ({profile}): {len(cells)} cells selected, {len(cells) - len(todo)} recorded already in {out}, "
        f"{len(todo)} to run, about {fmt_duration(sum(c.estimate_s for c in todo))}; results: {path}")
    if cells and not todo and not rerun:
        log(f"every selected cell is recorded in {path}; --rerun runs them again, or give another --out")
    missing = missing_data(sorted({d for c in todo for d in c.data}))
    if dry_run:
        for c in todo:
            log(f"  {c.id:<40} ~{fmt_duration(c.estimate_s):>8}  {c.label}")
        if missing:
            log(f"would fetch first: {', '.join(n for n, _ in missing)}")
        return 0
    for data_name, source in missing:       # what the cells read, fetched once before the first cell
        log(f"fetching {data_name}, which the cells read (seqlab data fetch {data_name})")
        source.fetch(log=log)
    failed = []
    for i, cell in enumerate(todo, 1):
        log(f"[{i}/{len(todo)}] {cell.id}: {cell.label} (~{fmt_duration(cell.estimate_s)})")
        try:
            record = run_cell(bench, cell, profile, options)
        except KeyboardInterrupt:
            log(f"interrupted in {cell.id}; the {i - 1} cells finished before it are kept in {path}")
            render(bench, profile, out)
            return 130
        except Exception as e:          # one broken cell must not cost the others
            failed.append(cell.id)
            log(f"{cell.id} FAILED: {type(e).__name__}: {e}")
            if not isinstance(e, SeqlabError):
                traceback.print_exc(file=sys.stderr)
            continue
        save_record(path, name, f"{profile}/{cell.id}", record)
        log(f"{cell.id}: {cell.metric} {fmt_value(record['value'])}"
            f"{'' if cell.paper is None else f' (paper {fmt_value(cell.paper)})'} in {fmt_duration(record['wall_s'])}")
    render(bench, profile, out)
    if failed:
        log(f"{len(failed)} cells failed: {', '.join(failed)}; rerun them with --only")
        return 1
    return 0


def missing_data(wanted: list[str]) -> list[tuple[str, Any]]:
    """(name, corpus or dataset) of the named data that must be fetched before use."""
    found = []
    for data_name in wanted:
        source = find("corpus", data_name) or find("dataset", data_name)
        if source is not None and not source.is_ready():
            found.append((data_name, source))
    return found


# -- the report -----------------------------------------------------------------------------------

def fmt_value(v: Any) -> str:
    if v is None:
        return ""
    if isinstance(v, float) and v != 0 and (abs(v) < 1e-3 or abs(v) >= 1e5):
        return f"{v:.2e}"
    return f"{v:#.4g}" if isinstance(v, float) else str(v)     # "#": 97.00, not 97


def fmt_duration(seconds: float) -> str:
    if seconds < 120:
        return f"{seconds:.0f} s"
    if seconds < 7200:
        return f"{seconds / 60:.0f} min"
    return f"{seconds / 3600:.1f} h"


def markdown(bench: Benchmark, profile: str, records: dict[str, dict], extra: str = "") -> str:
    """Per group of the profile's cells: ours beside the paper's, the data, the command."""
    cells = bench.cells(profile)
    lines = [f"# {bench.title} ({profile} profile)", "", f"Source: {bench.source}", ""]
    notes = bench.notes(profile)
    if notes:
        lines += [notes, ""]
    recorded = [records[c.id] for c in cells if c.id in records]
    total = sum(r["wall_s"] for r in recorded)
    lines += [f"{len(recorded)} of {len(cells)} cells recorded, {fmt_duration(total)} of wall time in all. "
              f"Every row reruns with the command beside it; a blank paper column means the paper has no "
              f"such number (or none we could verify: see the note).", ""]
    for group in dict.fromkeys(c.group for c in cells):
        rows = [c for c in cells if c.group == group]
        lines += [f"## {group}", "", f"| row | {rows[0].metric} | paper | parameters | data | wall | command |",
                  "|---|---:|---:|---:|---|---:|---|"]
        for c in rows:
            r = records.get(c.id)
            paper = fmt_value(c.paper) + (f" ({c.paper_note})" if c.paper_note else "")
            if r is None:
                lines.append(f"| {c.label} | not run | {paper} | | | | `{command(bench.name, profile, c.id)}` |")
                continue
            params = f"{r['parameters']:,}" if r.get("parameters") else "–"
            lines.append(f"| {c.label} | {fmt_value(r['value'])} | {paper} | {params} | {r['data']} | "
                         f"{fmt_duration(r['wall_s'])} | `{r['command']}` |")
        lines.append("")
    if extra:
        lines += [extra, ""]
    if recorded:
        machines = sorted({f"{m['cpu']}, {m['cores']} cores, torch {m['torch']}, GPU: {m['gpu'] or 'none'}"
                           for m in (r["machine"] for r in recorded)})
        commits = sorted({r["commit"] for r in recorded})
        loads = sorted(r["load_average"] for r in recorded)
        lines += [f"Machine{'s' if len(machines) > 1 else ''}: {' | '.join(machines)} (each row's in its record); "
                  f"commits {', '.join(commits)}; recorded {min(r['date'] for r in recorded)} to "
                  f"{max(r['date'] for r in recorded)}; load average {loads[0]:.1f} to {loads[-1]:.1f} "
                  f"(a shared machine: wall times are upper bounds). Full records, configs included: "
                  f"`benchmarks/results/{bench.name}.json`.", ""]
    return "\n".join(lines)


def render(bench: Benchmark, profile: str, out: Path) -> str:
    every = load_results(results_path(out, bench.name))
    records = {k.split("/", 1)[1]: v for k, v in every.items() if k.startswith(profile + "/")}
    extra = bench.extra(records, profile, out) if bench.extra and records else ""
    text = markdown(bench, profile, records, extra)
    target = out / (f"{bench.name}.md" if profile == "quick" else f"{bench.name}-{profile}.md")
    atomic_write_text(target, text)
    print(f"wrote {target}", file=sys.stderr)
    return text


def list_benchmarks(out: Path, log=print) -> None:
    for name in benchmarks():
        bench = benchmark(name)
        done = load_results(results_path(out, name))
        log(f"{name}: {bench.title}")
        for profile in PROFILES:
            cells = bench.cells(profile)
            recorded = [c for c in cells if f"{profile}/{c.id}" in done]
            left = sum(c.estimate_s for c in cells if f"{profile}/{c.id}" not in done)
            log(f"  {profile:<5}: {len(cells):>3} cells, {len(recorded):>3} done, estimated "
                f"{fmt_duration(sum(c.estimate_s for c in cells))} in all, {fmt_duration(left)} left"
                f"{' (CPU, 2 cores)' if profile == 'quick' else ' (one GPU)'}")


# -- command line ---------------------------------------------------------------------------------

def parser() -> argparse.ArgumentParser:
    fmt = argparse.ArgumentDefaultsHelpFormatter
    p = argparse.ArgumentParser(prog="seqlab bench", formatter_class=fmt,
                                description="Paper-reproduction benchmarks: grids of cells, each finished cell "
                                            "kept in OUT/results/NAME.json and never rerun unless asked; "
                                            "OUT/NAME.md puts our number beside the paper's.")
    sub = p.add_subparsers(dest="verb", metavar="list|run", required=True)
    s = sub.add_parser("list", formatter_class=fmt, help="the benchmarks, their profiles, cells done, estimated time")
    s.add_argument("--out", default="benchmarks", help="folder holding results/NAME.json")
    s = sub.add_parser("run", formatter_class=fmt, help="run a benchmark's unfinished cells, then render NAME.md",
                       description="Run the unfinished cells of one benchmark, one after another. Each finished "
                                   "cell is written at once; Ctrl-C loses only the cell in progress, and running "
                                   "the same command again continues where it stopped.")
    s.add_argument("name", metavar="NAME", help="the benchmark (see `seqlab bench list`)")
    s.add_argument("--profile", choices=PROFILES, default="quick",
                   help="quick: fits on 2 CPU cores; full: the paper's settings, for a GPU")
    s.add_argument("--only", nargs="+", metavar="SUBSTR", help="run only cells whose id contains one of these")
    s.add_argument("--rerun", action="store_true", help="run recorded cells again instead of keeping them")
    s.add_argument("--device", default="cpu", choices=("cpu", "cuda"), help="where models train")
    s.add_argument("--dry-run", action="store_true", help="list the cells that would run, with time estimates")
    s.add_argument("--threads", type=int, default=1,
                   help="CPU threads per cell; 1 keeps timings steady on a shared 2-core machine")
    s.add_argument("--progress", action=argparse.BooleanOptionalAction, default=True,
                   help="progress bars on stderr")
    s.add_argument("--out", default=FRESH,
                   help="folder for results/NAME.json and NAME.md: your own runs go to a folder of their own "
                        "(continued when the command is run again); --out benchmarks adds to the committed results")
    return p


def main(argv: list[str] | None = None) -> int:
    args = parser().parse_args(argv)
    if args.verb == "list":
        list_benchmarks(Path(args.out))
        return 0
    if args.device == "cuda":
        if not torch.cuda.is_available():
            raise SeqlabError("--device cuda but no CUDA GPU is available; use --device cpu")
    return run(args.name, args.profile, args.only, args.rerun, args.out,
               Options(args.device, args.progress, args.threads), args.dry_run)


# -- speed: the existing speed benchmarks as cells --------------------------------------------------

def _speed_paths(options: Options) -> dict:
    """bench/speed.py in one run: every recurrent path, forward + backward, against nn.RNN/LSTM/GRU."""
    with tempfile.TemporaryDirectory() as tmp:
        r = run_speed(str(Path(tmp) / "speed"), repeats=7, device=options.device)
    return {"value": r["ratios"]["vs_own_module"]["fast lstm"], "config": r["settings"],
            "metrics": {"median_tok_per_s": r["median_tok_per_s"], "ratios": r["ratios"]},
            "data": "random inputs (speed does not depend on the data)"}


def _speed_trainer(options: Options) -> dict:
    """bench/trainer_speed.py: seqlab's whole training loop against a bare PyTorch loop, same LSTM."""
    with tempfile.TemporaryDirectory() as tmp:
        r = run_benchmark(str(Path(tmp) / "trainer"), repeats=7, updates=10)
    return {"value": r["ratio"], "config": {"model": r["model"], "train": r["train"]}, "data": r["data"],
            "metrics": {k: r[k] for k in ("median_seqlab_tok_per_s", "median_bare_tok_per_s", "ratio")}}


def _speed_cells(profile: str) -> list[Cell]:
    return [Cell("recurrent-paths", "Recurrent layer paths (forward + backward, batch 32 x 100 steps x 256)",
                 "seqlab's fast LSTM path / nn.LSTM (all paths: below)", "tokens/s ratio to the PyTorch module",
                 _speed_paths, 420.0),
            Cell("trainer", "Training loop (default 2 x 512 character LSTM)", "seqlab fit / bare PyTorch loop",
                 "tokens/s ratio to the bare loop", _speed_trainer, 300.0, None, "acceptance: at least 0.9")]


def _speed_extra(records: dict, profile: str, out: Path) -> str:
    paths = records.get("recurrent-paths")
    if not paths:
        return ""
    rates, ratios = paths["metrics"]["median_tok_per_s"], paths["metrics"]["ratios"]["vs_nn_lstm"]
    lines = ["## Every path", "", "| path | tokens/s | vs nn.LSTM |", "|---|---:|---:|"]
    lines += [f"| {name} | {rates[name]:,.0f} | {ratios[name]:.2f} |" for name in rates]
    lines += ["", "Not covered: the convolutional, window, minGRU/minLSTM and n-gram families have no bare-PyTorch "
                  "twin in bench/speed.py; `seqlab bench families` gives their tokens/s under training instead."]
    return "\n".join(lines)


# named speed-suite so that its report does not overwrite `seqlab bench speed`'s benchmarks/speed.md
add(Benchmark("speed-suite", "Speed: seqlab's paths and training loop against bare PyTorch of the same size",
              "seqlab's own question (issue 7): tokens/s for every path against a PyTorch baseline, in one run",
              _speed_cells, extra=_speed_extra))


if __name__ == "__main__":
    sys.exit(main())
