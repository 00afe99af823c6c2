"""Decoding's native calls (models/kernels/native/decode.cpp): one LSTM or GRU step with its
output layer, and one draw from the softmax, each a single call. Checked against PyTorch's own
nn.LSTM / nn.GRU stepped one token at a time, against a float64 inverse-CDF, and against the softmax
distribution itself."""
from __future__ import annotations

import pytest
import torch
from torch import nn

from seqlab.config import ModelConfig
from seqlab.decode.sampling import generate
from seqlab.models import build_model
from seqlab.models.kernels import fused_step, native


def _pair(layers: int, tie: bool = False, hidden: int = 24, name: str = "lstm"):
    torch.manual_seed(layers)
    cfg = ModelConfig(name=name, embedding_size=hidden if tie else 10, hidden_size=hidden, num_layers=layers,
                      dropout=0.2, tie_weights=tie)
    fast = build_model(cfg, 17).eval()
    slow = build_model(cfg, 17).eval()
    slow.load_state_dict(fast.state_dict())
    slow.fast_step = False                                          # nn.LSTM on a length-1 sequence
    return fast, slow


@pytest.mark.parametrize("name", ["lstm", "gru"])
@pytest.mark.parametrize("layers,batch,tie", [(1, 1, False), (2, 1, False), (3, 4, False), (1, 3, True)])
def test_the_native_step_equals_pytorchs_module(kernels, monkeypatch, name, layers, batch, tie):
    """40 steps carrying the state from a non-zero start, float32. The ATen step is made to
    fail, so the native call is the one measured."""
    fast, slow = _pair(layers, tie, name=name)

    def refuse(*args, **kwargs):
        raise AssertionError("the ATen step ran where the native one should")

    monkeypatch.setattr(fused_step, "step", refuse)
    tokens = torch.randint(0, 17, (40, batch), generator=torch.Generator().manual_seed(1))
    with torch.no_grad():
        s_fast, s_slow = fast.init_state(batch), slow.init_state(batch)
        s_fast = tuple(s + 0.3 for s in s_fast) if name == "lstm" else (s_fast + 0.3,)
        s_slow = tuple(s + 0.3 for s in s_slow) if name == "lstm" else (s_slow + 0.3,)
        for t in range(40):
            a, s_fast = fast.step(tokens[t], s_fast if name == "lstm" else s_fast[0])
            b, s_slow = slow.step(tokens[t], s_slow if name == "lstm" else s_slow[0])
            s_fast, s_slow = (s_fast, s_slow) if name == "lstm" else ((s_fast,), (s_slow,))
            torch.testing.assert_close(a, b, rtol=0, atol=2e-6)
    for x, y in zip(s_fast, s_slow):
        assert x.shape == y.shape == (batch, layers, 24)
        torch.testing.assert_close(x, y, rtol=0, atol=2e-6)


@pytest.mark.parametrize("name", ["lstm", "gru"])
def test_a_large_batch(kernels, name):
    """40 rows (beam search, `--num-samples`): the products run over all rows at once."""
    fast, slow = _pair(2, name=name)
    rows = 40
    tokens = torch.arange(rows) % 17
    with torch.no_grad():
        a, _ = fast.step(tokens, fast.init_state(rows))
        b, _ = slow.step(tokens, slow.init_state(rows))
    torch.testing.assert_close(a, b, rtol=0, atol=2e-6)


@pytest.mark.parametrize("kind", [nn.LSTM, nn.GRU])
def test_the_native_step_follows_a_weight_update_and_a_head_without_bias(kernels, kind):
    torch.manual_seed(0)
    rnn = kind(5, 8, num_layers=2, batch_first=True).eval()
    embedding, head = nn.Embedding(9, 5), nn.Linear(8, 9, bias=False)
    weights = fused_step.StepWeights()
    tokens = torch.tensor([2, 7])
    lstm = kind is nn.LSTM
    state = (torch.randn(2, 2, 8), torch.randn(2, 2, 8)) if lstm else torch.randn(2, 2, 8)
    layout = (lambda s: tuple(x.transpose(0, 1).contiguous() for x in s)) if lstm else (
        lambda s: s.transpose(0, 1).contiguous())
    with torch.no_grad():
        for _ in range(2):
            logits, new = fused_step.step_logits(rnn, weights, embedding, head, tokens, state)
            assert weights.native is not None                        # the native call ran
            out, ref = rnn(embedding(tokens).unsqueeze(1), layout(state))
            torch.testing.assert_close(logits, head(out[:, 0]), rtol=0, atol=2e-6)
            for x, y in zip(new if lstm else (new,), ref if lstm else (ref,)):
                torch.testing.assert_close(x, y.transpose(0, 1), rtol=0, atol=2e-6)
            rnn.weight_hh_l1.add_(0.25)                              # in place, as an optimizer step is
            head.weight.mul_(-1.5)


def test_a_token_outside_the_vocabulary_is_refused(kernels):
    fast, _ = _pair(1)
    with torch.no_grad(), pytest.raises(RuntimeError, match="outside the vocabulary of 17"):
        fast.step(torch.tensor([17]), fast.init_state(1))


def _interval_holds(logits: torch.Tensor, temperature: float, u: torch.Tensor, tokens: torch.Tensor) -> None:
    """Each token is the one whose interval of the float64 cumulative softmax holds u
    (to 1e-5 of the total: the float32 sums round differently near a boundary)."""
    p = torch.softmax(logits.double() / temperature, -1)
    cdf = p.cumsum(-1)
    upper = cdf.gather(1, tokens[:, None])[:, 0]
    lower = upper - p.gather(1, tokens[:, None])[:, 0]
    u = u.double()
    assert bool((lower <= u + 1e-5).all()) and bool((u < upper + 1e-5).all())
    assert bool((p.gather(1, tokens[:, None]) > 0).all())


@pytest.mark.parametrize("temperature", [0.5, 1.0, 2.0])
def test_draw_rows_inverts_the_cumulative_softmax(kernels, temperature):
    g = torch.Generator().manual_seed(0)
    logits = torch.randn(3000, 40, generator=g) * 3
    logits[:, ::7] = float("-inf")                                   # banned tokens
    u = torch.rand(3000, generator=g)
    tokens = torch.ops.seqlab_native.draw_rows(logits, temperature, u)
    assert tokens.dtype == torch.long and tokens.shape == (3000,)
    assert not bool((tokens % 7 == 0).any())
    _interval_holds(logits, temperature, u, tokens)


def test_draw_rows_follows_the_distribution(kernels):
    logits = torch.tensor([[float("-inf"), 1.0, 0.2, float("-inf"), 0.6]]).expand(20000, -1).contiguous()
    tokens = torch.ops.seqlab_native.draw_rows(logits, 0.8, torch.rand(20000, generator=torch.Generator().manual_seed(3)))
    counts = torch.bincount(tokens, minlength=5).double()
    assert counts[0] == 0 and counts[3] == 0
    expected = torch.softmax(logits[0].double() / 0.8, -1) * 20000
    chi2 = (((counts - expected) ** 2) / expected.clamp(min=1e-9))[[1, 2, 4]].sum()
    assert chi2 < 13.8              # chi-square, 2 degrees of freedom, p = 0.001


def test_sampling_draws_the_same_text_with_and_without_the_native_calls(kernels):
    """The same generator, the same uniform numbers: the native and ATen paths agree token
    for token (a disagreement would need a uniform within float rounding of a boundary)."""
    fast, _ = _pair(2)
    runs = []
    for on in (True, False):
        with native.enabled(on):
            runs.append(list(generate(fast, [1, 2, 3], 200, temperature=0.9, generator=torch.Generator().manual_seed(5))))
    assert runs[0] == runs[1]
