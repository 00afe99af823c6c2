"""Fixed-window LM, TCN and WaveNet: causality, measured receptive field = the calculator's,
step-by-step generation = one forward pass, carried state across chunks = one pass, training
runs, global conditioning, μ-law companding; and (slow) the speed of queue-based generation."""
import time

import pytest
import torch

from seqlab.config import ModelConfig
from seqlab.models import tcn, wavenet
from seqlab.models.base import detach_state, map_state, select_state
from seqlab.models.tcn import TCNLM, TemporalConvNet
from seqlab.models.wavenet import WaveNetLM, mu_law_decode, mu_law_encode
from seqlab.models.window import BOS, WindowLM

V = 13


def cfg(name, **kw) -> ModelConfig:
    base = dict(name=name, embedding_size=6, hidden_size=8, num_layers=2, dropout=0.0)
    return ModelConfig(**{**base, **kw})


# (id, class, config, extra constructor arguments, receptive field from the calculator)
CASES = [
    ("window-n1", WindowLM, cfg("window", context=1, num_layers=1), {}, 1),
    ("window-n4", WindowLM, cfg("window", context=4), {}, 4),
    ("window-n6-tied", WindowLM, cfg("window", context=6, embedding_size=8, tie_weights=True), {}, 6),
    ("tcn-k2-l3", TCNLM, cfg("tcn", kernel_size=2, num_layers=3), {}, tcn.receptive_field(2, 3)),
    ("tcn-k3-l2", TCNLM, cfg("tcn", kernel_size=3, num_layers=2), {}, tcn.receptive_field(3, 2)),
    ("tcn-k1", TCNLM, cfg("tcn", kernel_size=1, num_layers=2), {}, 1),
    ("tcn-tied", TCNLM, cfg("tcn", kernel_size=2, num_layers=2, embedding_size=8, tie_weights=True), {},
     tcn.receptive_field(2, 2)),
    ("wavenet-k2-l6-c3", WaveNetLM, cfg("wavenet", kernel_size=2, num_layers=6, dilation_cycle=3), {},
     wavenet.receptive_field(2, 6, 3)),
    ("wavenet-k3-l3-skip5", WaveNetLM, cfg("wavenet", kernel_size=3, num_layers=3, skip_channels=5), {},
     wavenet.receptive_field(3, 3, 10)),
    ("wavenet-cond", WaveNetLM, cfg("wavenet", kernel_size=2, num_layers=4, dilation_cycle=2), {"num_classes": 3},
     wavenet.receptive_field(2, 4, 2)),
]
IDS = [c[0] for c in CASES]


def build(case, dtype=torch.float32, seed=0):
    _, cls, c, extra, _ = case
    torch.manual_seed(seed)
    return cls(c, V, **extra).to(dtype).eval()


def tokens(B, T, seed=1):
    return torch.randint(0, V, (B, T), generator=torch.Generator().manual_seed(seed))


def perturb(x, positions):
    y = x.clone()
    y[:, positions] = (y[:, positions] + 1 + torch.arange(len(y)).unsqueeze(1)) % V    # always a new id
    return y


def changed_positions(model, x, y) -> list[int]:
    with torch.no_grad():
        a, _ = model(x, model.init_state(x.size(0)))
        b, _ = model(y, model.init_state(y.size(0)))
    return torch.nonzero((a - b).abs().amax(dim=(0, 2)) > 1e-12).flatten().tolist()


# -- receptive field and causality ------------------------------------------------------

def test_calculators():
    assert tcn.receptive_field(2, 1) == 3 and tcn.receptive_field(3, 2) == 13
    assert tcn.receptive_field(3, 8) == 1 + 2 * 2 * 255
    assert wavenet.dilations(5, 3) == [1, 2, 4, 1, 2]
    assert wavenet.receptive_field(2, 10, 10) == 1025                       # the paper's block
    assert wavenet.receptive_field(2, 30, 10) == 1 + 1 + 3 * 1023
    assert TemporalConvNet(4, [5, 5, 5], kernel_size=2).receptive_field == tcn.receptive_field(2, 3)


@pytest.mark.parametrize("case", CASES, ids=IDS)
def test_measured_receptive_field(case):
    """Perturb input 0: exactly outputs 0 … R−1 change (random weights, float64)."""
    model, R = build(case, torch.float64), case[4]
    assert model.receptive_field == R
    x = tokens(2, R + 6)
    assert changed_positions(model, x, perturb(x, [0])) == list(range(R))


@pytest.mark.parametrize("case", CASES, ids=IDS)
def test_dependency_window_mid_sequence(case):
    """An input at p changes exactly outputs p … p+R−1: nothing before (causality), all inside."""
    model, R = build(case, torch.float64), case[4]
    T, p = 2 * R + 7, R + 3
    x = tokens(2, T)
    assert changed_positions(model, x, perturb(x, [p])) == list(range(p, min(T, p + R)))


@pytest.mark.parametrize("case", CASES, ids=IDS)
def test_causal_in_training_mode(case):
    """With dropout on (same masks), changing inputs after t leaves logits up to t unchanged."""
    _, cls, c, extra, R = case
    torch.manual_seed(0)
    model = cls(ModelConfig(**{**c.__dict__, "dropout": 0.3}), V, **extra).train()
    x = tokens(3, 25)
    t = 11
    y = x.clone()
    y[:, t + 1:] = tokens(3, 25 - t - 1, seed=7)
    outs = []
    for inp in (x, y):
        torch.manual_seed(42)
        outs.append(model(inp, model.init_state(3))[0])
    torch.testing.assert_close(outs[0][:, : t + 1], outs[1][:, : t + 1], rtol=0, atol=0)
    assert not torch.allclose(outs[0][:, t + 1:], outs[1][:, t + 1:])


# -- state: generation and chunking -----------------------------------------------------

@pytest.mark.parametrize("case", CASES, ids=IDS)
def test_step_equals_forward(case):
    """Token-by-token `step` from init_state gives the logits of one forward pass (1e-5)."""
    model, R = build(case), case[4]
    B, T = 3, R + 12                                                           # past the queues' length
    x = tokens(B, T)
    with torch.no_grad():
        full, final = model(x, model.init_state(B))
        state, outs = model.init_state(B), []
        for t in range(T):
            out, state = model.step(x[:, t], state)                            # (B, V)
            outs.append(out)
    torch.testing.assert_close(torch.stack(outs, 1), full, rtol=0, atol=1e-5)
    torch.testing.assert_close(state, final, rtol=0, atol=1e-5)


@pytest.mark.parametrize("case", CASES, ids=IDS)
def test_carried_state_equals_one_pass(case):
    """forward on consecutive chunks with the carried (detached) state = one forward pass;
    chunks shorter and longer than the history, and a prime + step continuation."""
    model, R = build(case), case[4]
    B, T = 2, 3 * R + 9
    x = tokens(B, T)
    cuts = sorted({0, 1, 2, 5, R, R + 1, 2 * R + 3, T})
    with torch.no_grad():
        full, final = model(x, model.init_state(B))
        state, pieces = model.init_state(B), []
        for a, b in zip(cuts, cuts[1:]):
            out, state = model(x[:, a:b], state)
            pieces.append(out)
            state = detach_state(state)
        torch.testing.assert_close(torch.cat(pieces, 1), full, rtol=0, atol=1e-5)
        torch.testing.assert_close(state, final, rtol=0, atol=1e-5)
        # decoding: prime with forward, continue with step
        P = R + 2
        _, state = model(x[:, :P], model.init_state(B))
        steps = []
        for t in range(P, T):
            out, state = model.step(x[:, t], state)
            steps.append(out)
    torch.testing.assert_close(torch.stack(steps, 1), full[:, P:], rtol=0, atol=1e-5)


@pytest.mark.parametrize("case", CASES, ids=IDS)
def test_state_is_batch_first(case):
    """Every state tensor has the batch first, so beams can be picked out and expanded."""
    model = build(case)
    B = 4
    state = model.init_state(B)
    parts = (state,) if isinstance(state, torch.Tensor) else state
    assert all(s.size(0) == B for s in parts)
    x = tokens(B, 9)
    with torch.no_grad():
        _, state = model(x[:, :6], state)
        rows = torch.tensor([2, 0])
        sub, _ = model.step(x[rows, 6], select_state(state, rows))
        alone, _ = model(x[rows, :7], model.init_state(2))
        one = map_state(lambda s: s[:1].expand(3, *s.shape[1:]).contiguous(), state)  # beam expansion
        out3, _ = model.step(x[:1, 6].expand(3), one)
    torch.testing.assert_close(sub, alone[:, -1], rtol=0, atol=1e-5)
    torch.testing.assert_close(out3, out3[:1].expand(3, -1), rtol=0, atol=1e-6)


def test_window_state_is_bos_tokens():
    model = build(CASES[1])
    state = model.init_state(2)
    assert state.dtype == torch.long and state.shape == (2, 3) and (state == BOS).all()
    x = tokens(2, 5)
    _, state = model(x, state)
    assert torch.equal(state, x[:, -3:])
    _, state = model(x[:, :1], model.init_state(2))                            # chunk shorter than N−1
    assert torch.equal(state, torch.cat([torch.full((2, 2), BOS), x[:, :1]], 1))


# -- the cheap step without autograd: column buffers, cached kernels --------------------------

CONV_CASES = [c for c in CASES if c[1] is not WindowLM]
CONV_IDS = [c[0] for c in CONV_CASES]



def steps(model, x, state, **kw):
    """Logits (B, T, V) of stepping through x (B, T) from state, and the final state."""
    outs = []
    for t in range(x.size(1)):
        out, state = model.step(x[:, t], state, **kw)
        outs.append(out)
    return torch.stack(outs, 1), state


@pytest.mark.parametrize("case", CONV_CASES, ids=CONV_IDS)
@pytest.mark.usefixtures("one_thread")
def test_step_buffers_over_a_long_run_and_branches(case):
    """float64: many buffer refills (T ≫ SPARE_COLUMNS) still equal one forward pass (1e-12);
    a step writes in place (the new history shares the previous one's memory); a second
    continuation of a state (a branch) leaves the state and the first continuation intact;
    forward continues a stepped state."""
    model = build(case, torch.float64)
    B, T, t = 2, 3 * tcn.SPARE_COLUMNS + model.receptive_field, 150
    x = tokens(B, T)
    other = perturb(x, [t, t + 1])                                             # the branch's tokens
    with torch.no_grad():
        full, final = model(x, model.init_state(B))
        full_other, _ = model(other[:, : t + 2], model.init_state(B))
        first, mid = steps(model, x[:, :t], model.init_state(B))              # (B, t, V)
        rest, end = steps(model, x[:, t:], mid)
        _, next1 = steps(model, x[:, t: t + 1], mid)                           # the first continuation
        _, next2 = steps(model, x[:, t + 1: t + 2], next1)
        kept = [s.clone() for s in next2]
        branch, _ = steps(model, other[:, t: t + 2], mid)                      # the second
        again, _ = steps(model, x[:, t + 2:], next2)
        chunked, chunk_end = model(x[:, t:], mid)
    torch.testing.assert_close(torch.cat([first, rest], 1), full, rtol=0, atol=1e-12)
    torch.testing.assert_close(end, final, rtol=0, atol=1e-12)
    torch.testing.assert_close(branch, full_other[:, t:], rtol=0, atol=1e-12)
    torch.testing.assert_close(list(next2), kept, rtol=0, atol=0)              # not overwritten by the branch
    torch.testing.assert_close(again, rest[:, 2:], rtol=0, atol=0)
    torch.testing.assert_close(chunked, rest, rtol=0, atol=1e-12)
    torch.testing.assert_close(chunk_end, final, rtol=0, atol=1e-12)
    for before, now in zip(next1, next2):
        if before.size(2):                                                     # in place: one column on
            assert now.data_ptr() - before.data_ptr() == before.stride(2) * before.element_size()


@pytest.mark.usefixtures("one_thread")
def test_step_inside_and_outside_inference_mode():
    """States made under inference_mode step on under no_grad and back (their buffers are
    inference tensors, which only inference mode may write), with the logits of forward."""
    model = build(CASES[3])                                                    # tcn-k2-l3
    x = tokens(2, 40)
    with torch.no_grad():
        full, _ = model(x, model.init_state(2))
    with torch.inference_mode():
        a, state = steps(model, x[:, :10], model.init_state(2))
    with torch.no_grad():
        b, state = steps(model, x[:, 10:25], state)
    with torch.inference_mode():
        c, state = steps(model, x[:, 25:], state)
    torch.testing.assert_close(torch.cat([a, b, c], 1), full, rtol=0, atol=1e-5)


@pytest.mark.usefixtures("one_thread")
def test_cached_kernels_follow_the_weights():
    """Without autograd the weight-normalised kernels are computed once; every change of g or
    v (an optimizer step, load_state_dict, a swapped .data, a dtype change) is seen by the
    next step, whose logits equal forward's with the new weights; with autograd on, step
    trains g and v."""
    model = build(CASES[4], torch.float64)                                     # tcn-k3-l2
    conv = model.tcn.blocks[0].conv1
    x = tokens(2, 30)
    prime, nxt = x[:, :-1], x[:, -1]

    def check():
        """Step logits (B, V) after the prime, checked against one forward pass."""
        with torch.no_grad():
            full, _ = model(x, model.init_state(2))
            _, state = model(prime, model.init_state(2))
            out, _ = model.step(nxt, state)
        torch.testing.assert_close(out, full[:, -1], rtol=0, atol=1e-12)
        return out

    before = check()
    with torch.no_grad():
        assert conv.matrix() is conv.matrix()                                  # cached
    assert conv.matrix() is not conv.matrix()                                  # autograd on: recomputed
    saved = {k: v.clone() for k, v in model.state_dict().items()}

    optimizer = torch.optim.SGD(model.parameters(), lr=0.5)
    logits, _ = model.step(nxt, model(prime, model.init_state(2))[1])          # autograd through step
    torch.nn.functional.cross_entropy(logits, x[:, 0]).backward()
    g, v = conv.conv.parametrizations.weight.original0, conv.conv.parametrizations.weight.original1
    assert g.grad.abs().sum() > 0 and v.grad.abs().sum() > 0
    optimizer.step()
    trained = check()
    assert (trained - before).abs().max() > 1e-3

    model.load_state_dict(saved)                                               # in place: versions move
    torch.testing.assert_close(check(), before, rtol=0, atol=0)
    with torch.no_grad():
        g.data = g.data * 2                                                    # new memory, same version
    swapped = check()
    assert (swapped - before).abs().max() > 1e-3
    model.float()
    with torch.no_grad():
        assert conv.matrix().dtype == torch.float32
        full, _ = model(x, model.init_state(2))
        out, _ = model.step(nxt, model(prime, model.init_state(2))[1])
    torch.testing.assert_close(out, full[:, -1], rtol=0, atol=1e-5)


# -- training, shapes, weights ----------------------------------------------------------

@pytest.mark.parametrize("case", CASES, ids=IDS)
def test_forward_backward(case):
    _, cls, c, extra, _ = case
    model = cls(ModelConfig(**{**c.__dict__, "dropout": 0.2}), V, **extra).train()
    B, T = 3, 17
    x = tokens(B, T)
    cond = torch.tensor([0, 2, 1]) if extra.get("num_classes") else None
    kw = {"cond": cond} if cond is not None else {}
    logits, state = model(x, model.init_state(B), **kw)
    assert logits.shape == (B, T, V)
    logits2, _ = model(x, detach_state(state), **kw)                            # a second chunk
    loss = torch.nn.functional.cross_entropy((logits + logits2).reshape(-1, V), x.reshape(-1))
    loss.backward()
    for name, p in model.named_parameters():
        assert p.grad is not None and torch.isfinite(p.grad).all(), name
    if c.tie_weights:
        assert model.head.weight is model.embedding.weight
    out, _ = model.step(x[:, 0], model.init_state(B), **kw)
    assert out.shape == (B, V)


def test_tcn_core_uses_weight_norm_and_downsample():
    net = TemporalConvNet(4, [6, 6], kernel_size=3)
    b0, b1 = net.blocks
    assert b0.downsample is not None and b1.downsample is None                  # 4 -> 6 channels only
    assert hasattr(b0.conv1.conv, "parametrizations") and hasattr(b1.conv2.conv.parametrizations, "weight")
    assert [c.history for c in net.convs()] == [2, 2, 4, 4]
    y, state = net(torch.randn(2, 4, 10))                                        # standalone: zero padding
    assert y.shape == (2, 6, 10) and [s.shape for s in state] == [(2, 4, 2), (2, 6, 2), (2, 6, 4), (2, 6, 4)]


# -- WaveNet: conditioning, μ-law ----------------------------------------------------------

def test_global_conditioning():
    case = CASES[-1]
    model = build(case)
    B, T = 2, 20
    x = tokens(B, T)
    c0, c1 = torch.tensor([0, 0]), torch.tensor([1, 2])
    with torch.no_grad():
        a, _ = model(x, cond=c0)
        b, _ = model(x, cond=c1)
        assert (a - b).abs().amax(-1).gt(1e-4).all()                             # every position moves
        same, _ = model(x[:1], cond=c0[:1])
        torch.testing.assert_close(same, a[:1], rtol=0, atol=1e-6)               # per row
        state, outs = model.init_state(B), []
        for t in range(T):
            out, state = model.step(x[:, t], state, cond=c1)
            outs.append(out)
    torch.testing.assert_close(torch.stack(outs, 1), b, rtol=0, atol=1e-5)
    plain = build(CASES[-3])
    with pytest.raises(ValueError, match="num_classes"):
        plain(x, cond=c0)


@pytest.mark.parametrize("channels", [256, 16])
def test_mu_law_round_trip(channels):
    mu = channels - 1
    x = torch.cat([torch.linspace(-1, 1, 20001, dtype=torch.float64),
                   torch.rand(5000, dtype=torch.float64) * 2 - 1])
    q = mu_law_encode(x, channels)
    assert q.dtype == torch.long and q.min() == 0 and q.max() == mu
    assert (q[:20001].diff() >= 0).all()                                         # monotone
    xhat = mu_law_decode(q, channels, dtype=torch.float64)
    # x lies in its level's bin [f⁻¹(y_q − 1/μ), f⁻¹(y_q + 1/μ)]: error within the quantisation step
    lo = mu_law_decode(q.double() - 0.5, channels, dtype=torch.float64)
    hi = mu_law_decode(q.double() + 0.5, channels, dtype=torch.float64)
    assert ((x >= lo - 1e-12) & (x <= hi + 1e-12)).all()
    assert ((x - xhat).abs() <= torch.maximum(hi - xhat, xhat - lo) + 1e-12).all()
    assert (x - xhat).abs().max() <= (hi - lo).max() / 2                            # ≤ half the widest step
    # in the companded domain the error is at most half a step (1/μ)
    f = lambda v: torch.sign(v) * torch.log1p(mu * v.abs()) / torch.log1p(torch.tensor(float(mu), dtype=v.dtype))
    assert (f(x) - f(xhat)).abs().max() <= 1 / mu + 1e-12
    levels = torch.arange(channels)
    assert torch.equal(mu_law_encode(mu_law_decode(levels, channels, torch.float64), channels), levels)
    assert mu_law_encode(torch.tensor([-3.0, 3.0]), channels).tolist() == [0, mu]  # clipped


# -- speed of fast generation (slow) ----------------------------------------------------------

def _best_per_token(fns, counts, repeats: int = 5) -> list[float]:
    """Fastest of `repeats` interleaved runs, seconds per token: robust to a busy shared machine."""
    best = [float("inf")] * len(fns)
    for _ in range(repeats):
        for i, (fn, n) in enumerate(zip(fns, counts)):
            t0 = time.perf_counter()
            fn(n)
            best[i] = min(best[i], (time.perf_counter() - t0) / n)
    return best


@pytest.mark.slow
@pytest.mark.parametrize("name, model", [
    ("tcn", lambda: TCNLM(cfg("tcn", embedding_size=32, hidden_size=128, num_layers=9, kernel_size=3), 64)),
    ("wavenet", lambda: WaveNetLM(cfg("wavenet", embedding_size=32, hidden_size=128, num_layers=10,
                                      kernel_size=3, dilation_cycle=10), 64)),
])
def test_queue_generation_is_fast(name, model):
    """Queues: O(layers) per token; recomputing the receptive field: O(R) per token. ≥ 20×."""
    threads = torch.get_num_threads()
    torch.set_num_threads(1)                     # a shared machine: avoid thread contention noise
    try:
        torch.manual_seed(0)
        model = model().eval()
        R = model.receptive_field
        assert R >= 1024
        x = torch.randint(0, 64, (1, R + 40))
        with torch.no_grad():
            _, primed = model(x[:, :R], model.init_state(1))

            def queued(n):
                state = primed
                for t in range(n):
                    _, state = model.step(x[:, R + t], state)

            def recompute(n):
                for t in range(n):
                    model(x[:, t + 1:R + t + 1], model.init_state(1))         # the last R tokens

            queued(3), recompute(1)                                           # warm up
            fast, slow = _best_per_token([queued, recompute], [30, 3])
    finally:
        torch.set_num_threads(threads)
    print(f"{name}: R={R}, step {fast * 1e3:.2f} ms/token, recompute {slow * 1e3:.2f} ms/token, "
          f"speed-up {slow / fast:.1f}x")
    assert slow / fast >= 20
