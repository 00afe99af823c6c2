"""Vocabulary: characters, words or bytes <-> integer ids, with the four specials first.

    <pad>=0  <unk>=1  <bos>=2  <eos>=3, then tokens sorted by (-count, token),
    so the ids are deterministic for a given text.

The byte level is fixed: the 256 byte values in order (id = 4 + byte), whatever the text,
so any file is a stream of known tokens (binary files too; `seqlab compress`). A str given to
a byte vocabulary is its UTF-8 encoding; decoding gives back UTF-8 text (undecodable bytes
shown as U+FFFD) or, with `decode_bytes`, the bytes themselves.

Saved as JSON: {"level": "char", "tokens": [...]} — readable, diff-able, safe to load.
"""
from __future__ import annotations

import base64
import binascii
import json
from collections import Counter
from pathlib import Path
from typing import Iterable

import numpy as np

from seqlab import SeqlabError
from seqlab.io import atomic_write_text, json_loads
from seqlab.data.subword import NEWLINE, processor
from seqlab.tokens import BOS, EOS, PAD, SPECIALS, UNK  # noqa: F401 - re-exported for data's users


LEVELS = ("char", "word", "byte", "subword")
BYTES = [chr(b) for b in range(256)]          # the byte level's tokens, as one-character names


class Vocab:
    def __init__(self, tokens: Iterable[str], level: str = "char", model: bytes | None = None):
        """`model`: a subword vocabulary's sentencepiece model (data/subword.py); its pieces are the tokens."""
        if level not in LEVELS:
            raise SeqlabError(f"vocab level must be 'char', 'word', 'byte' or 'subword', got {level!r}")
        self.level = level
        if level == "byte":
            tokens = BYTES
        if level == "subword":
            if model is None:
                raise SeqlabError("a subword vocabulary is learned from text (data/subword.py), not listed")
            self.model, self._sp = bytes(model), processor(bytes(model))
            pieces = [self._sp.id_to_piece(i) for i in range(self._sp.get_piece_size())]
            if tuple(pieces[:len(SPECIALS)]) != SPECIALS:
                raise SeqlabError("not a seqlab subword model (its first pieces must be seqlab's specials)")
            tokens = pieces[len(SPECIALS):]
        self.itos: list[str] = list(SPECIALS) + [t for t in tokens if t not in SPECIALS]
        self.stoi: dict[str, int] = {t: i for i, t in enumerate(self.itos)}
        if len(self.stoi) != len(self.itos):
            raise SeqlabError("vocabulary has duplicate tokens")

    # -- building ---------------------------------------------------------------------

    @classmethod
    def build(cls, text: str, level: str = "char", max_size: int = 0, min_count: int = 1) -> "Vocab":
        if level == "byte":
            return cls((), "byte")
        return cls.from_counts(Counter(tokenize(text, level)), level, max_size, min_count)

    @classmethod
    def from_counts(cls, counts: Counter, level: str, max_size: int = 0, min_count: int = 1) -> "Vocab":
        """The `max_size` most frequent tokens seen at least `min_count` times (specials aside)."""
        if level == "byte":
            return cls((), "byte")
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

    def encode(self, text: str | bytes) -> np.ndarray:
        """Text -> int64 ids; unknown tokens become <unk>. The byte level also takes bytes."""
        if self.level == "byte":
            data = text if isinstance(text, (bytes, bytearray, memoryview)) else text.encode("utf-8")
            return np.frombuffer(data, dtype=np.uint8).astype(np.int64) + len(SPECIALS)
        if self.level == "char":
            return self._encode_chars(text)
        if self.level == "subword":
            return np.asarray(self._sp.encode(text.replace("\n", NEWLINE)), dtype=np.int64)
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

    def decode_bytes(self, ids: Iterable[int]) -> bytes:
        """A byte vocabulary's ids -> the bytes (specials, which stand for no byte, are dropped)."""
        if self.level != "byte":
            raise SeqlabError(f"decode_bytes reads byte-level ids; this vocabulary is {self.level}-level")
        return bytes(int(i) - len(SPECIALS) for i in ids if int(i) >= len(SPECIALS))

    def decode(self, ids: Iterable[int]) -> str:
        if self.level == "byte":
            return self.decode_bytes(ids).decode("utf-8", errors="replace")
        if self.level == "subword":
            return self._sp.decode([int(i) for i in ids if int(i) >= len(SPECIALS)]).replace(NEWLINE, "\n")
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
        if self.level in ("byte", "subword"):
            return []                              # every byte is in it (subwords: as a fallback piece)
        seen: dict[str, None] = {}
        for t in tokenize(text, self.level):
            if t not in self.stoi:
                seen[t] = None
        return list(seen)

    # -- persistence ------------------------------------------------------------------

    def newline(self) -> int | None:
        """The id that stands for a line break (what scoring and sampling start after), or None."""
        if self.level == "word":
            return EOS
        return self.stoi.get(NEWLINE if self.level == "subword" else "\n")

    def to_json(self) -> str:
        data = {"level": self.level, "tokens": self.itos[len(SPECIALS):]}
        if self.level == "subword":
            data["model"] = base64.b64encode(self.model).decode("ascii")
        return json.dumps(data, ensure_ascii=False)

    def save(self, path: str | Path) -> None:
        atomic_write_text(path, self.to_json())

    @classmethod
    def load(cls, path: str | Path) -> "Vocab":
        try:
            data = json_loads(Path(path).read_text(encoding="utf-8"))
            tokens, level = data["tokens"], data["level"]
        except FileNotFoundError:
            raise SeqlabError(f"vocabulary not found: {path}") from None
        except (ValueError, KeyError, TypeError) as e:
            raise SeqlabError(f"{path}: not a seqlab vocabulary ({e.__class__.__name__}: {e})") from None
        if level not in LEVELS:
            raise SeqlabError(f"{path}: not a seqlab vocabulary (level {level!r}, expected 'char', 'word', 'byte' "
                              f"or 'subword')")
        if level == "subword":
            try:
                model = base64.b64decode(data["model"], validate=True)
            except (KeyError, TypeError, ValueError, binascii.Error):
                raise SeqlabError(f"{path}: not a seqlab subword vocabulary (its model is missing or not base64)") from None
            try:
                vocab = cls((), "subword", model=model)
            except SeqlabError as e:
                raise SeqlabError(f"{path}: {e}") from None
            if vocab.itos[len(SPECIALS):] != tokens:
                raise SeqlabError(f"{path}: not a seqlab subword vocabulary (its pieces disagree with its model)")
            return vocab
        if level == "byte":
            if tokens != BYTES:
                raise SeqlabError(f"{path}: not a seqlab vocabulary (a byte vocabulary lists the 256 bytes in order)")
            return cls((), "byte")
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
