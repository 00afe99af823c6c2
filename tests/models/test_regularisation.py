"""Recurrent dropout variants, zoneout, the norm stabiliser, recurrent initialisation, padding."""
import pytest
import torch

from seqlab.config import load_config
from seqlab.models import build_model
from seqlab.models.cells import GRUCell, LSTMCell
from seqlab.models.stack import RecurrentStack

SMALL = ["model.embedding_size=6", "model.hidden_size=8", "model.num_layers=2"]


def lm(*overrides, vocab=11):
    torch.manual_seed(0)
    return build_model(load_config(None, SMALL + list(overrides)).model, vocab)


def test_variational_dropout_draws_one_mask_per_sequence():
    model = lm("model.variational=true", "model.dropout=0.5").train()
    x = torch.ones(4, 9, 6)
    dropped = model._drop(x)                                      # (B, T, F)
    zeros = dropped == 0
    assert zeros.any() and not zeros.all()
    assert torch.equal(zeros, zeros[:, :1].expand_as(zeros))      # the same units at every step
    assert not torch.equal(zeros[0], zeros[1])                    # a different mask per sequence
    standard = lm("model.dropout=0.5").train()._drop(x) == 0
    assert not torch.equal(standard, standard[:, :1].expand_as(standard))   # per-step masks differ


def test_recurrent_dropout_mask_is_fixed_over_the_sequence_and_off_in_eval():
    model = lm("model.name=lstm", "model.recurrent_dropout=0.4", "model.impl=loop")   # watch cell.step
    masks = []
    cell = model.rnn.layers[0].cell
    real_step = cell.step

    def recording(xp, state, mask=None):
        masks.append(mask)
        return real_step(xp, state, mask)

    cell.step = recording
    x = torch.randint(0, 11, (3, 7))
    model.train()(x)
    assert len(masks) == 7 and all(m is masks[0] for m in masks)
    assert masks[0].shape == (3, 8) and (masks[0] == 0).any()
    masks.clear()
    model.eval()(x)
    assert masks == [None] * 7
    a, b = model(x)[0], model(x)[0]
    assert torch.equal(a, b)                                      # eval is deterministic


def test_zoneout_keeps_units_with_probability_p_and_mixes_in_eval():
    torch.manual_seed(0)
    stack = RecurrentStack(lambda i, h: GRUCell(i, h), 5, 64, zoneout=0.3).train()
    layer = stack.layers[0]
    x = torch.randn(16, 2, 5)
    h0 = torch.randn(16, 64)
    out, _ = layer(x[:, :1], h0)
    no_zone, _ = layer.cell.step(layer.cell.project(x[:, :1])[:, 0], h0)
    kept = out[:, 0] == h0
    fresh = out[:, 0] == no_zone
    assert torch.all(kept | fresh)
    assert 0.2 < kept.float().mean() < 0.4
    layer.eval()
    out, _ = layer(x[:, :1], h0)
    torch.testing.assert_close(out[:, 0], 0.3 * h0 + 0.7 * no_zone)


def test_norm_stabiliser_penalises_changes_of_the_hidden_norm():
    model = lm("model.norm_stabilizer=2.0").train()
    x = torch.randint(0, 11, (2, 10))
    logits, _ = model(x)
    assert torch.is_tensor(model.aux_loss) and model.aux_loss.item() > 0
    model.aux_loss.backward()
    assert model.rnn.weight_hh_l1.grad.abs().sum() > 0             # works on the fused path too
    model.eval()(x)
    assert model.aux_loss == 0.0


@pytest.mark.parametrize("how", ["orthogonal", "identity"])
def test_recurrent_initialisation_per_gate(how):
    for name in ("lstm", "gru"):
        model = lm(f"model.name={name}", f"model.recurrent_init={how}")
        for key, w in model.rnn.named_parameters():
            if key.startswith("weight_hh"):
                for block in w.split(8):
                    eye = torch.eye(8)
                    if how == "identity":
                        assert torch.equal(block, eye)
                    else:
                        torch.testing.assert_close(block @ block.t(), eye, atol=1e-5, rtol=0)


@pytest.mark.parametrize("name, impl", [("rnn", "auto"), ("lstm", "auto"), ("gru", "auto"), ("lstm", "fast"),
                                        ("jordan", "auto")])
def test_recurrent_gain_scales_the_recurrent_weights_and_nothing_else(name, impl):
    plain = dict(lm(f"model.name={name}", f"model.impl={impl}", "model.recurrent_init=orthogonal").named_parameters())
    gained = dict(lm(f"model.name={name}", f"model.impl={impl}", "model.recurrent_init=orthogonal",
                     "model.recurrent_gain=1.5").named_parameters())
    recurrent = [k for k in plain if k.split(".")[-1].startswith("weight_hh")]
    assert recurrent
    for key, w in plain.items():
        if key in recurrent:
            torch.testing.assert_close(gained[key], 1.5 * w, atol=0, rtol=1e-6)
        else:
            assert torch.equal(gained[key], w), key


@pytest.mark.parametrize("bidirectional", [False, True])
@pytest.mark.parametrize("make", [lambda i, h: LSTMCell(i, h), lambda i, h: GRUCell(i, h, "cho")])
def test_padding_never_changes_a_result(make, bidirectional):
    torch.manual_seed(0)
    stack = RecurrentStack(make, 3, 5, num_layers=2, bidirectional=bidirectional).eval()
    lengths = torch.tensor([6, 2, 4])
    seqs = [torch.randn(1, n, 3) for n in lengths.tolist()]
    padded = torch.zeros(3, 6, 3)
    for b, s in enumerate(seqs):
        padded[b, : s.size(1)] = s
    padded[1, 2:] = 99.0                                          # garbage in the padding
    out, state = stack(padded, lengths=lengths)
    for b, s in enumerate(seqs):
        alone, alone_state = stack(s)
        n = s.size(1)
        torch.testing.assert_close(out[b:b + 1, :n], alone)
        assert torch.all(out[b, n:] == 0)
        for ours, ref in zip(state if isinstance(state, tuple) else (state,),
                             alone_state if isinstance(alone_state, tuple) else (alone_state,)):
            torch.testing.assert_close(ours[b:b + 1], ref)


def test_regularised_models_take_the_loop_path_and_train():
    for extra in (["model.variational=true", "model.dropout=0.3"], ["model.recurrent_dropout=0.2"],
                  ["model.zoneout=0.1"]):
        model = lm(*extra).train()
        assert not model.fused
        logits, _ = model(torch.randint(0, 11, (2, 6)))
        logits.sum().backward()
