"""The lectures' vanishing- and exploding-gradient experiments, as commands.

    seqlab analyze onebit       can the net keep one bit for T steps? success rate against T
                                for the Elman RNN, LSTM and GRU (Bengio, Simard & Frasconi 1994)
    seqlab analyze clipping     an exploding Elman RNN trained with and without global norm
                                clipping: loss and gradient-norm traces (Pascanu, Mikolov & Bengio 2013)
    seqlab analyze forget-bias  LSTM forget-gate bias 0 against 1 on the adding problem
                                (Gers, Schmidhuber & Cummins 2000; Jozefowicz, Zaremba & Sutskever 2015)

Each writes one PNG and, beside it, a JSON file with the same stem holding every number,
the command, the commit and the machine. This module holds what the three share: the
read-out model over seqlab's own recurrent layers, the argument-parser conventions and the
report writer; each experiment lives in its own module (exp_onebit.py, exp_clipping.py,
exp_forget_bias.py).

Dimension legend: B batch, T time, I input size, H hidden units, K outputs.
"""
from __future__ import annotations

import argparse
import importlib
import json
import math
import sys
import time
from datetime import date
from pathlib import Path

import torch
from torch import Tensor, nn

from seqlab import SeqlabError
from seqlab.config import ModelConfig
from seqlab.io import atomic_write_text, check_output
from seqlab.models.body import cell_factory
from seqlab.models.stack import RecurrentStack
from seqlab.provenance import commit, machine

EXPERIMENTS = {
    "onebit": "seqlab.analysis.exp_onebit",
    "clipping": "seqlab.analysis.exp_clipping",
    "forget-bias": "seqlab.analysis.exp_forget_bias",
}
CELLS = ("rnn", "lstm", "gru")


class LastStepModel(nn.Module):
    """One layer of a seqlab cell read out at the last step:

        x (B, T, I) -> RecurrentStack (seqlab's cell, fast path) (B, T, H) -> h_T (B, H)
                    -> linear (B, K)

    The cell is built exactly as `seqlab train model.name=...` builds it (models/recurrent.py
    `cell_factory`), so the LSTM's forget-gate bias is ModelConfig.forget_bias."""

    def __init__(self, cell: str, input_size: int, hidden_size: int, outputs: int = 1,
                 forget_bias: float = 1.0):
        super().__init__()
        if cell not in CELLS:
            raise SeqlabError(f"unknown cell {cell!r}; valid: {', '.join(CELLS)}")
        if hidden_size < 1:
            raise SeqlabError(f"--hidden must be at least 1, got {hidden_size}")
        self.cell_name, self.hidden_size = cell, hidden_size
        cfg = ModelConfig(name=cell, forget_bias=forget_bias, num_layers=1, dropout=0.0)
        self.rnn = RecurrentStack(cell_factory(cfg), input_size, hidden_size, num_layers=1)
        self.head = nn.Linear(hidden_size, outputs)

    @property
    def cell(self):
        return self.rnn.layers[0].cell

    def forward(self, x: Tensor) -> Tensor:
        out, _ = self.rnn(x)                                                # (B, T, H)
        return self.head(out[:, -1])                                        # (B, K)


def gate_bias(cell, gate: int) -> Tensor:
    """The effective bias of gate block `gate` (b_ih + b_hh, both feed it): (H,)."""
    H = cell.hidden_size
    return (cell.bias_ih[gate * H:(gate + 1) * H] + cell.bias_hh[gate * H:(gate + 1) * H]).detach()


@torch.no_grad()
def set_gate_bias(cell, gate: int, value: Tensor | float) -> None:
    """Make the effective bias of gate block `gate` equal `value`, split evenly between b_ih and
    b_hh as LSTMCell.set_forget_bias does. Gate blocks: LSTM i, f, g, o; GRU r, u, n."""
    H = cell.hidden_size
    for bias in (cell.bias_ih, cell.bias_hh):
        bias[gate * H:(gate + 1) * H] = torch.as_tensor(value, dtype=bias.dtype) / 2


def grad_norm(parameters) -> float:
    """The global L2 norm of the gradients, as clip_grad_norm_ measures it."""
    norms = [p.grad.detach().norm() for p in parameters if p.grad is not None]
    return float(torch.stack(norms).norm()) if norms else 0.0


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


def check_options(args, positive: tuple[str, ...] = ()) -> None:
    """One-line SeqlabErrors for options a user can get wrong."""
    if not str(args.out).lower().endswith(".png"):
        raise SeqlabError(f"--out must name a .png file (the JSON goes beside it), got {args.out!r}")
    check_output(args.out, "--out")
    check_output(Path(args.out).with_suffix(".json"), "--out (its JSON)")
    for name in positive + ("threads",):
        values = getattr(args, name)
        for v in values if isinstance(values, list) else [values]:
            if not v > 0:
                raise SeqlabError(f"--{name.replace('_', '-')} must be positive, got {v}")


def progress(total: int, desc: str, enabled: bool):
    from tqdm import tqdm
    return tqdm(total=total, desc=desc, unit="run", file=sys.stderr, dynamic_ncols=True, disable=not enabled)


def finite_or_none(x: float) -> float | None:
    """JSON has no NaN or infinity: a diverged value is written as null."""
    return x if math.isfinite(x) else None


def write_report(args, argv: list[str], experiment: str, report: dict, started: float) -> Path:
    """`--out`'s stem + .json, atomically: the experiment's numbers plus how they were made."""
    path = Path(args.out).with_suffix(".json")
    full = {"experiment": experiment, "command": "seqlab analyze " + " ".join(argv),
            "args": vars(args), **report, "figure": str(args.out),
            "wall_seconds": round(time.perf_counter() - started, 1),
            "commit": commit(), "machine": machine(), "date": date.today().isoformat()}
    atomic_write_text(path, json.dumps(full, indent=2, allow_nan=False) + "\n")
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
