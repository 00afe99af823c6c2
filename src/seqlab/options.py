"""The options of a config section: the built-in fields (config.py's dataclasses, `opt`) and
those a model family or a task declares in its own module (`declare`), which are spelled,
typed, saved in config.json, resumed and checked like the built-in ones.

    from seqlab.options import declare
    declare("model", "toy_width", 4, "toy: units of the toy model's one layer")
"""
from __future__ import annotations

import dataclasses
from dataclasses import field
from typing import Any

from seqlab.registry import names

_BUILTIN: dict[str, type] = {}


def opt(default: Any, help: str, **kw: Any) -> Any:
    """A dataclass field with help text (shown by `--help`)."""
    return field(default=default, metadata={"help": help, **kw})


# Options a model family or a task declares in its own module (`declare`), beside the fields
# below: section -> name -> (type, default, help). They are spelled, typed, saved in
# config.json, resumed and checked like the built-in ones.
_DECLARED: dict[str, dict[str, tuple[type, Any, str]]] = {}
DECLARABLE = ("model", "task")


def declare(section: str, name: str, default: bool | int | float | str, help: str) -> None:
    """Add the option `section.name` (a family's or a task's own; section 'model' or 'task'),
    typed by its default. Call it when the family's or task's module is imported:

        declare("model", "toy_width", 4, "toy: units of the toy model's one layer")
    """
    if section not in DECLARABLE:
        raise ValueError(f"options are declared in {' or '.join(DECLARABLE)}, not {section!r}")
    if not name.isidentifier() or name.startswith("_"):
        raise ValueError(f"option name {name!r} must be a Python identifier not starting with _")
    builtin = {f.name for f in dataclasses.fields(_BUILTIN[section])} if section in _BUILTIN else set()
    typ = type(default)
    if name in builtin or (name in _DECLARED.get(section, {}) and _DECLARED[section][name][:2] != (typ, default)):
        raise ValueError(f"option {section}.{name} is declared twice")
    if typ not in (bool, int, float, str):
        raise ValueError(f"{section}.{name}: a default of type bool, int, float or str is needed, got {typ.__name__}")
    _DECLARED.setdefault(section, {})[name] = (typ, default, help)


def declared(section: str) -> dict[str, tuple[type, Any, str]]:
    """The options declared for `section` by the modules imported so far."""
    return dict(_DECLARED.get(section, {}))


class _Section:
    """What the config sections share: a declared option not set reads as its default."""
    _section = ""

    def __init_subclass__(cls, **kw):
        super().__init_subclass__(**kw)
        _BUILTIN[cls._section] = cls          # (the dataclass decorator runs after this: fields read lazily)

    def __getattr__(self, name: str) -> Any:
        if not name.startswith("_"):
            found = _DECLARED.get(self._section, {}).get(name)
            if found is None and self._section in DECLARABLE:
                load_declaring()
                found = _DECLARED.get(self._section, {}).get(name)
            if found is not None:
                return found[1]
        raise AttributeError(f"{type(self).__name__} has no option {name!r}")

    def extras(self) -> dict[str, Any]:
        """The declared options of this section, with their values."""
        return {name: getattr(self, name) for name in _DECLARED.get(self._section, {})}


def load_declaring() -> None:
    """Import every family and task, so that their declared options are known."""
    for kind in DECLARABLE:
        names(kind)
