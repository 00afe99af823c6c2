"""Shared fixtures: small generated corpora (no downloads) and a private data cache."""
from __future__ import annotations

import os
import random
import sys
from pathlib import Path

import pytest
import torch

# The plug-in example (tests/plugin_example: a model family, a task and a verb from outside
# seqlab) is on the path of every test and of the commands they start, as an installed
# package would be: seqlab finds it through its entry points only.
PLUGIN = str(Path(__file__).parent / "plugin_example")
sys.path.insert(0, PLUGIN)
os.environ["PYTHONPATH"] = os.pathsep.join([PLUGIN] + [p for p in os.environ.get("PYTHONPATH", "").split(os.pathsep) if p])


def make_text(n_chars: int = 20000, seed: int = 0) -> str:
    """A toy language with structure to learn: words from a small lexicon in short lines."""
    rng = random.Random(seed)
    words = ["the", "king", "queen", "shall", "speak", "now", "and", "my", "lord", "of", "thee",
             "sweet", "love", "night", "death", "crown", "what", "is", "honour", "a", "word"]
    lines, size = [], 0
    while size < n_chars:
        line = " ".join(rng.choice(words) for _ in range(rng.randint(3, 9))).capitalize() + "."
        lines.append(line)
        size += len(line) + 1
    return "\n".join(lines)[:n_chars] + "\n"


@pytest.fixture(autouse=True)
def _isolated(tmp_path, monkeypatch):
    # Never touch the user's cache; keep each test single-threaded and deterministic.
    monkeypatch.setenv("SEQLAB_DATA", str(tmp_path / "cache"))
    torch.manual_seed(0)
    before = torch.get_num_threads()
    torch.set_num_threads(1)    # tiny models: one thread is fastest, and steady on a shared machine
    yield
    torch.set_num_threads(before)


@pytest.fixture
def browser():
    """A headless Chromium (tests/cdp.py); without one the test fails with how to install it,
    unless SEQLAB_SKIP_BROWSER=1 says to skip it."""
    import os

    from cdp import INSTALL_HINT, Chromium, find_chromium
    if find_chromium() is None:
        if os.environ.get("SEQLAB_SKIP_BROWSER") == "1":
            pytest.skip("SEQLAB_SKIP_BROWSER=1 and chromium is not installed")
        pytest.fail("the browser tests need chromium: " + INSTALL_HINT)
    with Chromium() as chromium:
        yield chromium


@pytest.fixture
def one_thread():
    """Says in a test's signature that it relies on one thread (every test runs on one: _isolated)."""


@pytest.fixture
def text_file(tmp_path):
    path = tmp_path / "corpus.txt"
    path.write_text(make_text(), encoding="utf-8")
    return path


TINY = [
    "model.embedding_size=16", "model.hidden_size=32", "model.num_layers=2", "model.dropout=0.1",
    "train.batch_size=4", "train.bptt_steps=20", "train.eval_every=10", "train.log_every=5",
    "train.progress=false", "train.eval_batch_size=4", "train.eval_tokens=400",
]


def require_native() -> None:
    """Fail with the build's reason when the native library (models/kernels/native) did not
    build (CI has g++); SEQLAB_NATIVE=0 skips on purpose."""
    import os

    from seqlab.models.kernels import native
    if not native.available():
        if os.environ.get("SEQLAB_NATIVE") == "0":
            pytest.skip("SEQLAB_NATIVE=0")
        pytest.fail(f"the native kernels are unavailable: {native.reason()}")


@pytest.fixture
def kernels():
    """A test that needs the native library (see require_native)."""
    require_native()


@pytest.fixture(params=["native", "python"])
def lstm_path(request):
    """Run the test once on the fused C++ LSTM (models/kernels/native) and once on the Python fast
    path (parametrize it indirectly, with `paths_for`, to run the other cells only once)."""
    from seqlab.models.kernels import native
    if request.param == "native":
        require_native()
    with native.enabled(request.param == "native"):
        yield request.param


def paths_for(names, is_lstm=lambda name: name.startswith("lstm")):
    """(name, path) pairs for an indirect `lstm_path` parametrization: both paths for the
    LSTMs, which have the fused C++ kernels, one for every other cell."""
    return [(n, p) for n in names for p in (("native", "python") if is_lstm(n) else ("python",))]


# hypothesis: the same examples on every run (CI must not flake on a rare draw);
# HYPOTHESIS_PROFILE=explore draws new ones each time, for hunting bugs by hand
try:
    from hypothesis import settings as _hypothesis_settings
    _hypothesis_settings.register_profile("ci", derandomize=True, database=None)
    _hypothesis_settings.register_profile("explore", derandomize=False)
    import os as _os
    _hypothesis_settings.load_profile(_os.environ.get("HYPOTHESIS_PROFILE", "ci"))
except ImportError:   # pragma: no cover - hypothesis is in requirements.lock
    pass
