"""Every registered task through the one engine: it trains, resumes exactly (bit-identical
weights and the same records as a run never stopped), survives a non-finite loss by rolling
back, and trains data-parallel under torchrun (gloo) to the weights one process reaches."""
from __future__ import annotations

import json
import os
import signal
import subprocess
import sys

import pytest
import torch
from safetensors.torch import load_file

from seqlab.config import load_config
from seqlab.registry import get, names
from seqlab.training.control import Interrupted
from seqlab.training.engine import fit

from taskdata import TASKS, TRAIN, data_for


def config(task, tmp, *extra):
    return load_config(None, [f"task={task}", *data_for(task, tmp), *TRAIN, *extra])


def newest(run):
    return max((run / "checkpoints").glob("step-*"))


def records(run):
    return [{k: v for k, v in json.loads(line).items() if k not in ("elapsed", "seconds") and not k.endswith("_per_s")}
            for line in (run / "metrics.jsonl").read_text().splitlines()]


def test_every_registered_task_is_tested_here():
    assert sorted(names("task")) == TASKS


@pytest.mark.parametrize("task", TASKS)
def test_trains_and_resumes_exactly(tmp_path, task, monkeypatch):
    cfg = config(task, tmp_path, "train.max_steps=10")
    fit(cfg, tmp_path / "straight", log=lambda m: None)
    cls = get("task", task)
    real = cls.train_loss
    calls = {"n": 0}

    def ctrl_c_in_update_5(self, *args):          # a real SIGINT, in an update that neither logs nor saves
        calls["n"] += 1
        if calls["n"] == 5:
            os.kill(os.getpid(), signal.SIGINT)
        return real(self, *args)

    monkeypatch.setattr(cls, "train_loss", ctrl_c_in_update_5)
    with pytest.raises(Interrupted):
        fit(cfg, tmp_path / "part", log=lambda m: None)
    monkeypatch.setattr(cls, "train_loss", real)
    assert newest(tmp_path / "part").name == "step-00000005"
    fit(None, tmp_path / "part", resume=True, log=lambda m: None)
    assert newest(tmp_path / "straight").name == newest(tmp_path / "part").name == "step-00000010"
    straight, part = (newest(tmp_path / r) / "weights.safetensors" for r in ("straight", "part"))
    assert straight.read_bytes() == part.read_bytes()                   # bit-identical weights
    assert records(tmp_path / "straight") == records(tmp_path / "part")
    assert [r["step"] for r in records(tmp_path / "straight") if r["split"] == "train"] == [2, 4, 6, 8, 10]
    assert (tmp_path / "straight" / "model.safetensors").is_file()
    assert json.loads((tmp_path / "straight" / "result.json").read_text())


@pytest.mark.parametrize("task", TASKS)
def test_a_non_finite_loss_rolls_back_and_training_finishes(tmp_path, task, monkeypatch):
    cls = get("task", task)
    real = cls.train_loss
    calls = {"n": 0}

    def poisoned(self, *args):
        calls["n"] += 1
        loss, n, carry = real(self, *args)
        return (loss * float("nan") if calls["n"] == 7 else loss), n, carry

    monkeypatch.setattr(cls, "train_loss", poisoned)
    fit(config(task, tmp_path, "train.max_steps=10"), tmp_path / "run", log=lambda m: None)
    rows = records(tmp_path / "run")
    rollback = [r for r in rows if r["split"] == "rollback"]
    assert len(rollback) == 1 and rollback[0]["failed_step"] == 7 and rollback[0]["step"] == 6
    assert rollback[0]["lr_scale"] == 0.5
    assert newest(tmp_path / "run").name == "step-00000010"
    weights = load_file(newest(tmp_path / "run") / "weights.safetensors")
    assert all(torch.isfinite(w).all() for w in weights.values())


def torchrun(args: list[str]) -> subprocess.CompletedProcess:
    env = dict(os.environ, OMP_NUM_THREADS="1", PYTHONUNBUFFERED="1")
    cmd = [sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc-per-node=2",
           "-m", "seqlab.cli", "train", *args]
    done = subprocess.run(cmd, capture_output=True, text=True, env=env, timeout=240)
    assert done.returncode == 0, done.stdout[-3000:] + done.stderr[-3000:]
    return done


@pytest.mark.parametrize("task", [pytest.param(t, marks=() if t in ("lm", "classify", "toy") else pytest.mark.slow)
                                  for t in TASKS])
def test_two_processes_under_torchrun_equal_one_process(tmp_path, task):
    # SGD: what is compared is the averaged gradient. Adam divides each step by the root of its
    # running squared gradient, which turns float rounding in a near-zero gradient into a step-sized
    # difference: the captioner's attention query weights, equal within 1e-6 after one update,
    # parted by 1.3e-5 after eight Adam updates and stayed within 1e-6 with SGD.
    cfg_args = [f"task={task}", *data_for(task, tmp_path), *TRAIN, "train.max_steps=8", "train.optimizer=sgd"]
    done = torchrun(cfg_args + ["--out", str(tmp_path / "two")])
    assert "x 2 processes" in done.stdout
    fit(load_config(None, cfg_args), tmp_path / "one", log=lambda m: None)
    one = load_file(newest(tmp_path / "one") / "weights.safetensors")
    two = load_file(newest(tmp_path / "two") / "weights.safetensors")
    assert one.keys() == two.keys()
    # each rank's mean loss weighed by its share of the batch: the averaged gradient is the
    # one-process gradient, up to the order of float additions
    assert max((one[k] - two[k]).abs().max().item() for k in one) < 1e-5


@pytest.mark.parametrize("task", TASKS)
def test_grad_accum_gives_the_update_of_the_whole_batch(tmp_path, task, monkeypatch):
    """train.grad_accum=2 computes each batch in two halves: with SGD (what is compared is the
    gradient itself) the weights after 4 updates equal those of one pass over each whole batch."""
    cls = get("task", task)
    real, calls = cls.train_loss, []

    def counted(self, model, batch, step, carry):
        calls.append(step)
        return real(self, model, batch, step, carry)

    monkeypatch.setattr(cls, "train_loss", counted)
    weights = {}
    for parts in (1, 2):
        cfg = config(task, tmp_path, "train.max_steps=4", "train.optimizer=sgd", "train.lr=0.05",
                     "train.momentum=0.9", f"train.grad_accum={parts}")
        fit(cfg, tmp_path / f"parts{parts}", log=lambda m: None)
        weights[parts] = load_file(str(newest(tmp_path / f"parts{parts}") / "weights.safetensors"))
    assert calls == [0, 1, 2, 3] + [0, 0, 1, 1, 2, 2, 3, 3]          # two halves an update, the second time
    assert set(weights[1]) == set(weights[2])
    for name in weights[1]:
        assert torch.allclose(weights[1][name], weights[2][name], rtol=1e-4, atol=1e-6), name


def test_grad_accum_under_torchrun_equals_one_process_without(tmp_path):
    """Two ranks, each computing its half of the batch in two parts (DDP averages once, at the
    last part), reach the weights of one process taking the whole batch in one pass."""
    cfg_args = ["task=classify", *data_for("classify", tmp_path), *TRAIN, "train.max_steps=6", "train.optimizer=sgd"]
    done = torchrun(cfg_args + ["train.grad_accum=2", "--out", str(tmp_path / "two")])
    assert "x 2 processes" in done.stdout
    fit(load_config(None, cfg_args), tmp_path / "one", log=lambda m: None)
    one = load_file(newest(tmp_path / "one") / "weights.safetensors")
    two = load_file(newest(tmp_path / "two") / "weights.safetensors")
    assert max((one[k] - two[k]).abs().max().item() for k in one) < 1e-5
