"""Scheduled-sampling schedules (Bengio, Vinyals, Jaitly & Shazeer 2015, "Scheduled Sampling
for Sequence Prediction with Recurrent Neural Networks", section 2.4).

ε_i is the probability of feeding the TRUE previous token at update i (i = 0, 1, ...); the
model's own token is fed with probability 1 − ε_i, so the seq2seq `sampling_prob` is 1 − ε_i.

    constant          ε_i = k                                  (k = 1: plain teacher forcing)
    linear            ε_i = max(ε_min, k − c·i)                0 ≤ ε_min ≤ 1, c ≥ 0
    exponential       ε_i = k^i                                0 < k < 1
    inverse_sigmoid   ε_i = k / (k + exp(i / k))               k ≥ 1; ε = 1/2 at i = k·ln k

`eps_min` (default 0) floors every schedule, as the paper's ε floors the linear one; at its
default the other formulas are exactly the paper's. `none` is teacher forcing, ε_i = 1.
"""
from __future__ import annotations

import inspect
import math
from typing import Callable

from seqlab import SeqlabError


def _constant(i: int, k: float = 1.0) -> float:
    if not 0.0 <= k <= 1.0:
        raise SeqlabError(f"constant schedule: k is a probability in [0, 1], got {k}")
    return k


def _linear(i: int, c: float | None = None, k: float = 1.0) -> float:
    if c is None:
        raise SeqlabError("linear schedule needs c, the decrease per update (e.g. (k - eps_min) / updates)")
    if c < 0 or not 0.0 <= k <= 1.0:
        raise SeqlabError(f"linear schedule needs c >= 0 and k in [0, 1]; got c={c}, k={k}")
    return k - c * i


def _exponential(i: int, k: float | None = None) -> float:
    if k is None or not 0.0 < k < 1.0:
        raise SeqlabError(f"exponential schedule needs k with 0 < k < 1 (e.g. 0.999); got {k}")
    return k ** i


def _inverse_sigmoid(i: int, k: float | None = None) -> float:
    if k is None or k < 1.0:
        raise SeqlabError(f"inverse_sigmoid schedule needs k >= 1 (ε falls to 1/2 at update k·ln k); got {k}")
    x = i / k
    return k / (k + math.exp(x)) if x < 700 else 0.0       # exp overflows a float past ~709


SCHEDULES: dict[str, Callable[..., float]] = {
    "none": lambda i: 1.0,
    "constant": _constant,
    "linear": _linear,
    "exponential": _exponential,
    "inverse_sigmoid": _inverse_sigmoid,
}


def teacher_forcing_prob(schedule: str, step: int, eps_min: float = 0.0, **params: float) -> float:
    """ε at update `step`: the probability of feeding the true previous token.

    teacher_forcing_prob("inverse_sigmoid", 1000, k=200.0)  ->  200 / (200 + e^5) ≈ 0.574
    """
    if schedule not in SCHEDULES:
        raise SeqlabError(f"unknown scheduled-sampling schedule {schedule!r}; valid: {', '.join(SCHEDULES)}")
    if step < 0:
        raise SeqlabError(f"the update index must be 0 or more, got {step}")
    if not 0.0 <= eps_min <= 1.0:
        raise SeqlabError(f"eps_min is a probability in [0, 1], got {eps_min}")
    try:
        eps = SCHEDULES[schedule](step, **params)
    except TypeError:
        valid = [p for p in inspect.signature(SCHEDULES[schedule]).parameters if p != "i"] + ["eps_min"]
        raise SeqlabError(f"{schedule} schedule takes {', '.join(valid)}; got {', '.join(params) or 'nothing'}") \
            from None
    return min(1.0, max(eps_min, eps))


def sampling_prob(schedule: str, step: int, eps_min: float = 0.0, **params: float) -> float:
    """1 − ε: the probability of feeding the model's own token (Seq2Seq.forward's sampling_prob)."""
    return 1.0 - teacher_forcing_prob(schedule, step, eps_min, **params)
