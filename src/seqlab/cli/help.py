"""`seqlab train --help`'s table of options: every option with its type, default and help, the
registered names of model.name and task.name (plug-ins' too), narrowed by `train --help
task=T model=M` to what such a run uses and by `train --help SECTION` to one section."""
from __future__ import annotations

from dataclasses import dataclass

from seqlab import SeqlabError


@dataclass(frozen=True)
class Narrowed:
    """Which options `train --help` shows: some sections, and of them what a run honours."""
    sections: frozenset[str] | None = None
    honoured: dict[str, set[str]] | None = None
    title: str = ""


def _help_table(only: Narrowed = Narrowed()) -> str:
    from seqlab.config import all_keys
    from seqlab.registry import known

    lines = [only.title or "options (as section.key=value; defaults shown):"]
    section = ""
    sections, honoured = only.sections, only.honoured
    for key, typ, default, help_text in all_keys():
        part, name = key.split(".", 1)
        if (sections and part not in sections) or (honoured and part in honoured and name not in honoured[part]):
            continue
        if key.split(".")[0] != section:
            section = key.split(".")[0]
            lines.append(f"  [{section}]")
        if key in ("model.name", "task.name") and known(key.split(".")[0]):
            help_text = _registered(key.split(".")[0], help_text)
        shown = f"{key}={default!r}" if isinstance(default, str) else f"{key}={default}"
        lines.append(f"    {shown:<32} {typ.__name__:<5} {help_text}")
    return "\n".join(lines)


def _narrow_help(words: list[str]) -> Narrowed:
    """`train --help model` shows one section; `train --help task=tag model=gru` the options that
    run would use (what its task and model family honour), each with its help."""
    from seqlab.config import SECTIONS, Config, apply, parse_overrides
    from seqlab.registry import get
    bare = [w for w in words if "=" not in w]
    unknown = [w for w in bare if w not in SECTIONS]
    if unknown:
        raise SystemExit(f"seqlab train --help: {unknown[0]!r} is not a section ({', '.join(SECTIONS)}) "
                         f"nor section.key=value")
    sections = frozenset(bare) or None
    picks = [w for w in words if "=" in w]
    if not picks:
        return Narrowed(sections)
    try:                                     # typed, not judged: a help needs no data
        cfg = apply(Config(), parse_overrides(picks))
        honoured = get("task", cfg.task.name).honoured(cfg)
    except SeqlabError as e:
        raise SystemExit(f"seqlab: error: {e}") from None
    return Narrowed(sections, honoured, f"options a run of task.name={cfg.task.name} with model.name="
                                        f"{cfg.model.name} uses (all of them: seqlab train --help):")


def _registered(kind: str, help_text: str) -> str:
    """The help of model.name / task.name with every registered name, a plug-in's too (train --help
    imports them all), and the models only some tasks build (classify's bow, forecast's ar)."""
    from seqlab.registry import get, known
    text = help_text.split(":")[0] + ": " + ", ".join(known(kind))
    if kind == "model":
        own = {}
        for task in known("task"):
            for name in set(get("task", task).models) - set(known("model")):
                own.setdefault(name, []).append(task)
        text += "".join(f"; {name} (task.name={' or '.join(sorted(t))})" for name, t in sorted(own.items()))
    return text
