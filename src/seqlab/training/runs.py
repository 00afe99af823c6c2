"""Opening a trained run for use: its config, vocabulary or task, and best weights on a device.

The commands that read a run (eval, sample, the task verbs, the analyses, the benchmarks) all
go through here; it lives in the engine's floor so that none of them imports the command line.
"""
from __future__ import annotations

import json
import sys
from pathlib import Path
from typing import Callable

import torch

from seqlab import SeqlabError
from seqlab.io import json_loads
from seqlab.config import Config, to_dict
from seqlab.models import build_model
from seqlab.models.base import is_count_model
from seqlab.registry import get
from seqlab.training.checkpoint import RunDir
from seqlab.training.control import resolve_device
from seqlab.training.task import TASK_META, Opened, Task
from seqlab.training.threads import ThreadPolicy


def task_of(run_path: str | Path) -> str:
    """The task a run was trained for (task.name), from its validated config."""
    return RunDir(Path(run_path)).require().config().task.name      # a tampered config is refused


def load_run(run_path: str, device_name: str, lm_for: str | None = None, checkpoint: str | None = None):
    """(config, vocab, model on device, device) for a trained language model's best weights.
    With `lm_for` (the command, for the message), a run that is not a language model is refused;
    `checkpoint` names one of its checkpoints instead of the best weights (RunDir.load_named)."""
    task = task_of(run_path)
    kind = get("task", task)
    if lm_for is not None and "score" not in kind.offered():
        instead = f"; use `seqlab {kind.command()} {run_path} ...`" if kind.command() else ""
        raise SeqlabError(f"{run_path} is a task.name={task} run, not a language model; {lm_for} reads "
                          f"task.name=lm runs{instead}")
    run = RunDir(Path(run_path)).require()
    cfg, vocab = run.config(), run.vocab()
    threads = ThreadPolicy(cfg.train.threads)     # measures other work while the model loads
    device = resolve_device(device_name, "--device")
    model = build_model(cfg.model, len(vocab))
    if is_count_model(model):                    # its counts, not weights
        if checkpoint is not None:
            raise SeqlabError(f"{run_path} is a model fitted by counting; it has no checkpoints, only its counts")
        model = type(model).from_state_arrays(run.load_arrays())
    else:
        run.load_best(model, say=lambda m: print(m, file=sys.stderr), checkpoint=checkpoint)
    if device.type == "cpu":
        threads.settle()
    model = model.to(device).eval()
    return cfg, vocab, model, device


def load_task(run: RunDir) -> tuple[Config, Task]:
    """A trained run's config and task with its vocabularies restored (no data read)."""
    cfg = run.config()
    task = get("task", cfg.task.name)(cfg)
    try:
        task.load_meta(json_loads(run.file(TASK_META).read_text(encoding="utf-8")))
    except FileNotFoundError:
        raise SeqlabError(f"{run.file(TASK_META)} is missing; {run.path} is not a complete {cfg.task.name} run") from None
    except (ValueError, KeyError, TypeError) as e:
        raise SeqlabError(f"{run.file(TASK_META)} is corrupted ({e})") from None
    return cfg, task


def load_trained(run_path: str | Path, device_name: str = "auto", checkpoint: str | None = None):
    """(config, task with its vocabularies, model with the best weights, or those of the named
    checkpoint, in eval mode, device)."""
    run = RunDir(Path(run_path)).require()
    cfg, task = load_task(run)
    threads = ThreadPolicy(cfg.train.threads)
    device = resolve_device(device_name, "--device")
    model = task.build_model()
    run.load_best(model, say=lambda m: print(m, file=sys.stderr), checkpoint=checkpoint)
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


def open_trained(path: str | Path, device_name: str, checkpoint: str | None = None) -> Opened:
    """A task's trained run opened for use (its best weights, or those of the named checkpoint):
    Task.open_run where a task has one of its own."""
    kind = get("task", task_of(path))
    if kind.open_run is not None:
        return kind.open_run(path, device_name, checkpoint=checkpoint)
    cfg, task, model, device = load_trained(path, device_name, checkpoint)
    return Opened(cfg, model, device, task=task, meta=task.meta())


def evaluate_trained(path: str | Path, opened: Opened, split: str, log: Callable[[str], None],
                     streams: int | None = None) -> dict[str, float]:
    """Task.evaluate_run, or where a task has none, the split re-read and scored (evaluate_run)."""
    kind = get("task", opened.cfg.task.name)
    if kind.evaluate_run is not None:
        return kind.evaluate_run(path, opened, split, log, streams)
    return evaluate_run(path, split, str(opened.device), log=log)


def start_from(model: torch.nn.Module, path: str, cfg: Config, log: Callable[[str], None]) -> None:
    """train.init_from: the best weights of the run at `path` (same task, same model options)."""
    other = RunDir(Path(path)).require()
    theirs = other.config()
    if theirs.task.name != cfg.task.name:
        raise SeqlabError(f"train.init_from={path} is a task.name={theirs.task.name} run; this one is "
                          f"task.name={cfg.task.name}")
    mine, old = to_dict(cfg)["model"], to_dict(theirs)["model"]
    differ = [f"model.{k}: {old[k]!r} there, {mine[k]!r} here" for k in mine
              if k not in ("dropout", "impl") and k in old and old[k] != mine[k]]
    if differ:
        raise SeqlabError(f"train.init_from={path} has other model options ({'; '.join(differ)}); "
                          f"its weights fit only the same model: drop those overrides")
    meta = other.load_best(model, say=log)
    log(f"starting from the weights of {path} (its best, update {meta.get('step', '?')}); "
        f"a new optimiser, schedule and update count")
