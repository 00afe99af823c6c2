import numpy as np
import pytest
import torch

from seqlab.config import ModelConfig
from seqlab.models import build_model
from seqlab.models.base import SequenceModel, detach_state, is_count_model
from seqlab.registry import names
from seqlab.training.checkpoint import RunDir
from seqlab.tasks.tbptt import tbptt_windows, train_step

V = 23


def small(name: str, **kw) -> torch.nn.Module:
    cfg = ModelConfig(name=name, embedding_size=8, hidden_size=12, num_layers=2, dropout=0.3, **kw)
    return build_model(cfg, V)


COUNT_MODELS = ("ngram", "hmm")                                   # fitted by counting, not gradients
GRADIENT_MODELS = [n for n in names("model") if n not in COUNT_MODELS]


@pytest.mark.parametrize("name", names("model"))
def test_every_model_builds_and_answers_the_protocol(name):
    model = small(name)
    assert isinstance(model, SequenceModel)
    if name in COUNT_MODELS:
        assert is_count_model(model)
        model.fit(np.random.default_rng(0).integers(4, V, 500))
    x = torch.randint(4, V, (3, 7))
    logits, state = model(x, model.init_state(3))
    assert logits.shape == (3, 7, V)
    step_logits, _ = model.step(x[:, 0], model.init_state(3))
    assert step_logits.shape == (3, V)


@pytest.mark.parametrize("name", GRADIENT_MODELS)
def test_every_trainable_model_runs_backward(name):
    model = small(name)
    x = torch.randint(0, V, (3, 7))
    logits, state = model(x, model.init_state(3))
    logits.sum().backward()
    assert all(p.grad is not None for p in model.parameters())
    step_logits, _ = model.step(x[:, 0], state)
    assert step_logits.shape == (3, V)


@pytest.mark.parametrize("name", GRADIENT_MODELS)
def test_carried_state_chunks_equal_one_full_pass(name):
    model = small(name).eval()
    x = torch.randint(0, V, (4, 60))
    full, _ = model(x, model.init_state(4))
    state, pieces = model.init_state(4), []
    for i in range(0, 60, 17):                               # uneven chunks, as at an epoch's end
        out, state = model(x[:, i:i + 17], state)
        state = detach_state(state)
        pieces.append(out)
    torch.testing.assert_close(torch.cat(pieces, 1), full, rtol=1e-5, atol=1e-6)


@pytest.mark.parametrize("name", GRADIENT_MODELS)
def test_step_by_step_equals_full_pass(name):
    model = small(name).eval()
    x = torch.randint(0, V, (2, 15))
    full, _ = model(x)
    state, outs = model.init_state(2), []
    for t in range(15):
        out, state = model.step(x[:, t], state)
        outs.append(out)
    torch.testing.assert_close(torch.stack(outs, 1), full, rtol=1e-5, atol=1e-6)


@pytest.mark.parametrize("name", GRADIENT_MODELS)
def test_causality_future_never_changes_the_past(name):
    model = small(name).eval()
    x = torch.randint(0, V, (2, 20))
    y = x.clone()
    y[:, 12:] = torch.randint(0, V, (2, 8))
    a, _ = model(x)
    b, _ = model(y)
    torch.testing.assert_close(a[:, :12], b[:, :12])
    assert not torch.allclose(a[:, 12:], b[:, 12:])


@pytest.mark.parametrize("name", GRADIENT_MODELS)
def test_save_then_load_gives_identical_logits(name, tmp_path):
    model = small(name, tie_weights=False).eval()
    run = RunDir(tmp_path)
    run.save_weights(model, "model.safetensors", {"step": 3})
    other = small(name).eval()
    meta = run.load_weights(other)
    assert meta == {"step": 3}
    x = torch.randint(0, V, (2, 9))
    assert torch.equal(model(x)[0], other(x)[0])


def test_tied_weights_share_storage_and_survive_save(tmp_path):
    cfg = ModelConfig(name="lstm", embedding_size=12, hidden_size=12, num_layers=1, tie_weights=True)
    model = build_model(cfg, V).eval()
    assert model.head.weight is model.embedding.weight
    RunDir(tmp_path).save_weights(model, "m.safetensors", {})
    other = build_model(cfg, V).eval()
    RunDir(tmp_path).load_weights(other, "m.safetensors")
    x = torch.randint(0, V, (1, 5))
    assert torch.equal(model(x)[0], other(x)[0])
    assert other.head.weight is other.embedding.weight


def test_lstm_forget_gate_bias():
    model = small("lstm", forget_bias=1.0)
    h = 12
    for name, p in model.rnn.named_parameters():
        if name.startswith("bias"):
            assert torch.all(p[h:2 * h] == 0.5)             # b_ih + b_hh = 1.0 on the forget gate
            assert not torch.all(p[:h] == 0.5)


def test_tbptt_windows_count_every_target_once():
    for length, k1, k2 in [(101, 20, 20), (101, 20, 50), (57, 10, 35), (12, 5, 5), (30, 7, 7)]:
        windows = tbptt_windows(length, k1, k2)
        counted = [p for w in windows for p in range(w.loss_from, w.end)]
        assert counted == list(range(length - 1))
        for prev, nxt in zip(windows, windows[1:]):
            assert nxt.start == prev.middle                  # the carried state is where it is needed
        for w in windows:
            assert w.end - w.start <= k2 and w.start <= w.middle <= w.end


def test_tbptt_k1_k2_gradient_reaches_k2_steps_back():
    """With k2 > k1 the loss on the k1 new targets back-propagates through k2 steps:
    its gradient equals that of an explicit forward over the window from the stored state."""
    torch.manual_seed(1)
    model = small("gru").eval()
    data = torch.randint(0, V, (2, 41))
    windows = tbptt_windows(41, 10, 25)
    state = model.init_state(2)
    for w in windows[:3]:
        model.zero_grad()
        loss, next_state, n = train_step(model, data, w, state)
        loss.backward()
        ours = [p.grad.clone() for p in model.parameters()]
        # independent computation: one forward over [start, end), loss on the last targets
        model.zero_grad()
        logits, _ = model(data[:, w.start:w.end], state)
        k = w.loss_from - w.start
        ref = torch.nn.functional.cross_entropy(logits[:, k:].reshape(-1, V), data[:, w.loss_from + 1:w.end + 1].reshape(-1))
        ref.backward()
        for a, p in zip(ours, model.parameters()):
            torch.testing.assert_close(a, p.grad)
        assert n == 2 * (w.end - w.loss_from)
        # the state handed on is the state at the next window's start, with no graph
        with torch.no_grad():
            _, expected = model(data[:, w.start:w.middle], state) if w.middle > w.start else (None, state)
        torch.testing.assert_close(next_state, expected)
        assert not next_state.requires_grad
        state = next_state
