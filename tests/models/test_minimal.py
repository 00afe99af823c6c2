"""minGRU / minLSTM (Feng et al. 2024): parallel scan against the sequential path, and the
properties of a recurrence: step = forward, causality, carried state, long-sequence stability."""
import pytest
import torch

import seqlab.models.minimal as minimal
from seqlab.models.minimal import MinGRULayer, MinLSTMLayer, MinimalStack

CELLS = {"mingru": MinGRULayer, "minlstm": MinLSTMLayer}
TOLERANCE = {torch.float32: 1e-5, torch.float64: 1e-10}
B, I, H = 3, 5, 7


def make_h0(kind: str, dtype) -> torch.Tensor | None:
    if kind == "none":
        return None
    h0 = torch.rand(B, H, dtype=dtype) + 0.1                       # positive
    if kind == "mixed":
        h0 = h0 * torch.tensor([1.0, -1.0], dtype=dtype).repeat(H)[:H]   # negative entries too
    return h0


def run(layer, x, h0, mode):
    """Outputs, final state and gradients (parameters, x, h0) under a fixed random loss."""
    layer.zero_grad()
    x = x.detach().clone().requires_grad_(True)
    h0 = None if h0 is None else h0.detach().clone().requires_grad_(True)
    out, final = layer(x, h0, mode=mode)
    gen = torch.Generator().manual_seed(1)
    w_out = torch.randn(out.shape, generator=gen).to(out.dtype)
    w_final = torch.randn(final.shape, generator=gen).to(out.dtype)
    ((out * w_out).sum() + (final * w_final).sum()).backward()
    grads = {name: p.grad.clone() for name, p in layer.named_parameters()}
    grads["x"] = x.grad
    if h0 is not None:
        grads["h0"] = h0.grad
    return out.detach(), final.detach(), grads


def assert_gradient_close(actual, expected, tol, name=""):
    """Gradients of parameters are sums over B·T terms that partly cancel, so an element can be
    far smaller than its terms (float32 rounding is relative to the terms, not the sum); compare
    each tensor at its own scale: max |Δ| ≤ tol · max(1, max |g|)."""
    scale = max(1.0, expected.abs().max().item())
    error = (actual - expected).abs().max().item()
    assert error <= tol * scale, f"{name}: max |Δ| = {error:.2e} > {tol:.0e} · {scale:.2f}"


def assert_same(a, b, tol):
    out_a, final_a, grads_a = a
    out_b, final_b, grads_b = b
    torch.testing.assert_close(out_a, out_b, rtol=tol, atol=tol)
    torch.testing.assert_close(final_a, final_b, rtol=tol, atol=tol)
    assert grads_a.keys() == grads_b.keys()
    for name in grads_a:
        assert_gradient_close(grads_a[name], grads_b[name], tol, name)


@pytest.mark.parametrize("steps", [1, 2, 17, 200])
@pytest.mark.parametrize("h0_kind", ["none", "positive", "mixed"])
@pytest.mark.parametrize("dtype", [torch.float32, torch.float64])
@pytest.mark.parametrize("cell", list(CELLS))
def test_parallel_equals_sequential(cell, dtype, h0_kind, steps):
    """Outputs, final state and every gradient; default chunks (T = 200 spans 7, padded)."""
    layer = CELLS[cell](I, H).to(dtype)
    x = torch.randn(B, steps, I, dtype=dtype)
    h0 = make_h0(h0_kind, dtype)
    assert_same(run(layer, x, h0, "parallel"), run(layer, x, h0, "sequential"), TOLERANCE[dtype])


@pytest.mark.parametrize("chunk_size", [1, 4, 16, 17, 100, None])
@pytest.mark.parametrize("cell", list(CELLS))
def test_every_chunk_size_gives_the_same_sequence(cell, chunk_size):
    layer = CELLS[cell](I, H, chunk_size=chunk_size).double()
    x = torch.randn(B, 17, I, dtype=torch.float64)
    h0 = make_h0("mixed", torch.float64)
    assert_same(run(layer, x, h0, "parallel"), run(layer, x, h0, "sequential"), 1e-10)


@pytest.mark.parametrize("with_h0", [False, True])
def test_scan_gradient_is_the_derivative(with_h0):
    """The hand-written backward of the chunked scan against finite differences (float64)."""
    log_a = (-3 * torch.rand(2, 7, 3, dtype=torch.float64)).requires_grad_(True)
    log_b = torch.randn(2, 7, 3, dtype=torch.float64).requires_grad_(True)
    h0 = torch.randn(2, 3, dtype=torch.float64).requires_grad_(True)   # either sign
    if with_h0:
        check = lambda a, b, h: minimal.log_linear_scan(a, b, h, 3)
        assert torch.autograd.gradcheck(check, (log_a, log_b, h0))
    else:
        assert torch.autograd.gradcheck(lambda a, b: minimal.log_linear_scan(a, b, None, 3),
                                        (log_a, log_b))


def reference(cell: str, layer, x, h0):
    """The paper's equations written out directly (1 − z, f / (f + i)), float64."""
    g = lambda v: torch.where(v >= 0, v + 0.5, torch.sigmoid(v))
    proj = layer.projection(x)
    h = torch.zeros(x.size(0), layer.hidden_size, dtype=x.dtype) if h0 is None else h0
    outs = []
    for t in range(x.size(1)):
        if cell == "mingru":
            k, u = proj[:, t].chunk(2, dim=-1)
            z = torch.sigmoid(k)
            h = (1 - z) * h + z * g(u)
        else:
            p, q, u = proj[:, t].chunk(3, dim=-1)
            f, i = torch.sigmoid(p), torch.sigmoid(q)
            h = f / (f + i) * h + i / (f + i) * g(u)
        outs.append(h)
    return torch.stack(outs, 1)


@pytest.mark.parametrize("mode", ["parallel", "sequential"])
@pytest.mark.parametrize("cell", list(CELLS))
def test_matches_the_equations(cell, mode):
    layer = CELLS[cell](I, H, chunk_size=8).double()
    x = 2 * torch.randn(B, 30, I, dtype=torch.float64)               # both branches of g
    h0 = make_h0("mixed", torch.float64)
    with torch.no_grad():
        out, final = layer(x, h0, mode=mode)
        expected = reference(cell, layer, x, h0)
    torch.testing.assert_close(out, expected, rtol=1e-12, atol=1e-12)
    torch.testing.assert_close(final, expected[:, -1], rtol=1e-12, atol=1e-12)


@pytest.mark.parametrize("h0_kind", ["none", "mixed"])
@pytest.mark.parametrize("cell", list(CELLS))
def test_step_by_step_equals_forward(cell, h0_kind):
    layer = CELLS[cell](I, H, chunk_size=4).double()
    x = torch.randn(B, 19, I, dtype=torch.float64)
    h0 = make_h0(h0_kind, torch.float64)
    with torch.no_grad():
        out, final = layer(x, h0)                                     # auto: parallel
        h, steps = h0, []
        for t in range(x.size(1)):
            y, h = layer.step(x[:, t], h)
            steps.append(y)
    torch.testing.assert_close(torch.stack(steps, 1), out, rtol=1e-12, atol=1e-12)
    torch.testing.assert_close(h, final, rtol=1e-12, atol=1e-12)


@pytest.mark.parametrize("mode", ["parallel", "sequential"])
@pytest.mark.parametrize("cell", list(CELLS))
def test_causal(cell, mode):
    """Changing inputs after t leaves outputs up to t unchanged; their gradient to later x is 0."""
    layer = CELLS[cell](I, H, chunk_size=4)
    x = torch.randn(B, 23, I)
    h0 = make_h0("positive", torch.float32)
    t = 9                                                             # inside the third chunk
    changed = x.clone()
    changed[:, t + 1:] = 10 * torch.randn(B, 23 - t - 1, I)
    with torch.no_grad():
        out, _ = layer(x, h0, mode=mode)
        out_changed, _ = layer(changed, h0, mode=mode)
    assert torch.equal(out[:, :t + 1], out_changed[:, :t + 1])
    assert not torch.allclose(out[:, t + 1:], out_changed[:, t + 1:])
    x = x.requires_grad_(True)
    out, _ = layer(x, h0, mode=mode)
    out[:, t].sum().backward()
    assert torch.all(x.grad[:, t + 1:] == 0)
    assert x.grad[:, : t + 1].abs().sum() > 0


@pytest.mark.parametrize("mode", ["parallel", "sequential"])
@pytest.mark.parametrize("cell", list(CELLS))
def test_carried_state_equals_one_pass(cell, mode):
    layer = CELLS[cell](I, H, chunk_size=8).double()
    x = torch.randn(B, 40, I, dtype=torch.float64)
    h0 = make_h0("positive", torch.float64)
    with torch.no_grad():
        out, final = layer(x, h0, mode=mode)
        first, h = layer(x[:, :13], h0, mode=mode)
        second, h = layer(x[:, 13:], h, mode=mode)
    torch.testing.assert_close(torch.cat([first, second], 1), out, rtol=1e-12, atol=1e-12)
    torch.testing.assert_close(h, final, rtol=1e-12, atol=1e-12)


@pytest.mark.parametrize("kind", list(CELLS))
def test_stack_two_layers(kind):
    stack = MinimalStack(kind, I, H, num_layers=2, dropout=0.2).double()
    x = torch.randn(B, 25, I, dtype=torch.float64, requires_grad=True)
    state = stack.init_state(B, x)
    assert state.shape == (B, 2, H) and state.dtype == torch.float64 and not state.any()
    out, state = stack(x, state)                                      # training mode: dropout on
    assert out.shape == (B, 25, H) and state.shape == (B, 2, H)
    torch.testing.assert_close(state[:, -1], out[:, -1])              # the top layer's last output
    (out.sum() + state.sum()).backward()
    for name, p in stack.named_parameters():
        assert p.grad is not None and torch.isfinite(p.grad).all() and p.grad.abs().sum() > 0, name

    stack.eval()                                                      # no dropout: compare paths
    with torch.no_grad():
        start = torch.randn(B, 2, H, dtype=torch.float64)
        whole, final = stack(x, start)
        first, carried = stack(x[:, :10], start)
        second, carried = stack(x[:, 10:], carried)
        torch.testing.assert_close(torch.cat([first, second], 1), whole, rtol=1e-12, atol=1e-12)
        torch.testing.assert_close(carried, final, rtol=1e-12, atol=1e-12)
        state, outs = start, []
        for t in range(x.size(1)):
            y, state = stack.step(x[:, t], state)
            outs.append(y)
        torch.testing.assert_close(torch.stack(outs, 1), whole, rtol=1e-12, atol=1e-12)
        torch.testing.assert_close(state, final, rtol=1e-12, atol=1e-12)
        sequential = MinimalStack(kind, I, H, num_layers=2, mode="sequential").double()
        sequential.load_state_dict(stack.state_dict())
        torch.testing.assert_close(sequential(x, start)[0], whole, rtol=1e-10, atol=1e-10)


@pytest.mark.parametrize("magnitude", [10.0, 40.0])
@pytest.mark.parametrize("cell", list(CELLS))
def test_long_sequences_with_saturated_gates(cell, magnitude):
    """T = 2000, float32, every gate pre-activation at ±magnitude (gates ~0 or ~1, mixed per unit)."""
    layer = CELLS[cell](I, H)
    gates = layer.projection.out_features - H
    with torch.no_grad():
        layer.projection.weight[:gates].mul_(0.1)
        signs = torch.randint(0, 2, (gates,)).float() * 2 - 1
        layer.projection.bias[:gates] = magnitude * signs
    x = torch.randn(2, 2000, I)
    h0 = make_h0("positive", torch.float32)[:2]
    out_p, final_p, grads_p = run(layer, x, h0, "parallel")
    out_s, final_s, grads_s = run(layer, x, h0, "sequential")
    assert torch.isfinite(out_p).all() and torch.isfinite(final_p).all()
    assert all(torch.isfinite(g).all() for g in grads_p.values())
    torch.testing.assert_close(out_p, out_s, rtol=1e-4, atol=1e-4)
    torch.testing.assert_close(final_p, final_s, rtol=1e-4, atol=1e-4)
    for name in grads_p:
        assert_gradient_close(grads_p[name], grads_s[name], 1e-4, name)


def test_auto_mode_picks_parallel_for_sequences_and_sequential_for_one_step(monkeypatch):
    calls = []
    scan, loop = minimal.log_linear_scan, minimal.linear_recurrence
    monkeypatch.setattr(minimal, "log_linear_scan", lambda *a: calls.append("parallel") or scan(*a))
    monkeypatch.setattr(minimal, "linear_recurrence", lambda *a: calls.append("sequential") or loop(*a))
    layer = MinGRULayer(I, H)
    layer(torch.randn(B, 5, I), -torch.rand(B, H))                   # negative h0 too
    layer(torch.randn(B, 1, I))
    assert calls == ["parallel", "sequential"]


def test_bad_arguments_raise():
    layer = MinLSTMLayer(I, H)
    with pytest.raises(ValueError):
        layer(torch.randn(B, 4, I), mode="scan")
    with pytest.raises(ValueError):
        layer(torch.randn(B, 4, I), torch.zeros(B, H + 1))
    with pytest.raises(ValueError):
        MinimalStack("gru", I, H)
    with pytest.raises(ValueError):
        MinGRULayer(I, H, chunk_size=0)
