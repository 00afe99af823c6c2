"""What predicts the next byte of each of B streams, for the coder.

Every predictor answers `reset(B)`, `probs()` -> (B, 256) float64 (the next byte of each
stream), `advance(bytes (B,), live (B,))` (the bytes just coded; `live` marks the streams that
had one), and `learn(chunk (B, K), lengths)`
(after each chunk: an adaptive model learns from it; a static one does nothing). The
encoder and the decoder drive the same calls in the same order, so they see the same
probabilities. Byte b is token id 4 + b in a byte-level vocabulary (data/vocab.py).

    StaticPredictor     a trained byte-level run (`seqlab train data.level=byte`), unchanged
    NGramPredictor      an n-gram model (models/ngram.py) refitted on everything coded so far,
                        each time the coded data has grown by a quarter
    LSTMPredictor       an LSTM that starts from a fixed seed and takes one Adam step on each
                        chunk as soon as it is coded (NNCP-style: no model is stored)
    MixPredictor        (mixing.py) any of these with a match model, mixed by weights learned
                        online (cmix-style)
"""
from __future__ import annotations

import math

import numpy as np
import torch
import torch.nn.functional as F

from seqlab import SeqlabError
from seqlab.compress.mixing import MixPredictor
from seqlab.config import ModelConfig, TrainConfig
from seqlab.models import build_model
from seqlab.models.ngram import MAX_ORDER, SMOOTHINGS, NGramLM
from seqlab.tokens import SPECIALS
from seqlab.training.optim import make_optimizer

OFFSET = len(SPECIALS)                   # byte b is token OFFSET + b
VOCAB = OFFSET + 256
NEWLINE = OFFSET + ord("\n")             # what every stream starts after, as Run.score does


class StaticPredictor:
    """A trained model, stepped over the B streams; it never changes."""

    def __init__(self, model: torch.nn.Module, description: dict):
        self.model, self.description = model.eval(), description

    def reset(self, streams: int) -> None:
        self.state = self.model.init_state(streams)
        self._step(torch.full((streams,), NEWLINE, dtype=torch.long))

    @torch.no_grad()
    def _step(self, tokens: torch.Tensor) -> None:
        logits, self.state = self.model.step(tokens, self.state)                        # (B, V)
        self._probs = torch.softmax(logits[:, OFFSET:OFFSET + 256].double(), -1).numpy()

    def probs(self) -> np.ndarray:
        return self._probs

    def advance(self, symbols: np.ndarray, live: np.ndarray) -> None:
        self._step(torch.as_tensor(symbols, dtype=torch.long) + OFFSET)

    def learn(self, chunk: np.ndarray, lengths: np.ndarray) -> None:
        pass


class LSTMPredictor(StaticPredictor):
    """An LSTM language model over bytes that learns online: after each coded chunk, one Adam
    step (clipped at norm 1) on that chunk, back-propagated through it from the state the
    chunk started in."""

    def __init__(self, hidden: int = 256, layers: int = 1, lr: float = 3e-3, seed: int = 0):
        torch.manual_seed(seed)
        cfg = ModelConfig(name="lstm", hidden_size=hidden, num_layers=layers, embedding_size=32, dropout=0.0)
        super().__init__(build_model(cfg, VOCAB), {"family": "lstm", "hidden": hidden, "layers": layers, "lr": lr,
                                                   "seed": seed, "optimizer": "adam", "clip": 1.0})
        self.optimizer = make_optimizer(self.model, TrainConfig(lr=lr, optimizer="adam"))

    def reset(self, streams: int) -> None:
        super().reset(streams)
        self.train_state = self.model.init_state(streams)
        self.last = torch.full((streams,), NEWLINE, dtype=torch.long)      # the input before the chunk

    def learn(self, chunk: np.ndarray, lengths: np.ndarray) -> None:
        tokens = torch.as_tensor(chunk, dtype=torch.long) + OFFSET                      # (B, K)
        inputs = torch.cat([self.last[:, None], tokens[:, :-1]], 1)                    # (B, K)
        live = torch.as_tensor(np.asarray(lengths)[:, None] > 0) & torch.ones_like(tokens, dtype=torch.bool)
        live &= torch.as_tensor(chunk >= 0)
        self.model.train()
        logits, state = self.model(inputs, self.train_state)                           # (B, K, V)
        loss = F.cross_entropy(logits[live], tokens[live]) if live.any() else logits.sum() * 0
        self.optimizer.zero_grad(set_to_none=True)
        loss.backward()
        torch.nn.utils.clip_grad_norm_(self.model.parameters(), 1.0)
        self.optimizer.step()
        self.model.eval()
        self.train_state = tuple(s.detach() for s in state) if isinstance(state, tuple) else state.detach()
        self.last = tokens[:, -1]


class NGramPredictor:
    """An n-gram model of the bytes coded so far, refitted whenever they have grown by a
    quarter (from 256 bytes on): before the first fit, every byte is equally likely."""

    def __init__(self, order: int = 6, smoothing: str = "kneser_ney"):
        self.order, self.smoothing = order, smoothing
        self.description = {"family": "ngram", "order": order, "smoothing": smoothing, "refit": "x1.25"}

    def reset(self, streams: int) -> None:
        self.seen = [[] for _ in range(streams)]                      # per stream, its coded chunks
        self.context = np.full((streams, max(self.order - 1, 0)), 2, np.int64)   # <bos> ids
        self.model, self.fitted_on, self.total = None, 0, 0

    def probs(self) -> np.ndarray:
        if self.model is None:
            return np.full((self.context.shape[0], 256), 1 / 256)
        return self.model.next_probabilities(self.context)[:, OFFSET:]

    def advance(self, symbols: np.ndarray, live: np.ndarray) -> None:
        if self.context.shape[1]:
            self.context = np.concatenate([self.context[:, 1:], np.asarray(symbols, np.int64)[:, None] + OFFSET], 1)

    def learn(self, chunk: np.ndarray, lengths: np.ndarray) -> None:
        for b, row in enumerate(chunk):
            part = row[row >= 0]
            if part.size:
                self.seen[b].append(part.astype(np.int64) + OFFSET)
                self.total += part.size
        if self.total >= max(256, int(self.fitted_on * 1.25)):
            stream = np.concatenate([np.concatenate(parts) for parts in self.seen if parts])
            cfg = ModelConfig(name="ngram", order=self.order, smoothing=self.smoothing)
            self.model, self.fitted_on = NGramLM(cfg, VOCAB).fit(stream), self.total


ADAPTIVE = ("ngram", "lstm", "mix", "mix-lstm")
MIX_ORDER = 8                  # the n-gram's order inside a mix (alone: 6, where its refits cost less)
MIX_HIDDEN = 128               # the LSTM's size inside a mix: 256 codes ~0.3 % smaller and takes 1.3x as long
# (streams, chunk) by mode: an LSTM alone needs many small updates to learn; in a mix the
# n-gram carries the start, and more streams make each step's batch worth its overhead
LAYOUT = {"ngram": (256, 64), "mix": (256, 64), "lstm": (32, 16), "mix-lstm": (128, 16)}


def adaptive(name: str, **options):
    """The adaptive predictor called `name`, with its options (from a header: its description).
    mix: an n-gram and the match model, mixed (mixing.py); mix-lstm: an LSTM mixed in too."""
    if name == "ngram":
        return NGramPredictor(int(options.get("order", 6)), str(options.get("smoothing", "kneser_ney")))
    if name == "lstm":
        return LSTMPredictor(int(options.get("hidden", 256)), int(options.get("layers", 1)),
                             float(options.get("lr", 3e-3)), int(options.get("seed", 0)))
    if name in ("mix", "mix-lstm"):
        parts = options.get("parts")
        if parts is None:            # the command line's choice: the n-gram (and the LSTM) with its options
            parts = [{"family": "ngram", "order": options.get("order", MIX_ORDER)}]
            if name == "mix-lstm":
                parts.append({"family": "lstm", "hidden": options.get("hidden", MIX_HIDDEN)})
        if not parts or any(p.get("family") not in ("ngram", "lstm") for p in parts):
            raise SeqlabError(f"a mix is made of ngram and lstm parts; got {parts!r}")
        built = [adaptive(str(p["family"]), **{k: v for k, v in p.items() if k != "family"}) for p in parts]
        return MixPredictor(built, int(options.get("min_len", 10)), float(options.get("rate", 0.001)))
    raise SeqlabError(f"unknown adaptive model {name!r}; one of {', '.join(ADAPTIVE)}")


MAX_HIDDEN, MAX_LAYERS, MAX_PARTS, MAX_MIN_LEN = 4096, 8, 4, 256


def _whole(d: dict, key: str, low: int, high: int, default=None) -> None:
    value = d.get(key, default)
    if isinstance(value, bool) or not isinstance(value, int) or not low <= value <= high:
        raise SeqlabError(f"the model's {key} is {value!r}, not a whole number in [{low:,}, {high:,}]")


def _rate(d: dict, key: str, default: float) -> None:
    value = d.get(key, default)
    if isinstance(value, bool) or not isinstance(value, (int, float)) or not (math.isfinite(value) and 0 < value <= 1):
        raise SeqlabError(f"the model's {key} is {value!r}, not a number in (0, 1]")


def check_description(description, top: bool = True) -> None:
    """Refuse, before anything is built, a model description (from a .sqz header) whose family,
    sizes or rates are outside what seqlab compress makes."""
    if not isinstance(description, dict):
        raise SeqlabError(f"the model description is {type(description).__name__}, not an object")
    family = description.get("family")
    if family == "ngram":
        _whole(description, "order", 1, MAX_ORDER, 6)
        if description.get("smoothing", "kneser_ney") not in SMOOTHINGS:
            raise SeqlabError(f"the model's smoothing is {description.get('smoothing')!r}, not one of {', '.join(SMOOTHINGS)}")
    elif family == "lstm":
        _whole(description, "hidden", 1, MAX_HIDDEN, 256)
        _whole(description, "layers", 1, MAX_LAYERS, 1)
        _whole(description, "seed", 0, 2 ** 63 - 1, 0)
        _rate(description, "lr", 3e-3)
    elif family == "mix" and top:
        parts = description.get("parts")
        if not isinstance(parts, list) or not 1 <= len(parts) <= MAX_PARTS:
            raise SeqlabError(f"a mix has 1 to {MAX_PARTS} parts; its description gives {parts!r:.60}")
        for part in parts:
            check_description(part, top=False)
        _whole(description, "min_len", 1, MAX_MIN_LEN, 10)
        _rate(description, "rate", 0.001)
    else:
        raise SeqlabError(f"the model family {family!r} is not one seqlab compress codes with")


def from_description(description: dict):
    """The adaptive predictor a header's model description names (decompression rebuilds it so),
    once its every field is checked."""
    check_description(description)
    return adaptive(str(description.get("family")), **{k: v for k, v in description.items() if k != "family"})
