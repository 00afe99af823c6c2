"""The numpy reference cells: finite differences, PyTorch parity, truncated BPTT."""
from __future__ import annotations

import numpy as np
import pytest
import torch

from seqlab.models import reference as ref

T, B, I, H = 5, 2, 3, 4

CONFIGS = [
    ("elman", {"nonlinearity": "tanh"}),
    ("elman", {"nonlinearity": "relu"}),
    ("jordan", {}),
    ("lstm", {}),
    ("lstm", {"peephole": True}),
    ("lstm", {"coupled": True}),
    ("lstm", {"peephole": True, "coupled": True}),
    ("gru", {"form": "pytorch"}),
    ("gru", {"form": "cho"}),
]
IDS = [cell + "".join(f"-{v}" if isinstance(v, str) else f"-{k}" for k, v in opts.items() if v)
       for cell, opts in CONFIGS]


def random_state(cell, rng):
    if cell == "lstm":
        return (rng.normal(size=(B, H)) * 0.5, rng.normal(size=(B, H)) * 0.5)
    return rng.normal(size=(B, H)) * 0.5


def as_list(state):
    return list(state) if isinstance(state, tuple) else [state]


def problem(cell, options, seed=0):
    """Parameters, inputs, initial state and the weights of a linear loss."""
    rng = np.random.default_rng(seed)
    params = ref.init_params(cell, I, H, rng, **options)
    x = rng.normal(size=(T, B, I))                                                 # (T, B, I)
    state = random_state(cell, rng)
    w_out = rng.normal(size=(T, B, H))                                             # (T, B, H)
    w_final = random_state(cell, rng)
    return params, x, state, w_out, w_final


def loss(cell, options, params, x, state, w_out, w_final):
    outputs, final, _ = ref.forward(cell, params, x, state, **options)
    return np.sum(outputs * w_out) + sum(np.sum(f * w) for f, w in zip(as_list(final), as_list(w_final)))


def numerical_gradient(f, array, eps=1e-6):
    """Central differences of the scalar f() w.r.t. every entry of `array` (changed in place)."""
    grad = np.zeros_like(array)
    for index in np.ndindex(array.shape):
        saved = array[index]
        array[index] = saved + eps
        plus = f()
        array[index] = saved - eps
        minus = f()
        array[index] = saved
        grad[index] = (plus - minus) / (2 * eps)
    return grad


def relative_error(a, b):
    return np.linalg.norm(a - b) / max(np.linalg.norm(a) + np.linalg.norm(b), 1e-12)


@pytest.mark.parametrize("cell,options", CONFIGS, ids=IDS)
def test_gradients_match_finite_differences(cell, options):
    params, x, state, w_out, w_final = problem(cell, options)
    outputs, final, cache = ref.forward(cell, params, x, state, **options)
    if options.get("nonlinearity") == "relu":   # stay away from the kink of relu at 0
        smallest = min(np.abs(step["preactivation"]).min() for step in cache["steps"])
        assert smallest > 1e-4, "pick another seed: a pre-activation sits on the relu kink"
        assert any((step["preactivation"] < 0).any() for step in cache["steps"])  # relu is exercised
    d_final = tuple(w_final) if cell == "lstm" else w_final
    grads, d_x, d_state = ref.backward(cell, params, cache, w_out, d_final, **options)

    f = lambda: loss(cell, options, params, x, state, w_out, w_final)  # noqa: E731
    assert set(grads) == set(params)
    for name in params:
        assert relative_error(grads[name], numerical_gradient(f, params[name])) < 1e-6, name
    assert relative_error(d_x, numerical_gradient(f, x)) < 1e-6, "d_x"
    for analytic, initial in zip(as_list(d_state), as_list(state)):
        assert relative_error(analytic, numerical_gradient(f, initial)) < 1e-6, "d_initial_state"


# -- parity with PyTorch ----------------------------------------------------------------------

TORCH_CASES = [
    ("elman", {"nonlinearity": "tanh"}, lambda: torch.nn.RNN(I, H, nonlinearity="tanh", dtype=torch.float64)),
    ("elman", {"nonlinearity": "relu"}, lambda: torch.nn.RNN(I, H, nonlinearity="relu", dtype=torch.float64)),
    ("lstm", {}, lambda: torch.nn.LSTM(I, H, dtype=torch.float64)),
    ("gru", {"form": "pytorch"}, lambda: torch.nn.GRU(I, H, dtype=torch.float64)),
]
TORCH_NAMES = {"W_ih": "weight_ih_l0", "W_hh": "weight_hh_l0", "b_ih": "bias_ih_l0", "b_hh": "bias_hh_l0"}


@pytest.mark.parametrize("cell,options,make", TORCH_CASES, ids=["rnn-tanh", "rnn-relu", "lstm", "gru"])
def test_matches_pytorch(cell, options, make):
    params, x, state, w_out, w_final = problem(cell, options, seed=1)
    outputs, final, cache = ref.forward(cell, params, x, state, **options)
    d_final = tuple(w_final) if cell == "lstm" else w_final
    grads, d_x, d_state = ref.backward(cell, params, cache, w_out, d_final, **options)

    module = make()
    with torch.no_grad():
        for name, torch_name in TORCH_NAMES.items():
            getattr(module, torch_name).copy_(torch.from_numpy(params[name]))
    x_t = torch.tensor(x, requires_grad=True)                                     # (T, B, I)
    state_t = [torch.tensor(s[None], requires_grad=True) for s in as_list(state)]  # (1, B, H)
    out_t, final_t = module(x_t, tuple(state_t) if cell == "lstm" else state_t[0])
    final_t = list(final_t) if cell == "lstm" else [final_t]
    torch_loss = (out_t * torch.from_numpy(w_out)).sum() + sum(
        (f[0] * torch.from_numpy(w)).sum() for f, w in zip(final_t, as_list(w_final)))
    torch_loss.backward()

    close = dict(rtol=1e-10, atol=1e-10)
    np.testing.assert_allclose(outputs, out_t.detach().numpy(), **close)
    for mine, theirs in zip(as_list(final), final_t):
        np.testing.assert_allclose(mine, theirs[0].detach().numpy(), **close)
    for name, torch_name in TORCH_NAMES.items():
        np.testing.assert_allclose(grads[name], getattr(module, torch_name).grad.numpy(), **close, err_msg=name)
    np.testing.assert_allclose(d_x, x_t.grad.numpy(), **close)
    for mine, theirs in zip(as_list(d_state), state_t):
        np.testing.assert_allclose(mine, theirs.grad[0].numpy(), **close)


# -- truncated BPTT ---------------------------------------------------------------------------

TRUNCATION_CONFIGS = [c for c in CONFIGS if c[0] in ("lstm", "gru")] + [CONFIGS[0], CONFIGS[2]]


@pytest.mark.parametrize("cell,options", TRUNCATION_CONFIGS)
def test_truncation_at_least_T_is_full_bptt(cell, options):
    params, x, state, w_out, w_final = problem(cell, options, seed=2)
    _, _, cache = ref.forward(cell, params, x, state, **options)
    full = ref.backward(cell, params, cache, w_out, **options)
    d_final = tuple(w_final) if cell == "lstm" else w_final
    for k in (T, T + 3):
        # d_final_state is ignored under truncation, so passing it changes nothing.
        truncated = ref.backward(cell, params, cache, w_out, d_final, truncate=k, **options)
        for name in params:
            np.testing.assert_allclose(truncated[0][name], full[0][name], rtol=1e-12, atol=1e-14)
        np.testing.assert_allclose(truncated[1], full[1], rtol=1e-12, atol=1e-14)
        for a, b in zip(as_list(truncated[2]), as_list(full[2])):
            np.testing.assert_allclose(a, b, rtol=1e-12, atol=1e-14)


def brute_force_truncated(cell, options, params, x, state, w_out, k):
    """Sum over t of the gradient of loss term t, backpropagated fully through a window of the
    last k steps that starts from the true state, held constant (unless it is the initial state)."""
    grads = {name: np.zeros_like(p) for name, p in params.items()}
    d_x = np.zeros_like(x)
    d_initial = [np.zeros((B, H)) for _ in as_list(state)]
    for t in range(T):
        start = max(0, t - k + 1)
        _, start_state, _ = ref.forward(cell, params, x[:start], state, **options)  # true state
        window_x = x[start:t + 1]                                                   # (<=k, B, I)
        _, _, cache = ref.forward(cell, params, window_x, start_state, **options)
        d_outputs = np.zeros((len(window_x), B, H))
        d_outputs[-1] = w_out[t]                                   # only loss term t
        window_grads, window_d_x, d_start = ref.backward(cell, params, cache, d_outputs, **options)
        for name in grads:
            grads[name] += window_grads[name]
        d_x[start:t + 1] += window_d_x
        if start == 0:   # the initial state is a real input; any later start state is a constant
            for total, d in zip(d_initial, as_list(d_start)):
                total += d
    return grads, d_x, d_initial


@pytest.mark.parametrize("k", [1, 2, 3])
@pytest.mark.parametrize("cell,options", TRUNCATION_CONFIGS)
def test_truncated_bptt_matches_brute_force(cell, options, k):
    params, x, state, w_out, _ = problem(cell, options, seed=3)
    _, _, cache = ref.forward(cell, params, x, state, **options)
    grads, d_x, d_initial = ref.backward(cell, params, cache, w_out, truncate=k, **options)
    expected_grads, expected_d_x, expected_d_initial = brute_force_truncated(
        cell, options, params, x, state, w_out, k)
    for name in params:
        np.testing.assert_allclose(grads[name], expected_grads[name], rtol=1e-12, atol=1e-14)
    np.testing.assert_allclose(d_x, expected_d_x, rtol=1e-12, atol=1e-14)
    for a, b in zip(as_list(d_initial), expected_d_initial):
        np.testing.assert_allclose(a, b, rtol=1e-12, atol=1e-14)
    # and truncation really cuts something off
    full_grads = ref.backward(cell, params, cache, w_out, **options)[0]
    assert not np.allclose(grads["W_hh"], full_grads["W_hh"])


# -- options do something -----------------------------------------------------------------------

def test_cho_gru_differs_from_pytorch_gru():
    params, x, state, _, _ = problem("gru", {}, seed=4)
    pytorch_out, _, _ = ref.forward("gru", params, x, state, form="pytorch")
    cho_out, _, _ = ref.forward("gru", params, x, state, form="cho")
    assert np.abs(pytorch_out - cho_out).max() > 1e-3


def test_parameter_layout():
    shapes = ref.param_shapes("lstm", I, H, peephole=True, coupled=True)
    assert shapes == {"W_ih": (3 * H, I), "W_hh": (3 * H, H), "b_ih": (3 * H,), "b_hh": (3 * H,),
                      "w_ci": (H,), "w_co": (H,)}
    assert set(ref.param_shapes("lstm", I, H, peephole=True)) >= {"w_ci", "w_cf", "w_co"}
    assert set(ref.param_shapes("jordan", I, H)) == {"W_ih", "W_hh", "b_ih", "b_hh", "W_ho", "b_o"}
    with pytest.raises(TypeError):
        ref.param_shapes("gru", I, H, peephole=True)
    with pytest.raises(ValueError):
        ref.param_shapes("gru", I, H, form="nope")


def test_one_step_follows_the_written_equations():
    """The options PyTorch cannot check (jordan, peepholes, coupling, cho), against the spec."""
    rng = np.random.default_rng(5)
    x = rng.normal(size=(1, B, I))
    x0 = x[0]
    s = lambda z: 1 / (1 + np.exp(-z))  # noqa: E731
    p = ref.init_params("jordan", I, H, rng)
    y_prev = rng.normal(size=(B, H))
    h = np.tanh(x0 @ p["W_ih"].T + p["b_ih"] + y_prev @ p["W_hh"].T + p["b_hh"])
    out, final, _ = ref.forward("jordan", p, x, y_prev)
    np.testing.assert_allclose(out[0], np.tanh(h @ p["W_ho"].T + p["b_o"]), rtol=1e-13)
    np.testing.assert_allclose(final, out[0])

    for coupled in (False, True):
        p = ref.init_params("lstm", I, H, rng, peephole=True, coupled=coupled)
        h_prev, c_prev = rng.normal(size=(B, H)), rng.normal(size=(B, H))
        z = x0 @ p["W_ih"].T + p["b_ih"] + h_prev @ p["W_hh"].T + p["b_hh"]
        if coupled:
            z_i, z_g, z_o = z[:, :H], z[:, H:2 * H], z[:, 2 * H:]
            i = s(z_i + p["w_ci"] * c_prev)
            f = 1 - i
        else:
            z_i, z_f, z_g, z_o = z[:, :H], z[:, H:2 * H], z[:, 2 * H:3 * H], z[:, 3 * H:]
            i, f = s(z_i + p["w_ci"] * c_prev), s(z_f + p["w_cf"] * c_prev)
        c = f * c_prev + i * np.tanh(z_g)
        o = s(z_o + p["w_co"] * c)
        out, (h_new, c_new), _ = ref.forward("lstm", p, x, (h_prev, c_prev), peephole=True, coupled=coupled)
        np.testing.assert_allclose(c_new, c, rtol=1e-13)
        np.testing.assert_allclose(h_new, o * np.tanh(c), rtol=1e-13)

    p = ref.init_params("gru", I, H, rng, form="cho")
    h_prev = rng.normal(size=(B, H))
    W_ir, W_iz, W_in = p["W_ih"][:H], p["W_ih"][H:2 * H], p["W_ih"][2 * H:]
    W_hr, W_hz, W_hn = p["W_hh"][:H], p["W_hh"][H:2 * H], p["W_hh"][2 * H:]
    b_ir, b_iz, b_in = p["b_ih"][:H], p["b_ih"][H:2 * H], p["b_ih"][2 * H:]
    b_hr, b_hz, b_hn = p["b_hh"][:H], p["b_hh"][H:2 * H], p["b_hh"][2 * H:]
    r = s(x0 @ W_ir.T + b_ir + h_prev @ W_hr.T + b_hr)
    u = s(x0 @ W_iz.T + b_iz + h_prev @ W_hz.T + b_hz)
    n = np.tanh(x0 @ W_in.T + b_in + (r * h_prev) @ W_hn.T + b_hn)
    out, _, _ = ref.forward("gru", p, x, h_prev, form="cho")
    np.testing.assert_allclose(out[0], (1 - u) * n + u * h_prev, rtol=1e-13)
