"""The command line, floor 6: one module per group of verbs, each with its parsers beside it.

    commands.py  the `seqlab` parser and main(): train, eval, data, analyze, viz, gallery, info
    help.py      train --help's table of options (narrowed by task=, model= or a section)
    sample.py    sample (text, ABC tunes, speech)        tasks.py   classify, tag, translate, forecast, caption
    compress.py  compress / decompress                   bench.py   seqlab bench
    verbs.py     the verbs tasks declare (plug-ins' too) guard.py   how every command ends: errors, signals, pipes
    info.py      seqlab info                             launch.py  the console script

It uses the public API (seqlab.load, seqlab.train) and the registry, never a Run's insides.
`python -m seqlab.cli ARGS` is `seqlab ARGS` (torchrun uses it). Importing this package imports
nothing else until `main` or `build_parser` is asked for, so the console script (launch.py) is
running, and catching Ctrl-C, before anything heavy loads.
"""
from __future__ import annotations

__all__ = ["build_parser", "main"]


def __getattr__(name: str):
    if name in __all__:
        from seqlab.cli import commands
        return getattr(commands, name)
    raise AttributeError(f"module 'seqlab.cli' has no attribute {name!r}")
