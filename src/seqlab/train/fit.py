"""`seqlab train`: a language-model run from config to run directory, resumable exactly.

    1. resolve the config (or the run's saved one, on resume) and the device
    2. load the token splits and build the model from the registry
    3. restore weights, optimiser, schedule, RNG, data position and carried state (resume)
    4. loop over TBPTT windows: update, log, evaluate, checkpoint, stop on a limit
    5. evaluate the best weights on the full validation split

Ctrl-C finishes the current update, saves a checkpoint and exits; `--resume` continues
from there with the same losses an uninterrupted run would have had (CPU, same seed).
"""
from __future__ import annotations

import json
import math
import shutil
import signal
import time
from contextlib import contextmanager
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any, Callable, Iterator

import torch
from tqdm import tqdm

from seqlab import SeqlabError
from seqlab.analysis.plots import plot_loss, read_metrics
from seqlab.config import Config, diff
from seqlab.data.text import Splits, batchify, load_splits
from seqlab.models import build_model
from seqlab.models.base import State, is_count_model
from seqlab.train import checkpoint as ck
from seqlab.train.checkpoint import RunDir
from seqlab.train.loop import evaluate, summary, tbptt_windows, train_step
from seqlab.train.optim import PlateauDecay, make_optimizer, scheduled_lr
from seqlab.io import atomic_write_text

class Interrupted(Exception):
    """Training stopped by Ctrl-C after saving a checkpoint."""


def resolve_device(name: str) -> torch.device:
    if name == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    try:
        device = torch.device(name)
    except RuntimeError:
        raise SeqlabError(f"train.device: unknown device {name!r}; use cpu, cuda, cuda:N or auto") from None
    if device.type == "cuda" and not torch.cuda.is_available():
        raise SeqlabError(f"train.device={name} but no CUDA GPU is available; use train.device=cpu")
    return device


@dataclass
class Progress:
    """Where training stands; plain values, saved in state.pt."""
    step: int = 0
    epoch: int = 0
    window: int = 0              # next window index within the epoch
    tokens: int = 0              # targets trained on so far
    elapsed: float = 0.0         # training seconds so far (across resumes)
    loss_sum: float = 0.0        # since the last training-loss record
    loss_count: int = 0
    norm_sum: float = 0.0
    norm_count: int = 0
    best_step: int = 0


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
    if out.exists() and any(out.iterdir()):
        if not overwrite:
            raise SeqlabError(f"{out} already exists; pass --overwrite to replace it, or --resume {out} to continue it")
        if not (out / ck.CONFIG).is_file():
            raise SeqlabError(f"{out} is not empty and not a seqlab run; refusing to overwrite it")
        shutil.rmtree(out)
    out.mkdir(parents=True, exist_ok=True)


def fit(cfg: Config | None, out: str | Path, *, resume: bool = False, overrides: Config | None = None,
        overwrite: bool = False, log: Callable[[str], None] = print) -> dict[str, float]:
    """Train a language model into run directory `out`; returns the best model's validation metrics.

    resume=True continues `out` from its last checkpoint; `overrides` (a full Config, e.g. with
    a larger train.max_steps) may change train.* options, never data or model ones.
    """
    run = RunDir(Path(out))
    # 1. config and device ---------------------------------------------------------------
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
    t = cfg.train
    if t.threads:
        torch.set_num_threads(t.threads)
    device = resolve_device(t.device)
    torch.manual_seed(t.seed)

    # 2. data and model ---------------------------------------------------------------------
    splits = load_splits(cfg.data, log=log)
    if resume and splits.vocab != run.vocab():
        raise SeqlabError(f"the corpus has changed since {run.path} was trained (its vocabulary differs)")
    check_sizes(splits, cfg)
    model = build_model(cfg.model, len(splits.vocab)).to(device)
    if is_count_model(model):
        if resume:
            raise SeqlabError(f"{run.path} is a {cfg.model.name} model, fitted by counting in one pass; "
                              f"there is nothing to resume (train it again instead)")
        return fit_counts(run, model, splits, cfg, device, overwrite, log)
    optimizer = make_optimizer(model, t)
    plateau = PlateauDecay(t.lr_decay if t.schedule == "plateau" else 1.0, t.lr_patience)
    progress = Progress()
    data = batchify(splits.train, t.batch_size).to(device)                      # (B, N)
    k1 = t.bptt_stride or t.bptt_steps
    windows = tbptt_windows(data.size(1), k1, t.bptt_steps)
    carry: State = None

    # 3. fresh run or resume ------------------------------------------------------------------
    if resume:
        progress, carry = restore(run, model, optimizer, plateau, device)
        if t.lr != saved_lr:   # an explicit train.lr override replaces the decayed rate
            for group in optimizer.param_groups:
                group["lr"] = t.lr
        truncate_metrics(run.file(ck.METRICS), progress.step)
        run.save_meta(cfg, splits.vocab, splits.source)
        log(f"resuming {run.path} at update {progress.step} (epoch {progress.epoch + 1})")
    else:
        prepare_out(run.path, overwrite)
        run.save_meta(cfg, splits.vocab, splits.source)
    n_params = sum(p.numel() for p in model.parameters())
    field = getattr(model, "receptive_field", None)
    log(f"{cfg.model.name}: {n_params:,} parameters{f', receptive field {field} tokens' if field else ''} | {splits.source}: train {len(splits.train):,} / "
        f"valid {len(splits.valid):,} / test {len(splits.test):,} tokens, vocabulary {len(splits.vocab)} | "
        f"device {device} | run {run.path}")

    total = t.max_steps or (t.max_epochs * len(windows) if t.max_epochs else None)
    if t.max_steps and t.max_epochs:
        total = min(t.max_steps, t.max_epochs * len(windows))
    bar = tqdm(total=total, initial=progress.step, unit="upd", dynamic_ncols=True, disable=not t.progress,
               mininterval=0.5, desc="train")
    say = bar.write if t.progress else log           # messages must not break the bar
    metrics = open(run.file(ck.METRICS), "a", encoding="utf-8")
    level = cfg.data.level

    def record(row: dict[str, Any]) -> None:
        metrics.write(json.dumps(row) + "\n")
        metrics.flush()

    def save_checkpoint() -> None:
        run.save_weights(model, ck.LAST, {"step": progress.step})
        run.save_state({
            "progress": asdict(progress),
            "optimizer": optimizer.state_dict(),
            "plateau": plateau.state_dict(),
            "rng_cpu": torch.get_rng_state(),
            "rng_cuda": torch.cuda.get_rng_state_all() if device.type == "cuda" else [],
            "carry": [] if carry is None else [s.cpu() for s in (carry if isinstance(carry, tuple) else (carry,))],
            "carry_is_tuple": isinstance(carry, tuple),
        })

    def validate_now() -> bool:
        """Evaluate, keep the best weights, decay/stop on plateau. True = stop early."""
        nats, _ = evaluate(model, splits.valid, t.eval_batch_size, t.bptt_steps, device, t.eval_tokens)
        best = plateau.update(nats, optimizer)
        row = {"step": progress.step, "epoch": progress.epoch, "split": "valid", **summary(nats, level),
               "lr": optimizer.param_groups[0]["lr"], "best": best}
        record(row)
        if best:
            progress.best_step = progress.step
            run.save_weights(model, ck.BEST, {"step": progress.step, "valid_loss": nats})
        key = "bpc" if level == "char" else "bits_per_token"
        say(f"update {progress.step:>6} | valid loss {nats:.4f} | ppl {row['ppl']:.2f} | "
                  f"{key} {row[key]:.4f}{'  (best)' if best else ''}")
        save_checkpoint()
        plot_loss(run.file(ck.METRICS), run.file(ck.PLOT), title=f"{run.path.name}: {cfg.model.name} on {splits.source}")
        return bool(t.early_stop) and plateau.bad_evals >= t.early_stop

    # 4. the loop -------------------------------------------------------------------------------
    params = [p for p in model.parameters() if p.requires_grad]
    model.train()
    stop_reason = ""
    last_log_time, last_log_tokens = time.perf_counter(), progress.tokens
    with ctrl_c_flag() as ctrl_c:
        try:
            while not stop_reason:
                if t.max_epochs and progress.epoch >= t.max_epochs:
                    stop_reason = f"reached train.max_epochs={t.max_epochs}"
                    break
                if progress.window == 0:
                    carry = model.init_state(t.batch_size)
                started = time.perf_counter()
                for i in range(progress.window, len(windows)):
                    lr = scheduled_lr(t, progress.step, optimizer.param_groups[0]["lr"])
                    for group in optimizer.param_groups:
                        group["lr"] = lr
                    loss, carry, n = train_step(model, data, windows[i], carry)
                    optimizer.zero_grad(set_to_none=True)
                    # a model may add a regulariser from its forward pass (the norm stabiliser);
                    # `loss` stays the pure likelihood, so the logged numbers remain comparable
                    (loss + getattr(model, "aux_loss", 0.0)).backward()
                    # Clipping the global norm keeps one exploding step (Pascanu et al. 2013)
                    # from throwing the weights far away; it leaves the direction unchanged.
                    norm = torch.nn.utils.clip_grad_norm_(params, t.clip_norm if t.clip_norm > 0 else math.inf)
                    optimizer.step()
                    progress.step += 1
                    progress.window = i + 1
                    progress.tokens += n
                    progress.loss_sum += loss.item() * n
                    progress.loss_count += n
                    progress.norm_sum += norm.item()
                    progress.norm_count += 1
                    bar.update(1)
                    if progress.step % t.log_every == 0:
                        now = time.perf_counter()
                        progress.elapsed += now - started
                        started = now
                        row = log_train(progress, optimizer, level, now - last_log_time,
                                        progress.tokens - last_log_tokens)
                        last_log_time, last_log_tokens = now, progress.tokens
                        record(row)
                        bar.set_postfix_str(f"loss {row['loss']:.3f} | {row['tok_per_s']:,.0f} tok/s | lr {row['lr']:.2g}")
                    if progress.step % t.eval_every == 0:
                        progress.elapsed += time.perf_counter() - started
                        if validate_now():
                            stop_reason = f"no improvement in {t.early_stop} evaluations (train.early_stop)"
                        started = last_log_time = time.perf_counter()
                    if ctrl_c["hit"]:
                        stop_reason = "interrupted"
                    elif t.max_steps and progress.step >= t.max_steps:
                        stop_reason = f"reached train.max_steps={t.max_steps}"
                    elif t.max_time and progress.elapsed + time.perf_counter() - started >= t.max_time:
                        stop_reason = f"reached train.max_time={t.max_time:g}s"
                    if stop_reason:
                        break
                progress.elapsed += time.perf_counter() - started
                if progress.window >= len(windows):
                    progress.epoch += 1
                    progress.window = 0
        finally:
            bar.close()
        if stop_reason == "interrupted":
            save_checkpoint()
            metrics.close()
            log(f"interrupted at update {progress.step}; checkpoint saved. Continue with: seqlab train --resume {run.path}")
            raise Interrupted()
    # 5. finish: evaluate if the last update was not evaluated, then the best weights on all of valid
    last = read_metrics(run.file(ck.METRICS))
    if not last or last[-1].get("split") != "valid" or last[-1].get("step") != progress.step:
        validate_now()
    metrics.close()
    log(f"stopped: {stop_reason}")
    return final_report(run, model, splits, cfg, device, log)


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


def restore(run: RunDir, model, optimizer, plateau: PlateauDecay, device) -> tuple[Progress, State]:
    state = run.load_state()
    meta = run.load_weights(model, ck.LAST)
    try:
        progress = Progress(**state["progress"])
        if meta.get("step") != progress.step:
            raise SeqlabError(f"{run.file(ck.LAST)} (update {meta.get('step')}) and {run.file(ck.STATE)} "
                              f"(update {progress.step}) disagree; the run was cut off while saving")
        optimizer.load_state_dict(state["optimizer"])
        plateau.load_state_dict(state["plateau"])
        torch.set_rng_state(state["rng_cpu"])
        if device.type == "cuda" and state["rng_cuda"]:
            torch.cuda.set_rng_state_all(state["rng_cuda"])
        carry = [s.to(device) for s in state["carry"]]
    except (KeyError, TypeError, ValueError) as e:
        raise SeqlabError(f"{run.file(ck.STATE)} is not a seqlab training state ({e})") from None
    if not carry:
        return progress, None
    return progress, tuple(carry) if state["carry_is_tuple"] else carry[0]


def truncate_metrics(path: Path, step: int) -> None:
    """Drop records written after the checkpoint we resume from (a crash between the two)."""
    rows = [r for r in read_metrics(path) if r.get("step", 0) <= step]
    atomic_write_text(path, "".join(json.dumps(r) + "\n" for r in rows))


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
