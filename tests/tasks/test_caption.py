"""Captioning (tasks/caption.py, models/captioner.py, data/scenes.py) on generated scenes only:
captions say what the scene holds, the generator is deterministic, padding never changes a
caption's score, beam 1 is greedy, a trained captioner ignores faint pixel noise, and bad
images or requests are refused in one line."""
import struct
import zlib

import numpy as np
import pytest
import torch
from PIL import Image

from seqlab.cli import main
from seqlab.config import ModelConfig
from seqlab.data import scenes
from seqlab.decode import seq2seq as decode
from seqlab.models.captioner import Captioner, doubly_stochastic
from seqlab.tokens import BOS, EOS, PAD

import seqlab


def test_captions_read_columns_left_to_right_and_stack_top_to_bottom():
    assert scenes.caption({(0, 0): 3, (1, 0): 7, (1, 1): 1}) == "three above seven , then one".split()
    assert scenes.caption({(1, 2): 0}) == ["zero"]
    assert scenes.caption({(0, 2): 5, (0, 0): 2, (1, 1): 4}) == "two , then four , then five".split()


def test_scenes_are_deterministic_per_seed_and_name_the_digits_they_hold():
    digits, labels = scenes.glyphs(50, seed=0)
    a = scenes.compose(digits, labels, 30, seed=7)
    b = scenes.compose(digits, labels, 30, seed=7)
    c = scenes.compose(digits, labels, 30, seed=8)
    assert np.array_equal(a.images, b.images) and a.captions == b.captions
    assert not np.array_equal(a.images, c.images)
    for image, words, n in zip(a.images, a.captions, a.digits):
        assert sum(w in scenes.NAMES for w in words) == n and 1 <= n <= scenes.MAX_DIGITS
        assert image.shape == (scenes.HEIGHT, scenes.WIDTH) and image.dtype == np.uint8
        # ink in as many cells as there are digits (each digit stays inside its own cell)
        cells = image.reshape(scenes.ROWS, scenes.CELL, scenes.COLUMNS, scenes.CELL).max(axis=(1, 3))
        assert (cells > 0).sum() == n


def test_split_digits_come_from_their_own_source():
    from seqlab.tasks.caption import digit_source
    train, _ = digit_source("segments", "train")
    test, _ = digit_source("segments", "test")
    assert not any((test[:200, None] == train[None, :500]).all(axis=(2, 3)).any(1))   # no test glyph is a training one


def tiny_model(attention="bahdanau", seed=0):
    torch.manual_seed(seed)
    cfg = ModelConfig(name="lstm", embedding_size=8, hidden_size=16, dropout=0.0, channels=16)
    return Captioner(cfg, len(scenes.WORDS) + 4, attention=attention).eval()


def images(n, seed=0):
    made = scenes.compose(*scenes.glyphs(40, seed), n, seed=seed)
    return torch.from_numpy(made.images).float().div(255)[:, None]


@pytest.mark.parametrize("attention", ["none", "bahdanau"])
def test_padding_never_changes_a_captions_score(attention):
    model, x = tiny_model(attention), images(2)
    short = torch.tensor([[5, 6, EOS]])
    long = torch.tensor([[7, 8, 9, 10, 11, EOS]])
    padded = torch.tensor([[5, 6, EOS, PAD, PAD, PAD], [7, 8, 9, 10, 11, EOS]])
    together = model.score(x, padded)
    alone = torch.cat([model.score(x[:1], short), model.score(x[1:], long)])
    assert torch.allclose(together, alone, atol=1e-5)
    # and the attention penalty sees only the real words
    _, weights = model(x, torch.cat([torch.full((2, 1), BOS), padded[:, :-1]], 1))
    pen_padded = doubly_stochastic(weights, padded)
    _, w_short = model(x[:1], torch.tensor([[BOS, 5, 6]]))
    assert torch.allclose(pen_padded[0], doubly_stochastic(w_short, short)[0], atol=1e-6)


@pytest.mark.parametrize("attention", ["none", "bahdanau"])
def test_beam_one_is_greedy_and_a_wider_beam_scores_at_least_as_well(attention):
    model, x = tiny_model(attention, seed=3), images(6, seed=1)
    ones = torch.ones(6, dtype=torch.long)
    greedy = decode.greedy(model, x, ones, 12)
    beam1 = decode.beam_search(model, x, ones, 1, 12, alpha=0.0)
    beam5 = decode.beam_search(model, x, ones, 5, 12, alpha=0.0)
    for b in range(6):
        assert beam1[b][0].tokens == greedy[b]
        assert beam5[b][0].logprob >= beam1[b][0].logprob - 1e-5
        # a hypothesis's logprob is the model's score of its tokens
        tokens = torch.tensor([beam5[b][0].tokens])
        assert abs(float(model.score(x[b:b + 1], tokens)) - beam5[b][0].logprob) < 1e-4


@pytest.fixture(scope="module")
def run_dir(tmp_path_factory):
    """A caption run trained for a few updates: enough for the command line's checks."""
    out = tmp_path_factory.mktemp("caption") / "run"
    torch.set_num_threads(1)
    seqlab.train(["task=caption", "data=segments", "model=lstm", "task.train_examples=64", "task.test_examples=16",
                  "model.hidden_size=16", "model.embedding_size=8", "model.channels=8", "model.dropout=0",
                  "train.batch_size=16", "train.max_steps=4", "train.eval_every=2", "train.threads=1",
                  "train.progress=false"], out=out)
    return out


@pytest.fixture(scope="module")
def trained(tmp_path_factory):
    """A small captioner trained on glyph scenes until it reads a good share of them (~2 min)."""
    out = tmp_path_factory.mktemp("caption-trained") / "run"
    torch.set_num_threads(2)
    seqlab.train(["task=caption", "data=segments", "model=lstm", "task.train_examples=4000", "task.test_examples=100",
                  "model.hidden_size=64", "model.embedding_size=32", "model.channels=32", "model.dropout=0",
                  "train.batch_size=32", "train.max_steps=2000", "train.eval_every=500", "train.lr=0.003",
                  "train.schedule=constant", "train.early_stop=0", "train.max_epochs=0", "train.threads=2",
                  "train.progress=false"], out=out)
    return out


@pytest.mark.slow
def test_a_trained_captioner_ignores_faint_pixel_noise(trained):
    run = seqlab.load(trained, "cpu")
    made = scenes.compose(*scenes.glyphs(500, seed=99), 60, seed=99)
    clean = run.caption(list(made.images), beam=1)
    right = [i for i, r in enumerate(clean) if r["caption"].split() == made.captions[i]]
    assert len(right) >= 20, f"the test model reads only {len(right)} of 60 scenes"
    rng = np.random.default_rng(0)
    # the digits' pixels (the ink) jittered by up to 3 grey levels of 255 (~1 %); the ground stays black
    noisy = [np.where(made.images[i] > 0, np.clip(made.images[i].astype(int) + rng.integers(-3, 4, made.images[i].shape),
                                                  0, 255), 0).astype(np.uint8) for i in right]
    assert [r["caption"] for r in run.caption(noisy, beam=1)] == [clean[i]["caption"] for i in right]


def test_caption_command_reads_any_image_format_the_same_and_draws_attention(run_dir, tmp_path, capsys):
    """The same scene as a grey PNG, as a 3x larger RGBA PNG with a transparent border, and as
    dark ink on white RGB: the model sees the same pixels, so it writes the same caption."""
    made = scenes.compose(*scenes.glyphs(50, seed=5), 1, seed=5)
    grey = tmp_path / "grey.png"
    scenes.write_image(grey, made.images[0])
    big = np.kron(made.images[0], np.ones((3, 3), np.uint8))
    rgba = np.stack([big, big, big, np.full_like(big, 255)], -1)
    rgba[:2, :, 3] = 0                            # transparent over black: still black
    Image.fromarray(rgba).save(tmp_path / "rgba.png")
    Image.fromarray(np.stack([255 - made.images[0]] * 3, -1)).save(tmp_path / "light.png")
    picture = tmp_path / "looked.png"
    assert main(["caption", str(run_dir), "--image", str(grey), "--image", str(tmp_path / "rgba.png"),
                 "--image", str(tmp_path / "light.png"), "--beam", "3", "--attention", str(picture)]) == 0
    lines = capsys.readouterr().out.splitlines()
    assert len(lines) == 3 and lines[1] == lines[0] and lines[2] == lines[0]
    assert picture.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    for path in (grey, tmp_path / "rgba.png", tmp_path / "light.png"):
        assert np.array_equal(scenes.read_image(path), made.images[0])


def huge_png(path, side=10_000):
    """A valid PNG header claiming side x side pixels (the data is never reached)."""
    def chunk(kind, data):
        return struct.pack(">I", len(data)) + kind + data + struct.pack(">I", zlib.crc32(kind + data) & 0xFFFFFFFF)
    path.write_bytes(b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", struct.pack(">IIBBBBB", side, side, 8, 0, 0, 0, 0))
                     + chunk(b"IDAT", zlib.compress(b"\x00" * 100)) + chunk(b"IEND", b""))


@pytest.mark.parametrize("case", ["not an image", "empty", "huge", "missing", "sample"])
def test_bad_images_and_requests_are_one_line(run_dir, tmp_path, capsys, case):
    path = tmp_path / "input.png"
    if case == "not an image":
        path.write_text("hello, I am text\n")
    elif case == "empty":
        path.write_bytes(b"")
    elif case == "huge":
        huge_png(path)
    argv = ["caption", str(run_dir), "--image", str(path)] if case != "sample" else ["sample", str(run_dir)]
    out = tmp_path / "looked.png"
    assert main(argv + (["--attention", str(out)] if case != "sample" else [])) != 0
    err = capsys.readouterr().err.strip()
    assert len(err.splitlines()) == 1 and "Traceback" not in err, err
    assert not out.exists()
    expected = {"not an image": "not an image", "empty": "is empty", "huge": "10,000 x 10,000",
                "missing": "no such file", "sample": "seqlab caption"}[case]
    assert expected in err, err


def test_the_preset_is_a_valid_caption_config():
    from pathlib import Path

    from seqlab.config import load_config
    from seqlab.registry import get
    cfg = load_config(Path(__file__).parents[2] / "configs" / "caption.toml")
    task = get("task", "caption")
    task.validate(cfg)
    task.check_options(cfg)
    assert cfg.task.attention == "bahdanau" and cfg.model.channels == 64


def test_caption_bench_report(tmp_path):
    """`seqlab bench caption` at a tiny size on glyph scenes: both models, equal parameter counts
    (within 2 %), beam 1 and 5 scores, the attention figure and its command."""
    import json

    from seqlab.bench import caption

    out = tmp_path / "bench" / "caption"
    assert caption.main(["--data", "segments", "--steps", "3", "--batch-size", "8", "--hidden", "96",
                         "--train-examples", "32", "--test-examples", "8", "--eval-every", "3", "--threads", "1",
                         "--runs", str(tmp_path / "runs"), "--out", str(out)]) == 0
    report = json.loads((tmp_path / "bench" / "results" / "caption.json").read_text())
    plain, attending = report["results"]
    assert plain["attention"] == "none" and attending["attention"] == "bahdanau"
    # the plain model's LSTM is the size whose count is nearest the attending model's (a step of 2
    # units moves it by ~2 % at this tiny size; the bench's own size lands within 1 %)
    gap = abs(plain["parameters"] - attending["parameters"])
    assert gap <= 0.03 * attending["parameters"]
    assert {"bleu", "bleu1", "sequence_accuracy"} <= set(plain["beam1"]) and "bleu" in attending["beam5"]
    assert (tmp_path / "bench" / "caption_attention.png").is_file() and "seqlab caption" in report["figure"]["command"]
    assert "Show, Attend and Tell" in (tmp_path / "bench" / "caption.md").read_text()


def test_training_with_the_plateau_schedule_says_what_it_risks(tmp_path):
    from seqlab.config import load_config
    from seqlab.training.engine import fit

    said = []
    base = ["task=caption", "data=segments", "task.train_examples=16", "task.test_examples=8", "train.batch_size=8",
            "model.hidden_size=16", "model.embedding_size=8", "model.channels=8", "train.max_steps=1",
            "train.progress=false", "train.threads=1"]
    fit(load_config(None, base), tmp_path / "a", log=said.append)
    assert any("train.schedule=plateau can lower the learning rate" in m for m in said)
    said.clear()
    fit(load_config(None, base + ["train.schedule=cosine"]), tmp_path / "b", log=said.append)
    assert not any("plateau can lower" in m for m in said)
