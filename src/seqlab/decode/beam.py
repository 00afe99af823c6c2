"""Beam search with length normalisation (Wu et al. 2016, GNMT: lp = ((5 + |Y|) / 6) ** alpha).

The K hypotheses are one batch of K rows: each step scores every (beam, token) pair,
keeps the K best, and reorders the carried state with `select_state`, so no prefix is
ever re-run. With K = 1 it is exactly greedy decoding.
"""
from __future__ import annotations

from dataclasses import dataclass

import torch
from torch import nn

from seqlab.decode.sampling import NEG_INF, prime_model
from seqlab.models.base import map_state, model_device, select_state


def length_penalty(length: int, alpha: float) -> float:
    return ((5.0 + length) / 6.0) ** alpha


@dataclass
class Hypothesis:
    tokens: list[int]
    logprob: float
    score: float        # logprob / length_penalty


@torch.no_grad()
def beam_search(model: nn.Module, prime_ids: list[int], length: int, beam_size: int, *,
                alpha: float = 0.6, eos_id: int | None = None, banned: tuple[int, ...] = ()) -> list[Hypothesis]:
    """Up to `length` new tokens; returns the finished hypotheses, best first.

    A hypothesis ends at `eos_id` (when given) or after `length` tokens.
    """
    model.eval()
    device = model_device(model)
    logits, state = prime_model(model, prime_ids, device)                   # (1, V)
    state = map_state(lambda s: s.expand(beam_size, *s.shape[1:]).contiguous(), state)
    logits = logits.expand(beam_size, -1)                                   # (K, V)
    scores = torch.full((beam_size,), NEG_INF, device=device)
    scores[0] = 0.0                                # all rows are the same prefix: start from one
    tokens = torch.zeros(beam_size, 0, dtype=torch.long, device=device)     # (K, t)
    finished: list[Hypothesis] = []
    for t in range(1, length + 1):
        logp = logits.float().log_softmax(-1)                               # (K, V)
        if banned:
            logp[:, list(banned)] = NEG_INF
        vocab = logp.size(-1)
        total = (scores[:, None] + logp).view(-1)                           # (K*V,)
        best, flat = total.topk(beam_size)                                  # (K,)
        parent, token = flat // vocab, flat % vocab
        tokens = torch.cat([tokens[parent], token[:, None]], dim=1)         # (K, t)
        scores = best
        state = select_state(state, parent)
        if eos_id is not None:
            ended = token == eos_id
            for row in ended.nonzero().flatten().tolist():
                if scores[row] > NEG_INF:
                    lp = scores[row].item()
                    finished.append(Hypothesis(tokens[row].tolist(), lp, lp / length_penalty(t, alpha)))
            scores = scores.masked_fill(ended, NEG_INF)
            if (scores == NEG_INF).all():
                break
        if t == length:
            break
        logits, state = model.step(token, state)                            # (K, V)
    for row in range(beam_size):
        if scores[row] > NEG_INF:
            lp = scores[row].item()
            finished.append(Hypothesis(tokens[row].tolist(), lp, lp / length_penalty(tokens.size(1), alpha)))
    return sorted(finished, key=lambda h: h.score, reverse=True)
