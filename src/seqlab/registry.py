"""The one place that maps names to classes: models, tasks, verbs, corpora, benchmarks.

    @register("model", "lstm")
    class ...

An unknown name is a SeqlabError that lists the valid ones.

Which modules register what is not written here: each distribution says it in its entry
points, group `seqlab.plugins`, one entry per module, named `KIND.NAME`:

    [project.entry-points."seqlab.plugins"]
    "model.recurrent" = "seqlab.models.recurrent"     # seqlab's own (pyproject.toml)
    "task.majority" = "my_package.tasks"               # an installed package's

The first time a kind is asked for, the modules of that kind are imported (`seqlab --help`
pays for none of them) and they register their entries. A package installed beside seqlab
adds models, tasks and verbs without a line of seqlab changed; one whose module fails to
import is skipped with a warning naming it, so it cannot break the built-in ones.
"""
from __future__ import annotations

import importlib
import sys
from importlib import metadata
from typing import Callable, TypeVar

from seqlab import SeqlabError

T = TypeVar("T")
GROUP = "seqlab.plugins"
_REGISTRY: dict[str, dict[str, object]] = {}
_LOADED: set[str] = set()
_OWN = __name__.split(".")[0]           # this distribution's top package: its failures are errors


def register(kind: str, name: str) -> Callable[[T], T]:
    def add(obj: T) -> T:
        table = _REGISTRY.setdefault(kind, {})
        if name in table and table[name] is not obj:
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


def known(kind: str) -> list[str]:
    """The names registered so far, without importing anything (for help texts)."""
    return sorted(_REGISTRY.get(kind, {}))


def find(kind: str, name: str):
    """The entry, or None where nothing of that kind has the name."""
    _load(kind)
    return _REGISTRY.get(kind, {}).get(name)


def providers(kind: str | None = None) -> list[tuple[str, str, str]]:
    """(kind, name, module) of every entry point in the group (of one kind), without importing any."""
    found = []
    for ep in metadata.entry_points(group=GROUP):
        what, _, name = ep.name.partition(".")
        if kind is None or what == kind:
            found.append((what, name, ep.value.split(":")[0]))
    return sorted(set(found))


def _load(kind: str) -> None:
    if kind in _LOADED:
        return
    _LOADED.add(kind)
    modules = [module for _, _, module in providers(kind)]
    if not modules and kind in ("model", "task"):
        raise SeqlabError(f"no {kind} is registered: seqlab's entry points ({GROUP}) are missing, so this "
                          f"copy was not installed; run `make venv` (or `pip install -e .`) in its folder")
    for module in modules:
        try:
            importlib.import_module(module)
        except Exception as e:  # noqa: BLE001 - a broken add-on must not take the built-ins down
            if module.split(".")[0] == _OWN:
                raise
            print(f"seqlab: skipping the plug-in module {module} ({GROUP}): it failed to import "
                  f"({type(e).__name__}: {e})", file=sys.stderr)
