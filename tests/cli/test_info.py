"""`seqlab info`: every line there, the kernels' state reported without building them, and
--build-native building them now or saying in one line why it cannot."""
import pytest

from seqlab import cli
from seqlab.models.kernels import native


@pytest.fixture
def fresh_native(monkeypatch, tmp_path):
    monkeypatch.setenv("SEQLAB_NATIVE_DIR", str(tmp_path / "build"))
    monkeypatch.setattr(native, "_state", {"loaded": False, "tried": False, "reason": "", "on": True})
    return tmp_path / "build"


def test_info_reports_without_building(fresh_native, capsys):
    assert cli.main(["info"]) == 0
    out = capsys.readouterr().out
    for key in ("seqlab", "python", "torch", "torch threads", "CPU", "CPU features", "oneDNN", "bf16 on CPU", "GPUs",
                "fused LSTM kernels", "data cache", "sound tools"):
        assert any(line.startswith(key + " ") for line in out.splitlines()), key
    assert "not built yet" in out and str(fresh_native) in out
    assert not list(fresh_native.rglob("*.so"))


def test_build_native_refused_in_one_line(fresh_native, monkeypatch, capsys):
    monkeypatch.setenv("SEQLAB_NATIVE", "0")
    assert cli.main(["info", "--build-native"]) == 2
    err = capsys.readouterr().err.strip()
    assert err == "seqlab: error: the fused CPU kernels could not be built: turned off by SEQLAB_NATIVE=0"


def test_no_compiler_is_reported(fresh_native, monkeypatch, capsys):
    monkeypatch.setenv("CXX", "no-such-compiler-here")
    assert cli.main(["info"]) == 0
    assert "no C++ compiler" in capsys.readouterr().out
