"""`seqlab train task.name=...`: supervised tasks (classify, tag, translate) from config to run
directory, resumable exactly — the counterpart of train/fit.py for examples instead of a stream.

    1. resolve the config (or the run's own, on resume), the task and the device
    2. the task reads and splits its data and builds its vocabularies from the training split
    3. each epoch groups the training examples into mini-batches (data/sequences.py) in an
       order drawn from (train.seed, epoch), so a resumed run sees the same batches
    4. update, log, evaluate every train.eval_every updates and at each epoch's end, keep the
       best weights by the task's metric, checkpoint, stop on a limit or Ctrl-C
    5. report the best model on the validation split

The run directory is the language model's (train/checkpoint.py) plus task.json, the task's
vocabularies and label names.
"""
from __future__ import annotations

import json
import math
import sys
import time
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any, Callable

import numpy as np
import torch
from tqdm import tqdm

from seqlab import SeqlabError
from seqlab.config import Config, diff
from seqlab.data.sequences import make_batches, padding_share
from seqlab.data.vocab import Vocab
from seqlab.io import atomic_write_text
from seqlab.registry import get
from seqlab.train import checkpoint as ck
from seqlab.train.checkpoint import RunDir
from seqlab.train.fit import Interrupted, check_finite, ctrl_c_flag, prepare_out, resolve_device, truncate_metrics
from seqlab.train.guard import writing
from seqlab.train.optim import PlateauDecay, make_optimizer, scheduled_lr
from seqlab.train.plots import plot_loss
from seqlab.train.runfolder import writing_run
from seqlab.train.task import Task
from seqlab.train.threads import ThreadPolicy

TASK_META = "task.json"


@dataclass
class Progress:
    step: int = 0
    epoch: int = 0
    batch: int = 0               # next batch within the epoch
    items: int = 0               # loss items (labels, tags, target tokens) trained on
    elapsed: float = 0.0
    loss_sum: float = 0.0
    loss_count: int = 0
    norm_sum: float = 0.0
    norm_count: int = 0
    best_step: int = 0


def epoch_batches(task: Task, cfg: Config, epoch: int) -> list[np.ndarray]:
    """The training batches of `epoch`: a function of the seed and the epoch only."""
    examples = task.splits["train"]
    src, tgt = task.lengths(examples)
    rng = np.random.default_rng([cfg.train.seed, epoch])
    return make_batches(src, cfg.train.batch_size, cfg.task.batching, target_lengths=tgt,
                        max_tokens=cfg.task.max_tokens, rng=rng)


def load_task(run: RunDir) -> tuple[Config, Task]:
    """A trained run's config and task with its vocabularies restored (no data read)."""
    cfg = run.config()
    task = get("task", cfg.task.name)(cfg)
    try:
        task.load_meta(json.loads(run.file(TASK_META).read_text(encoding="utf-8")))
    except FileNotFoundError:
        raise SeqlabError(f"{run.file(TASK_META)} is missing; {run.path} is not a complete {cfg.task.name} run") from None
    except (ValueError, KeyError, TypeError) as e:
        raise SeqlabError(f"{run.file(TASK_META)} is corrupted ({e})") from None
    return cfg, task


def fit_task(cfg: Config | None, out: str | Path, *, resume: bool = False, overrides: Config | None = None,
             overwrite: bool = False, log: Callable[[str], None] = print) -> dict[str, float]:
    with writing_run(Path(out), fresh=not resume, overwrite=overwrite):     # one writer at a time
        return _fit_task(cfg, out, resume, overrides, overwrite, log)


def _fit_task(cfg: Config | None, out: str | Path, resume: bool, overrides: Config | None,
              overwrite: bool, log: Callable[[str], None]) -> dict[str, float]:
    run = RunDir(Path(out))
    # 1. config, task, device -------------------------------------------------------------
    if resume:
        run.require()
        cfg = run.config()
        if overrides is not None:
            changes = diff(cfg, overrides)
            fixed = [c for c in changes if c.startswith(("data.", "model.", "task.", "train.batch_size", "train.seed"))]
            if fixed:
                raise SeqlabError(f"cannot change these when resuming: {'; '.join(fixed)}")
            if changes:
                log(f"warning: resuming with changed options: {'; '.join(changes)}")
            cfg = overrides
    assert cfg is not None
    t = cfg.train
    threads = ThreadPolicy(t.threads, log)             # 0: the cores other work leaves free
    device = resolve_device(t.device)
    torch.manual_seed(t.seed)
    task: Task = get("task", cfg.task.name)(cfg)

    # 2. data and model ----------------------------------------------------------------------
    task.prepare(log)
    if resume:
        saved = json.loads(run.file(TASK_META).read_text(encoding="utf-8"))
        if saved != json.loads(json.dumps(task.meta())):
            raise SeqlabError(f"the data has changed since {run.path} was trained (its vocabularies differ)")
    model = task.build_model().to(device)
    optimizer = make_optimizer(model, t)
    plateau = PlateauDecay(t.lr_decay if t.schedule == "plateau" else 1.0, t.lr_patience)
    progress = Progress()
    sign = -1.0 if task.higher_is_better else 1.0          # PlateauDecay minimises

    # 3. fresh run or resume -------------------------------------------------------------------
    if resume:
        loaded = run.load_checkpoint(model, log=log)
        if loaded is None:
            raise SeqlabError(f"{run.path} has no checkpoint to resume from; train it again with --overwrite")
        state, _ = loaded
        progress = Progress(**state["progress"])
        optimizer.load_state_dict(state["optimizer"])
        plateau.load_state_dict(state["plateau"])
        torch.set_rng_state(state["rng_cpu"])
        truncate_metrics(run.file(ck.METRICS), progress.step)
        log(f"resuming {run.path} at update {progress.step} (epoch {progress.epoch + 1})")
    else:
        prepare_out(run.path, overwrite)
    run.save_meta(cfg, Vocab([], "word"), task.source)
    atomic_write_text(run.file(TASK_META), json.dumps(task.meta(), ensure_ascii=False) + "\n")
    n_params = sum(p.numel() for p in model.parameters())
    log(f"{cfg.task.name} with {cfg.model.name}: {n_params:,} parameters | {task.describe()} | device {device} | run {run.path}")

    batches = epoch_batches(task, cfg, progress.epoch)
    total = t.max_steps or (t.max_epochs * len(batches) if t.max_epochs else None)
    if t.max_steps and t.max_epochs:
        total = min(t.max_steps, t.max_epochs * len(batches))
    bar = tqdm(total=total, initial=progress.step, unit="upd", dynamic_ncols=True, disable=not t.progress,
               mininterval=0.5, desc=cfg.task.name)
    say = bar.write if t.progress else log
    metrics = open(run.file(ck.METRICS), "a", encoding="utf-8")

    def record(row: dict[str, Any]) -> None:
        metrics.write(json.dumps(row) + "\n")
        metrics.flush()

    def save_checkpoint() -> None:
        with writing("a checkpoint", run.path):
            run.save_checkpoint(progress.step, model, {
                "progress": asdict(progress), "optimizer": optimizer.state_dict(),
                "plateau": plateau.state_dict(), "rng_cpu": torch.get_rng_state()}, keep=t.keep_checkpoints)

    def validate_now() -> bool:
        model.eval()
        with torch.no_grad():
            result = task.evaluate(model, task.splits["valid"], device)
        model.train()
        best = plateau.update(sign * result[task.metric], optimizer)
        record({"step": progress.step, "epoch": progress.epoch, "split": "valid", **result,
                "lr": optimizer.param_groups[0]["lr"], "best": best})
        if best:
            progress.best_step = progress.step
            run.save_weights(model, ck.BEST, {"step": progress.step, task.metric: result[task.metric]})
        shown = " | ".join(f"{k} {v:.4f}" for k, v in result.items())
        say(f"update {progress.step:>6} | valid {shown}{'  (best)' if best else ''}")
        save_checkpoint()
        plot_loss(run.file(ck.METRICS), run.file(ck.PLOT), title=f"{run.path.name}: {cfg.task.name} on {task.source}")
        return bool(t.early_stop) and plateau.bad_evals >= t.early_stop

    # 4. the loop ---------------------------------------------------------------------------
    params = [p for p in model.parameters() if p.requires_grad]
    train = task.splits["train"]
    src_lengths, _ = task.lengths(train)            # fixed: the padding share of each epoch's batches
    model.train()
    stop_reason = ""
    with ctrl_c_flag() as ctrl_c:
        try:
            while not stop_reason:
                if t.max_epochs and progress.epoch >= t.max_epochs:
                    stop_reason = f"reached train.max_epochs={t.max_epochs}"
                    break
                if progress.batch == 0:
                    say(f"epoch {progress.epoch + 1}: {len(batches)} batches, {padding_share(batches, src_lengths):.1%} "
                        f"of positions are padding ({cfg.task.batching})")
                started, window_items = time.perf_counter(), 0
                for i in range(progress.batch, len(batches)):
                    lr = scheduled_lr(t, progress.step, optimizer.param_groups[0]["lr"])
                    for group in optimizer.param_groups:
                        group["lr"] = lr
                    batch = task.collate([train[j] for j in batches[i]], device)
                    loss, n = task.loss(model, batch, progress.step)
                    optimizer.zero_grad(set_to_none=True)
                    loss.backward()
                    # clipping the global norm guards against one exploding step (Pascanu et al. 2013)
                    norm = torch.nn.utils.clip_grad_norm_(params, t.clip_norm if t.clip_norm > 0 else math.inf)
                    optimizer.step()
                    progress.step += 1
                    progress.batch = i + 1
                    progress.items += n
                    window_items += n
                    progress.loss_sum += loss.item() * n
                    progress.loss_count += n
                    progress.norm_sum += norm.item()
                    progress.norm_count += 1
                    bar.update(1)
                    if device.type == "cpu":
                        threads.check()
                    if progress.step % t.log_every == 0:
                        now = time.perf_counter()
                        progress.elapsed += now - started
                        row = log_row(progress, optimizer, window_items / max(now - started, 1e-9))
                        started, window_items = now, 0
                        record(row)
                        bar.set_postfix_str(f"loss {row['loss']:.3f} | {row['items_per_s']:,.0f} items/s")
                    if progress.step % t.eval_every == 0:
                        progress.elapsed += time.perf_counter() - started
                        if validate_now():
                            stop_reason = f"no improvement in {t.early_stop} evaluations (train.early_stop)"
                        started, window_items = time.perf_counter(), 0
                    if ctrl_c["hit"]:
                        stop_reason = "interrupted"
                    elif t.max_steps and progress.step >= t.max_steps:
                        stop_reason = f"reached train.max_steps={t.max_steps}"
                    elif t.max_time and progress.elapsed + time.perf_counter() - started >= t.max_time:
                        stop_reason = f"reached train.max_time={t.max_time:g}s"
                    if stop_reason:
                        break
                progress.elapsed += time.perf_counter() - started
                if progress.batch >= len(batches):
                    progress.epoch += 1
                    progress.batch = 0
                    batches = epoch_batches(task, cfg, progress.epoch)
                    if progress.step % t.eval_every and not stop_reason and validate_now():
                        stop_reason = f"no improvement in {t.early_stop} evaluations (train.early_stop)"
        finally:
            bar.close()
        if stop_reason == "interrupted":
            save_checkpoint()
            metrics.close()
            log(f"interrupted at update {progress.step}; checkpoint saved. Continue with: seqlab train --resume {run.path}")
            raise Interrupted()
    # 5. the best weights on the whole validation split ------------------------------------
    from seqlab.train.plots import read_metrics
    rows = read_metrics(run.file(ck.METRICS))
    if not rows or rows[-1].get("split") != "valid" or rows[-1].get("step") != progress.step:
        validate_now()
    metrics.close()
    log(f"stopped: {stop_reason}")
    meta = run.load_weights(model, ck.BEST)
    model.eval()
    with torch.no_grad():
        result = task.evaluate(model, task.splits["valid"], device)
    log(f"best model (update {meta.get('step')}) on the validation split: "
        + " | ".join(f"{k} {v:.4f}" for k, v in result.items()))
    return result


def log_row(progress: Progress, optimizer, items_per_s: float) -> dict[str, Any]:
    loss = check_finite(progress.loss_sum / max(progress.loss_count, 1), progress.step)
    row = {"step": progress.step, "epoch": progress.epoch, "split": "train", "loss": loss,
           "grad_norm": progress.norm_sum / max(progress.norm_count, 1), "lr": optimizer.param_groups[0]["lr"],
           "items": progress.items, "items_per_s": items_per_s, "elapsed": progress.elapsed}
    progress.loss_sum, progress.loss_count, progress.norm_sum, progress.norm_count = 0.0, 0, 0.0, 0
    return row


def load_trained(run_path: str | Path, device_name: str = "auto"):
    """(config, task with its vocabularies, model with the best weights in eval mode, device)."""
    run = RunDir(Path(run_path)).require()
    cfg, task = load_task(run)
    threads = ThreadPolicy(cfg.train.threads)
    device = resolve_device(device_name, "--device")
    model = task.build_model()
    run.load_best(model, say=lambda m: print(m, file=sys.stderr))
    threads.settle()
    return cfg, task, model.to(device).eval(), device


def evaluate_run(run_path: str | Path, split: str, device_name: str = "auto",
                 log: Callable[[str], None] = print) -> dict[str, float]:
    """The best weights of a task run on a split of its data (re-read, checked against the run's vocabularies)."""
    cfg, saved, model, device = load_trained(run_path, device_name)
    task: Task = get("task", cfg.task.name)(cfg)
    task.prepare(log)
    if json.loads(json.dumps(task.meta())) != json.loads(json.dumps(saved.meta())):
        raise SeqlabError(f"the data has changed since {run_path} was trained (its vocabularies differ)")
    if not task.splits[split]:
        raise SeqlabError(f"the {split} split of {task.source} is empty (data.{split}_fraction is 0)")
    with torch.no_grad():
        return task.evaluate(model, task.splits[split], device, final=True)
