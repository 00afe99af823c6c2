"""seqlab's ABC reader (data/abc.py) and MIDI writer (data/midi.py), checked against music21's
independent ABC parser and MIDI reader on tunes written here."""
from __future__ import annotations

import io
import tarfile
from fractions import Fraction

import pytest

from seqlab.data import abc
from seqlab.data.folk import clean_tune, mend, tunes_of
from seqlab.data.midi import midi_bytes

music21 = pytest.importorskip("music21", reason="music21 is in requirements.lock; `make` installs it")

TUNES = [
    # key signature (G: F#), accidentals, octave marks, rests
    "X:1\nT:one\nM:3/4\nL:1/8\nK:G\nGABc d2 | ^c2 d2 =f2 | f2 e'2 G,2 | z2 D2 B,2 |]\n",
    # lengths /, 3/2, //, a triplet, broken rhythm, ties and a chord
    "X:2\nT:two\nM:4/4\nL:1/8\nK:D\nA/B/ c3/2d/ (3efg a>b | [DFA]2 d2- d4 | e//f//g/ a2 b4 z |\n",
    # flats from the key (Bb major), a minor mode key, upbeat and repeats
    "X:3\nT:three\nM:6/8\nL:1/8\nK:Bb\nF | B2d cBA | B3 F3 :|\n",
    "X:4\nT:four\nM:2/4\nL:1/16\nK:Dm\nA2 | d4e2f2 | e4d2^c2 | d8 |]\n",
]


def music21_notes(text: str) -> list[tuple[float, float, int | None]]:
    """(onset, length, MIDI pitch or None) in quarter notes, from music21's reading of the tune."""
    score = music21.converter.parseData(text, format="abc")
    out = []
    for element in score.flatten().notesAndRests:
        if element.quarterLength == 0:
            continue
        onset, length = float(element.offset), float(element.quarterLength)
        if element.isRest:
            out.append((onset, length, None))
        else:
            out.extend((onset, length, int(p.midi)) for p in element.pitches)
    return sorted(out, key=lambda n: (n[0], -1 if n[2] is None else n[2]))


def seqlab_notes(text: str) -> list[tuple[float, float, int | None]]:
    tune = abc.parse(text)
    return sorted(((float(n.onset * 4), float(n.duration * 4), n.pitch) for n in tune.notes),
                  key=lambda n: (n[0], -1 if n[2] is None else n[2]))


@pytest.mark.parametrize("text", TUNES)
def test_notes_match_music21(text):
    ours, theirs = seqlab_notes(text), music21_notes(text)
    assert [(pytest.approx(o), pytest.approx(length), p) for o, length, p in theirs] == ours


def test_accidental_lasts_to_the_end_of_its_bar():
    # ABC 2.1, 4.2: an accidental applies to later notes of the same pitch in the same bar (music21
    # does not carry it, so this rule is checked on its own)
    pitches = [n.pitch for n in abc.parse("T:a\nM:3/4\nL:1/4\nK:C\n^c c c' | c z z |\n").notes]
    assert pitches == [73, 73, 84, 72, None, None]


def test_bars_and_meter():
    tune = abc.parse(TUNES[0])
    assert [b.length for b in tune.bars] == [Fraction(3, 4)] * 4
    assert tune.bars_in_meter() == (4, 4)
    upbeat = abc.parse(TUNES[2])                      # upbeat F (1/8) then full bars of 6/8
    assert upbeat.bars[0].length == Fraction(1, 8) and upbeat.bars_in_meter() == (3, 3)
    wrong = abc.parse("T:w\nM:3/4\nL:1/4\nK:C\nC D E | F G | A B c | d e f |\n")
    assert wrong.bars_in_meter() == (3, 4)            # the second bar holds 2 beats of 3
    free = abc.parse("T:f\nM:none\nL:1/4\nK:C\nC D E F G |\n")
    assert free.bars_in_meter() == (0, 0)


def test_line_end_ends_only_a_full_bar():
    # Essen style: a phrase's last bar closes at the line's end; a short one is completed by the next upbeat
    tune = abc.parse("T:e\nM:2/4\nL:1/16\nK:G\nD2 | G2G2AGAc | B2BAG4\nBABcd2e2 | c2dcB2\nBc | d8 |\n")
    assert [b.length for b in tune.bars] == [Fraction(1, 8)] + [Fraction(1, 2)] * 5
    assert tune.bars_in_meter() == (6, 6)


@pytest.mark.parametrize("field, expected", [("C", Fraction(1)), ("C|", Fraction(1)), ("6/8", Fraction(3, 4)),
                                             ("2+3/8", Fraction(5, 8)), ("none", None), ("FREI4/4", None)])
def test_meters(field, expected):
    assert abc.meter_length(field) == expected


@pytest.mark.parametrize("key, expected", [("G", {"F": 1}), ("Bb", {"B": -1, "E": -1}), ("Dm", {"B": -1}),
                                           ("Ador", {"F": 1}), ("Ddor", {}), ("Emix", {"F": 1, "C": 1, "G": 1}),
                                           ("H", dict.fromkeys("FCGDA", 1)), ("Es", {"B": -1, "E": -1, "A": -1}),
                                           ("none", {})])
def test_keys(key, expected):
    assert abc.key_signature(key) == expected


@pytest.mark.parametrize("body, where", [("ABc@d |", "column 4"), ('AB "Am c |', "not closed"),
                                         ("[CEG | A |", "not closed"), ("A B : c", "not a bar line"),
                                         ("A0 B |", "length 0")])
def test_errors_name_the_place(body, where):
    with pytest.raises(abc.AbcError, match=where):
        abc.parse(f"T:x\nM:4/4\nL:1/4\nK:C\n{body}\n")


def test_refusals():
    with pytest.raises(abc.AbcError, match="no K: line"):
        abc.parse("T:x\nM:4/4\n")
    with pytest.raises(abc.AbcError, match="meter"):
        abc.parse("T:x\nM:2/2]\nK:C\nA |\n")
    with pytest.raises(abc.AbcError, match="key"):
        abc.parse("T:x\nK:Q\nA |\n")
    with pytest.raises(abc.AbcError, match="no notes"):
        abc.parse("T:x\nK:C\n")


def test_split_tunes():
    assert abc.split_tunes("T:a\nK:C\nA|\n\n \nT:b\nK:C\nB|\n\n\n") == ["T:a\nK:C\nA|", "T:b\nK:C\nB|"]


def test_midi_read_back_by_music21(tmp_path):
    tune = abc.parse(TUNES[1])
    path = tmp_path / "t.mid"
    path.write_bytes(midi_bytes((n.onset, n.duration, n.pitch) for n in tune.notes if n.pitch is not None))
    # as written (not rounded to 16ths), and notes music21 split at its own bar lines joined again
    score = music21.converter.parse(str(path), quantizePost=False).stripTies()
    back = sorted((round(float(e.offset), 4), round(float(e.quarterLength), 4), int(p.midi))
                  for e in score.flatten().notes for p in e.pitches)
    ours = sorted((round(float(n.onset * 4), 4), round(float(n.duration * 4), 4), n.pitch)
                  for n in tune.notes if n.pitch is not None)
    assert back == ours


def test_folk_cleaning_and_archive(tmp_path):
    essen = ("X:1\nT: Ein Lied \x84\nN: a note\nO: Europa\nR: Lied\nM: 2/4\nL: 1/16\nK: G\nd4A2c2 | d8\n\n"
             "X:2\nT: Kaputt\nM: 2/2]\nL: 1/8\nK: C\nAB |\n\n"
             "X:3\nT: Drei\nM: 3/4\nL: 1/8\nK: F\nF2A2c2 | f6 |\n")
    assert clean_tune(abc.split_tunes(essen)[0]) == "T:Ein Lied \x84\nM:2/4\nL:1/16\nK:G\nd4A2c2 | d8"
    assert mend("Ein Lied \x84") == "Ein Lied ä"
    archive = tmp_path / "music21-10.5.1.tar.gz"
    with tarfile.open(archive, "w:gz") as tar:
        for name, text in (("music21-10.5.1/music21/corpus/essenFolksong/a.abc", essen),
                           ("music21-10.5.1/music21/corpus/bach/b.abc", "X:1\nT:not folk\nK:C\nA|\n")):
            data = text.encode("utf-8")
            info = tarfile.TarInfo(name)
            info.size = len(data)
            tar.addfile(info, io.BytesIO(data))
    tunes, refused = tunes_of(archive)
    assert refused == 1 and [t.splitlines()[0] for t in tunes] == ["T:Ein Lied ä", "T:Drei"]


def test_any_text_is_read_or_refused_in_one_line():
    """Generated tunes can hold anything: the reader answers every text with a Tune or an AbcError,
    never another exception (a sampled tune must not crash `seqlab analyze tunes`)."""
    from hypothesis import given, settings
    from hypothesis import strategies as st

    alphabet = st.sampled_from(list("ABCDEFGabcdefgzZxX^_=,'/0123456789|:[]()<>-~.!+\"{}% \nTMLKH"))

    @settings(max_examples=400, deadline=None)
    @given(st.lists(alphabet, max_size=60).map("".join), st.sampled_from(["2/4", "6/8", "C|", "none", "3/"]),
           st.sampled_from(["1/8", "1/16", "0", "x"]), st.sampled_from(["G", "Dm", "Bb", "Hm", "Q"]))
    def check(body, meter, unit, key):
        try:
            tune = abc.parse(f"T:t\nM:{meter}\nL:{unit}\nK:{key}\n{body}\n")
        except abc.AbcError as e:
            assert "\n" not in str(e)
        else:
            kept, checked = tune.bars_in_meter()
            assert 0 <= kept <= checked and all(n.duration > 0 for n in tune.notes)

    check()


@pytest.mark.parametrize("body, fragment", [
    ("(0abc", "tuplet"), ("(3:0:2abc", "tuplet"), ("z/0", "divided by 0"), ("A/0 B", "divided by 0"),
    ("A2>>>>B", "at most >>>"), ("A'''''''''''' |", "outside MIDI's range"), ("C,,,,,,,, |", "outside MIDI's range"),
    ("[CEG]0", "length 0")])
def test_impossible_notes_are_refused(body, fragment):
    with pytest.raises(abc.AbcError, match=fragment):
        abc.parse(f"T:x\nM:2/4\nL:1/8\nK:G\n{body}\n")
