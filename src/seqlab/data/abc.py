"""ABC notation, read closely enough to check a tune: its notes, its bars, and whether each
bar holds what the meter says.

ABC (abcnotation.com, standard 2.1) writes a tune as header lines (`T:` title, `M:` meter,
`L:` unit note length, `K:` key, which ends the header) and a body of notes:

    T: Tian xin shun
    M: 2/4
    L: 1/8
    K: G
    d2A2 | ddA2 | dAd2 | GED2

A note is an optional accidental (^ sharp, _ flat, = natural), a letter (C..B from middle
C up, c..b an octave higher), octave marks (' up, , down) and a length in units of L
(`2`, `/`, `3/2`, `//`); `z` and `x` are rests. `|` and its relatives (`||`, `|]`, `|:`,
`:|`, `::`, `[1`) end bars. Also read: chords `[CEG]`, tuplets `(3abc`, broken rhythm
`a>b`, ties, slurs, grace notes `{g}` (no time), decorations (`~`, `!trill!`), chord
symbols and annotations (`"Am"`), inline fields (`[M:3/4]`), `%` comments.

The end of a line also ends a bar that is full: the Essen folksong transcriptions (the
`folk` corpus) end a phrase's last bar at the line's end without writing `|`, and when that
bar is short the next line's upbeat completes it. A bar "keeps the
meter" when its length equals the meter's; the first and last bar of a tune may be shorter
(an upbeat and its complement). Tunes with `M: none` (free meter) have no bars to check.

Anything outside this grammar is an AbcError naming the line and column: the check of a
generated tune is meant to be strict.
"""
from __future__ import annotations

import re
from dataclasses import dataclass, field
from fractions import Fraction

from seqlab import SeqlabError

_BASE = {"C": 60, "D": 62, "E": 64, "F": 65, "G": 67, "A": 69, "B": 71}      # MIDI, middle C = 60
_FIFTHS = {"C": 0, "G": 1, "D": 2, "A": 3, "E": 4, "B": 5, "F": -1}         # naturals on the circle of fifths
_MODES = {"": 0, "maj": 0, "major": 0, "ion": 0, "m": -3, "min": -3, "minor": -3, "aeo": -3, "dor": -2,
          "phr": -4, "lyd": 1, "mix": -1, "loc": -5}
_SHARPS, _FLATS = "FCGDAEB", "BEADGCF"
_DECORATIONS = set("~.HLMOPSTuv")
_GERMAN = {"H": "B", "Hm": "Bm", "Es": "Eb", "As": "Ab", "Des": "Db", "Ges": "Gb", "Fis": "F#", "Cis": "C#"}
# |  ||  |]  [|  |:  :|  ::  :|:  and the endings |1  :|2  [1  [2,3
_BAR = re.compile(r"(?:\[\||:*\|+\]?:*|:{2,}|\[(?=\d))(?:\d+(?:[,-]\d+)*)?")


class AbcError(SeqlabError):
    """A tune that is not ABC this module can read."""


@dataclass
class Note:
    onset: Fraction             # from the start of the tune, in whole notes
    duration: Fraction          # in whole notes
    pitch: int | None           # MIDI number; None for a rest


@dataclass
class Bar:
    length: Fraction            # in whole notes
    meter: Fraction | None      # what it should hold; None in free meter


@dataclass
class Tune:
    title: str
    meter: str
    key: str
    notes: list[Note] = field(default_factory=list)
    bars: list[Bar] = field(default_factory=list)

    @property
    def duration(self) -> Fraction:
        return sum((b.length for b in self.bars), Fraction(0))

    def bars_in_meter(self) -> tuple[int, int]:
        """(bars that keep the meter, bars with a meter to keep); see the module docstring."""
        checked = kept = 0
        last = len(self.bars) - 1
        for i, bar in enumerate(self.bars):
            if bar.meter is None:
                continue
            checked += 1
            kept += bar.length == bar.meter or (i in (0, last) and bar.length < bar.meter)
        return kept, checked


def split_tunes(text: str) -> list[str]:
    """Tunes of a text in which blank lines separate tunes (the folk corpus, sampled tunes)."""
    return [block.strip("\n") for block in re.split(r"\n(?:[ \t]*\n)+", text) if block.strip()]


def meter_length(text: str) -> Fraction | None:
    """M: field -> the length of a bar in whole notes; None for free meter (`none`, `FREI...`)."""
    t = text.strip()
    if t in ("C", "c", "C|", "c|"):                # common time 4/4, cut time 2/2
        return Fraction(1)
    if not t or t.lower() == "none" or t.upper().startswith("FREI"):
        return None
    m = re.fullmatch(r"\(?(\d+(?:\+\d+)*)\)?\s*/\s*(\d+)", t)
    if not m or int(m.group(2)) == 0:
        raise AbcError(f"meter {text!r} is not like 3/4, 6/8, C, C| or none")
    return Fraction(sum(int(n) for n in m.group(1).split("+")), int(m.group(2)))


def key_signature(text: str) -> dict[str, int]:
    """K: field -> {letter: +1/-1} for the letters the key raises or lowers."""
    words = text.split()
    t = words[0] if words else ""
    if t.lower() in ("", "none", "hp"):
        return {}
    t = _GERMAN.get(t, t)                       # the Essen transcriptions write some keys in German
    m = re.fullmatch(r"([A-G])([#b]?)([A-Za-z]*)", t)
    mode = m.group(3).lower() if m else ""
    mode = mode if mode in _MODES else mode[:3]
    if not m or mode not in _MODES:
        raise AbcError(f"key {text!r} is not like G, Dm, Ador, Bb or none")
    fifths = _FIFTHS[m.group(1)] + {"#": 7, "b": -7, "": 0}[m.group(2)] + _MODES[mode]
    if fifths >= 0:
        return {letter: 1 for letter in _SHARPS[:fifths]}
    return {letter: -1 for letter in _FLATS[:-fifths]}


def unit_length(text: str) -> Fraction:
    """L: field -> the unit note length in whole notes (1/8, 1/16, 1)."""
    try:
        value = Fraction(text.strip())
    except (ValueError, ZeroDivisionError):
        value = Fraction(0)
    if value <= 0:
        raise AbcError(f"unit note length {text!r} is not like 1/8")
    return value


def _length(text: str, at: int) -> tuple[Fraction, int]:
    """A note length after a note or rest: `2`, `3/2`, `/`, `//`, `/4`; (multiplier, next index)."""
    m = re.compile(r"(\d*)((?:/\d*)*)").match(text, at)
    numerator, slashes = m.group(1), m.group(2)
    value = Fraction(int(numerator)) if numerator else Fraction(1)
    for part in re.findall(r"/(\d*)", slashes):
        if part and int(part) == 0:
            raise AbcError(f"a note length divided by 0 ({text[at:m.end()]!r})")
        value /= int(part) if part else 2
    if value == 0:
        raise AbcError(f"a note of length 0 ({text[at:m.end()]!r})")
    return value, m.end()


class _Reader:
    """The state of one tune's body while it is read: key, unit, meter, time, the open bar."""

    def __init__(self, title: str, meter: str, unit: str | None, key: str):
        self.tune = Tune(title=title, meter=meter, key=key)
        self.meter = meter_length(meter)
        self.unit = unit_length(unit) if unit else (
            Fraction(1, 16) if self.meter is not None and self.meter < Fraction(3, 4) else Fraction(1, 8))
        self.signature = key_signature(key)
        self.time = Fraction(0)
        self.bar_start = Fraction(0)
        self.accidentals: dict[tuple[str, int], int] = {}     # within the bar: (letter, octave) -> shift
        self.tuplet: list = []                                 # [remaining notes, factor]
        self.broken: Fraction | None = None                    # the next note's factor after > or <

    def field(self, name: str, value: str) -> None:
        if name == "M":
            self.meter = meter_length(value)
        elif name == "L":
            self.unit = unit_length(value)
        elif name == "K":
            self.signature = key_signature(value)

    def end_bar(self) -> None:
        if self.time > self.bar_start:
            self.tune.bars.append(Bar(self.time - self.bar_start, self.meter))
        self.bar_start = self.time
        self.accidentals = {}

    def factor(self) -> Fraction:
        f = Fraction(1)
        if self.tuplet:
            f *= self.tuplet[1]
            self.tuplet[0] -= 1
            if self.tuplet[0] == 0:
                self.tuplet = []
        if self.broken is not None:
            f *= self.broken
            self.broken = None
        return f

    def pitch(self, accidental: str, letter: str, octave: str) -> int:
        shift_octave = (1 if letter.islower() else 0) + octave.count("'") - octave.count(",")
        key = (letter.upper(), shift_octave)
        if accidental:
            shift = {"^": 1, "^^": 2, "_": -1, "__": -2, "=": 0}[accidental]
            self.accidentals[key] = shift
        else:
            shift = self.accidentals.get(key, self.signature.get(letter.upper(), 0))
        pitch = _BASE[letter.upper()] + 12 * shift_octave + shift
        if not 0 <= pitch <= 127:
            raise AbcError(f"a note outside MIDI's range 0-127 ({accidental}{letter}{octave}: {pitch})")
        return pitch


_NOTE = re.compile(r"(\^\^|\^|__|_|=)?([A-Ga-g])([',]*)")
_TUPLET = re.compile(r"\((\d)(?::(\d*))?(?::(\d*))?")


def _body_line(r: _Reader, line: str, where: int) -> None:
    i, n = 0, len(line)
    while i < n:
        c = line[i]
        if c in " \t`\\)":
            i += 1
        elif c == "%":
            break
        elif c == '"':
            end = line.find('"', i + 1)
            if end < 0:
                raise AbcError(f"line {where}, column {i + 1}: an annotation opened with \" is not closed")
            i = end + 1
        elif c in "!+":
            end = line.find(c, i + 1)
            if end < 0:
                raise AbcError(f"line {where}, column {i + 1}: a decoration opened with {c} is not closed")
            i = end + 1
        elif c == "{":
            end = line.find("}", i + 1)
            if end < 0:
                raise AbcError(f"line {where}, column {i + 1}: grace notes opened with {{ are not closed")
            i = end + 1
        elif c in _DECORATIONS or c == "-":
            i += 1
        elif c == "(":
            m = _TUPLET.match(line, i)
            if m:
                p = int(m.group(1))
                if p < 2 or (m.group(2) and int(m.group(2)) < 1) or (m.group(3) and int(m.group(3)) < 1):
                    raise AbcError(f"line {where}, column {i + 1}: tuplet {m.group()!r} (p notes in the time of q: p >= 2, q >= 1)")
                compound = r.meter is not None and r.meter.numerator % 3 == 0 and r.meter.numerator > 3
                q = int(m.group(2)) if m.group(2) else {2: 3, 3: 2, 4: 3, 6: 2, 8: 3}.get(p, 3 if compound else 2)
                count = int(m.group(3)) if m.group(3) else p
                r.tuplet = [count, Fraction(q, p)]
                i = m.end()
            else:
                i += 1                                                   # a slur
        elif c in "<>":
            j = i
            while j < n and line[j] == c:
                j += 1
            dots = j - i
            if dots > 3:
                raise AbcError(f"line {where}, column {i + 1}: broken rhythm {c * dots} (at most {c * 3})")
            if not r.tune.notes:
                raise AbcError(f"line {where}, column {i + 1}: broken rhythm {c} with no note before it")
            long_, short = 2 - Fraction(1, 2 ** dots), Fraction(1, 2 ** dots)
            first, then = (long_, short) if c == ">" else (short, long_)
            last = r.tune.notes[-1]
            grown = last.duration * (first - 1)
            for note in r.tune.notes:                                    # the previous note (or chord)
                if note.onset == last.onset:
                    note.duration *= first
            r.time += grown
            r.broken = then
            i = j
        elif c == "[" and i + 2 < n and line[i + 1].isalpha() and line[i + 2] == ":":
            end = line.find("]", i)
            if end < 0:
                raise AbcError(f"line {where}, column {i + 1}: an inline field opened with [ is not closed")
            r.field(line[i + 1], line[i + 3:end])
            i = end + 1
        elif c == "[" and i + 1 < n and (line[i + 1] in "^_=" or line[i + 1].upper() in _BASE):
            end = line.find("]", i)
            if end < 0:
                raise AbcError(f"line {where}, column {i + 1}: a chord opened with [ is not closed")
            inner, j, lengths = line[i + 1:end], 0, []
            start, pitches = r.time, []
            while j < len(inner):
                m = _NOTE.match(inner, j)
                if not m:
                    if inner[j] in " -":
                        j += 1
                        continue
                    raise AbcError(f"line {where}, column {i + 2 + j}: {inner[j]!r} inside a chord")
                length, j = _length(inner, m.end())
                pitches.append(r.pitch(m.group(1) or "", m.group(2), m.group(3)))
                lengths.append(length)
            if not pitches:
                raise AbcError(f"line {where}, column {i + 1}: an empty chord []")
            outer, k = _length(line, end + 1)
            duration = lengths[0] * outer * r.unit * r.factor()
            r.tune.notes.extend(Note(start, duration, p) for p in pitches)
            r.time = start + duration
            i = k
        elif c in "|:" or (c == "[" and i + 1 < n and (line[i + 1] == "|" or line[i + 1].isdigit())):
            m = _BAR.match(line, i)
            if not m:
                raise AbcError(f"line {where}, column {i + 1}: {c!r} here is not a bar line")
            r.end_bar()
            i = m.end()
        elif c in "zx":
            length, i = _length(line, i + 1)
            duration = length * r.unit * r.factor()
            r.tune.notes.append(Note(r.time, duration, None))
            r.time += duration
        elif c in "ZX":
            bars, i = _length(line, i + 1)
            if r.meter is None or bars.denominator != 1:
                raise AbcError(f"line {where}, column {i + 1}: a multi-bar rest needs a meter and whole bars")
            for _ in range(bars.numerator):
                r.tune.notes.append(Note(r.time, r.meter, None))
                r.time += r.meter
                r.end_bar()
        else:
            m = _NOTE.match(line, i)
            if not m:
                raise AbcError(f"line {where}, column {i + 1}: {c!r} is not ABC this check reads")
            pitch = r.pitch(m.group(1) or "", m.group(2), m.group(3))
            length, i = _length(line, m.end())
            duration = length * r.unit * r.factor()
            r.tune.notes.append(Note(r.time, duration, pitch))
            r.time += duration
    if r.meter is None or r.time - r.bar_start >= r.meter:
        r.end_bar()                          # the end of a line ends a full bar (see the module docstring)


def parse(text: str) -> Tune:
    """One tune -> its notes and bars; AbcError naming the line and column of what is not ABC."""
    headers: dict[str, str] = {}
    lines = text.splitlines()
    reader, where = None, 0
    for where, line in enumerate(lines, start=1):
        m = re.match(r"([A-Za-z]):(.*)$", line)
        if reader is None:
            if not line.strip() or line.lstrip().startswith("%"):
                continue
            if not m:
                raise AbcError(f"line {where}: {line[:30]!r} comes before the K: line that ends the header")
            headers[m.group(1)] = m.group(2).strip()
            if m.group(1) == "K":
                reader = _Reader(headers.get("T", ""), headers.get("M", "none"), headers.get("L"), headers["K"])
        elif m and m.group(1) in "MLKTPWwNRQVIX":
            reader.field(m.group(1), m.group(2))
        else:
            _body_line(reader, line, where)
    if reader is None:
        raise AbcError("no K: line: an ABC tune's header ends with its key")
    reader.end_bar()                                      # a last bar not closed by | or a full line
    if not reader.tune.notes:
        raise AbcError("the tune has no notes")
    return reader.tune
