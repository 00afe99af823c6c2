"""How every `seqlab` command ends: seqlab's errors as one line and exit 2, Ctrl-C as 130,
SIGTERM and SIGHUP as 128 + the signal after unwinding (temporaries removed; training saves a
checkpoint first), a file system's refusal as one line naming the file, and a closed stdout
as the end of a verb whose job is to print, never of one (train) whose output is a side report."""
from __future__ import annotations

import os
import sys
from pathlib import Path

from seqlab import Interrupted, SeqlabError, Terminated


def _stop_on_signals() -> None:
    """SIGTERM and SIGHUP unwind a command like Ctrl-C (its temporaries are removed, its output
    left as it was); training catches them itself to save a checkpoint first."""
    import signal

    def stop(signum, frame):
        raise Terminated(signum)
    for name in ("SIGTERM", "SIGHUP"):
        if hasattr(signal, name):
            try:
                signal.signal(getattr(signal, name), stop)
            except ValueError:          # not the main thread (seqlab.cli.main called from a thread)
                pass


# verbs whose job is what they print: a closed stdout (`| head`) ends them quietly with exit 0.
# Every other verb (train above all) keeps working when its stdout closes.
PRINTING = {"sample", "eval", "classify", "tag", "translate", "caption", "forecast", "data", "info"}


class _Forgiving:
    """stdout for a verb whose output is a report on the side: once the reader has gone (a closed
    pipe), further writes are dropped, and the work goes on. Said once on stderr."""

    def __init__(self, stream):
        self._stream, self._closed = stream, False

    def write(self, text):
        if self._closed:
            return len(text)
        try:
            return self._stream.write(text)
        except BrokenPipeError:
            self._gone()
            return len(text)

    def flush(self):
        if not self._closed:
            try:
                self._stream.flush()
            except BrokenPipeError:
                self._gone()

    def _gone(self):
        self._closed = True
        try:
            devnull = os.open(os.devnull, os.O_WRONLY)
            os.dup2(devnull, self._stream.fileno())      # the interpreter's own last flush stays quiet
            os.close(devnull)
        except (OSError, ValueError, AttributeError):
            pass
        print("seqlab: stdout was closed; carrying on (the run folder keeps every number)", file=sys.stderr)

    def __getattr__(self, name):
        return getattr(self._stream, name)


def guarded(command, verb: str | None = None) -> int:
    """Run a command, turning seqlab's errors, Ctrl-C and signals into one line and an exit status."""
    _stop_on_signals()
    original = sys.stdout
    if verb is not None and verb not in PRINTING and not isinstance(original, _Forgiving):
        sys.stdout = _Forgiving(original)
    try:
        return _run(command, verb)
    finally:
        if isinstance(sys.stdout, _Forgiving) and sys.stdout is not original:
            sys.stdout = original


def _run(command, verb: str | None) -> int:
    try:
        return command()
    except SeqlabError as e:
        print(f"seqlab: error: {e}", file=sys.stderr)
        return 2
    except Interrupted as e:
        return 128 + e.signal
    except Terminated as e:
        import signal
        print(f"\nseqlab: stopped by {signal.Signals(e.signal).name}", file=sys.stderr)
        return 128 + e.signal
    except KeyboardInterrupt:
        print("\nseqlab: interrupted", file=sys.stderr)
        return 130
    except BrokenPipeError:   # `seqlab sample RUN | head`: the reader has what it wanted
        try:
            devnull = os.open(os.devnull, os.O_WRONLY)
            os.dup2(devnull, sys.stdout.fileno())
            os.close(devnull)
        except (OSError, ValueError):
            pass
        if verb is not None and verb not in PRINTING:
            print("seqlab: error: stdout was closed before the command finished", file=sys.stderr)
            return 1
        return 0
    except OSError as e:      # a file system's refusal that no command foresaw: still one line
        if os.environ.get("SEQLAB_DEBUG"):
            raise
        print(f"seqlab: error: {_os_error(e)}", file=sys.stderr)
        return 2


def _os_error(e: OSError) -> str:
    """What failed, where, and what to do about it."""
    import errno

    from seqlab.data.sources import cache_dir
    where = f"{e.filename}: " if e.filename else ""
    hint = {errno.EACCES: "fix its permissions or choose another path", errno.EPERM: "fix its permissions or choose another path",
            errno.EROFS: "the file system is read-only; choose another path", errno.ENOSPC: "the disk is full; free some space",
            errno.ENOTDIR: "a part of the path is a file, not a folder", errno.EISDIR: "it is a folder; give a file",
            }.get(e.errno or 0, "")
    try:
        cached = e.filename and Path(str(e.filename)).resolve().is_relative_to(cache_dir().resolve())
    except (OSError, ValueError, SeqlabError):
        cached = False
    if cached:
        hint = (hint + "; " if hint else "") + "the data cache lives in $SEQLAB_DATA (or ~/.cache/seqlab): point it at a writable folder"
    return f"{where}{e.strerror or e}" + (f" ({hint})" if hint else "")

