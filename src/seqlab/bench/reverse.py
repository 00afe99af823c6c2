"""The reverse task: attention seq2seq models (Bahdanau; Luong general and dot) against the
same model without attention, at the same budget, through seqlab's own engine and task.

    seqlab bench reverse --out benchmarks/reverse

Every model is a `seqlab train task=translate data=reverse` run (tasks/translate.py; the
command is in the report): 20,000 pairs whose source is 5 to 20 symbols, uniform over an
alphabet of 10, and whose target is the source reversed (data/synthetic.py), split once into
17,500 training, 500 validation and 2,000 test pairs, so the score is on sequences never
trained on.

Model (models/seq2seq.py): LSTM, 1 layer, embedding 32, hidden 128 (64 per encoder
direction), no dropout; teacher forcing; Adam 3e-3 with a cosine decay to 0 over the update
budget, gradient norm clipped to 1; batches shuffled from (seed, epoch). Every model sees
the same batches.

Scored on the test split with greedy decoding: sequence accuracy (the whole output equals
the target) and token accuracy (position by position over the target's length); beam search
(width 5, alpha = 0.6) too. The validation split is decoded every `--eval-every` updates to
record when a model first passes 99%. A heat map of the attention on one test example is
written beside the report (`<out>_attention.png`).
"""
from __future__ import annotations

import json
import tempfile
import time
from pathlib import Path

import torch

from seqlab.analysis.attention import plot_attention
from seqlab.bench.common import bench_parser, clock, command_line, provenance, record, write_report
from seqlab.config import load_config
from seqlab.training.engine import fit
from seqlab.training.runs import load_trained

NAMES = {"bahdanau": "Bahdanau (additive) attention", "luong_general": "Luong (general) attention, input feeding",
         "luong_dot": "Luong (dot) attention, input feeding", "none": "no attention (Sutskever et al. 2014)"}


def train_one(attention: str, args, runs: Path) -> dict:
    """One `seqlab train task=translate data=reverse` run, and its test scores."""
    overrides = ["task=translate", "data=reverse", "model=lstm", "model.embedding_size=32",
                 f"model.hidden_size={args.hidden}", "model.num_layers=1", "model.dropout=0",
                 f"task.attention={attention}", "task.beam_size=5", "task.length_penalty=0.6", "task.batching=shuffle",
                 "data.valid_fraction=0.025", "data.test_fraction=0.1", f"train.batch_size={args.batch_size}",
                 f"train.lr={args.lr}", "train.schedule=cosine", f"train.max_steps={args.steps}", "train.max_epochs=0",
                 f"train.eval_every={args.eval_every}", "train.early_stop=0", "train.clip_norm=1", f"train.log_every={args.eval_every}",
                 f"train.seed={args.seed}", f"train.threads={args.threads}", "train.device=cpu", "train.progress=false"]
    run = runs / attention
    print(f"{attention}: seqlab train {' '.join(overrides)}", flush=True)
    fit(load_config(None, overrides), run, log=lambda m: print(f"  {m}", flush=True))
    rows = [json.loads(line) for line in (run / "metrics.jsonl").read_text().splitlines()]
    valid = [r for r in rows if r["split"] == "valid"]
    train = [r for r in rows if r["split"] == "train"]
    seconds_at = {r["step"]: r["elapsed"] for r in train}          # training seconds by update (logged ones)
    reached = next(({"step": r["step"], "train_seconds": round(seconds_at.get(r["step"], float("nan")), 1)}
                    for r in valid if r["sequence_accuracy"] >= 0.99), None)
    last = train[-1] if train else {"elapsed": float("nan"), "loss": float("nan")}
    cfg, task, model, device = load_trained(run, "cpu")
    task.prepare(lambda m: None)
    test = task.splits["test"]
    start = time.perf_counter()
    with torch.no_grad():
        greedy, beam = task.evaluate(model, test, device), task.evaluate(model, test, device, final=True)
    return {"attention": attention, "name": NAMES[attention], "command": "seqlab train " + " ".join(overrides),
            "parameters": sum(p.numel() for p in model.parameters()), "updates": max(r["step"] for r in rows),
            "train_seconds": round(last["elapsed"], 1), "final_train_loss": last["loss"],
            "greedy": greedy, "beam5": beam, "test_decode_seconds": round(time.perf_counter() - start, 1),
            "valid_99_reached": reached, "test_examples": len(test),
            "curve": [{"step": r["step"], "valid_sequence_accuracy": r["sequence_accuracy"]} for r in valid],
            "run": (task, model, test)}


def heat_map(task, model, test, path: str) -> None:
    """The attention weights of a long test example, as the greedy decoder produced its output."""
    src = max(test[:50], key=lambda example: len(example[0]))[0]          # a long one shows the pattern
    out = task.translate(model, [src], torch.device("cpu"))[0]
    batch = task.collate([(src, out)], torch.device("cpu"))
    with torch.no_grad():
        _, weights = model(batch["src"], batch["src_lengths"], batch["tgt_in"])           # (1, U, S)
    plot_attention(path, weights[0], [task.src_vocab.itos[t] for t in src], [task.tgt_vocab.itos[t] for t in out] + ["<eos>"],
                   title=f"{NAMES[model.attention_kind]}: reversing {len(src)} symbols (greedy output)")


def markdown(r: dict) -> str:
    a = r["args"]
    rows = "\n".join(
        f"| {x['name']} | {x['parameters']:,} | {x['updates']:,} | {x['train_seconds']:.0f} | "
        f"{x['final_train_loss']:.4f} | **{100 * x['greedy']['sequence_accuracy']:.2f}%** | "
        f"{100 * x['greedy']['token_accuracy']:.2f}% | {100 * x['beam5']['sequence_accuracy']:.2f}% | "
        + (f"{x['valid_99_reached']['step']:,} ({x['valid_99_reached']['train_seconds']:.0f} s)"
           if x["valid_99_reached"] else "not reached") + " |"
        for x in r["results"])
    return (
        "# Reverse task: seq2seq with and without attention\n\n"
        f"`seqlab train task=translate data=reverse` runs through seqlab's engine: 20,000 pairs of 5–20 symbols "
        f"over an alphabet of 10, target = the source reversed, split 17,500 / 500 / 2,000. LSTM, 1 layer, "
        f"embedding 32, hidden {a['hidden']} ({a['hidden'] // 2} per encoder direction), no dropout; teacher "
        f"forcing; Adam {a['lr']:g} with a cosine decay to 0 over {a['steps']:,} updates of {a['batch_size']} "
        f"shuffled pairs (the same batches for every model); clip 1. Scored on the "
        f"{r['results'][0]['test_examples']:,} test pairs never trained on; greedy decoding unless noted. "
        f"Sequence accuracy counts an output right only if all of it equals the target.\n\n"
        "| model | parameters | updates | train s | final train loss | test sequence accuracy (greedy) | "
        "token accuracy | sequence accuracy, beam 5 | first ≥ 99% on validation |\n"
        "|---|---:|---:|---:|---:|---:|---:|---:|---:|\n" + rows + "\n\n"
        f"Attention heat map of one test example: `{r['heat_map']}`. Validation (500 pairs) "
        f"decoded every {a['eval_every']} updates; times are training seconds only (decoding excluded). "
        f"Total wall time of the benchmark: {r['wall_seconds'] / 60:.1f} min, on a machine shared with other "
        f"jobs (1-minute load average {r['load_average'][0]:g} at the start, {r['load_average'][1]:g} at the end), "
        f"so the seconds are upper bounds. Each row reruns alone with its command in "
        f"`benchmarks/results/reverse.json`.\n\n" + provenance(r))


def main(argv=None) -> int:
    p = bench_parser("reverse", __doc__, "benchmarks/reverse")
    p.add_argument("--attention", nargs="+", default=["bahdanau", "luong_general", "luong_dot", "none"], choices=list(NAMES),
                   help="models to train, each with the same budget")
    p.add_argument("--steps", type=int, default=1500, help="updates per model")
    p.add_argument("--batch-size", type=int, default=64, help="pairs per update")
    p.add_argument("--lr", type=float, default=3e-3, help="Adam learning rate (cosine decay to 0)")
    p.add_argument("--hidden", type=int, default=128, help="hidden size (half per encoder direction)")
    p.add_argument("--eval-every", type=int, default=250, help="decode the validation set every N updates")
    p.add_argument("--threads", type=int, default=1, help="CPU threads for PyTorch")
    p.add_argument("--seed", type=int, default=0, help="weights seed")
    args = p.parse_args(argv)
    start = clock()
    heat = f"{args.out}_attention.png"
    with tempfile.TemporaryDirectory(prefix="seqlab-reverse-") as runs:
        results = [train_one(a, args, Path(runs)) for a in args.attention]
        attending = [x for x in results if x["attention"] != "none"]
        if attending:
            heat_map(*attending[0]["run"], heat)
    command = command_line("reverse", p, args)
    report = {"benchmark": "reverse", "args": vars(args), "heat_map": heat if attending else None,
              "results": [{k: v for k, v in x.items() if k != "run"} for x in results],
              **record(start, command)}
    write_report(args.out, report, markdown)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
