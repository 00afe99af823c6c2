"""`seqlab bench generation`: fast generation with per-layer queues against recomputation.

    seqlab bench generation --out benchmarks/generation        (the command to wire into cli.py)
    python -m seqlab.bench.generation --out benchmarks/generation --repeats 5 --tokens 300

The convolutional models (TCN: Bai et al. 2018; WaveNet: van den Oord et al. 2016) keep, for
every causal convolution, the last (k − 1)·d columns of its input as state, so `step`
computes one new column per layer from its k taps: O(layers) per token (Paine et al. 2016,
"Fast Wavenet Generation Algorithm"). A generator without that state recomputes, for every
new token, `forward` over the last R (receptive field) tokens: the smallest window that
gives the same logits, and so the fair baseline (feeding the whole growing prefix would only
cost more). Both generators start from the same prompt of R random tokens, so that every
recomputation sees a full window, and pick greedily (argmax), batch 1, on the CPU:

    queues:     prime: forward(prompt[:-1]) -> state        (untimed, reported)
                token t: logits, state = step(x_t, state); x_{t+1} = argmax logits
    recompute:  token t: logits = forward(last R tokens, zero state)[-1]; x_{t+1} = argmax

1. Exactness. Per model: the two generators give the same tokens; the max |difference| of
   their logits over every generated token (float32, as timed; and float64 on the first
   `check_tokens` tokens, where the difference falls to rounding); and queues against ONE
   forward pass over the whole final sequence (prompt + generated), whose logits at each
   position are, by causality, those of a recomputation over the whole growing prefix.
2. Speed. `repeats` rounds, each timing both generators on `tokens` tokens, in an order
   alternated from round to round so that a shared machine's drift reaches both; reported:
   median tokens/s of each and the ratio of the medians. Acceptance: queues ≥ 20× faster
   at R ≥ 1024. Random weights (speed and exactness do not depend on training).
"""
from __future__ import annotations

import statistics
import sys
import time
from dataclasses import asdict, dataclass

import torch
from torch import Tensor, nn

from seqlab.bench.common import bench_parser, commit, machine, provenance, write_report
from seqlab.config import ModelConfig
from seqlab.models import build_model

VOCAB_SIZE = 64             # a character vocabulary's size


@dataclass
class Spec:
    """One model to measure: a name and the ModelConfig fields that differ from the defaults."""
    label: str
    name: str               # registry name: tcn or wavenet
    hidden_size: int
    num_layers: int
    kernel_size: int
    embedding_size: int = 32
    dilation_cycle: int = 10

    def config(self) -> ModelConfig:
        return ModelConfig(name=self.name, embedding_size=self.embedding_size, hidden_size=self.hidden_size,
                           num_layers=self.num_layers, kernel_size=self.kernel_size,
                           dilation_cycle=self.dilation_cycle, dropout=0.0)


def default_specs(channels=(128, 32)) -> list[Spec]:
    """TCN k = 3, 9 levels: R = 1 + 2·2·511 = 2045 (the slow test's model); WaveNet k = 2,
    dilations 1..512 in one cycle: R = 1 + 1·(1 + 1023) = 1025 (the paper's block)."""
    specs = []
    for c in channels:
        specs.append(Spec(f"tcn-{c}", "tcn", c, num_layers=9, kernel_size=3))
        specs.append(Spec(f"wavenet-{c}", "wavenet", c, num_layers=10, kernel_size=2, dilation_cycle=10))
    return specs


# -- the two generators ----------------------------------------------------------------------------

@torch.no_grad()
def generate_with_queues(model: nn.Module, prompt: Tensor, n: int) -> tuple[Tensor, Tensor, float]:
    """prompt (1, P) -> generated ids (n,), their logits (n, V), priming seconds."""
    start = time.perf_counter()
    _, state = model(prompt[:, :-1], model.init_state(1))                  # queues filled by the prompt
    primed = time.perf_counter() - start
    x = prompt[:, -1]                                                       # (1,)
    ids, logits = [], []
    for _ in range(n):
        out, state = model.step(x, state)                                   # (1, V)
        x = out.argmax(-1)
        ids.append(x)
        logits.append(out)
    return torch.cat(ids), torch.cat(logits), primed


@torch.no_grad()
def generate_by_recompute(model: nn.Module, prompt: Tensor, n: int, window: int) -> tuple[Tensor, Tensor]:
    """Each token from `forward` over the last `window` tokens, from zero state."""
    P = prompt.size(1)
    seq = torch.cat([prompt, prompt.new_zeros(1, n)], 1)                    # (1, P + n)
    logits = []
    for t in range(n):
        end = P + t
        out, _ = model(seq[:, max(0, end - window):end], model.init_state(1))   # (1, ≤window, V)
        out = out[:, -1]                                                    # (1, V)
        seq[:, end] = out.argmax(-1)
        logits.append(out)
    return seq[0, P:], torch.cat(logits)


@torch.no_grad()
def one_pass_logits(model: nn.Module, prompt: Tensor, generated: Tensor) -> Tensor:
    """Logits predicting each generated token from one forward pass over prompt + generated."""
    seq = torch.cat([prompt, generated[None, :-1]], 1)                      # (1, P + n − 1)
    out, _ = model(seq, model.init_state(1))
    return out[0, prompt.size(1) - 1:]                                      # (n, V)


# -- one model -------------------------------------------------------------------------------------

def _max_diff(a: Tensor, b: Tensor) -> float:
    return float((a.double() - b.double()).abs().max())


def measure(spec: Spec, tokens: int, repeats: int, check_tokens: int, seed: int = 0, log=print) -> dict:
    torch.manual_seed(seed)
    model = build_model(spec.config(), VOCAB_SIZE).eval()
    R = model.receptive_field
    prompt = torch.randint(0, VOCAB_SIZE, (1, R), generator=torch.Generator().manual_seed(seed + 1))

    # warm-up: allocator, kernels
    generate_with_queues(model, prompt, 3)
    generate_by_recompute(model, prompt, 1, R)

    queue_s, recompute_s, prime_s = [], [], []
    token_match, diff_recompute, diff_pass = True, 0.0, 0.0
    for r in range(repeats):
        for method in (("queues", "recompute") if r % 2 == 0 else ("recompute", "queues")):
            start = time.perf_counter()
            if method == "queues":
                q_ids, q_logits, primed = generate_with_queues(model, prompt, tokens)
                queue_s.append(time.perf_counter() - start - primed)
                prime_s.append(primed)
            else:
                r_ids, r_logits = generate_by_recompute(model, prompt, tokens, R)
                recompute_s.append(time.perf_counter() - start)
        token_match &= bool(torch.equal(q_ids, r_ids))
        diff_recompute = max(diff_recompute, _max_diff(q_logits, r_logits))
        diff_pass = max(diff_pass, _max_diff(q_logits, one_pass_logits(model, prompt, q_ids)))
        log(f"{spec.label}: round {r + 1}/{repeats}: queues {tokens / queue_s[-1]:.0f} tokens/s, "
            f"recompute {tokens / recompute_s[-1]:.1f} tokens/s")

    # float64: the remaining difference is rounding
    model64 = model.double()
    n64 = min(check_tokens, tokens)
    q64_ids, q64_logits, _ = generate_with_queues(model64, prompt, n64)
    r64_ids, r64_logits = generate_by_recompute(model64, prompt, n64, R)

    q_med, r_med = statistics.median(queue_s), statistics.median(recompute_s)
    return {
        "label": spec.label, "family": spec.name, "config": asdict(spec), "vocab_size": VOCAB_SIZE,
        "receptive_field": R, "parameters": sum(p.numel() for p in model.parameters()),
        "tokens": tokens, "prompt_tokens": R,
        "queue_seconds": queue_s, "recompute_seconds": recompute_s, "prime_seconds": prime_s,
        "queue_tokens_per_s": tokens / q_med, "recompute_tokens_per_s": tokens / r_med, "speedup": r_med / q_med,
        "same_tokens": token_match, "max_abs_diff_vs_recompute": diff_recompute,
        "max_abs_diff_vs_one_pass": diff_pass,
        "float64_tokens": n64, "float64_same_tokens": bool(torch.equal(q64_ids, r64_ids)),
        "float64_max_abs_diff_vs_recompute": _max_diff(q64_logits, r64_logits),
    }


def run_generation(out: str, repeats: int = 5, tokens: int = 300, threads: int = 1, check_tokens: int = 50,
                   specs: list[Spec] | None = None, command: str | None = None) -> dict:
    """Measure every spec (default: TCN and WaveNet at R ≥ 1024, 128 and 32 channels) and
    write `out`.json / `out`.md."""
    log = lambda m: print(m, file=sys.stderr, flush=True)  # noqa: E731
    previous = torch.get_num_threads()
    torch.set_num_threads(threads)
    try:
        rows = [measure(s, tokens, repeats, check_tokens, log=log) for s in (specs or default_specs())]
        report = {"benchmark": "generation", "commit": commit(), "machine": machine(),
                  "date": time.strftime("%Y-%m-%d"), "torch_threads": threads, "repeats": repeats,
                  "tokens": tokens, "batch_size": 1, "device": "cpu", "decoding": "greedy (argmax)",
                  "baseline": "forward over the last receptive_field tokens from zero state, per token",
                  "command": command or (f"seqlab bench generation --out {out} --repeats {repeats} "
                                         f"--tokens {tokens} --threads {threads}"),
                  "models": rows}
    finally:
        torch.set_num_threads(previous)
    return write_report(out, report, markdown)


def markdown(r: dict) -> str:
    rows = "".join(
        f"| {c['label']} | {c['receptive_field']:,} | {c['parameters']:,} | {c['queue_tokens_per_s']:,.0f} | "
        f"{c['recompute_tokens_per_s']:,.1f} | **{c['speedup']:,.0f}×** | {'yes' if c['same_tokens'] else 'NO'} | "
        f"{c['max_abs_diff_vs_recompute']:.1e} | {c['max_abs_diff_vs_one_pass']:.1e} | "
        f"{c['float64_max_abs_diff_vs_recompute']:.1e} |\n" for c in r["models"])
    configs = "".join(
        f"- {c['label']}: {c['family']}, hidden_size {c['config']['hidden_size']}, num_layers "
        f"{c['config']['num_layers']}, kernel_size {c['config']['kernel_size']}"
        + (f", dilation_cycle {c['config']['dilation_cycle']}" if c["family"] == "wavenet" else "")
        + f", embedding_size {c['config']['embedding_size']}, vocabulary {c['vocab_size']}, dropout 0; "
        f"receptive field {c['receptive_field']:,}; priming on the {c['prompt_tokens']:,}-token prompt "
        f"{statistics.median(c['prime_seconds']) * 1e3:.0f} ms (untimed)\n" for c in r["models"])
    return (
        "# Fast generation: per-layer queues against recomputation\n\n"
        f"{r['tokens']} tokens generated greedily, batch 1, CPU, {r['torch_threads']} torch thread(s), "
        f"from a prompt of R random tokens; medians of {r['repeats']} rounds with the two generators "
        "interleaved. Recompute = `forward` over the last R (receptive field) tokens for every new token, "
        "the least a generator without state must recompute.\n\n"
        "| model | receptive field R | parameters | queues tokens/s | recompute tokens/s | speed-up | "
        "same tokens | max abs diff (float32) | vs one full pass | max abs diff (float64) |\n"
        "|---|---:|---:|---:|---:|---:|:---:|---:|---:|---:|\n" + rows + "\n"
        "Acceptance: queues at least 20× faster than recomputation at R ≥ 1024, with the same outputs. "
        "Max abs diff: the largest |difference| of the logits of any generated token between the queue "
        "generator and the recomputing one (float32, every token of every round); 'vs one full pass': against "
        "one forward pass over the whole final sequence, i.e. a recomputation over the whole growing prefix; "
        f"float64: the same models in double precision on the first {r['models'][0]['float64_tokens']} tokens.\n\n"
        "Models (random weights):\n\n" + configs + "\n" + provenance(r, threads=r["torch_threads"]))


def main(argv=None) -> int:
    p = bench_parser("generation", __doc__, "benchmarks/generation")
    p.add_argument("--repeats", type=int, default=5, help="timed rounds, the two generators interleaved")
    p.add_argument("--tokens", type=int, default=300, help="tokens generated per round")
    p.add_argument("--threads", type=int, default=1, help="torch CPU threads")
    p.add_argument("--check-tokens", type=int, default=50, help="tokens of the float64 exactness check")
    p.add_argument("--channels", type=int, nargs="+", default=[128, 32], help="model sizes (hidden channels)")
    args = p.parse_args(argv)
    if min(args.repeats, args.tokens, args.threads, args.check_tokens, *args.channels) < 1:
        p.error("--repeats, --tokens, --threads, --check-tokens and --channels must be at least 1")
    command = (f"seqlab bench generation --out {args.out} --repeats {args.repeats} --tokens {args.tokens} "
               f"--threads {args.threads} --check-tokens {args.check_tokens} "
               f"--channels {' '.join(map(str, args.channels))}")
    run_generation(args.out, args.repeats, args.tokens, args.threads, args.check_tokens,
                   default_specs(tuple(args.channels)), command=command)
    return 0


if __name__ == "__main__":
    sys.exit(main())
