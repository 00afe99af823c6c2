"""bf16 autocast over PyTorch's fused LSTM on every x86-64 CPU (issue 14, point 1).

oneDNN has a bfloat16 LSTM primitive only with AVX-512. On an AVX2-only CPU (AMD Zen 3, say)
nn.LSTM under bf16 autocast dies; seqlab's `models.fused.LSTM` runs its recurrence in float32
there instead. `ONEDNN_MAX_CPU_ISA=AVX2` makes oneDNN behave as on such a CPU, so the AVX2
tests below run in a subprocess on every machine, and the in-process tests check whatever
this machine's CPU does.
"""
import os
import subprocess
import sys
import textwrap

import torch
from torch import nn

from seqlab.models.kernels import fused

AVX2_ONLY = dict(os.environ, ONEDNN_MAX_CPU_ISA="AVX2", PYTHONUNBUFFERED="1")


def _pair(seed: int = 0):
    torch.manual_seed(seed)
    ours = fused.LSTM(6, 12, num_layers=2, batch_first=True)
    plain = nn.LSTM(6, 12, num_layers=2, batch_first=True)
    plain.load_state_dict(ours.state_dict())
    return ours, plain


def test_the_wrapper_is_an_nn_lstm_with_the_same_parameters():
    ours, plain = _pair()
    assert isinstance(ours, nn.LSTM)
    assert list(ours.state_dict()) == list(plain.state_dict())
    x = torch.randn(3, 7, 6)
    torch.testing.assert_close(ours(x)[0], plain(x)[0], rtol=0, atol=0)     # outside autocast: nn.LSTM


def test_under_bf16_autocast_on_this_cpu():
    """Native bfloat16 where this CPU's oneDNN has it, else float32 recurrence equal to nn.LSTM's."""
    ours, plain = _pair()
    x = torch.randn(3, 7, 6, requires_grad=True)
    with torch.autocast("cpu", dtype=torch.bfloat16):
        out, (h, c) = ours(x)
    out.float().sum().backward()
    assert x.grad is not None and torch.isfinite(x.grad).all()
    if fused.bf16_lstm_supported():
        assert out.dtype == torch.bfloat16
        torch.testing.assert_close(out.float(), plain(x)[0], rtol=0, atol=0.05)   # bfloat16's 8 bits
    else:
        assert out.dtype == torch.float32
        torch.testing.assert_close(out, plain(x)[0], rtol=0, atol=0)


PROBE = textwrap.dedent("""
    import torch
    from torch import nn
    from seqlab.models.kernels import fused
    torch.manual_seed(0)
    plain = nn.LSTM(6, 12, num_layers=2, batch_first=True)
    ours = fused.LSTM(6, 12, num_layers=2, batch_first=True)
    ours.load_state_dict(plain.state_dict())
    x = torch.randn(3, 7, 6, requires_grad=True)
    try:
        with torch.autocast("cpu", dtype=torch.bfloat16):
            plain(x)
        plain_runs = True
    except RuntimeError as e:
        plain_runs = False
        assert "primitive descriptor" in str(e), e
    # the probe agrees with what nn.LSTM itself does
    assert fused.bf16_lstm_supported() == plain_runs, (fused.bf16_lstm_supported(), plain_runs)
    with torch.autocast("cpu", dtype=torch.bfloat16):
        out, (h, c) = ours(x, None)
    out.sum().backward()
    print("supported", fused.bf16_lstm_supported(), out.dtype, h.dtype)
    if not plain_runs:
        assert out.dtype == h.dtype == torch.float32
        torch.testing.assert_close(out, plain(x)[0], rtol=0, atol=0)
    print("ok")
""")


def test_an_avx2_only_cpu_runs_the_recurrence_in_float32():
    done = subprocess.run([sys.executable, "-c", PROBE], env=AVX2_ONLY, capture_output=True, text=True, timeout=120)
    assert done.returncode == 0, done.stdout + done.stderr
    assert "supported False torch.float32 torch.float32" in done.stdout
    assert done.stdout.rstrip().endswith("ok")


def test_bf16_training_on_an_avx2_only_cpu_trains_and_says_so(tmp_path, text_file):
    cmd = [sys.executable, "-m", "seqlab.cli", "train", f"data.path={text_file}", "model.hidden_size=16",
           "model.embedding_size=8", "model.num_layers=1", "train.max_steps=6", "train.batch_size=4",
           "train.bptt_steps=16", "train.eval_every=6", "train.progress=false", "train.threads=1",
           "train.precision=bf16", "--out", str(tmp_path / "run")]
    done = subprocess.run(cmd, env=AVX2_ONLY, capture_output=True, text=True, timeout=180)
    assert done.returncode == 0, done.stdout + done.stderr
    assert "no bfloat16 LSTM in oneDNN" in done.stdout + done.stderr
    assert (tmp_path / "run" / "model.safetensors").is_file()


def test_seqlab_info_names_the_fallback_on_an_avx2_only_cpu():
    done = subprocess.run([sys.executable, "-m", "seqlab.cli", "info"], env=AVX2_ONLY, capture_output=True,
                          text=True, timeout=120)
    assert done.returncode == 0, done.stderr
    line = next(line for line in done.stdout.splitlines() if line.startswith("bf16 on CPU"))
    assert "recurrence in float32" in line
    assert any(line.startswith("CPU features") and "avx2" in line for line in done.stdout.splitlines())
