"""Corpora larger than memory: a streamed token file, memory-mapped, equals the in-memory splits."""
import json
import resource
import shutil
import subprocess
import sys
import time

import numpy as np
import pytest
from safetensors.torch import load_file

from seqlab.config import load_config
from seqlab.data import memmap
from seqlab.data.text import batchify, batchify_view, build_splits, load_splits
from seqlab.data.sources import read_path
from seqlab.training.engine import fit

from conftest import TINY, make_text


def in_memory(cfg):
    return build_splits(read_path(cfg.data.path), cfg.data)


@pytest.mark.parametrize("level", ["char", "word"])
def test_streamed_token_file_equals_the_in_memory_splits(tmp_path, monkeypatch, level):
    # tiny blocks: many multi-byte characters and lines are cut between two reads
    monkeypatch.setattr(memmap, "BLOCK_BYTES", 997)
    text = "\ufeff" + make_text(30000).replace("king", "kïng ☃").replace("lord", "lørd\r\n")
    (tmp_path / "c.txt").write_text(text, encoding="utf-8")
    cfg = load_config(None, [f"data.path={tmp_path / 'c.txt'}", f"data.level={level}", "data.min_count=2"])
    expected = in_memory(cfg)
    cfg.data.memmap = True
    got = load_splits(cfg.data, log=lambda m: None)
    assert got.vocab == expected.vocab
    for split in ("train", "valid", "test"):
        ids = got.get(split)
        assert isinstance(ids, np.memmap) and ids.dtype == np.uint8             # 40-odd tokens fit a byte
        assert np.array_equal(ids, expected.get(split))
    again = load_splits(cfg.data, log=lambda m: pytest.fail(f"converted twice: {m}"))   # cached
    assert np.array_equal(again.train, got.train)


def test_a_folder_and_a_wide_vocabulary(tmp_path):
    folder = tmp_path / "texts"
    folder.mkdir()
    (folder / "a.txt").write_text("".join(chr(0x4E00 + i) for i in range(400)) * 3, encoding="utf-8")  # no final newline
    (folder / "b.txt").write_text(make_text(5000), encoding="utf-8")
    cfg = load_config(None, [f"data.path={folder}"])
    expected = in_memory(cfg)
    cfg.data.memmap = True
    got = load_splits(cfg.data, log=lambda m: None)
    assert got.train.dtype == np.uint16 and got.vocab == expected.vocab
    assert np.array_equal(np.concatenate([got.train, got.valid, got.test]),
                          np.concatenate([expected.train, expected.valid, expected.test]))


def test_batchify_view_is_batchify_without_a_copy():
    ids = np.arange(26, dtype=np.uint8)
    view = batchify_view(ids, 4)
    assert view.base is not None and np.shares_memory(view, ids)
    assert np.array_equal(view, batchify(ids, 4).numpy())


def test_training_from_the_memory_map_equals_training_in_memory(tmp_path, text_file):
    overrides = TINY + [f"data.path={text_file}", "train.max_steps=12", "train.bptt_stride=8"]
    fit(load_config(None, overrides), tmp_path / "memory", log=lambda m: None)
    fit(load_config(None, overrides + ["data.memmap=true"]), tmp_path / "mapped", log=lambda m: None)
    a, b = (load_file(max((tmp_path / r / "checkpoints").glob("step-*")) / "weights.safetensors")
            for r in ("memory", "mapped"))
    assert all((a[k] == b[k]).all() for k in a)
    rows = [[json.loads(line)["loss"] for line in (tmp_path / r / "metrics.jsonl").read_text().splitlines()]
            for r in ("memory", "mapped")]
    assert rows[0] == rows[1]


def write_big_corpus(path, size: int, seed: int = 0) -> None:
    """`size` bytes of text quickly: a 1 MiB block of generated lines, each copy rotated by a
    random offset (so the stream does not repeat with a short period)."""
    rng = np.random.default_rng(seed)
    block = np.frombuffer(make_text(1 << 20, seed).encode("ascii")[: 1 << 20], dtype=np.uint8)
    with open(path, "wb") as f:
        for _ in range(size // block.size):
            f.write(np.roll(block, int(rng.integers(block.size))).tobytes())


@pytest.mark.slow
def test_a_1gb_corpus_trains_in_bounded_memory(tmp_path):
    big = tmp_path / "big.txt"
    cache = tmp_path / "cache"
    try:
        write_big_corpus(big, 1 << 30)
        assert big.stat().st_size >= 1 << 30
        args = ["train", f"data.path={big}", "data.memmap=true", "data.valid_fraction=0.0002",
                "data.test_fraction=0.0002", *TINY, "train.batch_size=16", "train.max_steps=30",
                "train.threads=1", "--out", str(tmp_path / "run")]
        # the peak resident set of the process that converts and trains (VmHWM of the child alone)
        code = ("import resource, sys; from seqlab.cli import main; code = main(sys.argv[1:]); "
                "print('peak_rss_kb', resource.getrusage(resource.RUSAGE_SELF).ru_maxrss); sys.exit(code)")
        started = time.perf_counter()
        done = subprocess.run([sys.executable, "-c", code, *args], capture_output=True, text=True, timeout=1800,
                              env={**__import__("os").environ, "SEQLAB_DATA": str(cache)})
        seconds = time.perf_counter() - started
        assert done.returncode == 0, done.stderr[-2000:]
        peak_mb = int(done.stdout.split("peak_rss_kb")[-1].split()[0]) / 1024
        tokens = next(cache.glob("memmap/*/tokens.npy"))
        print(f"\n1 GiB corpus: token file {tokens.stat().st_size / 2**30:.2f} GiB, converted + 30 updates "
              f"in {seconds:.0f} s, peak RSS {peak_mb:.0f} MB")
        assert tokens.stat().st_size >= 1 << 30
        assert peak_mb < 2048
        assert resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024 < 2048   # nor did this test itself
    finally:
        shutil.rmtree(cache, ignore_errors=True)
        big.unlink(missing_ok=True)
