"""Count-based n-gram language model with add-k, Witten–Bell, Kneser–Ney and modified
Kneser–Ney smoothing (Chen & Goodman 1998, "An empirical study of smoothing techniques for
language modeling", TR-10-98; Kneser & Ney 1995; Witten & Bell 1991).

Dimension legend: N training tokens, n order, V vocabulary size, P query positions,
B batch, T time. A context h of order k is the k−1 tokens before the predicted word w;
h' is h without its oldest token.

Conventions
-----------
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

Counting (vectorised, exact, no hashing)
----------------------------------------
Write back_j[i] for the token j steps before training token i (back_0 = the token itself).
1. One `np.lexsort` over the columns (back_0, back_1, …, back_{n−1}) (uint8/uint16 columns,
   so each pass is a radix sort) orders the events by their *reversed* n-gram. The
   events sharing an order-k n-gram h w are then contiguous, for every k at once: group
   boundaries at order k are those of order k−1 OR a change in back_{k−1}. Group sizes are
   the raw counts; the number of order-(k+1) groups nested in an order-k group is the
   continuation count N1+(• h w).
2. The order of the events by reversed *context* (back_1, …, back_{n−1}) is the same sort
   shifted by one position (the context of token i is the reversed n-gram of token i−1),
   with token 0's all-<bos> context inserted: no second sort.
3. Contexts form a trie over reversed contexts: a context of length j has id = its rank
   among distinct contexts of that length, and key = id(h') · V + (token j back), so the keys
   of each level are sorted and distinct. Lookups are `np.searchsorted` level by level.
4. Each order's distinct (h, w) pairs are stored CSR by context id: offsets (per context),
   words and counts (per pair). Every step after the sort is O(N) vectorised passes.
Memory: per order, 8–16 bytes per distinct context (key, offset) and 5–12 per distinct
n-gram (word, count): 8 and 5 for characters (V ≤ 256) on up to 2^31 tokens.
Queries build, per position, the dense (V,) distribution from order 1 up, scattering each
seen context's pairs; positions are processed in chunks so that P·V stays bounded.
"""
from __future__ import annotations

from typing import Optional

import numpy as np
import torch
from torch import Tensor, nn

from seqlab import SeqlabError
from seqlab.config import ModelConfig
from seqlab.data.vocab import BOS, PAD
from seqlab.registry import register

SMOOTHINGS = ("add_k", "witten_bell", "kneser_ney", "modified_kneser_ney")
MAX_ORDER = 20
FORMAT_VERSION = 1
_CHUNK_ELEMENTS = 1 << 22          # rows × V per block of dense distributions (32 MiB of float64)


def _token_dtype(vocab_size: int) -> np.dtype:
    # small unsigned columns make each lexsort pass a radix sort
    for dtype in (np.uint8, np.uint16, np.uint32):
        if vocab_size <= np.iinfo(dtype).max + 1:
            return np.dtype(dtype)
    return np.dtype(np.int64)


def _index_dtype(largest: int) -> np.dtype:
    return np.dtype(np.int32 if largest < 2**31 - 1 else np.int64)


def _boundaries(previous: np.ndarray, column: np.ndarray) -> np.ndarray:
    """Refine group starts (bool over sorted rows) by one more sorted key column."""
    out = previous.copy()
    out[1:] |= column[1:] != column[:-1]
    return out


def count_ngrams(stream: np.ndarray, order: int, vocab_size: int, continuation: bool):
    """Count every order 1..n of a <bos>-padded stream. Returns, per order k (list index k−1):
    context keys (M,), CSR offsets (M+1,), words (pairs,), counts (pairs,). Counts are raw,
    or continuation counts N1+(• h w) below the top order when `continuation`.
    The stream holds ids in [0, V) other than <pad> and <bos> (`NGramLM.fit` checks)."""
    n, N = order, int(stream.size)
    dtype = _token_dtype(vocab_size)
    padded = np.concatenate([np.full(n - 1, BOS, dtype), stream.astype(dtype)])       # (N+n-1,)
    back = [padded[n - 1 - j: n - 1 - j + N] for j in range(n)]                       # n × (N,)
    if N == 0:
        empty = np.zeros(0, np.int64)
        return [(empty, np.zeros(1, np.int64), empty, empty) for _ in range(n)]

    # 1. events sorted by reversed n-gram (w, 1 back, 2 back, ...): lexsort's primary key is last
    perm_a = np.lexsort(back[::-1])                                                   # (N,)
    # 2. events sorted by reversed context: token i's context is token i-1's reversed n-gram
    if n == 1:
        perm_b = np.arange(N)
    else:
        after = perm_a + 1
        after = after[after < N]
        perm_b = np.insert(after, np.count_nonzero(stream[:-1] < BOS), 0)          # (N,)
    inv_b = np.empty(N, np.int64)
    inv_b[perm_b] = np.arange(N)
    b_row_of_a = inv_b[perm_a]                      # (N,) position in B order of each A row
    del inv_b
    word_b = back[0][perm_b]                                                          # (N,)

    first_row = np.zeros(N, bool)
    first_row[0] = True
    bound_a = _boundaries(first_row, back[0][perm_a])                       # order-1 groups
    bound_b = first_row                                                     # one empty context
    ctx_b = np.zeros(N, np.int64)                   # context id (current length) per B row
    keys = np.zeros(1, np.int32)                    # the empty context's key
    out = []
    for k in range(1, n + 1):
        starts_a = np.flatnonzero(bound_a)
        counts = np.diff(np.append(starts_a, N))                          # (pairs,) raw counts
        if k < n:
            next_a = _boundaries(bound_a, back[k][perm_a])
            if continuation:                  # order-(k+1) groups nested in each order-k group
                group = np.cumsum(bound_a) - 1
                counts = np.bincount(group[next_a], minlength=starts_a.size)
                del group
        # 3. pairs in context order: each pair is listed at its first event in B order
        first_b = np.minimum.reduceat(b_row_of_a, starts_a)                          # (pairs,)
        pair_at = np.full(N, -1, np.int64)
        pair_at[first_b] = np.arange(starts_a.size)
        rows = np.flatnonzero(pair_at >= 0)
        pairs = pair_at[rows]
        del pair_at, first_b
        per_ctx = np.bincount(ctx_b[rows], minlength=keys.size)
        offsets = np.zeros(keys.size + 1, _index_dtype(N))
        np.cumsum(per_ctx, out=offsets[1:])
        out.append((keys, offsets, word_b[rows].copy(),
                    counts[pairs].astype(_index_dtype(N))))
        if k < n:
            # 4. contexts one token longer: trie keys (parent id, token k back)
            column = back[k][perm_b]
            bound_b = _boundaries(bound_b, column)
            starts_b = np.flatnonzero(bound_b)
            # int32 when every possible key (parent id < previous level's size) fits
            key_dtype = _index_dtype(keys.size * vocab_size)
            keys = (ctx_b[starts_b] * vocab_size + column[starts_b]).astype(key_dtype)
            ctx_b = np.cumsum(bound_b) - 1
            bound_a = next_a
    return out


def estimate_discounts(counts: np.ndarray, modified: bool) -> np.ndarray:
    """(D1, D2, D3+) from the count-of-counts of one order (Chen & Goodman 1998).
    Where the estimate does not exist (a zero n_r in a denominator) or leaves (0, r], the
    order falls back to KenLM's --discount_fallback values: D = 0.5, or (0.5, 1, 1.5)."""
    n1, n2, n3, n4 = (float(np.count_nonzero(counts == r)) for r in (1, 2, 3, 4))
    if n1 == 0:
        return np.array([0.5, 1.0, 1.5]) if modified else np.full(3, 0.5)
    y = n1 / (n1 + 2 * n2)
    if not modified:
        return np.full(3, y)
    out = []
    for r, (num, den) in enumerate(((n2, n1), (n3, n2), (n4, n3)), start=1):
        d = r - (r + 1) * y * num / den if den > 0 else float("nan")
        if not 0 < d <= r:
            return np.array([0.5, 1.0, 1.5])
        out.append(d)
    return np.array(out)


class NGramLM(nn.Module):
    """An n-gram language model behind the sequence-model interface: `fit` counts, then
    `forward` / `step` return real log-probabilities (B, T, V) / (B, V) usable as logits.
    The state is the last n−1 tokens (B, n−1), <bos> at the start."""

    def __init__(self, cfg: ModelConfig, vocab_size: int):
        super().__init__()
        if not 1 <= cfg.order <= MAX_ORDER:
            raise SeqlabError(f"model.order must be 1-{MAX_ORDER}, got {cfg.order}")
        if cfg.smoothing not in SMOOTHINGS:
            raise SeqlabError(f"model.smoothing must be one of {', '.join(SMOOTHINGS)}; got {cfg.smoothing!r}")
        if cfg.smoothing == "add_k" and not cfg.add_k > 0:
            raise SeqlabError(f"model.add_k must be greater than 0, got {cfg.add_k}")
        if vocab_size < 4:
            raise SeqlabError(f"the n-gram model needs the four specials in the vocabulary, got size {vocab_size}")
        self.order, self.vocab_size = cfg.order, vocab_size
        self.smoothing, self.add_k = cfg.smoothing, float(cfg.add_k)
        self.register_buffer("_anchor", torch.zeros(0), persistent=False)  # `.to()` / device
        self.uniform = np.full(vocab_size, 1.0 / (vocab_size - 2))
        self.uniform[[PAD, BOS]] = 0.0
        self.n_tokens = 0
        self.fitted = False
        self._levels: list[tuple[np.ndarray, ...]] = []
        self.discounts = np.zeros((self.order, 3))   # (n, 3): D1, D2, D3+ of each order (KN forms)

    @property
    def kneser_ney(self) -> bool:
        return self.smoothing in ("kneser_ney", "modified_kneser_ney")

    def extra_repr(self) -> str:
        return f"order={self.order}, vocab_size={self.vocab_size}, smoothing={self.smoothing}"

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

    def counts(self, order: int) -> dict[tuple[int, ...], int]:
        """{(tokens of h..., w): count} of one order, oldest token first: raw counts, or
        continuation counts N1+(• h w) below the top order for the Kneser–Ney forms.
        A Python loop over every pair: for inspection and tests on small models."""
        keys, offsets, words, counts = self._levels[order - 1]
        out = {}
        for c in range(keys.size):
            context, level, node = [], order - 1, c
            while level > 0:
                key = int(self._levels[level][0][node])
                context.append(key % self.vocab_size)
                node, level = key // self.vocab_size, level - 1
            for p in range(offsets[c], offsets[c + 1]):
                out[tuple(context) + (int(words[p]),)] = int(counts[p])
        return out

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

    def _probabilities(self, reversed_context: np.ndarray) -> np.ndarray:
        """(P, n−1) tokens, 1 back first -> (P, V) float64 probabilities."""
        P, V = reversed_context.shape[0], self.vocab_size
        dist = np.tile(self.uniform, (P, 1))                                          # (P, V)
        for k, ids in enumerate(self._context_ids(reversed_context), start=1):
            rows = np.flatnonzero(ids >= 0)
            if rows.size == 0:
                break                                     # longer contexts are unseen too
            _, offsets, words, counts = self._levels[k - 1]
            start, stop = offsets[ids[rows]], offsets[ids[rows] + 1]
            fan = (stop - start).astype(np.int64)                                     # (R,)
            local = np.repeat(np.arange(rows.size), fan)                              # (E,)
            pair = np.repeat(start - np.cumsum(fan) + fan, fan) + np.arange(local.size)
            c = counts[pair].astype(np.float64)                                       # (E,)
            total = np.bincount(local, weights=c, minlength=rows.size)                # (R,) C
            if self.smoothing == "add_k":
                mass = self.add_k * (V - 2)
                alpha, gamma = c / (total + mass)[local], mass / (total + mass)
                lower = np.broadcast_to(self.uniform, (rows.size, V))
            elif self.smoothing == "witten_bell":
                alpha, gamma = c / (total + fan)[local], fan / (total + fan)
                lower = dist[rows]
            else:
                d = self.discounts[k - 1][np.minimum(c, 3).astype(np.int64) - 1]      # (E,)
                alpha = np.maximum(c - d, 0.0) / total[local]
                gamma = np.bincount(local, weights=d, minlength=rows.size) / total
                lower = dist[rows]
            new = gamma[:, None] * lower                                              # (R, V)
            new[local, words[pair].astype(np.int64)] += alpha
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

    # -- the sequence-model interface ---------------------------------------------------

    def init_state(self, batch_size: int) -> Tensor:
        return torch.full((batch_size, self.order - 1), BOS, dtype=torch.long, device=self._anchor.device)

    def forward(self, x: Tensor, state: Optional[Tensor] = None) -> tuple[Tensor, Tensor]:
        B, T = x.shape
        if state is None:
            state = self.init_state(B)
        full = torch.cat([state.to(x.device, torch.long), x.long()], 1).cpu().numpy()  # (B, n-1+T)
        self._check_ids(full)
        if self.order > 1:
            windows = np.lib.stride_tricks.sliding_window_view(full, self.order - 1, axis=1)
            reversed_context = windows[:, 1:, ::-1].reshape(B * T, self.order - 1)     # (B*T, n-1)
        else:
            reversed_context = np.zeros((B * T, 0), np.int64)
        log_probs = self._log_probs(reversed_context, np.float32).reshape(B, T, self.vocab_size)
        new_state = torch.from_numpy(np.ascontiguousarray(full[:, T:])).to(x.device)   # (B, n-1)
        return torch.from_numpy(log_probs).to(x.device), new_state

    def step(self, x_t: Tensor, state: Optional[Tensor]) -> tuple[Tensor, Tensor]:
        log_probs, state = self.forward(x_t[:, None], state)
        return log_probs[:, 0], state

    # -- saving -------------------------------------------------------------------------

    def state_arrays(self) -> dict[str, np.ndarray]:
        """Numeric arrays only (safetensors-ready); `from_state_arrays` restores the model."""
        meta = [FORMAT_VERSION, self.order, self.vocab_size, SMOOTHINGS.index(self.smoothing),
                self.n_tokens, int(self.fitted)]
        out = {"meta": np.array(meta, np.int64), "add_k": np.array([self.add_k])}
        for k, arrays in enumerate(self._levels, start=1):
            for name, a in zip(("context_keys", "offsets", "words", "counts"), arrays):
                out[f"order{k}.{name}"] = np.ascontiguousarray(a)
        return out

    @classmethod
    def from_state_arrays(cls, arrays: dict[str, np.ndarray]) -> "NGramLM":
        try:
            version, order, vocab_size, smoothing, n_tokens, fitted = (int(v) for v in arrays["meta"])
            if version != FORMAT_VERSION:
                raise ValueError(f"format version {version}, expected {FORMAT_VERSION}")
            cfg = ModelConfig(name="ngram", order=order, smoothing=SMOOTHINGS[smoothing],
                              add_k=float(arrays["add_k"][0]))
            model = cls(cfg, vocab_size)
            if fitted:
                levels = []
                for k in range(1, order + 1):
                    keys, offsets, words, counts = (arrays[f"order{k}.{name}"] for name in
                                                    ("context_keys", "offsets", "words", "counts"))
                    if offsets.size != keys.size + 1 or offsets[-1] != words.size or words.size != counts.size:
                        raise ValueError(f"order {k}: inconsistent array sizes")
                    levels.append((keys, offsets, words, counts))
                model._set_levels(levels, n_tokens)
        except (KeyError, ValueError, IndexError) as e:
            raise SeqlabError(f"not a seqlab n-gram state ({e})") from None
        return model


def perplexity(model: NGramLM, tokens: np.ndarray) -> tuple[float, int]:
    """Mean negative log-likelihood (nats per token) of a 1-D stream scored from a
    <bos>-padded start, and the number of tokens scored (perplexity = exp of the first)."""
    tokens = np.asarray(tokens, np.int64).reshape(-1)
    model._check_ids(tokens)
    if tokens.size == 0:
        return float("nan"), 0
    n = model.order
    padded = np.concatenate([np.full(n - 1, BOS, np.int64), tokens])                 # (N+n-1,)
    step = max(1, _CHUNK_ELEMENTS // model.vocab_size)
    total = 0.0
    for i in range(0, tokens.size, step):
        targets = tokens[i:i + step]                                                  # (P,)
        if n > 1:
            windows = np.lib.stride_tricks.sliding_window_view(padded[i:i + targets.size + n - 2], n - 1)
            reversed_context = windows[:, ::-1]                                       # (P, n-1)
        else:
            reversed_context = np.zeros((targets.size, 0), np.int64)
        log_probs = model._log_probs(reversed_context)                                # (P, V)
        total -= log_probs[np.arange(targets.size), targets].sum()
    return total / tokens.size, int(tokens.size)


register("model", "ngram")(NGramLM)
