"""`seqlab bench faults`: SIGKILL a short training run at random moments, resume it, and check
that every resumed run ends with the very parameters of an uninterrupted one.

    seqlab bench faults                      # 20 trials -> benchmarks/results/faults.json + benchmarks/faults.md
    seqlab bench faults --trials 3 --out /tmp/faults

1. One uninterrupted run of a tiny LSTM (dropout on, so the random state matters too) on a
   generated corpus, CPU, one thread, a checkpoint every few updates: the reference.
2. Each trial starts the same `seqlab train` in a subprocess, waits for its first checkpoint
   (update 0), then sleeps a random time (seeded) drawn uniformly over the reference run's
   training time (its first to its last checkpoint) and sends SIGKILL: no handler runs, so the process may die in the middle of an update, a
   metrics line or a checkpoint being written.
3. The killed run is inspected (the newest committed checkpoint verified against its sha256
   manifest; a half-written checkpoint folder counted) and resumed with
   `seqlab train --resume RUN` to the end.
4. Its final weights are compared with the reference bit for bit (torch.equal), and its
   metrics.jsonl record by record (timings aside).
"""
from __future__ import annotations

import json
import os
import random
import re
import shutil
import signal
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import torch
from safetensors.torch import load_file

from seqlab import SeqlabError
from seqlab.bench.common import bench_parser, commit, machine, write_report
from seqlab.training.checkpoint import RunDir

WORDS = ["the", "king", "queen", "shall", "speak", "now", "and", "my", "lord", "of", "thee",
         "sweet", "love", "night", "death", "crown", "what", "is", "honour", "a", "word"]


def corpus(path: Path, chars: int = 20000, seed: int = 0) -> None:
    """Short lines of words from a small lexicon: something a tiny LSTM learns in seconds."""
    rng = random.Random(seed)
    lines, size = [], 0
    while size < chars:
        line = " ".join(rng.choice(WORDS) for _ in range(rng.randint(3, 9))).capitalize() + "."
        lines.append(line)
        size += len(line) + 1
    path.write_text("\n".join(lines) + "\n", encoding="utf-8")


def options(data: Path, steps: int, checkpoint_every: int) -> list[str]:
    return [f"data.path={data}", "model.embedding_size=16", "model.hidden_size=32", "model.num_layers=2",
            "model.dropout=0.1", "train.batch_size=4", "train.bptt_steps=20", "train.bptt_stride=10",
            f"train.max_steps={steps}", "train.eval_every=50", "train.log_every=5", "train.eval_tokens=400",
            "train.eval_batch_size=4", f"train.checkpoint_every={checkpoint_every}", "train.progress=false",
            "train.threads=1", "train.device=cpu", "train.seed=7"]


def seqlab(*args: str) -> list[str]:
    return [sys.executable, "-m", "seqlab.cli", *args]


def environment() -> dict[str, str]:
    return dict(os.environ, OMP_NUM_THREADS="1", PYTHONUNBUFFERED="1")


def first_checkpoint_seen(run: Path, proc: subprocess.Popen, deadline: float) -> float:
    """Poll until the run's first checkpoint is committed; the time it was seen."""
    while time.perf_counter() < deadline:
        if list(run.glob("checkpoints/step-*")):
            return time.perf_counter()
        if proc.poll() is not None:
            raise SeqlabError(f"the training run in {run} ended (exit code {proc.returncode}) before its first checkpoint")
        time.sleep(0.005)
    raise SeqlabError(f"no checkpoint in {run} after the time allowed")


def reference(work: Path, opts: list[str], steps: int) -> dict:
    run = work / "reference"
    started = time.perf_counter()
    proc = subprocess.Popen(seqlab("train", *opts, "--out", str(run)), stdout=subprocess.PIPE,
                            stderr=subprocess.STDOUT, text=True, env=environment())
    first = first_checkpoint_seen(run, proc, started + 600)
    last_name = f"step-{steps:08d}"
    while not (run / "checkpoints" / last_name).exists() and proc.poll() is None:
        time.sleep(0.005)
    last = time.perf_counter()
    out, _ = proc.communicate(timeout=600)
    ended = time.perf_counter()
    if proc.returncode != 0:
        raise SeqlabError(f"the uninterrupted run failed: {out[-800:]}")
    return {"run": run, "first_checkpoint_s": first - started, "last_checkpoint_s": last - started,
            "seconds": ended - started}


def final_weights(run: Path) -> dict[str, torch.Tensor]:
    return load_file(max((run / "checkpoints").glob("step-*")) / "weights.safetensors")


def metrics(run: Path) -> list[dict]:
    rows = []
    for line in (run / "metrics.jsonl").read_text(encoding="utf-8").splitlines():
        rows.append({k: v for k, v in json.loads(line).items() if k not in ("tok_per_s", "elapsed")})
    return rows


def inspect_killed(run: Path) -> dict:
    """What SIGKILL left: the newest committed checkpoint, whether it verifies, half-written saves."""
    folder = run / "checkpoints"
    partial = [p.name for p in folder.iterdir() if p.name.startswith(".")] if folder.is_dir() else []
    saved = RunDir(run).checkpoints()
    newest, intact = (saved[0].step if saved else None), False
    if saved:
        try:
            RunDir(run).verify(saved[0])
            intact = True
        except SeqlabError:
            intact = False
    return {"newest_checkpoint": newest, "newest_intact": intact, "half_written_checkpoint": bool(partial)}


def trial(index: int, work: Path, opts: list[str], ref: dict, rng: random.Random) -> dict:
    run = work / f"trial-{index:02d}"
    # the training part of the reference run: from its first checkpoint (update 0) to its last
    delay = rng.uniform(0.0, ref["last_checkpoint_s"] - ref["first_checkpoint_s"])
    started = time.perf_counter()
    log = open(work / f"trial-{index:02d}.log", "w", encoding="utf-8")
    proc = subprocess.Popen(seqlab("train", *opts, "--out", str(run)), stdout=log, stderr=subprocess.STDOUT,
                            env=environment())
    seen = first_checkpoint_seen(run, proc, started + 600)
    while time.perf_counter() < seen + delay and proc.poll() is None:
        time.sleep(0.001)
    killed = proc.poll() is None
    if killed:
        proc.send_signal(signal.SIGKILL)
    proc.wait()
    log.close()
    kill_time = time.perf_counter() - started
    row = {"trial": index, "kill_after_s": round(kill_time, 3), "delay_after_first_checkpoint_s": round(delay, 3),
           "killed": killed, **inspect_killed(run)}
    resumed = subprocess.run(seqlab("train", "--resume", str(run)), capture_output=True, text=True,
                             env=environment(), timeout=600)
    found = re.search(r"resuming .* at update (\d+)", resumed.stdout)
    row["resume_exit_code"] = resumed.returncode
    row["resumed_from"] = int(found.group(1)) if found else None
    row["fell_back"] = "falling back to the previous checkpoint" in resumed.stdout
    (work / f"trial-{index:02d}-resume.log").write_text(resumed.stdout + resumed.stderr, encoding="utf-8")
    if resumed.returncode != 0:
        row.update(identical=False, same_metrics=False, error=(resumed.stderr or resumed.stdout)[-300:])
        return row
    a, b = final_weights(ref["run"]), final_weights(run)
    row["identical"] = a.keys() == b.keys() and all(torch.equal(a[k], b[k]) for k in a)
    row["same_metrics"] = metrics(ref["run"]) == metrics(run)
    return row


def markdown(report: dict) -> str:
    s = report["summary"]
    lines = [
        "# Fault benchmark: SIGKILL at random moments, then `--resume`",
        "",
        f"`{report['command']}` — commit {report['commit']}, {report['machine']['cpu']} "
        f"({report['machine']['cores']} cores), torch {report['machine']['torch']}, one thread per run.",
        "",
        f"Reference: an uninterrupted run of {report['steps']} updates (tiny 2-layer LSTM with dropout, "
        f"checkpoint every {report['checkpoint_every']} updates), {report['reference_seconds']:.1f} s in all, "
        f"training from its first checkpoint (update 0, {report['first_checkpoint_s']:.1f} s after start) to its "
        f"last ({report['last_checkpoint_s']:.1f} s). Each trial waits for its own first checkpoint, then a "
        f"random delay (seed {report['seed']}) drawn uniformly over that training time, then SIGKILL.",
        "",
        f"**{s['identical']}/{s['trials']} trials ended bit-identical to the uninterrupted run** "
        f"({s['same_metrics']}/{s['trials']} with identical metrics.jsonl); {s['killed']} were killed while "
        f"running, {s['half_written']} of them in the middle of writing a checkpoint; every resume found "
        f"an intact checkpoint: {'yes' if s['all_resumed_intact'] else 'NO'}.",
        "",
        "| trial | killed after (s) | newest checkpoint at kill | intact | half-written save | resumed from | "
        "identical weights | identical metrics |",
        "|---:|---:|---:|:--:|:--:|---:|:--:|:--:|",
    ]
    for r in report["trials"]:
        lines.append(f"| {r['trial']} | {r['kill_after_s']:.2f}{'' if r['killed'] else ' (had finished)'} | "
                     f"{r['newest_checkpoint']} | {'yes' if r['newest_intact'] else 'no'} | "
                     f"{'yes' if r['half_written_checkpoint'] else 'no'} | {r['resumed_from']} | "
                     f"{'yes' if r['identical'] else 'NO'} | {'yes' if r['same_metrics'] else 'NO'} |")
    return "\n".join(lines) + "\n"


def main(argv: list[str]) -> int:
    parser = bench_parser("faults", __doc__)
    parser.add_argument("--trials", type=int, default=20, help="SIGKILL trials")
    parser.add_argument("--steps", type=int, default=200, help="updates of the short training run")
    parser.add_argument("--checkpoint-every", type=int, default=3, help="train.checkpoint_every of the runs")
    parser.add_argument("--seed", type=int, default=0, help="seed of the kill moments")
    parser.add_argument("--out", default="benchmarks/faults", help="output path without extension")
    parser.add_argument("--work", default="", help="folder for the runs (default: a temporary one, removed after)")
    args = parser.parse_args(argv)
    if args.trials < 1 or args.steps < 2 or args.checkpoint_every < 1:
        raise SeqlabError("--trials and --checkpoint-every must be at least 1, --steps at least 2")
    work = Path(args.work) if args.work else Path(tempfile.mkdtemp(prefix="seqlab-faults-"))
    work.mkdir(parents=True, exist_ok=True)
    try:
        data = work / "corpus.txt"
        corpus(data)
        opts = options(data, args.steps, args.checkpoint_every)
        ref = reference(work, opts, args.steps)
        rng = random.Random(args.seed)
        rows = []
        for index in range(1, args.trials + 1):
            rows.append(trial(index, work, opts, ref, rng))
            r = rows[-1]
            print(f"trial {index}: killed after {r['kill_after_s']:.2f} s, resumed from update {r['resumed_from']}, "
                  f"identical: {r['identical']}", flush=True)
    finally:
        if not args.work:
            shutil.rmtree(work, ignore_errors=True)
    killed = [r for r in rows if r["killed"]]
    summary = {"trials": len(rows), "identical": sum(r["identical"] for r in rows),
               "same_metrics": sum(r["same_metrics"] for r in rows), "killed": len(killed),
               "half_written": sum(r["half_written_checkpoint"] for r in killed),
               "all_resumed_intact": all(r["resume_exit_code"] == 0 and r["resumed_from"] is not None
                                         and r["newest_intact"] and not r["fell_back"] for r in rows)}
    report = {"benchmark": "faults", "command": "seqlab bench faults " + " ".join(argv), "commit": commit(),
              "machine": machine(), "seed": args.seed, "steps": args.steps, "checkpoint_every": args.checkpoint_every,
              "reference_seconds": ref["seconds"], "first_checkpoint_s": ref["first_checkpoint_s"],
              "last_checkpoint_s": ref["last_checkpoint_s"],
              "options": [o for o in opts if not o.startswith("data.path=")], "summary": summary, "trials": rows}
    write_report(args.out, report, markdown)
    return 0 if summary["identical"] == summary["trials"] and summary["all_resumed_intact"] else 1
