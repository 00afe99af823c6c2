"""Every option the config accepts either changes what is trained or computed, or is refused
before training in one line (issue 16): for every task, every model it builds, and every
model.*, task.* and stream-only train.* option set away from its value in a small working
config. "Changes" is judged against the same config without the option, built from the same
seed: the weights' names and shapes, their initial values, the modules that compute, the
task's vocabularies and labels, the loss and gradient of the first training batch, and the
validation (and, for the example tasks, final-decoding) metrics. An option none of these
see is dropped silently, and the test names it.

(The other train.* options are the engine's and apply to every task alike: tests/training/.)"""
from __future__ import annotations

import dataclasses
import json
import math

import numpy as np
import pytest
import torch

from seqlab import SeqlabError
from seqlab.config import Config, ModelConfig, TaskConfig, apply, load_config, parse_overrides
from seqlab.models.base import is_count_model
from seqlab.registry import get, names
from seqlab.training.checkpoint import RunDir
from seqlab.training.distributed import World
from seqlab.training.engine import make_task
from seqlab.training.task import STREAM_OPTIONS

from taskdata import TASKS, data_for

# a value away from the default (and from SMALL) for every option
MODEL_ALT = {"embedding_size": 12, "hidden_size": 12, "num_layers": 3, "dropout": 0.3, "tie_weights": True,
             "forget_bias": 2.5, "nonlinearity": "relu", "peephole": True, "coupled": True, "layer_norm": True,
             "gru_form": "cho", "residual": True, "variational": True, "recurrent_dropout": 0.3, "zoneout": 0.3,
             "norm_stabilizer": 0.5, "recurrent_init": "orthogonal", "kernel_size": 2, "dilation_cycle": 2,
             "skip_channels": 8, "context": 3, "order": 2, "smoothing": "witten_bell", "add_k": 0.5, "impl": "loop",
             "chrono": 50, "recurrent_gain": 1.5, "channels": 8}
TASK_ALT = {"target": "score", "pooling": "mean", "bidirectional": False, "char_size": 4, "tagset": "full",
            "lowercase": True, "attention": "luong_dot", "sampling": "exponential", "sampling_k": 0.9,
            "sampling_c": 0.02, "sampling_min": 0.5, "beam_size": 1, "length_penalty": 2.0, "max_length": 3,
            "batching": "shuffle", "max_tokens": 40, "condition": "input", "horizon": 10, "transform": "log,12",
            "period": 6, "ar_order": 3, "length": 9, "train_examples": 150, "test_examples": 30, "noise": 0.9,
            "doubly_stochastic": 0.5, "speaker": False}
STREAM_ALT = {"bptt_steps": 7, "bptt_stride": 3, "eval_tokens": 50, "eval_batch_size": 2, "state_resets": 0.5}
# model options that make the small config, where the task's model honours them
SMALL = {"embedding_size": 16, "hidden_size": 16, "num_layers": 2, "dropout": 0.1, "context": 4, "order": 3}
NOT_HERE = {"elmo": "needs a trained biLM run: tests/tasks/test_bilm.py trains one and feeds it to tag and classify"}


def test_every_option_has_an_alternative_value_here():
    assert set(MODEL_ALT) == {f.name for f in dataclasses.fields(ModelConfig)} - {"name"}
    assert set(TASK_ALT) | set(NOT_HERE) == {f.name for f in dataclasses.fields(TaskConfig)} - {"name"}
    assert set(STREAM_ALT) == set(STREAM_OPTIONS)


def models_of(task: str) -> list[str]:
    return sorted(names("model")) if task == "lm" else list(get("task", task).models)


CASES = [(task, model) for task in TASKS for model in models_of(task)]


def small_config(task: str, model: str, tmp) -> list[str]:
    args = [a for a in data_for(task, tmp) if not a.startswith("model.")] + [f"model={model}", "train.max_steps=100"]
    if task in ("translate", "caption"):
        args += ["task.beam_size=5"]
    unchecked = apply(Config(), parse_overrides([f"task={task}", *args]))       # sizes come next
    honoured = get("task", task).honoured(unchecked)                  # a count model: no optimiser options
    args = [a for a in args if not a.startswith("train.") or a.split("=")[0][6:] in honoured["train"]]
    return args + [f"model.{k}={v}" for k, v in SMALL.items() if k in honoured["model"]]


def fingerprint(args: list[str], tmp) -> dict | str:
    """What a config trains and computes, or the one line that refuses it."""
    try:
        cfg = load_config(None, args)
        task = make_task(cfg)
        task.prepare(lambda m: None)
        torch.manual_seed(0)
        model = task.build_model()
    except SeqlabError as e:
        assert "\n" not in str(e), str(e)
        return str(e)
    cpu = torch.device("cpu")
    state = model.state_dict()
    seen = {"shapes": sorted((k, tuple(v.shape)) for k, v in state.items()),
            "values": [round(float(v.double().sum()), 9) for v in state.values() if v.is_floating_point()],
            "modules": sorted({type(m).__name__ for m in model.modules()}),
            # the code path: seqlab's layers run the sequence backward (fast) or per-step autograd
            "paths": [getattr(m, "fast", None) for m in model.modules()],
            "meta": json.dumps(task.meta(), sort_keys=True, default=str)}
    if is_count_model(model):
        run = RunDir(tmp / f"counts{len(list(tmp.iterdir()))}")
        run.path.mkdir()
        seen["fit"] = task.fit_counts(model, run, lambda m: None)
        return seen
    try:
        task.setup_training(World(), cpu)
    except SeqlabError as e:
        return str(e)
    model.train()
    torch.manual_seed(1)
    carry = task.start_carry(model)
    if carry is not None and task.epoch_length(0) > 1:    # a carried state, as mid-epoch (train.state_resets)
        with torch.no_grad():
            _, _, carry = task.train_loss(model, task.train_batch(0, 0, cpu), 49, carry)
    loss, n, _ = task.train_loss(model, task.train_batch(0, min(1, task.epoch_length(0) - 1), cpu), 50, carry)
    total = loss + getattr(model, "aux_loss", 0.0)
    total.backward()
    seen["loss"] = round(float(total.detach()), 7)
    seen["grad"] = round(math.fsum(float(p.grad.double().norm()) for p in model.parameters() if p.grad is not None), 6)
    model.eval()
    with torch.no_grad():
        seen["valid"] = task.validation(model, cpu)
        if hasattr(task, "collate"):                         # the example tasks' final decoding (beam search)
            seen["final"] = task.evaluate(model, task.splits["valid"], cpu, final=True)
        if hasattr(task, "translate") or hasattr(task, "caption"):   # and what it decodes, once it says more than <eos>
            model.train()
            optimizer = torch.optim.Adam(model.parameters(), lr=0.01)
            with torch.enable_grad():
                for step in range(30):
                    batch = task.train_batch(0, step % task.epoch_length(0), cpu)
                    optimizer.zero_grad()
                    task.train_loss(model, batch, step, None)[0].backward()
                    optimizer.step()
            model.eval()
            sources = [e[0] for e in task.splits["valid"] + task.splits["train"]]
            if hasattr(task, "caption"):
                seen["decoded"] = task.caption(model, np.stack(sources), cpu, cfg.task.beam_size, cfg.task.length_penalty)
                # the length penalty reaches the beam's scores even where a tiny model's words do not change
                from seqlab.decode import seq2seq
                from seqlab.tasks.caption import image_tensor
                x = image_tensor(np.stack(sources[:4]), cpu)
                seen["scores"] = [round(h[0].score, 6) for h in seq2seq.beam_search(
                    model, x, torch.ones(4, dtype=torch.long), cfg.task.beam_size, 20, cfg.task.length_penalty)]
            else:
                seen["decoded"] = task.translate(model, sources, cpu, cfg.task.beam_size, cfg.task.length_penalty)
    return seen


@pytest.mark.parametrize("task,model", CASES, ids=[f"{t}-{m}" for t, m in CASES])
def test_every_option_changes_the_run_or_is_refused(tmp_path, task, model):
    base_args = [f"task={task}", *small_config(task, model, tmp_path)]
    base = fingerprint(base_args, tmp_path)
    assert isinstance(base, dict), f"the small config itself is refused: {base}"
    options = [f"model.{k}={v}" for k, v in MODEL_ALT.items()] + [f"task.{k}={v}" for k, v in TASK_ALT.items()] \
        + [f"train.{k}={v}" for k, v in STREAM_ALT.items()]
    dropped, refused = [], 0
    for option in options:
        changed = fingerprint(base_args + [option], tmp_path)
        if isinstance(changed, str):
            refused += 1
        elif changed == base:
            dropped.append(option)
    assert not dropped, f"accepted but changed nothing: {', '.join(dropped)}"
    assert refused < len(options)          # (the small config's own options at least are honoured)
