"""Cell activations (analysis/cells.py) and the text features they are compared with
(analysis/char_features.py): hand-made strings with known quote state, depth and column;
correlations against numpy's corrcoef; recomputed LSTM cell states against stepping the model."""
from __future__ import annotations

import json

import numpy as np
import pytest
import torch

from seqlab import SeqlabError
from seqlab.analysis.cells import _read_stepping, best_cells, correlations, read_text
from seqlab.analysis.char_features import char_features
from seqlab.config import ModelConfig
from seqlab.data.vocab import Vocab
from seqlab.models.recurrent import RecurrentLM


def bits(values) -> str:
    return "".join(str(int(v)) for v in values)


def test_double_quotes_brackets_and_columns_on_a_hand_made_line():
    text = 'say "hi (x)" (a [b])\nz'
    f = char_features(text)
    assert bits(f["double_quote"]) == "0000" + "1" * 7 + "0" * 11      # the closing quote is outside
    assert bits(f["bracket_depth"]) == "0" * 13 + "1112210" + "00"     # brackets in the string do not count
    assert f["line_position"].tolist() == list(range(1, 21)) + [0, 1]
    assert f["line_remaining"].tolist() == list(range(19, -1, -1)) + [0, 0]


def test_apostrophes_are_not_quotes_but_quoted_words_are():
    text = "I don't 'know' o'er r'a' x"
    f = char_features(text)
    expected = np.zeros(len(text))
    expected[text.index("'know'"):text.index("'know'") + 5] = 1      # 'know until the closing mark
    expected[text.index("'a'"):text.index("'a'") + 2] = 1            # a Python r'...' prefix
    assert bits(f["single_quote"]) == bits(expected)
    # a newline closes a single quote left open by an elision such as 'tis
    assert bits(char_features("'tis so\nab")["single_quote"]) == "1111111000"


def test_comments_in_three_styles_and_quotes_inside_them():
    text = 'a /* "q" */ b // c (\nd # e\n(f "/*")'
    f = char_features(text)
    assert bits(f["comment"]) == "000111111100000111110001110" + "0" * 8
    assert f["double_quote"][:27].sum() == 0                         # the quotes were in a comment
    assert bits(f["double_quote"][27:]) == "00011100"                # "/*" in a string opens no comment
    assert bits(f["bracket_depth"][27:]) == "11111110"               # the ( in the comment did not count
    assert bits(char_features("/*/ a */b")["comment"]) == "011111100"    # /*/ does not close itself


def test_correlations_agree_with_numpy_and_find_the_planted_cell():
    rng = np.random.default_rng(0)
    depth = char_features("f(a, (b[c]), {d: (e)})\n" * 40)["bracket_depth"]
    cells = rng.normal(size=(len(depth), 8))                          # (N, U)
    cells[:, 3] = depth + 0.3 * rng.normal(size=len(depth))          # unit 3 tracks the depth
    cells[:, 6] = -depth + 1.0 * rng.normal(size=len(depth))         # unit 6 too, inversely, noisily
    features = np.stack([depth, rng.normal(size=len(depth)), np.ones(len(depth))], 1)    # (N, 3)
    r = correlations(cells, features)
    expected = np.corrcoef(cells.T, features[:, :2].T)[:8, 8:]
    np.testing.assert_allclose(r[:, :2], expected, rtol=1e-10, atol=1e-12)
    assert np.isnan(r[:, 2]).all()                                   # a constant feature has no r
    best = best_cells(r, ["depth", "noise", "constant"], hidden_size=4, top=2)
    assert [(c["layer"], c["unit"]) for c in best["depth"]] == [(0, 3), (1, 2)]
    assert best["depth"][0]["r"] > 0.9 and best["depth"][1]["r"] < -0.5
    assert best["constant"] == []


def _model(name: str, layers: int = 2, vocab_size: int = 12) -> RecurrentLM:
    torch.manual_seed(3)
    cfg = ModelConfig(name=name, embedding_size=6, hidden_size=9, num_layers=layers, dropout=0.0)
    model = RecurrentLM(cfg, vocab_size).eval()
    with torch.no_grad():     # larger weights than the default init, so that c_t leaves [-1, 1]
        for p in model.rnn.parameters():
            p.mul_(3.0)
    return model


@pytest.mark.parametrize("name", ["lstm", "gru", "rnn"])
def test_recomputed_activations_match_stepping_the_model(name):
    vocab = Vocab(list("ab(c) \"d\n"))
    model = _model(name, vocab_size=len(vocab))
    assert model.fused
    text = 'ab (c "d") a\n' * 9
    fast = read_text(model, vocab, text, chunk=17)                   # chunks carry the state
    ids = torch.as_tensor(vocab.encode(text))
    acts, logits = _read_stepping(model, ids, "cell")                # nn.LSTM's own c, step by step
    assert fast.activations.shape == (len(text), 2, 9)
    torch.testing.assert_close(torch.from_numpy(fast.activations), acts, rtol=1e-5, atol=1e-5)
    if name == "lstm":
        _, (_, c_n) = model.rnn(model.embedding(ids[None]))          # the cell state after the last char
        torch.testing.assert_close(torch.from_numpy(fast.activations[-1]), c_n[:, 0].tanh().detach(),
                                   rtol=1e-5, atol=1e-5)
        assert np.abs(np.arctanh(np.clip(fast.activations, -0.999999, 0.999999))).max() > 1   # |c| > 1 seen
        hidden = read_text(model, vocab, text, state="hidden")
        out, _ = model.rnn(model.embedding(ids[None]))
        torch.testing.assert_close(torch.from_numpy(hidden.activations[:, -1]), out[0].detach(), rtol=1e-5, atol=1e-5)
    # loss and guesses: character t is predicted from the logits at t - 1
    log_probs = torch.log_softmax(logits, -1)
    want = -log_probs[:-1].gather(1, ids[1:, None])[:, 0]
    assert np.isnan(fast.loss[0])
    np.testing.assert_allclose(fast.loss[1:], want.numpy(), rtol=1e-4, atol=1e-5)
    assert (fast.top_ids[1:, 0] == log_probs[:-1].argmax(-1).numpy()).all()
    assert (np.diff(fast.top_probs[1:], axis=1) <= 0).all() and fast.top_probs[1:].sum(1).max() <= 1 + 1e-6


def test_a_variant_cell_is_read_by_stepping():
    vocab = Vocab(list("abc\n"))
    torch.manual_seed(0)
    model = RecurrentLM(ModelConfig(name="lstm", embedding_size=5, hidden_size=7, num_layers=1,
                                    peephole=True), len(vocab)).eval()
    assert not model.fused
    reading = read_text(model, vocab, "abcab\nca")
    assert reading.activations.shape == (8, 1, 7) and reading.what == "tanh(c)"
    assert (np.abs(reading.activations) <= 1).all()


def test_what_cannot_be_read_is_refused():
    vocab = Vocab(list("ab"))
    with pytest.raises(SeqlabError, match="at least 2"):
        read_text(_model("lstm", 1, len(vocab)), vocab, "a")
    with pytest.raises(SeqlabError, match="recurrent language models"):
        read_text(torch.nn.Linear(2, 2), vocab, "abab")


def test_analyze_cells_on_the_command_line(tmp_path, capsys):
    from seqlab.cli import main
    corpus = tmp_path / "toy.txt"
    corpus.write_text('the "king" (of [the] crown)\n' * 150, encoding="utf-8")
    run = tmp_path / "run"
    assert main(["train", f"data.path={corpus}", "model.embedding_size=8", "model.hidden_size=16",
                 "model.num_layers=2", "train.batch_size=4", "train.bptt_steps=20", "train.max_steps=3",
                 "train.eval_every=3", "train.progress=false", "--out", str(run)]) == 0
    capsys.readouterr()
    png = tmp_path / "cell.png"
    assert main(["analyze", "cells", str(run), "--file", str(corpus), "--chars", "600", "--top", "2",
                 "--json", "--png", str(png), "--feature", "bracket_depth"]) == 0
    out = capsys.readouterr().out.strip().splitlines()
    assert "tanh(c) of 32 cells on 600 characters" in out[0]
    best = json.loads(out[-1])["best"]
    assert len(best["bracket_depth"]) == 2 and best["comment"] == []
    assert png.stat().st_size > 5000
    assert main(["analyze", "cells", str(run), "--cell", "3:0", "--png", str(png), "--file", str(corpus), "--overwrite"]) == 2
    assert "layers run 1..2" in capsys.readouterr().err
