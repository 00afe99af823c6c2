"""Token-by-token decoding: greedy, temperature, top-k, top-p (nucleus; Holtzman et al. 2020).

The prime text runs through the model once; after that every new token costs one
`model.step` on the carried state — the prefix is never re-run.

Logit filters are small pure functions in a dict, applied in order; each maps
(B, V) logits to (B, V) logits with excluded tokens set to -inf.
"""
from __future__ import annotations

from typing import Callable, Iterator

import torch
from torch import Tensor, nn

from seqlab.models.base import State, model_device, select_state
from seqlab.models.kernels import native

NEG_INF = float("-inf")


def _temperature(logits: Tensor, value: float) -> Tensor:
    return logits / value


def _top_k(logits: Tensor, k: int) -> Tensor:
    if k <= 0 or k >= logits.size(-1):
        return logits
    kth = torch.topk(logits, k, dim=-1).values[..., -1:]                    # (B, 1)
    return logits.masked_fill(logits < kth, NEG_INF)


def _top_p(logits: Tensor, p: float) -> Tensor:
    if p >= 1.0:
        return logits
    sorted_logits, order = torch.sort(logits, dim=-1, descending=True)      # (B, V)
    probs = sorted_logits.softmax(-1)
    # drop a token when the tokens ranked above it already hold at least p of the mass;
    # the most likely token is always kept
    drop = probs.cumsum(-1) - probs >= p
    drop[..., 0] = False
    return logits.masked_fill(drop.scatter(-1, order, drop), NEG_INF)


FILTERS: dict[str, Callable[[Tensor, float], Tensor]] = {
    "temperature": _temperature,
    "top_k": _top_k,
    "top_p": _top_p,
}


def filter_logits(logits: Tensor, temperature: float = 1.0, top_k: int = 0, top_p: float = 1.0) -> Tensor:
    for name, value in (("temperature", temperature), ("top_k", top_k), ("top_p", top_p)):
        logits = FILTERS[name](logits, value)
    return logits


def draw(probs: Tensor, generator: torch.Generator | None = None) -> Tensor:
    """One token per row of probs (B, V), by inverting the cumulative distribution: token i
    when cdf[i-1] <= u < cdf[i], u uniform on [0, total). A token of probability 0 is never
    drawn. Three small ops, where torch.multinomial took 60 us a token at batch 1."""
    cdf = probs.cumsum(-1)                                                  # (B, V)
    u = torch.rand(probs.size(0), 1, generator=generator, device=probs.device, dtype=cdf.dtype)
    u = u * cdf[:, -1:]                                                     # (B, 1)
    return torch.searchsorted(cdf, u, right=True).squeeze(1).clamp_(max=probs.size(-1) - 1)  # (B,)


def _next_tokens(logits: Tensor, ban: Tensor | None, greedy: bool, temperature: float, top_k: int, top_p: float,
                 generator: torch.Generator | None) -> Tensor:
    """logits (B, V) -> the next token of each row (B,): banned ids dropped, then the most
    likely one, or a draw from the filtered softmax (on the generator's device)."""
    if ban is not None:
        logits = logits.index_fill_(-1, ban, NEG_INF)
    if greedy:
        return logits.argmax(-1)                                            # (B,)
    if (top_k <= 0 and top_p >= 1.0 and logits.dtype == torch.float32 and logits.device.type == "cpu"
            and (generator is None or generator.device.type == "cpu") and native.available()):
        # the softmax at this temperature and the draw in one native call (native/decode.cpp),
        # the same rule as `draw` from the same uniform numbers
        u = torch.rand(logits.size(0), generator=generator)
        return torch.ops.seqlab_native.draw_rows(logits.contiguous(), temperature, u)
    probs = filter_logits(logits.float(), temperature, top_k, top_p).softmax(-1)
    if generator is not None and generator.device != probs.device:
        return draw(probs.to(generator.device), generator).to(logits.device)
    return draw(probs, generator)


@torch.no_grad()
def prime_model(model: nn.Module, prime_ids: list[int], device: torch.device) -> tuple[Tensor, State]:
    """Run the prime once; returns the logits for the next token (1, V) and the state after it."""
    x = torch.tensor([prime_ids], dtype=torch.long, device=device)           # (1, P)
    logits, state = model(x, model.init_state(1))                           # (1, P, V)
    return logits[:, -1], state


@torch.no_grad()
def generate(model: nn.Module, prime_ids: list[int], length: int, *, greedy: bool = False,
             temperature: float = 1.0, top_k: int = 0, top_p: float = 1.0, banned: tuple[int, ...] = (),
             generator: torch.Generator | None = None) -> Iterator[int]:
    """Yield `length` new token ids after the prime, one at a time (for streaming)."""
    model.eval()
    device = model_device(model)
    logits, state = prime_model(model, prime_ids, device)
    ban = torch.tensor(banned, dtype=torch.long, device=device) if banned else None
    for i in range(length):
        if i:
            logits, state = model.step(token, state)                       # (1, V)
        token = _next_tokens(logits, ban, greedy, temperature, top_k, top_p, generator)   # (1,)
        yield int(token)


@torch.no_grad()
def generate_batch(model: nn.Module, prime_ids: list[int], length: int, num_samples: int, *, greedy: bool = False,
                   temperature: float = 1.0, top_k: int = 0, top_p: float = 1.0, banned: tuple[int, ...] = (),
                   generator: torch.Generator | None = None, stop: list[int] | None = None) -> list[list[int]]:
    """`num_samples` continuations of one prime, drawn as one batch: the prime runs once, its
    state is copied to N rows, and every step is one batched `model.step` (N, ·). With `stop`
    (a token sequence), each row ends just before its first `stop` and drawing ends when
    every row has one (or at `length`)."""
    model.eval()
    device = model_device(model)
    logits, state = prime_model(model, prime_ids, device)                  # (1, V)
    rows = torch.zeros(num_samples, dtype=torch.long, device=device)
    state = select_state(state, rows)                                       # (N, ...)
    logits = logits.expand(num_samples, -1).clone()                         # (N, V)
    out = torch.empty(num_samples, length, dtype=torch.long)
    ends = torch.full((num_samples,), -1, dtype=torch.long)                 # where each row's stop begins
    ban = torch.tensor(banned, dtype=torch.long, device=device) if banned else None
    for i in range(length):
        if i:
            logits, state = model.step(token, state)                       # (N, V)
        token = _next_tokens(logits, ban, greedy, temperature, top_k, top_p, generator)   # (N,)
        out[:, i] = token.cpu()
        if stop and i + 1 >= len(stop):
            ended = (out[:, i + 1 - len(stop):i + 1] == torch.tensor(stop)).all(dim=1)
            ends = torch.where(ended & (ends < 0), i + 1 - len(stop), ends)
            if bool((ends >= 0).all()):
                break
    rows = out[:, :i + 1].tolist()
    return [row[:end] if end >= 0 else row for row, end in zip(rows, ends.tolist())]
