"""Helpers shared by the supervised tasks: word and label vocabularies, encoding, batching.

The protocol every task implements, `Task`, is the engine's: it lives in train/task.py (its
docstring tells what a task provides) and is re-exported here for the task modules."""
from __future__ import annotations

from collections import Counter
from typing import Iterable, Sequence


from seqlab.data.vocab import Vocab
from seqlab.train.task import Example, Task  # noqa: F401 - the protocol, re-exported for the tasks


def word_vocab(sequences: Iterable[Sequence[str]], max_size: int = 0, min_count: int = 1) -> Vocab:
    return Vocab.from_counts(Counter(w for s in sequences for w in s), "word", max_size, min_count)


def label_vocab(labels: Iterable[str]) -> list[str]:
    """Label names, most frequent first (ties by name): deterministic ids for a given training split."""
    counts = Counter(labels)
    return [t for t, _ in sorted(counts.items(), key=lambda tc: (-tc[1], tc[0]))]


def encode_words(vocab: Vocab, words: Sequence[str]) -> list[int]:
    from seqlab.data.vocab import UNK
    return [vocab.stoi.get(w, UNK) for w in words]


def batched(examples: Sequence[Example], size: int) -> Iterable[Sequence[Example]]:
    for i in range(0, len(examples), size):
        yield examples[i:i + size]
