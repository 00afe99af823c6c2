"""`seqlab gallery DIR [DIR ...] --out gallery.html`: one offline page to listen and look at
what models made: generated tunes and speech, their pictures, beside the real ones.

    seqlab gallery tunes/rendered runs/bench-speech/speech --out gallery.html

Every folder becomes a section; its files are grouped by name (tune-007.abc, tune-007.png,
tune-007.wav and tune-007.mid make one card): WAV files as audio players, PNG pictures,
ABC tunes as text, MIDI files as download links. Everything is embedded in the page
(base64 data URIs): it opens from disk, offline, and can be mailed as one file. Files over
--max-mb each are listed but left out.
"""
from __future__ import annotations

import argparse
import base64
import html
import sys
from collections import defaultdict
from pathlib import Path

from seqlab import SeqlabError
from seqlab.io import Output, folder_files, read_input

KINDS = {".wav": "audio/wav", ".png": "image/png", ".abc": "text/plain", ".mid": "audio/midi", ".txt": "text/plain"}
STYLE = """
body { font-family: system-ui, sans-serif; margin: 2em auto; max-width: 1100px; color: #222; }
h1 { font-size: 1.4em; } h2 { font-size: 1.1em; margin-top: 2em; border-bottom: 1px solid #ccc; }
.cards { display: flex; flex-wrap: wrap; gap: 1em; }
.card { border: 1px solid #ddd; border-radius: 6px; padding: 0.6em; max-width: 100%; }
.card h3 { font-size: 0.9em; margin: 0 0 0.4em 0; font-family: monospace; }
.card img { max-width: 100%; display: block; } .card audio { display: block; margin: 0.3em 0; }
.card pre { font-size: 0.8em; background: #f6f6f6; padding: 0.4em; margin: 0.3em 0; white-space: pre-wrap; }
.note { color: #777; font-size: 0.85em; }
"""


def _data_uri(path: Path, data: bytes) -> str:
    return f"data:{KINDS[path.suffix.lower()]};base64,{base64.b64encode(data).decode('ascii')}"


def checked(path: Path, folder: Path, max_bytes: int) -> bytes:
    """The bytes of a file to embed, once it is known to be what its name says: a WAV seqlab's
    reader reads, a PNG that decodes whole, a MIDI file, UTF-8 text. Refused in one line otherwise."""
    from seqlab.data.audio import read_wav
    from seqlab.data.scenes import check_png

    kind = path.suffix.lower()
    data = read_input(path, inside=folder, max_bytes=max_bytes)
    if kind == ".wav":
        read_wav(path, rate=None, mono=True)
    elif kind == ".png":
        check_png(path)
    elif kind == ".mid" and not data.startswith(b"MThd"):
        raise SeqlabError(f"{path} is not a MIDI file (it does not start with MThd); remove it from {folder}")
    elif kind in (".abc", ".txt"):
        try:
            data.decode("utf-8")
        except UnicodeDecodeError as e:
            raise SeqlabError(f"{path} is not UTF-8 text (byte 0x{data[e.start]:02x} at offset {e.start}); "
                              f"remove it from {folder} or convert it") from None
    return data


def card(stem: str, files: list[Path], max_bytes: int, folder: Path) -> str:
    parts = [f'<div class="card"><h3>{html.escape(stem)}</h3>']
    for path in sorted(files, key=lambda p: (list(KINDS).index(p.suffix.lower()), p.name)):
        kind = path.suffix.lower()
        if path.stat().st_size > max_bytes:
            parts.append(f'<p class="note">{html.escape(path.name)}: {path.stat().st_size / 1e6:.1f} MB, left out</p>')
            continue
        data = checked(path, folder, max_bytes)
        if kind == ".wav":
            parts.append(f'<audio controls preload="metadata" title="{html.escape(path.name)}" '
                         f'src="{_data_uri(path, data)}"></audio>')
        elif kind == ".png":
            parts.append(f'<img alt="{html.escape(path.name)}" src="{_data_uri(path, data)}">')
        elif kind in (".abc", ".txt"):
            parts.append(f"<pre>{html.escape(data.decode('utf-8'))}</pre>")
        elif kind == ".mid":
            parts.append(f'<a download="{html.escape(path.name)}" href="{_data_uri(path, data)}">'
                         f'{html.escape(path.name)}</a>')
    return "".join(parts) + "</div>"


def page(folders: list[Path], title: str, max_bytes: int) -> tuple[str, int]:
    """(the HTML, number of files embedded or listed)."""
    sections, count = [], 0
    for folder in folders:
        groups: dict[str, list[Path]] = defaultdict(list)
        for path in folder_files(folder, KINDS):           # links out of the folder, FIFOs: refused
            groups[path.stem].append(path)
            count += 1
        cards = "".join(card(stem, files, max_bytes, folder) for stem, files in sorted(groups.items()))
        sections.append(f"<h2>{html.escape(str(folder))}</h2><div class=\"cards\">{cards or '<p class=note>nothing here</p>'}</div>")
    return (f"<!doctype html><html><head><meta charset=\"utf-8\"><title>{html.escape(title)}</title>"
            f"<style>{STYLE}</style></head><body><h1>{html.escape(title)}</h1>{''.join(sections)}</body></html>\n", count)


def main(argv: list[str] | None = None) -> int:
    argv = list(sys.argv[1:] if argv is None else argv)
    p = argparse.ArgumentParser(prog="seqlab gallery", description=__doc__.split("\n\n")[0],
                                formatter_class=argparse.ArgumentDefaultsHelpFormatter)
    p.add_argument("folders", nargs="+", metavar="DIR", help="folders of .wav, .png, .abc, .mid files")
    p.add_argument("--out", default="gallery.html", help="the page to write")
    p.add_argument("--title", default="seqlab gallery", help="the page's title")
    p.add_argument("--max-mb", type=float, default=5.0, help="files larger than this are listed, not embedded")
    p.add_argument("--overwrite", action="store_true", help="replace --out if it exists (default: refuse)")
    args = p.parse_args(argv)
    folders = [Path(f) for f in args.folders]
    for folder in folders:
        if not folder.is_dir():
            raise SeqlabError(f"{folder} is not a folder; give folders of .wav, .png, .abc or .mid files")
    if not (0 < args.max_mb <= 1000):
        raise SeqlabError(f"--max-mb must be in (0, 1000], got {args.max_mb}")
    out = Output(args.out, "--out", overwrite=args.overwrite,
                 inputs=[p for f in folders for p in f.iterdir() if p.suffix.lower() in KINDS])
    text, count = page(folders, args.title, int(args.max_mb * 1e6))
    if count == 0:
        raise SeqlabError(f"no .wav, .png, .abc or .mid files in {', '.join(map(str, folders))}")
    out.write_text(text)
    print(f"wrote {args.out}: {count} files from {len(folders)} folder(s), {len(text) / 1e6:.1f} MB")
    return 0


if __name__ == "__main__":
    sys.exit(main())
