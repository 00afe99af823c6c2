"""Count-based n-gram language model with add-k, Witten–Bell, Kneser–Ney and modified Kneser–Ney
smoothing (Chen & Goodman 1998, TR-10-98; Kneser & Ney 1995; Witten & Bell 1991).

Dimension legend: N training tokens, n order, V vocabulary size, P query positions, B batch, T time;
at one order, R positions whose context was seen, U distinct such contexts, E their (h, w) pairs.
A context h of order k is the k−1 tokens before the predicted word w; h' is h without its oldest token.

Conventions:
* The stream is padded on the left with n−1 <bos>, and every training token is one event
  with its full padded context: each order k has exactly N events (the k-grams *ending at* a
  training token), so c(h) = Σ_w c(h w). `init_state` is the same padding, so a stream is
  scored from a <bos>-padded start. <pad> and <bos> are never predicted: the training
  stream may not contain them and they get probability 0 (log-prob −inf) everywhere.
* The recursion ends in the uniform distribution over S = every id except <pad> and <bos>
  (|S| = V − 2). <unk> and <eos> are in S, so an unknown token in held-out text, or a token
  never seen in training, always has finite log-probability.
* A context never seen in training backs off to the next shorter context:
  P_k(w | h) = P_{k−1}(w | h') when c(h) = 0 (also for add-k).
* Seen contexts, with c(h w) the counts of order k, C = Σ_w c(h w), N1+(h•) = #{w: c(h w) > 0}:

    add-k           P_k(w|h) = (c(h w) + k) / (C + k|S|)                      (k = 1: Laplace)
    Witten–Bell     P_k(w|h) = (c(h w) + N1+(h•) P_{k−1}(w|h')) / (C + N1+(h•))
    Kneser–Ney      P_k(w|h) = max(c(h w) − D_k, 0) / C + D_k N1+(h•) / C · P_{k−1}(w|h')
    modified KN     P_k(w|h) = (c(h w) − D_k(c(h w))) / C
                               + (D_k,1 N1(h•) + D_k,2 N2(h•) + D_k,3+ N3+(h•)) / C · P_{k−1}(w|h')

  with P_0 = uniform over S. For the two Kneser–Ney forms the counts of every order below n
  are continuation counts c(h w) = N1+(• h w), the number of distinct tokens seen before
  h w (here every lower-order event has a predecessor, possibly <bos>). Discounts are
  estimated per order from the count-of-counts n_r of that order's counts (raw at order n,
  continuation below):
    KN   D = n1 / (n1 + 2 n2)
    MKN  Y = n1 / (n1 + 2 n2), D1 = 1 − 2Y n2/n1, D2 = 2 − 3Y n3/n2, D3+ = 3 − 4Y n4/n3
  Where an order's estimate does not exist (a zero n_r in a denominator: tiny corpora, or
  a character unigram where every character follows several others, so n1 = 0) or a D_r
  leaves (0, r], that order uses KenLM's fallback discounts: 0.5 (KN), (0.5, 1, 1.5) (MKN).
  Each formula then sums to exactly 1 over the vocabulary in every context.

Counting: `seqlab.models.ngram_counts` (one sort of the stream; per order, the distinct
contexts as a trie and their (h, w) pairs as CSR arrays).

Scoring
-------
Each formula above reads P_k(w|h) = alpha_k(h w) + gamma_k(h) · P_lower(w), with P_lower the
uniform for add-k and P_{k−1}(w|h') otherwise. Both paths evaluate it from order 1 up with the
same floating-point operations, so they agree (tests/models/test_ngram_scoring.py asks 1e-12):
* the whole distribution (`forward`, `step`, `log_prob_table`, `next_probabilities`: sampling,
  decoding, compression): per position the dense (V,) table, each seen context's pairs
  scattered in, positions in chunks so that P·V stays bounded. Cost O(P·V).
* the targets only (`stream_log_probs`, `target_log_probs`, `perplexity`, and through
  `target_log_probs` the trainer's `evaluate`): one probability per position. The positions
  are first sorted by reversed context (`np.lexsort`: radix passes over the small context
  columns), so that at every order the positions sharing a context are adjacent. At each order the distinct contexts queried are expanded
  once into their pairs (for C, N1+(h•) and the discount mass), the pairs' (context, word)
  keys sorted (a context's words are not stored sorted), and each target's c(h w) found by
  `np.searchsorted`. Cost per order O(P log M + E log E) and memory O(P + E), M the order's
  distinct contexts and E, the pairs under the contexts queried, at most its distinct n-grams.
"""
from __future__ import annotations

from typing import Optional

import numpy as np
import torch
from torch import Tensor, nn

from seqlab import SeqlabError
from seqlab.config import ModelConfig
from seqlab.models.ngram_counts import count_ngrams, estimate_discounts, token_dtype
from seqlab.models.base import check_range
from seqlab.models.ngram_state import SMOOTHINGS, NGramArrays
from seqlab.registry import register
from seqlab.tokens import BOS, PAD

__all__ = ["MAX_ORDER", "SMOOTHINGS", "NGramLM", "count_ngrams", "estimate_discounts", "perplexity"]

MAX_ORDER = 20
_CHUNK_ELEMENTS = 1 << 22          # rows × V per block of dense distributions (32 MiB of float64)
_CHUNK_POSITIONS = 1 << 18         # positions per block of target-only scoring (n ids of int64 each)


class NGramLM(NGramArrays, nn.Module):
    """An n-gram language model behind the sequence-model interface: `fit` counts, then
    `forward` / `step` return real log-probabilities (B, T, V) / (B, V) usable as logits;
    `target_log_probs` (B, T) and `stream_log_probs` (N,) only those of given targets, for
    scoring. The state is the last n−1 tokens (B, n−1), <bos> at the start."""

    fitted_by_counting = True     # in one pass: the optimiser's train.* options do not apply
    @staticmethod
    def options(cfg: ModelConfig) -> tuple[str, ...]:
        """The model.* options this family honours."""
        return ("order", "smoothing") + (("add_k",) if cfg.smoothing == "add_k" else ())

    @staticmethod
    def check(cfg: ModelConfig) -> None:
        """The family's rules: checks.validate runs them, and so does building one."""
        check_range(cfg, "order", 1, MAX_ORDER)
        if cfg.smoothing not in SMOOTHINGS:
            raise SeqlabError(f"model.smoothing must be one of {', '.join(SMOOTHINGS)}; got {cfg.smoothing!r}")
        if cfg.smoothing == "add_k" and not cfg.add_k > 0:
            raise SeqlabError(f"model.add_k must be greater than 0, got {cfg.add_k}")

    def __init__(self, cfg: ModelConfig, vocab_size: int):
        super().__init__()
        self.check(cfg)
        if vocab_size < 4:
            raise SeqlabError(f"the n-gram model needs the four specials in the vocabulary, got {vocab_size}")
        self.order, self.vocab_size = cfg.order, vocab_size
        self.smoothing, self.add_k = cfg.smoothing, float(cfg.add_k)
        self.register_buffer("_anchor", torch.zeros(0), persistent=False)  # `.to()` / device
        self.uniform = np.full(vocab_size, 1.0 / (vocab_size - 2))
        self.uniform[[PAD, BOS]] = 0.0
        self.n_tokens = 0
        self.fitted = False
        self._levels: list[tuple[np.ndarray, ...]] = []
        self.discounts = np.zeros((self.order, 3))   # (n, 3): D1, D2, D3+ of each order (KN forms)

    kneser_ney = property(lambda self: self.smoothing in ("kneser_ney", "modified_kneser_ney"))

    extra_repr = lambda self: f"order={self.order}, vocab_size={self.vocab_size}, smoothing={self.smoothing}"  # noqa: E731

    # -- counting ---------------------------------------------------------------------

    def fit(self, tokens: np.ndarray) -> "NGramLM":
        if self.fitted:
            raise SeqlabError("this n-gram model is already fitted; build a new one to count another stream")
        stream = np.asarray(tokens)
        if stream.ndim != 1 or not (stream.size == 0 or np.issubdtype(stream.dtype, np.integer)):
            raise SeqlabError(f"fit expects a 1-D array of token ids, got shape {stream.shape} {stream.dtype}")
        if stream.size and (stream.min() < 0 or stream.max() >= self.vocab_size):
            raise SeqlabError(f"token ids must be in [0, {self.vocab_size}), got {stream.min()}..{stream.max()}")
        if np.any((stream == PAD) | (stream == BOS)):
            raise SeqlabError("the training stream contains <pad> or <bos>; they are reserved for padding")
        self._set_levels(count_ngrams(stream, self.order, self.vocab_size, self.kneser_ney), stream.size)
        return self

    def _set_levels(self, levels, n_tokens: int) -> None:
        self._levels, self.n_tokens, self.fitted = list(levels), int(n_tokens), True
        if self.kneser_ney:
            modified = self.smoothing == "modified_kneser_ney"
            self.discounts = np.stack([estimate_discounts(c, modified) for *_, c in self._levels])

    def contexts(self) -> list[np.ndarray]:
        """Per context length j = 0..n−1, the tokens of every context id of that length, (M_j, j),
        oldest first (the trie's key = id of the newest j−1 tokens · V + the token j back)."""
        V, out = self.vocab_size, [np.zeros((self._levels[0][0].size if self._levels else 0, 0), np.int64)]
        for j in range(1, len(self._levels)):
            keys = self._levels[j][0].astype(np.int64)
            out.append(np.concatenate([(keys % V)[:, None], out[j - 1][keys // V]], axis=1))
        return out

    def counts(self, order: int) -> dict[tuple[int, ...], int]:
        """{(tokens of h..., w): count} of one order, oldest token first: raw counts, or
        continuation counts N1+(• h w) below the top order for the Kneser–Ney forms."""
        _, offsets, words, counts = self._levels[order - 1]
        rows = np.repeat(self.contexts()[order - 1], np.diff(offsets.astype(np.int64)), axis=0)   # (E, order-1)
        return {tuple(r) + (int(w),): int(c) for r, w, c in zip(rows.tolist(), words.tolist(), counts.tolist())}

    # -- lookups ----------------------------------------------------------------------

    def _context_ids(self, reversed_context: np.ndarray) -> list[np.ndarray]:
        """Per context length j = 0..n−1, the id of the last j tokens (−1 when unseen)."""
        P = reversed_context.shape[0]
        has_root = bool(self._levels) and self._levels[0][0].size > 0
        ids = [np.full(P, 0 if has_root else -1, np.int64)]
        for j in range(1, self.order):
            prev, keys = ids[-1], self._levels[j][0]
            rows = np.flatnonzero(prev >= 0)
            out = np.full(P, -1, np.int64)
            if rows.size:
                query = prev[rows] * self.vocab_size + reversed_context[rows, j - 1]      # (R,)
                # in the keys' own dtype: searchsorted would otherwise copy the whole level
                query = np.minimum(query, np.iinfo(keys.dtype).max).astype(keys.dtype)
                at = np.minimum(np.searchsorted(keys, query), keys.size - 1)
                hit = keys[at] == query
                out[rows[hit]] = at[hit]
            ids.append(out)
        return ids

    def _reversed_contexts(self, rows: np.ndarray, first: int, count: int) -> np.ndarray:
        """(B, L) ids -> (B·count, n−1): the n−1 ids starting at positions first..first+count−1
        of each row, newest first (column j−1 = the token j back). A view when B = 1."""
        B, width = rows.shape[0], self.order - 1
        if width == 0:
            return np.zeros((B * count, 0), np.int64)
        windows = np.lib.stride_tricks.sliding_window_view(rows, width, axis=1)      # (B, L-n+2, n-1)
        return windows[:, first:first + count, ::-1].reshape(B * count, width)

    # -- one order of the recursion -----------------------------------------------------

    def _expand(self, k: int, contexts: np.ndarray):
        """The pairs of order k under the given context ids (U,), flattened to E pairs, and
        the terms of each context. Returns local (E,) the pair's row in `contexts`, pair (E,)
        its index in the order's CSR arrays, c (E,) its count as float64, and per context
        total (U,) C = Σ_w c(h w), fan (U,) N1+(h•), gamma (U,) the weight of P_lower."""
        _, offsets, _, counts = self._levels[k - 1]
        start, stop = offsets[contexts], offsets[contexts + 1]
        fan = (stop - start).astype(np.int64)                                         # (U,)
        local = np.repeat(np.arange(contexts.size), fan)                              # (E,)
        pair = np.repeat(start - np.cumsum(fan) + fan, fan) + np.arange(local.size)   # (E,)
        c = counts[pair].astype(np.float64)                                           # (E,)
        total = np.bincount(local, weights=c, minlength=contexts.size)                # (U,)
        if self.smoothing == "add_k":
            mass = self.add_k * (self.vocab_size - 2)
            gamma = mass / (total + mass)
        elif self.smoothing == "witten_bell":
            gamma = fan / (total + fan)
        else:
            gamma = np.bincount(local, weights=self._discount(k, c), minlength=contexts.size) / total
        return local, pair, c, total, fan, gamma

    def _discount(self, k: int, c: np.ndarray) -> np.ndarray:
        """D_k(c) of the Kneser–Ney forms: D1, D2 or D3+ by the count (c = 0 reads D1 and
        leaves max(c − D, 0) = 0)."""
        return self.discounts[k - 1][np.clip(c, 1, 3).astype(np.int64) - 1]

    def _alpha(self, k: int, c: np.ndarray, total: np.ndarray, fan: np.ndarray) -> np.ndarray:
        """The count term alpha_k(h w) of each (h, w): c = c(h w), 0 when w was never seen
        after h; total = C and fan = N1+(h•) of its context."""
        if self.smoothing == "add_k":
            return c / (total + self.add_k * (self.vocab_size - 2))
        if self.smoothing == "witten_bell":
            return c / (total + fan)
        return np.maximum(c - self._discount(k, c), 0.0) / total

    # -- the whole distribution ---------------------------------------------------------

    def _probabilities(self, reversed_context: np.ndarray) -> np.ndarray:
        """(P, n−1) tokens, 1 back first -> (P, V) float64 probabilities."""
        P, V = reversed_context.shape[0], self.vocab_size
        dist = np.tile(self.uniform, (P, 1))                                          # (P, V)
        for k, ids in enumerate(self._context_ids(reversed_context), start=1):
            rows = np.flatnonzero(ids >= 0)
            if rows.size == 0:
                break                                     # longer contexts are unseen too
            local, pair, c, total, fan, gamma = self._expand(k, ids[rows])
            alpha = self._alpha(k, c, total[local], fan[local])                       # (E,)
            lower = np.broadcast_to(self.uniform, (rows.size, V)) if self.smoothing == "add_k" else dist[rows]
            new = gamma[:, None] * lower                                              # (R, V)
            new[local, self._levels[k - 1][2][pair].astype(np.int64)] += alpha
            dist[rows] = new
        return dist

    def _log_probs(self, reversed_context: np.ndarray, dtype=np.float64) -> np.ndarray:
        P, V = reversed_context.shape[0], self.vocab_size
        out = np.empty((P, V), dtype)
        step = max(1, _CHUNK_ELEMENTS // V)
        with np.errstate(divide="ignore"):                # <pad>, <bos>: log 0 = -inf
            for i in range(0, P, step):
                out[i:i + step] = np.log(self._probabilities(reversed_context[i:i + step]))
        return out

    # -- the targets only ---------------------------------------------------------------

    def _target_probabilities(self, reversed_context: np.ndarray, targets: np.ndarray) -> np.ndarray:
        """(P, n−1) tokens, 1 back first, and (P,) targets -> (P,) float64 probabilities:
        the entries of `_probabilities` at the targets, without the (P, V) table."""
        V = self.vocab_size
        # positions sorted by reversed context (a radix sort of small columns): at every order
        # the positions that share a context are then adjacent and the context ids ascend
        if self.order > 1:
            by_context = np.lexsort(reversed_context.T[::-1].astype(token_dtype(V)))  # (P,)
            reversed_context, targets = reversed_context[by_context], targets[by_context]
        prob = self.uniform[targets]                                                  # (P,) P_0
        for k, ids in enumerate(self._context_ids(reversed_context), start=1):
            rows = np.flatnonzero(ids >= 0)
            if rows.size == 0:
                break
            seen = ids[rows]                                                          # (R,) ascending
            first = np.ones(rows.size, bool)
            first[1:] = seen[1:] != seen[:-1]
            contexts, at = seen[first], np.cumsum(first) - 1                          # (U,), (R,)
            local, pair, c, total, fan, gamma = self._expand(k, contexts)
            # each target's c(h w): search the sorted (context row, word) keys of the pairs
            keys = local * V + self._levels[k - 1][2][pair]                           # (E,)
            order = np.argsort(keys, kind="stable")
            keys = keys[order]
            query = at * V + targets[rows]                                            # (R,)
            found = np.minimum(np.searchsorted(keys, query), keys.size - 1)
            c_target = np.where(keys[found] == query, c[order[found]], 0.0)           # (R,)
            lower = self.uniform[targets[rows]] if self.smoothing == "add_k" else prob[rows]
            prob[rows] = gamma[at] * lower + self._alpha(k, c_target, total[at], fan[at])
        if self.order == 1:
            return prob
        out = np.empty_like(prob)
        out[by_context] = prob                                                        # input order
        return out

    def _target_log_probs(self, reversed_context: np.ndarray, targets: np.ndarray) -> np.ndarray:
        out = np.empty(targets.size)
        step = _CHUNK_POSITIONS
        with np.errstate(divide="ignore"):                # <pad>, <bos>: log 0 = -inf
            for i in range(0, targets.size, step):
                out[i:i + step] = np.log(self._target_probabilities(reversed_context[i:i + step],
                                                                    targets[i:i + step]))
        return out

    def _check_ids(self, ids: np.ndarray) -> None:
        if ids.size and (ids.min() < 0 or ids.max() >= self.vocab_size):
            raise SeqlabError(f"token ids must be in [0, {self.vocab_size}), got {ids.min()}..{ids.max()}")

    def log_prob_table(self, context: np.ndarray) -> np.ndarray:
        """(V,) float64 log-probabilities of the next token after a 1-D context (its last n−1
        tokens; a shorter context is <bos>-padded on the left, as at the start of a stream)."""
        context = np.asarray(context, np.int64).reshape(-1)
        self._check_ids(context)
        context = np.concatenate([np.full(self.order - 1, BOS, np.int64), context])
        recent = context[context.size - (self.order - 1):][::-1]                      # (n-1,)
        return self._log_probs(recent[None, :])[0]

    def next_probabilities(self, contexts: np.ndarray) -> np.ndarray:
        """(B, L >= n−1) token ids, oldest first -> (B, V) float64 probabilities of each row's next token."""
        contexts = np.asarray(contexts, np.int64)
        self._check_ids(contexts)
        width = self.order - 1
        return self._probabilities(np.ascontiguousarray(contexts[:, contexts.shape[1] - width:][:, ::-1]))

    def stream_log_probs(self, tokens: np.ndarray) -> np.ndarray:
        """(N,) float64 natural-log probability of each token of a 1-D stream given the tokens
        before it, the stream scored from a <bos>-padded start (as `perplexity`)."""
        tokens = np.asarray(tokens, np.int64).reshape(-1)
        self._check_ids(tokens)
        padded = np.concatenate([np.full(self.order - 1, BOS, np.int64), tokens])    # (N+n-1,)
        return self._target_log_probs(self._reversed_contexts(padded[None], 0, tokens.size), tokens)

    # -- the sequence-model interface ---------------------------------------------------

    def init_state(self, batch_size: int) -> Tensor:
        return torch.full((batch_size, self.order - 1), BOS, dtype=torch.long, device=self._anchor.device)

    def _with_state(self, x: Tensor, state: Optional[Tensor]) -> tuple[np.ndarray, Tensor]:
        """(B, n−1+T) ids on the CPU: the state, then the inputs; and the state after them."""
        if state is None:
            state = self.init_state(x.shape[0])
        full = torch.cat([state.to(x.device, torch.long), x.long()], 1).cpu().numpy()  # (B, n-1+T)
        self._check_ids(full)
        new_state = torch.from_numpy(np.ascontiguousarray(full[:, x.shape[1]:])).to(x.device)  # (B, n-1)
        return full, new_state

    def forward(self, x: Tensor, state: Optional[Tensor] = None) -> tuple[Tensor, Tensor]:
        B, T = x.shape
        full, new_state = self._with_state(x, state)
        reversed_context = self._reversed_contexts(full, 1, T)                          # (B*T, n-1)
        log_probs = self._log_probs(reversed_context, np.float32).reshape(B, T, self.vocab_size)
        return torch.from_numpy(log_probs).to(x.device), new_state

    def step(self, x_t: Tensor, state: Optional[Tensor]) -> tuple[Tensor, Tensor]:
        log_probs, state = self.forward(x_t[:, None], state)
        return log_probs[:, 0], state

    def target_log_probs(self, x: Tensor, targets: Tensor, state: Optional[Tensor] = None) -> tuple[Tensor, Tensor]:
        """(B, T) float64 log-probability of targets[:, t] after x[:, t] (and the state), and
        the state after x: the entries of `forward(x, state)` at the targets, computed
        without the (B, T, V) table. What `tasks.tbptt.evaluate` scores count models with."""
        B, T = x.shape
        if tuple(targets.shape) != (B, T):
            raise SeqlabError(f"targets must have the inputs' shape {(B, T)}, got {tuple(targets.shape)}")
        full, new_state = self._with_state(x, state)
        y = targets.long().cpu().numpy().reshape(B * T)                                 # (B*T,)
        self._check_ids(y)
        log_probs = self._target_log_probs(self._reversed_contexts(full, 1, T), y)     # (B*T,)
        return torch.from_numpy(log_probs.reshape(B, T)).to(x.device), new_state


def perplexity(model: NGramLM, tokens: np.ndarray) -> tuple[float, int]:
    """(mean NLL in nats per token of a 1-D stream scored from a <bos>-padded start, tokens scored)."""
    log_probs = model.stream_log_probs(tokens)                                        # (N,)
    return (float(-log_probs.sum() / log_probs.size), int(log_probs.size)) if log_probs.size else (float("nan"), 0)


register("model", "ngram")(NGramLM)
