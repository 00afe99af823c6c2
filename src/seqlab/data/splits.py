"""The three splits of a token stream (train | valid | test, cut in this order, never shuffled),
shared by the in-memory stream (text.py) and the memory-mapped one (memmap.py)."""
from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from seqlab import SeqlabError
from seqlab.data.vocab import Vocab


@dataclass
class Splits:
    vocab: Vocab
    train: np.ndarray   # (N_train,) int64 token ids (uint8/uint16/int32 memmap views with data.memmap)
    valid: np.ndarray   # (N_valid,)
    test: np.ndarray    # (N_test,)
    source: str         # what the text was, for logs and results tables

    def get(self, name: str) -> np.ndarray:
        if name not in ("train", "valid", "test"):
            raise SeqlabError(f"unknown split {name!r}; valid: train, valid, test")
        return getattr(self, name)


def split_sizes(n: int, valid_fraction: float, test_fraction: float) -> tuple[int, int, int]:
    n_valid, n_test = int(n * valid_fraction), int(n * test_fraction)
    return n - n_valid - n_test, n_valid, n_test
