"""Context mixing (the cmix / paq line): a match model beside the n-gram (and an LSTM), and a
mixer that learns online how far to trust each — in integer arithmetic from the models'
quantised probabilities onwards.

    MatchModel   finds the last place the current context of `min_len` bytes occurred (in any
                 stream coded so far) and predicts the byte that followed it there; long
                 repeats (source code, binaries) are what a 6-gram cannot see and xz can
    Mixer        geometric (logistic) mixing for a 256-symbol alphabet:
                     z(y) = Σ_i w_i · L_i(y),   P(y) ∝ exp(z(y))
                 with L_i(y) model i's log-probability of byte y in fixed point; after each
                 byte x, w_i += η · (L_i(x) − Σ_y P(y) L_i(y)), the gradient step on −ln P(x).
                 Each stream picks its weight set by the match model's length bucket, so the
                 mixer learns, per length, how much a match is worth against the n-gram.
    MixPredictor the predictor the codec drives (the protocol in predictors.py)

Fixed point: SCALE units per nat. ln and exp come from integer tables built once (values
rounded to integers), sums are int64, divisions floor: the same on every machine, given the
same inputs. The n-gram's probabilities use only +, −, ×, ÷ on float64 (correctly rounded by
IEEE 754), so it too is the same everywhere; an LSTM's are not (see codec.py's fingerprint).
"""
from __future__ import annotations

import numpy as np

SCALE = 1024                                   # fixed-point units per nat
QBITS = 16                                     # model probabilities quantised to q / 2^16, q >= 1
LN = np.round(SCALE * np.log(np.arange(1, (1 << QBITS) + 1) / (1 << QBITS))).astype(np.int64)   # LN[q-1]
EXP_BITS = 30
EXP = np.round((1 << EXP_BITS) * np.exp(-np.arange(24 * SCALE) / SCALE)).astype(np.int64)        # EXP[k] = e^(-k/SCALE)
WEIGHT_ONE = 1 << 16                           # weights in units of 2^-16
MATCH_BONUS = 4 * SCALE                        # the match model's input: 4 nats on the byte it predicts
CONFIDENCE = np.round(SCALE * np.log([0.3, 0.6, 0.9])).astype(np.int64)   # the first model's top probability
LENGTH_EDGES = np.array([1, 10, 12, 14, 16, 20, 24, 32, 48, 64, 128, 256, 512])   # bucket = how many edges <= length


def log_input(probs: np.ndarray) -> np.ndarray:
    """(B, 256) probabilities -> (B, 256) int64 log-probabilities in fixed point (floor to 2^-16)."""
    q = np.clip(np.floor(probs * float(1 << QBITS)), 1, 1 << QBITS).astype(np.int64)
    return LN[q - 1]


class MatchModel:
    """The longest-repeat predictor: a hash of the last `min_len` bytes -> where they last
    ended (column t, stream b, stored as t·B + b); while the predicted bytes keep coming true
    the match is followed and its length grows, on the first miss it is dropped and looked
    up again. Candidates are verified byte by byte, so a hash collision is never followed."""

    def __init__(self, min_len: int = 20, table_bits: int = 22):
        self.min_len, self.table_bits = min_len, table_bits
        rng = np.random.default_rng(0x5E71AB)
        self.mult = rng.integers(1, 1 << 62, size=min_len, dtype=np.uint64) | np.uint64(1)

    def reset(self, streams: int) -> None:
        self.B = streams
        self.hist = np.zeros((streams, 1024), np.uint8)
        self.t = 0                                       # columns known
        self.table = np.zeros(1 << self.table_bits, np.int64)   # position + 1 of the byte after a context
        self.ptr = np.zeros(streams, np.int64)           # position of the predicted byte
        self.length = np.zeros(streams, np.int64)        # 0: no match
        self.predicted = np.zeros(streams, np.int64)

    def _hash(self, columns: np.ndarray, rows: np.ndarray | slice = slice(None)) -> np.ndarray:
        window = self.hist[rows, columns - self.min_len + 1:columns + 1].astype(np.uint64)     # (n, m)
        h = (window * self.mult).sum(axis=1, dtype=np.uint64)
        return (h >> np.uint64(64 - self.table_bits)).astype(np.int64)

    def advance(self, symbols: np.ndarray, live: np.ndarray) -> None:
        t, B, m = self.t, self.B, self.min_len
        if t == self.hist.shape[1]:
            self.hist = np.concatenate([self.hist, np.zeros_like(self.hist)], 1)
        self.hist[:, t] = symbols
        self.t = t + 1
        hit = (self.length > 0) & (self.predicted == symbols)
        self.length = np.where(hit, np.minimum(self.length + 1, 65535), 0)
        self.ptr = np.where(hit, self.ptr + B, 0)
        if t >= m:                                       # the context ending at t-1 was followed by column t
            self.table[self._hash(t - 1)[live]] = (t * B + np.arange(B))[live] + 1
        if t + 1 >= m:                                   # look up the context ending at t where no match runs
            rows = np.flatnonzero((self.length == 0) & live)
            if rows.size:
                found = self.table[self._hash(t, rows)] - 1                                # (n,)
                rows, found = rows[found >= 0], found[found >= 0]
                col, src = found // B, found % B
                back = np.arange(1, m + 1)
                same = (self.hist[src[:, None], col[:, None] - back] == self.hist[rows[:, None], t + 1 - back]).all(1)
                same &= col - m >= 0
                self.length[rows[same]] = m
                self.ptr[rows[same]] = found[same]
        on = self.length > 0
        col, src = self.ptr // B, self.ptr % B
        self.predicted = np.where(on, self.hist[src, np.minimum(col, self.t - 1)].astype(np.int64), -1)

    def bucket(self) -> np.ndarray:
        return np.searchsorted(LENGTH_EDGES, self.length, side="right")

    def inputs(self) -> np.ndarray:
        """(B, 256) fixed-point input: MATCH_BONUS on the predicted byte, 0 elsewhere."""
        out = np.zeros((self.B, 256), np.int64)
        on = np.flatnonzero(self.predicted >= 0)
        out[on, self.predicted[on]] = MATCH_BONUS
        return out


class Mixer:
    """Geometric mixing of M fixed-point log-probability inputs, weight set per stream by a
    context id; exact integer arithmetic throughout."""

    def __init__(self, inputs: int, contexts: int, rate: float = 0.002, initial: list[float] | None = None):
        start = np.array(initial if initial is not None else [1.0] + [0.0] * (inputs - 1))
        self.weights = np.tile(np.round(start * WEIGHT_ONE).astype(np.int64), (contexts, 1))     # (C, M)
        self.rate = int(round(rate * 64 * (1 << 16)))   # Δw = rate·(gradient in nats) in weight units, ÷ 2^16

    def mix(self, L: np.ndarray, context: np.ndarray) -> np.ndarray:
        """(B, M, 256) inputs, (B,) context ids -> (B, 256) int64 unnormalised probabilities."""
        self.L, self.context = L, context
        z = np.einsum("bm,bmy->by", self.weights[context], L) >> 16                       # (B, 256)
        self.e = EXP[np.minimum(z.max(1, keepdims=True) - z, EXP.size - 1)]                # (B, 256)
        self.total = self.e.sum(1)
        return self.e

    def update(self, symbols: np.ndarray, live: np.ndarray) -> None:
        rows = np.flatnonzero(live)
        L, e = self.L[rows], self.e[rows]                                                   # (n, M, 256), (n, 256)
        expected = np.einsum("ny,nmy->nm", e, L) // self.total[rows, None]                 # (n, M)
        gradient = L[np.arange(rows.size), :, symbols[rows]] - expected                    # (n, M)
        np.add.at(self.weights, self.context[rows], (gradient * self.rate) >> 16)


class MixPredictor:
    """Other predictors (an n-gram, an LSTM: each answering the protocol in predictors.py) and
    the match model, mixed. The first part also sets the mixer's context (its confidence, and
    whether it agrees with the match)."""

    def __init__(self, parts: list, min_len: int = 10, rate: float = 0.001):
        self.parts = list(parts)
        self.match = MatchModel(min_len)
        contexts = (LENGTH_EDGES.size + 1) * (CONFIDENCE.size + 1) * 2
        self.mixer_options = (len(self.parts) + 1, contexts, rate, [1.0 / len(self.parts)] * len(self.parts) + [0.5])
        self.description = {"family": "mix", "parts": [p.description for p in self.parts], "min_len": min_len,
                            "rate": rate}

    def reset(self, streams: int) -> None:
        for p in self.parts:
            p.reset(streams)
        self.match.reset(streams)
        self.mixer = Mixer(*self.mixer_options[:3], initial=self.mixer_options[3])

    def probs(self) -> np.ndarray:
        L = np.stack([log_input(p.probs()) for p in self.parts] + [self.match.inputs()], 1)   # (B, M, 256)
        confidence = np.searchsorted(CONFIDENCE, L[:, 0].max(1), side="right")              # (B,)
        agree = L[:, 0].argmax(1) == self.match.predicted
        context = (self.match.bucket() * (CONFIDENCE.size + 1) + confidence) * 2 + agree
        return self.mixer.mix(L, context).astype(np.float64)

    def advance(self, symbols: np.ndarray, live: np.ndarray) -> None:
        self.mixer.update(symbols, live)
        for p in self.parts:
            p.advance(symbols, live)
        self.match.advance(symbols, live)

    def learn(self, chunk: np.ndarray, lengths: np.ndarray) -> None:
        for p in self.parts:
            p.learn(chunk, lengths)
