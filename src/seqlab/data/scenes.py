"""Captioned scenes for task.name=caption: real digit images, generated but honest captions.

No captioned photo collection (MS COCO, Flickr8k/30k) can be had on these machines, so a
scene is composed from real MNIST digits (`data.corpus=scenes`; `seqlab data fetch mnist`)
or from seven-segment glyphs drawn here (`data.corpus=segments`: nothing to fetch, for
tests and quick tries), and its caption is generated from how the scene was composed:

    a 64 x 96 canvas, 2 rows x 3 columns of 32 x 32 cells; 1 to 5 digits, each in a cell
    of its own, scaled to 18-30 pixels and moved within its cell at random.
    The caption reads the columns left to right, joined by ", then"; a column holding two
    digits reads "X above Y":      "three above seven , then one"

So a caption names every digit in reading order and which ones are stacked: to write it a
model must find the digits and read them in order — the longer the caption, the more it
needs to look at the right place at the right word (what attention is for).

Splits: training scenes take their digits from MNIST's training split, validation scenes
from its validation split, test scenes from its test split — no test scene reuses a
training digit image. Everything is a function of (digits, count, seed).
"""
from __future__ import annotations

import warnings
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from seqlab import SeqlabError
from seqlab.io import atomic_path, input_file

NAMES = ("zero", "one", "two", "three", "four", "five", "six", "seven", "eight", "nine")
WORDS = NAMES + ("above", ",", "then")
HEIGHT, WIDTH, CELL = 64, 96, 32
ROWS, COLUMNS = HEIGHT // CELL, WIDTH // CELL
DIGITS = 28                               # the digit images' side
MIN_SIZE, MAX_SIZE = 18, 30
MAX_DIGITS = 5


@dataclass
class Scenes:
    images: np.ndarray                    # (n, HEIGHT, WIDTH) uint8, ink = 255
    captions: list[list[str]]
    digits: list[int]                     # how many digits each scene holds


def caption(cells: dict[tuple[int, int], int]) -> list[str]:
    """{(row, column): digit} -> the caption's words (columns left to right, each top to bottom)."""
    parts = []
    for column in range(COLUMNS):
        stacked = [NAMES[cells[(row, column)]] for row in range(ROWS) if (row, column) in cells]
        if stacked:
            parts.append(" above ".join(stacked).split())
    words: list[str] = []
    for part in parts:
        words += ([",", "then"] if words else []) + part
    return words


def resize(image: np.ndarray, size: int) -> np.ndarray:
    """(28, 28) float in [0, 1] -> (size, size), averaging each target pixel's footprint (area
    resampling: no aliasing when shrinking, bilinear-like when enlarging)."""
    edges = np.linspace(0, image.shape[0], size + 1)
    weights = np.zeros((size, image.shape[0]))
    for i in range(size):                              # overlap of target pixel i with source pixel j
        lo, hi = edges[i], edges[i + 1]
        j = np.arange(image.shape[0])
        weights[i] = np.clip(np.minimum(hi, j + 1) - np.maximum(lo, j), 0, None)
    weights /= weights.sum(1, keepdims=True)
    return weights @ image @ weights.T


def compose(digit_images: np.ndarray, digit_labels: np.ndarray, count: int, seed: int) -> Scenes:
    """`count` scenes from the (n, 28, 28) float digits in [0, 1] and their labels, by `seed`."""
    digit_images = np.asarray(digit_images, np.float32).reshape(-1, DIGITS, DIGITS)
    if len(digit_images) < MAX_DIGITS:
        raise SeqlabError(f"a scene needs at least {MAX_DIGITS} digit images to draw from; got {len(digit_images)}")
    rng = np.random.default_rng(seed)
    images = np.zeros((count, HEIGHT, WIDTH), np.uint8)
    captions, counts = [], []
    for k in range(count):
        n = int(rng.integers(1, MAX_DIGITS + 1))
        chosen_cells = rng.choice(ROWS * COLUMNS, n, replace=False)
        picks = rng.integers(0, len(digit_images), n)
        canvas = np.zeros((HEIGHT, WIDTH), np.float32)
        cells = {}
        for cell, pick in zip(chosen_cells, picks):
            row, column = divmod(int(cell), COLUMNS)
            size = int(rng.integers(MIN_SIZE, MAX_SIZE + 1))
            top = row * CELL + int(rng.integers(0, CELL - size + 1))
            left = column * CELL + int(rng.integers(0, CELL - size + 1))
            patch = resize(digit_images[pick], size)
            canvas[top:top + size, left:left + size] = np.maximum(canvas[top:top + size, left:left + size], patch)
            cells[(row, column)] = int(digit_labels[pick])
        images[k] = np.clip(np.rint(canvas * 255), 0, 255).astype(np.uint8)
        captions.append(caption(cells))
        counts.append(n)
    return Scenes(images, captions, counts)


# -- seven-segment glyphs: digits without a download ------------------------------------------

#            a
#          f   b
#            g
#          e   c
#            d
SEGMENTS = {0: "abcdef", 1: "bc", 2: "abged", 3: "abgcd", 4: "fgbc", 5: "afgcd", 6: "afgedc", 7: "abc",
            8: "abcdefg", 9: "abcdfg"}


def glyphs(count: int, seed: int) -> tuple[np.ndarray, np.ndarray]:
    """(count, 28, 28) float32 seven-segment digits with random stroke width, size, slant and
    offset, and their labels (count,): a stand-in for handwritten digits that needs no data."""
    rng = np.random.default_rng(seed)
    labels = rng.integers(0, 10, count)
    ys, xs = np.mgrid[0:DIGITS, 0:DIGITS].astype(np.float32)
    out = np.zeros((count, DIGITS, DIGITS), np.float32)
    for k, label in enumerate(labels):
        w, h = rng.uniform(9, 13), rng.uniform(16, 21)             # glyph box
        x0, y0 = 14 - w / 2 + rng.uniform(-2, 2), 14 - h / 2 + rng.uniform(-2, 2)
        slant, width = rng.uniform(-0.2, 0.2), rng.uniform(1.2, 2.2)
        corners = {"tl": (x0, y0), "tr": (x0 + w, y0), "ml": (x0, y0 + h / 2), "mr": (x0 + w, y0 + h / 2),
                   "bl": (x0, y0 + h), "br": (x0 + w, y0 + h)}
        ends = {"a": ("tl", "tr"), "b": ("tr", "mr"), "c": ("mr", "br"), "d": ("bl", "br"), "e": ("ml", "bl"),
                "f": ("tl", "ml"), "g": ("ml", "mr")}
        ink = np.zeros((DIGITS, DIGITS), np.float32)
        for segment in SEGMENTS[int(label)]:
            (ax, ay), (bx, by) = (corners[p] for p in ends[segment])
            ax, bx = ax - slant * (ay - 14), bx - slant * (by - 14)
            dx, dy = bx - ax, by - ay
            t = np.clip(((xs - ax) * dx + (ys - ay) * dy) / (dx * dx + dy * dy), 0, 1)
            distance = np.hypot(xs - (ax + t * dx), ys - (ay + t * dy))
            ink = np.maximum(ink, np.clip(width + 0.5 - distance, 0, 1))
        out[k] = ink
    return out, labels


# -- a user's image -----------------------------------------------------------------------------

MAX_PIXELS = 40_000_000                   # larger images are refused before they are decoded
MAX_IMAGE_BYTES = 200_000_000            # and larger files before they are opened


def read_image(path: str | Path) -> np.ndarray:
    """Any image Pillow reads (PNG, JPEG, ...; grey, RGB, RGBA, palette) -> (HEIGHT, WIDTH) uint8
    as the scenes are drawn: grey, transparency over black, scaled to fit (aspect kept, black
    borders), and light digits on a dark ground (a mostly light image is inverted)."""
    from PIL import Image, UnidentifiedImageError          # only images need Pillow (it comes with matplotlib)

    p = input_file(path, max_bytes=MAX_IMAGE_BYTES, what="image")
    if p.stat().st_size == 0:
        raise SeqlabError(f"{path} is empty; give a PNG or JPEG image")
    try:
        with warnings.catch_warnings(), Image.open(p) as image:
            warnings.simplefilter("ignore", Image.DecompressionBombWarning)     # our own limit comes next
            w, h = image.size
            if w * h > MAX_PIXELS:
                raise SeqlabError(f"{path} is {w:,} x {h:,} pixels, more than seqlab reads "
                                  f"({MAX_PIXELS // 1_000_000} megapixels); scale it down first")
            if image.mode in ("RGBA", "LA", "PA", "P") or "transparency" in image.info:
                rgba = image.convert("RGBA")
                image = Image.alpha_composite(Image.new("RGBA", rgba.size, (0, 0, 0, 255)), rgba)
            grey = image.convert("L")
            scale = min(WIDTH / w, HEIGHT / h)
            size = (max(1, round(w * scale)), max(1, round(h * scale)))
            grey = grey.resize(size, Image.Resampling.BOX if scale < 1 else Image.Resampling.BILINEAR)
    except Image.DecompressionBombError:
        raise SeqlabError(f"{path} has more pixels than seqlab reads ({MAX_PIXELS // 1_000_000} megapixels); "
                          f"scale it down first") from None
    except (UnidentifiedImageError, OSError, ValueError, SyntaxError) as e:
        raise SeqlabError(f"{path} is not an image seqlab can read ({_why(e)}); give a PNG or JPEG") from None
    pixels = np.asarray(grey, np.uint8)
    if pixels.mean() > 127:                                  # dark digits on a light ground
        pixels = 255 - pixels
    canvas = np.zeros((HEIGHT, WIDTH), np.uint8)
    top, left = (HEIGHT - pixels.shape[0]) // 2, (WIDTH - pixels.shape[1]) // 2
    canvas[top:top + pixels.shape[0], left:left + pixels.shape[1]] = pixels
    return canvas


def _why(e: Exception) -> str:
    text = str(e).splitlines()[0][:120] if str(e) else ""
    return f"{type(e).__name__}: {text}" if text else type(e).__name__


def check_png(path: str | Path, max_pixels: int = MAX_PIXELS, max_bytes: int = MAX_IMAGE_BYTES) -> tuple[int, int]:
    """(width, height) of a PNG that decodes whole (a truncated or damaged one is refused), of at
    most `max_pixels`; a one-line SeqlabError naming the file otherwise."""
    from PIL import Image, UnidentifiedImageError

    p = input_file(path, max_bytes=max_bytes, what="PNG image")
    try:
        with warnings.catch_warnings(), Image.open(p, formats=["PNG"]) as image:
            warnings.simplefilter("ignore", Image.DecompressionBombWarning)
            w, h = image.size
            if w * h > max_pixels:
                raise SeqlabError(f"{path} is {w:,} x {h:,} pixels, more than {max_pixels // 1_000_000} megapixels")
            image.load()                                # decodes every row: a cut-off file fails here
    except Image.DecompressionBombError:
        raise SeqlabError(f"{path} has more pixels than {max_pixels // 1_000_000} megapixels") from None
    except (UnidentifiedImageError, OSError, ValueError, SyntaxError, EOFError) as e:
        raise SeqlabError(f"{path} is not a whole PNG image ({_why(e)})") from None
    return w, h


def write_image(path: str | Path, image: np.ndarray) -> None:
    """A (H, W) uint8 scene as a greyscale PNG, atomically."""
    from PIL import Image                                  # only images need Pillow

    with atomic_path(Path(path)) as tmp:
        Image.fromarray(np.asarray(image, np.uint8)).save(tmp, format="PNG")     # (H, W) uint8: grey
