"""Bach's four-part chorales as piano rolls: the JSB Chorales stand-in.

Source: the music21==10.5.1 corpus (music21/corpus/bach/), read with
`corpus.chorales.Iterator(numberingSystem='riemenschneider')`: the 371 chorales in
Riemenschneider's numbering, of which those in exactly four parts are kept. music21 is
needed only by `seqlab data fetch chorales`: if this Python lacks music21 10.5.1 it is
pip-installed, with its pure-Python dependencies, into the fetch's temporary folder
(never into the environment) and imported from there. Each chorale is parsed with
forceSource=True, so music21's own pickled parse cache is neither read nor written.

Boulanger-Lewandowski, Bengio & Vincent, "Modeling Temporal Dependencies in
High-Dimensional Sequences" (ICML 2012) quantised the JSB chorales to quarter notes and
split 382 of them 229/76/77. Here likewise: one frame per quarter note, frame t holds
the pitches sounding at time t (onset <= t < onset + duration, in quarter notes from the
start, any part), over the 88 piano keys MIDI 21..108; notes shorter than a beat that
sound at no beat (passing eighths) are not in the roll, as in the JSB data. The four-part
chorales are split in the same 229:76:77 proportions by a seeded shuffle of their
Riemenschneider numbers (seed 0), each split then in number order.

Cache: $SEQLAB_DATA/chorales/: rolls.npy (all frames, uint8 0/1), lengths.npy, numbers.npy,
splits.npy (0 train, 1 valid, 2 test) and manifest.json (titles, music21 version).
"""
from __future__ import annotations

import importlib
import importlib.metadata
import math
import sys
from pathlib import Path
from typing import Iterable

import numpy as np
from tqdm import tqdm

from seqlab import SeqlabError
from seqlab.data.arrays import ArrayDataset, add, run

LOWEST_KEY, HIGHEST_KEY = 21, 108                     # A0 .. C8, MIDI numbers
KEYS = HIGHEST_KEY - LOWEST_KEY + 1                   # 88
SPLITS = ("train", "valid", "test")
JSB_SPLIT = (229, 76, 77)
SPLIT_SEED = 0
_MUSIC21 = "music21==10.5.1"
# music21's requirements minus numpy and matplotlib (seqlab has them), pinned as tested.
_DEPENDENCIES = ("chardet==7.7.0", "joblib==1.6.0", "jsonpickle==4.1.4", "more-itertools==11.2.1",
                 "webcolors==25.10.0", "requests==2.34.2", "urllib3==2.8.0", "idna==3.20",
                 "certifi==2026.10.18", "charset-normalizer==3.5.2")
_EPSILON = 1e-6                                       # offsets are exact fractions of a beat; floats are not


def piano_roll(notes: Iterable[tuple[float, float, int]], length: int | None = None) -> np.ndarray:
    """(T, 88) float32 0/1 from (onset, duration, MIDI pitch) triples, onset and duration in beats.

    Frame t is 1 for a pitch sounding at time t. T defaults to the number of beats up to
    the last note's end, rounded up. Zero-length (grace) notes sound at no frame.
    """
    notes = [(float(onset), float(duration), int(pitch)) for onset, duration, pitch in notes]
    if length is None:
        end = max((onset + duration for onset, duration, _ in notes), default=0.0)
        length = math.ceil(end - _EPSILON)
    roll = np.zeros((length, KEYS), dtype=np.float32)                    # (T, 88)
    for onset, duration, pitch in notes:
        if not LOWEST_KEY <= pitch <= HIGHEST_KEY:
            raise SeqlabError(f"pitch {pitch} is outside the piano's MIDI {LOWEST_KEY}..{HIGHEST_KEY}")
        first = math.ceil(onset - _EPSILON)                               # first beat at or after onset
        last = math.ceil(onset + duration - _EPSILON)                     # first beat at or after the end
        roll[max(first, 0):min(last, length), pitch - LOWEST_KEY] = 1.0
    return roll


def split_numbers(numbers: list[int], seed: int = SPLIT_SEED) -> dict[str, list[int]]:
    """Chorale numbers -> train/valid/test in JSB's 229:76:77 proportions, by a seeded shuffle."""
    order = [numbers[i] for i in np.random.default_rng(seed).permutation(len(numbers))]
    total = sum(JSB_SPLIT)
    train = round(len(numbers) * JSB_SPLIT[0] / total)
    valid = round(len(numbers) * JSB_SPLIT[1] / total)
    return {"train": sorted(order[:train]), "valid": sorted(order[train:train + valid]),
            "test": sorted(order[train + valid:])}


def score_notes(score) -> list[tuple[float, float, int]]:
    """(onset, duration, MIDI pitch) of every note and chord tone in every part of a music21 score."""
    notes = []
    for part in score.parts:
        for element in part.flatten().notes:                   # notes and chords, offsets from the start
            for pitch in element.pitches:
                notes.append((float(element.offset), float(element.quarterLength), int(pitch.midi)))
    return notes


def _import_music21(tmp: Path, log):
    """music21 10.5.1: this Python's own if it has that version, else a private install in tmp."""
    try:
        installed = importlib.metadata.version("music21")
    except importlib.metadata.PackageNotFoundError:
        installed = None
    if installed != _MUSIC21.split("==")[1]:
        if "music21" in sys.modules:
            raise SeqlabError(f"music21 {installed} is already imported; fetch the chorales in a fresh "
                              f"process: seqlab data fetch chorales")
        target = tmp / "music21-packages"
        log(f"chorales: pip install --target (temporary) {_MUSIC21} and its dependencies ...")
        run([sys.executable, "-m", "pip", "install", "--quiet", "--no-deps", "--target", str(target),
             _MUSIC21, *_DEPENDENCIES],
            "check that pip reaches the package index, or pip install music21==10.5.1, "
            "then run: seqlab data fetch chorales")
        sys.path.insert(0, str(target))     # taken out again by _build: the folder is temporary
        importlib.invalidate_caches()
    import music21          # optional: installed by `seqlab data fetch chorales`, found only then
    from music21 import corpus
    return music21, corpus


def _build(tmp: Path, log) -> tuple[dict, dict]:

    path_before = list(sys.path)
    kept: dict[int, np.ndarray] = {}
    titles: dict[int, str] = {}
    skipped = []
    try:
        music21, corpus = _import_music21(tmp, log)
        # The iterator gives each chorale's corpus file; parsing it with forceSource=True stops
        # music21 from reading or writing its pickled parse cache (in a shared temp folder).
        iterator = corpus.chorales.Iterator(numberingSystem="riemenschneider", returnType="filename")
        numbers = list(iterator.numberList)
        listed = corpus.chorales.ChoraleListRKBWV().byRiemenschneider      # number -> {"title", "bwv", ...}
        for number, filename in tqdm(zip(numbers, iterator), total=len(numbers), desc="parsing chorales",
                                     file=sys.stderr, leave=False):
            score = corpus.parse(filename, forceSource=True)
            if score is None or len(score.parts) != 4:
                skipped.append(number)
                continue
            kept[number] = piano_roll(score_notes(score))
            titles[number] = listed.get(number, {}).get("title") or ""
    finally:
        sys.path[:] = path_before
    if not kept:
        raise SeqlabError("music21's corpus yielded no four-part chorales; is it music21 10.5.1?")
    split_of = {n: code for code, name in enumerate(SPLITS) for n in split_numbers(sorted(kept))[name]}
    order = sorted(kept, key=lambda n: (split_of[n], n))
    arrays = {"rolls": np.concatenate([kept[n] for n in order]).astype(np.uint8),     # (sum T, 88)
              "lengths": np.array([len(kept[n]) for n in order], dtype=np.int64),
              "numbers": np.array(order, dtype=np.int64),
              "splits": np.array([split_of[n] for n in order], dtype=np.uint8)}
    manifest = {"source": f"{_MUSIC21} corpus.chorales.Iterator(numberingSystem='riemenschneider')",
                "music21_version": music21.__version__, "keys": f"MIDI {LOWEST_KEY}..{HIGHEST_KEY}",
                "frame": "one quarter note", "split": f"seeded shuffle (seed {SPLIT_SEED}), 229:76:77",
                "skipped_not_four_parts": skipped, "titles": {str(n): titles[n] for n in order}}
    return arrays, manifest


def _decode(arrays: dict, manifest: dict) -> dict[str, list[np.ndarray]]:
    ends = np.cumsum(arrays["lengths"])
    rolls = np.split(arrays["rolls"].astype(np.float32), ends[:-1])            # [(T_i, 88)]
    result: dict[str, list[np.ndarray]] = {name: [] for name in SPLITS}
    for roll, code in zip(rolls, arrays["splits"]):
        result[SPLITS[int(code)]].append(roll)
    return result


def roll_summary(splits: dict[str, list[np.ndarray]]) -> str:
    return ", ".join(f"{name} {len(rolls)} ({sum(map(len, rolls)):,} frames)" for name, rolls in splits.items())


CHORALES = add(ArrayDataset(
    name="chorales",
    description="Bach chorales in four parts as piano rolls: one frame per quarter note, 88 keys "
                "(the JSB Chorales stand-in), split 229:76:77",
    size="351 chorales",
    licence="BSD-3 (music21 corpus)",
    how=f"pip install --target (temporary folder) {_MUSIC21}; its corpus parsed once (~2 min), rolls cached",
    build=_build,
    decode=_decode,
    summary=roll_summary,
))


def load_chorales() -> dict[str, list[np.ndarray]]:
    """{"train", "valid", "test"}: lists of (T_i, 88) float32 0/1 piano rolls, by chorale number."""
    return CHORALES.load()


# -- folk tunes as piano rolls: the Nottingham stand-in --------------------------------------------
# Boulanger-Lewandowski et al. (2012) split the Nottingham folk tunes 694 / 173 / 170; the same
# number of Essen tunes (the folk corpus, data/folk.py: already shuffled with a seed) is taken
# in corpus order and split in those counts. One frame per eighth note; a tune is monophonic,
# so a frame holds at most one key (Nottingham's rolls also hold the chords).
NOTTINGHAM_SPLIT = (694, 173, 170)
FRAMES_PER_WHOLE = 8


def _build_folk_rolls(tmp: Path, log) -> tuple[dict, dict]:
    from seqlab.data import abc
    from seqlab.registry import get

    corpus = get("corpus", "folk")
    if not corpus.is_ready():
        corpus.fetch(log=log)
    tunes = abc.split_tunes(corpus.text())[:sum(NOTTINGHAM_SPLIT)]
    if len(tunes) < sum(NOTTINGHAM_SPLIT):
        raise SeqlabError(f"the folk corpus has {len(tunes)} tunes; {sum(NOTTINGHAM_SPLIT)} are needed")
    rolls, titles = [], []
    for text in tunes:
        tune = abc.parse(text)
        rolls.append(piano_roll([(n.onset * FRAMES_PER_WHOLE, n.duration * FRAMES_PER_WHOLE, n.pitch)
                                 for n in tune.notes if n.pitch is not None],
                                length=math.ceil(tune.duration * FRAMES_PER_WHOLE - _EPSILON)))   # rests at the end too
        titles.append(tune.title)
    codes = np.repeat(np.arange(3, dtype=np.uint8), NOTTINGHAM_SPLIT)
    arrays = {"rolls": np.concatenate(rolls).astype(np.uint8), "lengths": np.array([len(r) for r in rolls]),
              "splits": codes}
    return arrays, {"source": "the first 1,037 tunes of the folk corpus (Essen collection, shuffled, seed 0)",
                    "frame": "one eighth note", "keys": f"MIDI {LOWEST_KEY}..{HIGHEST_KEY}",
                    "split": "694 / 173 / 170 in corpus order, Nottingham's counts", "titles": titles}


FOLK_ROLLS = add(ArrayDataset(
    name="folk-rolls",
    description="1,037 Essen folk tunes as piano rolls, one frame per eighth note, 88 keys, split 694 / 173 / 170 "
                "(the Nottingham stand-in: monophonic, no chords)",
    size="1,037 tunes",
    licence="BSD-3 (music21 corpus)",
    how="made from the folk corpus (seqlab data fetch folk, fetched first if needed)",
    build=_build_folk_rolls,
    decode=_decode,
    summary=roll_summary,
))


def load_folk_rolls() -> dict[str, list[np.ndarray]]:
    """{"train", "valid", "test"}: lists of (T_i, 88) float32 0/1 piano rolls of folk melodies."""
    return FOLK_ROLLS.load()
