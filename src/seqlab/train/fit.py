"""`seqlab train`: a language model from config to run directory, resumable exactly.

    1. resolve the config (or the run's saved one, on resume), the device and the processes
    2. load the token splits (in memory, or memory-mapped) and build the model
    3. restore weights, optimiser, schedule, RNG, data position and carried state (resume)
    4. loop over TBPTT windows: update, log, evaluate, checkpoint, stop on a limit (the
       checkpoint, evaluation and rollback steps are a Session's: train/session.py)
    5. evaluate the best weights on the full validation split

Ctrl-C finishes the current update, saves a checkpoint and exits; SIGKILL at any instant loses
only the updates since the last checkpoint (train.checkpoint_every). `--resume` continues with
the same losses and, on CPU, bit-identical weights an uninterrupted run would have had. A
non-finite loss rolls back to the last checkpoint with a lower learning rate (guard.py). Under
torchrun the same code trains data-parallel (distributed.py).
"""
from __future__ import annotations

import json
import math
import signal
import time
from contextlib import contextmanager
from pathlib import Path
from typing import Any, Callable, Iterator

import numpy as np
import torch
from tqdm import tqdm

from seqlab import SeqlabError
from seqlab.config import Config, diff
from seqlab.data.text import Splits, batchify, batchify_view, load_splits
from seqlab.io import atomic_write_text
from seqlab.models import build_model, fused
from seqlab.models.base import is_count_model
from seqlab.train import checkpoint as ck
from seqlab.train import distributed
from seqlab.train.checkpoint import RunDir
from seqlab.train.guard import is_finite, learning_rate, writing
from seqlab.train.loop import evaluate, summary, tbptt_windows, train_step
from seqlab.train.optim import PlateauDecay, make_optimizer
from seqlab.train.plots import read_metrics
from seqlab.train.runfolder import check_out, clear_run, writing_run
from seqlab.train.session import Session, truncate_metrics
from seqlab.train.snapshot import Progress
from seqlab.train.threads import ThreadPolicy

__all__ = ["Interrupted", "Progress", "fit", "prepare_out", "resolve_device", "ctrl_c_flag", "check_finite",
           "truncate_metrics"]


class Interrupted(Exception):
    """Training stopped by Ctrl-C after saving a checkpoint."""


def resolve_device(name: str, option: str = "train.device") -> torch.device:
    """`option` is how the user set it, for the message (train.device, or a verb's --device)."""
    sep = " " if option.startswith("--") else "="
    if name == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    try:
        device = torch.device(name)
    except RuntimeError:
        raise SeqlabError(f"{option}: unknown device {name!r}; use cpu, cuda, cuda:N or auto") from None
    if device.type not in ("cpu", "cuda"):
        raise SeqlabError(f"{option}: seqlab runs on cpu or cuda, not {name!r}")
    if device.type == "cuda" and not torch.cuda.is_available():
        raise SeqlabError(f"{option}{sep}{name} but no CUDA GPU is available; use {option}{sep}cpu")
    return device


@contextmanager
def ctrl_c_flag() -> Iterator[dict[str, bool]]:
    """First Ctrl-C sets a flag (the loop saves and stops); a second one aborts at once."""
    flag = {"hit": False}

    def handler(signum, frame):
        flag["hit"] = True
        signal.signal(signal.SIGINT, previous)

    previous = signal.signal(signal.SIGINT, handler)
    try:
        yield flag
    finally:
        signal.signal(signal.SIGINT, previous)


def prepare_out(out: Path, overwrite: bool) -> None:
    """Make `out` an empty run folder: new, or a run whose own files --overwrite removes."""
    check_out(out, overwrite)
    with writing("the run directory", out):
        if out.is_dir():
            clear_run(out)
        out.mkdir(parents=True, exist_ok=True)


def fit(cfg: Config | None, out: str | Path, *, resume: bool = False, overrides: Config | None = None,
        overwrite: bool = False, log: Callable[[str], None] = print) -> dict[str, float]:
    """Train a language model into run directory `out`; returns the best model's validation metrics.

    resume=True continues `out` from its last intact checkpoint; `overrides` (a full Config, e.g.
    with a larger train.max_steps) may change train.* options, never data or model ones. Under
    torchrun every process calls this; only rank 0 writes and logs (rank 0 returns the metrics).
    """
    run = RunDir(Path(out))
    # 1. config, device, processes ----------------------------------------------------------
    saved_lr = None
    if resume:
        run.require()
        cfg = run.config()
        saved_lr = cfg.train.lr
        if overrides is not None:
            changes = diff(cfg, overrides)
            fixed = [c for c in changes if c.startswith(("data.", "model.", "train.batch_size", "train.bptt"))]
            if fixed:
                raise SeqlabError(f"cannot change these when resuming: {'; '.join(fixed)}")
            if changes:
                log(f"warning: resuming with changed options: {'; '.join(changes)}")
            cfg = overrides
    assert cfg is not None
    threads = ThreadPolicy(cfg.train.threads, log)      # 0: the cores other work leaves free
    device = resolve_device(cfg.train.device)
    world = distributed.setup(device)
    try:
        with writing_run(run.path, fresh=not resume, overwrite=overwrite, enabled=world.is_main):
            return train(run, cfg, world.device(device), world, resume, saved_lr, overwrite,
                         log if world.is_main else _quiet, threads)
    finally:
        world.close()


def _quiet(message: str) -> None:
    """The log of ranks other than 0: they train, rank 0 speaks."""


def train(run: RunDir, cfg: Config, device: torch.device, world: distributed.World, resume: bool,
          saved_lr: float | None, overwrite: bool, log: Callable[[str], None],
          threads: ThreadPolicy | None = None) -> dict[str, float]:
    t = cfg.train
    torch.manual_seed(t.seed)

    # 2. data and model ------------------------------------------------------------------------
    if not world.is_main:
        world.barrier()                   # rank 0 first: it may write the token cache
    splits = load_splits(cfg.data, log=log)
    if world.is_main:
        world.barrier()
    if resume and splits.vocab != run.vocab():
        raise SeqlabError(f"the corpus has changed since {run.path} was trained (its vocabulary differs)")
    check_sizes(splits, cfg)
    model = build_model(cfg.model, len(splits.vocab)).to(device)
    if is_count_model(model):
        if resume:
            raise SeqlabError(f"{run.path} is a {cfg.model.name} model, fitted by counting in one pass; "
                              f"there is nothing to resume (train it again instead)")
        if world.parallel:
            raise SeqlabError(f"{cfg.model.name} is fitted by counting in one pass; run it without torchrun")
        return fit_counts(run, model, splits, cfg, device, overwrite, log)
    if world.parallel:    # same initial weights everywhere (drawn above); dropout masks differ per rank
        torch.manual_seed(t.seed + world.rank)
    optimizer = make_optimizer(model, t)
    plateau = PlateauDecay(t.lr_decay if t.schedule == "plateau" else 1.0, t.lr_patience)
    s = Session(run, cfg, model, splits, optimizer, plateau, world, device, log)
    rows = world.rows(t.batch_size)
    per_rank = t.batch_size // world.size
    if isinstance(splits.train, np.ndarray) and splits.train.dtype != np.int64:
        data = batchify_view(splits.train, t.batch_size)[rows]                   # (B/W, N), on disk
    else:
        data = batchify(splits.train, t.batch_size)[rows].to(device)             # (B/W, N)
    k1 = t.bptt_stride or t.bptt_steps
    windows = tbptt_windows(data.shape[1], k1, t.bptt_steps)

    # 3. fresh run or resume ----------------------------------------------------------------------
    fresh = not resume
    if resume:
        if s.restore_latest(log):
            if t.lr != saved_lr:   # an explicit train.lr override replaces the decayed rate
                for group in optimizer.param_groups:
                    group["lr"] = t.lr
            if world.is_main:
                with writing("metrics.jsonl", run.path):
                    truncate_metrics(run.file(ck.METRICS), s.progress.step)
            log(f"resuming {run.path} at update {s.progress.step} (epoch {s.progress.epoch + 1})")
        else:
            log(f"{run.path} has no checkpoint yet (it stopped while starting); training it from update 0")
            fresh = True
            if world.is_main:
                with writing("metrics.jsonl", run.path):
                    atomic_write_text(run.file(ck.METRICS), "")
    else:
        check_out(run.path, overwrite)
        world.barrier()
        if world.is_main:
            prepare_out(run.path, overwrite)
    if world.is_main:
        with writing("the run's config", run.path):
            run.save_meta(cfg, splits.vocab, splits.source)
    n_params = sum(p.numel() for p in model.parameters())
    field = getattr(model, "receptive_field", None)
    log(f"{cfg.model.name}: {n_params:,} parameters{f', receptive field {field} tokens' if field else ''} | {splits.source}: train {len(splits.train):,} / "
        f"valid {len(splits.valid):,} / test {len(splits.test):,} tokens, vocabulary {len(splits.vocab)} | "
        f"device {device}{f' x {world.size} processes' if world.parallel else ''} | run {run.path}")

    # the module the updates run through: DDP averages gradients across ranks; compile fuses kernels
    trainable = world.wrap(model, device)
    if t.compile:
        trainable = torch.compile(trainable)
    autocast = torch.autocast(device.type, dtype=torch.bfloat16, enabled=t.precision == "bf16")
    if t.precision == "bf16" and device.type == "cpu" and fused.bf16_note():
        log(fused.bf16_note())

    total = t.max_steps or (t.max_epochs * len(windows) if t.max_epochs else None)
    if t.max_steps and t.max_epochs:
        total = min(t.max_steps, t.max_epochs * len(windows))
    bar = tqdm(total=total, initial=s.progress.step, unit="upd", dynamic_ncols=True,
               disable=not (t.progress and world.is_main), mininterval=0.5, desc="train")
    s.bar = bar
    if t.progress and world.is_main:
        s.say = bar.write                                              # messages must not break the bar
    if threads is not None:
        threads.log = lambda message: s.say(message)
    s.open_metrics()
    level = cfg.data.level
    if fresh:
        s.save_checkpoint()      # update 0: a rollback target, and --resume works from the start

    # 4. the loop: `s.progress` and `s.carry` are the session's, since a rollback replaces them
    params = [p for p in model.parameters() if p.requires_grad]
    model.train()
    trainable.train()
    stop_reason = ""
    last_log_time, last_log_tokens = time.perf_counter(), s.progress.tokens
    with ctrl_c_flag() as ctrl_c:
        try:
            while not stop_reason:
                stop_reason = limit_reached(t, s.progress)
                if stop_reason:
                    break
                if s.progress.window == 0:
                    s.carry = model.init_state(per_rank)
                started = time.perf_counter()
                rolled_back = False
                for i in range(s.progress.window, len(windows)):
                    progress = s.progress
                    lr = learning_rate(t, progress.step, optimizer.param_groups[0]["lr"], progress.lr_scale)
                    for group in optimizer.param_groups:
                        group["lr"] = lr
                    with autocast:
                        loss, next_carry, n = train_step(trainable, data, windows[i], s.carry, device)
                    optimizer.zero_grad(set_to_none=True)
                    # a model may add a regulariser from its forward pass (the norm stabiliser);
                    # `loss` stays the pure likelihood, so the logged numbers remain comparable
                    (loss + getattr(model, "aux_loss", 0.0)).backward()
                    # Clipping the global norm keeps one exploding step (Pascanu et al. 2013)
                    # from throwing the weights far away; it leaves the direction unchanged.
                    norm = torch.nn.utils.clip_grad_norm_(params, t.clip_norm if t.clip_norm > 0 else math.inf)
                    loss_value, norm_value = loss.item(), norm.item()
                    over_time = bool(t.max_time) and progress.elapsed + time.perf_counter() - started >= t.max_time
                    # one small all-reduce per update keeps the ranks agreeing on the loss and on stopping
                    loss_sum, count, bad, hit, late = world.sum(
                        [loss_value * n, n, not is_finite(loss_value, norm_value), ctrl_c["hit"], over_time])
                    if bad:
                        progress.elapsed += time.perf_counter() - started
                        s.roll_back(loss_value if not world.parallel else loss_sum / count, norm_value)
                        rolled_back = True
                        break
                    optimizer.step()
                    s.carry = next_carry
                    progress.step += 1
                    progress.window = i + 1
                    progress.tokens += int(count)
                    progress.loss_sum += loss_sum
                    progress.loss_count += int(count)
                    progress.norm_sum += norm_value
                    progress.norm_count += 1
                    bar.update(1)
                    if threads is not None and device.type == "cpu":
                        threads.check()             # a fair share of a busy CPU (train/threads.py)
                    if progress.step % t.log_every == 0:
                        now = time.perf_counter()
                        progress.elapsed += now - started
                        started = now
                        row = log_train(progress, optimizer, level, now - last_log_time,
                                        progress.tokens - last_log_tokens)
                        last_log_time, last_log_tokens = now, progress.tokens
                        s.record(row)
                        bar.set_postfix_str(f"loss {row['loss']:.3f} | {row['tok_per_s']:,.0f} tok/s | lr {row['lr']:.2g}")
                    saved = False
                    if progress.step % t.eval_every == 0:
                        progress.elapsed += time.perf_counter() - started
                        if s.validate_now():
                            stop_reason = f"no improvement in {t.early_stop} evaluations (train.early_stop)"
                        saved = True
                        started = last_log_time = time.perf_counter()
                    if t.checkpoint_every and progress.step % t.checkpoint_every == 0 and not saved:
                        s.save_checkpoint()
                    if hit:
                        stop_reason = "interrupted"
                    elif t.max_steps and progress.step >= t.max_steps:
                        stop_reason = f"reached train.max_steps={t.max_steps}"
                    elif late:
                        stop_reason = f"reached train.max_time={t.max_time:g}s"
                    if stop_reason:
                        break
                if rolled_back:
                    continue
                s.progress.elapsed += time.perf_counter() - started
                if s.progress.window >= len(windows):
                    s.progress.epoch += 1
                    s.progress.window = 0
        finally:
            bar.close()
        if stop_reason == "interrupted":
            s.save_checkpoint()
            s.close_metrics()
            log(f"interrupted at update {s.progress.step}; checkpoint saved. Continue with: seqlab train --resume {run.path}")
            raise Interrupted()
    # 5. finish: evaluate if the last update was not evaluated, then the best weights on all of valid
    evaluated = 1.0
    if world.is_main:
        last = read_metrics(run.file(ck.METRICS))
        evaluated = float(bool(last) and last[-1].get("split") == "valid" and last[-1].get("step") == s.progress.step)
    if not world.from_main(evaluated):
        s.validate_now()
    s.close_metrics()
    log(f"stopped: {stop_reason}" + (f" ({s.progress.nan_rollbacks} rollback(s) after a non-finite loss)"
                                    if s.progress.nan_rollbacks else ""))
    if not world.is_main:
        return {}
    return final_report(run, model, splits, cfg, device, log)


def limit_reached(t, progress: Progress) -> str:
    """A budget already used up before the next update (e.g. resuming a finished run)."""
    if t.max_epochs and progress.epoch >= t.max_epochs:
        return f"reached train.max_epochs={t.max_epochs}"
    if t.max_steps and progress.step >= t.max_steps:
        return f"reached train.max_steps={t.max_steps}"
    return ""


def fit_counts(run: RunDir, model, splits: Splits, cfg: Config, device, overwrite: bool, log) -> dict[str, float]:
    """The whole `fit` of a count-based model: count the training split, save, evaluate."""
    prepare_out(run.path, overwrite)
    run.save_meta(cfg, splits.vocab, splits.source)
    started = time.perf_counter()
    model.fit(splits.train)
    seconds = time.perf_counter() - started
    run.save_arrays(ck.BEST, model.state_arrays(), {"step": 0, "fit_seconds": seconds})
    nats, count = evaluate(model, splits.valid, cfg.train.eval_batch_size, cfg.train.bptt_steps, device)
    result = summary(nats, cfg.data.level)
    with open(run.file(ck.METRICS), "a", encoding="utf-8") as f:
        f.write(json.dumps({"step": 0, "split": "valid", **result, "fit_seconds": seconds, "tokens": count}) + "\n")
    key = "bpc" if cfg.data.level == "char" else "bits_per_token"
    log(f"{cfg.model.name} fitted to {len(splits.train):,} tokens in {seconds:.1f} s; all {count:,} validation tokens: loss {nats:.4f} nats | ppl {result['ppl']:.3f} | "
        f"{key} {result[key]:.4f}")
    return result


def check_finite(loss: float, step: int) -> float:
    """The mean training loss since the last record, or a SeqlabError saying how to recover."""
    if not math.isfinite(loss):
        raise SeqlabError(f"training loss became {loss} by update {step}; "
                          f"lower train.lr or keep train.clip_norm on, then --resume from the last checkpoint")
    return loss


def log_train(progress: Progress, optimizer, level: str, seconds: float, tokens: int) -> dict[str, Any]:
    updates = progress.norm_count
    nats = check_finite(progress.loss_sum / max(progress.loss_count, 1), progress.step)
    row = {"step": progress.step, "epoch": progress.epoch, "split": "train", **summary(nats, level),
           "grad_norm": progress.norm_sum / max(updates, 1), "lr": optimizer.param_groups[0]["lr"],
           "tokens": progress.tokens, "tok_per_s": tokens / max(seconds, 1e-9), "elapsed": progress.elapsed}
    progress.loss_sum, progress.loss_count, progress.norm_sum, progress.norm_count = 0.0, 0, 0.0, 0
    return row


def check_sizes(splits: Splits, cfg: Config) -> None:
    t = cfg.train
    need = t.batch_size * 2
    if len(splits.train) < need:
        raise SeqlabError(
            f"the training split has {len(splits.train):,} tokens, fewer than train.batch_size × 2 = {need}; "
            f"use more text or a smaller train.batch_size")
    if len(splits.valid) < 2:
        raise SeqlabError(
            f"the validation split has {len(splits.valid)} tokens; use more text or a larger data.valid_fraction")


def final_report(run: RunDir, model, splits: Splits, cfg: Config, device, log) -> dict[str, float]:
    meta = run.load_weights(model, ck.BEST)
    nats, count = evaluate(model, splits.valid, cfg.train.eval_batch_size, cfg.train.bptt_steps, device)
    result = summary(nats, cfg.data.level)
    key = "bpc" if cfg.data.level == "char" else "bits_per_token"
    log(f"best model (update {meta.get('step')}) on all {count:,} validation tokens: "
        f"loss {nats:.4f} nats | ppl {result['ppl']:.3f} | {key} {result[key]:.4f}")
    return result
