"""`seqlab bench trainer`: is seqlab's training loop as fast as a bare PyTorch loop?

Both train the default character LSTM (the defaults of ModelConfig and TrainConfig:
embedding 64, 2 × 512 LSTM, dropout 0.2, batch 64, TBPTT 100, Adam, clipping at 1.0)
on the same batchified stream. The bare loop is the pytorch/examples word_language_model
idiom: embedding, nn.LSTM, dropout, linear; detach the hidden state between chunks;
clip_grad_norm_; loss.item() every step.

seqlab is timed through `fit` itself (progress bar, metrics, everything a user gets),
reading the tokens/s it records every `updates` updates; the first block of each run is
warm-up and dropped. The two loops alternate `rounds` times so that drift in a shared
machine's speed hits both; the figure is the ratio of the medians.
"""
from __future__ import annotations

import contextlib
import copy
import io
import json
import random
import statistics
import sys
import tempfile
import time
from pathlib import Path

import torch
from torch import nn

from seqlab.bench.common import bench_parser, commit, machine, provenance, write_report
from seqlab.config import Config, DataConfig, validate
from seqlab.data.text import batchify, build_splits
from seqlab.training.engine import fit

STAND_IN_CHARS = 1_000_000


def stand_in_text(n_chars: int = STAND_IN_CHARS) -> str:
    """Generated English-like text (speed does not depend on what the characters say)."""
    rng = random.Random(0)
    words = ("the king queen shall speak now and my lord of thee sweet love night death crown "
             "what is honour a word good sir madam come go hence").split()
    out, size = [], 0
    while size < n_chars:
        line = " ".join(rng.choice(words) for _ in range(rng.randint(4, 12))).capitalize() + ".\n"
        out.append(line)
        size += len(line)
    return "".join(out)[:n_chars]


class BareLM(nn.Module):
    """pytorch/examples word_language_model's RNNModel, reduced to the LSTM case."""

    def __init__(self, vocab_size: int, embedding_size: int, hidden_size: int, num_layers: int, dropout: float):
        super().__init__()
        self.drop = nn.Dropout(dropout)
        self.encoder = nn.Embedding(vocab_size, embedding_size)
        self.rnn = nn.LSTM(embedding_size, hidden_size, num_layers, dropout=dropout, batch_first=True)
        self.decoder = nn.Linear(hidden_size, vocab_size)

    def forward(self, x, hidden):
        out, hidden = self.rnn(self.drop(self.encoder(x)), hidden)
        return self.decoder(self.drop(out)), hidden


def bare_loop(cfg: Config, data: torch.Tensor, vocab_size: int, blocks: int, updates: int) -> list[float]:
    """tokens/s of each block of `updates` updates."""
    m, t = cfg.model, cfg.train
    torch.manual_seed(t.seed)
    model = BareLM(vocab_size, m.embedding_size, m.hidden_size, m.num_layers, m.dropout)
    optimizer = torch.optim.Adam(model.parameters(), lr=t.lr)
    criterion = nn.CrossEntropyLoss()
    hidden = None
    i, rates, total_loss = 0, [], 0.0
    for _ in range(blocks):
        start, tokens = time.perf_counter(), 0
        for _ in range(updates):
            if i + t.bptt_steps + 1 > data.size(1):
                i, hidden = 0, None
            x, y = data[:, i:i + t.bptt_steps], data[:, i + 1:i + 1 + t.bptt_steps]
            hidden = None if hidden is None else tuple(h.detach() for h in hidden)
            optimizer.zero_grad()
            logits, hidden = model(x, hidden)
            loss = criterion(logits.reshape(-1, vocab_size), y.reshape(-1))
            loss.backward()
            torch.nn.utils.clip_grad_norm_(model.parameters(), t.clip_norm)
            optimizer.step()
            total_loss += loss.item()
            tokens += y.numel()
            i += t.bptt_steps
        rates.append(tokens / (time.perf_counter() - start))
    return rates


def seqlab_loop(cfg: Config, text_path: Path, blocks: int, updates: int) -> list[float]:

    cfg.data.path = str(text_path)
    cfg.train.max_steps = blocks * updates
    cfg.train.log_every = updates
    cfg.train.eval_every = blocks * updates
    cfg.train.eval_tokens = 2000
    cfg.train.progress = True          # users get the bar, so its cost is counted
    with tempfile.TemporaryDirectory() as tmp, contextlib.redirect_stderr(io.StringIO()):
        fit(cfg, Path(tmp) / "run", log=lambda m: None)
        rows = [json.loads(line) for line in (Path(tmp) / "run" / "metrics.jsonl").read_text().splitlines()]
    return [r["tok_per_s"] for r in rows if r["split"] == "train"]


def run_benchmark(out: str, repeats: int = 7, updates: int = 20, rounds: int = 2) -> dict:

    cfg = Config()
    cfg.train.device = "cpu"
    cfg.data.valid_fraction = cfg.data.test_fraction = 0.01
    validate(cfg)
    blocks = max(2, -(-repeats // rounds) + 1)          # per run: one warm-up block + the timed ones
    text = stand_in_text()
    seqlab_rates, bare_rates = [], []
    with tempfile.TemporaryDirectory() as tmp:
        text_path = Path(tmp) / "stand-in.txt"
        text_path.write_text(text, encoding="utf-8")
        splits = build_splits(text, DataConfig(path=str(text_path), valid_fraction=0.01, test_fraction=0.01))
        data = batchify(splits.train, cfg.train.batch_size)
        for r in range(rounds):
            print(f"round {r + 1}/{rounds}: seqlab fit ...", file=sys.stderr, flush=True)
            seqlab_rates += seqlab_loop(copy.deepcopy(cfg), text_path, blocks, updates)[1:]
            print(f"round {r + 1}/{rounds}: bare PyTorch loop ...", file=sys.stderr, flush=True)
            bare_rates += bare_loop(cfg, data, len(splits.vocab), blocks, updates)[1:]
    med_seqlab, med_bare = statistics.median(seqlab_rates), statistics.median(bare_rates)
    result = {
        "benchmark": "trainer",
        "question": "training throughput of seqlab's loop vs a bare PyTorch loop, default character LSTM",
        "command": f"seqlab bench trainer --repeats {repeats} --updates {updates}",
        "commit": commit(),
        "machine": machine(),
        "data": f"generated stand-in text, {STAND_IN_CHARS:,} chars (speed does not depend on the text)",
        "model": vars(cfg.model) | {"vocab_size": len(splits.vocab)},
        "train": {k: getattr(cfg.train, k) for k in ("batch_size", "bptt_steps", "optimizer", "lr", "clip_norm")},
        "updates_per_block": updates,
        "seqlab_tok_per_s": seqlab_rates,
        "bare_tok_per_s": bare_rates,
        "median_seqlab_tok_per_s": med_seqlab,
        "median_bare_tok_per_s": med_bare,
        "ratio": med_seqlab / med_bare,
        "date": time.strftime("%Y-%m-%d"),
    }
    return write_report(out, result, markdown)


def markdown(r: dict) -> str:
    return (
        f"# Trainer speed: seqlab vs a bare PyTorch loop\n\n"
        f"Default character LSTM ({r['model']['num_layers']} × {r['model']['hidden_size']} LSTM, embedding "
        f"{r['model']['embedding_size']}, dropout {r['model']['dropout']}, vocabulary {r['model']['vocab_size']}), "
        f"batch {r['train']['batch_size']}, TBPTT {r['train']['bptt_steps']}, Adam, clipping {r['train']['clip_norm']}. "
        f"Forward + backward + update, tokens/s, median of {len(r['seqlab_tok_per_s'])} blocks of "
        f"{r['updates_per_block']} updates each, the two loops alternating.\n\n"
        f"| loop | median tokens/s | blocks |\n|---|---:|---|\n"
        f"| bare PyTorch (pytorch/examples idiom) | {r['median_bare_tok_per_s']:,.0f} | "
        f"{', '.join(f'{x:,.0f}' for x in r['bare_tok_per_s'])} |\n"
        f"| seqlab `fit` (progress bar, metrics on) | {r['median_seqlab_tok_per_s']:,.0f} | "
        f"{', '.join(f'{x:,.0f}' for x in r['seqlab_tok_per_s'])} |\n\n"
        f"**Ratio seqlab / bare: {r['ratio']:.3f}** (acceptance: at least 0.9).\n\n"
        + provenance(r, data=r["data"])
    )


def main(argv: list[str] | None = None) -> int:
    p = bench_parser("trainer", __doc__, "benchmarks/trainer_speed")
    p.add_argument("--repeats", type=int, default=7, help="timed blocks per loop, at least; split over 2 alternating "
                   "rounds, medians compared")
    p.add_argument("--updates", type=int, default=10, help="updates per timed block")
    a = p.parse_args(argv)
    run_benchmark(a.out, repeats=a.repeats, updates=a.updates)
    return 0
