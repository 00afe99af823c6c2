"""seqlab compress / decompress (compress/): bit-exact round trips on awkward inputs, sizes that
match the model's cross-entropy, static runs checked by their weights, and one-line refusals
of damaged or foreign files that leave nothing behind."""
import random

import numpy as np
import pytest
import torch

import seqlab
from seqlab import SeqlabError
from seqlab.cli import main
from seqlab.compress import container
from seqlab.compress.codec import compress, decompress, layout
from seqlab.compress.coder import BITS, quantize
from seqlab.compress.predictors import NGramPredictor, adaptive

from conftest import make_text

TEXT = make_text(12000).encode()


def round_trip(data: bytes, name: str = "ngram", **options) -> bytes:
    made = lambda: adaptive(name, **options)                                   # noqa: E731
    blob = compress(data, made(), mode="adaptive", streams=8, chunk=16)
    assert decompress(blob, lambda header: made()) == data
    return blob


def test_quantised_frequencies_keep_every_symbol_and_fit_the_total():
    rng = np.random.default_rng(0)
    probs = rng.dirichlet(np.full(256, 0.05), size=50)
    probs[0] = 0.0
    probs[0, 7] = 1.0                                                      # a certain symbol
    freqs = quantize(probs)
    assert (freqs >= 1).all() and (freqs == np.floor(freqs)).all() and (freqs.sum(1) <= 2 ** BITS).all()
    assert freqs[0, 7] == 2 ** BITS - 256 + 1 and freqs[0].sum() == 2 ** BITS
    with pytest.raises(SeqlabError, match="not finite"):
        quantize(np.full((1, 256), np.nan))


@pytest.mark.parametrize("data", [b"", b"x", b"a" * 3000, TEXT[:64 * 16 + 1], bytes(range(256)) * 8,
                                  TEXT.decode().replace("e", "é").encode()],
                         ids=["empty", "one byte", "one repeated byte", "just over a chunk", "binary", "utf-8"])
def test_round_trips_are_bit_exact(data):
    round_trip(data, order=4)


def test_the_lstm_learns_as_it_codes_and_round_trips():
    blob = round_trip(TEXT[:6000], "lstm", hidden=32)
    first = compress(TEXT[:6000], adaptive("lstm", hidden=32), mode="adaptive", streams=8, chunk=16)
    assert blob == first                                                  # the same bytes every time


def test_random_bytes_do_not_grow_beyond_the_header():
    data = random.Random(0).randbytes(20000)
    blob = round_trip(data, order=3)
    header, payload = container.unpack(blob)
    assert header["mode"] == "stored" and payload == data
    assert len(blob) <= len(data) * 1.001 + (len(blob) - len(payload))


@pytest.mark.parametrize("made", [lambda: NGramPredictor(4), lambda: adaptive("mix", order=4),
                                  lambda: adaptive("lstm", hidden=16)], ids=["ngram", "mix", "lstm"])
def test_the_size_is_the_models_cross_entropy(made):
    """Coding costs what the model predicted: Σ -log2 p over the bytes, plus the header and a few
    bytes of the coder's flush (and the quantisation, < 0.1 %)."""
    data = TEXT if made().description["family"] != "lstm" else TEXT[:3000]
    predictor = made()
    bits = 0.0
    L, lengths = layout(len(data), 8)
    grid = np.full((8, L), -1, np.int64)
    flat = np.frombuffer(data, np.uint8)
    for b, n in enumerate(lengths):
        grid[b, :n] = flat[b * L:b * L + n]
    predictor.reset(8)
    for start in range(0, L, 16):
        for t in range(start, min(start + 16, L)):
            live = lengths > t
            p = predictor.probs()[live]
            p = p / p.sum(1, keepdims=True)
            bits -= np.log2(p[np.arange(live.sum()), grid[live, t]]).sum()
            predictor.advance(np.where(live, grid[:, t], 0), live)
        predictor.learn(grid[:, start:start + 16], lengths)
    stats = {}
    blob = compress(data, made(), mode="adaptive", streams=8, chunk=16, stats=stats)
    header, payload = container.unpack(blob)
    assert header["mode"] == "adaptive"
    assert abs(stats["model_bits"] - bits) <= 1e-9 * bits                   # what the bench reports for real files
    assert stats["payload_bytes"] == len(payload) and stats["header_bytes"] == len(blob) - len(payload)
    assert bits / 8 <= len(payload) <= bits / 8 * 1.005 + 16, (len(payload), bits / 8)


@pytest.fixture
def byte_run(tmp_path):
    corpus = tmp_path / "c.txt"
    corpus.write_bytes(TEXT)
    torch.set_num_threads(1)
    return seqlab.train([f"data.path={corpus}", "data.level=byte", "model.hidden_size=32", "model.num_layers=1",
                         "model.embedding_size=16", "train.max_steps=20", "train.batch_size=8", "train.bptt_steps=32",
                         "train.eval_every=10", "train.threads=1"], out=tmp_path / "run")


def test_static_mode_needs_the_same_run(byte_run, tmp_path, capsys):
    source = tmp_path / "t.txt"
    source.write_bytes(TEXT[:5000])
    assert main(["compress", str(source), "--model", str(byte_run.path), "--streams", "8"]) == 0
    packed = tmp_path / "t.txt.sqz"
    assert container.unpack(packed.read_bytes())[0]["model"]["run"] == "run"
    assert main(["decompress", str(packed), "-o", str(tmp_path / "back.txt")]) == 2
    assert "give it with --model RUN" in capsys.readouterr().err
    assert main(["decompress", str(packed), "-o", str(tmp_path / "back.txt"), "--model", str(byte_run.path)]) == 0
    assert (tmp_path / "back.txt").read_bytes() == TEXT[:5000]
    other = seqlab.train([f"data.path={tmp_path / 'c.txt'}", "data.level=byte", "model.hidden_size=32",
                          "model.num_layers=1", "model.embedding_size=16", "train.max_steps=5", "train.batch_size=8",
                          "train.bptt_steps=32", "train.eval_every=5", "train.threads=1"], out=tmp_path / "other")
    capsys.readouterr()
    assert main(["decompress", str(packed), "-o", str(tmp_path / "b2.txt"), "--model", str(other.path)]) == 2
    assert "is not the run" in capsys.readouterr().err and not (tmp_path / "b2.txt").exists()


def damaged(blob: bytes, how: str) -> bytes:
    if how == "truncated":
        return blob[:-9]
    if how == "bit flipped":
        i = len(blob) - 40
        return blob[:i] + bytes([blob[i] ^ 0x10]) + blob[i + 1:]
    if how == "foreign":
        return b"PK\x03\x04" + blob[4:]
    return blob[:12] + b"{" + blob[13:]                                  # a damaged header


@pytest.mark.parametrize("how", ["truncated", "bit flipped", "foreign", "header"])
def test_damaged_files_are_refused_in_one_line_and_write_nothing(how, tmp_path, capsys):
    source = tmp_path / "t.txt"
    source.write_bytes(TEXT)
    assert main(["compress", str(source), "--order", "4", "--streams", "8"]) == 0
    capsys.readouterr()
    bad = tmp_path / "bad.sqz"
    bad.write_bytes(damaged((tmp_path / "t.txt.sqz").read_bytes(), how))
    assert main(["decompress", str(bad), "-o", str(tmp_path / "out.txt")]) == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and "Traceback" not in err, err
    assert not (tmp_path / "out.txt").exists() and not [p for p in tmp_path.iterdir() if p.name.endswith(".tmp")]


def test_bad_requests_are_one_line(tmp_path, capsys):
    source = tmp_path / "t.txt"
    source.write_bytes(TEXT[:100])
    for argv, words in ((["compress", str(tmp_path / "none.txt")], "no such file"),
                        (["compress", str(source), "--adaptive", "zip"], "--adaptive must be one of"),
                        (["compress", str(source), "--streams", "0"], "--streams must be between 1 and"),
                        (["compress", str(source), "-o", str(tmp_path)], "is a folder"),
                        (["compress", str(source), "--model", str(tmp_path / "nothing")], "not found")):
        assert main(argv) == 2, argv
        err = capsys.readouterr().err
        assert words in err and err.count("\n") == 1, (argv, err)
    assert main(["compress", str(source)]) == 0
    assert main(["compress", str(source)]) == 2
    assert "--overwrite" in capsys.readouterr().err
