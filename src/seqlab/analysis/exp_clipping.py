"""Exploding gradients, with and without global norm clipping.

Pascanu, Mikolov & Bengio (2013), "On the difficulty of training recurrent neural networks":
when the recurrent Jacobians have norms above 1 the gradient through T steps can grow
geometrically, and the loss surface has "cliffs" where one ordinary step of gradient descent
with an ordinary learning rate throws the weights far away. Their remedy rescales the whole
gradient g to norm θ when ‖g‖ > θ (torch.nn.utils.clip_grad_norm_): the direction is kept,
the step is bounded.

Here an Elman (tanh) RNN whose recurrent matrix starts at `--recurrent-scale` times a random
orthogonal matrix (Saxe et al. 2014; model.recurrent_init=orthogonal, model.recurrent_gain),
so its Jacobians start above 1, learns the adding problem over T steps (data/synthetic.py;
predicting 1 always gives MSE ≈ 0.167) by plain SGD. Each run is a `seqlab train
task=sequence data=adding` run through the engine, with the update-by-update record
(train.log_every=1) and no rollback (train.nan_retries=0): the two runs start from the same
weights and see the same batches, and differ only in train.clip_norm (0 = off, or θ). Every
update records the loss and the gradient norm before clipping; the norm applied is
min(norm, θ), as clip_grad_norm_ rescales (tests/training/test_clipping.py measures it from the
weights' change). A run whose loss or gradient stops being finite stops there, marked diverged.

At the defaults (T = 10, hidden 32, scale 1.5, SGD lr 0.1, 1,000 updates of 32) the
unclipped run's gradient norm grows from ~10 to ~10^19 within 30 updates and the loss
overflows, while the clipped run trains to a final MSE near 0.09. Control: the same command
with `--recurrent-scale 0.9` (contracting Jacobians) trains without clipping too (final MSE
0.12, largest gradient norm 7.9), so it is the recurrence, not the learning rate alone,
that blows up. Once the first steps have saturated the tanh units the linear read-out's
own curvature takes over the divergence: the cliff sends the weights where plain SGD at
this rate is unstable.
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
from seqlab.training.guard import Diverged
from seqlab.training.plots import pyplot, save_figure
from seqlab.training.runs import load_trained

VALID_SIZE = 500          # held-out sequences, scored once at the end of a run


def overrides(clip: float, args) -> list[str]:
    """The `seqlab train` options of one run: clip = 0 means no clipping."""
    return ["task=sequence", "data=adding", "model=rnn", f"model.hidden_size={args.hidden}", "model.num_layers=1",
            "model.recurrent_init=orthogonal", f"model.recurrent_gain={args.recurrent_scale}",
            f"task.length={args.steps}", f"task.train_examples={args.updates * args.batch_size}",
            f"task.test_examples={VALID_SIZE}", f"train.batch_size={args.batch_size}", "train.optimizer=sgd",
            "train.momentum=0", f"train.lr={args.lr}", "train.schedule=constant", f"train.max_steps={args.updates}",
            "train.max_epochs=0", f"train.eval_every={args.updates}", "train.log_every=1", "train.early_stop=0",
            f"train.clip_norm={clip}", "train.nan_retries=0", f"train.seed={args.seed}",
            f"train.threads={args.threads}", "train.device=cpu", "train.progress=false"]


def train(clip: float, args, runs: Path) -> dict:
    """One SGD run through the engine; its update-by-update trace."""
    run, options = runs / f"clip{clip:g}", overrides(clip, args)
    diverged_at = None
    try:
        fit(load_config(None, options), run, log=lambda m: None)
    except Diverged as e:
        diverged_at = e.step
    rows = [json.loads(line) for line in (run / "metrics.jsonl").read_text().splitlines()]
    rows = [r for r in rows if r["split"] == "train"]                  # one per update (train.log_every=1)
    trace = {"loss": [r["loss"] for r in rows], "grad_norm": [r["grad_norm"] for r in rows],
             "applied_norm": [min(r["grad_norm"], clip) if clip else r["grad_norm"] for r in rows]}
    if diverged_at is not None:           # the failed update: its loss or norm was not finite
        for values in trace.values():
            values.append(None)
    finite = [v for v in trace["loss"] if v is not None]
    tail = finite[-max(1, len(finite) // 10):]
    weights = None if diverged_at else load_trained(run, "cpu")[2]        # best = last: one evaluation, at the end
    return {"clip": clip or None, **trace, "diverged_at": diverged_at, "command": "seqlab train " + " ".join(options),
            "final_loss": sum(tail) / len(tail) if finite and diverged_at is None else None,
            "max_grad_norm": max((v for v in trace["grad_norm"] if v is not None), default=None),
            "updates_over_threshold": sum(v is not None and v > args.clip for v in trace["grad_norm"]),
            "weight_norm": None if weights is None else
            float(torch.cat([p.detach().flatten() for p in weights.parameters()]).norm())}


def plot(path, results: list[dict], args) -> None:
    plt = pyplot()
    fig, (left, right) = plt.subplots(1, 2, figsize=(11, 4.2), dpi=100)
    for r, colour in zip(results, ("tab:red", "tab:blue")):
        label = f"clipped at {r['clip']:g}" if r["clip"] else "no clipping"
        if r["diverged_at"]:
            label += f" (diverged at update {r['diverged_at']})"
        steps = range(1, len(r["loss"]) + 1)
        left.plot(steps, [math.nan if v is None else v for v in r["loss"]], color=colour, lw=0.9, label=label)
        right.semilogy(steps, [math.nan if v is None else v for v in r["grad_norm"]], color=colour, lw=0.8,
                       label=label + ": before clipping")
        if r["clip"]:
            right.semilogy(steps, r["applied_norm"], color=colour, lw=0.8, ls=":", label="applied (after clipping)")
    left.axhline(1 / 6, color="grey", lw=0.8, ls=":", label="always predict 1 (MSE 1/6)")
    finite = [v for r in results for v in r["loss"] if v is not None]
    top = 1e3                                  # a diverging run leaves the axes: its label says where
    left.set(xlabel="update", ylabel=f"training MSE (cut at {top:g})", yscale="log", title="loss",
             ylim=(min(finite) / 2 if finite else 1e-3, top))
    right.axhline(args.clip, color="grey", lw=0.8, ls="--", label=f"threshold θ = {args.clip:g}")
    right.set(xlabel="update", ylabel="global gradient norm", title="gradient norm (log scale)")
    save_figure(fig, path, f"Exploding gradients (Pascanu et al. 2013): Elman RNN, W_hh = {args.recurrent_scale:g} × "
                           f"orthogonal, adding problem T = {args.steps}, SGD lr {args.lr:g}", grid_and_legend=(left, right))


def main(argv: list[str]) -> int:
    p = common.parser("clipping", __doc__.split("\n\n")[0] + "\n\n" + __doc__.split("\n\n")[2],
                      "seqlab analyze clipping --steps 20 --recurrent-scale 2 --lr 0.1 --out clipping.png")
    p.add_argument("--steps", type=int, default=10, help="sequence length T of the adding problem")
    p.add_argument("--hidden", type=int, default=32, help="hidden units")
    p.add_argument("--recurrent-scale", type=float, default=1.5, help="W_hh starts as this times an orthogonal matrix")
    p.add_argument("--updates", type=int, default=1000, help="SGD updates per run")
    p.add_argument("--batch-size", type=int, default=32, help="sequences per update")
    p.add_argument("--lr", type=float, default=0.1, help="SGD learning rate (the same with and without clipping)")
    p.add_argument("--clip", type=float, default=1.0, help="threshold θ of the clipped run's global gradient norm")
    common.common_options(p, "clipping.png")
    args = p.parse_args(argv[1:])
    common.check_options(args, ("steps", "hidden", "recurrent_scale", "updates", "batch_size", "lr", "clip"))
    if args.steps < 2:
        raise SeqlabError(f"--steps must be at least 2 (the adding problem marks two positions), got {args.steps}")
    torch.set_num_threads(args.threads)
    started = time.perf_counter()
    with common.progress(2, "clipping", args.progress) as bar, \
            tempfile.TemporaryDirectory(prefix="seqlab-clipping-") as folder:
        results = []
        for clip in (0.0, args.clip):
            results.append(train(clip, args, Path(folder)))
            bar.update()
    plot(args.figure_output, results, args)
    path = common.write_report(args, argv, "clipping", {
        "task": {"name": "adding problem", "T": args.steps, "baseline_mse": 1 / 6,
                 "model": f"Elman tanh RNN, hidden {args.hidden}, W_hh = {args.recurrent_scale:g} x orthogonal",
                 "optimizer": f"SGD lr {args.lr:g}"},
        "runs": results}, started)
    print(f"{'run':<16}{'final MSE':>11}{'max grad norm':>15}{'updates > θ':>13}{'diverged at':>13}{'|weights|':>11}")
    for r in results:
        name = f"clip {r['clip']:g}" if r["clip"] else "no clipping"
        final = f"{r['final_loss']:.4f}" if r["final_loss"] is not None else "—"
        print(f"{name:<16}{final:>11}{r['max_grad_norm'] or math.nan:>15.3g}{r['updates_over_threshold']:>13}"
              f"{r['diverged_at'] or '—':>13}{r['weight_norm'] or math.nan:>11.3g}")
    print(f"wrote {args.out} and {path}")
    return 0
