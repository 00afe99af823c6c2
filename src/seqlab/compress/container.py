"""The .sqz container: everything decompression needs to refuse a wrong or damaged file, then
the payload.

    offset  size  field
    0       4     magic b"SQZ1"
    4       2     format version (little-endian), 2
    6       4     header length H (little-endian)
    10      H     header, UTF-8 JSON: mode ("adaptive", "static" or "stored"), model (its
                  description; a static run's name and weight checksum), length and sha256
                  of the original, streams, chunk, torch threads and version, the fingerprint
                  of the first chunks' frequencies, payload length and sha256
    10 + H  16    the first 16 bytes of the sha256 of bytes 0 .. 10 + H (the header's checksum)
    26 + H  ...   payload: range-coded 32-bit words (or, "stored", the original bytes)

Before anything is decoded or allocated: the magic and version, the header's checksum, every
header field's type and range (against what the model and this machine can do), and the
payload's length and sha256. So a damaged file is reported as damaged, wherever the damage
is; "another machine" is said only of intact bytes whose probabilities come out differently.
The decoded bytes are checked against the original's sha256 last. Version 1 files (no
checksums) are still read.
"""
from __future__ import annotations

import hashlib
import json
import math
import os
import struct
from typing import Any

from seqlab import SeqlabError

MAGIC, VERSION = b"SQZ1", 2
MODES = ("adaptive", "static", "stored")
_FIXED = struct.Struct("<4sHI")
CHECK = 16                                  # bytes of the header's sha256 kept
MAX_HEADER = 1 << 20                        # a header is a few hundred bytes
MAX_STREAMS, MAX_CHUNK, MAX_THREADS = 1 << 16, 1 << 20, 1024
# the range coder gives every byte value a probability of at least 2^-24 (constriction's precision),
# so no byte costs less than -log2(1 - 255 * 2^-24) bits: a payload bounds the length it can hold
MIN_BITS_PER_BYTE = -math.log2(1 - 255 / 2 ** 24)
DECODE_BYTES_PER_BYTE = 24                  # the (B, L) int64 grid, the bytes, and their copy


def pack(header: dict[str, Any], payload: bytes) -> bytes:
    header = {**header, "payload_length": len(payload), "payload_sha256": hashlib.sha256(payload).hexdigest()}
    text = json.dumps(header, sort_keys=True, separators=(",", ":")).encode("utf-8")
    head = _FIXED.pack(MAGIC, VERSION, len(text)) + text
    return head + hashlib.sha256(head).digest()[:CHECK] + payload


def damaged(name: str, what: str) -> SeqlabError:
    return SeqlabError(f"{name} is damaged: {what}; it cannot be decompressed (compress the original again, or "
                       f"restore the file from a copy)")


def unpack(blob: bytes, name: str = "the input") -> tuple[dict[str, Any], bytes]:
    if len(blob) < _FIXED.size or blob[:4] != MAGIC:
        if len(blob) >= 4 and sum(a != b for a, b in zip(blob[:4], MAGIC)) == 1:
            raise damaged(name, f"its first bytes read {blob[:4]!r}, one away from {MAGIC!r}")
        raise SeqlabError(f"{name} is not a seqlab compressed file (.sqz): it does not start with {MAGIC!r}")
    _, version, size = _FIXED.unpack_from(blob)
    if version not in (1, VERSION):
        raise SeqlabError(f"{name} says .sqz format version {version}; this seqlab reads versions 1 and {VERSION} "
                          f"(a newer seqlab made it, or the file is damaged)")
    if size > MAX_HEADER:
        raise damaged(name, f"its header length reads {size:,} bytes")
    end = _FIXED.size + size
    check = CHECK if version >= 2 else 0
    if len(blob) < end + check:
        raise damaged(name, "it is truncated (its header is cut off)")
    if check and hashlib.sha256(blob[:end]).digest()[:CHECK] != blob[end:end + CHECK]:
        raise damaged(name, "its header does not match its checksum")
    try:
        header = json.loads(blob[_FIXED.size:end].decode("utf-8"))
        if not isinstance(header, dict):
            raise TypeError("not an object")
    except (ValueError, TypeError, UnicodeDecodeError, RecursionError) as e:
        raise damaged(name, f"its header is not readable ({type(e).__name__})") from None
    validate(header, name, version)
    payload = blob[end + check:]
    expected = header["payload_length"]
    if len(payload) != expected:
        raise damaged(name, f"it is {'truncated' if len(payload) < expected else 'longer than it should be'}: "
                            f"its payload has {len(payload):,} bytes, its header says {expected:,}")
    if version >= 2 and hashlib.sha256(payload).hexdigest() != header["payload_sha256"]:
        raise damaged(name, "its payload does not match its checksum")
    return header, payload


def _int(header: dict, key: str, low: int, high: int, name: str) -> int:
    value = header.get(key)
    if isinstance(value, bool) or not isinstance(value, int) or not low <= value <= high:
        raise SeqlabError(f"{name}: its header's {key} is {value!r}, not a whole number in [{low:,}, {high:,}]; "
                          f"the file is damaged or was not made by seqlab compress")
    return value


def _hex(header: dict, key: str, name: str) -> None:
    value = header.get(key)
    if not (isinstance(value, str) and len(value) == 64 and all(c in "0123456789abcdef" for c in value)):
        raise SeqlabError(f"{name}: its header's {key} is not a sha256; the file is damaged")


def validate(header: dict, name: str, version: int = VERSION) -> None:
    """Every field decoding reads, checked for type and range before anything is built or allocated:
    the layout against the coder's limits, the length against what the payload can hold and what
    this machine's memory can decode."""
    mode = header.get("mode")
    if mode not in MODES:
        raise SeqlabError(f"{name}: its header's mode is {mode!r}, not one of {', '.join(MODES)}; the file is damaged")
    if not isinstance(header.get("model"), dict):
        raise SeqlabError(f"{name}: its header has no model description; the file is damaged")
    payload = _int(header, "payload_length", 0, 1 << 50, name)
    if version >= 2:
        _hex(header, "payload_sha256", name)
    _hex(header, "sha256", name)
    if mode == "stored":
        _int(header, "length", payload, payload, name)
        return
    for key, high in (("streams", MAX_STREAMS), ("chunk", MAX_CHUNK), ("threads", MAX_THREADS)):
        _int(header, key, 1, high, name)
    if payload % 4:
        raise damaged(name, "its payload is not whole 32-bit words")
    most = int(8 * (payload + 8 * header["streams"] + 64) / MIN_BITS_PER_BYTE)
    n = _int(header, "length", 0, most, name)
    need = DECODE_BYTES_PER_BYTE * n
    have = available_memory()
    if have is not None and need > have:
        raise SeqlabError(f"{name} decodes to {n:,} bytes, which needs about {need / 2**30:.1f} GiB of memory; "
                          f"this machine has {have / 2**30:.1f} GiB available")


def available_memory() -> int | None:
    """Bytes of memory this process could still get (Linux: MemAvailable), or None if unknown."""
    try:
        with open("/proc/meminfo") as f:
            for line in f:
                if line.startswith("MemAvailable:"):
                    return int(line.split()[1]) * 1024
    except (OSError, ValueError, IndexError):
        pass
    try:
        return os.sysconf("SC_AVPHYS_PAGES") * os.sysconf("SC_PAGE_SIZE")
    except (ValueError, OSError, AttributeError):
        return None
