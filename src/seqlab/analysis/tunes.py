"""`seqlab analyze tunes DIR`: are these tunes music? Parse, meter, key and range of ABC tunes,
beside the same figures for real held-out folk tunes; optionally rendered to MIDI (written by
seqlab), a piano roll and (with fluidsynth) audio.

    seqlab sample runs/folk --format abc --num-samples 100 -o tunes/
    seqlab analyze tunes tunes/ --reference folk --render tunes/rendered

Two readings of each tune:
- music21's ABC parser (music21 10.5.1): the tune "parses" when music21 reads it without an
  error and finds notes in it. music21 is lenient: it skips much that is not ABC.
- seqlab's own reader (data/abc.py), which is strict: any character outside ABC's grammar
  fails the tune. Bars are counted on the tunes it reads: a bar keeps the meter when it
  holds exactly what M: says (an upbeat and the last bar may be shorter).
The reference (--reference folk) is the folk corpus's test split: tunes no model trained on.
"""
from __future__ import annotations

import argparse
import json
import shutil
import statistics
import subprocess
import sys
import tempfile
from collections import Counter
from pathlib import Path

import numpy as np

from seqlab import SeqlabError
from seqlab.data import abc
from seqlab.data.audio import read_wav, resample, write_wav
from seqlab.data.midi import midi_bytes
from seqlab.io import folder_files, output, output_folder, read_input, writing

WAV_RATE = 16000                                    # rendered tunes: mono 16-bit, 32 kB a second
SOUNDFONTS = (Path("/usr/share/sounds/sf2/FluidR3_GM.sf2"), Path("/usr/share/sounds/sf2/default-GM.sf2"))
WAV_SECONDS = 30.0            # the longest audio a rendered tune gets
MAX_TUNE_CHARS = 5_000       # a longer "tune" is not read: music21's parser grows much faster than its length (1,000 bars: 22 s)
MAX_FILE_BYTES = 50_000_000  # and a larger .abc file is refused
INSTALL_SOUND = "apt-get install fluidsynth fluid-soundfont-gm (as root; `make sound` does it)"


def read_folder(folder: str | Path) -> list[tuple[str, str]]:
    """(name, tune) for every tune in DIR's *.abc files (a file may hold several, blank-line separated)."""
    folder = Path(folder)
    if not folder.is_dir():
        raise SeqlabError(f"{folder} is not a folder; give the folder the tunes were written to "
                          f"(seqlab sample RUN --format abc -o DIR)")
    files = folder_files(folder, [".abc"], max_bytes=MAX_FILE_BYTES)      # no links out, no FIFOs
    if not files:
        raise SeqlabError(f"{folder} holds no .abc files; write some with: seqlab sample RUN --format abc -o {folder}")
    tunes = []
    for path in files:
        data = read_input(path, inside=folder, max_bytes=MAX_FILE_BYTES)
        if b"\x00" in data:
            raise SeqlabError(f"{path}: a binary file, not ABC text; remove it from {folder}")
        try:
            text = data.decode("utf-8")
        except UnicodeDecodeError as e:
            raise SeqlabError(f"{path}: not UTF-8 text (byte 0x{data[e.start]:02x} at offset {e.start}); "
                              f"convert it (iconv -f latin1 -t utf-8) or remove it") from None
        blocks = abc.split_tunes(text)
        tunes.extend((path.stem if len(blocks) == 1 else f"{path.stem}#{i + 1}", block)
                     for i, block in enumerate(blocks))
    return tunes


def reference_tunes(corpus: str = "folk", limit: int = 200) -> list[tuple[str, str]]:
    """Up to `limit` whole tunes from the test split of a corpus (default data.valid/test fractions)."""
    from seqlab.config import DataConfig
    from seqlab.data import sources
    from seqlab.data.splits import split_sizes

    text = sources.corpus(corpus).text()
    cfg = DataConfig()
    n_train, n_valid, _ = split_sizes(len(text), cfg.valid_fraction, cfg.test_fraction)
    test = text[n_train + n_valid:]
    whole = abc.split_tunes(test[test.find("\n\n") + 2:])        # from the first tune that starts in the split
    return [(f"{corpus}-test-{i + 1}", tune) for i, tune in enumerate(whole[:limit])]


def _music21():
    try:
        from music21 import converter
    except ImportError:
        raise SeqlabError("music21 is not installed; run `make` (it installs requirements.lock) or "
                          "pip install music21==10.5.1") from None
    return converter


def with_number(tune: str) -> str:
    """An ABC tune as a file wants it: with an X: reference number first."""
    return tune if tune.lstrip().startswith("X:") else "X:1\n" + tune


def music21_parses(tune: str, converter=None):
    """music21's score of a tune, or None where it fails or finds no notes."""
    converter = converter or _music21()
    try:
        score = converter.parseData(with_number(tune), format="abc")
    except Exception:                 # music21 raises many kinds on bad ABC: every one means "does not parse"
        return None
    return score if len(score.flatten().notes) else None


def check(tunes: list[tuple[str, str]]) -> dict:
    """Per-tune readings and their summary (see the module docstring)."""
    converter = _music21()
    rows = []
    for name, text in tunes:
        if len(text) > MAX_TUNE_CHARS:
            rows.append({"name": name, "music21": False, "read": False,
                         "error": f"{len(text):,} characters, longer than the {MAX_TUNE_CHARS:,} a tune is read to"})
            continue
        row = {"name": name, "music21": music21_parses(text, converter) is not None}
        try:
            tune = abc.parse(text)
        except abc.AbcError as e:
            row.update(read=False, error=str(e))
        else:
            kept, checked = tune.bars_in_meter()
            pitches = [n.pitch for n in tune.notes if n.pitch is not None]
            row.update(read=True, bars_kept=kept, bars=checked, key=tune.key, meter=tune.meter,
                       lowest=min(pitches, default=None), highest=max(pitches, default=None), notes=len(pitches))
        rows.append(row)
    read = [r for r in rows if r["read"]]
    kept, bars = sum(r["bars_kept"] for r in read), sum(r["bars"] for r in read)
    spans = [r["highest"] - r["lowest"] for r in read if r["notes"]]
    summary = {"tunes": len(rows), "too_long": sum(r.get("error", "").endswith("a tune is read to") for r in rows), "parse_share": sum(r["music21"] for r in rows) / max(len(rows), 1),
               "read_share": len(read) / max(len(rows), 1), "bars": bars,
               "bars_in_meter": kept / bars if bars else None,
               "tunes_all_bars_in_meter": sum(r["bars"] > 0 and r["bars_kept"] == r["bars"] for r in read) / max(len(rows), 1),
               "median_range_semitones": statistics.median(spans) if spans else None,
               "median_notes": statistics.median(r["notes"] for r in read) if read else None,
               "keys": dict(Counter(r["key"] for r in read).most_common(5)),
               "meters": dict(Counter(r["meter"] for r in read).most_common(5))}
    return {"summary": summary, "tunes": rows}


def piano_roll_png(tune: abc.Tune, path: Path, title: str) -> None:
    import matplotlib
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    notes = [n for n in tune.notes if n.pitch is not None]
    fig, ax = plt.subplots(figsize=(max(4.0, min(14.0, float(tune.duration) * 1.2)), 2.6))
    for n in notes:
        ax.broken_barh([(float(n.onset), float(n.duration))], (n.pitch - 0.4, 0.8), color="#1f5fa8")
    start = 0.0
    for bar in tune.bars:
        start += float(bar.length)
        ax.axvline(start, color="#bbbbbb", lw=0.6)
    names = ["C", "C#", "D", "Eb", "E", "F", "F#", "G", "Ab", "A", "Bb", "B"]
    used = sorted({n.pitch for n in notes})                   # the tune's own scale on the axis
    ax.set_yticks(used, [f"{names[p % 12]}{p // 12 - 1}" for p in used], fontsize=7 if len(used) > 12 else 8)
    ax.set_xlabel("time (whole notes)")
    ax.set_ylabel("pitch")
    ax.set_title(title[:80], fontsize=9)
    fig.tight_layout()
    with writing(path) as tmp:
        fig.savefig(tmp, dpi=90, format="png")
    plt.close(fig)


def render_outputs(names: list[str], out: Path, wav: bool = False, overwrite: bool = False, inputs=()):
    """The files `render` may write for tunes `names`, claimed before any work: none may exist
    in `out` already (unless `overwrite`), and none may be an input."""
    soundfont = next((p for p in SOUNDFONTS if p.is_file()), None)
    if wav and (shutil.which("fluidsynth") is None or soundfont is None):
        raise SeqlabError(f"--wav needs fluidsynth and a General MIDI soundfont: {INSTALL_SOUND}")
    kinds = (".mid", ".png") + ((".wav",) if wav else ())
    return output_folder(out, "--render", [name + kind for name in names for kind in kinds], overwrite, inputs)


def render(tunes: list[tuple[str, str]], out: Path, wav: bool = False, overwrite: bool = False,
           inputs=(), outs=None) -> list[str]:
    """A MIDI file and a piano-roll PNG for every tune seqlab's reader reads (and WAV through
    fluidsynth); the files written (`outs`: render_outputs's, else claimed here)."""
    if outs is None:
        outs = render_outputs([name for name, _ in tunes], out, wav, overwrite, inputs)
    soundfont = next((p for p in SOUNDFONTS if p.is_file()), None)
    Path(out).mkdir(parents=True, exist_ok=True)
    written = []
    for name, text in tunes:
        if len(text) > MAX_TUNE_CHARS:
            continue
        try:
            tune = abc.parse(text)
        except abc.AbcError:
            continue
        midi = outs[f"{name}.mid"]
        midi.write_bytes(midi_bytes((n.onset, n.duration, n.pitch) for n in tune.notes if n.pitch is not None))
        piano_roll_png(tune, outs[f"{name}.png"], f"{name}: {tune.title}")
        written += [str(midi), str(outs[f"{name}.png"])]
        if wav:
            synthesize(midi.path, soundfont, outs[f"{name}.wav"])
            written.append(str(outs[f"{name}.wav"]))
    return written


def synthesize(midi: Path, soundfont: Path, path, rate: int = WAV_RATE, seconds: float = WAV_SECONDS) -> None:
    """fluidsynth plays the MIDI file (stereo, 16-bit); kept as mono 16-bit at `rate` (small files),
    scaled to a peak of 0.9 (fluidsynth plays one voice quietly), at most `seconds` long (a
    slow tune ran to 3 minutes, 5.6 MB), faded out over its last half second when cut."""
    with tempfile.TemporaryDirectory() as tmp:
        stereo = Path(tmp) / "stereo.wav"
        done = subprocess.run(["fluidsynth", "-ni", "-q", "-F", str(stereo), "-r", str(rate), str(soundfont), str(midi)],
                              capture_output=True, text=True)
        if done.returncode != 0 or not stereo.is_file():
            raise SeqlabError(f"fluidsynth could not play {midi}: {(done.stderr.strip() or 'no output')[:200]}")
        samples, got = read_wav(stereo, rate=None, mono=True)
    samples = resample(samples, got, rate)
    if len(samples) > seconds * rate:
        samples = samples[:int(seconds * rate)].copy()
        fade = min(len(samples), rate // 2)
        samples[-fade:] *= np.linspace(1.0, 0.0, fade)
    write_wav(path, 0.9 * samples / max(float(np.abs(samples).max()), 1e-9), rate)


def line(label: str, s: dict) -> str:
    meter = "n/a" if s["bars_in_meter"] is None else f"{100 * s['bars_in_meter']:.1f} %"
    return (f"{label}: {s['tunes']} tunes | parse (music21) {100 * s['parse_share']:.1f} % | read strictly "
            f"{100 * s['read_share']:.1f} % | bars in meter {meter} of {s['bars']:,} | median range "
            f"{s['median_range_semitones']} semitones | keys {s['keys']}")


def build_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(
        prog="seqlab analyze tunes", formatter_class=argparse.RawDescriptionHelpFormatter,
        description=__doc__.split("\n\n")[0] + "\n\n" + "\n\n".join(__doc__.split("\n\n")[2:]))
    p.add_argument("folder", metavar="DIR", help="a folder of .abc files (one or more tunes each)")
    p.add_argument("--reference", metavar="CORPUS", help="also check the test-split tunes of this corpus (folk)")
    p.add_argument("--reference-tunes", type=int, default=200, metavar="N", help="how many (default: 200)")
    p.add_argument("--render", metavar="OUT", help="write a MIDI file and a piano-roll PNG per tune to OUT")
    p.add_argument("--wav", action="store_true",
                   help=f"with --render, also WAV audio, at most {WAV_SECONDS:.0f} s a tune ({INSTALL_SOUND})")
    p.add_argument("--json", metavar="FILE", help="write every tune's readings as JSON (- for stdout)")
    p.add_argument("--overwrite", action="store_true", help="replace --json and --render files that exist (default: refuse)")
    return p


def main(argv: list[str] | None = None) -> int:
    argv = list(sys.argv[1:] if argv is None else argv)
    if argv and argv[0] == "tunes":             # forwarded by `seqlab analyze tunes ...`
        argv = argv[1:]
    args = build_parser().parse_args(argv)
    if args.reference_tunes <= 0:
        raise SeqlabError(f"--reference-tunes must be at least 1, got {args.reference_tunes}")
    if args.wav and not args.render:
        raise SeqlabError("--wav writes audio beside the MIDI files: give --render OUT too")
    inputs = [p for p in Path(args.folder).glob("*.abc")] if Path(args.folder).is_dir() else []
    report_out = output(args.json if args.json != "-" else None, "--json", args.overwrite, inputs)
    tunes = read_folder(args.folder)
    claimed = inputs + ([report_out.path] if report_out else [])
    outs = render_outputs([n for n, _ in tunes], Path(args.render), args.wav, args.overwrite, claimed) \
        if args.render else None
    report = {"folder": str(args.folder), **check(tunes)}
    if args.reference:
        report["reference"] = {"corpus": args.reference, **check(reference_tunes(args.reference, args.reference_tunes))}
    if args.render:
        report["rendered"] = render(tunes, Path(args.render), args.wav, outs=outs)
    if args.json == "-":
        print(json.dumps(report))
        return 0
    if args.json:
        report_out.write_text(json.dumps(report, indent=1) + "\n")
    print(line(str(args.folder), report["summary"]))
    if args.reference:
        print(line(f"{args.reference} test split", report["reference"]["summary"]))
    if args.render:
        print(f"wrote {len(report['rendered'])} files to {args.render}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
