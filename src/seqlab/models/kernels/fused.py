"""PyTorch's fused recurrent modules, made safe to run on every CPU under bf16 autocast.

On CPU, nn.LSTM runs oneDNN's fused LSTM primitive. Under `torch.autocast("cpu",
torch.bfloat16)` (what `train.precision=bf16` asks for) autocast hands it bfloat16 tensors,
and oneDNN has a bfloat16 LSTM only on CPUs with AVX-512 (native with AVX512-BF16/AMX,
emulated on plain AVX-512). On an AVX2-only CPU, an AMD EPYC Zen 3 say, the call dies with
"could not create a primitive descriptor for the LSTM forward propagation primitive".

`LSTM` below is nn.LSTM with one difference: where this CPU has no bfloat16 LSTM primitive,
its recurrence runs in float32 with autocast switched off around it — exactly what seqlab's
own cells do under autocast — so the matrix products elsewhere in the model still run in
bfloat16. Parameter names, state_dict and `isinstance(m, nn.LSTM)` are unchanged.
nn.GRU and nn.RNN run ATen's per-step loop on CPU, which has bfloat16 on every CPU.

Whether the primitive exists is probed once per process by running a tiny LSTM; the probe
is honest on every machine, and `ONEDNN_MAX_CPU_ISA=AVX2` reproduces an AVX2-only CPU on a
newer one (the tests use that).
"""
from __future__ import annotations

import functools

import torch
from torch import nn


@functools.cache
def bf16_lstm_supported() -> bool:
    """Does this CPU's oneDNN have a bfloat16 LSTM primitive (forward and backward)?"""
    probe = nn.LSTM(4, 4, batch_first=True)
    x = torch.zeros(1, 2, 4, requires_grad=True)
    try:
        with torch.autocast("cpu", dtype=torch.bfloat16):
            out, _ = probe(x)
        out.float().sum().backward()
    except RuntimeError:
        return False
    return True


def cpu_bf16_fallback(x: torch.Tensor) -> bool:
    """Must an nn.LSTM fed x leave autocast and run in float32 here?"""
    return (x.device.type == "cpu" and torch.is_autocast_enabled("cpu")
            and torch.get_autocast_dtype("cpu") == torch.bfloat16 and not bf16_lstm_supported())


class LSTM(nn.LSTM):
    """nn.LSTM whose recurrence falls back to float32 under bf16 autocast on CPUs without
    oneDNN's bfloat16 LSTM (see the module docstring)."""

    def forward(self, input, hx=None):  # noqa: A002 - nn.LSTM's own argument name
        data = input.data if isinstance(input, nn.utils.rnn.PackedSequence) else input
        if not cpu_bf16_fallback(data):
            return super().forward(input, hx)
        with torch.autocast("cpu", enabled=False):
            if hx is not None:
                hx = tuple(h.float() for h in hx)
            return super().forward(input.float(), hx)


RNN, GRU = nn.RNN, nn.GRU
MODULES = {"rnn": RNN, "lstm": LSTM, "gru": GRU}


def bf16_note() -> str:
    """One line for a bf16 run's log on a CPU without the bfloat16 LSTM primitive ("" if it has it)."""
    if bf16_lstm_supported():
        return ""
    return ("bf16: this CPU has no bfloat16 LSTM in oneDNN (it needs AVX-512); PyTorch's fused LSTM "
            "runs its recurrence in float32, the other matrix products in bfloat16")
