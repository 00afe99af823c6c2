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
from dataclasses import dataclass
import torch
import torch.nn.functional as F
from torch import Tensor, nn

from seqlab.data.text import batchify
from seqlab.models.base import State, detach_state


@dataclass(frozen=True)
class Window:
    start: int       # s: first input position run forward (state is known here)
    middle: int      # m: where the next window's state is taken (s <= m <= e)
    end: int         # e: one past the last input position
    loss_from: int   # first position whose target counts in the loss (e - k1, or less at the start)


def tbptt_windows(length: int, k1: int, k2: int) -> list[Window]:
    """Windows over a row of `length` tokens (length - 1 predictable positions)."""
    positions = length - 1
    ends = list(range(k1, positions, k1)) + [positions]
    windows, prev_end = [], 0
    for i, e in enumerate(ends):
        s = max(0, e - k2)
        next_end = ends[i + 1] if i + 1 < len(ends) else e
        m = max(s, min(e, next_end - k2))
        windows.append(Window(s, m, e, prev_end))
        prev_end = e
    return windows


def train_step(model: nn.Module, data: Tensor, window: Window, state: State) -> tuple[Tensor, State, int]:
    """Forward + loss for one window. Returns (mean loss, state for the next window, #targets).

    data: (B, N) batchified ids; state: the state at window.start (already detached).
    """
    s, m, e = window.start, window.middle, window.end
    inputs, targets = data[:, s:e], data[:, s + 1:e + 1]                       # (B, e-s)
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
    data = batchify(ids, batch_size).to(device)                                # (B, N)
    was_training = model.training
    model.eval()
    state = model.init_state(batch_size)
    score_targets = getattr(model, "target_log_probs", None)
    total, count = 0.0, 0
    for i in range(0, data.size(1) - 1, bptt_steps):
        inputs = data[:, i:i + bptt_steps]
        targets = data[:, i + 1:i + 1 + bptt_steps]
        inputs = inputs[:, : targets.size(1)]
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
    key = "bpc" if level == "char" else "bits_per_token"
    return {"loss": nats, "ppl": math.exp(min(nats, 700.0)), key: bits}

