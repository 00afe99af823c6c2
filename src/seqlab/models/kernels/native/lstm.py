"""The autograd Function over the fused CPU LSTM (lstm.cpp): what models/kernels/fast.py's _LSTMFn
computes, with the time loop and every step's elementwise work in C++.

    usable(projected) -> bool      the kernels are loaded and take these tensors (CPU, float32/64)
    run(projected, h0, c0, weight_hh, bias_hh, w_ci, w_cf, w_co, ln_gain, ln_bias, eps,
        lnc_gain, lnc_bias, eps_c, mask, coupled, reverse, in_norm=None) -> (out (B, T, H), h_T, c_T)

in_norm = (gain, bias, eps) fuses the layer-normalised cell's input norm, LN(W_ih x_t), into
the same call: `projected` is then the raw product W_ih x, normalised row by row in C++
before the time loop and differentiated after it, in place of nn.LayerNorm's separate
passes and buffers.
"""
from __future__ import annotations

import torch
from torch import Tensor

from seqlab.models.kernels import native


def usable(projected: Tensor) -> bool:
    # under torch.compile (train.compile=true) the Python path runs: dynamo traces it, while
    # this library's ops are opaque to it
    if torch.compiler.is_compiling():
        return False
    return (projected.device.type == "cpu" and projected.dtype in (torch.float32, torch.float64)
            and native.available())


def _none_if_empty(t: Tensor) -> Tensor | None:
    return None if t.numel() == 0 else t


class _LSTMNativeFn(torch.autograd.Function):
    @staticmethod
    def forward(ctx, projected, h0, c0, weight_hh, bias_hh, w_ci, w_cf, w_co, ln_gain, ln_bias, lnc_gain,
                lnc_bias, in_gain, in_bias, mask, coupled: bool, reverse: bool, eps, eps_c, eps_in):
        projected = projected.contiguous()
        act = torch.ops.seqlab_native.time_major(projected, bias_hh)   # (T, B, G*H), pooled
        h0, c0 = h0.contiguous(), c0.contiguous()
        cell, tanh_c, out, raw, st_hh, st_c, seen, st_in = torch.ops.seqlab_native.lstm_forward(
            act, h0, c0, weight_hh, w_ci, w_cf, w_co, ln_gain, ln_bias, eps or 0.0, lnc_gain, lnc_bias,
            eps_c or 0.0, mask, coupled, reverse, in_gain, in_bias, eps_in or 0.0)
        ctx.save_for_backward(h0, c0, weight_hh, w_ci, w_cf, w_co, ln_gain, lnc_gain, mask, in_gain,
                              projected if in_gain is not None else None)
        ctx.bufs = act, cell, tanh_c, out, raw, st_hh, st_c, seen, st_in
        ctx.coupled, ctx.reverse = coupled, reverse
        last = 0 if reverse else out.size(0) - 1
        return out.transpose(0, 1).contiguous(), out[last].clone(), cell[last].clone()     # (B, T, H) for the caller

    @staticmethod
    @torch.autograd.function.once_differentiable
    def backward(ctx, g_out, g_hT, g_cT):
        h0, c0, weight_hh, w_ci, w_cf, w_co, ln_gain, lnc_gain, mask, in_gain, projected = ctx.saved_tensors
        act, cell, tanh_c, out, raw, st_hh, st_c, seen, st_in = ctx.bufs
        g_out = torch.ops.seqlab_native.time_major(g_out, None)        # (T, B, H), pooled
        dz, dh0, dc0, dw, dci, dcf, dco, dg, dbn, dgc, dbc, dgi, dbi = torch.ops.seqlab_native.lstm_backward(
            g_out, g_hT.contiguous(), g_cT.contiguous(), act, cell, tanh_c, out, raw, st_hh, st_c, seen,
            h0, c0, weight_hh, w_ci, w_cf, w_co, ln_gain, lnc_gain, mask, ctx.coupled, ctx.reverse,
            projected, in_gain, st_in)
        n = ctx.needs_input_grad
        db = dz.sum((0, 1)) if n[4] else None
        grads = [_none_if_empty(g) for g in (dci, dcf, dco, dg, dbn, dgc, dbc, dgi, dbi)]
        return (dz.transpose(0, 1), dh0, dc0, dw if n[3] else None, db, *grads) + (None,) * 6


def run(projected, h0, c0, weight_hh, bias_hh, w_ci, w_cf, w_co, ln_gain, ln_bias, eps, lnc_gain, lnc_bias,
        eps_c, mask, coupled: bool, reverse: bool, in_norm=None):
    in_gain, in_bias, eps_in = in_norm if in_norm is not None else (None, None, None)
    return _LSTMNativeFn.apply(projected, h0, c0, weight_hh, bias_hh, w_ci, w_cf, w_co, ln_gain, ln_bias,
                               lnc_gain, lnc_bias, in_gain, in_bias, mask, coupled, reverse, eps, eps_c, eps_in)
