"""A selection among candidates (task.transform=auto trains one forecaster per transform):
train.max_time is one budget for all of them, and a selection stopped before it chose says so."""
from __future__ import annotations

import json
import shutil

import numpy as np
import pytest

import seqlab
from seqlab import SeqlabError
from seqlab.config import load_config
from seqlab.training.engine import fit


def series(path) -> None:
    t = np.arange(144)
    values = 100 * np.exp(0.01 * t) * (1 + 0.2 * np.sin(2 * np.pi * t / 12))
    path.write_text("".join(f"{v:.4f}\n" for v in values))


ARGS = ["task=forecast", "model=lstm", "task.period=12", "task.horizon=12", "model.hidden_size=8", "model.num_layers=1",
        "model.dropout=0", "train.batch_size=8", "train.max_epochs=0", "train.early_stop=0", "train.progress=false",
        "train.threads=1", "train.eval_every=20"]


def test_max_time_is_one_budget_for_all_the_candidates(tmp_path):
    data = tmp_path / "s.txt"
    series(data)
    said = []
    fit(load_config(None, [*ARGS, f"data.path={data}", "train.max_time=2"]), tmp_path / "run", log=said.append)
    shares = [json.loads((c / "config.json").read_text())["config"]["train"]["max_time"]
              for c in sorted((tmp_path / "run" / "candidates").iterdir())]
    assert len(shares) >= 3 and sum(shares) <= 2 + len(shares)             # each at least 1 s
    assert any("s of the 2 s train.max_time" in m for m in said)
    for candidate in (tmp_path / "run" / "candidates").iterdir():
        rows = [json.loads(line) for line in (candidate / "metrics.jsonl").read_text().splitlines()]
        share = json.loads((candidate / "config.json").read_text())["config"]["train"]["max_time"]
        assert max(r.get("elapsed", 0) for r in rows) <= share + 1.0


def test_a_selection_stopped_before_it_chose_says_so(tmp_path):
    data = tmp_path / "s.txt"
    series(data)
    run = tmp_path / "run"
    fit(load_config(None, [*ARGS, f"data.path={data}", "train.max_steps=20"]), run, log=lambda m: None)
    # as if killed while training the last candidate: no choice made, the last one unfinished
    for name in ("result.json", "task.json", "model.safetensors"):
        (run / name).unlink()
    last = sorted((run / "candidates").iterdir())[-1]
    (last / "result.json").unlink()
    with pytest.raises(SeqlabError, match=r"stopped while choosing among its candidates \(\d+ of the \d+ started "
                                          r"finished\); it has no model until it chooses: seqlab train --resume"):
        seqlab.load(run)
    fit(None, run, resume=True, log=lambda m: None)                        # and resuming finishes it
    assert seqlab.load(run).forecast(3).shape == (3,)
