"""What every benchmark records beside its numbers: the machine and the commit."""
from __future__ import annotations

import os
import platform
import subprocess
from pathlib import Path

import torch


def machine() -> dict:
    cpu = platform.processor()
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                cpu = line.split(":", 1)[1].strip()
                break
    except OSError:
        pass
    return {"cpu": cpu, "cores": os.cpu_count(), "torch_threads": torch.get_num_threads(),
            "torch": torch.__version__, "python": platform.python_version(), "platform": platform.platform(),
            "gpu": torch.cuda.get_device_name(0) if torch.cuda.is_available() else None}


def commit() -> str:
    try:
        sha = subprocess.run(["git", "rev-parse", "--short", "HEAD"], capture_output=True, text=True).stdout.strip()
        # benchmarks/ holds results, which one benchmark rewrites before the next one starts:
        # "-dirty" says that code differed from the commit, not that results did
        dirty = subprocess.run(["git", "status", "--porcelain", "--untracked-files=no", "--", ".", ":!benchmarks"],
                               capture_output=True, text=True).stdout.strip()
        return sha + ("-dirty" if dirty else "") if sha else "unknown"
    except OSError:
        return "unknown"


def write_report(out: str, report: dict, markdown) -> dict:
    """`out`.json (everything) and `out`.md (the table), both atomic; print the table."""
    import json

    from seqlab.io import atomic_write_text
    atomic_write_text(f"{out}.json", json.dumps(report, indent=2) + "\n")
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
