"""One-to-many: a language model conditioned on a fixed vector — the captioning pattern.

    label ─► embedding c (B, C) ─┬─► linear ─► initial state h_0 (task.condition = init or both)
                                 └─► concatenated to every input [E y_{t-1}; c] (input or both)
    <bos> y_1 ... y_{T-1} ─► recurrent layers ─► linear ─► next word (B, T, V)

In image captioning (Vinyals et al. 2015, "Show and Tell") the vector is a CNN's image
code and sets the initial state; Karpathy & Fei-Fei (2015) and Mao et al. (2015) feed it
at every step instead. Here the vector is a learned embedding of a class — for the
sentiment data, positive or negative — so `seqlab sample RUN --condition positive` writes
a sentence of that class.

Data: `data.corpus=sentiment` (the label is the sign of the human score) or your own
file with data.path=FILE, one `LABEL<TAB>TEXT` per line.
"""
from __future__ import annotations

from typing import Any, Callable, Iterator, Sequence

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from seqlab import SeqlabError
from seqlab.config import Config
from seqlab.data.sequences import pad
from seqlab.data.vocab import BOS, EOS, PAD, UNK, Vocab
from seqlab.decode.beam import beam_search
from seqlab.decode.sampling import generate
from seqlab.models.body import body_options, build_recurrent, init_recurrent_weights, run_recurrent, state_from_hidden
from seqlab.registry import register
from seqlab.training.runs import load_trained
from seqlab.training.task import Opened
from seqlab.tasks.base import BATCHING_OPTIONS, ExampleTask, batched, encode_words, label_vocab, word_vocab, words
from seqlab.tasks.classify import labelled_rows

CONDITIONING = ("init", "input", "both")


class ConditionalLM(nn.Module):
    def __init__(self, cfg: Config, vocab_size: int, classes: int):
        super().__init__()
        m = cfg.model
        self.how, self.cell_cfg, self.layers = cfg.task.condition, m, m.num_layers
        self.condition = nn.Embedding(classes, m.embedding_size)
        self.embedding = nn.Embedding(vocab_size, m.embedding_size, padding_idx=PAD)
        size_in = m.embedding_size * (2 if self.how in ("input", "both") else 1)
        self.rnn = build_recurrent(m, size_in)                                      # models/body.py
        init_recurrent_weights(self.rnn, m)
        self.to_state = nn.Linear(m.embedding_size, m.num_layers * m.hidden_size)
        self.dropout = nn.Dropout(m.dropout)
        self.head = nn.Linear(m.hidden_size, vocab_size)
        self.hidden_size = m.hidden_size

    def initial_state(self, label: Tensor):
        # label (B,) -> the (B, L, H) state, or a pair for the LSTM (the cell starts at 0)
        B = label.size(0)
        if self.how in ("init", "both"):
            h = torch.tanh(self.to_state(self.condition(label)))                      # (B, L*H)
            h = h.view(B, self.layers, self.hidden_size)                               # (B, L, H)
        else:
            h = self.head.weight.new_zeros(B, self.layers, self.hidden_size)
        return state_from_hidden(self.cell_cfg, h)

    def forward(self, x: Tensor, label: Tensor, state=None) -> tuple[Tensor, object]:
        # x (B, T) word ids, label (B,) -> logits (B, T, V), state
        if state is None:
            state = self.initial_state(label)
        inputs = self.dropout(self.embedding(x))                                       # (B, T, E)
        if self.how in ("input", "both"):
            c = self.condition(label)[:, None, :].expand(-1, x.size(1), -1)            # (B, T, E)
            inputs = torch.cat([inputs, c], dim=-1)                                    # (B, T, 2E)
        out, state = run_recurrent(self.rnn, inputs, state)                            # (B, T, H)
        return self.head(self.dropout(out)), state


class Conditioned(nn.Module):
    """A ConditionalLM with its label fixed: the plain LM protocol, so the decoders reuse it."""

    def __init__(self, model: ConditionalLM, label: int):
        super().__init__()
        self.model, self.label = model, label

    def _labels(self, batch_size: int) -> Tensor:
        return torch.full((batch_size,), self.label, dtype=torch.long, device=self.model.head.weight.device)

    def init_state(self, batch_size: int):
        return None

    def forward(self, x: Tensor, state=None):
        return self.model(x, self._labels(x.size(0)), state)          # states batch first, as the decoders keep them

    def step(self, x_t: Tensor, state):
        logits, state = self.forward(x_t[:, None], state)
        return logits[:, 0], state


@register("task", "conditional")
class ConditionalTask(ExampleTask):
    name = "conditional"
    offers = ("sample", "stream")

    @classmethod
    def open_run(cls, path, device_name: str, checkpoint: str | None = None) -> Opened:
        cfg, task, model, device = load_trained(path, device_name, checkpoint)
        # its sentences are words: run.vocab and run.level are the task's vocabulary's
        return Opened(cfg, model, device, task=task, vocab=task.vocab, meta=task.meta())
    task_options = ("condition", "lowercase") + BATCHING_OPTIONS
    models = ("rnn", "lstm", "gru")
    model_options = {"*": lambda c: tuple(dict.fromkeys(body_options(c.model) + ("embedding_size", "dropout")))}
    datasets = ("sentiment",)

    def __init__(self, cfg: Config):
        super().__init__(cfg)
        self.vocab = Vocab([], "word")
        self.labels: list[str] = []

    @classmethod
    def validate(cls, cfg: Config) -> None:
        super().validate(cfg)
        if cfg.task.condition not in CONDITIONING:
            raise SeqlabError(f"task.condition must be one of {', '.join(CONDITIONING)}; got {cfg.task.condition!r}")

    def prepare(self, log: Callable[[str], None] = print) -> None:
        d = self.cfg.data
        self.source, rows = labelled_rows(self.cfg)
        self.split([(words(text, self.cfg.task.lowercase), label) for label, text in rows])
        train = self.splits["train"]
        self.vocab = word_vocab((w for w, _ in train), d.max_vocab, d.min_count)
        self.labels = label_vocab(label for _, label in train)
        index = {label: i for i, label in enumerate(self.labels)}
        for name, part in self.splits.items():
            self.splits[name] = [(encode_words(self.vocab, w), index[label]) for w, label in part if label in index]

    def describe(self) -> str:
        return f"{super().describe()}, {len(self.vocab):,} words, conditioned on {', '.join(self.labels)}"

    def meta(self) -> dict[str, Any]:
        return {"vocab": self.vocab.itos[4:], "labels": self.labels}

    def load_meta(self, meta: dict[str, Any]) -> None:
        self.vocab, self.labels = Vocab(meta["vocab"], "word"), list(meta["labels"])

    def build_model(self) -> nn.Module:
        return ConditionalLM(self.cfg, len(self.vocab), len(self.labels))

    def lengths(self, examples: Sequence) -> tuple[list[int], None]:
        return [len(e[0]) + 1 for e in examples], None

    def collate(self, examples: Sequence, device: torch.device) -> dict[str, Tensor]:
        x, _ = pad([[BOS, *e[0]] for e in examples])                                 # (B, T+1)
        y, _ = pad([[*e[0], EOS] for e in examples])                                 # (B, T+1)
        label = torch.tensor([e[1] for e in examples], dtype=torch.long)
        return {"x": x.to(device), "y": y.to(device), "label": label.to(device)}

    def loss(self, model: nn.Module, batch: dict[str, Tensor], step: int) -> tuple[Tensor, int]:
        logits, _ = model(batch["x"], batch["label"])                                  # (B, T, V)
        loss = F.cross_entropy(logits.flatten(0, 1), batch["y"].flatten(), ignore_index=PAD)
        return loss, int((batch["y"] != PAD).sum())

    def evaluate(self, model: nn.Module, examples: Sequence, device: torch.device,
                 final: bool = False) -> dict[str, float]:
        """Per-word loss with the true label, and how often the true label explains the
        sentence better than the other labels (the model used as a classifier by Bayes' rule
        with a uniform prior)."""
        nll = count = right = 0.0
        for part in batched(list(examples), 128):
            batch = self.collate(part, device)
            real = batch["y"] != PAD                                                    # (B, T)
            per_label = []
            for c in range(len(self.labels)):
                logits, _ = model(batch["x"], torch.full_like(batch["label"], c))
                token_nll = F.cross_entropy(logits.transpose(1, 2), batch["y"], reduction="none")   # (B, T)
                per_label.append((token_nll * real).sum(1))                            # (B,)
            per_label = torch.stack(per_label, 1)                                       # (B, C)
            nll += float(per_label.gather(1, batch["label"][:, None]).sum())
            count += int(real.sum())
            right += int((per_label.argmin(1) == batch["label"]).sum())
        return {"loss": nll / max(count, 1), "label_accuracy": right / max(len(examples), 1)}

    # -- what a trained run offers (seqlab.Run.sample / stream) -------------------------------

    def stream_sample(self, model: nn.Module, prime: str | None, length: int, temperature: float, top_k: int,
                      top_p: float, greedy: bool, beam: int, alpha: float, generator, condition: str | None,
                      name: Callable[[str], str], allow_unk: bool = False) -> Iterator[str]:
        """The words of a sentence of class `condition` that follow the prime's words."""
        if condition not in self.labels:
            raise SeqlabError(f"{name('condition')} must be one of {', '.join(self.labels)}; got {condition!r}")
        lm = Conditioned(model, self.labels.index(condition)).eval()
        prime_ids = [BOS] + ([self.vocab.stoi.get(w, UNK) for w in prime.split()] if prime else [])
        banned = (PAD, BOS) if allow_unk else (PAD, UNK, BOS)
        if beam:
            ids = beam_search(lm, prime_ids, length, beam, alpha=alpha, banned=banned, eos_id=EOS)[0].tokens
        else:
            ids = []
            for token in generate(lm, prime_ids, length, greedy=greedy, temperature=temperature, top_k=top_k,
                                  top_p=top_p, banned=banned, generator=generator):
                if token == EOS:
                    break
                ids.append(token)
        yield " ".join(self.vocab.itos[i] for i in ids if i != EOS)
