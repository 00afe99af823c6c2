"""The paper-reproduction runner (bench/suite.py), its two benchmarks' cells and the sequence-task trainer."""
from __future__ import annotations

import json
import math

import numpy as np
import pytest
import torch

from seqlab.bench import bai2018, karpathy2016, seqtasks, suite
from seqlab.bench.suite import Benchmark, Cell, Options


# -- the runner -------------------------------------------------------------------------------------

def fake_benchmark(name: str, calls: list[str], fail: set[str] = frozenset()) -> Benchmark:
    def make(cid: str, value: float):
        def run(options):
            calls.append(f"toy/{cid}")
            if f"toy/{cid}" in fail:
                raise RuntimeError(f"{cid} broke")
            return {"value": value, "metrics": {"loss": value}, "config": {"x": 1}, "data": "toy data", "parameters": 10}
        return run

    def cells(profile):
        return [Cell(f"toy/{cid}", "Toy table", f"row {cid}", "loss", make(cid, v), 1.0, paper, "p-note")
                for cid, v, paper in (("a", 0.5, 0.25), ("b", 0.75, None), ("c", 1.5, 2.0))]
    return suite.add(Benchmark(name, "A toy benchmark", "Nobody 2024", cells))


QUIET = Options(progress=False, log=lambda m: None)


def test_runner_skips_recorded_cells_and_reruns_on_request(tmp_path):
    calls: list[str] = []
    fake_benchmark("toy-skip", calls)
    assert suite.run("toy-skip", "quick", out=tmp_path, options=QUIET) == 0
    assert calls == ["toy/a", "toy/b", "toy/c"]
    assert suite.run("toy-skip", "quick", out=tmp_path, options=QUIET) == 0
    assert calls == ["toy/a", "toy/b", "toy/c"]                      # nothing rerun
    assert suite.run("toy-skip", "quick", only=["toy/b"], rerun=True, out=tmp_path, options=QUIET) == 0
    assert calls[-1] == "toy/b" and len(calls) == 4
    # another profile is recorded separately
    suite.run("toy-skip", "full", only=["a"], out=tmp_path, options=QUIET)
    cells = json.loads((tmp_path / "results" / "toy-skip.json").read_text())["cells"]
    assert set(cells) == {"quick/toy/a", "quick/toy/b", "quick/toy/c", "full/toy/a"}


def test_a_crash_in_one_cell_keeps_the_others(tmp_path):
    calls: list[str] = []
    fake_benchmark("toy-crash", calls, fail={"toy/b"})
    assert suite.run("toy-crash", "quick", out=tmp_path, options=QUIET) == 1
    cells = json.loads((tmp_path / "results" / "toy-crash.json").read_text())["cells"]
    assert set(cells) == {"quick/toy/a", "quick/toy/c"}
    # the next run only retries the failed cell
    assert suite.run("toy-crash", "quick", out=tmp_path, options=QUIET) == 1
    assert calls == ["toy/a", "toy/b", "toy/c", "toy/b"]


def test_ctrl_c_keeps_finished_cells(tmp_path):
    calls: list[str] = []
    bench = fake_benchmark("toy-interrupt", calls)
    original = bench.cells

    def cells(profile):
        out = original(profile)

        def interrupt(options):
            raise KeyboardInterrupt
        return [out[0], Cell("toy/b", "Toy table", "row b", "loss", interrupt, 1.0), out[2]]
    object.__setattr__(bench, "cells", cells)
    assert suite.run("toy-interrupt", "quick", out=tmp_path, options=QUIET) == 130
    cells_done = json.loads((tmp_path / "results" / "toy-interrupt.json").read_text())["cells"]
    assert set(cells_done) == {"quick/toy/a"}


def test_record_holds_the_required_fields_and_markdown_puts_the_paper_beside_ours(tmp_path):
    fake_benchmark("toy-fields", [])
    suite.run("toy-fields", "quick", out=tmp_path, options=QUIET)
    record = json.loads((tmp_path / "results" / "toy-fields.json").read_text())["cells"]["quick/toy/a"]
    for key in ("metrics", "config", "commit", "machine", "data", "wall_s", "date", "command", "paper", "value"):
        assert key in record, key
    assert record["command"] == "seqlab bench run toy-fields --profile quick --only toy/a --rerun"
    text = (tmp_path / "toy-fields.md").read_text()
    row = next(line for line in text.splitlines() if line.startswith("| row a |"))
    cols = [c.strip() for c in row.strip("|").split("|")]
    assert cols[1] == "0.5000" and cols[2].startswith("0.25") and "toy data" in row and record["command"] in row


def test_only_that_matches_nothing_is_an_error(tmp_path):
    fake_benchmark("toy-only", [])
    with pytest.raises(suite.SeqlabError, match="matches no cell"):
        suite.run("toy-only", "quick", only=["zzz"], out=tmp_path, options=QUIET)


def test_cli_list_and_dry_run(tmp_path, capsys):
    assert suite.main(["list", "--out", str(tmp_path)]) == 0
    out = capsys.readouterr().out
    assert "karpathy2016" in out and "bai2018" in out and "speed" in out
    assert suite.main(["run", "bai2018", "--dry-run", "--out", str(tmp_path)]) == 0
    assert not (tmp_path / "results").exists()


# -- the benchmarks' grids ---------------------------------------------------------------------------

def test_cell_ids_are_unique_and_quick_fits_in_two_hours():
    for name in ("karpathy2016", "bai2018"):
        bench = suite.benchmark(name)
        for profile in suite.PROFILES:
            ids = [c.id for c in bench.cells(profile)]
            assert len(ids) == len(set(ids)), (name, profile)
        assert sum(c.estimate_s for c in bench.cells("quick")) <= 2 * 3600, name


@pytest.mark.parametrize("task", ["adding", "copy", "seqmnist", "chorales"])
def test_quick_models_are_within_ten_percent_of_the_budget(task):
    data_sizes = {"adding": (2, 1), "copy": (10, 10), "seqmnist": (1, 10), "chorales": (88, 88)}[task]
    for family, spec in bai2018.specs(task, "quick").items():
        model = seqtasks.SequenceNet(spec.family, *data_sizes, spec.hidden_size, spec.num_layers, spec.kernel_size)
        count = seqtasks.parameter_count(model)
        assert abs(count - spec.budget) <= 0.1 * spec.budget, (task, family, count, spec.budget)


def test_quick_character_lms_are_within_ten_percent_of_their_budget():
    from seqlab.config import load_config
    from seqlab.models import build_model
    for family in bai2018.FAMILIES:
        overrides, budget = bai2018.charlm_overrides(family, "quick")
        cfg = load_config(None, overrides)
        count = sum(p.numel() for p in build_model(cfg.model, 84).parameters())   # Shakespeare: 84 symbols + 4
        assert abs(count - budget) <= 0.1 * budget, (family, count)


def test_karpathy_cells_build_valid_configs():
    from seqlab.config import load_config
    for cell in karpathy2016.cells("quick")[:1]:
        assert "Table 1" in cell.group
    overrides = ["data.corpus=linux", *karpathy2016.SPLIT, *karpathy2016.NEURAL, "model.name=gru"]
    cfg = load_config(None, overrides)
    assert cfg.data.valid_fraction == 0.1 and cfg.data.test_fraction == 0.1


def test_karpathy_lm_cell_reports_test_cross_entropy(tmp_path, text_file):
    # a count model: fitted in one pass, scored on the test split
    result = karpathy2016.lm_cell([f"data.path={text_file}", *karpathy2016.SPLIT, "model.name=ngram",
                                   "model.order=3"], QUIET)
    assert 0.5 < result["value"] < np.log(30)          # far below a uniform guess over the symbols
    assert result["metrics"]["test_tokens"] > 1000 and result["parameters"] is None


# -- the sequence-task trainer -----------------------------------------------------------------------

@pytest.mark.parametrize("family", ["lstm", "tcn"])
def test_adding_problem_loss_falls_below_the_blind_baseline(family):
    # the LSTM sits on the 0.167 plateau for a few hundred updates before it finds the two marks
    task = seqtasks.adding_task(T=20, n_train=4000, n_test=500, seed=0)
    model = seqtasks.SequenceNet(family, 2, 1, 32 if family == "lstm" else 16, 1 if family == "lstm" else 4, 3)
    updates = 500 if family == "lstm" else 150
    result = seqtasks.train(model, task, lr=1e-2 if family == "lstm" else 5e-3, batch_size=32, max_updates=updates,
                            progress=False, log=lambda m: None)
    assert result["loss"] < 0.5 * task.baseline, result["loss"]          # 0.167 for an input-blind model


def test_copy_memory_tcn_beats_the_blind_baseline():
    task = seqtasks.copy_task(T=10, n_train=2000, n_test=200)
    model = seqtasks.SequenceNet("tcn", 10, 10, 16, 4, 3)
    result = seqtasks.train(model, task, lr=5e-3, batch_size=32, max_updates=150, progress=False, log=lambda m: None)
    assert result["loss"] < 0.5 * task.baseline and result["accuracy"] > 0.5


def test_sequence_classification_from_the_last_step_learns():
    # class = whether the sum of the sequence is positive: needs every step, read at the last
    g = torch.Generator().manual_seed(0)
    x = torch.randn(1200, 20, 1, generator=g)
    y = (x.sum((1, 2)) > 0).long()
    task = seqtasks.SequenceTask("sign", "class_last", 1, 2, {"train": (x[:1000], y[:1000]), "test": (x[1000:], y[1000:])})
    result = seqtasks.train(seqtasks.SequenceNet("gru", 1, 2, 16), task, lr=1e-2, max_updates=120,
                            progress=False, log=lambda m: None)
    assert result["accuracy"] > 0.85


def test_piano_roll_nll_falls_on_a_repeating_pattern():
    # rolls whose frame t+1 is frame t shifted by one key: predictable from the last frame
    rolls = []
    for i in range(40):
        frames = np.zeros((12 + i % 5, 88), np.float32)
        for t in range(len(frames)):
            frames[t, (i + t) % 88] = 1
        rolls.append(frames)
    task = seqtasks.SequenceTask("shift", "bernoulli_frame", 88, 88, {"train": (rolls[:32], None), "test": (rolls[32:], None)})
    before = seqtasks.evaluate(seqtasks.SequenceNet("lstm", 88, 88, 32), task, "test", 8, "cpu")["loss"]
    result = seqtasks.train(seqtasks.SequenceNet("lstm", 88, 88, 32), task, lr=1e-2, batch_size=8,
                            max_updates=200, progress=False, log=lambda m: None)
    assert before > 30 and result["loss"] < 0.3 * before


def test_mnist_and_chorale_tasks_read_the_data_modules(monkeypatch):
    import sys
    import types
    images = types.ModuleType("seqlab.data.images")
    images.load_mnist = lambda: {s: (np.random.rand(n, 784).astype(np.float32), np.arange(n) % 10)
                                 for s, n in (("train", 20), ("valid", 5), ("test", 6))}
    images.sequential = lambda im, permute, seed: (im[:, ::-1] if permute else im)[:, :, None]
    music = types.ModuleType("seqlab.data.music")
    music.load_chorales = lambda: {s: [np.ones((5 + i, 88), np.float32) for i in range(3)] for s in ("train", "valid", "test")}
    monkeypatch.setitem(sys.modules, "seqlab.data.images", images)
    monkeypatch.setitem(sys.modules, "seqlab.data.music", music)
    task = seqtasks.mnist_task(permute=True, n_train=8)
    x, y, _ = task.batch("train", torch.arange(4), "cpu")
    assert x.shape == (4, 784, 1) and task.size("test") == 6 and y.tolist() == [0, 1, 2, 3]
    rolls = seqtasks.chorale_task()
    x, y, mask = rolls.batch("test", torch.arange(3), "cpu")
    assert x.shape == (3, 6, 88) and mask.sum().item() == 4 + 5 + 6


def test_chrono_initialisation_spreads_the_forget_biases_and_mirrors_them_on_the_input_gate():
    from seqlab.bench import seqtasks
    torch.manual_seed(0)
    H, T_max = 64, 200
    model = seqtasks.SequenceNet("lstm", 2, 1, H, 2, chrono=T_max)
    for layer in range(2):
        b_ih, b_hh = getattr(model.rnn, f"bias_ih_l{layer}"), getattr(model.rnn, f"bias_hh_l{layer}")
        b_f, b_i = b_ih[H:2 * H] + b_hh[H:2 * H], b_ih[:H] + b_hh[:H]       # PyTorch's gate order i, f, g, o
        assert torch.all(b_f >= 0) and torch.all(b_f <= math.log(T_max - 1) + 1e-6)
        assert b_f.max() > math.log(T_max / 4)                              # spread towards long time scales
        assert torch.equal(b_i, -b_f)
    plain = seqtasks.SequenceNet("lstm", 2, 1, H)
    assert not torch.equal(plain.rnn.bias_ih_l0[H:2 * H], model.rnn.bias_ih_l0[H:2 * H])
