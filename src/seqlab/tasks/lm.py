"""Next-token prediction (`task.name=lm`, the default): a language model on one token stream.

The corpus is one stream cut into train | valid | test (data/text.py). For training the
stream is cut into train.batch_size parallel rows; an epoch is the row's TBPTT windows
(tasks/tbptt.py: every k1 = train.bptt_stride new tokens, back-propagate through k2 =
train.bptt_steps), and the hidden state is carried from one window to the next, so this is
the one task whose batches continue each other. Under torchrun rank r of W takes rows
[r B/W, (r+1) B/W). Validation carries the state across chunks the same way, on the first
train.eval_tokens validation tokens (all when 0); the report at the end scores the best
weights on all of them.

Every model family (models/) is a language model: recurrent, convolutional, fixed-window,
and the count-based n-gram and HMM, fitted by counting in one pass.
"""
from __future__ import annotations

import json
import time
from pathlib import Path
from typing import Any, Callable

import numpy as np
import torch
from torch import Tensor, nn

from seqlab import SeqlabError
from seqlab.config import Config, TrainConfig
from seqlab.data.text import Splits, batchify, batchify_view, load_splits
from seqlab.data.vocab import Vocab
from seqlab.models import build_model
from seqlab.models.base import reset_rows
from seqlab.registry import get, register
from seqlab.tasks.tbptt import BITS_KEY, Window, evaluate, summary, tbptt_windows, train_step
from seqlab.training.checkpoint import BEST, METRICS
from seqlab.training.task import STREAM_OPTIONS, Opened, Task, row_slices, take_rows

LARGE_VOCAB = 20_000          # words: above this the output layer is most of an update's cost
# what a model fitted by counting (n-gram, HMM) uses of train.*: its evaluation in chunks
COUNTING_USES = ("bptt_steps", "eval_batch_size", "device", "threads", "progress")


@register("task", "lm")
class LanguageModelTask(Task):
    name = "lm"
    offers = ("sample", "stream", "tunes", "batch sampling", "score", "export")
    datasets = ()                                    # any corpus of `seqlab data list`
    train_options = STREAM_OPTIONS + ("init_from",)
    data_options = ("lowercase",)
    unit, rate = "tokens", "tok_per_s"
    resume_fixed = ("data.", "model.", "task.", "train.batch_size", "train.bptt")

    def __init__(self, cfg: Config):
        super().__init__(cfg)
        self.data: Tensor | np.ndarray | None = None
        self.windows: tbptt_windows | None = None
        self.level = cfg.data.level
        self.key = BITS_KEY.get(self.level, "bits_per_token")

    @classmethod
    def open_run(cls, path, device_name: str, checkpoint: str | None = None) -> Opened:
        from seqlab.training.runs import load_run
        cfg, vocab, model, device = load_run(str(path), device_name, checkpoint=checkpoint)
        return Opened(cfg, model, device, vocab=vocab)

    @classmethod
    def evaluate_run(cls, path, opened: Opened, split: str, log, streams: int | None = None) -> dict[str, Any]:
        """The split scored in `streams` parallel streams (32 unless given), as in training."""
        splits = load_splits(opened.cfg.data, log=log)
        if splits.vocab != opened.vocab:
            raise SeqlabError(f"the corpus has changed since {path} was trained (its vocabulary differs)")
        ids, what = splits.get(split), f"{split} split of {splits.source}"
        if len(ids) < 2:
            raise SeqlabError(f"{what} has {len(ids)} tokens; need at least 2 to score")
        nats, count = evaluate(opened.model, ids, streams or 32, opened.cfg.train.bptt_steps, opened.device)
        return {"data": what, "tokens": count, **summary(nats, opened.cfg.data.level)}

    @classmethod
    def validate(cls, cfg: Config) -> None:
        get("model", cfg.model.name)      # every family is a language model; an unknown name lists them

    @classmethod
    def honoured(cls, cfg: Config) -> dict[str, set[str]]:
        honoured = super().honoured(cfg)
        if getattr(get("model", cfg.model.name), "fitted_by_counting", False):   # no optimiser, no updates
            honoured["train"] = set(COUNTING_USES)
        return honoured

    # -- data ---------------------------------------------------------------------------------

    def prepare(self, log: Callable[[str], None] = print) -> None:
        self.stream: Splits = load_splits(self.cfg.data, log=log)
        if self.cfg.train.init_from:
            self.stream = in_vocabulary_of(self.stream, self.cfg.train.init_from, self.cfg.data, log)
        self.source = self.stream.source
        t = self.cfg.train
        if len(self.stream.train) < t.batch_size * 2:
            raise SeqlabError(
                f"the training split has {len(self.stream.train):,} tokens, fewer than train.batch_size × 2 = "
                f"{t.batch_size * 2}; use more text or a smaller train.batch_size")
        if len(self.stream.valid) < 2:
            raise SeqlabError(f"the validation split has {len(self.stream.valid)} tokens; use more text or a "
                              f"larger data.valid_fraction")
        if self.level == "word" and len(self.stream.vocab) > LARGE_VOCAB and not self.cfg.data.max_vocab:
            log(vocabulary_cost(self.stream, self.cfg))

    def run_vocab(self) -> Vocab:
        return self.stream.vocab

    def describe(self) -> str:
        s = self.stream
        return (f"{s.source}: train {len(s.train):,} / valid {len(s.valid):,} / test {len(s.test):,} tokens, "
                f"vocabulary {len(s.vocab)}")

    # -- model ----------------------------------------------------------------------------------

    def build_model(self) -> nn.Module:
        return build_model(self.cfg.model, len(self.stream.vocab))

    def fit_counts(self, model: nn.Module, run, log: Callable[[str], None]) -> dict[str, float]:
        started = time.perf_counter()
        model.fit(self.stream.train)
        seconds = time.perf_counter() - started
        run.save_arrays(BEST, model.state_arrays(), {"step": 0, "fit_seconds": seconds})
        t = self.cfg.train
        nats, count = evaluate(model, self.stream.valid, t.eval_batch_size, t.bptt_steps, torch.device("cpu"))
        result = summary(nats, self.level)
        with open(run.file(METRICS), "a", encoding="utf-8") as f:
            f.write(json.dumps({"step": 0, "split": "valid", **result, "fit_seconds": seconds, "tokens": count}) + "\n")
        log(f"{self.cfg.model.name} fitted to {len(self.stream.train):,} tokens in {seconds:.1f} s; all {count:,} "
            f"validation tokens: loss {nats:.4f} nats | ppl {result['ppl']:.3f} | {self.key} {result[self.key]:.4f}")
        return result

    # -- what the engine drives -----------------------------------------------------------------

    def setup_training(self, world, device: torch.device) -> None:
        super().setup_training(world, device)
        t = self.cfg.train
        rows = world.rows(t.batch_size)
        self.rows, self.row_slice = t.batch_size // world.size, rows
        train = self.stream.train
        if isinstance(train, np.ndarray) and train.dtype != np.int64:
            self.data = batchify_view(train, t.batch_size)[rows]                 # (B/W, N), on disk
        else:
            self.data = batchify(train, t.batch_size)[rows].to(device)           # (B/W, N)
        self.windows = tbptt_windows(self.data.shape[1], t.bptt_stride or t.bptt_steps, t.bptt_steps)
        self.device = device

    def epoch_length(self, epoch: int) -> int:
        assert self.windows is not None
        return len(self.windows)

    def train_batch(self, epoch: int, index: int, device: torch.device) -> Window:
        assert self.windows is not None
        return self.windows[index]

    def start_carry(self, model: nn.Module) -> Any:
        return model.init_state(self.rows)

    def train_loss(self, model: nn.Module, batch: Window | tuple[Window, slice], step: int, carry: Any):
        window, part = batch if isinstance(batch, tuple) else (batch, slice(None))
        carry = self.reset_some(model, step, carry, part)
        data = self.data if part == slice(None) else self.data[part]
        loss, next_carry, n = train_step(model, data, window, carry, self.device)
        return loss, n, next_carry

    def split_batch(self, batch: Window, carry: Any, parts: int) -> list[tuple[Any, Any]]:
        """train.grad_accum: the window over consecutive rows of this rank's streams."""
        return [((batch, cut), take_rows(carry, cut, self.rows)) for cut in row_slices(self.rows, parts)]

    def reset_some(self, model: nn.Module, step: int, carry: Any, part: slice = slice(None)) -> Any:
        """train.state_resets: each stream's carried state is replaced by the initial state with
        this probability at each update. With carried state alone (TBPTT) a model meets the
        initial state once an epoch, so it never learns to start from it, and sampling or scoring
        from a fresh state (what `sample --prime` does) begins with garbage. Drawn from (seed,
        update) over all B streams, then this rank's rows: resume and DDP draw the same."""
        p = self.cfg.train.state_resets
        if not p or carry is None:
            return carry
        generator = torch.Generator().manual_seed(self.cfg.train.seed * 1_000_003 + step)
        rows = (torch.rand(self.cfg.train.batch_size, generator=generator) < p)[self.row_slice][part]
        if not rows.any():
            return carry
        bare = getattr(model, "module", model)                 # under DDP, the wrapped model
        return reset_rows(carry, bare.init_state(len(rows)), rows)

    def train_summary(self, mean_loss: float) -> dict[str, float]:
        return summary(mean_loss, self.level)

    def validation(self, model: nn.Module, device: torch.device) -> dict[str, float]:
        t = self.cfg.train
        nats, _ = evaluate(model, self.stream.valid, t.eval_batch_size, t.bptt_steps, device, t.eval_tokens)
        return summary(nats, self.level)

    def finish(self, run, model: nn.Module, device: torch.device, log: Callable[[str], None],
               best_step: Any) -> dict[str, float]:
        t = self.cfg.train
        nats, count = evaluate(model, self.stream.valid, t.eval_batch_size, t.bptt_steps, device)
        result = summary(nats, self.level)
        log(f"best model (update {best_step}) on all {count:,} validation tokens: "
            f"loss {nats:.4f} nats | ppl {result['ppl']:.3f} | {self.key} {result[self.key]:.4f}")
        return result


def in_vocabulary_of(stream: Splits, path: str, data, log: Callable[[str], None]) -> Splits:
    """The splits re-encoded in the vocabulary of the run at `path` (train.init_from), its tokens
    that run never saw read as <unk>, with how many said in one line."""
    from seqlab.training.checkpoint import RunDir
    from seqlab.data.vocab import UNK
    theirs = RunDir(Path(path)).require().vocab()
    if theirs.level != stream.vocab.level:
        raise SeqlabError(f"train.init_from={path} is a {theirs.level}-level model; this run reads data.level="
                          f"{stream.vocab.level}; set data.level={theirs.level}")
    if data.memmap:
        raise SeqlabError("train.init_from re-encodes the text in that run's vocabulary in memory; drop data.memmap")
    if theirs == stream.vocab:
        return stream
    mapping = np.array([theirs.stoi.get(token, UNK) for token in stream.vocab.itos], dtype=np.int64)
    parts = [mapping[np.asarray(stream.get(s), dtype=np.int64)] for s in ("train", "valid", "test")]
    unknown = sum(int((p == UNK).sum()) for p in parts)
    total = sum(len(p) for p in parts)
    missing = [t for t in stream.vocab.itos if t not in theirs.stoi]
    log(f"init_from {path}: its vocabulary of {len(theirs)} tokens; {unknown:,} of {total:,} tokens "
        f"({unknown / max(total, 1):.2%}) are not in it and read as <unk>"
        + (f" ({', '.join(repr(t) for t in missing[:8])}{' ...' if len(missing) > 8 else ''})" if missing else ""))
    return Splits(theirs, *parts, source=stream.source)


def vocabulary_cost(stream: Splits, cfg: Config) -> str:
    """One line on what a large word vocabulary costs: the output layer's arithmetic per update,
    and how much of the text the 10,000 most frequent words cover (data.max_vocab)."""
    V, t, m = len(stream.vocab), cfg.train, cfg.model
    flops = 6 * t.batch_size * t.bptt_steps * m.hidden_size * V                 # forward + backward
    counts = np.sort(np.bincount(np.asarray(stream.train, dtype=np.int64), minlength=V))[::-1]
    cover = counts[:10_000].sum() / max(counts.sum(), 1)
    return (f"note: {V:,} words in the vocabulary: the output layer alone is {flops / 1e9:,.0f} GFLOP an update "
            f"(about {flops / 50e9:,.1f} s at the 50 GFLOP/s of two cores); data.max_vocab=10000 keeps the most "
            f"frequent, which cover {cover:.1%} of the training text, the rest read as <unk>")
