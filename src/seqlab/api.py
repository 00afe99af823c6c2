"""seqlab from Python (floor 4: above the tasks, below the benchmarks and the command line).

    from seqlab import api
    metrics = api.train(load_config("configs/demo.toml"), "runs/demo")

For now the one entry the command line and the benchmarks share: training a config into a
run folder through the one engine (train/engine.py). (A full `Run` object — load, sample,
score — is issue 20's.)
"""
from __future__ import annotations

from pathlib import Path
from typing import Callable

from seqlab.config import Config


def train(cfg: Config | None, out: str | Path, *, resume: bool = False, overrides: Config | None = None,
          overwrite: bool = False, log: Callable[[str], None] = print) -> dict[str, float]:
    """Train `cfg` into run folder `out` (or, resume=True, continue `out` with `overrides`);
    returns the best model's validation metrics. An option the task or its model would not
    use is refused before any work."""
    from seqlab.train.engine import fit      # here, not at the top: the command line imports api at start-up
    return fit(cfg, out, resume=resume, overrides=overrides, overwrite=overwrite, log=log)
