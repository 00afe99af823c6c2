"""One self-contained HTML page of a character-level language model reading a text.

After Karpathy, Johnson & Fei-Fei (2016), "Visualizing and Understanding Recurrent Networks":
the text coloured per character by one cell's activation (blue -1, white 0, red +1), a cell
picker, the cells that correlate best with simple features of the text (analysis/cells.py),
per-character loss colouring, and on hover the model's top guesses for each character.

The page works offline: the template (viz_page.html, beside this module) holds all the
script and style, and the data are embedded as one JSON block. Activations are stored as
int8 (value * 127, base64) in cell-major order, so a few thousand characters of a few
hundred cells stay a few megabytes: N characters x U cells bytes, times 4/3.
"""
from __future__ import annotations

import argparse
import base64
import json
import math
import sys
from importlib import resources
from pathlib import Path

import numpy as np

from seqlab import SeqlabError
from seqlab.analysis.cells import Reading, best_cells, correlations, parse_cell, plot_cell_text, read_run
from seqlab.analysis.char_features import LABELS, feature_matrix
from seqlab.io import Output, output

PLACEHOLDER = "/*DATA*/"


def _rounded(values, digits: int = 3) -> list:
    """A list of floats rounded for the page, None where not a number (JSON has no NaN)."""
    return [None if not np.isfinite(v) else round(float(v), digits) for v in values]


def page_data(reading: Reading, vocab_tokens: list[str], run_name: str, source: str,
              cell: tuple[int, int] | None = None, top: int = 5) -> dict:
    """Everything the page shows, as JSON-ready values (see viz_page.html for their use)."""
    N, L, H = reading.activations.shape
    names, features = feature_matrix(reading.text)                               # (N, F)
    r = correlations(reading.cells, features)                                    # (U, F)
    best = best_cells(r, names, H, top)
    if cell is None:   # open on the cell that tracks some feature best
        ranked = [cells[0] for cells in best.values() if cells]
        chosen = max(ranked, key=lambda c: abs(c["r"])) if ranked else {"layer": 0, "unit": 0}
        cell = chosen["layer"], chosen["unit"]
    quantised = np.clip(np.rint(reading.cells.T * 127), -127, 127).astype(np.int8)   # (U, N)
    finite = reading.loss[np.isfinite(reading.loss)]
    return {
        "run": run_name, "source": source, "what": reading.what, "layers": L, "hidden": H,
        "text": reading.text,
        "acts": base64.b64encode(np.ascontiguousarray(quantised).tobytes()).decode("ascii"),
        "loss": _rounded(reading.loss),
        "mean_loss": round(float(finite.mean()), 4) if len(finite) else 0.0,
        "loss_scale": max(1.0, round(float(np.percentile(finite, 98)), 1)) if len(finite) else 1.0,
        "vocab": vocab_tokens,
        "top": [[] if t == 0 else [[int(i), round(float(p), 3)] for i, p in zip(ids, probs)]
                for t, (ids, probs) in enumerate(zip(reading.top_ids, reading.top_probs))],
        "feature_names": names, "feature_labels": {name: LABELS[name] for name in names},
        "features": {name: [int(v) for v in features[:, j]] for j, name in enumerate(names)},
        "feature_max": {name: int(features[:, j].max()) for j, name in enumerate(names)},
        "r": [_rounded(row) for row in r],
        "best": best,
        "initial": {"layer": int(cell[0]), "unit": int(cell[1])},
    }


def render_page(data: dict) -> str:
    """The template with `data` embedded. Every "<" in the JSON is escaped as \\u003c, so no
    text in it can close the <script> element it sits in."""
    template = resources.files("seqlab.analysis").joinpath("viz_page.html").read_text(encoding="utf-8")
    if template.count(PLACEHOLDER) != 1:
        raise RuntimeError("viz_page.html must hold the data placeholder exactly once")
    # bare NaN is not JSON: a browser would reject the whole page and show nothing, so a value
    # with no number (the correlation of a cell that never moves) goes in as null
    payload = json.dumps(_json_safe(data), separators=(",", ":"), ensure_ascii=False, allow_nan=False)
    payload = payload.replace("<", "\\u003c")
    return template.replace(PLACEHOLDER, payload)


def _json_safe(value):
    """`value` with every NaN or infinite float replaced by None."""
    if isinstance(value, float):
        return value if math.isfinite(value) else None
    if isinstance(value, dict):
        return {k: _json_safe(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [_json_safe(v) for v in value]
    return value


def build_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(
        prog="seqlab viz", formatter_class=argparse.RawDescriptionHelpFormatter,
        description="Write one self-contained HTML page (works offline) of a character-level LSTM / GRU /\n"
                    "RNN language model reading a text: each character coloured by a chosen cell's\n"
                    "activation (blue -1 .. red +1; LSTM cells read as tanh(c_t)), a cell picker, the cells\n"
                    "that correlate best with quotes, comments, line position and bracket depth, a switch\n"
                    "to per-character loss, and on hover the top predictions for that character\n"
                    "(Karpathy, Johnson & Fei-Fei 2016). Cells are named LAYER:UNIT, layers from 1.",
        epilog="examples:\n  seqlab viz runs/demo --text play.txt --out cells.html\n"
               "  seqlab viz runs/demo --text play.txt --out cells.html --cell 1:42 --png cell.png\n"
               "  seqlab analyze cells runs/demo --split valid    # the correlation table only")
    p.add_argument("run", metavar="RUN", help="a run of model.name=lstm, gru, rnn or jordan (task.name=lm, data.level=char)")
    p.add_argument("--text", metavar="FILE", help="UTF-8 text to read (default: the run's validation split)")
    p.add_argument("--split", default="valid", choices=["train", "valid", "test"],
                   help="split to read when no --text is given (default: valid)")
    p.add_argument("--out", default="viz.html", help="HTML page to write (default: viz.html)")
    p.add_argument("--chars", type=int, default=3000,
                   help="read at most this many characters; the page holds chars x cells bytes (default: 3000)")
    p.add_argument("--cell", metavar="L:N", help="cell shown first and drawn by --png (default: the best-correlated one)")
    p.add_argument("--top", type=int, default=5, help="cells listed per feature (default: 5)")
    p.add_argument("--state", default="cell", choices=["cell", "hidden"],
                   help="LSTM value to read: cell = tanh(c_t), hidden = h_t (default: cell)")
    p.add_argument("--png", metavar="OUT", help="also draw the first lines coloured by that cell as a PNG")
    p.add_argument("--overwrite", action="store_true", help="replace the files to write if they exist (default: refuse)")
    return p


def main(argv: list[str]) -> int:
    args = build_parser().parse_args(argv)
    out = Output(args.out, "--out", overwrite=args.overwrite, inputs=[args.text])
    png = output(args.png, "--png", args.overwrite, inputs=[args.text, args.out])
    if png is not None and png.path.resolve() == out.path.resolve():
        raise SeqlabError(f"--out and --png are both {args.out}; give them different names")
    cfg, vocab, text, source, reading = read_run(args, args.text, "seqlab viz")
    cell = parse_cell(args.cell, cfg.model.num_layers, cfg.model.hidden_size) if args.cell else None
    run_name = Path(args.run).resolve().name
    data = page_data(reading, list(vocab.itos), run_name, Path(source).name if args.text else source, cell, args.top)
    page = render_page(data)
    out.write_text(page)
    layer, unit = data["initial"]["layer"], data["initial"]["unit"]
    print(f"{args.out}: {len(text):,} characters x {reading.cells.shape[1]} cells, {len(page.encode()) / 1e6:.1f} MB; "
          f"showing cell {layer + 1}:{unit}")
    if args.png:
        plot_cell_text(png, text, reading.activations[:, layer, unit],
                       title=f"{run_name}: cell {layer + 1}:{unit}, {reading.what} from -1 (blue) to +1 (red)")
        print(f"plot: {args.png}", file=sys.stderr)
    return 0
