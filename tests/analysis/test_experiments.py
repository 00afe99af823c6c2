"""seqlab analyze onebit / clipping / forget-bias (analysis/experiments.py and exp_*.py):
the one-bit data, the gate-bias initialisations, clipping's bound, a learning check that
can fail, and a tiny end-to-end run of each command."""
from __future__ import annotations

import json

import pytest
import torch

from seqlab import SeqlabError
from seqlab.analysis import exp_clipping, exp_onebit, experiments
from seqlab.cli import main as cli_main



# -- one-bit data ---------------------------------------------------------------------------

def test_onebit_label_is_the_sign_of_the_first_input_and_the_rest_is_noise():
    x, y = exp_onebit.onebit_batch(500, 7, 0.5, torch.Generator().manual_seed(0))
    assert x.shape == (500, 7, 1) and y.shape == (500,)
    assert set(x[:, 0, 0].tolist()) == {-1.0, 1.0}
    assert torch.equal(y, (x[:, 0, 0] > 0).float())
    assert 0.3 < y.mean() < 0.7                                  # both classes drawn
    noise = x[:, 1:, 0]
    assert abs(noise.std().item() - 0.5) < 0.03                  # σ as asked, 3,000 draws
    assert abs(noise.mean().item()) < 0.05
    # the noise carries no information about the label
    assert abs(noise.mean(1)[y == 1].mean() - noise.mean(1)[y == 0].mean()) < 0.05


def test_onebit_lengths_and_determinism():
    for T in (1, 2, 50):
        x, _ = exp_onebit.onebit_batch(3, T, 0.1, torch.Generator().manual_seed(1))
        assert x.shape == (3, T, 1)
    a = exp_onebit.onebit_batch(4, 5, 1.0, torch.Generator().manual_seed(2))
    b = exp_onebit.onebit_batch(4, 5, 1.0, torch.Generator().manual_seed(2))
    assert torch.equal(a[0], b[0]) and torch.equal(a[1], b[1])
    with pytest.raises(SeqlabError):
        exp_onebit.onebit_batch(4, 0, 1.0, torch.Generator())


# -- initialisations ------------------------------------------------------------------------

@pytest.mark.parametrize("bias", [0.0, 1.0, 2.5])
def test_forget_bias_sets_the_forget_slice_and_nothing_else(bias):
    torch.manual_seed(0)
    model = experiments.LastStepModel("lstm", 2, 8, forget_bias=bias)
    cell, H = model.cell, 8
    total = cell.bias_ih + cell.bias_hh                          # (4H,) gates i, f, g, o as in nn.LSTM
    assert torch.allclose(total[H:2 * H], torch.full((H,), bias))
    for gate in (0, 2, 3):                                       # i, g, o keep PyTorch's uniform init
        assert total[gate * H:(gate + 1) * H].abs().max() <= 2 / H ** 0.5
        assert total[gate * H:(gate + 1) * H].std() > 0


def test_forget_bias_is_the_gate_the_cell_uses_as_f():
    # a huge forget bias with a zero input gate must keep c exactly: f = 1, i = 0
    model = experiments.LastStepModel("lstm", 1, 4, forget_bias=60.0)
    experiments.set_gate_bias(model.cell, 0, -60.0)
    cell = model.cell
    c0 = torch.randn(3, 4)
    xp = cell.project(torch.randn(3, 1, 1))[:, 0]                # (3, 4H)
    _, (_, c1) = cell.step(xp, (torch.zeros(3, 4), c0))
    assert torch.allclose(c1, c0, atol=1e-6)


def test_chrono_init_sets_lstm_forget_and_input_and_gru_update_biases():
    T, H = 40, 16
    lstm = experiments.LastStepModel("lstm", 1, H)
    exp_onebit.chrono_init(lstm, T, torch.Generator().manual_seed(0))
    f = experiments.gate_bias(lstm.cell, 1)
    assert torch.allclose(experiments.gate_bias(lstm.cell, 0), -f)
    assert (f >= 0).all() and (f <= torch.log(torch.tensor(T - 1.0)) + 1e-6).all() and f.std() > 0
    gru = experiments.LastStepModel("gru", 1, H)
    exp_onebit.chrono_init(gru, T, torch.Generator().manual_seed(0))
    u = experiments.gate_bias(gru.cell, 1)
    assert torch.allclose(u, f)
    # the update gate u is the one that keeps h: with a huge u bias h stays put
    experiments.set_gate_bias(gru.cell, 1, 60.0)
    h0 = torch.randn(2, H)
    _, h1 = gru.cell.step(gru.cell.project(torch.randn(2, 1, 1))[:, 0], h0)
    assert torch.allclose(h1, h0, atol=1e-6)


# -- clipping -------------------------------------------------------------------------------

def _clip_args(**kw):
    import argparse
    base = dict(steps=8, hidden=8, recurrent_scale=2.0, updates=12, batch_size=8, lr=0.5, clip=0.5, seed=0)
    return argparse.Namespace(**{**base, **kw})


def test_clipping_bounds_the_applied_gradient_norm_and_records_the_norm_before():
    from seqlab.data.synthetic import adding_problem
    args = _clip_args()
    x, y = adding_problem(args.steps, args.updates * args.batch_size, seed=0)
    batches = list(zip(x.split(args.batch_size), y.split(args.batch_size)))
    state = exp_clipping.make_model(args).state_dict()
    clipped = exp_clipping.train(args.clip, args, state, batches)
    assert len(clipped["applied_norm"]) == args.updates and clipped["diverged_at"] is None
    assert all(a <= args.clip * (1 + 1e-4) for a in clipped["applied_norm"])
    # where the gradient was over θ it was rescaled to θ, elsewhere left alone
    over = [(g, a) for g, a in zip(clipped["grad_norm"], clipped["applied_norm"]) if g > args.clip]
    assert over, "this setting must produce gradients above the threshold"
    assert all(abs(a - args.clip) < 1e-3 * args.clip for _, a in over)
    under = [(g, a) for g, a in zip(clipped["grad_norm"], clipped["applied_norm"]) if g <= args.clip]
    assert all(abs(a - g) < 1e-5 * max(g, 1e-8) for g, a in under)
    # unclipped, the applied gradient is the raw one; the first step is the same in both runs
    free = exp_clipping.train(0.0, args, state, batches)
    assert free["applied_norm"][0] == pytest.approx(free["grad_norm"][0])
    assert free["grad_norm"][0] == pytest.approx(clipped["grad_norm"][0])
    assert max(v for v in free["applied_norm"] if v is not None) > args.clip


def test_clipping_control_with_contracting_weights_does_not_diverge():
    from seqlab.data.synthetic import adding_problem
    args = _clip_args(recurrent_scale=0.5, lr=0.05, updates=20)
    x, y = adding_problem(args.steps, args.updates * args.batch_size, seed=0)
    batches = list(zip(x.split(args.batch_size), y.split(args.batch_size)))
    run = exp_clipping.train(0.0, args, exp_clipping.make_model(args).state_dict(), batches)
    assert run["diverged_at"] is None and run["max_grad_norm"] < 10


# -- learning -------------------------------------------------------------------------------

def test_lstm_learns_onebit_at_small_T():
    import argparse
    args = argparse.Namespace(hidden=16, lr=1e-2, updates=150, batch_size=32, noise=0.5)
    run = exp_onebit.train_one("lstm", "default", 5, 0, args)
    assert run["test_accuracy"] >= 0.9, run


# -- the commands, end to end ---------------------------------------------------------------

def _report(tmp_path, name):
    png, js = tmp_path / f"{name}.png", tmp_path / f"{name}.json"
    assert png.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    report = json.loads(js.read_text())
    for key in ("experiment", "command", "args", "commit", "machine", "date", "wall_seconds"):
        assert key in report, key
    assert report["experiment"] == name and report["command"].startswith(f"seqlab analyze {name} ")
    return report


def test_onebit_command_end_to_end(tmp_path, capsys):
    out = tmp_path / "onebit.png"
    assert cli_main(["analyze", "onebit", "--lengths", "3", "6", "--seeds", "2", "--updates", "30",
                     "--hidden", "4", "--no-progress", "--out", str(out)]) == 0
    report = _report(tmp_path, "onebit")
    assert len(report["runs"]) == 2 * 2 * 5                       # T × seeds × (rnn, lstm ×2, gru ×2)
    assert {r["T"] for r in report["summary"]} == {3, 6}
    for r in report["summary"]:
        assert 0 <= r["success_rate"] <= 1 and 0 <= r["mean_test_accuracy"] <= 1
    assert "success rate" in capsys.readouterr().out


def test_clipping_command_end_to_end(tmp_path):
    out = tmp_path / "clipping.png"
    assert cli_main(["analyze", "clipping", "--steps", "5", "--updates", "15", "--hidden", "4",
                     "--no-progress", "--out", str(out)]) == 0
    runs = _report(tmp_path, "clipping")["runs"]
    assert [r["clip"] for r in runs] == [None, 1.0]
    for r in runs:
        assert {"loss", "grad_norm", "applied_norm", "diverged_at", "final_loss"} <= set(r)
    assert all(a <= 1.0 + 1e-4 for a in runs[1]["applied_norm"])


def test_forget_bias_command_end_to_end(tmp_path):
    out = tmp_path / "forget-bias.png"
    assert cli_main(["analyze", "forget-bias", "--steps", "6", "--updates", "10", "--eval-every", "5",
                     "--seeds", "2", "--hidden", "4", "--no-progress", "--out", str(out)]) == 0
    report = _report(tmp_path, "forget-bias")
    assert [r["forget_bias"] for r in report["summary"]] == [0.0, 1.0]
    for r in report["runs"]:
        assert r["initial_forget_bias"] == pytest.approx(r["forget_bias"], abs=1e-6)
        assert [c["update"] for c in r["curve"]] == [5, 10]


@pytest.mark.parametrize("argv, words", [
    (["analyze", "onebit", "--out", "x.svg"], ".png"),
    (["analyze", "onebit", "--seeds", "0", "--out", "x.png"], "--seeds"),
    (["analyze", "clipping", "--steps", "1", "--out", "x.png"], "--steps"),
    (["analyze", "forget-bias", "--lr", "-1", "--out", "x.png"], "--lr"),
])
def test_bad_options_are_one_line_errors(argv, words, capsys, tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    assert cli_main(argv) == 2
    err = capsys.readouterr().err
    assert words in err and err.count("\n") == 1
    assert not list(tmp_path.iterdir())


def test_unknown_experiment_is_refused():
    with pytest.raises(SeqlabError, match="onebit"):
        experiments.main(["nope"])
