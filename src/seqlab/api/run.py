"""`seqlab.load(path)` -> a `Run`: a trained run folder, opened for use from Python.

What a Run gives is plain Python, NumPy and torch: the config as nested dicts, the
vocabulary as a list of tokens, the model as a torch module with the best weights, scores
as NumPy arrays. The language-model verbs (sample, score, evaluate) live here; the task
verbs (classify, tag, translate, forecast) in verbs.py. The command line calls the same
methods.
"""
from __future__ import annotations

import codecs
import functools
import json
import math
from pathlib import Path
from typing import Any, Callable, Iterator

import numpy as np
import torch

from seqlab import SeqlabError
from seqlab.api import arguments, verbs
from seqlab.api.arguments import check_sampling, plain  # noqa: F401  (check_sampling: the CLI's too)
from seqlab.config import to_dict
from seqlab.data.sources import read_path
from seqlab.data.vocab import BOS, EOS, PAD, SPECIALS, UNK
from seqlab.decode.beam import beam_search
from seqlab.decode.sampling import generate, generate_batch
from seqlab.export.arpa import write_arpa
from seqlab.export.onnx import export_onnx, exportable, onnx_refusal
from seqlab.io import Output
from seqlab.registry import get, names
from seqlab.tasks.tbptt import summary, token_log_probs
from seqlab.training.checkpoint import RunDir
from seqlab.training.plots import read_metrics
from seqlab.training.runs import evaluate_trained, open_trained
from seqlab.training.task import Opened, offering

EXPORT_FORMATS = ("onnx", "arpa")


def load(path: str | Path, device: str = "auto", *, checkpoint: str | None = None) -> "Run":
    """Open the run folder `path` (made by `seqlab train` or `seqlab.training`) with its best weights
    on `device` ('cpu', 'cuda', 'cuda:N' or 'auto'); `checkpoint` ('step-600', '600', 'last')
    takes the weights of one of its checkpoints instead."""
    return Run(arguments.path(path, "path"), arguments.text(device, "device", optional=False), checkpoint=checkpoint)


class Run(verbs.TaskVerbs):
    """A trained run: `.config`, `.vocab`, `.model`, `.metrics`, `.result`, and its task's verbs."""

    def __init__(self, path: str | Path, device: str = "auto", *, checkpoint: str | None = None):
        self.path = Path(arguments.path(path, "path"))
        arguments.text(device, "device", optional=False)
        arguments.text(checkpoint, "checkpoint")
        folder = RunDir(self.path).require()
        self.task: str = folder.config().task.name
        self._kind = get("task", self.task)           # the task opens its own runs
        opened = open_trained(self.path, device, checkpoint)
        self._cfg, self.model, self.device = opened.cfg, opened.model, opened.device
        self._task, self._vocab, self._meta = opened.task, opened.vocab, opened.meta

    def __repr__(self) -> str:
        return f"<seqlab.Run {str(self.path)!r}: task {self.task}, model {self._cfg.model.name}>"

    # -- what the run is ------------------------------------------------------------------------

    @property
    def config(self) -> dict[str, dict[str, Any]]:
        """The run's options, {"model": {"hidden_size": 512, ...}, "train": {...}, ...}."""
        return to_dict(self._cfg)

    @property
    def vocab(self) -> list[str]:
        """The tokens by id (a task run: its input vocabulary; a run without tokens: [])."""
        if self._vocab is not None:
            return list(self._vocab.itos)
        if self._task is None:
            return []
        return list(RunDir(self.path).vocab().itos)

    @property
    def level(self) -> str:
        """'char', 'word' or 'byte': what a language model's tokens are ('' for other runs)."""
        return self._vocab.level if self._vocab is not None else ""

    @property
    def meta(self) -> dict[str, Any]:
        """What the task saved besides the weights (RUN/task.json: label names, a forecast's series)."""
        return dict(self._meta or {})

    @property
    def prepared_task(self):
        """The run's task object with its vocabularies and labels restored (no data read), for
        the task's own verbs; None for a run whose task keeps none (a language model's)."""
        return self._task

    @property
    def offers(self) -> tuple[str, ...]:
        """What this run does besides evaluate: its task's methods and verbs (run.<name>)."""
        return self._kind.offered()

    def __getattr__(self, name: str):
        # a verb the run's task declares (training/task.Verb) is a method of its runs
        if not name.startswith("_") and "_kind" in self.__dict__:
            for verb in self._kind.verbs:
                if verb.name == name:
                    return functools.partial(verb.call, self)
            if any(v.name == name for t in names("task") for v in get("task", t).verbs):
                self._need(name, name)
        raise AttributeError(f"{type(self).__name__} has no attribute {name!r}")

    def __dir__(self):
        return sorted(set(super().__dir__()) | {v.name for v in self._kind.verbs})

    @property
    def metrics(self) -> list[dict[str, Any]]:
        """The training records of metrics.jsonl: one dict per logged update or evaluation."""
        return read_metrics(RunDir(self.path).file("metrics.jsonl"))

    @property
    def result(self) -> dict[str, Any]:
        """The best model's final report (result.json), or {} for a run that has not finished."""
        try:
            return json.loads(RunDir(self.path).file("result.json").read_text(encoding="utf-8"))
        except (OSError, ValueError):
            return {}

    def _need(self, verb: str, offer: str) -> None:
        """Refuse `verb` unless this run's task offers `offer`, naming the tasks that do."""
        if offer not in self.offers:
            tasks = offering(offer)
            mine = " / ".join(o for o in self.offers if " " not in o) or "evaluate"
            raise SeqlabError(f"{self.path} is a task.name={self.task} run; {verb} needs a "
                              f"task.name={' or '.join(tasks)} run (this one offers {mine})")

    # -- language models ------------------------------------------------------------------------

    def sample(self, prime: str | None = None, length: int = 200, *, temperature: float = 1.0, top_k: int = 0,
               top_p: float = 1.0, greedy: bool = False, beam: int = 0, alpha: float = 0.6, num_samples: int = 1,
               seed: int | None = None, condition: str | None = None, stop: str | None = None,
               allow_unk: bool = False) -> str | list[str]:
        """The continuation of `prime` (without the prime): `length` tokens drawn with the given
        temperature / top-k / top-p (or greedily, or by beam search). num_samples > 1 returns a
        list, drawn as one batch. A conditional run writes a sentence of class `condition`.
        `stop` (character and byte models, sampling): each continuation ends before its first
        `stop` (e.g. "\n\n" between tunes), and drawing ends when every one has it. A word-level
        model never writes <unk> unless `allow_unk` (it stands for every word it was not taught)."""
        check_sampling(length, temperature, top_k, top_p, beam, greedy, num_samples, alpha, plain, seed)
        arguments.text(prime, "prime")
        arguments.text(condition, "condition")
        arguments.text(stop, "stop")
        if num_samples > 1 or stop:
            self._need("sampling several continuations" if num_samples > 1 else "sampling up to a stop",
                       "batch sampling")
            ids, banned, vocab, _ = self._lm_prime(prime, plain, allow_unk)
            if stop is not None and (vocab.level in ("word", "subword") or beam or vocab.unknown(stop)):
                raise SeqlabError("stop applies to sampling from character or byte models, with characters "
                                  f"the model knows; got {stop!r} for a {vocab.level}-level run"
                                  + (" with a beam" if beam else ""))
            generator = torch.Generator().manual_seed(seed) if seed is not None else None
            samples = generate_batch(self.model, ids, length, num_samples, temperature=temperature, top_k=top_k,
                                     top_p=top_p, banned=banned, generator=generator, greedy=greedy,
                                     stop=vocab.encode(stop).tolist() if stop else None)
            texts = [vocab.decode(s) for s in samples]
            return texts if num_samples > 1 else texts[0]
        return "".join(self.stream(prime, length, temperature=temperature, top_k=top_k, top_p=top_p, greedy=greedy,
                                   beam=beam, alpha=alpha, seed=seed, condition=condition, allow_unk=allow_unk))

    def tunes(self, num: int, head: str = "T:", length: int = 2000, *, temperature: float = 1.0, top_k: int = 0,
              top_p: float = 1.0, greedy: bool = False, seed: int | None = None, warmup: int = 1,
              end: str = "\n\n") -> list[str]:
        """`num` whole pieces (folk tunes in ABC, say), each `head` + what follows it up to the
        blank line (`end`) that ends a piece, at most `length` characters, drawn as one batch.
        First `warmup` pieces are drawn one after another and thrown away, so that every
        returned piece starts from the state the model is in after a piece of its own, as in
        training: a recurrent model trained with carried state (TBPTT) has seldom started from
        a zero state, and `seqlab bench folk`'s LSTM started there wrote the meter in the title line."""
        arguments.whole(num, "num", low=1, high=100_000)
        arguments.text(head, "head", optional=False)
        arguments.text(end, "end", optional=False)
        arguments.whole(warmup, "warmup", low=0, high=1000)
        prime = end + head
        for i in range(warmup):
            piece = self.sample(prime, length, temperature=temperature, top_k=top_k, top_p=top_p, greedy=greedy,
                                seed=None if seed is None else seed + 1 + i, stop=end)
            prime += piece.rstrip("\n") + end + head
        bodies = self.sample(prime, length, num_samples=num, temperature=temperature, top_k=top_k, top_p=top_p,
                             greedy=greedy, seed=seed, stop=end)
        return [head + body.rstrip() for body in ([bodies] if isinstance(bodies, str) else bodies)]

    def stream(self, prime: str | None = None, length: int = 200, *, temperature: float = 1.0, top_k: int = 0,
               top_p: float = 1.0, greedy: bool = False, beam: int = 0, alpha: float = 0.6, seed: int | None = None,
               condition: str | None = None, name: Callable[[str], str] = plain,
               allow_unk: bool = False) -> Iterator[str]:
        """`sample`, piece by piece as it is drawn (a beam search yields once, at the end)."""
        check_sampling(length, temperature, top_k, top_p, beam, greedy, 1, alpha, name, seed)
        arguments.text(prime, "prime", name)
        arguments.text(condition, "condition", name)
        self._need("sampling", "stream")
        generator = torch.Generator().manual_seed(seed) if seed is not None else None
        if self._task is not None:           # a task of its own that samples (a conditional LM)
            yield from self._task.stream_sample(self.model, prime, length, temperature, top_k, top_p, greedy, beam,
                                                alpha, generator, condition, name, allow_unk)
            return
        if condition:
            raise SeqlabError(f"{name('condition')} applies to language models conditioned on a class "
                              f"(task.name=conditional)")
        ids, banned, vocab, _ = self._lm_prime(prime, name, allow_unk)
        if beam:
            yield vocab.decode(beam_search(self.model, ids, length, beam, alpha=alpha, banned=banned)[0].tokens)
            return
        sep = " " if vocab.level == "word" else ""
        utf8 = codecs.getincrementaldecoder("utf-8")(errors="replace") if vocab.level == "byte" else None
        held: list[int] = []                       # subwords: byte pieces of a character not yet complete
        for token in generate(self.model, ids, length, greedy=greedy, temperature=temperature, top_k=top_k,
                              top_p=top_p, banned=banned, generator=generator):
            if vocab.level == "subword":
                held.append(token)
                text = vocab.decode(held)
                if not text.endswith("\ufffd"):
                    held = []
                    yield text
                continue
            if utf8 is not None:                   # bytes: a character may take several of them
                piece = utf8.decode(vocab.decode_bytes([token]))
                if piece:
                    yield piece
                continue
            piece = vocab.decode([token])
            yield piece if sep == "" or piece == "\n" else piece + sep
        if utf8 is not None:
            tail = utf8.decode(b"", final=True)
            if tail:
                yield tail
        if held:
            yield vocab.decode(held)               # a character cut short by the length

    def _lm_prime(self, prime: str | None, name: Callable[[str], str], allow_unk: bool = False):
        """(prime ids, banned ids, vocab, prime text) of a language model's sampling."""
        vocab = self._vocab
        if prime is None:
            ids, text = ([EOS] if vocab.level == "word" else vocab.encode("\n").tolist()), ""
        else:
            if prime == "":
                raise SeqlabError(f"{name('prime')} is empty; give some text, or leave {name('prime')} out")
            specials = [t for t in SPECIALS if vocab.level == "word" and t in prime.split()]
            if specials:
                raise SeqlabError(f"{name('prime')} contains {' '.join(specials)}, seqlab's own markers, which the "
                                  f"model never reads as text; write the words alone (a new line stands for <eos>)")
            missing = vocab.unknown(prime)
            if missing:
                raise SeqlabError(f"{name('prime')} has {len(missing)} token(s) the model never saw: "
                                  f"{' '.join(repr(m) for m in missing[:10])}; remove them")
            ids, text = vocab.encode(prime).tolist(), prime
        # a character stream never contains <eos>; a word stream ends lines with it
        banned = ((PAD, BOS) if allow_unk else (PAD, UNK, BOS)) if vocab.level == "word" else (PAD, UNK, BOS, EOS)
        return ids, banned, vocab, text

    def score(self, text: str, *, streams: int = 1) -> dict[str, Any]:
        """How well the model predicts `text`: per-token log-probabilities (nats, a NumPy array;
        the first token is predicted after a line break), their mean loss, total bits and bits per
        token. Tokens outside the vocabulary count as <unk> and are listed under "unknown".
        streams=S > 1 scores S contiguous segments side by side (faster; each starts afresh)."""
        self._need("score", "score")
        arguments.text(text, "text", optional=False)
        arguments.whole(streams, "streams", low=1, high=1 << 16)
        vocab = self._vocab
        ids = torch.as_tensor(vocab.encode(text), dtype=torch.long)
        start = vocab.newline()
        log_probs = token_log_probs(self.model, ids, start, self.device, streams, max(self._cfg.train.bptt_steps, 1))
        scored = log_probs[~np.isnan(log_probs)]
        if not len(scored):
            raise SeqlabError(f"the text has {len(ids)} token(s); nothing to score (need at least "
                              f"{1 if start is not None else 2})")
        nats = float(-scored.mean())
        bits = float(-scored.sum() / math.log(2))
        return {"tokens": int(len(scored)), "log_probs": log_probs, "loss": nats, "ppl": math.exp(min(nats, 700.0)),
                "bits": bits, "bits_per_token": bits / len(scored), "unknown": vocab.unknown(text)}

    def evaluate(self, split: str = "test", *, file: str | Path | None = None, streams: int | None = None,
                 log: Callable[[str], None] | None = None) -> dict[str, Any]:
        """Loss (and the task's metrics) on a split of the run's data, or (language models) on
        a text file: the file is scored as `score` does (one stream unless `streams`), a split
        in 32 parallel streams as during training unless `streams`."""
        say = log or (lambda m: None)
        arguments.path(file, "file", optional=True)
        if streams is not None:
            arguments.whole(streams, "streams", low=1, high=1 << 16)
        if split not in ("train", "valid", "test"):
            raise SeqlabError(f"split must be train, valid or test; got {split!r}")
        if file is not None and "score" not in self.offers:
            raise SeqlabError("file= evaluates language models; a task run is evaluated on a split of its data")
        if file is not None:
            text = read_path(str(file), log=say)
            scored = self.score(text, streams=streams or 1)
            result = {"data": str(file), "tokens": scored["tokens"], **summary(scored["loss"], self._vocab.level)}
            if scored["unknown"]:
                result["unknown"] = scored["unknown"]
            return result
        opened = Opened(self._cfg, self.model, self.device, task=self._task, vocab=self._vocab, meta=self._meta)
        return evaluate_trained(self.path, opened, split, say, streams)

    # -- other tools' formats (export/) -----------------------------------------------------------

    def export(self, path: str | Path, format: str | None = None, *, overwrite: bool = False) -> dict[str, Any]:
        """Write the model for another tool: 'onnx' (a neural model's step function) or 'arpa'
        (an n-gram model); the format defaults to the file's suffix. An existing file is refused
        unless `overwrite`. Returns what was written."""
        arguments.path(path, "path")
        arguments.text(format, "format")
        fmt = export_format(path, format)
        self._need("export", "export")
        family = self._cfg.model.name
        if fmt == "arpa" and family != "ngram":
            other = "; it exports with format onnx" if onnx_refusal(self.model, family) is None else \
                " and ONNX holds step functions of neural models, which this is not either: it cannot be exported"
            raise SeqlabError(f"ARPA holds n-gram models; this run is model.name={family}{other}")
        if fmt == "onnx":
            exportable(self.model, family)          # refused before the file is claimed
        out = Output(path, "path", overwrite=overwrite)
        Path(out.path).parent.mkdir(parents=True, exist_ok=True)
        if fmt == "arpa":
            return {"format": "arpa", **write_arpa(self.model, self.vocab, out)}
        return export_onnx(self.model, family, self.vocab, out)

    def unknown(self, text: str | list[str]) -> list[str]:
        """The tokens of `text` this run's model never saw in training, which it reads as <unk>
        (a language model's characters or words; a classifier's, tagger's or translator's words)."""
        arguments.text(text if isinstance(text, str) else " ".join(map(str, text)), "text", optional=False)
        if self._task is not None and hasattr(self._task, "unknown_words"):
            return self._task.unknown_words(text)
        if self._vocab is not None:
            return self._vocab.unknown(text if isinstance(text, str) else " ".join(text))
        return []


def export_format(path: str | Path, given: str | None) -> str:
    """'onnx' or 'arpa': the one given, or the file's suffix; a one-line refusal otherwise."""
    fmt = (given or {".onnx": "onnx", ".arpa": "arpa"}.get(Path(path).suffix.lower(), "")).lower()
    if fmt not in EXPORT_FORMATS:
        raise SeqlabError(f"export format must be one of {', '.join(EXPORT_FORMATS)}; got {given or fmt or 'nothing'}"
                          + ("" if given else f" (name the file .onnx or .arpa, or give the format)"))
    return fmt
