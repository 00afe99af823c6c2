"""seqlab.train / seqlab.load / Run (api/): plain values out, the same numbers as the command
line, scores checked against stepping the model by hand, and one-line errors."""
import json
import math
import subprocess
import sys

import numpy as np
import pytest
import torch
import torch.nn.functional as F

import seqlab
from seqlab import SeqlabError
from seqlab.api.training import to_config
from seqlab.cli import main
from seqlab.config import Config, load_config, to_dict

from conftest import TINY, make_text
from helpers import seasonal_csv, sentiment_file, tagged_file


@pytest.fixture(scope="module")
def lm(tmp_path_factory):
    folder = tmp_path_factory.mktemp("api")
    corpus = folder / "corpus.txt"
    corpus.write_text(make_text(8000), encoding="utf-8")
    torch.set_num_threads(1)
    run = seqlab.train([f"data.path={corpus}", *TINY, "train.max_steps=30", "train.threads=1"], out=folder / "run")
    return run


def test_train_returns_the_run_loaded_with_plain_values(lm):
    assert isinstance(lm, seqlab.Run) and lm.task == "lm"
    assert isinstance(lm.config, dict) and lm.config["model"]["hidden_size"] == 32
    assert lm.config == to_dict(load_config(None, [f"data.path={lm.config['data']['path']}", *TINY,
                                                   "train.max_steps=30", "train.threads=1"]))
    assert isinstance(lm.vocab, list) and all(isinstance(t, str) for t in lm.vocab) and "k" in lm.vocab
    assert isinstance(lm.model, torch.nn.Module) and not lm.model.training
    assert isinstance(lm.metrics, list) and lm.metrics[-1]["step"] == 30
    assert set(lm.result) >= {"loss", "bpc"}
    assert "task lm" in repr(lm)
    assert seqlab.load is seqlab.api.load and seqlab.train is seqlab.api.train and seqlab.Run is seqlab.api.Run


def test_import_seqlab_stays_light_until_the_api_is_asked_for():
    probe = ("import sys, seqlab; light = 'torch' not in sys.modules; seqlab.load; "
             "print(light, 'torch' in sys.modules)")
    out = subprocess.run([sys.executable, "-c", probe], capture_output=True, text=True, check=True).stdout
    assert out.split() == ["True", "True"]


def step_by_step(run, text: str) -> np.ndarray:
    """An independent score: the model's single-step path from a line break, one token at a time."""
    ids = [run.vocab.index(c) for c in text]
    model, state = run.model, run.model.init_state(1)
    token, out = run.vocab.index("\n"), []
    with torch.no_grad():
        for target in ids:
            logits, state = model.step(torch.tensor([token]), state)                 # (1, V)
            out.append(F.log_softmax(logits.double(), -1)[0, target].item())
            token = target
    return np.array(out)


def test_score_equals_stepping_the_model_by_hand(lm):
    text = "The king shall speak.\nWhat is honour.\n"
    score = lm.score(text)
    assert score["tokens"] == len(text) and score["log_probs"].shape == (len(text),)
    np.testing.assert_allclose(score["log_probs"], step_by_step(lm, text), atol=2e-5, rtol=0)
    assert score["loss"] == pytest.approx(-score["log_probs"].mean())
    assert score["bits"] == pytest.approx(-score["log_probs"].sum() / math.log(2))
    assert score["bits_per_token"] == pytest.approx(score["loss"] / math.log(2))
    assert score["unknown"] == []


def test_score_equals_seqlab_eval_file(lm, tmp_path, capsys):
    text = make_text(1500, seed=5)
    path = tmp_path / "held_out.txt"
    path.write_text(text, encoding="utf-8")
    assert main(["eval", str(lm.path), "--file", str(path), "--json"]) == 0
    printed = json.loads(capsys.readouterr().out)
    score = lm.score(text)
    assert printed["tokens"] == score["tokens"] == len(text)
    assert abs(printed["loss"] - score["loss"]) < 1e-6
    assert abs(lm.evaluate(file=path)["loss"] - score["loss"]) < 1e-6


def test_streams_score_segments_side_by_side_each_from_a_fresh_state(lm):
    text = make_text(600, seed=7)
    one, four = lm.score(text)["log_probs"], lm.score(text, streams=4)["log_probs"]
    L = -(-len(text) // 4)
    assert not np.isnan(four).any() and len(four) == len(text)
    np.testing.assert_allclose(four[:L], one[:L], atol=2e-5, rtol=0)         # segment 1 = the exact prefix
    # segment 2 is the text from L on, read from a fresh state after its previous character
    from seqlab.tasks.tbptt import token_log_probs
    ids = torch.tensor([lm.vocab.index(c) for c in text])
    alone = token_log_probs(lm.model, ids[L:2 * L], int(ids[L - 1]), lm.device)
    np.testing.assert_allclose(four[L:2 * L], alone, atol=2e-5, rtol=0)
    assert not np.allclose(four[L:2 * L], one[L:2 * L], atol=1e-3)            # it did forget what came before


def test_sample_is_what_the_command_line_prints(lm, capsys):
    mine = lm.sample("The king", 30, temperature=0.9, seed=3)
    assert main(["sample", str(lm.path), "--prime", "The king", "--length", "30", "--temperature", "0.9",
                 "--seed", "3"]) == 0
    assert capsys.readouterr().out == "The king" + mine + "\n"
    many = lm.sample("The", 12, num_samples=3, seed=1)
    assert isinstance(many, list) and len(many) == 3 and all(len(s) == 12 for s in many)
    assert "".join(lm.stream("The", 12, seed=4)) == lm.sample("The", 12, seed=4)
    assert lm.sample("The", 10, greedy=True) == lm.sample("The", 10, greedy=True)


def test_config_forms_agree():
    as_list = to_config(["model=gru", "model.hidden_size=24", "train.lr=0.01"])
    assert to_config({"model": {"name": "gru", "hidden_size": 24}, "train": {"lr": 0.01}}) == as_list
    assert to_config({"model": "gru", "model.hidden_size": 24, "train.lr": 0.01}) == as_list
    assert to_config(None) == Config() and to_config(as_list) is as_list
    for bad, words in (({"hidden_size": 3}, "section.key"), (["model.hidden_size=-1"], "hidden_size"),
                       ({"model": {"nope": 1}}, "unknown option"), (3, "give a list")):
        with pytest.raises(SeqlabError, match=words):
            to_config(bad)


def test_resume_through_the_api(tmp_path):
    corpus = tmp_path / "c.txt"
    corpus.write_text(make_text(4000), encoding="utf-8")
    first = seqlab.train([f"data.path={corpus}", *TINY, "train.max_steps=10", "train.threads=1"], out=tmp_path / "r")
    assert first.metrics[-1]["step"] == 10
    again = seqlab.train(["train.max_steps=20"], out=tmp_path / "r", resume=True)
    assert max(r["step"] for r in again.metrics) == 20 and again.config["train"]["max_steps"] == 20
    with pytest.raises(SeqlabError, match="cannot change"):
        seqlab.train(["model.hidden_size=8"], out=tmp_path / "r", resume=True)
    with pytest.raises(SeqlabError, match="needs out="):
        seqlab.train(resume=True)


def test_wrong_verbs_and_bad_arguments_are_one_line_errors(lm):
    for call, words in ((lambda: lm.classify("a film"), "task.name=lm run; classify needs a task.name=classify"),
                        (lambda: lm.forecast(3), "forecast needs"), (lambda: lm.score(b"bytes"), "text must be a str"),
                        (lambda: lm.score(""), "nothing to score"), (lambda: lm.score("ab", streams=0), "streams"),
                        (lambda: lm.sample("The", 0), "length must be greater than 0"),
                        (lambda: lm.sample("The", 5, top_p=2.0), r"top_p must be in \(0, 1\]"),
                        (lambda: lm.sample("The", 5, condition="pos"), "condition applies"),
                        (lambda: lm.sample("The \x00", 5), "never saw"),
                        (lambda: lm.evaluate("dev"), "split must be"),
                        (lambda: seqlab.load(lm.path / "nowhere"), "run directory not found")):
        with pytest.raises(SeqlabError, match=words) as raised:
            call()
        assert "\n" not in str(raised.value)


def test_task_runs_answer_their_verbs_with_plain_values(tmp_path):
    quick = ["model.hidden_size=16", "model.embedding_size=8", "model.num_layers=1", "model.dropout=0",
             "train.batch_size=16", "train.eval_every=10", "train.early_stop=0", "train.lr=0.02", "train.threads=1"]
    sentiment = seqlab.train(["task=classify", f"data.path={sentiment_file(tmp_path / 's.tsv')}", "model=lstm",
                              "train.max_steps=40", *quick], out=tmp_path / "cls")
    labels = sentiment.classify(["a good film", "an awful film"])
    assert [set(r) for r in labels] == [{"label", "probability", "unknown"}] * 2
    assert all(isinstance(r["label"], str) and 0 <= r["probability"] <= 1 for r in labels)
    assert sentiment.classify("a good film") == labels[:1]
    # words it never saw are read as <unk> and named, not dropped in silence
    assert sentiment.classify("a zyzzyva film")[0]["unknown"] == ["zyzzyva"]
    assert sentiment.unknown("a zyzzyva and a qwerty") == ["zyzzyva", "qwerty"]
    assert set(sentiment.evaluate("test")) >= {"loss", "accuracy"}
    tagger = seqlab.train(["task=tag", f"data.path={tagged_file(tmp_path / 't.txt')}", "model=lstm",
                           "train.max_steps=40", *quick], out=tmp_path / "tag")
    tagged = tagger.tag(["the old dog saw a cat", ["a", "red", "boat"]])
    assert tagged[0]["tokens"] == "the old dog saw a cat".split() and len(tagged[0]["tags"]) == 6
    assert tagged[1]["tokens"] == ["a", "red", "boat"] and all(isinstance(t, str) for t in tagged[1]["tags"])
    assert tagged[0]["unknown"] == [] and tagger.tag(["the zyzzyva saw"])[0]["unknown"] == ["zyzzyva"]
    with pytest.raises(SeqlabError, match="empty sentence"):
        tagger.tag(["  "])
    series = seqlab.train(["task=forecast", f"data.path={seasonal_csv(tmp_path / 'f.csv')}", "model=lstm",
                           "task.period=12", "task.horizon=12", "task.transform=1", "model.hidden_size=8",
                           "model.num_layers=1", "model.dropout=0", "train.max_steps=20", "train.batch_size=8",
                           "train.eval_every=10", "train.threads=1"], out=tmp_path / "fc")
    future = series.forecast(6)
    assert isinstance(future, np.ndarray) and future.shape == (6,) and np.isfinite(future).all()
    assert series.vocab == [] and "mase" in json.dumps(series.evaluate("test")).lower()
    with pytest.raises(SeqlabError, match="steps"):
        series.forecast(0)


def test_dir_lists_the_api_for_tab_completion():
    import seqlab
    assert {"train", "load", "Run", "SeqlabError"} <= set(dir(seqlab))
