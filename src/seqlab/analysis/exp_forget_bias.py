"""LSTM forget-gate bias 0 against 1 on a long-dependency task.

Gers, Schmidhuber & Cummins (2000), "Learning to forget", gave the LSTM its forget gate
f_t = σ(W_f x_t + U_f h_{t−1} + b_f), so c_t = f_t ⊙ c_{t−1} + i_t ⊙ g_t. With b_f = 0 the gate
starts near σ(0) = 0.5 and the cell halves its memory every step, so the gradient reaching
a step k steps back is scaled by about 2^−k; Jozefowicz, Zaremba & Sutskever (2015), "An
empirical exploration of recurrent network architectures", found that b_f = 1 (f ≈ 0.73)
closes most of the LSTM's gap to the best architectures they searched, and seqlab starts
every LSTM there (ModelConfig.forget_bias).

Task: the adding problem over T steps (Hochreiter & Schmidhuber 1997; data/synthetic.py):
two marked values among T, the target their sum; predicting 1 always gives MSE ≈ 0.167.
Model: one LSTM layer (seqlab's LSTMCell, models/cells.py, whose forget bias is set by
model.forget_bias) read out linearly at the last step; Adam, global norm clipped to 1. Every
run is a `seqlab train task=sequence data=adding` run through the engine (tasks/sequence.py):
updates × batch training sequences, each seen once, and 1,000 held-out sequences scored every
`--eval-every` updates. Both settings see the same seeds (weights and batches) and differ only
in b_f; the figure shows the mean over seeds and the band between the best and worst seed.
"""
from __future__ import annotations

import json
import tempfile
import time
from pathlib import Path

import torch

from seqlab import SeqlabError
from seqlab.analysis import experiments as common
from seqlab.config import load_config
from seqlab.tasks.sequence import SequenceTask
from seqlab.training.engine import fit
from seqlab.training.plots import pyplot, save_figure

TEST_SIZE, BASELINE = 1000, 1 / 6
LEARNT = BASELINE / 10               # a seed has learnt the task below a tenth of the always-1 MSE
FORGET = 1                                                     # LSTM gate blocks: i, f, g, o


def train_one(forget_bias: float, seed: int, args, runs: Path) -> dict:
    """One LSTM with this forget bias, a `seqlab train task=sequence data=adding` run through the
    engine; its held-out MSE curve."""
    overrides = ["task=sequence", "data=adding", "model=lstm", "model.impl=fast", f"model.hidden_size={args.hidden}",
                 "model.num_layers=1", f"model.forget_bias={forget_bias}", f"task.length={args.steps}",
                 f"task.train_examples={args.updates * args.batch_size}", f"task.test_examples={TEST_SIZE}",
                 f"train.batch_size={args.batch_size}", f"train.lr={args.lr}", "train.schedule=constant",
                 f"train.max_steps={args.updates}", "train.max_epochs=0", f"train.eval_every={args.eval_every}",
                 f"train.log_every={args.eval_every}", "train.early_stop=0", "train.clip_norm=1", f"train.seed={seed}",
                 f"train.threads={args.threads}", "train.device=cpu", "train.progress=false"]
    cfg = load_config(None, overrides)
    torch.manual_seed(seed)
    model = SequenceTask(cfg).build_model()                 # the run's initial weights (the engine seeds alike)
    initial_forget_bias = float(common.gate_bias(model.rnn.layers[0].cell, FORGET).mean())
    run, start = runs / f"bias{forget_bias:g}-seed{seed}", time.perf_counter()
    fit(cfg, run, log=lambda m: None)
    rows = [json.loads(line) for line in (run / "metrics.jsonl").read_text().splitlines()]
    train = {r["step"]: r["loss"] for r in rows if r["split"] == "train"}
    curve = [{"update": r["step"], "test_mse": r["loss"], "train_mse": train.get(r["step"])}
             for r in rows if r["split"] == "valid"]
    return {"forget_bias": forget_bias, "seed": seed, "initial_forget_bias": initial_forget_bias,
            "command": "seqlab train " + " ".join(overrides), "curve": curve,
            "final_test_mse": curve[-1]["test_mse"], "best_test_mse": min(c["test_mse"] for c in curve),
            "seconds": round(time.perf_counter() - start, 1)}


def summarise(runs: list[dict], biases: list[float]) -> list[dict]:
    rows = []
    for bias in biases:
        mine = [r for r in runs if r["forget_bias"] == bias]
        finals = [r["final_test_mse"] for r in mine]
        solved = [r for r in mine if r["final_test_mse"] < LEARNT]
        rows.append({"forget_bias": bias, "seeds": len(mine), "mean_final_test_mse": sum(finals) / len(finals),
                     "min_final_test_mse": min(finals), "max_final_test_mse": max(finals),
                     "seeds_below_tenth_of_baseline": len(solved)})
    return rows


def plot(path, runs: list[dict], biases: list[float], args) -> None:
    plt = pyplot()
    fig, ax = plt.subplots(figsize=(7.5, 4.5), dpi=100)
    for bias, colour in zip(biases, ("tab:orange", "tab:blue", "tab:green", "tab:purple", "tab:red")):
        mine = [r for r in runs if r["forget_bias"] == bias]
        updates = [c["update"] for c in mine[0]["curve"]]
        table = torch.tensor([[c["test_mse"] for c in r["curve"]] for r in mine])    # (seeds, evaluations)
        ax.plot(updates, table.mean(0), color=colour, lw=1.8, label=f"forget bias {bias:g} (mean of {len(mine)} seeds)")
        ax.fill_between(updates, table.min(0).values, table.max(0).values, color=colour, alpha=0.2)
    ax.axhline(BASELINE, color="grey", lw=0.8, ls=":", label="always predict 1 (MSE 1/6)")
    ax.set(xlabel="update", ylabel="test MSE", yscale="log")
    save_figure(fig, path, f"LSTM forget-gate bias (Gers et al. 2000; Jozefowicz et al. 2015): adding problem "
                           f"T = {args.steps},\nhidden {args.hidden}, Adam {args.lr:g}; band = best to worst seed",
                grid_and_legend=(ax,))


def main(argv: list[str]) -> int:
    p = common.parser("forget-bias", __doc__.split("\n\n")[0] + "\n\n" + __doc__.split("\n\n")[1],
                      "seqlab analyze forget-bias --steps 50 --seeds 5 --updates 1500 --out forget-bias.png")
    p.add_argument("--biases", nargs="+", type=float, default=[0.0, 1.0], help="initial forget-gate biases to compare")
    p.add_argument("--steps", type=int, default=100, help="sequence length T of the adding problem")
    p.add_argument("--seeds", type=int, default=3, help="runs per bias")
    p.add_argument("--hidden", type=int, default=32, help="hidden units")
    p.add_argument("--updates", type=int, default=2000, help="Adam updates per run")
    p.add_argument("--batch-size", type=int, default=32, help="fresh sequences per update")
    p.add_argument("--lr", type=float, default=3e-3, help="Adam learning rate")
    p.add_argument("--eval-every", type=int, default=50, help="score the test set every N updates")
    common.common_options(p, "forget-bias.png")
    args = p.parse_args(argv[1:])
    common.check_options(args, ("steps", "seeds", "hidden", "updates", "batch_size", "lr", "eval_every"))
    if args.steps < 2:
        raise SeqlabError(f"--steps must be at least 2 (the adding problem marks two positions), got {args.steps}")
    biases = list(dict.fromkeys(args.biases))
    torch.set_num_threads(args.threads)
    started = time.perf_counter()
    runs = []
    with common.progress(len(biases) * args.seeds, "forget-bias", args.progress) as bar, \
            tempfile.TemporaryDirectory(prefix="seqlab-forget-bias-") as folder:
        for k in range(args.seeds):
            for bias in biases:
                bar.set_postfix_str(f"bias {bias:g} seed {args.seed + k}")
                runs.append(train_one(bias, args.seed + k, args, Path(folder)))
                bar.update()
    summary = summarise(runs, biases)
    plot(args.figure_output, runs, biases, args)
    path = common.write_report(args, argv, "forget-bias", {
        "task": {"name": "adding problem", "T": args.steps, "baseline_mse": BASELINE, "held_out_sequences": TEST_SIZE,
                 "learnt": f"final test MSE < {LEARNT:.4f} (a tenth of the baseline)",
                 "model": f"seqlab LSTMCell, hidden {args.hidden}, linear read-out of h_T",
                 "optimizer": f"Adam lr {args.lr:g}, clip 1.0"},
        "summary": summary, "runs": runs}, started)
    print(f"{'forget bias':<13}{'mean final MSE':>16}{'best seed':>11}{'worst seed':>12}{'seeds learnt':>14}")
    for r in summary:
        print(f"{r['forget_bias']:<13g}{r['mean_final_test_mse']:>16.4f}{r['min_final_test_mse']:>11.4f}"
              f"{r['max_final_test_mse']:>12.4f}{r['seeds_below_tenth_of_baseline']:>10}/{r['seeds']}")
    print(f"wrote {args.out} and {path}")
    return 0
