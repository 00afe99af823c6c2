"""bench/speed.py at toy sizes: every candidate runs, the ratios are against the right module,
and the seqlab-model rows time the module model.impl=auto builds. Not the speed itself: that
needs the full sizes and a quiet machine (benchmarks/speed.md)."""
import json

import torch
from torch import nn

from seqlab.bench import speed
from seqlab.models.kernels import fused, native
from seqlab.models.stack import RecurrentStack


def test_model_module_is_what_auto_builds():
    # the standard cells with default options: PyTorch's own modules (models/recurrent.py); the
    # LSTM through models/kernels/fused.py, which keeps bf16 autocast working on AVX2-only CPUs
    assert type(speed.model_module("lstm", 8)) is fused.LSTM and issubclass(fused.LSTM, nn.LSTM)
    assert type(speed.model_module("gru", 8)) is nn.GRU
    assert type(speed.model_module("rnn", 8)) is nn.RNN
    assert isinstance(speed.model_module("lstm", 8, impl="fast"), RecurrentStack)


def test_speed_report_rows_and_ratios(tmp_path):
    threads = torch.get_num_threads()
    try:
        result = speed.run_speed(str(tmp_path / "speed"), repeats=1, batch=2, steps=3, hidden=8, warmup=0)
    finally:
        torch.set_num_threads(threads)
    rows = {r["name"]: r for r in result["rows"]}
    for name, own in (("seqlab lstm", "nn.LSTM"), ("seqlab gru", "nn.GRU"), ("seqlab rnn", "nn.RNN"),
                      ("fast lstm", "nn.LSTM"), ("fast gru", "nn.GRU"), ("fast elman-tanh", "nn.RNN")):
        assert rows[name]["own_module"] == own
        want = rows[name]["median_tok_per_s"] / rows[own]["median_tok_per_s"]
        assert abs(rows[name]["vs_own_module"] - want) < 1e-9 * want
    assert rows["seqlab lstm"]["path"].endswith(": LSTM")
    for name in ("nn.LSTM", "naive lstm", "fast lstm-peephole", "fast lstm-layernorm", "fast gru-layernorm"):
        assert rows[name]["vs_own_module"] is None and rows[name]["median_tok_per_s"] > 0
    if native.available():     # (tests/models/test_native.py fails where it is not, unless SEQLAB_NATIVE=0)
        assert rows["fast lstm-layernorm"]["path"] == "seqlab fused C++ loop (models/kernels/native)"
        assert rows["fast lstm-layernorm (python)"]["path"].startswith("seqlab fast path in Python")
    assert rows["fast gru-layernorm"]["path"] == "seqlab fast path (hand-written BPTT)"
    assert json.loads((tmp_path / "results" / "speed.json").read_text())["rows"] == result["rows"]
    assert "| seqlab lstm |" in (tmp_path / "speed.md").read_text()
