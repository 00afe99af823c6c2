"""The task protocol the one engine drives (training/engine.py). It lives in train/, below the
tasks that implement it (tasks/lm.py, tasks/classify.py, ...), so the engine imports no task.

A task owns its data (read, split, vocabularies from the training split only), its model,
its loss and its metrics; the engine owns everything else: updates, clipping, optimizer and
schedule, evaluation and "best", checkpoints and exact resume, NaN rollback, DDP, precision,
progress bar, metrics.jsonl and loss.png.

    task = get("task", cfg.task.name)(cfg)
    task.prepare(log)                          # read the data, split it, build vocabularies
    model = task.build_model()
    task.setup_training(world, device)         # this rank's share of the training data
    for epoch ...: for i in range(task.epoch_length(epoch)):
        batch = task.train_batch(epoch, i, device)       # a function of (seed, epoch, i) only
        loss, n, carry = task.train_loss(model, batch, step, carry)
    metrics = task.validation(model, device)   # includes task.metric and "loss"
    result = task.finish(run, model, device, log)

A model fitted by counting (n-gram, HMM, AR) has no updates: `task.fit_counts(model, log)`
fits it in one pass and the engine saves and reports it in the same run directory.

`meta()` is everything besides the weights needed to use a trained model (label names,
scalers): plain JSON, saved as RUN/task.json and read back by `load_meta`; `run_vocab()`
goes to RUN/vocab.json.
"""
from __future__ import annotations

import argparse
import dataclasses
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Callable, Sequence

import torch
from torch import Tensor, nn

from seqlab import SeqlabError
from seqlab.config import Config, DataConfig, ModelConfig, TaskConfig, TrainConfig
from seqlab.data.sequences import STRATEGIES, split_indices
from seqlab.data.vocab import Vocab
from seqlab.models import family_options
from seqlab.registry import get, names

Example = Any
TASK_META = "task.json"
Options = tuple[str, ...] | Callable[[Config], tuple[str, ...]]

# train.* options only the language model's TBPTT stream uses
STREAM_OPTIONS = ("bptt_steps", "bptt_stride", "eval_tokens", "eval_batch_size", "state_resets")
# train.* options a task reads only where it says so (train_options): the stream's, and starting
# from another run's weights (a task that can must also take that run's vocabulary)
OPT_IN = STREAM_OPTIONS + ("init_from",)
DATA_OPT_IN = ("lowercase",)                 # data.* options only some tasks read
# what a run may offer that is no `seqlab` command of its own (Run methods, capabilities)
NOT_COMMANDS = frozenset({"stream", "score", "tunes", "export", "attention", "batch sampling"})


def offering(offer: str) -> list[str]:
    """The registered tasks whose runs offer `offer` (Task.offered)."""
    return [t for t in names("task") if offer in get("task", t).offered()]


@dataclass
class Opened:
    """A trained run opened for use (Task.open_run): what `seqlab.load` hands to its verbs."""
    cfg: Config
    model: nn.Module
    device: torch.device
    task: "Task | None" = None        # the task with its vocabularies and labels restored (no data read)
    vocab: Vocab | None = None        # a language model's vocabulary (RUN/vocab.json)
    meta: dict[str, Any] | None = None


@dataclass(frozen=True)
class Verb:
    """Something a task's trained runs do, declared once: `run.NAME(...)` in Python and
    `seqlab NAME RUN ...` on the command line (a `_` in NAME is spelled `-` there).

    call:      (run, *args, **kwargs) -> result; the Python verb (`run` is a seqlab.Run)
    arguments: adds the command line's options besides RUN to an argparse parser
    command:   (run, parsed args) -> what to print: text, or a dict / list printed as JSON
    A task module lists its verbs in `Task.verbs` and registers each as kind "verb"; an entry
    point `verb.NAME` lets `seqlab --help` list it without importing the module."""
    name: str
    call: Callable[..., Any]
    help: str = ""
    arguments: Callable[[argparse.ArgumentParser], None] | None = None
    command: Callable[[Any, argparse.Namespace], Any] | None = None
    task: str = ""

    @property
    def cli_name(self) -> str:
        return self.name.replace("_", "-")


class Task:
    name = ""
    # what `seqlab.Run` offers for this task's runs besides evaluate: its built-in methods
    # (sample, score, classify, ...) and the verbs the task declares (Verb), listed in errors
    offers: tuple[str, ...] = ()
    verbs: tuple[Verb, ...] = ()
    models: tuple[str, ...] = ()            # model.name values this task can build
    metric = "loss"                          # picks the best checkpoint
    select_metric = "loss"                   # of finish()'s result: picks the best of candidates()
    higher_is_better = False
    datasets: tuple[str, ...] = ()           # named datasets it reads (data.corpus)
    # model.* options the task's model honours, per model.name ("*": any other name); None: the
    # model family's own (each family declares them, models/). Any other model option set away
    # from its default is refused before training (check_options), never silently dropped.
    model_options: dict[str, Options] | None = None
    task_options: Options | dict[str, Options] = ()     # task.* options it reads (also per model.name)
    train_options: tuple[str, ...] = ()      # of OPT_IN, those it reads
    data_options: tuple[str, ...] = ()       # of DATA_OPT_IN, those it reads
    unit, rate = "items", "items_per_s"      # what the loss averages over, for the training records
    validate_each_epoch = False              # also validate at the end of every epoch
    resume_fixed = ("data.", "model.", "task.", "train.batch_size", "train.seed")

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
        if cls.datasets and not cfg.data.path and cfg.data.corpus not in cls.datasets:
            raise SeqlabError(f"task.name={cls.name} reads data.corpus = {', '.join(cls.datasets)} "
                              f"(or your own file with data.path=...); got {cfg.data.corpus!r}")
        if t.batching not in STRATEGIES:
            raise SeqlabError(f"task.batching must be one of {', '.join(STRATEGIES)}; got {t.batching!r}")
        for key in ("max_length", "max_tokens", "char_size"):
            if getattr(t, key) < 0:
                raise SeqlabError(f"task.{key} must be 0 or more, got {getattr(t, key)}")
        if t.max_tokens and t.batching != "token_budget":
            raise SeqlabError(f"task.max_tokens is the budget of task.batching=token_budget, not {t.batching}; "
                              f"set task.batching=token_budget or remove task.max_tokens")

    @classmethod
    def honoured_model_options(cls, cfg: Config) -> tuple[str, ...]:
        """The model.* options this task's model uses with cfg's model.name (and values)."""
        if cls.model_options is None:                 # the family's own model, as it declares
            return family_options(cfg.model)
        return _per_model(cls.model_options, cfg)

    @classmethod
    def honoured(cls, cfg: Config) -> dict[str, set[str]]:
        """Per config section, the options a run of this task with cfg's model uses."""
        return {"model": set(cls.honoured_model_options(cfg)) | {"name"},
                "task": set(_per_model(cls.task_options, cfg)) | {"name"},
                "train": {f.name for f in dataclasses.fields(TrainConfig)} - set(OPT_IN) | set(cls.train_options)}

    @classmethod
    def check_options(cls, cfg: Config) -> None:
        """Refuse, in one line, options this task (or its model) would not use."""
        honoured = cls.honoured(cfg)
        ignored = changed_options(cfg.model, ModelConfig(), "model", honoured["model"])
        if ignored:
            uses = ", ".join(f"model.{k}" for k in sorted(honoured["model"] - {"name"})) or "no model.* option"
            raise SeqlabError(f"task.name={cls.name} with model.name={cfg.model.name} would not use "
                              f"{', '.join(ignored)}; remove it (this model uses {uses})")
        unread = [f"data.{k}={getattr(cfg.data, k)!r}" for k in DATA_OPT_IN
                  if k not in cls.data_options and getattr(cfg.data, k) != getattr(DataConfig(), k)]
        if unread:
            raise SeqlabError(f"task.name={cls.name} does not read {', '.join(unread)}; remove it"
                              + (" (task.lowercase lower-cases this task's words)" if "lowercase" in unread[0] else ""))
        ignored = changed_options(cfg.task, TaskConfig(), "task", honoured["task"])
        ignored += changed_options(cfg.train, TrainConfig(), "train", honoured["train"])
        if ignored:
            raise SeqlabError(f"task.name={cls.name} with model.name={cfg.model.name} does not use "
                              f"{', '.join(ignored)}; remove it")

    @classmethod
    def offered(cls) -> tuple[str, ...]:
        return tuple(cls.offers) + tuple(v.name for v in cls.verbs)

    @classmethod
    def command(cls) -> str | None:
        """The `seqlab` command that uses this task's runs (the first it offers), for refusals to suggest."""
        return next((o for o in cls.offered() if o not in NOT_COMMANDS), None)

    # -- a trained run --------------------------------------------------------------------------

    # Optional hooks of a trained run (seqlab.load): None takes training/runs.py's defaults,
    # open_trained (the task restored from task.json, the best weights) and evaluate_trained
    # (the split re-read, checked against the saved vocabularies, scored with final=True).
    #   open_run(path, device_name, checkpoint=None) -> Opened   (checkpoint: 'step-N', 'last' or None: the best)
    #   evaluate_run(path, opened, split, log, streams) -> metrics
    open_run: Callable[..., Opened] | None = None
    evaluate_run: Callable[..., dict[str, Any]] | None = None

    # -- data ---------------------------------------------------------------------------------

    def prepare(self, log: Callable[[str], None] = print) -> None:
        raise NotImplementedError

    def candidates(self) -> list[tuple[str, Config]]:
        """Configs to train as runs of their own, the best by `select_metric` kept (training/select.py);
        [] = train this config."""
        return []

    def adopt(self, other: "Task") -> "Task":
        """Take what `other` (the same task, another candidate's config) was given besides its config."""
        return self

    def split(self, examples: list[Example]) -> None:
        """Fixed random train / valid / test split by data.valid_fraction and data.test_fraction."""
        d = self.cfg.data
        train, valid, test = split_indices(len(examples), d.valid_fraction, d.test_fraction)
        self.splits = {"train": [examples[i] for i in train], "valid": [examples[i] for i in valid],
                       "test": [examples[i] for i in test]}
        if not self.splits["train"] or not self.splits["valid"]:
            raise SeqlabError(f"{self.source}: {len(examples)} examples leave an empty training or validation "
                              f"split; use more data or a larger data.valid_fraction")

    def describe(self) -> str:
        return (f"{self.source}: train {len(self.splits['train']):,} / valid {len(self.splits['valid']):,} / "
                f"test {len(self.splits['test']):,} examples")

    def meta(self) -> dict[str, Any]:
        return {}

    def run_vocab(self) -> Vocab:
        """The token vocabulary saved as RUN/vocab.json (a language model's; empty for the others,
        whose vocabularies are in meta())."""
        return Vocab([], "word")

    def load_meta(self, meta: dict[str, Any]) -> None:
        pass

    # -- model --------------------------------------------------------------------------------

    def build_model(self) -> nn.Module:
        raise NotImplementedError

    def fit_counts(self, model: nn.Module, run, log: Callable[[str], None]) -> dict[str, float]:
        """Fit a count-based model in one pass, save it in `run` (training/checkpoint.RunDir) with a
        record in its metrics.jsonl; returns its validation metrics."""
        raise SeqlabError(f"task.name={self.name} has no model fitted by counting")

    # -- what the engine drives -----------------------------------------------------------------

    def setup_training(self, world, device: torch.device) -> None:
        """Take this rank's share of the training data (`world`: training/distributed.World)."""
        self.world = world

    def epoch_length(self, epoch: int) -> int:
        """Updates in `epoch` (at least 1)."""
        raise NotImplementedError

    def train_batch(self, epoch: int, index: int, device: torch.device) -> Any:
        """This rank's part of update `index` of `epoch`: a function of (train.seed, epoch, index)."""
        raise NotImplementedError

    def start_carry(self, model: nn.Module) -> Any:
        """The state carried into an epoch's first batch (None unless batches continue each other)."""
        return None

    def train_loss(self, model: nn.Module, batch: Any, step: int, carry: Any) -> tuple[Tensor, int, Any]:
        """(mean loss over this rank's items, number of items, state for the next batch)."""
        loss, n = self.loss(model, batch, step)
        return loss, n, None

    def loss(self, model: nn.Module, batch: Any, step: int) -> tuple[Tensor, int]:
        raise NotImplementedError

    def split_batch(self, batch: Any, carry: Any, parts: int) -> list[tuple[Any, Any]]:
        """train.grad_accum: the batch (and carried state) as `parts` batches of consecutive rows,
        whose losses weighed by their items give the whole batch's. By default every tensor with
        the batch's row count is cut along dim 0 (dicts, tuples, lists, tensors)."""
        cuts = row_slices(rows_of(batch), parts)
        return [(take_rows(batch, cut), take_rows(carry, cut)) for cut in cuts]

    def join_carry(self, carries: list[Any]) -> Any:
        """The carried state of the parts of split_batch, put back together (rows in order)."""
        return join_rows(carries)

    def epoch_note(self, epoch: int) -> str:
        """A line for the start of an epoch ('' = none)."""
        return ""

    def train_summary(self, mean_loss: float) -> dict[str, float]:
        """The training record's figures from the mean loss since the last record."""
        return {"loss": mean_loss}

    def validation(self, model: nn.Module, device: torch.device) -> dict[str, float]:
        """The periodic validation (rank 0, no gradients): metrics with task.metric and "loss"."""
        return self.evaluate(model, self.splits["valid"], device)

    def evaluate(self, model: nn.Module, examples: Sequence[Example], device: torch.device,
                 final: bool = False) -> dict[str, float]:
        """Metrics on `examples`; `final` asks for the slower, better decoding (beam search)
        that `seqlab eval` reports, where the periodic validation uses the fast one."""
        raise NotImplementedError

    def finish(self, run, model: nn.Module, device: torch.device, log: Callable[[str], None],
               best_step: Any) -> dict[str, float]:
        """The report on the best weights (already loaded, eval mode) once training stops."""
        with torch.no_grad():
            result = self.evaluate(model, self.splits["valid"], device)
        log(f"best model (update {best_step}) on the validation split: "
            + " | ".join(f"{k} {v:.4f}" for k, v in result.items()))
        return result


def _per_model(options, cfg: Config) -> tuple[str, ...]:
    """Options declared as a tuple, a function of the config, or per model.name ("*": any other)."""
    if isinstance(options, dict):
        options = options.get(cfg.model.name, options.get("*", ()))
    return options(cfg) if callable(options) else options


def changed_options(section, defaults, prefix: str, honoured: set[str]) -> list[str]:
    """The options of `section` set away from their defaults that are not `honoured` (the
    built-in fields and the options families and tasks declare, config.declare)."""
    keys = [f.name for f in dataclasses.fields(section)] + list(section.extras())
    return [f"{prefix}.{k}={getattr(section, k)!r}" for k in keys
            if k not in honoured and getattr(section, k) != getattr(defaults, k)]


# -- rows of a batch, for train.grad_accum ---------------------------------------------------------

def rows_of(obj: Any) -> int:
    """The row count of a batch: the leading size of its first tensor."""
    if isinstance(obj, Tensor):
        return obj.size(0)
    values = obj.values() if isinstance(obj, dict) else obj if isinstance(obj, (tuple, list)) else ()
    for value in values:
        found = rows_of(value)
        if found:
            return found
    return 0


def row_slices(rows: int, parts: int) -> list[slice]:
    """`parts` slices of consecutive rows, as even as can be, none empty."""
    if rows < 1:
        raise SeqlabError("train.grad_accum: this task's batches have no rows to divide")
    parts = min(parts, rows)
    bounds = [rows * k // parts for k in range(parts + 1)]
    return [slice(a, b) for a, b in zip(bounds, bounds[1:])]


def take_rows(obj: Any, cut: slice, rows: int | None = None) -> Any:
    """`obj` with every tensor of the batch's row count cut to the rows `cut`."""
    rows = rows_of(obj) if rows is None else rows
    if isinstance(obj, Tensor):
        return obj[cut] if obj.dim() and obj.size(0) == rows else obj
    if isinstance(obj, dict):
        return {k: take_rows(v, cut, rows) for k, v in obj.items()}
    if isinstance(obj, (tuple, list)):
        return type(obj)(take_rows(v, cut, rows) for v in obj)
    return obj


def join_rows(parts: list[Any]) -> Any:
    """Inverse of take_rows over consecutive cuts: tensors concatenated along dim 0."""
    first = parts[0]
    if isinstance(first, Tensor):
        return torch.cat(parts, 0)
    if isinstance(first, (tuple, list)):
        return type(first)(join_rows([p[i] for p in parts]) for i in range(len(first)))
    if isinstance(first, dict):
        return {k: join_rows([p[k] for p in parts]) for k in first}
    return first
