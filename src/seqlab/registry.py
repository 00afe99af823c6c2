"""The one place that maps names to classes: models, corpora, benchmarks.

    @register("model", "lstm")
    class ...

An unknown name is a SeqlabError that lists the valid ones.
"""
from __future__ import annotations

import importlib
from typing import Callable, TypeVar

from seqlab import SeqlabError

T = TypeVar("T")
_REGISTRY: dict[str, dict[str, object]] = {}


def register(kind: str, name: str) -> Callable[[T], T]:
    def add(obj: T) -> T:
        table = _REGISTRY.setdefault(kind, {})
        if name in table:
            raise ValueError(f"{kind} {name!r} registered twice")
        table[name] = obj
        return obj

    return add


def names(kind: str) -> list[str]:
    _load(kind)
    return sorted(_REGISTRY.get(kind, {}))


def get(kind: str, name: str):
    _load(kind)
    table = _REGISTRY.get(kind, {})
    if name not in table:
        raise SeqlabError(f"unknown {kind} {name!r}; valid: {', '.join(sorted(table)) or '(none)'}")
    return table[name]


# The modules whose import registers each kind's entries. The registry (floor 0) names them
# instead of importing them, so the core imports nothing above it: they are loaded by name,
# lazily, the first time a kind is asked for (`seqlab --help` pays for none of them).
PROVIDERS: dict[str, tuple[str, ...]] = {
    "model": ("seqlab.models.hmm", "seqlab.models.ngram", "seqlab.models.recurrent", "seqlab.models.tcn",
              "seqlab.models.wavenet", "seqlab.models.window"),
    "benchmark": ("seqlab.bench.bai2018", "seqlab.bench.karpathy2016", "seqlab.bench.suite"),
    "task": ("seqlab.tasks.bilm", "seqlab.tasks.caption", "seqlab.tasks.classify", "seqlab.tasks.conditional", "seqlab.tasks.forecast",
             "seqlab.tasks.lm", "seqlab.tasks.sequence", "seqlab.tasks.speech", "seqlab.tasks.tag", "seqlab.tasks.translate"),
    "corpus": ("seqlab.data.sources",),
    "dataset": ("seqlab.data.datasets",),
}


def _load(kind: str) -> None:
    for module in PROVIDERS.get(kind, ()):
        importlib.import_module(module)
