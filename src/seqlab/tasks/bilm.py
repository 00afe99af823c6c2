"""A bidirectional language model over sentences, trained to feed ELMo features (Peters et
al. 2018) to the tagger and the classifier (`task.elmo=RUN`).

    <bos> w_1 ... w_n <eos> ─► BiLM (models/bilm.py) ─┬─► forward: predict w_1 ... w_n <eos>
                                                       └─► backward: predict <bos> w_1 ... w_n

Loss: the mean of the two directions' per-word cross-entropies; the metric is the
validation perplexity exp(loss) (lower is better). Each sentence is read alone, from its
start state: the layers a consumer reads are then those of exactly this setting.

Data, tokenised as the consumers tokenise it, so that their words find theirs here:
`data.corpus=brown` (the words of the tagged corpus, tags ignored — the tagger's tokens),
`data.corpus=sentiment` (its sentences, split by tasks/classify.py's `words`), or your own
file with data.path=FILE, one sentence per line (also split by `words`). `task.lowercase`
lower-cases them; a consumer's words are lower-cased to match when the biLM's were.

Model: model.name=lstm (or rnn, gru), model.hidden_size units in each of model.num_layers
layers per direction, model.embedding_size equal to model.hidden_size (layer 0 is the
embedding repeated, [e; e], to be as wide as the others).
"""
from __future__ import annotations

import dataclasses

import math
from pathlib import Path
from typing import Any, Callable, Sequence

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from seqlab import SeqlabError
from seqlab.config import Config
from seqlab.data.datasets import dataset
from seqlab.data.sequences import pad
from seqlab.data.sources import read_path
from seqlab.data.vocab import BOS, EOS, PAD, UNK, Vocab
from seqlab.models.bilm import BiLM, Elmo
from seqlab.models.body import body_options, fused_possible
from seqlab.registry import register
from seqlab.tasks.base import BATCHING_OPTIONS, ExampleTask, batched, encode_words, word_vocab, words
from seqlab.training.checkpoint import RunDir
from seqlab.training.runs import load_task, load_trained


@register("task", "bilm")
class BiLMTask(ExampleTask):
    name = "bilm"
    task_options = ("lowercase", "max_length") + BATCHING_OPTIONS
    models = ("lstm", "gru", "rnn")
    # the cell's options apply to each of its one-layer parts (so not those between layers: variational,
    # residual); the embedding is as wide as the hidden layers (validate says so)
    model_options = {"*": lambda c: body_options(dataclasses.replace(c.model, num_layers=1))
                     + ("embedding_size", "tie_weights", "dropout")}
    datasets = ("brown", "sentiment")
    metric = "perplexity"

    def __init__(self, cfg: Config):
        super().__init__(cfg)
        self.vocab = Vocab([], "word")

    @classmethod
    def validate(cls, cfg: Config) -> None:
        super().validate(cfg)
        m = cfg.model
        if not fused_possible(m):
            raise SeqlabError("task.name=bilm uses PyTorch's fused rnn / lstm / gru without cell variants")
        if m.embedding_size != m.hidden_size:
            raise SeqlabError(f"task.name=bilm needs model.embedding_size == model.hidden_size (layer 0, the "
                              f"embedding, is mixed with the layers); got {m.embedding_size} and {m.hidden_size}")

    # -- data ---------------------------------------------------------------------------------

    def read(self) -> list[list[str]]:
        d, lower = self.cfg.data, self.cfg.task.lowercase
        if d.path:
            self.source = Path(d.path).name
            return [words(line, lower) for line in read_path(Path(d.path)).splitlines()]
        self.source = d.corpus
        if d.corpus == "brown":
            return [[w.lower() if lower else w for w, _ in s] for s in dataset(d.corpus).load()]
        return [words(text, lower) for text, _ in dataset(d.corpus).load()]

    def prepare(self, log: Callable[[str], None] = print) -> None:
        self.split([s for s in self.read() if s])
        self.vocab = word_vocab(self.splits["train"], self.cfg.data.max_vocab, self.cfg.data.min_count)
        for name, part in self.splits.items():
            self.splits[name] = [(encode_words(self.vocab, s),) for s in part]
        limit = self.cfg.task.max_length
        if limit:
            self.splits["train"] = [e for e in self.splits["train"] if len(e[0]) <= limit]

    def lengths(self, examples: Sequence) -> tuple[list[int], None]:
        return [len(e[0]) + 2 for e in examples], None

    def describe(self) -> str:
        tokens = sum(len(e[0]) for e in self.splits["train"])
        return f"{super().describe()}, {tokens:,} training words, {len(self.vocab):,} in the vocabulary"

    def meta(self) -> dict[str, Any]:
        return {"vocab": self.vocab.itos[4:]}

    def load_meta(self, meta: dict[str, Any]) -> None:
        self.vocab = Vocab(meta["vocab"], "word")

    # -- model, loss, metrics ------------------------------------------------------------

    def build_model(self) -> nn.Module:
        m = self.cfg.model
        return BiLM(len(self.vocab), m.hidden_size, m.num_layers, m.name, m.dropout, m.tie_weights, m.forget_bias,
                    options=m)

    def collate(self, examples: Sequence, device: torch.device) -> dict[str, Tensor]:
        x, lengths = pad([[BOS, *e[0], EOS] for e in examples])                       # (B, T)
        real = torch.arange(x.size(1))[None, :] < lengths[:, None]                    # (B, T)
        # forward: position t predicts x[t+1] (PAD past the end); backward: t predicts x[t-1]
        forward_y = torch.cat([x[:, 1:], torch.full_like(x[:, :1], PAD)], dim=1)      # (B, T)
        backward_y = torch.cat([torch.full_like(x[:, :1], PAD), x[:, :-1]], dim=1).masked_fill(~real, PAD)
        return {"x": x.to(device), "lengths": lengths, "forward_y": forward_y.to(device),
                "backward_y": backward_y.to(device)}

    def _nll(self, model: nn.Module, batch: dict[str, Tensor]) -> tuple[Tensor, Tensor, int]:
        """(summed forward NLL, summed backward NLL, words predicted per direction)."""
        forward_logits, backward_logits = model(batch["x"], batch["lengths"])       # (B, T, V) each
        forward = F.cross_entropy(forward_logits.flatten(0, 1), batch["forward_y"].flatten(),
                                  ignore_index=PAD, reduction="sum")
        backward = F.cross_entropy(backward_logits.flatten(0, 1), batch["backward_y"].flatten(),
                                   ignore_index=PAD, reduction="sum")
        return forward, backward, int((batch["forward_y"] != PAD).sum())

    def loss(self, model: nn.Module, batch: dict[str, Tensor], step: int) -> tuple[Tensor, int]:
        forward, backward, n = self._nll(model, batch)
        return (forward + backward) / (2 * max(n, 1)), n

    def evaluate(self, model: nn.Module, examples: Sequence, device: torch.device,
                 final: bool = False) -> dict[str, float]:
        forward = backward = 0.0
        count = 0
        for part in batched(list(examples), 128):
            f, b, n = self._nll(model, self.collate(part, device))
            forward, backward, count = forward + float(f), backward + float(b), count + n
        f, b = forward / max(count, 1), backward / max(count, 1)
        return {"loss": (f + b) / 2, "perplexity": math.exp((f + b) / 2),
                "forward_perplexity": math.exp(f), "backward_perplexity": math.exp(b)}


# -- consumers: task.elmo=RUN ----------------------------------------------------------------

def bilm_run(path: str):
    """The RunDir of a task.name=bilm run, or a one-line SeqlabError saying why not."""
    run = RunDir(Path(path))
    try:
        run.require()
        name = run.config().task.name
    except SeqlabError as e:
        raise SeqlabError(f"task.elmo={path}: {e}") from None
    if name != "bilm":
        raise SeqlabError(f"task.elmo={path} is a task.name={name} run; task.elmo needs a task.name=bilm run")
    return run


class ElmoVocab:
    """A consumer's words -> the biLM's word ids, tokenised and lower-cased as the biLM's were."""

    def __init__(self, path: str):
        self.cfg, task = load_task(bilm_run(path))
        self.vocab, self.lowercase = task.vocab, self.cfg.task.lowercase

    def encode(self, words: Sequence[str]) -> list[int]:
        return [self.vocab.stoi.get(w.lower() if self.lowercase else w, UNK) for w in words]

    def batch(self, sentences: Sequence[Sequence[str]], lengths: Sequence[int]) -> Tensor:
        """(B, T) biLM ids, each row as long as its consumer row (UNK fills a row with no words)."""
        rows = [(self.encode(s) + [UNK] * n)[:n] for s, n in zip(sentences, lengths)]
        return pad(rows)[0]


def load_elmo(path: str) -> tuple[Elmo, ElmoVocab]:
    """The frozen biLM of a bilm run with a fresh scalar mix, and its vocabulary."""
    bilm_run(path)
    _, task, bilm, _ = load_trained(path, "cpu")
    return Elmo(bilm), ElmoVocab(path)
