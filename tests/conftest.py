"""Shared fixtures: small generated corpora (no downloads) and a private data cache."""
from __future__ import annotations

import random

import pytest
import torch


def make_text(n_chars: int = 20000, seed: int = 0) -> str:
    """A toy language with structure to learn: words from a small lexicon in short lines."""
    rng = random.Random(seed)
    words = ["the", "king", "queen", "shall", "speak", "now", "and", "my", "lord", "of", "thee",
             "sweet", "love", "night", "death", "crown", "what", "is", "honour", "a", "word"]
    lines, size = [], 0
    while size < n_chars:
        line = " ".join(rng.choice(words) for _ in range(rng.randint(3, 9))).capitalize() + "."
        lines.append(line)
        size += len(line) + 1
    return "\n".join(lines)[:n_chars] + "\n"


@pytest.fixture(autouse=True)
def _isolated(tmp_path, monkeypatch):
    # Never touch the user's cache; keep each test single-threaded and deterministic.
    monkeypatch.setenv("SEQLAB_DATA", str(tmp_path / "cache"))
    torch.manual_seed(0)
    torch.set_num_threads(1)    # tiny models: one thread is fastest, and steady on a shared machine


@pytest.fixture
def text_file(tmp_path):
    path = tmp_path / "corpus.txt"
    path.write_text(make_text(), encoding="utf-8")
    return path


TINY = [
    "model.embedding_size=16", "model.hidden_size=32", "model.num_layers=2", "model.dropout=0.1",
    "train.batch_size=4", "train.bptt_steps=20", "train.eval_every=10", "train.log_every=5",
    "train.progress=false", "train.eval_batch_size=4", "train.eval_tokens=400",
]
