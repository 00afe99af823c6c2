"""task.name=sequence (Bai et al. 2018's tasks) trains through the one engine and learns."""
from __future__ import annotations

import math
import numpy as np
import pytest
import torch

from seqlab import SeqlabError
from seqlab.config import load_config
from seqlab.tasks import sequence
from seqlab.tasks.sequence import SequenceTask
from seqlab.train.engine import fit

QUIET = ["train.progress=false", "train.threads=1", "train.max_epochs=0", "train.schedule=constant",
         "train.early_stop=0", "train.log_every=50", "train.seed=0"]


def run(tmp_path, *args):
    cfg = load_config(None, ["task=sequence", *QUIET, *args])
    return fit(cfg, tmp_path / "run", log=lambda m: None)


@pytest.mark.parametrize("family", ["lstm", "tcn"])
def test_adding_problem_loss_falls_below_the_blind_baseline(tmp_path, family):
    # the LSTM sits on the 0.167 plateau for a few hundred updates before it finds the two marks
    model = (["model=lstm", "model.hidden_size=32", "model.num_layers=1", "train.lr=1e-2", "train.max_steps=500"]
             if family == "lstm" else
             ["model=tcn", "model.dropout=0", "model.hidden_size=16", "model.num_layers=4", "model.kernel_size=3", "train.lr=5e-3",
              "train.max_steps=150"])
    result = run(tmp_path, "data=adding", "task.length=20", "task.train_examples=4000", "task.test_examples=500",
                 "train.batch_size=32", "train.eval_every=500", *model)
    assert result["test_loss"] < 0.5 * result["input_blind_baseline"], result         # 0.167 for an input-blind model


def test_copy_memory_tcn_beats_the_blind_baseline(tmp_path):
    result = run(tmp_path, "data=copy", "task.length=10", "task.train_examples=2000", "task.test_examples=200",
                 "model=tcn", "model.dropout=0", "model.hidden_size=16", "model.num_layers=4", "model.kernel_size=3",
                 "train.lr=5e-3", "train.batch_size=32", "train.max_steps=150", "train.eval_every=150")
    assert result["test_loss"] < 0.5 * result["input_blind_baseline"] and result["test_accuracy"] > 50


def fake_data(monkeypatch):
    """MNIST with the label in the first pixel, and piano rolls that shift one key per frame."""
    def load_mnist():
        rng = np.random.default_rng(0)
        out = {}
        for split, n in (("train", 600), ("valid", 60), ("test", 80)):
            labels = np.arange(n) % 10
            pixels = rng.random((n, 784)).astype(np.float32) * 0.1
            pixels[:, 0] = labels / 10
            out[split] = (pixels, labels)
        return out

    monkeypatch.setattr(sequence, "load_mnist", load_mnist)
    monkeypatch.setattr(sequence, "sequential", lambda im, permute, seed: (im[:, ::-1] if permute else im)[:, :, None])

    def rolls(offset):
        out = []
        for i in range(40):
            frames = np.zeros((12 + i % 5, 88), np.float32)
            for t in range(len(frames)):
                frames[t, (i + offset + t) % 88] = 1
            out.append(frames)
        return out

    monkeypatch.setattr(sequence, "load_chorales", lambda: {"train": rolls(0), "valid": rolls(3)[:8], "test": rolls(7)[:8]})


def test_pixel_mnist_and_piano_rolls_read_their_data_and_learn(tmp_path, monkeypatch):
    fake_data(monkeypatch)
    task = SequenceTask(load_config(None, ["task=sequence", "data=pmnist", "model=gru", "task.train_examples=8"]))
    task.prepare(lambda m: None)
    x, y, _ = task.batch("train", torch.arange(4), torch.device("cpu"))
    assert x.shape == (4, 784, 1) and task.size("train") == 8 and task.size("test") == 80 and y.tolist() == [0, 1, 2, 3]
    task = SequenceTask(load_config(None, ["task=sequence", "data=chorales", "model=lstm"]))
    task.prepare(lambda m: None)
    x, y, mask = task.batch("test", torch.arange(3), torch.device("cpu"))
    assert x.shape == (3, 13, 88) and mask.sum().item() == 11 + 12 + 13
    result = run(tmp_path, "data=chorales", "model=lstm", "model.hidden_size=32", "model.num_layers=1",
                 "train.lr=1e-2", "train.batch_size=8", "train.max_steps=200", "train.eval_every=100")
    assert result["test_loss"] < 0.3 * 88 * math.log(2)          # far below a coin per key (61 nats per frame)


def test_options_of_other_tasks_are_refused():
    with pytest.raises(SeqlabError, match="task.length"):
        SequenceTask.check_options(load_config(None, ["task=sequence", "data=seqmnist", "model=tcn", "task.length=5"]))
    with pytest.raises(SeqlabError, match="data.corpus"):
        load_config(None, ["task=sequence", "data=shakespeare", "model=tcn"])


def test_chrono_initialisation_spreads_the_forget_biases_and_mirrors_them_on_the_input_gate():
    H, T_max = 64, 200
    cfg = load_config(None, ["task=sequence", "data=adding", "model=lstm", f"model.hidden_size={H}", "model.num_layers=2",
                             f"model.chrono={T_max}"])
    torch.manual_seed(0)
    model = SequenceTask(cfg).build_model()
    for layer in range(2):
        b_ih, b_hh = getattr(model.rnn, f"bias_ih_l{layer}"), getattr(model.rnn, f"bias_hh_l{layer}")
        b_f, b_i = b_ih[H:2 * H] + b_hh[H:2 * H], b_ih[:H] + b_hh[:H]       # PyTorch's gate order i, f, g, o
        assert torch.all(b_f >= 0) and torch.all(b_f <= math.log(T_max - 1) + 1e-6)
        assert b_f.max() > math.log(T_max / 4)                              # spread towards long time scales
        assert torch.equal(b_i, -b_f)
    with pytest.raises(SeqlabError, match="chrono"):     # seqlab's own cells have no chrono initialisation
        SequenceTask.check_options(load_config(None, ["task=sequence", "data=adding", "model=lstm",
                                                      "model.layer_norm=true", "model.chrono=50"]))
