"""The run's controls that are not updates: the device, Ctrl-C, a fresh run folder, and the
metrics file cut back to a checkpoint."""
from __future__ import annotations

import json
import signal
from contextlib import contextmanager
from pathlib import Path
from typing import Iterator

import torch

from seqlab import SeqlabError
from seqlab.io import atomic_write_text
from seqlab.training.guard import writing
from seqlab.training.plots import read_metrics
from seqlab.training.runfolder import check_out, clear_run


class Interrupted(Exception):
    """Training stopped by Ctrl-C after saving a checkpoint."""


def resolve_device(name: str, option: str = "train.device") -> torch.device:
    """`option` is how the user set it, for the message (train.device, or a verb's --device)."""
    sep = " " if option.startswith("--") else "="
    if name == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    try:
        device = torch.device(name)
    except RuntimeError:
        raise SeqlabError(f"{option}: unknown device {name!r}; use cpu, cuda, cuda:N or auto") from None
    if device.type not in ("cpu", "cuda"):
        raise SeqlabError(f"{option}: seqlab runs on cpu or cuda, not {name!r}")
    if device.type == "cuda" and not torch.cuda.is_available():
        raise SeqlabError(f"{option}{sep}{name} but no CUDA GPU is available; use {option}{sep}cpu")
    return device


@contextmanager
def ctrl_c_flag() -> Iterator[dict[str, bool]]:
    """First Ctrl-C sets a flag (the loop saves and stops); a second one aborts at once."""
    flag = {"hit": False}

    def handler(signum, frame):
        flag["hit"] = True
        signal.signal(signal.SIGINT, previous)

    previous = signal.signal(signal.SIGINT, handler)
    try:
        yield flag
    finally:
        signal.signal(signal.SIGINT, previous)


def prepare_out(out: Path, overwrite: bool) -> None:
    """Make `out` an empty run folder: new, or a run whose own files --overwrite removes."""
    check_out(out, overwrite)
    with writing("the run directory", out):
        if out.is_dir():
            clear_run(out)
        out.mkdir(parents=True, exist_ok=True)


def truncate_metrics(path: Path, step: int) -> None:
    """Drop records written after the checkpoint we resume from (a crash between the two)."""
    rows = [r for r in read_metrics(path) if r.get("step", 0) <= step]
    atomic_write_text(path, "".join(json.dumps(r) + "\n" for r in rows))
