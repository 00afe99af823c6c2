"""seqlab's own cells against the independent numpy reference with hand-written BPTT:
outputs, final states, input and every parameter gradient, float64, to 1e-8 relative."""
import numpy as np
import pytest
import torch

from seqlab.models import reference as ref
from seqlab.models.cells import ElmanCell, GRUCell, JordanCell, LSTMCell
from seqlab.models.stack import RecurrentLayer

from conftest import paths_for

T, B, I, H = 7, 3, 4, 5
NAMES = {"W_ih": "weight_ih", "W_hh": "weight_hh", "b_ih": "bias_ih", "b_hh": "bias_hh",
         "W_ho": "weight_ho", "b_o": "bias_o", "w_ci": "weight_ci", "w_cf": "weight_cf", "w_co": "weight_co"}

CASES = {
    "elman-tanh": ("elman", {"nonlinearity": "tanh"}, lambda: ElmanCell(I, H, "tanh")),
    "elman-relu": ("elman", {"nonlinearity": "relu"}, lambda: ElmanCell(I, H, "relu")),
    "jordan": ("jordan", {}, lambda: JordanCell(I, H)),
    "lstm": ("lstm", {}, lambda: LSTMCell(I, H)),
    "lstm-peephole": ("lstm", {"peephole": True}, lambda: LSTMCell(I, H, peephole=True)),
    "lstm-coupled": ("lstm", {"coupled": True}, lambda: LSTMCell(I, H, coupled=True)),
    "lstm-peephole-coupled": ("lstm", {"peephole": True, "coupled": True},
                              lambda: LSTMCell(I, H, peephole=True, coupled=True)),
    "gru-pytorch": ("gru", {"form": "pytorch"}, lambda: GRUCell(I, H, "pytorch")),
    "gru-cho": ("gru", {"form": "cho"}, lambda: GRUCell(I, H, "cho")),
}


def rel_close(a, b, tol=1e-8):
    a, b = np.asarray(a), np.asarray(b)
    assert np.linalg.norm(a - b) <= tol * max(np.linalg.norm(a), np.linalg.norm(b), 1e-300), \
        f"relative error {np.linalg.norm(a - b) / max(np.linalg.norm(a), 1e-300):.3g}"


@pytest.mark.parametrize("fast", [True, False], ids=["fast", "loop"])
@pytest.mark.parametrize("case,lstm_path", paths_for(CASES), indirect=["lstm_path"])
def test_cell_equals_numpy_reference_in_float64(case, fast, lstm_path):
    kind, options, make = CASES[case]
    rng = np.random.default_rng(3)
    params = ref.init_params(kind, I, H, rng, **options)
    x = rng.normal(size=(T, B, I))
    state = (rng.normal(size=(B, H)) * 0.5, rng.normal(size=(B, H)) * 0.5) if kind == "lstm" \
        else rng.normal(size=(B, H)) * 0.5
    d_out = rng.normal(size=(T, B, H))

    # the reference: forward, then hand-written BPTT of L = sum(d_out * outputs)
    outputs, final, cache = ref.forward(kind, params, x, state, **options)
    grads, d_x, _ = ref.backward(kind, params, cache, d_out, **options)

    # seqlab: the same weights, autograd
    cell = make().double()
    assert {NAMES[k] for k in params} == {n for n, _ in cell.named_parameters()}
    with torch.no_grad():
        for k, v in params.items():
            getattr(cell, NAMES[k]).copy_(torch.from_numpy(v))
    layer = RecurrentLayer(cell, fast=fast)
    assert layer.fast == fast
    xt = torch.from_numpy(x).transpose(0, 1).contiguous().requires_grad_(True)       # (B, T, I)
    st = tuple(torch.from_numpy(s) for s in state) if kind == "lstm" else torch.from_numpy(state)
    out, final_t = layer(xt, st)                                                      # (B, T, H)
    (out * torch.from_numpy(d_out).transpose(0, 1)).sum().backward()

    rel_close(out.detach().transpose(0, 1).numpy(), outputs)
    for ours, theirs in zip(final_t if kind == "lstm" else (final_t,), final if kind == "lstm" else (final,)):
        rel_close(ours.detach().numpy(), theirs)
    rel_close(xt.grad.transpose(0, 1).numpy(), d_x)
    for k, g in grads.items():
        rel_close(getattr(cell, NAMES[k]).grad.numpy(), g)
