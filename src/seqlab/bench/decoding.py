"""`seqlab bench decoding`: batch-1 generation from recurrent language models against the
roofline of their arithmetic, on one CPU thread.

Every generated token needs, per layer, one matrix-vector product with the layer's input and
recurrent weights [W_ih W_hh] ((G*H) x (I+H)), and one with the output layer (V x H). The
roofline is the time of exactly those products (torch.mv on contiguous weights, measured in
the same run); a decoder "at the speed of the arithmetic" reaches a large fraction of it.

Rows, each timed through `decode.sampling.generate` (sampling at temperature 0.8, the way
`seqlab sample` draws) and greedily, in rounds that interleave every row:
- the demo LSTM (1 x 384, embedding 64, 88 symbols) and a 2 x 512 LSTM, each three ways: the
  step and the draw as one native call each (models/kernels/native/decode.cpp, what seqlab
  runs when its kernels are built); PyTorch's fused modules stepped by hand on cached
  weights, one ATen call per operation (models/kernels/fused_step.py, what runs without a
  C++ compiler); and stepped through nn.LSTM itself (what seqlab did first);
- a GRU 1 x 384 (native step, and the ATen step) and a layer-normalised LSTM 1 x 384 (seqlab's own cells);
- the demo LSTM drawing 16 samples as one batch (`seqlab sample --num-samples 16`), in
  tokens per second summed over the samples.
Weights are random (speed does not depend on them).
"""
from __future__ import annotations

import statistics
import sys
import time

import torch

from seqlab.bench.common import bench_parser, commit, machine, provenance, write_report
from seqlab.config import ModelConfig
from seqlab.decode.sampling import generate, generate_batch
from seqlab.models import build_model
from seqlab.models.kernels import native

VOCAB = 88      # the demo corpus's symbols, specials included


def make_models() -> dict[str, tuple[torch.nn.Module, bool]]:
    """name -> (model, native kernels on)."""
    torch.manual_seed(0)
    specs = {
        "demo LSTM 1x384": ModelConfig(name="lstm", embedding_size=64, hidden_size=384, num_layers=1, dropout=0.0),
        "LSTM 2x512": ModelConfig(name="lstm", embedding_size=64, hidden_size=512, num_layers=2, dropout=0.0),
        "GRU 1x384": ModelConfig(name="gru", embedding_size=64, hidden_size=384, num_layers=1, dropout=0.0),
        "layer-norm LSTM 1x384 (seqlab cells)": ModelConfig(name="lstm", embedding_size=64, hidden_size=384,
                                                            num_layers=1, dropout=0.0, layer_norm=True),
    }
    models = {}
    for name, cfg in specs.items():
        model = build_model(cfg, VOCAB).eval()
        models[name] = (model, True)
        if name in ("demo LSTM 1x384", "LSTM 2x512", "GRU 1x384"):
            models[name + ", ATen step (no C++ compiler)"] = (model, False)
            if cfg.name == "lstm":
                before = build_model(cfg, VOCAB).eval()
                before.load_state_dict(model.state_dict())
                before.fast_step = False
                models[name + ", through nn.LSTM (first)"] = (before, False)
    return models


def roofline_seconds(model: torch.nn.Module, repeats: int = 200) -> float:
    """Median time of the matrix-vector products one token needs (batch 1)."""
    mats = []
    for name, p in model.named_parameters():
        if ".weight_ih" in name or name.endswith("weight_ih"):
            hh = dict(model.named_parameters())[name.replace("weight_ih", "weight_hh")]
            mats.append(torch.cat([p.detach(), hh.detach()], 1).contiguous())        # (G*H, I+H)
    mats.append(model.head.weight.detach().contiguous())                             # (V, H)
    vecs = [torch.randn(m.size(1)) for m in mats]
    times = []
    with torch.no_grad():
        for _ in range(repeats):
            start = time.perf_counter()
            for m, v in zip(mats, vecs):
                torch.mv(m, v)
            times.append(time.perf_counter() - start)
    return statistics.median(times)


def tokens_per_second(model: torch.nn.Module, tokens: int, greedy: bool, samples: int = 1) -> float:
    prime = [5, 6, 7, 8]
    generator = torch.Generator().manual_seed(0)
    start = time.perf_counter()
    if samples == 1:
        for _ in generate(model, prime, tokens, greedy=greedy, temperature=0.8, generator=generator):
            pass
    else:
        generate_batch(model, prime, tokens, samples, temperature=0.8, generator=generator)
    return tokens * samples / (time.perf_counter() - start)


def run_decoding(out: str, repeats: int, tokens: int, command: str) -> dict:
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    try:
        models = make_models()
        timed: dict[str, dict[str, list[float]]] = {n: {"sample": [], "greedy": [], "roofline": []} for n in models}
        batch: list[float] = []
        for round_ in range(repeats):
            names = list(models) if round_ % 2 == 0 else list(reversed(models))
            for name in names:
                model, kernels = models[name]
                timed[name]["roofline"].append(roofline_seconds(model))
                with native.enabled(kernels):
                    timed[name]["sample"].append(tokens_per_second(model, tokens, greedy=False))
                    timed[name]["greedy"].append(tokens_per_second(model, tokens, greedy=True))
            batch.append(tokens_per_second(models["demo LSTM 1x384"][0], tokens, greedy=False, samples=16))
            print(f"round {round_ + 1}/{repeats} done", flush=True)
    finally:
        torch.set_num_threads(threads)
    rows = []
    for name, t in timed.items():
        roof = 1.0 / statistics.median(t["roofline"])
        sample, greedy = statistics.median(t["sample"]), statistics.median(t["greedy"])
        rows.append({"model": name, "native": models[name][1] and native.available(), "sample_tokens_per_s": sample,
                     "greedy_tokens_per_s": greedy, "roofline_tokens_per_s": roof, "sample_fraction": sample / roof,
                     "greedy_fraction": greedy / roof, "runs": t})
    report = {"rows": rows, "native": native.available(), "batch16_tokens_per_s": statistics.median(batch), "batch16_runs": batch,
              "repeats": repeats, "tokens": tokens, "machine": machine(), "commit": commit(),
              "date": time.strftime("%Y-%m-%d"), "command": command}
    return write_report(out, report, markdown)


def markdown(r: dict) -> str:
    rows = "".join(f"| {row['model']} | {row['sample_tokens_per_s']:,.0f} | {row['greedy_tokens_per_s']:,.0f} | "
                   f"{row['roofline_tokens_per_s']:,.0f} | **{row['sample_fraction']:.0%}** | {row['greedy_fraction']:.0%} |\n"
                   for row in r["rows"])
    return (
        "# Batch-1 generation against the roofline of its arithmetic\n\n"
        f"{r['tokens']} tokens per measurement from a 4-token prime, one CPU thread, random weights, "
        f"{VOCAB} symbols; medians of {r['repeats']} rounds that interleave every row. Roofline: the "
        "matrix-vector products one token needs ([W_ih W_hh] per layer, then the output layer), timed "
        "with torch.mv in the same run. Sampling is at temperature 0.8 (softmax, then the inverse "
        "cumulative distribution at a uniform number), as `seqlab sample` draws. Rows without a "
        "path named run seqlab's native kernels where they apply (the LSTM's and the GRU's step, and the draw; "
        f"built on this machine: {'yes' if r.get('native', True) else 'NO'}).\n\n"
        "| model | sampling tokens/s | greedy tokens/s | roofline tokens/s | sampling / roofline | "
        "greedy / roofline |\n|---|---:|---:|---:|---:|---:|\n" + rows +
        f"\nThe demo LSTM drawing 16 samples as one batch (`seqlab sample --num-samples 16`): "
        f"{r['batch16_tokens_per_s']:,.0f} tokens/s over all samples.\n\n"
        "Acceptance (issue 14): at least 50 % of the roofline at batch 1 on one thread for the demo "
        "LSTM and the 2 x 512 LSTM.\n\n" + provenance(r, threads=1))


def main(argv=None) -> int:
    p = bench_parser("decoding", __doc__, "benchmarks/decoding")
    p.add_argument("--repeats", type=int, default=5, help="rounds, every row in each")
    p.add_argument("--tokens", type=int, default=300, help="tokens per measurement")
    args = p.parse_args(argv)
    if args.repeats < 1 or args.tokens < 2:
        p.error("--repeats must be at least 1 and --tokens at least 2")
    command = f"seqlab bench decoding --out {args.out} --repeats {args.repeats} --tokens {args.tokens}"
    run_decoding(args.out, args.repeats, args.tokens, command)
    return 0


if __name__ == "__main__":
    sys.exit(main())
