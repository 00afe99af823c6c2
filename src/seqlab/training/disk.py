"""Writing files that survive a kill: fsync, checksums, removal in one atomic step, and a failed
write said as the OSError it most likely was (checkpoint.py's helpers)."""
from __future__ import annotations

import errno
import hashlib
import os
import shutil
from contextlib import contextmanager
from pathlib import Path
from typing import Iterator

from safetensors import SafetensorError


@contextmanager
def _write_errors_as_oserror(folder: Path) -> Iterator[None]:
    """torch.save and safetensors report a failed write as RuntimeError / SafetensorError
    without an errno; callers handle OSError, so say what most likely happened."""
    try:
        yield
    except (RuntimeError, SafetensorError) as e:
        try:
            full = shutil.disk_usage(folder).free < (1 << 20)
        except OSError:
            full = False
        raise OSError(errno.ENOSPC if full else errno.EIO, f"write failed ({_first_line(e)})") from None


def _sha256(path: Path) -> str:
    digest = hashlib.sha256()
    with open(path, "rb") as f:
        for block in iter(lambda: f.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()


def _fsync(path: Path) -> None:
    """Flush a file's (or a folder's entries') data to the disk before anything depends on it."""
    fd = os.open(path, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


def _discard(path: Path) -> None:
    """Remove a checkpoint folder: first renamed to a hidden name (one atomic step, so a kill
    mid-removal never leaves a half-deleted folder that looks committed), then deleted."""
    trash = path.with_name(f".{path.name}.{os.getpid()}.trash")
    os.rename(path, trash)
    shutil.rmtree(trash, ignore_errors=True)


def _umask() -> int:
    mask = os.umask(0)
    os.umask(mask)
    return mask


def _first_line(e: Exception) -> str:
    text = str(e).strip().splitlines()
    return text[0][:200] if text else e.__class__.__name__
