"""A run stopped by Ctrl-C before its first evaluation has checkpoints but no model.safetensors:
eval and sample use the newest checkpoint's weights and say so in one line (issue 14, point 5)."""
from __future__ import annotations

import os
import signal
import subprocess
import sys
import time

from conftest import make_text
from seqlab.cli import main
from helpers import T


def test_eval_and_sample_use_the_newest_checkpoint_of_a_run_interrupted_early(tmp_path, capsys):
    corpus = tmp_path / "small.txt"
    corpus.write_text(make_text(), encoding="utf-8")
    run = tmp_path / "run"
    cmd = [sys.executable, "-m", "seqlab.cli", "train", f"data.path={corpus}", *T, "train.max_steps=100000",
           "train.eval_every=100000", "--out", str(run)]
    training = subprocess.Popen(cmd, env=dict(os.environ, OMP_NUM_THREADS="1"), stdout=subprocess.PIPE,
                                stderr=subprocess.STDOUT, text=True)
    deadline = time.time() + 120
    while not (run / "checkpoints" / "step-00000000").is_dir():         # the update-0 checkpoint: training runs
        assert training.poll() is None and time.time() < deadline
        time.sleep(0.1)
    time.sleep(1.0)
    training.send_signal(signal.SIGINT)
    out, _ = training.communicate(timeout=120)
    assert training.returncode == 130, out
    assert not (run / "model.safetensors").exists()
    steps = sorted(p.name for p in (run / "checkpoints").iterdir())
    capsys.readouterr()
    assert main(["eval", str(run), "--json"]) == 0
    captured = capsys.readouterr()
    assert f"using the weights of its newest checkpoint (update {int(steps[-1][5:])})" in captured.err
    assert '"bpc"' in captured.out
    assert main(["sample", str(run), "--length", "20", "--seed", "1"]) == 0
    captured = capsys.readouterr()
    assert "newest checkpoint" in captured.err and len(captured.out.strip()) >= 1
