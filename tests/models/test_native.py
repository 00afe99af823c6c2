"""The fused C++ LSTM (models/kernels/native): that it is the path taken, that its hand-written
backward passes finite differences, that it holds at sizes where rows are split across
threads and at saturating inputs, and that seqlab runs without it."""
import os
import subprocess
import sys
import textwrap

import pytest
import torch

from seqlab.models.kernels import native
from seqlab.models.cells import LSTMCell
from seqlab.models.kernels.fast import run_sequence
from seqlab.models.kernels.native import lstm as native_lstm
from seqlab.models.stack import RecurrentLayer


def _d(*shape):
    return torch.randn(*shape, dtype=torch.float64, requires_grad=True)


def test_lstm_cells_take_the_native_path_when_it_is_on(kernels, monkeypatch):
    calls = []
    real = native_lstm.run
    monkeypatch.setattr(native_lstm, "run", lambda *a, **k: calls.append(1) or real(*a, **k))
    cell = LSTMCell(4, 5, peephole=True, layer_norm=True)
    x = torch.randn(2, 3, 4)
    run_sequence(cell, cell.project(x), cell.init_state(2, x))
    assert calls == [1]
    with native.enabled(False):
        run_sequence(cell, cell.project(x), cell.init_state(2, x))
    assert calls == [1]


def test_gate_functions_against_torch(kernels):
    """The float32 sigmoid and tanh of the row loops (a polynomial exponential), over the whole
    range a gate sees, against torch's in float64: within 3e-7, a few float32 ulps."""
    x = torch.linspace(-100, 100, 2_000_001, dtype=torch.float32)
    sig, tanh = torch.ops.seqlab_native.gate_functions(x)
    assert (sig.double() - torch.sigmoid(x.double())).abs().max() < 3e-7
    assert (tanh.double() - torch.tanh(x.double())).abs().max() < 3e-7
    assert sig[0] >= 0 and sig[-1] == 1 and tanh[0] == -1 and tanh[-1] == 1        # saturated, not past
    nan = torch.ops.seqlab_native.gate_functions(torch.tensor([float("nan")]))
    assert nan[0].isnan().all() and nan[1].isnan().all()


@pytest.mark.parametrize("coupled,peephole,ln,masked,reverse", [
    (False, False, False, False, False),
    (False, True, True, True, False),
    (True, True, True, False, True),
    (True, False, False, True, True),
])
def test_gradcheck(kernels, coupled, peephole, ln, masked, reverse):
    """Finite differences against the C++ backward, every tensor input at once (fast mode)."""
    torch.manual_seed(0)
    H, G = 4, 3 if coupled else 4
    args = (_d(2, 5, G * H), _d(2, H), _d(2, H), _d(G * H, H), None if ln else _d(G * H),
            _d(H) if peephole else None, _d(H) if peephole and not coupled else None,
            _d(H) if peephole else None,
            _d(G * H) if ln else None, _d(G * H) if ln else None, _d(H) if ln else None, _d(H) if ln else None,
            _d(G * H) if ln else None, _d(G * H) if ln else None,             # the fused input norm
            (torch.rand(2, H, dtype=torch.float64) > 0.3).double() if masked else None,
            coupled, reverse, 1e-5, 1e-5, 1e-5)
    assert torch.autograd.gradcheck(native_lstm._LSTMNativeFn.apply, args, eps=1e-6, atol=1e-7, fast_mode=True)


def _grads(cell, x, path_native, threads):
    cell.zero_grad(set_to_none=True)
    x = x.clone().requires_grad_(True)
    before = torch.get_num_threads()
    torch.set_num_threads(threads)
    try:
        with native.enabled(path_native):
            out, (h, c) = run_sequence(cell, cell.project(x), cell.init_state(x.size(0), x))
            (out.square().sum() + c.sum()).backward()
    finally:
        torch.set_num_threads(before)
    return [out, c, x.grad] + [p.grad for p in cell.parameters()]


@pytest.mark.parametrize("ln", [False, True], ids=["plain", "layernorm"])
def test_rows_split_across_threads(kernels, ln):
    """Batch 300 at hidden 64, two threads: the C++ loop hands rows to threads in several
    chunks. Every output and gradient, float32, against the float64 computation of the same
    cell (error relative to each tensor's largest entry; float32 rounding alone is ~1e-6 here,
    the Python path's own error is printed beside it)."""
    import copy
    torch.manual_seed(0)
    cell = LSTMCell(16, 64, peephole=True, layer_norm=ln)
    x = torch.randn(300, 6, 16)
    ours = _grads(cell, x, True, 2)
    python = _grads(cell, x, False, 1)
    truth = _grads(copy.deepcopy(cell).double(), x.double(), False, 1)
    for a, b, t in zip(ours, python, truth):
        scale = t.abs().max()
        err, err_python = (a.double() - t).abs().max() / scale, (b.double() - t).abs().max() / scale
        assert err < 1e-5, (float(err), float(err_python))


def test_saturating_and_nan_inputs(kernels):
    """Pre-activations far past the exponential's clamp saturate the gates exactly as torch's
    sigmoid and tanh do, and a NaN input comes out as NaN (the NaN guard relies on it)."""
    torch.manual_seed(0)
    cell = LSTMCell(3, 8)
    x = torch.randn(2, 5, 3) * 200
    with torch.no_grad():
        ours, _ = run_sequence(cell, cell.project(x), cell.init_state(2, x))
        theirs, _ = RecurrentLayer(cell, fast=False)(x, cell.init_state(2, x))
        torch.testing.assert_close(ours, theirs, rtol=1e-5, atol=1e-6)
        x[1, 2, 0] = float("nan")
        out, _ = run_sequence(cell, cell.project(x), cell.init_state(2, x))
    assert out[1, 2:].isnan().all() and not out[0].isnan().any() and not out[1, :2].isnan().any()


def test_a_failed_build_falls_back_to_the_python_path(tmp_path, monkeypatch, capsys):
    """No compiler that works: one warning with the compiler's words, then the Python path,
    with the same results."""
    broken = tmp_path / "cxx"
    broken.write_text("#!/bin/sh\necho 'fatal error: no such header' >&2\nexit 1\n")
    broken.chmod(0o755)
    monkeypatch.setenv("CXX", str(broken))
    monkeypatch.setenv("SEQLAB_NATIVE_DIR", str(tmp_path / "build"))
    monkeypatch.setattr(native, "_state", {"loaded": False, "tried": False, "reason": "", "on": True})
    assert not native.available()
    assert "no such header" in native.reason()
    assert "Python fast path runs instead" in capsys.readouterr().err
    assert not list((tmp_path / "build").rglob("*.so"))           # nothing half written left behind
    cell = LSTMCell(3, 4, layer_norm=True)
    x = torch.randn(2, 5, 3)
    with torch.no_grad():
        out, _ = run_sequence(cell, cell.project(x), cell.init_state(2, x))
        ref, _ = RecurrentLayer(cell, fast=False)(x, cell.init_state(2, x))
    torch.testing.assert_close(out, ref)


def test_switched_off_by_environment(monkeypatch):
    monkeypatch.setenv("SEQLAB_NATIVE", "0")
    monkeypatch.setattr(native, "_state", {"loaded": False, "tried": False, "reason": "", "on": True})
    assert not native.available()
    assert "SEQLAB_NATIVE=0" in native.reason()


def test_parallel_processes_build_once(kernels, tmp_path):
    """Two processes starting at once (torchrun ranks, say) with an empty build folder: one
    compiles while the other waits on the lock, then both load the one library. The
    'compiler' here copies the library this process built, and counts its calls."""
    count = tmp_path / "calls"
    fake = tmp_path / "cxx"
    fake.write_text(textwrap.dedent(f"""\
        #!/bin/sh
        while [ "$1" != "-o" ]; do shift; done
        echo x >> {count}
        sleep 2
        cp {native._state["path"]} "$2"
        """))
    fake.chmod(0o755)
    env = dict(os.environ, CXX=str(fake), SEQLAB_NATIVE_DIR=str(tmp_path / "build"))
    code = "from seqlab.models.kernels import native; import sys; sys.exit(0 if native.available() else 1)"
    procs = [subprocess.Popen([sys.executable, "-c", code], env=env, stderr=subprocess.PIPE, text=True)
             for _ in range(2)]
    errs = [p.communicate(timeout=120)[1] for p in procs]
    assert [p.returncode for p in procs] == [0, 0], errs
    assert count.read_text().count("x") == 1
    assert sum("building the fused CPU kernels" in e for e in errs) == 1
    built = [e for e in errs if "built the fused CPU kernels in" in e]          # and how long it took
    assert len(built) == 1 and float(built[0].split(" in ")[1].split(" s ")[0]) >= 2.0   # the fake sleeps 2 s


def test_a_home_that_cannot_be_written_builds_in_the_temporary_folder(tmp_path, monkeypatch):
    blocker = tmp_path / "home"
    blocker.write_text("a file where the home folder should be: ~/.cache cannot be made")
    monkeypatch.delenv("SEQLAB_NATIVE_DIR", raising=False)
    monkeypatch.setattr(native.Path, "home", classmethod(lambda cls: blocker))
    monkeypatch.setattr(native.tempfile, "gettempdir", lambda: str(tmp_path / "tmp"))
    assert native.build_root() == tmp_path / "tmp" / f"seqlab-native-{os.getuid()}"
    monkeypatch.setenv("SEQLAB_NATIVE_DIR", str(tmp_path / "chosen"))
    assert native.build_root() == tmp_path / "chosen"


def test_the_kernels_are_loaded_when_the_model_is_made(monkeypatch):
    """Not in the first training step: a build there would count against train.max_time and
    write into the progress bar."""
    calls = []
    monkeypatch.setattr(native, "available", lambda: calls.append(1) or False)
    RecurrentLayer(LSTMCell(3, 4, layer_norm=True))
    assert calls == [1]
    RecurrentLayer(LSTMCell(3, 4), fast=False)                # the autograd loop needs no kernels
    assert calls == [1]


@pytest.mark.parametrize("T,B", [(1, 1), (1, 3), (4, 1)])
def test_one_step_and_one_row(kernels, T, B):
    """The smallest shapes, forward and reverse, against the autograd loop in float64."""
    for options in ({}, {"layer_norm": True, "peephole": True}, {"coupled": True}):
        torch.manual_seed(0)
        cell = LSTMCell(3, 5, **options).double()
        x = torch.randn(B, T, 3, dtype=torch.float64, requires_grad=True)
        state = tuple(torch.randn(B, 5, dtype=torch.float64) for _ in range(2))
        results = []
        for fast in (True, False):
            x.grad = None
            if fast:
                out, (h, c) = run_sequence(cell, cell.project(x), state, reverse=True)
            else:
                out, (h, c) = RecurrentLayer(cell, reverse=True, fast=False)(x, state)
            (out.square().sum() + c.sum()).backward()
            results.append((out.detach(), c.detach(), x.grad.clone()))
        for a, b in zip(*results):
            torch.testing.assert_close(a, b, rtol=1e-10, atol=1e-10)
