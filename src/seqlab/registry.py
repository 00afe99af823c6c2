"""The one place that maps names to classes: models, corpora, benchmarks.

    @register("model", "lstm")
    class ...

An unknown name is a SeqlabError that lists the valid ones.
"""
from __future__ import annotations

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


def _load(kind: str) -> None:
    # Importing the modules that register entries fills the tables lazily, so that
    # `seqlab --help` does not pay for importing every model.
    if kind == "model":
        import seqlab.models.hmm  # noqa: F401
        import seqlab.models.ngram  # noqa: F401
        import seqlab.models.recurrent  # noqa: F401
        import seqlab.models.tcn  # noqa: F401
        import seqlab.models.wavenet  # noqa: F401
        import seqlab.models.window  # noqa: F401
    elif kind == "benchmark":
        import seqlab.bench.bai2018  # noqa: F401
        import seqlab.bench.karpathy2016  # noqa: F401
        import seqlab.bench.suite  # noqa: F401
    elif kind == "task":
        import seqlab.tasks.bilm  # noqa: F401
        import seqlab.tasks.classify  # noqa: F401
        import seqlab.tasks.conditional  # noqa: F401
        import seqlab.tasks.forecast  # noqa: F401
        import seqlab.tasks.tag  # noqa: F401
        import seqlab.tasks.translate  # noqa: F401
    elif kind == "corpus":
        import seqlab.data.sources  # noqa: F401
    elif kind == "dataset":
        import seqlab.data.datasets  # noqa: F401
