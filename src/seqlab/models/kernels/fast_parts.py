"""Parts shared by the fast path's recurrences (models/kernels/fast.py, models/kernels/fast_gru.py): time-major
buffers and their per-step views, and the recurrent half of a step, with or without layer
normalisation (Ba et al. 2016).

Layout. Every buffer a time loop touches is time major, (T, B, N), so one step's slice is one
contiguous (B, N) block. The caller's tensors are batch first, (B, T, ·): the gate buffer is
filled from `projected` in one transposing copy before the loop, the outputs are copied back
to batch first once after it, and the gradient of `projected` is handed back as a transposed
view of the time-major gradient buffer. On the project's 2-core CPU machine a step's
elementwise kernels ran about twice as fast on the contiguous slices as on the strided
(B, ·) slices of a batch-first buffer (each row a different page, T*N apart), and the
layer-norm kernels, which copy a strided input to a contiguous one first, even more.

Layer normalisation. A normalised cell's recurrent part is LN(W_hh h) (scaled where a tanh
follows, see fast.py). Each forward step calls ATen's fused layer-norm kernel (the one
F.layer_norm runs) on the contiguous product and keeps the per-row mean and 1/std. The
backward step asks ATen's fused vector-Jacobian product for the input's gradient only: the
recurrence needs dr_t = d LN / d r at every step, but the gain's and bias's gradients,
Σ_t d_t ⊙ x̂_t and Σ_t d_t, feed nothing inside the loop, so they are computed once after it
from the buffer of every step's d and x̂ recomputed from the saved statistics.
"""
from __future__ import annotations

import torch
from torch import Tensor

from seqlab.models.kernels import native


def steps(T: int, reverse: bool) -> range:
    return range(T - 1, -1, -1) if reverse else range(T)


def grad_steps(T: int, reverse: bool) -> range:
    # the backward pass walks the forward's processing order backwards
    return range(T) if reverse else range(T - 1, -1, -1)


def entering(states, init: Tensor, reverse: bool) -> list:
    """The state entering each step t, given the per-step (B, H) views of the states the
    steps leave: the initial state for the first step processed, else a neighbour's."""
    T = len(states)
    if reverse:
        return [states[t + 1] if t + 1 < T else init for t in range(T)]
    return [states[t - 1] if t else init for t in range(T)]


def next_in_grad(t: int, T: int, reverse: bool) -> int | None:
    # the step the backward pass handles after t (the one processed before t), if any
    n = t + 1 if reverse else t - 1
    return n if 0 <= n < T else None


def empty(shape, like: Tensor) -> Tensor:
    """A fresh, uninitialised buffer like `like`. Where seqlab's C++ kernels are loaded, big CPU
    buffers come from their pool (models/kernels/native/lstm.cpp): a fresh multi-megabyte buffer from
    malloc costs a page fault per 4 KiB page on every call."""
    if (like.device.type == "cpu" and like.dtype in (torch.float32, torch.float64)
            and not torch.compiler.is_compiling() and native.available()):
        return torch.ops.seqlab_native.pooled_empty(list(shape), like.dtype)
    return like.new_empty(shape)


def gate_buffer(projected: Tensor, bias: Tensor | None, scale: Tensor | None) -> Tensor:
    """A fresh time-major (T, B, N) buffer = (projected (B, T, N) + bias) * scale, in one pass."""
    src = projected.transpose(0, 1)                                   # (T, B, N), a view
    out = empty(src.shape, projected)
    if scale is None:
        if bias is None:
            out.copy_(src)
        else:
            torch.add(src, bias, out=out)
    elif bias is None:
        torch.mul(src, scale, out=out)
    else:
        torch.addcmul(bias * scale, src, scale, out=out)
    return out


def batch_first(buf: Tensor) -> Tensor:
    # (T, B, H) -> a contiguous (B, T, H), the layout the caller gets
    return buf.transpose(0, 1).contiguous()


def scale(GH: int, H: int, doubled: int, like: Tensor) -> Tensor:
    # (G*H,) ones, with 2 on the gate block whose pre-activation feeds a tanh
    s = like.new_ones(GH)
    s[doubled * H:(doubled + 1) * H] = 2
    return s


def cols(buf: Tensor, lo: int, hi: int) -> tuple:
    """Per-step views (B, hi - lo) of columns lo:hi of a time-major (T, B, N) buffer."""
    return buf[:, :, lo:hi].unbind(0)


class Seen:
    """The states the recurrent products see: h_{t-1} itself, or h_{t-1} ⊙ mask (recurrent
    dropout, Gal & Ghahramani 2016) written into a (T, B, H) buffer as the loop goes, which
    the weight gradient's product then reads as it is."""

    def __init__(self, mask: Tensor | None, like: Tensor, T: int):
        self.mask = mask
        if mask is not None:
            self.buf = empty((T,) + tuple(mask.shape), like)
            self.buf_ = self.buf.unbind(0)

    def __call__(self, t: int, h: Tensor) -> Tensor:
        return h if self.mask is None else torch.mul(h, self.mask, out=self.buf_[t])

    def flat(self, h_in: list) -> Tensor:
        """(T*B, H), time major like the gate gradients; h_in the per-step states entering."""
        s = torch.stack(h_in) if self.mask is None else self.buf
        return s.view(-1, s.size(-1))


def state_grad(base: Tensor, src: Tensor | None, weight_hh: Tensor, mask: Tensor | None) -> Tensor:
    """dL/dh_t = (the gradient arriving at h_t directly) + (W_hh^T of the next step's gate
    gradients `src`, through the recurrent dropout mask). `src` is None at the last step."""
    if src is None:
        return base
    if mask is None:
        return torch.addmm(base, src, weight_hh)
    return torch.addcmul(base, torch.mm(src, weight_hh), mask)


def consts(like: Tensor):
    # 0-dim tensors: cheaper per call than Python scalars
    return like.new_full((), -1.0), like.new_full((), 1.0), like.new_full((), 2.0)


def masked(h: Tensor, mask: Tensor | None) -> Tensor:
    return h if mask is None else h * mask


def norm_forward(x: Tensor, gain: Tensor, bias: Tensor, eps: float, means: list, rstds: list, t: int) -> Tensor:
    """LN(x) (B, N) with ATen's fused kernel; step t's row statistics go into means / rstds."""
    y, means[t], rstds[t] = torch.native_layer_norm(x, (x.size(1),), gain, bias, eps)
    return y


def norm_input_grad(d: Tensor, x: Tensor, mean: Tensor, rstd: Tensor, gain: Tensor) -> Tensor:
    """dL/dx (B, N) of y = LN(x) given d = dL/dy, with ATen's fused vector-Jacobian product,
    the input's part only (the gain's and bias's come once after the loop: norm_param_grads)."""
    return torch.ops.aten.native_layer_norm_backward(
        d, x, [d.size(1)], mean, rstd, gain, None, [True, False, False])[0]


def norm_param_grads(d: Tensor, x: Tensor, means: list, rstds: list) -> tuple[Tensor, Tensor]:
    """The gain's and bias's gradients of a layer norm applied at every step, all at once:
    Σ d ⊙ x̂ and Σ d over time and batch, with x̂ = (x - mean) / std recomputed from the
    saved statistics. d, x: (T, B, N); means, rstds: T tensors (B, 1)."""
    xhat = torch.sub(x, torch.stack(means), out=empty(x.shape, x)).mul_(torch.stack(rstds)).mul_(d)
    return xhat.sum((0, 1)), d.sum((0, 1))


class Recurrent:
    """The recurrent half of a step's pre-activations and its backward, step by step:
    W_hh h (+ b_hh), or LN(W_hh h) for a layer-normalised cell (Ba et al. 2016).

    `scale` (N,) doubles the blocks that feed a tanh (see fast.py): folded into the rows of
    W_hh without normalisation, into the norm's gain and bias with it. `norm` is None or
    (gain, bias, eps).
    """

    def __init__(self, weight: Tensor, scale: Tensor | None, norm, B: int, T: int):
        self.weight, self.norm = weight, norm
        if norm is None:
            self.wt = (weight if scale is None else weight * scale[:, None]).t()
            return
        gain, bias, self.eps = norm
        self.wt = weight.t()
        self.gain, self.bias = (gain, bias) if scale is None else (gain * scale, bias * scale)
        self.raw = empty((T, B, weight.size(0)), weight)               # W_hh h before the norm
        self.raw_ = self.raw.unbind(0)
        self.means: list = [None] * T
        self.rstds: list = [None] * T

    def add_(self, t: int, h: Tensor, a: Tensor) -> Tensor:
        """a (B, N) += step t's recurrent part (scaled), for the state h the products see."""
        if self.norm is None:
            return a.addmm_(h, self.wt)
        return a.add_(self._normed(t, h))

    def into(self, t: int, h: Tensor, bias: Tensor | None, out: Tensor | None) -> Tensor:
        """Step t's recurrent part: W_hh h + bias written into `out` without a norm; with one,
        the norm's own output (`bias` and `out` unused)."""
        if self.norm is None:
            return torch.addmm(bias, h, self.wt, out=out)
        return self._normed(t, h)

    def _normed(self, t: int, h: Tensor) -> Tensor:
        r = torch.mm(h, self.wt, out=self.raw_[t])                     # (B, N), contiguous
        return norm_forward(r, self.gain, self.bias, self.eps, self.means, self.rstds, t)

    # backward ------------------------------------------------------------------------------

    def start_backward(self) -> None:
        if self.norm is not None:
            self.draw = empty(self.raw.shape, self.raw)                # every step's d(W_hh h), (T, B, N)
            self.draw_ = self.draw.unbind(0)

    def source(self, t: int, d: Tensor) -> Tensor:
        """Given d (B, N), the gradient of step t's recurrent part (unscaled), the gradient of
        W_hh h: the matrix whose product with W_hh is the state's gradient."""
        if self.norm is None:
            return d
        return self.draw_[t].copy_(norm_input_grad(d, self.raw_[t], self.means[t], self.rstds[t], self.norm[0]))

    def flat_sources(self, d: Tensor) -> Tensor:
        """(T*B, N): every step's source, given the (T, B, N) buffer of the d's."""
        src = d if self.norm is None else self.draw
        return src.view(-1, src.size(-1))

    def norm_grads(self, d: Tensor) -> tuple:
        """(d gain, d bias) of the norm from the (T, B, N) buffer of the d's; (None, None) without."""
        if self.norm is None:
            return None, None
        return norm_param_grads(d, self.raw, self.means, self.rstds)
