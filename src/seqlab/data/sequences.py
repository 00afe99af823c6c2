"""Variable-length examples: padding, masks and the mini-batching strategies.

Morishita, Oda, Neubig et al. (2017), "An Empirical Study of Mini-Batch Creation
Strategies for Neural Machine Translation", compare how examples are grouped:

    shuffle       random groups of batch_size examples (most padding)
    sort_source   sort by source length, cut into batches, shuffle the batches
    sort_target   the same by target length
    sort_both     by source length, ties broken by target length
    token_budget  sorted by length, each batch filled up to max_tokens padded tokens,
                  so short sentences travel in big batches and long ones in small

Sorting is done within random pools of 100 batches' worth of examples, so the batches
still differ from epoch to epoch. The share of padded positions is what the strategies
trade against randomness; `padding_share` reports it.
"""
from __future__ import annotations

from typing import Sequence

import numpy as np
import torch
from torch import Tensor

from seqlab import SeqlabError
from seqlab.tokens import BOS, EOS, PAD

STRATEGIES = ("shuffle", "sort_source", "sort_target", "sort_both", "token_budget")
POOL = 100          # batches per sorting pool


def pad(sequences: Sequence[Sequence[int]], value: int = PAD) -> tuple[Tensor, Tensor]:
    """Lists of ids -> (B, T) int64 padded with `value`, and lengths (B,)."""
    lengths = torch.tensor([len(s) for s in sequences], dtype=torch.long)
    out = torch.full((len(sequences), int(lengths.max()) if len(sequences) else 0), value, dtype=torch.long)
    for i, s in enumerate(sequences):
        out[i, :len(s)] = torch.as_tensor(s, dtype=torch.long)
    return out, lengths


def make_batches(source_lengths: Sequence[int], batch_size: int, strategy: str = "sort_source", *,
                 target_lengths: Sequence[int] | None = None, max_tokens: int = 0,
                 rng: np.random.Generator | None = None) -> list[np.ndarray]:
    """Group example indices into batches; `rng` None keeps the order (for evaluation)."""
    if strategy not in STRATEGIES:
        raise SeqlabError(f"task.batching must be one of {', '.join(STRATEGIES)}; got {strategy!r}")
    n = len(source_lengths)
    src = np.asarray(source_lengths, dtype=np.int64)
    tgt = np.asarray(target_lengths if target_lengths is not None else source_lengths, dtype=np.int64)
    order = rng.permutation(n) if rng is not None else np.arange(n)
    if strategy == "shuffle":
        return [order[i:i + batch_size] for i in range(0, n, batch_size)]
    pool = batch_size * POOL
    batches: list[np.ndarray] = []
    for start in range(0, n, pool):
        chunk = order[start:start + pool]
        if strategy == "sort_target":
            keys = (tgt[chunk],)
        elif strategy == "sort_both":
            keys = (tgt[chunk], src[chunk])          # lexsort: last key is the primary one
        else:
            keys = (np.maximum(src[chunk], tgt[chunk]) if strategy == "token_budget" else src[chunk],)
        chunk = chunk[np.lexsort(keys) if len(keys) > 1 else np.argsort(keys[0], kind="stable")]
        if strategy == "token_budget":
            budget = max_tokens or batch_size * max(1, int(np.mean(np.maximum(src, tgt))))
            batches.extend(_fill(chunk, np.maximum(src, tgt), budget))
        else:
            batches.extend(chunk[i:i + batch_size] for i in range(0, len(chunk), batch_size))
    if rng is not None:
        batches = [batches[i] for i in rng.permutation(len(batches))]
    return batches


def _fill(sorted_idx: np.ndarray, lengths: np.ndarray, budget: int) -> list[np.ndarray]:
    """Cut length-sorted examples into batches whose padded size (count × longest) fits the budget."""
    out, start = [], 0
    for i in range(1, len(sorted_idx) + 1):
        if i == len(sorted_idx) or (i - start + 1) * lengths[sorted_idx[i]] > budget:
            out.append(sorted_idx[start:i])
            start = i
    return out


def padding_share(batches: list[np.ndarray], lengths: Sequence[int]) -> float:
    """Padded positions / all positions over the batches (0 = no padding)."""
    lengths = np.asarray(lengths)
    real = padded = 0
    for b in batches:
        if len(b):
            real += int(lengths[b].sum())
            padded += int(lengths[b].max()) * len(b)
    return 1.0 - real / padded if padded else 0.0


def split_indices(n: int, valid_fraction: float, test_fraction: float, seed: int = 0) -> tuple[np.ndarray, ...]:
    """A fixed random split of n examples into (train, valid, test) index arrays.

    The permutation depends only on n and `seed` (not on train.seed), so every run on a
    dataset sees the same held-out examples."""
    order = np.random.default_rng(seed).permutation(n)
    n_test, n_valid = int(round(n * test_fraction)), int(round(n * valid_fraction))
    test, valid, train = order[:n_test], order[n_test:n_test + n_valid], order[n_test + n_valid:]
    return np.sort(train), np.sort(valid), np.sort(test)


def seq2seq_batch(pairs: Sequence[tuple[Sequence[int], Sequence[int]]], device: torch.device | str = "cpu"
               ) -> tuple[Tensor, Tensor, Tensor, Tensor]:
    """(source ids, target ids) pairs -> src (B, S), src_lengths (B,), tgt_in (B, U+1) = <bos> y,
    tgt_out (B, U+1) = y <eos>, all padded with <pad>. Sources need at least one token."""
    src, src_lengths = pad([list(s) for s, _ in pairs])                        # (B, S), (B,)
    tgt_in, _ = pad([[BOS, *t] for _, t in pairs])                            # (B, U+1)
    tgt_out, _ = pad([[*t, EOS] for _, t in pairs])                           # (B, U+1)
    return src.to(device), src_lengths.to(device), tgt_in.to(device), tgt_out.to(device)
