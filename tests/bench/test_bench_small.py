"""The generation and word-level n-gram benchmarks at a tiny size: the report's structure and
the claims the full runs rest on (queues = recomputation, seqlab's perplexity = NLTK's).
Not the speed ratios: those need the full sizes and a quiet machine."""
import json
from collections import Counter

import numpy as np
import pytest
import torch

from seqlab.bench import generation, ngram_words
from seqlab.bench.generation import Spec
from seqlab.bench.ngram_words import WordCorpus
from seqlab.data.vocab import UNK, Vocab, tokenize
from seqlab.models import build_model

from conftest import make_text

TINY_SPECS = [
    Spec("tcn-tiny", "tcn", hidden_size=8, num_layers=3, kernel_size=2, embedding_size=6),          # R = 15
    Spec("wavenet-tiny", "wavenet", hidden_size=8, num_layers=4, kernel_size=2, embedding_size=6,
         dilation_cycle=4),                                                                           # R = 17
]


# -- generation ------------------------------------------------------------------------------------

def test_generation_report_and_exactness(tmp_path):
    out = str(tmp_path / "generation")
    report = generation.run_generation(out, repeats=2, tokens=12, threads=1, check_tokens=5, specs=TINY_SPECS)
    assert json.loads((tmp_path / "results" / "generation.json").read_text()) == report
    text = (tmp_path / "generation.md").read_text()
    assert "tcn-tiny" in text and "wavenet-tiny" in text and report["command"] in text
    assert report["torch_threads"] == 1 and report["machine"]["cores"] >= 1 and report["commit"]
    for row, R in zip(report["models"], (15, 17)):
        assert row["receptive_field"] == R == row["prompt_tokens"]
        assert len(row["queue_seconds"]) == len(row["recompute_seconds"]) == 2
        assert row["queue_tokens_per_s"] > 0 and row["recompute_tokens_per_s"] > 0 and row["speedup"] > 0
        assert row["same_tokens"] and row["float64_same_tokens"]
        assert row["max_abs_diff_vs_recompute"] < 1e-5 and row["max_abs_diff_vs_one_pass"] < 1e-5
        assert row["float64_max_abs_diff_vs_recompute"] < 1e-12



@pytest.mark.parametrize("spec", TINY_SPECS, ids=lambda s: s.label)
def test_recompute_window_is_the_receptive_field(spec, one_thread):
    """Recomputing over the last R tokens gives the logits of recomputing over the whole
    prefix (float64): R is enough, so it is the fair baseline; R − 1 is not enough."""
    torch.manual_seed(0)
    model = build_model(spec.config(), generation.VOCAB_SIZE).double().eval()
    R = model.receptive_field
    prompt = torch.randint(0, generation.VOCAB_SIZE, (1, R + 3))
    ids, windowed = generation.generate_by_recompute(model, prompt, 10, R)
    ids_all, whole = generation.generate_by_recompute(model, prompt, 10, 10**6)
    assert torch.equal(ids, ids_all)
    torch.testing.assert_close(windowed, whole, rtol=0, atol=1e-12)
    _, short = generation.generate_by_recompute(model, prompt, 10, R - 1)
    assert (short - whole).abs().max() > 1e-10                  # far above float64 rounding
    q_ids, queued, _ = generation.generate_with_queues(model, prompt, 10)
    assert torch.equal(q_ids, ids)
    torch.testing.assert_close(queued, whole, rtol=0, atol=1e-12)


# -- word-level n-grams against NLTK --------------------------------------------------------------

@pytest.fixture(scope="module")
def small_words() -> WordCorpus:
    """2,000 training words of the toy language; 300 held-out words with an unseen one."""
    words = tokenize(make_text(14_000, seed=3), "word")
    train, held = words[:2000], words[2000:2299] + ["zounds"]
    vocab = Vocab.from_counts(Counter(train), "word")
    encode = lambda ws: np.array([vocab.stoi.get(w, UNK) for w in ws], np.int64)  # noqa: E731
    return WordCorpus(encode(train), encode(held), len(vocab), "toy language (tests/conftest.py)")


@pytest.mark.parametrize("smoothing", ["witten_bell", "kneser_ney"])
def test_ngram_words_equal_perplexity(small_words, smoothing):
    pytest.importorskip("nltk.lm")
    c = small_words
    assert c.train.size == 2000 and (c.held_out == UNK).any()
    row = ngram_words.compare(c.train, c.held_out, c.vocab_size, smoothing, repeats=2, log=lambda m: None)
    assert row["nltk_scored_tokens"] == c.held_out.size and not row["nltk_total_extrapolated"]
    assert len(row["seqlab_fit_seconds"]) == 2
    assert row["relative_difference"] < 1e-9
    assert row["seqlab_perplexity"] == row["seqlab_prefix_perplexity"] == pytest.approx(row["nltk_prefix_perplexity"],
                                                                                         rel=1e-9)
    assert row["speedup"] == pytest.approx(row["speedup_on_prefix"]) and row["speedup"] > 0


def test_ngram_words_prefix_is_extrapolated_and_reported(small_words, tmp_path):
    pytest.importorskip("nltk.lm")
    c = small_words
    report = ngram_words.run_ngram_words(str(tmp_path / "words"), repeats=1, nltk_tokens=100,
                                         smoothings=("kneser_ney",), corpus=c)
    row = report["comparisons"][0]
    assert row["nltk_scored_tokens"] == 100 and row["nltk_total_extrapolated"]
    assert row["nltk_total"] == pytest.approx(row["nltk_fit"] + row["nltk_prefix_score"] * c.held_out.size / 100)
    assert row["relative_difference"] < 1e-9
    assert row["seqlab_prefix_perplexity"] != row["seqlab_perplexity"]          # the prefix, not the whole text
    text = (tmp_path / "words.md").read_text()
    assert "extrapolated" in text and "--nltk-tokens 100" in text
    assert json.loads((tmp_path / "results" / "words.json").read_text()) == report


def test_decoding_report_names_each_path(tmp_path, monkeypatch):
    """A tiny `seqlab bench decoding`: every row measured, the native, ATen-step and nn.LSTM
    rows of both LSTMs present, and the fractions are the measured rates over the roofline."""
    from seqlab.bench import decoding
    full = decoding.roofline_seconds
    monkeypatch.setattr(decoding, "roofline_seconds", lambda model, repeats=200: full(model, 3))
    report = decoding.run_decoding(str(tmp_path / "decoding"), repeats=1, tokens=4, command="test")
    names = [row["model"] for row in report["rows"]]
    for size in ("demo LSTM 1x384", "LSTM 2x512"):
        assert {size, size + ", ATen step (no C++ compiler)", size + ", through nn.LSTM (first)"} <= set(names)
    for row in report["rows"]:
        assert row["sample_tokens_per_s"] > 0 and row["greedy_tokens_per_s"] > 0
        assert row["sample_fraction"] == pytest.approx(row["sample_tokens_per_s"] / row["roofline_tokens_per_s"])
    text = (tmp_path / "decoding.md").read_text()
    assert "ATen step (no C++ compiler)" in text and "built on this machine" in text


def test_command_line_names_a_flag_without_a_value():
    import argparse

    from seqlab.bench.common import command_line
    p = argparse.ArgumentParser()
    p.add_argument("--sample-only", action="store_true")
    p.add_argument("--steps", type=int, default=10)
    p.add_argument("--orders", type=int, nargs="+", default=[2])
    assert command_line("folk", p, p.parse_args([])) == "seqlab bench folk"
    assert (command_line("folk", p, p.parse_args(["--sample-only", "--steps", "5", "--orders", "3", "4"]))
            == "seqlab bench folk --sample-only --steps 5 --orders 3 4")
