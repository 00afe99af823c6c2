"""Checking a config's values: what no run could use, refused with what to do instead.

Typed values are config.py's; the ranges and combinations that are no one family's or task's
are judged here. Each model family judges its own options (its class's `check`, models/),
each task what it honours (training/task.py). It imports nothing
of config.py (the annotations name its classes as text), so config.py can import it.
"""
from __future__ import annotations

from seqlab import SeqlabError
from seqlab.registry import find, get

MAX_LAYERS = 1000     # deeper than any published recurrent or convolutional sequence model


def validate(cfg: Config) -> None:
    """Reject values no run could use, with what to do instead."""
    d, m, t = cfg.data, cfg.model, cfg.train
    get("task", cfg.task.name).validate(cfg)     # the task knows its models and options, before any data is read
    if d.level not in ("char", "word", "byte", "subword"):
        raise SeqlabError(f"data.level must be 'char', 'word', 'subword' or 'byte', got {d.level!r}")
    if d.subword_size != type(d)().subword_size and d.level != "subword":
        raise SeqlabError("data.subword_size applies to data.level=subword; remove it or set data.level=subword")
    if d.level == "subword" and d.memmap:
        raise SeqlabError("data.memmap streams characters and words; data.level=subword reads the text whole "
                          "(drop data.memmap)")
    if d.level == "byte" and d.lowercase:
        raise SeqlabError("data.lowercase applies to text; a byte-level corpus is read as its bytes (drop it)")
    if d.level == "byte" and d.memmap:
        raise SeqlabError("data.memmap streams text; a byte-level corpus is read whole (drop data.memmap)")
    family = find("model", m.name)          # a family judges its own options (models/)
    if family is not None and getattr(family, "check", None) is not None:
        family.check(m)
    for key, v in (("data.valid_fraction", d.valid_fraction), ("data.test_fraction", d.test_fraction)):
        if not 0.0 <= v < 0.5:
            raise SeqlabError(f"{key} must be in [0, 0.5), got {v}")
    positive = {
        "model.embedding_size": m.embedding_size, "model.hidden_size": m.hidden_size,
        "model.num_layers": m.num_layers, "train.batch_size": t.batch_size,
        "train.bptt_steps": t.bptt_steps, "train.eval_every": t.eval_every, "train.log_every": t.log_every,
        "train.eval_batch_size": t.eval_batch_size, "train.lr": t.lr,
    }
    for key, v in positive.items():
        if v <= 0:
            raise SeqlabError(f"{key} must be greater than 0, got {v}")
    non_negative = {
        "train.bptt_stride": t.bptt_stride, "train.max_steps": t.max_steps,
        "train.max_epochs": t.max_epochs, "train.max_time": t.max_time,
        "train.clip_norm": t.clip_norm, "train.stop_at": t.stop_at, "train.eval_tokens": t.eval_tokens,
        "train.early_stop": t.early_stop, "train.warmup_steps": t.warmup_steps, "train.lr_patience": t.lr_patience,
        "train.weight_decay": t.weight_decay, "train.threads": t.threads,
        "train.checkpoint_every": t.checkpoint_every, "train.nan_retries": t.nan_retries,
        "data.max_vocab": d.max_vocab, "data.min_count": d.min_count,
    }
    for key, v in non_negative.items():
        if v < 0:
            raise SeqlabError(f"{key} must be 0 or more, got {v}")
    if m.num_layers > MAX_LAYERS:
        raise SeqlabError(f"model.num_layers must be at most {MAX_LAYERS}, got {m.num_layers}")
    if not 0.0 <= m.dropout < 1.0:
        raise SeqlabError(f"model.dropout must be in [0, 1), got {m.dropout}")
    if t.keep_checkpoints < 1:
        raise SeqlabError(f"train.keep_checkpoints must be 1 or more, got {t.keep_checkpoints}")
    if not 1 <= t.grad_accum <= t.batch_size:
        raise SeqlabError(f"train.grad_accum must be from 1 to train.batch_size ({t.batch_size}): the batch is "
                          f"cut into that many parts of rows; got {t.grad_accum}")
    if not 0.0 <= t.state_resets <= 1.0:
        raise SeqlabError(f"train.state_resets must be in [0, 1] (a share of the streams), got {t.state_resets}")
    if not 0.0 < t.nan_lr_factor <= 1.0:
        raise SeqlabError(f"train.nan_lr_factor must be in (0, 1], got {t.nan_lr_factor}")
    if t.logger not in ("none", "tensorboard"):
        raise SeqlabError(f"train.logger must be 'none' or 'tensorboard', got {t.logger!r}")
    if t.precision not in ("fp32", "bf16"):
        raise SeqlabError(f"train.precision must be 'fp32' or 'bf16', got {t.precision!r}")
    if not 0.0 < t.lr_decay <= 1.0:
        raise SeqlabError(f"train.lr_decay must be in (0, 1], got {t.lr_decay}")
    if t.bptt_stride > t.bptt_steps:
        raise SeqlabError(
            f"train.bptt_stride (k1={t.bptt_stride}) must not exceed train.bptt_steps (k2={t.bptt_steps})")
    if t.schedule not in ("plateau", "cosine", "constant"):
        raise SeqlabError(f"train.schedule must be 'plateau', 'cosine' or 'constant', got {t.schedule!r}")
    if t.schedule == "cosine" and not t.max_steps:
        raise SeqlabError("train.schedule=cosine needs train.max_steps (the step where the rate reaches 0)")
    if t.optimizer not in ("adam", "sgd", "rmsprop"):
        raise SeqlabError(f"train.optimizer must be 'adam', 'sgd' or 'rmsprop', got {t.optimizer!r}")
    defaults = type(t)()
    # options that shape another one's behaviour are refused where that one is off (never dropped)
    for key, needs, holds in (("momentum", "train.optimizer=sgd", t.optimizer == "sgd"),
                              ("lr_decay", "train.schedule=plateau", t.schedule == "plateau"),
                              ("lr_patience", "train.schedule=plateau", t.schedule == "plateau"),
                              ("nan_lr_factor", "train.nan_retries > 0", t.nan_retries > 0)):
        if getattr(t, key) != getattr(defaults, key) and not holds:
            raise SeqlabError(f"train.{key} applies with {needs}; remove it or set that")
    if m.tie_weights and m.embedding_size != m.hidden_size:
        raise SeqlabError(
            f"model.tie_weights needs model.embedding_size == model.hidden_size "
            f"(got {m.embedding_size} and {m.hidden_size})")
    if t.max_steps == 0 and t.max_epochs == 0 and t.max_time == 0:
        raise SeqlabError("set at least one of train.max_steps, train.max_epochs, train.max_time")
