"""Plots written into a run directory (matplotlib, headless)."""
from __future__ import annotations

from pathlib import Path

from seqlab.io import Output, json_loads, writing


def read_metrics(path: str | Path) -> list[dict]:
    path = Path(path)
    if not path.is_file():
        return []
    rows = []
    for line in path.read_bytes().splitlines():
        try:
            row = json_loads(line.decode("utf-8"))
        except ValueError:     # UnicodeDecodeError too
            continue   # a line cut short by a crash (or damaged): skip it, keep the rest
        if isinstance(row, dict) and isinstance(row.get("step", 0), (int, float)) and not isinstance(row.get("step"), bool):
            rows.append(row)
    return rows


def pyplot():
    """matplotlib.pyplot on the headless Agg backend, imported on first use (it is slow to import)."""
    import matplotlib
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    return plt


def save_figure(fig, path: "str | Path | Output", title: str | None = None, grid_and_legend=()) -> None:
    """Optionally title the figure, lay it out, write it as a PNG atomically and close it.
    The axes in `grid_and_legend` get the experiments' light grid and a small legend first."""
    for ax in grid_and_legend:
        ax.grid(alpha=0.3, which="both")
        ax.legend(fontsize=8)
    if title is not None:
        fig.suptitle(title, fontsize=10)
    fig.tight_layout()
    with writing(path) as tmp:
        fig.savefig(tmp, format="png")
    pyplot().close(fig)


def plot_loss(metrics_path: str | Path, out_path: str | Path, title: str = "") -> None:
    """Training and validation loss (nats per token) against updates."""
    plt = pyplot()
    rows = read_metrics(metrics_path)
    fig, ax = plt.subplots(figsize=(7, 4), dpi=100)
    for split, style in (("train", dict(lw=1, alpha=0.8)), ("valid", dict(marker="o", ms=4, lw=1.5))):
        pts = [(r["step"], r["loss"]) for r in rows if r.get("split") == split and "loss" in r]
        if pts:
            ax.plot(*zip(*pts), label=split, **style)
    ax.set_xlabel("update")
    ax.set_ylabel("loss (nats per token)")
    ax.grid(alpha=0.3)
    if ax.lines:
        ax.legend()
    ax.set_title(title, fontsize=10)
    save_figure(fig, out_path)
