"""Context mixing (compress/mixing.py): the match model follows only verified repeats, the
integer mixer takes the same gradient step as a float implementation of geometric mixing and
learns whom to trust, and a mix codes repetitive data smaller than its n-gram alone."""
import json

import numpy as np
import pytest

from seqlab.compress.codec import compress, decompress
from seqlab.compress.mixing import EXP, LN, SCALE, MatchModel, Mixer, log_input
from seqlab.compress.predictors import adaptive

from conftest import make_text


def feed(model: MatchModel, rows: np.ndarray) -> list[np.ndarray]:
    """Advance the match model column by column over (B, T) bytes; its prediction before each column."""
    model.reset(rows.shape[0])
    before = []
    for t in range(rows.shape[1]):
        before.append(model.predicted.copy() if t else np.full(rows.shape[0], -1))
        model.advance(rows[:, t], np.ones(rows.shape[0], bool))
    return before


def test_the_match_model_predicts_a_repeat_across_streams():
    rng = np.random.default_rng(0)
    phrase = rng.integers(0, 256, 200)
    rows = rng.integers(0, 256, (2, 600))
    rows[0, 100:300] = phrase                       # stream 0 sees the phrase first,
    rows[1, 350:550] = phrase                       # stream 1 later: predictable after min_len bytes of it
    before = feed(MatchModel(min_len=8), rows)
    assert all(before[t][1] == rows[1, t] for t in range(358, 550))
    # random bytes (no 8-byte repeat) are never predicted; the match is dropped at the phrase's end
    predicted = [(b, t) for t in range(600) for b in range(2) if before[t][b] >= 0]
    assert {b for b, _ in predicted} == {1} and min(t for _, t in predicted) == 358
    assert max(t for _, t in predicted) <= 551


def test_the_match_model_follows_no_hash_collision():
    rows = np.random.default_rng(4).integers(0, 256, (4, 800))     # no repeat of 8 bytes anywhere
    before = feed(MatchModel(min_len=8, table_bits=3), rows)       # 8 slots: every lookup finds something
    assert all((p < 0).all() for p in before)


def test_integer_tables_are_logs_and_exponentials_in_fixed_point():
    q = np.array([1, 2 ** 8, 2 ** 15, 2 ** 16])
    assert np.allclose(LN[q - 1] / SCALE, np.log(q / 2 ** 16), atol=0.5 / SCALE)
    assert EXP[0] == 2 ** 30 and abs(EXP[SCALE] / 2 ** 30 - np.exp(-1)) < 1e-9
    assert (log_input(np.full((1, 256), 1 / 256)) == LN[2 ** 8 - 1]).all()


def test_the_mixer_steps_as_float_geometric_mixing_does():
    """An independent float64 implementation: P ∝ exp(Σ w_i L_i), w_i += η (L_i(x) − E_P L_i)."""
    rng = np.random.default_rng(1)
    B, M = 5, 3
    L = log_input(rng.dirichlet(np.ones(256), size=(B, M)).reshape(B * M, 256)).reshape(B, M, 256)
    mixer = Mixer(M, contexts=B, rate=0.01, initial=[0.7, 0.2, 0.4])
    w0 = mixer.weights.copy() / 2 ** 16
    e = mixer.mix(L, np.arange(B))
    Lf = L / SCALE
    z = np.einsum("bm,bmy->by", w0, Lf)
    P = np.exp(z - z.max(1, keepdims=True))
    P /= P.sum(1, keepdims=True)
    assert np.allclose(e / e.sum(1, keepdims=True), P, atol=1e-4)
    x = rng.integers(0, 256, B)
    mixer.update(x, np.ones(B, bool))
    step = 0.01 * (Lf[np.arange(B), :, x] - np.einsum("by,bmy->bm", P, Lf))
    assert np.allclose(mixer.weights / 2 ** 16 - w0, step, atol=2e-4)


def test_the_mixer_learns_to_trust_the_model_that_is_right():
    rng = np.random.default_rng(2)
    mixer = Mixer(2, contexts=1, rate=0.002, initial=[0.5, 0.5])
    truth = rng.dirichlet(np.full(256, 0.1), size=64)                          # (B, 256)
    noise = rng.dirichlet(np.full(256, 0.1), size=64)
    L = np.stack([log_input(truth), log_input(noise)], 1)
    for _ in range(200):
        mixer.mix(L, np.zeros(64, np.int64))
        x = np.array([rng.choice(256, p=p) for p in truth])
        mixer.update(x, np.ones(64, bool))
    good, bad = mixer.weights[0] / 2 ** 16
    assert good > 0.9 and bad < 0.1, (good, bad)


@pytest.mark.parametrize("data", [b"", b"z", b"ab" * 2000, bytes(range(256)) * 12, make_text(9000).encode()],
                         ids=["empty", "one byte", "repeats", "binary", "text"])
def test_mix_round_trips(data):
    made = lambda: adaptive("mix", order=4)                                      # noqa: E731
    blob = compress(data, made(), mode="adaptive", streams=8, chunk=16)
    assert decompress(blob, lambda header: adaptive(header["model"]["family"], **{
        k: v for k, v in header["model"].items() if k != "family"})) == data


def test_a_match_model_makes_long_repeats_cheaper_than_the_ngram_alone():
    rng = np.random.default_rng(3)
    block = rng.integers(0, 256, 3000).astype(np.uint8).tobytes()          # random: a bigram cannot learn it
    data = block + make_text(4000).encode() + block + block
    sizes = {name: len(compress(data, adaptive(name, order=2), mode="adaptive", streams=4, chunk=16))
             for name in ("ngram", "mix")}
    assert sizes["mix"] < 0.7 * sizes["ngram"], sizes


def test_the_benchmark_at_a_tiny_size(tmp_path):
    """`seqlab bench compress --limit`: every tool and mode round-trips, and the report names the
    models from their headers."""
    from seqlab.bench import compress as bench
    from seqlab.bench.common import result_path

    out = tmp_path / "compress"
    assert bench.main(["--files", "binary", "--modes", "ngram", "mix", "--limit", "6000", "--threads", "1",
                       "--out", str(out)]) == 0
    report = json.loads(result_path(str(out)).read_text())
    assert report["all_exact"] and report["files"][0]["bytes"] == 6000
    text = out.with_suffix(".md").read_text()
    assert "6-gram (kneser_ney" in text and "8-gram + a match model (min 10 bytes)" in text
    assert "first 6,000 bytes only" in text


def test_the_integer_tables_are_the_ones_files_were_written_with():
    """LN and EXP are rounded to integers from float logarithms once per process; a machine
    whose libm rounded one of them across a half would code differently. These checksums
    are the tables every .sqz of mixing.py's version was written with."""
    import hashlib
    assert hashlib.sha256(LN.tobytes()).hexdigest()[:16] == "bfac7b51147eadb0"
    assert hashlib.sha256(EXP.tobytes()).hexdigest()[:16] == "d8638e2373faa93e"
