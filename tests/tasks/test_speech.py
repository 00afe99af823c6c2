"""task.name=speech and its data (data/audio.py) on generated sound: tone voices written into
the data cache as `seqlab data fetch speech` writes espeak-ng's (helpers.tone_speech)."""
from __future__ import annotations

import io
import json
import math
import wave

import numpy as np
import pytest
import torch
import torch.nn.functional as F

from seqlab import SeqlabError
from seqlab.cli import main
from seqlab.config import load_config
from seqlab.data import audio
from seqlab.training.engine import fit
from seqlab.training.runs import load_trained

from helpers import TONES, tone_speech, tone_voice

TINY = ["task=speech", "data=speech", "model=wavenet", "task.length=128", "train.batch_size=8",
        "model.embedding_size=16", "model.hidden_size=16", "model.num_layers=6", "model.kernel_size=2",
        "model.dropout=0", "train.lr=0.01", "train.progress=false", "train.threads=1", "train.eval_every=100",
        "train.max_epochs=0", "train.early_stop=0"]


def wav_file(path, channels=1, width=2, rate=8000, frames=800):
    with wave.open(str(path), "wb") as w:
        w.setnchannels(channels)
        w.setsampwidth(width)
        w.setframerate(rate)
        w.writeframes(b"\x00" * frames * channels * width)
    return path


def test_wav_round_trip(tmp_path):
    x = np.sin(np.linspace(0, 40, 1600)).astype(np.float32) * 0.8
    audio.write_wav(tmp_path / "x.wav", x)
    back, rate = audio.read_wav(tmp_path / "x.wav")
    assert rate == 8000 and np.abs(back - x).max() < 1 / 32000
    wav_file(tmp_path / "8bit.wav", width=1)
    assert audio.read_wav(tmp_path / "8bit.wav")[0].shape == (800,)


@pytest.mark.parametrize("case, fragment", [
    ("stereo", "2 channel(s)"), ("24bit", "24-bit"), ("rate", "16,000 Hz, not 8,000 Hz"),
    ("garbage", "not a PCM WAV"), ("missing", "no such file")])
def test_wav_refusals(tmp_path, case, fragment):
    path = tmp_path / "in.wav"
    if case == "stereo":
        wav_file(path, channels=2)
    elif case == "24bit":
        wav_file(path, width=3)
    elif case == "rate":
        wav_file(path, rate=16000)
    elif case == "garbage":
        path.write_bytes(b"ID3 this is an mp3, not a wav")
    with pytest.raises(SeqlabError) as e:
        audio.read_wav(path)
    assert fragment in str(e.value) and "\n" not in str(e.value)


def test_resample_keeps_a_band_limited_signal():
    # 0.5 s of a 440 Hz + 1,250 Hz sum (whole periods in the window): the FFT resampler is exact
    t_in, t_out = np.arange(11025) / 22050, np.arange(4000) / 8000
    signal = lambda t: 0.6 * np.sin(2 * np.pi * 440 * t) + 0.3 * np.cos(2 * np.pi * 1250 * t)   # noqa: E731
    assert np.abs(audio.resample(signal(t_in), 22050, 8000) - signal(t_out)).max() < 1e-4
    # and a tone above the new Nyquist frequency (5 kHz) is removed, not folded back
    assert np.abs(audio.resample(np.sin(2 * np.pi * 5000 * t_in), 22050, 8000)).max() < 1e-4


def test_sentences_are_dealt_without_repeats():
    verses = [f"word {'x ' * (i % 12)}number {i}" for i in range(400)] + ["too short"] * 10
    dealt = audio.pick_sentences(verses, per_voice=20, voices=4)
    flat = [s for voice in dealt for s in voice]
    assert [len(v) for v in dealt] == [20] * 4 and len(set(flat)) == 80
    assert all(audio.WORDS[0] <= len(s.split()) <= audio.WORDS[1] for s in flat)
    assert audio.split_codes(20).tolist() == [0] * 16 + [1] * 2 + [2] * 2
    with pytest.raises(SeqlabError, match="are needed"):
        audio.pick_sentences(verses[:30], per_voice=20, voices=4)


def test_corpus_from_tone_voices():
    tone_speech(per_voice=10)
    data = audio.load_speech()
    assert data["voices"] == list(audio.VOICES) and data["rate"] == 8000
    assert [len(data[s]) for s in ("train", "valid", "test")] == [32, 4, 4]
    for split in ("train", "valid", "test"):
        assert sorted({speaker for _, speaker in data[split]}) == [0, 1, 2, 3]
    x, _ = data["train"][0]
    assert x.dtype == np.int16 and abs(int(np.abs(x).max()) - round(0.9 * 32767)) <= 1
    # the tone survives resampling and trimming: its strongest frequency is the voice's
    voice_of = {i: TONES[v[0]] for i, v in enumerate(audio.VOICES.values())}
    for x, speaker in data["test"]:
        spectrum = np.abs(np.fft.rfft(x.astype(np.float64)))
        assert abs(np.argmax(spectrum) * 8000 / len(x) - voice_of[speaker]) < 5


def test_utterance_refuses_silence():
    with pytest.raises(SeqlabError, match="under 0.25 s"):
        audio.utterance("quiet", "en-gb", 150, 50, synthesize=lambda *a: (np.zeros(22050, np.float32), 22050))


@pytest.fixture(scope="module")
def trained(tmp_path_factory):
    import os
    cache = tmp_path_factory.mktemp("cache")
    before = os.environ.get("SEQLAB_DATA")
    os.environ["SEQLAB_DATA"] = str(cache)
    try:
        tone_speech(per_voice=10)
        run = tmp_path_factory.mktemp("runs") / "speech"
        torch.manual_seed(0)
        fit(load_config(None, TINY + ["train.max_steps=80"]), run, log=lambda m: None)
    finally:
        os.environ.pop("SEQLAB_DATA") if before is None else os.environ.__setitem__("SEQLAB_DATA", before)
    return run, cache


def test_batches_are_a_function_of_seed_epoch_and_index(trained, monkeypatch):
    run, cache = trained
    monkeypatch.setenv("SEQLAB_DATA", str(cache))
    _, task, model, _ = load_trained(run, "cpu")
    task.prepare(lambda m: None)
    a, b = task.train_batch(0, 3, torch.device("cpu")), task.train_batch(0, 3, torch.device("cpu"))
    assert torch.equal(a[0], b[0]) and torch.equal(a[1], b[1])
    assert a[0].shape == (8, model.receptive_field + 128) and not torch.equal(a[0], task.train_batch(0, 4, "cpu")[0])


def test_scoring_equals_the_queued_steps(trained, monkeypatch):
    """evaluate_with (one forward over a whole utterance) against the sample-by-sample queues of step()."""
    from seqlab.tasks.speech import SILENCE, Speaking
    run, cache = trained
    monkeypatch.setenv("SEQLAB_DATA", str(cache))
    _, task, model, _ = load_trained(run, "cpu")
    task.prepare(lambda m: None)
    ids, speaker = task.splits["test"][0]
    ids = ids[:300]
    with torch.no_grad():
        scored = task.evaluate_with(model, [(ids, speaker)], torch.device("cpu"))
        wavenet = Speaking(model, speaker)
        state = wavenet.init_state(1)
        # the silence before the utterance, then the utterance, one sample at a time
        for _ in range(model.receptive_field):
            logits, state = wavenet.step(torch.tensor([SILENCE]), state)
        nats = 0.0
        for i, target in enumerate(ids.tolist()):
            nats += F.cross_entropy(logits, torch.tensor([target])).item()
            logits, state = wavenet.step(ids[i:i + 1], state)
    assert scored["samples"] == 300
    assert scored["bits_per_sample"] == pytest.approx(nats / 300 / math.log(2), rel=1e-4)


def test_the_right_voice_costs_fewer_bits(trained, monkeypatch):
    run, cache = trained
    monkeypatch.setenv("SEQLAB_DATA", str(cache))
    _, task, model, _ = load_trained(run, "cpu")
    task.prepare(lambda m: None)
    with torch.no_grad():
        for voice in range(4):
            own = [u for u in task.splits["test"] if u[1] == voice]
            right = task.evaluate_with(model, own, torch.device("cpu"))["bits_per_sample"]
            wrong = min(task.evaluate_with(model, own, torch.device("cpu"), speaker=other)["bits_per_sample"]
                        for other in range(4) if other != voice)
            assert right < wrong < 8.0, (voice, right, wrong)


def run_cli(capsys, *argv):
    code = main([str(a) for a in argv])
    out, err = capsys.readouterr()
    return code, out, err


def test_sample_speech_writes_a_wav(trained, tmp_path, capsys, monkeypatch):
    run, cache = trained
    monkeypatch.setenv("SEQLAB_DATA", str(cache))
    out = tmp_path / "beth.wav"
    code, printed, _ = run_cli(capsys, "sample", run, "--condition", "beth", "--seconds", "0.1", "--seed", "1", "-o", out)
    assert code == 0 and "0.10 s" in printed
    samples, rate = audio.read_wav(out)
    assert rate == 8000 and len(samples) == 800
    again = tmp_path / "again.wav"
    run_cli(capsys, "sample", run, "--condition", "beth", "--seconds", "0.1", "--seed", "1", "-o", again)
    assert again.read_bytes() == out.read_bytes()


@pytest.mark.parametrize("argv, fragment", [
    (["--condition", "zoe", "-o", "x.wav"], "must name a voice: alan, beth, carl, dana"),
    (["-o", "x.wav"], "give --condition"),
    (["--condition", "beth", "-o", "x.txt"], "give the file, e.g. -o speech.wav"),
    (["--condition", "beth", "--prime", "a", "-o", "x.wav"], "--prime applies to text"),
    (["--condition", "beth", "--seconds", "0", "-o", "x.wav"], "--seconds must be above 0"),
])
def test_sample_speech_refusals(trained, tmp_path, capsys, monkeypatch, argv, fragment):
    run, cache = trained
    monkeypatch.setenv("SEQLAB_DATA", str(cache))
    monkeypatch.chdir(tmp_path)
    code, _, err = run_cli(capsys, "sample", run, *argv)
    lines = [line for line in err.splitlines() if line.strip()]
    assert code != 0 and "Traceback" not in err and len(lines) == 1 and fragment in lines[0], err
    assert not list(tmp_path.glob("*.wav"))


def test_missing_espeak_is_one_line(monkeypatch):
    monkeypatch.setattr("shutil.which", lambda name: None)
    with pytest.raises(SeqlabError, match="apt-get install espeak-ng"):
        audio.espeak("hello", "en-gb", 150, 50)


def test_speech_bench_report(tmp_path, capsys):
    """`seqlab bench speech` at a tiny size on tone voices: the report's rows, files and commands."""
    from seqlab.bench import speech

    tone_speech(per_voice=10)
    out = tmp_path / "bench" / "speech"
    size = ["model.embedding_size=8", "model.hidden_size=8", "model.skip_channels=8", "model.num_layers=4",
            "model.dilation_cycle=2", "model.kernel_size=2", "model.dropout=0"]
    original, speech.WAVENET = speech.WAVENET, size
    try:
        assert speech.main(["--steps", "3", "--batch-size", "2", "--window", "64", "--orders", "1", "2",
                            "--seconds", "0.05", "--queue-samples", "20", "--recompute-samples", "3", "--repeats", "1",
                            "--threads", "1", "--runs", str(tmp_path / "runs"), "--out", str(out)]) == 0
    finally:
        speech.WAVENET = original
    report = json.loads((tmp_path / "bench" / "results" / "speech.json").read_text())
    assert [r["voice"] for r in report["rows"]] == list(audio.VOICES)
    assert all(len(r["wrong"]) == 3 and r["lowest_wrong"] == min(r["wrong"].values()) for r in report["rows"])
    assert report["ngram_order"] in (1, 2) and report["speed"]["speedup"] > 0
    assert len(report["gallery"]["files"]) == 8 and (tmp_path / "bench" / "speech_spectrograms.png").is_file()
    assert audio.read_wav(out / "beth-generated.wav")[0].shape == (400,)
    assert "right < every wrong" in (tmp_path / "bench" / "speech.md").read_text()
