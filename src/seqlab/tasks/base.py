"""What the example-based tasks (classify, tag, translate, conditional, bilm) share: their
batches for the engine, word and label vocabularies, encoding.

The protocol every task implements, `Task`, is the engine's: it lives in training/task.py (its
docstring tells what a task provides).

Each epoch groups the training examples into mini-batches (data/sequences.py: shuffled,
sorted by length, or by a token budget) in an order drawn from (train.seed, epoch), so a
resumed run sees the same batches. Under torchrun rank r of W takes the examples r, r+W,
r+2W, ... of every batch; the engine weighs each rank's mean loss by its share of the
batch's items, so the ranks' averaged gradient is the one-process gradient.
"""
from __future__ import annotations

import re
from collections import Counter
from typing import Any, Iterable, Sequence

import numpy as np
import torch

from seqlab import SeqlabError
from seqlab.data.sequences import make_batches, padding_share
from seqlab.data.vocab import UNK, Vocab
from seqlab.training.task import Example, Task

BATCHING_OPTIONS = ("batching", "max_tokens")


class ExampleTask(Task):
    """A task whose data is a list of examples, batched anew each epoch."""
    validate_each_epoch = True
    _epoch: int | None = None
    _batches: list[np.ndarray] = []

    def lengths(self, examples: Sequence[Example]) -> tuple[list[int], list[int] | None]:
        """(source lengths, target lengths or None) for batching."""
        return [len(e[0]) for e in examples], None

    def collate(self, examples: Sequence[Example], device: torch.device) -> dict[str, Any]:
        raise NotImplementedError

    def setup_training(self, world, device: torch.device) -> None:
        super().setup_training(world, device)
        if not self.splits["train"]:
            limit = self.cfg.task.max_length
            raise SeqlabError(f"{self.source}: no training example left" + (
                f" with at most task.max_length={limit} tokens; raise it or set it to 0" if limit else ""))

    def epoch_batches(self, epoch: int) -> list[np.ndarray]:
        """The training batches of `epoch` (example indices): a function of the seed and the epoch only."""
        if self._epoch != epoch:
            src, tgt = self.lengths(self.splits["train"])
            rng = np.random.default_rng([self.cfg.train.seed, epoch])
            self._batches = make_batches(src, self.cfg.train.batch_size, self.cfg.task.batching, target_lengths=tgt,
                                         max_tokens=self.cfg.task.max_tokens, rng=rng)
            self._epoch = epoch
        return self._batches

    def epoch_length(self, epoch: int) -> int:
        return len(self.epoch_batches(epoch))

    def epoch_note(self, epoch: int) -> str:
        batches = self.epoch_batches(epoch)
        src, _ = self.lengths(self.splits["train"])
        return (f"epoch {epoch + 1}: {len(batches)} batches, {padding_share(batches, src):.1%} of positions are "
                f"padding ({self.cfg.task.batching})")

    def train_batch(self, epoch: int, index: int, device: torch.device) -> dict[str, Any]:
        chosen = self.epoch_batches(epoch)[index]
        world = getattr(self, "world", None)
        if world is not None and world.parallel:
            mine = chosen[world.rank::world.size]
            if len(mine) == 0:        # fewer examples than ranks: run one, weighted 0, so DDP still syncs
                batch = self.collate([self.splits["train"][chosen[0]]], device)
                batch["weightless"] = True
                return batch
            chosen = mine
        return self.collate([self.splits["train"][j] for j in chosen], device)

    def train_loss(self, model, batch: dict[str, Any], step: int, carry: Any):
        loss, n = self.loss(model, batch, step)
        return loss, (0 if batch.get("weightless") else n), None


_WORD = re.compile(r"\w+(?:'\w+)?|[^\w\s]")


def words(text: str, lowercase: bool = False) -> list[str]:
    """Words and punctuation marks: "Don't stop!" -> ["Don't", "stop", "!"]."""
    return _WORD.findall(text.lower() if lowercase else text)


def word_vocab(sequences: Iterable[Sequence[str]], max_size: int = 0, min_count: int = 1) -> Vocab:
    return Vocab.from_counts(Counter(w for s in sequences for w in s), "word", max_size, min_count)


def label_vocab(labels: Iterable[str]) -> list[str]:
    """Label names, most frequent first (ties by name): deterministic ids for a given training split."""
    counts = Counter(labels)
    return [t for t, _ in sorted(counts.items(), key=lambda tc: (-tc[1], tc[0]))]


def encode_words(vocab: Vocab, words: Sequence[str]) -> list[int]:
    return [vocab.stoi.get(w, UNK) for w in words]


def batched(examples: Sequence[Example], size: int) -> Iterable[Sequence[Example]]:
    for i in range(0, len(examples), size):
        yield examples[i:i + size]
