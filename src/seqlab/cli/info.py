"""`seqlab info`: what this installation runs on, for users and for bug reports.

Versions (seqlab, Python, torch and its build), threads, the CPU's vector extensions, oneDNN,
GPUs, whether seqlab's fused C++ LSTM kernels are built (and why not), the data cache, and the
sound tools (espeak-ng for the speech corpus, fluidsynth for the tunes' audio).
`--build-native` builds the kernels now instead of at the first training run that needs
them: for a container image, or before a torchrun job.
Its imports sit inside the functions for the same reason as cli.py's: start-up time.
"""
from __future__ import annotations

import os
import platform
import sys

import torch

from seqlab import SeqlabError, __version__


def report(build_native: bool = False) -> list[tuple[str, str]]:
    from seqlab.data import sources
    from seqlab.models.kernels import native

    if build_native and not native.available():
        raise SeqlabError(f"the fused CPU kernels could not be built: {native.reason()}")
    gpus = [torch.cuda.get_device_name(i) for i in range(torch.cuda.device_count())] if torch.cuda.is_available() else []
    kernels = _kernels(native)
    cached = [n for n in sources.corpus_names() if sources.corpus(n).is_ready()]
    return [
        ("seqlab", __version__),
        ("python", f"{platform.python_version()} ({sys.executable})"),
        ("torch", f"{torch.__version__} ({'CUDA ' + torch.version.cuda if torch.version.cuda else 'CPU build'})"),
        ("torch threads", f"{torch.get_num_threads()} intra-op (train.threads sets them for a run)"),
        ("CPU", f"{platform.machine()}, vector extensions torch uses: {torch.backends.cpu.get_cpu_capability()}"),
        ("CPU features", _cpu_features()),
        ("oneDNN", "available" if torch.backends.mkldnn.is_available() else "not in this torch build"),
        ("bf16 on CPU", _bf16_on_cpu()),
        ("GPUs", ", ".join(gpus) if gpus else "none"),
        ("fused LSTM kernels", kernels),
        ("data cache", f"{sources.cache_dir()} (SEQLAB_DATA moves it); corpora fetched: {', '.join(cached) or 'none'}"),
        ("sound tools", _sound_tools()),
    ]


def _sound_tools() -> str:
    """The Debian programs behind the speech corpus and the tunes' audio, found or missing."""
    import shutil
    found = {name: shutil.which(name) is not None for name in ("espeak-ng", "fluidsynth")}
    return ", ".join(f"{name} {'found' if ok else 'missing'}" for name, ok in found.items()) + (
        "" if all(found.values()) else " (make speech / make sound install them as root)")


# The CPU features that change what seqlab runs: AVX2 + FMA pick the C++ kernels' vector
# code; AVX-512 (and AVX512-BF16 / AMX to do it natively) gives oneDNN its bfloat16 LSTM.
_FEATURES = ("avx2", "fma", "avx512f", "avx512_bf16", "amx_bf16")


def _cpu_features() -> str:
    try:
        with open("/proc/cpuinfo", encoding="ascii", errors="replace") as f:
            flags = next((line.split(":", 1)[1].split() for line in f if line.startswith("flags")), [])
    except OSError:
        return "unknown (no /proc/cpuinfo)"
    if not flags:
        return "unknown (no flags line in /proc/cpuinfo)"
    return ", ".join(f"{name} {'yes' if name in flags else 'no'}" for name in _FEATURES)


def _bf16_on_cpu() -> str:
    from seqlab.models.kernels import fused
    if fused.bf16_lstm_supported():
        return "train.precision=bf16 runs every product, PyTorch's fused LSTM included, in bfloat16"
    return ("train.precision=bf16: this CPU's oneDNN has no bfloat16 LSTM (it needs AVX-512), so PyTorch's "
            "fused LSTM runs its recurrence in float32; the other products run in bfloat16")


def _kernels(native) -> str:
    """The fused LSTM kernels' state, without building them (unless this process did)."""
    fallback = "the Python fast path runs instead"
    if native.tried():
        return f"built ({native.library_path()})" if native.available() else f"unavailable, {fallback}: {native.reason()}"
    if os.environ.get("SEQLAB_NATIVE", "1") == "0":
        return f"switched off by SEQLAB_NATIVE=0, {fallback}"
    if native.library_path():
        return f"built ({native.library_path()})"
    if native.compiler() is None:
        return f"no C++ compiler (install g++, or set CXX), {fallback}"
    return ("not built yet: built at the first LSTM-variant run (or now: seqlab info --build-native) "
            f"in {native.build_root()}")


def main(build_native: bool = False) -> int:
    rows = report(build_native)
    width = max(len(k) for k, _ in rows)
    for key, value in rows:
        print(f"{key:<{width}}  {value}")
    return 0
