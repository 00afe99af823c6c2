"""Token streams for language modelling: contiguous splits and batchify for stateful TBPTT.

The corpus is one long stream of token ids, cut (never shuffled) into
train | valid | test, so held-out text is text the model never saw.
For training, the stream is cut into B parallel columns (here: rows, batch first):

    stream: a b c d e f g h i j k l m n o p q r s t u v w x y      B = 4, N = 6
    batchify ->  ┌ a b c d e f ┐   each row continues from one chunk to the next,
                 │ g h i j k l │   so the hidden state carried across chunks is the
                 │ m n o p q r │   state of the same row's text (the trailing `y`
                 └ s t u v w x ┘   that does not fill a row is dropped)

Chunk i of length T: inputs data[:, i:i+T], targets data[:, i+1:i+T+1].

A corpus larger than memory (data.memmap=true) arrives as read-only np.memmap views
(data/memmap.py); batchify_view cuts it into the same rows without copying a byte.
"""
from __future__ import annotations

import hashlib
import json
from collections import Counter

import numpy as np
import torch

from seqlab import SeqlabError
from seqlab.config import DataConfig
from seqlab.data import sources
from seqlab.data.memmap import load_memmap
from seqlab.data.splits import Splits, split_sizes  # noqa: F401 - re-exported: the stream's splits live in splits.py
from seqlab.data.subword import learn_subwords
from seqlab.data.vocab import UNK, Vocab, tokenize
from seqlab.io import atomic_path, atomic_write_text


def corpus_text(cfg: DataConfig, log=print) -> tuple[str | bytes, str]:
    """(text, description) for the configured corpus or path; bytes at data.level=byte (any
    file, a named corpus as its UTF-8 encoding)."""
    if cfg.level == "byte":
        if cfg.path:
            return sources.read_bytes(cfg.path, log=log), f"file {cfg.path}"
        return sources.corpus(cfg.corpus).text().encode("utf-8"), f"corpus {cfg.corpus}"
    if cfg.path:
        text, source = sources.read_path(cfg.path, log=log), f"file {cfg.path}"
    else:
        text, source = sources.corpus(cfg.corpus).text(), f"corpus {cfg.corpus}"
    return (text.lower(), source + ", lower-cased") if cfg.lowercase else (text, source)


def build_splits(text: str | bytes, cfg: DataConfig, vocab: Vocab | None = None, source: str = "") -> Splits:
    """Tokenise, cut train/valid/test contiguously, and build the vocabulary from train only."""
    if cfg.level == "subword":
        return subword_splits(text, cfg, vocab, source)
    seq = text if cfg.level in ("char", "byte") else tokenize(text, "word")
    n_train, n_valid, _ = split_sizes(len(seq), cfg.valid_fraction, cfg.test_fraction)
    if vocab is None:
        vocab = Vocab.from_counts(Counter(seq[:n_train]), cfg.level, cfg.max_vocab, cfg.min_count)
    if cfg.level in ("char", "byte"):
        ids = vocab.encode(text)
    else:
        ids = np.fromiter((vocab.stoi.get(t, UNK) for t in seq), dtype=np.int64, count=len(seq))
    a, b = n_train, n_train + n_valid
    return Splits(vocab, ids[:a], ids[a:b], ids[b:], source)


def subword_splits(text: str, cfg: DataConfig, vocab: Vocab | None, source: str) -> Splits:
    """data.level=subword: the text cut by characters at line ends, then sentencepiece's pieces
    learned from the training part only (data/subword.py), every part encoded with them."""
    n_train, n_valid, _ = split_sizes(len(text), cfg.valid_fraction, cfg.test_fraction)
    a = text.find("\n", n_train) + 1 or n_train                      # whole lines in each part
    b = max(text.find("\n", n_train + n_valid) + 1 or n_train + n_valid, a)
    if vocab is None:
        vocab = Vocab((), "subword", model=learn_subwords(text[:a], cfg.subword_size))
    parts = [vocab.encode(part) for part in (text[:a], text[a:b], text[b:])]
    return Splits(vocab, *parts, source=f"{source}, {len(vocab):,} subword pieces")


def _cache_key(cfg: DataConfig) -> str:
    fields = {k: getattr(cfg, k) for k in ("corpus", "level", "valid_fraction", "test_fraction",
                                            "max_vocab", "min_count", "lowercase", "subword_size")}
    return hashlib.sha256(json.dumps(fields, sort_keys=True).encode()).hexdigest()[:12]


def load_splits(cfg: DataConfig, log=print) -> Splits:
    """The configured text as splits. Named corpora are tokenised once and cached as .npy;
    with data.memmap, a data.path is streamed into a token file and memory-mapped."""
    if cfg.memmap and cfg.path:
        return load_memmap(cfg, log)
    if cfg.path or not sources.corpus(cfg.corpus).needs_fetch:
        text, source = corpus_text(cfg, log)
        return build_splits(text, cfg, source=source)
    folder = sources.corpus(cfg.corpus).folder / f"tokens-{_cache_key(cfg)}"
    if (folder / "done").is_file():
        vocab = Vocab.load(folder / "vocab.json")
        if cfg.memmap:     # read in place, window by window (see batchify_view)
            parts = [np.load(folder / f"{s}.npy", mmap_mode="r", allow_pickle=False) for s in ("train", "valid", "test")]
        else:
            parts = [np.load(folder / f"{s}.npy", allow_pickle=False).astype(np.int64) for s in ("train", "valid", "test")]
        return Splits(vocab, *parts, source=f"corpus {cfg.corpus}")
    text, source = corpus_text(cfg, log)
    splits = build_splits(text, cfg, source=source)
    dtype = np.uint16 if len(splits.vocab) < 2**16 else np.int32   # compact on disk
    for s in ("train", "valid", "test"):
        with atomic_path(folder / f"{s}.npy") as tmp:
            with open(tmp, "wb") as f:
                np.save(f, splits.get(s).astype(dtype), allow_pickle=False)
    splits.vocab.save(folder / "vocab.json")
    atomic_write_text(folder / "done", "")
    return splits


def batchify(ids: np.ndarray | torch.Tensor, batch_size: int) -> torch.Tensor:
    """(N,) stream -> (B, N // B) rows of contiguous text; see the module docstring."""
    ids = torch.as_tensor(ids, dtype=torch.long)
    per_row = ids.numel() // batch_size
    if per_row < 2:
        raise SeqlabError(
            f"{ids.numel()} tokens cannot fill {batch_size} streams of at least 2 tokens; "
            f"use a smaller batch size or more text")
    return ids[: per_row * batch_size].view(batch_size, per_row)   # (B, N)


def batchify_view(ids: np.ndarray, batch_size: int) -> np.ndarray:
    """batchify without a copy: (N,) -> (B, N // B) rows as a view of `ids` (a memory-mapped
    stream stays on disk; each window is read when it is trained on)."""
    per_row = len(ids) // batch_size
    if per_row < 2:
        raise SeqlabError(
            f"{len(ids)} tokens cannot fill {batch_size} streams of at least 2 tokens; "
            f"use a smaller batch size or more text")
    return ids[: per_row * batch_size].reshape(batch_size, per_row)   # (B, N), a view
