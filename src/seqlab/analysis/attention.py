"""Attention heat maps: which source tokens each target token attended to (Bahdanau et al.
2015, figure 3; Luong et al. 2015, figure 7). Rows are target steps, columns source
positions; each row sums to 1. Written as a PNG (matplotlib, headless), atomically.
"""
from __future__ import annotations

import textwrap
from pathlib import Path
from typing import Sequence

import numpy as np

from seqlab import SeqlabError
from seqlab.training.plots import pyplot, save_figure


def plot_attention(path: str | Path, weights, src_tokens: Sequence[str], tgt_tokens: Sequence[str],
                   title: str = "") -> None:
    """weights (U, S), a numpy array or tensor; src_tokens S labels, tgt_tokens U labels."""
    plt = pyplot()

    if hasattr(weights, "detach"):
        weights = weights.detach().cpu().float().numpy()
    w = np.asarray(weights, dtype=np.float64)                              # (U, S)
    if w.ndim != 2 or w.shape != (len(tgt_tokens), len(src_tokens)):
        raise SeqlabError(f"attention weights of shape {w.shape} do not match {len(tgt_tokens)} target "
                          f"and {len(src_tokens)} source tokens")
    U, S = w.shape
    width, height = min(max(5.0, 2.5 + 0.35 * S), 24.0), min(max(3.0, 2.0 + 0.35 * U), 24.0)
    fig, ax = plt.subplots(figsize=(width, height), dpi=100)
    image = ax.imshow(w, cmap="Greys", vmin=0.0, vmax=1.0, aspect="auto", interpolation="nearest")
    ax.set_xticks(range(S), [str(t) for t in src_tokens], rotation=90, fontsize=8)
    ax.set_yticks(range(U), [str(t) for t in tgt_tokens], fontsize=8)
    ax.xaxis.tick_top()
    ax.set_xlabel("source")
    ax.set_ylabel("target")
    fig.colorbar(image, ax=ax, fraction=0.04, pad=0.02, label="attention weight")
    if title:
        ax.set_title(textwrap.fill(title, int(width * 11)), fontsize=10, pad=12)
    save_figure(fig, path)


def plot_image_attention(path: str | Path, image: np.ndarray, weights, grid: tuple[int, int],
                         words: Sequence[str], title: str = "") -> None:
    """Where a captioner looked for each word (Xu et al. 2015, figure 2): one panel per
    generated word, the image dimmed where the attention is low. image (H, W) in [0, 255],
    weights (U, R) over the R = rows x columns regions of the encoder's grid."""
    plt = pyplot()

    if hasattr(weights, "detach"):
        weights = weights.detach().cpu().float().numpy()
    w = np.asarray(weights, dtype=np.float64)                               # (U, R)
    rows, columns = grid
    if w.ndim != 2 or w.shape != (len(words), rows * columns):
        raise SeqlabError(f"attention weights of shape {w.shape} do not match {len(words)} words over a "
                          f"{rows} x {columns} grid")
    H, W = image.shape
    panels = len(words) + 1
    fig, axes = plt.subplots(1, panels, figsize=(1.6 * panels, 1.6 * H / W + 0.6), dpi=100, squeeze=False)
    axes[0, 0].imshow(image, cmap="gray", vmin=0, vmax=255)
    axes[0, 0].set_title("image", fontsize=8)
    for k, word in enumerate(words):
        heat = w[k].reshape(rows, columns)
        heat = np.kron(heat / max(heat.max(), 1e-12), np.ones((H // rows, W // columns)))   # (H', W') in [0, 1]
        ax = axes[0, k + 1]
        ax.imshow(image, cmap="gray", vmin=0, vmax=255)
        ax.imshow(heat, cmap="magma", alpha=0.55, extent=(-0.5, W - 0.5, H - 0.5, -0.5), vmin=0, vmax=1)
        ax.set_title(word, fontsize=9)
    for ax in axes[0]:
        ax.set_xticks([])
        ax.set_yticks([])
    if title:
        fig.suptitle(textwrap.fill(title, 20 * panels), fontsize=9)
    save_figure(fig, path)
