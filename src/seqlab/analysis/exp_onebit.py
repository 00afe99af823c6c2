"""One-bit memory: can a recurrent net keep the sign of its first input for T steps?

The latching problem of Bengio, Simard & Frasconi (1994), "Learning long-term dependencies
with gradient descent is difficult": a sequence x_1 … x_T whose first input is the bit,
x_1 = b ∈ {−1, +1} (exactly), and whose other T − 1 inputs are Gaussian noise
x_t ~ N(0, σ²), σ = 0.5 by default; the net reads the whole sequence and must output b at
step T (logistic loss on h_T). Nothing but its position tells x_1 from the noise, so the net
must write it into its state at the first step and keep it through T − 1 distracting inputs.
Bengio et al. show that a state that keeps a bit robustly against such noise is one whose
Jacobian products ∂h_T/∂h_1 vanish, so gradient descent cannot find it as T grows.

Every (cell, init, T, seed) run is a `seqlab train task=sequence data=onebit` run through the
engine (tasks/sequence.py, data/synthetic.py one_bit): hidden 16, one layer (PyTorch's fused
nn.RNN / nn.LSTM / nn.GRU through the one recurrent builder), Adam at 1e-2, global norm
clipped to 1 (seqlab's training default), batches of 32 sequences, each seen once, at most
`--updates` updates. 2,000 held-out validation sequences are scored every 25 updates and
training stops once they are ≥ 99 % right (train.stop_at=99; it could only add to a success);
the best-validated weights are then scored on 2,000 other test sequences. A run SUCCEEDS when
that test accuracy is ≥ 95 %; the success rate of a (cell, T) is the fraction of its seeds
that succeed. Seeds change the initial weights and the order of the training sequences; the
sequences themselves are the same for every seed.

Initialisations (`--inits`): `default` is seqlab's (PyTorch's uniform ±1/√H; the LSTM's
forget-gate bias 1, Jozefowicz et al. 2015). `chrono` is Tallec & Ollivier's (2018, "Can
recurrent neural networks warp time?") chrono initialisation of the gated cells for
dependencies up to T_max = T steps (model.chrono=T, models/body.py): the LSTM's forget-gate
bias b_f ~ log U[1, T − 1] per unit and its input-gate bias −b_f; the GRU's update (keep)
gate bias log U[1, T − 1]. The Elman RNN has no gate to initialise, so it runs under
`default` only.

What was chosen and why (the committed gallery run): σ = 0.5 after trying 0.2, 0.5 and 1.
At σ = 0.2 the Elman net latched the bit in 3 of 3 seeds even at T = 200 (the noise is too
weak to flip a bistable unit, so the problem is not the one Bengio et al. pose); at σ = 1
even chrono-initialised LSTMs failed at T = 200 within the budget (one seed each; the
gallery run was the first and only full run at σ = 0.5). Measured at the defaults (5 seeds,
through the engine): success rates for T = 5, 10, 20, 50, 100, 200 were rnn 100 100 100 40
40 20 %, lstm default 100 100 100 0 0 0 %, lstm chrono 100 100 100 100 100 40 %, gru default
100 100 80 0 0 0 %, gru chrono 100 % throughout. With the `default` init the gated cells' forget/keep gates start
near σ(1) ≈ 0.73 and σ(0) = 0.5, a memory of a few steps, and on this fixed-lag task (no
shorter lags to learn from first) they fail at T ≥ 50 like the RNN; the RNN's 1–2 of 5 at
T ≥ 50 are unexplained (not inspected; a guess: weights grown into a bistable regime). The gates
win only when their bias makes remembering the default, which is the figure's point.
"""
from __future__ import annotations

import json
import math
import tempfile
import time
from pathlib import Path

import torch

from seqlab import SeqlabError
from seqlab.analysis import experiments as common
from seqlab.config import load_config
from seqlab.training.engine import fit
from seqlab.training.plots import pyplot, save_figure

HELD_OUT, EVAL_EVERY, STOP_AT, SUCCESS_AT = 2000, 25, 0.99, 0.95


def overrides(cell: str, init: str, T: int, seed: int, args) -> list[str]:
    """The `seqlab train` options of one run."""
    return ["task=sequence", "data=onebit", f"model={cell}", f"model.hidden_size={args.hidden}", "model.num_layers=1",
            *([f"model.chrono={T}"] if init == "chrono" else []), f"task.length={T}", f"task.noise={args.noise}",
            f"task.train_examples={args.updates * args.batch_size}", f"task.test_examples={HELD_OUT}",
            f"train.batch_size={args.batch_size}", f"train.lr={args.lr}", "train.schedule=constant",
            f"train.max_steps={args.updates}", "train.max_epochs=0", f"train.eval_every={EVAL_EVERY}",
            f"train.log_every={EVAL_EVERY}", "train.early_stop=0", "train.clip_norm=1", f"train.stop_at={100 * STOP_AT:g}",
            f"train.seed={seed}", f"train.threads={args.threads}", "train.device=cpu", "train.progress=false"]


def train_one(cell: str, init: str, T: int, seed: int, args, runs: Path) -> dict:
    """Train one net on the task of length T through the engine; its test accuracy and the updates it used."""
    options, start = overrides(cell, init, T, seed, args), time.perf_counter()
    run = runs / f"{cell}-{init}-T{T}-seed{seed}"
    result = fit(load_config(None, options), run, log=lambda m: None)
    rows = [json.loads(line) for line in (run / "metrics.jsonl").read_text().splitlines()]
    valid = [r for r in rows if r["split"] == "valid"]
    test = result["test_accuracy"] / 100
    return {"cell": cell, "init": init, "T": T, "seed": seed, "test_accuracy": test,
            "success": test >= SUCCESS_AT, "updates": max(r["step"] for r in rows),
            "valid_accuracy": max(r["accuracy"] for r in valid) / 100, "command": "seqlab train " + " ".join(options),
            "seconds": round(time.perf_counter() - start, 2)}


def variants(cells: list[str], inits: list[str]) -> list[tuple[str, str]]:
    """(cell, init) pairs: the RNN has no gate, so it runs once, under `default`."""
    return [(c, i) for c in cells for i in inits if not (c == "rnn" and i != "default")] or \
        [(c, "default") for c in cells]


def summarise(runs: list[dict]) -> list[dict]:
    order = list(dict.fromkeys((r["cell"], r["init"]) for r in runs))       # the order they ran in
    keys = sorted({(r["cell"], r["init"], r["T"]) for r in runs}, key=lambda k: (order.index(k[:2]), k[2]))
    rows = []
    for cell, init, T in keys:
        mine = [r for r in runs if (r["cell"], r["init"], r["T"]) == (cell, init, T)]
        rows.append({"cell": cell, "init": init, "T": T, "seeds": len(mine),
                     "success_rate": sum(r["success"] for r in mine) / len(mine),
                     "mean_test_accuracy": sum(r["test_accuracy"] for r in mine) / len(mine)})
    return rows


def plot(path, summary: list[dict], runs: list[dict], args) -> None:
    plt = pyplot()
    fig, (left, right) = plt.subplots(1, 2, figsize=(11, 4.2), dpi=100)
    colours = {"rnn": "tab:red", "lstm": "tab:blue", "gru": "tab:green"}
    for cell, init in variants(args.cells, args.inits):
        rows = [r for r in summary if (r["cell"], r["init"]) == (cell, init)]
        style = dict(color=colours[cell], ls="-" if init == "chrono" or cell == "rnn" else "--", marker="o", ms=4)
        label = cell if cell == "rnn" else f"{cell}, {init} init"
        left.semilogx([r["T"] for r in rows], [r["success_rate"] for r in rows], label=label, **style)
        right.semilogx([r["T"] for r in rows], [r["mean_test_accuracy"] for r in rows], label=label, **style)
        dots = [r for r in runs if (r["cell"], r["init"]) == (cell, init)]
        right.scatter([r["T"] * (1.03 if init == "chrono" else 0.97) for r in dots],
                      [r["test_accuracy"] for r in dots], s=9, color=colours[cell], alpha=0.35)
    left.set(xlabel="T (steps the bit must be kept)", ylabel=f"success rate (test accuracy ≥ {SUCCESS_AT:.0%})",
             ylim=(-0.05, 1.05), title=f"fraction of {args.seeds} seeds that succeed")
    right.axhline(0.5, color="grey", lw=0.8, ls=":")
    right.set(xlabel="T (steps the bit must be kept)", ylabel="test accuracy", ylim=(0.4, 1.02),
              title="mean test accuracy (dots: seeds)")
    save_figure(fig, path, f"One-bit memory (Bengio et al. 1994): noise σ = {args.noise:g}, hidden {args.hidden}, "
                           f"≤ {args.updates} Adam updates of {args.batch_size}", grid_and_legend=(left, right))


def table(summary: list[dict]) -> str:
    Ts = sorted({r["T"] for r in summary})
    names = list(dict.fromkeys((r["cell"], r["init"]) for r in summary))
    lines = ["success rate (mean test accuracy) by T", f"{'cell, init':<16}" + "".join(f"{T:>14}" for T in Ts)]
    for cell, init in names:
        cells = {r["T"]: r for r in summary if (r["cell"], r["init"]) == (cell, init)}
        lines.append(f"{cell + ', ' + init:<16}" + "".join(
            f"{cells[T]['success_rate']:>6.0%} ({cells[T]['mean_test_accuracy']:.2f})" for T in Ts))
    return "\n".join(lines)


def main(argv: list[str]) -> int:
    p = common.parser("onebit", __doc__.split("\n\n")[0] + "\n\n" + __doc__.split("\n\n")[1],
                      "seqlab analyze onebit --lengths 5 10 20 50 100 200 --seeds 5 --out onebit.png")
    p.add_argument("--cells", nargs="+", default=list(common.CELLS), choices=common.CELLS, help="cells to compare")
    p.add_argument("--inits", nargs="+", default=["default", "chrono"], choices=["default", "chrono"],
                   help="initialisations of the gated cells (the RNN runs under default only)")
    p.add_argument("--lengths", nargs="+", type=int, default=[5, 10, 20, 50, 100, 200], help="values of T")
    p.add_argument("--seeds", type=int, default=5, help="runs per (cell, init, T)")
    p.add_argument("--noise", type=float, default=0.5, help="standard deviation σ of inputs 2 … T")
    p.add_argument("--hidden", type=int, default=16, help="hidden units")
    p.add_argument("--updates", type=int, default=500, help="most updates per run (fewer once validation ≥ 99%%)")
    p.add_argument("--batch-size", type=int, default=32, help="fresh sequences per update")
    p.add_argument("--lr", type=float, default=1e-2, help="Adam learning rate")
    common.common_options(p, "onebit.png")
    args = p.parse_args(argv[1:])
    common.check_options(args, ("lengths", "seeds", "hidden", "updates", "batch_size", "lr"))
    if args.noise < 0 or not math.isfinite(args.noise):
        raise SeqlabError(f"--noise must be a finite σ >= 0, got {args.noise}")
    torch.set_num_threads(args.threads)
    started = time.perf_counter()
    jobs = [(c, i, T, args.seed + k) for T in sorted(set(args.lengths)) for c, i in variants(args.cells, args.inits)
            for k in range(args.seeds)]
    runs = []
    with common.progress(len(jobs), "onebit", args.progress) as bar, \
            tempfile.TemporaryDirectory(prefix="seqlab-onebit-") as folder:
        for cell, init, T, seed in jobs:
            bar.set_postfix_str(f"{cell} {init} T={T}")
            runs.append(train_one(cell, init, T, seed, args, Path(folder)))
            bar.update()
    summary = summarise(runs)
    plot(args.figure_output, summary, runs, args)
    path = common.write_report(args, argv, "onebit", {
        "task": {"first_input": "±1", "noise_sigma": args.noise, "loss": "logistic on h_T",
                 "valid_sequences": HELD_OUT, "stop_at_valid_accuracy": STOP_AT, "eval_every": EVAL_EVERY,
                 "test_sequences": HELD_OUT, "success": f"test accuracy >= {SUCCESS_AT}",
                 "optimizer": f"Adam lr {args.lr:g}, clip 1.0"},
        "summary": summary, "runs": runs}, started)
    print(table(summary))
    print(f"wrote {args.out} and {path}")
    return 0
