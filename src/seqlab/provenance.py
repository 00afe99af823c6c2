"""What every recorded result says about where it came from: the machine and the commit.
Floor 0, so the benchmarks, the analyses' experiments and the engine can all record it."""
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
        # "-dirty" says that what runs (the code, configs, dependencies) differed from the
        # commit; not results (one benchmark rewrites benchmarks/ before the next starts) or prose
        dirty = subprocess.run(["git", "status", "--porcelain", "--untracked-files=no", "--", "src", "configs",
                                "pyproject.toml", "requirements.lock", "Makefile"],
                               capture_output=True, text=True).stdout.strip()
        return sha + ("-dirty" if dirty else "") if sha else "unknown"
    except OSError:
        return "unknown"
