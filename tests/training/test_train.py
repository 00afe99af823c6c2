"""Training end to end on a small generated corpus: learning, metrics, resume exactness."""
import json
import os
import signal
import subprocess
import sys
import time

import pytest
import torch

from seqlab.config import load_config
from seqlab.tasks import lm as fit_module    # the language model task: its train_step
from seqlab.training.control import Interrupted
from seqlab.training.engine import fit

from conftest import TINY


def latest(run):
    """The newest committed checkpoint folder of a run (step-NNNNNNNN sorts by update)."""
    return max((run / "checkpoints").glob("step-*"))


def rows(run, drop=("tok_per_s", "elapsed")):
    lines = (run / "metrics.jsonl").read_text().splitlines()
    return [{k: v for k, v in json.loads(line).items() if k not in drop} for line in lines]


def test_training_learns_and_writes_a_complete_run(tmp_path, text_file):
    cfg = load_config(None, TINY + [f"data.path={text_file}", "train.max_steps=100", "train.lr=0.02"])
    result = fit(cfg, tmp_path / "run", log=lambda m: None)
    run = tmp_path / "run"
    for name in ("config.json", "vocab.json", "model.safetensors", "metrics.jsonl", "loss.png"):
        assert (run / name).is_file(), name
    for name in ("weights.safetensors", "state.pt", "manifest.json"):
        assert (latest(run) / name).is_file(), name
    assert latest(run).name == "step-00000100"
    assert len(list((run / "checkpoints").iterdir())) == 2          # train.keep_checkpoints=2
    assert not list(run.rglob("*.tmp")) and not list(run.rglob(".*"))
    records = rows(run)
    train = [r for r in records if r["split"] == "train"]
    valid = [r for r in records if r["split"] == "valid"]
    assert [r["step"] for r in valid] == list(range(10, 101, 10))
    assert train[-1]["loss"] < train[0]["loss"] - 0.5          # it learned something
    # uniform over the 39 symbols is 5.3 bits, the unigram entropy 4.36 bits: below 3 needs context
    assert result["bpc"] < 3.0
    assert abs(result["bpc"] - result["loss"] / 0.6931471805599453) < 1e-9


@pytest.mark.parametrize("stride", [0, 8])   # TBPTT(k, k) and TBPTT(8, 20)
def test_interrupted_and_resumed_run_equals_an_uninterrupted_one(tmp_path, text_file, monkeypatch, stride):
    overrides = TINY + [f"data.path={text_file}", "train.max_steps=37", f"train.bptt_stride={stride}"]
    straight = tmp_path / "straight"
    fit(load_config(None, overrides), straight, log=lambda m: None)

    # The same run, hit by a real SIGINT during update 23 (not a logging or evaluation step).
    calls = {"n": 0}
    real_step = fit_module.train_step

    def step_then_ctrl_c(*args):
        calls["n"] += 1
        if calls["n"] == 23:
            os.kill(os.getpid(), signal.SIGINT)
        return real_step(*args)

    monkeypatch.setattr(fit_module, "train_step", step_then_ctrl_c)
    broken = tmp_path / "broken"
    with pytest.raises(Interrupted):
        fit(load_config(None, overrides), broken, log=lambda m: None)
    monkeypatch.setattr(fit_module, "train_step", real_step)
    state = torch.load(latest(broken) / "state.pt", weights_only=True)
    assert state["progress"]["step"] == 23
    fit(None, broken, resume=True, log=lambda m: None)

    assert rows(broken) == rows(straight)
    a = torch.load(latest(straight) / "state.pt", weights_only=True)
    b = torch.load(latest(broken) / "state.pt", weights_only=True)
    assert a["progress"]["step"] == b["progress"]["step"] == 37
    assert (latest(straight) / "weights.safetensors").read_bytes() == (latest(broken) / "weights.safetensors").read_bytes()


def test_resume_can_extend_the_budget_but_not_the_model(tmp_path, text_file):
    from seqlab import SeqlabError
    overrides = TINY + [f"data.path={text_file}", "train.max_steps=10"]
    run = tmp_path / "run"
    fit(load_config(None, overrides), run, log=lambda m: None)
    longer = load_config(None, overrides[:-1] + ["train.max_steps=20"])
    fit(None, run, resume=True, overrides=longer, log=lambda m: None)
    assert max(r["step"] for r in rows(run)) == 20
    wider = load_config(None, overrides + ["model.hidden_size=64"])
    with pytest.raises(SeqlabError, match="model.hidden_size"):
        fit(None, run, resume=True, overrides=wider, log=lambda m: None)


def test_ctrl_c_on_the_command_line_saves_and_resumes(tmp_path, text_file):
    """A real process, a real Ctrl-C: exit code 130, a checkpoint, then --resume finishes."""
    run = tmp_path / "run"
    cmd = [sys.executable, "-m", "seqlab.cli", "train", f"data.path={text_file}", "--out", str(run),
           *TINY, "train.max_steps=100000", "train.eval_every=1000"]
    env = dict(os.environ, PYTHONUNBUFFERED="1")
    proc = subprocess.Popen(cmd, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True, env=env)
    deadline = time.time() + 120
    while time.time() < deadline:
        if (run / "metrics.jsonl").is_file() and (run / "metrics.jsonl").stat().st_size > 0:
            break
        time.sleep(0.2)
    proc.send_signal(signal.SIGINT)
    out, _ = proc.communicate(timeout=120)
    assert proc.returncode == 130, out
    assert "Traceback" not in out
    assert "seqlab train --resume" in out
    step = torch.load(latest(run) / "state.pt", weights_only=True)["progress"]["step"]
    assert step >= 5
    done = subprocess.run([sys.executable, "-m", "seqlab.cli", "train", "--resume", str(run),
                           f"train.max_steps={step + 10}"], capture_output=True, text=True, env=env, timeout=300)
    assert done.returncode == 0, done.stderr
    assert torch.load(latest(run) / "state.pt", weights_only=True)["progress"]["step"] == step + 10


def test_plateau_decay_and_early_stopping_in_a_run(tmp_path, text_file):
    # SGD at 1e-30 leaves float32 weights exactly unchanged, so validation never improves
    cfg = load_config(None, TINY + [f"data.path={text_file}", "train.optimizer=sgd", "train.lr=1e-30",
                                    "train.momentum=0", "train.max_steps=1000", "train.early_stop=2",
                                    "train.lr_patience=1", "train.lr_decay=0.5"])
    fit(cfg, tmp_path / "run", log=lambda m: None)
    valid = [r for r in rows(tmp_path / "run") if r["split"] == "valid"]
    assert [r["step"] for r in valid] == [10, 20, 30]
    assert [r["best"] for r in valid] == [True, False, False]
    assert [r["lr"] for r in valid] == [1e-30, 5e-31, 2.5e-31]


def test_count_model_goes_through_the_same_flow(tmp_path, text_file, capsys):
    """The n-gram is fitted by counting, saved as safetensors arrays, then evaluated and
    sampled by the same commands as a neural model."""
    from seqlab.cli import main
    run = tmp_path / "ngram"
    assert main(["train", f"data.path={text_file}", "model.name=ngram", "model.order=4", "--out", str(run)]) == 0
    assert (run / "model.safetensors").is_file() and not (run / "checkpoints").exists()
    fitted = rows(run)[0]["bpc"]
    capsys.readouterr()
    assert main(["eval", str(run), "--split", "valid", "--json"]) == 0
    assert abs(json.loads(capsys.readouterr().out)["bpc"] - fitted) < 1e-9
    assert main(["sample", str(run), "--prime", "The", "--length", "30", "--seed", "1"]) == 0
    assert len(capsys.readouterr().out) == 3 + 30 + 1
    assert main(["train", "--resume", str(run)]) == 2
    assert "nothing to resume" in capsys.readouterr().err


def test_a_validation_on_part_of_the_split_says_so(tmp_path, text_file):
    """train.eval_tokens validates on a prefix; the progress line must not pass it off as the split."""
    said = []
    cfg = load_config(None, TINY + [f"data.path={text_file}", "train.max_steps=10", "train.eval_tokens=200"])
    fit(cfg, tmp_path / "run", log=said.append)
    assert any("| valid[first 200 tokens] " in m for m in said), said
    said.clear()
    cfg = load_config(None, TINY + [f"data.path={text_file}", "train.max_steps=10", "train.eval_tokens=0"])
    fit(cfg, tmp_path / "all", log=said.append)
    assert any("| valid " in m for m in said) and not any("valid[" in m for m in said), said
