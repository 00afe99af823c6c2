"""Sequence tasks with fixed answers, trained the way Bai, Kolter & Koltun (2018, "An Empirical
Evaluation of Generic Convolutional and Recurrent Networks for Sequence Modeling", sec. 4-5)
train them: a generic sequence network read out at the last step or at every step.

Dimension legend: N examples, B batch, T time, F input features, H hidden size, O outputs.

    x (B, T, F) -> body: seqlab's TemporalConvNet, or the recurrent builder's lstm / gru / rnn -> (B, T, H)
                -> linear head (B, T, O)

The recurrent networks come from seqlab's one recurrent builder (models/body.py), which
runs the plain cells on PyTorch's fused modules; the TCN is seqlab's own (models/tcn.py), weight
normalisation and all. Four read-outs, one per kind of task:

    regression_last   adding problem: MSE of out[:, -1, 0] against y (N,)
    class_last        sequential MNIST: cross-entropy of out[:, -1] against the label
    class_step        copy memory: cross-entropy at every step, targets (N, T)
    bernoulli_frame   piano rolls: each of O keys on or off at frame t+1 given frames ≤ t,
                      negative log-likelihood summed over keys, averaged over frames
                      (Boulanger-Lewandowski et al. 2012's measure; padded frames masked)

`train` is plain: Adam (or RMSprop), global-norm clipping, fixed seeds, an update and time
budget, a progress bar on stderr; then one evaluation over the whole held-out split.
"""
from __future__ import annotations

import math
import time
from dataclasses import dataclass
from typing import Callable

import numpy as np
import torch
import torch.nn.functional as F
from torch import Tensor, nn
from tqdm import tqdm

from seqlab import SeqlabError
from seqlab.config import ModelConfig
from seqlab.models.body import build_recurrent, run_recurrent
from seqlab.models.recurrent import chrono_timescales
from seqlab.models.tcn import TemporalConvNet

KINDS = ("regression_last", "class_last", "class_step", "bernoulli_frame")
RECURRENT = ("lstm", "gru", "rnn")


class SequenceNet(nn.Module):
    """forward(x (B, T, F)) -> (B, T, O). `family` is tcn, lstm, gru or rnn."""

    def __init__(self, family: str, input_size: int, output_size: int, hidden_size: int,
                 num_layers: int = 1, kernel_size: int = 2, dropout: float = 0.0, forget_bias: float = 0.0,
                 chrono: int = 0):
        super().__init__()
        self.family = family
        if family == "tcn":
            self.tcn = TemporalConvNet(input_size, [hidden_size] * num_layers, kernel_size, dropout)
        elif family in RECURRENT:
            # the one recurrent builder (models/body.py): PyTorch's fused module for the plain cell;
            # the forget-gate bias starts at forget_bias (Gers et al. 2000; Jozefowicz et al. 2015)
            body = ModelConfig(name=family, hidden_size=hidden_size, num_layers=num_layers, dropout=dropout,
                               forget_bias=forget_bias)
            self.rnn = build_recurrent(body, input_size)
            if family == "lstm" and chrono:                                   # b_f = -b_i = log U[1, T_max - 1]
                with torch.no_grad():
                    for layer in range(num_layers):
                        b_ih, b_hh = getattr(self.rnn, f"bias_ih_l{layer}"), getattr(self.rnn, f"bias_hh_l{layer}")
                        b_f = chrono_timescales(hidden_size, chrono)                     # (H,)
                        b_ih[hidden_size:2 * hidden_size], b_hh[hidden_size:2 * hidden_size] = b_f, 0.0
                        b_ih[:hidden_size], b_hh[:hidden_size] = -b_f, 0.0
        else:
            raise SeqlabError(f"unknown family {family!r}; valid: tcn, {', '.join(RECURRENT)}")
        self.head = nn.Linear(hidden_size, output_size)

    def forward(self, x: Tensor) -> Tensor:
        if self.family == "tcn":
            h, _ = self.tcn(x.transpose(1, 2))                                # (B, H, T)
            h = h.transpose(1, 2)                                             # (B, T, H)
        else:
            h, _ = run_recurrent(self.rnn, x)                                 # (B, T, H)
        return self.head(h)                                                   # (B, T, O)


def parameter_count(model: nn.Module) -> int:
    return sum(p.numel() for p in model.parameters())


@dataclass
class SequenceTask:
    """A task: its read-out `kind`, sizes, and splits. splits[name] = (inputs, targets): tensors
    indexed by example, or for bernoulli_frame a list of (T_i, O) rolls and None. `prepare` turns
    a batch of stored inputs into the float (B, T, F) the network reads (e.g. one-hot codes)."""
    name: str
    kind: str
    input_size: int
    output_size: int
    splits: dict[str, tuple]
    prepare: Callable[[Tensor], Tensor] = lambda x: x
    baseline: float | None = None              # the loss of the best input-blind guess, for reference

    def __post_init__(self) -> None:
        if self.kind not in KINDS:
            raise SeqlabError(f"unknown task kind {self.kind!r}; valid: {', '.join(KINDS)}")

    def size(self, split: str) -> int:
        return len(self.splits[split][0])

    def batch(self, split: str, index: Tensor, device) -> tuple[Tensor, Tensor, Tensor | None]:
        """(inputs (B, T, F), targets, mask (B, T) or None) on `device`."""
        inputs, targets = self.splits[split]
        if self.kind == "bernoulli_frame":
            rolls = [torch.as_tensor(inputs[i]) for i in index.tolist()]
            lengths = torch.tensor([len(r) - 1 for r in rolls])               # frames predicted
            padded = nn.utils.rnn.pad_sequence(rolls, batch_first=True)       # (B, T_max + 1, O)
            mask = torch.arange(padded.size(1) - 1)[None, :] < lengths[:, None]   # (B, T_max)
            return padded[:, :-1].to(device), padded[:, 1:].to(device), mask.to(device)
        return self.prepare(inputs[index]).to(device), targets[index].to(device), None


def loss_and_count(task: SequenceTask, out: Tensor, targets: Tensor, mask: Tensor | None) -> tuple[Tensor, int]:
    """Mean loss over the batch's scored units (examples, steps or frames), and their number."""
    if task.kind == "regression_last":
        return F.mse_loss(out[:, -1, 0], targets), targets.numel()
    if task.kind == "class_last":
        return F.cross_entropy(out[:, -1], targets), targets.numel()
    if task.kind == "class_step":
        return F.cross_entropy(out.reshape(-1, out.size(-1)), targets.reshape(-1)), targets.numel()
    per_key = F.binary_cross_entropy_with_logits(out, targets, reduction="none")    # (B, T, O)
    per_frame = per_key.sum(-1)                                                      # (B, T)
    frames = int(mask.sum())
    return (per_frame * mask).sum() / max(frames, 1), frames


@torch.no_grad()
def evaluate(model: nn.Module, task: SequenceTask, split: str, batch_size: int, device) -> dict[str, float]:
    """Loss over the whole split (and accuracy where the task has classes)."""
    was_training = model.training
    model.eval()
    total, count, correct, scored = 0.0, 0, 0, 0
    for start in range(0, task.size(split), batch_size):
        index = torch.arange(start, min(start + batch_size, task.size(split)))
        x, y, mask = task.batch(split, index, device)
        out = model(x)                                                        # (B, T, O)
        loss, n = loss_and_count(task, out, y, mask)
        total += loss.item() * n
        count += n
        if task.kind == "class_last":
            correct += (out[:, -1].argmax(-1) == y).sum().item()
            scored += y.numel()
        elif task.kind == "class_step":
            # the steps that matter: those whose target is not the blank 0 (the recalled symbols)
            recall = y != 0
            correct += ((out.argmax(-1) == y) & recall).sum().item()
            scored += recall.sum().item()
    model.train(was_training)
    result = {"loss": total / max(count, 1), "examples": task.size(split)}
    if scored:
        result["accuracy"] = correct / scored
    return result


def train(model: nn.Module, task: SequenceTask, *, lr: float = 2e-3, batch_size: int = 32,
          clip_norm: float = 1.0, max_updates: int = 1000, max_time: float = 0.0, optimizer: str = "adam",
          seed: int = 0, device: str = "cpu", progress: bool = True, eval_split: str = "test",
          eval_batch_size: int = 256, log: Callable[[str], None] = print) -> dict[str, float]:
    """Train on task.splits["train"] for max_updates updates (or max_time seconds, whichever
    comes first), then evaluate once on `eval_split`. Returns the metrics plus the training record."""
    torch.manual_seed(seed)
    model.to(device).train()
    params = [p for p in model.parameters() if p.requires_grad]
    if optimizer == "adam":
        opt = torch.optim.Adam(params, lr=lr)
    elif optimizer == "rmsprop":
        opt = torch.optim.RMSprop(params, lr=lr)
    else:
        raise SeqlabError(f"optimizer must be adam or rmsprop, got {optimizer!r}")
    order = torch.Generator().manual_seed(seed)
    n = task.size("train")
    if n < 1:
        raise SeqlabError(f"{task.name}: the training split is empty")
    perm, position = torch.randperm(n, generator=order), 0
    started = time.perf_counter()
    bar = tqdm(total=max_updates, unit="upd", disable=not progress, mininterval=0.5, desc=task.name, dynamic_ncols=True)
    recent, updates, curve = [], 0, []
    try:
        while updates < max_updates and not (max_time and time.perf_counter() - started >= max_time):
            if position + batch_size > n:                    # a new epoch: a new order
                perm, position = torch.randperm(n, generator=order), 0
            index = perm[position:position + batch_size]
            position += batch_size
            x, y, mask = task.batch("train", index, device)
            loss, _ = loss_and_count(task, model(x), y, mask)
            opt.zero_grad(set_to_none=True)
            loss.backward()
            # clipping the global norm keeps one exploding step (Pascanu et al. 2013) from
            # throwing the weights away; recurrent nets on T in the hundreds need it most
            torch.nn.utils.clip_grad_norm_(params, clip_norm if clip_norm > 0 else math.inf)
            opt.step()
            updates += 1
            value = loss.item()
            if not math.isfinite(value):
                raise SeqlabError(f"{task.name}: training loss became {value} at update {updates}; lower lr")
            recent.append(value)
            if updates % 50 == 0:
                curve.append((updates, sum(recent) / len(recent)))
                bar.set_postfix_str(f"loss {curve[-1][1]:.4g}")
                recent = []
            bar.update(1)
    finally:
        bar.close()
    train_seconds = time.perf_counter() - started
    result = evaluate(model, task, eval_split, eval_batch_size, device)
    result.update({"updates": updates, "train_seconds": train_seconds, "seconds_per_update": train_seconds / max(updates, 1),
                   "train_loss_curve": curve, "parameters": parameter_count(model)})
    log(f"{task.name}: {updates} updates in {train_seconds:.0f} s ({1000 * result['seconds_per_update']:.0f} ms each); "
        f"{eval_split} loss {result['loss']:.4g}" + (f", accuracy {result['accuracy']:.4f}" if "accuracy" in result else ""))
    return result


# -- the tasks --------------------------------------------------------------------------------------

def adding_task(T: int, n_train: int, n_test: int, seed: int = 0) -> SequenceTask:
    """The adding problem (data/synthetic.py); predicting 1 always gives MSE ≈ 1/6 ≈ 0.167."""
    from seqlab.data.synthetic import adding_problem
    return SequenceTask(f"adding T={T}", "regression_last", 2, 1,
                        {"train": adding_problem(T, n_train, seed), "test": adding_problem(T, n_test, seed + 1)},
                        baseline=1 / 6)


def copy_task(T: int, n_train: int, n_test: int, seed: int = 0) -> SequenceTask:
    """Copy memory (data/synthetic.py), categories 0-9 read as one-hot codes of 10 channels."""
    from seqlab.data.synthetic import copy_memory
    return SequenceTask(f"copy memory T={T}", "class_step", 10, 10,
                        {"train": copy_memory(T, n_train, seed), "test": copy_memory(T, n_test, seed + 1)},
                        prepare=lambda x: F.one_hot(x, 10).float(),
                        baseline=10 * math.log(8) / (T + 20))


def mnist_task(permute: bool, n_train: int = 0, n_test: int = 0, seed: int = 0) -> SequenceTask:
    """Sequential (pixel by pixel, 784 steps) or permuted MNIST: the first n_train training
    images (0 = all 50,000) and the first n_test test images (0 = all 10,000)."""
    from seqlab.data.images import load_mnist, sequential
    data = load_mnist()
    splits = {}
    for split, n in (("train", n_train), ("test", n_test)):
        images, labels = data[split]
        if n:
            images, labels = images[:n], labels[:n]
        splits[split] = (torch.as_tensor(np.ascontiguousarray(sequential(images, permute=permute, seed=seed))).float(),  # (N, 784, 1)
                         torch.as_tensor(labels).long())
    return SequenceTask(("permuted" if permute else "sequential") + " MNIST", "class_last", 1, 10, splits,
                        baseline=math.log(10))


def chorale_task(max_frames: int = 0) -> SequenceTask:
    """Bach chorales as piano rolls (88 keys), the JSB Chorales stand-in; max_frames > 0 cuts
    each training roll to its first max_frames + 1 frames (a quick-profile economy)."""
    from seqlab.data.music import load_chorales
    data = load_chorales()
    train_rolls = [torch.as_tensor(r).float()[: max_frames + 1] if max_frames else torch.as_tensor(r).float()
                   for r in data["train"] if len(r) > 1]
    test_rolls = [torch.as_tensor(r).float() for r in data["test"] if len(r) > 1]
    return SequenceTask("chorales", "bernoulli_frame", 88, 88, {"train": (train_rolls, None), "test": (test_rolls, None)})


def describe_split(task: SequenceTask) -> str:
    return ", ".join(f"{split} {task.size(split):,}" for split in task.splits)

