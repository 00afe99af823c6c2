"""`make gpu-check` (`seqlab bench gpu-check`): the GPU figures seqlab has no machine for, in
one script of at most about 8 minutes on one GPU.

1. cuDNN speed: every recurrent path against nn.RNN / nn.LSTM / nn.GRU, forward + backward,
   batch 64 x 100 steps, hidden 512 (bench/speed.py on cuda).
2. Training precision: the demo model (1 x 384 LSTM, batch 32 x 50) trained 300 updates each
   as fp32, bf16 autocast and under torch.compile; tokens/s from the run's own log. The
   corpus is the Python standard library's source (present on every machine: a GPU box
   reaches no data registry).
3. Two full-profile cells of Bai et al. (2018) that fit the budget: adding/lstm-chrono and
   copy/tcn (synthetic data), written to OUT/results/bai2018.json like any other cell.

`--dry-run` runs the same script on the CPU with toy sizes (the tests do), so the script is
known to work before a GPU is lent. Results: OUT/results/gpu_check.json and OUT/gpu_check.md, naming the machine.
"""
from __future__ import annotations

import json
import sys
import tempfile
import time
from pathlib import Path

import torch

from seqlab.bench import suite
from seqlab.bench.common import bench_parser, commit, machine, provenance, write_report
from seqlab.bench.speed import run_speed
from seqlab.config import load_config
from seqlab.data import sources
from seqlab.training.engine import fit


def precision_rows(device: str, updates: int, sizes: dict, log) -> list[dict]:
    text = sources.corpus("pystdlib").fetch(log=lambda m: None)
    rows = []
    for name, extra in (("fp32", []), ("bf16", ["train.precision=bf16"]), ("compile", ["train.compile=true"])):
        with tempfile.TemporaryDirectory() as tmp:
            cfg = load_config(None, [f"data.path={text}", "model.name=lstm", f"model.embedding_size={sizes['emb']}",
                                     f"model.hidden_size={sizes['hidden']}", "model.num_layers=1", "model.dropout=0",
                                     f"train.batch_size={sizes['batch']}", f"train.bptt_steps={sizes['steps']}",
                                     f"train.max_steps={updates}", f"train.log_every={max(1, updates // 6)}",
                                     f"train.eval_every={updates}", "train.eval_tokens=2000", "train.progress=false",
                                     f"train.device={device}", *extra])
            started = time.perf_counter()
            fit(cfg, Path(tmp) / "run", log=lambda m: None)
            wall = time.perf_counter() - started
            logged = [json.loads(line) for line in (Path(tmp) / "run" / "metrics.jsonl").read_text().splitlines()]
            train = [r for r in logged if r.get("split") == "train"]
            rate = ((train[-1]["tokens"] - train[0]["tokens"]) / (train[-1]["elapsed"] - train[0]["elapsed"])
                    if len(train) > 1 else float("nan"))
        rows.append({"precision": name, "tokens_per_s": rate, "wall_seconds": wall,
                     "final_train_loss": train[-1]["loss"] if train else None})
        log(f"precision {name}: {rate:,.0f} tokens/s ({wall:.0f} s in all)")
    return rows


def run_gpu_check(out: str, dry_run: bool, command: str) -> dict:
    if not dry_run and not torch.cuda.is_available():
        raise SystemExit("seqlab bench gpu-check: no CUDA GPU here; run it where one is, or try --dry-run")
    device = "cpu" if dry_run else "cuda"
    folder = Path(out)
    folder.mkdir(parents=True, exist_ok=True)
    started = time.perf_counter()
    log = lambda m: print(m, flush=True)           # noqa: E731
    # 1. every recurrent path on cuDNN
    speed_sizes = dict(repeats=1, batch=2, steps=3, hidden=8, warmup=0) if dry_run else \
        dict(repeats=5, batch=64, steps=100, hidden=512)
    speed = run_speed(str(folder / "gpu_speed"), device=device, **speed_sizes)
    # 2. fp32, bf16, compile
    sizes = dict(emb=8, hidden=16, batch=4, steps=8) if dry_run else dict(emb=64, hidden=384, batch=32, steps=50)
    precision = precision_rows(device, 6 if dry_run else 300, sizes, log)
    # 3. two full-profile cells (a dry run lists them instead)
    cells = ["adding/lstm-chrono", "copy/tcn"]
    argv = ["run", "bai2018", "--profile", "full", "--only", *cells, "--device", device, "--out", str(folder),
            "--no-progress"] + (["--dry-run"] if dry_run else [])
    suite.main(argv)
    recorded = {}
    results = folder / "results" / "bai2018.json"
    if results.is_file():
        recorded = {k: v for k, v in json.loads(results.read_text()).items() if any(c in k for c in cells)}
    report = {"dry_run": dry_run, "device": device, "speed_rows": speed.get("rows", []), "precision": precision,
              "cells": cells, "cell_results": recorded, "seconds": time.perf_counter() - started,
              "machine": machine(), "commit": commit(), "date": time.strftime("%Y-%m-%d"), "command": command}
    return write_report(str(folder / "gpu_check"), report, markdown)


def markdown(r: dict) -> str:
    rows = "".join(f"| {p['precision']} | {p['tokens_per_s']:,.0f} | {p['wall_seconds']:.0f} s |\n" for p in r["precision"])
    title = "# GPU check" + (" (dry run on the CPU, toy sizes: not GPU figures)" if r["dry_run"] else "")
    return (f"{title}\n\nDevice: {r['device']}; {r['seconds']:.0f} s in all.\n\n"
            "## cuDNN speed of every recurrent path\n\nSee `gpu_speed.md` beside this file.\n\n"
            "## Training precision (demo model, 300 updates each)\n\n| precision | tokens/s | wall |\n|---|---:|---:|\n"
            + rows + f"\n## Full-profile cells\n\n{', '.join(r['cells'])}: "
            + ("listed only (dry run)" if r["dry_run"] else f"{len(r['cell_results'])} recorded in results/bai2018.json")
            + "\n\n" + provenance(r))


def main(argv=None) -> int:
    p = bench_parser("gpu-check", __doc__)
    p.add_argument("--out", default="benchmarks/gpu", help="folder for the results")
    p.add_argument("--dry-run", action="store_true", help="the same script on the CPU with toy sizes")
    args = p.parse_args(argv)
    command = f"seqlab bench gpu-check --out {args.out}" + (" --dry-run" if args.dry_run else "")
    run_gpu_check(args.out, args.dry_run, command)
    return 0


if __name__ == "__main__":
    sys.exit(main())
