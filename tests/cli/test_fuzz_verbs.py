"""Property tests (hypothesis) of the verbs beyond train and the run files (issue 28): damaged
and crafted .sqz files, random WAV headers, random ABC, random images, deeply nested JSON,
gallery folders with links, random option values for compress / decompress / sample / export /
viz / gallery / analyze. Whatever comes in, seqlab works or refuses in one line with exit 2:
no traceback, no hang (each case has a time limit), nothing of the user's replaced.

`make test` runs a few cases of each (about a minute in all); `pytest -m slow` ten times as many.
"""
from __future__ import annotations

import json
import os
import shutil
import struct
import tempfile
import zlib
from pathlib import Path

import numpy as np
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from conftest import make_text
from helpers import T, time_limit
from seqlab import SeqlabError
from seqlab.cli import main
from seqlab.compress import container
from seqlab.compress.codec import compress, decompress
from seqlab.compress.predictors import adaptive, from_description


def twice(n: int, **strategies):
    """(the default test with n cases, the same marked slow with 10 n); strategies by argument name."""
    def build(prop):
        common = dict(deadline=None, suppress_health_check=list(HealthCheck))
        fast = settings(max_examples=n, **common)(given(**strategies)(prop))
        slow = pytest.mark.slow(settings(max_examples=10 * n, **common)(given(**strategies)(prop)))
        return fast, slow
    return build


def one_line(capsys, argv, limit: int = 60) -> int:
    """Run the CLI: exit 0, or 2 with exactly one line on stderr; never a traceback or a hang."""
    try:
        with time_limit(limit):
            code = main([str(a) for a in argv])
    except SystemExit as e:             # argparse's refusal of a value of the wrong type: usage + one error
        err = capsys.readouterr().err
        assert e.code == 2 and "error:" in err and "Traceback" not in err, (argv, err)
        return 2
    err = capsys.readouterr().err
    assert code in (0, 2), (argv, code, err)
    assert "Traceback" not in err, (argv, err)
    if code == 2:
        assert err.count("\n") == 1 and err.startswith("seqlab: error: "), (argv, err)
    return code


# -- .sqz: byte flips anywhere, crafted header fields ----------------------------------------------

TEXT = make_text(1500).encode()
BLOB = compress(TEXT, adaptive("mix"), mode="adaptive", streams=8, chunk=32)


def unsqz(blob: bytes) -> bytes:
    return decompress(blob, lambda header: from_description(header["model"]), name="f.sqz")


def _flips(changes):
    bad = bytearray(BLOB)
    for where, mask in changes:
        bad[int(where * len(bad)) % len(bad)] ^= mask
    if bytes(bad) == BLOB:
        return
    with time_limit(30), pytest.raises(SeqlabError) as e:
        unsqz(bytes(bad))
    assert "damaged" in str(e.value) or "not a seqlab compressed file" in str(e.value), str(e.value)
    assert "\n" not in str(e.value)


test_sqz_flips, test_sqz_flips_slow = twice(
    40, changes=st.lists(st.tuples(st.floats(0, 1, exclude_max=True), st.integers(1, 255)), min_size=1, max_size=4))(
    _flips)

HEADER_KEYS = ["mode", "length", "streams", "chunk", "threads", "sha256", "fingerprint", "torch", "model",
               "model.order", "model.min_len", "model.rate", "model.parts", "model.family", "model.parts.0.order",
               "model.parts.0.family", "model.parts.0.smoothing"]
JSONISH = st.one_of(st.none(), st.booleans(), st.integers(-2 ** 70, 2 ** 70), st.floats(allow_nan=True),
                    st.text(max_size=8), st.lists(st.integers(-5, 5), max_size=3),
                    st.dictionaries(st.text(max_size=4), st.integers(), max_size=2))


def _crafted(edits):
    header, payload = container.unpack(BLOB, "f.sqz")
    header = json.loads(json.dumps(header))
    for key, value in edits:
        where, *path = key.split(".")
        target = header
        try:
            for part in ([where] + path)[:-1]:
                target = target[int(part)] if isinstance(target, list) else target[part]
            last = ([where] + path)[-1]
            if isinstance(target, list):
                target[int(last)] = value
            else:
                target[last] = value
        except (KeyError, IndexError, TypeError, ValueError):
            continue
    header.pop("payload_length"), header.pop("payload_sha256")
    try:
        blob = container.pack(header, payload)
    except ValueError:                   # NaN is not JSON: such a header cannot even be written
        return
    with time_limit(30):
        try:
            assert unsqz(blob) == TEXT       # an edit decoding ignores (the torch version string, say)
        except SeqlabError as e:
            assert "\n" not in str(e)


test_sqz_crafted_headers, test_sqz_crafted_headers_slow = twice(
    40, edits=st.lists(st.tuples(st.sampled_from(HEADER_KEYS), JSONISH), min_size=1, max_size=3))(_crafted)


# -- WAV headers -----------------------------------------------------------------------------------------

def _wav(fields, data):
    from seqlab.data.audio import read_wav
    tag, channels, rate, width, fmt_size, declared, riff_size = fields
    fmt = struct.pack("<HHIIHH", tag, channels, rate, (rate * channels * width) & 0xFFFFFFFF,
                      (channels * width) & 0xFFFF, (8 * width) & 0xFFFF)
    body = (b"WAVE" + b"fmt " + struct.pack("<I", fmt_size) + fmt + b"data" + struct.pack("<I", declared) + data)
    with tempfile.TemporaryDirectory() as d:
        path = Path(d) / "x.wav"
        path.write_bytes(b"RIFF" + struct.pack("<I", riff_size) + body)
        with time_limit(10):
            try:
                samples, got = read_wav(path, rate=None, mono=True)
                assert np.isfinite(samples).all() and got > 0
            except SeqlabError as e:
                assert "\n" not in str(e)


test_random_wav_headers, test_random_wav_headers_slow = twice(
    40, fields=st.tuples(st.sampled_from([1, 3, 0, 65534]), st.integers(0, 9), st.sampled_from([0, 1, 8000, 2 ** 32 - 1]),
                  st.integers(0, 4), st.sampled_from([0, 14, 16, 18, 40, 2 ** 31]), st.integers(0, 2 ** 32 - 1),
                  st.integers(0, 2 ** 32 - 1)),
    data=st.binary(max_size=300))(_wav)


# -- ABC of any length -------------------------------------------------------------------------------------

ABC_ALPHABET = "ABCDEFGabcdefgz|:[]()^_=,'/2345<>-{}!+\"XTMLKQ\n |"


def _abc(text, repeat):
    from seqlab.analysis.tunes import check, read_folder
    with tempfile.TemporaryDirectory() as d:
        (Path(d) / "t.abc").write_text("X:1\nT:t\nM:4/4\nL:1/8\nK:C\n" + text * repeat, encoding="utf-8")
        with time_limit(30):
            try:
                report = check(read_folder(d))
                assert report["summary"]["tunes"] >= 1
            except SeqlabError as e:
                assert "\n" not in str(e)


test_random_abc, test_random_abc_slow = twice(
    15, text=st.text(alphabet=ABC_ALPHABET, max_size=200), repeat=st.sampled_from([1, 2, 50, 5000]))(_abc)


# -- images -----------------------------------------------------------------------------------------------

def _png_chunk(kind: bytes, data: bytes) -> bytes:
    return struct.pack(">I", len(data)) + kind + data + struct.pack(">I", zlib.crc32(kind + data))


def _image(width, height, depth, colour, cut, junk):
    from seqlab.data.scenes import check_png, read_image
    ihdr = struct.pack(">IIBBBBB", width, height, depth, colour, 0, 0, 0)
    raw = zlib.compress(b"\x00" * min(width * height, 10_000))
    png = b"\x89PNG\r\n\x1a\n" + _png_chunk(b"IHDR", ihdr) + _png_chunk(b"IDAT", raw + junk) + _png_chunk(b"IEND", b"")
    with tempfile.TemporaryDirectory() as d:
        path = Path(d) / "x.png"
        path.write_bytes(png[:int(cut * len(png))] if cut < 1 else png)
        for reader in (read_image, check_png):
            with time_limit(20):
                try:
                    reader(path)
                except SeqlabError as e:
                    assert "\n" not in str(e)


test_random_images, test_random_images_slow = twice(
    25, width=st.sampled_from([0, 1, 7, 96, 20000, 2 ** 31 - 1]), height=st.sampled_from([0, 1, 64, 20000, 2 ** 31 - 1]),
    depth=st.sampled_from([1, 8, 16, 3]), colour=st.sampled_from([0, 2, 3, 4, 6, 7]), cut=st.floats(0, 1),
    junk=st.binary(max_size=20))(_image)


# -- a trained run for the option fuzz -----------------------------------------------------------------------

@pytest.fixture(scope="module")
def run_folder(tmp_path_factory):
    root = tmp_path_factory.mktemp("fuzzverbs")
    corpus = root / "c.txt"
    corpus.write_text(make_text(6000), encoding="utf-8")
    assert main(["train", f"data.path={corpus}", *T, "--out", str(root / "run")]) == 0
    return root / "run"


def _json_nesting(depth, name, tmp_path_factory, run_folder, capsys):
    run = tmp_path_factory.mktemp("nested") / "run"
    shutil.copytree(run_folder, run)
    (run / name).write_text("[" * depth + "]" * depth if depth % 2 else '{"a":' * depth + "1" + "}" * depth)
    for verb in (["eval", run], ["sample", run, "--length", 3]):
        one_line(capsys, verb)


test_nested_run_json, test_nested_run_json_slow = twice(
    4, depth=st.sampled_from([50, 5_000, 100_001, 200_000]),
    name=st.sampled_from(["config.json", "vocab.json", "metrics.jsonl"]))(_json_nesting)


# -- gallery folders with links --------------------------------------------------------------------------------

def _gallery(layout, tmp_path_factory, capsys):
    root = tmp_path_factory.mktemp("gallery")
    secret = root / "secret.abc"
    secret.write_text("SECRET-LINE")
    shared = root / "shared"
    shared.mkdir()
    (shared / "tune-0.abc").write_text("X:1\nT:t\nK:C\nCDEF|\n")
    for i, kind in enumerate(layout):
        target = shared / f"f{i}.abc"
        if kind == "out":
            target.symlink_to(secret)
        elif kind == "in":
            target.symlink_to(shared / "tune-0.abc")
        elif kind == "dangling":
            target.symlink_to(root / "nothing")
        elif kind == "folder-link":
            (shared / f"d{i}.abc").symlink_to(root)
        elif kind == "fifo":
            os.mkfifo(target)
        elif kind == "binary":
            target.write_bytes(b"\xff\xfe\x00abc")
    page = root / "page.html"
    code = one_line(capsys, ["gallery", shared, "--out", page])
    if code == 0:
        assert "SECRET-LINE" not in page.read_text()
        assert "out" not in layout and "fifo" not in layout and "dangling" not in layout
    else:
        assert not page.exists()
    assert secret.read_text() == "SECRET-LINE"


test_gallery_links, test_gallery_links_slow = twice(
    15, layout=st.lists(st.sampled_from(["out", "in", "dangling", "folder-link", "fifo", "binary", "plain"]),
                        max_size=4))(_gallery)


# -- random option values --------------------------------------------------------------------------------------

NUMBERS = st.one_of(st.integers(-3, 5), st.sampled_from([0, -1, 10 ** 12, 2 ** 63, 99999999999999999999, "nan",
                                                         "inf", "-inf", "1e309", "x", "", "0.5"]))
SAMPLE_FLAGS = ["--length", "--temperature", "--top-k", "--top-p", "--beam", "--alpha", "--num-samples", "--seed",
                "--warmup", "--seconds"]
COMPRESS_FLAGS = ["--streams", "--chunk", "--order", "--hidden"]


def _sample_options(pairs, run_folder, capsys):
    argv = ["sample", run_folder]
    for flag, value in pairs:
        argv += [flag, value]
    one_line(capsys, argv, limit=60)


def _compress_options(pairs, mode, tmp_path_factory, capsys):
    root = tmp_path_factory.mktemp("copts")
    source = root / "n.txt"
    source.write_bytes(make_text(600).encode())
    argv = ["compress", source, "-o", root / "n.sqz"] + (["--adaptive", mode] if mode else [])
    for flag, value in pairs:
        argv += [flag, value if not isinstance(value, int) or abs(value) < 10 ** 6 else 10 ** 7]
    code = one_line(capsys, argv, limit=60)
    if code == 0:
        back = root / "back.txt"
        assert one_line(capsys, ["decompress", root / "n.sqz", "-o", back]) == 0
        assert back.read_bytes() == source.read_bytes()
    assert source.read_bytes() == make_text(600).encode()


def _other_verbs(verb, extra, run_folder, tmp_path_factory, capsys):
    root = tmp_path_factory.mktemp("verbs")
    mine = root / "mine.txt"
    mine.write_text("my file")
    target = {"mine": mine, "new": root / "new.out", "folder": root, "run": run_folder}[extra[0]]
    argv = {"export": ["export", run_folder, "-o", target, "--format", extra[1]],
            "viz": ["viz", run_folder, "--out", target, "--chars", extra[2], "--text", mine],
            "gallery": ["gallery", root, "--out", target, "--max-mb", extra[2]],
            "saturation": ["analyze", "saturation", run_folder, "--out", target, "--tokens", extra[2]],
            "spectrogram": ["analyze", "spectrogram", mine, "--out", target, "--window", extra[2]],
            "tunes": ["analyze", "tunes", root, "--json", target, "--reference-tunes", extra[2]],
            "cells": ["analyze", "cells", run_folder, "--png", target, "--chars", extra[2], "--file", mine],
            "decompress": ["decompress", mine, "-o", target]}[verb]
    one_line(capsys, argv, limit=120)
    assert mine.read_text() == "my file"                  # never replaced without --overwrite


test_sample_options, test_sample_options_slow = twice(
    25, pairs=st.lists(st.tuples(st.sampled_from(SAMPLE_FLAGS), NUMBERS), min_size=1, max_size=3))(_sample_options)
test_compress_options, test_compress_options_slow = twice(
    8, pairs=st.lists(st.tuples(st.sampled_from(COMPRESS_FLAGS), NUMBERS), max_size=2),
    mode=st.sampled_from([None, "ngram", "mix"]))(_compress_options)
test_other_verb_options, test_other_verb_options_slow = twice(
    16, verb=st.sampled_from(["export", "viz", "gallery", "saturation", "spectrogram", "tunes", "cells", "decompress"]),
    extra=st.tuples(st.sampled_from(["mine", "new", "folder", "run"]), st.sampled_from(["onnx", "arpa", "x", ""]),
              st.sampled_from([-1, 0, 1, 50, 10 ** 12, "nan"])))(_other_verbs)
