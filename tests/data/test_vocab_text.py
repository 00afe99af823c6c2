import numpy as np
import torch

from seqlab.config import DataConfig
from seqlab.data.text import batchify, build_splits, split_sizes
from seqlab.data.vocab import EOS, SPECIALS, UNK, Vocab

from conftest import make_text


def test_char_vocab_round_trip(tmp_path):
    text = "To be, or not to be: that is the question.\nÆsop — ünïcode ✓\n"
    vocab = Vocab.build(text, "char")
    assert vocab.itos[: len(SPECIALS)] == list(SPECIALS)
    assert vocab.decode(vocab.encode(text)) == text
    vocab.save(tmp_path / "v.json")
    loaded = Vocab.load(tmp_path / "v.json")
    assert loaded == vocab
    assert loaded.decode(loaded.encode(text)) == text


def test_word_vocab_round_trip_and_unknowns(tmp_path):
    text = "the cat sat\non the mat\n"
    vocab = Vocab.build(text, "word")
    ids = vocab.encode(text)
    assert ids.tolist().count(EOS) == 2
    assert vocab.decode(ids) == "the cat sat\non the mat\n"
    vocab.save(tmp_path / "w.json")
    assert Vocab.load(tmp_path / "w.json") == vocab
    assert vocab.encode("the dog")[1] == UNK
    assert vocab.unknown("the dog sat") == ["dog"]


def test_char_encoding_matches_a_plain_python_lookup():
    text = make_text(3000) + "€"
    vocab = Vocab.build(text[:2000], "char")          # some chars in the tail are unknown
    expected = [vocab.stoi.get(c, UNK) for c in text]
    assert vocab.encode(text).tolist() == expected


def test_batchify_layout():
    stream = np.arange(26)                             # a..z as 0..25
    data = batchify(stream, 4)
    assert data.shape == (4, 6)                        # 26 // 4 = 6 per row, 2 dropped
    assert data[0].tolist() == [0, 1, 2, 3, 4, 5]
    assert data[1].tolist() == [6, 7, 8, 9, 10, 11]    # each row is contiguous text
    assert data[:, 0].tolist() == [0, 6, 12, 18]       # row starts are N apart
    assert data.dtype == torch.long


def test_splits_are_contiguous_and_vocab_comes_from_train_only():
    text = "a" * 900 + "b" * 50 + "c" * 50
    splits = build_splits(text, DataConfig(valid_fraction=0.05, test_fraction=0.05))
    assert (len(splits.train), len(splits.valid), len(splits.test)) == split_sizes(1000, 0.05, 0.05) == (900, 50, 50)
    assert splits.vocab.itos[4:] == ["a"]              # b and c never occur in train
    assert set(splits.valid.tolist()) == {UNK} and set(splits.test.tolist()) == {UNK}
    assert set(splits.train.tolist()) == {splits.vocab.stoi["a"]}


def test_word_level_splits():
    text = make_text(5000)
    splits = build_splits(text, DataConfig(level="word", max_vocab=5))
    assert len(splits.vocab) == 4 + 5
    total = len(splits.train) + len(splits.valid) + len(splits.test)
    assert total == sum(len(line.split()) + 1 for line in text.splitlines() if line.split())
