"""The engine's gradient clipping, train.stop_at, and stopping on divergence (train.nan_retries=0),
measured from outside: the weights' change under plain SGD against a gradient computed here."""
import json

import pytest
import torch

from seqlab.config import load_config
from seqlab.tasks.sequence import SequenceTask
from seqlab.training.checkpoint import RunDir
from seqlab.training.distributed import World
from seqlab.training.engine import fit
from seqlab.training.guard import Diverged

BASE = ["task=sequence", "data=adding", "model=rnn", "model.hidden_size=8", "model.num_layers=1", "task.length=6",
        "task.train_examples=64", "task.test_examples=16", "train.batch_size=16", "train.optimizer=sgd",
        "train.momentum=0", "train.lr=0.5", "train.schedule=constant", "train.max_epochs=0", "train.log_every=1",
        "train.early_stop=0", "train.threads=1", "train.device=cpu", "train.progress=false", "train.seed=3"]


def first_gradient(cfg):
    """The loss gradient of the first training batch at the initial weights, computed here."""
    task = SequenceTask(cfg)
    task.prepare(lambda m: None)
    torch.manual_seed(cfg.train.seed)                     # the engine seeds the same way before building
    model = task.build_model()
    task.setup_training(World(), torch.device("cpu"))
    loss, _, _ = task.train_loss(model, task.train_batch(0, 0, torch.device("cpu")), 0, None)
    grads = torch.autograd.grad(loss, list(model.parameters()))
    return model, grads


@pytest.mark.parametrize("clip", [0.0, 0.05, 1e6])
def test_one_sgd_update_moves_the_weights_by_lr_times_the_clipped_gradient(tmp_path, clip):
    cfg = load_config(None, BASE + ["train.max_steps=1", "train.eval_every=1", f"train.clip_norm={clip}"])
    initial, grads = first_gradient(cfg)
    norm = torch.cat([g.flatten() for g in grads]).norm().item()
    assert norm > 0.05, "the case must produce a gradient above the small threshold"
    fit(cfg, tmp_path / "run", log=lambda m: None)
    trained = SequenceTask(cfg).build_model()
    RunDir(tmp_path / "run").load_weights(trained)                      # the best = the only update
    scale = min(1.0, clip / (norm + 1e-6)) if clip else 1.0
    for (name, w0), w1, g in zip(initial.named_parameters(), trained.parameters(), grads):
        torch.testing.assert_close(w0 - w1, 0.5 * scale * g, atol=1e-6, rtol=1e-4, msg=name)
    row = [json.loads(r) for r in (tmp_path / "run" / "metrics.jsonl").read_text().splitlines()][0]
    assert row["split"] == "train" and row["grad_norm"] == pytest.approx(norm, rel=1e-5)   # recorded before clipping


def test_stop_at_ends_the_run_once_the_validation_metric_reaches_it(tmp_path):
    said = []
    onebit = ["task=sequence", "data=onebit", "model=gru", "model.hidden_size=8", "model.num_layers=1",
              "task.length=3", "task.noise=0.1", "task.train_examples=3200", "task.test_examples=200",
              "train.batch_size=32", "train.lr=0.02", "train.schedule=constant", "train.max_steps=100",
              "train.max_epochs=0", "train.eval_every=5", "train.threads=1", "train.device=cpu",
              "train.progress=false", "train.early_stop=0"]
    result = fit(load_config(None, onebit + ["train.stop_at=90"]), tmp_path / "a", log=said.append)
    rows = [json.loads(r) for r in (tmp_path / "a" / "metrics.jsonl").read_text().splitlines()]
    valid = [r for r in rows if r["split"] == "valid"]
    assert valid[-1]["accuracy"] >= 90 and all(r["accuracy"] < 90 for r in valid[:-1])
    assert valid[-1]["step"] < 100 and any("reached train.stop_at=90" in m for m in said)
    assert result["accuracy"] >= 90
    # a loss-picked task stops at or below the value; 0 (the default) never stops
    adding = BASE + ["train.max_steps=4", "train.eval_every=2", "train.lr=0.01"]
    said.clear()
    fit(load_config(None, adding + ["train.stop_at=100"]), tmp_path / "b", log=said.append)
    assert any("reached train.stop_at=100" in m for m in said)
    assert max(json.loads(r)["step"] for r in (tmp_path / "b" / "metrics.jsonl").read_text().splitlines()) == 2
    said.clear()
    fit(load_config(None, adding), tmp_path / "c", log=said.append)
    assert any("reached train.max_steps=4" in m for m in said)


def test_a_run_without_rollbacks_stops_at_the_update_that_diverged(tmp_path):
    exploding = BASE + ["model.recurrent_init=orthogonal", "model.recurrent_gain=3", "train.lr=5", "train.clip_norm=0",
                        "train.nan_retries=0", "train.max_steps=200", "train.eval_every=200", "task.train_examples=3200"]
    with pytest.raises(Diverged, match="train.nan_retries=0") as stopped:
        fit(load_config(None, exploding), tmp_path / "run", log=lambda m: None)
    rows = [json.loads(r) for r in (tmp_path / "run" / "metrics.jsonl").read_text().splitlines()]
    assert [r["step"] for r in rows] == list(range(1, stopped.value.step))     # every update before it recorded
