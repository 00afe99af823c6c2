"""seqlab from Python (floor 4: above the tasks, below the benchmarks and the command line).

    from seqlab import api
    metrics = api.train(load_config("configs/demo.toml"), "runs/demo")

For now the one entry the command line and the benchmarks share: training a config into a
run folder with the trainer its task needs. (A full `Run` object — load, sample, score —
is issue 20's.)
"""
from __future__ import annotations

from pathlib import Path
from typing import Callable

from seqlab.config import Config


def trainer_for(cfg: Config) -> Callable[..., dict[str, float]]:
    """The language model's TBPTT trainer, the forecaster's fitting, or the supervised one."""
    if cfg.task.name == "lm":
        from seqlab.train.fit import fit
        return fit
    if cfg.task.name == "forecast":
        from seqlab.tasks.forecast import fit_forecast
        return fit_forecast
    from seqlab.train.supervised import fit_task
    return fit_task


def train(cfg: Config | None, out: str | Path, *, resume: bool = False, overrides: Config | None = None,
          overwrite: bool = False, log: Callable[[str], None] = print) -> dict[str, float]:
    """Train `cfg` into run folder `out` (or, resume=True, continue `out` with `overrides`);
    returns the best model's validation metrics."""
    saved = cfg if cfg is not None else overrides
    assert saved is not None, "give a config, or overrides when resuming"
    if cfg is not None and cfg.task.name != "lm":     # an option the task's model would drop is refused
        from seqlab.registry import get
        get("task", cfg.task.name).check_model_options(cfg)
    return trainer_for(saved)(cfg, out, resume=resume, overrides=overrides, overwrite=overwrite, log=log)
