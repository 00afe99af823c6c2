"""What a run keeps between its updates, and what it does besides updating: restore the
newest checkpoint, save one, validate and keep the best weights, log a training record, and
roll back after a non-finite loss. training/engine.py builds one Session per run and drives the
update loop through it.

The mutable state lives here, read and written through the session by the loop: `progress`
(step, epoch, position, counters; replaced wholesale when a checkpoint is restored) and
`carry` (the state handed from one batch to the next: the language model's TBPTT windows).
Under torchrun every method is collective where the docstring says so: all ranks call it,
rank 0 does the writing.
"""
from __future__ import annotations

import json
import math
import time
from typing import Any, Callable

import torch

from seqlab import SeqlabError
from seqlab.config import Config
from seqlab.models.base import State
from seqlab.training import checkpoint as ck, distributed, snapshot
from seqlab.training.checkpoint import RunDir
from seqlab.training.control import truncate_metrics
from seqlab.training.guard import NanGuard, writing
from seqlab.training.logger import TensorBoardLog
from seqlab.training.optim import PlateauDecay
from seqlab.training.plots import plot_loss
from seqlab.training.snapshot import Progress
from seqlab.training.task import Task

PLOT_EVERY = 10.0          # seconds between redraws of loss.png during training


class Session:
    def __init__(self, run: RunDir, cfg: Config, model, task: Task, optimizer, plateau: PlateauDecay,
                 world: distributed.World, device, say: Callable[[str], None]):
        self.run, self.cfg, self.t = run, cfg, cfg.train
        self.model, self.task, self.optimizer, self.plateau = model, task, optimizer, plateau
        self.world, self.device = world, device
        self.say = say                      # the progress bar's write once the bar is up
        self.progress = Progress()
        self.carry: State = None
        self.guard = NanGuard(self.t.nan_retries)
        self.bar = None                     # the tqdm bar, rewound after a rollback
        self._metrics = None                # metrics.jsonl, open for appending on rank 0
        self._board = None                  # train.logger=tensorboard's writer, beside it
        self._drawn = -math.inf             # when loss.png was last drawn (time.monotonic)

    # checkpoints ---------------------------------------------------------------------------

    def restore_latest(self, say: Callable[[str], None]) -> bool:
        """Load the newest intact checkpoint (weights and training state); False if none.
        Every rank reads it: share the run directory between nodes."""
        loaded = self.run.load_checkpoint(self.model, log=say)
        if loaded is None:
            return False
        state, checkpoint = loaded
        self.progress, self.carry = snapshot.restore(state, self.optimizer, self.plateau, self.world, self.device,
                                                     self.t.batch_size, self.t.seed, str(checkpoint.path), say)
        return True

    def save_checkpoint(self) -> None:
        """Collective: gather the global state, rank 0 commits it, all agree it worked."""
        state = snapshot.capture(self.progress, self.optimizer, self.plateau, self.carry, self.world, self.device)
        error = None
        if self.world.is_main:
            try:
                with writing("a checkpoint", self.run.path):
                    self.run.save_checkpoint(self.progress.step, self.model, state, keep=self.t.keep_checkpoints)
            except SeqlabError as e:
                error = e
        if self.world.from_main(0.0 if error else 1.0) == 0.0:
            raise error or SeqlabError("rank 0 could not write a checkpoint (its message says why)")
        self.guard.saved()

    # metrics -------------------------------------------------------------------------------

    def open_metrics(self) -> None:
        if self.world.is_main:
            self._metrics = open(self.run.file(ck.METRICS), "a", encoding="utf-8")
            if self.t.logger == "tensorboard":
                self._board = TensorBoardLog(self.run.path, self.progress.step)

    def close_metrics(self) -> None:
        if self._metrics is not None:
            self._metrics.close()
            self._metrics = None
        if self._board is not None:
            self._board.close()
            self._board = None

    def record(self, row: dict[str, Any]) -> None:
        if self._metrics is not None:
            with writing("metrics.jsonl", self.run.path):
                self._metrics.write(json.dumps(row) + "\n")
                self._metrics.flush()
            if self._board is not None:
                self._board.write(row)

    # evaluation ----------------------------------------------------------------------------

    def validate_now(self) -> str:
        """Collective: validate (rank 0), keep the best weights, decay the rate or stop on a
        plateau, checkpoint. Returns why training should stop now ('' = go on): the metric
        reached train.stop_at, or train.early_stop evaluations passed without improvement."""
        t, progress, task = self.t, self.progress, self.task
        result: dict[str, float] = {}
        if self.world.is_main:
            was_training = self.model.training
            self.model.eval()
            with torch.no_grad():
                result = task.validation(self.model, self.device)
            self.model.train(was_training)
        value = self.world.from_main(result.get(task.metric, math.nan))
        best = self.plateau.update(-value if task.higher_is_better else value, self.optimizer)   # it minimises
        self.record({"step": progress.step, "epoch": progress.epoch, "split": "valid", **result,
                     "lr": self.optimizer.param_groups[0]["lr"], "best": best})
        if best:
            progress.best_step = progress.step
            if self.world.is_main:
                with writing("the best weights", self.run.path):
                    self.run.save_weights(self.model, ck.BEST, {"step": progress.step, task.metric: value})
        shown = " | ".join(f"{k} {v:.4f}" for k, v in result.items())
        # a stream task validating on the first train.eval_tokens tokens says so: the final report
        # scores the whole split, and the two numbers differ
        stream = getattr(task, "stream", None)
        subset = t.eval_tokens if "eval_tokens" in getattr(task, "train_options", ()) and stream is not None \
            and 0 < t.eval_tokens < len(stream.valid) else 0
        where = "valid" if not subset else f"valid[first {subset / 1000:g}k tokens]" if subset >= 1000 \
            else f"valid[first {subset} tokens]"
        self.say(f"update {progress.step:>6} | {where} {shown}{'  (best)' if best else ''}")
        self.save_checkpoint()
        self.draw_loss()
        if t.stop_at and (value >= t.stop_at if task.higher_is_better else value <= t.stop_at):
            return f"valid {task.metric} {value:.4g} reached train.stop_at={t.stop_at:g}"
        if t.early_stop and self.plateau.bad_evals >= t.early_stop:
            return f"no improvement in {t.early_stop} evaluations (train.early_stop)"
        return ""

    def draw_loss(self, now: bool = False) -> None:
        """loss.png from metrics.jsonl (rank 0): at most every PLOT_EVERY seconds while training,
        so that frequent evaluations of a small model are not spent drawing; `now` at the end."""
        if not self.world.is_main or (not now and time.monotonic() - self._drawn < PLOT_EVERY):
            return
        with writing("loss.png", self.run.path):
            plot_loss(self.run.file(ck.METRICS), self.run.file(ck.PLOT),
                      title=f"{self.run.path.name}: {self.task.name}, {self.cfg.model.name}, on {self.task.source}")
        self._drawn = time.monotonic()

    # non-finite losses ---------------------------------------------------------------------

    def roll_back(self, loss: float, norm: float) -> None:
        """Collective: a non-finite update; back to the last checkpoint, with a lower learning
        rate (train.nan_lr_factor), and metrics.jsonl's records after it dropped."""
        t, old = self.t, self.progress
        failed_step = old.step + 1
        self.guard.failed(failed_step, loss, norm, old.lr_scale)
        scale, count = old.lr_scale * t.nan_lr_factor, old.nan_rollbacks + 1
        if not self.restore_latest(self.say):
            raise SeqlabError(f"non-finite loss at update {failed_step} and no checkpoint to roll back to")
        progress = self.progress
        for group in self.optimizer.param_groups:      # the restored rate, cut to the new scale
            group["lr"] *= scale / progress.lr_scale
        progress.lr_scale, progress.nan_rollbacks = scale, count
        if self.world.is_main:
            self.close_metrics()
            with writing("metrics.jsonl", self.run.path):
                truncate_metrics(self.run.file(ck.METRICS), progress.step)
                self.open_metrics()
        self.record({"step": progress.step, "epoch": progress.epoch, "split": "rollback", "failed_step": failed_step,
                     "failed_loss": str(loss), "nan_rollbacks": count, "lr_scale": scale})
        self.say(f"update {failed_step}: loss {loss:.4g}, gradient norm {norm:.4g} — not finite; rolled back to "
                 f"update {progress.step}, learning rate x{scale:g} (rollback {count} of this run)")
        if self.bar is not None:
            self.bar.n = progress.step
            self.bar.refresh()
