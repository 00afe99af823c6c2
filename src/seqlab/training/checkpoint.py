"""A run directory: everything needed to use, evaluate or resume one training run.

    RUN/config.json        resolved config, vocabulary size, seqlab version, data source
    RUN/vocab.json         the vocabulary
    RUN/model.safetensors  weights with the best validation loss (what eval and sample use)
    RUN/checkpoints/step-NNNNNNNN/   one checkpoint: what resuming needs, as one unit
        weights.safetensors      the weights after update NNNNNNNN
        state.pt                 optimizer, schedule, RNG, position in the data, carried hidden
                                 state — tensors and plain values only, loaded with weights_only=True
        manifest.json            the update number and each file's size and sha256
    RUN/metrics.jsonl      one JSON record per log line
    RUN/loss.png           the loss curves

A checkpoint is written into a hidden temporary folder, fsynced, and committed by renaming
that folder into place, so SIGKILL at any instant leaves every earlier checkpoint intact and
the new one complete or absent. The newest `keep` are kept; loading verifies the checksums
and falls back to the previous checkpoint when the newest is truncated or corrupted (a disk
that lied about fsync, a copy cut short). Runs saved before this layout (RUN/last.safetensors +
RUN/state.pt) still resume.

Every other file is written atomically (temp file + rename). Nothing here unpickles code:
safetensors holds the weights, and torch.load(weights_only=True) refuses anything but
tensors and plain containers, so opening a stranger's run never executes their code.
"""
from __future__ import annotations

import json
import os
import pickle
import re
import shutil
import tempfile
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Callable

import numpy as np
import torch
from safetensors import SafetensorError, safe_open
from safetensors.numpy import load_file, save_file
from safetensors.torch import load_model, save_model
from torch import nn

import seqlab
from seqlab import SeqlabError
from seqlab.config import Config, from_dict, to_dict
from seqlab.data.vocab import Vocab
from seqlab.io import atomic_path, atomic_write_text, json_loads
from seqlab.training.disk import _discard, _first_line, _fsync, _sha256, _umask, _write_errors_as_oserror
from seqlab.training.runfolder import require_regular
from seqlab.training.weights_check import ModelMismatch, check_shapes, require_finite

CONFIG, VOCAB, BEST, LAST, STATE, METRICS, PLOT = (
    "config.json", "vocab.json", "model.safetensors", "last.safetensors", "state.pt", "metrics.jsonl", "loss.png")
CHECKPOINTS, WEIGHTS, MANIFEST = "checkpoints", "weights.safetensors", "manifest.json"


@dataclass(frozen=True)
class Checkpoint:
    path: Path       # RUN/checkpoints/step-NNNNNNNN (or RUN itself for the old layout)
    step: int        # -1 for the old layout, whose step is in its state


@dataclass
class RunDir:
    path: Path

    def __post_init__(self) -> None:
        self.path = Path(self.path)

    def file(self, name: str) -> Path:
        return self.path / name

    # -- config and vocabulary -----------------------------------------------------------

    def save_meta(self, cfg: Config, vocab: Vocab, source: str) -> None:
        self.path.mkdir(parents=True, exist_ok=True)
        meta = {"seqlab_version": seqlab.__version__, "source": source, "vocab_size": len(vocab),
                "config": to_dict(cfg)}
        atomic_write_text(self.file(CONFIG), json.dumps(meta, indent=2) + "\n")
        vocab.save(self.file(VOCAB))

    def require(self) -> "RunDir":
        """Fail clearly unless this looks like a run directory."""
        if not self.path.is_dir():
            raise SeqlabError(f"run directory not found: {self.path}")
        if not self.file(CONFIG).exists():
            raise SeqlabError(f"{self.path} is not a seqlab run (no {CONFIG}); train one with `seqlab train --out DIR`")
        require_regular(self.file(CONFIG), self.path)
        return self

    def meta(self) -> dict[str, Any]:
        try:
            meta = json_loads(require_regular(self.file(CONFIG), self.path).read_text(encoding="utf-8"))
            meta["config"]["data"]
            return meta
        except FileNotFoundError:
            raise SeqlabError(f"{self.file(CONFIG)} is missing") from None
        except (ValueError, KeyError, TypeError) as e:
            raise SeqlabError(f"{self.file(CONFIG)} is corrupted ({e.__class__.__name__}: {e})") from None

    def config(self) -> Config:
        try:
            return from_dict(self.meta()["config"])
        except SeqlabError as e:
            raise SeqlabError(f"{self.file(CONFIG)} is not a valid run config ({e})") from None

    def vocab(self) -> Vocab:
        return Vocab.load(require_regular(self.file(VOCAB), self.path))

    # -- weights ---------------------------------------------------------------------------

    def save_weights(self, model: nn.Module, name: str, metadata: dict[str, Any]) -> None:
        with atomic_path(self.file(name)) as tmp, _write_errors_as_oserror(self.path):
            # save_model records tied weights in the metadata itself; ours goes under one key
            save_model(model, str(tmp), metadata={"seqlab": json.dumps(metadata)})

    def load_weights(self, model: nn.Module, name: str | Path = BEST, finite: bool = False) -> dict[str, Any]:
        """Load weights (a file of the run, or any path) into `model`; returns their metadata.
        finite=True (eval, sample, the task verbs, the analyses) refuses NaN or infinite weights."""
        path = name if isinstance(name, Path) else self.file(name)
        if not path.exists() and not path.is_symlink():
            raise SeqlabError(f"{path} is missing; the run has no saved weights yet")
        require_regular(path, self.path)
        try:
            with safe_open(str(path), framework="pt") as f:        # reads the header only
                shapes = {key: tuple(f.get_slice(key).get_shape()) for key in f.keys()}
                metadata = json_loads((f.metadata() or {}).get("seqlab", "{}"))
        except (SafetensorError, OSError, ValueError) as e:
            raise SeqlabError(f"{path} is truncated or corrupted ({_first_line(e)}); "
                              f"retrain, or resume from another copy") from None
        check_shapes(model, path, shapes, config=self.file(CONFIG), vocab=self.file(VOCAB))
        try:
            load_model(model, str(path), strict=False, device=str(_device_of(model)))
        except (SafetensorError, OSError, ValueError, RuntimeError) as e:
            raise SeqlabError(f"{path} is truncated or corrupted ({_first_line(e)}); "
                              f"retrain, or resume from another copy") from None
        if finite:
            require_finite(model, path)
        return metadata

    def load_best(self, model: nn.Module, say: Callable[[str], None], checkpoint: str | None = None) -> dict[str, Any]:
        """The weights `eval`, `sample` and the analyses use: model.safetensors, or, for a run
        stopped before its first evaluation wrote it (Ctrl-C early on), the newest intact
        checkpoint's weights, said in one line. `checkpoint` ('step-600', '600' or 'last')
        names one of the run's checkpoints instead."""
        if checkpoint is not None:
            return self.load_named(model, checkpoint)
        if self.file(BEST).exists() or self.file(BEST).is_symlink():
            return self.load_weights(model, BEST, finite=True)
        for checkpoint in self.checkpoints():
            if checkpoint.step < 0:
                continue
            try:
                step = self._verified_step(checkpoint)
                meta = self.load_weights(model, checkpoint.path / WEIGHTS, finite=True)
            except ModelMismatch:
                raise
            except SeqlabError:
                continue
            say(f"note: {self.path} stopped before its first evaluation, so it has no {BEST} yet; "
                f"using the weights of its newest checkpoint (update {step})")
            return meta
        raise SeqlabError(f"{self.file(BEST)} is missing and {self.path} has no intact checkpoint; "
                          f"the run has no saved weights yet (train it, or resume it: seqlab train --resume {self.path})")

    def load_named(self, model: nn.Module, name: str) -> dict[str, Any]:
        """The weights of the checkpoint `name` ('step-600', '600', or 'last': the newest), verified."""
        kept = [c for c in self.checkpoints() if c.step >= 0]
        text = str(name).strip().lower()
        number = text[5:] if text.startswith("step-") else text
        if text == "last" and kept:
            chosen = kept[0]
        elif number.isdigit() and any(c.step == int(number) for c in kept):
            chosen = next(c for c in kept if c.step == int(number))
        else:
            have = ", ".join(c.path.name for c in kept) or "none"
            raise SeqlabError(f"{self.path} has no checkpoint {name!r}; it keeps {have} (train.keep_checkpoints "
                              f"sets how many; 'last' is the newest)")
        self._verified_step(chosen)
        return self.load_weights(model, chosen.path / WEIGHTS, finite=True)

    def save_arrays(self, name: str, arrays: dict[str, Any], metadata: dict[str, Any]) -> None:
        """Numeric arrays of a count-based model (n-gram counts), as safetensors."""
        with atomic_path(self.file(name)) as tmp:
            save_file({k: np.ascontiguousarray(v) for k, v in arrays.items()}, str(tmp),
                      metadata={"seqlab": json.dumps(metadata)})

    def load_arrays(self, name: str = BEST) -> dict[str, Any]:
        path = self.file(name)
        if not path.is_file():
            raise SeqlabError(f"{path} is missing; the run has no saved model yet")
        try:
            return load_file(str(path))
        except (SafetensorError, OSError, ValueError) as e:
            raise SeqlabError(f"{path} is truncated or corrupted ({_first_line(e)}); refit the model") from None

    # -- checkpoints: one directory per saved update, committed by one rename -----------------

    def checkpoint_dir(self) -> Path:
        return self.file(CHECKPOINTS)

    def save_checkpoint(self, step: int, model: nn.Module, state: dict[str, Any], keep: int = 2) -> Path:
        """Write weights + training state as RUN/checkpoints/step-NNNNNNNN, then drop all but the
        newest `keep`. The files go into a hidden temporary folder, are fsynced with their sha256
        in manifest.json, and the folder is renamed into place: a kill at any instant leaves the
        previous checkpoints untouched and the new one either complete or invisible."""
        folder = self.checkpoint_dir()
        folder.mkdir(parents=True, exist_ok=True)
        final = folder / f"step-{step:08d}"
        tmp = Path(tempfile.mkdtemp(prefix=f".{final.name}.", suffix=".tmp", dir=folder))
        try:
            os.chmod(tmp, 0o777 & ~_umask())
            with _write_errors_as_oserror(folder):
                save_model(model, str(tmp / WEIGHTS), metadata={"seqlab": json.dumps({"step": step})})
                torch.save(state, tmp / STATE)
            files = {name: {"sha256": _sha256(tmp / name), "bytes": (tmp / name).stat().st_size}
                     for name in (WEIGHTS, STATE)}
            manifest = {"step": step, "seqlab_version": seqlab.__version__, "files": files}
            (tmp / MANIFEST).write_text(json.dumps(manifest, indent=2) + "\n", encoding="utf-8")
            for name in (WEIGHTS, STATE, MANIFEST):
                os.chmod(tmp / name, 0o666 & ~_umask())      # safetensors writes 0600; match the run's other files
                _fsync(tmp / name)
            _fsync(tmp)
            if final.exists():          # saved again at the same update (e.g. Ctrl-C right after an evaluation)
                _discard(final)
            os.rename(tmp, final)
            _fsync(folder)
        except BaseException:
            shutil.rmtree(tmp, ignore_errors=True)
            raise
        self._prune(keep)
        return final

    def checkpoints(self) -> list[Checkpoint]:
        """Committed checkpoints, newest first (not yet verified)."""
        folder = self.checkpoint_dir()
        found = []
        if folder.is_dir():
            for path in folder.iterdir():
                name = path.name
                # a link is never followed: it could lend this run another run's checkpoint
                if name.startswith("step-") and name[5:].isdigit() and path.is_dir() and not path.is_symlink():
                    found.append(Checkpoint(path, int(name[5:])))
        if not found and self.file(LAST).is_file() and self.file(STATE).is_file():
            found.append(Checkpoint(self.path, -1))        # a run saved before checkpoints/ existed
        return sorted(found, key=lambda c: c.step, reverse=True)

    def load_checkpoint(self, model: nn.Module, log: Callable[[str], None] = print) -> tuple[dict[str, Any], Checkpoint] | None:
        """Load the newest intact checkpoint into `model`; returns (training state, checkpoint),
        or None when the run has none. A damaged newest one is reported and the previous used."""
        candidates = self.checkpoints()
        if not candidates:
            return None
        problems = []
        for checkpoint in candidates:
            try:
                state = self._load_one(model, checkpoint)
            except ModelMismatch:
                raise                      # every checkpoint disagrees alike: say why, once
            except SeqlabError as e:
                problems.append(str(e))
                log(f"warning: {e}; falling back to the previous checkpoint")
                continue
            return state, checkpoint
        raise SeqlabError(f"{problems[0]}; no intact checkpoint is left in {self.path}, "
                          f"so this run cannot be resumed (train it again with --overwrite)")

    def _load_one(self, model: nn.Module, checkpoint: Checkpoint) -> dict[str, Any]:
        if checkpoint.step < 0:                 # the old layout: last.safetensors + state.pt
            state = self._read_state(self.file(STATE))
            meta = self.load_weights(model, LAST)
            if meta.get("step") != state.get("progress", {}).get("step"):
                raise SeqlabError(f"{self.file(LAST)} and {self.file(STATE)} disagree; the run was cut off while saving")
            return state
        step = self._verified_step(checkpoint)
        state = self._read_state(checkpoint.path / STATE)
        self.load_weights(model, checkpoint.path / WEIGHTS)
        if state.get("progress", {}).get("step") != step:
            raise SeqlabError(f"{checkpoint.path / STATE} is not the state of update {step}")
        return state

    def _verified_step(self, checkpoint: Checkpoint) -> int:
        """`verify`, and the manifest, not the folder's name, says which update it holds."""
        step = self.verify(checkpoint)
        if step != checkpoint.step:
            raise SeqlabError(f"{checkpoint.path} holds update {step} by its {MANIFEST}, not {checkpoint.step}; "
                              f"it was renamed or copied from elsewhere")
        return step

    def verify(self, checkpoint: Checkpoint) -> int:
        """Check a checkpoint's files against its manifest (sizes, sha256); returns its update
        number, or raises SeqlabError naming the damaged file."""
        manifest_path = checkpoint.path / MANIFEST
        try:
            manifest = json_loads(manifest_path.read_text(encoding="utf-8"))
            files = manifest["files"]
            step = int(manifest["step"])
        except (OSError, ValueError, KeyError, TypeError) as e:
            raise SeqlabError(f"{manifest_path} is missing or corrupted ({_first_line(e)})") from None
        for name in (WEIGHTS, STATE):
            path = checkpoint.path / name
            if path.is_symlink():
                raise SeqlabError(f"{path} is a link; a checkpoint's files must be the ones seqlab wrote")
            if not path.is_file():
                raise SeqlabError(f"{path} is missing")
            expected = files.get(name, {})
            if path.stat().st_size != expected.get("bytes") or _sha256(path) != expected.get("sha256"):
                raise SeqlabError(f"{path} is truncated or corrupted (its sha256 differs from {MANIFEST})")
        return step

    def _prune(self, keep: int) -> None:
        """Drop checkpoints beyond the newest `keep`, and leftovers of saves cut off by a kill."""
        # only folders whose manifest agrees with their name count (and are ever deleted): one
        # renamed or copied in from elsewhere must not push this run's own checkpoints out
        committed = [c for c in self.checkpoints() if c.step >= 0 and _manifest_step(c.path) == c.step]
        folder = self.checkpoint_dir()
        for checkpoint in committed[max(keep, 1):]:
            _discard(checkpoint.path)
        for path in folder.iterdir():     # leftovers of this process's or a killed writer's saves
            if path.name.startswith(".step-") and not path.is_symlink():
                shutil.rmtree(path, ignore_errors=True)

    def _read_state(self, path: Path) -> dict[str, Any]:
        if not path.is_file():
            raise SeqlabError(f"{path} is missing; this run cannot be resumed (it has no training state)")
        try:
            state = torch.load(require_regular(path, self.path), map_location="cpu", weights_only=True)
        except pickle.UnpicklingError as e:
            if "Weights only load failed" in str(e):        # torch's text would advise weights_only=False
                found = re.search(r"GLOBAL (\S+)", str(e))
                what = f" ({found.group(1)})" if found else ""
                raise SeqlabError(f"{path} asks to run Python code{what} when loaded, which no seqlab state file does; "
                                  f"seqlab refuses to unpickle it (do not load it with torch.load either)") from None
            raise SeqlabError(f"{path} is truncated, corrupted or not a seqlab state file ({_first_line(e)})") from None
        except SeqlabError:
            raise
        except Exception as e:  # torch raises several types for truncated or hostile files
            raise SeqlabError(f"{path} is truncated, corrupted or not a seqlab state file ({_first_line(e)})") from None
        if not isinstance(state, dict):
            raise SeqlabError(f"{path} is not a seqlab state file (it holds a {type(state).__name__})")
        return state


def _manifest_step(folder: Path) -> int | None:
    try:
        return int(json_loads((folder / MANIFEST).read_text(encoding="utf-8"))["step"])
    except (OSError, ValueError, KeyError, TypeError):
        return None


def _device_of(model: nn.Module) -> torch.device:
    for tensor in (*model.parameters(), *model.buffers()):    # AR(p) has buffers only
        return tensor.device
    return torch.device("cpu")
