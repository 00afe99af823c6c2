"""A small reader for R's serialization format and its lazy-load databases (no R needed).

Written from the description in "R Internals" (section "Serialization Formats") and R's
src/main/serialize.c: it reads the XDR (big-endian binary) form, versions 2 and 3, and
only the object types plain data is made of: NULL, symbols, pairlists, character,
logical, integer, double and raw vectors, lists, references to symbols, and the ALTREP
forms R >= 3.5 uses for `1:n` and wrapped vectors. Anything else (closures,
environments, byte code, S4) is refused with a SeqlabError rather than guessed at.

A package's `data/Rdata.rdx` + `Rdata.rdb` is a lazy-load database: the .rdx is a
(gzip-compressed) serialized list `variables = list(name = c(offset, length), ...)`,
`references`, `compressed`; each object lives in the .rdb at `offset` for `length` bytes,
as a 4-byte big-endian uncompressed length followed by a zlib stream of its serialization.

Objects come back as Python values: NULL -> None, a vector -> RVector (its items, NA as
None, and its attributes), a pairlist -> dict, a symbol -> RSymbol.
"""
from __future__ import annotations

import gzip
import struct
import zlib
from dataclasses import dataclass, field
from typing import Any

from seqlab import SeqlabError

# SEXP types (Rinternals.h) and the pseudo-types serialize.c writes in their place.
NILSXP, SYMSXP, LISTSXP, CHARSXP, LGLSXP, INTSXP, REALSXP, STRSXP, VECSXP, EXPRSXP, RAWSXP = \
    0, 1, 2, 9, 10, 13, 14, 16, 19, 20, 24
ALTREP_SXP, EMPTYENV_SXP, BASEENV_SXP, GLOBALENV_SXP, NILVALUE_SXP, REFSXP = 238, 242, 241, 253, 254, 255
_VECTOR_KINDS = {LGLSXP: "logical", INTSXP: "integer", REALSXP: "double", STRSXP: "character",
                 VECSXP: "list", EXPRSXP: "expression", RAWSXP: "raw"}
_NA_INTEGER = -2 ** 31
# CHARSXP "levels" bits: how the string's bytes are encoded.
_LATIN1, _UTF8, _BYTES, _ASCII = 1 << 2, 1 << 3, 1 << 1, 1 << 6


@dataclass(frozen=True)
class RSymbol:
    name: str


@dataclass
class RVector:
    kind: str                                   # "character", "integer", "list", ...
    items: list
    attributes: dict[str, Any] = field(default_factory=dict)


class _Stream:
    def __init__(self, data: bytes, source: str):
        self.data, self.pos, self.source = data, 0, source

    def take(self, size: int) -> bytes:
        if size < 0 or self.pos + size > len(self.data):
            raise SeqlabError(f"{self.source}: R serialization ends early (at byte {self.pos}); "
                              f"the file is truncated or not what it claims to be")
        chunk = self.data[self.pos:self.pos + size]
        self.pos += size
        return chunk

    def int(self) -> int:
        return struct.unpack(">i", self.take(4))[0]

    def length(self) -> int:
        n = self.int()
        if n == -1:                              # long vector: two more ints, upper then lower
            upper, lower = struct.unpack(">II", self.take(8))
            n = (upper << 32) | lower
        return n


class _Reader:
    def __init__(self, data: bytes, source: str):
        self.stream = _Stream(data, source)
        self.source = source
        self.references: list = []               # symbols in the order they were first read
        self.encoding = "utf-8"                  # the writer's native encoding (version 3)

    def fail(self, what: str) -> SeqlabError:
        return SeqlabError(f"{self.source}: {what}; seqlab reads R data made of vectors and lists only")

    def header(self) -> None:
        s = self.stream
        if s.take(2) != b"X\n":
            raise self.fail("not R's XDR serialization format (expected it to start with 'X\\n')")
        version = s.int()
        s.take(8)                                # R version that wrote it, oldest that reads it
        if version == 3:
            self.encoding = s.take(s.int()).decode("ascii", "replace").lower().replace("utf8", "utf-8")
        elif version != 2:
            raise self.fail(f"serialization version {version} is not supported (2 and 3 are)")

    def item(self) -> Any:
        flags = self.stream.int()
        sexp_type, levels = flags & 0xFF, flags >> 12
        has_attributes, has_tag = bool(flags & (1 << 9)), bool(flags & (1 << 10))
        if sexp_type == NILVALUE_SXP:
            return None
        if sexp_type in (EMPTYENV_SXP, BASEENV_SXP, GLOBALENV_SXP):
            return RSymbol("<environment>")
        if sexp_type == REFSXP:
            index = flags >> 8 or self.stream.int()
            if not 1 <= index <= len(self.references):
                raise self.fail(f"reference {index} to an object not read yet")
            return self.references[index - 1]
        if sexp_type == SYMSXP:
            symbol = RSymbol(self.item())        # the name is a CHARSXP
            self.references.append(symbol)
            return symbol
        if sexp_type == LISTSXP:
            return self.pairlist(has_attributes, has_tag)
        if sexp_type == CHARSXP:
            return self.string(levels)
        if sexp_type in _VECTOR_KINDS:
            vector = RVector(_VECTOR_KINDS[sexp_type], self.vector_items(sexp_type))
            if has_attributes:
                vector.attributes = self.attributes()
            return vector
        if sexp_type == ALTREP_SXP:
            return self.altrep()
        raise self.fail(f"R object type {sexp_type} is not supported")

    def pairlist(self, has_attributes: bool, has_tag: bool) -> dict:
        # A pairlist is a chain of cells (attributes?, tag?, CAR, CDR); the CDR is the next
        # cell, written as another LISTSXP header, until NILVALUE ends it.
        result: dict = {}
        while True:
            if has_attributes:
                self.item()
            tag = self.item() if has_tag else None
            name = tag.name if isinstance(tag, RSymbol) else str(len(result))
            result[name] = self.item()
            flags = self.stream.int()
            if flags & 0xFF == NILVALUE_SXP:
                return result
            if flags & 0xFF != LISTSXP:
                raise self.fail(f"a pairlist continues with object type {flags & 0xFF}")
            has_attributes, has_tag = bool(flags & (1 << 9)), bool(flags & (1 << 10))

    def attributes(self) -> dict:
        attributes = self.item()
        if not isinstance(attributes, dict):
            raise self.fail("attributes are not a pairlist")
        return attributes

    def string(self, levels: int) -> str | None:
        size = self.stream.int()
        if size == -1:
            return None                          # NA_character_
        raw = self.stream.take(size)
        encoding = "latin-1" if levels & _LATIN1 else "utf-8" if levels & (_UTF8 | _ASCII) else self.encoding
        if levels & _BYTES:
            encoding = "latin-1"                 # raw bytes: keep every byte as one character
        try:
            return raw.decode(encoding)
        except (UnicodeDecodeError, LookupError):
            raise self.fail(f"a string is not valid {encoding}: {raw[:40]!r}") from None

    def vector_items(self, sexp_type: int) -> list:
        s = self.stream
        n = s.length()
        if sexp_type in (STRSXP, VECSXP, EXPRSXP):
            return [self.item() for _ in range(n)]
        if sexp_type == RAWSXP:
            return list(s.take(n))
        if sexp_type == REALSXP:
            return list(struct.unpack(f">{n}d", s.take(8 * n)))
        values = struct.unpack(f">{n}i", s.take(4 * n))
        if sexp_type == LGLSXP:
            return [None if v == _NA_INTEGER else bool(v) for v in values]
        return [None if v == _NA_INTEGER else v for v in values]

    def altrep(self) -> RVector:
        # ALTREP: (class info, state, attributes). Only the forms plain data uses are read.
        info, state, attributes = self.item(), self.item(), self.item()
        class_name = next(iter(info.values())).name if isinstance(info, dict) and info else "?"
        if class_name == "compact_intseq" and isinstance(state, RVector):
            n, start, step = (int(v) for v in state.items)
            vector = RVector("integer", list(range(start, start + n * step, step)))
        elif class_name == "compact_realseq" and isinstance(state, RVector):
            n, start, step = state.items
            vector = RVector("double", [start + i * step for i in range(int(n))])
        elif class_name.startswith("wrap_") and isinstance(state, RVector) and state.items:
            vector = state.items[0]
        else:
            raise self.fail(f"ALTREP class {class_name!r} is not supported")
        if isinstance(attributes, dict):
            vector.attributes = attributes
        return vector


def unserialize(data: bytes, source: str = "R data") -> Any:
    """One object from R's XDR serialization (the bytes after any compression is removed)."""
    reader = _Reader(data, source)
    reader.header()
    return reader.item()


def _decompress_file(data: bytes) -> bytes:
    """The .rdx index (and .rds files) are gzip files; an uncompressed one is accepted too."""
    return gzip.decompress(data) if data[:2] == b"\x1f\x8b" else data


def names(vector: RVector) -> list[str]:
    return list(vector.attributes.get("names", RVector("character", [])).items)


def read_lazyload_db(index_bytes: bytes, database: bytes, source: str = "Rdata") -> dict[str, Any]:
    """Every object of a lazy-load database, given the bytes of its .rdx and .rdb files."""
    rdx, rdb = f"{source}.rdx", f"{source}.rdb"
    index = unserialize(_decompress_file(index_bytes), rdx)
    if not isinstance(index, RVector) or index.kind != "list" or "variables" not in names(index):
        raise SeqlabError(f"{rdx}: not a lazy-load index (expected a list with `variables`)")
    parts = dict(zip(names(index), index.items))
    compressed = parts.get("compressed")
    if isinstance(compressed, RVector) and compressed.items not in ([True], [1]):
        raise SeqlabError(f"{rdx}: objects compressed with method {compressed.items} (bzip2 or xz); "
                          f"seqlab reads only zlib-compressed lazy-load databases")
    variables = parts["variables"]
    objects = {}
    for name, where in zip(names(variables), variables.items):
        offset, length = where.items
        chunk = database[offset:offset + length]
        if len(chunk) != length or length < 4:
            raise SeqlabError(f"{rdb}: object {name!r} at {offset}+{length} lies past the end of the file "
                              f"({len(database)} bytes); the database is truncated")
        expected = struct.unpack(">I", chunk[:4])[0]
        try:
            data = zlib.decompress(chunk[4:])
        except zlib.error as e:
            raise SeqlabError(f"{rdb}: object {name!r} is not zlib-compressed ({e})") from None
        if len(data) != expected:
            raise SeqlabError(f"{rdb}: object {name!r} decompressed to {len(data)} bytes, "
                              f"its header says {expected}")
        objects[name] = unserialize(data, f"{rdb}[{name}]")
    return objects
