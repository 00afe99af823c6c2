"""Optimisers and learning-rate schedules, all resumable.

- plateau: multiply the rate by `lr_decay` when validation stops improving (reacts to data)
- cosine: lr * (1 + cos(pi * step / max_steps)) / 2 (Loshchilov & Hutter 2017), a function of
  the step alone; for fixed budgets it ends on small steps, averaging over more of the data
- constant
Each may start with a linear warm-up.
"""
from __future__ import annotations

import math
from dataclasses import asdict, dataclass

import torch
from torch import nn

from seqlab.config import TrainConfig


def make_optimizer(model: nn.Module, cfg: TrainConfig) -> torch.optim.Optimizer:
    params = [p for p in model.parameters() if p.requires_grad]
    if cfg.optimizer == "sgd":
        return torch.optim.SGD(params, lr=cfg.lr, momentum=cfg.momentum, weight_decay=cfg.weight_decay)
    if cfg.optimizer == "rmsprop":
        return torch.optim.RMSprop(params, lr=cfg.lr, weight_decay=cfg.weight_decay)
    return torch.optim.Adam(params, lr=cfg.lr, weight_decay=cfg.weight_decay)


@dataclass
class PlateauDecay:
    """Multiply the learning rate by `factor` after `patience` evaluations without a new best;
    count evaluations without improvement for early stopping. Plain data, so it checkpoints."""

    factor: float
    patience: int
    best: float = float("inf")
    bad_evals: int = 0          # evaluations since the last best (for early stopping)
    since_decay: int = 0        # evaluations without improvement since the last decay

    def update(self, value: float, optimizer: torch.optim.Optimizer) -> bool:
        """Record one validation loss; returns True when it is a new best."""
        if value < self.best:
            self.best, self.bad_evals, self.since_decay = value, 0, 0
            return True
        self.bad_evals += 1
        self.since_decay += 1
        if self.factor < 1.0 and self.since_decay >= self.patience:
            for group in optimizer.param_groups:
                group["lr"] *= self.factor
            self.since_decay = 0
        return False

    def state_dict(self) -> dict:
        # the counters only: factor and patience come from the (possibly overridden) config
        return {k: v for k, v in asdict(self).items() if k not in ("factor", "patience")}

    def load_state_dict(self, state: dict) -> None:
        for k, v in state.items():
            setattr(self, k, v)


def scheduled_lr(cfg: TrainConfig, step: int, current: float) -> float:
    """The learning rate for update `step` (0-based). Plateau decay is applied elsewhere
    (it depends on validation), so for 'plateau' this only handles the warm-up."""
    warm = min(1.0, (step + 1) / cfg.warmup_steps) if cfg.warmup_steps else 1.0
    if cfg.schedule == "cosine":
        return cfg.lr * warm * 0.5 * (1.0 + math.cos(math.pi * min(step, cfg.max_steps) / cfg.max_steps))
    if cfg.warmup_steps and step < cfg.warmup_steps:
        return cfg.lr * warm
    return current if cfg.schedule == "plateau" else cfg.lr
