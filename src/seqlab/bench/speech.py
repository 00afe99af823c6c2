"""WaveNet speaking in chosen voices: held-out bits per sample with the right speaker label,
a wrong one and none, beside a mu-law n-gram; generated speech and its spectrograms; and
generation speed with the per-layer queues against recomputation.

    seqlab data fetch speech                     # espeak-ng (make speech)
    seqlab bench speech                          # -> benchmarks/speech.md, results/speech.json, speech/
    seqlab bench speech --steps 100 --seconds 0.5    # a quick look

Data: the synthetic `speech` corpus (data/audio.py; a stand-in for VCTK): four espeak-ng
voices, 8 kHz, 8-bit mu-law, split by sentence. Two WaveNets of the same size train for the
same --steps updates on the same windows (tasks/speech.py): one with the speaker as global
condition, one without (task.speaker=false). The n-gram is Kneser-Ney over mu-law ids at
each order of --orders, the best on validation kept.

Scored on the test sentences of each voice, every sample given all before it: the
conditioned WaveNet with the voice's own label, with each other voice's label (the table
shows the lowest of the three, the hardest case for "the label helps"), the unconditioned
WaveNet, and the n-gram. Then --seconds of speech per voice at temperature 1 (WAV), with
spectrograms of real test speech beside them, and samples per second of generation on one
thread, queues against recomputing the receptive field for every sample.
"""
from __future__ import annotations

import json
import statistics
import time
from pathlib import Path

import numpy as np
import torch

from seqlab.analysis.spectrogram import plot_spectrograms
from seqlab.api import load
from seqlab.bench.common import bench_parser, clock, command_line, provenance, record, write_report
from seqlab.bench.generation import generate_by_recompute, generate_with_queues
from seqlab.config import ModelConfig, load_config
from seqlab.data.audio import RATE, SPEECH, write_wav
from seqlab.models.ngram import NGramLM, perplexity
from seqlab.models.wavenet import mu_law_decode
from seqlab.tasks.speech import SILENCE, Speaking
from seqlab.training.engine import fit
from seqlab.training.runs import load_trained

WAVENET = ["model.embedding_size=32", "model.hidden_size=32", "model.skip_channels=64", "model.num_layers=16",
           "model.dilation_cycle=8", "model.kernel_size=2", "model.dropout=0"]      # as configs/wavenet-speech.toml
SPECIALS = 4                                    # the n-gram's reserved ids come before the 256 mu-law levels


def overrides(speaker: bool, args) -> list[str]:
    return ["task=speech", "data=speech", "model=wavenet", *WAVENET, f"task.speaker={str(speaker).lower()}",
            f"task.length={args.window}", f"train.batch_size={args.batch_size}", f"train.lr={args.lr}",
            "train.schedule=cosine", f"train.max_steps={args.steps}", "train.max_epochs=0", "train.early_stop=0",
            f"train.eval_every={max(args.steps // 5, 1)}", f"train.seed={args.seed}", f"train.threads={args.threads}",
            "train.device=cpu", "train.progress=false"]


def train(name: str, speaker: bool, args) -> dict:
    run = Path(args.runs) / name
    command = overrides(speaker, args)
    print(f"{name}: seqlab train {' '.join(command)} --out {run}", flush=True)
    started = time.perf_counter()
    fit(load_config(None, command), run, log=lambda m: print(f"  {m}", flush=True), overwrite=True)
    return {"name": name, "run": str(run), "command": f"seqlab train {' '.join(command)} --out {run}",
            "train_seconds": round(time.perf_counter() - started, 1)}


def ngram_bits(task, orders: list[int]) -> tuple[int, dict[str, float], dict[int, float]]:
    """(best order on valid, test bits per sample by voice, valid bits by order) of mu-law n-grams."""
    train = np.concatenate([ids.numpy() + SPECIALS for ids, _ in task.splits["train"]])

    def bits(model, utterances) -> float:
        nats = [perplexity(model, ids.numpy() + SPECIALS) for ids, _ in utterances]
        return sum(n * c for n, c in nats) / sum(c for _, c in nats) / np.log(2)

    fitted, valid = {}, {}
    for order in orders:
        fitted[order] = NGramLM(ModelConfig(name="ngram", order=order, smoothing="kneser_ney"), 256 + SPECIALS).fit(train)
        valid[order] = bits(fitted[order], task.splits["valid"])
        print(f"  {order}-gram: valid {valid[order]:.4f} bits per sample", flush=True)
    best = min(valid, key=valid.get)
    test = {voice: bits(fitted[best], [u for u in task.splits["test"] if u[1] == v])
            for v, voice in enumerate(task.voices)}
    return best, test, valid


def scores(conditioned: dict, plain: dict, args) -> tuple[list[dict], object]:
    _, task, model, _ = load_trained(Path(conditioned["run"]), "cpu")
    _, plain_task, plain_model, _ = load_trained(Path(plain["run"]), "cpu")
    task.prepare(print)
    cpu, rows = torch.device("cpu"), []
    order, ngram, ngram_valid = ngram_bits(task, args.orders)
    with torch.no_grad():
        for v, voice in enumerate(task.voices):
            own = [u for u in task.splits["test"] if u[1] == v]
            right = task.evaluate_with(model, own, cpu)
            wrong = {task.voices[o]: task.evaluate_with(model, own, cpu, speaker=o)["bits_per_sample"]
                     for o in range(len(task.voices)) if o != v}
            none = plain_task.evaluate_with(plain_model, own, cpu)["bits_per_sample"]
            rows.append({"voice": voice, "test_samples": right["samples"], "right": right["bits_per_sample"],
                         "wrong": wrong, "lowest_wrong": min(wrong.values()), "none": none, "ngram": ngram[voice]})
            print(f"  {voice}: right {rows[-1]['right']:.4f}, lowest wrong {rows[-1]['lowest_wrong']:.4f}, "
                  f"none {none:.4f}, {order}-gram {ngram[voice]:.4f}", flush=True)
    return rows, {"task": task, "model": model, "ngram_order": order, "ngram_valid": ngram_valid}


def gallery(run: str, task, args) -> dict:
    """Per voice: --seconds of generated speech and as much real test speech, as WAVs, and one
    figure of their spectrograms side by side."""
    folder = Path(f"{args.out}")
    folder.mkdir(parents=True, exist_ok=True)
    speaker = load(run, "cpu")
    panels, files = [], []
    for v, voice in enumerate(task.voices):
        real = next(ids for ids, s in task.splits["test"] if s == v)
        real = mu_law_decode(real[:round(args.seconds * RATE)], 256).numpy()
        made = speaker.speak(voice, args.seconds, seed=args.seed + v)
        for kind, x in (("real", real), ("generated", made)):
            path = folder / f"{voice}-{kind}.wav"
            write_wav(path, x)
            files.append(str(path))
            panels.append((f"{voice}: {kind}", x))
    figure = f"{args.out}_spectrograms.png"
    plot_spectrograms(figure, panels, RATE, columns=2)
    commands = [f"seqlab sample {run} --condition {voice} --seconds {args.seconds:g} --seed {args.seed + v} "
                f"-o {folder}/{voice}-generated.wav" for v, voice in enumerate(task.voices)]
    return {"files": files, "figure": figure, "commands": commands,
            "figure_command": f"seqlab analyze spectrogram {' '.join(files)} --out {figure}"}


@torch.no_grad()
def generation_speed(model, args) -> dict:
    """Samples per second of generation on one thread: queues against recomputation."""
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    try:
        wavenet = Speaking(model, 0).eval()
        R = model.receptive_field
        prompt = torch.full((1, R), SILENCE, dtype=torch.long)
        generate_with_queues(wavenet, prompt, 5)
        generate_by_recompute(wavenet, prompt, 2, R)
        queued, recomputed = [], []
        for _ in range(args.repeats):
            started = time.perf_counter()
            _, _, primed = generate_with_queues(wavenet, prompt, args.queue_samples)
            queued.append(args.queue_samples / (time.perf_counter() - started - primed))
            started = time.perf_counter()
            generate_by_recompute(wavenet, prompt, args.recompute_samples, R)
            recomputed.append(args.recompute_samples / (time.perf_counter() - started))
    finally:
        torch.set_num_threads(threads)
    q, r = statistics.median(queued), statistics.median(recomputed)
    return {"receptive_field": R, "queues_samples_per_s": q, "recompute_samples_per_s": r, "speedup": q / r,
            "real_time_factor": q / RATE, "repeats": args.repeats}


def markdown(r: dict) -> str:
    a, g, s = r["args"], r["gallery"], r["speed"]
    rows = "\n".join(f"| {x['voice']} | {x['test_samples']:,} | **{x['right']:.3f}** | {x['lowest_wrong']:.3f} "
                     f"({min(x['wrong'], key=x['wrong'].get)}) | {x['none']:.3f} | {x['ngram']:.3f} | "
                     f"{'yes' if x['right'] < x['lowest_wrong'] else '**no**'} |" for x in r["rows"])
    return (
        "# WaveNet speech: does the speaker label help?\n\n"
        f"Synthetic speech (`seqlab data fetch speech`: four espeak-ng voices reading KJV verses, 8 kHz, 8-bit "
        f"mu-law; a stand-in for VCTK), test sentences never trained on. Two WaveNets of "
        f"{r['parameters']['conditioned']:,} / {r['parameters']['unconditioned']:,} parameters ({r['layers']}, a "
        f"receptive field of {s['receptive_field']} samples), {a['steps']:,} updates of "
        f"{a['batch_size']} windows of {a['window']} scored samples each, the same windows for both. Test bits per "
        f"sample (8 = knowing nothing):\n\n"
        f"| voice | test samples | right label | lowest wrong label (whose) | no label | {r['ngram_order']}-gram "
        "(Kneser-Ney) | right < every wrong |\n|---|---:|---:|---:|---:|---:|---|\n" + rows + "\n\n"
        f"Generated speech, {a['seconds']:g} s per voice at temperature 1, beside as much real test speech: "
        f"`{Path(a['out']).name}/VOICE-generated.wav` and `VOICE-real.wav`, spectrograms in "
        f"`{Path(g['figure']).name}` (made by `{g['figure_command']}`); each generated file by "
        f"`{g['commands'][0]}` and likewise.\n\n"
        f"Generation on one thread (median of {s['repeats']}): **{s['queues_samples_per_s']:,.0f} samples/s** with the "
        f"per-layer queues ({s['real_time_factor']:.2f} x real time at {RATE} Hz) against "
        f"{s['recompute_samples_per_s']:,.1f} samples/s recomputing the receptive field for every sample: "
        f"**{s['speedup']:.0f} x**.\n\n"
        "Training commands (rerun alone):\n\n"
        + "\n".join(f"- {x['name']}: `{x['command']}` ({x['train_seconds']:.0f} s)" for x in r["runs"]) + "\n\n"
        + provenance(r, threads=a["threads"], data="synthetic speech by espeak-ng (a VCTK stand-in), "
                                                   "King James Bible verses"))


def main(argv=None) -> int:
    p = bench_parser("speech", __doc__, "benchmarks/speech")
    p.add_argument("--steps", type=int, default=2000, help="updates per WaveNet")
    p.add_argument("--batch-size", type=int, default=8, help="windows per update")
    p.add_argument("--window", type=int, default=1000, help="samples scored per window")
    p.add_argument("--lr", type=float, default=2e-3, help="Adam learning rate (cosine decay)")
    p.add_argument("--orders", type=int, nargs="+", default=[2, 3, 4], help="n-gram orders to try")
    p.add_argument("--seconds", type=float, default=2.0, help="seconds of generated speech per voice")
    p.add_argument("--queue-samples", type=int, default=2000, help="samples timed with the queues")
    p.add_argument("--recompute-samples", type=int, default=100, help="samples timed by recomputation")
    p.add_argument("--repeats", type=int, default=3, help="timing rounds")
    p.add_argument("--threads", type=int, default=2, help="CPU threads for training")
    p.add_argument("--seed", type=int, default=0, help="weights and sampling seed")
    p.add_argument("--runs", default="runs/bench-speech", help="where the two runs are kept")
    args = p.parse_args(argv)
    start = clock()
    if not SPEECH.is_ready():
        SPEECH.fetch(log=print)
    runs = [train("conditioned", True, args), train("unconditioned", False, args)]
    rows, kept = scores(*runs, args)
    m = dict(item.split("=", 1) for item in WAVENET)
    layers = (f"{m['model.num_layers']} layers of {m['model.hidden_size']} channels, dilations 1..2^"
              f"{int(m['model.dilation_cycle']) - 1} repeated")
    report = {"benchmark": "speech", "args": vars(args), "runs": runs, "rows": rows, "layers": layers,
              "ngram_order": kept["ngram_order"], "ngram_valid": kept["ngram_valid"],
              "parameters": {x["name"]: sum(q.numel() for q in load(x["run"], "cpu").model.parameters()) for x in runs},
              "gallery": gallery(runs[0]["run"], kept["task"], args), "speed": generation_speed(kept["model"], args),
              **record(start, command_line("speech", p, args))}
    write_report(args.out, report, markdown)
    print(json.dumps({x["voice"]: {k: round(x[k], 3) for k in ("right", "lowest_wrong", "none", "ngram")} for x in rows}))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
