"""Decoding at the speed of the arithmetic (issue 14, point 4): the hand-stepped fused modules
equal nn.LSTM / nn.GRU / nn.RNN, the inverse-CDF sampler draws from the right distribution,
and `seqlab sample --num-samples N` draws N continuations as one batch."""
from __future__ import annotations

import pytest
import torch

from conftest import make_text
from seqlab.cli import main
from seqlab.config import ModelConfig
from seqlab.decode.sampling import draw, generate, generate_batch
from seqlab.models import build_model

CASES = [("lstm", 1, {}), ("lstm", 3, {}), ("gru", 2, {}), ("rnn", 2, {"nonlinearity": "tanh"}),
         ("rnn", 1, {"nonlinearity": "relu"})]


@pytest.mark.parametrize("name,layers,extra", CASES, ids=[f"{n}-{l}-{e}" for n, l, e in CASES])
def test_the_fast_step_equals_pytorchs_own_module(name, layers, extra):
    """Independent reference: the same model stepped through nn.LSTM/GRU/RNN itself, over 30
    steps of a batch of 3, carrying the state (float64 so only the order of sums differs)."""
    torch.manual_seed(0)
    cfg = ModelConfig(name=name, embedding_size=7, hidden_size=11, num_layers=layers, dropout=0.3, **extra)
    fast = build_model(cfg, 13).double().eval()
    slow = build_model(cfg, 13).double().eval()
    slow.load_state_dict(fast.state_dict())
    slow.fast_step = False
    tokens = torch.randint(0, 13, (30, 3))
    with torch.no_grad():
        s_fast, s_slow = fast.init_state(3), slow.init_state(3)
        s_fast = tuple(s + 0.1 for s in s_fast) if isinstance(s_fast, tuple) else s_fast + 0.1   # a non-zero start
        s_slow = tuple(s + 0.1 for s in s_slow) if isinstance(s_slow, tuple) else s_slow + 0.1
        for t in range(30):
            a, s_fast = fast.step(tokens[t], s_fast)
            b, s_slow = slow.step(tokens[t], s_slow)
            torch.testing.assert_close(a, b, rtol=0, atol=1e-12)
    for x, y in zip(s_fast if isinstance(s_fast, tuple) else (s_fast,), s_slow if isinstance(s_slow, tuple) else (s_slow,)):
        torch.testing.assert_close(x, y, rtol=0, atol=1e-12)


def test_the_cached_weights_follow_an_update():
    torch.manual_seed(0)
    model = build_model(ModelConfig(name="lstm", embedding_size=5, hidden_size=6, num_layers=1, dropout=0.0), 9).eval()
    x, state = torch.tensor([3]), model.init_state(1)
    with torch.no_grad():
        before, _ = model.step(x, state)
        model.rnn.weight_hh_l0.add_(0.5)                                 # an in-place update (an optimizer step)
        model.embedding.weight.mul_(2.0)
        after, _ = model.step(x, state)
        model.fast_step = False
        reference, _ = model.step(x, state)
    assert not torch.allclose(before, after)
    torch.testing.assert_close(after, reference, rtol=0, atol=1e-6)


def test_training_mode_and_gradients_take_pytorchs_module():
    """Dropout between layers and autograd are nn.LSTM's business: the fast step stands aside."""
    torch.manual_seed(0)
    model = build_model(ModelConfig(name="lstm", embedding_size=5, hidden_size=6, num_layers=2, dropout=0.5), 9)
    model.train()
    logits, _ = model.step(torch.tensor([1, 2]), model.init_state(2))
    assert logits.requires_grad


def test_draw_follows_the_distribution_and_never_draws_a_zero():
    probs = torch.tensor([[0.0, 0.5, 0.2, 0.0, 0.3]]).expand(20000, -1).contiguous()
    generator = torch.Generator().manual_seed(0)
    tokens = draw(probs, generator)
    counts = torch.bincount(tokens, minlength=5).double()
    assert counts[0] == 0 and counts[3] == 0
    expected = probs[0].double() * len(tokens)
    chi2 = (((counts - expected) ** 2) / expected.clamp(min=1e-9))[[1, 2, 4]].sum()
    assert chi2 < 13.8              # chi-square, 2 degrees of freedom, p = 0.001


def test_a_batch_of_samples_is_a_batch_of_single_samples():
    """Row k of the batch equals a single draw with the same random numbers."""
    torch.manual_seed(0)
    model = build_model(ModelConfig(name="lstm", embedding_size=5, hidden_size=6, num_layers=1, dropout=0.0), 9).eval()
    greedy_batch = generate_batch(model, [4, 5], 12, 3, greedy=True)
    greedy_one = list(generate(model, [4, 5], 12, greedy=True))
    assert greedy_batch == [greedy_one] * 3
    sampled = generate_batch(model, [4, 5], 40, 8, temperature=1.5, generator=torch.Generator().manual_seed(1))
    assert len(sampled) == 8 and all(len(s) == 40 for s in sampled) and len({tuple(s) for s in sampled}) > 1


def test_sample_num_samples_prints_each_continuation(tmp_path, capsys):
    corpus = tmp_path / "c.txt"
    corpus.write_text(make_text(), encoding="utf-8")
    run = tmp_path / "run"
    assert main(["train", f"data.path={corpus}", "model.hidden_size=16", "model.num_layers=1", "model.embedding_size=8",
                 "train.max_steps=3", "train.batch_size=4", "train.bptt_steps=16", "train.eval_every=3",
                 "train.progress=false", "--out", str(run)]) == 0
    capsys.readouterr()
    assert main(["sample", str(run), "--prime", "The", "--length", "25", "--num-samples", "4", "--seed", "3"]) == 0
    out = capsys.readouterr().out
    parts = out.split("----\n")
    assert len(parts) == 4 and all(p.startswith("The") for p in parts)
    assert all(len(p.rstrip("\n")) == 3 + 25 for p in parts)
    assert main(["sample", str(run), "--num-samples", "2", "--greedy"]) == 2
    assert "--num-samples draws different samples" in capsys.readouterr().err
