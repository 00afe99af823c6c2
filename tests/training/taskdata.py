"""Small generated datasets for every task, shared by the engine's tests (tests/training/)."""
from __future__ import annotations

import random

import numpy as np

NET = ["model.embedding_size=16", "model.hidden_size=16", "model.num_layers=1", "model.dropout=0"]
TRAIN = ["train.progress=false", "train.threads=1", "train.device=cpu", "train.log_every=2", "train.eval_every=4",
         "train.early_stop=0", "train.max_epochs=0", "train.checkpoint_every=2"]


def words_file(path, rng, n=120):
    lex = ["the", "dog", "cat", "saw", "a", "red", "boat", "likes", "old", "The", "Dog"]
    path.write_text("".join(" ".join(rng.choice(lex) for _ in range(rng.randint(3, 7))) + "\n" for _ in range(n)))


def data_for(task: str, tmp) -> list[str]:
    """A small generated dataset for `task`, and the options that train it."""
    rng = random.Random(0)
    path = tmp / f"{task}.data"
    if task == "lm":
        words_file(path, rng, 400)
        return [f"data.path={path}", "model=lstm", "train.batch_size=4", "train.bptt_steps=12",
                "train.eval_tokens=200", "train.eval_batch_size=4", *NET]
    if task in ("classify", "conditional"):
        with open(path, "w") as f:
            for _ in range(80):
                label = rng.choice(["pos", "neg"])
                f.write(f"{label}\t{rng.choice(['The', 'the', 'A'])} film was "
                        f"{rng.choice(['good', 'Great'] if label == 'pos' else ['bad', 'Dull'])}"
                        f"{' really' * rng.randint(0, 3)}\n")
        return [f"data.path={path}", "model=gru", "train.batch_size=8", *NET]
    if task == "tag":
        with open(path, "w") as f:
            for _ in range(60):
                f.write(" ".join(f"{w}/{t}" for w, t in [(rng.choice(["the", "The"]), "DT"), (rng.choice(["dog", "Cat"]), "NN"),
                                                           (rng.choice(["saw", "likes"]), "VB")][:rng.randint(2, 3)]) + "\n")
        return [f"data.path={path}", "model=lstm", "train.batch_size=8", *NET]
    if task == "translate":
        with open(path, "w") as f:
            for _ in range(80):
                w = [rng.choice("abcdAB") for _ in range(rng.randint(2, 4))]
                f.write(f"{' '.join(w)}\t{' '.join(reversed(w))}\n")
        return [f"data.path={path}", "model=gru", "train.batch_size=8", "task.beam_size=1", *NET]
    if task == "bilm":
        words_file(path, rng, 80)
        return [f"data.path={path}", "model=lstm", "train.batch_size=8", *NET]
    if task == "forecast":
        t = np.arange(120)
        values = 50 + 0.3 * t + 10 * np.sin(2 * np.pi * t / 12) + np.random.default_rng(0).normal(0, 0.5, 120)
        path.write_text("".join(f"{v:.4f}\n" for v in values))
        return [f"data.path={path}", "model=lstm", "task.period=12", "task.horizon=12", "task.transform=1",
                "train.batch_size=8", "model.hidden_size=8", "model.num_layers=1", "model.dropout=0"]
    if task == "sequence":              # the adding problem, generated
        return ["data=adding", "model=lstm", "task.length=12", "task.train_examples=200", "task.test_examples=40",
                "train.batch_size=8", "model.hidden_size=16", "model.num_layers=1"]
    if task == "caption":               # scenes of seven-segment glyphs, generated
        return ["data=segments", "model=lstm", "task.train_examples=48", "task.test_examples=12", "task.beam_size=1",
                "train.batch_size=8", "model.embedding_size=16", "model.hidden_size=16", "model.channels=8", "model.dropout=0"]
    if task == "speech":                # tone voices in the data cache, as seqlab data fetch speech writes
        from helpers import tone_speech
        tone_speech(per_voice=10)
        return ["data=speech", "model=wavenet", "task.length=64", "train.batch_size=4", "model.embedding_size=8",
                "model.hidden_size=8", "model.num_layers=4", "model.kernel_size=2", "model.dropout=0"]
    if task == "toy":                   # the plug-in example's task (tests/plugin_example), bits it generates
        return ["model=toy", "model.toy_width=8", "train.batch_size=8"]
    raise AssertionError(f"no test data for task {task}: add it here")


TASKS = ["bilm", "caption", "classify", "conditional", "forecast", "lm", "sequence", "speech", "tag", "toy", "translate"]


