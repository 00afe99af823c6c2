"""data.level=byte: the fixed 256-byte vocabulary, any file's bytes (binary too), and a
byte-level run that samples UTF-8 text."""
import json

import numpy as np
import pytest

import seqlab
from seqlab import SeqlabError
from seqlab.config import load_config
from seqlab.data.text import load_splits
from seqlab.data.vocab import Vocab

from conftest import TINY, make_text


def test_the_byte_vocabulary_is_fixed_and_round_trips_any_bytes(tmp_path):
    vocab = Vocab.build("whatever text", "byte")
    assert len(vocab) == 4 + 256 and vocab == Vocab.build("", "byte") == Vocab((), "byte")
    data = bytes(range(256)) + "é\n".encode()
    ids = vocab.encode(data)
    assert ids.tolist()[:3] == [4, 5, 6] and vocab.decode_bytes(ids) == data
    assert vocab.encode("é").tolist() == [4 + 0xC3, 4 + 0xA9]                 # a str is its UTF-8 bytes
    assert vocab.decode(vocab.encode("naïve café")) == "naïve café" and vocab.unknown("anything") == []
    vocab.save(tmp_path / "v.json")
    assert Vocab.load(tmp_path / "v.json") == vocab
    saved = json.loads((tmp_path / "v.json").read_text())
    (tmp_path / "w.json").write_text(json.dumps({**saved, "tokens": saved["tokens"][:-1]}))
    with pytest.raises(SeqlabError, match="256 bytes in order"):
        Vocab.load(tmp_path / "w.json")


def test_a_binary_file_is_a_byte_corpus(tmp_path):
    blob = np.random.default_rng(0).integers(0, 256, 5000, dtype=np.uint8).tobytes()
    (tmp_path / "data.bin").write_bytes(blob)
    splits = load_splits(load_config(None, [f"data.path={tmp_path / 'data.bin'}", "data.level=byte"]).data)
    assert np.concatenate([splits.train, splits.valid, splits.test]).tolist() == [4 + b for b in blob]
    with pytest.raises(SeqlabError, match="binary"):        # the character level still reads text only
        load_splits(load_config(None, [f"data.path={tmp_path / 'data.bin'}"]).data)
    with pytest.raises(SeqlabError, match="data.memmap"):
        load_config(None, [f"data.path={tmp_path / 'data.bin'}", "data.level=byte", "data.memmap=true"])


def test_a_byte_level_run_trains_samples_text_and_reports_bits_per_byte(tmp_path):
    corpus = tmp_path / "c.txt"
    corpus.write_text(make_text(6000).replace("the", "thé"), encoding="utf-8")
    run = seqlab.train([f"data.path={corpus}", "data.level=byte", *TINY, "train.max_steps=20", "train.threads=1"],
                       out=tmp_path / "run")
    assert "bits_per_byte" in run.result and len(run.vocab) == 260
    text = run.sample("Th", 60, seed=1)
    assert isinstance(text, str) and text.encode("utf-8", errors="strict")
    assert run.score("thé king")["tokens"] == len("thé king".encode())
