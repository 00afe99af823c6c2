"""The run's controls that are not updates: the device, Ctrl-C, a fresh run folder, and the
metrics file cut back to a checkpoint."""
from __future__ import annotations

import json
import signal
from contextlib import contextmanager
from pathlib import Path
from typing import Iterator

import torch

from seqlab import Interrupted, SeqlabError  # noqa: F401  (Interrupted: raised by the engine)
from seqlab.io import atomic_write_text
from seqlab.training.guard import writing
from seqlab.training.plots import read_metrics
from seqlab.training.runfolder import check_out, clear_run




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


STOP_SIGNALS = tuple(getattr(signal, name) for name in ("SIGINT", "SIGTERM", "SIGHUP") if hasattr(signal, name))


@contextmanager
def ctrl_c_flag() -> Iterator[dict]:
    """The first Ctrl-C, SIGTERM or SIGHUP (what `timeout`, SLURM, `docker stop` and systemd
    send) sets a flag: the loop saves a checkpoint and stops. A second one of the same kind
    aborts at once. flag["signal"] says which came."""
    flag = {"hit": False, "signal": None}
    previous = {}

    def handler(signum, frame):
        flag["hit"], flag["signal"] = True, signum
        signal.signal(signum, previous[signum])

    try:
        for sig in STOP_SIGNALS:
            previous[sig] = signal.signal(sig, handler)
    except ValueError:                    # not the main thread: signals stay as they are
        pass
    try:
        yield flag
    finally:
        for sig, old in previous.items():
            signal.signal(sig, old)


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
