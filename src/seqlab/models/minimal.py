"""minGRU and minLSTM: recurrent cells whose gates do not look at h_{t-1}, so that a whole
sequence can be computed with a parallel scan: Leo Feng, Frederick Tung, Mohamed Osama Ahmed,
Yoshua Bengio and Hossein Hajimirsadeghi (2024), "Were RNNs All We Needed?", arXiv:2410.01201.

Dimension legend: B batch, T time, I input size, H hidden size, L layers, C chunk length.

Each layer computes, from the input alone,

    minGRU   z_t = σ(k_t),   h̃_t = g(u_t)                  [k_t, u_t] = Linear(I, 2H)(x_t)
             h_t = (1 − z_t) ⊙ h_{t−1} + z_t ⊙ h̃_t

    minLSTM  f_t = σ(p_t),   i_t = σ(q_t),   h̃_t = g(u_t)    [p_t, q_t, u_t] = Linear(I, 3H)(x_t)
             f'_t = f_t / (f_t + i_t),   i'_t = i_t / (f_t + i_t)
             h_t = f'_t ⊙ h_{t−1} + i'_t ⊙ h̃_t

with g(x) = x + 0.5 for x ≥ 0 and σ(x) for x < 0 (the paper's log-space variant, so that
h̃_t > 0). Both are the linear recurrence

    h_t = a_t ⊙ h_{t−1} + b_t,     0 < a_t < 1,  b_t > 0,

    minGRU: a_t = 1 − z_t, b_t = z_t ⊙ h̃_t;     minLSTM: a_t = f'_t, b_t = i'_t ⊙ h̃_t.

Parallel path (log space). Unrolling, with a*_t = Σ_{j≤t} log a_j,

    h_t = exp(a*_t) ⊙ h_0 + exp(a*_t) ⊙ Σ_{k≤t} exp(log b_k − a*_k)
    log of the second term = a*_t + logcumsumexp_t(log b − a*)

The logarithms are taken without ever forming a gate value that could round to 0 or 1:

    log z = −softplus(−k),   log(1 − z) = −softplus(k),
    log g(x) = log(x + 0.5) for x ≥ 0, −softplus(−x) for x < 0,
    minLSTM: with d = log i − log f,   log f' = log f − log(f + i) = −softplus(d),
                                       log i' = log i − log(f + i) = −softplus(−d).

Three choices of ours, beyond the paper's formula:

* Chunking, for precision. a*_t + logcumsumexp(log b − a*) subtracts two numbers of size
  |a*_t|, so its rounding error in log h_t (the relative error in h_t) grows like
  eps · |a*_t|: for float32 gates near saturation over thousands of steps (|a*| ~ 10^4) that
  is ~10^-3. We therefore scan in log space within chunks of `chunk_size` steps, where
  |a*| stays small, and carry the state from chunk to chunk with the same recurrence in
  linear space (one small step per chunk: T / C steps instead of T). chunk_size=None
  scans the whole sequence in one chunk, exactly the paper's formula.

* h_0 enters linearly, as exp(a*_t) ⊙ h_0 (and likewise each chunk's incoming state),
  not through log h_0 inside the logcumsumexp. Only the b_t, which are positive by
  construction, are ever taken to the log. Hence the parallel path accepts ANY h_0 —
  zeros, positive or negative entries — and gives the same result as the sequential
  path; h_0 = None means zeros and its term is simply left out. (The paper's form puts
  log h_0 into the scan and so needs h_0 > 0; we never fall back or raise for the sign of
  h_0.) mode="auto" therefore picks the parallel path whenever T > 1, and the sequential
  one for T == 1 (decoding, one step at a time).

* The gradient of the scan is a second scan. Letting autograd differentiate through
  cumsum and logcumsumexp subtracts large, nearly equal sums inside every chunk; the
  adjoint recurrence γ_t = ∂L/∂h_t + a_{t+1} ⊙ γ_{t+1}, run by the same chunked scan
  backwards in time, avoids that. Measured in float32 (T = 200, C = 32, against a float64
  reference), parameter gradients are off by ~2·10^-6 of their scale, against ~1.5·10^-5
  through autograd. Double backward is not supported (the backward is marked
  once-differentiable); use mode="sequential" where it is needed.

Sequential path (linear space, the equations as written): one step per time step. It uses
σ(−k) for 1 − z and i' = σ(log i − log f) for i / (f + i) — the same numbers, but they
neither round 1 − z to 0 nor divide 0 by 0 when both f and i underflow.

MinimalStack stacks L layers, with dropout on the input of every layer after the first
(never on the recurrent path); state (B, L, H), batch first, in layer order, like every
state in seqlab (models/base.py).
"""
from __future__ import annotations

from typing import Optional

import torch
import torch.nn.functional as F
from torch import Tensor, nn
from torch.autograd.function import once_differentiable

MODES = ("auto", "parallel", "sequential")
KINDS = ("mingru", "minlstm")


# -- the shared pieces ------------------------------------------------------------------------

def candidate(x: Tensor) -> Tensor:
    """g(x) = x + 0.5 for x ≥ 0, σ(x) for x < 0: continuous, positive, linear for large x."""
    return torch.where(x >= 0, x.clamp(min=0) + 0.5, torch.sigmoid(x))


def log_candidate(x: Tensor) -> Tensor:
    """log g(x), with both branches finite everywhere (so torch.where's gradient is too)."""
    return torch.where(x >= 0, torch.log(x.clamp(min=0) + 0.5), -F.softplus(-x))


def _chunked_scan(log_a: Tensor, log_b: Tensor, h0: Optional[Tensor],
                  chunk_size: Optional[int]) -> Tensor:
    """All h_t of h_t = a_t ⊙ h_{t−1} + b_t, given log a (B, T, H) and log b (B, T, H).

    Within each chunk of C steps, a log-space scan from a zero state:
        local_t = exp(a*_t + logcumsumexp(log b − a*)_t),   decay_t = exp(a*_t),
    with a*_t the sum of log a from the chunk's first step up to t; then
        h_t = local_t + decay_t ⊙ (state entering the chunk),
    where the entering states are carried chunk to chunk in linear space. log b may hold
    −inf (b = 0). h0 (B, H) may have any sign, or be None for zeros. Returns h (B, T, H).
    """
    batch, steps, hidden = log_a.shape
    chunk = steps if chunk_size is None else min(chunk_size, steps)
    chunks = -(-steps // chunk)                                          # ceil(T / C)
    pad = chunks * chunk - steps
    if pad:
        # finite padding after the last real step: it can only affect padded outputs, dropped below
        log_a = F.pad(log_a, (0, 0, 0, pad))                              # (B, T + pad, H)
        log_b = F.pad(log_b, (0, 0, 0, pad))                              # (B, T + pad, H)
    log_a = log_a.reshape(batch, chunks, chunk, hidden)                   # (B, N, C, H)
    log_b = log_b.reshape(batch, chunks, chunk, hidden)                   # (B, N, C, H)
    a_star = torch.cumsum(log_a, dim=2)                                   # (B, N, C, H)
    local = torch.exp(a_star + torch.logcumsumexp(log_b - a_star, dim=2))  # (B, N, C, H)
    decay = torch.exp(a_star)                                             # (B, N, C, H)

    # state entering each chunk: s_0 = h0, s_{n+1} = decay_end(n) ⊙ s_n + local_end(n)
    entering = []
    state = h0
    for n in range(chunks):
        entering.append(state)
        if n + 1 < chunks:
            end = local[:, n, -1]                                         # (B, H)
            state = end if state is None else decay[:, n, -1] * state + end
    if all(s is None for s in entering):
        h = local                                                         # (B, N, C, H)
    else:
        zeros = log_a.new_zeros(batch, hidden)
        entering = torch.stack([zeros if s is None else s for s in entering], dim=1)  # (B, N, H)
        h = local + decay * entering.unsqueeze(2)                         # (B, N, C, H)
    return h.reshape(batch, chunks * chunk, hidden)[:, :steps]            # (B, T, H)


class _LogLinearScan(torch.autograd.Function):
    """The chunked scan, with its gradient computed by a second scan (backward in time).

    Differentiating through logcumsumexp instead would subtract large, nearly equal sums
    inside every chunk; the adjoint recurrence is about as accurate as the forward pass.
    With G_t = ∂L/∂h_t (direct) and γ_t the total gradient reaching h_t (t = 1 … T):

        γ_t = G_t + a_{t+1} ⊙ γ_{t+1}   (γ_T = G_T)     — the same linear recurrence, reversed
        ∂L/∂log b_t = γ_t ⊙ b_t,   ∂L/∂log a_t = γ_t ⊙ a_t ⊙ h_{t−1},   ∂L/∂h_0 = a_1 ⊙ γ_1

    G may have either sign, so γ = scan(G⁺) − scan(G⁻) with G⁺, G⁻ ≥ 0 (one batched scan).
    """

    @staticmethod
    def forward(ctx, log_a, log_b, h0, chunk_size):
        h = _chunked_scan(log_a, log_b, h0, chunk_size)                   # (B, T, H)
        ctx.chunk_size = chunk_size
        ctx.save_for_backward(log_a, log_b, h0, h)
        return h

    @staticmethod
    @once_differentiable
    def backward(ctx, grad_h):
        log_a, log_b, h0, h = ctx.saved_tensors
        # time reversed: r_s = a_{T−s} ⊙ r_{s−1} + G_{T−1−s} (0-based t; a_T multiplies r_{−1} = 0)
        log_a_next = F.pad(log_a[:, 1:], (0, 0, 0, 1)).flip(1)            # (B, T, H)
        split = torch.cat([grad_h.clamp(min=0), (-grad_h).clamp(min=0)])  # G⁺, G⁻: (2B, T, H)
        log_grad = split.log().flip(1)                                    # (2B, T, H), −inf at 0
        both = _chunked_scan(log_a_next.repeat(2, 1, 1), log_grad, None, ctx.chunk_size)
        positive, negative = both.flip(1).chunk(2)                        # (B, T, H) each
        total = positive - negative                                       # γ, (B, T, H)
        a = torch.exp(log_a)                                              # (B, T, H)
        h_previous = torch.cat([h.new_zeros(h[:, :1].shape) if h0 is None else h0.unsqueeze(1),
                                h[:, :-1]], dim=1)                        # (B, T, H)
        grad_log_a = total * a * h_previous if ctx.needs_input_grad[0] else None
        grad_log_b = total * torch.exp(log_b) if ctx.needs_input_grad[1] else None
        grad_h0 = total[:, 0] * a[:, 0] if h0 is not None and ctx.needs_input_grad[2] else None
        return grad_log_a, grad_log_b, grad_h0, None


def log_linear_scan(log_a: Tensor, log_b: Tensor, h0: Optional[Tensor],
                    chunk_size: Optional[int] = 32) -> Tensor:
    """All h_t of h_t = a_t ⊙ h_{t−1} + b_t from log a, log b (B, T, H); h0 (B, H), any sign,
    or None (zeros). Chunked log-space scan forward, adjoint scan backward. Returns (B, T, H)."""
    return _LogLinearScan.apply(log_a, log_b, h0, chunk_size)


def linear_recurrence(a: Tensor, b: Tensor, h0: Optional[Tensor]) -> Tensor:
    """h_t = a_t ⊙ h_{t−1} + b_t one step at a time; a, b (B, T, H), h0 (B, H) or None."""
    h = h0 if h0 is not None else a.new_zeros(a.size(0), a.size(2))      # (B, H)
    outputs = []
    for t in range(a.size(1)):
        h = a[:, t] * h + b[:, t]                                         # (B, H)
        outputs.append(h)
    return torch.stack(outputs, dim=1)                                    # (B, T, H)


# -- layers ----------------------------------------------------------------------------------

class _MinimalLayer(nn.Module):
    """One fused projection Linear(I, G·H), then h_t = a_t ⊙ h_{t−1} + b_t.

    Subclasses define how the projection becomes (a, b) in linear space (`coefficients`)
    and (log a, log b) in log space (`log_coefficients`).
    """

    gates = 2

    def __init__(self, input_size: int, hidden_size: int, chunk_size: Optional[int] = 32):
        super().__init__()
        if chunk_size is not None and chunk_size < 1:
            raise ValueError(f"chunk_size must be a positive integer or None, got {chunk_size}")
        self.input_size, self.hidden_size, self.chunk_size = input_size, hidden_size, chunk_size
        self.projection = nn.Linear(input_size, self.gates * hidden_size)

    def coefficients(self, projected: Tensor) -> tuple[Tensor, Tensor]:
        raise NotImplementedError

    def log_coefficients(self, projected: Tensor) -> tuple[Tensor, Tensor]:
        raise NotImplementedError

    def forward(self, x: Tensor, h0: Optional[Tensor] = None,
                mode: str = "auto") -> tuple[Tensor, Tensor]:
        # x: (B, T, I), h0: (B, H) or None (zeros) -> out (B, T, H), h_T (B, H)
        if mode not in MODES:
            raise ValueError(f"mode must be one of {MODES}, got {mode!r}")
        if x.dim() != 3 or x.size(-1) != self.input_size:
            raise ValueError(f"expected x of shape (B, T, {self.input_size}), got {tuple(x.shape)}")
        if x.size(1) == 0:
            raise ValueError("expected at least one time step")
        if h0 is not None and h0.shape != (x.size(0), self.hidden_size):
            raise ValueError(f"expected h0 of shape ({x.size(0)}, {self.hidden_size}), "
                             f"got {tuple(h0.shape)}")
        if mode == "auto":
            mode = "parallel" if x.size(1) > 1 else "sequential"
        projected = self.projection(x)                                    # (B, T, G*H)
        if mode == "parallel":
            log_a, log_b = self.log_coefficients(projected)               # (B, T, H) each
            out = log_linear_scan(log_a, log_b, h0, self.chunk_size)      # (B, T, H)
        else:
            a, b = self.coefficients(projected)                           # (B, T, H) each
            out = linear_recurrence(a, b, h0)                             # (B, T, H)
        return out, out[:, -1]

    def step(self, x_t: Tensor, h: Optional[Tensor]) -> tuple[Tensor, Tensor]:
        # x_t: (B, I), h: (B, H) or None (zeros) -> (h_t, h_t), each (B, H)
        a, b = self.coefficients(self.projection(x_t))                    # (B, H) each
        h = b if h is None else a * h + b                                 # (B, H)
        return h, h

    def extra_repr(self) -> str:
        return f"{self.input_size}, {self.hidden_size}, chunk_size={self.chunk_size}"


class MinGRULayer(_MinimalLayer):
    """minGRU: z = σ(k), h̃ = g(u), h_t = (1 − z) ⊙ h_{t−1} + z ⊙ h̃; projection rows [k | u]."""

    gates = 2

    def coefficients(self, projected: Tensor) -> tuple[Tensor, Tensor]:
        k, u = projected.chunk(2, dim=-1)                                 # (..., H) each
        keep = torch.sigmoid(-k)                                          # 1 − z, (..., H)
        update = torch.sigmoid(k)                                         # z, (..., H)
        return keep, update * candidate(u)

    def log_coefficients(self, projected: Tensor) -> tuple[Tensor, Tensor]:
        k, u = projected.chunk(2, dim=-1)                                 # (..., H) each
        log_keep = -F.softplus(k)                                         # log(1 − z)
        log_update = -F.softplus(-k)                                      # log z
        return log_keep, log_update + log_candidate(u)


class MinLSTMLayer(_MinimalLayer):
    """minLSTM: f = σ(p), i = σ(q), h̃ = g(u), f' = f / (f + i), i' = i / (f + i),
    h_t = f' ⊙ h_{t−1} + i' ⊙ h̃; projection rows [p | q | u]."""

    gates = 3

    @staticmethod
    def _gate_difference(p: Tensor, q: Tensor) -> Tensor:
        # d = log i − log f, from log σ(x) = −softplus(−x): finite even where f, i underflow
        return F.softplus(-p) - F.softplus(-q)                            # (..., H)

    def coefficients(self, projected: Tensor) -> tuple[Tensor, Tensor]:
        p, q, u = projected.chunk(3, dim=-1)                              # (..., H) each
        difference = self._gate_difference(p, q)                          # (..., H)
        forget = torch.sigmoid(-difference)                               # f' = f / (f + i)
        input_gate = torch.sigmoid(difference)                            # i' = i / (f + i)
        return forget, input_gate * candidate(u)

    def log_coefficients(self, projected: Tensor) -> tuple[Tensor, Tensor]:
        p, q, u = projected.chunk(3, dim=-1)                              # (..., H) each
        difference = self._gate_difference(p, q)                          # (..., H)
        log_forget = -F.softplus(difference)                              # log f' = log f − log(f + i)
        log_input = -F.softplus(-difference)                              # log i' = log i − log(f + i)
        return log_forget, log_input + log_candidate(u)


# -- the stack -------------------------------------------------------------------------------

LAYERS = {"mingru": MinGRULayer, "minlstm": MinLSTMLayer}


class MinimalStack(nn.Module):
    """L minGRU or minLSTM layers: x (B, T, I) ─► layer 1 ─► dropout ─► layer 2 ─► ... (B, T, H).

    State (B, L, H), batch first, layer order; None means zeros. `mode` is passed to every
    layer ("auto": parallel scan for T > 1, sequential for T == 1).
    """

    def __init__(self, kind: str, input_size: int, hidden_size: int, num_layers: int = 1,
                 dropout: float = 0.0, mode: str = "auto", chunk_size: Optional[int] = 32):
        super().__init__()
        if kind not in LAYERS:
            raise ValueError(f"kind must be one of {KINDS}, got {kind!r}")
        if mode not in MODES:
            raise ValueError(f"mode must be one of {MODES}, got {mode!r}")
        if num_layers < 1:
            raise ValueError(f"num_layers must be at least 1, got {num_layers}")
        self.kind, self.mode = kind, mode
        self.hidden_size, self.num_layers = hidden_size, num_layers
        self.layers = nn.ModuleList(
            LAYERS[kind](input_size if k == 0 else hidden_size, hidden_size, chunk_size)
            for k in range(num_layers))
        self.dropout = nn.Dropout(dropout)

    def init_state(self, batch_size: int, like: Tensor) -> Tensor:
        return like.new_zeros(batch_size, self.num_layers, self.hidden_size)  # (B, L, H)

    def forward(self, x: Tensor, state: Optional[Tensor] = None) -> tuple[Tensor, Tensor]:
        # x: (B, T, I), state: (B, L, H) or None -> out (B, T, H), state (B, L, H)
        finals = []
        for k, layer in enumerate(self.layers):
            x_in = self.dropout(x) if k else x                            # (B, T, I or H)
            h0 = None if state is None else state[:, k]                   # (B, H)
            x, final = layer(x_in, h0, mode=self.mode)                    # (B, T, H), (B, H)
            finals.append(final)
        return x, torch.stack(finals, dim=1)                              # (B, T, H), (B, L, H)

    def step(self, x_t: Tensor, state: Optional[Tensor] = None) -> tuple[Tensor, Tensor]:
        # x_t: (B, I), state: (B, L, H) or None -> out (B, H), state (B, L, H)
        finals = []
        for k, layer in enumerate(self.layers):
            x_in = self.dropout(x_t) if k else x_t                        # (B, I or H)
            x_t, h = layer.step(x_in, None if state is None else state[:, k])   # (B, H)
            finals.append(h)
        return x_t, torch.stack(finals, dim=1)                            # (B, H), (B, L, H)
