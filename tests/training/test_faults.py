"""Faults the trainer survives: NaN losses, damaged checkpoints, full disks, SIGKILL."""
import errno
import json
import os
from types import SimpleNamespace

import pytest
import torch

from seqlab import SeqlabError
from seqlab.config import load_config
from seqlab.models import build_model
from seqlab.training import checkpoint as ck
from seqlab.tasks import lm as fit_module    # the language model task: its train_step
from seqlab.training import session as session_module     # where metrics.jsonl is written
from seqlab.training.checkpoint import RunDir
from seqlab.training.engine import fit

from conftest import TINY


def rows(run):
    return [json.loads(line) for line in (run / "metrics.jsonl").read_text().splitlines()]


def steps_saved(run):
    return [c.step for c in RunDir(run).checkpoints()]


def nan_at(monkeypatch, calls: set[int]):
    """Make the loss of the given train_step calls (1-based) NaN, as an overflow would."""
    real = fit_module.train_step
    seen = {"n": 0}

    def step(*args):
        seen["n"] += 1
        loss, state, n = real(*args)
        return (loss * float("nan") if seen["n"] in calls else loss), state, n

    monkeypatch.setattr(fit_module, "train_step", step)
    return seen


def test_nan_loss_rolls_back_lowers_the_rate_and_training_finishes(tmp_path, text_file, monkeypatch):
    overrides = TINY + [f"data.path={text_file}", "train.max_steps=30", "train.checkpoint_every=5",
                        "train.schedule=constant", "train.lr=0.01"]
    seen = nan_at(monkeypatch, {18})
    messages = []
    fit(load_config(None, overrides), tmp_path / "run", log=messages.append)
    assert seen["n"] == 30 + 1 + 2           # the bad call, and updates 16-17 again from the checkpoint at 15
    rollback = [r for r in rows(tmp_path / "run") if r["split"] == "rollback"]
    assert rollback == [{"step": 15, "epoch": 0, "split": "rollback", "failed_step": 18, "failed_loss": "nan",
                         "nan_rollbacks": 1, "lr_scale": 0.5}]
    train = [r for r in rows(tmp_path / "run") if r["split"] == "train"]
    assert [r["step"] for r in train] == [5, 10, 15, 20, 25, 30]     # nothing logged twice
    assert [r["lr"] for r in train] == [0.01] * 3 + [0.005] * 3
    assert any("rolled back to update 15" in m for m in messages)
    assert any("1 rollback(s)" in m for m in messages)
    state = torch.load(max((tmp_path / "run" / "checkpoints").glob("step-*")) / "state.pt", weights_only=True)
    assert state["progress"]["step"] == 30 and state["progress"]["nan_rollbacks"] == 1


def test_nan_rollback_with_the_plateau_schedule_cuts_the_optimizer_rate(tmp_path, text_file, monkeypatch):
    overrides = TINY + [f"data.path={text_file}", "train.max_steps=12", "train.checkpoint_every=4", "train.lr=0.01"]
    nan_at(monkeypatch, {6, 7})             # fails twice in a row: x0.5, then x0.25
    fit(load_config(None, overrides), tmp_path / "run", log=lambda m: None)
    rollback = [r for r in rows(tmp_path / "run") if r["split"] == "rollback"]
    assert [(r["step"], r["failed_step"], r["lr_scale"]) for r in rollback] == [(4, 6, 0.5), (4, 5, 0.25)]
    assert [r["lr"] for r in rows(tmp_path / "run") if r["split"] == "valid"][0] == 0.0025


def test_a_loss_that_stays_nan_stops_with_a_clear_message(tmp_path, text_file, monkeypatch):
    overrides = TINY + [f"data.path={text_file}", "train.max_steps=30", "train.nan_retries=2"]
    nan_at(monkeypatch, set(range(3, 100)))
    with pytest.raises(SeqlabError, match=r"non-finite 3 times in a row .* x0.25; lower train.lr"):
        fit(load_config(None, overrides), tmp_path / "run", log=lambda m: None)
    assert steps_saved(tmp_path / "run") == [0]      # the last good state is still there


def test_a_truncated_newest_checkpoint_falls_back_to_the_previous_one(tmp_path, text_file):
    base = TINY + [f"data.path={text_file}", "train.checkpoint_every=4", "train.keep_checkpoints=3"]
    overrides = base + ["train.max_steps=20"]
    straight = tmp_path / "straight"
    fit(load_config(None, overrides), straight, log=lambda m: None)

    run = tmp_path / "run"
    fit(load_config(None, base + ["train.max_steps=12"]), run, log=lambda m: None)
    assert steps_saved(run) == [12, 10, 8]
    weights = run / "checkpoints" / "step-00000012" / "weights.safetensors"
    weights.write_bytes(weights.read_bytes()[:-100])       # a copy cut short
    messages = []
    fit(None, run, resume=True, overrides=load_config(None, overrides), log=messages.append)
    assert any("step-00000012/weights.safetensors is truncated" in m and "falling back" in m for m in messages)
    assert any("resuming" in m and "at update 10" in m for m in messages)
    final = {name: max((r / "checkpoints").glob("step-*")) / "weights.safetensors" for name, r in
             (("straight", straight), ("run", run))}
    assert final["straight"].read_bytes() == final["run"].read_bytes()       # and it still ends identical


@pytest.mark.parametrize("code, says", [(errno.ENOSPC, "the disk is full"),
                                        (errno.EACCES, "the run directory is not writable")])
def test_a_failed_checkpoint_write_stops_cleanly_and_keeps_the_last_good_one(tmp_path, text_file, monkeypatch,
                                                                             code, says):
    overrides = TINY + [f"data.path={text_file}", "train.max_steps=30", "train.checkpoint_every=4"]
    real_save = ck.torch.save
    saves = {"n": 0}

    def failing_save(obj, path, *args, **kwargs):
        saves["n"] += 1
        if saves["n"] == 4:          # the checkpoint of update 10 (0, 4, 8, 10): half a file, then a refusal
            with open(path, "wb") as f:
                f.write(b"\0" * 100)
            raise OSError(code, os.strerror(code))
        return real_save(obj, path, *args, **kwargs)

    monkeypatch.setattr(ck.torch, "save", failing_save)
    with pytest.raises(SeqlabError, match=f"cannot write a checkpoint in .*{says}.*--resume"):
        fit(load_config(None, overrides), tmp_path / "run", log=lambda m: None)
    monkeypatch.setattr(ck.torch, "save", real_save)
    run = tmp_path / "run"
    assert steps_saved(run) == [8, 4]
    assert not [p for p in (run / "checkpoints").iterdir() if p.name.startswith(".")]    # no half-written folder
    model = build_model(load_config(None, overrides).model, len(RunDir(run).vocab()))
    state, checkpoint = RunDir(run).load_checkpoint(model, log=lambda m: None)
    assert checkpoint.step == 8 and state["progress"]["step"] == 8
    fit(None, run, resume=True, log=lambda m: None)                  # and it continues from there
    assert steps_saved(run)[0] == 30


def test_the_metrics_file_on_a_full_disk_is_one_clear_line(tmp_path, text_file, monkeypatch):
    overrides = TINY + [f"data.path={text_file}", "train.max_steps=30"]

    def dumps(row, *args, **kwargs):
        if row.get("step") == 15:             # the training record of update 15 hits a full disk
            raise OSError(errno.ENOSPC, "No space left on device")
        return json.dumps(row, *args, **kwargs)

    monkeypatch.setattr(session_module, "json", SimpleNamespace(dumps=dumps, loads=json.loads))
    with pytest.raises(SeqlabError, match=r"cannot write metrics.jsonl in .*\(the disk is full\)"):
        fit(load_config(None, overrides), tmp_path / "run", log=lambda m: None)
    assert steps_saved(tmp_path / "run") == [10, 0]


def test_what_a_kill_during_a_save_leaves_is_ignored_and_cleaned(tmp_path, text_file):
    """SIGKILL while a checkpoint is written leaves a hidden, half-filled folder (it is renamed
    into place only when complete): resuming uses the last committed one, and the next save
    removes the leftover."""
    base = TINY + [f"data.path={text_file}", "train.checkpoint_every=4"]
    run = tmp_path / "run"
    fit(load_config(None, base + ["train.max_steps=8"]), run, log=lambda m: None)
    leftover = run / "checkpoints" / ".step-00000012.abc123.tmp"
    leftover.mkdir()
    (leftover / "weights.safetensors").write_bytes(b"\0" * 10)
    messages = []
    fit(None, run, resume=True, overrides=load_config(None, base + ["train.max_steps=12"]),
        log=messages.append)
    assert any("at update 8" in m for m in messages) and not any("falling back" in m for m in messages)
    assert not leftover.exists() and steps_saved(run) == [12, 10]


@pytest.mark.slow
def test_kill_and_resume_benchmark_small(tmp_path):
    """Two SIGKILL trials of `seqlab bench faults`: each resumed run is bit-identical."""
    from seqlab.bench import faults
    out = tmp_path / "faults"
    code = faults.main(["--trials", "2", "--steps", "40", "--checkpoint-every", "2", "--seed", "3", "--out", str(out)])
    report = json.loads((tmp_path / "faults.json").read_text())
    assert code == 0, report
    assert report["summary"]["identical"] == 2 and report["summary"]["all_resumed_intact"]
    assert all(r["resumed_from"] is not None for r in report["trials"])
