"""The .sqz container: everything decompression needs to refuse a wrong file, then the payload.

    offset  size  field
    0       4     magic b"SQZ1"
    4       2     format version (little-endian), 1
    6       4     header length H (little-endian)
    10      H     header, UTF-8 JSON: mode ("adaptive", "static" or "stored"), model (its
                  description; a static run's name and weight checksum), length and sha256
                  of the original, streams, chunk, torch threads and version, the fingerprint
                  of the first chunks' frequencies, payload length
    10 + H  ...   payload: range-coded 32-bit words (or, "stored", the original bytes)

A file that is shorter or longer than its header says, or whose magic or version is
unknown, is refused before any decoding; the decoded bytes are checked against the sha256.
"""
from __future__ import annotations

import json
import struct
from typing import Any

from seqlab import SeqlabError

MAGIC, VERSION = b"SQZ1", 1
MODES = ("adaptive", "static", "stored")
_FIXED = struct.Struct("<4sHI")


def pack(header: dict[str, Any], payload: bytes) -> bytes:
    header = {**header, "payload_length": len(payload)}
    text = json.dumps(header, sort_keys=True, separators=(",", ":")).encode("utf-8")
    return _FIXED.pack(MAGIC, VERSION, len(text)) + text + payload


def unpack(blob: bytes, name: str = "the input") -> tuple[dict[str, Any], bytes]:
    if len(blob) < _FIXED.size or blob[:4] != MAGIC:
        raise SeqlabError(f"{name} is not a seqlab compressed file (.sqz): it does not start with {MAGIC!r}")
    _, version, size = _FIXED.unpack_from(blob)
    if version != VERSION:
        raise SeqlabError(f"{name} is .sqz format version {version}; this seqlab reads version {VERSION}")
    end = _FIXED.size + size
    if len(blob) < end:
        raise SeqlabError(f"{name} is truncated (its header is cut off)")
    try:
        header = json.loads(blob[_FIXED.size:end].decode("utf-8"))
        expected = int(header["payload_length"])
        for key in ("length", "streams", "chunk", "threads"):
            if not isinstance(header[key], int) or header[key] < 0:
                raise ValueError(key)
        if header["mode"] not in MODES or not isinstance(header["model"], dict) or len(header["sha256"]) != 64:
            raise ValueError("mode")
    except (ValueError, KeyError, TypeError, UnicodeDecodeError) as e:
        raise SeqlabError(f"{name} has a damaged header ({type(e).__name__}); it cannot be decompressed") from None
    payload = blob[end:]
    if len(payload) != expected:
        raise SeqlabError(f"{name} is {'truncated' if len(payload) < expected else 'longer than it should be'}: "
                          f"its payload has {len(payload):,} bytes, its header says {expected:,}")
    return header, payload
