"""Decoding connectionist temporal classification (Graves et al. 2006): per-frame label
log-probabilities (T, C), blank = 0, to a label sequence with no alignment.

    best_path(log_probs)                        argmax per frame, repeats merged, blanks dropped
    prefix_beam(log_probs, beam=16)             [(labels, log P(labels | x)), ...], best first
    prefix_beam(log_probs, beam, lm=score, lm_weight=a, bonus=b)
                                                shallow fusion: + a * log P_lm(label | prefix) + b per label
    log_likelihood(log_probs, labels)           log P(labels | x): the CTC forward recursion

Prefix beam search keeps, for every prefix, the probability of the paths that end in a
blank and of those that end in its last label, so the paths that collapse to one prefix are
summed, not competing (best path takes one path only). A hypothesis's score counts the paths
the beam kept, so it is a lower bound of the labelling's probability; with a beam wide enough
for every prefix it is exact, and the search returns the most probable labelling. Width 1 is
not best path: it keeps the prefix whose paths sum highest.

These are the building blocks of the transcription task (issue 31); nothing here imports torch
beyond reading a tensor: the arrays are NumPy, float64.
"""
from __future__ import annotations

import math
from typing import Callable, Sequence

import numpy as np

from seqlab import SeqlabError

NEG = -math.inf
LM = Callable[[tuple[int, ...], int], float]    # (prefix, next label) -> log P_lm(label | prefix)


def _as_array(log_probs) -> np.ndarray:
    a = log_probs.detach().cpu().double().numpy() if hasattr(log_probs, "detach") else np.asarray(log_probs, np.float64)
    if a.ndim != 2 or a.shape[1] < 2:
        raise SeqlabError(f"CTC decoding reads (frames, labels + blank) log-probabilities, got shape {a.shape}")
    return a


def _add(a: float, b: float) -> float:
    """log(e^a + e^b) without overflow."""
    if a == NEG:
        return b
    if b == NEG:
        return a
    hi, lo = (a, b) if a > b else (b, a)
    return hi + math.log1p(math.exp(lo - hi))


def best_path(log_probs, blank: int = 0) -> list[int]:
    """The labels of the most probable single path: argmax per frame, repeats merged, blanks dropped."""
    path = _as_array(log_probs).argmax(axis=1)
    out, last = [], blank
    for k in path.tolist():
        if k != last and k != blank:
            out.append(k)
        last = k
    return out


def prefix_beam(log_probs, beam: int = 16, blank: int = 0, lm: LM | None = None, lm_weight: float = 0.0,
                bonus: float = 0.0) -> list[tuple[list[int], float]]:
    """The `beam` best labellings, best first, with their scores: log P(labels | x) (plus, with
    an `lm`, lm_weight times its log-probability of the labels and `bonus` per label)."""
    x = _as_array(log_probs)
    if beam < 1:
        raise SeqlabError(f"the beam must be 1 or more, got {beam}")
    T, C = x.shape
    # prefix -> (log P of its paths ending in blank, ... ending in its last label)
    beams: dict[tuple[int, ...], tuple[float, float]] = {(): (0.0, NEG)}
    extra: dict[tuple[int, ...], float] = {(): 0.0}             # the LM's and the bonus's part of a prefix
    for t in range(T):
        row = x[t]
        nxt: dict[tuple[int, ...], list[float]] = {}

        def put(prefix, b=NEG, nb=NEG):
            cell = nxt.setdefault(prefix, [NEG, NEG])
            cell[0], cell[1] = _add(cell[0], b), _add(cell[1], nb)

        for prefix, (pb, pnb) in beams.items():
            total = _add(pb, pnb)
            put(prefix, b=total + row[blank])                     # a blank: the prefix stays
            if prefix:
                put(prefix, nb=pnb + row[prefix[-1]])             # its last label repeated: merged, stays
            for k in range(C):
                if k == blank:
                    continue
                longer = prefix + (k,)
                if longer not in extra:
                    extra[longer] = extra[prefix] + bonus + (lm_weight * lm(prefix, k) if lm is not None else 0.0)
                # after the same label, only a path through a blank starts a new one
                put(longer, nb=(pb if prefix and prefix[-1] == k else total) + row[k])
        ranked = sorted(nxt.items(), key=lambda kv: -(_add(*kv[1]) + extra[kv[0]]))[:beam]
        beams = {prefix: (b, nb) for prefix, (b, nb) in ranked}
    scored = [(list(prefix), _add(b, nb) + extra[prefix]) for prefix, (b, nb) in beams.items()]
    return sorted(scored, key=lambda ps: -ps[1])


def log_likelihood(log_probs, labels: Sequence[int], blank: int = 0) -> float:
    """log P(labels | x), summed over every alignment: the forward recursion over the labels
    with blanks between and around them (Graves et al. 2006, eq. 6-9). -inf where the input is
    too short for the labels."""
    x = _as_array(log_probs)
    ext = [blank]
    for k in labels:
        ext += [int(k), blank]
    T, S = x.shape[0], len(ext)
    alpha = [NEG] * S
    alpha[0] = x[0, blank]
    if S > 1:
        alpha[1] = x[0, ext[1]]
    for t in range(1, T):
        new = [NEG] * S
        for s in range(S):
            a = alpha[s]
            if s >= 1:
                a = _add(a, alpha[s - 1])
            if s >= 2 and ext[s] != blank and ext[s] != ext[s - 2]:
                a = _add(a, alpha[s - 2])
            new[s] = a + x[t, ext[s]] if a != NEG else NEG
        alpha = new
    return _add(alpha[-1], alpha[-2]) if S > 1 else alpha[-1]
