"""Error analysis of a character language model against an n-gram fitted on the same data.

Karpathy, Johnson & Fei-Fei (2016), "Visualizing and Understanding Recurrent Networks",
§4.3–4.4: score every character of held-out text under the LSTM and under an n-gram
trained on the same split, and ask *where* the LSTM wins. Their answer: the gains gather
on characters that need information from beyond the n-gram's n−1 characters of context —
a closing brace far from its opening brace, the end of a long line — while most of what
remains are errors both models make (word starts, rare words, new lines).

Here each scored character falls in exactly one class (the first that applies):

    close bracket  ) ] }  matched (one stack per bracket type) with its opener d characters
                   back, split at the n-gram's reach: d ≤ n−1 (the opener is inside its
                   context) or d > n−1 (it is not); or unmatched
    open bracket   ( [ {
    close / open quote   " toggling open / closed across the text; “ and ” as they are
                   (' is left to punctuation: in prose it is mostly an apostrophe)
    newline, space (any other whitespace too), digit
    word start     a letter after a non-letter (an apostrophe between letters stays in-word)
    in word        any other letter
    punctuation    anything else printable; other: <unk> and non-printing characters

so the classes' shares of the total gain sum to 1 (where the n-gram is the better model
overall the total is negative, and a share is a share of the model's total loss). Two groups overlap the classes (upper
case; the character right after a newline), and a distance view buckets characters by how
far back their relevant context lies: closers by distance to their opener, newlines by the
distance to the previous newline (the line's length with its newline; 1 ends an empty line),
letters inside a word by distance to the word's first letter.

Gain = n-gram bits − model bits, per character (positive: the model predicts it better);
a class's bits saved is its summed gain, and its share the bits saved over the total.
The model is scored exactly as `seqlab eval` scores it (`tasks.tbptt.evaluate`: the same
parallel streams, the state carried across chunks), so the mean over the scored characters
is eval's loss; the n-gram scores the same characters from a <bos>-padded start of the text.

Dimension legend: N characters of text, B parallel streams, T chunk length, V vocabulary.
"""
from __future__ import annotations

import argparse
import json
import math
import sys
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F

from seqlab import SeqlabError
from seqlab.config import ModelConfig
from seqlab.data.sources import read_path
from seqlab.data.text import batchify, load_splits
from seqlab.io import Output, output
from seqlab.models.base import hook
from seqlab.models.ngram import MAX_ORDER, SMOOTHINGS, NGramLM
from seqlab.tasks.tbptt import summary
from seqlab.training.plots import pyplot, save_figure
from seqlab.training.runs import load_run

OPENERS = {"(": ")", "[": "]", "{": "}"}
CLOSERS = {close: open_ for open_, close in OPENERS.items()}
CLASSES = ("close bracket, near", "close bracket, far", "close bracket, unmatched", "open bracket",
           "close quote", "open quote", "newline", "space", "digit", "word start", "in word",
           "punctuation", "other")
GROUPS = ("upper case", "after newline")
DISTANCES = ("close bracket", "close quote", "newline", "in word")
BUCKET_EDGES = (1, 2, 4, 8, 16, 32, 64, 128, 256, 512, 1024)   # bucket k: edges[k-1] < d ≤ edges[k]
LN2 = math.log(2)


# -- 1. what each character is ----------------------------------------------------------

def categorize(text: str, reach: int) -> dict[str, np.ndarray]:
    """Per character of `text` (N,): `klass` index into CLASSES, `upper` and `after_newline`
    flags, and `distance`: how far back its relevant context is (opener of a matched closer,
    the newline before a newline, first letter of the word a letter is in; 0 where none).
    `reach` = n−1, the characters an n-gram of order n sees."""
    N = len(text)
    klass = np.empty(N, np.int64)
    distance = np.zeros(N, np.int64)
    index = {name: k for k, name in enumerate(CLASSES)}
    stacks: dict[str, list[int]] = {b: [] for b in OPENERS}
    open_quote = {'"': -1, "“": -1}       # position of the open quote, −1 when closed
    line_start, word_start = 0, -1
    for i, c in enumerate(text):
        prev = text[i - 1] if i else "\n"
        if c.isalpha():
            in_word = prev.isalpha() or (prev in "'’" and i >= 2 and text[i - 2].isalpha())
            if not in_word:
                word_start = i
            klass[i] = index["in word" if in_word else "word start"]
            distance[i] = i - word_start if in_word else 0
        elif c in CLOSERS:
            stack = stacks[CLOSERS[c]]
            if stack:
                distance[i] = i - stack.pop()
                klass[i] = index["close bracket, near" if distance[i] <= reach else "close bracket, far"]
            else:
                klass[i] = index["close bracket, unmatched"]
        elif c in OPENERS:
            stacks[c].append(i)
            klass[i] = index["open bracket"]
        elif c in '"“”':
            key = '"' if c == '"' else "“"
            closing = c == "”" or (c == '"' and open_quote[key] >= 0)
            if closing and open_quote[key] >= 0:
                distance[i] = i - open_quote[key]
            open_quote[key] = -1 if closing else i
            klass[i] = index["close quote" if closing else "open quote"]
        elif c == "\n":
            klass[i], distance[i] = index["newline"], i - line_start + 1
            line_start = i + 1
        elif c.isspace():
            klass[i] = index["space"]
        elif c.isdigit():
            klass[i] = index["digit"]
        elif c.isprintable():
            klass[i] = index["punctuation"]
        else:
            klass[i] = index["other"]
    upper = np.fromiter((c.isupper() for c in text), bool, N)
    after_newline = np.zeros(N, bool)
    after_newline[1:] = np.frombuffer(text[:-1].encode("utf-32-le"), np.uint32) == ord("\n")
    return {"klass": klass, "upper": upper, "after_newline": after_newline, "distance": distance}


def ids_to_text(ids: np.ndarray, vocab) -> str:
    """One character per id: specials (<unk>, ...) become NUL, which `categorize` calls 'other'."""
    table = [t if len(t) == 1 else "\x00" for t in vocab.itos]
    return "".join(table[int(i)] for i in ids)


# -- 2. per-character log-probabilities ---------------------------------------------------

@torch.no_grad()
def model_log_probs(model, ids: np.ndarray, batch_size: int, bptt_steps: int,
                    device: torch.device) -> tuple[np.ndarray, np.ndarray]:
    """The log-probability of every character `tasks.tbptt.evaluate` scores, and its position
    in `ids`: the same B streams (`batchify`), chunks of `bptt_steps`, state carried across
    chunks. Returns (positions (P,), natural-log probabilities (P,) float64)."""
    batch_size = max(1, min(batch_size, len(ids) // 2))
    data = batchify(ids, batch_size).to(device)                                # (B, N/B)
    was_training = model.training
    model.eval()
    state = model.init_state(batch_size)
    score_targets = hook(model, "target_log_probs")                   # count models
    chunks = []
    for i in range(0, data.size(1) - 1, bptt_steps):
        targets = data[:, i + 1:i + 1 + bptt_steps]                            # (B, T)
        inputs = data[:, i:i + targets.size(1)]                                # (B, T)
        if score_targets is not None:
            log_probs, state = score_targets(inputs, targets, state)           # (B, T)
        else:
            logits, state = model(inputs, state)                               # (B, T, V)
            log_probs = F.log_softmax(logits.double(), -1).gather(-1, targets[..., None])[..., 0]  # (B, T)
        chunks.append(log_probs.double().cpu())
    model.train(was_training)
    log_probs = torch.cat(chunks, 1).numpy()                                   # (B, N/B - 1)
    per_row = data.size(1)
    positions = np.arange(batch_size)[:, None] * per_row + np.arange(1, per_row)[None, :]  # (B, N/B - 1)
    return positions.reshape(-1), log_probs.reshape(-1)


def ngram_log_probs(train_ids: np.ndarray, ids: np.ndarray, order: int, smoothing: str,
                    vocab_size: int) -> np.ndarray:
    """(N,) natural-log probability of each token of `ids` under an n-gram of `order` fitted
    on `train_ids`, the text scored from a <bos>-padded start (`NGramLM.stream_log_probs`)."""
    model = NGramLM(ModelConfig(name="ngram", order=order, smoothing=smoothing), vocab_size)
    return model.fit(np.asarray(train_ids, np.int64)).stream_log_probs(ids)


# -- 3. the comparison ---------------------------------------------------------------------

def _row(name: str, mask: np.ndarray, model_bits: np.ndarray, ngram_bits: np.ndarray,
         total_gain: float) -> dict:
    count = int(mask.sum())
    if count == 0:
        return {"name": name, "count": 0, "model_bpc": None, "ngram_bpc": None, "gain_bpc": None,
                "gain_bits": 0.0, "share_of_gain": 0.0}
    model_mean, ngram_mean = float(model_bits[mask].mean()), float(ngram_bits[mask].mean())
    gain_sum = float((ngram_bits[mask] - model_bits[mask]).sum())
    return {"name": name, "count": count, "model_bpc": model_mean, "ngram_bpc": ngram_mean,
            "gain_bpc": ngram_mean - model_mean, "gain_bits": gain_sum,
            "share_of_gain": gain_sum / total_gain if total_gain else 0.0}


def bucket_of(distance: np.ndarray) -> np.ndarray:
    """Index k of the bucket edges[k-1] < d ≤ edges[k] (d = 1 is bucket 0; past the last edge: len(edges))."""
    return np.searchsorted(np.asarray(BUCKET_EDGES), distance, side="left")


def compare(categories: dict[str, np.ndarray], model_bits: np.ndarray, ngram_bits: np.ndarray) -> dict:
    """Per class, per group and per distance bucket: count, mean bits/char of both models,
    their difference (gain) and the share of the total gain. All arrays are over the scored
    characters only (P,)."""
    gain = ngram_bits - model_bits                                             # (P,)
    total_gain = float(gain.sum())
    klass = categories["klass"]
    classes = [_row(name, klass == k, model_bits, ngram_bits, total_gain) for k, name in enumerate(CLASSES)]
    groups = [_row("all", np.ones_like(klass, bool), model_bits, ngram_bits, total_gain)]
    groups += [_row(name, categories[key], model_bits, ngram_bits, total_gain)
               for name, key in zip(GROUPS, ("upper", "after_newline"))]
    index = {name: k for k, name in enumerate(CLASSES)}
    members = {"close bracket": np.isin(klass, [index["close bracket, near"], index["close bracket, far"]]),
               "close quote": (klass == index["close quote"]) & (categories["distance"] > 0),
               "newline": klass == index["newline"], "in word": klass == index["in word"]}
    buckets = bucket_of(categories["distance"])
    distances = {}
    for name in DISTANCES:
        rows = []
        for k in range(len(BUCKET_EDGES) + 1):
            low = BUCKET_EDGES[k - 1] + 1 if k else 1
            high = BUCKET_EDGES[k] if k < len(BUCKET_EDGES) else None
            label = (str(low) if low == high else f"{low}-{high}") if high else f">{low - 1}"
            row = _row(label, members[name] & (buckets == k),
                       model_bits, ngram_bits, total_gain)
            if row["count"]:
                rows.append({"low": low, "high": high, **row})
        distances[name] = rows
    return {"classes": classes, "groups": groups, "distances": distances, "total_gain_bits": total_gain}


def per_character(text_at: list[str], model_bits: np.ndarray, ngram_bits: np.ndarray) -> list[dict]:
    """Every distinct character: count, summed and mean gain; largest summed gain first."""
    gain = ngram_bits - model_bits                                             # (P,)
    chars = np.array(text_at)
    rows = []
    for c in np.unique(chars):
        mask = chars == c
        rows.append({"char": str(c), "count": int(mask.sum()), "gain_bits": float(gain[mask].sum()),
                     "gain_bpc": float(gain[mask].mean())})
    return sorted(rows, key=lambda r: -r["gain_bits"])


# -- 4. table and picture --------------------------------------------------------------------

def format_table(report: dict) -> str:
    n = report["order"]
    head = f"{'':26} {'count':>9} {'model bpc':>10} {f'{n}-gram bpc':>11} {'gain':>7} {'bits saved':>11} {'share':>8}"
    lines = [head]

    def line(r):
        if not r["count"]:
            return f"{r['name']:26} {0:>9,}"
        return (f"{r['name']:26} {r['count']:>9,} {r['model_bpc']:>10.3f} {r['ngram_bpc']:>11.3f} "
                f"{r['gain_bpc']:>+7.3f} {r['gain_bits']:>+11,.0f} {r['share_of_gain']:>8.1%}")
    lines += [line(r) for r in report["groups"][:1]] + ["-- classes (shares sum to 100%)"]
    lines += [line(r) for r in report["classes"]] + ["-- overlapping groups"]
    lines += [line(r) for r in report["groups"][1:]]
    for name, rows in report["distances"].items():
        lines.append(f"-- {name}, by distance to its context (n-gram reach: {report['reach']})")
        lines += [line(r) for r in rows]
    return "\n".join(lines)


def plot_errors(path, report: dict, title: str = "") -> None:
    """Bits/char of both models per class and group, and the gain against distance. Atomic."""
    plt = pyplot()
    fig, (bars, curve) = plt.subplots(1, 2, figsize=(13, 6), dpi=100, gridspec_kw={"width_ratios": [1.2, 1]})
    rows = [r for r in report["groups"][:1] + report["classes"] + report["groups"][1:] if r["count"]]
    y = np.arange(len(rows))
    n = report["order"]
    bars.barh(y - 0.2, [r["model_bpc"] for r in rows], 0.4, label=f"model ({report['model']})")
    bars.barh(y + 0.2, [r["ngram_bpc"] for r in rows], 0.4, label=f"{n}-gram ({report['smoothing']})")
    bars.set_yticks(y, [f"{r['name']} ({r['count']:,})" for r in rows], fontsize=8)
    right = max(max(r["model_bpc"], r["ngram_bpc"]) for r in rows)
    for k, r in enumerate(rows):
        bars.text(right * 1.02, k, f"{r['gain_bpc']:+.2f}, Σ {r['gain_bits']:+,.0f}", va="center", fontsize=7)
    classes = sum(1 for r in report["classes"] if r["count"])
    for between in (0.5, classes + 0.5):                      # all | classes | overlapping groups
        bars.axhline(between, color="grey", lw=0.5)
    bars.set_xlim(0, right * 1.35)
    bars.invert_yaxis()
    bars.set(xlabel="bits per character (right: gain per char, Σ bits saved)",
             ylabel="all | classes | groups (count)")
    bars.legend(fontsize=8, loc="lower center", bbox_to_anchor=(0.5, 1.0), ncol=2)
    for name, dist_rows in report["distances"].items():
        shown = [r for r in dist_rows if r["count"] >= report["min_count"]]
        if shown:
            x = [r["high"] if r["high"] else 2 * r["low"] for r in shown]
            curve.plot(x, [r["gain_bpc"] for r in shown], marker="o", label=name)
    curve.axvline(report["reach"] + 0.5, color="grey", ls="--", lw=1, label=f"{n}-gram reach ({report['reach']})")
    curve.axhline(0, color="black", lw=0.5)
    curve.set_xscale("log", base=2)
    curve.set(xlabel="distance back to the relevant context (bucket's upper edge, characters)",
              ylabel=f"gain: {n}-gram bits − model bits per char",
              title=f"gain against distance (buckets of ≥ {report['min_count']} chars)")
    curve.grid(alpha=0.3, which="both")
    curve.legend(fontsize=8)
    save_figure(fig, path, title)


# -- the command ---------------------------------------------------------------------------

def build_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(
        prog="seqlab analyze errors", formatter_class=argparse.RawDescriptionHelpFormatter,
        description="Which characters a character LM predicts better than an n-gram fitted on the same "
                    "training split (Karpathy et al. 2016, sec. 4.3-4.4): bits per character of both, "
                    "per class of character and against the distance back to the relevant context.",
        epilog="example:\n  seqlab analyze errors runs/demo --split valid --chars 100000 --out errors.png "
               "--json errors.json")
    p.add_argument("run", metavar="RUN", help="a character-level language-model run (task.name=lm)")
    source = p.add_mutually_exclusive_group()
    source.add_argument("--split", default="valid", choices=["train", "valid", "test"],
                        help="split of the run's corpus to score (default: valid)")
    source.add_argument("--file", metavar="PATH", help="score this UTF-8 text file instead of a split")
    p.add_argument("--chars", type=int, default=0, help="score the first N characters; 0 = all (default: 0)")
    p.add_argument("--order", type=int, default=6,
                   help=f"n-gram order 1-{MAX_ORDER}; 6 is Kneser-Ney's best on Shakespeare "
                        "(benchmarks/families.md) (default: 6)")
    p.add_argument("--smoothing", default="kneser_ney", choices=SMOOTHINGS, help="n-gram smoothing (default: kneser_ney)")
    p.add_argument("--batch-size", type=int, default=32, help="parallel streams, as in `seqlab eval` (default: 32)")
    p.add_argument("--device", default="cpu", help="cpu, cuda or auto (default: cpu)")
    p.add_argument("--min-count", type=int, default=20,
                   help="plot a distance bucket only with at least this many characters (default: 20)")
    p.add_argument("--out", default="errors.png", help="PNG to write (default: errors.png)")
    p.add_argument("--json", nargs="?", const="-", metavar="PATH",
                   help="write every number as JSON to PATH, or print it instead of the table when no PATH is given "
                        "(default: off)")
    p.add_argument("--overwrite", action="store_true", help="replace the files to write if they exist (default: refuse)")
    return p


def analyze(args) -> dict:
    """Score, categorise and compare; the report that `--json` writes."""

    def log(message):
        print(message, file=sys.stderr)
    if not 1 <= args.order <= MAX_ORDER:
        raise SeqlabError(f"--order must be 1-{MAX_ORDER}, got {args.order}")
    if args.chars < 0 or args.batch_size <= 0 or args.min_count < 0:
        raise SeqlabError("--chars and --min-count must be 0 or more and --batch-size more than 0")
    cfg, vocab, model, device = load_run(args.run, args.device, lm_for="error analysis")
    if cfg.data.level != "char":
        raise SeqlabError(f"{args.run} is a {cfg.data.level}-level model; error analysis reads character models")
    splits = load_splits(cfg.data, log=log)
    if splits.vocab != vocab:
        raise SeqlabError(f"the corpus has changed since {args.run} was trained (its vocabulary differs)")
    if args.file:
        ids, what = vocab.encode(read_path(args.file, log=log)), args.file
    else:
        ids, what = splits.get(args.split), f"{args.split} split of {splits.source}"
    if args.chars:
        ids = ids[:args.chars]
    if len(ids) < 4:
        raise SeqlabError(f"{what} has {len(ids)} characters; need at least 4 to score")
    log(f"scoring {len(ids):,} characters of {what} with {args.run} ...")
    positions, model_nats = model_log_probs(model, ids, args.batch_size, cfg.train.bptt_steps, device)
    log(f"fitting a {args.order}-gram ({args.smoothing}) on {len(splits.train):,} training characters ...")
    ngram_nats = ngram_log_probs(splits.train, ids, args.order, args.smoothing, len(vocab))[positions]
    text = ids_to_text(ids, vocab)
    categories = {k: v[positions] for k, v in categorize(text, args.order - 1).items()}
    model_bits, ngram_bits = -model_nats / LN2, -ngram_nats / LN2                  # (P,)
    report = {"run": str(args.run), "data": what, "model": cfg.model.name, "order": args.order,
              "smoothing": args.smoothing, "reach": args.order - 1, "min_count": args.min_count,
              "chars": len(ids), "scored": len(positions), "batch_size": args.batch_size,
              "model_summary": summary(float(-model_nats.mean()), "char"),
              "ngram_summary": summary(float(-ngram_nats.mean()), "char")}
    report.update(compare(categories, model_bits, ngram_bits))
    report["characters"] = per_character([text[p] for p in positions], model_bits, ngram_bits)
    return report


def main(argv: list[str] | None = None) -> int:
    argv = list(sys.argv[1:] if argv is None else argv)
    if argv and argv[0] == "errors":            # forwarded by `seqlab analyze errors ...`
        argv = argv[1:]
    args = build_parser().parse_args(argv)
    inputs = [args.file, args.run]
    out = Output(args.out, "--out", overwrite=args.overwrite, inputs=inputs)
    report_out = output(args.json if args.json != "-" else None, "--json", args.overwrite, inputs + [args.out])
    report = analyze(args)
    plot_errors(out, report, title=f"{Path(args.run).name} vs {args.order}-gram: {report['scored']:,} "
                                        f"characters of {report['data']}")
    if args.json == "-":
        print(json.dumps(report))
        return 0
    if args.json:
        report_out.write_text(json.dumps(report, indent=1) + "\n")
    m, g = report["model_summary"]["bpc"], report["ngram_summary"]["bpc"]
    print(f"{report['data']}: {report['scored']:,} characters | model {m:.4f} bpc | {args.order}-gram {g:.4f} bpc "
          f"| gain {g - m:+.4f} bpc, {report['total_gain_bits']:+,.0f} bits in all")
    print(format_table(report))
    top = ", ".join(f"{r['char']!r} {r['gain_bits']:+,.0f}" for r in report["characters"][:6])
    low = ", ".join(f"{r['char']!r} {r['gain_bits']:+,.0f}" for r in report["characters"][::-1][:4])
    print(f"largest summed gains by character (bits): {top}; smallest: {low}")
    print(f"wrote {args.out}" + (f" and {args.json}" if args.json else ""))
    return 0


if __name__ == "__main__":
    sys.exit(main())
