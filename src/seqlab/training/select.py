"""Choosing among candidates by validation: a task may offer several configs for one run
(the forecaster's candidate transforms). Each candidate is a complete run of its own in
RUN/candidates/NAME, trained by the one engine (so each resumes, rolls back, and so on);
the one with the best validation score is copied to the top of RUN, and RUN/result.json
lists every candidate's score.

    RUN/config.json                      the config as given (e.g. task.transform=auto)
    RUN/candidates/log-1-12/...          a run per candidate
    RUN/model.safetensors, task.json ... the kept candidate's files
    RUN/result.json                      {"kept": NAME, "candidates": {NAME: metrics}}

On --resume, candidates already finished (their result.json written) are read, not trained again.
"""
from __future__ import annotations

import dataclasses
import json
import shutil
import time
from pathlib import Path
from typing import Callable

from seqlab import SeqlabError
from seqlab.config import Config
from seqlab.data.vocab import Vocab
from seqlab.io import atomic_path, atomic_write_text, json_loads
from seqlab.training.checkpoint import CONFIG, RunDir
from seqlab.training.control import prepare_out
from seqlab.training.guard import writing
from seqlab.training.task import Task

RESULT = "result.json"
CANDIDATES = "candidates"


def unfinished_selection(path: Path) -> str | None:
    """A one-line cause for a selection run stopped before it chose (candidates, no result.json)."""
    folder = path / CANDIDATES
    if not folder.is_dir() or (path / RESULT).is_file():
        return None
    done = sum((c / RESULT).is_file() for c in folder.iterdir() if c.is_dir())
    total = sum(1 for c in folder.iterdir() if c.is_dir())
    return (f"{path} stopped while choosing among its candidates ({done} of the {total} started finished); "
            f"it has no model until it chooses: seqlab train --resume {path}")


def write_result(run: RunDir, result: dict) -> None:
    """RUN/result.json: the finished run's report (what a resumed selection reads back)."""
    with writing(RESULT, run.path):
        atomic_write_text(run.file(RESULT), json.dumps(result) + "\n")


def fit_candidates(cfg: Config, task: Task, run: RunDir, candidates: list[tuple[str, Config]], resume: bool,
                   overwrite: bool, log: Callable[[str], None], fit_one: Callable[..., dict]) -> dict[str, float]:
    if resume:
        run.require()
    else:
        prepare_out(run.path, overwrite)
        with writing("the run's config", run.path):
            run.save_meta(cfg, Vocab([], "word"), Path(cfg.data.path).name if cfg.data.path else cfg.data.corpus)
    key = task.select_metric
    results: dict[str, dict] = {}
    budget, started = cfg.train.max_time, time.perf_counter()
    for index, (name, sub) in enumerate(candidates):
        folder = RunDir(run.path / CANDIDATES / name)
        if folder.file(RESULT).is_file():
            results[name] = json_loads(folder.file(RESULT).read_text(encoding="utf-8"))
            log(f"candidate {name}: finished before ({key} {results[name][key]:.4f})")
            continue
        again = resume and folder.file(CONFIG).is_file()
        if budget and not again:
            # train.max_time is the whole selection's: what is left, shared by the candidates left
            share = max(budget - (time.perf_counter() - started), 0.0) / (len(candidates) - index)
            sub.train = dataclasses.replace(sub.train, max_time=max(share, 1.0))
            log(f"candidate {name}: {sub.train.max_time:.0f} s of the {budget:g} s train.max_time")
        else:
            log(f"candidate {name}:")
        results[name] = fit_one(None if again else sub, folder.path, resume=again, overwrite=False,
                                log=lambda m: log("  " + m), task=None if again else type(task)(sub).adopt(task))
    sign = -1.0 if task.higher_is_better else 1.0
    kept = min(results, key=lambda n: sign * results[n][key])
    source = run.path / CANDIDATES / kept
    for entry in sorted(source.iterdir()):
        if entry.is_file() and not entry.is_symlink() and entry.name not in (CONFIG, RESULT):
            with writing(entry.name, run.path), atomic_path(run.file(entry.name)) as tmp:
                shutil.copyfile(entry, tmp)
    if not run.file("model.safetensors").is_file():
        raise SeqlabError(f"candidate {kept} left no model.safetensors in {source}")
    log(f"kept candidate {kept} ({key} {results[kept][key]:.4f} of "
        + ", ".join(f"{n} {r[key]:.4f}" for n, r in results.items()) + ")")
    write_result(run, {"kept": kept, "candidates": results, **results[kept]})
    return results[kept]
