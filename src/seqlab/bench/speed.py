"""Recurrent layer speed: seqlab's fast path (models/kernels/fast.py) against PyTorch's fused modules.

One layer, input size = hidden size, batch `batch`, `steps` time steps, float32. Each
candidate is timed on forward + backward: outputs summed as the loss, `backward()`, no
optimiser step; the input requires grad (as an embedding's output does), the initial state
is zeros. Throughput is tokens (batch x steps) per second.

Candidates
- nn.RNN, nn.LSTM, nn.GRU: PyTorch's fused modules, the baselines (on CPU, nn.LSTM runs
  oneDNN's fused RNN kernels; nn.RNN and nn.GRU run ATen's per-step loop).
- seqlab rnn / lstm / gru (model.impl=auto): the recurrent module a user's language model
  gets (models/recurrent.py builds it for model.name=rnn|lstm|gru, default options, one
  layer, this size), fed the same input: the standard cells as users run them, with the
  ratio to their own module.
- naive lstm: RecurrentLayer(LSTMCell), seqlab's per-step autograd loop.
- fast path, for every cell and option models/kernels/fast.py covers: `run_layer`, what
  RecurrentLayer computes (the input projection on oneDNN's product, then the hand-written
  BPTT); the layer-normalised LSTM and GRU included.
- fast lstm-variational: the LSTM with variational input dropout and recurrent dropout
  (one mask per sequence each, p = 0.25, drawn at every call as in training).
- On the CPU, where seqlab's fused C++ kernels are built (models/kernels/native), the LSTM rows run
  them, as users' models do, and every LSTM row is timed a second time on the Python fast
  path ("... (python)"): what runs on a machine without a C++ compiler.

Method: every candidate is warmed up, then `repeats` rounds each run every candidate once,
in an order rotated from round to round, so that drift in a shared machine's speed reaches
all of them alike. Reported: the median over rounds, and ratios of medians: each standard
cell's fast path and each seqlab model's module against its own PyTorch module (lstm /
nn.LSTM, gru / nn.GRU, elman tanh and rnn / nn.RNN) and every candidate against nn.LSTM.

    seqlab bench speed --out benchmarks/speed [--repeats 7 --batch 32 --steps 100 --hidden 256]
"""
from __future__ import annotations

import statistics
import sys
import time
from typing import Callable

import torch
from torch import nn

from seqlab.bench.common import bench_parser, commit, machine, provenance, write_report
from seqlab.config import ModelConfig
from seqlab.models.kernels import native
from seqlab.models.cells import ElmanCell, GRUCell, JordanCell, LSTMCell
from seqlab.models.kernels.fast import run_layer, supports
from seqlab.models.recurrent import RecurrentLM
from seqlab.models.stack import RecurrentLayer, sequence_mask

VARIATIONAL_P = 0.25

# name -> (make cell, own fused module for the ratio, or None)
FAST = {
    "lstm": (lambda h: LSTMCell(h, h), "nn.LSTM"),
    "lstm-peephole": (lambda h: LSTMCell(h, h, peephole=True), None),
    "lstm-coupled": (lambda h: LSTMCell(h, h, coupled=True), None),
    "lstm-peephole-coupled": (lambda h: LSTMCell(h, h, peephole=True, coupled=True), None),
    "gru": (lambda h: GRUCell(h, h, form="pytorch"), "nn.GRU"),
    "gru-cho": (lambda h: GRUCell(h, h, form="cho"), None),
    "elman-tanh": (lambda h: ElmanCell(h, h, "tanh"), "nn.RNN"),
    "elman-relu": (lambda h: ElmanCell(h, h, "relu"), None),
    "jordan": (lambda h: JordanCell(h, h), None),
    "lstm-layernorm": (lambda h: LSTMCell(h, h, layer_norm=True), None),
    "gru-layernorm": (lambda h: GRUCell(h, h, layer_norm=True), None),
}

# seqlab's standard language models (model.name), timed on the recurrent module they build
# with model.impl=auto -> own fused module for the ratio
MODELS = {"rnn": "nn.RNN", "lstm": "nn.LSTM", "gru": "nn.GRU"}


def model_module(name: str, hidden: int, impl: str = "auto") -> nn.Module:
    """The recurrent module of a one-layer seqlab language model (`model.name`, default
    options, embedding = hidden size): what `model.impl` picks for a user's model."""
    cfg = ModelConfig(name=name, embedding_size=hidden, hidden_size=hidden, num_layers=1, impl=impl)
    return RecurrentLM(cfg, vocab_size=2).rnn


def _candidates(batch: int, steps: int, hidden: int, device: str) -> dict[str, tuple[str, Callable[[], None], list]]:
    """name -> (path description, one forward + backward, the tensors whose .grad it fills)."""
    torch.manual_seed(0)
    x = torch.randn(batch, steps, hidden, device=device, requires_grad=True)
    out: dict[str, tuple[str, Callable[[], None], list]] = {}

    def fused(module: nn.Module):
        module = module.to(device)

        def run() -> None:
            y, _ = module(x)
            y.sum().backward()
        return run, [x, *module.parameters()]

    out["nn.RNN"] = ("PyTorch fused (baseline)", *fused(nn.RNN(hidden, hidden, batch_first=True)))
    out["nn.LSTM"] = ("PyTorch fused (baseline)", *fused(nn.LSTM(hidden, hidden, batch_first=True)))
    out["nn.GRU"] = ("PyTorch fused (baseline)", *fused(nn.GRU(hidden, hidden, batch_first=True)))
    for name in MODELS:
        module = model_module(name, hidden)
        out[f"seqlab {name}"] = (f"model.name={name} model.impl=auto: {type(module).__name__}", *fused(module))

    naive = RecurrentLayer(LSTMCell(hidden, hidden), fast=False).to(device)

    def run_naive() -> None:
        y, _ = naive(x, naive.cell.init_state(batch, x))
        y.sum().backward()
    out["naive lstm"] = ("seqlab autograd loop (RecurrentLayer)", run_naive, [x, *naive.parameters()])

    # Variational dropout (Gal & Ghahramani 2016) as training runs it: one mask per sequence on
    # the inputs and one on h_{t-1} inside the recurrence, drawn afresh at every call.
    varcell = LSTMCell(hidden, hidden).to(device)

    def run_variational() -> None:
        keep_in = sequence_mask(x, VARIATIONAL_P, (batch, 1, hidden))                   # (B, 1, H)
        keep_h = sequence_mask(x, VARIATIONAL_P, (batch, hidden))                       # (B, H)
        y, _ = run_layer(varcell, x * keep_in, varcell.init_state(batch, x), False, keep_h)
        y.sum().backward()
    out["fast lstm-variational"] = (f"seqlab fast path, variational + recurrent dropout {VARIATIONAL_P}",
                                    run_variational, [x, *varcell.parameters()])

    fused_cpp = device == "cpu" and native.available()
    for name, (make, _) in FAST.items():
        cell = make(hidden).to(device)

        def run(cell=cell) -> None:
            y, _ = run_layer(cell, x, cell.init_state(batch, x))
            y.sum().backward()
        if not supports(cell):
            out[name] = ("seqlab autograd loop (no fast path: fallback)", run, [x, *cell.parameters()])
        elif fused_cpp and isinstance(cell, LSTMCell):
            out[f"fast {name}"] = ("seqlab fused C++ loop (models/kernels/native)", run, [x, *cell.parameters()])
        else:
            out[f"fast {name}"] = ("seqlab fast path (hand-written BPTT)", run, [x, *cell.parameters()])
    if fused_cpp:
        # the LSTMs once more on the Python fast path, which runs where the C++ kernels cannot be built
        for name in [n for n in out if n.startswith("fast lstm")]:
            desc, run_cpp, tensors = out[name]

            def run_python(run_cpp=run_cpp) -> None:
                with native.enabled(False):
                    run_cpp()
            label = "seqlab fast path in Python (what runs without a C++ compiler)"
            out[f"{name} (python)"] = (label if "variational" not in name else f"{label}, {desc.split(', ')[-1]}",
                                       run_python, tensors)
    return out


def _own_module(name: str) -> str | None:
    """The PyTorch module a candidate's ratio is taken against: a standard cell's fast path's
    or a seqlab model's own; None for the rest."""
    if name.startswith("seqlab "):
        return MODELS.get(name.removeprefix("seqlab "))
    key = name.removeprefix("fast ")
    return FAST[key][1] if name.startswith("fast ") and key in FAST else None


def run_speed(out: str, repeats: int = 7, batch: int = 32, steps: int = 100, hidden: int = 256,
              device: str = "cpu", warmup: int = 2, threads: int = 0) -> dict:
    """Time every candidate; write <out>.json and <out>.md; print the Markdown; return the result.
    threads > 0 sets torch's intra-op threads (0: torch's default)."""
    if threads > 0:
        torch.set_num_threads(threads)
    cands = _candidates(batch, steps, hidden, device)
    names = list(cands)
    sync = torch.cuda.synchronize if device.startswith("cuda") else (lambda: None)

    def once(name: str) -> float:
        for p in cands[name][2]:
            p.grad = None
        sync()
        start = time.perf_counter()
        cands[name][1]()
        sync()
        return time.perf_counter() - start

    for name in names:
        for _ in range(warmup):
            once(name)
    seconds: dict[str, list[float]] = {name: [] for name in names}
    for r in range(repeats):
        k = r % len(names)
        for name in names[k:] + names[:k]:                       # rotated round-robin
            seconds[name].append(once(name))
        print(f"round {r + 1}/{repeats} done", file=sys.stderr, flush=True)

    tokens = batch * steps
    med_s = {n: statistics.median(s) for n, s in seconds.items()}
    med_tps = {n: tokens / med_s[n] for n in names}
    lstm_tps = med_tps["nn.LSTM"]
    rows = []
    for n in names:
        own = _own_module(n)
        rows.append({
            "name": n, "path": cands[n][0],
            "median_ms": 1000 * med_s[n], "median_tok_per_s": med_tps[n],
            "vs_own_module": (med_tps[n] / med_tps[own]) if own else None,
            "own_module": own,
            "vs_nn_lstm": med_tps[n] / lstm_tps,
        })
    command = (f"seqlab bench speed --out {out} --repeats {repeats} --batch {batch} "
               f"--steps {steps} --hidden {hidden} --device {device}" + (f" --threads {threads}" if threads > 0 else ""))
    result = {
        "benchmark": "speed",
        "question": "forward+backward throughput of one recurrent layer: seqlab's fast path vs PyTorch's fused modules",
        "command": command,
        "argv": sys.argv,
        "commit": commit(),
        "machine": machine(),
        "settings": {"batch": batch, "steps": steps, "hidden": hidden, "input_size": hidden, "layers": 1,
                     "dtype": "float32", "device": device, "repeats": repeats, "warmup": warmup,
                     "loss": "sum of outputs", "input_requires_grad": True, "optimizer": None,
                     "mkldnn_available": torch.backends.mkldnn.is_available()},
        "rows": rows,
        "seconds": seconds,
        "median_tok_per_s": med_tps,
        "ratios": {
            "vs_own_module": {r["name"]: r["vs_own_module"] for r in rows if r["vs_own_module"] is not None},
            "vs_nn_lstm": {r["name"]: r["vs_nn_lstm"] for r in rows},
        },
        "targets": {"standard cells vs own module": 0.95, "every variant vs nn.LSTM": 0.8},
        "date": time.strftime("%Y-%m-%d %H:%M"),
    }
    return write_report(out, result, markdown)


def markdown(r: dict) -> str:
    s = r["settings"]
    lines = [
        "# Recurrent layer speed: seqlab's fast path vs PyTorch's fused modules\n",
        f"One layer, input = hidden = {s['hidden']}, batch {s['batch']}, {s['steps']} steps, {s['dtype']} on "
        f"{s['device']}; forward + backward (loss = sum of outputs, input requires grad, no optimiser). "
        f"Median of {s['repeats']} rounds, candidates interleaved in rotated order, after {s['warmup']} warm-up runs each.\n",
        "| candidate | path | median ms | tokens/s | vs own module | vs nn.LSTM |",
        "|---|---|---:|---:|---:|---:|",
    ]
    for row in r["rows"]:
        own = f"{row['vs_own_module']:.3f} ({row['own_module']})" if row["vs_own_module"] is not None else ""
        lines.append(f"| {row['name']} | {row['path']} | {row['median_ms']:.1f} | {row['median_tok_per_s']:,.0f} | "
                     f"{own} | {row['vs_nn_lstm']:.3f} |")
    lines += [
        "",
        f"Targets: standard cells at least {r['targets']['standard cells vs own module']} of their own module; "
        f"every variant at least {r['targets']['every variant vs nn.LSTM']} of nn.LSTM.",
        "",
        provenance(r, machine_note=f"; oneDNN available: {s['mkldnn_available']}"),
    ]
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    p = bench_parser("speed", __doc__, "benchmarks/speed")
    p.add_argument("--repeats", type=int, default=7, help="timed rounds, candidates interleaved")
    p.add_argument("--batch", type=int, default=32, help="batch size")
    p.add_argument("--steps", type=int, default=100, help="time steps")
    p.add_argument("--hidden", type=int, default=256, help="hidden and input size")
    p.add_argument("--device", default="cpu", help="cpu or cuda")
    p.add_argument("--threads", type=int, default=0, help="torch intra-op threads; 0 keeps torch's default")
    a = p.parse_args(argv)
    run_speed(a.out, repeats=a.repeats, batch=a.batch, steps=a.steps, hidden=a.hidden, device=a.device,
              threads=a.threads)
    return 0


if __name__ == "__main__":
    sys.exit(main())
