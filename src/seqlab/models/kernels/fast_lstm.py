"""The LSTM's sequence-level recurrence with a hand-written backward (plain, peephole,
coupled, layer-normalised), the Python half of models/kernels/fast.py's fast path; and `run_lstm`,
which hands the same computation to the fused C++ kernels (models/kernels/native) where they run.
The layout and the conventions (time-major buffers, tanh as 2σ(2x) - 1) are fast.py's.

    run_lstm(cell, projected, (h0, c0), reverse, mask, in_norm=None) -> (out (B, T, H), (h_T, c_T))

in_norm = (gain, bias, eps): `projected` is the raw W_ih x, and its layer norm runs inside
the C++ call (the caller has checked that the kernels take these tensors).
"""
from __future__ import annotations

import torch

from seqlab.models.kernels.fast_parts import (Recurrent, Seen, batch_first, consts, cols, empty, entering, gate_buffer,
                                      grad_steps, masked, norm_forward, norm_input_grad, norm_param_grads,
                                      scale, state_grad, steps)
from seqlab.models.kernels.native import lstm as native_lstm


def run_lstm(cell, projected, state, reverse: bool, mask, in_norm=None):
    """An LSTMCell over a sequence: on the C++ kernels where they take `projected`, else _LSTMFn."""
    h0, c0 = state
    peep, coupled = cell.peephole, cell.coupled
    w_ci = cell.weight_ci if peep else None
    w_cf = cell.weight_cf if peep and not coupled else None
    w_co = cell.weight_co if peep else None
    ln = cell.layer_norm
    gain, bias, eps = (cell.norm_hh.weight, cell.norm_hh.bias, cell.norm_hh.eps) if ln else (None, None, None)
    gain_c, bias_c, eps_c = (cell.norm_c.weight, cell.norm_c.bias, cell.norm_c.eps) if ln else (None, None, None)
    if in_norm is not None or native_lstm.usable(projected):
        out, h, c = native_lstm.run(projected, h0, c0, cell.weight_hh, cell.bias_hh, w_ci, w_cf, w_co, gain, bias, eps,
                                    gain_c, bias_c, eps_c, mask, coupled, reverse, in_norm=in_norm)
    else:
        out, h, c = _LSTMFn.apply(projected, h0, c0, cell.weight_hh, cell.bias_hh, w_ci, w_cf, w_co, gain, bias,
                                  gain_c, bias_c, mask, coupled, peep, reverse, eps, eps_c)
    return out, (h, c)


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
        m1, _, two = consts(projected)
        sc = scale(GH, H, ig, projected)                               # g pre-activation doubled
        act = gate_buffer(projected, bias_hh, sc)                      # (T, B, G*H) pre-activations -> activations
        rec = Recurrent(weight_hh, sc, None if ln_gain is None else (ln_gain, ln_bias, eps), B, T)
        seen = Seen(mask, projected, T)
        norm_c = lnc_gain is not None                                  # tanh(LN(c_t)) (Ba et al. 2016)
        if norm_c:
            gain_c, bias_c, means_c, rstds_c = lnc_gain * 2, lnc_bias * 2, [None] * T, [None] * T
        cell = empty((T, B, H), projected)                            # c_t
        tanh_c = empty((T, B, H), projected)                          # tanh(c_t), or tanh(LN(c_t))
        out = empty((T, B, H), projected)                             # h_t
        a_, i_, g_, o_ = act.unbind(0), cols(act, 0, H), cols(act, ig * H, (ig + 1) * H), cols(act, io, GH)
        f_ = None if coupled else cols(act, H, 2 * H)
        sig_ = cols(act, 0, io)                                        # every gate but o (peephole)
        cs, tcs, hs = cell.unbind(0), tanh_c.unbind(0), out.unbind(0)
        c_in, h_in = entering(cs, c0, reverse), entering(hs, h0, reverse)
        w_cif = torch.stack([w_ci, w_cf]).unsqueeze(0) if peephole and not coupled else None  # (1, 2, H)
        tmp = projected.new_empty(B, H)
        for t in steps(T, reverse):
            a, i, g, o, c, cp = a_[t], i_[t], g_[t], o_[t], cs[t], c_in[t]
            rec.add_(t, seen(t, h_in[t]), a)
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
                tc = torch.sigmoid(norm_forward(c, gain_c, bias_c, eps_c, means_c, rstds_c, t), out=tcs[t])
            else:
                tc = torch.mul(c, two, out=tcs[t]).sigmoid_()
            torch.add(m1, tc, alpha=2, out=tc)                         # tanh(c_t)
            torch.mul(o, tc, out=hs[t])
        ctx.save_for_backward(weight_hh, w_ci, w_cf, w_co, lnc_gain, mask, h0, c0)
        ctx.bufs = act, cell, tanh_c, out, rec, seen, ((means_c, rstds_c) if norm_c else None)
        ctx.coupled, ctx.peephole, ctx.reverse = coupled, peephole, reverse
        last = 0 if reverse else T - 1
        return batch_first(out), hs[last].clone(), cs[last].clone()

    @staticmethod
    @torch.autograd.function.once_differentiable
    def backward(ctx, g_out, g_hT, g_cT):
        weight_hh, w_ci, w_cf, w_co, lnc_gain, mask, h0, c0 = ctx.saved_tensors
        act, cell, tanh_c, out, rec, seen, stats_c = ctx.bufs
        coupled, peephole, reverse = ctx.coupled, ctx.peephole, ctx.reverse
        T, B, GH = act.shape
        H = out.size(2)
        ig, io = (1 if coupled else 2), GH - H
        one = consts(act)[1]
        # 1. Every factor of dZ that does not depend on dh or dc, for all steps at once (a few
        #    large kernels instead of ~6 small ones per step): dZ starts as these and the loop
        #    scales it by dh (o) or dc (the gates before o: i, f, g or i, g, a contiguous block).
        #      dzi = dc g σ'(zi)   [coupled: dc (g - c_prev) σ'(zi)]     dzf = dc c_prev σ'(zf)
        #      dzg = dc i (1 - g²)     dzo = dh tanh(c) σ'(zo)     dc += dh o (1 - tanh² c)
        i, g, o, tc = act[:, :, :H], act[:, :, ig * H:(ig + 1) * H], act[:, :, io:], tanh_c
        c_prev = torch.stack(entering(cell.unbind(0), c0, reverse))   # (T, B, H)
        dz = torch.addcmul(act, act, act, value=-1)                   # σ(1 - σ), every block; g's replaced below
        dz[:, :, :H].mul_(torch.sub(g, c_prev) if coupled else g)
        if not coupled:
            dz[:, :, H:2 * H].mul_(c_prev)
        torch.addcmul(one, g, g, value=-1, out=dz[:, :, ig * H:(ig + 1) * H]).mul_(i)
        dz[:, :, io:].mul_(tc)
        k_all = torch.addcmul(one, tc, tc, value=-1).mul_(o)           # o (1 - tanh² c) (T, B, H)
        keep = torch.sub(one, i) if coupled else act[:, :, H:2 * H]    # dc_prev = dc (1 - i), or dc f
        # 2. the recurrence, newest step first
        d_, do_, dio_ = dz.unbind(0), cols(dz, io, GH), cols(dz, 0, io)
        di_, df_ = cols(dz, 0, H), (None if coupled else cols(dz, H, 2 * H))
        cs, k_, keep_, douts = cell.unbind(0), k_all.unbind(0), keep.unbind(0), g_out.unbind(1)
        if stats_c is not None:
            dy_c = empty((T, B, H), act)                              # d LN(c_t), kept for the norm's grads
            dy_c_ = dy_c.unbind(0)
        dc = g_cT.clone()
        rec.start_backward()
        src = None                                                     # what the next dh comes from
        for t in grad_steps(T, reverse):
            dh = state_grad(douts[t] + g_hT if src is None else douts[t], src, weight_hh, mask)
            do = do_[t].mul_(dh)
            if stats_c is None:
                dc.addcmul_(dh, k_[t])
            else:                                                      # through tanh(LN(c))
                dc.add_(norm_input_grad(torch.mul(dh, k_[t], out=dy_c_[t]), cs[t], stats_c[0][t], stats_c[1][t],
                                        lnc_gain))
            if peephole:                                               # o sees c_t
                dc.addcmul_(do, w_co)
            dio_[t].view(B, -1, H).mul_(dc.unsqueeze(1))              # dzi, dzf, dzg (or dzi, dzg)
            dc.mul_(keep_[t])
            if peephole:                                               # i (, f) saw c_prev
                dc.addcmul_(di_[t], w_ci)
                if not coupled:
                    dc.addcmul_(df_[t], w_cf)
            src = rec.source(t, d_[t])
        dh0 = masked(torch.mm(src, weight_hh), mask)
        n = ctx.needs_input_grad
        dw = rec.flat_sources(dz).t() @ seen.flat(entering(out.unbind(0), h0, reverse)) if n[3] else None
        db = dz.sum((0, 1)) if n[4] else None
        dci = dcf = dco = None
        if peephole:
            dci = (dz[:, :, :H] * c_prev).sum((0, 1))
            if not coupled:
                dcf = (dz[:, :, H:2 * H] * c_prev).sum((0, 1))
            dco = (dz[:, :, io:] * cell).sum((0, 1))
        dg, dbn = rec.norm_grads(dz)
        dgc, dbc = (None, None) if stats_c is None else norm_param_grads(dy_c, cell, *stats_c)
        return (dz.transpose(0, 1), dh0, dc, dw, db, dci, dcf, dco, dg, dbn, dgc, dbc) + (None,) * 6
