"""data.level=subword: sentencepiece BPE learned from the training split, saved in the run as
JSON, used by sampling and scoring; every text encodes (byte fallback) and decodes back."""
from __future__ import annotations

import json

import pytest

import seqlab
from seqlab import SeqlabError
from seqlab.cli import main
from seqlab.config import DataConfig
from seqlab.data.subword import learn_subwords
from seqlab.data.text import build_splits
from seqlab.data.vocab import Vocab

from conftest import make_text


@pytest.fixture(scope="module")
def vocab():
    return Vocab((), "subword", model=learn_subwords(make_text(20000), 400))


def test_any_text_encodes_and_decodes_back(vocab):
    for text in ("The king shall speak.\nAnd my lord\n\n", "zyzzyva ünïcödé 🎻 tabs\tand  spaces", "\n"):
        ids = vocab.encode(text)
        assert vocab.decode(ids) == text and (ids >= 4).all()           # no <unk>, no specials
    assert vocab.unknown("🎻 anything") == [] and vocab.newline() == vocab.stoi["\u23ce"]
    assert len(vocab.encode("the king")) < len("the king")              # pieces longer than characters


def test_the_vocabulary_is_saved_as_json_and_checked_when_read(vocab, tmp_path):
    path = tmp_path / "vocab.json"
    vocab.save(path)
    assert Vocab.load(path) == vocab
    assert Vocab.load(path).encode("the queen").tolist() == vocab.encode("the queen").tolist()
    data = json.loads(path.read_text())
    data["tokens"][5] = "tampered"
    path.write_text(json.dumps(data))
    with pytest.raises(SeqlabError, match="pieces disagree with its model"):
        Vocab.load(path)
    data = json.loads(vocab.to_json())
    data["model"] = "bm90IGEgbW9kZWw="                                      # base64 of "not a model"
    path.write_text(json.dumps(data))
    with pytest.raises(SeqlabError, match="not a sentencepiece model"):
        Vocab.load(path)


def test_pieces_are_learned_from_the_training_split_only():
    text = make_text(30000) + "zyzzyvazyzzyva " * 40 + "\n"               # only in the test part
    splits = build_splits(text, DataConfig(level="subword", subword_size=400))
    assert not any("zyzz" in piece for piece in splits.vocab.itos)
    assert splits.vocab.decode(splits.test).endswith("zyzzyvazyzzyva \n")
    assert splits.vocab.decode(splits.train) + splits.vocab.decode(splits.valid) + \
        splits.vocab.decode(splits.test) == text                           # cut at line ends, nothing lost


def test_a_subword_run_trains_samples_and_scores(tmp_path, capsys):
    corpus = tmp_path / "c.txt"
    corpus.write_text(make_text(20000))
    out = tmp_path / "run"
    assert main(["train", f"data.path={corpus}", "data.level=subword", "data.subword_size=400", "model.hidden_size=32",
                 "model.num_layers=1", "train.batch_size=8", "train.bptt_steps=16", "train.max_steps=60",
                 "train.eval_every=30", "train.progress=false", "train.threads=1", "--out", str(out)]) == 0
    assert "subword pieces" in capsys.readouterr().out
    run = seqlab.load(out)
    assert run.level == "subword" and len(run.vocab) == 400
    text = run.sample("The king", 40, seed=1)
    assert isinstance(text, str) and len(text) >= 40 and "<" not in text    # pieces joined, no specials
    # streamed piece by piece (byte pieces of one character held together), joined they are the
    # decoding of every token drawn
    from seqlab.decode.sampling import generate
    vocab = Vocab.load(out / "vocab.json")
    drawn = list(generate(run.model, vocab.encode("The king").tolist(), 80, greedy=True, banned=(0, 1, 2, 3)))
    assert "".join(run.stream("The king", 80, greedy=True)) == vocab.decode(drawn)
    many = run.sample("The king", 20, seed=1, num_samples=3)
    assert len(many) == 3
    scored = run.score("The queen shall speak now.\n")
    assert 0 < scored["bits_per_token"] < 8.6                           # log2(400) = 8.64: it learned something
    assert main(["sample", str(out), "--prime", "The king", "--length", "30", "--seed", "2"]) == 0
    assert capsys.readouterr().out.startswith("The king")
    assert main(["eval", str(out), "--split", "valid", "--json"]) == 0
    assert json.loads(capsys.readouterr().out)["bits_per_token"] > 0


@pytest.mark.parametrize("extra,says", [(["data.level=subword", "data.subword_size=100"], "at least 300"),
                                        (["data.subword_size=500"], "applies to data.level=subword"),
                                        (["data.level=subword", "data.memmap=true"], "drop data.memmap")])
def test_what_subwords_cannot_do_is_one_line(tmp_path, capsys, extra, says):
    corpus = tmp_path / "c.txt"
    corpus.write_text(make_text(5000))
    assert main(["train", f"data.path={corpus}", *extra, "train.max_steps=1", "--out", str(tmp_path / "r")]) == 2
    err = capsys.readouterr().err
    assert says in err and len(err.strip().splitlines()) == 1, err

