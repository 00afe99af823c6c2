"""train.init_from=RUN: fine-tuning from another run's best weights, with a new optimiser and update
count; a language model reads the new text in that run's vocabulary."""
from __future__ import annotations

import json

import pytest
import torch
from safetensors.torch import load_file

from seqlab.cli import main

from conftest import make_text

NET = ["model.hidden_size=16", "model.num_layers=1", "model.embedding_size=8", "train.batch_size=4",
       "train.bptt_steps=16", "train.progress=false", "train.threads=1", "train.eval_every=10"]


@pytest.fixture(scope="module")
def base(tmp_path_factory):
    folder = tmp_path_factory.mktemp("init")
    corpus = folder / "c.txt"
    corpus.write_text(make_text(8000))
    out = folder / "base"
    assert main(["train", f"data.path={corpus}", *NET, "train.max_steps=60", "--out", str(out)]) == 0
    return out, corpus


def first_valid(run):
    rows = [json.loads(line) for line in (run / "metrics.jsonl").read_text().splitlines()]
    return next(r for r in rows if r["split"] == "valid")


def test_a_fine_tuned_run_starts_where_the_base_run_ended(base, tmp_path, capsys):
    run, corpus = base
    tuned, fresh = tmp_path / "tuned", tmp_path / "fresh"
    # lr tiny: 10 updates barely move the weights, so the first validation shows where they started
    for out, extra in ((tuned, [f"train.init_from={run}"]), (fresh, [])):
        assert main(["train", f"data.path={corpus}", *NET, "train.max_steps=10", "train.lr=1e-6", *extra,
                     "--out", str(out)]) == 0
    said = capsys.readouterr().out
    assert f"starting from the weights of {run}" in said and "new optimiser" in said
    best = json.loads((run / "result.json").read_text())["loss"]
    assert abs(first_valid(tuned)["loss"] - best) < 0.02 < first_valid(fresh)["loss"] - best
    assert first_valid(tuned)["step"] == 10                                   # its own update count
    assert json.loads((tuned / "config.json").read_text())["config"]["train"]["init_from"] == str(run)


def test_new_text_is_read_in_the_base_runs_vocabulary(base, tmp_path, capsys):
    run, _ = base
    other = tmp_path / "other.txt"
    other.write_text(make_text(6000, seed=1).replace("k", "ø"))              # a character the base never saw
    out = tmp_path / "tuned"
    assert main(["train", f"data.path={other}", *NET, "train.max_steps=4", f"train.init_from={run}",
                 "--out", str(out)]) == 0
    said = capsys.readouterr().out
    assert "read as <unk>" in said and "'ø'" in said
    assert (out / "vocab.json").read_text() == (run / "vocab.json").read_text()


@pytest.mark.parametrize("extra,says", [(["model.hidden_size=32"], "has other model options (model.hidden_size: 16 there, 32 here)"),
                                        (["data.level=word"], "is a char-level model"),
                                        (["task=classify", "model=gru"], "train.init_from=")])
def test_what_cannot_start_from_the_run_is_one_line(base, tmp_path, capsys, extra, says):
    run, corpus = base
    args = [a for a in NET if not (a.startswith("model.hidden_size") and extra[0].startswith("model.hidden_size"))]
    code = main(["train", f"data.path={corpus}", *args, "train.max_steps=2", f"train.init_from={run}", *extra,
                 "--out", str(tmp_path / "x")])
    err = capsys.readouterr().err
    assert code == 2 and says in err and len(err.strip().splitlines()) == 1, err


def test_init_from_a_missing_run_is_one_line(base, tmp_path, capsys):
    _, corpus = base
    assert main(["train", f"data.path={corpus}", *NET, "train.max_steps=2", f"train.init_from={tmp_path / 'nope'}",
                 "--out", str(tmp_path / "x")]) == 2
    assert "nope" in capsys.readouterr().err
