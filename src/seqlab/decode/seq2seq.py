"""Decoding an encoder–decoder (models/seq2seq.py): greedy and GNMT beam search, batched over
sources. Beside decode/beam.py, which decodes a language model from a prime: both score
hypotheses by log P / lp(|Y|), lp = ((5 + |Y|) / 6)^alpha (Wu et al. 2016, GNMT).

Decoding never emits <pad> or <bos> (`BANNED`); their log-probabilities are dropped, not
renormalised, so a hypothesis's `logprob` equals `model.score()` of its tokens. Both run in
eval mode (no dropout) and restore the model's previous mode.

Dimension legend: B batch, S source length, V target vocabulary, K beam width, t step.
"""
from __future__ import annotations

import torch
from torch import Tensor

from seqlab import SeqlabError
from seqlab.decode.beam import Hypothesis, length_penalty
from seqlab.models.seq2seq import BANNED, NEG_INF, Seq2Seq, evaluating, select_decoder_state
from seqlab.tokens import BOS, EOS, PAD


def greedy(model: Seq2Seq, src: Tensor, src_lengths: Tensor, max_len: int) -> list[list[int]]:
    """The most likely token at each step, batched; each row ends at its first <eos>
    (kept as the last token) or after max_len tokens."""
    with evaluating(model):
        memory, state = model.encode(src, src_lengths)
        prev = torch.full((src.size(0),), BOS, dtype=torch.long, device=src.device)  # (B,)
        done = torch.zeros_like(prev, dtype=torch.bool)                   # (B,)
        out: list[Tensor] = []
        for _ in range(max_len):
            logits, _, state = model.step(prev, state, memory)             # (B, V)
            logits[:, list(BANNED)] = NEG_INF
            prev = logits.argmax(-1).masked_fill(done, PAD)               # (B,)
            out.append(prev)
            done = done | (prev == EOS)
            if done.all():
                break
        rows = torch.stack(out, 1).tolist() if out else [[] for _ in range(src.size(0))]
        return [_until_eos(r) for r in rows]

def beam_search(model: Seq2Seq, src: Tensor, src_lengths: Tensor, beam_size: int, max_len: int,
            alpha: float = 0.6) -> list[list[Hypothesis]]:
    """GNMT beam search, batched over sources: for each source, the finished hypotheses
    (ending in <eos>, at most max_len tokens), best first by logprob / lp(|Y|), where |Y|
    counts the <eos>. A source with none finished gets its live hypotheses instead.

    A source stops early once no live hypothesis can beat its best finished one: a live
    prefix with logprob s can at best reach s / max(lp(t+1), lp(max_len)), since
    extending it only lowers s. So the best hypothesis is the one a run to max_len finds."""
    if beam_size < 1 or max_len < 1:
        raise SeqlabError(f"beam_size and max_len must be at least 1; got {beam_size}, {max_len}")
    with evaluating(model):
        B, K, device = src.size(0), beam_size, src.device
        memory, state = model.encode(src, src_lengths)
        rows = torch.arange(B, device=device).repeat_interleave(K)        # (B*K,)
        memory, state = memory.select(rows), select_decoder_state(state, rows)
        scores = torch.full((B, K), NEG_INF, device=device)               # (B, K) log P of live prefixes
        scores[:, 0] = 0.0                       # the K rows start as one prefix: keep one
        tokens = torch.zeros(B * K, 0, dtype=torch.long, device=device)   # (B*K, t)
        prev = torch.full((B * K,), BOS, dtype=torch.long, device=device)  # (B*K,)
        finished: list[list[Hypothesis]] = [[] for _ in range(B)]
        best_done = torch.full((B,), NEG_INF, device=device)              # (B,) best finished score
        for t in range(1, max_len + 1):
            logits, _, state = model.step(prev, state, memory)             # (B*K, V)
            logp = logits.float().log_softmax(-1)                         # (B*K, V)
            logp[:, list(BANNED)] = NEG_INF
            V = logp.size(-1)
            total = (scores.view(B * K, 1) + logp).view(B, K * V)         # (B, K*V)
            scores, flat = total.topk(K, dim=1)                           # (B, K)
            parent = torch.div(flat, V, rounding_mode="floor")            # (B, K)
            token = flat % V                                              # (B, K)
            pick = (torch.arange(B, device=device)[:, None] * K + parent).view(-1)  # (B*K,)
            tokens = torch.cat([tokens[pick], token.view(-1, 1)], 1)      # (B*K, t)
            state = select_decoder_state(state, pick)
            ended = (token == EOS) & (scores > NEG_INF)                   # (B, K)
            penalty = length_penalty(t, alpha)
            for b, k in ended.nonzero().tolist():
                lp = scores[b, k].item()
                finished[b].append(Hypothesis(tokens[b * K + k].tolist(), lp, lp / penalty))
                best_done[b] = max(best_done[b].item(), lp / penalty)
            scores = scores.masked_fill(token == EOS, NEG_INF)            # (B, K)
            if t < max_len:   # drop sources whose live prefixes cannot win any more
                bound = scores.max(1).values / max(length_penalty(t + 1, alpha),
                                                   length_penalty(max_len, alpha))  # (B,)
                scores = scores.masked_fill((best_done >= bound)[:, None], NEG_INF)
            if (scores == NEG_INF).all():
                break
            prev = token.view(-1)                                         # (B*K,)
        results = []
        for b in range(B):
            hyps = finished[b]
            if not hyps:      # nothing reached <eos> within max_len: the live prefixes
                for k in range(K):
                    lp = scores[b, k].item()
                    if lp > NEG_INF:
                        toks = tokens[b * K + k].tolist()
                        hyps.append(Hypothesis(toks, lp, lp / length_penalty(len(toks), alpha)))
            results.append(sorted(hyps, key=lambda h: h.score, reverse=True))
        return results


def _until_eos(tokens: list[int]) -> list[int]:
    return tokens[:tokens.index(EOS) + 1] if EOS in tokens else tokens
