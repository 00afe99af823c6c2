"""Files seqlab writes: atomically, and never over what the user did not ask to replace.

`atomic_path` writes to a temporary file beside the target, fsyncs and renames: a crash at any
moment leaves the old file or the new one, never half of one. Its temporaries carry the
writer's process id, so one left by a killed process is swept up by the next write there.

`Output` is the one way a verb writes a file for the user (an export, a page, a plot, a WAV, a
.sqz): it refuses an existing file unless asked to overwrite, never writes over an input of
the same command, and claims the name exclusively at the end, so a file that appears under
that name while the work runs is not replaced either.
"""
from __future__ import annotations

import errno
import os
import secrets
import contextlib
from contextlib import contextmanager
from pathlib import Path
from typing import Iterable, Iterator
from seqlab import SeqlabError

_UMASK = os.umask(0)
os.umask(_UMASK)


def _temporary(path: Path) -> Path:
    """Create (exclusively, mode 0600) and return a temporary beside `path`, named with our pid."""
    for _ in range(100):
        tmp = path.parent / f".{path.name}.{os.getpid()}-{secrets.token_hex(4)}.tmp"
        try:
            os.close(os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600))
            return tmp
        except FileExistsError:
            continue
    raise FileExistsError(errno.EEXIST, "no free temporary name", str(path))


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except (PermissionError, OverflowError, ValueError):
        return True                          # someone else's process, or a name we did not make
    return True


def sweep_temporaries(path: Path) -> int:
    """Remove temporaries of `path` left by writers that are no longer running (SIGKILL, power
    loss); returns how many. Only names of the form seqlab makes are touched."""
    prefix, removed = f".{path.name}.", 0
    try:
        entries = list(os.scandir(path.parent))
    except OSError:
        return 0
    for entry in entries:
        name = entry.name
        if not (name.startswith(prefix) and name.endswith(".tmp")):
            continue
        pid, _, tag = name[len(prefix):-4].partition("-")
        if not (pid.isdigit() and len(tag) == 8) or _alive(int(pid)):
            continue
        try:
            if entry.is_file(follow_symlinks=False):
                os.unlink(entry.path)
                removed += 1
        except OSError:
            pass
    return removed


@contextmanager
def atomic_path(path: str | Path, *, replace: bool = True) -> Iterator[Path]:
    """Yield a temporary path to write; on success it becomes `path` atomically. With
    replace=False an existing `path` is never replaced, even one that appeared meanwhile
    (NameTaken, a FileExistsError). On any exception the temporary is removed."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    sweep_temporaries(path)
    tmp = _temporary(path)
    try:
        os.chmod(tmp, 0o666 & ~_UMASK)   # ordinary permissions, as open() would give
        yield tmp
        # a writer may have replaced the file (safetensors does, with mode 0600): set it again
        os.chmod(tmp, 0o666 & ~_UMASK)
        with open(tmp, "rb+") as f:
            os.fsync(f.fileno())
        if replace:
            os.replace(tmp, path)
        else:
            _claim(tmp, path)
    finally:
        try:
            os.unlink(tmp)
        except FileNotFoundError:
            pass


class NameTaken(FileExistsError):
    """atomic_path(replace=False) found its name taken when it came to claim it."""


def _claim(tmp: Path, path: Path) -> None:
    """Give `tmp` the name `path` only if nothing holds that name: a hard link fails on an
    existing name atomically. Where the file system has no hard links, check, then rename."""
    try:
        os.link(tmp, path)
    except FileExistsError:
        raise NameTaken(errno.EEXIST, "exists", str(path)) from None
    except OSError as e:
        if e.errno not in (errno.EPERM, errno.ENOTSUP, errno.EOPNOTSUPP, errno.EMLINK, errno.EXDEV, errno.ENOSYS):
            raise
        if os.path.lexists(path):
            raise NameTaken(errno.EEXIST, "exists", str(path)) from None
        os.replace(tmp, path)


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


def _same(a: Path, b: Path) -> bool:
    try:
        return os.path.samefile(a, b)
    except OSError:
        return False


def overwrite_hint(flag: str) -> str:
    return f"add --overwrite to replace it, or choose another {flag}" if flag.startswith("-") else \
        f"pass overwrite=True to replace it, or choose another {flag}"


class Output:
    """A file a verb writes for the user. Made before any work, it refuses in one line: a folder
    or device, an unwritable place, an existing file (unless `overwrite`), and any of `inputs`
    (always: a command never writes over what it reads). `write_*` / `writing()` then create
    it atomically; without `overwrite` a file that appeared under the name meanwhile is kept and
    the write refused. `flag` is how the user named the path (-o, --out, path=...)."""

    def __init__(self, path: str | Path, flag: str = "-o", *, overwrite: bool = False,
                 inputs: Iterable[str | Path | None] = ()):
        checked = check_output(path, flag)
        if checked is None:
            raise SeqlabError(f"{flag} is empty; give a file name")
        self.path, self.flag, self.overwrite = checked, flag, bool(overwrite)
        for given in inputs:
            if given is not None and given != "" and _same(Path(given), self.path):
                raise SeqlabError(f"{flag} {self.path} is also this command's input {given}; writing it would "
                                  f"destroy what is read: choose another {flag}")
        if os.path.lexists(self.path) and not self.overwrite:
            raise SeqlabError(f"{flag} {self.path} exists; {overwrite_hint(flag)}")

    def __fspath__(self) -> str:
        return str(self.path)

    def __str__(self) -> str:
        return str(self.path)

    @contextmanager
    def writing(self) -> Iterator[Path]:
        """A temporary path to write (by any library); it becomes the output when the block ends."""
        try:
            with atomic_path(self.path, replace=self.overwrite) as tmp:
                yield tmp
        except NameTaken:
            raise SeqlabError(f"{self.flag} {self.path} was created by something else while seqlab worked; it "
                              f"was left as it is and nothing was written ({overwrite_hint(self.flag)})") from None

    def write_bytes(self, data: bytes) -> Path:
        with self.writing() as tmp:
            tmp.write_bytes(data)
        return self.path

    def write_text(self, text: str) -> Path:
        return self.write_bytes(text.encode("utf-8"))


def output(path: str | Path | None, flag: str, overwrite: bool = False,
           inputs: Iterable[str | Path | None] = ()) -> Output | None:
    """Output(path, ...) for an optional path: None stays None."""
    return None if path is None else Output(path, flag, overwrite=overwrite, inputs=inputs)


def output_folder(path: str | Path, flag: str, names: Iterable[str], overwrite: bool = False,
                  inputs: Iterable[str | Path | None] = ()) -> dict[str, Output]:
    """Outputs for several files in one folder (tunes, rendered MIDI and pictures): the folder may
    exist, but none of `names` in it may (unless `overwrite`); each is claimed as it is written."""
    folder = Path(path)
    if folder.exists() and not folder.is_dir():
        raise SeqlabError(f"{flag} {folder} is a file; give a folder")
    inputs = [i for i in inputs if i is not None]
    for given in inputs:
        if _same(Path(given), folder):
            raise SeqlabError(f"{flag} {folder} is also this command's input; choose another folder")
    outs, taken = {}, []
    for name in names:
        target = folder / name
        if os.path.lexists(target) and not overwrite:
            taken.append(name)
            continue
        outs[name] = Output(target, flag, overwrite=overwrite, inputs=inputs)
    if taken:
        raise SeqlabError(f"{flag} {folder} already holds {taken[0]}" + (f" and {len(taken) - 1} more of the files to "
                          f"write" if len(taken) > 1 else "") + f"; {overwrite_hint(flag)} (or give an empty folder)")
    return outs


def writing(target: "str | Path | Output") -> "contextlib.AbstractContextManager[Path]":
    """The temporary path to write `target` through: an Output's own claim, or atomic_path for a
    plain path (a file inside a run folder or cache, which seqlab owns and replaces)."""
    return target.writing() if isinstance(target, Output) else atomic_path(target)


# -- reading what the user gives ---------------------------------------------------------------

def _size_text(n: int) -> str:
    return f"{n / 1e6:.1f} MB" if n >= 1e6 else f"{n:,} bytes"


def input_file(path: str | Path, flag: str = "", *, inside: str | Path | None = None,
               max_bytes: int | None = None, what: str = "file") -> Path:
    """Check a file a command reads, before opening it: it exists, is a regular file (not a FIFO
    that would block, nor a device), is at most `max_bytes`, and, with `inside`, lies inside that
    folder once links are followed (a link out of a folder a user shares is refused)."""
    path = Path(path)
    name = f"{flag} {path}" if flag else str(path)
    try:
        info = path.stat()
    except FileNotFoundError:
        raise SeqlabError(f"{name}: no such file" + (" (a link to nothing)" if path.is_symlink() else "")) from None
    except OSError as e:
        raise SeqlabError(f"{name}: cannot read it ({e.strerror or e})") from None
    import stat
    if stat.S_ISDIR(info.st_mode):
        raise SeqlabError(f"{name} is a folder; give a {what}")
    if not stat.S_ISREG(info.st_mode):
        raise SeqlabError(f"{name} is not a regular file (a FIFO, socket or device); give a {what}")
    if inside is not None:
        root = Path(inside).resolve()
        if not path.resolve().is_relative_to(root):
            raise SeqlabError(f"{name} is a link to {path.resolve()}, outside {inside}; only files inside the "
                              f"folder are read (copy the file in, or remove the link)")
    if max_bytes is not None and info.st_size > max_bytes:
        raise SeqlabError(f"{name} is {_size_text(info.st_size)}, more than the {_size_text(max_bytes)} a {what} "
                          f"may be here")
    return path


def read_input(path: str | Path, flag: str = "", *, inside: str | Path | None = None,
               max_bytes: int | None = None, what: str = "file") -> bytes:
    """The bytes of a checked input file (input_file), read with the same bound (a file that grew
    meanwhile is read only up to it)."""
    path = input_file(path, flag, inside=inside, max_bytes=max_bytes, what=what)
    try:
        with open(path, "rb") as f:
            data = f.read(max_bytes + 1) if max_bytes is not None else f.read()
    except OSError as e:
        raise SeqlabError(f"{path}: cannot read it ({e.strerror or e})") from None
    if max_bytes is not None and len(data) > max_bytes:
        raise SeqlabError(f"{path} grew past {_size_text(max_bytes)} while being read")
    return data


def folder_files(folder: str | Path, suffixes: Iterable[str], flag: str = "", *,
                 max_bytes: int | None = None) -> list[Path]:
    """The files of `folder` (not below it) whose suffix is one of `suffixes`, sorted, each
    checked by input_file(inside=folder): a link out of the folder, a FIFO or an oversized file
    is refused in one line naming it."""
    folder = Path(folder)
    name = f"{flag} {folder}" if flag else str(folder)
    if not folder.is_dir():
        raise SeqlabError(f"{name} is not a folder")
    wanted = {s.lower() for s in suffixes}
    try:
        entries = sorted(folder.iterdir())
    except OSError as e:
        raise SeqlabError(f"{name}: cannot list it ({e.strerror or e})") from None
    return [input_file(p, inside=folder, max_bytes=max_bytes) for p in entries
            if p.suffix.lower() in wanted and not p.is_dir()]


def json_loads(text: str | bytes):
    """json.loads for files seqlab did not necessarily write (a run folder a stranger sent): JSON
    nested too deeply for the parser raises ValueError like any other malformed JSON, not
    RecursionError."""
    import json
    try:
        return json.loads(text)
    except RecursionError:
        raise ValueError("JSON nested too deeply") from None
