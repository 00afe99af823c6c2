"""compress(data) -> .sqz bytes and decompress(.sqz bytes) -> data: one loop for both.

The N bytes are cut into B contiguous segments of L = ceil(N / B) (the last ones shorter),
coded side by side: at step t the predictor gives B distributions at once and the coder
codes byte t of every segment still running. After each chunk of K steps an adaptive
predictor learns from the chunk. The decoder repeats the same calls, decoding instead of
encoding, so it computes the same probabilities — on the same kind of machine: floating
point can differ between CPUs or thread counts, so the header records the thread count and
a fingerprint of the first two chunks' frequencies, and decoding stops with one line at the
first difference instead of writing wrong bytes. If coding would not make the data smaller
(random bytes), it is stored as it is.
"""
from __future__ import annotations

import hashlib
from typing import Callable

import numpy as np
import torch
from tqdm import tqdm

import seqlab
from seqlab import SeqlabError
from seqlab.compress import container
from seqlab.compress.coder import Decoder, Encoder, quantize

CHECKED_CHUNKS = 2                # the fingerprint covers the frequencies of the first chunks


def layout(n: int, streams: int) -> tuple[int, np.ndarray]:
    """(L, lengths (B,)): B segments of L bytes, the last ones shorter (some may be empty)."""
    B = max(1, min(streams, n))
    L = -(-n // B) if n else 0
    return L, np.clip(n - np.arange(B) * L, 0, L)


def run_loop(predictor, n: int, streams: int, chunk: int, encoder: Encoder | None, decoder: Decoder | None,
             grid: np.ndarray | None, progress: bool, what: str,
             expect: Callable[[str], None] | None = None, stats: dict | None = None) -> tuple[np.ndarray, str]:
    """Code (or decode) the (B, L) grid of bytes; returns the grid and the fingerprint, which
    `expect` (decoding) checks as soon as it is complete. Encoding fills `stats` with the
    model's cross-entropy, Σ −log2 p(x), in bits ("model_bits", from its probabilities before
    quantisation), what the coder should come to."""
    L, lengths = layout(n, streams)
    B = len(lengths)
    if grid is None:
        grid = np.full((B, L), -1, np.int64)
    digest = hashlib.sha256()
    model_bits = 0.0
    predictor.reset(B)
    with tqdm(total=n, unit="B", unit_scale=True, desc=what, disable=not progress, mininterval=0.5) as bar:
        for c, start in enumerate(range(0, L, chunk)):
            stop = min(start + chunk, L)
            for t in range(start, stop):
                live = lengths > t                                                     # (B,)
                probs = predictor.probs()[live]                                        # (live, 256)
                freqs = quantize(probs)
                if c < CHECKED_CHUNKS:
                    digest.update(freqs.tobytes())
                if encoder is not None:
                    encoder.encode(grid[live, t], freqs)
                    if stats is not None:
                        chosen = probs[np.arange(len(probs)), grid[live, t]] / probs.sum(1)
                        model_bits -= float(np.log2(chosen).sum())
                else:
                    grid[live, t] = decoder.decode(freqs)
                predictor.advance(np.where(live, grid[:, t], 0), live)
                bar.update(int(live.sum()))
            predictor.learn(grid[:, start:stop], lengths)
            if expect is not None and (c == CHECKED_CHUNKS - 1 or stop == L):
                expect(digest.hexdigest()[:16])
                expect = None
    if stats is not None:
        stats["model_bits"] = model_bits
    return grid, digest.hexdigest()[:16]


def compress(data: bytes, predictor, *, mode: str, streams: int = 256, chunk: int = 64, progress: bool = False,
             extra: dict | None = None, stats: dict | None = None) -> bytes:
    """The .sqz bytes of `data`, coded with `predictor` (see predictors.py). `stats`, when
    given, receives "model_bits" (the model's cross-entropy of the data), "payload_bytes" and
    "header_bytes"."""
    n = len(data)
    header = {"mode": mode, "model": predictor.description, "length": n, "sha256": hashlib.sha256(data).hexdigest(),
              "streams": streams, "chunk": chunk, "threads": torch.get_num_threads(), "torch": torch.__version__,
              "seqlab": seqlab.__version__, **(extra or {})}
    L, lengths = layout(n, streams)
    grid = np.full((len(lengths), L), -1, np.int64)
    flat = np.frombuffer(data, np.uint8).astype(np.int64)
    for b, size in enumerate(lengths):
        grid[b, :size] = flat[b * L:b * L + size]
    encoder = Encoder()
    _, header["fingerprint"] = run_loop(predictor, n, streams, chunk, encoder, None, grid, progress, "compress",
                                        stats=stats)
    payload = encoder.finish()
    if len(payload) >= n:                    # the model cannot beat the bytes themselves
        header.update(mode="stored", coded_mode=mode)
        payload = data
    blob = container.pack(header, payload)
    if stats is not None:
        stats.update(payload_bytes=len(payload), header_bytes=len(blob) - len(payload))
    return blob


def decompress(blob: bytes, predictor_for: Callable[[dict], object], *, name: str = "the input",
               progress: bool = False) -> bytes:
    """The original bytes of a .sqz file; `predictor_for(header)` builds the predictor it names
    (or refuses, with one line, when it cannot)."""
    header, payload = container.unpack(blob, name)
    n = int(header["length"])
    if header["mode"] == "stored":
        data = payload
    else:
        predictor = predictor_for(header)
        threads = int(header.get("threads", torch.get_num_threads()))
        before = torch.get_num_threads()

        def expect(print_: str) -> None:
            if print_ != header.get("fingerprint"):
                raise SeqlabError(f"{name}: this machine computes the model's probabilities differently from the one "
                                  f"that compressed it (fingerprint {print_} against {header.get('fingerprint')}; "
                                  f"torch {torch.__version__} against {header.get('torch')}); decompress it where "
                                  f"it was made, or on the same CPU type and torch version")
        torch.set_num_threads(threads)      # the same arithmetic as the encoder's
        try:
            grid, _ = run_loop(predictor, n, int(header["streams"]), int(header["chunk"]), None, Decoder(payload),
                               None, progress, "decompress", expect)
        except (ValueError, RuntimeError, OverflowError, AssertionError, IndexError) as e:
            # the payload matched its checksum, so the bytes are what was written: the model differs
            raise SeqlabError(f"{name} cannot be decoded here: the coder failed ({type(e).__name__}) on intact bytes, "
                              f"so this machine's model computes other probabilities (torch {torch.__version__} "
                              f"against {header.get('torch')}); decompress it where it was made") from None
        finally:
            torch.set_num_threads(before)
        L, lengths = layout(n, int(header["streams"]))
        data = b"".join(bytes(grid[b, :size].astype(np.uint8)) for b, size in enumerate(lengths))
    if hashlib.sha256(data).hexdigest() != header["sha256"] or len(data) != n:
        raise SeqlabError(f"{name} decodes to bytes that do not match the original's checksum"
                          + (": the file is damaged" if header.get("payload_sha256") is None else
                             " although the file is intact: this machine computes the model's probabilities "
                             "differently; decompress it where it was made"))
    return data
