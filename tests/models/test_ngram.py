"""The count-based n-gram model: normalisation, hand counts, hand-computed Kneser–Ney and
modified Kneser–Ney probabilities, parity with NLTK's `nltk.lm`, and the sequence-model
interface (forward = step by step, causality, state round trip through safetensors)."""
from __future__ import annotations

import math
import time
from collections import Counter
from fractions import Fraction as F

import numpy as np
import pytest
import torch
import torch.nn.functional as nnf

from seqlab import SeqlabError
from seqlab.config import ModelConfig
from seqlab.data.vocab import BOS, EOS, PAD, UNK
from seqlab.models.base import SequenceModel
from seqlab.models.ngram import SMOOTHINGS, NGramLM, estimate_discounts, perplexity

A, B, R, C, D = 4, 5, 6, 7, 8                      # letters of the toy corpora
ABRACADABRA = np.array([A, B, R, A, C, A, D, A, B, R, A])


def lm(order: int, smoothing: str, vocab_size: int, stream, add_k: float = 1.0) -> NGramLM:
    cfg = ModelConfig(name="ngram", order=order, smoothing=smoothing, add_k=add_k)
    return NGramLM(cfg, vocab_size).fit(np.asarray(stream))


def markov_stream(rng: np.random.Generator, vocab_size: int, length: int) -> np.ndarray:
    """Ids 4..V-1 from a sparse random Markov chain, so that contexts repeat at every order
    (and <unk>, <eos> never occur: they must still get mass)."""
    ids = np.arange(4, vocab_size)
    nxt = {int(t): rng.choice(ids, size=min(3, ids.size), replace=False) for t in ids}
    out = [int(rng.choice(ids))]
    for _ in range(length - 1):
        out.append(int(rng.choice(nxt[out[-1]])))
    return np.array(out)


def probs(model: NGramLM, context) -> np.ndarray:
    return np.exp(model.log_prob_table(np.asarray(context, dtype=np.int64)))


# -- normalisation ---------------------------------------------------------------------------

@pytest.mark.parametrize("order", [1, 2, 3, 5, 20])
@pytest.mark.parametrize("smoothing", SMOOTHINGS)
def test_probabilities_sum_to_one_in_every_context(smoothing, order):
    rng = np.random.default_rng(order)
    for trial in range(2):
        V = int(rng.integers(6, 12))
        stream = markov_stream(rng, V, 300)
        model = lm(order, smoothing, V, stream, add_k=[1.0, 0.05][trial])
        contexts = [stream[max(0, i - order + 1):i] for i in rng.integers(0, stream.size, 40)]  # seen
        contexts += [rng.integers(0, V, order - 1) for _ in range(40)]       # mostly unseen, any id
        contexts += [[], [UNK], [BOS, BOS], [EOS] * 25]                      # short, special, long
        for context in contexts:
            p = probs(model, context)
            assert abs(p.sum() - 1.0) < 1e-9
            assert p[PAD] == 0.0 and p[BOS] == 0.0
            support = np.delete(p, [PAD, BOS])
            assert np.all(support > 0), "every token but <pad>/<bos> (incl. <unk>) keeps mass"


def test_unseen_context_backs_off_to_the_shorter_one():
    for smoothing in SMOOTHINGS:
        model = lm(3, smoothing, 9, ABRACADABRA)
        # (a a) and (b a) were never seen, (a) was: both tables are the order-2 one for (a)
        np.testing.assert_array_equal(probs(model, [A, A]), probs(model, [B, A]))
        assert not np.array_equal(probs(model, [A, A]), probs(model, [D, A]))     # (d a) was seen
        if smoothing in ("add_k", "witten_bell"):      # (KN's order 2 is continuation counts)
            np.testing.assert_array_equal(probs(model, [A, A]), probs(lm(2, smoothing, 9, ABRACADABRA), [A]))
        # nothing seen at all: the base of the recursion, uniform over the 7 ids but <pad>, <bos>
        empty = lm(3, smoothing, 9, np.zeros(0, np.int64))
        np.testing.assert_allclose(probs(empty, [A, B]), [0, 1 / 7, 0] + [1 / 7] * 6)


# -- counts ----------------------------------------------------------------------------------

def test_counts_match_hand_counts_on_abracadabra():
    # stream a b r a c a d a b r a, padded on the left with two <bos> (written _)
    raw = lm(3, "witten_bell", 9, ABRACADABRA)
    assert raw.counts(1) == {(A,): 5, (B,): 2, (R,): 2, (C,): 1, (D,): 1}
    assert raw.counts(2) == {(BOS, A): 1, (A, B): 2, (B, R): 2, (R, A): 2, (A, C): 1,
                             (C, A): 1, (A, D): 1, (D, A): 1}
    assert raw.counts(3) == {(BOS, BOS, A): 1, (BOS, A, B): 1, (A, B, R): 2, (B, R, A): 2,
                             (R, A, C): 1, (A, C, A): 1, (C, A, D): 1, (A, D, A): 1, (D, A, B): 1}
    # Kneser–Ney: below the top order, N1+(• h w) = distinct tokens seen before h w
    kn = lm(3, "kneser_ney", 9, ABRACADABRA)
    assert kn.counts(3) == raw.counts(3)
    assert kn.counts(2) == {(BOS, A): 1, (A, B): 2, (B, R): 1, (R, A): 1, (A, C): 1,   # a b: after _ and d
                            (C, A): 1, (A, D): 1, (D, A): 1}
    assert kn.counts(1) == {(A,): 4, (B,): 1, (R,): 1, (C,): 1, (D,): 1}              # a: after _, r, c, d


@pytest.mark.parametrize("order", [1, 2, 4, 7])
def test_counts_match_plain_python_counting(order):
    rng = np.random.default_rng(order)
    stream = np.concatenate([markov_stream(rng, 10, 400), rng.integers(1, 10, 100)])
    stream[stream == BOS] = UNK
    padded = [BOS] * (order - 1) + stream.tolist()
    raw = {k: Counter(tuple(padded[i + order - k:i + order]) for i in range(stream.size))
           for k in range(1, order + 1)}
    model, kn = lm(order, "add_k", 10, stream), lm(order, "modified_kneser_ney", 10, stream)
    for k in range(1, order + 1):
        assert model.counts(k) == dict(raw[k])
        continuation = raw[k] if k == order else Counter(g[1:] for g in raw[k + 1])
        assert kn.counts(k) == dict(continuation)


# -- Kneser–Ney and modified Kneser–Ney by hand ------------------------------------------------

def test_kneser_ney_probabilities_by_hand():
    """Order 3 on a b r a c a d a b r a, V = 9 so |S| = 7 (ids but <pad>, <bos>).
    Count-of-counts (see the hand counts above):
      order 3 raw          1 1 2 2 1 1 1 1 1  n1=7 n2=2  D3 = 7/(7+2*2) = 7/11
      order 2 continuation 1 2 1 1 1 1 1 1    n1=7 n2=1  D2 = 7/(7+2*1) = 7/9
      order 1 continuation a4 b1 r1 c1 d1     n1=4 n2=0  D1 = 4/4 = 1
    P1(w)     = max(N1+(•w) − D1, 0)/N1+(••) + D1·N1+(•)/N1+(••) · 1/7,  N1+(••)=8, N1+(•)=5
    P2(w|h)   = max(N1+(•hw) − D2, 0)/N1+(•h•) + D2·N1+(h•)/N1+(•h•) · P1(w)
    P3(w|g h) = max(c(ghw) − D3, 0)/c(gh•) + D3·N1+(gh•)/c(gh•) · P2(w|h)
    """
    model = lm(3, "kneser_ney", 9, ABRACADABRA)
    D1, D2, D3 = F(1), F(7, 9), F(7, 11)
    np.testing.assert_allclose(model.discounts[:, 0], [float(D1), float(D2), float(D3)], rtol=1e-15)
    p1 = {A: (4 - D1) / 8 + D1 * 5 / 8 / 7, B: D1 * 5 / 8 / 7, R: D1 * 5 / 8 / 7,
          C: D1 * 5 / 8 / 7, UNK: D1 * 5 / 8 / 7}
    # context (a): N1+(• a b) = 2, N1+(• a c) = 1, N1+(• a d) = 1: N1+(•a•) = 4, N1+(a•) = 3
    p2_b_a = (2 - D2) / 4 + D2 * 3 / 4 * p1[B]
    p2_c_a = (1 - D2) / 4 + D2 * 3 / 4 * p1[C]
    p2_r_a = D2 * 3 / 4 * p1[R]
    # context (b): N1+(• b r) = 1 only
    p2_r_b = (1 - D2) / 1 + D2 * 1 / 1 * p1[R]
    # context (c): N1+(• c a) = 1 only
    p2_a_c = (1 - D2) / 1 + D2 * 1 / 1 * p1[A]
    expected = {
        ((R, A), C): (1 - D3) / 1 + D3 * 1 / 1 * p2_c_a,        # r a -> c once
        ((R, A), B): D3 * 1 / 1 * p2_b_a,
        ((R, A), R): D3 * 1 / 1 * p2_r_a,
        ((A, B), R): (2 - D3) / 2 + D3 * 1 / 2 * p2_r_b,        # a b -> r twice
        ((A, B), UNK): D3 * 1 / 2 * D2 * 1 / 1 * p1[UNK],
        ((C, C), A): p2_a_c,                                    # (c c) unseen: back off to (c)
        ((UNK, UNK), A): p1[A],                                 # nothing seen: the unigram
    }
    for (context, word), value in expected.items():
        assert probs(model, context)[word] == pytest.approx(float(value), rel=1e-12), (context, word)


def test_modified_kneser_ney_probabilities_by_hand():
    """Order 2 on a b a b a b a b c d c d c e a (a..e = 4..8, V = 9, |S| = 7).
    Bigrams: _a 1, ab 4, ba 3, bc 1, cd 2, dc 2, ce 1, ea 1 -> n1=4 n2=2 n3=1 n4=1
      Y = n1/(n1+2n2) = 1/2, D1 = 1 − 2Y n2/n1 = 1/2, D2 = 2 − 3Y n3/n2 = 5/4, D3+ = 3 − 4Y n4/n3 = 1
    Unigram continuations N1+(•w): a 3 (_, b, e), b 1, c 2 (b, d), d 1, e 1; N1+(••) = 8
      n1=3 n2=1 n3=1 n4=0: Y = 3/5, D1 = 1 − 2Y/3 = 3/5, D2 = 2 − 3Y = 1/5, D3+ = 3 − 0 = 3
    P1(w)   = (N1+(•w) − D(N1+(•w)))/8 + γ1/7, γ1 = (D1·3 + D2·1 + D3+·1)/8 = 5/8
    P2(w|h) = (c(hw) − D(c(hw)))/c(h•) + (D1 N1(h•) + D2 N2(h•) + D3+ N3+(h•))/c(h•) · P1(w)
    """
    a, b, c, d, e = 4, 5, 6, 7, 8
    stream = [a, b, a, b, a, b, a, b, c, d, c, d, c, e, a]
    model = lm(2, "modified_kneser_ney", 9, stream)
    np.testing.assert_allclose(model.discounts, [[3 / 5, 1 / 5, 3], [1 / 2, 5 / 4, 1]], rtol=1e-15)
    g1 = (F(3, 5) * 3 + F(1, 5) * 1 + 3 * 1) / 8
    assert g1 == F(5, 8)
    p1 = {a: (3 - 3) / F(8) + g1 / 7, b: (1 - F(3, 5)) / 8 + g1 / 7, c: (2 - F(1, 5)) / 8 + g1 / 7,
          d: (1 - F(3, 5)) / 8 + g1 / 7, e: (1 - F(3, 5)) / 8 + g1 / 7, UNK: g1 / 7, EOS: g1 / 7}
    assert sum(p1.values()) == 1
    D1, D2, D3 = F(1, 2), F(5, 4), F(1)
    expected = {
        (a, b): (4 - D3) / 4 + (D3 * 1) / 4 * p1[b],            # a -> b 4 times
        (a, c): (D3 * 1) / 4 * p1[c],
        (b, a): (3 - D3) / 4 + (D1 + D3) / 4 * p1[a],           # b -> a 3 times, c once
        (b, c): (1 - D1) / 4 + (D1 + D3) / 4 * p1[c],
        (c, d): (2 - D2) / 3 + (D2 + D1) / 3 * p1[d],           # c -> d twice, e once
        (c, e): (1 - D1) / 3 + (D2 + D1) / 3 * p1[e],
        (c, UNK): (D2 + D1) / 3 * p1[UNK],
        (UNK, a): p1[a],                                         # unseen context
    }
    for (h, w), value in expected.items():
        assert probs(model, [h])[w] == pytest.approx(float(value), rel=1e-12), (h, w)
    for w, value in p1.items():
        assert probs(model, [UNK])[w] == pytest.approx(float(value), rel=1e-12)


def test_discounts_fall_back_where_count_of_counts_cannot_give_them():
    assert estimate_discounts(np.array([2, 2, 3]), modified=False).tolist() == [0.5] * 3   # n1 = 0
    assert estimate_discounts(np.array([2, 2, 3]), modified=True).tolist() == [0.5, 1.0, 1.5]
    # n1=2 n2=0: KN D = 2/2 = 1; MKN D2 = 2 − 3Y n3/n2 divides by n2 = 0 -> fallback
    assert estimate_discounts(np.array([1, 1, 3, 4]), modified=False).tolist() == [1.0] * 3
    assert estimate_discounts(np.array([1, 1, 3, 4]), modified=True).tolist() == [0.5, 1.0, 1.5]
    # n1=2 n2=1 n3=1 n4=5: D3+ = 3 − 4·(1/2)·5 < 0 -> fallback
    d = estimate_discounts(np.array([1, 1, 2, 3] + [4] * 5), modified=True)
    assert d.tolist() == [0.5, 1.0, 1.5]
    # n1=4 n2=2 n3=1 n4=1: Y = 1/2, D1 = 1/2, D2 = 5/4, D3+ = 1
    d = estimate_discounts(np.array([1] * 4 + [2] * 2 + [3, 4]), modified=True)
    np.testing.assert_allclose(d, [0.5, 1.25, 1.0], rtol=1e-15)


# -- parity with NLTK ----------------------------------------------------------------------------

NLTK_S = 6                              # V = 8: ids 1, 3..7 are predictable (not <pad>, <bos>)


def _nltk(stream: np.ndarray, order: int, with_bos: bool = False):
    """NLTK's counter filled with OUR events: for each training token, the k-grams ending at
    it (k = 1..n), contexts padded with <bos>; the vocabulary is S (our <unk> is NLTK's)."""
    nltk_lm = pytest.importorskip("nltk.lm")
    from nltk.lm.counter import NgramCounter

    padded = [BOS] * (order - 1) + stream.tolist()
    grams = [tuple(_name(t) for t in padded[i + order - k:i + order])
             for i in range(stream.size) for k in range(1, order + 1)]
    words = [_name(i) for i in range(8) if i not in (PAD, BOS, UNK)] + ([_name(BOS)] if with_bos else [])
    return nltk_lm, nltk_lm.Vocabulary(words), NgramCounter([grams])


def _name(i) -> str:
    return "<UNK>" if i == UNK else f"t{int(i)}"


def _nltk_corpus():
    rng = np.random.default_rng(7)
    stream = markov_stream(rng, 8, 120)
    contexts = {tuple(stream[i - 2:i]) for i in range(2, stream.size)}            # seen
    contexts |= {(UNK, UNK), (A, EOS), (EOS, A), (BOS, BOS), (BOS, int(stream[0]))}
    return stream, sorted(contexts)


def test_parity_with_nltk_laplace():
    """Differences from `nltk.lm.Laplace`, each aligned here:
    * NLTK's padding (`padded_everygram_pipeline`) puts "<s>" in the vocabulary and counts
      the n-grams that end in it, so Laplace's denominator C + |V| counts "<s>", which is
      never predicted: its probabilities of the real tokens sum to less than 1 (shown below).
      We give NLTK our events and the vocabulary S instead.
    * In a context never seen NLTK's Laplace is uniform, 1/|V|; ours backs off to the longest
      seen suffix. We compare unseen contexts with NLTK at that suffix.
    * `score()` maps context tokens outside the vocabulary to <UNK> (our <bos> would be),
      so we call `unmasked_score`."""
    stream, contexts = _nltk_corpus()
    nltk_lm, vocab, counter = _nltk(stream, 3)
    assert len(vocab) == NLTK_S
    theirs = nltk_lm.Laplace(3, vocabulary=vocab, counter=counter)
    ours = lm(3, "add_k", 8, stream)
    for context in contexts:
        named = tuple(_name(t) for t in context)
        seen = named
        while seen and not counter[seen]:
            seen = seen[1:]
        if seen != named:                                          # NLTK: uniform, no backoff
            assert theirs.unmasked_score("t4", named) == pytest.approx(1 / NLTK_S)
        p = probs(ours, context)
        for w in (1, 3, 4, 5, 6, 7):
            assert p[w] == pytest.approx(theirs.unmasked_score(_name(w), seen), rel=1e-12)

    # NLTK's own pipeline: "<s>" gets Laplace mass, the real tokens less than 1
    from nltk.lm.preprocessing import padded_everygram_pipeline
    train, vocab_text = padded_everygram_pipeline(2, [["a", "b", "a"]])
    stock = nltk_lm.Laplace(2)
    stock.fit(train, vocab_text)
    assert "<s>" in stock.vocab and stock.counts["<s>"] == 1
    assert stock.score("<s>", ["a"]) > 0
    assert sum(stock.score(w, ["a"]) for w in ("a", "b", "</s>", "<UNK>")) < 1 - 0.1


def test_parity_with_nltk_witten_bell():
    """`nltk.lm.WittenBellInterpolated` ends its recursion in the maximum-likelihood
    unigram, so a token never seen in training (here <unk> and <eos>) gets probability 0 and
    perplexity is inf. Ours interpolates the unigram with the uniform distribution over S:
    P1(w) = (c(w) + N1+(•)/|S|) / (N + N1+(•)). With that one base replaced in NLTK (its
    higher-order recursion is NLTK's own), the two agree, also in unseen contexts (both back
    off), and so do the perplexities of a held-out stream."""
    stream, contexts = _nltk_corpus()
    nltk_lm, vocab, counter = _nltk(stream, 3, with_bos=True)
    from nltk.lm.models import InterpolatedLanguageModel
    from nltk.lm.smoothing import WittenBell

    class UniformBase(WittenBell):
        def unigram_score(self, word):
            u = self.counts.unigrams
            return (u[word] + len(u) / NLTK_S) / (u.N() + len(u))

    theirs = InterpolatedLanguageModel(UniformBase, 3, vocabulary=vocab, counter=counter)
    ours = lm(3, "witten_bell", 8, stream)
    for context in contexts:
        named = tuple(_name(t) for t in context)
        p = probs(ours, context)
        for w in (1, 3, 4, 5, 6, 7):
            assert p[w] == pytest.approx(theirs.unmasked_score(_name(w), named), rel=1e-12)

    held_out = np.array([A, B, UNK, C, EOS, A, A, 7, 7, 6, 5, 4])
    padded = [BOS, BOS] + held_out.tolist()
    ngrams = [tuple(_name(t) for t in padded[i:i + 3]) for i in range(held_out.size)]
    nll, count = perplexity(ours, held_out)
    assert count == held_out.size
    assert math.exp(nll) == pytest.approx(theirs.perplexity(ngrams), rel=1e-10)
    stock = nltk_lm.WittenBellInterpolated(3, vocabulary=vocab, counter=counter)
    assert stock.unmasked_score("t3", ngrams[0][:2]) == 0.0 and math.isinf(stock.perplexity(ngrams))


def test_parity_with_nltk_kneser_ney():
    """`nltk.lm.KneserNeyInterpolated` differs from Chen & Goodman's interpolated KN in two
    ways: one fixed discount (default 0.1) for every order, where we estimate
    D_k = n1/(n1 + 2 n2) per order from count-of-counts; and a unigram that is the bare
    continuation distribution N1+(•w)/N1+(••) (an unseen token gets 0, perplexity inf),
    where ours is discounted and interpolated with the uniform over S. With our discounts
    and our unigram put into NLTK, its continuation counts (`_continuation_counts`) and its
    recursion give our probabilities. Its gamma uses N1+(h•) of the raw counts also at
    lower orders; with our padding every lower-order n-gram has a predecessor, so that
    equals N1+(h•) of the continuation counts."""
    stream, contexts = _nltk_corpus()
    nltk_lm, vocab, counter = _nltk(stream, 3)
    from nltk.lm.models import InterpolatedLanguageModel
    from nltk.lm.smoothing import KneserNey

    ours = lm(3, "kneser_ney", 8, stream)
    per_order = {k: float(ours.discounts[k - 1, 0]) for k in (1, 2, 3)}
    assert len(set(per_order.values())) == 3                     # three different discounts

    class OurDiscountsAndBase(KneserNey):
        def alpha_gamma(self, word, context):
            self.discount = per_order[len(context) + 1]
            return super().alpha_gamma(word, context)

        def unigram_score(self, word):
            count, total = self._continuation_counts(word)
            types = sum(self._continuation_counts(w)[0] > 0 for w in self.counts.unigrams)
            d = per_order[1]
            return max(count - d, 0) / total + d * types / total / NLTK_S

    theirs = InterpolatedLanguageModel(OurDiscountsAndBase, 3, vocabulary=vocab, counter=counter,
                                       params={"order": 3})
    stock = nltk_lm.KneserNeyInterpolated(3, vocabulary=vocab, counter=counter)
    for context in contexts:
        named = tuple(_name(t) for t in context)
        p = probs(ours, context)
        for w in (1, 3, 4, 5, 6, 7):
            assert p[w] == pytest.approx(theirs.unmasked_score(_name(w), named), rel=1e-12)
    assert stock.unmasked_score("t3", ("t4", "t5")) == 0.0        # <eos> never seen: 0 in NLTK


# -- the sequence-model interface -------------------------------------------------------------

@pytest.fixture(scope="module")
def fitted():
    rng = np.random.default_rng(3)
    stream = markov_stream(rng, 12, 2000)
    return {smoothing: lm(4, smoothing, 12, stream) for smoothing in SMOOTHINGS}


@pytest.mark.parametrize("smoothing", SMOOTHINGS)
def test_forward_equals_step_by_step_and_the_table(fitted, smoothing):
    model = fitted[smoothing].eval().to("cpu")
    assert isinstance(model, SequenceModel) and not list(model.parameters())
    x = torch.randint(1, 12, (3, 15))
    full, state = model(x)
    assert full.shape == (3, 15, 12) and full.dtype == torch.float32 and state.shape == (3, 3)
    step_state, outs = model.init_state(3), []
    for t in range(15):
        out, step_state = model.step(x[:, t], step_state)
        outs.append(out)
    torch.testing.assert_close(torch.stack(outs, 1), full, rtol=0, atol=0)
    torch.testing.assert_close(step_state, state)
    # chunks with the carried state equal one pass
    first, mid = model(x[:, :6])
    second, _ = model(x[:, 6:], mid)
    torch.testing.assert_close(torch.cat([first, second], 1), full, rtol=0, atol=0)
    # each position is the float64 table of its <bos>-padded prefix
    table = model.log_prob_table(x[1, :9].numpy())
    torch.testing.assert_close(full[1, 8], torch.from_numpy(table).float(), rtol=0, atol=0)
    # real log-probabilities: cross-entropy on them is the negative log-likelihood
    targets = torch.randint(1, 12, (3, 15))
    targets[targets == BOS] = UNK
    nll = -full.gather(2, targets[..., None]).mean()
    torch.testing.assert_close(nnf.cross_entropy(full.reshape(-1, 12), targets.reshape(-1)), nll)


def test_forward_sees_only_the_last_order_minus_one_tokens(fitted):
    model = fitted["modified_kneser_ney"]                          # order 4: 3 tokens of context
    x = torch.randint(3, 12, (2, 30))
    base, _ = model(x)
    for s in (0, 10, 27):
        y = x.clone()
        y[:, s] = torch.where(x[:, s] == 5, 6, 5)
        changed, _ = model(y)
        same = [t for t in range(30) if not s <= t <= s + 2]
        torch.testing.assert_close(changed[:, same], base[:, same], rtol=0, atol=0)
        assert not torch.equal(changed[:, s], base[:, s])


def test_order_one_has_an_empty_state():
    model = lm(1, "kneser_ney", 9, ABRACADABRA)
    state = model.init_state(2)
    assert state.shape == (2, 0)
    out, state = model.step(torch.tensor([A, B]), state)
    assert out.shape == (2, 9) and state.shape == (2, 0)
    torch.testing.assert_close(out[0], out[1])


@pytest.mark.parametrize("smoothing", SMOOTHINGS)
def test_state_round_trip_through_safetensors(fitted, smoothing, tmp_path):
    from safetensors.numpy import load_file, save_file

    model = fitted[smoothing]
    save_file(model.state_arrays(), str(tmp_path / "ngram.safetensors"))
    restored = NGramLM.from_state_arrays(load_file(str(tmp_path / "ngram.safetensors")))
    assert (restored.order, restored.smoothing, restored.vocab_size) == (4, smoothing, 12)
    x = torch.randint(0, 12, (4, 25))
    torch.testing.assert_close(restored(x)[0], model(x)[0], rtol=0, atol=0)
    np.testing.assert_array_equal(restored.discounts, model.discounts)
    with pytest.raises(SeqlabError):
        NGramLM.from_state_arrays({k: v for k, v in model.state_arrays().items() if k != "order2.words"})


def test_perplexity_is_the_mean_of_the_tables(fitted):
    model = fitted["witten_bell"]
    tokens = np.array([4, 5, 1, 9, 3, 11, 4])
    expected = -np.mean([model.log_prob_table(tokens[:i])[tokens[i]] for i in range(tokens.size)])
    nll, count = perplexity(model, tokens)
    assert count == 7 and nll == pytest.approx(expected, rel=1e-12) and np.isfinite(nll)


def test_invalid_settings_and_streams_are_one_line_errors():
    with pytest.raises(SeqlabError, match="order"):
        NGramLM(ModelConfig(name="ngram", order=21), 10)
    with pytest.raises(SeqlabError, match="smoothing"):
        NGramLM(ModelConfig(name="ngram", smoothing="good_turing"), 10)
    with pytest.raises(SeqlabError, match="add_k"):
        NGramLM(ModelConfig(name="ngram", smoothing="add_k", add_k=0.0), 10)
    with pytest.raises(SeqlabError, match="<bos>"):
        lm(2, "kneser_ney", 10, [4, BOS, 5])
    with pytest.raises(SeqlabError, match="token ids"):
        lm(2, "kneser_ney", 10, [4, 10])
    model = lm(2, "kneser_ney", 10, [4, 5])
    with pytest.raises(SeqlabError, match="already fitted"):
        model.fit(np.array([4]))
    with pytest.raises(SeqlabError, match="token ids"):
        model(torch.tensor([[4, 12]]))


@pytest.mark.slow
def test_order_20_on_five_million_characters_builds_within_a_minute():
    """The acceptance bar: an order-20 character model on a 5M-character stream (V = 84,
    i.i.d. Zipf over 80 symbols, the worst case: nearly every context of 5+ tokens distinct)."""
    rng = np.random.default_rng(0)
    weights = 1.0 / np.arange(1, 81)
    stream = rng.choice(np.arange(4, 84), size=5_000_000, p=weights / weights.sum())
    start = time.perf_counter()
    model = lm(20, "modified_kneser_ney", 84, stream)
    seconds = time.perf_counter() - start
    print(f"order-20 build on 5M tokens: {seconds:.1f} s")
    assert seconds < 60
    assert abs(probs(model, stream[:19]).sum() - 1) < 1e-9
