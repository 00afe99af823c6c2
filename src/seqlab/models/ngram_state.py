"""Saving a fitted n-gram model (models/ngram.py) as numeric arrays only, safetensors-ready:
its counts per order in CSR form, and a header of integers. Nothing is pickled."""
from __future__ import annotations

import numpy as np

from seqlab import SeqlabError
from seqlab.config import ModelConfig

SMOOTHINGS = ("add_k", "witten_bell", "kneser_ney", "modified_kneser_ney")
FORMAT_VERSION = 1


class NGramArrays:
    """`state_arrays()` and `NGramLM.from_state_arrays(arrays)`, mixed into NGramLM."""

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
    def from_state_arrays(cls, arrays: dict[str, np.ndarray]) -> "NGramArrays":
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
