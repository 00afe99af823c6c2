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
from seqlab.io import atomic_write_text, check_output

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


def _data_uri(path: Path) -> str:
    return f"data:{KINDS[path.suffix.lower()]};base64,{base64.b64encode(path.read_bytes()).decode('ascii')}"


def card(stem: str, files: list[Path], max_bytes: int) -> str:
    parts = [f'<div class="card"><h3>{html.escape(stem)}</h3>']
    for path in sorted(files, key=lambda p: (list(KINDS).index(p.suffix.lower()), p.name)):
        kind = path.suffix.lower()
        if path.stat().st_size > max_bytes:
            parts.append(f'<p class="note">{html.escape(path.name)}: {path.stat().st_size / 1e6:.1f} MB, left out</p>')
        elif kind == ".wav":
            parts.append(f'<audio controls preload="metadata" title="{html.escape(path.name)}" '
                         f'src="{_data_uri(path)}"></audio>')
        elif kind == ".png":
            parts.append(f'<img alt="{html.escape(path.name)}" src="{_data_uri(path)}">')
        elif kind in (".abc", ".txt"):
            text = path.read_text(encoding="utf-8", errors="replace")
            parts.append(f"<pre>{html.escape(text)}</pre>")
        elif kind == ".mid":
            parts.append(f'<a download="{html.escape(path.name)}" href="{_data_uri(path)}">{html.escape(path.name)}</a>')
    return "".join(parts) + "</div>"


def page(folders: list[Path], title: str, max_bytes: int) -> tuple[str, int]:
    """(the HTML, number of files embedded or listed)."""
    sections, count = [], 0
    for folder in folders:
        groups: dict[str, list[Path]] = defaultdict(list)
        for path in sorted(folder.iterdir()):
            if path.is_file() and path.suffix.lower() in KINDS:
                groups[path.stem].append(path)
                count += 1
        cards = "".join(card(stem, files, max_bytes) for stem, files in sorted(groups.items()))
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
    args = p.parse_args(argv)
    folders = [Path(f) for f in args.folders]
    for folder in folders:
        if not folder.is_dir():
            raise SeqlabError(f"{folder} is not a folder; give folders of .wav, .png, .abc or .mid files")
    check_output(args.out, "--out")
    text, count = page(folders, args.title, int(args.max_mb * 1e6))
    if count == 0:
        raise SeqlabError(f"no .wav, .png, .abc or .mid files in {', '.join(map(str, folders))}")
    atomic_write_text(args.out, text)
    print(f"wrote {args.out}: {count} files from {len(folders)} folder(s), {len(text) / 1e6:.1f} MB")
    return 0


if __name__ == "__main__":
    sys.exit(main())
