"""Standard MIDI files (format 0, one track) from notes: what a tune sounds like, written by
seqlab itself so that any tune its ABC reader reads can be played.

A Standard MIDI File is a header chunk (MThd: format, track count, ticks per quarter note)
and track chunks (MTrk) of events, each preceded by its delay since the previous event as a
variable-length number (7 bits per byte, high bit set on all but the last byte).
"""
from __future__ import annotations

import struct
from fractions import Fraction
from typing import Iterable

TICKS_PER_QUARTER = 480


def _varlen(value: int) -> bytes:
    out = [value & 0x7F]
    value >>= 7
    while value:
        out.append(0x80 | (value & 0x7F))
        value >>= 7
    return bytes(reversed(out))


def midi_bytes(notes: Iterable[tuple[Fraction, Fraction, int]], quarters_per_minute: float = 120.0,
               program: int = 0, velocity: int = 80) -> bytes:
    """(onset, duration, MIDI pitch) in whole notes -> the bytes of a .mid file (one channel)."""
    events = []                                         # (tick, order, bytes): note-offs before note-ons at a tick
    for onset, duration, pitch in notes:
        start = round(onset * 4 * TICKS_PER_QUARTER)
        end = max(start + 1, round((onset + duration) * 4 * TICKS_PER_QUARTER))
        events.append((start, 1, bytes([0x90, pitch, velocity])))
        events.append((end, 0, bytes([0x80, pitch, 0])))
    events.sort(key=lambda e: (e[0], e[1]))
    tempo = round(60_000_000 / quarters_per_minute)     # microseconds per quarter note
    track = bytearray(b"\x00\xff\x51\x03" + tempo.to_bytes(3, "big") + b"\x00" + bytes([0xC0, program]))
    now = 0
    for tick, _, event in events:
        track += _varlen(tick - now) + event
        now = tick
    track += b"\x00\xff\x2f\x00"                        # end of track
    return (b"MThd" + struct.pack(">IHHH", 6, 0, 1, TICKS_PER_QUARTER)
            + b"MTrk" + struct.pack(">I", len(track)) + bytes(track))
