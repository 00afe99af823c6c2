"""Sequence-level recurrences with a hand-written backward (BPTT): seqlab's fast path.

`RecurrentLayer` runs `cell.step` T times under autograd, which records a dozen small
operations per step and replays them one by one in the backward pass. Here one
`torch.autograd.Function` per cell family runs the whole sequence instead (the GRUs' are in
models/kernels/fast_gru.py, the LSTM's in models/kernels/fast_lstm.py, the parts they share in
models/kernels/fast_parts.py).

forward   The time loop runs without a graph. The input projections, plus the recurrent
          bias where it is additive, are copied once into a gate buffer (T, B, G*H); each
          step adds its recurrent product in place (`addmm_` on the step's slice), applies
          one sigmoid to every gate at once and a few in-place elementwise operations, and
          writes h_t into an output buffer. Gate activations, cell states and tanh(c_t)
          stay in their buffers for the backward pass.

backward  Walks time in reverse computing only the gradients of the gate pre-activations,
          dZ_t (B, G*H), and of the states; one (B, G*H) x (G*H, H) product per step gives
          the recurrent part of dh_{t-1}. After the loop the weight gradients come from ONE
          large product,  dW_hh = Σ_t dZ_tᵀ h_{t-1} = dZ (T*B, G*H)ᵀ @ H_prev (T*B, H),
          db_hh = Σ dZ, and the gradient of the projected inputs is dZ itself (the caller's
          `cell.project` autograd turns it into dW_ih and dx).

The buffers are time major, so that every step works on contiguous (B, ·) blocks; the
caller's tensors stay batch first (see models/kernels/fast_parts.py for the layout and for how the
layer-normalised cells (Ba et al. 2016) take the same path: LN(W_hh h) in place of
W_hh h + b_hh, and for the LSTM tanh(LN(c_t)), with ATen's fused layer-norm kernels per
step and the norms' gain and bias gradients in one pass after the loop).

tanh is computed as 2σ(2x) - 1: on the project's CPU machine (AMD EPYC, PyTorch 2.13 with
MKL) torch.tanh took ~18-22 µs on a (32, 256) tensor against ~3-4 µs for torch.sigmoid. The
tanh gates' pre-activations are doubled where they are formed (their rows of W_hh and of
the bias, or the norm's gain and bias; their input slice in the one copy made before the
loop), one sigmoid covers all gates, and `add(-1, σ, alpha=2)` finishes the tanh. It is
the same function; float32 results differ from torch.tanh's by about 1e-7 absolute.

    supports(cell) -> bool
    run_sequence(cell, projected, state, reverse=False, mask=None) -> (out (B, T, H), final_state)
    run_layer(cell, x, state, reverse=False, mask=None) -> the same, from x (B, T, I)

The LSTMs (every option) run the same computation in C++ where seqlab's fused CPU kernels
are built (models/kernels/native: the time loop, one oneDNN matrix product and one fused pass over
the rows per step); fast_lstm._LSTMFn is what runs without them, on GPUs, and in dtypes other
than float32/float64. `run_layer` is the entry point from a layer's inputs: the projection on
oneDNN (models/kernels/onednn.py), then run_sequence, or, for a layer-normalised LSTM on the C++
kernels, one call that also normalises the projection.

`supports` is True for ElmanCell (tanh, relu), JordanCell, LSTMCell (plain, peephole,
coupled, both) and GRUCell ('pytorch', 'cho'), each with or without layer normalisation
(the 'cho' GRU has none). `run_sequence` computes what `RecurrentLayer(cell, reverse)`
computes, without zoneout or lengths (those stay on RecurrentLayer's loop); `mask` is the
optional recurrent-dropout mask (B, H) that `cell.step` takes. A cell it does not cover (a
subclass with its own step, say) runs the same autograd loop as RecurrentLayer, so
run_sequence is correct for every cell.

Measured (bench/speed.py, batch 32, 100 steps, hidden 256, forward + backward, on the
project's shared 2-core machine, interleaved runs): a loop of only this path's matrix products
(per step and after the loop) took as long as the whole of nn.LSTM (201 ms each, one thread),
so what separates the LSTM from nn.LSTM is the elementwise work, which oneDNN fuses into its
kernel and this path launches from Python, ~5-10 kernels per step in each direction. What did
not pay, for the record: torch.compile of a step's elementwise body (the compiled step cost
more than the eager calls it replaced: ~60 µs of call overhead per invocation against ~3 µs
per eager kernel); oneDNN's packed matrix product for the backward step (2-3% slower in the
layer than ATen's addmm); computing the backward's gate factors for all steps in large
kernels before the loop (the LSTM does so, with 4 small kernels per step instead of 10, but
the large passes are memory bound and the two came out even).
"""
from __future__ import annotations

import torch
from torch import Tensor

from seqlab.models.kernels import onednn
from seqlab.models.cells import Cell, ElmanCell, GRUCell, JordanCell, LSTMCell
from seqlab.models.kernels.fast_gru import _GRUChoFn, _GRUTorchFn
from seqlab.models.kernels.fast_lstm import run_lstm
from seqlab.models.kernels.native import lstm as native_lstm
from seqlab.models.kernels.fast_parts import (Recurrent, Seen, batch_first, consts, empty, entering, gate_buffer,
                                      grad_steps, masked, state_grad, steps)

__all__ = ["supports", "run_sequence", "run_layer"]


# ------------------------------------------------------------------------------------------
# Elman: h_t = act(xp_t + W_hh h_{t-1} + b_hh)
# ------------------------------------------------------------------------------------------

class _ElmanFn(torch.autograd.Function):
    @staticmethod
    def forward(ctx, projected, h0, weight_hh, bias_hh, ln_gain, ln_bias, mask, relu: bool, reverse: bool, eps):
        B, T, H = projected.shape
        m1, _, two = consts(projected)
        # the buffer becomes the outputs: pre-activations (doubled for tanh), then h_t in place
        out = gate_buffer(projected, bias_hh, None if relu else two)  # (T, B, H)
        norm = None if ln_gain is None else (ln_gain, ln_bias, eps)
        rec = Recurrent(weight_hh, None if relu else projected.new_full((H,), 2.0), norm, B, T)
        seen = Seen(mask, projected, T)
        hs = out.unbind(0)
        h_in = entering(hs, h0, reverse)
        for t in steps(T, reverse):
            h = rec.add_(t, seen(t, h_in[t]), hs[t])
            if relu:
                h.relu_()
            else:
                torch.add(m1, h.sigmoid_(), alpha=2, out=h)            # tanh
        ctx.save_for_backward(weight_hh, mask, h0)
        ctx.bufs, ctx.relu, ctx.reverse = (out, rec, seen), relu, reverse
        return batch_first(out), hs[0 if reverse else T - 1].clone()

    @staticmethod
    @torch.autograd.function.once_differentiable
    def backward(ctx, g_out, g_final):
        weight_hh, mask, h0 = ctx.saved_tensors
        (out, rec, seen), reverse = ctx.bufs, ctx.reverse
        T = out.size(0)
        # act'(z) from the outputs, all steps at once: 1[h > 0] for relu, 1 - h² for tanh
        slope = (out > 0).to(out.dtype) if ctx.relu else torch.addcmul(consts(out)[1], out, out, value=-1)
        slopes = slope.unbind(0)
        dz = empty(out.shape, out)                                     # dZ (T, B, H)
        dzs, douts = dz.unbind(0), g_out.unbind(1)
        rec.start_backward()
        src = None                                                     # what the next dh comes from
        for t in grad_steps(T, reverse):
            dh = state_grad(douts[t] + g_final if src is None else douts[t], src, weight_hh, mask)
            src = rec.source(t, torch.mul(dh, slopes[t], out=dzs[t]))
        dh0 = masked(torch.mm(src, weight_hh), mask)
        n = ctx.needs_input_grad
        dw = rec.flat_sources(dz).t() @ seen.flat(entering(out.unbind(0), h0, reverse)) if n[2] else None
        db = dz.sum((0, 1)) if n[3] else None
        dg, dbn = rec.norm_grads(dz)
        return dz.transpose(0, 1), dh0, dw, db, dg, dbn, None, None, None, None


# ------------------------------------------------------------------------------------------
# Jordan: h_t = tanh(xp_t + W_hh y_{t-1} + b_hh),  y_t = tanh(W_ho h_t + b_o)
# ------------------------------------------------------------------------------------------

class _JordanFn(torch.autograd.Function):
    @staticmethod
    def forward(ctx, projected, y0, weight_hh, bias_hh, weight_ho, bias_o, ln_gain, ln_bias, mask,
                reverse: bool, eps):
        B, T, H = projected.shape
        m1, _, two = consts(projected)
        hid = gate_buffer(projected, bias_hh, two)                    # h_t, doubled pre-activations first
        out = empty(hid.shape, hid)                                   # y_t (T, B, H)
        norm = None if ln_gain is None else (ln_gain, ln_bias, eps)
        rec = Recurrent(weight_hh, projected.new_full((H,), 2.0), norm, B, T)
        seen = Seen(mask, projected, T)
        wot, bo = (weight_ho * 2).t(), bias_o * 2
        hs, ys = hid.unbind(0), out.unbind(0)
        y_in = entering(ys, y0, reverse)
        for t in steps(T, reverse):
            h = rec.add_(t, seen(t, y_in[t]), hs[t]).sigmoid_()
            torch.add(m1, h, alpha=2, out=h)
            y = torch.addmm(bo, h, wot, out=ys[t]).sigmoid_()
            torch.add(m1, y, alpha=2, out=y)
        ctx.save_for_backward(weight_hh, weight_ho, mask, y0)
        ctx.bufs, ctx.reverse = (hid, out, rec, seen), reverse
        return batch_first(out), ys[0 if reverse else T - 1].clone()

    @staticmethod
    @torch.autograd.function.once_differentiable
    def backward(ctx, g_out, g_final):
        weight_hh, weight_ho, mask, y0 = ctx.saved_tensors
        (hid, out, rec, seen), reverse = ctx.bufs, ctx.reverse
        T, B, H = out.shape
        one = consts(out)[1]
        slope_y = torch.addcmul(one, out, out, value=-1).unbind(0)    # 1 - y²
        slope_h = torch.addcmul(one, hid, hid, value=-1).unbind(0)    # 1 - h²
        da = empty(out.shape, out)                                     # d pre-activation of y
        dz = empty(out.shape, out)                                     # d pre-activation of h
        das, dzs, douts = da.unbind(0), dz.unbind(0), g_out.unbind(1)
        rec.start_backward()
        src = None
        for t in grad_steps(T, reverse):
            dy = state_grad(douts[t] + g_final if src is None else douts[t], src, weight_hh, mask)
            torch.mul(dy, slope_y[t], out=das[t])
            src = rec.source(t, torch.mul(torch.mm(das[t], weight_ho), slope_h[t], out=dzs[t]))
        dy0 = masked(torch.mm(src, weight_hh), mask)
        fa = da.view(T * B, H)
        n = ctx.needs_input_grad
        dw = rec.flat_sources(dz).t() @ seen.flat(entering(out.unbind(0), y0, reverse)) if n[2] else None
        db = dz.sum((0, 1)) if n[3] else None
        dwo = fa.t() @ hid.view(T * B, H) if n[4] else None
        dbo = fa.sum(0) if n[5] else None
        dg, dbn = rec.norm_grads(dz)
        return dz.transpose(0, 1), dy0, dw, db, dwo, dbo, dg, dbn, None, None, None


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
    for t in steps(projected.size(1), reverse):
        out, state = cell.step(projected[:, t], state, mask)
        outputs.append(out)
    if reverse:
        outputs.reverse()
    return torch.stack(outputs, dim=1), state


def _to_float(state):
    return tuple(s.float() for s in state) if isinstance(state, tuple) else state.float()


def run_sequence(cell, projected: Tensor, state, reverse: bool = False, mask: Tensor | None = None):
    """Run `cell` over a whole sequence: projected = cell.project(x) (B, T, G*H); state (B, H)
    or (h, c) for the LSTM; mask an optional recurrent-dropout mask (B, H).

    Returns (outputs (B, T, H), final state) as RecurrentLayer(cell, reverse) does, with
    gradients to `projected`, the initial state and the cell's recurrent parameters."""
    if projected.dim() != 3 or projected.size(1) == 0:
        raise ValueError(f"projected must be (B, T, G*H) with T >= 1, got {tuple(projected.shape)}")
    if not supports(cell):
        return _loop(cell, projected, state, reverse, mask)
    device = projected.device.type
    if torch.is_autocast_enabled(device):
        # Under autocast (train.precision=bf16) the input projection ran in low precision; the
        # recurrence itself runs in float32, the parameters' dtype, as a custom Function must
        # (its in-place and out= kernels take one dtype), and as is safer for a sum over time.
        with torch.autocast(device, enabled=False):
            return run_sequence(cell, projected.float(), _to_float(state), reverse,
                                None if mask is None else mask.float())
    ln = cell.layer_norm
    gain, bias, eps = (cell.norm_hh.weight, cell.norm_hh.bias, cell.norm_hh.eps) if ln else (None, None, None)
    if isinstance(cell, LSTMCell):
        return run_lstm(cell, projected, state, reverse, mask)
    if isinstance(cell, GRUCell):
        if cell.form == "pytorch":
            return _GRUTorchFn.apply(projected, state, cell.weight_hh, cell.bias_hh, gain, bias, mask, reverse, eps)
        return _GRUChoFn.apply(projected, state, cell.weight_hh, cell.bias_hh, mask, reverse)
    if isinstance(cell, JordanCell):
        return _JordanFn.apply(projected, state, cell.weight_hh, cell.bias_hh, cell.weight_ho, cell.bias_o,
                               gain, bias, mask, reverse, eps)
    return _ElmanFn.apply(projected, state, cell.weight_hh, cell.bias_hh, gain, bias, mask,
                          cell.act is torch.relu, reverse, eps)


def run_layer(cell, x: Tensor, state, reverse: bool = False, mask: Tensor | None = None):
    """What RecurrentLayer's fast path computes from the layer's inputs x (B, T, I):
    run_sequence(cell, cell.project(x), ...), with the projection's product on oneDNN
    (models/kernels/onednn.py) and, for a layer-normalised LSTM on the fused C++ kernels, the input
    projection's norm fused into the same call (one pass before the time loop, one after)."""
    if (isinstance(cell, LSTMCell) and cell.layer_norm and supports(cell) and _norm_ok(cell.norm_ih, cell.weight_ih.size(0))
            and not torch.is_autocast_enabled(x.device.type) and native_lstm.usable(x)):
        norm = cell.norm_ih
        return run_lstm(cell, onednn.linear(x, cell.weight_ih), state, reverse, mask,   # W_ih x, then LN in C++
                        in_norm=(norm.weight, norm.bias, norm.eps))
    return run_sequence(cell, onednn.project(cell, x), state, reverse, mask)
