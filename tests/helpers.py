"""Helpers several test modules share: small generated data files, option lists, a hang guard."""
from __future__ import annotations

import random
import signal
from contextlib import contextmanager

import numpy as np

# a tiny language-model run
T = ["model.hidden_size=16", "model.num_layers=1", "model.embedding_size=8", "train.max_steps=5", "train.batch_size=4",
     "train.bptt_steps=16", "train.eval_every=5", "train.progress=false"]


@contextmanager
def time_limit(seconds: int):
    """A hang fails the test instead of stalling the suite."""
    def expire(signum, frame):
        raise TimeoutError(f"still running after {seconds} s")
    previous = signal.signal(signal.SIGALRM, expire)
    signal.alarm(seconds)
    try:
        yield
    finally:
        signal.alarm(0)
        signal.signal(signal.SIGALRM, previous)


def sentiment_file(path, n=400, seed=0):
    """Labels decided by one cue word among fillers: learnable in a few dozen updates."""
    rng = random.Random(seed)
    cues = {"pos": ["good", "great", "superb"], "neg": ["bad", "awful", "dull"]}
    filler = ["the", "film", "was", "a", "plot", "very", "and", "really"]
    with open(path, "w", encoding="utf-8") as f:
        for _ in range(n):
            label = rng.choice(["pos", "neg"])
            words = [rng.choice(filler) for _ in range(rng.randint(2, 9))]
            words.insert(rng.randint(0, len(words)), rng.choice(cues[label]))
            f.write(f"{label}\t{' '.join(words)}\n")
    return path


def tagged_file(path, n=300, seed=0):
    rng = random.Random(seed)
    lex = {"DT": ["the", "a"], "NN": ["dog", "cat", "boat"], "VB": ["saw", "likes"], "JJ": ["old", "red"]}
    with open(path, "w", encoding="utf-8") as f:
        for _ in range(n):
            tags = ["DT", "JJ", "NN", "VB", "DT", "NN"][: rng.randint(4, 6)]
            f.write(" ".join(f"{rng.choice(lex[t])}/{t}" for t in tags) + " ./.\n")
    return path


def seasonal_csv(path, n=120, period=12, seed=0):
    rng = np.random.default_rng(seed)
    t = np.arange(n)
    values = 50 + 0.3 * t + 10 * np.sin(2 * np.pi * t / period) + rng.normal(0, 0.5, n)
    path.write_text("value\n" + "\n".join(f"{v:.4f}" for v in values) + "\n")
    return path


TONES = {"en-gb": 180.0, "en-us+f3": 330.0, "en-gb-scotland+m3": 120.0, "en-029+f2": 440.0}


def tone_voice(text: str, voice: str, speed: int, pitch: int, rate: int = 22050):
    """A stand-in for espeak-ng: each voice a tone of its own pitch with two harmonics, as long
    as the text is (0.02 s a character), with a little noise and a second of silence around it."""
    rng = np.random.default_rng(len(text))
    t = np.arange(int(rate * 0.02 * len(text))) / rate
    f = TONES[voice]
    tone = 0.5 * np.sin(2 * np.pi * f * t) + 0.2 * np.sin(4 * np.pi * f * t) + 0.1 * np.sin(6 * np.pi * f * t)
    tone = tone * np.minimum(1, np.minimum(t, t[-1] - t) * 20) + 0.01 * rng.standard_normal(len(t))
    silence = np.zeros(rate // 2)
    return np.concatenate([silence, tone, silence]).astype(np.float32), rate


def tone_speech(per_voice: int = 10, seed: int = 0) -> None:
    """Write a `speech` corpus of tone voices into the data cache ($SEQLAB_DATA), as `seqlab data
    fetch speech` would write the espeak-ng one."""
    import dataclasses

    from seqlab.data import audio

    rng = random.Random(seed)
    words = ["and", "the", "lord", "said", "unto", "them", "go", "ye", "into", "land", "of", "light"]
    verses = [" ".join(rng.choice(words) for _ in range(rng.randint(6, 10))) + f" {i}" for i in range(200)]
    build = lambda tmp, log: audio.build_speech(verses, log, synthesize=tone_voice, per_voice=per_voice)  # noqa: E731
    dataclasses.replace(audio.SPEECH, build=build).fetch(log=lambda m: None)
