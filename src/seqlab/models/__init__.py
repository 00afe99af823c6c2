"""Models. `build_model(cfg, vocab_size)` picks the family by name from the registry."""
from __future__ import annotations

import os
from typing import Callable

import torch
from torch import nn

from seqlab import SeqlabError
from seqlab.config import ModelConfig
from seqlab.registry import get


def build_model(cfg: ModelConfig, vocab_size: int) -> nn.Module:
    make = lambda: get("model", cfg.name)(cfg, vocab_size)       # noqa: E731
    check_fits(make, f"model.name={cfg.name} with model.hidden_size={cfg.hidden_size}, "
                     f"model.num_layers={cfg.num_layers} and {vocab_size} tokens")
    return make()


def family_options(cfg: ModelConfig) -> tuple[str, ...]:
    """The model.* options model.name's family honours (each family declares its own)."""
    return get("model", cfg.name).options(cfg)


def check_fits(make: Callable[[], nn.Module], what: str) -> None:
    """Refuse, before any allocation, a model whose float32 parameters alone exceed this
    machine's memory (a typo like model.hidden_size=10000000, or a tampered config.json):
    the model is first built on the meta device, which allocates nothing."""
    try:
        with torch.device("meta"):
            probe = make()
        count = sum(t.numel() for t in (*probe.parameters(), *probe.buffers()))
    except SeqlabError:
        raise
    except Exception:   # noqa: BLE001 - a family that cannot be built on meta is built for real
        return
    need, have = 4 * count, _memory_bytes()
    if have and need > have:
        raise SeqlabError(f"{what} has {count:,} parameters ({need / 2**30:,.1f} GiB in float32), more than this "
                          f"machine's {have / 2**30:.1f} GiB of memory; choose smaller sizes")


def _memory_bytes() -> int:
    try:
        return os.sysconf("SC_PAGE_SIZE") * os.sysconf("SC_PHYS_PAGES")
    except (ValueError, OSError, AttributeError):
        return 0
