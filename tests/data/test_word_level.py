"""Word level on one's own text: what a large vocabulary costs is said before training, samples
never write <unk> unless asked, and data.lowercase folds the words of a language model."""
from __future__ import annotations

import json
import random

import pytest

import seqlab
from seqlab.cli import main

NET = ["data.level=word", "model.hidden_size=16", "model.num_layers=1", "model.embedding_size=8",
       "train.batch_size=4", "train.bptt_steps=8", "train.progress=false", "train.threads=1"]


def words_text(path, distinct: int, n: int = 6000, seed: int = 0, capitals: bool = False) -> None:
    rng = random.Random(seed)
    lex = [f"w{i}" for i in range(distinct)]
    line = lambda: " ".join(rng.choice(lex[:50]) if rng.random() < 0.9 else rng.choice(lex) for _ in range(8))  # noqa: E731
    text = "\n".join(line() for _ in range(n // 8)) + "\n"
    path.write_text(text.replace("w1 ", "W1 ") if capitals else text)


def test_a_large_word_vocabulary_says_what_it_costs(tmp_path, capsys):
    corpus = tmp_path / "words.txt"
    # 30,000 distinct words, each seen once, among frequent ones
    corpus.write_text("".join(f"the u{i} and the u{i + 1} of a\n" for i in range(0, 30_000, 2)))
    assert main(["train", f"data.path={corpus}", *NET, "train.max_steps=1", "--out", str(tmp_path / "r")]) == 0
    said = capsys.readouterr().out
    note = next(line for line in said.splitlines() if line.startswith("note: ") and "words in the vocabulary" in line)
    assert "GFLOP an update" in note and "data.max_vocab=10000" in note and "of the training text" in note
    capsys.readouterr()
    assert main(["train", f"data.path={corpus}", *NET, "data.max_vocab=100", "train.max_steps=1",
                 "--out", str(tmp_path / "bounded")]) == 0
    assert "words in the vocabulary" not in capsys.readouterr().out


@pytest.fixture(scope="module")
def word_run(tmp_path_factory):
    folder = tmp_path_factory.mktemp("words")
    corpus = folder / "words.txt"
    words_text(corpus, 400)
    out = folder / "run"
    # min_count 3 leaves the rare words out: <unk> is a frequent token of the training text
    assert main(["train", f"data.path={corpus}", *NET, "data.min_count=3", "train.max_steps=30",
                 "--out", str(out)]) == 0
    return out


def test_samples_never_write_unk_unless_asked(word_run, capsys):
    run = seqlab.load(word_run)
    drawn = run.sample("w1", 400, seed=0, temperature=2.0, num_samples=4)
    assert all("<unk>" not in text for text in drawn)
    assert "<unk>" not in run.sample("w1", 60, greedy=True) and "<unk>" not in run.sample("w1", 30, beam=3)
    allowed = run.sample("w1", 400, seed=0, temperature=2.0, num_samples=4, allow_unk=True)
    assert any("<unk>" in text for text in allowed)                         # the ban is what keeps it out
    assert main(["sample", str(word_run), "--prime", "w1", "--length", "400", "--temperature", "2", "--seed", "0",
                 "--num-samples", "4",
                 "--allow-unk"]) == 0
    assert "<unk>" in capsys.readouterr().out


def test_allow_unk_on_a_character_model_is_one_line(tmp_path, capsys):
    corpus = tmp_path / "c.txt"
    corpus.write_text("the cat sat on the mat\n" * 200)
    out = tmp_path / "chars"
    assert main(["train", f"data.path={corpus}", *NET[1:], "train.max_steps=2", "--out", str(out)]) == 0
    capsys.readouterr()
    assert main(["sample", str(out), "--allow-unk"]) == 2
    assert "--allow-unk applies to word-level models" in capsys.readouterr().err


def test_lowercase_folds_the_words_of_a_language_model(tmp_path, capsys):
    corpus = tmp_path / "words.txt"
    words_text(corpus, 60, capitals=True)
    out = tmp_path / "lower"
    assert main(["train", f"data.path={corpus}", *NET, "data.lowercase=true", "train.max_steps=2",
                 "--out", str(out)]) == 0
    tokens = json.loads((out / "vocab.json").read_text())["tokens"]
    assert "w1" in tokens and "W1" not in tokens
    assert main(["train", f"data.path={corpus}", *NET, "train.max_steps=2", "--out", str(tmp_path / "kept")]) == 0
    assert "W1" in json.loads((tmp_path / "kept" / "vocab.json").read_text())["tokens"]
    capsys.readouterr()
    assert main(["train", "task=classify", f"data.path={corpus}", "data.lowercase=true", "model=gru",
                 "train.max_steps=1", "--out", str(tmp_path / "c")]) == 2
    assert "does not read data.lowercase=True" in capsys.readouterr().err
