"""Opening a trained run for use: its config, vocabulary and best weights on a device.

The commands that read a run (eval, sample, the analyses, the benchmarks) all go through
`load_run`; it lives in the engine's floor so that none of them imports the command line.
"""
from __future__ import annotations

import sys
from pathlib import Path

from seqlab import SeqlabError
from seqlab.models import build_model
from seqlab.models.base import is_count_model
from seqlab.train.checkpoint import RunDir
from seqlab.train.threads import ThreadPolicy


def task_of(run_path: str | Path) -> str:
    """The task a run was trained for (task.name), from its validated config."""
    return RunDir(Path(run_path)).require().config().task.name      # a tampered config is refused


def load_run(run_path: str, device_name: str, lm_for: str | None = None):
    """(config, vocab, model on device, device) for a trained run's best weights. With `lm_for`
    (the command, for the message), a run that is not a language model is refused."""
    from seqlab.train.fit import resolve_device      # the trainer's module: imported only when a run loads

    task = task_of(run_path)
    if lm_for is not None and task != "lm":
        # classify, tag, translate and forecast runs have a verb of their task's name
        instead = f"; use `seqlab {task} {run_path} ...`" if task in ("classify", "tag", "translate", "forecast") else ""
        raise SeqlabError(f"{run_path} is a task.name={task} run, not a language model; {lm_for} reads "
                          f"task.name=lm runs{instead}")
    run = RunDir(Path(run_path)).require()
    cfg, vocab = run.config(), run.vocab()
    threads = ThreadPolicy(cfg.train.threads)     # measures other work while the model loads
    device = resolve_device(device_name, "--device")
    model = build_model(cfg.model, len(vocab))
    if is_count_model(model):                    # its counts, not weights
        model = type(model).from_state_arrays(run.load_arrays())
    else:
        run.load_best(model, say=lambda m: print(m, file=sys.stderr))
    if device.type == "cpu":
        threads.settle()
    model = model.to(device).eval()
    return cfg, vocab, model, device
