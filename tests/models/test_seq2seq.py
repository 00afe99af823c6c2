"""Seq2seq properties: padding never changes a result; beam search finds the exhaustive
optimum on a toy model; scheduled sampling follows its schedule and feeds what it says;
the reverse task is learnt; heat maps are written; the synthetic tasks mean what they say."""
import itertools
import math

import numpy as np
import pytest
import torch

from seqlab import SeqlabError
from seqlab.analysis.attention import plot_attention
from seqlab.config import ModelConfig
from seqlab.data.synthetic import (FIRST_SYMBOL, adding_problem, copy_memory, reverse_pairs, sort_pairs,
                                   symbol_vocab, synthetic_vocab_size)
from seqlab.data.sequences import seq2seq_batch as make_batch
from seqlab.data.vocab import BOS, EOS, PAD, UNK
from seqlab.decode import seq2seq as decode
from seqlab.decode.beam import length_penalty
from seqlab.models.seq2seq import (ATTENTIONS, BANNED, Seq2Seq, mix_tokens, sequence_loss,
                                   strip_eos)
from seqlab.training.schedules import sampling_prob, teacher_forcing_prob

ALPHABET = 5
V = synthetic_vocab_size(ALPHABET)


def tiny(attention="bahdanau", name="lstm", seed=0, layers=2, impl="auto", vocab=V, hidden=12):
    torch.manual_seed(seed)
    cfg = ModelConfig(name=name, embedding_size=8, hidden_size=hidden, num_layers=layers, dropout=0.1, impl=impl)
    return Seq2Seq(cfg, vocab, vocab, attention).eval()


# -- (a) padding never changes a result ---------------------------------------------------------

PAIRS = [([4, 5, 6, 7, 8, 4, 5], [8, 7]), ([6, 4], [4, 5, 6, 7, 8]), ([5, 5, 7, 8], [6, 6, 4])]


@pytest.mark.parametrize("attention", ATTENTIONS)
@pytest.mark.parametrize("name,impl", [("lstm", "auto"), ("gru", "auto"), ("lstm", "loop")])
def test_padding_never_changes_a_result(attention, name, impl):
    model = tiny(attention, name, impl=impl)
    src, src_lengths, tgt_in, _ = make_batch(PAIRS)
    logits, weights = model(src, src_lengths, tgt_in)                       # (3, U, V), (3, U, S)
    greedy = decode.greedy(model, src, src_lengths, 8)
    beams = decode.beam_search(model, src, src_lengths, 3, 8)
    for i, pair in enumerate(PAIRS):
        s, u = len(pair[0]), len(pair[1]) + 1
        one = make_batch([pair])
        alone_logits, alone_weights = model(*one[:3])
        torch.testing.assert_close(logits[i, :u], alone_logits[0], atol=1e-5, rtol=1e-5)
        torch.testing.assert_close(weights[i, :u, :s], alone_weights[0], atol=1e-6, rtol=1e-5)
        assert (weights[i, :, s:] == 0).all()                               # padded source: weight 0
        assert greedy[i] == decode.greedy(model, one[0], one[1], 8)[0]
        alone_beam = decode.beam_search(model, one[0], one[1], 3, 8)[0][0]
        assert beams[i][0].tokens == alone_beam.tokens
        assert beams[i][0].score == pytest.approx(alone_beam.score, abs=1e-5)
    if attention != "none":
        torch.testing.assert_close(weights[0].sum(-1), torch.ones(weights.size(1)))


def test_bad_options_are_one_line_errors():
    with pytest.raises(SeqlabError, match="valid: none, bahdanau"):
        tiny("concat")
    with pytest.raises(SeqlabError, match="even"):
        tiny(hidden=13)
    with pytest.raises(SeqlabError, match="rnn, lstm, gru"):
        tiny(name="jordan")


# -- (b) beam search finds the exhaustive optimum -------------------------------------------------

def briefly_trained(alphabet, steps, seed):
    """A toy model that has begun to learn reversal: peaked, length-aware, still unsure."""
    vocab = synthetic_vocab_size(alphabet)
    model = tiny("luong_general", seed=seed, layers=1, vocab=vocab).train()
    opt = torch.optim.Adam(model.parameters(), lr=1e-2)
    for step in range(steps):
        batch = make_batch(reverse_pairs(16, 1, 3, alphabet, seed=step))
        loss = sequence_loss(model(*batch[:3])[0], batch[3])
        opt.zero_grad()
        loss.backward()
        opt.step()
    return model.eval()


@pytest.mark.parametrize("seed,steps", [(0, 20), (1, 30), (2, 40)])
def test_beam_search_equals_exhaustive_search(seed, steps):
    alphabet, max_len = 3, 4
    model = briefly_trained(alphabet, steps, seed)
    vocab = synthetic_vocab_size(alphabet)                                  # 7: specials + 3 symbols
    allowed = [t for t in range(vocab) if t not in BANNED and t != EOS]     # <unk> and the symbols
    candidates = [[*body, EOS] for n in range(max_len) for body in itertools.product(allowed, repeat=n)]
    assert len(candidates) == 85
    sources = [[4, 5, 6], [6, 6], [5], [4, 6, 5]]
    src, src_lengths, _, _ = make_batch([(s, [4]) for s in sources])
    wide = len(allowed) ** (max_len - 1) * (len(allowed) + 1)               # never prunes a prefix
    best_lengths = set()
    for alpha in (0.0, 0.6, 1.5):
        beams = decode.beam_search(model, src, src_lengths, wide, max_len, alpha=alpha)
        for i, source in enumerate(sources):
            batch = make_batch([(source, c[:-1]) for c in candidates])
            logprobs = model.score(batch[0], batch[1], batch[3])            # (85,)
            scores = [lp / length_penalty(len(c), alpha) for lp, c in zip(logprobs.tolist(), candidates)]
            best = int(np.argmax(scores))
            best_lengths.add(len(candidates[best]))
            found = beams[i][0]
            assert found.tokens == candidates[best]
            assert found.score == pytest.approx(scores[best], abs=1e-5)
            assert found.logprob == pytest.approx(logprobs[best].item(), abs=1e-5)
            assert all(h.tokens[-1] == EOS and len(h.tokens) <= max_len for h in beams[i])
    assert len(best_lengths) > 1                   # the optimum is not always the shortest output


def test_beam_width_one_equals_greedy():
    for attention in ATTENTIONS:
        model = tiny(attention, seed=1)
        src, src_lengths, _, _ = make_batch(PAIRS)
        greedy = decode.greedy(model, src, src_lengths, 12)
        beams = decode.beam_search(model, src, src_lengths, 1, 12)
        assert [b[0].tokens for b in beams] == greedy


# -- (c) scheduled sampling -----------------------------------------------------------------------

def test_schedules_follow_their_formulas():
    for i in (0, 1, 10, 100, 1000, 5000):
        assert teacher_forcing_prob("linear", i, c=1e-3) == pytest.approx(max(0.0, 1 - 1e-3 * i))
        assert teacher_forcing_prob("linear", i, c=1e-3, k=0.9, eps_min=0.2) == pytest.approx(max(0.2, 0.9 - 1e-3 * i))
        assert teacher_forcing_prob("exponential", i, k=0.99) == pytest.approx(0.99 ** i)
        assert teacher_forcing_prob("inverse_sigmoid", i, k=100.0) == pytest.approx(100 / (100 + math.exp(i / 100)))
        assert teacher_forcing_prob("constant", i, k=0.7) == 0.7
        assert teacher_forcing_prob("none", i) == 1.0
        assert sampling_prob("exponential", i, k=0.99) == pytest.approx(1 - 0.99 ** i)
    k = 50.0     # the inverse sigmoid is 1/2 at i = k ln k
    assert teacher_forcing_prob("inverse_sigmoid", k * math.log(k), k=k) == pytest.approx(0.5)
    assert teacher_forcing_prob("inverse_sigmoid", 10**7, k=2.0) == 0.0
    for name, params in (("linear", {"c": 1e-3}), ("exponential", {"k": 0.999}), ("inverse_sigmoid", {"k": 300.0})):
        values = [teacher_forcing_prob(name, i, **params) for i in range(0, 5000, 250)]
        assert values == sorted(values, reverse=True)                       # never rises


@pytest.mark.parametrize("name,params,match", [
    ("cosine", {}, "valid: none, constant, linear"),
    ("linear", {}, "needs c"),
    ("exponential", {"k": 1.5}, "0 < k < 1"),
    ("inverse_sigmoid", {"k": 0.5}, "k >= 1"),
    ("constant", {"k": 2.0}, r"\[0, 1\]"),
    ("exponential", {"k": 0.9, "c": 1.0}, "takes k, eps_min"),
])
def test_bad_schedules_are_one_line_errors(name, params, match):
    with pytest.raises(SeqlabError, match=match):
        teacher_forcing_prob(name, 10, **params)


def test_sampling_prob_zero_is_teacher_forcing():
    model = tiny("luong_general")
    src, src_lengths, tgt_in, _ = make_batch(PAIRS)
    forced, forced_w = model(src, src_lengths, tgt_in)
    mixed, mixed_w = model(src, src_lengths, tgt_in, sampling_prob=0.0, generator=torch.Generator().manual_seed(1))
    assert torch.equal(forced, mixed) and torch.equal(forced_w, mixed_w)
    with torch.no_grad():                       # the same as stepping by hand on the true tokens
        memory, state = model.encode(src, src_lengths)
        for t in range(tgt_in.size(1)):
            step_logits, _, state = model.step(tgt_in[:, t], state, memory)
            torch.testing.assert_close(step_logits, forced[:, t], atol=1e-6, rtol=1e-5)


def test_sampling_prob_one_feeds_the_models_own_tokens():
    model = tiny("bahdanau", seed=2)
    src, src_lengths, tgt_in, _ = make_batch(PAIRS)
    junk = tgt_in.clone()
    junk[:, 1:] = torch.randint(FIRST_SYMBOL, V, junk[:, 1:].shape)
    # argmax: exactly greedy decoding, whatever the true tokens say
    own, _ = model(src, src_lengths, tgt_in, sampling_prob=1.0, own_token="argmax")
    assert torch.equal(own, model(src, src_lengths, junk, sampling_prob=1.0, own_token="argmax")[0])
    masked = own.clone()
    masked[:, :, list(BANNED)] = float("-inf")
    greedy = decode.greedy(model, src, src_lengths, tgt_in.size(1))
    for i, row in enumerate(greedy):
        assert masked[i, :len(row)].argmax(-1).tolist() == row
    # sample: with the same generator seed the true tokens make no difference either
    a, _ = model(src, src_lengths, tgt_in, sampling_prob=1.0, generator=torch.Generator().manual_seed(7))
    b, _ = model(src, src_lengths, junk, sampling_prob=1.0, generator=torch.Generator().manual_seed(7))
    assert torch.equal(a, b)
    c, _ = model(src, src_lengths, tgt_in, sampling_prob=0.5, generator=torch.Generator().manual_seed(7))
    assert not torch.equal(a, c) and not torch.equal(c, model(src, src_lengths, tgt_in)[0])


def test_mix_tokens_uses_own_tokens_with_the_given_probability():
    n, true_token, own_token = 20000, 5, 7
    truth = torch.full((n,), true_token)
    logits = torch.zeros(n, V)
    logits[:, own_token] = 50.0                                             # the model is sure
    for p in (0.0, 0.3, 1.0):
        for how in ("sample", "argmax"):
            fed = mix_tokens(truth, logits, p, how, torch.Generator().manual_seed(0))
            assert set(fed.unique().tolist()) <= {true_token, own_token}
            assert (fed == own_token).float().mean().item() == pytest.approx(p, abs=0.015)
    logits[:, PAD] = logits[:, BOS] = 100.0                                 # never fed, however likely
    assert (mix_tokens(truth, logits, 1.0, "sample") == own_token).all()


# -- (d) the reverse task is learnt ---------------------------------------------------------------

def test_attention_model_learns_to_reverse():
    torch.manual_seed(0)
    alphabet = 8
    vocab = synthetic_vocab_size(alphabet)
    model = Seq2Seq(ModelConfig(name="lstm", embedding_size=16, hidden_size=48, num_layers=1, dropout=0.0),
                    vocab, vocab, "luong_general")
    test = reverse_pairs(200, 3, 6, alphabet, seed=999)
    src, src_lengths, tgt_in, tgt_out = make_batch(test)

    def accuracy():
        out = decode.greedy(model, src, src_lengths, 8)
        return sum(strip_eos(o) == t and o[-1:] == [EOS] for o, (_, t) in zip(out, test)) / len(test)

    with torch.no_grad():
        before = sequence_loss(model(src, src_lengths, tgt_in)[0], tgt_out).item()
    start_accuracy = accuracy()
    opt = torch.optim.Adam(model.parameters(), lr=1e-2)
    for step in range(300):
        batch = make_batch(reverse_pairs(32, 3, 6, alphabet, seed=step))
        loss = sequence_loss(model(*batch[:3])[0], batch[3])
        opt.zero_grad()
        loss.backward()
        torch.nn.utils.clip_grad_norm_(model.parameters(), 1.0)
        opt.step()
    model.eval()
    with torch.no_grad():
        after = sequence_loss(model(src, src_lengths, tgt_in)[0], tgt_out).item()
    assert after < 0.1 * before, (before, after)          # seen here: 2.50 -> 0.004 nats per token
    assert start_accuracy < 0.05 and accuracy() > 0.8     # seen here: 0.0 -> 1.0


# -- (e) heat maps --------------------------------------------------------------------------------

def test_attention_heat_map_is_written(tmp_path):
    model = tiny("bahdanau")
    src, src_lengths, tgt_in, _ = make_batch(PAIRS[:1])
    _, weights = model(src, src_lengths, tgt_in)                            # (1, U, S)
    names = symbol_vocab(ALPHABET)
    path = tmp_path / "plots" / "attention.png"
    plot_attention(path, weights[0], [names.itos[t] for t in PAIRS[0][0]],
                   ["<bos>"] + [names.itos[t] for t in PAIRS[0][1]], title="untrained")
    assert path.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    assert [p.name for p in path.parent.iterdir()] == ["attention.png"]     # no temporary file left
    with pytest.raises(SeqlabError, match="do not match"):
        plot_attention(path, weights[0], ["a"], ["b"])


# -- (f) synthetic tasks --------------------------------------------------------------------------

def test_reverse_and_sort_pairs():
    pairs = reverse_pairs(300, 2, 9, 6, seed=4)
    assert pairs == reverse_pairs(300, 2, 9, 6, seed=4) and pairs != reverse_pairs(300, 2, 9, 6, seed=5)
    assert {len(s) for s, _ in pairs} == set(range(2, 10))
    assert {t for s, _ in pairs for t in s} == set(range(FIRST_SYMBOL, FIRST_SYMBOL + 6))
    assert all(t == s[::-1] for s, t in pairs)
    assert all(t == sorted(s) for s, t in sort_pairs(50, 1, 5, 3, seed=0))
    assert [s for s, _ in sort_pairs(50, 1, 5, 3, seed=0)] == [s for s, _ in reverse_pairs(50, 1, 5, 3, seed=0)]
    assert symbol_vocab(3).itos[FIRST_SYMBOL:] == ["a", "b", "c"] and UNK not in (FIRST_SYMBOL,)
    with pytest.raises(SeqlabError):
        reverse_pairs(5, 4, 3)


def test_copy_memory_layout():
    T, M = 15, 10
    x, y = copy_memory(T, 64, seed=1)
    assert x.shape == y.shape == (64, T + 2 * M) and x.dtype == y.dtype == torch.long
    symbols = x[:, :M]
    assert ((symbols >= 1) & (symbols <= 8)).all() and symbols.unique().numel() == 8
    assert (x[:, M:M + T - 1] == 0).all() and (x[:, M + T - 1:] == 9).all()    # blanks, delimiter, 9s
    assert (y[:, :M + T] == 0).all() and torch.equal(y[:, M + T:], symbols)   # recall after the delimiter
    assert torch.equal(copy_memory(T, 64, seed=1)[0], x)


def test_adding_problem_target_is_the_sum_of_the_marked_values():
    x, y = adding_problem(50, 256, seed=2)
    assert x.shape == (256, 50, 2) and y.shape == (256,)
    values, flags = x[..., 0], x[..., 1]
    assert ((values >= 0) & (values < 1)).all()
    assert (flags.sum(1) == 2).all() and set(flags.unique().tolist()) == {0.0, 1.0}
    picked = torch.stack([v[f == 1] for v, f in zip(values, flags)])          # (256, 2)
    torch.testing.assert_close(y, picked.sum(1))
    assert torch.equal(adding_problem(50, 256, seed=2)[1], y)
    with pytest.raises(SeqlabError):
        adding_problem(1, 3)
