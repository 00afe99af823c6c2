"""Folk tunes: a character LSTM, a TCN and the best n-gram on the Essen tunes in ABC, scored by
bits per character and by whether the tunes they write are music, beside real held-out tunes.

    seqlab data fetch folk
    seqlab bench folk                          # -> benchmarks/folk.md, benchmarks/results/folk.json
    seqlab bench folk --steps 300 --tunes 20   # a quick look

Each model trains through seqlab's engine on the folk corpus (data/folk.py: 8,507 tunes,
shuffled, so the 90 / 5 / 5 % contiguous split is by tune): the LSTM is configs/folk.toml
(2 x 256), the TCN has about as many parameters (6 levels of 150 channels, kernel 3, a
receptive field of 253 characters), both for the same --steps updates of the same batches;
the n-gram is interpolated Kneser-Ney at each order of --orders, the best on validation kept.

Then each writes --tunes tunes (`seqlab sample RUN --format abc`: primed with `T:` after
--warmup tunes of its own that are thrown away, stopped at the blank line that ends a tune,
temperature --temperature) and `seqlab analyze tunes`
reads them: the share that music21 parses, the share seqlab's strict ABC reader reads, and
the share of bars that hold what the meter says. The same figures for the corpus's test
tunes (never trained on) are the reference. The runs and tunes stay in --runs;
--sample-only samples, checks and renders again from them, keeping the training figures of
the earlier report at --out (and naming the commit that trained them).
"""
from __future__ import annotations

import json
import shutil
import time
from pathlib import Path

from seqlab import SeqlabError
from seqlab.analysis.tunes import SOUNDFONTS, check, reference_tunes, render
from seqlab.api import load
from seqlab.bench.common import bench_parser, clock, command_line, provenance, record, result_path, write_report
from seqlab.config import load_config
from seqlab.data import sources
from seqlab.training.engine import fit

TUNE_END = "\n\n"
LSTM = ["model.name=lstm", "model.embedding_size=32", "model.hidden_size=256", "model.num_layers=2",
        "model.dropout=0.1"]                                            # as configs/folk.toml
TCN = ["model.name=tcn", "model.embedding_size=32", "model.hidden_size=150", "model.num_layers=6",
       "model.kernel_size=3", "model.dropout=0.1"]


def label(model: list[str]) -> str:
    """LSTM 2 x 256, TCN 6 x 150, k 3: what a model override list builds."""
    o = dict(item.split("=", 1) for item in model)
    name = o["model.name"].upper() + f" {o.get('model.num_layers', '1')} x {o['model.hidden_size']}"
    return name + (f", k {o['model.kernel_size']}" if "model.kernel_size" in o else "")


def neural(model: list[str], args) -> list[str]:
    return ["data.corpus=folk", "data.level=char", *model, "train.batch_size=32", "train.bptt_steps=100",
            f"train.lr={args.lr}", "train.schedule=cosine", f"train.max_steps={args.steps}", "train.max_epochs=0",
            "train.early_stop=0", f"train.eval_every={max(args.steps // 6, 1)}", "train.eval_tokens=50000",
            f"train.seed={args.seed}", f"train.threads={args.threads}", "train.device=cpu", "train.progress=false"]


def ngram(order: int, args) -> list[str]:
    return ["data.corpus=folk", "data.level=char", "model.name=ngram", f"model.order={order}",
            "model.smoothing=kneser_ney", "train.threads=1", "train.device=cpu", "train.progress=false"]


def train(name: str, command: list[str], args) -> dict:
    run = Path(args.runs) / name
    print(f"{name}: seqlab train {' '.join(command)} --out {run}", flush=True)
    started = time.perf_counter()
    fit(load_config(None, command), run, log=lambda m: print(f"  {m}", flush=True), overwrite=True)
    seconds = time.perf_counter() - started
    trained = load(run, "cpu")
    return {"name": name, "run": str(run), "command": f"seqlab train {' '.join(command)} --out {run}",
            "train_seconds": round(seconds, 1), "parameters": sum(p.numel() for p in trained.model.parameters()),
            "valid_bpc": trained.evaluate("valid")["bpc"], "test_bpc": trained.evaluate("test")["bpc"]}


def earlier(args) -> tuple[list[dict], list[dict], str]:
    """--sample-only: the training figures of the report at --out, checked against --runs."""
    path = result_path(args.out)
    if not path.is_file():
        raise SeqlabError(f"--sample-only reuses an earlier run of `seqlab bench folk`, but {path} is not there; "
                          "run it once without --sample-only")
    old = json.loads(path.read_text())
    keep = ("name", "run", "command", "train_seconds", "parameters", "valid_bpc", "test_bpc", "label")
    results = [{k: x[k] for k in keep if k in x} for x in old["results"]]
    for x in results:
        if not (Path(x["run"]) / "config.json").is_file():
            raise SeqlabError(f"--sample-only: the run {x['run']} of {path} is gone; rerun without --sample-only")
    grams = [{"name": name, "valid_bpc": bpc} for name, bpc in old["ngram_orders"].items()]
    return results, grams, old.get("trained_commit") or old["commit"]     # an earlier --sample-only kept it


def write_tunes(result: dict, args) -> None:
    """The model's --tunes tunes, as `seqlab sample RUN --format abc` writes them, and their check."""
    folder = Path(result["run"]) / "tunes"
    for old in folder.glob("tune-*.abc"):
        old.unlink()
    folder.mkdir(parents=True, exist_ok=True)
    started = time.perf_counter()
    pieces = load(result["run"], "cpu").tunes(args.tunes, "T:", args.length, temperature=args.temperature,
                                              seed=args.seed, warmup=args.warmup, end=TUNE_END)
    result["sample_seconds"] = round(time.perf_counter() - started, 1)
    result["unfinished"] = sum(len(t) - 2 >= args.length for t in pieces)
    tunes = [(f"tune-{i:03d}", t) for i, t in enumerate(pieces, start=1)]
    for name, tune in tunes:
        (folder / f"{name}.abc").write_text(f"X:{name[5:].lstrip('0')}\n{tune}\n", encoding="utf-8")
    result["sample_command"] = (f"seqlab sample {result['run']} --format abc --num-samples {args.tunes} --length "
                                f"{args.length} --temperature {args.temperature:g} --seed {args.seed} --warmup {args.warmup} -o {folder}")
    result["tunes"] = check(tunes)
    # the first tunes, in the order drawn, that seqlab's reader reads (and so can render): not picked for quality
    result["shown"] = [t for (_, t), row in zip(tunes, result["tunes"]["tunes"]) if row["read"]][:args.gallery]


def gallery(results: list[dict], reference: list[tuple[str, str]], args) -> dict:
    """--gallery tunes of each model and of the real test tunes as ABC, MIDI, piano roll (and WAV
    where fluidsynth is installed) in the folder --out names."""
    folder = Path(args.out)
    folder.mkdir(parents=True, exist_ok=True)              # files of the same names are replaced, no others touched
    chosen = [(f"{x['name']}-{i + 1}", t) for x in results for i, t in enumerate(x["shown"])]
    chosen += [(f"real-{i + 1}", t) for i, (_, t) in enumerate(reference[:args.gallery])]
    for name, tune in chosen:
        (folder / f"{name}.abc").write_text(f"X:1\n{tune}\n", encoding="utf-8")
    wav = shutil.which("fluidsynth") is not None and any(p.is_file() for p in SOUNDFONTS)
    render(chosen, folder, wav, overwrite=True)      # the bench's own folder: its files are replaced
    return {"folder": str(folder), "tunes": [n for n, _ in chosen], "wav": wav,
            "command": f"seqlab analyze tunes {folder} --render {folder}" + (" --wav" if wav else "")}


def percent(x) -> str:
    return "—" if x is None else f"{100 * x:.1f}%"


def row(name: str, r: dict, s: dict) -> str:
    bpc = f"{r['valid_bpc']:.3f} / {r['test_bpc']:.3f}" if "valid_bpc" in r else "—"
    params = f"{r['parameters']:,}" if r.get("parameters") else "—"
    return (f"| {name} | {params} | {bpc} | {s['tunes']} | **{percent(s['parse_share'])}** | {percent(s['read_share'])} "
            f"| **{percent(s['bars_in_meter'])}** | {percent(s['tunes_all_bars_in_meter'])} | "
            f"{r.get('unfinished', '—')} | {'—' if s['median_range_semitones'] is None else s['median_range_semitones']} |")


def markdown(r: dict) -> str:
    a = r["args"]
    rows = [row(x["label"], x, x["tunes"]["summary"]) for x in r["results"]]
    rows.append(row("real held-out tunes (test split)", {}, r["reference"]["summary"]))
    example, g = r["results"][0], r["gallery"]
    return (
        "# Folk tunes: character models writing ABC\n\n"
        f"The Essen folk tunes (`seqlab data fetch folk`, {r['corpus_tunes']:,} tunes, split by tune), "
        f"{a['steps']:,} updates of 32 x 100 characters for the LSTM and the TCN (Adam {a['lr']:g}, cosine), the "
        f"n-gram at its best order on validation ({r['ngram_order']}). {a['tunes']} tunes sampled per model at "
        f"temperature {a['temperature']:g}, each primed with `T:` after {a.get('warmup', 0)} tune(s) of the model's own "
        "(thrown away: a recurrent model trained with carried state seldom started from a zero state) and ended "
        f"at its blank line (at most "
        f"{a['length']:,} characters; \"unfinished\" ran out first). *Parse*: music21 reads the tune and finds notes; "
        "*read strictly*: seqlab's ABC reader accepts every character; *bars in meter*: bars holding exactly what "
        "M: says, over the strictly read tunes (an upbeat and the last bar may be shorter).\n\n"
        "| model | parameters | valid / test bpc | tunes | parse (music21) | read strictly | bars in meter | "
        "tunes with every bar in meter | unfinished | median range (semitones) |\n"
        "|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|\n" + "\n".join(rows) + "\n\n"
        f"The first tune the {example['label']} wrote that seqlab's reader reads:\n\n"
        f"```\n{example['shown'][0] if example['shown'] else '(none)'}\n```\n\n"
        f"In `{Path(g['folder']).name}/`: the first {a['gallery']} such tunes of each model and {a['gallery']} real "
        f"test tunes as ABC, MIDI, piano roll" + (" and audio (fluidsynth, General MIDI piano)" if g["wav"] else "")
        + f", made by `{g['command']}`; `seqlab gallery {g['folder']} --out folk.html` puts them on one page.\n\n"
        "Commands (rerun alone):\n\n"
        + "\n".join(f"- {x['label']}: `{x['command']}` ({x['train_seconds']:.0f} s), then `{x['sample_command']}`"
                    for x in r["results"]) + "\n\n"
        + (f"The models were trained by `seqlab bench folk` at commit {r['trained_commit']}; this report's tunes "
           "were sampled from those runs by `--sample-only`.\n\n" if r.get("trained_commit") else "")
        + provenance(r, threads=a["threads"], data="Essen folksong collection (music21 10.5.1 corpus), ABC"))


def main(argv=None) -> int:
    p = bench_parser("folk", __doc__, "benchmarks/folk")
    p.add_argument("--steps", type=int, default=6000, help="updates for the LSTM and the TCN")
    p.add_argument("--lr", type=float, default=3e-3, help="Adam learning rate (cosine decay)")
    p.add_argument("--orders", type=int, nargs="+", default=[4, 6, 8, 10, 12], help="n-gram orders to try")
    p.add_argument("--tunes", type=int, default=100, help="tunes sampled per model")
    p.add_argument("--reference-tunes", type=int, default=200, help="real test-split tunes checked")
    p.add_argument("--length", type=int, default=2000, help="the most characters per sampled tune")
    p.add_argument("--temperature", type=float, default=1.0, help="sampling temperature")
    p.add_argument("--threads", type=int, default=2, help="CPU threads for PyTorch")
    p.add_argument("--seed", type=int, default=0, help="weights and sampling seed")
    p.add_argument("--gallery", type=int, default=2, help="tunes per model (and real ones) rendered into --out's folder")
    p.add_argument("--warmup", type=int, default=1, help="tunes each model draws and throws away before its --tunes")
    p.add_argument("--runs", default="runs/bench-folk", help="where the runs and their tunes are kept")
    p.add_argument("--sample-only", action="store_true",
                   help="reuse the runs an earlier `seqlab bench folk` trained (in --runs, its report at --out): "
                        "sample, check and render again")
    args = p.parse_args(argv)
    start = clock()
    trained_commit = None
    if args.sample_only:
        results, grams, trained_commit = earlier(args)
    corpus = sources.corpus("folk")
    if not corpus.is_ready():
        corpus.fetch(log=print)
    if not args.sample_only:
        grams = [train(f"ngram-{n}", ngram(n, args), args) for n in args.orders]
        best = min(grams, key=lambda g: g["valid_bpc"])
        results = [{**train("lstm", neural(LSTM, args), args), "label": label(LSTM)},
                   {**train("tcn", neural(TCN, args), args), "label": label(TCN)},
                   {**best, "label": f"{best['name']} (Kneser-Ney)"}]
    best = results[-1]
    for result in results:
        write_tunes(result, args)
    real = reference_tunes("folk", args.reference_tunes)
    reference = check(real)
    shown = gallery(results, real, args)
    report = {"benchmark": "folk", "args": vars(args), "results": results, "reference": reference,
              "ngram_orders": {g["name"]: g["valid_bpc"] for g in grams}, "ngram_order": best["name"].split("-")[1],
              "corpus_tunes": corpus.text().count(TUNE_END + "T:") + 1,
              "gallery": shown, "trained_commit": trained_commit,
              **record(start, command_line("folk", p, args))}
    write_report(args.out, report, markdown)
    print(json.dumps({x["label"]: {"valid_bpc": round(x["valid_bpc"], 3), **{k: x["tunes"]["summary"][k] for k in (
        "parse_share", "bars_in_meter")}} for x in results}))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
