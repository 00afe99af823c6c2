"""en-es: the King James Bible (Debian's bible-kjv, `bible -f`) and the Reina-Valera 1909
(diatheke with sword-text-sparv, `diatheke -f OSIS`), joined by book, chapter and verse.
data/datasets.py registers it as the `en-es` dataset; this module reads and aligns the texts.
"""
from __future__ import annotations

import html
import os
import re
import shutil
from pathlib import Path
from typing import Callable

from seqlab import SeqlabError
from seqlab.data.arrays import run

Log = Callable[[str], None]


def _run(cmd: list[str], hint: str) -> str:
    return run(cmd, hint, timeout=600)


PACKAGES = "bible-kjv diatheke sword-text-sparv"
_SPANISH_MODULE = "spaRV1909eb"
_KJV_VERSE = re.compile(r"([1-3]?[A-Za-z]+)(\d+):(\d+) ?(.*)")            # Ge1:1 In the beginning
_SWORD_VERSE = re.compile(r"(\S.*?) (\d+):(\d+): ?(.*)")                   # Genesis 1:1: <w>EN</w> ...
_STRONGS = re.compile(r"\s*<[GH]\d+>")                                      # plain format: <G5547>
_LETTERS = r"[^\W\d_]+"
_CLITIC = re.compile(r"(?:me|te|se|nos|os|lo|la|los|las|le|les){1,2}", flags=re.IGNORECASE)


def parse_verses(text: str, pattern: re.Pattern) -> list[tuple[tuple[int, int, int], str]]:
    """((book number, chapter, verse), text) from `bible -f` or `diatheke` output.

    Books are numbered in order of appearance, so the two programs' different book names
    (`Ge`, `Genesis`) need no table. Lines that start no verse continue the one before;
    diatheke's closing `(module)` line is dropped.
    """
    verses: list[list] = []
    books: list[str] = []
    for line in text.splitlines():
        match = pattern.fullmatch(line.rstrip())
        if match:
            book, chapter, verse, words = match.groups()
            if not books or books[-1] != book:
                books.append(book)
            verses.append([(len(books), int(chapter), int(verse)), words])
        elif verses and line.strip() and not re.fullmatch(r"\(\w+\)", line.strip()):
            verses[-1][1] += " " + line.strip()
    return [(ref, markup_to_text(words)) for ref, words in verses]


def markup_to_text(markup: str) -> str:
    """A verse of diatheke's OSIS output (`<w>Y el oro</w> <w>de aquella</w> ...`) as plain text.

    The module sometimes glues a word to its neighbour's <w> element with no space
    (`allí</w>también<w>bdelio`; 146 times). A Spanish enclitic pronoun glued after a
    word belongs to it (`sáca</w>lo` is "sácalo"); any other glued word gets its space back.
    """
    markup = re.sub(f"</w>(?=({_LETTERS}))", lambda m: "" if _CLITIC.fullmatch(m.group(1)) else " ", markup)
    markup = re.sub(r"(?<=[^\W\d_])<w\b", " <w", markup)
    text = re.sub(r"<[^<>]*>", "", _STRONGS.sub("", markup))
    return " ".join(html.unescape(text).split())


def join_verses(english: list, spanish: list) -> list[list]:
    """[book, chapter, verse, english, spanish] for every verse both translations have."""
    spanish_by_ref = dict(spanish)
    if len({ref[0] for ref, _ in english}) != len({ref[0] for ref, _ in spanish}):
        raise SeqlabError("bible and diatheke list different numbers of books; "
                          f"reinstall as root: apt-get install --reinstall -y {PACKAGES}")
    return [[*ref, text, spanish_by_ref[ref]] for ref, text in english if ref in spanish_by_ref]


def shifted_chapters(records: list[list]) -> set[tuple[int, int]]:
    """Chapters where the Spanish module's verse numbers are not the KJV's.

    spaRV1909eb claims KJV versification, but in a few places (Num 12-13, Job 38-41,
    Jonah 1-2, ...) it keeps the Spanish numbering: a chapter ends in empty verses and its
    text runs on, shifted by a verse or more, into the next chapter. Every such chapter
    and the one after it are marked, so no pair there is misaligned.
    """
    empty = {(book, chapter) for book, chapter, _, _, spanish in records if not spanish}
    return empty | {(book, chapter + 1) for book, chapter in empty}


def ensure_tools(log: Log) -> None:
    install = f"apt-get install -y {PACKAGES}"
    have_module = shutil.which("diatheke") and _SPANISH_MODULE in _run(
        ["diatheke", "-b", "system", "-k", "modulelistnames"], hint=f"run as root: {install}")
    if shutil.which("bible") and have_module:
        return
    is_root = getattr(os, "geteuid", lambda: -1)() == 0
    if not is_root or not shutil.which("apt-get"):
        raise SeqlabError(f"en-es needs the Debian packages {PACKAGES}; "
                          f"run as root: {install}, then: seqlab data fetch en-es")
    log(f"en-es: {install} ...")
    _run(["apt-get", "install", "-y", *PACKAGES.split()],
         hint=f"run as root: apt-get update && {install}")


def build(tmp: Path, log: Log) -> dict:
    ensure_tools(log)
    hint = f"reinstall as root: apt-get install --reinstall -y {PACKAGES}"
    english = parse_verses(_run(["bible", "-f", "gen1:1-rev22:21"], hint=hint), _KJV_VERSE)
    spanish = parse_verses(_run(["diatheke", "-b", _SPANISH_MODULE, "-f", "OSIS", "-k", "Gen 1:1-Rev 22:21"],
                                hint=hint), _SWORD_VERSE)
    records = join_verses(english, spanish)
    if not records:
        raise SeqlabError(f"bible and diatheke printed no verses in common; {hint}")
    return {"verses": records}


def decode(payload: dict) -> list[tuple[str, str]]:
    shifted = shifted_chapters(payload["verses"])
    return [(english, spanish) for book, chapter, _, english, spanish in payload["verses"]
            if (book, chapter) not in shifted]
