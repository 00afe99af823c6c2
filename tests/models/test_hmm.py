"""The discrete HMM: Baum–Welch monotonicity, the forward algorithm against brute-force
enumeration of hidden paths, the output alignment (output t = P(x_{t+1} | x_{≤t})),
recovery of a known model, forward = step, and the state round trip."""
from __future__ import annotations

import itertools
import math

import numpy as np
import pytest
import torch

from seqlab import SeqlabError
from seqlab.config import ModelConfig
from seqlab.models.base import SequenceModel


def hmm_module():
    """seqlab.models.hmm, imported on first use rather than at collection: importing it
    registers "hmm", and tests/models/test_models.py builds its parameter lists from the registry
    at collection time (it would then take the HMM for a gradient-trained model)."""
    import seqlab.models.hmm

    return seqlab.models.hmm


def make(K: int, V: int, **kwargs):
    return hmm_module().HMM(ModelConfig(name="hmm", hidden_size=K), V, **kwargs)


def random_model(rng: np.random.Generator, K: int, V: int, **kwargs):
    return make(K, V, **kwargs).set_parameters(
        rng.dirichlet(np.ones(K)), rng.dirichlet(np.ones(K), K), rng.dirichlet(np.ones(V), K))


def two_state_truth():
    return make(2, 8).set_parameters(
        [0.5, 0.5], [[0.95, 0.05], [0.10, 0.90]],
        [[0, 0, 0, 0, 0.50, 0.30, 0.15, 0.05],
         [0, 0, 0, 0, 0.05, 0.15, 0.30, 0.50]])


def brute_force_joint(model, x) -> float:
    """P(x_0..x_{T-1}) = Σ over all K^T hidden paths of π B A B ... B."""
    pi, A, B = (t.numpy() for t in (model.pi, model.A, model.B))
    total = 0.0
    for path in itertools.product(range(model.num_states), repeat=len(x)):
        p = pi[path[0]] * B[path[0], x[0]]
        for t in range(1, len(x)):
            p *= A[path[t - 1], path[t]] * B[path[t], x[t]]
        total += p
    return total


# -- Baum–Welch --------------------------------------------------------------------------------

DATASETS = [("hmm_sample", 3, 7), ("iid", 2, 6), ("hmm_sample", 4, 9), ("markov", 3, 8)]


def dataset(kind: str, K: int, V: int, rng: np.random.Generator, n: int) -> np.ndarray:
    if kind == "hmm_sample":
        return random_model(rng, K, V).sample(n, rng)
    if kind == "iid":
        return rng.integers(0, V, n)
    nxt = rng.dirichlet(np.full(V, 0.3), V)                    # a sparse-ish Markov chain
    out = [0]
    for _ in range(n - 1):
        out.append(int(rng.choice(V, p=nxt[out[-1]])))
    return np.array(out)


@pytest.mark.parametrize("kind,K,V", DATASETS)
def test_unsmoothed_log_likelihood_never_decreases(kind, K, V):
    """Plain maximum-likelihood EM (pseudo_count=0): LL(θ_{i+1}) ≥ LL(θ_i), several data sets
    and initialisations; 1303 tokens in segments of 100 also exercise the padded last one."""
    rng = np.random.default_rng(K * 100 + V)
    tokens = dataset(kind, K, V, rng, 1303)
    for seed in range(3):
        model = make(K, V, seed=seed, iterations=25, segment_length=100, pseudo_count=0.0).fit(tokens)
        history = np.array(model.history)
        assert history.size == 26 and np.all(np.isfinite(history))
        tol = 1e-10 * abs(history[0])
        assert np.diff(history).min() >= -tol, np.diff(history)
        assert history[-1] > history[0]
        assert model.objective_history == model.history            # no prior term when ε = 0


@pytest.mark.parametrize("kind,K,V", DATASETS)
def test_smoothed_em_never_decreases_its_objective(kind, K, V):
    """With the pseudo-count ε the M-step is MAP-EM: LL + ε Σ log θ never decreases, so LL
    itself can drop by at most the rise of ε Σ log θ (checked as the same inequality)."""
    rng = np.random.default_rng(K * 100 + V + 1)
    tokens = dataset(kind, K, V, rng, 1303)
    for seed in range(3):
        for eps in (1e-3, 0.5, 5.0):
            model = make(K, V, seed=seed, iterations=25, segment_length=100, pseudo_count=eps).fit(tokens)
            objective, history = np.array(model.objective_history), np.array(model.history)
            assert np.diff(objective).min() >= -1e-10 * abs(objective[0])
            assert history[-1] > history[0]


def test_a_large_pseudo_count_can_lower_the_plain_log_likelihood():
    """Why `history` is only guaranteed monotone for ε = 0: MAP-EM trades likelihood for
    prior. With ε = 5 on this data the LL drops between iterations while LL + ε Σ log θ rises."""
    rng = np.random.default_rng(3 * 100 + 7 + 1)
    tokens = dataset("hmm_sample", 3, 7, rng, 1303)
    model = make(3, 7, seed=0, iterations=60, segment_length=100, pseudo_count=5.0).fit(tokens)
    assert np.diff(model.history).min() < -1e-3
    assert np.diff(model.objective_history).min() > 0


def test_history_is_the_log_likelihood_of_each_parameter_set():
    rng = np.random.default_rng(5)
    tokens = random_model(rng, 3, 6).sample(400, rng)
    # one segment: the recorded LL is the whole-stream forward log-likelihood
    model = make(3, 6, seed=1, iterations=4, segment_length=1000).fit(tokens)
    assert model.history[-1] == pytest.approx(model.log_likelihood(tokens), rel=1e-12)
    start = make(3, 6, seed=1)
    assert model.history[0] == pytest.approx(start.log_likelihood(tokens), rel=1e-12)
    # segments: the sum of the segments' log-likelihoods, each from pi
    model = make(3, 6, seed=1, iterations=2, segment_length=150).fit(tokens)
    parts = [model.log_likelihood(tokens[i:i + 150]) for i in range(0, 400, 150)]
    assert model.history[-1] == pytest.approx(sum(parts), rel=1e-12)


def test_grouped_e_step_equals_one_group(monkeypatch):
    rng = np.random.default_rng(8)
    tokens = rng.integers(0, 7, 1250)
    whole = make(3, 7, seed=2, iterations=5, segment_length=100).fit(tokens)
    monkeypatch.setattr(hmm_module(), "_CHUNK_ELEMENTS", 3 * 100 * 3)       # groups of 3 segments
    grouped = make(3, 7, seed=2, iterations=5, segment_length=100).fit(tokens)
    np.testing.assert_allclose(grouped.history, whole.history, rtol=1e-12)
    for name in ("pi", "A", "B"):
        torch.testing.assert_close(getattr(grouped, name), getattr(whole, name), rtol=1e-11, atol=1e-14)


def test_em_recovers_a_known_two_state_model():
    """20k tokens from a 2-state model; the best of 4 random starts (EM finds local optima)
    matches the true A and B to ±0.03, up to swapping the states."""
    truth = two_state_truth()
    tokens = truth.sample(20000, np.random.default_rng(1))
    fits = [make(2, 8, seed=s, iterations=40, segment_length=200).fit(tokens) for s in range(4)]
    best = max(fits, key=lambda m: m.history[-1])
    perm = [0, 1] if best.B[0, 4] > best.B[1, 4] else [1, 0]
    A, B = best.A.numpy()[np.ix_(perm, perm)], best.B.numpy()[perm]
    np.testing.assert_allclose(A, truth.A.numpy(), atol=0.03)
    np.testing.assert_allclose(B, truth.B.numpy(), atol=0.03)
    assert best.log_likelihood(tokens) >= truth.log_likelihood(tokens) - 1.0   # ML fit ≥ truth, roughly
    assert np.all(best.B.numpy()[:, :4] > 0)                                   # never-seen ids keep mass


# -- the forward algorithm -----------------------------------------------------------------------

@pytest.mark.parametrize("K", [2, 3])
def test_forward_algorithm_equals_brute_force_enumeration(K):
    rng = np.random.default_rng(K)
    for trial in range(4):
        V = 5
        model = random_model(rng, K, V)
        T = int(rng.integers(1, 7))
        x = rng.integers(0, V, T)
        assert model.log_likelihood(x) == pytest.approx(math.log(brute_force_joint(model, x)), rel=1e-12)
        # output t = P(x_{t+1} = v | x_0..x_t) = P(x_0..x_t, v) / P(x_0..x_t)
        out, _ = model.next_log_probs(torch.from_numpy(x)[None])
        for t in range(T):
            prefix = brute_force_joint(model, x[:t + 1])
            expected = [brute_force_joint(model, np.r_[x[:t + 1], v]) / prefix for v in range(V)]
            np.testing.assert_allclose(out[0, t].exp().numpy(), expected, rtol=1e-12)


def test_next_token_distributions_normalise_and_chain_to_the_log_likelihood():
    rng = np.random.default_rng(11)
    model = make(4, 9, seed=3, iterations=5, segment_length=300).fit(rng.integers(4, 9, 900))
    x = rng.integers(0, 9, 600)                            # ids 0..3 were never seen in training
    out64, state = model.next_log_probs(torch.from_numpy(x)[None])
    assert out64.shape == (1, 600, 9) and out64.dtype == torch.float64 and state.shape == (1, 4)
    assert torch.isfinite(out64).all()
    torch.testing.assert_close(out64.exp().sum(-1), torch.ones(1, 600, dtype=torch.float64), rtol=0, atol=1e-12)
    first = math.log(float(model.pi @ model.B[:, x[0]]))                       # log P(x_0)
    chained = float(out64[0, torch.arange(599), torch.from_numpy(x[1:])].sum())
    assert first + chained == pytest.approx(model.log_likelihood(x), rel=1e-12)
    # the first output is P(x_1 | x_0): init_state is the belief before x_0
    torch.testing.assert_close(model.init_state(1), model.pi.log()[None])
    out32, _ = model(torch.from_numpy(x)[None])
    assert out32.dtype == torch.float32
    torch.testing.assert_close(out32, out64.float())


def test_without_smoothing_unseen_tokens_get_zero_probability():
    model = make(2, 6, seed=0, iterations=3, pseudo_count=0.0).fit(np.array([4, 5, 4, 4, 5, 5, 4] * 20))
    out, _ = model(torch.tensor([[4, 5]]))
    assert torch.isinf(out[0, :, :4]).all() and torch.isfinite(out[0, :, 4:]).all()


def test_step_equals_forward_and_chunks_carry_the_state():
    rng = np.random.default_rng(2)
    model = random_model(rng, 3, 7)
    assert isinstance(model, SequenceModel) and not list(model.parameters())
    x = torch.from_numpy(rng.integers(0, 7, (4, 20)))
    full, state = model(x)
    assert full.shape == (4, 20, 7) and state.shape == (4, 3) and state.dtype == torch.float64
    step_state, outs = model.init_state(4), []
    for t in range(20):
        out, step_state = model.step(x[:, t], step_state)
        outs.append(out)
    torch.testing.assert_close(torch.stack(outs, 1), full, rtol=0, atol=1e-6)
    torch.testing.assert_close(step_state, state, rtol=1e-12, atol=1e-12)
    first, mid = model(x[:, :7])
    second, end = model(x[:, 7:], mid)
    torch.testing.assert_close(torch.cat([first, second], 1), full, rtol=0, atol=1e-6)
    torch.testing.assert_close(end, state, rtol=1e-12, atol=1e-12)
    # rows are independent streams
    one, _ = model(x[2:3])
    torch.testing.assert_close(one[0], full[2], rtol=0, atol=1e-6)


# -- sampling, saving, errors -------------------------------------------------------------------

def test_sample_follows_the_model():
    truth = two_state_truth()
    tokens, states = truth.sample(5000, torch.Generator().manual_seed(0), return_states=True)
    again = truth.sample(5000, torch.Generator().manual_seed(0))
    np.testing.assert_array_equal(tokens, again)
    assert tokens.shape == states.shape == (5000,) and tokens.min() >= 4
    stays = np.mean(states[1:][states[:-1] == 0] == 0)
    assert stays == pytest.approx(0.95, abs=0.02)
    assert np.mean(tokens[states == 1] == 7) == pytest.approx(0.5, abs=0.04)


def test_state_round_trip_through_safetensors(tmp_path):
    from safetensors.numpy import load_file, save_file

    rng = np.random.default_rng(4)
    model = make(3, 8, seed=7, iterations=3, segment_length=50, pseudo_count=0.01).fit(rng.integers(0, 8, 300))
    save_file(model.state_arrays(), str(tmp_path / "hmm.safetensors"))
    restored = hmm_module().HMM.from_state_arrays(load_file(str(tmp_path / "hmm.safetensors")))
    assert (restored.num_states, restored.vocab_size, restored.iterations, restored.segment_length,
            restored.pseudo_count, restored.seed, restored.n_tokens) == (3, 8, 3, 50, 0.01, 7, 300)
    assert restored.history == model.history and restored.objective_history == model.objective_history
    x = torch.from_numpy(rng.integers(0, 8, (2, 30)))
    torch.testing.assert_close(restored(x)[0], model(x)[0], rtol=0, atol=0)
    for name in ("pi", "A", "B"):
        torch.testing.assert_close(getattr(restored, name), getattr(model, name), rtol=0, atol=0)
    with pytest.raises(SeqlabError, match="not a seqlab HMM"):
        hmm_module().HMM.from_state_arrays({k: v for k, v in model.state_arrays().items() if k != "A"})


def test_registered_and_fitted_by_the_count_path():
    from seqlab.registry import _REGISTRY
    from seqlab.models.base import is_count_model

    assert _REGISTRY["model"]["hmm"] is hmm_module().HMM
    assert is_count_model(make(2, 5))


def test_invalid_settings_and_streams_are_one_line_errors():
    with pytest.raises(SeqlabError, match="hidden_size"):
        make(0, 5)
    with pytest.raises(SeqlabError, match="pseudo_count"):
        make(2, 5, pseudo_count=-1.0)
    with pytest.raises(SeqlabError, match="empty"):
        make(2, 5).fit(np.zeros(0, np.int64))
    with pytest.raises(SeqlabError, match="token ids"):
        make(2, 5).fit(np.array([1, 5]))
    with pytest.raises(SeqlabError, match="token ids"):
        make(2, 5)(torch.tensor([[0, 7]]))
    with pytest.raises(SeqlabError, match="sum to 1"):
        make(2, 3).set_parameters([0.5, 0.5], [[1, 0], [0.5, 0.6]], np.full((2, 3), 1 / 3))
