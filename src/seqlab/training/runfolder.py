"""What a run folder may hold, what seqlab may delete there, and who is writing it.

seqlab deletes only what it wrote. A folder counts as a seqlab run when its config.json
carries seqlab's marker (`seqlab_version` beside the resolved `config`); `--overwrite` then
removes seqlab's own files and nothing else, and refuses, naming them, when the folder holds
anything seqlab did not write (a user's notes, an analysis page, a project's sources).

One process writes a run at a time. The writer holds an advisory lock (flock) on the run
folder itself: the operating system drops it when the process ends, however it ends, so a
SIGKILL never leaves a stale lock behind, and a second writer is told in one line which
process (PID) holds the run.

Files of a run are read only when they are regular files inside the run folder: a FIFO
in place of vocab.json would block forever, and a link out of the folder would let a run
borrow another run's checkpoint.
"""
from __future__ import annotations

import errno
import os
import re
import shutil
import stat
from contextlib import contextmanager
from pathlib import Path
from typing import Iterator

from seqlab import SeqlabError
from seqlab.io import json_loads

try:
    import fcntl
except ImportError:  # pragma: no cover - Windows: no advisory locks; runs are then unguarded
    fcntl = None

TENSORBOARD = "tensorboard"
# every name seqlab writes at the top of a run folder (checkpoints/ is checked entry by entry)
RUN_FILES = frozenset({"config.json", "vocab.json", "model.safetensors", "last.safetensors", "state.pt",
                       "metrics.jsonl", "loss.png", "task.json", "forecast.png", "result.json", "checkpoints"})
_TEMPORARY = re.compile(r"^\.(.+)\.[^.]+\.tmp$")                # atomic_path's leftovers: .NAME.XXXX.tmp
_CHECKPOINT = re.compile(r"^step-\d+$")
_CHECKPOINT_LEFTOVER = re.compile(r"^\.step-\d+\..+\.(tmp|trash)$")  # a save or a removal cut off by a kill


def is_seqlab_run(folder: Path) -> bool:
    """Does folder/config.json carry seqlab's marker?"""
    config = folder / "config.json"
    if not regular_file(config):
        return False
    try:
        meta = json_loads(config.read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return False
    return isinstance(meta, dict) and "seqlab_version" in meta and isinstance(meta.get("config"), dict)


def foreign_entries(folder: Path) -> list[str]:
    """Paths (relative to folder) of what seqlab did not write there, sorted."""
    found = []
    for entry in sorted(folder.iterdir()):
        name = entry.name
        temporary = _TEMPORARY.match(name)
        if entry.is_symlink():
            found.append(name)
        elif name == "checkpoints" and entry.is_dir():
            found += [f"checkpoints/{e.name}" for e in sorted(entry.iterdir())
                      if e.is_symlink() or not (e.is_dir() and (_CHECKPOINT.match(e.name) or _CHECKPOINT_LEFTOVER.match(e.name)))]
        elif name == TENSORBOARD and entry.is_dir():        # train.logger=tensorboard's event files
            found += [f"{name}/{e.name}" for e in sorted(entry.iterdir())
                      if e.is_symlink() or not (e.is_file() and e.name.startswith("events.out.tfevents."))]
        elif name == "candidates" and entry.is_dir():        # runs of their own (training/select.py)
            for e in sorted(entry.iterdir()):
                if e.is_symlink() or not e.is_dir() or not is_seqlab_run(e):
                    found.append(f"candidates/{e.name}")
                else:
                    found += [f"candidates/{e.name}/{x}" for x in foreign_entries(e)]
        elif name not in RUN_FILES and not (temporary and temporary.group(1) in RUN_FILES):
            found.append(name + ("/" if entry.is_dir() else ""))
    return found


def check_out(out: Path, overwrite: bool) -> None:
    """Refuse to train into `out` unless it is new, empty, or (with --overwrite) a seqlab run
    holding nothing but seqlab's files. No side effects."""
    if out.is_symlink() and not out.exists():
        raise SeqlabError(f"--out {out} is a link to nothing ({os.readlink(out)}); remove the link or choose another --out")
    if not out.exists():
        return
    if not out.is_dir():
        raise SeqlabError(f"--out {out} is a file, not a folder; choose a folder for the run")
    entries = list(out.iterdir())
    if not entries:
        return
    if not is_seqlab_run(out):
        names = ", ".join(sorted(e.name for e in entries)[:5]) + (", ..." if len(entries) > 5 else "")
        raise SeqlabError(f"{out} is a folder that is not a seqlab run (it holds {names}); seqlab trains into a new "
                          f"or empty folder, or replaces a run it wrote: choose another --out")
    if not overwrite:
        raise SeqlabError(f"{out} already exists; pass --overwrite to replace it, or --resume {out} to continue it")
    foreign = foreign_entries(out)
    if foreign:
        names = ", ".join(foreign[:8]) + (f" and {len(foreign) - 8} more" if len(foreign) > 8 else "")
        raise SeqlabError(f"{out} is a seqlab run but also holds files seqlab did not write ({names}); "
                          f"move them out of it, or choose another --out (--overwrite deletes only what seqlab wrote)")


def clear_run(out: Path) -> None:
    """Remove seqlab's files from run folder `out` (check_out has found nothing else there);
    the folder itself stays, since this process holds its lock."""
    for entry in out.iterdir():
        if entry.is_dir() and not entry.is_symlink():
            shutil.rmtree(entry)
        else:
            entry.unlink()


def regular_file(path: Path) -> bool:
    """A regular file (after following links), not a FIFO, device or folder."""
    try:
        return stat.S_ISREG(os.stat(path).st_mode)
    except (OSError, ValueError):
        return False


def require_regular(path: Path, root: Path) -> Path:
    """`path` if it is a regular file inside `root`, else a SeqlabError saying what it is."""
    try:
        mode = os.stat(path).st_mode
    except FileNotFoundError:
        raise SeqlabError(f"{path} is missing") from None
    except OSError as e:
        raise SeqlabError(f"{path}: cannot read ({e.strerror})") from None
    if not stat.S_ISREG(mode):
        kind = "a folder" if stat.S_ISDIR(mode) else "a FIFO" if stat.S_ISFIFO(mode) else "a device or socket"
        raise SeqlabError(f"{path} is {kind}, not a file; a run's files must be the regular files seqlab wrote")
    if path.is_symlink() and not path.resolve().is_relative_to(root.resolve()):
        raise SeqlabError(f"{path} is a link out of the run folder (to {path.resolve()}); "
                          f"seqlab reads only files inside the run")
    return path


class RunLock:
    """An exclusive advisory lock (flock) on run folder `folder` itself, for as long as it is
    held. Locking the folder, not a file in it, leaves nothing behind to clean up; the holder's
    PID is read back from /proc/locks for the message a second writer gets."""

    def __init__(self, folder: Path):
        self.folder = Path(folder)
        self.fd: int | None = None

    def acquire(self) -> "RunLock":
        if fcntl is None:
            return self
        try:
            self.folder.mkdir(parents=True, exist_ok=True)
            fd = os.open(self.folder, os.O_RDONLY | os.O_DIRECTORY)
        except OSError as e:
            raise SeqlabError(_lock_failure(self.folder, e)) from None
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except OSError as e:
            os.close(fd)
            if e.errno not in (errno.EWOULDBLOCK, errno.EAGAIN, errno.EACCES):
                raise SeqlabError(_lock_failure(self.folder, e)) from None
            holder = lock_holder(self.folder)
            raise SeqlabError(f"{self.folder} is being written by another seqlab process"
                              f"{f' (PID {holder})' if holder else ''}; wait for it to finish, or stop it, "
                              f"then try again") from None
        self.fd = fd
        return self

    def release(self) -> None:
        if self.fd is not None:
            os.close(self.fd)          # closing drops the flock
            self.fd = None

    def __enter__(self) -> "RunLock":
        return self.acquire()

    def __exit__(self, *exc) -> None:
        self.release()


def lock_holder(folder: Path) -> int | None:
    """The PID holding a flock on `folder`, from /proc/locks (Linux), else None."""
    try:
        st = os.stat(folder)
        rows = Path("/proc/locks").read_text(encoding="ascii", errors="replace").splitlines()
    except OSError:
        return None
    wanted = (os.major(st.st_dev), os.minor(st.st_dev), st.st_ino)
    for row in rows:      # "1: FLOCK  ADVISORY  WRITE 6039 00:2e:1234567 0 EOF"
        fields = row.split()
        if len(fields) >= 6 and fields[1] == "FLOCK" and fields[4].isdigit():
            try:
                major, minor, inode = fields[5].split(":")
                if (int(major, 16), int(minor, 16), int(inode)) == wanted:
                    return int(fields[4])
            except ValueError:
                continue
    return None


def _lock_failure(folder: Path, e: OSError) -> str:
    if e.errno in (errno.EACCES, errno.EPERM, errno.EROFS):
        return f"cannot write in {folder} (it is not writable); choose another --out or fix its permissions"
    if e.errno == errno.ENOSPC:
        return f"cannot write in {folder} (the disk is full); free some space and try again"
    if e.errno == errno.ENOTDIR:
        return f"--out {folder} is a file, not a folder; choose a folder for the run"
    return f"cannot write in {folder} ({e.strerror or e})"


@contextmanager
def writing_run(folder: Path, *, fresh: bool, overwrite: bool, enabled: bool = True) -> Iterator[None]:
    """Hold run folder `folder` for writing: for a fresh run, refuse before writing anything
    unless check_out allows it, then lock, then check again under the lock."""
    if not enabled:
        yield
        return
    if fresh:
        check_out(folder, overwrite)
    created = not folder.exists()
    lock = RunLock(folder).acquire()
    try:
        if fresh:
            check_out(folder, overwrite)
        yield
    except BaseException as e:
        # a start that failed before writing anything leaves nothing behind, not even the folder;
        # nor does a refusal (bad data, say) before the first checkpoint: there is nothing to resume
        if fresh and created and (not any(folder.iterdir()) or
                                  (isinstance(e, SeqlabError) and not any(folder.glob("checkpoints/step-*")))):
            clear_run(folder)
            folder.rmdir()
        raise
    finally:
        lock.release()
