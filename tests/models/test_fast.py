"""The fast sequence path (models/kernels/fast.py): the hand-written BPTT must give exactly what
the autograd loop of RecurrentLayer gives — outputs, final state and every gradient."""
import copy

import pytest
import torch

from seqlab.models.kernels import fast, fast_lstm
from seqlab.models.cells import ElmanCell, GRUCell, JordanCell, LSTMCell
from seqlab.models.kernels.fast import run_sequence, supports
from seqlab.models.stack import RecurrentLayer

from conftest import paths_for

CELLS = {
    "elman-tanh": lambda i, h: ElmanCell(i, h, "tanh"),
    "elman-relu": lambda i, h: ElmanCell(i, h, "relu"),
    "jordan": lambda i, h: JordanCell(i, h),
    "lstm": lambda i, h: LSTMCell(i, h),
    "lstm-peephole": lambda i, h: LSTMCell(i, h, peephole=True),
    "lstm-coupled": lambda i, h: LSTMCell(i, h, coupled=True),
    "lstm-peephole-coupled": lambda i, h: LSTMCell(i, h, peephole=True, coupled=True),
    "gru": lambda i, h: GRUCell(i, h, form="pytorch"),
    "gru-cho": lambda i, h: GRUCell(i, h, form="cho"),
    # layer normalisation (Ba et al. 2016)
    "elman-tanh-ln": lambda i, h: ElmanCell(i, h, "tanh", layer_norm=True),
    "elman-relu-ln": lambda i, h: ElmanCell(i, h, "relu", layer_norm=True),
    "jordan-ln": lambda i, h: JordanCell(i, h, layer_norm=True),
    "lstm-ln": lambda i, h: LSTMCell(i, h, layer_norm=True),
    "lstm-peephole-ln": lambda i, h: LSTMCell(i, h, peephole=True, layer_norm=True),
    "lstm-peephole-coupled-ln": lambda i, h: LSTMCell(i, h, peephole=True, coupled=True, layer_norm=True),
    "gru-ln": lambda i, h: GRUCell(i, h, layer_norm=True),
}
B, T, I, H = 3, 7, 5, 6


def _make(name, dtype=torch.float64):
    torch.manual_seed(0)
    cell = CELLS[name](I, H).to(dtype)
    with torch.no_grad():                       # norms away from their identity initialisation
        for pname, p in cell.named_parameters():
            if pname.startswith("norm_"):
                p.add_(0.3 * torch.randn_like(p))
    return cell


def _state(cell, generator, dtype=torch.float64):
    if isinstance(cell, LSTMCell):
        return tuple(torch.randn(B, H, generator=generator, dtype=dtype) for _ in range(2))
    return torch.randn(B, H, generator=generator, dtype=dtype)


def _flat(state):
    return state if isinstance(state, tuple) else (state,)


def _run(cell, x, state, reverse, mask, use_fast):
    """Outputs, final state and the gradients of a loss that reaches outputs and final state
    (its random weights drawn in float32 whatever the dtype, so that runs in two dtypes compare).
    use_fast: True runs run_sequence on cell.project(x); "layer" runs the fast path as
    RecurrentLayer does (run_layer: the oneDNN projection, the fused input norm); False runs
    the autograd loop."""
    cell.zero_grad(set_to_none=True)
    x = x.detach().clone().requires_grad_(True)
    state = tuple(s.detach().clone().requires_grad_(True) for s in _flat(state))
    init = state if isinstance(cell, LSTMCell) else state[0]
    if use_fast == "layer":
        layer = RecurrentLayer(cell, reverse)
        assert layer.fast
        out, final = layer(x, init, None, mask)
    elif use_fast:
        out, final = run_sequence(cell, cell.project(x), init, reverse=reverse, mask=mask)
    else:
        out, final = RecurrentLayer(cell, reverse, fast=False)(x, init, None, mask)
    g = torch.Generator().manual_seed(1)
    loss = (out * torch.randn(out.shape, generator=g).to(out.dtype)).sum()
    for f in _flat(final):                       # a non-zero gradient into the final state too
        loss = loss + (f * torch.randn(f.shape, generator=g).to(f.dtype)).sum()
    loss.backward()
    grads = {"x": x.grad, **{f"state{k}": s.grad for k, s in enumerate(state)}}
    grads.update({name: p.grad for name, p in cell.named_parameters()})
    return out, _flat(final), grads


def _compare(name, reverse, masked, dtype, tol, fast=True):
    cell = _make(name, dtype)
    assert supports(cell)
    gen = torch.Generator().manual_seed(0)
    x = torch.randn(B, T, I, generator=gen, dtype=dtype)
    state = _state(cell, gen, dtype)
    mask = (torch.rand(B, H, generator=gen, dtype=dtype) > 0.3).to(dtype) / 0.7 if masked else None
    out_f, final_f, grads_f = _run(cell, x, state, reverse, mask, use_fast=fast)
    out_s, final_s, grads_s = _run(cell, x, state, reverse, mask, use_fast=False)
    torch.testing.assert_close(out_f, out_s, rtol=tol, atol=tol)
    for a, b in zip(final_f, final_s):
        torch.testing.assert_close(a, b, rtol=tol, atol=tol)
    assert grads_f.keys() == grads_s.keys()
    for key in grads_s:
        assert grads_s[key] is not None and grads_f[key] is not None, key
        torch.testing.assert_close(grads_f[key], grads_s[key], rtol=tol, atol=tol, msg=key)


@pytest.mark.parametrize("masked", [False, True], ids=["", "recurrent-dropout"])
@pytest.mark.parametrize("reverse", [False, True], ids=["forward", "reverse"])
@pytest.mark.parametrize("name,lstm_path", paths_for(CELLS), indirect=["lstm_path"])
def test_fast_path_equals_autograd_loop(name, reverse, masked, lstm_path):
    """float64: outputs, final states and all gradients (x, initial state, every parameter);
    the LSTMs on both the fused C++ kernels and the Python fast path."""
    _compare(name, reverse, masked, torch.float64, 1e-10)


@pytest.mark.parametrize("masked", [False, True], ids=["", "recurrent-dropout"])
@pytest.mark.parametrize("name,lstm_path", paths_for(CELLS), indirect=["lstm_path"])
def test_layer_fast_path_equals_autograd_loop(name, masked, lstm_path):
    """The fast path as RecurrentLayer runs it from the layer's inputs (run_layer): float64,
    reverse, every gradient; for the layer-normalised LSTMs on the C++ kernels this includes
    the fused input norm."""
    _compare(name, True, masked, torch.float64, 1e-10, fast="layer")


@pytest.mark.parametrize("masked", [False, True], ids=["", "recurrent-dropout"])
@pytest.mark.parametrize("name,lstm_path", paths_for(CELLS), indirect=["lstm_path"])
def test_layer_fast_path_float32(name, masked, lstm_path):
    """float32, where the projection runs on oneDNN: the fast path and the autograd loop each
    against the float64 loop, error relative to each tensor's largest entry (float32 rounding
    is ~1e-7 of it here; the two float32 paths sum in different orders). The bound is 1e-5,
    or three times the autograd loop's own float32 error where that is larger: with torch's
    AVX2 kernels (ATEN_CPU_CAPABILITY=avx2) the loop itself is 2e-5 off on the longest sums."""
    cell = _make(name, torch.float32)
    gen = torch.Generator().manual_seed(0)
    x = torch.randn(B, T, I, generator=gen)
    state = _state(cell, gen, torch.float32)
    mask = (torch.rand(B, H, generator=gen) > 0.3).float() / 0.7 if masked else None
    fast_f = _run(cell, x, state, False, mask, use_fast="layer")
    loop_f = _run(cell, x, state, False, mask, use_fast=False)
    cell64 = copy.deepcopy(cell).double()
    truth = _run(cell64, x.double(), tuple(s.double() for s in _flat(state)) if isinstance(cell, LSTMCell)
                 else state.double(), False, None if mask is None else mask.double(), use_fast=False)
    def tensors(result):
        out, final, grads = result
        return [out, *final] + [grads[k] for k in sorted(grads)]
    for a, b, t in zip(tensors(fast_f), tensors(loop_f), tensors(truth)):
        a, b, t = a.detach(), b.detach(), t.detach()
        scale = t.abs().max()
        err, err_loop = float((a.double() - t).abs().max() / scale), float((b.double() - t).abs().max() / scale)
        assert err < max(1e-5, 3 * err_loop), (err, err_loop)


@pytest.mark.parametrize("name,lstm_path", paths_for(CELLS), indirect=["lstm_path"])
def test_fast_path_float32(name, lstm_path):
    """float32, the dtype training uses (tanh is computed as 2σ(2x) - 1 there too)."""
    _compare(name, True, False, torch.float32, 2e-5)


def test_no_grad_inference_matches(lstm_path):
    cell = _make("lstm-peephole", torch.float32)
    x = torch.randn(B, T, I)
    state = cell.init_state(B, x)
    with torch.no_grad():
        out, (h, c) = run_sequence(cell, cell.project(x), state)
        ref, (rh, rc) = RecurrentLayer(cell, fast=False)(x, state)
    torch.testing.assert_close(out, ref)
    torch.testing.assert_close(c, rc)


def test_other_cells_fall_back_to_the_autograd_loop():
    class Clipped(LSTMCell):                    # a cell the fast path knows nothing about
        def step(self, xp, state, mask=None):
            out, (h, c) = super().step(xp, state, mask)
            return out, (h, c.clamp(-0.5, 0.5))

    torch.manual_seed(0)
    cell = Clipped(I, H)
    assert not supports(cell)
    x = torch.randn(B, T, I)
    state = cell.init_state(B, x)
    out, (h, c) = run_sequence(cell, cell.project(x), state, reverse=True)
    ref, (rh, rc) = RecurrentLayer(cell, reverse=True, fast=False)(x, state)
    torch.testing.assert_close(out, ref)
    torch.testing.assert_close(c, rc)
    assert c.abs().max() <= 0.5


def _double(*shape):
    return torch.randn(*shape, dtype=torch.float64, requires_grad=True)


GRADCHECK = {
    # every tensor input of the Function at once: projected, state(s), recurrent parameters
    "lstm-peephole": (fast_lstm._LSTMFn, lambda: (
        _double(2, 4, 16), _double(2, 4), _double(2, 4), _double(16, 4), _double(16),
        _double(4), _double(4), _double(4), None, None, None, None, None, False, True, False, None, None)),
    "lstm-coupled-peephole-ln-reverse": (fast_lstm._LSTMFn, lambda: (
        _double(2, 4, 12), _double(2, 4), _double(2, 4), _double(12, 4), None,
        _double(4), None, _double(4), _double(12), _double(12), _double(4), _double(4), None,
        True, True, True, 1e-5, 1e-5)),
    "gru-ln": (fast._GRUTorchFn, lambda: (
        _double(2, 4, 12), _double(2, 4), _double(12, 4), None, _double(12), _double(12), None, False, 1e-5)),
    "gru-cho-reverse": (fast._GRUChoFn, lambda: (
        _double(2, 4, 12), _double(2, 4), _double(12, 4), _double(12), None, True)),
    "jordan": (fast._JordanFn, lambda: (
        _double(2, 4, 4), _double(2, 4), _double(4, 4), _double(4), _double(4, 4), _double(4),
        None, None, None, False, None)),
}


@pytest.mark.parametrize("name", list(GRADCHECK))
def test_gradcheck(name):
    """Finite differences against the hand-written backward, every tensor input at once
    (the full Jacobian for the first, a random projection of it — fast mode — for the rest)."""
    torch.manual_seed(0)
    fn, make = GRADCHECK[name]
    assert torch.autograd.gradcheck(fn.apply, make(), eps=1e-6, atol=1e-7, fast_mode=name != "lstm-peephole")


def test_backward_twice_with_retained_graph(lstm_path):
    """The backward reads the forward's buffers without changing them: a second backward
    through a retained graph gives the same gradients."""
    for name in ("lstm-peephole-ln", "lstm-coupled", "gru-ln", "jordan-ln"):
        cell = _make(name)
        x = torch.randn(B, T, I, dtype=torch.float64, requires_grad=True)
        out, _ = run_sequence(cell, cell.project(x), cell.init_state(B, x), mask=torch.rand(B, H, dtype=torch.float64))
        first = torch.autograd.grad(out.sum(), [x, *cell.parameters()], retain_graph=True)
        second = torch.autograd.grad(out.sum(), [x, *cell.parameters()])
        for a, b in zip(first, second):
            torch.testing.assert_close(a, b, rtol=0, atol=0)


@pytest.mark.parametrize("name,lstm_path", paths_for(["lstm", "lstm-ln", "gru-ln", "gru-cho", "elman-tanh", "jordan-ln"]),
                         indirect=["lstm_path"])
def test_under_bf16_autocast(name, lstm_path):
    """train.precision=bf16: the input projection runs in bfloat16 and the recurrence in
    float32. It used to stop with a dtype error in the first in-place kernel."""
    cell = _make(name, torch.float32)
    x = torch.randn(B, T, I)
    state = _state(cell, torch.Generator().manual_seed(0), torch.float32)
    with torch.autocast("cpu", dtype=torch.bfloat16):
        out, final = run_sequence(cell, cell.project(x), state)
    assert out.dtype == torch.float32
    out.sum().backward()
    assert all(p.grad is not None and p.grad.isfinite().all() for p in cell.parameters())
    with torch.no_grad():
        exact, _ = run_sequence(cell, cell.project(x), state)
    assert (out - exact).abs().max() < 0.05      # bfloat16 inputs (8-bit mantissa): close, not equal
    assert (out - exact).abs().max() > 0
