"""Gate statistics: saturation fractions on hand-made activations, and recomputed gates
that reproduce PyTorch's own fused LSTM / GRU outputs."""
from __future__ import annotations

import json

import pytest
import torch
from torch import nn

from seqlab import SeqlabError
from seqlab.analysis.gates import fused_layer_gates, saturation


def test_saturation_fractions_on_hand_made_activations():
    acts = torch.tensor([[0.05, 0.50],
                         [0.95, 0.95],
                         [0.05, 0.09],
                         [0.50, 0.91]])                     # 4 positions x 2 units
    left, right = saturation(acts)
    assert left.tolist() == [0.5, 0.25] and right.tolist() == [0.25, 0.5]
    # the thresholds are strict: exactly 0.1 or 0.9 is not saturated
    left, right = saturation(torch.tensor([[0.1], [0.9]]))
    assert left.item() == 0 and right.item() == 0
    # padded positions are left out
    left, right = saturation(acts.view(2, 2, 2), valid=torch.tensor([[True, True], [False, False]]))
    assert left.tolist() == [0.5, 0.0] and right.tolist() == [0.5, 0.5]
    with pytest.raises(SeqlabError):
        saturation(acts, valid=torch.zeros(4, dtype=torch.bool))


def test_recomputed_lstm_gates_reproduce_the_fused_lstm():
    torch.manual_seed(0)
    rnn = nn.LSTM(5, 7, num_layers=2, batch_first=True).double().eval()
    x = torch.randn(3, 11, 5, dtype=torch.float64)
    state = (torch.randn(2, 3, 7, dtype=torch.float64), torch.randn(2, 3, 7, dtype=torch.float64))
    expected, _ = rnn(x, state)
    layers = fused_layer_gates(rnn, x, state)
    h = None
    for k, gates in enumerate(layers):
        c, outs = state[1][k], []
        for t in range(x.size(1)):            # c_t = f c_{t-1} + i g, h_t = o tanh(c_t)
            c = gates["forget"][:, t] * c + gates["input"][:, t] * gates["cell"][:, t]
            outs.append(gates["output"][:, t] * c.tanh())
        h = torch.stack(outs, 1)
    torch.testing.assert_close(h, expected, rtol=1e-12, atol=1e-12)
    assert all(((g >= 0) & (g <= 1)).all() for name, g in layers[0].items() if name != "cell")


def test_recomputed_gru_gates_reproduce_the_fused_gru():
    torch.manual_seed(1)
    rnn = nn.GRU(4, 6, batch_first=True).double()
    x = torch.randn(2, 9, 4, dtype=torch.float64)
    expected, _ = rnn(x)
    gates = fused_layer_gates(rnn, x)[0]
    w_in, w_hn = rnn.weight_ih_l0[12:], rnn.weight_hh_l0[12:]
    b_in, b_hn = rnn.bias_ih_l0[12:], rnn.bias_hh_l0[12:]
    h, outs = torch.zeros(2, 6, dtype=torch.float64), []
    for t in range(9):                        # n = tanh(W_in x + b_in + r (W_hn h + b_hn)), h = (1 - z) n + z h
        n = torch.tanh(x[:, t] @ w_in.t() + b_in + gates["reset"][:, t] * (h @ w_hn.t() + b_hn))
        h = (1 - gates["update"][:, t]) * n + gates["update"][:, t] * h
        outs.append(h)
    torch.testing.assert_close(torch.stack(outs, 1), expected, rtol=1e-12, atol=1e-12)


def test_gate_statistics_refuse_what_they_cannot_read():
    with pytest.raises(SeqlabError, match="unidirectional"):
        fused_layer_gates(nn.LSTM(3, 4, batch_first=True, bidirectional=True), torch.randn(1, 2, 3))
    with pytest.raises(SeqlabError, match="nn.LSTM or nn.GRU"):
        fused_layer_gates(nn.RNN(3, 4, batch_first=True), torch.randn(1, 2, 3))


@pytest.mark.parametrize("name", ["lstm", "gru"])
def test_language_model_saturation_matches_the_gates_read_directly_and_plots(tmp_path, name):
    from seqlab.analysis.gates import lm_saturation, plot_saturation
    from seqlab.config import ModelConfig
    from seqlab.models.recurrent import RecurrentLM
    torch.manual_seed(0)
    model = RecurrentLM(ModelConfig(name=name, embedding_size=8, hidden_size=12, num_layers=2, dropout=0.0), 20).eval()
    ids = torch.randint(4, 20, (400,))
    stats = lm_saturation(model, ids, batch_size=4, steps=30)      # state carried over 4 chunks of <= 30
    # the same fractions from one pass over whole streams, gates read with the initial zero state
    x = ids.view(4, 100)
    direct = fused_layer_gates(model.rnn, model.embedding(x).detach())
    assert len(stats) == 2
    for k in range(2):
        for gate, (left, right) in stats[k].items():
            want_left, want_right = saturation(direct[k][gate])
            torch.testing.assert_close(left, want_left)
            torch.testing.assert_close(right, want_right)
    plot_saturation(tmp_path / "sat.png", stats, title="test")
    assert (tmp_path / "sat.png").stat().st_size > 1000


def test_analyze_saturation_on_the_command_line(tmp_path, text_file, capsys):
    from conftest import TINY

    from seqlab.cli import main
    run = tmp_path / "run"
    assert main(["train", f"data.path={text_file}", *TINY, "train.max_steps=5", "--out", str(run)]) == 0
    png = tmp_path / "sat.png"
    assert main(["analyze", "saturation", str(run), "--out", str(png), "--json", "--tokens", "2000"]) == 0
    out = capsys.readouterr().out.strip().splitlines()
    assert sum("gate:" in line for line in out) == 6          # 2 layers x input, forget, output
    assert png.stat().st_size > 1000
    stats = json.loads(out[-1])
    assert len(stats) == 2 and len(stats[0]["forget"]["left"]) == 32
    assert main(["analyze", "saturation", str(run), "--tokens", "0"]) == 2
