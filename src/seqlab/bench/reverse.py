"""The reverse task: attention seq2seq models (Bahdanau; Luong general and dot) reach >= 99%
sequence accuracy on a 2-core CPU in minutes; the same model without attention, at the same
budget, beside them.

    python -m seqlab.bench.reverse --out benchmarks/reverse --threads 1

On a 2-core machine shared with other jobs, one PyTorch thread is much faster than two
(OpenMP threads that spin-wait for a busy core), hence `--threads 1` for the committed run.

Task (data/synthetic.py): a source is 5 to 20 symbols, uniform over an alphabet of 10;
the target is the source reversed. Every update draws a fresh batch; the 2,000 held-out test
sequences and the 500 validation sequences (fixed seeds) are excluded from training, so the
score is on sequences never seen.

Model (models/seq2seq.py): LSTM, 1 layer, embedding 32, hidden 128 (64 per encoder
direction), no dropout; teacher forcing; Adam, learning rate 3e-3 with a cosine decay to 0
over the update budget, gradient norm clipped to 1. Every model gets the same updates on the
same batches.

Scored with greedy decoding: sequence accuracy (the whole output, <eos> included, equals the
target) and token accuracy (position by position over the target's length). Beam search
(width 5, α = 0.6) is scored too. The validation set is decoded every `--eval-every` updates
to record when a model first passes 99%. A heat map of the attention on one test example is
written beside the report (`<out>_attention.png`).
"""
from __future__ import annotations

import math
import os
import time
from datetime import date

import torch

from seqlab.analysis.attention import plot_attention
from seqlab.bench.common import bench_parser, commit, machine, provenance, write_report
from seqlab.config import ModelConfig
from seqlab.data.sequences import seq2seq_batch as make_batch
from seqlab.data.synthetic import reverse_pairs, symbol_vocab, synthetic_vocab_size
from seqlab.data.vocab import BOS, EOS
from seqlab.decode import seq2seq as decode
from seqlab.models.seq2seq import Seq2Seq, sequence_loss, strip_eos

NAMES = {"bahdanau": "Bahdanau (additive) attention", "luong_general": "Luong (general) attention, input feeding",
         "luong_dot": "Luong (dot) attention, input feeding", "none": "no attention (Sutskever et al. 2014)"}


def decode_scores(model: Seq2Seq, pairs, batch_size: int = 500, beam: int = 0) -> dict:
    """Greedy (beam = 0) or beam-search sequence and token accuracy on (source, target) pairs."""
    exact = tokens = total = 0
    for i in range(0, len(pairs), batch_size):
        chunk = pairs[i:i + batch_size]
        src, src_lengths, _, _ = make_batch(chunk)
        max_len = int(src_lengths.max()) + 5
        if beam:
            outputs = [h[0].tokens for h in decode.beam_search(model, src, src_lengths, beam, max_len, alpha=0.6)]
        else:
            outputs = decode.greedy(model, src, src_lengths, max_len)
        for out, (_, target) in zip(outputs, chunk):
            exact += out == [*target, EOS]
            words = strip_eos(out)
            tokens += sum(a == b for a, b in zip(words, target))
            total += len(target)
    return {"sequence_accuracy": exact / len(pairs), "token_accuracy": tokens / total}


def train_one(attention: str, args, valid, test) -> dict:
    torch.manual_seed(args.seed)
    vocab = synthetic_vocab_size(args.alphabet)
    cfg = ModelConfig(name="lstm", embedding_size=32, hidden_size=args.hidden, num_layers=1, dropout=0.0)
    model = Seq2Seq(cfg, vocab, vocab, attention)
    opt = torch.optim.Adam(model.parameters(), lr=args.lr)
    cosine = lambda step: 0.5 * (1 + math.cos(math.pi * min(step, args.steps) / args.steps))   # noqa: E731
    sched = torch.optim.lr_scheduler.LambdaLR(opt, cosine)
    held_out = {tuple(s) for s, _ in valid + test}
    curve, reached, train_seconds, losses = [], None, 0.0, []
    for step in range(1, args.steps + 1):
        pairs = [p for p in reverse_pairs(args.batch_size, args.min_len, args.max_len, args.alphabet,
                                          seed=10_000 + step) if tuple(p[0]) not in held_out]
        start = time.perf_counter()
        model.train()
        src, src_lengths, tgt_in, tgt_out = make_batch(pairs)
        logits, _ = model(src, src_lengths, tgt_in)                       # (B, U, V)
        loss = sequence_loss(logits, tgt_out)
        opt.zero_grad()
        loss.backward()
        torch.nn.utils.clip_grad_norm_(model.parameters(), 1.0)
        opt.step()
        sched.step()
        train_seconds += time.perf_counter() - start
        losses.append(loss.item())
        if step % args.eval_every == 0 or step == args.steps:
            acc = decode_scores(model, valid)["sequence_accuracy"]
            curve.append({"step": step, "train_seconds": round(train_seconds, 1),
                          "train_loss": sum(losses[-50:]) / len(losses[-50:]), "valid_sequence_accuracy": acc})
            print(f"{attention:>13} step {step:5d}  {train_seconds:6.0f} s  loss {curve[-1]['train_loss']:.4f}  "
                  f"valid seq acc {acc:.4f}", flush=True)
            if reached is None and acc >= 0.99:
                reached = {"step": step, "train_seconds": round(train_seconds, 1)}
    start = time.perf_counter()
    greedy = decode_scores(model, test)
    beam = decode_scores(model, test, batch_size=100, beam=5)
    decode_seconds = time.perf_counter() - start
    return {"attention": attention, "name": NAMES[attention],
            "parameters": sum(p.numel() for p in model.parameters()),
            "updates": args.steps, "train_seconds": round(train_seconds, 1),
            "final_train_loss": sum(losses[-50:]) / len(losses[-50:]),
            "greedy": greedy, "beam5": beam, "test_decode_seconds": round(decode_seconds, 1),
            "valid_99_reached": reached, "curve": curve, "model": model}


def heat_map(model: Seq2Seq, pair, alphabet: int, path: str) -> None:
    names = symbol_vocab(alphabet)
    src, src_lengths, _, _ = make_batch([pair])
    out = decode.greedy(model, src, src_lengths, len(pair[0]) + 5)[0]
    tgt_in = torch.tensor([[BOS, *out[:-1]]])                               # (1, U): <bos> + the output
    model.eval()
    with torch.no_grad():
        _, weights = model(src, src_lengths, tgt_in)                        # (1, U, S)
    plot_attention(path, weights[0], [names.itos[t] for t in pair[0]], [names.itos[t] for t in out],
                   title=f"{NAMES[model.attention_kind]}: reversing {len(pair[0])} symbols (greedy output)")


def markdown(r: dict) -> str:
    a = r["args"]
    rows = "\n".join(
        f"| {x['name']} | {x['parameters']:,} | {x['updates']:,} | {x['train_seconds']:.0f} | "
        f"{x['final_train_loss']:.4f} | **{100 * x['greedy']['sequence_accuracy']:.2f}%** | "
        f"{100 * x['greedy']['token_accuracy']:.2f}% | {100 * x['beam5']['sequence_accuracy']:.2f}% | "
        + (f"{x['valid_99_reached']['step']:,} ({x['valid_99_reached']['train_seconds']:.0f} s)"
           if x["valid_99_reached"] else "not reached") + " |"
        for x in r["results"])
    return (
        "# Reverse task: seq2seq with and without attention\n\n"
        f"Sources of {a['min_len']}–{a['max_len']} symbols over an alphabet of {a['alphabet']}, target = the "
        f"source reversed. LSTM, 1 layer, embedding 32, hidden {a['hidden']} ({a['hidden'] // 2} per encoder "
        f"direction), no dropout; teacher forcing; Adam {a['lr']:g} with a cosine decay to 0 over "
        f"{a['steps']:,} updates of {a['batch_size']} fresh sequences (the same batches for every model); "
        f"clip 1. Scored on {a['test']:,} held-out sequences never trained on; greedy decoding unless noted. "
        f"Sequence accuracy counts an output right only if all of it, <eos> included, equals the target.\n\n"
        "| model | parameters | updates | train s | final train loss | test sequence accuracy (greedy) | "
        "token accuracy | sequence accuracy, beam 5 | first ≥ 99% on validation |\n"
        "|---|---:|---:|---:|---:|---:|---:|---:|---:|\n" + rows + "\n\n"
        f"Attention heat map of one test example: `{r['heat_map']}`. Validation ({a['valid']} sequences) "
        f"decoded every {a['eval_every']} updates; times are training seconds only (decoding excluded). "
        f"Total wall time of the benchmark: {r['wall_seconds'] / 60:.1f} min, on a machine shared with other "
        f"jobs (1-minute load average {r['load_average'][0]:g} at the start, {r['load_average'][1]:g} at the end), "
        f"so the seconds are upper bounds.\n\n" + provenance(r))


def main(argv=None) -> int:
    p = bench_parser("reverse", __doc__, "benchmarks/reverse")
    p.add_argument("--attention", nargs="+", default=["bahdanau", "luong_general", "luong_dot", "none"], choices=list(NAMES),
                   help="models to train, each with the same budget")
    p.add_argument("--steps", type=int, default=1500, help="updates per model")
    p.add_argument("--batch-size", type=int, default=64, help="fresh sequences per update")
    p.add_argument("--lr", type=float, default=3e-3, help="Adam learning rate (cosine decay to 0)")
    p.add_argument("--hidden", type=int, default=128, help="hidden size (half per encoder direction)")
    p.add_argument("--alphabet", type=int, default=10, help="symbols")
    p.add_argument("--min-len", type=int, default=5, help="shortest source")
    p.add_argument("--max-len", type=int, default=20, help="longest source")
    p.add_argument("--valid", type=int, default=500, help="validation sequences")
    p.add_argument("--test", type=int, default=2000, help="held-out test sequences")
    p.add_argument("--eval-every", type=int, default=250, help="decode the validation set every N updates")
    p.add_argument("--threads", type=int, default=2, help="CPU threads for PyTorch")
    p.add_argument("--seed", type=int, default=0, help="weights seed")
    args = p.parse_args(argv)
    torch.set_num_threads(args.threads)
    wall, load_before = time.perf_counter(), os.getloadavg()[0]
    valid = reverse_pairs(args.valid, args.min_len, args.max_len, args.alphabet, seed=1)
    test = reverse_pairs(args.test, args.min_len, args.max_len, args.alphabet, seed=2)
    results = [train_one(a, args, valid, test) for a in args.attention]
    heat = f"{args.out}_attention.png"
    attending = [x for x in results if x["attention"] != "none"]
    if attending:
        longest = max(test[:50], key=lambda pair: len(pair[0]))              # a long one shows the pattern
        heat_map(attending[0]["model"], longest, args.alphabet, heat)
    command = "seqlab bench reverse" + "".join(
        f" --{k.replace('_', '-')} {' '.join(v) if isinstance(v, list) else v}"
        for k, v in vars(args).items() if v != p.get_default(k))
    report = {"benchmark": "reverse", "args": vars(args), "heat_map": heat if attending else None,
              "results": [{k: v for k, v in x.items() if k != "model"} for x in results],
              "wall_seconds": round(time.perf_counter() - wall, 1),
              "load_average": [round(load_before, 2), round(os.getloadavg()[0], 2)],
              "machine": machine(), "commit": commit(), "date": date.today().isoformat(), "command": command}
    write_report(args.out, report, markdown)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
