"""The fast path's GRUs (Cho et al. 2014): sequence-level recurrences with a hand-written
backward, as models/kernels/fast.py describes, in both of GRUCell's forms. Blocks r, u, n; time-major
buffers and the recurrent part (with or without layer normalisation) from models/kernels/fast_parts.py.

    pytorch:  n = tanh(xn + r (W_hn h + b_hn)),  h = n + u (h_prev - n)     (nn.GRU's form)
    cho:      n = tanh(xn + W_hn (r h) + b_hn),  h = n + u (h_prev - n)
"""
from __future__ import annotations

import torch

from seqlab.models.kernels.fast_parts import (Recurrent, Seen, batch_first, consts, cols, empty, entering, gate_buffer,
                                      grad_steps, masked, next_in_grad, scale, state_grad, steps)


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
        m1, _, two = consts(projected)
        act = gate_buffer(projected, None, scale(GH, H, 2, projected))    # (T, B, G*H), xn doubled
        recur = Recurrent(weight_hh, None, None if ln_gain is None else (ln_gain, ln_bias, eps), B, T)
        seen = Seen(mask, projected, T)
        # the recurrent part per step: W_hh h + b_hh in a buffer, or the norm's outputs
        rec = list(empty((T, B, GH), projected).unbind(0)) if ln_gain is None else [None] * T
        out = empty((T, B, H), projected)
        tmp = projected.new_empty(B, H)
        ru_, n_, r_, u_ = cols(act, 0, H2), cols(act, H2, GH), cols(act, 0, H), cols(act, H, H2)
        hs = out.unbind(0)
        h_in = entering(hs, h0, reverse)
        for t in steps(T, reverse):
            h, n = h_in[t], n_[t]
            rec[t] = rt = recur.into(t, seen(t, h), bias_hh, rec[t])
            ru_[t].add_(rt[:, :H2]).sigmoid_()                         # r, u
            n.addcmul_(r_[t], rt[:, H2:], value=2).sigmoid_()
            torch.add(m1, n, alpha=2, out=n)                           # n = tanh(xn + r hn)
            torch.addcmul(n, u_[t], torch.sub(h, n, out=tmp), out=hs[t])   # h = n + u (h_prev - n)
        ctx.save_for_backward(weight_hh, mask, h0)
        ctx.bufs, ctx.reverse = (act, rec, out, recur, seen), reverse
        return batch_first(out), hs[0 if reverse else T - 1].clone()

    @staticmethod
    @torch.autograd.function.once_differentiable
    def backward(ctx, g_out, g_final):
        weight_hh, mask, h0 = ctx.saved_tensors
        (act, rec, out, recur, seen), reverse = ctx.bufs, ctx.reverse
        T, B, GH = act.shape
        H = GH // 3
        H2 = 2 * H
        one = consts(act)[1]
        da = empty(act.shape, act)          # d of the recurrent part (W_hh h + b_hh, or its norm): r, u, n
        dxn = empty((T, B, H), act)        # d of the candidate's input pre-activation xn
        ru_, n_, r_, u_ = cols(act, 0, H2), cols(act, H2, GH), cols(act, 0, H), cols(act, H, H2)
        da_, dar_, dau_, daru_, dan_ = da.unbind(0), cols(da, 0, H), cols(da, H, H2), cols(da, 0, H2), cols(da, H2, GH)
        dxn_, douts = dxn.unbind(0), g_out.unbind(1)
        h_in = entering(out.unbind(0), h0, reverse)
        k = act.new_empty(B, H2)
        recur.start_backward()
        src, carry = None, g_final          # carry: what reaches h_t besides W_hh: dout_t, u dh
        for t in grad_steps(T, reverse):
            n, u, g = n_[t], u_[t], dxn_[t]
            dh = state_grad(douts[t] + carry if src is None else carry, src, weight_hh, mask)
            ru = ru_[t]
            torch.addcmul(ru, ru, ru, value=-1, out=k)                 # σ' of r, u
            torch.addcmul(one, n, n, value=-1, out=g).mul_(dh)
            g.addcmul_(g, u, value=-1)                                 # dzn = dh (1-u)(1-n²)
            torch.sub(h_in[t], n, out=dau_[t]).mul_(dh)                # dzu = dh (h-n) σ'(u), below
            torch.mul(g, rec[t][:, H2:], out=dar_[t])                  # dzr = dzn hn σ'(r), below
            daru_[t].mul_(k)
            torch.mul(g, r_[t], out=dan_[t])                           # d hn = dzn r
            src = recur.source(t, da_[t])
            nxt = next_in_grad(t, T, reverse)
            carry = dh.mul_(u) if nxt is None else torch.addcmul(douts[nxt], dh, u)
        dh0 = masked(torch.mm(src, weight_hh), mask).add_(carry)
        n_g = ctx.needs_input_grad
        dw = recur.flat_sources(da).t() @ seen.flat(h_in) if n_g[2] else None
        db = da.sum((0, 1)) if n_g[3] else None
        dg, dbn = recur.norm_grads(da)
        dproj = torch.cat([da[:, :, :H2], dxn], 2)                     # (T, B, G*H)
        return dproj.transpose(0, 1), dh0, dw, db, dg, dbn, None, None, None


# ------------------------------------------------------------------------------------------
# GRU, Cho form:  n = tanh(xn + W_hn (r h) + b_hn),  h = n + u (h_prev - n);  blocks r, u, n
# ------------------------------------------------------------------------------------------

class _GRUChoFn(torch.autograd.Function):
    @staticmethod
    def forward(ctx, projected, h0, weight_hh, bias_hh, mask, reverse: bool):
        B, T, GH = projected.shape
        H = GH // 3
        H2 = 2 * H
        m1, _, two = consts(projected)
        act = gate_buffer(projected, bias_hh, scale(GH, H, 2, projected))    # all of b_hh additive
        rs = empty((T, B, H), projected)                              # r ⊙ seen h, input of W_hn
        out = empty((T, B, H), projected)
        tmp = projected.new_empty(B, H)
        seen = Seen(mask, projected, T)
        ru_, n_, r_ = cols(act, 0, H2), cols(act, H2, GH), cols(act, 0, H)
        u_ = cols(act, H, H2)
        rs_, hs = rs.unbind(0), out.unbind(0)
        h_in = entering(hs, h0, reverse)
        w_ru_t, w_n_t = weight_hh[:H2].t(), (weight_hh[H2:] * 2).t()
        for t in steps(T, reverse):
            h, n = h_in[t], n_[t]
            s = seen(t, h)
            ru_[t].addmm_(s, w_ru_t).sigmoid_()                        # r, u
            n.addmm_(torch.mul(r_[t], s, out=rs_[t]), w_n_t).sigmoid_()
            torch.add(m1, n, alpha=2, out=n)                           # tanh
            torch.addcmul(n, u_[t], torch.sub(h, n, out=tmp), out=hs[t])   # h = n + u (h_prev - n)
        ctx.save_for_backward(weight_hh, mask, h0)
        ctx.bufs, ctx.reverse = (act, rs, out, seen), reverse
        return batch_first(out), hs[0 if reverse else T - 1].clone()

    @staticmethod
    @torch.autograd.function.once_differentiable
    def backward(ctx, g_out, g_final):
        weight_hh, mask, h0 = ctx.saved_tensors
        (act, rs, out, seen), reverse = ctx.bufs, ctx.reverse
        T, B, GH = act.shape
        H = GH // 3
        H2 = 2 * H
        w_ru, w_n = weight_hh[:H2], weight_hh[H2:]
        one = consts(act)[1]
        dz = empty(act.shape, act)                                     # r, u, n
        ru_, n_, r_, u_ = cols(act, 0, H2), cols(act, H2, GH), cols(act, 0, H), cols(act, H, H2)
        dr_, du_, dru_, dn_ = cols(dz, 0, H), cols(dz, H, H2), cols(dz, 0, H2), cols(dz, H2, GH)
        douts = g_out.unbind(1)
        h_in = entering(out.unbind(0), h0, reverse)
        k = act.new_empty(B, H2)
        prev, carry, dseen = None, g_final, None
        for t in grad_steps(T, reverse):
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
            torch.mul(drs, masked(h, mask), out=dr_[t])                # dzr = drs seen σ'(r), below
            dru_[t].mul_(k)
            dseen = torch.addmm(drs.mul_(r_[t]), dru_[t], w_ru)        # d seen = drs r + dz_ru W_ru
            prev = t
            nxt = next_in_grad(t, T, reverse)
            carry = dh.mul_(u) if nxt is None else torch.addcmul(douts[nxt], dh, u)
        dh0 = masked(dseen, mask).add_(carry)
        n_g = ctx.needs_input_grad
        dw = None
        if n_g[2]:
            flat = dz.view(T * B, GH)
            dw = torch.cat([flat[:, :H2].t() @ seen.flat(h_in), flat[:, H2:].t() @ rs.view(T * B, H)])
        db = dz.sum((0, 1)) if n_g[3] else None
        return dz.transpose(0, 1), dh0, dw, db, None, None
