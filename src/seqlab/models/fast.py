"""Sequence-level recurrences with a hand-written backward (BPTT): seqlab's fast path.

`RecurrentLayer` runs `cell.step` T times under autograd, which records a dozen small
operations per step and replays them one by one in the backward pass. Here one
`torch.autograd.Function` per cell family runs the whole sequence instead.

forward   The time loop runs without a graph. The input projections, plus the recurrent
          bias where it is additive, are copied once into a gate buffer (B, T, G*H); each
          step adds its recurrent product in place (`addmm_` on the step's slice), applies
          one sigmoid to every gate at once and a few in-place elementwise operations, and
          writes h_t straight into the output tensor. Gate activations, cell states and
          tanh(c_t) stay in their buffers for the backward pass.

backward  Walks time in reverse computing only the gradients of the gate pre-activations,
          dZ_t (B, G*H), and of the states; one (B, G*H) x (G*H, H) product per step gives
          the recurrent part of dh_{t-1}. After the loop the weight gradients come from ONE
          large product,  dW_hh = Σ_t dZ_tᵀ h_{t-1} = dZ (B*T, G*H)ᵀ @ H_prev (B*T, H),
          db_hh = Σ dZ, and the gradient of the projected inputs is dZ itself, already in
          the caller's (B, T, G*H) layout (the caller's `cell.project` autograd turns it
          into dW_ih and dx).

Every buffer is batch first, like `projected` and the outputs, so nothing is transposed:
a step works on strided (B, ·) slices, which the matrix products and elementwise kernels
take as they are. All per-step views are made once, before the loop.

Layer-normalised cells (Ba et al. 2016) take the same path: the step's recurrent part is
LN(W_hh h) instead of W_hh h + b_hh (and the LSTM's output uses tanh(LN(c_t))). Each step
calls ATen's fused layer-norm forward, keeping the per-row mean and 1/std, and the backward
calls ATen's fused layer-norm vector-Jacobian product with them (the kernels F.layer_norm
and its autograd run), then carries on with the product by W_hh as above; the norms' gains
and biases accumulate their gradients step by step.

tanh is computed as 2σ(2x) - 1: on the project's CPU machine (AMD EPYC, PyTorch 2.13 with
MKL) torch.tanh took ~22 µs on a (32, 256) tensor against ~4 µs for torch.sigmoid. The
tanh gates' pre-activations are doubled where they are formed (their rows of W_hh and of
the bias, or the norm's gain and bias; their input slice in the one copy made before the
loop), one sigmoid covers all gates, and `add(-1, σ, alpha=2)` finishes the tanh. It is
the same function; float32 results differ from torch.tanh's by about 1e-7 absolute.

    supports(cell) -> bool
    run_sequence(cell, projected, state, reverse=False, mask=None) -> (out (B, T, H), final_state)

`supports` is True for ElmanCell (tanh, relu), JordanCell, LSTMCell (plain, peephole,
coupled, both) and GRUCell ('pytorch', 'cho'), each with or without layer normalisation
(the 'cho' GRU has none). `run_sequence` computes what `RecurrentLayer(cell, reverse)`
computes, without zoneout or lengths (those stay on RecurrentLayer's loop); `mask` is the
optional recurrent-dropout mask (B, H) that `cell.step` takes. A cell it does not cover (a
subclass with its own step, say) runs the same autograd loop as RecurrentLayer, so
run_sequence is correct for every cell.

Measured (bench/speed.py, batch 32, 100 steps, hidden 256, forward + backward): on the
2-core CPU machine the gated cells' elementwise work is ~10 small kernel calls per step in
each direction, launched from Python, where nn.LSTM's oneDNN kernel fuses them; that, more
than the matrix products, is what separates the LSTM from nn.LSTM.
"""
from __future__ import annotations

import torch
from torch import Tensor

from seqlab.models.cells import Cell, ElmanCell, GRUCell, JordanCell, LSTMCell

__all__ = ["supports", "run_sequence"]


# ------------------------------------------------------------------------------------------
# helpers
# ------------------------------------------------------------------------------------------

def _steps(T: int, reverse: bool) -> range:
    return range(T - 1, -1, -1) if reverse else range(T)


def _grad_steps(T: int, reverse: bool) -> range:
    # the backward pass walks the forward's processing order backwards
    return range(T) if reverse else range(T - 1, -1, -1)


def _entering(steps: list, init: Tensor, reverse: bool) -> list:
    """The state entering each step t, given the per-step (B, H) views of the states the
    steps leave: the initial state for the first step processed, else a neighbour's."""
    T = len(steps)
    if reverse:
        return [steps[t + 1] if t + 1 < T else init for t in range(T)]
    return [steps[t - 1] if t else init for t in range(T)]


def _next_in_grad(t: int, T: int, reverse: bool) -> int | None:
    # the step the backward pass handles after t (the one processed before t), if any
    n = t + 1 if reverse else t - 1
    return n if 0 <= n < T else None


def _gate_buffer(projected: Tensor, bias: Tensor | None, scale: Tensor | None) -> Tensor:
    """A fresh contiguous (B, T, N) buffer = (projected + bias) * scale, in one pass."""
    out = torch.empty(projected.shape, dtype=projected.dtype, device=projected.device)
    if scale is None:
        if bias is None:
            out.copy_(projected)
        else:
            torch.add(projected, bias, out=out)
    elif bias is None:
        torch.mul(projected, scale, out=out)
    else:
        torch.addcmul(bias * scale, projected, scale, out=out)
    return out


def _scale(GH: int, H: int, doubled: int, like: Tensor) -> Tensor:
    # (G*H,) ones, with 2 on the gate block whose pre-activation feeds a tanh
    s = like.new_ones(GH)
    s[doubled * H:(doubled + 1) * H] = 2
    return s


def _cols(buf: Tensor, lo: int, hi: int) -> tuple:
    """Per-step views (B, hi - lo) of columns lo:hi of a (B, T, N) buffer."""
    return buf[:, :, lo:hi].unbind(1)


def _seen_flat(states: list, mask: Tensor | None) -> Tensor:
    """(B*T, H): the states the recurrent products saw, batch first, times the mask."""
    s = torch.stack(states, 1)
    if mask is not None:
        s.mul_(mask.unsqueeze(1))
    return s.view(-1, s.size(-1))


def _state_grad(base: Tensor, src: Tensor | None, weight_hh: Tensor, mask: Tensor | None) -> Tensor:
    """dL/dh_t = (the gradient arriving at h_t directly) + (W_hh^T of the next step's gate
    gradients `src`, through the recurrent dropout mask). `src` is None at the last step."""
    if src is None:
        return base
    if mask is None:
        return torch.addmm(base, src, weight_hh)
    return torch.addcmul(base, torch.mm(src, weight_hh), mask)


def _consts(like: Tensor):
    # 0-dim tensors: cheaper per call than Python scalars
    return like.new_full((), -1.0), like.new_full((), 1.0), like.new_full((), 2.0)


def _masked(h: Tensor, mask: Tensor | None) -> Tensor:
    return h if mask is None else h * mask


class _Recurrent:
    """The recurrent half of a step's pre-activations and its backward, step by step:
    W_hh h (+ b_hh), or LN(W_hh h) for a layer-normalised cell (Ba et al. 2016).

    `scale` (N,) doubles the blocks that feed a tanh (see the module docstring): folded into
    the rows of W_hh without normalisation, into the norm's gain and bias with it. `norm` is
    None or (gain, bias, eps). The normalisation's forward and its vector-Jacobian product
    are ATen's fused layer-norm kernels (the ones F.layer_norm and its autograd run), called
    once per step; their statistics are kept per step in between.
    """

    def __init__(self, weight: Tensor, scale: Tensor | None, norm, B: int, T: int):
        self.weight, self.norm = weight, norm
        N = weight.size(0)
        if norm is None:
            self.wt = (weight if scale is None else weight * scale[:, None]).t()
        else:
            gain, bias, self.eps = norm
            self.wt = weight.t()
            self.gain, self.bias = (gain, bias) if scale is None else (gain * scale, bias * scale)
            self.raw = weight.new_empty(B, T, N)                       # W_hh h before the norm
            self.raw_ = self.raw.unbind(1)
            self.stats: list = [None] * T

    def add_(self, t: int, h: Tensor, a: Tensor) -> Tensor:
        """a (B, N) += step t's recurrent part (scaled), for the state h the products see."""
        if self.norm is None:
            return a.addmm_(h, self.wt)
        return a.add_(self._normed(t, h))

    def into(self, t: int, h: Tensor, bias: Tensor | None, out: Tensor) -> Tensor:
        """out (B, N) = step t's recurrent part, with `bias` where there is no norm."""
        if self.norm is None:
            return torch.addmm(bias, h, self.wt, out=out)
        return out.copy_(self._normed(t, h))

    def _normed(self, t: int, h: Tensor) -> Tensor:
        r = torch.mm(h, self.wt, out=self.raw_[t])
        y, mean, rstd = torch.native_layer_norm(r, (r.size(1),), self.gain, self.bias, self.eps)
        self.stats[t] = mean, rstd
        return y

    # backward ------------------------------------------------------------------------------

    def start_backward(self) -> None:
        if self.norm is not None:
            self.draw = torch.empty_like(self.raw)
            self.draw_ = self.draw.unbind(1)
            self.dgain = self.weight.new_zeros(self.weight.size(0))
            self.dbias = self.weight.new_zeros(self.weight.size(0))

    def source(self, t: int, d: Tensor) -> Tensor:
        """Given d, the gradient of step t's recurrent part (unscaled), the gradient of W_hh h,
        the (B, N) matrix whose product with W_hh is the state's gradient."""
        if self.norm is None:
            return d
        mean, rstd = self.stats[t]
        gain, bias, _ = self.norm
        dr, dg, db = torch.ops.aten.native_layer_norm_backward(
            d, self.raw_[t], [d.size(1)], mean, rstd, gain, bias, [True, True, True])
        self.dgain.add_(dg)
        self.dbias.add_(db)
        return self.draw_[t].copy_(dr)

    def flat_sources(self, d: Tensor) -> Tensor:
        """(B*T, N): every step's source, given the (B, T, N) buffer of the d's."""
        src = d if self.norm is None else self.draw
        return src.view(-1, src.size(-1))


# ------------------------------------------------------------------------------------------
# Elman: h_t = act(xp_t + W_hh h_{t-1} + b_hh)
# ------------------------------------------------------------------------------------------

class _ElmanFn(torch.autograd.Function):
    @staticmethod
    def forward(ctx, projected, h0, weight_hh, bias_hh, ln_gain, ln_bias, mask, relu: bool, reverse: bool, eps):
        B, T, H = projected.shape
        m1, _, two = _consts(projected)
        # the buffer becomes the outputs: pre-activations (doubled for tanh), then h_t in place
        out = _gate_buffer(projected, bias_hh, None if relu else two)
        norm = None if ln_gain is None else (ln_gain, ln_bias, eps)
        rec = _Recurrent(weight_hh, None if relu else projected.new_full((H,), 2.0), norm, B, T)
        hs = out.unbind(1)
        h_in = _entering(hs, h0, reverse)
        for t in _steps(T, reverse):
            h = rec.add_(t, _masked(h_in[t], mask), hs[t])
            if relu:
                h.relu_()
            else:
                torch.add(m1, h.sigmoid_(), alpha=2, out=h)            # tanh
        ctx.save_for_backward(weight_hh, mask, h0, out)
        ctx.rec, ctx.relu, ctx.reverse = rec, relu, reverse
        return out, hs[0 if reverse else T - 1].clone()

    @staticmethod
    @torch.autograd.function.once_differentiable
    def backward(ctx, g_out, g_final):
        weight_hh, mask, h0, out = ctx.saved_tensors
        rec, reverse = ctx.rec, ctx.reverse
        B, T, H = out.shape
        # act'(z) from the outputs, all steps at once: 1[h > 0] for relu, 1 - h² for tanh
        slope = (out > 0).to(out.dtype) if ctx.relu else torch.addcmul(_consts(out)[1], out, out, value=-1)
        slopes = slope.unbind(1)
        dz = torch.empty_like(out)                                     # dZ (B, T, H)
        dzs, douts = dz.unbind(1), g_out.unbind(1)
        rec.start_backward()
        src = None                                                     # what the next dh comes from
        for t in _grad_steps(T, reverse):
            dh = _state_grad(douts[t] + g_final if src is None else douts[t], src, weight_hh, mask)
            src = rec.source(t, torch.mul(dh, slopes[t], out=dzs[t]))
        dh0 = _masked(torch.mm(src, weight_hh), mask)
        n = ctx.needs_input_grad
        dw = rec.flat_sources(dz).t() @ _seen_flat(_entering(out.unbind(1), h0, reverse), mask) if n[2] else None
        db = dz.view(B * T, H).sum(0) if n[3] else None
        dg, dbn = (rec.dgain, rec.dbias) if rec.norm is not None else (None, None)
        return dz, dh0, dw, db, dg, dbn, None, None, None, None


# ------------------------------------------------------------------------------------------
# Jordan: h_t = tanh(xp_t + W_hh y_{t-1} + b_hh),  y_t = tanh(W_ho h_t + b_o)
# ------------------------------------------------------------------------------------------

class _JordanFn(torch.autograd.Function):
    @staticmethod
    def forward(ctx, projected, y0, weight_hh, bias_hh, weight_ho, bias_o, ln_gain, ln_bias, mask,
                reverse: bool, eps):
        B, T, H = projected.shape
        m1, _, two = _consts(projected)
        hid = _gate_buffer(projected, bias_hh, two)                   # h_t, doubled pre-activations first
        out = torch.empty_like(hid)                                   # y_t
        norm = None if ln_gain is None else (ln_gain, ln_bias, eps)
        rec = _Recurrent(weight_hh, projected.new_full((H,), 2.0), norm, B, T)
        wot, bo = (weight_ho * 2).t(), bias_o * 2
        hs, ys = hid.unbind(1), out.unbind(1)
        y_in = _entering(ys, y0, reverse)
        for t in _steps(T, reverse):
            h = rec.add_(t, _masked(y_in[t], mask), hs[t]).sigmoid_()
            torch.add(m1, h, alpha=2, out=h)
            y = torch.addmm(bo, h, wot, out=ys[t]).sigmoid_()
            torch.add(m1, y, alpha=2, out=y)
        ctx.save_for_backward(weight_hh, weight_ho, mask, y0, out)
        ctx.hid, ctx.rec, ctx.reverse = hid, rec, reverse
        return out, ys[0 if reverse else T - 1].clone()

    @staticmethod
    @torch.autograd.function.once_differentiable
    def backward(ctx, g_out, g_final):
        weight_hh, weight_ho, mask, y0, out = ctx.saved_tensors
        hid, rec, reverse = ctx.hid, ctx.rec, ctx.reverse
        B, T, H = out.shape
        one = _consts(out)[1]
        slope_y = torch.addcmul(one, out, out, value=-1).unbind(1)    # 1 - y²
        slope_h = torch.addcmul(one, hid, hid, value=-1).unbind(1)    # 1 - h²
        da = torch.empty_like(out)                                     # d pre-activation of y
        dz = torch.empty_like(out)                                     # d pre-activation of h
        das, dzs, douts = da.unbind(1), dz.unbind(1), g_out.unbind(1)
        rec.start_backward()
        src = None
        for t in _grad_steps(T, reverse):
            dy = _state_grad(douts[t] + g_final if src is None else douts[t], src, weight_hh, mask)
            torch.mul(dy, slope_y[t], out=das[t])
            src = rec.source(t, torch.mul(torch.mm(das[t], weight_ho), slope_h[t], out=dzs[t]))
        dy0 = _masked(torch.mm(src, weight_hh), mask)
        fa = da.view(B * T, H)
        n = ctx.needs_input_grad
        dw = rec.flat_sources(dz).t() @ _seen_flat(_entering(out.unbind(1), y0, reverse), mask) if n[2] else None
        db = dz.view(B * T, H).sum(0) if n[3] else None
        dwo = fa.t() @ hid.view(B * T, H) if n[4] else None
        dbo = fa.sum(0) if n[5] else None
        dg, dbn = (rec.dgain, rec.dbias) if rec.norm is not None else (None, None)
        return dz, dy0, dw, db, dwo, dbo, dg, dbn, None, None, None


# ------------------------------------------------------------------------------------------
# LSTM (plain, peephole, coupled); gate blocks in the caller's order i, f, g, o (coupled i, g, o)
# ------------------------------------------------------------------------------------------

class _LSTMFn(torch.autograd.Function):
    @staticmethod
    def forward(ctx, projected, h0, c0, weight_hh, bias_hh, w_ci, w_cf, w_co, ln_gain, ln_bias, lnc_gain,
                lnc_bias, mask, coupled: bool, peephole: bool, reverse: bool, eps, eps_c):
        B, T, GH = projected.shape
        H = h0.size(1)
        ig = 1 if coupled else 2                                       # the g block
        io = GH - H                                                    # the o block
        m1, _, two = _consts(projected)
        scale = _scale(GH, H, ig, projected)                          # g pre-activation doubled
        act = _gate_buffer(projected, bias_hh, scale)                 # pre-activations -> activations
        rec = _Recurrent(weight_hh, scale, None if ln_gain is None else (ln_gain, ln_bias, eps), B, T)
        norm_c = lnc_gain is not None                                  # tanh(LN(c_t)) (Ba et al. 2016)
        if norm_c:
            gain_c, bias_c, stats_c = lnc_gain * 2, lnc_bias * 2, [None] * T
        cell = projected.new_empty(B, T, H)                            # c_t
        tanh_c = projected.new_empty(B, T, H)                          # tanh(c_t), or tanh(LN(c_t))
        out = projected.new_empty(B, T, H)                             # h_t
        a_, i_, g_, o_ = act.unbind(1), _cols(act, 0, H), _cols(act, ig * H, (ig + 1) * H), _cols(act, io, GH)
        f_ = None if coupled else _cols(act, H, 2 * H)
        sig_ = _cols(act, 0, io)                                       # every gate but o (peephole)
        cs, tcs, hs = cell.unbind(1), tanh_c.unbind(1), out.unbind(1)
        c_in, h_in = _entering(cs, c0, reverse), _entering(hs, h0, reverse)
        w_cif = torch.stack([w_ci, w_cf]).unsqueeze(0) if peephole and not coupled else None  # (1, 2, H)
        tmp = projected.new_empty(B, H)
        for t in _steps(T, reverse):
            a, i, g, o, c, cp = a_[t], i_[t], g_[t], o_[t], cs[t], c_in[t]
            rec.add_(t, _masked(h_in[t], mask), a)
            if peephole:                                               # i (, f) see c_{t-1}
                if coupled:
                    i.addcmul_(cp, w_ci)
                else:
                    a[:, :2 * H].view(B, 2, H).addcmul_(cp.unsqueeze(1), w_cif)
                sig_[t].sigmoid_()
            else:
                a.sigmoid_()                                           # all gates, g doubled
            torch.add(m1, g, alpha=2, out=g)                           # g = tanh(z_g)
            if coupled:                                                # c = (1 - i) c_prev + i g
                torch.addcmul(cp, i, torch.sub(g, cp, out=tmp), out=c)
            else:                                                      # c = f c_prev + i g
                torch.mul(f_[t], cp, out=c).addcmul_(i, g)
            if peephole:                                               # o sees c_t
                o.addcmul_(c, w_co).sigmoid_()
            if norm_c:
                y, mean, rstd = torch.native_layer_norm(c, (H,), gain_c, bias_c, eps_c)
                stats_c[t] = mean, rstd
                tc = torch.sigmoid(y, out=tcs[t])
            else:
                tc = torch.mul(c, two, out=tcs[t]).sigmoid_()
            torch.add(m1, tc, alpha=2, out=tc)                         # tanh(c_t)
            torch.mul(o, tc, out=hs[t])
        ctx.save_for_backward(weight_hh, w_ci, w_cf, w_co, lnc_gain, lnc_bias, mask, h0, c0, out)
        ctx.bufs = act, cell, tanh_c, rec, (stats_c if norm_c else None)
        ctx.coupled, ctx.peephole, ctx.reverse = coupled, peephole, reverse
        last = 0 if reverse else T - 1
        return out, hs[last].clone(), cs[last].clone()

    @staticmethod
    @torch.autograd.function.once_differentiable
    def backward(ctx, g_out, g_hT, g_cT):
        weight_hh, w_ci, w_cf, w_co, lnc_gain, lnc_bias, mask, h0, c0, out = ctx.saved_tensors
        act, cell, tanh_c, rec, stats_c = ctx.bufs
        coupled, peephole, reverse = ctx.coupled, ctx.peephole, ctx.reverse
        B, T, GH = act.shape
        H = out.size(2)
        ig, io = (1 if coupled else 2), GH - H
        one = _consts(act)[1]
        dz = torch.empty_like(act)                                     # dZ (B, T, G*H)
        a_, i_, g_, o_ = act.unbind(1), _cols(act, 0, H), _cols(act, ig * H, (ig + 1) * H), _cols(act, io, GH)
        f_ = None if coupled else _cols(act, H, 2 * H)
        d_, di_, dg_, do_ = dz.unbind(1), _cols(dz, 0, H), _cols(dz, ig * H, (ig + 1) * H), _cols(dz, io, GH)
        df_ = None if coupled else _cols(dz, H, 2 * H)
        cs, tcs, hs, douts = cell.unbind(1), tanh_c.unbind(1), out.unbind(1), g_out.unbind(1)
        c_in = _entering(cs, c0, reverse)
        ds = act.new_empty(B, GH)                                      # slope of every gate's activation
        ds_g, ds_o, ds_io = ds[:, ig * H:(ig + 1) * H], ds[:, io:], ds[:, :io]
        dio_ = _cols(dz, 0, io)                                        # every gate but o
        k = act.new_empty(B, H)
        dc = g_cT.clone()
        if stats_c is not None:
            dgain_c, dbias_c = torch.zeros_like(lnc_gain), torch.zeros_like(lnc_bias)
        rec.start_backward()
        src = None                                                     # what the next dh comes from
        for t in _grad_steps(T, reverse):
            a, d, i, g, o, cp, tc = a_[t], d_[t], i_[t], g_[t], o_[t], c_in[t], tcs[t]
            dh = _state_grad(douts[t] + g_hT if src is None else douts[t], src, weight_hh, mask)
            torch.addcmul(a, a, a, value=-1, out=ds)                   # σ(1 - σ)
            torch.addcmul(one, g, g, value=-1, out=ds_g)               # 1 - g² for g
            torch.mul(dh, tc, out=do_[t])                              # dzo = dh tanh(c) σ'(zo)
            if peephole:
                do_[t].mul_(ds_o)
            # dc += dh o (1 - tanh² c) = dh (o - h tanh c)   [through LN_c if normalised]
            torch.addcmul(o, hs[t], tc, value=-1, out=k)
            if stats_c is None:
                dc.addcmul_(dh, k)
            else:
                mean, rstd = stats_c[t]
                dcn, dgc, dbc = torch.ops.aten.native_layer_norm_backward(
                    k.mul_(dh), cs[t], [H], mean, rstd, lnc_gain, lnc_bias, [True, True, True])
                dc.add_(dcn)
                dgain_c.add_(dgc)
                dbias_c.add_(dbc)
            if peephole:                                               # (+ dzo w_co through the peephole)
                dc.addcmul_(do_[t], w_co)
            if coupled:
                # c = c_prev + i (g - c_prev):  dzi = dc (g - c_prev) σ'(zi),  dzg = dc i tanh'(zg)
                torch.sub(g, cp, out=di_[t]).mul_(dc)
                torch.mul(dc, i, out=dg_[t])
                dc.addcmul_(dc, i, value=-1)                           # dc_prev = dc (1 - i)
            else:
                # dzi = dc g σ'(zi),  dzf = dc c_prev σ'(zf),  dzg = dc i tanh'(zg)
                torch.mul(dc, g, out=di_[t])
                torch.mul(dc, cp, out=df_[t])
                torch.mul(dc, i, out=dg_[t])
                dc.mul_(f_[t])                                         # dc_prev = dc f
            if peephole:                                               # times each gate's slope
                dio_[t].mul_(ds_io)
                dc.addcmul_(di_[t], w_ci)                              # c_prev fed i (, f)
                if not coupled:
                    dc.addcmul_(df_[t], w_cf)
            else:
                d.mul_(ds)
            src = rec.source(t, d)
        dh0 = _masked(torch.mm(src, weight_hh), mask)
        n = ctx.needs_input_grad
        dw = rec.flat_sources(dz).t() @ _seen_flat(_entering(hs, h0, reverse), mask) if n[3] else None
        db = dz.view(B * T, GH).sum(0) if n[4] else None
        dci = dcf = dco = None
        if peephole:
            c_prev = torch.stack(c_in, 1)
            dci = (dz[:, :, :H] * c_prev).sum((0, 1))
            if not coupled:
                dcf = (dz[:, :, H:2 * H] * c_prev).sum((0, 1))
            dco = (dz[:, :, io:] * cell).sum((0, 1))
        dg = dbn = dgc = dbc = None
        if rec.norm is not None:
            dg, dbn = rec.dgain, rec.dbias
        if stats_c is not None:
            dgc, dbc = dgain_c, dbias_c
        return (dz, dh0, dc, dw, db, dci, dcf, dco, dg, dbn, dgc, dbc) + (None,) * 6


# ------------------------------------------------------------------------------------------
# GRU, PyTorch form:  n = tanh(xn + r (W_hn h + b_hn)),  h = n + u (h_prev - n);  blocks r, u, n
# (layer-normalised: LN(W_hh h) in place of W_hh h + b_hh)
# ------------------------------------------------------------------------------------------

class _GRUTorchFn(torch.autograd.Function):
    @staticmethod
    def forward(ctx, projected, h0, weight_hh, bias_hh, ln_gain, ln_bias, mask, reverse: bool, eps):
        B, T, GH = projected.shape
        H = GH // 3
        H2 = 2 * H
        m1, _, two = _consts(projected)
        act = _gate_buffer(projected, None, _scale(GH, H, 2, projected))   # xn doubled
        rec = projected.new_empty(B, T, GH)                            # the recurrent part per step
        recur = _Recurrent(weight_hh, None, None if ln_gain is None else (ln_gain, ln_bias, eps), B, T)
        out = projected.new_empty(B, T, H)
        tmp = projected.new_empty(B, H)
        ru_, n_, r_, u_ = _cols(act, 0, H2), _cols(act, H2, GH), _cols(act, 0, H), _cols(act, H, H2)
        rec_, recru_, hn_ = rec.unbind(1), _cols(rec, 0, H2), _cols(rec, H2, GH)
        hs = out.unbind(1)
        h_in = _entering(hs, h0, reverse)
        for t in _steps(T, reverse):
            h, n = h_in[t], n_[t]
            recur.into(t, _masked(h, mask), bias_hh, rec_[t])
            ru_[t].add_(recru_[t]).sigmoid_()                          # r, u
            n.addcmul_(r_[t], hn_[t], value=2).sigmoid_()
            torch.add(m1, n, alpha=2, out=n)                           # n = tanh(xn + r hn)
            torch.addcmul(n, u_[t], torch.sub(h, n, out=tmp), out=hs[t])   # h = n + u (h_prev - n)
        ctx.save_for_backward(weight_hh, mask, h0, out)
        ctx.bufs, ctx.reverse = (act, rec, recur), reverse
        return out, hs[0 if reverse else T - 1].clone()

    @staticmethod
    @torch.autograd.function.once_differentiable
    def backward(ctx, g_out, g_final):
        weight_hh, mask, h0, out = ctx.saved_tensors
        (act, rec, recur), reverse = ctx.bufs, ctx.reverse
        B, T, GH = act.shape
        H = GH // 3
        H2 = 2 * H
        one = _consts(act)[1]
        da = torch.empty_like(act)          # d of the recurrent part (W_hh h + b_hh, or its norm): r, u, n
        dxn = act.new_empty(B, T, H)        # d of the candidate's input pre-activation xn
        ru_, n_, r_, u_ = _cols(act, 0, H2), _cols(act, H2, GH), _cols(act, 0, H), _cols(act, H, H2)
        hn_ = _cols(rec, H2, GH)
        da_, dar_, dau_, daru_, dan_ = da.unbind(1), _cols(da, 0, H), _cols(da, H, H2), _cols(da, 0, H2), _cols(da, H2, GH)
        dxn_, douts = dxn.unbind(1), g_out.unbind(1)
        h_in = _entering(out.unbind(1), h0, reverse)
        k = act.new_empty(B, H2)
        recur.start_backward()
        src, carry = None, g_final          # carry: what reaches h_t besides W_hh: dout_t, u dh
        for t in _grad_steps(T, reverse):
            n, u, g = n_[t], u_[t], dxn_[t]
            dh = _state_grad(douts[t] + carry if src is None else carry, src, weight_hh, mask)
            ru = ru_[t]
            torch.addcmul(ru, ru, ru, value=-1, out=k)                 # σ' of r, u
            torch.addcmul(one, n, n, value=-1, out=g).mul_(dh)
            g.addcmul_(g, u, value=-1)                                 # dzn = dh (1-u)(1-n²)
            torch.sub(h_in[t], n, out=dau_[t]).mul_(dh)                # dzu = dh (h-n) σ'(u), below
            torch.mul(g, hn_[t], out=dar_[t])                          # dzr = dzn hn σ'(r), below
            daru_[t].mul_(k)
            torch.mul(g, r_[t], out=dan_[t])                           # d hn = dzn r
            src = recur.source(t, da_[t])
            nxt = _next_in_grad(t, T, reverse)
            carry = dh.mul_(u) if nxt is None else torch.addcmul(douts[nxt], dh, u)
        dh0 = _masked(torch.mm(src, weight_hh), mask).add_(carry)
        n_g = ctx.needs_input_grad
        dw = recur.flat_sources(da).t() @ _seen_flat(h_in, mask) if n_g[2] else None
        db = da.view(B * T, GH).sum(0) if n_g[3] else None
        dg, dbn = (recur.dgain, recur.dbias) if recur.norm is not None else (None, None)
        dproj = torch.cat([da[:, :, :H2], dxn], 2)
        return dproj, dh0, dw, db, dg, dbn, None, None, None


# ------------------------------------------------------------------------------------------
# GRU, Cho form:  n = tanh(xn + W_hn (r h) + b_hn),  h = n + u (h_prev - n);  blocks r, u, n
# ------------------------------------------------------------------------------------------

class _GRUChoFn(torch.autograd.Function):
    @staticmethod
    def forward(ctx, projected, h0, weight_hh, bias_hh, mask, reverse: bool):
        B, T, GH = projected.shape
        H = GH // 3
        H2 = 2 * H
        m1, _, two = _consts(projected)
        act = _gate_buffer(projected, bias_hh, _scale(GH, H, 2, projected))   # all of b_hh additive
        rs = projected.new_empty(B, T, H)                              # r ⊙ seen h, input of W_hn
        out = projected.new_empty(B, T, H)
        tmp = projected.new_empty(B, H)
        ru_, n_, r_, u_ = _cols(act, 0, H2), _cols(act, H2, GH), _cols(act, 0, H), _cols(act, H, H2)
        rs_, hs = rs.unbind(1), out.unbind(1)
        h_in = _entering(hs, h0, reverse)
        w_ru_t, w_n_t = weight_hh[:H2].t(), (weight_hh[H2:] * 2).t()
        for t in _steps(T, reverse):
            h, n = h_in[t], n_[t]
            seen = _masked(h, mask)
            ru_[t].addmm_(seen, w_ru_t).sigmoid_()                     # r, u
            n.addmm_(torch.mul(r_[t], seen, out=rs_[t]), w_n_t).sigmoid_()
            torch.add(m1, n, alpha=2, out=n)                           # tanh
            torch.addcmul(n, u_[t], torch.sub(h, n, out=tmp), out=hs[t])   # h = n + u (h_prev - n)
        ctx.save_for_backward(weight_hh, mask, h0, out)
        ctx.bufs, ctx.reverse = (act, rs), reverse
        return out, hs[0 if reverse else T - 1].clone()

    @staticmethod
    @torch.autograd.function.once_differentiable
    def backward(ctx, g_out, g_final):
        weight_hh, mask, h0, out = ctx.saved_tensors
        (act, rs), reverse = ctx.bufs, ctx.reverse
        B, T, GH = act.shape
        H = GH // 3
        H2 = 2 * H
        w_ru, w_n = weight_hh[:H2], weight_hh[H2:]
        one = _consts(act)[1]
        dz = torch.empty_like(act)                                     # r, u, n
        ru_, n_, r_, u_ = _cols(act, 0, H2), _cols(act, H2, GH), _cols(act, 0, H), _cols(act, H, H2)
        dr_, du_, dru_, dn_ = _cols(dz, 0, H), _cols(dz, H, H2), _cols(dz, 0, H2), _cols(dz, H2, GH)
        douts = g_out.unbind(1)
        h_in = _entering(out.unbind(1), h0, reverse)
        k = act.new_empty(B, H2)
        prev, carry, dseen = None, g_final, None
        for t in _grad_steps(T, reverse):
            n, u, h, g = n_[t], u_[t], h_in[t], dn_[t]
            if prev is None:
                dh = douts[t] + carry
            elif mask is None:
                dh = dseen.add_(carry)
            else:
                dh = torch.addcmul(carry, dseen, mask)
            ru = ru_[t]
            torch.addcmul(ru, ru, ru, value=-1, out=k)                 # σ' of r, u
            torch.addcmul(one, n, n, value=-1, out=g).mul_(dh)
            g.addcmul_(g, u, value=-1)                                 # dzn = dh (1-u)(1-n²)
            torch.sub(h, n, out=du_[t]).mul_(dh)                       # dzu = dh (h-n) σ'(u), below
            drs = torch.mm(g, w_n)                                     # d(r ⊙ seen)
            torch.mul(drs, _masked(h, mask), out=dr_[t])               # dzr = drs seen σ'(r), below
            dru_[t].mul_(k)
            dseen = torch.addmm(drs.mul_(r_[t]), dru_[t], w_ru)        # d seen = drs r + dz_ru W_ru
            prev = t
            nxt = _next_in_grad(t, T, reverse)
            carry = dh.mul_(u) if nxt is None else torch.addcmul(douts[nxt], dh, u)
        dh0 = _masked(dseen, mask).add_(carry)
        n_g = ctx.needs_input_grad
        dw = None
        if n_g[2]:
            flat = dz.view(B * T, GH)
            dw = torch.cat([flat[:, :H2].t() @ _seen_flat(h_in, mask), flat[:, H2:].t() @ rs.view(B * T, H)])
        db = dz.sum((0, 1)) if n_g[3] else None
        return dz, dh0, dw, db, None, None


# ------------------------------------------------------------------------------------------
# entry points
# ------------------------------------------------------------------------------------------

def _norm_ok(norm, size: int) -> bool:
    # an affine nn.LayerNorm over the last dimension only
    return (norm.weight is not None and norm.bias is not None
            and tuple(norm.normalized_shape) == (size,))


def supports(cell) -> bool:
    """True where run_sequence has a hand-written backward for this cell and its options:
    every ElmanCell (tanh, relu), JordanCell, LSTMCell (peephole, coupled) and GRUCell
    ('pytorch', 'cho'), with or without layer normalisation."""
    if not isinstance(cell, Cell):
        return False
    if type(cell) is ElmanCell and not (cell.act is torch.tanh or cell.act is torch.relu):
        return False
    if type(cell) is GRUCell and cell.form not in ("pytorch", "cho"):
        return False
    if type(cell) not in (ElmanCell, JordanCell, LSTMCell, GRUCell):
        return False
    if cell.layer_norm:
        if type(cell) is GRUCell and cell.form != "pytorch":
            return False
        if not _norm_ok(cell.norm_hh, cell.gates * cell.hidden_size):
            return False
        if type(cell) is LSTMCell and not _norm_ok(cell.norm_c, cell.hidden_size):
            return False
    return True


def _loop(cell, projected, state, reverse, mask):
    # the autograd loop, as RecurrentLayer runs it, for cells without a fast path
    outputs = []
    for t in _steps(projected.size(1), reverse):
        out, state = cell.step(projected[:, t], state, mask)
        outputs.append(out)
    if reverse:
        outputs.reverse()
    return torch.stack(outputs, dim=1), state


def run_sequence(cell, projected: Tensor, state, reverse: bool = False, mask: Tensor | None = None):
    """Run `cell` over a whole sequence: projected = cell.project(x) (B, T, G*H); state (B, H)
    or (h, c) for the LSTM; mask an optional recurrent-dropout mask (B, H).

    Returns (outputs (B, T, H), final state) as RecurrentLayer(cell, reverse) does, with
    gradients to `projected`, the initial state and the cell's recurrent parameters."""
    if projected.dim() != 3 or projected.size(1) == 0:
        raise ValueError(f"projected must be (B, T, G*H) with T >= 1, got {tuple(projected.shape)}")
    if not supports(cell):
        return _loop(cell, projected, state, reverse, mask)
    ln = cell.layer_norm
    gain, bias, eps = (cell.norm_hh.weight, cell.norm_hh.bias, cell.norm_hh.eps) if ln else (None, None, None)
    if isinstance(cell, LSTMCell):
        h0, c0 = state
        peep = cell.peephole
        gain_c, bias_c, eps_c = (cell.norm_c.weight, cell.norm_c.bias, cell.norm_c.eps) if ln else (None, None, None)
        out, h, c = _LSTMFn.apply(projected, h0, c0, cell.weight_hh, cell.bias_hh,
                                  cell.weight_ci if peep else None,
                                  cell.weight_cf if peep and not cell.coupled else None,
                                  cell.weight_co if peep else None, gain, bias, gain_c, bias_c, mask,
                                  cell.coupled, peep, reverse, eps, eps_c)
        return out, (h, c)
    if isinstance(cell, GRUCell):
        if cell.form == "pytorch":
            return _GRUTorchFn.apply(projected, state, cell.weight_hh, cell.bias_hh, gain, bias, mask, reverse, eps)
        return _GRUChoFn.apply(projected, state, cell.weight_hh, cell.bias_hh, mask, reverse)
    if isinstance(cell, JordanCell):
        return _JordanFn.apply(projected, state, cell.weight_hh, cell.bias_hh, cell.weight_ho, cell.bias_o,
                               gain, bias, mask, reverse, eps)
    return _ElmanFn.apply(projected, state, cell.weight_hh, cell.bias_hh, gain, bias, mask,
                          cell.act is torch.relu, reverse, eps)
