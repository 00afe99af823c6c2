"""`seqlab sample`: continue a prime from a trained language model (streamed), draw several
continuations as one batch (--num-samples), or search with a beam; conditional runs write a
sentence of a class (cli_tasks.py).

Imports inside the command functions are deliberate: only the command that runs pays for
torch and the modules it needs, so `seqlab --help` and a mistyped option answer at once."""
from __future__ import annotations

import sys

from seqlab import SeqlabError
from seqlab.cli_tasks import _task_of


def flag(name: str) -> str:
    """How the command line names an option of the Python API: top_p -> --top-p."""
    return "--" + name.replace("_", "-")


def cmd_sample(args) -> int:
    from seqlab.api import load
    from seqlab.api.run import check_sampling

    check_sampling(args.length, args.temperature, args.top_k, args.top_p, args.beam, args.greedy, args.num_samples,
                   args.alpha, flag)
    task = _task_of(args.run)
    if task == "conditional" and args.num_samples > 1:
        raise SeqlabError("--num-samples applies to language-model runs; a conditional run writes one "
                          "sentence per --condition")
    if task not in ("lm", "conditional"):
        # classify, tag, translate, caption and forecast runs have a verb of their task's name
        instead = f"; use `seqlab {task} {args.run} ...`" if task in ("classify", "tag", "translate", "caption", "forecast") else ""
        raise SeqlabError(f"{args.run} is a task.name={task} run, not a language model; seqlab sample reads "
                          f"task.name=lm runs{instead}")
    if args.condition and task != "conditional":
        raise SeqlabError("--condition applies to task.name=conditional runs")
    if args.prime == "":
        raise SeqlabError("--prime is empty; give some text, or leave --prime out")
    run = load(args.run, args.device)
    options = dict(temperature=args.temperature, top_k=args.top_k, top_p=args.top_p, seed=args.seed)
    word_level = task == "conditional" or run._vocab.level == "word"
    lead = (args.prime or "") + (" " if args.prime and word_level else "")
    out = sys.stdout
    if args.num_samples > 1:
        samples = run.sample(args.prime, args.length, num_samples=args.num_samples, **options)
        out.write(lead + samples[0] + "\n")
        for text in samples[1:]:
            out.write("----\n" + lead + text + "\n")
        return 0
    pieces = run.stream(args.prime, args.length, greedy=args.greedy, beam=args.beam, alpha=args.alpha,
                        condition=args.condition, name=flag, **options)
    first = next(pieces)              # the prime is checked before anything is written
    out.write(lead + first)
    out.flush()
    for piece in pieces:
        out.write(piece)
        out.flush()
    out.write("\n")
    return 0
