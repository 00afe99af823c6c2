"""Faults the trainer survives: a non-finite loss, a full disk, an unwritable run directory.

- NaN / inf loss. One bad update (an exploding gradient that clipping could not tame, a
  bf16 overflow) would poison the weights and every later update. The trainer skips that
  update, reloads the last good checkpoint and multiplies the learning rate by
  train.nan_lr_factor; the rollbacks are counted in the log and in metrics.jsonl. When
  train.nan_retries rollbacks in a row end in a non-finite loss again (no checkpoint saved in
  between), it stops with a message saying what to change.
- Write failures. A disk that fills up or a run directory that becomes unwritable stops the
  run with one line naming the cause; checkpoints are committed by one rename
  (checkpoint.py), so the last good one stays loadable and `--resume` continues from it.
"""
from __future__ import annotations

import errno
import math
from contextlib import contextmanager
from pathlib import Path
from typing import Iterator

from seqlab import SeqlabError
from seqlab.config import TrainConfig
from seqlab.training.checkpoint import RunDir
from seqlab.training.optim import scheduled_lr


class Diverged(SeqlabError):
    """The run stopped on a non-finite loss or gradient norm it could not roll back from;
    `step` is the update that failed."""

    def __init__(self, message: str, step: int):
        super().__init__(message)
        self.step = step


class NanGuard:
    """Counts consecutive non-finite updates and says when to give up."""

    def __init__(self, retries: int):
        self.retries = retries
        self.in_a_row = 0

    def failed(self, step: int, loss: float, norm: float, lr_scale: float) -> None:
        """Record a non-finite update; raise once the retries are used up."""
        self.in_a_row += 1
        if self.in_a_row > self.retries:
            what = f"loss {loss}" if not math.isfinite(loss) else f"gradient norm {norm}"
            if not self.retries:
                raise Diverged(f"{what} at update {step}; train.nan_retries=0, so the run stops here "
                               f"(lower train.lr or keep train.clip_norm on)", step)
            raise Diverged(
                f"{what} at update {step}, non-finite {self.in_a_row} times in a row even after rolling back "
                f"with the learning rate cut to x{lr_scale:g}; lower train.lr, keep train.clip_norm on, or "
                f"raise train.nan_retries", step)

    def saved(self) -> None:
        """A checkpoint was saved past the rollback point: the run is healthy again."""
        self.in_a_row = 0


def is_finite(*values: float) -> bool:
    return all(math.isfinite(v) for v in values)


def learning_rate(t: TrainConfig, step: int, current: float, scale: float) -> float:
    """The rate for update `step`: the schedule's, times the NaN-rollback scale. For the
    plateau schedule after warm-up the optimizer's own rate already carries the scale (it was
    cut in place at the rollback, like a plateau decay)."""
    lr = scheduled_lr(t, step, current)
    if t.schedule == "plateau" and not (t.warmup_steps and step < t.warmup_steps):
        return lr
    return lr * scale


@contextmanager
def writing(what: str, run: Path) -> Iterator[None]:
    """Turn a failed write into one line saying why and what to do."""
    try:
        yield
    except OSError as e:
        if e.errno == errno.ENOSPC:
            reason = "the disk is full"
        elif e.errno in (errno.EACCES, errno.EPERM, errno.EROFS):
            reason = "the run directory is not writable"
        else:
            reason = e.strerror or str(e)
        if _has_checkpoint(run):
            raise SeqlabError(f"cannot write {what} in {run} ({reason}); the last good checkpoint is intact: "
                              f"free space or fix permissions, then continue with seqlab train --resume {run}") from None
        raise SeqlabError(f"cannot write {what} in {run} ({reason}); nothing was trained yet: free space, fix "
                          f"permissions or choose another --out, then run the same command again") from None


def _has_checkpoint(run: Path) -> bool:
    try:
        return bool(RunDir(run).checkpoints())
    except OSError:
        return False
