"""Text corpora read out of Debian packages: Linux kernel source and Jane Austen's novels.

Both packages are fetched with `apt-get download` (no installation, no root needed once
the package lists exist) and read in Python: a .deb is an `ar` archive whose `data.tar.*`
member holds the files, so nothing is unpacked to disk.

    linux   linux-source-6.1 (Debian bookworm): the kernel tarball inside it,
            linux-source-6.1.tar.xz, is streamed and every .c and .h file under kernel/
            is kept, sorted by path. Karpathy, Johnson & Fei-Fei, "Visualizing and
            Understanding Recurrent Networks" (2016) trained on ~6.2M chars of kernel source.
    austen  r-cran-janeaustenr (Silge, janeaustenr): the six novels as R character
            vectors, one line of text each, in data/Rdata.rdb, read by seqlab.data.rdata.
"""
from __future__ import annotations

import io
import re
import subprocess
import sys
import tarfile
from pathlib import Path
from typing import BinaryIO, Iterator

from tqdm import tqdm

from seqlab import SeqlabError
from seqlab.data.rdata import RVector, read_lazyload_db

LINUX_PACKAGE = "linux-source-6.1"
AUSTEN_PACKAGE = "r-cran-janeaustenr"
AUSTEN_NOVELS = ("sensesensibility", "prideprejudice", "mansfieldpark", "emma", "northangerabbey", "persuasion")
_AUSTEN_DATA = "usr/lib/R/site-library/janeaustenr/data/Rdata"


def apt_download(package: str, dest: Path, corpus: str) -> Path:
    """`apt-get download PACKAGE` into dest; the .deb file, or a SeqlabError saying what to run."""
    retry = f"then run: seqlab data fetch {corpus}"
    print(f"downloading {package} with apt-get download ...", file=sys.stderr, flush=True)
    try:
        done = subprocess.run(["apt-get", "download", package], cwd=dest, capture_output=True, text=True,
                              timeout=1800)
    except FileNotFoundError:
        raise SeqlabError(f"{corpus} comes from the Debian package {package} and apt-get is not installed; "
                          f"on a Debian or Ubuntu machine run: apt-get download {package}") from None
    except subprocess.TimeoutExpired:
        raise SeqlabError(f"apt-get download {package} took over 30 minutes; check the mirror, {retry}") from None
    if done.returncode != 0:
        last = (done.stderr.strip().splitlines() or ["no output"])[-1]
        raise SeqlabError(f"apt-get download {package} failed ({last}); refresh the package lists as root "
                          f"(sudo apt-get update), {retry}")
    found = sorted(dest.glob(f"{package}_*.deb"))
    if not found:
        raise SeqlabError(f"apt-get download {package} left no {package}_*.deb in {dest}")
    return found[0]


class _Window(io.RawIOBase):
    """A read-only view of `size` bytes of a file starting at its current position."""

    def __init__(self, file: BinaryIO, size: int):
        self.file, self.left = file, size

    def readable(self) -> bool:
        return True

    def readinto(self, buffer) -> int:
        chunk = self.file.read(min(len(buffer), self.left))
        buffer[:len(chunk)] = chunk
        self.left -= len(chunk)
        return len(chunk)


def deb_files(deb: BinaryIO, source: str) -> Iterator[tuple[tarfile.TarInfo, tarfile.TarFile]]:
    """The (member, tar) pairs of a .deb's data.tar.*, streamed; read a member before moving on.

    A .deb is an ar archive: "!<arch>\\n", then per member a 60-byte header (name 16,
    mtime 12, uid 6, gid 6, mode 8, size 10, "`\\n") and the data, padded to an even length.
    """
    if deb.read(8) != b"!<arch>\n":
        raise SeqlabError(f"{source}: not a Debian package (no ar header)")
    while True:
        header = deb.read(60)
        if len(header) < 60 or header[58:60] != b"`\n":
            raise SeqlabError(f"{source}: no data.tar member; the package is truncated or not a .deb")
        name, size = header[:16].decode("ascii", "replace").strip().rstrip("/"), int(header[48:58])
        if name.startswith("data.tar"):
            break
        deb.read(size + size % 2)
    compression = {"data.tar": "", "data.tar.gz": "gz", "data.tar.xz": "xz", "data.tar.bz2": "bz2"}.get(name)
    if compression is None:
        raise SeqlabError(f"{source}: its files are in {name}, which Python cannot decompress; "
                          f"unpack it with: dpkg-deb -x {source} DIR")
    with tarfile.open(fileobj=io.BufferedReader(_Window(deb, size)), mode=f"r|{compression}") as tar:
        for member in tar:
            yield member, tar


def _relative(name: str) -> str:
    return name.removeprefix("./")


# -- linux ---------------------------------------------------------------------------------

class _Progress:
    """A file wrapper that advances a tqdm bar (on stderr) by the bytes read through it."""

    def __init__(self, file: BinaryIO, bar):
        self.file, self.bar = file, bar

    def read(self, size: int = -1) -> bytes:
        chunk = self.file.read(size)
        self.bar.update(len(chunk))
        return chunk


def kernel_sources(tarball: BinaryIO, total: int | None = None) -> tuple[str, dict]:
    """Every .c and .h file under <top>/kernel/ of a kernel .tar.xz stream, sorted by path.

    Files are decoded as UTF-8; the few that are not valid UTF-8 have their undecodable
    bytes replaced by U+FFFD (counted in the returned stats) rather than being dropped.
    """

    wanted = re.compile(r"[^/]+/kernel/.+\.[ch]")
    files: dict[str, bytes] = {}
    with tqdm(total=total, unit="B", unit_scale=True, desc="kernel tarball", file=sys.stderr,
              leave=False, mininterval=1.0) as bar:
        with tarfile.open(fileobj=_Progress(tarball, bar), mode="r|xz") as tar:
            for member in tar:
                if member.isfile() and wanted.fullmatch(_relative(member.name)):
                    files[_relative(member.name)] = tar.extractfile(member).read()
    if not files:
        raise SeqlabError("the kernel tarball holds no kernel/*.c or kernel/*.h files")
    texts, replaced = [], []
    for name in sorted(files):
        try:
            texts.append(files[name].decode("utf-8"))
        except UnicodeDecodeError:
            texts.append(files[name].decode("utf-8", errors="replace"))
            replaced.append(name)
    return "".join(texts), {"files": len(files), "not_utf8": replaced}


def read_linux_deb(deb: Path) -> str:
    """The kernel/ .c and .h files of a linux-source-*.deb (its usr/src/linux-source-*.tar.xz)."""
    with open(deb, "rb") as file:
        for member, tar in deb_files(file, deb.name):
            if member.isfile() and re.fullmatch(r"usr/src/linux-source-[\d.]+\.tar\.xz", _relative(member.name)):
                text, stats = kernel_sources(tar.extractfile(member), total=member.size)
                note = f", {len(stats['not_utf8'])} not UTF-8 (bad bytes replaced)" if stats["not_utf8"] else ""
                print(f"linux: {stats['files']:,} files from kernel/{note}", file=sys.stderr, flush=True)
                return text
    raise SeqlabError(f"{deb.name}: no usr/src/linux-source-*.tar.xz inside; is it the right package?")


def build_linux(tmp: Path) -> str:
    return read_linux_deb(apt_download(LINUX_PACKAGE, tmp, "linux"))


# -- austen --------------------------------------------------------------------------------

def austen_text(objects: dict) -> str:
    """The six novels, lines joined by newlines, in publication-list order, a blank line between."""
    novels = []
    for name in AUSTEN_NOVELS:
        novel = objects.get(name)
        if not isinstance(novel, RVector) or novel.kind != "character":
            raise SeqlabError(f"janeaustenr data has no character vector {name!r}; "
                              f"found: {', '.join(sorted(objects)) or 'nothing'}")
        novels.append("\n".join(line or "" for line in novel.items) + "\n")   # NA lines become empty
    return "\n".join(novels)


def read_austen_deb(deb: Path) -> str:
    wanted = {f"{_AUSTEN_DATA}.rdx": None, f"{_AUSTEN_DATA}.rdb": None}
    with open(deb, "rb") as file:
        for member, tar in deb_files(file, deb.name):
            if _relative(member.name) in wanted and member.isfile():
                wanted[_relative(member.name)] = tar.extractfile(member).read()
    index, database = wanted.values()
    if index is None or database is None:
        raise SeqlabError(f"{deb.name}: no {_AUSTEN_DATA}.rdx/.rdb inside; is it the right package?")
    return austen_text(read_lazyload_db(index, database, source=_AUSTEN_DATA))


def build_austen(tmp: Path) -> str:
    return read_austen_deb(apt_download(AUSTEN_PACKAGE, tmp, "austen"))
