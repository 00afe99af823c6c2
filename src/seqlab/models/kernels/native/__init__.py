"""seqlab's fused CPU kernels (lstm.cpp, decode.cpp), built once per machine with the system C++ compiler.

    available() -> bool     True once the library is loaded (built on first call if needed)
    reason() -> str         why not, when available() is False
    tried(), library_path(), build_root()   for `seqlab info`
    enabled(flag) -> ctx    turn the kernels off (or on) inside a `with` block, for tests
                            and for timing both paths side by side

The library is compiled from the source files (and their shared maths.h) with g++ (or $CXX) against the installed
torch's headers and libraries, into ~/.cache/seqlab/native/<torch version>-<hash of source,
flags and compiler>/ (or $SEQLAB_NATIVE_DIR; a temporary folder when the home directory
cannot be written), and loaded with torch.ops.load_library. It registers
torch.ops.seqlab_native.lstm_forward / lstm_backward (and the small helpers time_major,
pooled_empty and gate_functions, the last for the accuracy test), and decoding's
lstm_decode_step and draw_rows (decode.cpp). The build takes about
20 s on two cores and says so on stderr; it runs under a file lock, so that parallel
processes (torchrun ranks, test workers) build it once, and the library is written under a
temporary name and renamed into place, so that a killed build leaves nothing half written.

Nothing depends on it for correctness: without a compiler, or with SEQLAB_NATIVE=0, the
Python fast path (models/kernels/fast.py) runs the same computation, 1.1-1.5× slower for the LSTM
variants (benchmarks/speed.md, the "(python)" rows). A failed build is reported once, with the compiler's last
lines, and not retried in the same process.
"""
from __future__ import annotations

import contextlib
import fcntl
import hashlib
import os
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import torch

__all__ = ["available", "reason", "enabled", "tried", "library_path", "build_root", "compiler"]

SOURCES = [Path(__file__).with_name(name) for name in ("lstm.cpp", "decode.cpp")]
HEADERS = [Path(__file__).with_name("maths.h")]
_state: dict = {"loaded": False, "tried": False, "reason": "", "on": True}


def _flags() -> list[str]:
    from torch.utils import cpp_extension     # slow to import (setuptools): only when the kernels are built
    flags = ["-O3", "-std=c++17", "-fPIC", "-shared", "-fopenmp-simd", "-fno-math-errno", "-fno-trapping-math",
             f"-D_GLIBCXX_USE_CXX11_ABI={int(torch._C._GLIBCXX_USE_CXX11_ABI)}",
             "-DTORCH_EXTENSION_NAME=seqlab_native"]
    # vector width: what this machine's torch dispatches to (AVX2 or better -> 256-bit + FMA)
    if torch.backends.cpu.get_cpu_capability() in ("AVX2", "AVX512"):
        flags += ["-mavx2", "-mfma"]
    for inc in cpp_extension.include_paths():
        flags += ["-isystem", inc]
    lib = cpp_extension.library_paths()[0]
    flags += [f"-L{lib}", f"-Wl,-rpath,{lib}", "-lc10", "-ltorch_cpu", "-ltorch"]
    return flags


def compiler() -> str | None:
    """The C++ compiler a build would use ($CXX, else g++), or None when there is none."""
    cxx = os.environ.get("CXX", "g++")
    return shutil.which(cxx)


def build_root() -> Path:
    """$SEQLAB_NATIVE_DIR, else ~/.cache/seqlab/native, else (a home that cannot be written,
    as on some CI runners) a per-user folder in the temporary directory."""
    if os.environ.get("SEQLAB_NATIVE_DIR"):
        return Path(os.environ["SEQLAB_NATIVE_DIR"])
    home = Path.home() / ".cache" / "seqlab" / "native"
    try:
        home.mkdir(parents=True, exist_ok=True)
        if os.access(home, os.W_OK):
            return home
    except OSError:
        pass
    return Path(tempfile.gettempdir()) / f"seqlab-native-{os.getuid()}"


def _build_dir(cxx: str, flags: list[str]) -> Path:
    key = hashlib.sha256()
    for path in SOURCES + HEADERS:
        key.update(path.read_bytes())
    key.update(" ".join([cxx] + flags).encode())
    return build_root() / f"torch{torch.__version__}-{key.hexdigest()[:16]}"


def _build(cxx: str, flags: list[str], target: Path) -> None:
    target.parent.mkdir(parents=True, exist_ok=True)
    with open(target.parent / ".lock", "w") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)                     # one builder; the others wait, then load
        if target.exists():
            return
        print("seqlab: building the fused CPU kernels (once per machine, about 20 s on two cores; "
              "`seqlab info --build-native` does it ahead) ...", file=sys.stderr, flush=True)
        started = time.perf_counter()
        fd, tmp = tempfile.mkstemp(dir=target.parent, suffix=".so.tmp")
        os.close(fd)
        try:
            cmd = [cxx, *map(str, SOURCES), "-o", tmp] + flags
            done = subprocess.run(cmd, capture_output=True, text=True)
            if done.returncode != 0:
                tail = "\n".join((done.stderr or done.stdout).strip().splitlines()[-8:])
                raise RuntimeError(f"{cxx} failed (exit {done.returncode}):\n{tail}")
            os.replace(tmp, target)
            print(f"seqlab: built the fused CPU kernels in {time.perf_counter() - started:.1f} s ({target.parent})",
                  file=sys.stderr, flush=True)
        finally:
            if os.path.exists(tmp):
                os.unlink(tmp)


def _load() -> None:
    _state["tried"] = True
    if os.environ.get("SEQLAB_NATIVE", "1") == "0":
        _state["reason"] = "turned off by SEQLAB_NATIVE=0"
        return
    cxx = compiler()
    if cxx is None:
        _state["reason"] = "no C++ compiler (install g++, or set CXX)"
        return
    try:
        flags = _flags()
        target = _build_dir(cxx, flags) / "seqlab_native.so"
        if not target.exists():
            _build(cxx, flags, target)
        torch.ops.load_library(str(target))
        _state["loaded"], _state["path"] = True, str(target)
    except Exception as e:                                   # noqa: BLE001 - the Python path takes over
        _state["reason"] = f"{type(e).__name__}: {e}"
        print(f"seqlab: the fused CPU kernels are unavailable, the Python fast path runs instead "
              f"(same results, slower). Reason: {_state['reason']}", file=sys.stderr, flush=True)


def available() -> bool:
    """True when the fused kernels are loaded and switched on; builds them on first call."""
    if not _state["on"]:
        return False
    if not _state["tried"]:
        _load()
    return _state["loaded"]


def tried() -> bool:
    """Whether this process has tried to load (or build) the kernels yet."""
    return _state["tried"]


def library_path() -> str:
    """The library's path: the loaded one, else one already built for this machine and
    torch (loaded on first use); '' when there is none."""
    if _state["loaded"]:
        return _state["path"]
    cxx = compiler()
    if cxx is None or os.environ.get("SEQLAB_NATIVE", "1") == "0":
        return ""
    target = _build_dir(cxx, _flags()) / "seqlab_native.so"
    return str(target) if target.exists() else ""


def reason() -> str:
    available()
    return "" if _state["loaded"] and _state["on"] else (_state["reason"] or "switched off")


@contextlib.contextmanager
def enabled(flag: bool):
    """`with native.enabled(False): ...` runs the Python fast path inside the block."""
    before = _state["on"]
    _state["on"] = flag
    try:
        yield
    finally:
        _state["on"] = before
