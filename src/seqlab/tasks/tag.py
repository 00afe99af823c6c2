"""Many-to-many, aligned: a tag per token — part-of-speech tagging.

    words (B, T) ─► word embedding (B, T, E) ┐
    characters of each word ─► Bi-LSTM ──────┴► concat (B, T, E + 2C) ─► Bi-LSTM ─► linear ─► (B, T, tags)

The character part (`task.char_size` > 0) is Ling et al. (2015), "Finding Function in
Form": each word's vector is also built from its spelling — the last states of a forward
and a backward LSTM over its characters — so a word never seen in training still has
its suffix (-ly, -ed, -tion) and capital letter to go by. Each distinct word of a batch is
spelled once.

With `task.elmo=RUN` (a task.name=bilm run) each word's input also holds its ELMo vector
(Peters et al. 2018): the frozen biLM's layers over the sentence, mixed by learned weights
(models/bilm.py), so [word embedding; char features; ELMo mix] feeds the Bi-LSTM.

Data: `data.corpus=brown` (seqlab data fetch brown): 57,340 tagged sentences. With
`task.tagset=base` the tags lose Brown's markers for words in titles (-TL), headlines (-HL),
cited words (-NC) and foreign words (FW-), which say where a word stands, not what part of
speech it is; `full` keeps every tag as written. Or your own file with data.path=FILE: one
sentence per line, tokens written `word/TAG` and separated by spaces.
"""
from __future__ import annotations

import time
from collections import Counter
from pathlib import Path
from typing import Any, Callable, Sequence

import torch
import torch.nn.functional as F
from torch import Tensor, nn
from torch.nn.utils.rnn import pack_padded_sequence

from seqlab import SeqlabError
from seqlab.config import Config
from seqlab.data.datasets import dataset, simplify_tag
from seqlab.data.sequences import pad
from seqlab.data.sources import read_path
from seqlab.data.vocab import PAD, UNK, Vocab
from seqlab.models.kernels import fused
from seqlab.models.encoder import ENCODER_CELLS, encoder_options, SequenceEncoder
from seqlab.registry import register
from seqlab.tasks.base import BATCHING_OPTIONS, ExampleTask, batched, encode_words, label_vocab, word_vocab
from seqlab.tasks.bilm import ElmoVocab, bilm_run, load_elmo

IGNORE = -100      # targets at padded positions (F.cross_entropy's ignore_index)


class CharWords(nn.Module):
    """Word vectors spelled from characters: (U, L) char ids -> (U, 2C) (Ling et al. 2015)."""

    def __init__(self, n_chars: int, size: int):
        super().__init__()
        self.embedding = nn.Embedding(n_chars, size, padding_idx=PAD)
        self.rnn = fused.LSTM(size, size, batch_first=True, bidirectional=True)

    def forward(self, chars: Tensor, lengths: Tensor) -> Tensor:
        packed = pack_padded_sequence(self.embedding(chars), lengths.cpu(), batch_first=True, enforce_sorted=False)
        _, (h, _) = self.rnn(packed)                                           # h (2, U, C)
        return torch.cat([h[0], h[1]], dim=-1)                                 # (U, 2C)


class Tagger(nn.Module):
    def __init__(self, cfg: Config, vocab_size: int, n_chars: int, n_tags: int, elmo: nn.Module | None = None):
        super().__init__()
        m, size = cfg.model, cfg.task.char_size
        self.words = nn.Embedding(vocab_size, m.embedding_size, padding_idx=PAD)
        self.chars = CharWords(n_chars, size) if size else None
        if elmo is not None:     # registered only when on, so a run without ELMo keeps its weight names
            self.elmo = elmo
        extra = elmo.output_size if elmo is not None else 0
        self.encoder = SequenceEncoder(m, 0, bidirectional=cfg.task.bidirectional,
                                       input_size=m.embedding_size + 2 * size + extra)
        self.dropout = nn.Dropout(m.dropout)
        self.head = nn.Linear(self.encoder.output_size, n_tags)

    def forward(self, batch: dict[str, Tensor]) -> Tensor:
        x = self.words(batch["x"])                                             # (B, T, E)
        if self.chars is not None:
            spelled = self.chars(batch["chars"], batch["char_lengths"])        # (U, 2C)
            x = torch.cat([x, spelled[batch["spelling"]]], dim=-1)             # (B, T, E + 2C)
        if "elmo_ids" in batch:
            x = torch.cat([x, self.elmo(batch["elmo_ids"], batch["lengths"])], dim=-1)   # (B, T, E + 2C + 2H')
        out, _ = self.encoder(x, batch["lengths"])                             # (B, T, D*H)
        return self.head(self.dropout(out))                                    # (B, T, tags)


@register("task", "tag")
class TagTask(ExampleTask):
    name = "tag"
    offers = ("tag",)
    task_options = ("bidirectional", "char_size", "tagset", "lowercase", "max_length", "elmo") + BATCHING_OPTIONS
    model_options = {"*": lambda c: encoder_options(c.model)}
    models = ENCODER_CELLS
    datasets = ("brown",)
    metric = "accuracy"
    higher_is_better = True

    def __init__(self, cfg: Config):
        super().__init__(cfg)
        self.vocab = Vocab([], "word")
        self.chars = Vocab([], "char")
        self.tags: list[str] = []
        self._elmo_vocab = None

    @classmethod
    def validate(cls, cfg: Config) -> None:
        super().validate(cfg)
        if cfg.task.tagset not in ("base", "full"):
            raise SeqlabError(f"task.tagset must be 'base' or 'full', got {cfg.task.tagset!r}")
        if cfg.task.tagset != "base" and cfg.data.path:
            raise SeqlabError("task.tagset chooses among the Brown corpus's tags (data.corpus=brown); the tags of "
                              "your file (data.path) are used as written: remove task.tagset")
        if cfg.task.elmo:
            bilm_run(cfg.task.elmo)

    # -- data ---------------------------------------------------------------------------------

    def read(self) -> list[list[tuple[str, str]]]:
        d = self.cfg.data
        if d.path:
            self.source = Path(d.path).name
            return read_tagged(Path(d.path))
        self.source = d.corpus
        sentences = dataset(d.corpus).load()
        if self.cfg.task.tagset == "base":
            sentences = [[(w, simplify_tag(t)) for w, t in s] for s in sentences]
        return sentences

    def prepare(self, log: Callable[[str], None] = print) -> None:
        lower = self.cfg.task.lowercase
        sentences = [([w.lower() if lower else w for w, _ in s], [t for _, t in s]) for s in self.read() if s]
        self.split(sentences)
        train = self.splits["train"]
        self.vocab = word_vocab((w for w, _ in train), self.cfg.data.max_vocab, self.cfg.data.min_count)
        self.chars = Vocab.from_counts(Counter(c for w, _ in train for x in w for c in x), "char")
        self.tags = label_vocab(t for _, tags in train for t in tags)
        index = {t: i for i, t in enumerate(self.tags)}
        for name, part in self.splits.items():
            self.splits[name] = [(encode_words(self.vocab, w), [index.get(t, -1) for t in tags], w)
                                 for w, tags in part]
        limit = self.cfg.task.max_length
        if limit:
            self.splits["train"] = [e for e in self.splits["train"] if len(e[0]) <= limit]

    def describe(self) -> str:
        tokens = sum(len(e[0]) for e in self.splits["train"])
        return (f"{super().describe()}, {tokens:,} training tokens, {len(self.vocab):,} words, "
                f"{len(self.tags)} tags ({self.cfg.task.tagset})")

    def meta(self) -> dict[str, Any]:
        return {"vocab": self.vocab.itos[4:], "chars": self.chars.itos[4:], "tags": self.tags}

    def load_meta(self, meta: dict[str, Any]) -> None:
        self.vocab = Vocab(meta["vocab"], "word")
        self.chars = Vocab(meta["chars"], "char")
        self.tags = list(meta["tags"])

    # -- model, loss, metrics ------------------------------------------------------------

    def build_model(self) -> nn.Module:
        elmo = None
        if self.cfg.task.elmo:
            elmo, self._elmo_vocab = load_elmo(self.cfg.task.elmo)
        return Tagger(self.cfg, len(self.vocab), len(self.chars), len(self.tags), elmo)

    def elmo_vocab(self):
        """The biLM's vocabulary (task.elmo), read once."""
        if self._elmo_vocab is None:
            self._elmo_vocab = ElmoVocab(self.cfg.task.elmo)
        return self._elmo_vocab

    def collate(self, examples: Sequence, device: torch.device) -> dict[str, Tensor]:
        x, lengths = pad([e[0] for e in examples])                             # (B, T)
        y, _ = pad([e[1] for e in examples], value=IGNORE)                      # (B, T)
        y = y.masked_fill(y < 0, IGNORE)           # a tag unseen in training cannot be predicted: skip it in the loss
        batch = {"x": x.to(device), "lengths": lengths, "y": y.to(device)}
        if self.cfg.task.char_size:
            distinct: dict[str, int] = {"": 0}     # slot 0 spells the padding
            spelling = torch.zeros_like(x)
            for b, e in enumerate(examples):
                for t, word in enumerate(e[2]):
                    spelling[b, t] = distinct.setdefault(word, len(distinct))
            spelled = [[self.chars.stoi.get(c, UNK) for c in w] or [PAD] for w in distinct]
            chars, char_lengths = pad(spelled)                                  # (U, L)
            batch.update(chars=chars.to(device), char_lengths=char_lengths, spelling=spelling.to(device))
        if self.cfg.task.elmo:
            batch["elmo_ids"] = self.elmo_vocab().batch([e[2] for e in examples], lengths.tolist()).to(device)
        return batch

    def loss(self, model: nn.Module, batch: dict[str, Tensor], step: int) -> tuple[Tensor, int]:
        logits = model(batch)                                                   # (B, T, tags)
        n = int((batch["y"] != IGNORE).sum())
        return F.cross_entropy(logits.flatten(0, 1), batch["y"].flatten(), ignore_index=IGNORE), n

    def predict(self, model: nn.Module, examples: Sequence, device: torch.device) -> list[list[int]]:
        tags = []
        for part in batched(list(examples), 128):
            batch = self.collate(part, device)
            best = model(batch).argmax(-1).cpu()                                # (B, T)
            tags.extend(best[i, :len(e[0])].tolist() for i, e in enumerate(part))
        return tags

    def evaluate(self, model: nn.Module, examples: Sequence, device: torch.device,
                 final: bool = False) -> dict[str, float]:
        started = time.perf_counter()
        nll = count = 0.0
        right = total = unseen_right = unseen_total = 0
        for part in batched(list(examples), 128):
            batch = self.collate(part, device)
            logits = model(batch)                                               # (B, T, tags)
            y = batch["y"]
            nll += float(F.cross_entropy(logits.flatten(0, 1), y.flatten(), ignore_index=IGNORE, reduction="sum"))
            count += int((y != IGNORE).sum())
            real = (torch.arange(y.size(1))[None, :] < batch["lengths"][:, None]).to(y.device)
            hit = (logits.argmax(-1) == y) & real
            right += int(hit.sum())
            total += int(real.sum())
            unseen = (batch["x"] == UNK) & real
            unseen_right += int((hit & unseen).sum())
            unseen_total += int(unseen.sum())
        seconds = time.perf_counter() - started
        return {"loss": nll / max(count, 1), "accuracy": right / max(total, 1),
                "unknown_word_accuracy": unseen_right / max(unseen_total, 1), "words_per_s": total / max(seconds, 1e-9)}

    def encode_words(self, tokens: list[str]) -> tuple[list[int], list[int], list[str]]:
        tokens = [t.lower() for t in tokens] if self.cfg.task.lowercase else tokens
        return encode_words(self.vocab, tokens), [0] * len(tokens), tokens

    def unknown_words(self, tokens: list[str] | str) -> list[str]:
        """The tokens the training split never had: read as <unk> (their characters still count
        with task.char_size)."""
        tokens = tokens.split() if isinstance(tokens, str) else tokens
        return [t for t in tokens if (t.lower() if self.cfg.task.lowercase else t) not in self.vocab.stoi]


def read_tagged(path: Path) -> list[list[tuple[str, str]]]:
    sentences = []
    for n, line in enumerate(read_path(path).splitlines(), 1):
        if not line.strip():
            continue
        sentence = []
        for token in line.split():
            word, sep, tag = token.rpartition("/")
            if not sep or not word or not tag:
                raise SeqlabError(f"{path}:{n}: expected tokens written word/TAG, got {token!r}")
            sentence.append((word, tag))
        sentences.append(sentence)
    return sentences
