import torch

from seqlab.config import ModelConfig
from seqlab.decode.beam import beam_search
from seqlab.decode.sampling import filter_logits, generate
from seqlab.models import build_model

V = 17


def model(seed=0):
    torch.manual_seed(seed)
    return build_model(ModelConfig(name="lstm", embedding_size=8, hidden_size=16, num_layers=1), V).eval()


def test_beam_width_one_equals_greedy():
    for seed in range(3):
        m = model(seed)
        prime = [5, 6, 7]
        greedy = list(generate(m, prime, 25, greedy=True))
        beam = beam_search(m, prime, 25, beam_size=1)[0]
        assert beam.tokens == greedy


def test_beam_search_finds_at_least_the_greedy_likelihood():
    m = model(1)
    prime = [3, 4]

    def logprob(tokens):
        x = torch.tensor([prime + tokens])
        logp = m(x)[0].log_softmax(-1)[0]
        return sum(logp[len(prime) - 1 + i, t].item() for i, t in enumerate(tokens))

    greedy = list(generate(m, prime, 8, greedy=True))
    best = beam_search(m, prime, 8, beam_size=5)[0]
    assert abs(best.logprob - logprob(best.tokens)) < 1e-4     # the score is the real log-probability
    assert best.logprob >= logprob(greedy) - 1e-5


def test_beam_stops_at_eos_and_normalises_length():
    m = model(2)
    hyps = beam_search(m, [1], 30, beam_size=4, eos_id=3)
    assert hyps and all(h.tokens[-1] == 3 or len(h.tokens) == 30 for h in hyps)
    scores = [h.score for h in hyps]
    assert scores == sorted(scores, reverse=True)


def test_top_k_keeps_exactly_k():
    logits = torch.tensor([[1.0, 5.0, 3.0, 2.0, 4.0]])
    out = filter_logits(logits, top_k=2)
    assert torch.isfinite(out).tolist() == [[False, True, False, False, True]]


def test_top_p_keeps_the_smallest_nucleus():
    probs = torch.tensor([[0.5, 0.3, 0.15, 0.05]])
    out = filter_logits(probs.log(), top_p=0.75)               # 0.5 + 0.3 >= 0.75 -> two tokens
    assert torch.isfinite(out).tolist() == [[True, True, False, False]]
    out = filter_logits(probs.log(), top_p=0.1)                 # the top token is always kept
    assert torch.isfinite(out).tolist() == [[True, False, False, False]]


def test_temperature_sampling_is_seeded_and_sharpens():
    m = model(3)
    a = list(generate(m, [1, 2], 40, generator=torch.Generator().manual_seed(7)))
    b = list(generate(m, [1, 2], 40, generator=torch.Generator().manual_seed(7)))
    assert a == b
    cold = list(generate(m, [1, 2], 40, temperature=1e-4, generator=torch.Generator().manual_seed(9)))
    assert cold == list(generate(m, [1, 2], 40, greedy=True))


def test_decoding_never_reruns_the_prefix():
    m = model(4)
    calls = []
    original = m.forward

    def counting(x, state=None):
        calls.append(x.shape[1])
        return original(x, state)

    m.forward = counting
    steps = []
    original_step = m.step
    m.step = lambda x_t, state: (steps.append(x_t.shape), original_step(x_t, state))[1]
    list(generate(m, [1, 2, 3, 4, 5], 20, greedy=True))
    # the prime runs once; then one step per token (the fused LSTM steps without forward)
    assert calls[0] == 5 and all(n == 1 for n in calls[1:]) and len(steps) == 19
    calls.clear()
    beam_search(m, [1, 2, 3], 10, beam_size=3)
    assert calls[0] == 3 and all(n == 1 for n in calls[1:])
