"""`sample --checkpoint step-N` / `seqlab.load(RUN, checkpoint=...)`: the weights of a chosen
checkpoint instead of the best ones, checked against the checkpoint's own file."""
from __future__ import annotations

import pytest
import torch
from safetensors.torch import load_file

import seqlab
from seqlab.cli import main

from conftest import make_text


@pytest.fixture(scope="module")
def run(tmp_path_factory):
    folder = tmp_path_factory.mktemp("ck")
    corpus = folder / "c.txt"
    corpus.write_text(make_text(6000))
    out = folder / "run"
    assert main(["train", f"data.path={corpus}", "model.hidden_size=16", "model.num_layers=1", "train.batch_size=4",
                 "train.bptt_steps=16", "train.max_steps=30", "train.eval_every=10", "train.checkpoint_every=10",
                 "train.keep_checkpoints=3", "train.progress=false", "train.threads=1", "--out", str(out)]) == 0
    return out


def weights(model):
    return {k: v for k, v in model.state_dict().items()}


@pytest.mark.parametrize("name", ["step-00000010", "step-10", "10", "last"])
def test_a_named_checkpoint_loads_its_own_weights(run, name):
    chosen = seqlab.load(run, checkpoint=name)
    step = 30 if name == "last" else 10
    saved = load_file(str(run / "checkpoints" / f"step-{step:08d}" / "weights.safetensors"))
    mine = weights(chosen.model)
    assert set(saved) == set(mine) and all(torch.equal(saved[k], mine[k]) for k in saved)


def test_the_command_line_samples_and_scores_from_a_checkpoint(run, capsys):
    assert main(["sample", str(run), "--checkpoint", "step-10", "--length", "40", "--seed", "3"]) == 0
    early = capsys.readouterr().out
    assert main(["sample", str(run), "--length", "40", "--seed", "3"]) == 0
    assert capsys.readouterr().out != early                  # the best weights write something else
    assert main(["eval", str(run), "--checkpoint", "20", "--split", "valid", "--json"]) == 0
    assert '"bpc"' in capsys.readouterr().out


def test_a_checkpoint_the_run_does_not_keep_is_one_line_naming_those_it_keeps(run, capsys):
    assert main(["sample", str(run), "--checkpoint", "step-5"]) == 2
    err = capsys.readouterr().err
    assert "has no checkpoint 'step-5'" in err and "step-00000010, " not in err.split("keeps")[0]
    assert "step-00000030" in err and "step-00000010" in err and len(err.strip().splitlines()) == 1
    with pytest.raises(seqlab.SeqlabError, match="no checkpoint 'best-ish'"):
        seqlab.load(run, checkpoint="best-ish")
