"""The `seqlab bench` command: its parser and its dispatch. Every benchmark writes JSON and
Markdown with the machine, the commit and the command that reruns it (bench/common.py);
MODULE_BENCHES are the ones whose module parses its own arguments (cli.main forwards them).
"""
from __future__ import annotations

import argparse

from seqlab import SeqlabError

# benchmarks whose module has its own argument parser: name -> (module, help)
MODULE_BENCHES = {
    "generation": ("seqlab.bench.generation", "TCN / WaveNet generation with per-layer queues against recomputation"),
    "ngram-words": ("seqlab.bench.ngram_words", "word-level n-gram against nltk.lm on 100k tokens, equal perplexity"),
    "forecast": ("seqlab.bench.forecast", "AR(p), window MLP and LSTM forecasters against the seasonal naive forecast"),
    "reverse": ("seqlab.bench.reverse", "seq2seq with and without attention on the synthetic reverse task"),
    "decoding": ("seqlab.bench.decoding", "batch-1 generation from recurrent LMs against the roofline of its arithmetic"),
    "gpu-check": ("seqlab.bench.gpu_check", "the GPU figures in one script (<= 8 min): cuDNN paths, bf16, compile, two full cells"),
    "contention": ("seqlab.bench.contention", "training speed quiet and beside one busy process: seqlab and bare PyTorch"),
    "faults": ("seqlab.bench.faults", "SIGKILL a short run at random moments, resume, compare with an uninterrupted run"),
    "list": ("seqlab.bench.suite", "the paper-reproduction benchmarks (karpathy2016, bai2018, ...) and their grids"),
    "run": ("seqlab.bench.suite", "run a paper-reproduction benchmark's grid: seqlab bench run NAME --profile quick"),
}


def add_bench_parser(sub, fmt) -> None:
    """The bench sub-command and its benchmarks."""
    p = sub.add_parser("bench", formatter_class=fmt, help="benchmarks with committed results",
                       description="Named benchmarks; each writes JSON + Markdown with the machine and commit.")
    bsub = p.add_subparsers(dest="bench_command", metavar="NAME")
    b = bsub.add_parser("trainer", help="seqlab's training loop against a bare PyTorch loop, same model")
    b.add_argument("--out", default="benchmarks/trainer_speed", help="output path without extension")
    b.add_argument("--repeats", type=int, default=7, help="timed blocks per loop, at least; split over 2 alternating rounds, medians compared (default: 7)")
    b.add_argument("--updates", type=int, default=10, help="updates per timed block (default: 10)")
    b = bsub.add_parser("speed", help="every recurrent path against nn.RNN/LSTM/GRU: forward + backward tokens/s")
    b.add_argument("--out", default="benchmarks/speed", help="output path without extension")
    b.add_argument("--repeats", type=int, default=7, help="timed rounds, candidates interleaved (default: 7)")
    b.add_argument("--batch", type=int, default=32, help="batch size (default: 32)")
    b.add_argument("--steps", type=int, default=100, help="time steps (default: 100)")
    b.add_argument("--hidden", type=int, default=256, help="hidden and input size (default: 256)")
    b.add_argument("--device", default="cpu", help="cpu or cuda (default: cpu)")
    b.add_argument("--threads", type=int, default=0,
                   help="torch intra-op threads; 0 keeps torch's default (default: 0)")
    b = bsub.add_parser("cells", help="every recurrent cell trained for the same time: validation bpc")
    b.add_argument("--out", default="benchmarks/cells", help="output path without extension")
    b.add_argument("--seconds", type=float, default=60.0, help="training time per cell (default: 60)")
    b.add_argument("--hidden", type=int, default=128, help="hidden units, one layer (default: 128)")
    b.add_argument("--only", nargs="*", default=None, help="run only the cells whose name contains one of these")
    b = bsub.add_parser("ngram", help="order-20 n-gram build time; speed and perplexity against nltk.lm")
    b.add_argument("--out", default="benchmarks/ngram", help="output path without extension")
    b.add_argument("--repeats", type=int, default=3, help="order-20 builds; the median is reported (default: 3)")
    b = bsub.add_parser("families", help="n-grams 1-10, window MLP, TCN, LSTM on the same time budget")
    b.add_argument("--out", default="benchmarks/families", help="output path without extension")
    b.add_argument("--seconds", type=float, default=180.0, help="training time per neural model (default: 180)")
    b.add_argument("--only", nargs="*", default=None, help="run only the rows whose name contains one of these")
    b = bsub.add_parser("tasks", help="classify / tag / translate on real data: one train + eval run per row",
                        description="Rows (benchmarks/tasks.md): " + "sentiment-bilstm, sentiment-bow, pos-bilstm, "
                                    "en-es-attention, en-es-no-attention. Finished rows are kept, not rerun.")
    b.add_argument("--only", nargs="*", default=None, metavar="ROW", help="run only these rows")
    b.add_argument("--rerun", action="store_true", help="run recorded rows again (default: keep them)")
    b.add_argument("--reuse", metavar="RUN", help="record RUN, already trained by the row's own command (one --only ROW)")
    for name, what in MODULE_BENCHES.items():
        b = bsub.add_parser(name, help=what[1], add_help=False,
                            description=f"{what[1]}; options: seqlab bench {name} --help")
        b.add_argument("args", nargs=argparse.REMAINDER, help=argparse.SUPPRESS)


def cmd_bench(args) -> int:
    if args.bench_command == "trainer":
        from seqlab.bench.trainer_speed import run_benchmark
        run_benchmark(args.out, repeats=args.repeats, updates=args.updates)
        return 0
    if args.bench_command == "cells":
        from seqlab.bench.cells import run_cells
        if args.seconds <= 0 or args.hidden <= 0:
            raise SeqlabError("--seconds and --hidden must be greater than 0")
        run_cells(args.out, seconds=args.seconds, hidden=args.hidden, only=args.only)
        return 0
    if args.bench_command == "speed":
        from seqlab.bench.speed import run_speed
        run_speed(args.out, repeats=args.repeats, batch=args.batch, steps=args.steps, hidden=args.hidden,
                  device=args.device, threads=args.threads)
        return 0
    if args.bench_command == "ngram":
        from seqlab.bench.ngram import run_ngram
        run_ngram(args.out, repeats=args.repeats)
        return 0
    if args.bench_command == "families":
        from seqlab.bench.families import run_families
        if args.seconds <= 0:
            raise SeqlabError("--seconds must be greater than 0")
        run_families(args.out, seconds=args.seconds, only=args.only)
        return 0
    if args.bench_command == "tasks":
        from seqlab.bench.tasks import run_tasks
        run_tasks(args.only, rerun=args.rerun, reuse=args.reuse)
        return 0
    if args.bench_command in MODULE_BENCHES:
        import importlib
        return importlib.import_module(MODULE_BENCHES[args.bench_command][0]).main(args.args)
    raise SeqlabError("name a benchmark: seqlab bench trainer | speed | cells | families | ngram | tasks | "
                      + " | ".join(MODULE_BENCHES))
