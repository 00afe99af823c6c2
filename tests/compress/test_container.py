""".sqz files protect themselves (issue 28): a checksum over the header and one over the
payload are checked before anything is decoded, every header field is range-checked before
anything is built or allocated, and "another machine" is said only of intact bytes."""
from __future__ import annotations

import hashlib
import json
import struct

import numpy as np
import pytest

from helpers import time_limit
from seqlab import SeqlabError
from seqlab.compress import container
from seqlab.compress.codec import compress, decompress
from seqlab.compress.predictors import NGramPredictor, adaptive, from_description

TEXT = (b"the quick brown fox jumps over the lazy dog; " * 12)[:500]


def small_sqz(mode: str = "ngram") -> bytes:
    return compress(TEXT, adaptive(mode, **({"order": 3} if mode == "ngram" else {})), mode="adaptive",
                    streams=4, chunk=16)


def unsqz(blob: bytes) -> bytes:
    return decompress(blob, lambda header: from_description(header["model"]), name="f.sqz")


def reheader(blob: bytes, edit) -> bytes:
    """The same file with its header edited and every checksum recomputed: a crafted file, which
    only the range checks can refuse."""
    header, payload = container.unpack(blob, "f.sqz")
    header = json.loads(json.dumps(header))
    edit(header)
    header.pop("payload_length"), header.pop("payload_sha256")
    return container.pack(header, payload)


def test_round_trip_and_layout():
    blob = small_sqz()
    assert unsqz(blob) == TEXT
    magic, version, size = struct.unpack_from("<4sHI", blob)
    assert (magic, version) == (b"SQZ1", 2)
    head = blob[:10 + size]
    assert blob[10 + size:26 + size] == hashlib.sha256(head).digest()[:16]
    assert json.loads(blob[10:10 + size])["payload_sha256"] == hashlib.sha256(blob[26 + size:]).hexdigest()


def test_a_flip_of_any_byte_is_reported_as_damage():
    blob = small_sqz()
    assert len(blob) < 1200
    for at in range(len(blob)):
        bad = blob[:at] + bytes([blob[at] ^ 0xFF]) + blob[at + 1:]
        with pytest.raises(SeqlabError) as e:
            unsqz(bad)
        message = str(e.value)
        assert "damaged" in message, (at, message)
        assert "this machine" not in message, (at, message)


def test_single_bit_flips_in_the_payload_are_damage_not_the_machine():
    blob = small_sqz("mix")
    rng = np.random.default_rng(0)
    _, _, size = struct.unpack_from("<4sHI", blob)
    start = 26 + size
    for at in rng.integers(start, len(blob), 30):
        bad = bytearray(blob)
        bad[at] ^= 1 << int(rng.integers(8))
        with pytest.raises(SeqlabError, match="payload does not match its checksum"):
            unsqz(bytes(bad))


EDITS = {
    "threads=100000": lambda h: h.update(threads=100000),
    "threads=0": lambda h: h.update(threads=0),
    "length=1e12": lambda h: h.update(length=10 ** 12),
    "length=float": lambda h: h.update(length=1e12),
    "streams=1e8": lambda h: h.update(streams=10 ** 8),
    "chunk=0": lambda h: h.update(chunk=0),
    "mode=x": lambda h: h.update(mode="x"),
    "sha256 short": lambda h: h.update(sha256="ab"),
    "order=x": lambda h: h["model"].update(order="x"),
    "order=1000": lambda h: h["model"].update(order=1000),
    "smoothing": lambda h: h["model"].update(smoothing="magic"),
    "family": lambda h: h["model"].update(family="os.system"),
    "model=list": lambda h: h.update(model=[1, 2]),
}
MIX_EDITS = {
    "min_len=1e11": lambda h: h["model"].update(min_len=10 ** 11),
    "parts=abc": lambda h: h["model"].update(parts="abc"),
    "parts=[]": lambda h: h["model"].update(parts=[]),
    "nested mix": lambda h: h["model"].update(parts=[dict(h["model"])]),
    "rate=inf": lambda h: h["model"].update(rate=float("inf")),
}
LSTM_EDITS = {
    "lr=inf": lambda h: h["model"].update(lr="inf"),
    "hidden=0": lambda h: h["model"].update(hidden=0),
    "layers=-1": lambda h: h["model"].update(layers=-1),
    "seed=1e30": lambda h: h["model"].update(seed=10 ** 30),
    "hidden=1e9": lambda h: h["model"].update(hidden=10 ** 9),
}


@pytest.mark.parametrize("mode, name", [("ngram", k) for k in EDITS] + [("mix", k) for k in MIX_EDITS]
                         + [("lstm", k) for k in LSTM_EDITS])
def test_crafted_header_fields_are_refused_before_anything_is_built(mode, name):
    edit = {**EDITS, **MIX_EDITS, **LSTM_EDITS}[name]
    if mode == "lstm":         # an LSTM's description in place of the n-gram's, then the edit
        lstm = {"family": "lstm", "hidden": 8, "layers": 1, "lr": 3e-3, "seed": 0}
        blob = reheader(small_sqz(), lambda h: (h.update(model=dict(lstm)), edit(h)))
    else:
        blob = reheader(small_sqz(mode), edit)
    with time_limit(20), pytest.raises(SeqlabError) as e:
        unsqz(blob)
    assert "\n" not in str(e.value)


def test_a_length_the_payload_cannot_hold_is_refused():
    blob = reheader(small_sqz(), lambda h: h.update(length=10 ** 9))
    with pytest.raises(SeqlabError, match="length"):
        unsqz(blob)


def test_intact_bytes_with_other_probabilities_name_the_machine(monkeypatch):
    blob = small_sqz()
    real = NGramPredictor.probs

    def skewed(self):
        p = real(self).copy()
        p[:, 0] += 0.01                # the same model, rounding differently on "another machine"
        return p
    monkeypatch.setattr(NGramPredictor, "probs", skewed)
    with pytest.raises(SeqlabError) as e:
        unsqz(blob)
    assert "this machine" in str(e.value) and "damaged" not in str(e.value)


def test_version_one_files_are_still_read():
    blob = small_sqz()
    header, payload = container.unpack(blob, "f.sqz")
    header.pop("payload_sha256")
    header["payload_length"] = len(payload)
    text = json.dumps(header, sort_keys=True, separators=(",", ":")).encode()
    old = struct.pack("<4sHI", b"SQZ1", 1, len(text)) + text + payload
    assert unsqz(old) == TEXT


def test_static_checksums_are_never_empty_and_tell_runs_apart(tmp_path):
    from conftest import make_text
    from helpers import T
    from seqlab.cli import main
    from seqlab.cli.compress import _static
    corpus = tmp_path / "c.txt"
    corpus.write_text(make_text(4000))
    runs = []
    for i in range(2):        # stopped before their first evaluation: no model.safetensors
        out = tmp_path / f"r{i}"
        assert main(["train", f"data.path={corpus}", "data.level=byte", *T, "train.max_steps=2",
                     "train.eval_every=1000", f"train.seed={i}", "--out", str(out)]) == 0
        runs.append(_static(str(out)).description["weights_sha256"])
    assert all(len(c) == 64 for c in runs) and runs[0] != runs[1]
