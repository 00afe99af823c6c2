"""Gradient flow through time: autograd against the numpy BPTT reference, and the shapes of
vanishing (Elman) and preserved (LSTM) gradients."""
from __future__ import annotations

import numpy as np
import pytest
import torch

from seqlab.analysis.gradients import gradient_flow, gradient_norms, jacobian_norms, make_cell, plot_gradient_flow
from seqlab.models import reference as ref


@pytest.mark.parametrize("name, ref_name", [("rnn", "elman"), ("lstm", "lstm"), ("gru", "gru")])
def test_gradient_norms_equal_the_numpy_bptt_reference(name, ref_name):
    torch.manual_seed(0)
    B, T, H = 3, 12, 6
    cell = make_cell(name, H, H).double()
    x = torch.randn(B, T, H, dtype=torch.float64)
    v = torch.randn(H, dtype=torch.float64)
    ours = gradient_norms(cell, x, v).numpy()
    # the reference: forward, then the step backward functions by hand, recording dL/dh_k
    params = {"W_ih": cell.weight_ih, "W_hh": cell.weight_hh, "b_ih": cell.bias_ih, "b_hh": cell.bias_hh}
    params = {k: p.detach().numpy().copy() for k, p in params.items()}
    state = ref.zero_state(ref_name, B, H)
    _, _, cache = ref.forward(ref_name, params, x.numpy().transpose(1, 0, 2), state)
    grads = {k: np.zeros_like(p) for k, p in params.items()}
    d_state = np.tile(v.numpy(), (B, 1))                                    # dL/dh_T for L = v·h_T
    if ref_name == "lstm":
        d_state = (d_state, np.zeros((B, H)))
    norms = [None] * T
    for t in reversed(range(T)):
        dh = d_state[0] if ref_name == "lstm" else d_state
        norms[t] = np.linalg.norm(dh, axis=-1).mean()
        _, d_state = ref.STEP_BACKWARDS[ref_name](params, cache["steps"][t], d_state, grads,
                                                  **cache["options"])
    np.testing.assert_allclose(ours, norms, rtol=1e-10)


def test_jacobian_product_norm_at_the_last_step_is_one_and_vanishes_for_a_small_elman_net():
    torch.manual_seed(0)
    cell = make_cell("rnn", 8, 8).double()
    with torch.no_grad():
        cell.weight_hh.mul_(0.5 / torch.linalg.matrix_norm(cell.weight_hh, ord=2))   # contraction: ‖W‖ = 0.5
    norms = jacobian_norms(cell, torch.randn(1, 30, 8, dtype=torch.float64))
    assert norms[-1] == pytest.approx(1.0)                                   # ∂h_T/∂h_T = I
    # each factor diag(1 - h²) W has norm <= 0.5: the product shrinks at least that fast
    assert all(norms[k] <= 0.5 ** (29 - k) * (1 + 1e-9) for k in range(30))


def test_gated_cells_keep_more_gradient_than_the_elman_net_and_the_plot_is_written(tmp_path):
    flow = gradient_flow(hidden_size=16, steps=60, batch_size=4)
    far = {name: f["gradient"][0] / f["gradient"][-1] for name, f in flow.items()}   # k = 1 against k = T
    assert far["lstm"] > far["rnn"] and far["gru"] > far["rnn"]
    assert len(flow["lstm"]["recurrent_spectral_norms"]) == 4 and len(flow["rnn"]["recurrent_spectral_norms"]) == 1
    plot_gradient_flow(tmp_path / "g.png", flow, "test")
    assert (tmp_path / "g.png").stat().st_size > 1000


def test_analyze_gradients_on_the_command_line(tmp_path, capsys):
    import json

    from seqlab.cli import main
    png = tmp_path / "g.png"
    assert main(["analyze", "gradients", "--hidden", "8", "--steps", "20", "--out", str(png), "--json"]) == 0
    out = capsys.readouterr().out.strip().splitlines()
    assert set(json.loads(out[-1])) == {"rnn", "lstm", "gru"} and png.is_file()
    assert main(["analyze", "gradients", "--steps", "1"]) == 2
