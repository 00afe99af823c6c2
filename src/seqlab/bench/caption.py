"""Captioning: Show and Tell against Show, Attend and Tell at the same parameter count and the
same updates, through seqlab's own engine and task (tasks/caption.py).

    seqlab data fetch mnist
    seqlab bench caption                              # -> benchmarks/caption.md, benchmarks/results/caption.json
    seqlab bench caption --data segments --steps 300  # a quick look, nothing to fetch

Data: scenes of 1 to 5 real MNIST digits with generated captions (data/scenes.py), the
digits of the test scenes never seen in training. Both models share the CNN encoder
(channels 64) and the embedding (64); the attending model has an LSTM of --hidden units, and
the plain model's LSTM is sized so its parameter count is within 2 % of the attending one's
(its image code, a fully connected layer over the whole feature map, is where most of its
parameters are). Adam with a cosine decay over --steps updates of --batch-size scenes, the
same batches for both; clipped at norm 1.

Scored on the test scenes: BLEU-4 (sacrebleu, corpus), BLEU-1, exact match, and exact match
by number of digits, with greedy decoding (beam 1) and beam 5. The runs stay in --runs, so
the attention figure's command (in the report) can be run again.
"""
from __future__ import annotations

import json
import time
from pathlib import Path

import torch

from seqlab.analysis.attention import plot_image_attention
from seqlab.api import load
from seqlab.bench.common import bench_parser, clock, command_line, provenance, record, write_report
from seqlab.config import load_config
from seqlab.data import scenes
from seqlab.training.engine import fit, make_task
from seqlab.training.runs import load_trained

NAMES = {"none": "Show and Tell (no attention)", "bahdanau": "Show, Attend and Tell (soft attention)"}
FOLDERS = {"none": "show-and-tell", "bahdanau": "show-attend-tell"}


def overrides(attention: str, hidden: int, args) -> list[str]:
    return ["task=caption", f"data={args.data}", "model=lstm", "model.embedding_size=64", "model.channels=64",
            f"model.hidden_size={hidden}", "model.dropout=0", f"task.attention={attention}",
            f"task.train_examples={args.train_examples}", f"task.test_examples={args.test_examples}",
            "task.beam_size=5", "task.batching=shuffle", f"train.batch_size={args.batch_size}", f"train.lr={args.lr}",
            "train.schedule=cosine", f"train.max_steps={args.steps}", "train.max_epochs=0",
            f"train.eval_every={args.eval_every}", "train.early_stop=0", "train.clip_norm=1",
            f"train.seed={args.seed}", f"train.threads={args.threads}", "train.device=cpu", "train.progress=false"]


def parameters(attention: str, hidden: int, args) -> int:
    task = make_task(load_config(None, overrides(attention, hidden, args)))
    return sum(p.numel() for p in task.build_model().parameters())


def matched_hidden(args) -> int:
    """The plain model's LSTM size whose parameter count is nearest the attending model's."""
    target = parameters("bahdanau", args.hidden, args)
    low, high = 8, 2 * args.hidden                   # sizes in steps of 2; the count grows with the size
    while high - low > 1:                            # the last step of 2 at or below the target
        middle = (low + high) // 2
        low, high = (middle, high) if parameters("none", 2 * middle, args) <= target else (low, middle)
    return min((2 * low, 2 * high), key=lambda h: abs(parameters("none", h, args) - target))


def train_one(attention: str, hidden: int, args) -> dict:
    run = Path(args.runs) / FOLDERS[attention]
    command = overrides(attention, hidden, args)
    print(f"{attention}: seqlab train {' '.join(command)} --out {run}", flush=True)
    started = time.perf_counter()
    fit(load_config(None, command), run, log=lambda m: print(f"  {m}", flush=True), overwrite=True)
    train_seconds = time.perf_counter() - started
    cfg, task, model, device = load_trained(run, "cpu")
    task.prepare(lambda m: None)
    test = task.splits["test"]
    with torch.no_grad():
        beam1 = {**task.evaluate(model, test, device, final=True, beam=1)}
        beam5 = {**task.evaluate(model, test, device, final=True, beam=5)}
    return {"attention": attention, "name": NAMES[attention], "run": str(run),
            "command": f"seqlab train {' '.join(command)} --out {run}",
            "parameters": sum(p.numel() for p in model.parameters()), "hidden": hidden, "updates": args.steps,
            "train_seconds": round(train_seconds, 1), "beam1": beam1, "beam5": beam5, "test_scenes": len(test),
            "task": task, "model": model}


def attention_figure(result: dict, args) -> dict:
    """A test scene of five digits (or the most there is), captioned with the attention drawn."""
    task = result["task"]
    test = task.splits["test"]
    digits = {task.vocab.stoi[name] for name in scenes.NAMES}
    pick = max(range(min(len(test), 200)), key=lambda i: (sum(w in digits for w in test[i][1]), -i))
    image_path = Path(f"{args.out}_scene.png")
    scenes.write_image(image_path, test[pick][0])
    figure = f"{args.out}_attention.png"
    command = f"seqlab caption {result['run']} --image {image_path} --beam 1 --attention {figure}"
    drawn = load(result["run"], "cpu").caption(str(image_path), beam=1)[0]
    plot_image_attention(figure, drawn["image"], drawn["attention"], drawn["grid"], drawn["words"],
                         title=f"{image_path.name}: {drawn['caption']}")
    return {"figure": figure, "scene": str(image_path), "command": command, "caption": drawn["caption"],
            "reference": task.vocab.decode(test[pick][1])}


def by_length(scores: dict) -> str:
    return " / ".join(f"{100 * scores[f'exact_{n}_digits']:.0f}" if f"exact_{n}_digits" in scores else "—"
                      for n in range(1, scenes.MAX_DIGITS + 1))


def markdown(r: dict) -> str:
    a = r["args"]
    rows = []
    for x in r["results"]:
        for beam in ("beam1", "beam5"):
            s = x[beam]
            rows.append(f"| {x['name']} | {x['parameters']:,} | {beam[-1]} | **{s['bleu']:.2f}** | {s['bleu1']:.2f} | "
                        f"{100 * s['sequence_accuracy']:.1f}% | {by_length(s)} |")
    fig = r.get("figure") or {}
    return (
        "# Captioning: Show and Tell against Show, Attend and Tell\n\n"
        f"`seqlab train task=caption data={a['data']}` runs through seqlab's engine on {a['train_examples']:,} "
        f"training scenes of 1–5 digits ({'real MNIST digits' if a['data'] == 'scenes' else 'seven-segment glyphs'}"
        f", generated captions; the test scenes' digit images are never trained on), "
        f"{a['steps']:,} updates of {a['batch_size']} scenes each (the same batches), Adam {a['lr']:g} with a cosine "
        f"decay, clip 1. Scored on {r['results'][0]['test_scenes']:,} test scenes. BLEU is sacrebleu's corpus BLEU "
        "over the caption words; exact match counts a caption right only if every word is.\n\n"
        "| model | parameters | beam | BLEU-4 | BLEU-1 | exact match | exact match by digits in the scene, 1 / 2 / 3 / 4 / 5 (%) |\n"
        "|---|---:|---:|---:|---:|---:|---|\n" + "\n".join(rows) + "\n\n"
        + (f"Where the attending model looked for each word of a test scene: `{fig['figure']}` (caption "
           f"\"{fig['caption']}\"; reference \"{fig['reference']}\"), made by `{fig['command']}`.\n\n" if fig else "")
        + "Training commands, one per model (rerun alone):\n\n"
        + "\n".join(f"- {x['name']}: `{x['command']}` ({x['train_seconds']:.0f} s)" for x in r["results"]) + "\n\n"
        + provenance(r, threads=a["threads"]))


def main(argv=None) -> int:
    p = bench_parser("caption", __doc__, "benchmarks/caption")
    p.add_argument("--data", default="scenes", choices=["scenes", "segments"], help="MNIST scenes or glyph scenes")
    p.add_argument("--steps", type=int, default=4000, help="updates per model")
    p.add_argument("--batch-size", type=int, default=64, help="scenes per update")
    p.add_argument("--lr", type=float, default=2e-3, help="Adam learning rate (cosine decay to 0)")
    p.add_argument("--hidden", type=int, default=256, help="the attending model's LSTM size")
    p.add_argument("--train-examples", type=int, default=20000, help="training scenes")
    p.add_argument("--test-examples", type=int, default=2000, help="validation and test scenes (each)")
    p.add_argument("--eval-every", type=int, default=500, help="validate every N updates")
    p.add_argument("--threads", type=int, default=2, help="CPU threads for PyTorch")
    p.add_argument("--seed", type=int, default=0, help="weights seed (the scenes are fixed)")
    p.add_argument("--runs", default="runs/bench-caption", help="where the two runs are kept")
    args = p.parse_args(argv)
    start = clock()
    plain_hidden = matched_hidden(args)
    results = [train_one("none", plain_hidden, args), train_one("bahdanau", args.hidden, args)]
    figure = attention_figure(results[1], args)
    command = command_line("caption", p, args)
    report = {"benchmark": "caption", "args": vars(args), "figure": figure,
              "results": [{k: v for k, v in x.items() if k not in ("task", "model")} for x in results],
              **record(start, command)}
    write_report(args.out, report, markdown)
    print(json.dumps({x["name"]: {"beam1 bleu": x["beam1"]["bleu"], "beam5 bleu": x["beam5"]["bleu"]}
                      for x in report["results"]}))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
