"""`seqlab bench contention`: training speed on a quiet machine and beside one busy process.

Each program trains the demo model (configs/demo.toml: a 1 x 384 character LSTM, batch
32 x 50) for a fixed wall time in a fresh process, quiet and beside one competing CPU-bound
process (`python -c "while True: pass"`), in rounds that interleave every program and both
conditions. The tokens/s of a program is the median over rounds; the ratio busy / quiet is
what a user sees when something else runs. Programs:

- `seqlab train` as shipped: train.threads=0, the cores other work leaves free (training/threads.py);
- `seqlab train train.threads=N` (N = all cores): what seqlab did before, PyTorch's default team;
- a bare PyTorch loop over the same model and batches (embedding, nn.LSTM, linear, Adam,
  clipping), torch's default threads: what plain PyTorch gets.

Training data: the Shakespeare corpus when fetched, else the Python standard library's
source (always present), named in the report.
"""
from __future__ import annotations

import json
import os
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from seqlab.bench.common import bench_parser, commit, machine, provenance, write_report
from seqlab.data import sources

COMPETITOR = [sys.executable, "-c", "while True: pass"]

# a bare PyTorch character LSTM on the same batches as the demo: prints tokens/s after warm-up
BARE = r'''
import sys, time, numpy as np, torch
from torch import nn
text_path, seconds = sys.argv[1], float(sys.argv[2])
raw = np.frombuffer(open(text_path, "rb").read()[:2_000_000], dtype=np.uint8)
symbols, ids = np.unique(raw, return_inverse=True)
vocab = len(symbols) + 4                                  # as seqlab's vocabulary: + <pad> <unk> <bos> <eos>
ids = ids.astype(np.int64)
B, T = 32, 50
n = (len(ids) - 1) // B
data = torch.from_numpy(ids[: n * B + 1])
x_all, y_all = data[:-1].view(B, n), data[1:].view(B, n)
torch.manual_seed(0)
emb, rnn, head = nn.Embedding(vocab, 64), nn.LSTM(64, 384, batch_first=True), nn.Linear(384, vocab)
params = [*emb.parameters(), *rnn.parameters(), *head.parameters()]
opt = torch.optim.Adam(params, lr=5e-3)
state, pos, tokens, started = None, 0, 0, None
warm = 10
step = 0
while True:
    if pos + T > n:
        pos, state = 0, None
    x, y = x_all[:, pos:pos + T], y_all[:, pos:pos + T]
    out, state = rnn(emb(x), state)
    state = tuple(s.detach() for s in state)
    loss = nn.functional.cross_entropy(head(out).reshape(-1, vocab), y.reshape(-1))
    opt.zero_grad(); loss.backward(); nn.utils.clip_grad_norm_(params, 1.0); opt.step()
    pos += T
    step += 1
    if step == warm:
        started, tokens = time.perf_counter(), 0
    elif step > warm:
        tokens += B * T
        if time.perf_counter() - started >= seconds:
            break
print(tokens / (time.perf_counter() - started))
'''


def corpus() -> tuple[str, str]:
    """(path of a text file, its description) for the runs."""
    shakespeare = sources.corpus("shakespeare")
    if shakespeare.is_ready():
        return str(shakespeare.text_path), "Shakespeare (real, fetched by `seqlab data fetch shakespeare`)"
    stdlib = sources.corpus("pystdlib")
    path = stdlib.fetch(log=lambda m: None)
    return str(path), "the Python standard library's source (a stand-in: Shakespeare was not fetched)"


def seqlab_rate(text: str, seconds: float, threads: int, folder: Path) -> float:
    """Median tokens/s of `seqlab train` over the log rows after the first (warm-up)."""
    out = folder / f"run-{time.monotonic_ns()}"
    cmd = [sys.executable, "-m", "seqlab.cli", "train", "--config", str(_demo_config()), f"data.path={text}",
           f"train.max_time={seconds + 2}", "train.max_steps=0", "train.max_epochs=0",
           "train.eval_every=1000000", "train.eval_tokens=2000", "train.log_every=5", "train.progress=false",
           "train.schedule=constant", f"train.threads={threads}", "--out", str(out)]
    done = subprocess.run(cmd, capture_output=True, text=True, timeout=seconds * 20 + 120)
    if done.returncode != 0:
        raise RuntimeError(done.stdout[-2000:] + done.stderr[-2000:])
    rows = [json.loads(line) for line in (out / "metrics.jsonl").read_text().splitlines()]
    rows = [r for r in rows if r.get("split") == "train"]
    if len(rows) < 2:
        raise RuntimeError(f"fewer than 2 log rows in {seconds} s: raise --seconds")
    # from the first log row on (the updates before it hold the warm-up)
    return (rows[-1]["tokens"] - rows[0]["tokens"]) / (rows[-1]["elapsed"] - rows[0]["elapsed"])


def bare_rate(text: str, seconds: float) -> float:
    done = subprocess.run([sys.executable, "-c", BARE, text, str(seconds)], capture_output=True, text=True,
                          timeout=seconds * 20 + 120)
    if done.returncode != 0:
        raise RuntimeError(done.stderr[-2000:])
    return float(done.stdout.strip().splitlines()[-1])


def _demo_config() -> Path:
    return Path(__file__).resolve().parents[3] / "configs" / "demo.toml"


def run_contention(out: str, repeats: int, seconds: float, command: str) -> dict:
    text, data = corpus()
    cores = os.cpu_count() or 1
    programs = {"seqlab train (threads=0: free cores)": lambda d: seqlab_rate(text, seconds, 0, d),
                f"seqlab train train.threads={cores} (before)": lambda d: seqlab_rate(text, seconds, cores, d),
                "bare PyTorch loop": lambda d: bare_rate(text, seconds)}
    rates: dict[str, dict[str, list[float]]] = {p: {"quiet": [], "busy": []} for p in programs}
    with tempfile.TemporaryDirectory() as tmp:
        for round_ in range(repeats):
            order = list(programs) if round_ % 2 == 0 else list(reversed(programs))
            for condition in ("quiet", "busy") if round_ % 2 == 0 else ("busy", "quiet"):
                competitor = subprocess.Popen(COMPETITOR) if condition == "busy" else None
                try:
                    for name in order:
                        rate = programs[name](Path(tmp))
                        rates[name][condition].append(rate)
                        print(f"round {round_ + 1}/{repeats} {condition:<5} {name}: {rate:,.0f} tokens/s", flush=True)
                finally:
                    if competitor is not None:
                        competitor.kill()
                        competitor.wait()
    rows = []
    for name, r in rates.items():
        quiet, busy = statistics.median(r["quiet"]), statistics.median(r["busy"])
        rows.append({"program": name, "quiet": quiet, "busy": busy, "ratio": busy / quiet, "runs": r})
    report = {"rows": rows, "repeats": repeats, "seconds": seconds, "data": data, "machine": machine(),
              "commit": commit(), "date": time.strftime("%Y-%m-%d"), "command": command}
    return write_report(out, report, markdown)


def markdown(r: dict) -> str:
    rows = "".join(f"| {row['program']} | {row['quiet']:,.0f} | {row['busy']:,.0f} | **{row['ratio']:.2f}x** |\n"
                   for row in r["rows"])
    seqlab, before = r["rows"][0], r["rows"][1]
    return (
        "# Training beside one busy process\n\n"
        f"Each program trained the demo model (`configs/demo.toml`, 1 x 384 LSTM, batch 32 x 50) for "
        f"{r['seconds']:g} s in a fresh process, quiet and beside one `python -c \"while True: pass\"`; "
        f"medians of {r['repeats']} rounds that interleave every program and both conditions. "
        "A fair share of 2 cores beside one competitor is 0.5x.\n\n"
        "| program | quiet tokens/s | one competitor tokens/s | competitor / quiet |\n|---|---:|---:|---:|\n" + rows +
        f"\nQuiet cost of the free-cores policy against a fixed full team, same run: "
        f"{seqlab['quiet'] / before['quiet']:.3f}x (1.000 = none).\n\n" + provenance(r, data=r["data"]))


def main(argv=None) -> int:
    p = bench_parser("contention", __doc__, "benchmarks/contention")
    p.add_argument("--repeats", type=int, default=3, help="rounds; each runs every program quiet and busy")
    p.add_argument("--seconds", type=float, default=12.0, help="training time per measurement")
    args = p.parse_args(argv)
    if args.repeats < 1 or args.seconds <= 0:
        p.error("--repeats must be at least 1 and --seconds greater than 0")
    command = f"seqlab bench contention --out {args.out} --repeats {args.repeats} --seconds {args.seconds:g}"
    run_contention(args.out, args.repeats, args.seconds, command)
    return 0


if __name__ == "__main__":
    sys.exit(main())
