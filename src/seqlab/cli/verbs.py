"""The command line of the verbs tasks declare (training/task.Verb): `seqlab NAME RUN ...`.

A task's verb is found by its entry point (`verb.NAME` in the group seqlab.plugins), so
`seqlab --help` lists it without importing it; the verb's own module is imported only when it
runs. The command uses only the public API: `seqlab.load(RUN)` and the verb's functions.
"""
from __future__ import annotations

import argparse
import json
import sys

from seqlab import SeqlabError


def verb_names() -> dict[str, str]:
    """{command-line name: module} of every declared verb, from the entry points alone."""
    from seqlab.registry import providers
    return {name.replace("_", "-"): module for _, name, module in providers("verb")}


def find(command: str):
    """The Verb spelled `command` on the command line, or None."""
    if command not in verb_names():
        return None
    from seqlab.registry import get
    return get("verb", command.replace("-", "_"))


def add_to_help(sub) -> None:
    """A line per declared verb in `seqlab --help` (its module is not imported)."""
    for command, module in sorted(verb_names().items()):
        sub.add_parser(command, help=f"a task's verb (from {module}); seqlab {command} --help")


def run_verb(verb, argv: list[str]) -> int:
    from seqlab.api import load
    from seqlab.cli.tasks import need

    parser = argparse.ArgumentParser(prog=f"seqlab {verb.cli_name}", description=verb.help or None,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("run", metavar="RUN", help=f"a task.name={verb.task} run made by `seqlab train`")
    parser.add_argument("--device", default="auto", help="'cpu', 'cuda', 'cuda:N' or 'auto' (default)")
    parser.add_argument("--checkpoint", metavar="NAME", default=None,
                        help="one of the run's checkpoints ('step-600', 'last') instead of its best weights")
    parser.add_argument("--json", action="store_true", help="print the result as JSON")
    if verb.arguments is not None:
        verb.arguments(parser)
    args = parser.parse_args(argv)
    need(args.run, verb.name, f"`seqlab {verb.cli_name}`")
    run = load(args.run, args.device, checkpoint=getattr(args, "checkpoint", None))
    result = verb.command(run, args) if verb.command is not None else verb.call(run)
    if isinstance(result, str) and not args.json:
        print(result)
    else:
        try:
            print(json.dumps(result, default=_plain))
        except (TypeError, ValueError) as e:
            raise SeqlabError(f"the verb {verb.cli_name} returned what JSON cannot hold ({e})") from None
    sys.stdout.flush()
    return 0


def _plain(value):
    """NumPy arrays and scalars, and torch tensors, as JSON lists and numbers."""
    if hasattr(value, "tolist"):
        return value.tolist()
    raise TypeError(f"{type(value).__name__} is not JSON")
