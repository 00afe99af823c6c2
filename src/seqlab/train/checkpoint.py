"""A run directory: everything needed to use, evaluate or resume one training run.

    RUN/config.json        resolved config, vocabulary size, seqlab version, data source
    RUN/vocab.json         the vocabulary
    RUN/model.safetensors  weights with the best validation loss (what eval and sample use)
    RUN/last.safetensors   the latest weights (for resuming)
    RUN/state.pt           optimizer, schedule, RNG, position in the data, carried hidden
                           state — tensors and plain values only, loaded with weights_only=True
    RUN/metrics.jsonl      one JSON record per log line
    RUN/loss.png           the loss curves

Every file is written atomically (temp file + rename). Nothing here unpickles code:
safetensors holds the weights, and torch.load(weights_only=True) refuses anything but
tensors and plain containers, so opening a stranger's run never executes their code.
"""
from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import torch
from safetensors import SafetensorError, safe_open
from safetensors.torch import load_model, save_model
from torch import nn

import seqlab
from seqlab import SeqlabError
from seqlab.config import Config, from_dict, to_dict
from seqlab.data.vocab import Vocab
from seqlab.io import atomic_path, atomic_write_text

CONFIG, VOCAB, BEST, LAST, STATE, METRICS, PLOT = (
    "config.json", "vocab.json", "model.safetensors", "last.safetensors", "state.pt", "metrics.jsonl", "loss.png")


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
        if not self.file(CONFIG).is_file():
            raise SeqlabError(f"{self.path} is not a seqlab run (no {CONFIG}); train one with `seqlab train --out DIR`")
        return self

    def meta(self) -> dict[str, Any]:
        try:
            meta = json.loads(self.file(CONFIG).read_text(encoding="utf-8"))
            meta["config"]["data"]
            return meta
        except FileNotFoundError:
            raise SeqlabError(f"{self.file(CONFIG)} is missing") from None
        except (ValueError, KeyError, TypeError) as e:
            raise SeqlabError(f"{self.file(CONFIG)} is corrupted ({e.__class__.__name__}: {e})") from None

    def config(self) -> Config:
        return from_dict(self.meta()["config"])

    def vocab(self) -> Vocab:
        return Vocab.load(self.file(VOCAB))

    # -- weights ---------------------------------------------------------------------------

    def save_weights(self, model: nn.Module, name: str, metadata: dict[str, Any]) -> None:
        with atomic_path(self.file(name)) as tmp:
            # save_model records tied weights in the metadata itself; ours goes under one key
            save_model(model, str(tmp), metadata={"seqlab": json.dumps(metadata)})

    def load_weights(self, model: nn.Module, name: str = BEST) -> dict[str, Any]:
        """Load weights into `model`; returns the metadata saved with them."""
        path = self.file(name)
        if not path.is_file():
            raise SeqlabError(f"{path} is missing; the run has no saved weights yet")
        try:
            missing, unexpected = load_model(model, str(path), strict=False, device=str(_device_of(model)))
            with safe_open(str(path), framework="pt") as f:
                metadata = json.loads((f.metadata() or {}).get("seqlab", "{}"))
        except (SafetensorError, OSError, ValueError, RuntimeError) as e:
            raise SeqlabError(f"{path} is truncated or corrupted ({_first_line(e)}); "
                              f"retrain, or resume from another copy") from None
        if missing or unexpected:
            raise SeqlabError(f"{path} does not match the model in {CONFIG} "
                              f"(missing {list(missing)[:3]}, unexpected {list(unexpected)[:3]})")
        return metadata

    def save_arrays(self, name: str, arrays: dict[str, Any], metadata: dict[str, Any]) -> None:
        """Numeric arrays of a count-based model (n-gram counts), as safetensors."""
        from safetensors.numpy import save_file
        with atomic_path(self.file(name)) as tmp:
            save_file({k: np.ascontiguousarray(v) for k, v in arrays.items()}, str(tmp),
                      metadata={"seqlab": json.dumps(metadata)})

    def load_arrays(self, name: str = BEST) -> dict[str, Any]:
        from safetensors.numpy import load_file
        path = self.file(name)
        if not path.is_file():
            raise SeqlabError(f"{path} is missing; the run has no saved model yet")
        try:
            return load_file(str(path))
        except (SafetensorError, OSError, ValueError) as e:
            raise SeqlabError(f"{path} is truncated or corrupted ({_first_line(e)}); refit the model") from None

    # -- training state ----------------------------------------------------------------------

    def save_state(self, state: dict[str, Any]) -> None:
        with atomic_path(self.file(STATE)) as tmp:
            torch.save(state, tmp)

    def load_state(self) -> dict[str, Any]:
        path = self.file(STATE)
        if not path.is_file():
            raise SeqlabError(f"{path} is missing; this run cannot be resumed (it has no training state)")
        try:
            return torch.load(path, map_location="cpu", weights_only=True)
        except Exception as e:  # torch raises several types for truncated or hostile files
            raise SeqlabError(f"{path} is truncated, corrupted or not a seqlab state file ({_first_line(e)})") from None


def _device_of(model: nn.Module) -> torch.device:
    for tensor in (*model.parameters(), *model.buffers()):    # AR(p) has buffers only
        return tensor.device
    return torch.device("cpu")


def _first_line(e: Exception) -> str:
    text = str(e).strip().splitlines()
    return text[0][:200] if text else e.__class__.__name__
