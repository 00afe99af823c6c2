"""What a language-model run keeps between its updates, and what it does besides updating:
restore the newest checkpoint, save one, evaluate on the validation split, log a training
record, and roll back after a non-finite loss. train/fit.py builds one Session per run and
drives the update loop through it.

The mutable state lives here, read and written through the session by the loop: `progress`
(step, epoch, window, counters; replaced wholesale when a checkpoint is restored) and `carry`
(the recurrent state handed from one TBPTT window to the next). Under torchrun every method
is collective where the docstring says so: all ranks call it, rank 0 does the writing.
"""
from __future__ import annotations

import json
import math
from pathlib import Path
from typing import Any, Callable

from seqlab import SeqlabError
from seqlab.config import Config
from seqlab.data.text import Splits
from seqlab.io import atomic_write_text
from seqlab.models.base import State
from seqlab.train import checkpoint as ck
from seqlab.train import distributed, snapshot
from seqlab.train.checkpoint import RunDir
from seqlab.train.guard import NanGuard, writing
from seqlab.train.loop import evaluate, summary
from seqlab.train.optim import PlateauDecay
from seqlab.train.plots import plot_loss, read_metrics
from seqlab.train.snapshot import Progress


def truncate_metrics(path: Path, step: int) -> None:
    """Drop records written after the checkpoint we resume from (a crash between the two)."""
    rows = [r for r in read_metrics(path) if r.get("step", 0) <= step]
    atomic_write_text(path, "".join(json.dumps(r) + "\n" for r in rows))


class Session:
    def __init__(self, run: RunDir, cfg: Config, model, splits: Splits, optimizer, plateau: PlateauDecay,
                 world: distributed.World, device, say: Callable[[str], None]):
        self.run, self.cfg, self.t = run, cfg, cfg.train
        self.model, self.splits, self.optimizer, self.plateau = model, splits, optimizer, plateau
        self.world, self.device = world, device
        self.say = say                      # the progress bar's write once the bar is up
        self.progress = Progress()
        self.carry: State = None
        self.guard = NanGuard(self.t.nan_retries)
        self.bar = None                     # the tqdm bar, rewound after a rollback
        self._metrics = None                # metrics.jsonl, open for appending on rank 0

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

    def close_metrics(self) -> None:
        if self._metrics is not None:
            self._metrics.close()
            self._metrics = None

    def record(self, row: dict[str, Any]) -> None:
        if self._metrics is not None:
            with writing("metrics.jsonl", self.run.path):
                self._metrics.write(json.dumps(row) + "\n")
                self._metrics.flush()

    # evaluation ----------------------------------------------------------------------------

    def validate_now(self) -> bool:
        """Collective: evaluate (rank 0), keep the best weights, decay the rate or stop on a
        plateau, checkpoint. True = stop early (train.early_stop)."""
        t, progress, level = self.t, self.progress, self.cfg.data.level
        nats = math.nan
        if self.world.is_main:
            nats, _ = evaluate(self.model, self.splits.valid, t.eval_batch_size, t.bptt_steps, self.device,
                               t.eval_tokens)
        nats = self.world.from_main(nats)
        best = self.plateau.update(nats, self.optimizer)
        row = {"step": progress.step, "epoch": progress.epoch, "split": "valid", **summary(nats, level),
               "lr": self.optimizer.param_groups[0]["lr"], "best": best}
        self.record(row)
        if best:
            progress.best_step = progress.step
            if self.world.is_main:
                with writing("the best weights", self.run.path):
                    self.run.save_weights(self.model, ck.BEST, {"step": progress.step, "valid_loss": nats})
        key = "bpc" if level == "char" else "bits_per_token"
        self.say(f"update {progress.step:>6} | valid loss {nats:.4f} | ppl {row['ppl']:.2f} | "
                 f"{key} {row[key]:.4f}{'  (best)' if best else ''}")
        self.save_checkpoint()
        if self.world.is_main:
            with writing("loss.png", self.run.path):
                plot_loss(self.run.file(ck.METRICS), self.run.file(ck.PLOT),
                          title=f"{self.run.path.name}: {self.cfg.model.name} on {self.splits.source}")
        return bool(t.early_stop) and self.plateau.bad_evals >= t.early_stop

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
