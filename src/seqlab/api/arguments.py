"""What the Python API and the command line accept, checked where it enters: types (a str where
a number belongs raises seqlab.SeqlabError, not a TypeError from deep inside torch) and ranges
(a length that would allocate terabytes, a seed torch cannot take). `name` says how the caller
spells an option: `length` in Python, `--length` on the command line."""
from __future__ import annotations

import math
import os
from numbers import Integral, Real
from typing import Any, Callable

from seqlab import SeqlabError

MAX_LENGTH = 10_000_000               # tokens one sample may run to
MAX_TOKENS = 100_000_000              # tokens of one batched draw (length x num_samples)
MAX_SEED = 2 ** 63 - 1


def plain(name: str) -> str:
    """How the Python API names a parameter in its messages (the command line names its flags)."""
    return name


def whole(value: Any, key: str, name: Callable[[str], str] = plain, low: int | None = None,
          high: int | None = None) -> int:
    """`value` as an int (bool and float refused), within [low, high]."""
    if isinstance(value, bool) or not isinstance(value, Integral):
        raise SeqlabError(f"{name(key)} must be a whole number, got {value!r} ({type(value).__name__})")
    value = int(value)
    if (low is not None and value < low) or (high is not None and value > high):
        span = f"from {low:,} to {high:,}" if low is not None and high is not None else \
            f"{low:,} or more" if low is not None else f"at most {high:,}"
        raise SeqlabError(f"{name(key)} must be {span}, got {value:,}")
    return value


def number(value: Any, key: str, name: Callable[[str], str] = plain) -> float:
    """`value` as a finite float (bool and str refused)."""
    if isinstance(value, bool) or not isinstance(value, Real):
        raise SeqlabError(f"{name(key)} must be a number, got {value!r} ({type(value).__name__})")
    value = float(value)
    if not math.isfinite(value):
        raise SeqlabError(f"{name(key)} must be a finite number, got {value}")
    return value


def text(value: Any, key: str, name: Callable[[str], str] = plain, optional: bool = True) -> str | None:
    if value is None and optional:
        return None
    if not isinstance(value, str):
        raise SeqlabError(f"{name(key)} must be a str{' or None' if optional else ''}, got {value!r:.60} "
                          f"({type(value).__name__})")
    return value


def seed(value: Any, name: Callable[[str], str] = plain) -> int | None:
    """None, or a seed torch's generators take (0 to 2^63 - 1)."""
    return None if value is None else whole(value, "seed", name, 0, MAX_SEED)


def path(value: Any, key: str, name: Callable[[str], str] = plain, optional: bool = False):
    if value is None and optional:
        return None
    if not isinstance(value, (str, os.PathLike)):
        raise SeqlabError(f"{name(key)} must be a path (str or pathlib.Path), got {value!r:.60} "
                          f"({type(value).__name__})")
    return value


def check_sampling(length: int, temperature: float, top_k: int, top_p: float, beam: int, greedy: bool,
                   num_samples: int, alpha: float, name: Callable[[str], str], seed_value: Any = None) -> None:
    """One-line errors for sampling options; `name` says how the caller spells an option."""
    length = whole(length, "length", name)
    if length <= 0:
        raise SeqlabError(f"{name('length')} must be greater than 0, got {length}")
    if length > MAX_LENGTH:
        raise SeqlabError(f"{name('length')} must be at most {MAX_LENGTH:,} tokens, got {length:,}")
    temperature, top_p, alpha = (number(v, k, name) for k, v in
                                 (("temperature", temperature), ("top_p", top_p), ("alpha", alpha)))
    top_k, beam, num_samples = (whole(v, k, name) for k, v in
                                (("top_k", top_k), ("beam", beam), ("num_samples", num_samples)))
    if not isinstance(greedy, bool):
        raise SeqlabError(f"{name('greedy')} must be True or False, got {greedy!r}")
    seed(seed_value, name)
    if temperature <= 0:
        raise SeqlabError(f"{name('temperature')} must be greater than 0, got {temperature} "
                          f"(use {name('greedy')} for T -> 0)")
    if top_k < 0:
        raise SeqlabError(f"{name('top_k')} must be 0 (off) or more, got {top_k}")
    if not 0 < top_p <= 1:
        raise SeqlabError(f"{name('top_p')} must be in (0, 1], got {top_p}")
    if beam < 0:
        raise SeqlabError(f"{name('beam')} must be 0 (off) or more, got {beam}")
    if beam > 1000:
        raise SeqlabError(f"{name('beam')} must be at most 1000 beams, got {beam:,}")
    if beam and greedy:
        raise SeqlabError(f"choose one of {name('greedy')} and {name('beam')}")
    if not 1 <= num_samples <= 100_000:
        raise SeqlabError(f"{name('num_samples')} must be between 1 and 100000, got {num_samples}")
    if length * num_samples > MAX_TOKENS:
        raise SeqlabError(f"{name('length')} x {name('num_samples')} is {length * num_samples:,} tokens, more than "
                          f"the {MAX_TOKENS:,} one draw holds; draw fewer or shorter samples")
    if num_samples > 1 and (beam or greedy):
        raise SeqlabError(f"{name('num_samples')} draws different samples; {name('greedy')} and {name('beam')} "
                          f"give one continuation")
