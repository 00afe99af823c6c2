"""Many-to-one: a label (or a score) per sequence — sentiment classification.

    words (B, T) ─► embedding ─► (Bi-)recurrent encoder ─► pooled (B, D*H) ─► dropout ─► linear ─► (B, C)

Pooling (`task.pooling`): `final` concatenates the last layer's final state of each
direction (the forward one has read the sentence left to right, the backward one right to
left); `mean` and `max` pool the outputs over the real (unpadded) positions.

With `task.elmo=RUN` (a task.name=bilm run) each word's input is [word embedding; ELMo
mix]: the frozen biLM's layers mixed by learned weights (Peters et al. 2018, models/bilm.py).

`model.name=bow` is the baseline the lectures set beside it: logistic regression on the
bag of words (word counts, order thrown away), trained by the same loop.

Targets (`task.target`): `class` learns categorical labels — for the sentiment data,
positive when the human score is > 0 and negative when < 0; `score` regresses the score
itself (−4..+4 for sentiment) with the squared error.

Data: `data.corpus=sentiment` (seqlab data fetch sentiment), or your own tab-separated
file with data.path=FILE, one example per line: `LABEL<TAB>TEXT` (a number for
task.target=score).
"""
from __future__ import annotations

import math
from pathlib import Path
from typing import Any, Callable, Sequence

import numpy as np
import torch
import torch.nn.functional as F
from torch import Tensor, nn

from seqlab import SeqlabError
from seqlab.config import Config
from seqlab.data.datasets import dataset
from seqlab.data.sequences import pad
from seqlab.data.sources import read_path
from seqlab.data.vocab import PAD, Vocab
from seqlab.models.encoder import ENCODER_CELLS, encoder_options, SequenceEncoder, lengths_mask
from seqlab.registry import register
from seqlab.tasks.base import BATCHING_OPTIONS, ExampleTask, batched, encode_words, label_vocab, word_vocab, words
from seqlab.tasks.bilm import ElmoVocab, bilm_run, load_elmo

class SequenceClassifier(nn.Module):
    def __init__(self, cfg: Config, vocab_size: int, outputs: int, elmo: nn.Module | None = None):
        super().__init__()
        self.pooling = cfg.task.pooling
        if elmo is None:
            self.encoder = SequenceEncoder(cfg.model, vocab_size, bidirectional=cfg.task.bidirectional)
        else:    # the encoder reads [embedding; ELMo] vectors, so the embedding lives here
            self.words = nn.Embedding(vocab_size, cfg.model.embedding_size, padding_idx=PAD)
            self.elmo = elmo
            self.encoder = SequenceEncoder(cfg.model, 0, bidirectional=cfg.task.bidirectional,
                                           input_size=cfg.model.embedding_size + elmo.output_size)
        self.dropout = nn.Dropout(cfg.model.dropout)
        self.head = nn.Linear(self.encoder.output_size, outputs)

    def forward(self, x: Tensor, lengths: Tensor, elmo_ids: Tensor | None = None) -> Tensor:
        # x (B, T), lengths (B,), elmo_ids (B, T) biLM ids when task.elmo is on -> (B, C) logits or scores
        if elmo_ids is not None:
            x = torch.cat([self.words(x), self.elmo(elmo_ids, lengths)], dim=-1)   # (B, T, E + 2H')
        out, state = self.encoder(x, lengths)                                     # (B, T, D*H)
        if self.pooling == "final":
            pooled = self.encoder.summary(state)                                  # (B, D*H)
        elif self.pooling == "mean":
            pooled = out.sum(1) / lengths.to(out.device).clamp(min=1)[:, None].to(out.dtype)
        else:
            real = lengths_mask(lengths.to(out.device), out.size(1))              # (B, T)
            pooled = out.masked_fill(~real[:, :, None], -math.inf).amax(1)
        return self.head(self.dropout(pooled))


class BagOfWords(nn.Module):
    """Logistic regression on word counts: logits = W · counts(x) + b."""

    def __init__(self, vocab_size: int, outputs: int):
        super().__init__()
        self.weights = nn.EmbeddingBag(vocab_size, outputs, mode="sum", padding_idx=PAD)
        self.bias = nn.Parameter(torch.zeros(outputs))
        nn.init.zeros_(self.weights.weight)

    def forward(self, x: Tensor, lengths: Tensor) -> Tensor:
        return self.weights(x) + self.bias                                        # (B, C)


@register("task", "classify")
class ClassifyTask(ExampleTask):
    name = "classify"
    offers = ("classify",)
    task_options = {"bow": ("target", "lowercase", "max_length") + BATCHING_OPTIONS,     # a bag of word counts
                    "*": ("target", "pooling", "bidirectional", "lowercase", "max_length", "elmo") + BATCHING_OPTIONS}
    # with pooling=final the classifier reads the top layer's final states, which a residual
    # connection (added to a layer's outputs, from layer 2 on) reaches only from a third layer
    model_options = {"bow": (), "*": lambda c: tuple(o for o in encoder_options(c.model) if o != "residual" or
                                                     c.task.pooling != "final" or c.model.num_layers > 2)}
    models = ("bow",) + ENCODER_CELLS
    datasets = ("sentiment",)

    def __init__(self, cfg: Config):
        super().__init__(cfg)
        self.regression = cfg.task.target == "score"
        self.metric = "mae" if self.regression else "accuracy"
        self.higher_is_better = not self.regression
        self.vocab = Vocab([], "word")
        self.labels: list[str] = []
        self._elmo_vocab = None

    @classmethod
    def validate(cls, cfg: Config) -> None:
        super().validate(cfg)
        if cfg.task.target not in ("class", "score"):
            raise SeqlabError(f"task.target must be 'class' or 'score' for classify, got {cfg.task.target!r}")
        if cfg.task.pooling not in ("final", "mean", "max"):
            raise SeqlabError(f"task.pooling must be 'final', 'mean' or 'max', got {cfg.task.pooling!r}")
        if cfg.task.elmo:
            if cfg.model.name == "bow":
                raise SeqlabError("task.elmo feeds a recurrent encoder; model.name=bow (a bag of word counts) "
                                  "cannot take it — use model.name=lstm or gru")
            bilm_run(cfg.task.elmo)

    # -- data ---------------------------------------------------------------------------------

    def prepare(self, log: Callable[[str], None] = print) -> None:
        self.source, rows = labelled_rows(self.cfg, scores=self.regression)
        lower = self.cfg.task.lowercase
        examples = [(words(text, lower), label) for label, text in rows]
        if self.regression:
            try:
                examples = [(w, float(label)) for w, label in examples]
            except ValueError as e:
                raise SeqlabError(f"{self.source}: task.target=score needs a number as each label ({e})") from None
        self.split(examples)
        train = self.splits["train"]
        self.vocab = word_vocab((w for w, _ in train), self.cfg.data.max_vocab, self.cfg.data.min_count)
        if not self.regression:
            self.labels = label_vocab(label for _, label in train)
            if len(self.labels) < 2:
                raise SeqlabError(f"{self.source}: the training split has only one label ({self.labels}); "
                                  f"a classifier needs at least two")
        index = {label: i for i, label in enumerate(self.labels)}
        for name, part in self.splits.items():   # with ELMo each example keeps its words for the biLM
            self.splits[name] = [(encode_words(self.vocab, w) or [PAD], label if self.regression else index.get(label, -1),
                                  *([w] if self.cfg.task.elmo else [])) for w, label in part]
        limit = self.cfg.task.max_length
        if limit:
            self.splits["train"] = [e for e in self.splits["train"] if len(e[0]) <= limit]

    def describe(self) -> str:
        kind = "scores" if self.regression else f"labels {', '.join(self.labels)}"
        return f"{super().describe()}, {len(self.vocab):,} words, {kind}"

    def meta(self) -> dict[str, Any]:
        return {"vocab": self.vocab.itos[4:], "labels": self.labels}

    def load_meta(self, meta: dict[str, Any]) -> None:
        self.vocab, self.labels = Vocab(meta["vocab"], "word"), list(meta["labels"])

    # -- model, loss, metrics ------------------------------------------------------------

    def build_model(self) -> nn.Module:
        outputs = 1 if self.regression else len(self.labels)
        if self.cfg.model.name == "bow":
            return BagOfWords(len(self.vocab), outputs)
        elmo = None
        if self.cfg.task.elmo:
            elmo, self._elmo_vocab = load_elmo(self.cfg.task.elmo)
        return SequenceClassifier(self.cfg, len(self.vocab), outputs, elmo)

    def elmo_vocab(self):
        """The biLM's vocabulary (task.elmo), read once."""
        if self._elmo_vocab is None:
            self._elmo_vocab = ElmoVocab(self.cfg.task.elmo)
        return self._elmo_vocab

    def collate(self, examples: Sequence, device: torch.device) -> dict[str, Tensor]:
        x, lengths = pad([e[0] for e in examples])
        dtype = torch.float32 if self.regression else torch.long
        y = torch.tensor([e[1] for e in examples], dtype=dtype)
        batch = {"x": x.to(device), "lengths": lengths, "y": y.to(device)}
        if self.cfg.task.elmo:
            # an example without its words (from encode_text) is read back through this task's
            # vocabulary, so a word it does not know reaches the biLM as <unk>
            sentences = [e[2] if len(e) > 2 else [self.vocab.itos[i] for i in e[0]] for e in examples]
            batch["elmo_ids"] = self.elmo_vocab().batch(sentences, lengths.tolist()).to(device)
        return batch

    @staticmethod
    def _run(model: nn.Module, batch: dict[str, Tensor]) -> Tensor:
        if "elmo_ids" in batch:
            return model(batch["x"], batch["lengths"], batch["elmo_ids"])
        return model(batch["x"], batch["lengths"])

    def loss(self, model: nn.Module, batch: dict[str, Tensor], step: int) -> tuple[Tensor, int]:
        out = self._run(model, batch)                                               # (B, C)
        if self.regression:
            return F.mse_loss(out.squeeze(-1), batch["y"]), len(batch["y"])
        return F.cross_entropy(out, batch["y"]), len(batch["y"])

    def predict(self, model: nn.Module, examples: Sequence, device: torch.device) -> np.ndarray:
        """(N,) scores, or (N, C) class probabilities."""
        outs = []
        for part in batched(list(examples), 256):
            batch = self.collate(part, device)
            out = self._run(model, batch)
            outs.append(out.squeeze(-1) if self.regression else out.softmax(-1))
        return torch.cat(outs).cpu().numpy()

    def evaluate(self, model: nn.Module, examples: Sequence, device: torch.device,
                 final: bool = False) -> dict[str, float]:
        truth = np.array([e[1] for e in examples])
        pred = self.predict(model, examples, device)
        if self.regression:
            return {"loss": float(np.mean((pred - truth) ** 2)), "mae": float(np.mean(np.abs(pred - truth))),
                    "pearson": pearson(pred, truth), "sign_accuracy": float(np.mean(np.sign(pred) == np.sign(truth)))}
        nll = -np.log(np.clip(pred[np.arange(len(truth)), np.maximum(truth, 0)], 1e-12, None))
        nll[truth < 0] = np.log(pred.shape[1])      # a label never seen in training: as if uniform
        labels = pred.argmax(1)
        return {"loss": float(nll.mean()), "accuracy": float(np.mean(labels == truth)),
                "f1": macro_f1(labels, truth, pred.shape[1])}

    def encode_text(self, text: str) -> list[int]:
        return encode_words(self.vocab, words(text, self.cfg.task.lowercase)) or [PAD]

    def unknown_words(self, text: str) -> list[str]:
        """The words of `text` the training split never had: read as <unk>."""
        return [w for w in words(text, self.cfg.task.lowercase) if w not in self.vocab.stoi]


def labelled_rows(cfg: Config, scores: bool = False) -> tuple[str, list[tuple[str, str]]]:
    """(source name, [(label, sentence)]) from data.path (LABEL<TAB>TEXT lines) or a named
    dataset of scored sentences: the score as text when `scores`, else its sign — positive
    or negative, the few neutral sentences (score 0) dropped."""
    d = cfg.data
    if d.path:
        return Path(d.path).name, read_labelled(Path(d.path))
    pairs = dataset(d.corpus).load()
    if scores:
        return d.corpus, [(repr(float(score)), text) for text, score in pairs]
    return d.corpus, [("positive" if score > 0 else "negative", text) for text, score in pairs if score != 0]


def read_labelled(path: Path) -> list[tuple[str, str]]:
    rows = []
    for n, line in enumerate(read_path(path).splitlines(), 1):
        if not line.strip():
            continue
        label, sep, text = line.partition("\t")
        if not sep or not label.strip() or not text.strip():
            raise SeqlabError(f"{path}:{n}: expected LABEL<TAB>TEXT, got {line[:60]!r}")
        rows.append((label.strip(), text))
    return rows


def macro_f1(pred: np.ndarray, truth: np.ndarray, classes: int) -> float:
    """Mean over classes of F1 = 2·TP / (2·TP + FP + FN); for two classes, also report accuracy."""
    scores = []
    for c in range(classes):
        tp = np.sum((pred == c) & (truth == c))
        denom = 2 * tp + np.sum((pred == c) & (truth != c)) + np.sum((pred != c) & (truth == c))
        scores.append(2 * tp / denom if denom else 1.0)
    return float(np.mean(scores))


def pearson(a: np.ndarray, b: np.ndarray) -> float:
    if len(a) < 2 or np.std(a) == 0 or np.std(b) == 0:
        return 0.0
    return float(np.corrcoef(a, b)[0, 1])
