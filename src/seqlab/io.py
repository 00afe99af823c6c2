"""Atomic file writes: write to a temporary file beside the target, fsync, rename.

A crash at any moment leaves either the old file or the new one, never half of one.
"""
from __future__ import annotations

import os
import tempfile
from contextlib import contextmanager
from pathlib import Path
from typing import Iterator
from seqlab import SeqlabError

_UMASK = os.umask(0)
os.umask(_UMASK)


@contextmanager
def atomic_path(path: str | Path) -> Iterator[Path]:
    """Yield a temporary path to write; on success it replaces `path` atomically."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent)
    os.close(fd)
    os.chmod(tmp, 0o666 & ~_UMASK)   # mkstemp makes 0600; give the file ordinary permissions
    try:
        yield Path(tmp)
        # a writer may have replaced the file (safetensors does, with mode 0600): set it again
        os.chmod(tmp, 0o666 & ~_UMASK)
        with open(tmp, "rb+") as f:
            os.fsync(f.fileno())
        os.replace(tmp, path)
    except BaseException:
        try:
            os.unlink(tmp)
        except FileNotFoundError:
            pass
        raise


def atomic_write_bytes(path: str | Path, data: bytes) -> None:
    with atomic_path(path) as tmp:
        tmp.write_bytes(data)


def atomic_write_text(path: str | Path, text: str) -> None:
    atomic_write_bytes(path, text.encode("utf-8"))


def check_output(path: str | Path | None, flag: str) -> Path | None:
    """Refuse, before any work, an output path that cannot be written: a folder, a path through
    a file, or an unwritable folder. Folders that do not exist yet are made when writing."""

    if path is None or path == "":
        return None
    path = Path(path)
    if path.is_dir():
        raise SeqlabError(f"{flag} {path} is a folder; give a file name")
    if path.exists() and not path.is_file():
        raise SeqlabError(f"{flag} {path} is not a regular file (a FIFO or device); give a file name")
    ancestor = path.parent
    while not ancestor.exists() and ancestor != ancestor.parent:
        ancestor = ancestor.parent
    if not ancestor.is_dir():
        raise SeqlabError(f"{flag} {path}: {ancestor} is a file, not a folder")
    if not os.access(ancestor, os.W_OK | os.X_OK):
        raise SeqlabError(f"{flag} {path}: {ancestor} is not writable; choose another place")
    return path
