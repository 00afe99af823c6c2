"""models/kernels/onednn.py: the input projection on oneDNN's product must be cell.project itself,
outputs and every gradient, and be what the fast path takes on CPU float32."""
import copy

import pytest
import torch

from seqlab.models.kernels import onednn
from seqlab.models.cells import ElmanCell, GRUCell, LSTMCell
from seqlab.models.stack import RecurrentLayer

pytestmark = pytest.mark.skipif(not onednn._PRESENT, reason="this torch build has no oneDNN ops")


def _grads(cell, x, fn):
    cell.zero_grad(set_to_none=True)
    x = x.clone().requires_grad_(True)
    y = fn(cell, x)
    (y * torch.linspace(-1, 1, y.numel(), dtype=y.dtype).view_as(y)).sum().backward()
    return [y.detach(), x.grad] + [p.grad for p in cell.parameters() if p.grad is not None]


@pytest.mark.parametrize("make", [lambda: LSTMCell(48, 32), lambda: LSTMCell(48, 32, layer_norm=True),
                                  lambda: GRUCell(48, 32, form="cho"), lambda: ElmanCell(48, 32)],
                         ids=["lstm", "lstm-ln", "gru-cho", "elman"])
def test_equals_cell_project_against_float64(make):
    """float32 on oneDNN and float32 F.linear, each against the float64 projection: the same
    error (float32 rounding, ~1e-7 of each tensor's scale), every gradient included."""
    torch.manual_seed(0)
    cell = make()
    x = torch.randn(5, 7, 48)
    assert onednn.usable(x, cell.weight_ih)
    ours = _grads(cell, x, onednn.project)
    plain = _grads(cell, x, lambda c, v: c.project(v))
    truth = _grads(copy.deepcopy(cell).double(), x.double(), lambda c, v: c.project(v))
    assert len(ours) == len(plain) == len(truth)
    for a, b, t in zip(ours, plain, truth):
        scale = t.abs().max()
        assert (a.double() - t).abs().max() / scale < 1e-5
        assert (b.double() - t).abs().max() / scale < 1e-5


def test_the_fast_path_takes_it_and_the_rest_do_not(monkeypatch):
    calls = []
    real = onednn._Linear.apply
    monkeypatch.setattr(onednn._Linear, "apply", lambda *a: calls.append(1) or real(*a))
    cell = LSTMCell(4, 6)
    x = torch.randn(2, 3, 4)
    RecurrentLayer(cell)(x, cell.init_state(2, x))
    assert calls == [1]
    RecurrentLayer(cell, fast=False)(x, cell.init_state(2, x))                 # the autograd loop
    RecurrentLayer(cell, zoneout=0.1)(x, cell.init_state(2, x))                # zoneout: the loop
    with torch.autocast("cpu", dtype=torch.bfloat16):                          # bf16 products asked for
        RecurrentLayer(cell)(x, cell.init_state(2, x))
    double = copy.deepcopy(cell).double()
    RecurrentLayer(double)(x.double(), double.init_state(2, x.double()))
    assert calls == [1]
