"""Probabilities -> integer frequencies -> range coding (constriction's RangeEncoder).

Quantisation is seqlab's own and deterministic: f = floor(p · (2^BITS − A)) + 1 for each of
the A symbols, so every symbol keeps a frequency of at least 1 and the total is at most
2^BITS. constriction then codes with these integers (given as exactly representable floats),
so encoder and decoder agree whenever they computed the same probabilities.
"""
from __future__ import annotations

import numpy as np

from seqlab import SeqlabError

BITS = 22                       # total frequency 2^22: constriction's 24-bit precision holds it exactly
ALPHABET = 256


def quantize(probs: np.ndarray) -> np.ndarray:
    """(B, A) probabilities (any non-negative scale, rows normalised here) -> (B, A) float64
    holding integers >= 1 that sum to at most 2^BITS per row."""
    p = np.asarray(probs, dtype=np.float64)
    if not np.isfinite(p).all() or (p < 0).any():
        raise SeqlabError("the model produced a probability that is not finite or negative; nothing can be coded")
    total = p.sum(axis=1, keepdims=True)
    p = np.divide(p, total, out=np.full_like(p, 1.0 / p.shape[1]), where=total > 0)
    return np.floor(p * float((1 << BITS) - p.shape[1])) + 1.0


def _family():
    try:
        import constriction        # optional outside `make venv`: only compression needs it
    except ImportError:
        raise SeqlabError("compression needs constriction: pip install constriction==0.5.0 (make venv installs it)") from None
    return constriction, constriction.stream.model.Categorical(perfect=False)


class Encoder:
    def __init__(self):
        self._lib, self._family = _family()
        self._coder = self._lib.stream.queue.RangeEncoder()

    def encode(self, symbols: np.ndarray, freqs: np.ndarray) -> None:
        """Code symbols (n,) in order, each with its row of freqs (n, A)."""
        if len(symbols):
            self._coder.encode(np.ascontiguousarray(symbols, dtype=np.int32), self._family,
                               np.ascontiguousarray(freqs, dtype=np.float64))

    def finish(self) -> bytes:
        return self._coder.get_compressed().astype("<u4").tobytes()


class Decoder:
    def __init__(self, payload: bytes):
        if len(payload) % 4:
            raise SeqlabError("the compressed data is truncated (its length is not whole 32-bit words)")
        self._lib, self._family = _family()
        self._coder = self._lib.stream.queue.RangeDecoder(np.frombuffer(payload, dtype="<u4").astype(np.uint32))

    def decode(self, freqs: np.ndarray) -> np.ndarray:
        """The next len(freqs) symbols, each decoded with its row of freqs (n, A)."""
        if not len(freqs):
            return np.zeros(0, np.int64)
        return self._coder.decode(self._family, np.ascontiguousarray(freqs, dtype=np.float64)).astype(np.int64)
