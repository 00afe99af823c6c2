"""A neural language model's step function as an ONNX graph, for generating in another runtime.

The graph is `model.step`: (token, state...) -> (logits, next state...), batch first, the
batch dimension dynamic. Inputs are named `token` (int64, (B,)) and `state_0`, `state_1`, ...
(as `model.init_state(B)` gives them: float32 zeros for a recurrent state or a TCN's input
history, int64 <bos> tokens for the window model); outputs `logits` ((B, V); a softmax gives
the next token's distribution) and `next_state_0`, ... in the same order. The model's
metadata (metadata_props) names the family, the vocabulary as a JSON list of tokens by id,
each state's shape for one sequence, dtype and starting value, and the seqlab version, so a
runtime can encode text and start a sequence without seqlab:

    import json, numpy as np, onnxruntime as ort
    s = ort.InferenceSession("model.onnx")
    meta = s.get_modelmeta().custom_metadata_map
    vocab = json.loads(meta["vocab"])
    state = [np.full([1, *shape], fill, dtype) for shape, dtype, fill in
             zip(*(json.loads(meta[k]) for k in ("state_shapes", "state_dtypes", "state_fill")))]
    out = s.run(None, {"token": np.array([vocab.index("\\n")]), **{f"state_{i}": x for i, x in enumerate(state)}})
    logits, state = out[0], out[1:]

Exported by torch.onnx (the dynamo exporter, opset 18); checked against onnxruntime in
tests/export/test_onnx.py (every exportable family, 100 steps, logits within 1e-5).
Count-based models (n-gram, HMM) have no graph to export: the n-gram goes to ARPA.
"""
from __future__ import annotations

import contextlib
import importlib.util
import io
import json
import logging
import warnings
from typing import Any

import torch
from torch import Tensor, nn

import seqlab
from seqlab import SeqlabError
from seqlab.io import writing
from seqlab.models.base import is_count_model

OPSET = 18


def flatten(state: Any) -> tuple[list[Tensor], Any]:
    """A state (a tensor, or tuples / lists of them, nested) -> (its tensors in order, its shape spec)."""
    if isinstance(state, Tensor):
        return [state], "tensor"
    if isinstance(state, (tuple, list)):
        tensors, specs = [], []
        for item in state:
            flat, spec = flatten(item)
            tensors += flat
            specs.append(spec)
        return tensors, ("tuple" if isinstance(state, tuple) else "list", specs)
    raise SeqlabError(f"a model state of type {type(state).__name__} cannot be exported")


def unflatten(tensors: list[Tensor], spec: Any) -> Any:
    items = iter(tensors)

    def build(part):
        if part == "tensor":
            return next(items)
        kind, parts = part
        built = [build(p) for p in parts]
        return tuple(built) if kind == "tuple" else built
    return build(spec)


def start_value(t: Tensor) -> float | int:
    """The one value a fresh state tensor is filled with (0 for a recurrent state or a TCN's
    history, <bos> for the window model's tokens): the metadata says how to start a sequence."""
    values = t.unique()
    if values.numel() != 1:
        raise SeqlabError("this model's initial state is not one constant; it cannot be described to another runtime")
    return values.item()


class StepGraph(nn.Module):
    """model.step with a flat list of state tensors in and out: what the graph computes."""

    def __init__(self, model: nn.Module, spec: Any):
        super().__init__()
        self.model, self.spec = model, spec

    def forward(self, token: Tensor, *state: Tensor):
        logits, new = self.model.step(token, unflatten(list(state), self.spec))
        return (logits, *flatten(new)[0])


def onnx_refusal(model: nn.Module, family: str) -> str | None:
    """Why `model` has no ONNX step graph, or None where it has one."""
    if is_count_model(model):
        return (f"model.name={family} is counted, not a neural network: it has no ONNX graph"
                + ("; export it with --format arpa" if family == "ngram" else ""))
    if not hasattr(model, "step"):
        return f"model.name={family} has no step function to export"
    return None


def exportable(model: nn.Module, family: str) -> None:
    """A one-line refusal for a model that has no step graph."""
    why = onnx_refusal(model, family)
    if why is not None:
        raise SeqlabError(why)


def export_onnx(model: nn.Module, family: str, itos: list[str], path) -> dict[str, Any]:
    """Write `model`'s step function as an ONNX file at `path` (a file name, or a seqlab.io.Output
    that refuses to replace one), atomically; returns what was written."""
    exportable(model, family)
    missing = [m for m in ("onnx", "onnxscript") if importlib.util.find_spec(m) is None]
    if missing:
        raise SeqlabError(f"ONNX export needs {' and '.join(missing)}: pip install onnx==1.23.2 onnxscript==0.7.2 "
                          f"(make venv installs them)")
    model = model.cpu().eval()
    flat, spec = flatten(model.init_state(2))          # batch 2 in the example: the batch axis stays symbolic
    graph = StepGraph(model, spec).eval()
    batch = torch.export.Dim("batch", min=1, max=1 << 20)
    dynamic = ({0: batch}, tuple({0: batch} for _ in flat))      # (token, *state): the varargs are one entry
    names = [f"state_{i}" for i in range(len(flat))]
    try:
        quiet = logging.getLogger("torch.onnx")
        level, quiet.level = quiet.level, logging.ERROR
        # decoding's hand-stepped kernels (fused_step, native) are opaque to torch.export: trace the
        # module's own forward step instead, which computes the same function
        fast, model.fast_step = getattr(model, "fast_step", None), False
        try:
            with torch.no_grad(), warnings.catch_warnings(), contextlib.redirect_stdout(io.StringIO()):
                warnings.simplefilter("ignore")
                program = torch.onnx.export(graph, (torch.zeros(2, dtype=torch.long), *flat), dynamic_shapes=dynamic,
                                            input_names=["token", *names], dynamo=True, opset_version=OPSET,
                                            output_names=["logits", *[f"next_{n}" for n in names]], verbose=False)
        finally:
            quiet.level = level
            if fast is None:
                del model.fast_step
            else:
                model.fast_step = fast
        meta = {"seqlab_version": seqlab.__version__, "family": family, "vocab": json.dumps(itos, ensure_ascii=False),
                "state_shapes": json.dumps([list(t.shape[1:]) for t in flat]),
                "state_dtypes": json.dumps([str(t.dtype).replace("torch.", "") for t in flat]),
                "state_fill": json.dumps([start_value(t) for t in flat]),
                "inputs": "token (B,) int64, state_i (B, ...)", "outputs": "logits (B, V), next_state_i"}
        proto = program.model_proto
        for key, value in meta.items():
            entry = proto.metadata_props.add()
            entry.key, entry.value = key, value
        try:
            with writing(path) as tmp:
                tmp.write_bytes(proto.SerializeToString())
        except OSError as e:
            raise SeqlabError(f"cannot write {path} ({e.strerror or e}); nothing was written") from None
    except SeqlabError:
        raise
    except Exception as e:                 # the exporter's own failure: one line, nothing left behind
        raise SeqlabError(f"torch.onnx could not export model.name={family} ({type(e).__name__}: "
                          f"{str(e).splitlines()[0][:200]})") from None
    return {"format": "onnx", "family": family, "inputs": ["token", *names], "opset": OPSET,
            "state_shapes": json.loads(meta["state_shapes"])}
