"""Models. `build_model(cfg, vocab_size)` picks the family by name from the registry."""
from __future__ import annotations

from torch import nn

from seqlab.config import ModelConfig
from seqlab.registry import get


def build_model(cfg: ModelConfig, vocab_size: int) -> nn.Module:
    return get("model", cfg.name)(cfg, vocab_size)
