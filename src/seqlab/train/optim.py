"""Optimisers and the learning-rate schedule (decay on plateau), all resumable."""
from __future__ import annotations

from dataclasses import asdict, dataclass

import torch
from torch import nn

from seqlab.config import TrainConfig


def make_optimizer(model: nn.Module, cfg: TrainConfig) -> torch.optim.Optimizer:
    params = [p for p in model.parameters() if p.requires_grad]
    if cfg.optimizer == "sgd":
        return torch.optim.SGD(params, lr=cfg.lr, momentum=cfg.momentum, weight_decay=cfg.weight_decay)
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
        return asdict(self)

    def load_state_dict(self, state: dict) -> None:
        for k, v in state.items():
            setattr(self, k, v)
