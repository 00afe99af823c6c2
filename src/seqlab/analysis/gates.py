"""Gate activations of LSTM and GRU layers, and how saturated they are.

Karpathy, Johnson & Fei-Fei (2016), "Visualizing and Understanding Recurrent Networks",
§4.2: a gate unit is *left-saturated* at a step when its activation is below 0.1 and
*right-saturated* when above 0.9; plotting each unit's two fractions against each other
shows, for instance, forget-gate units that are almost always right-saturated — cells
that remember for long stretches.

PyTorch's fused modules do not expose their gates, so they are recomputed here from the
layer's weights, its inputs x_t and its outputs h_{t-1} — one matrix product over the whole
sequence, in PyTorch's gate order:

    LSTM  (i, f, g, o):  [i f g o] = [σ σ tanh σ](W_ih x_t + b_ih + W_hh h_{t-1} + b_hh)
    GRU   (r, z, n):     r, z = σ(W_ir x_t + b_ir + W_hr h_{t-1} + b_hr), σ(... z ...)

Dimension legend: B batch, T time, I input size, H hidden units.
"""
from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

import torch
from torch import Tensor

from seqlab import SeqlabError
from seqlab.data.sources import read_path
from seqlab.data.text import batchify, load_splits
from seqlab.io import Output
from seqlab.models.body import to_layer_first as _to_layer_first
from seqlab.training.plots import pyplot, save_figure
from seqlab.training.runs import load_run

LEFT, RIGHT = 0.1, 0.9


def saturation(activations: Tensor, low: float = LEFT, high: float = RIGHT,
               valid: Tensor | None = None) -> tuple[Tensor, Tensor]:
    """Per unit (last dimension), the fraction of positions below `low` and above `high`.

    activations (..., U); valid: optional bool mask of the leading dimensions (padding False).
    Returns (left (U,), right (U,)), each in [0, 1]."""
    flat = activations.reshape(-1, activations.size(-1))                          # (N, U)
    if valid is not None:
        flat = flat[valid.reshape(-1)]
    if flat.size(0) == 0:
        raise SeqlabError("no positions to measure gate saturation on")
    return (flat < low).float().mean(0), (flat > high).float().mean(0)


def lstm_gates(x: Tensor, h: Tensor, h0: Tensor, weight_ih: Tensor, weight_hh: Tensor,
               bias_ih: Tensor | None = None, bias_hh: Tensor | None = None) -> dict[str, Tensor]:
    """x (B, T, I) inputs, h (B, T, H) outputs, h0 (B, H) -> {"input", "forget", "cell", "output"}: (B, T, H)."""
    z = _preactivations(x, h, h0, weight_ih, weight_hh, bias_ih, bias_hh)        # (B, T, 4H)
    i, f, g, o = z.chunk(4, dim=-1)
    return {"input": i.sigmoid(), "forget": f.sigmoid(), "cell": g.tanh(), "output": o.sigmoid()}


def gru_gates(x: Tensor, h: Tensor, h0: Tensor, weight_ih: Tensor, weight_hh: Tensor,
              bias_ih: Tensor | None = None, bias_hh: Tensor | None = None) -> dict[str, Tensor]:
    """x (B, T, I), h (B, T, H), h0 (B, H) -> {"reset", "update"}: (B, T, H)."""
    H = h.size(-1)
    z = _preactivations(x, h, h0, weight_ih[:2 * H], weight_hh[:2 * H],
                        None if bias_ih is None else bias_ih[:2 * H], None if bias_hh is None else bias_hh[:2 * H])
    r, u = z.chunk(2, dim=-1)
    return {"reset": r.sigmoid(), "update": u.sigmoid()}


def _preactivations(x, h, h0, weight_ih, weight_hh, bias_ih, bias_hh) -> Tensor:
    previous = torch.cat([h0[:, None], h[:, :-1]], dim=1)                          # h_{t-1}: (B, T, H)
    z = x @ weight_ih.t() + previous @ weight_hh.t()                               # (B, T, G*H)
    if bias_ih is not None:
        z = z + bias_ih
    if bias_hh is not None:
        z = z + bias_hh
    return z


@torch.no_grad()
def fused_layer_gates(rnn: torch.nn.Module, x: Tensor, state=None) -> list[dict[str, Tensor]]:
    """Every layer's gates of a unidirectional nn.LSTM / nn.GRU (batch_first) run on x (B, T, I).

    state: PyTorch's initial (L, B, H) state (or pair), zeros when None. Returns one dict per layer."""
    kind = type(rnn).__name__
    if kind not in ("LSTM", "GRU") or rnn.bidirectional or not rnn.batch_first:
        raise SeqlabError(f"gate statistics need a unidirectional batch-first nn.LSTM or nn.GRU, got {kind}")
    B, L = x.size(0), rnn.num_layers
    if state is None:
        zeros = x.new_zeros(L, B, rnn.hidden_size)
        state = (zeros, zeros) if kind == "LSTM" else zeros
    layers, inputs = [], x
    for k in range(L):
        single = type(rnn)(inputs.size(-1), rnn.hidden_size, batch_first=True, bias=rnn.bias).to(x)
        for name in ("weight_ih", "weight_hh") + (("bias_ih", "bias_hh") if rnn.bias else ()):
            getattr(single, f"{name}_l0").copy_(getattr(rnn, f"{name}_l{k}"))
        layer_state = tuple(s[k:k + 1] for s in state) if kind == "LSTM" else state[k:k + 1]
        h, _ = single(inputs, layer_state)                                        # (B, T, H)
        h0 = layer_state[0][0] if kind == "LSTM" else layer_state[0]
        args = [getattr(rnn, f"weight_ih_l{k}"), getattr(rnn, f"weight_hh_l{k}")]
        if rnn.bias:
            args += [getattr(rnn, f"bias_ih_l{k}"), getattr(rnn, f"bias_hh_l{k}")]
        layers.append((lstm_gates if kind == "LSTM" else gru_gates)(inputs, h, h0, *args))
        inputs = h
    return layers


@torch.no_grad()
def lm_saturation(model: torch.nn.Module, ids: Tensor, batch_size: int = 16, steps: int = 100
                  ) -> list[dict[str, tuple[Tensor, Tensor]]]:
    """Per layer and gate, (left, right) saturation fractions (H,) of a fused LSTM / GRU language
    model (models/recurrent.py) reading the token ids (N,) as `batch_size` streams of `steps`
    tokens (the state carried from chunk to chunk, as in evaluation)."""

    if not getattr(model, "fused", False) or model.kind not in ("lstm", "gru"):
        raise SeqlabError("gate saturation reads PyTorch's fused LSTM / GRU: train with model.name=lstm or gru "
                          "and no cell variants (model.impl=auto)")
    model.eval()
    data = batchify(ids, batch_size)                                               # (B, N/B)
    if data.size(1) < 1:
        raise SeqlabError(f"{len(ids)} tokens are too few for {batch_size} streams; give more text")
    gates: list[dict[str, list[Tensor]]] = []
    state = model.init_state(data.size(0))
    for start in range(0, data.size(1), steps):
        x = data[:, start:start + steps]                                           # (B, t)
        emb = model.embedding(x)                                                   # (B, t, E)
        layers = fused_layer_gates(model.rnn, emb, _to_layer_first(state))
        _, state = model(x, state)
        for k, layer in enumerate(layers):
            if len(gates) <= k:
                gates.append({name: [] for name in layer})
            for name, acts in layer.items():
                gates[k][name].append(acts.reshape(-1, acts.size(-1)))
    return [{name: saturation(torch.cat(parts)) for name, parts in layer.items() if name != "cell"}
            for layer in gates]


def plot_saturation(path, stats: list[dict[str, tuple[Tensor, Tensor]]], title: str = "") -> None:
    """Karpathy et al. (2016), figure 4: per gate unit, fraction right-saturated (y) against
    left-saturated (x), one panel per layer, one colour per gate. Written atomically."""
    plt = pyplot()
    fig, axes = plt.subplots(1, len(stats), figsize=(4 * len(stats), 4), dpi=100, squeeze=False)
    for k, (ax, layer) in enumerate(zip(axes[0], stats)):
        for name, (left, right) in layer.items():
            ax.scatter(left.numpy(), right.numpy(), s=8, alpha=0.6, label=f"{name} gate")
        ax.plot([0, 1], [1, 0], color="0.8", lw=0.8)
        ax.set(xlim=(-0.02, 1.02), ylim=(-0.02, 1.02), xlabel="fraction left-saturated (< 0.1)",
               title=f"layer {k + 1}")
        ax.grid(alpha=0.3)
        if k == 0:
            ax.set_ylabel("fraction right-saturated (> 0.9)")
            ax.legend(fontsize=7)
    save_figure(fig, path, title)


# -- command line: seqlab analyze saturation ---------------------------------------------------

def build_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(
        prog="seqlab analyze saturation", formatter_class=argparse.RawDescriptionHelpFormatter,
        description="Per layer and gate, the fraction of steps each unit spends below 0.1\n"
                    "(left-saturated) and above 0.9 (right-saturated), read on a split of\n"
                    "the run's corpus or on a text file; plotted as Karpathy et al.'s figure 4.",
        epilog="example:\n  seqlab analyze saturation runs/demo --out saturation.png")
    p.add_argument("run", metavar="RUN", help="a run of model.name=lstm or gru (task.name=lm)")
    p.add_argument("--split", default="valid", choices=["train", "valid", "test"], help="split to read (default: valid)")
    p.add_argument("--file", metavar="PATH", help="read this UTF-8 text file instead of a split")
    p.add_argument("--tokens", type=int, default=100000, help="read at most this many tokens (default: 100000)")
    p.add_argument("--out", default="saturation.png", help="PNG to write (default: saturation.png)")
    p.add_argument("--json", action="store_true", help="also print the fractions per layer and gate as JSON")
    p.add_argument("--overwrite", action="store_true", help="replace the files to write if they exist (default: refuse)")
    return p


def main(argv: list[str]) -> int:

    args = build_parser().parse_args(argv[1:] if argv and argv[0] == "saturation" else argv)
    out = Output(args.out, "--out", overwrite=args.overwrite, inputs=[args.file, args.run])
    if args.tokens <= 0:
        raise SeqlabError(f"--tokens must be greater than 0, got {args.tokens}")
    cfg, vocab, model, device = load_run(args.run, "cpu", lm_for="gate saturation")
    if args.file:
        ids, what = vocab.encode(read_path(args.file)), args.file
    else:
        ids, what = load_splits(cfg.data, log=lambda m: print(m, file=sys.stderr)).get(args.split), args.split
    ids = torch.as_tensor(ids[:args.tokens])
    stats = lm_saturation(model, ids)
    plot_saturation(out, stats, title=f"{Path(args.run).name}: gate saturation on {len(ids):,} tokens of {what}")
    for k, layer in enumerate(stats, 1):
        for gate, (left, right) in layer.items():
            print(f"layer {k} {gate:>7} gate: mean left-saturated {left.mean():.3f}, right-saturated {right.mean():.3f}; "
                  f"units right-saturated > 50% of the time: {int((right > 0.5).sum())} of {len(right)}")
    if args.json:
        print(json.dumps([{g: {"left": l.tolist(), "right": r.tolist()} for g, (l, r) in layer.items()}
                          for layer in stats]))
    print(f"plot: {args.out}", file=sys.stderr)
    return 0
