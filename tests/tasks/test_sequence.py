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
from seqlab.training.engine import fit

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


def test_chrono_initialisation_of_the_gru_sets_the_update_gate_that_keeps_the_state():
    H, T_max = 32, 100
    cfg = load_config(None, ["task=sequence", "data=onebit", "model=gru", f"model.hidden_size={H}", "model.num_layers=1",
                             f"model.chrono={T_max}"])
    torch.manual_seed(0)
    gru = SequenceTask(cfg).build_model().rnn
    torch.manual_seed(0)
    plain = SequenceTask(load_config(None, ["task=sequence", "data=onebit", "model=gru", f"model.hidden_size={H}",
                                            "model.num_layers=1"])).build_model().rnn
    b_z = gru.bias_ih_l0[H:2 * H] + gru.bias_hh_l0[H:2 * H]             # PyTorch's gate order r, z, n
    assert torch.all(b_z >= 0) and torch.all(b_z <= math.log(T_max - 1) + 1e-6) and b_z.std() > 0
    for other in (slice(0, H), slice(2 * H, 3 * H)):                     # r and n keep their initial biases
        assert torch.equal(gru.bias_ih_l0[other], plain.bias_ih_l0[other])
    # z is the gate that keeps h: h_t = (1 - z) n + z h_{t-1}, so a huge z bias keeps h exactly
    with torch.no_grad():
        gru.bias_ih_l0[H:2 * H] = 60.0
    h0 = torch.randn(1, 3, H)
    _, h1 = gru(torch.randn(3, 1, 1), h0)
    torch.testing.assert_close(h1, h0, atol=1e-6, rtol=0)


def test_onebit_reads_the_sign_of_the_first_input_and_scores_accuracy():
    cfg = load_config(None, ["task=sequence", "data=onebit", "model=rnn", "model.hidden_size=4", "model.num_layers=1",
                             "task.length=7", "task.noise=0.25", "task.train_examples=64", "task.test_examples=40"])
    task = SequenceTask(cfg)
    task.prepare(lambda m: None)
    x, y, mask = task.batch("valid", torch.arange(40), torch.device("cpu"))
    assert x.shape == (40, 7, 1) and mask is None and torch.equal(y, (x[:, 0, 0] > 0).float())
    assert task.metric == "accuracy" and task.higher_is_better

    class Oracle(torch.nn.Module):                       # reads the bit, and says so at the last step
        def forward(self, x):
            return x[:, :1].expand(-1, x.size(1), -1) * 10         # (B, T, 1) logits

    assert task.score(Oracle(), "test", torch.device("cpu"))["accuracy"] == 100.0
    flipped = task.score(lambda x: -Oracle()(x), "test", torch.device("cpu"))
    assert flipped["accuracy"] == 0.0 and flipped["loss"] > 5


def test_folk_rolls_the_nottingham_stand_in(tmp_path):
    """Folk tunes (written here into the data cache) become eighth-note piano rolls split in
    Nottingham's counts, and task.name=sequence data=folk-rolls trains on them."""
    from seqlab.data import music, sources

    tunes = [f"T:t{i}\nM:2/4\nL:1/8\nK:G\nC2 D/E/ {'F' if i % 2 else 'c'}2 z2 |" for i in range(1040)]
    sources.corpus("folk").folder.mkdir(parents=True)
    sources.corpus("folk").text_path.write_text("\n\n".join(tunes) + "\n\n", encoding="utf-8")
    rolls = music.load_folk_rolls() if music.FOLK_ROLLS.fetch(log=lambda m: None) else None
    assert [len(rolls[s]) for s in ("train", "valid", "test")] == list(music.NOTTINGHAM_SPLIT)
    first = rolls["train"][0]                     # C2 | D/E/ | c2 | z2: frames C C D c c (E sounds at no frame), then rest
    keys = [int(np.flatnonzero(f)[0]) + music.LOWEST_KEY if f.any() else None for f in first]
    assert keys == [60, 60, 62, 72, 72, None, None]
    assert max(float(r.sum(1).max()) for r in rolls["train"]) == 1.0          # melodies: one key at a time
    result = run(tmp_path, "data.corpus=folk-rolls", "model.name=gru", "model.hidden_size=16", "train.batch_size=8",
                 "train.max_steps=3")
    assert math.isfinite(result["test_loss"])
