"""Error analysis against an n-gram (seqlab.analysis.errors): categories by hand, scores
against the independent paths (`tasks.tbptt.evaluate`, one full forward pass, the n-gram's
own perplexity), and the command end to end on a tiny trained run."""
import json
import math
import random

import numpy as np
import pytest
import torch
import torch.nn.functional as F

from seqlab.analysis.errors import (BUCKET_EDGES, CLASSES, bucket_of, categorize, compare, main,
                                    model_log_probs, ngram_log_probs)
from seqlab.config import ModelConfig, load_config
from seqlab.data.vocab import Vocab
from seqlab.models import build_model
from seqlab.models.ngram import NGramLM, perplexity
from seqlab.training.engine import fit
from seqlab.tasks.tbptt import evaluate

from conftest import TINY, make_text


def classes_of(text, reach):
    cats = categorize(text, reach)
    return [CLASSES[k] for k in cats["klass"]], cats


def test_brackets_matched_per_type_with_distances():
    #       0123456789012
    text = "a(bc)d[e(f)g]"
    names, cats = classes_of(text, reach=2)
    assert names[1] == names[6] == names[8] == "open bracket"
    assert (names[4], cats["distance"][4]) == ("close bracket, far", 3)      # ( at 1, ) at 4
    assert (names[10], cats["distance"][10]) == ("close bracket, near", 2)   # ( at 8, ) at 10: within reach 2
    assert (names[12], cats["distance"][12]) == ("close bracket, far", 6)    # [ at 6, ] at 12
    # a ] never closes a (, and a closer with nothing open is unmatched
    names, cats = classes_of("(]x)", reach=5)
    assert names[1] == "close bracket, unmatched" and cats["distance"][1] == 0
    assert (names[3], cats["distance"][3]) == ("close bracket, near", 3)


def test_quotes_words_and_lines():
    #       0 1234567890123456789
    text = 'He said "no way"\nIt\'s 42.\n'
    names, cats = classes_of(text, reach=4)
    assert names[0] == "word start" and cats["upper"][0]
    assert names[1] == "in word" and cats["distance"][1] == 1
    assert names[2] == "space"
    assert names[8] == "open quote" and names[9] == "word start"
    assert (names[15], cats["distance"][15]) == ("close quote", 7)
    assert (names[16], cats["distance"][16]) == ("newline", 17)               # the line and its newline
    assert names[17] == "word start" and cats["after_newline"][17] and cats["upper"][17]
    assert names[19] == "punctuation"                                         # the apostrophe
    assert names[20] == "in word" and cats["distance"][20] == 3               # s of It's: 3 after I
    assert names[22] == names[23] == "digit" and names[24] == "punctuation"
    assert (names[25], cats["distance"][25]) == ("newline", 9)
    assert cats["after_newline"].sum() == 1 and cats["upper"].sum() == 2
    # a word after a digit or punctuation starts anew; NUL (a special token) is "other"
    names, _ = classes_of("4x.y\x00", reach=4)
    assert names == ["digit", "word start", "punctuation", "word start", "other"]


def test_buckets_and_compare_by_hand():
    assert list(bucket_of(np.array([1, 2, 3, 4, 5, 1024, 1025]))) == [0, 1, 2, 2, 3, 10, len(BUCKET_EDGES)]
    index = {name: k for k, name in enumerate(CLASSES)}
    klass = np.array([index["newline"], index["newline"], index["space"], index["in word"]])
    cats = {"klass": klass, "upper": np.array([0, 0, 0, 1], bool), "after_newline": np.array([0, 1, 0, 0], bool),
            "distance": np.array([3, 40, 0, 2])}
    model_bits, ngram_bits = np.array([1.0, 2.0, 1.0, 0.5]), np.array([2.0, 5.0, 0.0, 0.5])
    report = compare(cats, model_bits, ngram_bits)                 # gains 1, 3, -1, 0: total 3
    rows = {r["name"]: r for r in report["classes"]}
    assert report["total_gain_bits"] == 3.0
    assert rows["newline"]["count"] == 2 and rows["newline"]["gain_bpc"] == 2.0
    assert rows["newline"]["share_of_gain"] == pytest.approx(4 / 3) and rows["space"]["share_of_gain"] == pytest.approx(-1 / 3)
    assert sum(r["share_of_gain"] for r in report["classes"]) == pytest.approx(1.0)
    assert rows["newline"]["gain_bits"] == 4.0 and rows["digit"]["count"] == 0
    groups = {r["name"]: r for r in report["groups"]}
    assert groups["after newline"]["ngram_bpc"] == 5.0 and groups["upper case"]["count"] == 1
    newline = {r["name"]: r["count"] for r in report["distances"]["newline"]}
    assert newline == {"3-4": 1, "33-64": 1}
    assert [r["name"] for r in report["distances"]["in word"]] == ["2"]


def test_model_log_probs_are_evaluate_and_one_full_pass():
    torch.manual_seed(0)
    model = build_model(ModelConfig(name="lstm", embedding_size=8, hidden_size=16, num_layers=2), 12).double().eval()
    ids = np.random.default_rng(0).integers(4, 12, size=611)
    positions, log_probs = model_log_probs(model, ids, 3, 7, torch.device("cpu"))
    nats, count = evaluate(model, ids, 3, 7, torch.device("cpu"))
    assert len(positions) == count == len(np.unique(positions))
    assert -log_probs.mean() == pytest.approx(nats, rel=1e-12)
    # independent: each of the 3 rows of 203 tokens in one forward pass from a fresh state
    per_row = len(ids) // 3
    with torch.no_grad():
        for r in range(3):
            row = torch.as_tensor(ids[r * per_row:(r + 1) * per_row])
            logits, _ = model(row[None, :-1], model.init_state(1))                    # (1, T, V)
            expected = F.log_softmax(logits[0], -1).gather(-1, row[1:, None])[:, 0]    # (T,)
            mine = log_probs[(positions >= r * per_row) & (positions < (r + 1) * per_row)]
            assert positions[(positions >= r * per_row) & (positions < (r + 1) * per_row)][0] == r * per_row + 1
            np.testing.assert_allclose(mine, expected.numpy(), rtol=0, atol=1e-12)


@pytest.mark.parametrize("smoothing", ["kneser_ney", "witten_bell"])
def test_ngram_log_probs_are_the_ngrams_own_scores(smoothing):
    vocab = Vocab.build(make_text(6000, seed=1))
    train, held = vocab.encode(make_text(6000, seed=1)), vocab.encode(make_text(800, seed=2))
    log_probs = ngram_log_probs(train, held, 4, smoothing, len(vocab))
    reference = NGramLM(ModelConfig(name="ngram", order=4, smoothing=smoothing), len(vocab)).fit(train)
    nats, count = perplexity(reference, held)
    assert count == len(log_probs) and -log_probs.mean() == pytest.approx(nats, rel=1e-12)
    # the evaluate path (batched target scoring, one stream) skips only the first token
    nats, count = evaluate(reference, held, 1, 9, torch.device("cpu"))
    assert count == len(held) - 1 and -log_probs[1:].mean() == pytest.approx(nats, rel=1e-12)
    # the dense table of one context
    assert log_probs[100] == pytest.approx(reference.log_prob_table(held[:100])[held[100]], rel=1e-12)


def bracket_text(n_chars: int, seed: int = 0) -> str:
    """Lines of words with nested brackets and quotes at short and long distances."""
    rng = random.Random(seed)
    words = ["if", "x", "then", "call", "f", "return", "y", "and", "z"]
    lines, size = [], 0
    while size < n_chars:
        inner = " ".join(rng.choice(words) for _ in range(rng.randint(0, 6)))
        line = rng.choice(["f({})", "[{}]", "{{{}}}", '"{}"', "({} (x))", "{}"]).format(inner) + ";"
        lines.append(line)
        size += len(line) + 1
    return "\n".join(lines)[:n_chars] + "\n"


@pytest.fixture
def trained(tmp_path):
    corpus = tmp_path / "code.txt"
    corpus.write_text(bracket_text(20000), encoding="utf-8")
    run = tmp_path / "run"
    fit(load_config(None, TINY + [f"data.path={corpus}", "train.max_steps=10"]), run, log=lambda m: None)
    return run


def test_command_end_to_end(trained, tmp_path, capsys):
    from seqlab.cli import main as cli_main
    png, out = tmp_path / "errors.png", tmp_path / "errors.json"
    assert cli_main(["analyze", "errors", str(trained), "--order", "3", "--out", str(png), "--json", str(out)]) == 0
    printed = capsys.readouterr().out
    assert png.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    report = json.loads(out.read_text())
    assert "close bracket, far" in printed and report["reach"] == 2
    classes = {r["name"]: r for r in report["classes"]}
    assert sum(r["count"] for r in report["classes"]) == report["scored"] == report["groups"][0]["count"]
    assert sum(r["share_of_gain"] for r in report["classes"]) == pytest.approx(1.0)
    assert classes["close bracket, far"]["count"] > 0 and classes["close bracket, near"]["count"] > 0
    # the model's mean is what `seqlab eval` reports on the same split (float32 there, float64 here)
    assert cli_main(["eval", str(trained), "--split", "valid", "--json", "--device", "cpu"]) == 0
    evaluated = json.loads(capsys.readouterr().out)
    assert evaluated["tokens"] == report["scored"]
    assert report["model_summary"]["loss"] == pytest.approx(evaluated["loss"], rel=1e-5)
    assert math.isclose(report["groups"][0]["model_bpc"], report["model_summary"]["bpc"], rel_tol=1e-12)


def test_command_errors_are_one_line(trained, capsys):
    from seqlab.cli import main as cli_main
    assert cli_main(["analyze", "errors", str(trained), "--order", "0"]) == 2
    err = capsys.readouterr().err
    assert err.startswith("seqlab: error: --order must be 1-20") and len(err.strip().splitlines()) == 1
    assert cli_main(["analyze", "errors", str(trained), "--file", "/no/such.txt"]) == 2
    assert "no such file" in capsys.readouterr().err


def test_main_prints_json_without_table(trained, tmp_path, capsys):
    assert main(["errors", str(trained), "--order", "2", "--chars", "300", "--out", str(tmp_path / "e.png"),
                 "--json"]) == 0
    report = json.loads(capsys.readouterr().out)
    assert report["chars"] == 300 and report["order"] == 2
