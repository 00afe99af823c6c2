"""The training and evaluation steps: plain functions over the SequenceModel interface.

Truncated backpropagation through time, TBPTT(k1, k2) (Williams & Peng 1990; Sutskever
2013, sec. 2.8.6): every k1 new tokens, back-propagate through the last k2 >= k1 steps.
The loss counts only the k1 new targets, so each target is trained on exactly once per
epoch; the gradient reaches k2 steps into the past. With k1 = k2 this is the usual
chunking of pytorch/examples' word_language_model: one forward pass per chunk, the state
carried to the next chunk and detached there (without the detach, backward would run
through the whole epoch's history).

For k2 > k1 a window [s, e) is run in two pieces, [s, m) and [m, e), where m is the start
of the next window: the state at m, detached, is what the next window starts from.
"""
from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np
import torch
import torch.nn.functional as F
from torch import Tensor, nn

from seqlab.data.text import batchify, batchify_view
from seqlab.models.base import State, detach_state, hook


BITS_KEY = {"char": "bpc", "byte": "bits_per_byte"}      # what a level's bits per token are called


@dataclass(frozen=True)
class Window:
    start: int       # s: first input position run forward (state is known here)
    middle: int      # m: where the next window's state is taken (s <= m <= e)
    end: int         # e: one past the last input position
    loss_from: int   # first position whose target counts in the loss (e - k1, or less at the start)


class tbptt_windows(Sequence):
    """The windows over a row of `length` tokens (length - 1 predictable positions), computed
    on demand: a memory-mapped corpus of 10^9 tokens has tens of millions of them."""

    def __init__(self, length: int, k1: int, k2: int):
        self.positions, self.k1, self.k2 = length - 1, k1, k2
        self.count = max(1, -(-self.positions // k1))           # ends k1, 2k1, ..., then `positions`

    def __len__(self) -> int:
        return self.count

    def _end(self, i: int) -> int:
        return self.positions if i == self.count - 1 else (i + 1) * self.k1

    def __getitem__(self, i):
        if isinstance(i, slice):
            return [self[j] for j in range(*i.indices(self.count))]
        if i < 0:
            i += self.count
        if not 0 <= i < self.count:
            raise IndexError(i)
        e = self._end(i)
        s = max(0, e - self.k2)
        next_end = self._end(i + 1) if i + 1 < self.count else e
        m = max(s, min(e, next_end - self.k2))
        return Window(s, m, e, self._end(i - 1) if i else 0)


def token_block(data: Tensor | np.ndarray, start: int, stop: int, device: torch.device | None = None) -> Tensor:
    """Columns [start, stop) of (B, N) batchified ids as a long tensor (B, stop-start). A
    memory-mapped array (numpy, uint8/16/int32) is read here, one window at a time."""
    if isinstance(data, Tensor):
        return data[:, start:stop]                                             # (B, stop-start)
    block = torch.from_numpy(np.ascontiguousarray(data[:, start:stop]).astype(np.int64))
    return block.to(device) if device is not None else block                   # (B, stop-start)


def train_step(model: nn.Module, data: Tensor | np.ndarray, window: Window, state: State,
               device: torch.device | None = None) -> tuple[Tensor, State, int]:
    """Forward + loss for one window. Returns (mean loss, state for the next window, #targets).

    data: (B, N) batchified ids (a tensor, or a numpy view of a memory-mapped stream, then read
    onto `device`); state: the state at window.start (already detached).
    """
    s, m, e = window.start, window.middle, window.end
    block = token_block(data, s, e + 1, device)                                # (B, e-s+1)
    inputs, targets = block[:, :-1], block[:, 1:]                              # (B, e-s)
    if m in (s, e):
        logits, state_end = model(inputs, state)                               # (B, e-s, V)
        next_state = state_end if m == e else state
    else:
        first, next_state = model(inputs[:, : m - s], state)                   # (B, m-s, V)
        second, _ = model(inputs[:, m - s:], next_state)                       # (B, e-m, V)
        logits = torch.cat([first, second], dim=1)
    k = window.loss_from - s
    counted = targets[:, k:]                                                   # (B, e-loss_from)
    loss = F.cross_entropy(logits[:, k:].reshape(-1, logits.size(-1)), counted.reshape(-1))
    return loss, detach_state(next_state), counted.numel()


@torch.no_grad()
def evaluate(model: nn.Module, ids, batch_size: int, bptt_steps: int, device: torch.device,
             max_tokens: int = 0) -> tuple[float, int]:
    """Mean negative log-likelihood (nats per token) over a stream, with the state carried
    across chunks as in training. Returns (mean nats, number of targets scored).

    A model with `target_log_probs(x, targets, state) -> ((B, T) log-probs, state)` (the
    n-gram) is scored through it: the targets' log-probabilities without the (B, T, V) table,
    whose cost at word level is all in the vocabulary."""
    if max_tokens:
        ids = ids[:max_tokens]
    batch_size = max(1, min(batch_size, len(ids) // 2))
    if isinstance(ids, np.ndarray) and ids.dtype != np.int64:   # memory-mapped: read chunk by chunk
        data = batchify_view(ids, batch_size)                                  # (B, N), a view
    else:
        data = batchify(ids, batch_size).to(device)                            # (B, N)
    was_training = model.training
    model.eval()
    state = model.init_state(batch_size)
    score_targets = hook(model, "target_log_probs")
    total, count = 0.0, 0
    for i in range(0, data.shape[1] - 1, bptt_steps):
        block = token_block(data, i, i + bptt_steps + 1, device)               # (B, T+1)
        inputs, targets = block[:, :-1], block[:, 1:]                          # (B, T)
        if score_targets is not None:
            log_probs, state = score_targets(inputs, targets, state)           # (B, T)
            total -= log_probs.sum().item()
        else:
            logits, state = model(inputs, state)                               # (B, T, V)
            total += F.cross_entropy(logits.reshape(-1, logits.size(-1)), targets.reshape(-1),
                                     reduction="sum").item()
        count += targets.numel()
    model.train(was_training)
    return total / count, count


def summary(nats: float, level: str) -> dict[str, float]:
    """Loss in nats, perplexity, and bits per token (bits per character at char level)."""
    bits = nats / math.log(2)
    key = BITS_KEY.get(level, "bits_per_token")
    return {"loss": nats, "ppl": math.exp(min(nats, 700.0)), key: bits}



@torch.no_grad()
def token_log_probs(model: nn.Module, ids: Tensor, start: int | None, device: torch.device, streams: int = 1,
                    chunk: int = 256) -> np.ndarray:
    """log p(token | everything before it), in nats, for every token of a text: (N,) float64.

    The first token is predicted from `start` (a line break, say) and a fresh state; with
    start=None it has no prediction and its entry is NaN. streams=1 is the exact
    left-to-right score of the whole text. streams=S > 1 cuts the text into S contiguous
    segments of near-equal length, scored side by side as one batch: each segment starts
    from a fresh state (reading the token before it), so it forgets what came before it —
    faster, and a little pessimistic at the S − 1 cuts."""
    ids = torch.as_tensor(ids, dtype=torch.long).flatten()
    n = len(ids)
    out = np.full(n, np.nan)
    if n == 0 or (start is None and n < 2):
        return out
    first = 0 if start is not None else 1
    inputs = torch.cat([torch.tensor([start if start is not None else 0]), ids[:-1]])[first:]     # (M,)
    targets = ids[first:]                                                                          # (M,)
    M = len(targets)
    S = max(1, min(streams, M))
    L = -(-M // S)                                                       # segment length
    pad = S * L - M
    grid_in = torch.cat([inputs, inputs.new_zeros(pad)]).view(S, L)      # (S, L)
    grid_tg = torch.cat([targets, targets.new_zeros(pad)]).view(S, L)    # (S, L)
    was_training = model.training
    model.eval()
    state = model.init_state(S)
    score_targets = hook(model, "target_log_probs")
    scores = []
    for i in range(0, L, chunk):
        x, y = grid_in[:, i:i + chunk].to(device), grid_tg[:, i:i + chunk].to(device)           # (S, T)
        if score_targets is not None:
            log_probs, state = score_targets(x, y, state)                                           # (S, T)
        else:
            logits, state = model(x, state)                                                         # (S, T, V)
            log_probs = F.log_softmax(logits.float(), -1).gather(-1, y.unsqueeze(-1)).squeeze(-1)   # (S, T)
        scores.append(log_probs.double().cpu())
    model.train(was_training)
    out[first:] = torch.cat(scores, 1).reshape(-1)[:M].numpy()
    return out
