"""Word-level n-gram speed against `nltk.lm`, at equal perplexity.

    python -m seqlab.bench.ngram_words --out benchmarks/ngram_words
    (to be wired as `seqlab bench ngram-words`)

The character-level comparison (bench/ngram.py) trains on 100,000 characters. This one
trains on 100,000 *word* tokens of Shakespeare (the first 100,000 tokens of the word-level
training split; words split on whitespace, <eos> at each line end) and scores held-out text
(the first 10,000 tokens of the validation split, which starts 90% of the way into the
corpus). The vocabulary is that of the 100,000 training tokens, as for any 100k-token corpus:
a held-out word outside it is <unk>.

The same model on both sides, order 3 (tests/models/test_ngram.py proves each adaptation at 1e-12
per probability):
  * interpolated Witten–Bell: NLTK's `WittenBell` with seqlab's lowest order, the unigram
    interpolated with the uniform distribution over S (stock NLTK ends in the bare ML unigram,
    so an unseen word gets probability 0 and perplexity inf);
  * interpolated Kneser–Ney: NLTK's `KneserNey` with seqlab's per-order discounts
    D_k = n1/(n1 + 2 n2) in place of its single 0.1, and seqlab's discounted unigram
    interpolated with the uniform. That unigram needs #{w : N1+(•w) > 0}, the number of words
    seen after some context: a constant NLTK has no cached form of (the character benchmark
    computes it inside NLTK's timed run, at |V|² cost); here it is read off NLTK's own bigram
    counts *outside* the timed region, so it is charged to neither side.

Timed, for each side: counting (seqlab: `fit`; NLTK: building its string n-grams, the
`NgramCounter` and the model) and scoring (seqlab: `perplexity`; NLTK: building the test
n-grams and `model.perplexity`). seqlab's figures are medians of `repeats` runs, half of them
before NLTK's and half after; NLTK runs once (minutes per run). NLTK's `KneserNey` scores one token by walking every stored context
of the two orders above the unigram, so scoring is slow at word level. When `nltk_tokens` is
smaller than the held-out text, NLTK scores only that prefix: both sides' perplexities are
compared on the prefix, the ratio on the prefix alone is reported as measured, and NLTK's
time for the whole held-out text is extrapolated linearly from its time per scored token
(marked as such in the report).
"""
from __future__ import annotations

import math
import statistics
import sys
import time
from collections import Counter
from dataclasses import dataclass

import numpy as np

from seqlab import SeqlabError
from seqlab.bench.common import bench_parser, commit, machine, provenance, write_report
from seqlab.config import DataConfig, ModelConfig
from seqlab.data.text import load_splits
from seqlab.data.vocab import BOS, PAD, SPECIALS, UNK, Vocab
from seqlab.models.ngram import NGramLM, perplexity

SMOOTHING_NAMES = {"witten_bell": "interpolated Witten-Bell", "kneser_ney": "interpolated Kneser-Ney"}


@dataclass
class WordCorpus:
    train: np.ndarray      # (N_train,) ids in the training text's own vocabulary
    held_out: np.ndarray   # (N_held,) same vocabulary, unseen words -> <unk>
    vocab_size: int
    description: str


def shakespeare_words(train_tokens: int = 100_000, held_out_tokens: int = 10_000, log=print) -> WordCorpus:
    """The first `train_tokens` word tokens of Shakespeare's training split and the first
    `held_out_tokens` of its validation split, re-coded in the vocabulary of the former."""
    splits = load_splits(DataConfig(corpus="shakespeare", level="word"), log=log)
    if splits.train.size < train_tokens or splits.valid.size < held_out_tokens:
        raise SeqlabError(f"Shakespeare has {splits.train.size:,} training and {splits.valid.size:,} validation "
                          f"words; asked for {train_tokens:,} and {held_out_tokens:,}")
    words = [splits.vocab.itos[i] for i in splits.train[:train_tokens]]
    vocab = Vocab.from_counts(Counter(words), "word")
    table = np.array([vocab.stoi.get(w, UNK) for w in splits.vocab.itos], np.int64)  # old id -> new id
    table[:len(SPECIALS)] = np.arange(len(SPECIALS))
    description = (f"Shakespeare, word level (whitespace words, <eos> per line): the first {train_tokens:,} tokens "
                   f"of the training split and the first {held_out_tokens:,} of the validation split; vocabulary "
                   f"of the training tokens, {len(vocab):,} ids with the 4 specials")
    return WordCorpus(table[splits.train[:train_tokens]], table[splits.valid[:held_out_tokens]], len(vocab),
                      description)


# -- NLTK, given seqlab's model ------------------------------------------------------------------

def _name(i: int) -> str:
    return "<UNK>" if i == UNK else f"t{int(i)}"


def _nltk():
    try:
        from nltk.lm import Vocabulary               # optional: only this comparison needs nltk
        from nltk.lm.counter import NgramCounter
        from nltk.lm.models import InterpolatedLanguageModel
        from nltk.lm.smoothing import KneserNey, WittenBell
    except ImportError:
        raise SeqlabError("this benchmark needs nltk: pip install nltk==3.10.4") from None
    return Vocabulary, NgramCounter, InterpolatedLanguageModel, KneserNey, WittenBell


def _estimator(smoothing: str, size: int, discounts: dict[int, float]):
    """NLTK's smoothing class with seqlab's lowest order (and discounts, for Kneser–Ney).
    `size` = |S|, the ids seqlab can predict (all but <pad> and <bos>)."""
    _, _, _, KneserNey, WittenBell = _nltk()

    class UniformBase(WittenBell):             # the unigram mixed with the uniform over S
        def unigram_score(self, word):
            u = self.counts.unigrams
            return (u[word] + len(u) / size) / (u.N() + len(u))

    class OurDiscountsAndBase(KneserNey):      # per-order discounts; discounted unigram + uniform
        types = 0                              # #{w : N1+(•w) > 0}: set outside the timed region

        def alpha_gamma(self, word, context):
            self.discount = discounts[len(context) + 1]
            return super().alpha_gamma(word, context)

        def unigram_score(self, word):
            count, total = self._continuation_counts(word)
            d = discounts[1]
            return max(count - d, 0) / total + d * self.types / total / size

    return UniformBase if smoothing == "witten_bell" else OurDiscountsAndBase


def nltk_fit(train: np.ndarray, vocab_size: int, order: int, estimator):
    """NLTK's counter filled with seqlab's events (each training token with its <bos>-padded
    context, every order 1..n) and the interpolated model over it."""
    Vocabulary, NgramCounter, InterpolatedLanguageModel, _, _ = _nltk()
    padded = [BOS] * (order - 1) + train.tolist()
    grams = [tuple(_name(t) for t in padded[i + order - k:i + order])
             for i in range(train.size) for k in range(1, order + 1)]
    vocab = Vocabulary([_name(i) for i in range(vocab_size) if i not in (PAD, BOS, UNK)] + [_name(BOS)])
    params = {"order": order} if issubclass(estimator, _nltk()[3]) else {}
    return InterpolatedLanguageModel(estimator, order, vocabulary=vocab, counter=NgramCounter([grams]),
                                     params=params)


def continuation_types(model) -> int:
    """#{w : N1+(• w) > 0}, from NLTK's bigram counts: the constant of seqlab's KN unigram."""
    return len({w for _, fd in model.counts[2].items() for w, c in fd.items() if c > 0})


def nltk_perplexity(model, held_out: np.ndarray, order: int) -> float:
    padded = [BOS] * (order - 1) + held_out.tolist()
    test = [tuple(_name(t) for t in padded[i:i + order]) for i in range(held_out.size)]
    return model.perplexity(test)


# -- the comparison ------------------------------------------------------------------------------

def _timed(fn):
    start = time.perf_counter()
    value = fn()
    return value, time.perf_counter() - start


def compare(train: np.ndarray, held_out: np.ndarray, vocab_size: int, smoothing: str, order: int = 3,
            nltk_tokens: int | None = None, repeats: int = 3, log=print) -> dict:
    """seqlab against NLTK on one smoothing: times, perplexities, ratios (see the module docstring)."""
    if smoothing not in SMOOTHING_NAMES:
        raise SeqlabError(f"smoothing must be one of {', '.join(SMOOTHING_NAMES)}, got {smoothing!r}")
    prefix = held_out.size if nltk_tokens is None else min(nltk_tokens, held_out.size)
    cfg = ModelConfig(name="ngram", order=order, smoothing=smoothing)

    # 1. seqlab: fit, score everything, score the prefix; half the runs before NLTK's, half
    #    after, so that a shared machine's drift during NLTK's long run reaches both sides
    fits, scores, prefix_scores = [], [], []

    def seqlab_runs(count: int):
        model = nll = prefix_nll = None
        for _ in range(count):
            model, seconds = _timed(lambda: NGramLM(cfg, vocab_size).fit(train))
            fits.append(seconds)
            (nll, _), seconds = _timed(lambda: perplexity(model, held_out))
            scores.append(seconds)
            if prefix < held_out.size:
                (prefix_nll, _), seconds = _timed(lambda: perplexity(model, held_out[:prefix]))
            else:
                prefix_nll = nll
            prefix_scores.append(seconds)
        return model, nll, prefix_nll

    model, nll, prefix_nll = seqlab_runs((repeats + 1) // 2)
    seqlab_ppl, seqlab_prefix_ppl = math.exp(nll), math.exp(prefix_nll)
    log(f"{smoothing}: seqlab fit {fits[-1]:.3f} s, scores {held_out.size:,} tokens in {scores[-1]:.3f} s "
        f"(perplexity {seqlab_ppl:.4f}); nltk.lm on {prefix:,} tokens ...")

    # 2. NLTK, once: fit, (untimed) the KN constant, score the prefix
    discounts = {k: float(model.discounts[k - 1, 0]) for k in range(1, order + 1)}
    estimator = _estimator(smoothing, vocab_size - 2, discounts)
    theirs, nltk_fit_s = _timed(lambda: nltk_fit(train, vocab_size, order, estimator))
    if smoothing == "kneser_ney":
        theirs.estimator.types = continuation_types(theirs)
    nltk_ppl, nltk_score_s = _timed(lambda: nltk_perplexity(theirs, held_out[:prefix], order))
    theirs = None                          # free NLTK's counts before the remaining seqlab runs
    log(f"{smoothing}: nltk.lm fit {nltk_fit_s:.2f} s, scored {prefix:,} tokens in {nltk_score_s:.1f} s "
        f"(perplexity {nltk_ppl:.4f})")
    seqlab_runs(repeats // 2)
    fit_s, score_s, prefix_score_s = (statistics.median(t) for t in (fits, scores, prefix_scores))

    # 3. ratios: measured on the prefix; on the whole held-out text (extrapolated if prefix < all)
    extrapolated = prefix < held_out.size
    nltk_total = nltk_fit_s + nltk_score_s * held_out.size / prefix
    return {
        "smoothing": SMOOTHING_NAMES[smoothing], "order": order, "vocab_size": vocab_size,
        "train_tokens": int(train.size), "held_out_tokens": int(held_out.size), "nltk_scored_tokens": prefix,
        "seqlab_fit_seconds": fits, "seqlab_score_seconds": scores, "seqlab_prefix_score_seconds": prefix_scores,
        "seqlab_fit": fit_s, "seqlab_score": score_s, "seqlab_prefix_score": prefix_score_s,
        "nltk_fit": nltk_fit_s, "nltk_prefix_score": nltk_score_s,
        "nltk_seconds_per_scored_token": nltk_score_s / prefix,
        "seqlab_total": fit_s + score_s, "nltk_total": nltk_total, "nltk_total_extrapolated": extrapolated,
        "speedup": nltk_total / (fit_s + score_s),
        "speedup_on_prefix": (nltk_fit_s + nltk_score_s) / (fit_s + prefix_score_s),
        "seqlab_perplexity": seqlab_ppl, "seqlab_prefix_perplexity": seqlab_prefix_ppl,
        "nltk_prefix_perplexity": nltk_ppl,
        "relative_difference": abs(seqlab_prefix_ppl - nltk_ppl) / nltk_ppl,
    }


def run_ngram_words(out: str, repeats: int = 3, train_tokens: int = 100_000, held_out_tokens: int = 10_000,
                    nltk_tokens: int | None = None, smoothings=("witten_bell", "kneser_ney"),
                    command: str | None = None, corpus: WordCorpus | None = None) -> dict:
    """Compare on each smoothing and write `out`.json / `out`.md. `corpus` (default: the
    Shakespeare words, `train_tokens` + `held_out_tokens`) lets tests pass a small text."""
    log = lambda m: print(m, file=sys.stderr, flush=True)  # noqa: E731
    corpus = corpus or shakespeare_words(train_tokens, held_out_tokens, log)
    rows = [compare(corpus.train, corpus.held_out, corpus.vocab_size, s, nltk_tokens=nltk_tokens,
                    repeats=repeats, log=log) for s in smoothings]
    if command is None:
        command = (f"seqlab bench ngram-words --out {out} --repeats {repeats} "
                   f"--train-tokens {train_tokens} --held-out-tokens {held_out_tokens}"
                   + (f" --nltk-tokens {nltk_tokens}" if nltk_tokens else ""))
    report = {"benchmark": "ngram_words", "command": command, "commit": commit(), "machine": machine(),
              "date": time.strftime("%Y-%m-%d"), "data": corpus.description, "repeats": repeats,
              "comparisons": rows}
    return write_report(out, report, markdown)


def markdown(r: dict) -> str:
    rows = r["comparisons"]
    first = rows[0]
    table = "".join(
        f"| {c['smoothing']} | {c['seqlab_fit']:.3f} + {c['seqlab_score']:.3f} | "
        f"{c['nltk_fit']:.2f} + {c['nltk_prefix_score'] * c['held_out_tokens'] / c['nltk_scored_tokens']:.1f}"
        f"{' (extrapolated)' if c['nltk_total_extrapolated'] else ''} | **{c['speedup']:.1f}×** | "
        f"{c['speedup_on_prefix']:.1f}× on {c['nltk_scored_tokens']:,} | {c['seqlab_prefix_perplexity']:.10f} | "
        f"{c['nltk_prefix_perplexity']:.10f} | {c['relative_difference']:.1e} |\n" for c in rows)
    notes = [f"- NLTK scored only the first {c['nltk_scored_tokens']:,} held-out tokens for "
             f"{c['smoothing']}: its whole-text time is extrapolated linearly from "
             f"{c['nltk_seconds_per_scored_token'] * 1e3:.2f} ms per scored token; the measured ratio is the "
             f"'on prefix' column, and the perplexities are those of the prefix on both sides.\n"
             for c in rows if c["nltk_total_extrapolated"]]
    return (
        "# n-gram language model against nltk.lm, word level\n\n"
        f"Order {first['order']}, {first['train_tokens']:,} training words, {first['held_out_tokens']:,} held-out "
        f"words, vocabulary {first['vocab_size']:,}; the same model on both sides. Seconds are counting + "
        f"scoring; seqlab's are medians of {r['repeats']} runs (half before NLTK's run, half after), NLTK's one run.\n\n"
        "| smoothing | seqlab s (fit + score) | nltk.lm s (fit + score) | speed-up | measured speed-up on "
        "NLTK's scored tokens | seqlab perplexity | nltk.lm perplexity | relative difference |\n"
        "|---|---:|---:|---:|---:|---:|---:|---:|\n" + table + "\n" + "".join(notes) +
        "\nAcceptance: at least 100× on a 100k-token corpus with equal perplexity. The perplexities compared "
        "are over the tokens NLTK scored (all of them unless noted). seqlab's full-text perplexity: "
        + ", ".join(f"{c['seqlab_perplexity']:.4f} ({c['smoothing']})" for c in rows) + ".\n\n"
        "How the models are made equal: NLTK is given seqlab's events (each training token with its "
        "<bos>-padded context) and seqlab's lowest order (the unigram interpolated with the uniform "
        "distribution, so an unseen word keeps some probability); for Kneser-Ney also seqlab's per-order "
        "discounts D = n1 / (n1 + 2 n2) in place of NLTK's fixed 0.1. The constant #{w : N1+(•w) > 0} of that "
        "unigram is read off NLTK's counts outside the timed region. seqlab scores only each held-out "
        "token's probability, from the lowest order up, vectorised over positions (the whole (V,) "
        "distribution is built only for sampling), so its scoring cost is in the n-grams under the contexts "
        "it meets, not V per position; "
        "NLTK's Kneser-Ney walks every stored context of orders 2 and 3 for every scored token.\n\n"
        + provenance(r, data=r["data"]))


def main(argv=None) -> int:
    p = bench_parser("ngram-words", __doc__, "benchmarks/ngram_words")
    p.add_argument("--repeats", type=int, default=3, help="seqlab runs per smoothing; medians reported")
    p.add_argument("--train-tokens", type=int, default=100_000, help="training words")
    p.add_argument("--held-out-tokens", type=int, default=10_000, help="held-out words scored")
    p.add_argument("--nltk-tokens", type=int, default=0,
                   help="NLTK scores only this prefix of the held-out words (0 = all); its full time is extrapolated")
    p.add_argument("--smoothing", nargs="+", default=["witten_bell", "kneser_ney"], choices=list(SMOOTHING_NAMES),
                   help="smoothings to compare")
    args = p.parse_args(argv)
    if min(args.repeats, args.train_tokens, args.held_out_tokens) < 1 or args.nltk_tokens < 0:
        p.error("--repeats, --train-tokens and --held-out-tokens must be at least 1; --nltk-tokens at least 0")
    run_ngram_words(args.out, args.repeats, args.train_tokens, args.held_out_tokens, args.nltk_tokens or None,
                    tuple(args.smoothing))
    return 0


if __name__ == "__main__":
    sys.exit(main())
