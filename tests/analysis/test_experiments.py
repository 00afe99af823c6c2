"""seqlab analyze onebit / clipping / forget-bias (analysis/experiments.py and exp_*.py): the
forget-gate bias, the clipping runs' traces, a learning check that can fail, and a tiny
end-to-end run of each command. (The one-bit data: tests/data/test_synthetic.py; chrono
initialisation: tests/tasks/test_sequence.py; the engine's clipping measured from the
weights: tests/training/test_clipping.py.)"""
from __future__ import annotations

import argparse
import json

import pytest
import torch

from seqlab import SeqlabError
from seqlab.analysis import exp_clipping, exp_onebit, experiments
from seqlab.cli import main as cli_main
from seqlab.models.cells import LSTMCell


# -- the LSTM's forget-gate bias (exp_forget_bias sets model.forget_bias) -------------------------

@pytest.mark.parametrize("bias", [0.0, 1.0, 2.5])
def test_forget_bias_sets_the_forget_slice_and_nothing_else(bias):
    torch.manual_seed(0)
    cell, H = LSTMCell(2, 8, forget_bias=bias), 8
    total = cell.bias_ih + cell.bias_hh                          # (4H,) gates i, f, g, o as in nn.LSTM
    assert torch.allclose(experiments.gate_bias(cell, 1), torch.full((H,), bias))
    assert torch.equal(experiments.gate_bias(cell, 1), total[H:2 * H])
    for gate in (0, 2, 3):                                       # i, g, o keep PyTorch's uniform init
        assert total[gate * H:(gate + 1) * H].abs().max() <= 2 / H ** 0.5
        assert total[gate * H:(gate + 1) * H].std() > 0


def test_forget_bias_is_the_gate_the_cell_uses_as_f():
    # a huge forget bias with a zero input gate must keep c exactly: f = 1, i = 0
    cell = LSTMCell(1, 4, forget_bias=60.0)
    with torch.no_grad():
        cell.bias_ih[:4], cell.bias_hh[:4] = -30.0, -30.0
    c0 = torch.randn(3, 4)
    xp = cell.project(torch.randn(3, 1, 1))[:, 0]                # (3, 4H)
    _, (_, c1) = cell.step(xp, (torch.zeros(3, 4), c0))
    assert torch.allclose(c1, c0, atol=1e-6)


# -- clipping and one-bit runs through the engine -------------------------------------------------

def _clip_args(**kw):
    base = dict(steps=8, hidden=8, recurrent_scale=2.0, updates=12, batch_size=8, lr=0.5, clip=0.5, seed=0, threads=1)
    return argparse.Namespace(**{**base, **kw})


def test_clipping_runs_record_the_norm_before_clipping_and_the_norm_applied(tmp_path):
    args = _clip_args()
    clipped = exp_clipping.train(args.clip, args, tmp_path)
    assert len(clipped["grad_norm"]) == args.updates and clipped["diverged_at"] is None
    over = [(g, a) for g, a in zip(clipped["grad_norm"], clipped["applied_norm"]) if g > args.clip]
    assert over, "this setting must produce gradients above the threshold"
    assert all(a == args.clip for _, a in over)
    free = exp_clipping.train(0.0, args, tmp_path)
    assert free["applied_norm"] == free["grad_norm"][:len(free["applied_norm"])]
    assert free["grad_norm"][0] == pytest.approx(clipped["grad_norm"][0])        # the same first batch and weights
    assert free["command"].replace("clip_norm=0.0", "clip_norm=0.5") == clipped["command"]


def test_clipping_marks_the_update_that_diverged_and_the_control_does_not_diverge(tmp_path):
    exploding = exp_clipping.train(0.0, _clip_args(recurrent_scale=3.0, lr=5.0, updates=200), tmp_path / "x")
    step = exploding["diverged_at"]
    assert step and len(exploding["loss"]) == step and exploding["loss"][-1] is None
    assert all(v is not None for v in exploding["loss"][:-1]) and exploding["final_loss"] is None
    control = exp_clipping.train(0.0, _clip_args(recurrent_scale=0.5, lr=0.05, updates=20), tmp_path / "c")
    assert control["diverged_at"] is None and control["max_grad_norm"] < 10 and control["weight_norm"] > 0


def test_lstm_learns_onebit_at_small_T(tmp_path):
    args = argparse.Namespace(hidden=16, lr=1e-2, updates=150, batch_size=32, noise=0.5, threads=1)
    run = exp_onebit.train_one("lstm", "default", 5, 0, args, tmp_path)
    assert run["test_accuracy"] >= 0.9, run
    assert run["updates"] < 150 and run["valid_accuracy"] >= 0.99          # stopped at train.stop_at=99


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
