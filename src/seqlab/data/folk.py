"""The `folk` corpus: 8,506 monophonic folk tunes of the Essen collection, in ABC notation,
as one text a character model trains on like any other (the Nottingham stand-in).

Source: the Essen folksong transcriptions (Schaffrath; in ABC by Seymour Schlien) that ship
in music21's corpus, music21/corpus/essenFolksong/*.abc, read out of the music21==10.5.1
sdist from PyPI (`pip download`; nothing is installed or imported).

Each tune keeps the headers that say what it is -- T: title, M: meter, L: unit length,
K: key (which ends the header) -- and its body; the reference number (X:), the notes on
source, region and genre (N:, O:, S:, R:) are dropped, as folk-rnn dropped them. Tunes
that seqlab's ABC reader refuses (9 of 8,515: typos such as `M: 2/2]`) are left out.
German umlauts, stored as DOS code page 437 read as Latin-1, are mended (see mend()). Blank
lines separate tunes. The tunes are shuffled with a fixed seed, so the corpus's
contiguous train / valid / test cut (data.valid_fraction, data.test_fraction) is a split
by tune: held-out tunes are tunes the model never saw (only the one tune at each cut is
shared between two splits).
"""
from __future__ import annotations

import re
import tarfile
from pathlib import Path
from typing import Callable

import numpy as np

from seqlab import SeqlabError
from seqlab.data import abc

REQUIREMENT = "music21==10.5.1"
PATTERN = re.compile(r".*/music21/corpus/essenFolksong/[^/]+\.abc$")
KEPT_HEADERS = ("T", "M", "L", "K")
SEED = 0


def mend(text: str) -> str:
    """Undo the corpus's mojibake: its German umlauts were DOS code page 437 bytes read as
    Latin-1, so they stand as C1 control characters (U+0084 for a-umlaut); those are never
    text, and cp437 says which letter each was."""
    return re.sub(r"[\x80-\x9f]", lambda m: m.group().encode("latin-1").decode("cp437"), text)


def clean_tune(text: str) -> str | None:
    """One Essen tune -> T/M/L/K headers and the body; None if it is not ABC seqlab reads."""
    headers: dict[str, str] = {}
    body: list[str] = []
    for line in text.splitlines():
        m = re.match(r"([A-Za-z]):\s*(.*?)\s*$", line)
        if not body and m:
            headers.setdefault(m.group(1), m.group(2))
            continue
        if line.strip():
            body.append(line.rstrip())
    if "K" not in headers or not body:
        return None
    headers.setdefault("M", "none")
    tune = "\n".join([f"{name}:{headers[name]}" for name in KEPT_HEADERS if name in headers] + body)
    try:
        abc.parse(tune)
    except abc.AbcError:
        return None
    return tune


def tunes_of(archive: Path) -> tuple[list[str], int]:
    """(cleaned tunes in file order, how many were refused) from music21's sdist."""
    kept, refused = [], 0
    with tarfile.open(archive) as tar:
        members = sorted((m for m in tar.getmembers() if m.isfile() and PATTERN.match(m.name)),
                         key=lambda m: m.name)
        if not members:
            raise SeqlabError(f"{archive.name}: no Essen tunes found (expected */music21/corpus/essenFolksong/*.abc)")
        for member in members:
            raw = tar.extractfile(member).read()
            try:
                text = raw.decode("utf-8")
            except UnicodeDecodeError:
                text = raw.decode("latin-1")
            for block in abc.split_tunes(mend(text.replace("\r\n", "\n"))):
                tune = clean_tune(block)
                kept.append(tune) if tune is not None else None
                refused += tune is None
    return kept, refused


def build_folk(tmp: Path, download: Callable[[str, Path], Path], log=print) -> str:
    archive = download(REQUIREMENT, tmp)
    tunes, refused = tunes_of(archive)
    order = np.random.default_rng(SEED).permutation(len(tunes))
    log(f"folk: {len(tunes):,} tunes kept, {refused} refused by the ABC reader, shuffled with seed {SEED}")
    return "\n\n".join(tunes[i] for i in order) + "\n\n"
