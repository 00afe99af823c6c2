"""train.logger=tensorboard: the records of metrics.jsonl as TensorBoard scalars, read back with
TensorBoard's own event reader; a resumed run purges what came after its checkpoint."""
from __future__ import annotations

import json
import shutil


from seqlab.cli import main
from seqlab.config import load_config
from seqlab.training.engine import fit

from conftest import make_text

ARGS = ["model.hidden_size=16", "model.num_layers=1", "train.batch_size=4", "train.bptt_steps=16",
        "train.progress=false", "train.threads=1", "train.log_every=2", "train.eval_every=6",
        "train.checkpoint_every=2", "train.logger=tensorboard"]


def scalars(run):
    from tensorboard.backend.event_processing.event_accumulator import EventAccumulator
    board = EventAccumulator(str(run / "tensorboard")).Reload()
    return {tag: [(e.step, e.value) for e in board.Scalars(tag)] for tag in board.Tags()["scalars"]}


def test_the_records_are_tensorboard_scalars(tmp_path):
    corpus = tmp_path / "c.txt"
    corpus.write_text(make_text(6000))
    fit(load_config(None, [f"data.path={corpus}", *ARGS, "train.max_steps=12"]), tmp_path / "run", log=lambda m: None)
    board = scalars(tmp_path / "run")
    rows = [json.loads(line) for line in (tmp_path / "run" / "metrics.jsonl").read_text().splitlines()]
    train = [(r["step"], r["loss"]) for r in rows if r["split"] == "train"]
    assert [s for s, _ in board["train/loss"]] == [s for s, _ in train] == [2, 4, 6, 8, 10, 12]
    assert all(abs(a - b) < 1e-5 for (_, a), (_, b) in zip(board["train/loss"], train))
    assert [s for s, _ in board["valid/bpc"]] == [6, 12]
    assert len(list((tmp_path / "run" / "tensorboard").iterdir())) == 1     # one event file
    # --overwrite accepts the event folder as seqlab's own
    assert main(["train", f"data.path={corpus}", *ARGS, "train.max_steps=2", "--out", str(tmp_path / "run"),
                 "--overwrite"]) == 0


def test_a_resumed_run_purges_what_followed_its_checkpoint(tmp_path):
    corpus = tmp_path / "c.txt"
    corpus.write_text(make_text(6000))
    fit(load_config(None, [f"data.path={corpus}", *ARGS, "train.max_steps=8"]), tmp_path / "run", log=lambda m: None)
    # as after a SIGKILL: a record (update 8) beyond the checkpoint it resumes from (update 6)
    shutil.rmtree(tmp_path / "run" / "checkpoints" / "step-00000008")
    assert [s for s, _ in scalars(tmp_path / "run")["train/loss"]] == [2, 4, 6, 8]
    longer = load_config(None, [f"data.path={corpus}", *ARGS, "train.max_steps=12"])
    fit(None, tmp_path / "run", resume=True, overrides=longer, log=lambda m: None)
    assert [s for s, _ in scalars(tmp_path / "run")["train/loss"]] == [2, 4, 6, 8, 10, 12]     # each update once


def test_an_unknown_logger_is_one_line(tmp_path, capsys):
    assert main(["train", "train.logger=wandb", "train.max_steps=1", "--out", str(tmp_path / "r")]) == 2
    assert "train.logger must be 'none' or 'tensorboard'" in capsys.readouterr().err
