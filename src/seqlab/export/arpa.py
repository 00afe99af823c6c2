"""An n-gram model as an ARPA file, the back-off format SRILM and KenLM read.

ARPA lists, per order k, n-grams "h w" with log10 p(w | h) and, for n-grams that are
contexts of longer ones, a back-off weight log10 b(h w); a reader then computes

    p(w | h) = 10^logp(h w)                     when "h w" is listed
             = b(h) · p(w | h')                   otherwise (b = 1 when h is not listed)

seqlab's models (models/ngram.py) are interpolated: P_k(w | h) = alpha_k(h w) + gamma_k(h) ·
P_{k−1}(w | h'), with alpha = 0 when w was never seen after h. So an unseen w after a seen
context is exactly gamma_k(h) · P_{k−1}(w | h'), and listing every seen (h, w) with its full
interpolated probability and every seen context with b(h) = gamma_k(h) reproduces the model
exactly (as SRILM writes interpolated models): Witten–Bell, Kneser–Ney and modified
Kneser–Ney of every order, and add-k of order 1. Add-k of higher orders is refused: its
unseen mass goes to the uniform distribution, not to the shorter context, which back-off
cannot say without listing every word after every context.

What is and is not the same in a reader:
* seqlab pads a stream's start with n − 1 <bos> (written <s>). The file lists the all-<s>
  contexts (<s>, <s> <s>, ...) with log-probability −99 and their back-off weights, so a
  reader fed n − 1 <s> as words before the text (KenLM: NullContextWrite, then BaseScore
  word by word) reproduces seqlab's scores (tests/export/test_arpa.py, within KenLM's float32).
  KenLM's score(sentence, bos=True) starts from its own begin-of-sentence state instead and
  differs on a sentence's first tokens; seqlab's models are trained on streams, where only
  the very start of the corpus follows <s>, and a line starts after the previous line.
* seqlab scores a stream; a line break is a token: <eos> at word level (written </s>), "\\n"
  at character level. Whitespace characters of a character model are written <U+0020>,
  <U+000A>, ...; <unk> stays <unk>. <pad> has probability 0 and is not listed.
* The uniform floor of the recursion (every token but <pad> and <bos>) is folded into the
  unigrams, so every vocabulary token has a unigram and nothing is out of vocabulary.
Probabilities are written with 9 significant digits (|error| < 1e-8 in log10 per token).
"""
from __future__ import annotations

import math
from pathlib import Path

import numpy as np

from seqlab import SeqlabError
from seqlab.io import writing
from seqlab.models.ngram import NGramLM
from seqlab.tokens import BOS, EOS, PAD, UNK

NO_PROB = -99.0                # the log10 probability ARPA files give <s>, which is never predicted


def arpa_word(token: str, token_id: int) -> str:
    """A vocabulary token as one ARPA word: specials by ARPA's names, whitespace escaped."""
    special = {BOS: "<s>", EOS: "</s>", UNK: "<unk>"}
    if token_id in special:
        return special[token_id]
    if not token or any(c.isspace() for c in token):
        return "".join(f"<U+{ord(c):04X}>" if c.isspace() else c for c in token) or "<empty>"
    return token


def truncated(model: NGramLM, order: int) -> NGramLM:
    """The same counts up to `order`: P_order exactly as the full model computes it."""
    view = NGramLM.__new__(NGramLM)
    view.__dict__.update(model.__dict__)
    view.order, view._levels, view.discounts = order, model._levels[:order], model.discounts[:order]
    return view


def write_arpa(model: NGramLM, itos: list[str], path: str | Path) -> dict[str, int]:
    """Write `model` (with its vocabulary `itos`) as an ARPA file at `path`, atomically.
    Returns the number of n-grams of each order."""
    if not model.fitted:
        raise SeqlabError("the n-gram model has no counts to export")
    if model.smoothing == "add_k" and model.order > 1:
        raise SeqlabError("ARPA cannot express add-k smoothing above order 1 exactly (its unseen mass is uniform, "
                          "not the shorter context's); export a witten_bell or kneser_ney model")
    if len(itos) != model.vocab_size:
        raise SeqlabError(f"the vocabulary has {len(itos)} tokens, the model {model.vocab_size}")
    V, n = model.vocab_size, model.order
    words = [arpa_word(t, i) for i, t in enumerate(itos)]
    if len(set(words)) != len(words):
        raise SeqlabError("two vocabulary tokens map to the same ARPA word; rename them")
    contexts = model.contexts()                            # per length j: (M_j, j), oldest first
    # back-off weights: gamma_{k}(h) for every context h of length k − 1 >= 1 seen at order k
    backoff: dict[tuple[int, ...], float] = {}
    for k in range(2, n + 1):
        ids = np.arange(contexts[k - 1].shape[0])
        if ids.size:
            _, _, _, _, _, gamma = model._expand(k, ids)
            for row, g in zip(contexts[k - 1].tolist(), gamma.tolist()):
                backoff[tuple(row)] = math.log10(g)
    sections: list[list[str]] = []
    for k in range(1, n + 1):
        keys, offsets, pair_words, _ = model._levels[k - 1]
        fan = np.diff(offsets.astype(np.int64))
        ctx = np.repeat(contexts[k - 1], fan, axis=0)                                  # (E, k-1)
        targets = pair_words.astype(np.int64)                                          # (E,)
        if k == 1:                  # every token but <pad>: the uniform floor gives the unseen ones mass
            targets = np.array([t for t in range(V) if t not in (PAD, BOS)], np.int64)
            ctx = np.zeros((targets.size, 0), np.int64)
        logp = truncated(model, k)._target_probabilities(ctx[:, ::-1].copy(), targets)  # newest first
        lines = []
        for row, w, p in zip(ctx.tolist(), targets.tolist(), np.log10(logp).tolist()):
            gram = tuple(row) + (w,)
            text = " ".join(words[t] for t in gram)
            b = backoff.pop(gram, None) if k < n else None
            lines.append(f"{p:.9g}\t{text}" + (f"\t{b:.9g}" if b is not None else ("\t0" if k < n else "")))
        sections.append(lines)
    # contexts that are never events: the all-<s> ones (the padded start of a stream)
    for gram, b in sorted(backoff.items(), key=lambda kv: len(kv[0])):
        if any(t != BOS for t in gram):
            raise SeqlabError(f"internal: context {gram} has no n-gram line")        # pragma: no cover
        sections[len(gram) - 1].insert(0, f"{NO_PROB:g}\t{' '.join(words[t] for t in gram)}\t{b:.9g}")
    if not any(line.split("\t")[1] == "<s>" for line in sections[0]):
        sections[0].insert(0, f"{NO_PROB:g}\t<s>" + ("\t0" if n > 1 else ""))
    head = ["", "\\data\\"] + [f"ngram {k}={len(lines)}" for k, lines in enumerate(sections, start=1)] + [""]
    body = []
    for k, lines in enumerate(sections, start=1):
        body += [f"\\{k}-grams:", *lines, ""]
    with writing(path) as tmp:
        tmp.write_text("\n".join(head + body + ["\\end\\", ""]), encoding="utf-8")
    return {f"{k}-grams": len(lines) for k, lines in enumerate(sections, start=1)}
