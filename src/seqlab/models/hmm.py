"""Discrete hidden Markov model trained by Baum–Welch (EM) and scored with the forward
algorithm (Rabiner 1989, "A tutorial on hidden Markov models and selected applications in
speech recognition", Proc. IEEE 77(2)).

Dimension legend: K hidden states, V symbols, N training tokens, L segment length,
S segments, B batch, T time.

Parameters (float64 buffers, no gradients; `fit` is EM)
-------------------------------------------------------
    pi (K,)     pi[k]   = P(z_0 = k)
    A  (K, K)   A[i, j] = P(z_{t+1} = j | z_t = i)
    B  (K, V)   B[k, v] = P(x_t = v | z_t = k)
Every row of A and B and pi sum to 1. The constructor draws them at random from `seed`
(each entry uniform in [0.5, 1.5], then normalised): EM needs the states to differ to break
the symmetry. `fit` starts from the current parameters, so calling it again continues EM.

Output alignment (the seqlab convention: output t is the distribution of token t+1)
-----------------------------------------------------------------------------------
The state is the filtered log-belief over the hidden state *before* the next token is
emitted: state[b, k] = log P(z_t = k | x_{<t}). `init_state` is log pi (the belief before
x_0). `forward` at position t
    1. conditions on the emission x_t:  b_k ∝ exp(state_k) B[k, x_t]   (normalised over k)
                                        -> P(z_t = k | x_{≤t})
    2. propagates through A:            b' = b A                     -> P(z_{t+1} | x_{≤t})
    3. outputs                          log Σ_k b'_k B[k, v]         =  log P(x_{t+1} = v | x_{≤t})
and b' (as logs) is the new state. So the first output of a stream is P(x_1 | x_0): the
trainer / evaluator compares output t with target x_{t+1}, and x_0 itself is never scored
there. `log_likelihood(tokens)` scores the whole stream, P(x_0) = Σ_k pi_k B[k, x_0] included:
    log_likelihood(x) = log P(x_0) + Σ_{t<N-1} forward(x)[t, x_{t+1}].
`forward` returns float32 log-probabilities (as the n-gram model does) and a float64
state; `next_log_probs` is the same computation returning float64.

Baum–Welch
----------
The training stream is cut into segments of `segment_length` tokens (default 1000; the last
one shorter), each an independent sequence that starts from pi: the per-segment
recursions then run as one batch (S, K) per time step, so a Python loop of L steps does
the work of N. The cost of the cut: dependence across the S − 1 boundaries is dropped
(each segment restarts from pi), and pi is estimated from the S segment starts, so it
approaches the state occupancy of the stream rather than of its first token. Segments are processed in groups of at most `_CHUNK_ELEMENTS` / (L K) so that the
(S, L, K) arrays stay bounded; the expected counts of all groups are summed before the
M-step. The short last segment is padded; a padded position is a missing observation
(emission likelihood 1 in every state), which leaves the forward-backward of the real
prefix exact, and its counts are masked out.

E-step: the scaled forward-backward of Rabiner §V.A, with c_t = P(x_t | x_{<t}):
    α̂_0 = pi ∘ e_0 / c_0,  α̂_t = (α̂_{t-1} A) ∘ e_t / c_t      (e_t[k] = B[k, x_t], Σ_k α̂_t = 1)
    β̂_{L-1} = 1,          β̂_t = A (e_{t+1} ∘ β̂_{t+1}) / c_{t+1}
    γ_t = α̂_t ∘ β̂_t,      Σ_t ξ_t = A ∘ Σ_t α̂_t ⊗ (e_{t+1} ∘ β̂_{t+1} / c_{t+1})   (outer product)
    log-likelihood = Σ_t log c_t   (summed over segments)
M-step with a pseudo-count ε (`pseudo_count`, default 1e-3) added to every expected count:
    pi_k = (Σ_s γ_{s,0}(k) + ε) / (S + K ε)
    A_ij = (Σ_t ξ_t(i, j) + ε) / (Σ_t γ_t(i)[x_{t+1} in the same segment] + K ε)
    B_kv = (Σ_t γ_t(k)[x_t = v] + ε) / (Σ_t γ_t(k) + V ε)
so no probability is ever exactly 0: a symbol never seen in training gets
B_kv ≥ ε / (N + V ε) > 0 and a finite log-probability everywhere.

Monotonicity. The pseudo-count M-step is the exact maximiser of the expected complete-data
log-likelihood plus ε Σ log θ (θ running over every entry of pi, A and B), i.e. MAP-EM
with a Dirichlet(1 + ε) prior on every row. EM's guarantee is then for that penalised
objective, which `objective_history` records and which never decreases:
    LL(θ_{i+1}) + ε Σ log θ_{i+1}  ≥  LL(θ_i) + ε Σ log θ_i.
The plain log-likelihood (`history`) can therefore decrease, by at most
ε (Σ log θ_{i+1} − Σ log θ_i) per iteration. With the default ε = 1e-3 against expected
counts in the hundreds or more it did not, beyond float rounding, in any run of
tests/models/test_hmm.py; with ε = 5 it does (a test shows one). With `pseudo_count=0`
this is exact maximum-likelihood EM and `history` itself never decreases (up to float
rounding); but then symbols absent from the training stream get probability 0 (−inf), so
ε = 0 is for checking EM, not for scoring held-out text.
`history[i]` / `objective_history[i]` are the values of the parameters after i updates
(entry 0: the parameters `fit` started from; iterations + 1 entries in all).

Cost: per iteration O(N K (K + 1)) multiply-adds and O(L) Python steps per group of
segments; memory O(min(N, _CHUNK_ELEMENTS / K) K) per group. `fit` runs in numpy on the CPU
(the buffers are updated wherever they live); scoring (`forward`) runs on the buffers' device.
"""
from __future__ import annotations

import math
from typing import Optional, Union

import numpy as np
import torch
from torch import Tensor, nn

from seqlab import SeqlabError
from seqlab.config import ModelConfig
from seqlab.registry import register

FORMAT_VERSION = 1
DEFAULT_SEGMENT = 1000
DEFAULT_PSEUDO_COUNT = 1e-3
_CHUNK_ELEMENTS = 1 << 22          # S·L·K per group of segments (32 MiB per float64 array)


class HMM(nn.Module):
    """A K-state discrete HMM behind the sequence-model interface. See the module docstring
    for the output alignment, the state (log-belief before the next emission) and EM."""

    fitted_by_counting = True     # in one pass: the optimiser's train.* options do not apply

    @staticmethod
    def options(cfg: ModelConfig) -> tuple[str, ...]:
        """The model.* options this family honours."""
        return ("hidden_size",)

    def __init__(self, cfg: ModelConfig, vocab_size: int, seed: int = 0, iterations: int = 20,
                 segment_length: int = DEFAULT_SEGMENT, pseudo_count: float = DEFAULT_PSEUDO_COUNT):
        super().__init__()
        K, V = int(cfg.hidden_size), int(vocab_size)
        if K < 1:
            raise SeqlabError(f"the HMM needs model.hidden_size (its number of states) ≥ 1, got {K}")
        if V < 1:
            raise SeqlabError(f"the HMM needs a vocabulary, got size {V}")
        if iterations < 0:
            raise SeqlabError(f"HMM iterations must be 0 or more, got {iterations}")
        if segment_length < 1:
            raise SeqlabError(f"HMM segment_length must be at least 1, got {segment_length}")
        if not (pseudo_count >= 0 and math.isfinite(pseudo_count)):
            raise SeqlabError(f"HMM pseudo_count must be finite and ≥ 0, got {pseudo_count}")
        self.num_states, self.vocab_size = K, V
        self.seed, self.iterations = int(seed), int(iterations)
        self.segment_length, self.pseudo_count = int(segment_length), float(pseudo_count)
        rng = np.random.default_rng(seed)

        def rows(*shape):
            w = rng.uniform(0.5, 1.5, shape)
            return torch.from_numpy(w / w.sum(-1, keepdims=True))

        self.register_buffer("pi", rows(K))
        self.register_buffer("A", rows(K, K))
        self.register_buffer("B", rows(K, V))
        self.history: list[float] = []
        self.objective_history: list[float] = []
        self.n_tokens = 0

    def extra_repr(self) -> str:
        return (f"states={self.num_states}, vocab_size={self.vocab_size}, iterations={self.iterations}, "
                f"segment_length={self.segment_length}, pseudo_count={self.pseudo_count}")

    def set_parameters(self, pi, A, B) -> "HMM":
        """Replace pi (K,), A (K, K), B (K, V) (array-likes; each row must sum to 1)."""
        K, V = self.num_states, self.vocab_size
        new = {}
        for name, value, shape in (("pi", pi, (K,)), ("A", A, (K, K)), ("B", B, (K, V))):
            t = torch.as_tensor(np.asarray(value, np.float64), device=self.pi.device)
            if tuple(t.shape) != shape:
                raise SeqlabError(f"HMM {name} must have shape {shape}, got {tuple(t.shape)}")
            if not bool(torch.all(t >= 0)) or not torch.allclose(t.sum(-1), torch.ones((), dtype=t.dtype,
                                                                                       device=t.device)):
                raise SeqlabError(f"HMM {name}: entries must be ≥ 0 and each row must sum to 1")
            new[name] = t
        for name, t in new.items():
            getattr(self, name).copy_(t)
        return self

    # -- checks --------------------------------------------------------------------------

    def _check_ids(self, ids) -> None:
        if ids.numel() if isinstance(ids, Tensor) else ids.size:
            lo, hi = int(ids.min()), int(ids.max())
            if lo < 0 or hi >= self.vocab_size:
                raise SeqlabError(f"token ids must be in [0, {self.vocab_size}), got {lo}..{hi}")

    def _stream(self, tokens) -> np.ndarray:
        stream = np.asarray(tokens.cpu() if isinstance(tokens, Tensor) else tokens)
        if stream.ndim != 1 or not (stream.size == 0 or np.issubdtype(stream.dtype, np.integer)):
            raise SeqlabError(f"expected a 1-D array of token ids, got shape {stream.shape} {stream.dtype}")
        self._check_ids(stream)
        return stream.astype(np.int64)

    # -- Baum–Welch ------------------------------------------------------------------------

    def fit(self, tokens: np.ndarray) -> "HMM":
        """`iterations` Baum–Welch updates on a 1-D token stream (module docstring).
        Fills `history` (log-likelihood of the segmented stream, nats, one entry per parameter
        set: iterations + 1) and `objective_history` (plus ε Σ log θ, never decreasing)."""
        stream = self._stream(tokens)
        if stream.size == 0:
            raise SeqlabError("cannot fit an HMM on an empty stream")
        L = min(self.segment_length, stream.size)
        S = -(-stream.size // L)
        padded = np.zeros(S * L, np.int64)
        padded[:stream.size] = stream
        x = padded.reshape(S, L)                                                          # (S, L)
        mask = (np.arange(S * L) < stream.size).reshape(S, L)                            # (S, L)
        group = max(1, _CHUNK_ELEMENTS // (L * self.num_states))
        params = tuple(t.detach().cpu().numpy().copy() for t in (self.pi, self.A, self.B))
        self.history, self.objective_history = [], []
        for it in range(self.iterations + 1):
            last = it == self.iterations
            ll, counts = 0.0, None
            for g in range(0, S, group):
                seg_ll, seg_counts = self._e_step(x[g:g + group], mask[g:g + group], params, counts=not last)
                ll += seg_ll
                if not last:
                    counts = seg_counts if counts is None else tuple(a + b for a, b in zip(counts, seg_counts))
            self.history.append(ll)
            self.objective_history.append(ll + self.pseudo_count * self._log_prior_sum(params))
            if not last:
                params = self._m_step(params, *counts)
        for name, value in zip(("pi", "A", "B"), params):
            getattr(self, name).copy_(torch.from_numpy(value))
        self.n_tokens = int(stream.size)
        return self

    def _log_prior_sum(self, params) -> float:
        """Σ log θ over every entry of pi, A and B (0 when ε = 0, where entries may be 0)."""
        if self.pseudo_count == 0:
            return 0.0
        return float(sum(np.log(p).sum() for p in params))

    def _e_step(self, x: np.ndarray, mask: np.ndarray, params, counts: bool = True):
        """Scaled forward-backward on segments x (S, L) with mask (S, L), in numpy float64
        (small per-step arrays: numpy's call overhead is a fraction of torch's on a CPU).
        `params` = (pi, A, B) as arrays. Returns the summed log-likelihood and the expected
        counts (initial (K,), transitions (K, K), emissions (K, V)), or None for the counts
        when `counts` is False."""
        pi, A, B = params
        S, L = x.shape
        K = self.num_states
        e = B.T[x]                                                                      # (S, L, K)
        e[~mask] = 1.0                                          # padding: a missing observation
        alpha = np.empty_like(e)                                                        # α̂ (S, L, K)
        scale = np.empty((S, L))                                                        # c_t
        a = np.broadcast_to(pi, (S, K))
        for t in range(L):
            a = (a @ A if t else a) * e[:, t]
            c = a.sum(1)
            a /= c[:, None]
            alpha[:, t] = a
            scale[:, t] = c
        ll = float(np.log(scale).sum())
        if not counts:
            return ll, None
        # w_t = e_t ∘ β̂_t / c_t for t ≥ 1 (zeroed where x_t is padding); β̂_{t-1} = A w_t
        w = np.empty((S, L, K))
        beta = np.empty_like(e)
        b = np.ones((S, K))
        beta[:, L - 1] = b
        A_t = np.ascontiguousarray(A.T)
        for t in range(L - 1, 0, -1):
            wt = e[:, t] * b
            wt /= scale[:, t, None]
            w[:, t] = wt
            b = wt @ A_t
            beta[:, t - 1] = b
        gamma = alpha * beta                                                            # (S, L, K)
        gamma[~mask] = 0.0
        w[:, 1:][~mask[:, 1:]] = 0.0
        trans = np.tensordot(alpha[:, :-1], w[:, 1:], axes=([0, 1], [0, 1])) * A        # (K, K)
        # emission counts: Σ of γ over the positions of each symbol, by one sort of the ids
        flat_x, flat_g = x.reshape(-1), gamma.reshape(-1, K)
        order = np.argsort(flat_x, kind="stable")
        sorted_x = flat_x[order]
        starts = np.flatnonzero(np.r_[True, sorted_x[1:] != sorted_x[:-1]])
        emit = np.zeros((self.vocab_size, K))
        emit[sorted_x[starts]] = np.add.reduceat(flat_g[order], starts, axis=0)
        return ll, (gamma[:, 0].sum(0), trans, emit.T)

    def _m_step(self, params, initial: np.ndarray, trans: np.ndarray, emit: np.ndarray):
        eps = self.pseudo_count
        out = []
        for old, counts in zip(params, (initial, trans, emit)):
            counts = counts + eps
            total = counts.sum(-1, keepdims=True)
            # a row with no expected count at all (only possible with ε = 0) keeps its values:
            # it does not enter the EM objective, so any row maximises it
            with np.errstate(invalid="ignore", divide="ignore"):
                out.append(np.where(total > 0, counts / total, old))
        return tuple(out)

    # -- scoring -------------------------------------------------------------------------

    def init_state(self, batch_size: int) -> Tensor:
        """(B, K) float64: log pi, the belief about z_0 before x_0 is seen."""
        return torch.log(self.pi).expand(batch_size, self.num_states).clone()

    @torch.no_grad()
    def next_log_probs(self, x: Tensor, state: Optional[Tensor] = None) -> tuple[Tensor, Tensor]:
        """`forward` in float64: (log P(x_{t+1} = v | x_{≤t}) (B, T, V), new state (B, K))."""
        Bsz, T = x.shape
        if state is None:
            state = self.init_state(Bsz)
        self._check_ids(x)
        x = x.to(self.B.device, torch.long)
        state = state.to(self.B.device, torch.float64)
        belief = torch.exp(state - state.max(1, keepdim=True).values)                  # (B, K)
        emit_t = self.B.t()                                                             # (V, K)
        predicted = torch.empty(Bsz, T, self.num_states, dtype=torch.float64, device=belief.device)
        for t in range(T):
            belief = belief * emit_t[x[:, t]]                   # joint with the emission x_t
            belief = belief / belief.sum(1, keepdim=True)       # P(z_t | x_{≤t})
            belief = belief @ self.A                            # P(z_{t+1} | x_{≤t})
            predicted[:, t] = belief
        log_probs = torch.log(predicted @ self.B)                                      # (B, T, V)
        new_state = torch.log(belief) if T else state.clone()
        return log_probs, new_state

    def forward(self, x: Tensor, state: Optional[Tensor] = None) -> tuple[Tensor, Tensor]:
        """x (B, T) ids -> (float32 log P(x_{t+1} = v | x_{≤t}) (B, T, V), state (B, K) float64)."""
        log_probs, state = self.next_log_probs(x, state)
        return log_probs.float().to(x.device), state.to(x.device)

    def step(self, x_t: Tensor, state: Optional[Tensor]) -> tuple[Tensor, Tensor]:
        log_probs, state = self.forward(x_t[:, None], state)
        return log_probs[:, 0], state

    @torch.no_grad()
    def log_likelihood(self, tokens) -> float:
        """log P(x_0, ..., x_{N-1}) of a whole 1-D stream from the start (pi), in nats:
        the scaled forward algorithm, Σ_t log P(x_t | x_{<t}). 0.0 for an empty stream."""
        stream = self._stream(tokens)
        pi, A, emit_t = (t.cpu().numpy() for t in (self.pi, self.A, self.B.t()))
        scales = np.empty(stream.size)
        belief = pi
        for t, token in enumerate(stream):
            joint = belief * emit_t[token]
            c = joint.sum()
            scales[t] = c
            belief = (joint / c) @ A
        return float(np.log(scales).sum())

    # -- sampling ------------------------------------------------------------------------

    def sample(self, n: int, generator: Union[np.random.Generator, torch.Generator, int, None] = None,
               return_states: bool = False):
        """Draw n tokens (np.ndarray (n,) int64) from the model: z_0 ~ pi, z_t ~ A[z_{t-1}],
        x_t ~ B[z_t]. `generator`: a numpy Generator, a torch Generator, a seed, or None.
        With `return_states`, returns (tokens, hidden states)."""
        if n < 0:
            raise SeqlabError(f"cannot sample {n} tokens")
        if isinstance(generator, torch.Generator):
            u = torch.rand(2 * n, generator=generator, dtype=torch.float64).numpy()
        else:
            rng = generator if isinstance(generator, np.random.Generator) else np.random.default_rng(generator)
            u = rng.random(2 * n)
        K = self.num_states
        cum_pi = np.cumsum(self.pi.cpu().numpy())
        cum_A = np.cumsum(self.A.cpu().numpy(), axis=1)
        cum_B = np.cumsum(self.B.cpu().numpy(), axis=1)
        states = np.empty(n, np.int64)
        z = -1
        for t in range(n):
            row = cum_pi if t == 0 else cum_A[z]
            z = min(int(np.searchsorted(row, u[t], side="right")), K - 1)
            states[t] = z
        tokens = np.empty(n, np.int64)
        for k in range(K):
            at = states == k
            tokens[at] = np.minimum(np.searchsorted(cum_B[k], u[n:][at], side="right"), self.vocab_size - 1)
        return (tokens, states) if return_states else tokens

    # -- saving --------------------------------------------------------------------------

    def state_arrays(self) -> dict[str, np.ndarray]:
        """Numeric arrays only (safetensors-ready); `from_state_arrays` restores the model."""
        meta = [FORMAT_VERSION, self.num_states, self.vocab_size, self.seed, self.iterations,
                self.segment_length, self.n_tokens]
        return {
            "meta": np.array(meta, np.int64),
            "pseudo_count": np.array([self.pseudo_count]),
            "pi": self.pi.cpu().numpy().copy(),
            "A": self.A.cpu().numpy().copy(),
            "B": self.B.cpu().numpy().copy(),
            "history": np.array(self.history, np.float64),
            "objective_history": np.array(self.objective_history, np.float64),
        }

    @classmethod
    def from_state_arrays(cls, arrays: dict[str, np.ndarray]) -> "HMM":
        try:
            version, K, V, seed, iterations, segment_length, n_tokens = (int(v) for v in arrays["meta"])
            if version != FORMAT_VERSION:
                raise ValueError(f"format version {version}, expected {FORMAT_VERSION}")
            model = cls(ModelConfig(name="hmm", hidden_size=K), V, seed=seed, iterations=iterations,
                        segment_length=segment_length, pseudo_count=float(arrays["pseudo_count"][0]))
            model.set_parameters(arrays["pi"], arrays["A"], arrays["B"])
            model.history = [float(v) for v in arrays["history"]]
            model.objective_history = [float(v) for v in arrays["objective_history"]]
            model.n_tokens = n_tokens
        except (KeyError, ValueError, IndexError, TypeError) as e:
            raise SeqlabError(f"not a seqlab HMM state ({e})") from None
        return model


register("model", "hmm")(HMM)
