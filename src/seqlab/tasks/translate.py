"""Many-to-many, encoder–decoder: translation with attention (models/seq2seq.py).

    seqlab data fetch en-es
    seqlab train --config configs/en-es.toml --out runs/en-es
    seqlab translate runs/en-es --text "In the beginning God created the heaven and the earth." --attention map.png

Data (`data.corpus`): `en-es`, the English–Spanish verse pairs (KJV × Reina-Valera 1909);
`reverse` and `sort`, synthetic pairs of 5–20 symbols over an alphabet of 10 (20,000 pairs,
generated, nothing to fetch); or your own tab-separated file with data.path=FILE, one pair
per line: `SOURCE<TAB>TARGET`.

Training is teacher-forced; with `task.sampling` the decoder is fed its own sampled token
with the scheduled probability (Bengio et al. 2015; training/schedules.py). During training
the validation split is decoded greedily; `seqlab eval` and `seqlab translate` use beam
search (task.beam_size, GNMT length penalty task.length_penalty). BLEU is sacrebleu's
corpus BLEU (Post 2018) over the space-joined tokens (its default 13a tokenisation);
`sequence_accuracy` is the share of outputs equal to the reference.
"""
from __future__ import annotations

from pathlib import Path
from typing import Any, Callable, Sequence

import numpy as np
import torch
from torch import Tensor, nn

from seqlab import SeqlabError
from seqlab.config import Config
from seqlab.data.datasets import dataset
from seqlab.data.sequences import seq2seq_batch as make_batch
from seqlab.data.sources import read_path
from seqlab.data.synthetic import TASKS, symbol_vocab
from seqlab.data.vocab import PAD, Vocab
from seqlab.decode import seq2seq as decode
from seqlab.models.seq2seq import ATTENTIONS, DECODER_CELLS, Seq2Seq, sequence_loss, strip_eos
from seqlab.registry import register
from seqlab.tasks.base import BATCHING_OPTIONS, ExampleTask, batched, encode_words, word_vocab, words
from seqlab.training.schedules import sampling_prob

SYNTHETIC = ("reverse", "sort")
SYNTHETIC_PAIRS = 20000


@register("task", "translate")
class TranslateTask(ExampleTask):
    name = "translate"
    offers = ("translate", "attention")
    task_options = ("attention", "sampling", "sampling_k", "sampling_c", "sampling_min", "beam_size", "length_penalty", "lowercase", "max_length") + BATCHING_OPTIONS
    # what the encoder and the decoder's cells both honour (the decoder steps plain nn.*Cell modules)
    model_options = {name: ("embedding_size", "hidden_size", "num_layers", "dropout", "impl")
                     + {"lstm": ("forget_bias",), "rnn": ("nonlinearity",)}.get(name, ()) for name in DECODER_CELLS}
    models = DECODER_CELLS
    datasets = ("en-es",) + SYNTHETIC
    higher_is_better = True

    def __init__(self, cfg: Config):
        super().__init__(cfg)
        self.metric = "sequence_accuracy" if cfg.data.corpus in SYNTHETIC and not cfg.data.path else "bleu"
        self.src_vocab = Vocab([], "word")
        self.tgt_vocab = Vocab([], "word")

    @classmethod
    def validate(cls, cfg: Config) -> None:
        super().validate(cfg)
        t = cfg.task
        if t.attention not in ATTENTIONS:
            raise SeqlabError(f"task.attention must be one of {', '.join(ATTENTIONS)}; got {t.attention!r}")
        if cfg.model.hidden_size % 2:
            raise SeqlabError(f"translate: model.hidden_size must be even (each encoder direction has half); "
                              f"got {cfg.model.hidden_size}")
        if t.beam_size < 1:
            raise SeqlabError(f"task.beam_size must be 1 or more, got {t.beam_size}")
        if t.sampling not in ("none", "linear", "exponential", "inverse_sigmoid"):
            raise SeqlabError(f"task.sampling must be none, linear, exponential or inverse_sigmoid; got {t.sampling!r}")
        if t.sampling == "none":
            unused = [f"task.{k}={getattr(t, k)}" for k in ("sampling_k", "sampling_c", "sampling_min") if getattr(t, k)]
            if unused:
                raise SeqlabError(f"{', '.join(unused)} shape scheduled sampling, which is off (task.sampling=none); "
                                  f"set task.sampling=linear, exponential or inverse_sigmoid, or remove them")
        if t.sampling == "linear" and not t.sampling_c and not cfg.train.max_steps:
            raise SeqlabError("task.sampling=linear needs task.sampling_c (decrease per update) or train.max_steps "
                              "(reach the floor task.sampling_min there)")
        sampling_prob(t.sampling, 0, t.sampling_min, **_schedule_params(cfg))   # reject bad k / c now

    # -- data ---------------------------------------------------------------------------------

    def read(self) -> list[tuple[list[str], list[str]]]:
        d, lower = self.cfg.data, self.cfg.task.lowercase
        if d.path:
            self.source = Path(d.path).name
            return [(words(s, lower), words(t, lower)) for s, t in read_pairs(Path(d.path))]
        self.source = d.corpus
        if d.corpus in SYNTHETIC:
            names = symbol_vocab(10).itos
            return [([names[i] for i in s], [names[i] for i in t]) for s, t in TASKS[d.corpus](SYNTHETIC_PAIRS, seed=0)]
        return [(words(s, lower), words(t, lower)) for s, t in dataset(d.corpus).load()]

    def prepare(self, log: Callable[[str], None] = print) -> None:
        pairs = [(s, t) for s, t in self.read() if s and t]
        self.split(pairs)
        d = self.cfg.data
        train = self.splits["train"]
        limit = self.cfg.task.max_length
        if limit:
            train = [(s, t) for s, t in train if len(s) <= limit and len(t) <= limit]
        self.src_vocab = word_vocab((s for s, _ in train), d.max_vocab, d.min_count)
        self.tgt_vocab = word_vocab((t for _, t in train), d.max_vocab, d.min_count)
        self.splits["train"] = train
        for name, part in self.splits.items():
            self.splits[name] = [(encode_words(self.src_vocab, s), encode_words(self.tgt_vocab, t), i)
                                 for i, (s, t) in enumerate(part)]

    def lengths(self, examples: Sequence) -> tuple[list[int], list[int]]:
        return [len(e[0]) for e in examples], [len(e[1]) + 1 for e in examples]

    def describe(self) -> str:
        return (f"{super().describe()}, vocabularies {len(self.src_vocab):,} (source) / {len(self.tgt_vocab):,} (target), "
                f"attention {self.cfg.task.attention}")

    def meta(self) -> dict[str, Any]:
        return {"source_vocab": self.src_vocab.itos[4:], "target_vocab": self.tgt_vocab.itos[4:]}

    def load_meta(self, meta: dict[str, Any]) -> None:
        self.src_vocab = Vocab(meta["source_vocab"], "word")
        self.tgt_vocab = Vocab(meta["target_vocab"], "word")

    # -- model, loss, metrics ------------------------------------------------------------

    def build_model(self) -> nn.Module:
        return Seq2Seq(self.cfg.model, len(self.src_vocab), len(self.tgt_vocab), attention=self.cfg.task.attention)

    def collate(self, examples: Sequence, device: torch.device) -> dict[str, Tensor]:
        src, src_lengths, tgt_in, tgt_out = make_batch([(e[0], e[1]) for e in examples], device)
        return {"src": src, "src_lengths": src_lengths, "tgt_in": tgt_in, "tgt_out": tgt_out}

    def loss(self, model: nn.Module, batch: dict[str, Tensor], step: int) -> tuple[Tensor, int]:
        t = self.cfg.task
        p = sampling_prob(t.sampling, step, t.sampling_min, **_schedule_params(self.cfg))
        logits, _ = model(batch["src"], batch["src_lengths"], batch["tgt_in"], sampling_prob=p)   # (B, U, V)
        return sequence_loss(logits, batch["tgt_out"]), int((batch["tgt_out"] != PAD).sum())

    def translate(self, model: nn.Module, sources: Sequence[list[int]], device: torch.device,
                  beam: int = 1, alpha: float = 0.6, max_len: int = 0) -> list[list[int]]:
        """Token ids of each source's translation (without <eos>)."""
        out = []
        for part in batched(list(sources), 64):
            src, lengths, _, _ = make_batch([(s or [PAD], []) for s in part], device)
            limit = max_len or int(lengths.max()) * 2 + 10
            if beam > 1:
                out.extend(strip_eos(h[0].tokens) for h in decode.beam_search(model, src, lengths, beam, limit, alpha))
            else:
                out.extend(strip_eos(ids) for ids in decode.greedy(model, src, lengths, limit))
        return out

    def evaluate(self, model: nn.Module, examples: Sequence, device: torch.device,
                 final: bool = False) -> dict[str, float]:
        nll = count = 0.0
        for part in batched(list(examples), 64):
            batch = self.collate(part, device)
            logits, _ = model(batch["src"], batch["src_lengths"], batch["tgt_in"])
            n = int((batch["tgt_out"] != PAD).sum())
            nll += float(sequence_loss(logits, batch["tgt_out"])) * n
            count += n
        beam = self.cfg.task.beam_size if final else 1
        hyps = self.translate(model, [e[0] for e in examples], device, beam, self.cfg.task.length_penalty)
        exact = float(np.mean([h == e[1] for h, e in zip(hyps, examples)])) if examples else 0.0
        right = sum(sum(a == b for a, b in zip(h, e[1])) for h, e in zip(hyps, examples))   # position by position
        return {"loss": nll / max(count, 1), "bleu": bleu([self.tgt_vocab.decode(h) for h in hyps],
                                                         [self.tgt_vocab.decode(e[1]) for e in examples]),
                "sequence_accuracy": exact, "token_accuracy": right / max(sum(len(e[1]) for e in examples), 1)}

    def encode_text(self, text: str) -> list[int]:
        return encode_words(self.src_vocab, words(text, self.cfg.task.lowercase)) or [PAD]

    def unknown_words(self, text: str) -> list[str]:
        """The source words of `text` the training split never had: read as <unk>."""
        return [w for w in words(text, self.cfg.task.lowercase) if w not in self.src_vocab.stoi]


def bleu(hypotheses: list[str], references: list[str], max_order: int = 4) -> float:
    """sacrebleu's corpus BLEU (0-100) with one reference per sentence, n-grams up to max_order
    (BLEU-4 by default; BLEU-1..3 as captioning papers report them)."""
    try:
        import sacrebleu         # optional outside `make venv`: only BLEU needs it, and says how to install it
    except ImportError:
        raise SeqlabError("BLEU needs sacrebleu: pip install sacrebleu==2.6.0 (make venv installs it)") from None
    metric = sacrebleu.metrics.BLEU(force=True, max_ngram_order=max_order)       # our own tokens, knowingly
    return float(metric.corpus_score(hypotheses, [references]).score)


def _schedule_params(cfg: Config) -> dict[str, float]:
    """task.sampling_* -> the keyword arguments of training/schedules.py (0 = the default)."""
    t = cfg.task
    if t.sampling == "linear":
        c = t.sampling_c or (1.0 - t.sampling_min) / max(cfg.train.max_steps, 1)
        return {"k": t.sampling_k or 1.0, "c": c}
    if t.sampling == "exponential":
        return {"k": t.sampling_k or 0.9995}
    if t.sampling == "inverse_sigmoid":
        return {"k": t.sampling_k or 500.0}
    return {}


def read_pairs(path: Path) -> list[tuple[str, str]]:
    pairs = []
    for n, line in enumerate(read_path(path).splitlines(), 1):
        if not line.strip():
            continue
        source, sep, target = line.partition("\t")
        if not sep or not source.strip() or not target.strip():
            raise SeqlabError(f"{path}:{n}: expected SOURCE<TAB>TARGET, got {line[:60]!r}")
        pairs.append((source, target))
    return pairs
