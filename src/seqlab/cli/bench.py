"""The `seqlab bench` command. Every benchmark is registered once, here, by name; its module
parses its own arguments (`main(argv)`, built on bench/common.bench_parser) and writes JSON
and Markdown with the machine, the commit and the command that reruns it. The modules are
imported only when their benchmark runs, so `seqlab bench --help` loads none of them.
"""
from __future__ import annotations

import argparse
import importlib

from seqlab import SeqlabError

# name -> (module with main(argv), one line of help)
BENCHES = {
    "trainer": ("seqlab.bench.trainer_speed", "seqlab's training loop against a bare PyTorch loop, same model"),
    "speed": ("seqlab.bench.speed", "every recurrent path against nn.RNN/LSTM/GRU: forward + backward tokens/s"),
    "cells": ("seqlab.bench.cells", "every recurrent cell trained for the same time: validation bpc"),
    "ngram": ("seqlab.bench.ngram", "order-20 n-gram build time; speed and perplexity against nltk.lm"),
    "families": ("seqlab.bench.families", "n-grams 1-10, window MLP, TCN, LSTM on the same time budget"),
    "tasks": ("seqlab.bench.tasks", "classify / tag / translate on real data: one train + eval run per row"),
    "generation": ("seqlab.bench.generation", "TCN / WaveNet generation with per-layer queues against recomputation"),
    "ngram-words": ("seqlab.bench.ngram_words", "word-level n-gram against nltk.lm on 100k tokens, equal perplexity"),
    "forecast": ("seqlab.bench.forecast", "AR(p), window MLP and LSTM forecasters against the seasonal naive forecast"),
    "reverse": ("seqlab.bench.reverse", "seq2seq with and without attention on the synthetic reverse task"),
    "decoding": ("seqlab.bench.decoding", "batch-1 generation from recurrent LMs against the roofline of its arithmetic"),
    "gpu-check": ("seqlab.bench.gpu_check", "the GPU figures in one script (<= 8 min): cuDNN paths, bf16, compile, two full cells"),
    "contention": ("seqlab.bench.contention", "training speed quiet and beside one busy process: seqlab and bare PyTorch"),
    "caption": ("seqlab.bench.caption", "Show and Tell against Show, Attend and Tell at equal parameters and updates"),
    "folk": ("seqlab.bench.folk", "LSTM, TCN and n-gram on folk tunes in ABC: bpc, and do their tunes parse and keep the meter"),
    "speech": ("seqlab.bench.speech", "WaveNet on speech: bits per sample with the right, a wrong and no speaker label; audio, spectrograms, generation speed"),
    "compress": ("seqlab.bench.compress", "seqlab compress beside gzip, bzip2, xz, zstd: size, bits per byte, time"),
    "faults": ("seqlab.bench.faults", "SIGKILL a short run at random moments, resume, compare with an uninterrupted run"),
    "list": ("seqlab.bench.suite", "the paper-reproduction benchmarks (karpathy2016, bai2018, ...) and their grids"),
    "run": ("seqlab.bench.suite", "run a paper-reproduction benchmark's grid: seqlab bench run NAME --profile quick"),
}


def add_bench_parser(sub, fmt) -> None:
    """The bench sub-command: one entry per benchmark, whose options its own module parses."""
    p = sub.add_parser("bench", formatter_class=fmt, help="benchmarks with committed results",
                       description="Named benchmarks; each writes JSON + Markdown with the machine and commit.")
    bsub = p.add_subparsers(dest="bench_command", metavar="NAME")
    for name, what in BENCHES.items():
        b = bsub.add_parser(name, help=what[1], add_help=False,
                            description=f"{what[1]}; options: seqlab bench {name} --help")
        b.add_argument("args", nargs=argparse.REMAINDER, help=argparse.SUPPRESS)


def cmd_bench(args) -> int:
    if args.bench_command in BENCHES:
        return importlib.import_module(BENCHES[args.bench_command][0]).main(args.args)
    raise SeqlabError("name a benchmark: seqlab bench " + " | ".join(BENCHES))
