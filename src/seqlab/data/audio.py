"""Sound in and out: WAV files, resampling, and the `speech` corpus, synthesised here with
Debian's espeak-ng (a stand-in for VCTK: synthetic speech, named as such).

The corpus: verses of the King James Bible (the English side of the `en-es` pairs), each
read by one of four espeak-ng voices that differ in accent, sex, pitch and speed, so that
every voice reads its own sentences. Per voice, its sentences are split 80 / 10 / 10 %
into train / valid / test, so held-out sentences are ones no voice was trained on. Each
utterance is synthesised at espeak's 22,050 Hz, resampled to 8 kHz (an FFT low-pass: the
spectrum above 4 kHz is cut), trimmed of leading and trailing silence and scaled to a peak
of 0.9; stored as 16-bit samples. (WaveNet reads them as 8-bit mu-law: tasks/speech.py.)

Cache: $SEQLAB_DATA/speech/: samples.npy (int16, every utterance end to end), lengths.npy,
speakers.npy, splits.npy (0 train, 1 valid, 2 test), manifest.json (voices, the sentences,
the espeak-ng version).
"""
from __future__ import annotations

import io
import shutil
import subprocess
import wave
from pathlib import Path

import numpy as np

from seqlab import SeqlabError
from seqlab.data.arrays import ArrayDataset, add
from seqlab.io import read_input, writing
from seqlab.registry import get

RATE = 8000
SPLITS = ("train", "valid", "test")
# name -> (espeak-ng voice+variant, words per minute, pitch 0-99): four readers who sound apart
VOICES = {"alan": ("en-gb", 150, 35), "beth": ("en-us+f3", 165, 60),
          "carl": ("en-gb-scotland+m3", 140, 25), "dana": ("en-029+f2", 175, 70)}
SENTENCES_PER_VOICE = 150
WORDS = (6, 16)                                          # verses of 6 to 16 words
INSTALL_ESPEAK = "apt-get install espeak-ng (as root; `make speech` does it)"
RESAMPLE_HINT = "convert it, e.g. sox IN.wav -r {rate} -c 1 -b 16 OUT.wav"


MAX_WAV_BYTES = 1 << 30          # 1 GiB: 18 hours of 8 kHz speech; a larger "WAV" is refused, not read


def read_wav(path: str | Path, rate: int | None = RATE, mono: bool = False,
             max_bytes: int = MAX_WAV_BYTES) -> tuple[np.ndarray, int]:
    """(float32 samples in [-1, 1], rate) of a mono 8- or 16-bit PCM WAV (`mono`: of any channel
    count, averaged); a one-line SeqlabError for anything else (not a regular file, over
    `max_bytes`, a damaged header), or for another rate than `rate` (None: any rate)."""
    path = Path(path)
    raw = read_input(path, max_bytes=max_bytes, what="WAV file")
    if not raw:
        raise SeqlabError(f"{path}: an empty file, not a WAV file")
    try:
        with wave.open(io.BytesIO(raw), "rb") as w:
            channels, width, got, frames = w.getnchannels(), w.getsampwidth(), w.getframerate(), w.getnframes()
            data = w.readframes(min(frames, len(raw)))
    except Exception as e:            # wave raises Error, EOFError, struct.error, ValueError ... on damage
        why = str(e) or type(e).__name__
        raise SeqlabError(f"{path}: not a PCM WAV file ({why}); {RESAMPLE_HINT.format(rate=rate or RATE)}") from None
    if channels < 1 or (channels != 1 and not mono) or width not in (1, 2):
        raise SeqlabError(f"{path}: {channels} channel(s) of {8 * width}-bit samples; seqlab reads mono 8- or "
                          f"16-bit PCM: {RESAMPLE_HINT.format(rate=rate or got or RATE)}")
    if got <= 0:
        raise SeqlabError(f"{path}: its header gives a sample rate of {got}; the file is damaged")
    if rate is not None and got != rate:
        raise SeqlabError(f"{path}: {got:,} Hz, not {rate:,} Hz; {RESAMPLE_HINT.format(rate=rate)}")
    data = data[:len(data) - len(data) % (width * channels)]          # a cut-off last frame is dropped
    if width == 1:
        samples = (np.frombuffer(data, dtype=np.uint8).astype(np.float32) - 128) / 128
    else:
        samples = np.frombuffer(data, dtype="<i2").astype(np.float32) / 32768
    if channels > 1:
        samples = samples.reshape(-1, channels).mean(axis=1)
    return samples, got


def wav_bytes(samples: np.ndarray, rate: int = RATE) -> bytes:
    """Mono 16-bit PCM WAV of float samples in [-1, 1] (clipped)."""
    pcm = np.clip((np.asarray(samples, dtype=np.float64) * 32768).round(), -32768, 32767).astype("<i2")
    buffer = io.BytesIO()
    with wave.open(buffer, "wb") as w:
        w.setnchannels(1)
        w.setsampwidth(2)
        w.setframerate(rate)
        w.writeframes(pcm.tobytes())
    return buffer.getvalue()


def write_wav(path, samples: np.ndarray, rate: int = RATE) -> None:
    """`path`: a file name or a seqlab.io.Output (which refuses to replace a file)."""
    with writing(path) as tmp:
        tmp.write_bytes(wav_bytes(samples, rate))


def resample(x: np.ndarray, rate_in: int, rate_out: int) -> np.ndarray:
    """Band-limited resampling by the FFT: the spectrum is cut (or zero-padded) to the new
    Nyquist frequency and transformed back; exact for signals periodic in their length."""
    if rate_in == rate_out or len(x) == 0:
        return np.asarray(x, dtype=np.float32)
    n_out = max(1, round(len(x) * rate_out / rate_in))
    spectrum = np.fft.rfft(np.asarray(x, dtype=np.float64))
    kept = np.zeros(n_out // 2 + 1, dtype=complex)
    m = min(len(kept), len(spectrum))
    kept[:m] = spectrum[:m]
    return (np.fft.irfft(kept, n_out) * (n_out / len(x))).astype(np.float32)


def trim(x: np.ndarray, threshold: float = 0.02, margin: int = 400) -> np.ndarray:
    """Cut leading and trailing stretches quieter than `threshold`, keeping `margin` samples."""
    loud = np.flatnonzero(np.abs(x) > threshold)
    if len(loud) == 0:
        return x[:0]
    return x[max(loud[0] - margin, 0):loud[-1] + margin + 1]


def espeak(text: str, voice: str, speed: int, pitch: int) -> tuple[np.ndarray, int]:
    """espeak-ng reading `text`: (float samples, espeak's rate)."""
    if shutil.which("espeak-ng") is None:
        raise SeqlabError(f"espeak-ng is not installed: {INSTALL_ESPEAK}")
    done = subprocess.run(["espeak-ng", "-v", voice, "-s", str(speed), "-p", str(pitch), "--stdout", text],
                          capture_output=True, timeout=120)
    if done.returncode != 0 or not done.stdout:
        raise SeqlabError(f"espeak-ng -v {voice} failed: {done.stderr.decode(errors='replace').strip()[:200]}")
    with wave.open(io.BytesIO(done.stdout), "rb") as w:
        data, rate = w.readframes(w.getnframes()), w.getframerate()
    return np.frombuffer(data, dtype="<i2").astype(np.float32) / 32768, rate


def utterance(text: str, voice: str, speed: int, pitch: int, synthesize=espeak) -> np.ndarray:
    """One sentence read by one voice: 8 kHz, trimmed, peak 0.9, as int16."""
    samples, rate = synthesize(text, voice, speed, pitch)
    x = trim(resample(samples, rate, RATE))
    if len(x) < RATE // 4:
        raise SeqlabError(f"espeak-ng -v {voice} produced under 0.25 s of sound for {text[:40]!r}")
    x = 0.9 * x / np.abs(x).max()
    return (x * 32767).round().astype(np.int16)


def pick_sentences(verses: list[str], per_voice: int, voices: int, seed: int = 0) -> list[list[str]]:
    """Distinct verses of WORDS words, shuffled by `seed`, dealt to the voices: voice v reads
    [v::voices] of them, so no two voices read the same sentence."""
    seen, fit = set(), []
    for verse in verses:
        text = " ".join(verse.split())
        if WORDS[0] <= len(text.split()) <= WORDS[1] and text not in seen:
            seen.add(text)
            fit.append(text)
    need = per_voice * voices
    if len(fit) < need:
        raise SeqlabError(f"only {len(fit)} verses of {WORDS[0]}-{WORDS[1]} words; {need} are needed")
    order = np.random.default_rng(seed).permutation(len(fit))[:need]
    chosen = [fit[i] for i in order]
    return [chosen[v::voices] for v in range(voices)]


def split_codes(n: int) -> np.ndarray:
    """0 / 1 / 2 (train / valid / test) for a voice's n sentences: the last 10 % test, the 10 % before valid."""
    n_test = n_valid = max(1, n // 10)
    return np.array([0] * (n - n_valid - n_test) + [1] * n_valid + [2] * n_test, dtype=np.uint8)


def build_speech(verses: list[str], log, synthesize=espeak, per_voice: int = SENTENCES_PER_VOICE,
                 voices: dict = VOICES) -> tuple[dict, dict]:
    """The corpus's arrays and manifest from verses of text (see the module docstring)."""
    from tqdm import tqdm

    dealt = pick_sentences(verses, per_voice, len(voices))
    pieces, lengths, speakers, splits, sentences = [], [], [], [], []
    total = per_voice * len(voices)
    with tqdm(total=total, desc="speaking", unit="sentence", leave=False) as bar:
        for v, (name, (voice, speed, pitch)) in enumerate(voices.items()):
            codes = split_codes(len(dealt[v]))
            for text, code in zip(dealt[v], codes):
                x = utterance(text, voice, speed, pitch, synthesize)
                pieces.append(x)
                lengths.append(len(x))
                speakers.append(v)
                splits.append(code)
                sentences.append(text)
                bar.update()
    log(f"speech: {total} utterances, {sum(lengths) / RATE / 60:.1f} minutes at {RATE} Hz")
    arrays = {"samples": np.concatenate(pieces), "lengths": np.array(lengths, dtype=np.int64),
              "speakers": np.array(speakers, dtype=np.int64), "splits": np.array(splits, dtype=np.uint8)}
    version = subprocess.run(["espeak-ng", "--version"], capture_output=True, text=True).stdout.strip() \
        if shutil.which("espeak-ng") else "none"
    manifest = {"rate": RATE, "voices": {name: {"espeak": v[0], "speed": v[1], "pitch": v[2]}
                                         for name, v in voices.items()},
                "speaker_names": list(voices), "sentences": sentences, "synthesiser": version,
                "text": "King James Bible verses (the English side of seqlab's en-es pairs)",
                "split": "per voice, its sentences 80 / 10 / 10 % in order after a seeded shuffle"}
    return arrays, manifest


def _build(tmp: Path, log) -> tuple[dict, dict]:
    pairs = get("dataset", "en-es")                       # data/datasets.py, by name (it imports this module)
    if not pairs.is_ready():
        pairs.fetch(log=log)
    return build_speech([english for english, _ in pairs.load()], log)


def _decode(arrays: dict, manifest: dict) -> dict:
    """{"train" | "valid" | "test": [(int16 samples, speaker id)], "voices": [names], "rate": Hz}."""
    ends = np.cumsum(arrays["lengths"])
    pieces = np.split(arrays["samples"], ends[:-1])
    out: dict = {name: [] for name in SPLITS}
    for piece, speaker, code in zip(pieces, arrays["speakers"], arrays["splits"]):
        out[SPLITS[int(code)]].append((piece, int(speaker)))
    out["voices"], out["rate"] = manifest["speaker_names"], manifest["rate"]
    return out


SPEECH = add(ArrayDataset(
    name="speech",
    description="synthetic speech (a VCTK stand-in): KJV verses read by 4 espeak-ng voices, 8 kHz, "
                "split by sentence",
    size=f"{SENTENCES_PER_VOICE * len(VOICES)} utterances, about 40 minutes",
    licence="public domain text; espeak-ng output (GPL-3 synthesiser, output unrestricted)",
    how=f"espeak-ng reads verses of en-es (fetched first if needed); {INSTALL_ESPEAK}",
    build=_build,
    decode=_decode,
    summary=lambda d: ", ".join(f"{s} {len(d[s])} ({sum(len(x) for x, _ in d[s]) / RATE / 60:.1f} min)"
                                for s in SPLITS) + f"; voices {', '.join(d['voices'])}",
))


def load_speech() -> dict:
    return SPEECH.load()
