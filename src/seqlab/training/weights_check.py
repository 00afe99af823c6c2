"""Checks on a weights file before and after it is loaded into a model, each failing with the
true cause: a config or vocabulary that no longer matches the weights (`ModelMismatch`, which no
other checkpoint can cure), and weights holding NaN or infinity (a diverged run, an altered file).
"""
from __future__ import annotations

from pathlib import Path

import torch
from torch import nn

from seqlab import SeqlabError


class ModelMismatch(SeqlabError):
    """Weights and the model their run describes disagree: not damage, so no other checkpoint helps."""


def check_shapes(model: nn.Module, path: Path, shapes: dict[str, tuple[int, ...]], *, config: Path,
                 vocab: Path) -> None:
    """Compare a file's tensor names and shapes (`shapes`, read from its header) with `model`'s."""
    expected = {key: tuple(t.shape) for key, t in model.state_dict().items()}
    # save_model drops one name of each tied pair; load_model accepts either
    missing = [k for k in expected if k not in shapes and not _tied_elsewhere(model, k, shapes)]
    unexpected = [k for k in shapes if k not in expected]
    if missing or unexpected:
        raise ModelMismatch(f"{path} does not hold the model that {config} describes: parameters missing from "
                            f"the file {missing[:3]}, in the file but not in the model {unexpected[:3]}; "
                            f"config.json or the weights were replaced")
    wrong = [(k, shapes[k], expected[k]) for k in expected if k in shapes and shapes[k] != expected[k]]
    if not wrong:
        return
    key, found, wanted = wrong[0]
    more = f" (and {len(wrong) - 1} more)" if len(wrong) > 1 else ""
    if "embedding" in key and found[1:] == wanted[1:] and found[0] != wanted[0]:
        raise ModelMismatch(f"{vocab} has {wanted[0]} tokens but the weights in {path} embed "
                            f"{found[0]} ({key} is {_shape(found)}); vocab.json was replaced or edited")
    raise ModelMismatch(f"{path} does not match {config}: {key} is {_shape(found)} in the file but "
                        f"{_shape(wanted)} for the configured model{more}; config.json was edited "
                        f"(restore the sizes the run was trained with)")


def require_finite(model: nn.Module, path: Path) -> None:
    """Weights holding NaN or inf score and sample nothing meaningful: say so instead of
    printing `loss nan`."""
    bad = [(name, int((~torch.isfinite(p)).sum())) for name, p in model.named_parameters()
           if p.is_floating_point() and not torch.isfinite(p).all()]
    if bad:
        total = sum(n for _, n in bad)
        raise SeqlabError(f"{path} holds {total:,} NaN or infinite weights (first in {bad[0][0]}); the run diverged "
                          f"or the file was altered: retrain, or resume from a checkpoint (seqlab train --resume)")


def _shape(shape: tuple[int, ...]) -> str:
    return "(" + ", ".join(str(n) for n in shape) + ")"


def _tied_elsewhere(model: nn.Module, key: str, shapes: dict[str, tuple[int, ...]]) -> bool:
    """Is `key` one name of a tensor that the file holds under another (weight tying)?"""
    state = model.state_dict()
    return any(other in shapes and state[other].data_ptr() == state[key].data_ptr()
               for other in state if other != key)
