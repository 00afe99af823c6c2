"""`seqlab.training(...)`: a config from whatever a Python caller has, through the one engine, to a
loaded Run. The `seqlab train` command calls the same function."""
from __future__ import annotations

import sys
from pathlib import Path
from typing import Any, Callable, Mapping, Sequence

from seqlab import SeqlabError
from seqlab.api import arguments
from seqlab.api.run import Run
from seqlab.config import SHORTHAND, Config, TaskConfig, apply, from_dict, load_config, parse_overrides, to_dict, validate
from seqlab.training.checkpoint import RunDir
from seqlab.training.engine import fit

ConfigLike = Config | Mapping[str, Any] | Sequence[str] | str | Path | None


def to_config(config: ConfigLike, base: Config | None = None) -> Config:
    """A validated Config from: None (the defaults), a TOML preset's path or name, a list of
    overrides ("model.hidden_size=128", "task=tag"), a dict (nested {"model": {...}} or dotted
    {"model.hidden_size": 128}), or a Config. `base`: the config the values change (resuming)."""
    if isinstance(config, Config):
        cfg = config if base is None else apply(base, {s: v for s, v in to_dict(config).items()})
    elif config is None:
        cfg = base or Config()
    elif isinstance(config, (str, Path)):
        if base is not None:
            raise SeqlabError("resuming takes changed options as a list or a dict, not a preset")
        return load_config(config)
    elif isinstance(config, Mapping):
        nested: dict[str, dict[str, Any]] = {}
        for key, value in config.items():
            if not isinstance(key, str):
                raise SeqlabError(f"config keys are str (section.key, or a section holding a dict); got {key!r}")
            if isinstance(value, Mapping):
                nested.setdefault(key, {}).update(value)
            else:
                section, _, name = SHORTHAND.get(key, key).partition(".")
                if not name:
                    raise SeqlabError(f"config key {key!r} is not of the form section.key (e.g. model.hidden_size)")
                nested.setdefault(section, {})[name] = value
        if base is None:
            return from_dict(nested)
        cfg = apply(base, nested)
    elif isinstance(config, Sequence):
        items = [str(c) for c in config]
        if base is None:
            return load_config(None, items)
        cfg = apply(base, parse_overrides(items))
    else:
        raise SeqlabError(f"config: give a list of overrides, a dict, a preset path or None; got {type(config).__name__}")
    validate(cfg)
    return cfg


def default_out(cfg: Config) -> Path:
    """runs/[TASK-]MODEL-SOURCE, as `seqlab train` names a run it is not given a folder for."""
    source = Path(cfg.data.path).stem if cfg.data.path else cfg.data.corpus
    task = "" if cfg.task.name == TaskConfig.name else f"{cfg.task.name}-"      # the default task: no prefix
    return Path("runs") / f"{task}{cfg.model.name}-{source}"


def train(config: ConfigLike = None, out: str | Path | None = None, *, resume: bool = False, overwrite: bool = False,
          progress: bool | None = None, log: Callable[[str], None] | None = None, device: str = "auto") -> Run:
    """Train a run through seqlab's engine and return it loaded (best weights).

    config: None, a preset, a list of overrides, or a dict (see `to_config`). out: the run
    folder (default runs/[TASK-]MODEL-SOURCE). resume=True continues `out` from its last
    checkpoint; `config` then lists the options to change (train.* only). overwrite=True
    replaces a finished run folder that seqlab made. progress: the live bar (default: when
    standard error is a terminal). log: where messages go (default: standard error in a
    terminal, nowhere in a notebook or a pipe). device: where the returned Run's model lives."""
    arguments.path(out, "out", optional=True)
    arguments.text(device, "device", optional=False)
    for key, value in (("resume", resume), ("overwrite", overwrite)):
        if not isinstance(value, bool):
            raise SeqlabError(f"{key} must be True or False, got {value!r}")
    if progress is not None and not isinstance(progress, bool):
        raise SeqlabError(f"progress must be True, False or None, got {progress!r}")
    if log is not None and not callable(log):
        raise SeqlabError(f"log must be a function of one str (print, say), got {log!r:.60}")
    terminal = sys.stderr.isatty()
    if log is None:
        log = (lambda m: print(m, file=sys.stderr)) if terminal else (lambda m: None)
    if progress is None and not terminal:
        progress = False
    return Run(run_training(config, out, resume=resume, overwrite=overwrite, progress=progress, log=log), device)


def run_training(config: ConfigLike, out: str | Path | None, *, resume: bool = False, overwrite: bool = False,
                 progress: bool | None = None, log: Callable[[str], None] = print) -> Path:
    """`train` without loading the result (the `seqlab train` command): the run folder trained.
    progress=None keeps the config's train.progress."""
    if resume:
        if out is None:
            raise SeqlabError("resume=True needs out=, the run folder to continue")
        saved = RunDir(Path(out)).require().config()
        cfg = to_config(config, base=saved) if config else saved
        if progress is not None:
            cfg.train.progress = progress
        fit(None, out, resume=True, overrides=cfg, log=log)
        return Path(out)
    cfg = to_config(config)
    if progress is not None:
        cfg.train.progress = progress
    out = Path(out) if out is not None else default_out(cfg)
    fit(cfg, out, overwrite=overwrite, log=log)
    return out
