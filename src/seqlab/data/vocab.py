"""Vocabulary: characters or words <-> integer ids, with the four specials first.

    <pad>=0  <unk>=1  <bos>=2  <eos>=3, then tokens sorted by (-count, token),
    so the ids are deterministic for a given text.

Saved as JSON: {"level": "char", "tokens": [...]} — readable, diff-able, safe to load.
"""
from __future__ import annotations

import json
from collections import Counter
from pathlib import Path
from typing import Iterable

import numpy as np

from seqlab import SeqlabError
from seqlab.io import atomic_write_text
from seqlab.tokens import BOS, EOS, PAD, SPECIALS, UNK  # noqa: F401 - re-exported for data's users


class Vocab:
    def __init__(self, tokens: Iterable[str], level: str = "char"):
        if level not in ("char", "word"):
            raise SeqlabError(f"vocab level must be 'char' or 'word', got {level!r}")
        self.level = level
        self.itos: list[str] = list(SPECIALS) + [t for t in tokens if t not in SPECIALS]
        self.stoi: dict[str, int] = {t: i for i, t in enumerate(self.itos)}
        if len(self.stoi) != len(self.itos):
            raise SeqlabError("vocabulary has duplicate tokens")

    # -- building ---------------------------------------------------------------------

    @classmethod
    def build(cls, text: str, level: str = "char", max_size: int = 0, min_count: int = 1) -> "Vocab":
        return cls.from_counts(Counter(tokenize(text, level)), level, max_size, min_count)

    @classmethod
    def from_counts(cls, counts: Counter, level: str, max_size: int = 0, min_count: int = 1) -> "Vocab":
        """The `max_size` most frequent tokens seen at least `min_count` times (specials aside)."""
        ranked = sorted(((t, c) for t, c in counts.items() if c >= min_count and t not in SPECIALS),
                        key=lambda tc: (-tc[1], tc[0]))
        if max_size:
            ranked = ranked[:max_size]
        real = [c for t, c in counts.items() if t not in SPECIALS]
        if not ranked and real and min_count > 1:      # every token would be <unk>: nothing to learn
            raise SeqlabError(f"data.min_count={min_count} leaves no token in the vocabulary (the most frequent "
                              f"one occurs {max(real)} times in the training split); lower data.min_count")
        return cls((t for t, _ in ranked), level)

    # -- encoding ---------------------------------------------------------------------

    def __len__(self) -> int:
        return len(self.itos)

    def encode(self, text: str) -> np.ndarray:
        """Text -> int64 ids; unknown tokens become <unk>."""
        if self.level == "char":
            return self._encode_chars(text)
        ids = [self.stoi.get(t, UNK) for t in tokenize(text, "word")]
        return np.asarray(ids, dtype=np.int64)

    def _encode_chars(self, text: str) -> np.ndarray:
        # Vectorised: code points -> ids through a lookup table (5M chars in well under a second).
        codes = np.frombuffer(text.encode("utf-32-le"), dtype=np.uint32)
        if codes.size == 0:
            return np.zeros(0, dtype=np.int64)
        table = np.full(int(codes.max()) + 1, UNK, dtype=np.int64)
        for tok, i in self.stoi.items():
            if len(tok) == 1 and ord(tok) < table.size:
                table[ord(tok)] = i
        return table[codes]

    def decode(self, ids: Iterable[int]) -> str:
        tokens = [self.itos[int(i)] for i in ids]
        if self.level == "char":
            return "".join(tokens)
        # Words: spaces between words, a newline where a line ended (<eos>).
        out: list[str] = []
        for tok in tokens:
            if tok == "<eos>":
                out.append("\n")
            else:
                out.append(tok if not out or out[-1] == "\n" else " " + tok)
        return "".join(out)

    def unknown(self, text: str) -> list[str]:
        """Tokens of `text` not in the vocabulary, in order of first appearance."""
        seen: dict[str, None] = {}
        for t in tokenize(text, self.level):
            if t not in self.stoi:
                seen[t] = None
        return list(seen)

    # -- persistence ------------------------------------------------------------------

    def to_json(self) -> str:
        return json.dumps({"level": self.level, "tokens": self.itos[len(SPECIALS):]}, ensure_ascii=False)

    def save(self, path: str | Path) -> None:
        atomic_write_text(path, self.to_json())

    @classmethod
    def load(cls, path: str | Path) -> "Vocab":
        try:
            data = json.loads(Path(path).read_text(encoding="utf-8"))
            tokens, level = data["tokens"], data["level"]
        except FileNotFoundError:
            raise SeqlabError(f"vocabulary not found: {path}") from None
        except (ValueError, KeyError, TypeError) as e:
            raise SeqlabError(f"{path}: not a seqlab vocabulary ({e.__class__.__name__}: {e})") from None
        if level not in ("char", "word"):
            raise SeqlabError(f"{path}: not a seqlab vocabulary (level {level!r}, expected 'char' or 'word')")
        if not isinstance(tokens, list) or not all(isinstance(t, str) and t for t in tokens):
            raise SeqlabError(f"{path}: not a seqlab vocabulary (its tokens must be a list of non-empty strings)")
        if len(set(tokens)) != len(tokens) or set(tokens) & set(SPECIALS):
            raise SeqlabError(f"{path}: not a seqlab vocabulary (it lists a token twice, or a special token such as <eos>)")
        return cls(tokens, level)

    def __eq__(self, other: object) -> bool:
        return isinstance(other, Vocab) and self.level == other.level and self.itos == other.itos


def tokenize(text: str, level: str) -> list[str]:
    """Characters, or whitespace-separated words with <eos> closing each line."""
    if level == "char":
        return list(text)
    out: list[str] = []
    for line in text.splitlines():
        words = line.split()
        if words:
            out.extend(words)
            out.append("<eos>")
    return out
