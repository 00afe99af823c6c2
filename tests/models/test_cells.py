"""seqlab's own recurrent path: parity with PyTorch's fused modules and sequence properties."""
import pytest
import torch
from torch import nn

from seqlab.config import ModelConfig, load_config
from seqlab.models import build_model
from seqlab.models.cells import ElmanCell, GRUCell, LSTMCell
from seqlab.models.stack import RecurrentStack
from seqlab import SeqlabError

from conftest import paths_for

FUSED = {"rnn": (nn.RNN, lambda i, h: ElmanCell(i, h)),
         "rnn_relu": (lambda *a, **k: nn.RNN(*a, nonlinearity="relu", **k), lambda i, h: ElmanCell(i, h, "relu")),
         "lstm": (nn.LSTM, lambda i, h: LSTMCell(i, h)),
         "gru": (nn.GRU, lambda i, h: GRUCell(i, h))}


@pytest.mark.parametrize("fast", [True, False], ids=["fast", "loop"])
@pytest.mark.parametrize("bidirectional", [False, True])
@pytest.mark.parametrize("kind,lstm_path", paths_for(FUSED), indirect=["lstm_path"])
def test_own_stack_equals_pytorch_fused_module(kind, bidirectional, fast, lstm_path):
    """Outputs, final states and every gradient, float32, with weights copied."""
    torch.manual_seed(0)
    fused_cls, make_cell = FUSED[kind]
    fused = fused_cls(5, 7, 2, batch_first=True, bidirectional=bidirectional)
    ours = RecurrentStack(make_cell, 5, 7, num_layers=2, bidirectional=bidirectional, fast=fast)
    assert all(layer.fast == fast for layer in ours.layers)
    ours.copy_from_fused(fused)
    x = torch.randn(3, 11, 5, requires_grad=True)
    y = x.detach().clone().requires_grad_(True)
    out_f, state_f = fused(x)
    out_o, state_o = ours(y)
    torch.testing.assert_close(out_o, out_f, rtol=1e-5, atol=1e-5)
    finals_f = state_f if isinstance(state_f, tuple) else (state_f,)
    finals_o = state_o if isinstance(state_o, tuple) else (state_o,)
    for a, b in zip(finals_o, finals_f):
        torch.testing.assert_close(a, b.transpose(0, 1), rtol=1e-5, atol=1e-5)   # ours is batch first
    weights = torch.randn_like(out_f)
    ((out_f * weights).sum() + sum(s.sum() for s in finals_f)).backward()
    ((out_o * weights).sum() + sum(s.sum() for s in finals_o)).backward()
    torch.testing.assert_close(y.grad, x.grad, rtol=1e-5, atol=1e-5)
    for k in range(2):
        for d in range(2 if bidirectional else 1):
            cell = ours.layers[k * (2 if bidirectional else 1) + d].cell
            suffix = f"_l{k}" + ("_reverse" if d else "")
            for name in ("weight_ih", "weight_hh", "bias_ih", "bias_hh"):
                torch.testing.assert_close(getattr(cell, name).grad, getattr(fused, name + suffix).grad,
                                           rtol=1e-5, atol=1e-5)


def test_bidirectional_output_depends_on_the_whole_sequence():
    torch.manual_seed(0)
    stack = RecurrentStack(lambda i, h: LSTMCell(i, h), 4, 6, bidirectional=True).eval()
    x = torch.randn(2, 10, 4)
    y = x.clone()
    y[:, 7] += 1.0                                       # change one late input
    a, _ = stack(x)
    b, _ = stack(y)
    forward_half, backward_half = slice(0, 6), slice(6, 12)
    torch.testing.assert_close(a[:, :7, forward_half], b[:, :7, forward_half])   # the past is causal
    assert not torch.allclose(a[:, :7, backward_half], b[:, :7, backward_half])  # the backward pass sees it


VARIANTS = {
    "rnn-loop": ["model.name=rnn", "model.impl=loop"],
    "rnn-relu": ["model.name=rnn", "model.nonlinearity=relu", "model.impl=loop"],
    "rnn-layernorm": ["model.name=rnn", "model.layer_norm=true"],
    "jordan": ["model.name=jordan"],
    "lstm-loop": ["model.name=lstm", "model.impl=loop"],
    "lstm-peephole": ["model.name=lstm", "model.peephole=true"],
    "lstm-coupled": ["model.name=lstm", "model.coupled=true"],
    "lstm-peephole-coupled": ["model.name=lstm", "model.peephole=true", "model.coupled=true"],
    "lstm-layernorm": ["model.name=lstm", "model.layer_norm=true"],
    "lstm-residual": ["model.name=lstm", "model.residual=true", "model.num_layers=3"],
    "gru-loop": ["model.name=gru", "model.impl=loop"],
    "lstm-fast": ["model.name=lstm", "model.impl=fast"],
    "gru-fast": ["model.name=gru", "model.impl=fast"],
    "lstm-peephole-loop": ["model.name=lstm", "model.peephole=true", "model.impl=loop"],
    "gru-cho": ["model.name=gru", "model.gru_form=cho"],
    "gru-layernorm": ["model.name=gru", "model.layer_norm=true"],
    "mingru": ["model.name=mingru"],
    "minlstm": ["model.name=minlstm"],
}
SMALL = ["model.embedding_size=6", "model.hidden_size=8", "model.num_layers=2", "model.dropout=0.2"]


def variant(name, vocab=13):
    cfg = load_config(None, SMALL + VARIANTS[name])
    torch.manual_seed(0)
    return build_model(cfg.model, vocab)


@pytest.mark.parametrize("name", list(VARIANTS))
def test_every_variant_trains_is_causal_and_steps_like_a_full_pass(name):
    model = variant(name)
    assert not model.fused
    x = torch.randint(0, 13, (3, 12))
    logits, state = model(x)
    logits.logsumexp(-1).sum().backward()
    assert all(p.grad is not None and torch.isfinite(p.grad).all() for p in model.parameters())
    model.eval()
    full, _ = model(x)
    y = x.clone()
    y[:, 8:] = (y[:, 8:] + 1) % 13
    torch.testing.assert_close(model(y)[0][:, :8], full[:, :8])           # causality
    state, outs = model.init_state(3), []
    for t in range(12):
        out, state = model.step(x[:, t], state)
        outs.append(out)
    torch.testing.assert_close(torch.stack(outs, 1), full, rtol=1e-5, atol=1e-6)


@pytest.mark.parametrize("impl", ["loop", "fast"])
def test_seqlab_paths_equal_fused_path_inside_the_language_model(impl):
    for name in ("rnn", "lstm", "gru"):
        torch.manual_seed(0)
        fused = build_model(ModelConfig(name=name, embedding_size=6, hidden_size=8, num_layers=2), 13).eval()
        loop = build_model(ModelConfig(name=name, embedding_size=6, hidden_size=8, num_layers=2, impl=impl), 13).eval()
        assert fused.fused and not loop.fused
        loop.embedding.load_state_dict(fused.embedding.state_dict())
        loop.head.load_state_dict(fused.head.state_dict())
        loop.rnn.copy_from_fused(fused.rnn)
        x = torch.randint(0, 13, (2, 9))
        torch.testing.assert_close(loop(x)[0], fused(x)[0], rtol=1e-5, atol=1e-5)


def test_variants_differ_from_the_standard_cell():
    torch.manual_seed(0)
    x = torch.randn(2, 6, 4)
    plain = LSTMCell(4, 5)
    peep = LSTMCell(4, 5, peephole=True)
    peep.load_state_dict(plain.state_dict(), strict=False)
    stack = lambda cell: RecurrentStack(lambda i, h: cell, 4, 5)
    assert not torch.allclose(stack(plain)(x)[0], stack(peep)(x)[0])
    with torch.no_grad():                                 # zero peepholes: the plain LSTM again
        for w in (peep.weight_ci, peep.weight_cf, peep.weight_co):
            w.zero_()
    torch.testing.assert_close(stack(plain)(x)[0], stack(peep)(x)[0])
    cho, pt = GRUCell(4, 5, form="cho"), GRUCell(4, 5)
    cho.load_state_dict(pt.state_dict())
    assert not torch.allclose(stack(cho)(x)[0], stack(pt)(x)[0])


def test_forget_bias_on_seqlab_cells():
    cell = LSTMCell(3, 4, forget_bias=2.0)
    assert torch.all(cell.bias_ih[4:8] + cell.bias_hh[4:8] == 2.0)
    ln = LSTMCell(3, 4, layer_norm=True, forget_bias=2.0)
    assert torch.all(ln.norm_ih.bias[4:8] == 2.0)


@pytest.mark.parametrize("overrides, message", [
    (["model.name=gru", "model.peephole=true"], "model.peephole applies to model.name=lstm"),
    (["model.name=lstm", "model.gru_form=cho"], "model.gru_form applies to model.name=gru"),
    (["model.name=gru", "model.gru_form=cho", "model.layer_norm=true"], "gru_form=pytorch"),
    (["model.name=jordan", "model.impl=fused"], "model.impl=fused"),
    (["model.impl=quick"], "model.impl must be one of"),
])
def test_impossible_combinations_are_explained(overrides, message):
    with pytest.raises(SeqlabError, match=message):
        load_config(None, overrides)


def test_minimal_cells_reject_options_they_cannot_honour():
    with pytest.raises(SeqlabError, match="model.zoneout"):
        load_config(None, ["model.name=mingru", "model.zoneout=0.1"])
