"""Target-only n-gram scoring (`stream_log_probs`, `target_log_probs`, `perplexity`, the
trainer's `evaluate`) against the full-distribution path that `forward` / `step` use: the
same numbers, without ever building a (V,) table."""
from __future__ import annotations

import math

import numpy as np
import pytest
import torch

from seqlab import SeqlabError
from seqlab.config import ModelConfig
from seqlab.data.vocab import BOS, EOS, PAD, UNK
from seqlab.models.ngram import SMOOTHINGS, NGramLM, perplexity
from seqlab.tasks.tbptt import evaluate

V = 24
SEEN = np.arange(4, V - 3)                       # training ids; <unk>, <eos>, V-3..V-1 never seen


def lm(order: int, smoothing: str, stream, vocab_size: int = V) -> NGramLM:
    cfg = ModelConfig(name="ngram", order=order, smoothing=smoothing, add_k=0.25)
    return NGramLM(cfg, vocab_size).fit(np.asarray(stream, np.int64))


def corpora(seed: int) -> tuple[np.ndarray, np.ndarray]:
    """A training stream from a sparse Markov chain over SEEN (contexts repeat at every order)
    and a held-out stream: half from the same chain, half any id but <pad>/<bos>, so that it
    has unseen tokens (<unk>, <eos>, ids never trained on) and unseen contexts of every length."""
    rng = np.random.default_rng(seed)
    successors = {int(t): rng.choice(SEEN, size=3, replace=False) for t in SEEN}

    def chain(length: int) -> np.ndarray:
        out = [int(rng.choice(SEEN))]
        for _ in range(length - 1):
            out.append(int(rng.choice(successors[out[-1]])))
        return np.array(out)

    held = chain(400)
    noise = rng.random(held.size) < 0.5
    held[noise] = rng.choice(np.delete(np.arange(V), [PAD, BOS]), size=int(noise.sum()))
    return chain(1500), held


def table_entries(model: NGramLM, tokens: np.ndarray) -> np.ndarray:
    """log P(token i | the n−1 before it, <bos>-padded) read off the full (V,) tables, with the
    contexts built here in plain Python."""
    n = model.order
    padded = [BOS] * (n - 1) + tokens.tolist()
    contexts = np.array([padded[i:i + n - 1][::-1] for i in range(tokens.size)], np.int64)
    contexts = contexts.reshape(tokens.size, n - 1)                                   # (P, n-1)
    return model._log_probs(contexts)[np.arange(tokens.size), tokens]


@pytest.mark.parametrize("order", [1, 2, 3, 5, 20])
@pytest.mark.parametrize("smoothing", SMOOTHINGS)
def test_target_log_probs_are_the_full_tables_entries(smoothing, order):
    train, held = corpora(order)
    model = lm(order, smoothing, train)
    ours, expected = model.stream_log_probs(held), table_entries(model, held)
    assert ours.dtype == np.float64 and ours.shape == held.shape
    np.testing.assert_allclose(ours, expected, rtol=0, atol=1e-12)
    assert np.all(np.isfinite(ours)), "unseen tokens and contexts keep mass"
    # perplexity is the mean of the tables' entries, as before
    nll, count = perplexity(model, held)
    assert count == held.size and nll == pytest.approx(-expected.mean(), rel=1e-12)
    # <pad> and <bos> as targets: probability 0 on both paths
    special = np.array([5, PAD, 6, BOS, 7])
    np.testing.assert_array_equal(model.stream_log_probs(special), table_entries(model, special))
    assert np.isneginf(model.stream_log_probs(special)[[1, 3]]).all()


def test_the_lookup_does_not_rely_on_sorted_pair_lists():
    """The counts store the words of a context in first-seen order; the target search sorts
    the pairs it expands. This corpus has unsorted lists, so the test above exercises that."""
    model = lm(3, "witten_bell", corpora(3)[0])
    unsorted = 0
    for _, offsets, words, _ in model._levels:
        unsorted += sum(np.any(np.diff(words[a:b].astype(np.int64)) < 0) for a, b in zip(offsets[:-1], offsets[1:]))
    assert unsorted > 0


@pytest.mark.parametrize("smoothing", SMOOTHINGS)
def test_batched_targets_with_a_carried_state_equal_the_stream_and_forward(smoothing):
    train, held = corpora(11)
    model = lm(4, smoothing, train)
    rows = torch.from_numpy(held[:2 * 101].reshape(2, 101))                          # (B, T+1)
    x, y = rows[:, :-1], rows[:, 1:]
    first, mid = model.target_log_probs(x[:, :40], y[:, :40])
    second, end = model.target_log_probs(x[:, 40:], y[:, 40:], mid)
    together = torch.cat([first, second], 1)                                         # (B, T)
    assert together.dtype == torch.float64 and together.shape == (2, 100)
    full, state = model(x)                                                           # (B, T, V)
    torch.testing.assert_close(end, state, rtol=0, atol=0)
    for b in range(2):
        np.testing.assert_array_equal(together[b].numpy(), model.stream_log_probs(rows[b].numpy())[1:])
    gathered = full.gather(2, y[..., None])[..., 0].double()                         # float32 table
    torch.testing.assert_close(together, gathered, rtol=1e-6, atol=1e-6)
    with pytest.raises(SeqlabError, match="shape"):
        model.target_log_probs(x, y[:, :5])


def test_unfitted_counts_and_empty_streams():
    for smoothing in SMOOTHINGS:
        empty = lm(3, smoothing, np.zeros(0, np.int64), vocab_size=9)
        np.testing.assert_allclose(empty.stream_log_probs(np.array([4, UNK, EOS, 8])), np.log(1 / 7), rtol=1e-15)
        nll, count = perplexity(lm(2, smoothing, [4, 5, 4]), np.zeros(0, np.int64))
        assert count == 0 and math.isnan(nll)


class FullTableOnly(torch.nn.Module):
    """The same model seen only through the interface every model has: forward, init_state."""

    def __init__(self, model: NGramLM):
        super().__init__()
        self.model = model

    def init_state(self, batch_size: int):
        return self.model.init_state(batch_size)

    def forward(self, x, state=None):
        return self.model(x, state)


@pytest.mark.parametrize("smoothing", ["witten_bell", "modified_kneser_ney"])
def test_evaluate_scores_count_models_without_the_tables(smoothing, monkeypatch):
    train, held = corpora(5)
    model = lm(3, smoothing, train)
    ids = torch.from_numpy(held)
    slow, slow_count = evaluate(FullTableOnly(model), ids, 4, 17, torch.device("cpu"))
    # from here on, building a full table is an error: evaluate and perplexity must not
    monkeypatch.setattr(NGramLM, "_probabilities", lambda *a: pytest.fail("built the (V,) tables"))
    fast, count = evaluate(model, ids, 4, 17, torch.device("cpu"))
    assert count == slow_count == held.size - held.size % 4 - 4
    assert fast == pytest.approx(slow, rel=1e-6)                  # float32 tables vs float64 targets
    perplexity(model, held)


@pytest.mark.parametrize("order", [1, 2, 3, 4])
def test_the_folded_key_sort_equals_lexsort(order):
    from seqlab.models.ngram_counts import sort_reversed
    rng = np.random.default_rng(order)
    V = 70000                                             # 32-bit columns: a large word vocabulary
    stream = rng.integers(0, 40, 5000).astype(np.uint32)  # few distinct values: many ties to keep stable
    back = [stream[order - 1 - j: stream.size - j] for j in range(order)]
    np.testing.assert_array_equal(sort_reversed(back, V, combined=True), sort_reversed(back, V, combined=False))
