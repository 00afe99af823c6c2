"""Corpora larger than memory: the text streamed once into a token file, then memory-mapped.

    seqlab train data.path=big.txt data.memmap=true ...

The text is read in blocks of a few MiB (never whole) in three passes, each with a progress
bar:

    1. count the tokens, so the train | valid | test cut points are known
    2. count the vocabulary over the training tokens only (as build_splits does in memory)
    3. encode every block and write its ids into SEQLAB_DATA/memmap/KEY/tokens.npy

The ids take the narrowest type that holds the vocabulary: uint8 up to 256 tokens (a 1 GB
character corpus is a 1 GB token file), uint16 up to 65,536, else int32. Training reads the
file through np.memmap: the splits are views, batchify_view is a view, and each TBPTT window
is read as it is needed, so resident memory stays bounded whatever the corpus size (the
operating system pages the file in and out). The result equals load_splits in memory,
token for token (tests/data/test_memmap.py). KEY covers the files' paths, sizes and modification
times and the data options, so a changed file is converted again.
"""
from __future__ import annotations

import codecs
import hashlib
import json
from collections import Counter
from pathlib import Path
from typing import Callable, Iterator

import numpy as np
from tqdm import tqdm

from seqlab import SeqlabError
from seqlab.config import DataConfig
from seqlab.data import sources
from seqlab.data.splits import Splits, split_sizes
from seqlab.data.vocab import UNK, Vocab, tokenize
from seqlab.io import atomic_path, atomic_write_text, json_loads

BLOCK_BYTES = 1 << 24          # 16 MiB of text per read: big enough for numpy, small beside RAM
TOKENS, VOCAB, META = "tokens.npy", "vocab.json", "meta.json"


def text_files(path: str) -> list[Path]:
    """The file, or every non-hidden file under the folder, in the order read_path uses."""
    root = Path(path).expanduser()
    if not root.exists():
        raise SeqlabError(f"no such file or folder: {root}")
    if root.is_file():
        return [root]
    files = sorted(p for p in root.rglob("*")
                   if p.is_file() and not any(part.startswith(".") for part in p.relative_to(root).parts))
    if not files:
        raise SeqlabError(f"{root}: no files in this folder")
    return files


def text_blocks(files: list[Path], block_bytes: int = BLOCK_BYTES) -> Iterator[tuple[str, int]]:
    """(text, bytes read) block by block; a UTF-8 character split between reads is completed
    by the incremental decoder. Several files are joined as read_path does: each ends in a
    newline."""
    for path in files:
        decoder = codecs.getincrementaldecoder("utf-8")()
        offset, last, first = 0, "", True
        with open(path, "rb") as f:
            while True:
                data = f.read(block_bytes)
                try:
                    text = decoder.decode(data, final=not data)
                except UnicodeDecodeError as e:
                    raise SeqlabError(f"{path}: not UTF-8 text (near byte {offset + e.start}); convert it first, "
                                      f"e.g. iconv -f latin1 -t utf-8") from None
                if first and text:
                    text, first = text.removeprefix("\ufeff"), False
                offset += len(data)
                if text:
                    last = text[-1]
                    yield text, len(data)
                elif data:
                    yield "", len(data)
                if not data:
                    break
        if len(files) > 1 and last != "\n":
            yield "\n", 0


def line_blocks(blocks: Iterator[tuple[str, int]]) -> Iterator[tuple[str, int]]:
    """Blocks cut after their last newline (the rest joins the next block), so word-level
    tokenising block by block equals tokenising the whole text."""
    pending = ""
    for text, size in blocks:
        text = pending + text
        cut = text.rfind("\n") + 1
        pending = text[cut:]
        yield text[:cut], size
    yield pending, 0


def _tokens(text: str, level: str):
    return text if level == "char" else tokenize(text, "word")


def _progress(files: list[Path], what: str) -> tqdm:
    total = sum(p.stat().st_size for p in files)
    return tqdm(total=total, unit="B", unit_scale=True, desc=what, mininterval=1.0, disable=None)


def _passes(files: list[Path], cfg: DataConfig, what: str) -> Iterator[str]:
    """One pass over the corpus as token-aligned text blocks, with a progress bar."""
    blocks = text_blocks(files, BLOCK_BYTES if cfg.level == "char" else BLOCK_BYTES // 4)
    if cfg.level == "word":
        blocks = line_blocks(blocks)
    with _progress(files, what) as bar:
        for text, size in blocks:
            bar.update(size)
            yield text.lower() if cfg.lowercase else text


def cache_key(files: list[Path], cfg: DataConfig) -> str:
    stats = [(str(p.resolve()), p.stat().st_size, p.stat().st_mtime_ns) for p in files]
    fields = {k: getattr(cfg, k) for k in ("level", "valid_fraction", "test_fraction", "max_vocab", "min_count",
                                            "lowercase")}
    return hashlib.sha256(json.dumps([stats, fields], sort_keys=True).encode()).hexdigest()[:16]


def id_dtype(vocab_size: int) -> np.dtype:
    if vocab_size <= 1 << 8:
        return np.dtype(np.uint8)
    return np.dtype(np.uint16 if vocab_size <= 1 << 16 else np.int32)


def convert(files: list[Path], cfg: DataConfig, folder: Path, log: Callable[[str], None]) -> None:
    """Stream `files` into folder/tokens.npy + vocab.json + meta.json (meta last: the marker)."""
    # 1. how many tokens -----------------------------------------------------------------
    total = sum(len(_tokens(text, cfg.level)) for text in _passes(files, cfg, "count tokens 1/3"))
    if total < 2:
        raise SeqlabError(f"{cfg.path}: has {total} tokens; give a file with some text in it")
    n_train, n_valid, _ = split_sizes(total, cfg.valid_fraction, cfg.test_fraction)
    # 2. vocabulary of the training tokens ------------------------------------------------
    counts: Counter = Counter()
    seen = 0
    for text in _passes(files, cfg, "vocabulary 2/3"):
        if seen >= n_train:
            break
        tokens = _tokens(text, cfg.level)[: n_train - seen]
        seen += len(tokens)
        if cfg.level == "char":    # bincount over code points: a 16 MiB block in a few ms
            codes = np.frombuffer(tokens.encode("utf-32-le"), dtype=np.uint32)
            histogram = np.bincount(codes)
            counts.update({chr(c): int(histogram[c]) for c in np.flatnonzero(histogram)})
        else:
            counts.update(tokens)
    vocab = Vocab.from_counts(counts, cfg.level, cfg.max_vocab, cfg.min_count)
    # 3. encode into the token file ---------------------------------------------------------
    dtype = id_dtype(len(vocab))
    # written with plain appends after a .npy header, not through a writable memmap, whose
    # dirty pages would count against the process's resident memory until flushed
    with atomic_path(folder / TOKENS) as tmp, open(tmp, "wb") as f:
        np.lib.format.write_array_header_1_0(
            f, {"descr": np.lib.format.dtype_to_descr(dtype), "fortran_order": False, "shape": (total,)})
        written = 0
        for text in _passes(files, cfg, "encode 3/3"):
            if cfg.level == "char":
                block = vocab.encode(text)                                         # (n,) int64
            else:
                words = tokenize(text, "word")
                block = np.fromiter((vocab.stoi.get(t, UNK) for t in words), dtype=np.int64, count=len(words))
            f.write(block.astype(dtype).tobytes())
            written += len(block)
        if written != total:
            raise SeqlabError(f"{cfg.path} changed while it was being read ({total} then {written} tokens); try again")
    vocab.save(folder / VOCAB)
    atomic_write_text(folder / META, json.dumps({"tokens": total, "train": n_train, "valid": n_valid,
                                                 "dtype": dtype.name, "files": [str(p) for p in files]}) + "\n")
    log(f"wrote {total:,} tokens ({dtype.name}, vocabulary {len(vocab)}) to {folder / TOKENS}")


def load_memmap(cfg: DataConfig, log: Callable[[str], None] = print):
    """Splits whose arrays are read-only views of a memory-mapped token file."""
    if not cfg.path:
        raise SeqlabError("data.memmap=true streams a file or folder given as data.path; "
                          "for a named corpus leave data.memmap off (its tokens are cached already)")
    files = text_files(cfg.path)
    folder = sources.cache_dir() / "memmap" / cache_key(files, cfg)
    if not (folder / META).is_file():
        log(f"converting {cfg.path} to a token file (once; cached in {folder})")
        convert(files, cfg, folder, log)
    try:
        meta = json_loads((folder / META).read_text(encoding="utf-8"))
        ids = np.load(folder / TOKENS, mmap_mode="r", allow_pickle=False)
    except (OSError, ValueError, KeyError) as e:
        raise SeqlabError(f"{folder} is damaged ({e}); delete it and run again") from None
    if len(ids) != meta["tokens"]:
        raise SeqlabError(f"{folder / TOKENS} is truncated ({len(ids)} of {meta['tokens']} tokens); delete {folder}")
    vocab = Vocab.load(folder / VOCAB)
    if len(ids) and (int(ids.max()) >= len(vocab) or int(ids.min()) < 0):
        raise SeqlabError(f"{folder / TOKENS} holds token ids outside its vocabulary of {len(vocab):,} (the cache is "
                          f"damaged or from another corpus); delete {folder} and run again")
    a, b = meta["train"], meta["train"] + meta["valid"]
    return Splits(vocab, ids[:a], ids[a:b], ids[b:], f"file {cfg.path} (memory-mapped)")
