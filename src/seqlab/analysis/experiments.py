"""The lectures' vanishing- and exploding-gradient experiments, as commands.

    seqlab analyze onebit       can the net keep one bit for T steps? success rate against T
                                for the Elman RNN, LSTM and GRU (Bengio, Simard & Frasconi 1994)
    seqlab analyze clipping     an exploding Elman RNN trained with and without global norm
                                clipping: loss and gradient-norm traces (Pascanu, Mikolov & Bengio 2013)
    seqlab analyze forget-bias  LSTM forget-gate bias 0 against 1 on the adding problem
                                (Gers, Schmidhuber & Cummins 2000; Jozefowicz, Zaremba & Sutskever 2015)

Each writes one PNG and, beside it, a JSON file with the same stem holding every number,
the command, the commit and the machine. Every run in them is a `seqlab train task=sequence`
run through the one engine (training/engine.py); this module holds what the three share: the
argument-parser conventions and the report writer. Each experiment lives in its own module
(exp_onebit.py, exp_clipping.py, exp_forget_bias.py).

"""
from __future__ import annotations

import argparse
import importlib
import json
import sys
import time
from datetime import date
from pathlib import Path

from torch import Tensor
from tqdm import tqdm

from seqlab import SeqlabError
from seqlab.io import Output
from seqlab.provenance import commit, machine

EXPERIMENTS = {
    "onebit": "seqlab.analysis.exp_onebit",
    "clipping": "seqlab.analysis.exp_clipping",
    "forget-bias": "seqlab.analysis.exp_forget_bias",
}
CELLS = ("rnn", "lstm", "gru")


def gate_bias(cell, gate: int) -> Tensor:
    """The effective bias of gate block `gate` of a seqlab cell (b_ih + b_hh, both feed it): (H,).
    Gate blocks: LSTM i, f, g, o; GRU r, u, n."""
    H = cell.hidden_size
    return (cell.bias_ih[gate * H:(gate + 1) * H] + cell.bias_hh[gate * H:(gate + 1) * H]).detach()


# -- command-line conventions ------------------------------------------------------------------

def parser(name: str, doc: str, example: str) -> argparse.ArgumentParser:
    """An argument parser whose --help shows defaults, the module's summary and an example."""
    p = argparse.ArgumentParser(
        prog=f"seqlab analyze {name}", formatter_class=_Formatter,
        description=doc.strip(), epilog=f"example:\n  {example}")
    return p


class _Formatter(argparse.ArgumentDefaultsHelpFormatter, argparse.RawDescriptionHelpFormatter):
    pass


def common_options(p: argparse.ArgumentParser, out: str) -> None:
    p.add_argument("--out", default=out, help="PNG to write; the JSON goes beside it with the same stem")
    p.add_argument("--seed", type=int, default=0, help="base random seed (runs use seed, seed + 1, ...)")
    p.add_argument("--threads", type=int, default=1, help="CPU threads for PyTorch (1 is fastest for these small nets)")
    p.add_argument("--progress", action=argparse.BooleanOptionalAction, default=True,
                   help="show a progress bar on stderr")
    p.add_argument("--overwrite", action="store_true", help="replace the files to write if they exist (default: refuse)")


def check_options(args, positive: tuple[str, ...] = ()) -> None:
    """One-line SeqlabErrors for options a user can get wrong."""
    if not str(args.out).lower().endswith(".png"):
        raise SeqlabError(f"--out must name a .png file (the JSON goes beside it), got {args.out!r}")
    # the figure and its JSON, claimed before the runs (kept on args; write_report leaves them out)
    args.figure_output = Output(args.out, "--out", overwrite=args.overwrite)
    args.report_output = Output(Path(args.out).with_suffix(".json"), "--out (its JSON)", overwrite=args.overwrite)
    for name in positive + ("threads",):
        values = getattr(args, name)
        for v in values if isinstance(values, list) else [values]:
            if not v > 0:
                raise SeqlabError(f"--{name.replace('_', '-')} must be positive, got {v}")


def progress(total: int, desc: str, enabled: bool):
    return tqdm(total=total, desc=desc, unit="run", file=sys.stderr, dynamic_ncols=True, disable=not enabled)


def write_report(args, argv: list[str], experiment: str, report: dict, started: float) -> Path:
    """`--out`'s stem + .json, atomically: the experiment's numbers plus how they were made."""
    path = Path(args.out).with_suffix(".json")
    full = {"experiment": experiment, "command": "seqlab analyze " + " ".join(argv),
            "args": {k: v for k, v in vars(args).items() if not isinstance(v, Output)}, **report, "figure": str(args.out),
            "wall_seconds": round(time.perf_counter() - started, 1),
            "commit": commit(), "machine": machine(), "date": date.today().isoformat()}
    args.report_output.write_text(json.dumps(full, indent=2, allow_nan=False) + "\n")
    return path


def main(argv: list[str] | None = None) -> int:
    """argv[0] names the experiment (onebit, clipping, forget-bias); the rest are its options."""
    argv = list(sys.argv[1:] if argv is None else argv)
    if not argv or argv[0] not in EXPERIMENTS:
        got = repr(argv[0]) if argv else "nothing"
        raise SeqlabError(f"name an experiment first: one of {', '.join(EXPERIMENTS)}; got {got}")
    module = importlib.import_module(EXPERIMENTS[argv[0]])
    return module.main(argv)


if __name__ == "__main__":
    raise SystemExit(main())
