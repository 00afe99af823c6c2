"""Cell activations of a character-level recurrent language model, and the cells that track
simple features of the text.

Karpathy, Johnson & Fei-Fei (2016), "Visualizing and Understanding Recurrent Networks", §4.1:
colour each character by one cell's activation and some cells turn out to be interpretable —
one is on inside quotes, one counts the characters of a line, one follows bracket depth.
Here the search is automatic: the Pearson correlation of every cell with every feature of
analysis/char_features.py, over a few thousand characters, and the best cells per feature.

What a "cell" is, per model (after reading character t, as the paper plots):

    lstm   tanh(c_t), the squashed cell state (the paper's figures; h_t = o_t tanh(c_t) is
           that value gated by o_t, and `state="hidden"` reads h_t instead)
    gru    h_t                  rnn, jordan   h_t

PyTorch's fused nn.LSTM does not return c_t for every step, so it is recomputed from the
gates (analysis/gates.py) with c_t = f_t c_{t-1} + i_t g_t; other seqlab cells are stepped
one character at a time and their state read. Beside the activations: the loss of each
character (nats, predicted from the ones before it) and the model's top-k guesses for it.

Dimension legend: N characters, L layers, H hidden units, U = L*H cells, F features, V vocabulary.
"""
from __future__ import annotations

import argparse
import json
import sys
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch
from torch import nn

from seqlab import SeqlabError
from seqlab.analysis.char_features import LABELS, feature_matrix
from seqlab.analysis.gates import lstm_gates
from seqlab.data.sources import read_path
from seqlab.data.text import load_splits
from seqlab.io import output
from seqlab.training.plots import pyplot, save_figure
from seqlab.training.runs import load_run

KINDS = ("lstm", "gru", "rnn", "jordan")


@dataclass
class Reading:
    """What a model did on a text: one row per character."""
    text: str
    activations: np.ndarray   # (N, L, H) float32, after reading each character
    loss: np.ndarray          # (N,) nats of -log p(char_t | chars before it); nan at t = 0
    top_ids: np.ndarray       # (N, K) the K likeliest tokens at t, before reading char_t (row 0 unused)
    top_probs: np.ndarray     # (N, K)
    what: str                 # "tanh(c)" or "h"

    @property
    def cells(self) -> np.ndarray:
        return self.activations.reshape(len(self.text), -1)                     # (N, U)


# -- reading a text -----------------------------------------------------------------------------

def _single_layers(rnn: nn.Module) -> list[nn.Module]:
    """One single-layer copy per layer of a fused nn.RNN / nn.LSTM / nn.GRU."""
    kind, layers = type(rnn), []
    for k in range(rnn.num_layers):
        extra = {"nonlinearity": rnn.nonlinearity} if kind is nn.RNN else {}
        size = rnn.input_size if k == 0 else rnn.hidden_size
        single = kind(size, rnn.hidden_size, batch_first=True, bias=rnn.bias, **extra)
        single = single.to(rnn.weight_hh_l0).eval()
        with torch.no_grad():
            for name in ("weight_ih", "weight_hh") + (("bias_ih", "bias_hh") if rnn.bias else ()):
                getattr(single, f"{name}_l0").copy_(getattr(rnn, f"{name}_l{k}"))
        layers.append(single)
    return layers


def _cell_states(single: nn.LSTM, x: torch.Tensor, h: torch.Tensor, h0: torch.Tensor, c0: torch.Tensor):
    """c_t for every step of a one-layer LSTM, recomputed from its gates: (1, T, H)."""
    args = [single.weight_ih_l0, single.weight_hh_l0]
    if single.bias:
        args += [single.bias_ih_l0, single.bias_hh_l0]
    gates = lstm_gates(x, h, h0, *args)                                           # each (1, T, H)
    forget = gates["forget"][0].double().numpy()                                  # (T, H)
    written = (gates["input"][0] * gates["cell"][0]).double().numpy()             # i_t g_t: (T, H)
    c, out = c0[0, 0].double().numpy(), np.empty_like(forget)             # c: (H,)
    for t in range(len(forget)):     # elementwise, cheap: the matrix products are already done
        c = forget[t] * c + written[t]
        out[t] = c
    return torch.from_numpy(out).to(x.dtype)[None]                                # (1, T, H)


@torch.no_grad()
def _read_fused(model, ids: torch.Tensor, state: str, chunk: int):
    """Fast path for PyTorch's fused modules: whole chunks at a time, state carried."""
    layers = _single_layers(model.rnn)
    L, H = len(layers), model.rnn.hidden_size
    carried = [(torch.zeros(1, 1, H), torch.zeros(1, 1, H)) for _ in range(L)]   # (h, c) per layer
    acts, logits = [], []
    for start in range(0, len(ids), chunk):
        x = model.embedding(ids[None, start:start + chunk])                       # (1, T, E)
        per_layer = []
        for k, single in enumerate(layers):
            h0, c0 = carried[k]
            if model.kind == "lstm":
                h, (hn, cn) = single(x, (h0, c0))                                 # (1, T, H)
                value = h if state == "hidden" else _cell_states(single, x, h, h0[0], c0).tanh()
                carried[k] = (hn, cn)
            else:
                h, hn = single(x, h0)                                             # (1, T, H)
                value, carried[k] = h, (hn, c0)
            per_layer.append(value[0])
            x = h
        acts.append(torch.stack(per_layer, 1))                                    # (T, L, H)
        logits.append(model.head(x[0]))                                           # (T, V)
    return torch.cat(acts), torch.cat(logits)


@torch.no_grad()
def _read_stepping(model, ids: torch.Tensor, state: str):
    """Any seqlab recurrent cell: one character at a time, reading the carried state."""
    carried, acts, logits = model.init_state(1), [], []
    for t in range(len(ids)):
        out, carried = model.step(ids[t:t + 1], carried)                          # (1, V)
        if isinstance(carried, tuple):   # the LSTM's (h, c), each (1, L, H)
            value = carried[0] if state == "hidden" else carried[1].tanh()
        else:
            value = carried                                                       # (1, L, H)
        acts.append(value[0])
        logits.append(out[0])
    return torch.stack(acts), torch.stack(logits)                                 # (N, L, H), (N, V)


def read_text(model, vocab, text: str, state: str = "cell", top: int = 5, chunk: int = 2000) -> Reading:
    """Run a character-level recurrent LM over `text` from a zero state (see the module docstring).

    state: "cell" (tanh(c_t), LSTMs only; other cells have only h_t) or "hidden" (h_t)."""
    kind = getattr(model, "kind", None)
    if kind not in KINDS or not hasattr(model, "rnn") or getattr(model.rnn, "bidirectional", False):
        raise SeqlabError(f"cell activations read recurrent language models (model.name {', '.join(KINDS)}), "
                          f"not {kind or type(model).__name__}")
    if state not in ("cell", "hidden"):
        raise SeqlabError(f"state must be cell or hidden, got {state!r}")
    if len(text) < 2:
        raise SeqlabError("give at least 2 characters of text to read")
    if getattr(vocab, "level", "char") != "char":
        raise SeqlabError("cell activations are drawn per character: give a run trained with data.level=char")
    model = model.cpu().float().eval()
    ids = torch.as_tensor(vocab.encode(text), dtype=torch.long)                  # (N,)
    if getattr(model, "fused", False) and isinstance(model.rnn, (nn.LSTM, nn.GRU, nn.RNN)):
        acts, logits = _read_fused(model, ids, state, chunk)
    else:
        acts, logits = _read_stepping(model, ids, state)
    log_probs = logits.float().log_softmax(-1)                                    # (N, V): predicts t + 1
    loss = torch.full((len(ids),), float("nan"))
    loss[1:] = -log_probs[:-1].gather(1, ids[1:, None])[:, 0]                     # (N - 1,)
    probs, top_ids = log_probs.exp().topk(min(top, log_probs.size(1)), dim=-1)   # (N, K)
    shift = lambda a: torch.cat([a[:1] * 0, a[:-1]])                              # row t: the guess for t
    what = "tanh(c)" if kind == "lstm" and state == "cell" else "h"
    return Reading(text, acts.float().numpy(), loss.numpy(), shift(top_ids).numpy(), shift(probs).numpy(), what)


# -- correlations -------------------------------------------------------------------------------

def correlations(cells: np.ndarray, features: np.ndarray) -> np.ndarray:
    """Pearson r of every cell (N, U) with every feature (N, F): (U, F). nan where either is constant."""
    a = cells.astype(np.float64) - cells.mean(0)                                  # (N, U)
    f = features.astype(np.float64) - features.mean(0)                           # (N, F)
    norms = np.sqrt((a * a).sum(0))[:, None] * np.sqrt((f * f).sum(0))[None, :]   # (U, F)
    with np.errstate(invalid="ignore", divide="ignore"):
        r = (a.T @ f) / norms
    r[norms <= 1e-12] = np.nan
    return r


def best_cells(r: np.ndarray, names: list[str], hidden_size: int, top: int = 5) -> dict[str, list[dict]]:
    """Per feature, the `top` cells of largest |r| (a cell that falls as the feature rises tracks
    it as well): name -> [{"layer", "unit", "cell", "r"}], layer and unit counted from 0;
    an empty list for a feature that never varies in the text."""
    result = {}
    for j, name in enumerate(names):
        column = r[:, j]
        if np.isnan(column).all():
            result[name] = []
            continue
        order = np.argsort(-np.nan_to_num(np.abs(column), nan=-1.0), kind="stable")[:top]
        result[name] = [{"layer": int(u // hidden_size), "unit": int(u % hidden_size), "cell": int(u),
                         "r": round(float(column[u]), 4)} for u in order]
    return result


def search(reading: Reading, top: int = 5) -> tuple[list[str], dict[str, list[dict]], np.ndarray]:
    """(feature names, best cells per feature, (N, F) feature values) of a reading."""
    names, features = feature_matrix(reading.text)
    r = correlations(reading.cells, features)
    return names, best_cells(r, names, reading.activations.shape[2], top), features


# -- Karpathy-style coloured text ---------------------------------------------------------------

def plot_cell_text(path, text: str, values: np.ndarray, title: str = "", width: int = 80,
                   max_lines: int = 12, scale: float = 1.0) -> None:
    """Each character on a background from blue (-scale) through white to red (+scale), as the
    paper's figures; lines wrap at `width`. Written atomically."""
    from matplotlib.colors import LinearSegmentedColormap     # matplotlib loads on first plot (training/plots.py)

    rows, row, col = [], [], 0
    for ch, v in zip(text, values):
        row.append((ch, v))
        col += 1
        if ch == "\n" or col == width:
            rows.append(row)
            row, col = [], 0
        if len(rows) == max_lines:
            break
    if row and len(rows) < max_lines:
        rows.append(row)
    plt = pyplot()
    colours = LinearSegmentedColormap.from_list("cell", ["#2166ac", "#ffffff", "#b2182b"])
    fig, ax = plt.subplots(figsize=(0.105 * width + 0.4, 0.24 * len(rows) + 0.6), dpi=110)
    for y, line in enumerate(rows):
        for x, (ch, v) in enumerate(line):
            face = colours(0.5 + 0.5 * float(np.clip(v / scale, -1, 1)))
            ax.add_patch(plt.Rectangle((x, -y - 1), 1, 1, color=face, lw=0))
            ax.text(x + 0.5, -y - 0.5, "↵" if ch == "\n" else ch, ha="center", va="center",
                    family="monospace", fontsize=8, color="0.5" if ch == "\n" else "black")
    ax.set(xlim=(0, width), ylim=(-len(rows), 0))
    ax.axis("off")
    save_figure(fig, path, title)


def parse_cell(spec: str, num_layers: int, hidden_size: int) -> tuple[int, int]:
    """"L:N" (layer from 1, unit from 0, as the tables print them) -> (layer index, unit)."""
    try:
        layer, unit = (int(part) for part in spec.split(":"))
    except ValueError:
        raise SeqlabError(f"--cell wants LAYER:UNIT such as 1:42, got {spec!r}") from None
    if not (1 <= layer <= num_layers and 0 <= unit < hidden_size):
        raise SeqlabError(f"--cell {spec}: layers run 1..{num_layers} and units 0..{hidden_size - 1}")
    return layer - 1, unit


# -- command line -------------------------------------------------------------------------------

def read_run(args, file: str | None, command: str):
    """What `analyze cells` and `viz` both start with: check the options, load the run, take the
    text (`file`, or the run's own split, cut to --chars) and read it through the model.
    Returns (config, vocab, text, where the text came from, Reading)."""

    if args.chars < 2 or args.top < 1:
        raise SeqlabError(f"--chars must be at least 2 and --top at least 1, got {args.chars} and {args.top}")
    torch.set_num_threads(min(torch.get_num_threads(), 4))
    cfg, vocab, model, _ = load_run(args.run, "cpu", lm_for=command)
    if file:
        text, what = read_path(file), file
    else:
        ids = load_splits(cfg.data, log=lambda m: print(m, file=sys.stderr)).get(args.split)
        text, what = vocab.decode(ids[:args.chars].tolist()), f"the {args.split} split"
    text = text[:args.chars]
    return cfg, vocab, text, what, read_text(model, vocab, text, state=args.state)


def build_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(
        prog="seqlab analyze cells", formatter_class=argparse.RawDescriptionHelpFormatter,
        description="The cells of a character-level LSTM / GRU / RNN language model whose activation\n"
                    "correlates best (Pearson r) with simple features of the text: inside double or single\n"
                    "quotes, inside a comment, position in the line, characters left in the line, bracket\n"
                    "depth (Karpathy, Johnson & Fei-Fei 2016). LSTM cells are read as tanh(c_t).\n"
                    "Cells are named LAYER:UNIT, layers from 1 and units from 0.",
        epilog="examples:\n  seqlab analyze cells runs/demo --split valid --chars 20000\n"
               "  seqlab analyze cells runs/demo --file play.txt --png cell.png --feature line_position\n"
               "  seqlab viz runs/demo --text play.txt --out cells.html    # the same, as an HTML page")
    p.add_argument("run", metavar="RUN", help="a run of model.name=lstm, gru, rnn or jordan (task.name=lm, data.level=char)")
    p.add_argument("--file", metavar="PATH", help="read this UTF-8 text file instead of a split")
    p.add_argument("--split", default="valid", choices=["train", "valid", "test"], help="split to read (default: valid)")
    p.add_argument("--chars", type=int, default=20000, help="read at most this many characters (default: 20000)")
    p.add_argument("--top", type=int, default=3, help="cells listed per feature (default: 3)")
    p.add_argument("--state", default="cell", choices=["cell", "hidden"],
                   help="LSTM value to read: cell = tanh(c_t), hidden = h_t (default: cell)")
    p.add_argument("--json", action="store_true", help="also print the best cells per feature as JSON")
    p.add_argument("--png", metavar="OUT", help="draw one cell's activation over the first lines of the text")
    p.add_argument("--feature", default=None, choices=list(LABELS),
                   help="with --png: draw this feature's best cell (default: the best cell of any feature)")
    p.add_argument("--cell", metavar="L:N", help="with --png: draw this cell instead")
    p.add_argument("--overwrite", action="store_true", help="replace the files to write if they exist (default: refuse)")
    return p


def main(argv: list[str]) -> int:
    args = build_parser().parse_args(argv[1:] if argv and argv[0] == "cells" else argv)
    png = output(args.png, "--png", args.overwrite, inputs=[args.file, args.run])
    cfg, _, text, what, reading = read_run(args, args.file, "seqlab analyze cells")
    names, best, _ = search(reading, top=args.top)
    print(f"{Path(args.run).name}: {reading.what} of {reading.cells.shape[1]} cells on {len(text):,} characters "
          f"of {what}; mean loss {np.nanmean(reading.loss):.3f} nats")
    print(f"{'feature':<28} {'cell':>7} {'r':>7}")
    for name in names:
        if not best[name]:
            print(f"{LABELS[name]:<28} {'-':>7} {'':>7}  (never varies in this text)")
        for rank, cell in enumerate(best[name]):
            label = LABELS[name] if rank == 0 else ""
            print(f"{label:<28} {cell['layer'] + 1:>4}:{cell['unit']:<3} {cell['r']:>+7.3f}")
    if args.json:
        print(json.dumps({"what": reading.what, "chars": len(text), "best": best}))
    if args.png:
        layer, unit, label = _cell_to_draw(args, best, cfg)
        values = reading.activations[:, layer, unit]
        plot_cell_text(png, text, values, title=f"{Path(args.run).name}: cell {layer + 1}:{unit} ({label}), "
                                                      f"{reading.what} from -1 (blue) to +1 (red)")
        print(f"plot: {args.png}", file=sys.stderr)
    return 0


def _cell_to_draw(args, best: dict[str, list[dict]], cfg) -> tuple[int, int, str]:
    if args.cell:
        layer, unit = parse_cell(args.cell, cfg.model.num_layers, cfg.model.hidden_size)
        return layer, unit, "chosen"
    candidates = [(name, cells[0]) for name, cells in best.items()
                  if cells and (args.feature is None or name == args.feature)]
    if not candidates:
        raise SeqlabError(f"the feature {args.feature} never varies in this text; pick another or give --cell")
    name, cell = max(candidates, key=lambda item: abs(item[1]["r"]))
    return cell["layer"], cell["unit"], f"{LABELS[name]}, r = {cell['r']:+.2f}"
