"""Sequence tasks with fixed answers, as Bai, Kolter & Koltun (2018, "An Empirical Evaluation
of Generic Convolutional and Recurrent Networks for Sequence Modeling", sec. 4-5) pose them:
a generic sequence network read out at the last step or at every step.

    seqlab train task=sequence data=adding model=tcn model.num_layers=8 model.hidden_size=24 \\
        model.kernel_size=8 task.length=200 train.max_steps=1500 train.max_epochs=0

Dimension legend: N examples, B batch, T time, F input features, H hidden size, O outputs.

    x (B, T, F) -> body: seqlab's TemporalConvNet (models/tcn.py), or the one recurrent
                   builder's lstm / gru / rnn (models/body.py) -> (B, T, H) -> linear (B, T, O)

data.corpus picks the task and its read-out:

    adding     the adding problem (data/synthetic.py): MSE of out[:, -1, 0]; predicting 1
               always scores 1/6 (T = task.length, default 600)
    onebit     one-bit memory (Bengio et al. 1994; data/synthetic.py): the sign of the first
               of T inputs, the rest N(0, task.noise²) (T = task.length, default 100); logistic
               loss on out[:, -1, 0], accuracy; guessing scores 50 %
    copy       copy memory: 10 symbols recalled after T blanks, cross-entropy at every step
               (T = task.length, default 1000); accuracy counts the recalled symbols
    seqmnist   MNIST read pixel by pixel (784 steps), class from the last step; accuracy
    pmnist     the same with one fixed pixel permutation
    chorales   Bach chorales as 88-key piano rolls (music21; the JSB Chorales stand-in):
               each key on or off at frame t+1 given frames <= t, negative log-likelihood
               summed over keys, averaged over frames (padded frames masked)
    folk-rolls the same over 1,037 Essen folk melodies, a frame per eighth note (the
               Nottingham stand-in; data/music.py)

The splits: train, a validation split (generated with its own seed; MNIST's and the
chorales' own validation parts) that picks the best weights, and the test split the final
report scores. Every epoch is a fresh order of the
training examples drawn from (train.seed, epoch); batches of train.batch_size, the last
partial one dropped.
"""
from __future__ import annotations

import math
from typing import Any, Callable

import numpy as np
import torch
import torch.nn.functional as F
from torch import Tensor, nn

from seqlab import SeqlabError
from seqlab.config import Config
from seqlab.data.images import load_mnist, sequential
from seqlab.data.music import load_chorales, load_folk_rolls
from seqlab.data.synthetic import adding_problem, copy_memory, one_bit
from seqlab.models.body import body_options, build_recurrent, init_recurrent_weights, run_recurrent
from seqlab.models.tcn import TemporalConvNet
from seqlab.registry import register
from seqlab.training.task import Task

SETS = ("adding", "onebit", "copy", "seqmnist", "pmnist", "chorales", "folk-rolls")
KIND = {"adding": "regression_last", "onebit": "bit_last", "copy": "class_step", "seqmnist": "class_last", "pmnist": "class_last",
        "chorales": "bernoulli_frame", "folk-rolls": "bernoulli_frame"}
# generated tasks: (maker, default T, training and test examples)
GENERATED = {"adding": (adding_problem, 600, 50_000, 1_000), "copy": (copy_memory, 1000, 30_000, 6_000),
             "onebit": (one_bit, 100, 16_000, 2_000)}
TCN_OPTIONS = ("hidden_size", "num_layers", "kernel_size", "dropout")


class SequenceNet(nn.Module):
    """forward(x (B, T, F)) -> (B, T, O): a TCN or a recurrent body, and a linear read-out."""

    def __init__(self, cfg: Config, input_size: int, output_size: int):
        super().__init__()
        m = cfg.model
        self.family = m.name
        if m.name == "tcn":
            self.tcn = TemporalConvNet(input_size, [m.hidden_size] * m.num_layers, m.kernel_size, m.dropout)
        else:
            self.rnn = build_recurrent(m, input_size)                         # models/body.py
            init_recurrent_weights(self.rnn, m)
        self.head = nn.Linear(m.hidden_size, output_size)

    def forward(self, x: Tensor) -> Tensor:
        if self.family == "tcn":
            h, _ = self.tcn(x.transpose(1, 2))                                # (B, H, T)
            h = h.transpose(1, 2)                                             # (B, T, H)
        else:
            h, _ = run_recurrent(self.rnn, x)                                 # (B, T, H)
        return self.head(h)                                                   # (B, T, O)


@register("task", "sequence")
class SequenceTask(Task):
    name = "sequence"
    models = ("tcn", "lstm", "gru", "rnn")
    datasets = SETS
    model_options = {"tcn": TCN_OPTIONS, "*": lambda c: body_options(c.model)}
    task_options = (lambda c: ("train_examples", "test_examples")          # task.length: the generated tasks
                    + (("length",) if c.data.corpus in GENERATED else ()) + (("noise",) if c.data.corpus == "onebit" else ()))
    unit, rate = "examples", "examples_per_s"

    def __init__(self, cfg: Config):
        super().__init__(cfg)
        self.kind = KIND.get(cfg.data.corpus, "")
        self.metric = "accuracy" if self.kind in ("class_last", "bit_last") else "loss"
        self.higher_is_better = self.metric == "accuracy"
        self.data: dict[str, tuple] = {}

    @classmethod
    def validate(cls, cfg: Config) -> None:
        if cfg.data.path:
            raise SeqlabError(f"task.name=sequence generates or reads its own data: data.corpus = {', '.join(SETS)}")
        super().validate(cfg)
        for key in ("length", "train_examples", "test_examples"):
            if getattr(cfg.task, key) < 0:
                raise SeqlabError(f"task.{key} must be 0 or more, got {getattr(cfg.task, key)}")
        if cfg.data.corpus in ("adding", "copy") and 0 < cfg.task.length < 2:
            raise SeqlabError(f"task.length must be 2 or more for {cfg.data.corpus}, got {cfg.task.length}")
        if cfg.task.noise < 0:
            raise SeqlabError(f"task.noise must be 0 or more (a standard deviation), got {cfg.task.noise}")

    # -- data -----------------------------------------------------------------------------------

    def prepare(self, log: Callable[[str], None] = print) -> None:
        t, corpus = self.cfg.task, self.cfg.data.corpus
        self.source = corpus
        if corpus in GENERATED:
            make, T, n_train, n_test = GENERATED[corpus]
            make = (lambda T, n, seed: one_bit(T, n, seed, t.noise)) if corpus == "onebit" else make
            T, n_train, n_test = t.length or T, t.train_examples or n_train, t.test_examples or n_test
            self.data = {"train": make(T, n_train, 0), "test": make(T, n_test, 1), "valid": make(T, n_test, 2)}
        elif corpus in ("seqmnist", "pmnist"):
            mnist = load_mnist()
            for split, n in (("train", t.train_examples), ("valid", t.test_examples), ("test", t.test_examples)):
                images, labels = mnist[split]
                images, labels = (images[:n], labels[:n]) if n else (images, labels)
                pixels = np.ascontiguousarray(sequential(images, permute=corpus == "pmnist", seed=0))     # (N, 784, 1)
                self.data[split] = (torch.as_tensor(pixels).float(), torch.as_tensor(labels).long())
        else:
            rolls = load_chorales() if corpus == "chorales" else load_folk_rolls()
            for split in ("train", "valid", "test"):
                part = [torch.as_tensor(r).float() for r in rolls[split] if len(r) > 1]
                n = t.train_examples if split == "train" else t.test_examples
                self.data[split] = (part[:n] if n else part, None)
        if not self.size("train") or not self.size("valid"):
            raise SeqlabError(f"{corpus}: an empty training or validation split; raise task.train_examples")

    def size(self, split: str) -> int:
        return len(self.data[split][0])

    def describe(self) -> str:
        return f"{self.source} ({self.kind}): " + ", ".join(f"{s} {self.size(s):,}" for s in ("train", "valid", "test"))

    @property
    def shape(self) -> tuple[int, int]:
        """(input features, outputs)."""
        return {"adding": (2, 1), "onebit": (1, 1), "copy": (10, 10), "seqmnist": (1, 10), "pmnist": (1, 10),
                "chorales": (88, 88), "folk-rolls": (88, 88)}[self.cfg.data.corpus]

    def batch(self, split: str, index: Tensor, device: torch.device) -> tuple[Tensor, Tensor, Tensor | None]:
        """(inputs (B, T, F), targets, mask (B, T) or None) on `device`."""
        inputs, targets = self.data[split]
        if self.kind == "bernoulli_frame":
            rolls = [inputs[i] for i in index.tolist()]
            lengths = torch.tensor([len(r) - 1 for r in rolls])                         # frames predicted
            padded = nn.utils.rnn.pad_sequence(rolls, batch_first=True)                 # (B, T_max + 1, O)
            mask = torch.arange(padded.size(1) - 1)[None, :] < lengths[:, None]         # (B, T_max)
            return padded[:, :-1].to(device), padded[:, 1:].to(device), mask.to(device)
        x = inputs[index]
        if self.kind == "class_step":
            x = F.one_hot(x, 10).float()                                                # (B, T, 10)
        return x.to(device), targets[index].to(device), None

    # -- model ----------------------------------------------------------------------------------

    def build_model(self) -> nn.Module:
        return SequenceNet(self.cfg, *self.shape)

    # -- what the engine drives -----------------------------------------------------------------

    def epoch_length(self, epoch: int) -> int:
        return max(self.size("train") // self.cfg.train.batch_size, 1)

    def train_batch(self, epoch: int, index: int, device: torch.device):
        order = torch.randperm(self.size("train"), generator=torch.Generator().manual_seed(self.cfg.train.seed * 100_003 + epoch))
        B = self.cfg.train.batch_size
        chosen = order[index * B:(index + 1) * B]
        return self.batch("train", chosen[self.world.rank::self.world.size], device)

    def train_loss(self, model: nn.Module, batch, step: int, carry: Any):
        x, y, mask = batch
        loss, n = self.loss_and_count(model(x), y, mask)
        return loss, n, None

    def loss_and_count(self, out: Tensor, targets: Tensor, mask: Tensor | None) -> tuple[Tensor, int]:
        """Mean loss over the batch's scored units (examples, steps or frames), and their number."""
        if self.kind == "regression_last":
            return F.mse_loss(out[:, -1, 0], targets), targets.numel()
        if self.kind == "bit_last":
            return F.binary_cross_entropy_with_logits(out[:, -1, 0], targets), targets.numel()
        if self.kind == "class_last":
            return F.cross_entropy(out[:, -1], targets), targets.numel()
        if self.kind == "class_step":
            return F.cross_entropy(out.reshape(-1, out.size(-1)), targets.reshape(-1)), targets.numel()
        per_frame = F.binary_cross_entropy_with_logits(out, targets, reduction="none").sum(-1)   # (B, T)
        frames = int(mask.sum())
        return (per_frame * mask).sum() / max(frames, 1), frames

    def validation(self, model: nn.Module, device: torch.device) -> dict[str, float]:
        return self.score(model, "valid", device)

    def score(self, model: nn.Module, split: str, device: torch.device, batch_size: int = 256) -> dict[str, float]:
        """Loss over the whole split (and accuracy where the task has classes)."""
        total, count, correct, scored = 0.0, 0, 0, 0
        for start in range(0, self.size(split), batch_size):
            x, y, mask = self.batch(split, torch.arange(start, min(start + batch_size, self.size(split))), device)
            out = model(x)                                                              # (B, T, O)
            loss, n = self.loss_and_count(out, y, mask)
            total, count = total + loss.item() * n, count + n
            if self.kind == "class_last":
                correct += (out[:, -1].argmax(-1) == y).sum().item()
                scored += y.numel()
            elif self.kind == "bit_last":
                correct += ((out[:, -1, 0] > 0).float() == y).sum().item()
                scored += y.numel()
            elif self.kind == "class_step":   # the steps that matter: the recalled symbols, not the blanks
                recall = y != 0
                correct += ((out.argmax(-1) == y) & recall).sum().item()
                scored += recall.sum().item()
        result = {"loss": total / max(count, 1)}
        if scored:
            result["accuracy"] = 100 * correct / scored
        return result

    def finish(self, run, model: nn.Module, device: torch.device, log: Callable[[str], None],
               best_step: Any) -> dict[str, float]:
        with torch.no_grad():
            result = {f"test_{k}": v for k, v in self.score(model, "test", device).items()}
            result.update(self.score(model, "valid", device))
        baseline = {"adding": 1 / 6, "copy": 10 * math.log(8) / ((self.cfg.task.length or 1000) + 20)}.get(self.source)
        if baseline is not None:
            result["input_blind_baseline"] = baseline
        log(f"best model (update {best_step}): test " + " | ".join(f"{k[5:]} {v:.5g}" for k, v in result.items()
                                                                  if k.startswith("test_")))
        return result
