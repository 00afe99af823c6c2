"""train.logger=tensorboard: the records of metrics.jsonl also as TensorBoard scalars, in
RUN/tensorboard/ (`tensorboard --logdir RUN`). One tag per figure and split ("train/loss",
"valid/bpc"), at the update it was recorded. A resumed run starts its event file with a purge
after the resumed update, so TensorBoard drops what the interrupted run wrote after its
checkpoint, as metrics.jsonl is cut there."""
from __future__ import annotations

import math
from pathlib import Path
from typing import Any

from seqlab import SeqlabError
from seqlab.training.runfolder import TENSORBOARD

INSTALL = "pip install 'tensorboard==2.21.0' (make venv installs it; or pip install 'seqlab[tensorboard]')"


class TensorBoardLog:
    def __init__(self, run: Path, step: int):
        try:
            from torch.utils.tensorboard import SummaryWriter
        except ImportError:
            raise SeqlabError(f"train.logger=tensorboard needs the tensorboard package: {INSTALL}") from None
        # what was recorded after the resumed update (the checkpoint's) is dropped, as in metrics.jsonl
        self.writer = SummaryWriter(log_dir=str(run / TENSORBOARD), purge_step=step + 1 if step else None)

    def write(self, row: dict[str, Any]) -> None:
        split, step = row.get("split", "train"), int(row.get("step", 0))
        for key, value in row.items():
            if key in ("split", "step") or isinstance(value, bool) or not isinstance(value, (int, float)):
                continue
            if math.isfinite(value):
                self.writer.add_scalar(f"{split}/{key}", value, step)
        self.writer.flush()

    def close(self) -> None:
        self.writer.close()

