"""The task verbs of a loaded Run (run.py): classify, tag, translate, attention, caption, forecast, speak. Each takes the Run and
returns plain Python and NumPy values."""
from __future__ import annotations

import math
from pathlib import Path
from typing import Any, Callable

import numpy as np
import torch

from seqlab import SeqlabError
from seqlab.api import arguments
from seqlab.api.arguments import check_sampling, plain
from seqlab.data.audio import RATE
from seqlab.data.scenes import HEIGHT, WIDTH, read_image
from seqlab.data.sequences import seq2seq_batch
from seqlab.data.vocab import BOS
from seqlab.decode.sampling import generate
from seqlab.models.captioner import grid_of
from seqlab.tasks.base import words
from seqlab.tasks.caption import image_tensor
from seqlab.tasks.forecast import forecast_future
from seqlab.tasks.speech import LEVELS, SILENCE, Speaking
from seqlab.models.wavenet import mu_law_decode

Run = Any          # a seqlab.api.run.Run: it imports this module, so this one names it only


def sentences_of(given: str | list, what: str = "texts") -> list:
    """A single string or a list of them, none empty."""
    items = [given] if isinstance(given, str) else list(given)
    if not items:
        raise SeqlabError(f"{what}: give at least one sentence")
    for item in items:
        if isinstance(item, str) and not item.strip():
            raise SeqlabError(f"{what}: an empty sentence; give some words, e.g. 'the cat sat'")
    return items


def classify(run: Run, texts: str | list[str]) -> list[dict[str, Any]]:
    task, items = run._task, sentences_of(texts)
    with torch.no_grad():
        out = task.predict(run.model, [(task.encode_text(s), 0) for s in items], run.device)
    unknown = [task.unknown_words(s) for s in items]
    if task.regression:
        return [{"score": float(row), "unknown": u} for row, u in zip(out, unknown)]
    return [{"label": task.labels[int(row.argmax())], "probability": float(row.max()), "unknown": u}
            for row, u in zip(out, unknown)]


def tag(run: Run, sentences) -> list[dict[str, list[str]]]:
    task = run._task
    tokens = [[str(t) for t in s] if not isinstance(s, str) else s.split() if " " in s.strip() else words(s)
              for s in sentences_of(sentences, "sentences")]
    if any(not t for t in tokens):
        raise SeqlabError("sentences: an empty list of tokens")
    with torch.no_grad():
        tags = task.predict(run.model, [task.encode_words(t) for t in tokens], run.device)
    return [{"tokens": t, "tags": [task.tags[i] for i in ids], "unknown": task.unknown_words(t)}
            for t, ids in zip(tokens, tags)]


def _beam_and_alpha(run: Run, beam: int | None, alpha: float | None) -> tuple[int, float]:
    cfg, task = run._cfg, run._task
    beam = beam or cfg.task.beam_size
    alpha = cfg.task.length_penalty if alpha is None else alpha
    if beam < 1:
        raise SeqlabError(f"beam must be 1 or more, got {beam}")
    if not math.isfinite(alpha):
        raise SeqlabError(f"alpha must be a finite number, got {alpha}")
    if beam > len(task.tgt_vocab):
        raise SeqlabError(f"beam {beam} is wider than the target vocabulary ({len(task.tgt_vocab)} tokens); "
                          f"use at most {len(task.tgt_vocab)} (5 to 10 is usual)")
    return beam, alpha


def _translate_ids(run: Run, items: list[str], beam: int | None, alpha: float | None):
    beam, alpha = _beam_and_alpha(run, beam, alpha)
    sources = [run._task.encode_text(s) for s in items]
    with torch.no_grad():
        return sources, run._task.translate(run.model, sources, run.device, beam, alpha)


def translate(run: Run, sentences, beam: int | None, alpha: float | None) -> list[str]:
    _, outputs = _translate_ids(run, sentences_of(sentences, "sentences"), beam, alpha)
    return [run._task.tgt_vocab.decode(ids) for ids in outputs]


def attention(run: Run, sentence: str, beam: int | None) -> dict[str, Any]:
    task = run._task
    sources, outputs = _translate_ids(run, sentences_of(sentence, "sentence")[:1], beam, None)
    src, lengths, tgt_in, _ = seq2seq_batch([(sources[0], outputs[0])], run.device)
    with torch.no_grad():
        _, weights = run.model(src, lengths, tgt_in)                                 # (1, U, S)
    return {"weights": weights[0].cpu().numpy(), "source": [task.src_vocab.itos[i] for i in sources[0]],
            "target": [task.tgt_vocab.itos[i] for i in outputs[0]] + ["<eos>"],
            "translation": task.tgt_vocab.decode(outputs[0])}


def forecast(run: Run, steps: int) -> np.ndarray:
    if not isinstance(steps, int) or steps <= 0:
        raise SeqlabError(f"steps must be a whole number greater than 0, got {steps}")
    return forecast_future(run.path, steps)[1]


def caption(run: Run, images, beam: int | None, alpha: float | None) -> list[dict[str, Any]]:
    """Each image's caption, its words and the attention behind each word (zeros without)."""
    task = run._task
    items = [images] if isinstance(images, (str, Path)) or (isinstance(images, np.ndarray) and images.ndim == 2) \
        else list(images)
    if not items:
        raise SeqlabError("images: give at least one image (a path, or a (64, 96) uint8 array)")
    arrays = np.stack([read_image(i) if isinstance(i, (str, Path)) else scene_array(i) for i in items])
    beam, alpha = _beam_and_alpha(run, beam, alpha)
    results = []
    with torch.no_grad():
        outputs = task.caption(run.model, arrays, run.device, beam, alpha)
        for image, ids in zip(arrays, outputs):
            tgt_in = torch.tensor([[BOS, *ids]], device=run.device)
            _, weights = run.model(image_tensor(image[None], run.device), tgt_in)       # (1, U + 1, R)
            results.append({"caption": task.vocab.decode(ids), "words": [task.vocab.itos[i] for i in ids],
                            "attention": weights[0, :len(ids)].cpu().numpy(), "grid": grid_of(*image.shape),
                            "image": image})
    return results


def check_speaking(run: Run, voice: str | None, seconds: float) -> int | None:
    """The speaker id to speak in (None: a model without speakers), or a one-line refusal."""
    task, conditioned = run._task, run._cfg.task.speaker
    if conditioned and voice not in task.voices:
        raise SeqlabError(f"--condition must name a voice: {', '.join(task.voices)}; got {voice!r}"
                          if voice else f"this WaveNet speaks in a chosen voice: give --condition, one of "
                                        f"{', '.join(task.voices)}")
    if not conditioned and voice:
        raise SeqlabError("this WaveNet was trained without speakers (task.speaker=false); drop --condition")
    if not 0 < seconds <= 600:
        raise SeqlabError(f"--seconds must be above 0 and at most 600, got {seconds}")
    return task.voices.index(voice) if conditioned else None


def speak(run: Run, voice: str | None, seconds: float, temperature: float, top_k: int, top_p: float,
          generator, progress: Callable[[int], None] | None = None) -> np.ndarray:
    """`seconds` of speech in `voice` (float samples at 8 kHz), drawn sample by sample."""
    wavenet = Speaking(run.model, check_speaking(run, voice, seconds)).eval()
    ids = []
    for token in generate(wavenet, [SILENCE], round(seconds * RATE), temperature=temperature, top_k=top_k,
                          top_p=top_p, generator=generator):
        ids.append(token)
        if progress is not None and len(ids) % 400 == 0:
            progress(400)
    return mu_law_decode(torch.tensor(ids), LEVELS).numpy()


def scene_array(image) -> np.ndarray:
    a = np.asarray(image)
    if a.shape != (HEIGHT, WIDTH):
        raise SeqlabError(f"an image array must be ({HEIGHT}, {WIDTH}) like the scenes; got {a.shape} "
                          f"(give a file path to have it scaled)")
    return (np.clip(a, 0, 1) * 255).round().astype(np.uint8) if a.dtype.kind == "f" else a.astype(np.uint8)


class TaskVerbs:
    """The built-in task verbs as methods of seqlab.Run (which this is mixed into): each refuses
    a run whose task does not offer it, then calls the function of the same name above."""

    def classify(self, texts: str | list[str]) -> list[dict[str, Any]]:
        """Each text's label and its probability ({"label", "probability"}), or {"score"} for a
        regression run."""
        self._need("classify", "classify")
        return classify(self, texts)

    def tag(self, sentences: str | list[str] | list[list[str]]) -> list[dict[str, list[str]]]:
        """Each sentence's tokens and their tags ({"tokens", "tags"}); a sentence is a string
        (split on spaces, or into words) or a list of tokens."""
        self._need("tag", "tag")
        return tag(self, sentences)

    def translate(self, sentences: str | list[str], *, beam: int | None = None,
                  alpha: float | None = None) -> list[str]:
        """Each sentence translated by beam search (beam=1: greedy; default: the run's own width
        and length penalty)."""
        self._need("translate", "translate")
        return translate(self, sentences, beam, alpha)

    def attention(self, sentence: str, *, beam: int | None = None) -> dict[str, Any]:
        """The attention weights of one translation: {"weights": (target + 1, source) array,
        "source": tokens, "target": tokens + ['<eos>'], "translation": text}."""
        self._need("attention", "attention")
        return attention(self, sentence, beam)

    def caption(self, images, *, beam: int | None = None, alpha: float | None = None) -> list[dict[str, Any]]:
        """Each image's caption (a path to any image Pillow reads, or a (64, 96) array like the
        scenes): {"caption", "words", "attention": (words, regions) array, "grid": (rows, columns),
        "image": the (64, 96) uint8 the model saw}. Beam search as translate's."""
        self._need("caption", "caption")
        return caption(self, images, beam, alpha)

    def speak(self, voice: str | None = None, seconds: float = 1.0, *, temperature: float = 1.0, top_k: int = 0,
              top_p: float = 1.0, seed: int | None = None, progress: Callable[[int], None] | None = None) -> np.ndarray:
        """A task.name=speech run's WaveNet speaking for `seconds` in `voice` (one of its voices;
        None for a model trained without speakers): float samples in [-1, 1] at 8 kHz, drawn one
        at a time through the per-layer queues."""
        self._need("speaking", "speak")
        check_sampling(1, temperature, top_k, top_p, 0, False, 1, 0.6, plain, seed)
        arguments.text(voice, "voice")
        arguments.number(seconds, "seconds")
        generator = torch.Generator().manual_seed(seed) if seed is not None else None
        return speak(self, voice, seconds, temperature, top_k, top_p, generator, progress)

    def forecast(self, steps: int = 12) -> np.ndarray:
        """The next `steps` values after the end of the run's series, each prediction fed back
        as the next input (closed loop)."""
        self._need("forecast", "forecast")
        arguments.whole(steps, "steps", low=1, high=1_000_000)
        return forecast(self, steps)
