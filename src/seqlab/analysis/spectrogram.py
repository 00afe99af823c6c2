"""`seqlab analyze spectrogram A.wav [B.wav ...] --out spectrograms.png`: what a sound holds,
frequency against time, one row per file (real speech beside generated, for instance).

The short-time Fourier transform: Hann windows of --window samples every --hop samples, the
magnitude of each window's spectrum in decibels below the loudest bin of the figure (down to
-80 dB). Any mono 8- or 16-bit PCM WAV; all files of one figure at one sample rate.
"""
from __future__ import annotations

import argparse
import sys
from pathlib import Path

import numpy as np

from seqlab import SeqlabError
from seqlab.data.audio import read_wav
from seqlab.io import Output, writing

FLOOR_DB = -80.0


def spectrogram(x: np.ndarray, window: int = 256, hop: int = 64) -> np.ndarray:
    """(window // 2 + 1, frames) magnitudes of the Hann-windowed STFT of a 1-D signal."""
    x = np.asarray(x, dtype=np.float64)
    if len(x) < window:
        x = np.pad(x, (0, window - len(x)))
    frames = 1 + (len(x) - window) // hop
    index = np.arange(window)[None, :] + hop * np.arange(frames)[:, None]          # (frames, window)
    return np.abs(np.fft.rfft(x[index] * np.hanning(window), axis=1)).T


def plot_spectrograms(path: str | Path, rows: list[tuple[str, np.ndarray]], rate: int, window: int = 256,
                      hop: int = 64, columns: int = 1) -> None:
    """One panel per (title, samples), `columns` panels a row, on one decibel scale."""
    import matplotlib
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    mags = [spectrogram(x, window, hop) for _, x in rows]
    top = max(float(m.max()) for m in mags) or 1.0
    n_rows = -(-len(rows) // columns)
    fig, axes = plt.subplots(n_rows, columns, figsize=(5.2 * columns, 2.1 * n_rows), squeeze=False)
    for ax, (title, x), m in zip(axes.flat, rows, mags):
        db = 20 * np.log10(np.maximum(m / top, 10 ** (FLOOR_DB / 20)))
        ax.imshow(db, origin="lower", aspect="auto", cmap="magma", vmin=FLOOR_DB, vmax=0,
                  extent=(0, len(x) / rate, 0, rate / 2000))
        ax.set_title(title, fontsize=9)
        ax.set_ylabel("kHz", fontsize=8)
        ax.tick_params(labelsize=7)
    for ax in axes.flat[len(rows):]:
        ax.axis("off")
    for ax in axes[-1]:
        ax.set_xlabel("seconds", fontsize=8)
    fig.tight_layout()
    with writing(path) as tmp:
        fig.savefig(tmp, dpi=100, format="png")
    plt.close(fig)


def main(argv: list[str] | None = None) -> int:
    argv = list(sys.argv[1:] if argv is None else argv)
    if argv and argv[0] == "spectrogram":         # forwarded by `seqlab analyze spectrogram ...`
        argv = argv[1:]
    p = argparse.ArgumentParser(prog="seqlab analyze spectrogram", description=__doc__.split("\n\n")[0],
                                formatter_class=argparse.ArgumentDefaultsHelpFormatter)
    p.add_argument("files", nargs="+", metavar="WAV", help="mono 8- or 16-bit PCM WAV files, one row each")
    p.add_argument("--out", default="spectrograms.png", help="the PNG to write")
    p.add_argument("--window", type=int, default=256, help="samples per Fourier window")
    p.add_argument("--hop", type=int, default=64, help="samples between windows")
    p.add_argument("--overwrite", action="store_true", help="replace the files to write if they exist (default: refuse)")
    args = p.parse_args(argv)
    if args.window < 16 or args.hop < 1:
        raise SeqlabError(f"--window must be 16 or more and --hop 1 or more; got {args.window} and {args.hop}")
    out = Output(args.out, "--out", overwrite=args.overwrite, inputs=args.files)
    rows, rate = [], None
    for name in args.files:
        x, got = read_wav(name, rate=rate)          # the first file sets the rate; the others must match it
        rate = rate or got
        rows.append((Path(name).name, x))
    plot_spectrograms(out, rows, rate, args.window, args.hop)
    print(f"wrote {args.out}: {len(rows)} spectrogram(s) at {rate:,} Hz")
    return 0


if __name__ == "__main__":
    sys.exit(main())
