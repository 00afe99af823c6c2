"""`seqlab train`: THE engine. Any task (training/task.py's protocol) from config to run
directory, resumable exactly.

    1. resolve the config (or the run's saved one, on resume), the task, the device and the processes
    2. the task reads its data and builds the model; a model fitted by counting is fitted here
       in one pass, saved and reported (nothing to resume)
    3. restore weights, optimiser, schedule, RNG, data position and carried state (resume)
    4. loop over the task's batches: update, log, evaluate, checkpoint, stop on a limit (the
       checkpoint, evaluation and rollback steps are a Session's: training/session.py)
    5. the task reports on the best weights

Ctrl-C finishes the current update, saves a checkpoint and exits; SIGKILL at any instant loses
only the updates since the last checkpoint (train.checkpoint_every). `--resume` continues with
the same losses and, on CPU, bit-identical weights an uninterrupted run would have had. A
non-finite loss rolls back to the last checkpoint with a lower learning rate (guard.py). Under
torchrun the same code trains data-parallel (distributed.py). Every task has all of it: a
feature of training is written once, here.
"""
from __future__ import annotations

import json
import math
import signal
import time
from pathlib import Path
from typing import Any, Callable

import torch
from tqdm import tqdm

from seqlab import SeqlabError
from seqlab.config import Config, diff
from seqlab.io import atomic_write_text, json_loads
from seqlab.models.kernels import fused
from seqlab.models.base import hook, is_count_model
from seqlab.registry import get
from seqlab.training import checkpoint as ck, distributed
from seqlab.training.checkpoint import RunDir
from seqlab.training.accumulate import accumulate
from seqlab.training.control import Interrupted, ctrl_c_flag, prepare_out, resolve_device, truncate_metrics
from seqlab.training.guard import is_finite, learning_rate, writing
from seqlab.training.optim import PlateauDecay, make_optimizer
from seqlab.training.plots import read_metrics
from seqlab.training.runfolder import check_out, writing_run
from seqlab.training.runs import start_from
from seqlab.training.select import fit_candidates, write_result
from seqlab.training.session import Session
from seqlab.training.snapshot import Progress
from seqlab.training.task import TASK_META, Task
from seqlab.training.threads import ThreadPolicy

__all__ = ["Interrupted", "fit", "make_task", "resolve_device"]


def make_task(cfg: Config) -> Task:
    """The task of `cfg`, its options checked: one the task or its model cannot honour is refused."""
    cls = get("task", cfg.task.name)
    cls.check_options(cfg)
    return cls(cfg)


def fit(cfg: Config | None, out: str | Path, *, resume: bool = False, overrides: Config | None = None,
        overwrite: bool = False, log: Callable[[str], None] = print, task: Task | None = None) -> dict[str, float]:
    """Train `cfg` into run directory `out`; returns the best model's validation metrics.

    resume=True continues `out` from its last intact checkpoint; `overrides` (a full Config, e.g.
    with a larger train.max_steps) may change train.* options, never data, model or task ones.
    Under torchrun every process calls this; only rank 0 writes and logs (rank 0 returns the metrics).
    `task`: an object of cfg's task set up beyond its config (the forecast benchmark's chunk length).
    """
    run = RunDir(Path(out))
    saved_lr = None
    if resume:
        run.require()
        cfg = run.config()
        saved_lr = cfg.train.lr
        if overrides is not None:
            changes = diff(cfg, overrides)
            fixed = [c for c in changes if c.startswith(get("task", cfg.task.name).resume_fixed)]
            if fixed:
                raise SeqlabError(f"cannot change these when resuming: {'; '.join(fixed)}")
            if changes:
                log(f"warning: resuming with changed options: {'; '.join(changes)}")
            cfg = overrides
    assert cfg is not None
    if getattr(cfg, "notes", None):
        log(f"note: the preset's {', '.join(cfg.notes)} {'does' if len(cfg.notes) == 1 else 'do'} not apply to "
            f"task.name={cfg.task.name} with model.name={cfg.model.name}; left at the default")
    if task is None:
        task = make_task(cfg)
    else:
        task.check_options(cfg)
    candidates = task.candidates()
    if candidates and distributed.under_torchrun():
        raise SeqlabError(f"{task.name} trains one run per candidate here ({', '.join(n for n, _ in candidates)}); "
                          f"run it without torchrun, or fix the choice in the config")
    threads = ThreadPolicy(cfg.train.threads, log)      # 0: the cores other work leaves free
    device = resolve_device(cfg.train.device)
    world = distributed.setup(device)
    try:
        with writing_run(run.path, fresh=not resume, overwrite=overwrite, enabled=world.is_main):
            if candidates:
                return fit_candidates(cfg, task, run, candidates, resume, overwrite, log, fit)
            result = train(run, cfg, task, world.device(device), world, resume, saved_lr, overwrite,
                           log if world.is_main else _quiet, threads)
            if world.is_main:
                write_result(run, result)
            return result
    finally:
        world.close()


def _quiet(message: str) -> None:
    """The log of ranks other than 0: they train, rank 0 speaks."""


def train(run: RunDir, cfg: Config, task: Task, device: torch.device, world: distributed.World, resume: bool,
          saved_lr: float | None, overwrite: bool, log: Callable[[str], None],
          threads: ThreadPolicy | None = None) -> dict[str, float]:
    t = cfg.train
    torch.manual_seed(t.seed)

    # 2. data and model ------------------------------------------------------------------------
    if not world.is_main:
        world.barrier()                   # rank 0 first: it may write a token cache
    task.prepare(log)
    if world.is_main:
        world.barrier()
    if resume:
        check_same_data(run, task)
    model = task.build_model().to(device)
    if t.init_from and not resume:
        start_from(model, t.init_from, cfg, log)
    if is_count_model(model):
        if resume:
            raise SeqlabError(f"{run.path} is a {cfg.model.name} model, fitted by counting in one pass; "
                              f"there is nothing to resume (train it again instead)")
        if world.parallel:
            raise SeqlabError(f"{cfg.model.name} is fitted by counting in one pass; run it without torchrun")
        prepare_out(run.path, overwrite)
        save_meta(run, cfg, task)
        return task.fit_counts(model, run, log)
    if world.parallel:    # same initial weights everywhere (drawn above); dropout masks differ per rank
        torch.manual_seed(t.seed + world.rank)
    task.setup_training(world, device)
    optimizer = make_optimizer(model, t)
    plateau = PlateauDecay(t.lr_decay if t.schedule == "plateau" else 1.0, t.lr_patience)
    s = Session(run, cfg, model, task, optimizer, plateau, world, device, log)

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
        save_meta(run, cfg, task)
    n_params = sum(p.numel() for p in model.parameters())
    field = hook(model, "receptive_field")
    log(f"{task.name} with {cfg.model.name}: {n_params:,} parameters"
        f"{f', receptive field {field} tokens' if field else ''} | {task.describe()} | "
        f"device {device}{f' x {world.size} processes' if world.parallel else ''} | run {run.path}")

    # the module the updates run through: DDP averages gradients across ranks; compile fuses kernels
    trainable = world.wrap(model, device)
    if t.compile:
        trainable = torch.compile(trainable)
    autocast = torch.autocast(device.type, dtype=torch.bfloat16, enabled=t.precision == "bf16")
    if t.precision == "bf16" and device.type == "cpu" and fused.bf16_note():
        log(fused.bf16_note())

    per_epoch = task.epoch_length(s.progress.epoch)
    total = t.max_steps or (t.max_epochs * per_epoch if t.max_epochs else None)
    if t.max_steps and t.max_epochs:
        total = min(t.max_steps, t.max_epochs * per_epoch)
    bar = tqdm(total=total, initial=s.progress.step, unit="upd", dynamic_ncols=True,
               disable=not (t.progress and world.is_main), mininterval=0.5, desc=task.name)
    s.bar = bar
    if t.progress and world.is_main:
        s.say = bar.write                                              # messages must not break the bar
    if threads is not None:
        threads.log = lambda message: s.say(message)
    s.open_metrics()
    if fresh:
        s.save_checkpoint()      # update 0: a rollback target, and --resume works from the start

    # 4. the loop: `s.progress` and `s.carry` are the session's, since a rollback replaces them
    params = [p for p in model.parameters() if p.requires_grad]
    model.train()
    trainable.train()
    stop_reason = ""
    last_log_time, last_log_items = time.perf_counter(), s.progress.items
    with ctrl_c_flag() as ctrl_c:
        try:
            while not stop_reason:
                stop_reason = limit_reached(t, s.progress)
                if stop_reason:
                    break
                per_epoch = task.epoch_length(s.progress.epoch)
                if s.progress.position == 0:
                    s.carry = task.start_carry(model)
                    note = task.epoch_note(s.progress.epoch)
                    if note:
                        s.say(note)
                started = time.perf_counter()
                rolled_back = False
                for i in range(s.progress.position, per_epoch):
                    progress = s.progress
                    lr = learning_rate(t, progress.step, optimizer.param_groups[0]["lr"], progress.lr_scale)
                    for group in optimizer.param_groups:
                        group["lr"] = lr
                    batch = task.train_batch(progress.epoch, i, device)
                    optimizer.zero_grad(set_to_none=True)
                    if t.grad_accum > 1:
                        loss, n, next_carry = accumulate(task, trainable, model, batch, progress.step, s.carry,
                                                         t.grad_accum, world, autocast)
                    else:
                        with autocast:
                            loss, n, next_carry = task.train_loss(trainable, batch, progress.step, s.carry)
                        # each rank's mean loss, weighed by its share of the batch's items: the ranks'
                        # averaged gradient is then the gradient of the global mean (DDP divides by W)
                        weight = n * world.size / world.sum([n])[0] if world.parallel else 1.0
                        # a model may add a regulariser from its forward pass (the norm stabiliser);
                        # `loss` stays the pure objective, so the logged numbers remain comparable
                        ((loss + hook(model, "aux_loss", 0.0)) * weight).backward()
                    # Clipping the global norm keeps one exploding step (Pascanu et al. 2013)
                    # from throwing the weights far away; it leaves the direction unchanged.
                    norm = torch.nn.utils.clip_grad_norm_(params, t.clip_norm if t.clip_norm > 0 else math.inf)
                    loss_value, norm_value = loss.item(), norm.item()
                    over_time = bool(t.max_time) and progress.elapsed + time.perf_counter() - started >= t.max_time
                    # one small all-reduce per update keeps the ranks agreeing on the loss and on stopping
                    loss_sum, count, bad, hit, late = world.sum(
                        [loss_value * n, n, not is_finite(loss_value if n else 0.0, norm_value), ctrl_c["hit"],
                         over_time])
                    if bad:
                        progress.elapsed += time.perf_counter() - started
                        s.roll_back(loss_value if not world.parallel else loss_sum / max(count, 1), norm_value)
                        rolled_back = True
                        break
                    optimizer.step()
                    s.carry = next_carry
                    progress.step += 1
                    progress.position = i + 1
                    progress.items += int(count)
                    progress.loss_sum += loss_sum
                    progress.loss_count += int(count)
                    progress.norm_sum += norm_value
                    progress.norm_count += 1
                    bar.update(1)
                    if threads is not None and device.type == "cpu":
                        threads.check()             # a fair share of a busy CPU (training/threads.py)
                    if progress.step % t.log_every == 0:
                        now = time.perf_counter()
                        progress.elapsed += now - started
                        started = now
                        row = train_record(task, progress, optimizer, now - last_log_time,
                                           progress.items - last_log_items)
                        last_log_time, last_log_items = now, progress.items
                        s.record(row)
                        bar.set_postfix_str(f"loss {row['loss']:.3f} | {row[task.rate]:,.0f} {task.unit}/s | "
                                            f"lr {row['lr']:.2g}")
                    saved = False
                    if progress.step % t.eval_every == 0:
                        progress.elapsed += time.perf_counter() - started
                        stop_reason = s.validate_now()
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
                if s.progress.position >= per_epoch:
                    s.progress.epoch += 1
                    s.progress.position = 0
                    if task.validate_each_epoch and s.progress.step % t.eval_every and not stop_reason:
                        stop_reason = s.validate_now()
        finally:
            bar.close()
        if stop_reason == "interrupted":
            s.save_checkpoint()
            s.close_metrics()
            s.draw_loss(now=True)
            sig = ctrl_c["signal"] or signal.SIGINT
            how = "interrupted" if sig == signal.SIGINT else f"stopped by {signal.Signals(sig).name}"
            log(f"{how} at update {s.progress.step}; checkpoint saved. Continue with: seqlab train --resume {run.path}")
            raise Interrupted(int(sig))
    # 5. finish: evaluate if the last update was not evaluated, then report on the best weights
    evaluated = 1.0
    if world.is_main:
        last = read_metrics(run.file(ck.METRICS))
        evaluated = float(bool(last) and last[-1].get("split") == "valid" and last[-1].get("step") == s.progress.step)
    if not world.from_main(evaluated):
        s.validate_now()
    s.close_metrics()
    s.draw_loss(now=True)
    log(f"stopped: {stop_reason}" + (f" ({s.progress.nan_rollbacks} rollback(s) after a non-finite loss)"
                                    if s.progress.nan_rollbacks else ""))
    if not world.is_main:
        return {}
    meta = run.load_weights(model, ck.BEST)
    model.eval()
    return task.finish(run, model, device, log, meta.get("step"))


def save_meta(run: RunDir, cfg: Config, task: Task) -> None:
    """config.json, vocab.json and task.json: what using the trained model needs besides weights."""
    with writing("the run's config", run.path):
        run.save_meta(cfg, task.run_vocab(), task.source)
        atomic_write_text(run.file(TASK_META), json.dumps(task.meta(), ensure_ascii=False) + "\n")


def check_same_data(run: RunDir, task: Task) -> None:
    """Resuming needs the data the run was trained on: the same vocabularies."""
    try:
        saved = json_loads(run.file(TASK_META).read_text(encoding="utf-8"))
    except FileNotFoundError:
        saved = {}                       # a language model of seqlab 0.x: its vocab.json says it all
    except ValueError as e:
        raise SeqlabError(f"{run.file(TASK_META)} is corrupted ({e})") from None
    meta = json.loads(json.dumps(task.meta()))
    # what the task's report added to task.json when it finished (a forecaster's scores) is not data
    if task.run_vocab() != run.vocab() or (saved and {k: saved.get(k) for k in meta} != meta):
        raise SeqlabError(f"the data has changed since {run.path} was trained (its vocabularies differ)")


def limit_reached(t, progress: Progress) -> str:
    """A budget already used up before the next update (e.g. resuming a finished run)."""
    if t.max_epochs and progress.epoch >= t.max_epochs:
        return f"reached train.max_epochs={t.max_epochs}"
    if t.max_steps and progress.step >= t.max_steps:
        return f"reached train.max_steps={t.max_steps}"
    return ""


def check_finite(loss: float, step: int) -> float:
    """The mean training loss since the last record, or a SeqlabError saying how to recover."""
    if not math.isfinite(loss):
        raise SeqlabError(f"training loss became {loss} by update {step}; "
                          f"lower train.lr or keep train.clip_norm on, then --resume from the last checkpoint")
    return loss


def train_record(task: Task, progress: Progress, optimizer, seconds: float, items: int) -> dict[str, Any]:
    mean = check_finite(progress.loss_sum / max(progress.loss_count, 1), progress.step)
    row = {"step": progress.step, "epoch": progress.epoch, "split": "train", **task.train_summary(mean),
           "grad_norm": progress.norm_sum / max(progress.norm_count, 1), "lr": optimizer.param_groups[0]["lr"],
           task.unit: progress.items, task.rate: items / max(seconds, 1e-9), "elapsed": progress.elapsed}
    progress.loss_sum, progress.loss_count, progress.norm_sum, progress.norm_count = 0.0, 0, 0.0, 0
    return row
