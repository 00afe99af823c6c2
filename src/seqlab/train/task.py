"""The task protocol the engine drives (train/supervised.py): what every supervised task
provides. It lives in train/, below the tasks that implement it, so the engine imports no task.

A task owns its data (examples, vocabularies built from the training split only), its
model, its loss and its metrics; the trainer only loops, clips, checkpoints and resumes.

    task = get("task", cfg.task.name)(cfg)
    task.prepare(log)                 # read the data, split it, build vocabularies
    model = task.build_model()
    loss, count = task.loss(model, task.collate(examples, device), step)
    metrics = task.evaluate(model, examples, device)     # includes task.metric and "loss"

`meta()` is everything besides the weights needed to use a trained model (vocabularies,
label names, scalers): plain JSON, saved as RUN/task.json and read back by `load_meta`.
"""
from __future__ import annotations

import dataclasses
from typing import Any, Callable, Sequence

import torch
from torch import Tensor, nn

from seqlab import SeqlabError
from seqlab.config import Config, ModelConfig
from seqlab.data.sequences import STRATEGIES, split_indices

Example = Any


class Task:
    name = ""
    models: tuple[str, ...] = ()            # model.name values this task can build
    metric = "loss"                          # picks the best checkpoint
    higher_is_better = False
    datasets: tuple[str, ...] = ()           # named datasets it reads (data.corpus)
    # model.* options the task's model honours, per model.name ("*": any other name); None: not
    # declared yet, nothing refused. Any other model option set away from its default is refused
    # before training (check_model_options), never silently dropped.
    model_options: dict[str, tuple[str, ...]] | None = None

    def __init__(self, cfg: Config):
        self.cfg = cfg
        self.splits: dict[str, list[Example]] = {}
        self.source = ""

    # -- configuration ----------------------------------------------------------------------

    @classmethod
    def validate(cls, cfg: Config) -> None:
        t = cfg.task
        if cfg.model.name not in cls.models:
            raise SeqlabError(f"task.name={cls.name} works with model.name = {', '.join(cls.models)}; "
                              f"got {cfg.model.name!r}")
        if not cfg.data.path and cfg.data.corpus not in cls.datasets:
            raise SeqlabError(f"task.name={cls.name} reads data.corpus = {', '.join(cls.datasets)} "
                              f"(or your own file with data.path=...); got {cfg.data.corpus!r}")
        if t.batching not in STRATEGIES:
            raise SeqlabError(f"task.batching must be one of {', '.join(STRATEGIES)}; got {t.batching!r}")
        for key in ("max_length", "max_tokens", "char_size"):
            if getattr(t, key) < 0:
                raise SeqlabError(f"task.{key} must be 0 or more, got {getattr(t, key)}")

    @classmethod
    def check_model_options(cls, cfg: Config) -> None:
        """Refuse, in one line, model options this task's model would not use."""
        if cls.model_options is None:
            return
        honoured = cls.model_options.get(cfg.model.name, cls.model_options.get("*", ()))
        defaults = ModelConfig()
        ignored = [f"model.{f.name}={getattr(cfg.model, f.name)!r}" for f in dataclasses.fields(ModelConfig)
                   if f.name != "name" and f.name not in honoured
                   and getattr(cfg.model, f.name) != getattr(defaults, f.name)]
        if ignored:
            uses = ", ".join(f"model.{k}" for k in honoured) or "no model.* option"
            raise SeqlabError(f"task.name={cls.name} with model.name={cfg.model.name} would not use "
                              f"{', '.join(ignored)}; remove it (this model uses {uses})")

    # -- data ---------------------------------------------------------------------------------

    def prepare(self, log: Callable[[str], None] = print) -> None:
        raise NotImplementedError

    def split(self, examples: list[Example]) -> None:
        """Fixed random train / valid / test split by data.valid_fraction and data.test_fraction."""
        d = self.cfg.data
        train, valid, test = split_indices(len(examples), d.valid_fraction, d.test_fraction)
        self.splits = {"train": [examples[i] for i in train], "valid": [examples[i] for i in valid],
                       "test": [examples[i] for i in test]}
        if not self.splits["train"] or not self.splits["valid"]:
            raise SeqlabError(f"{self.source}: {len(examples)} examples leave an empty training or validation "
                              f"split; use more data or a larger data.valid_fraction")

    def lengths(self, examples: Sequence[Example]) -> tuple[list[int], list[int] | None]:
        """(source lengths, target lengths or None) for batching."""
        return [len(e[0]) for e in examples], None

    def describe(self) -> str:
        return (f"{self.source}: train {len(self.splits['train']):,} / valid {len(self.splits['valid']):,} / "
                f"test {len(self.splits['test']):,} examples")

    def meta(self) -> dict[str, Any]:
        return {}

    def load_meta(self, meta: dict[str, Any]) -> None:
        pass

    # -- model, loss, metrics -------------------------------------------------------------

    def build_model(self) -> nn.Module:
        raise NotImplementedError

    def collate(self, examples: Sequence[Example], device: torch.device) -> dict[str, Tensor]:
        raise NotImplementedError

    def loss(self, model: nn.Module, batch: dict[str, Tensor], step: int) -> tuple[Tensor, int]:
        """(mean loss over the batch's items, number of items) — items are what the loss averages."""
        raise NotImplementedError

    def evaluate(self, model: nn.Module, examples: Sequence[Example], device: torch.device,
                 final: bool = False) -> dict[str, float]:
        """Metrics on `examples`; `final` asks for the slower, better decoding (beam search)
        that `seqlab eval` reports, where the periodic validation uses the fast one."""
        raise NotImplementedError
