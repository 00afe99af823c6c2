"""Synthetic tasks with known answers: reverse and sort pairs (seq2seq), copy memory and the
adding problem (long-range memory). Every generator takes a seed and is deterministic.

Reverse / sort (seq2seq tests and benchmarks; Sutskever et al. 2014 reversed sources,
Vinyals et al. 2016 sorted numbers): a source is n_i ~ U{min_len..max_len} symbols drawn
uniformly from an alphabet of A; the target is the source reversed, or sorted ascending.
Symbols are seqlab vocabulary ids FIRST_SYMBOL .. FIRST_SYMBOL + A − 1 (after <pad> <unk>
<bos> <eos>), so a model's vocabulary has `synthetic_vocab_size(A)` = 4 + A entries;
`symbol_vocab(A)` names them a, b, c, ... for display.

Copy memory (Hochreiter & Schmidhuber 1997, experiment 2; in the form of Bai, Kolter &
Koltun 2018, "An Empirical Evaluation of Generic Convolutional and Recurrent Networks",
section 4.4), with M = memory_length (10) and delay T, categories 0..9 (raw classes, not
vocabulary ids):

    input   x = [s_1 .. s_M,  0 × (T−1),  9 × (M+1)]          length T + 2M
    target  y = [0 × (M+T),   s_1 .. s_M]                      length T + 2M
    s_i ~ U{1..8}; 0 is blank; the first 9 (position M+T−1, 0-based) is the delimiter.

The model must output blanks until the last M steps, then repeat the M symbols it saw T+M
steps earlier. (Arjovsky et al. 2016 fill the last M input positions with blanks instead
of 9s; Bai et al.'s 9s are used here.) Guessing blanks then random symbols scores
10·ln 8 / (T + 20) nats per step, the baseline to beat.

Adding problem (Hochreiter & Schmidhuber 1997, experiment 4; in the form of Le et al. 2015
and Bai et al. 2018, section 4.2): x is (n, T, 2); channel 0 holds values u_t ~ U[0, 1),
channel 1 is 0 except 1 at two distinct positions drawn uniformly from 0..T−1; the target is
the sum of the two marked values, y ∈ [0, 2). Predicting 1 always gives MSE ≈ 0.167.

One-bit memory (the latching problem of Bengio, Simard & Frasconi 1994): x is (n, T, 1);
x_1 = b ∈ {−1, +1} exactly, x_2 .. x_T ~ N(0, σ²); the target is 1.0 where b = +1, else 0.0.
Nothing but its position tells the bit from the noise, so a net must latch it at step 1
and keep it through T − 1 distracting inputs. Guessing scores 50 %.
"""
from __future__ import annotations

import random

import torch
from torch import Tensor

from seqlab import SeqlabError
from seqlab.data.vocab import SPECIALS, Vocab

FIRST_SYMBOL = len(SPECIALS)            # 4: the first id after the specials
Pair = tuple[list[int], list[int]]


def synthetic_vocab_size(alphabet: int) -> int:
    return FIRST_SYMBOL + alphabet


def symbol_vocab(alphabet: int) -> Vocab:
    """Display names for the symbols: a, b, c, ... (words s0, s1, ... past 26)."""
    if alphabet <= 26:
        return Vocab([chr(ord("a") + i) for i in range(alphabet)], "char")
    return Vocab([f"s{i}" for i in range(alphabet)], "word")


def _check(n: int, min_len: int, max_len: int, alphabet: int) -> None:
    if n < 0 or min_len < 1 or max_len < min_len or alphabet < 1:
        raise SeqlabError(f"synthetic pairs need n >= 0, 1 <= min_len <= max_len and alphabet >= 1; "
                          f"got n={n}, min_len={min_len}, max_len={max_len}, alphabet={alphabet}")


def random_sources(n: int, min_len: int, max_len: int, alphabet: int, seed: int) -> list[list[int]]:
    _check(n, min_len, max_len, alphabet)
    rng = random.Random(seed)
    return [[FIRST_SYMBOL + rng.randrange(alphabet) for _ in range(rng.randint(min_len, max_len))]
            for _ in range(n)]


def reverse_pairs(n: int, min_len: int = 5, max_len: int = 20, alphabet: int = 10, seed: int = 0) -> list[Pair]:
    """n (source, source reversed) pairs."""
    return [(s, s[::-1]) for s in random_sources(n, min_len, max_len, alphabet, seed)]


def sort_pairs(n: int, min_len: int = 5, max_len: int = 20, alphabet: int = 10, seed: int = 0) -> list[Pair]:
    """n (source, source sorted ascending) pairs."""
    return [(s, sorted(s)) for s in random_sources(n, min_len, max_len, alphabet, seed)]


TASKS = {"reverse": reverse_pairs, "sort": sort_pairs}


def copy_memory(T: int, n: int, seed: int = 0, memory_length: int = 10) -> tuple[Tensor, Tensor]:
    """Copy memory with delay T: x (n, T + 2M) int64 inputs, y (n, T + 2M) int64 targets (see above)."""
    if T < 1 or n < 0 or memory_length < 1:
        raise SeqlabError(f"copy_memory needs T >= 1, n >= 0, memory_length >= 1; got {T}, {n}, {memory_length}")
    M = memory_length
    g = torch.Generator().manual_seed(seed)
    symbols = torch.randint(1, 9, (n, M), generator=g)                   # (n, M) in 1..8
    x = torch.zeros(n, T + 2 * M, dtype=torch.long)                      # (n, T+2M) blanks
    x[:, :M] = symbols
    x[:, M + T - 1:] = 9                                                 # delimiter, then M more 9s
    y = torch.zeros(n, T + 2 * M, dtype=torch.long)                      # (n, T+2M)
    y[:, M + T:] = symbols                                               # recall after the delimiter
    return x, y


def adding_problem(T: int, n: int, seed: int = 0) -> tuple[Tensor, Tensor]:
    """The adding problem over T steps: x (n, T, 2) float32, y (n,) float32 (see above)."""
    if T < 2 or n < 0:
        raise SeqlabError(f"adding_problem needs T >= 2 (two marked positions) and n >= 0; got T={T}, n={n}")
    g = torch.Generator().manual_seed(seed)
    values = torch.rand(n, T, generator=g)                               # (n, T) U[0, 1)
    marks = torch.rand(n, T, generator=g).argsort(1)[:, :2]              # (n, 2) two distinct positions
    flags = torch.zeros(n, T).scatter_(1, marks, 1.0)                    # (n, T)
    x = torch.stack([values, flags], -1)                                 # (n, T, 2)
    y = (values * flags).sum(1)                                          # (n,)
    return x, y


def one_bit(T: int, n: int, seed: int = 0, noise: float = 0.5) -> tuple[Tensor, Tensor]:
    """One-bit memory over T steps: x (n, T, 1) float32, y (n,) float32 in {0, 1} (see above)."""
    if T < 1 or n < 0 or not noise >= 0:
        raise SeqlabError(f"one_bit needs T >= 1, n >= 0 and noise >= 0; got T={T}, n={n}, noise={noise}")
    g = torch.Generator().manual_seed(seed)
    bit = torch.randint(0, 2, (n,), generator=g).float() * 2 - 1         # (n,) ±1
    x = torch.randn(n, T, 1, generator=g) * noise                        # (n, T, 1)
    x[:, 0, 0] = bit
    return x, (bit > 0).float()
