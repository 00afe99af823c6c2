"""`seqlab bench tasks`: the supervised tasks on real data, each row one `seqlab train` run
plus `seqlab eval --split test`, recorded with the command that reproduces it.

Each finished row is written to benchmarks/results/tasks/ROW.json and not rerun unless
asked (--rerun); benchmarks/tasks.md is rebuilt from every recorded row. `--reuse RUN`
records a run already trained by the row's own command (its saved config must equal the
row's, or it is refused), so a long training need not be repeated.
"""
from __future__ import annotations

import json
import os
import time
from pathlib import Path

from seqlab import SeqlabError
from seqlab.bench.common import bench_parser, commit, machine
from seqlab.config import load_config, to_dict
from seqlab.io import atomic_write_text
from seqlab.training.checkpoint import RunDir
from seqlab.training.engine import fit
from seqlab.training.runs import evaluate_run

# row -> (config preset, overrides, the paper / lecture anchor to print beside it)
ROWS: dict[str, tuple[str, list[str], str]] = {
    "sentiment-bilstm": ("configs/sentiment.toml", [], "acceptance: accuracy >= 75%"),
    "sentiment-bow": ("configs/sentiment.toml", ["model.name=bow", "train.lr=0.01"],
                      "the bag-of-words logistic-regression baseline"),
    "pos-bilstm": ("configs/pos.toml", [], "acceptance: accuracy >= 95%; Ling et al. 2015: 97.4% on WSJ"),
    "en-es-attention": ("configs/en-es.toml", [], "acceptance: BLEU clearly above no attention"),
    "en-es-no-attention": ("configs/en-es.toml", ["task.attention=none"], "Sutskever et al. 2014 baseline"),
}
FIXED = ["train.threads=1", "train.progress=false"]      # one thread: steady on a shared 2-core machine
RESULTS = Path("benchmarks/results/tasks")


def commands(row: str) -> tuple[str, str]:
    preset, overrides, _ = ROWS[row]
    train = " ".join(["seqlab train --config", preset, *overrides, *FIXED, "--out", f"runs/bench/{row}"])
    return train, f"seqlab eval runs/bench/{row} --split test --json"


def run_row(row: str, reuse: str | None = None, log=print) -> dict:

    preset, overrides, anchor = ROWS[row]
    cfg = load_config(preset, [*overrides, *FIXED])
    out = Path(reuse or f"runs/bench/{row}")
    started = time.perf_counter()
    if reuse:
        saved = RunDir(out).require().config()
        if to_dict(saved) != to_dict(cfg):
            raise SeqlabError(f"{out} was not trained by this row's command ({commands(row)[0]}); retrain it")
        seconds = None
    else:
        fit(cfg, out, overwrite=True, log=log)
        seconds = time.perf_counter() - started
    rows = [json.loads(line) for line in (out / "metrics.jsonl").read_text().splitlines()]
    train_seconds = max((r.get("elapsed", 0.0) for r in rows), default=0.0)
    result = evaluate_run(out, "test", log=log)
    record = {"row": row, "anchor": anchor, "test": result, "train_seconds": train_seconds,
              "wall_seconds": seconds, "commands": commands(row), "config": to_dict(cfg),
              "data": cfg.data.corpus, "commit": commit(), "machine": machine(),
              "load_average": os.getloadavg()[0], "date": time.strftime("%Y-%m-%d")}
    atomic_write_text(RESULTS / f"{row}.json", json.dumps(record, indent=2) + "\n")
    return record


def markdown() -> str:
    records = [json.loads(p.read_text()) for p in sorted(RESULTS.glob("*.json"))]
    lines = ["# Supervised tasks on real data", "",
             "Each row: `seqlab train` with the preset and overrides shown, then `seqlab eval RUN --split test`. "
             "Test splits are fixed random 10% (sentiment), 5% (Brown) and 3% (en-es) of the examples, "
             "never used for any choice. Rerun a row with `seqlab bench tasks --only ROW --rerun`.", "",
             "| row | data | test metrics | training time | commit | anchor |", "|---|---|---|---:|---|---|"]
    keys = ("accuracy", "f1", "unknown_word_accuracy", "bleu", "sequence_accuracy", "words_per_s")
    for r in records:
        shown = ", ".join(f"{k} {r['test'][k]:.4f}" if k != "words_per_s" else f"{k} {r['test'][k]:,.0f}"
                          for k in keys if k in r["test"])
        lines.append(f"| {r['row']} | {r['data']} | {shown} | {r['train_seconds'] / 60:.1f} min | {r['commit']} | "
                     f"{r['anchor']} |")
    lines += ["", "The en-es attention model's weights for one verse (`seqlab translate runs/bench/en-es-attention "
              "--text 'And God said, Let there be light: and there was light.' --attention benchmarks/en-es_attention.png`):",
              "", "![attention](en-es_attention.png)", "", "Commands:", ""]
    for r in records:
        lines += [f"- {r['row']}: `{r['commands'][0]}` then `{r['commands'][1]}`"]
    if records:
        machines = " | ".join(sorted({f"{r['machine']['cpu']}, {r['machine']['cores']} cores, torch {r['machine']['torch']}"
                                      for r in records}))
        loads = ", ".join(f"{r['load_average']:.1f}" for r in records)
        lines += ["", f"Machines (each row's in its record): {machines}; 1 torch thread per run; "
                      f"load averages while recording: {loads} "
                      f"(the machine was shared, so training times are upper bounds).", ""]
    return "\n".join(lines)


def run_tasks(only: list[str] | None = None, rerun: bool = False, reuse: str | None = None, log=print) -> str:
    unknown = [r for r in only or [] if r not in ROWS]
    if unknown:
        raise SeqlabError(f"unknown row {', '.join(unknown)}; valid: {', '.join(ROWS)}")
    rows = only or list(ROWS)
    if reuse and len(rows) != 1:
        raise SeqlabError("--reuse RUN records one row: give exactly one --only ROW")
    for row in rows:
        if (RESULTS / f"{row}.json").is_file() and not rerun and not reuse:
            log(f"{row}: recorded already (use --rerun to run it again)")
            continue
        log(f"{row}: {commands(row)[0]}")
        run_row(row, reuse, log)
    text = markdown()
    atomic_write_text("benchmarks/tasks.md", text)
    print(text)
    return text


def main(argv: list[str] | None = None) -> int:
    p = bench_parser("tasks", __doc__)
    p.description += (" Rows (benchmarks/tasks.md): sentiment-bilstm, sentiment-bow, pos-bilstm, en-es-attention, "
                      "en-es-no-attention. Finished rows are kept, not rerun.")
    p.add_argument("--only", nargs="*", default=None, metavar="ROW", help="run only these rows")
    p.add_argument("--rerun", action="store_true", help="run recorded rows again (default: keep them)")
    p.add_argument("--reuse", metavar="RUN", help="record RUN, already trained by the row's own command (one --only ROW)")
    a = p.parse_args(argv)
    run_tasks(a.only, rerun=a.rerun, reuse=a.reuse)
    return 0
