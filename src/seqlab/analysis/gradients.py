"""How gradients flow back through time: ‖∂L_T/∂h_k‖ for k = T … 1, and the Jacobian products.

Bengio, Simard & Frasconi (1994) and Pascanu, Mikolov & Bengio (2013): the gradient of a
loss at the last step T with respect to an earlier state is a product of Jacobians,

    ∂L_T/∂h_k = ∂L_T/∂h_T · ∏_{i=k+1..T} ∂h_i/∂h_{i-1},

whose norm shrinks (vanishes) or grows (explodes) roughly geometrically with T − k — for
the Elman net at the rate of the recurrent matrix's largest singular value times the
nonlinearity's slope. Gated cells (LSTM, GRU) add paths along which the product stays
near 1. Here L_T = vᵀ h_T for a fixed random unit vector v, on random inputs, so the
numbers depend on the cell and its weights only.

Dimension legend: B batch, T time, I input size, H hidden units.
"""
from __future__ import annotations

import argparse
import json
import sys

import torch
from torch import Tensor

from seqlab import SeqlabError
from seqlab.config import ModelConfig
from seqlab.io import Output
from seqlab.models.body import cell_factory, init_recurrent
from seqlab.training.plots import pyplot, save_figure

CELLS = ("rnn", "lstm", "gru")


def make_cell(name: str, input_size: int, hidden_size: int, recurrent_init: str = "default"):
    """A seqlab cell by model name, initialised as a language model's would be."""
    if name not in CELLS:
        raise SeqlabError(f"gradient flow is measured for {', '.join(CELLS)}; got {name!r}")
    cell = cell_factory(ModelConfig(name=name))(input_size, hidden_size)
    if recurrent_init != "default":
        init_recurrent(cell.weight_hh.data, hidden_size, recurrent_init)
    return cell


def run_states(cell, x: Tensor) -> tuple[list[Tensor], Tensor]:
    """x (B, T, I) -> ([h_1 … h_T] each (B, H), requiring grad), from a zero state."""
    projected = cell.project(x)                                                     # (B, T, G*H)
    state = cell.init_state(x.size(0), x)
    hs = []
    for t in range(x.size(1)):
        _, state = cell.step(projected[:, t], state)
        h = state[0] if isinstance(state, tuple) else state                         # (B, H)
        h.retain_grad()
        hs.append(h)
    return hs, projected


def gradient_norms(cell, x: Tensor, v: Tensor) -> Tensor:
    """(T,) mean over the batch of ‖∂(vᵀ h_T)/∂h_k‖ for k = 1 … T (index k − 1)."""
    hs, _ = run_states(cell, x)
    (hs[-1] @ v).sum().backward()
    return torch.stack([h.grad.norm(dim=-1).mean() for h in hs])


def jacobian_norms(cell, x: Tensor) -> Tensor:
    """(T,) spectral norm of ∂h_T/∂h_k = ∏ ∂h_i/∂h_{i-1} for the first sequence of the batch."""
    hs, _ = run_states(cell, x[:1])
    H = hs[-1].size(-1)
    rows = []
    for j in range(H):                                  # row j of every ∂h_T/∂h_k at once
        grads = torch.autograd.grad(hs[-1][0, j], hs, retain_graph=True, allow_unused=True)
        rows.append(torch.stack([g[0] if g is not None else torch.zeros(H, dtype=x.dtype) for g in grads]))
    jac = torch.stack(rows, dim=1)                                                  # (T, H, H)
    return torch.linalg.matrix_norm(jac, ord=2).detach()


def gradient_flow(cells=CELLS, hidden_size: int = 64, steps: int = 100, batch_size: int = 16,
                  recurrent_init: str = "default", seed: int = 0) -> dict[str, dict]:
    """Per cell: gradient norms, Jacobian-product norms (both (T,), index k − 1) and the
    spectral norm of each gate's recurrent matrix, for fresh cells on random inputs."""
    out = {}
    for name in cells:
        torch.manual_seed(seed)
        cell = make_cell(name, hidden_size, hidden_size, recurrent_init).double()
        x = torch.randn(batch_size, steps, hidden_size, dtype=torch.float64)
        v = torch.nn.functional.normalize(torch.randn(hidden_size, dtype=torch.float64), dim=0)
        blocks = cell.weight_hh.detach().split(hidden_size, dim=0)                  # (H, H) per gate
        out[name] = {"gradient": gradient_norms(cell, x, v).tolist(),
                     "jacobian": jacobian_norms(cell, x).tolist(),
                     "recurrent_spectral_norms": [float(torch.linalg.matrix_norm(b, ord=2)) for b in blocks]}
    return out


def plot_gradient_flow(path, flow: dict[str, dict], title: str = "") -> None:
    """Two panels, log scale: ‖∂L_T/∂h_k‖ and ‖∏ ∂h_i/∂h_{i-1}‖ against T − k. Written atomically."""
    plt = pyplot()
    fig, axes = plt.subplots(1, 2, figsize=(10, 4), dpi=100)
    for name, f in flow.items():
        for ax, key in zip(axes, ("gradient", "jacobian")):
            values = f[key][::-1]                                                    # T − k = 0, 1, ...
            ax.semilogy(range(len(values)), [max(v, 1e-300) for v in values], label=name)
    axes[0].set(xlabel="steps back from T (T − k)", ylabel="‖∂L_T / ∂h_k‖", title="gradient reaching h_k")
    axes[1].set(xlabel="steps back from T (T − k)", ylabel="spectral norm", title="‖∂h_T / ∂h_k‖ (first sequence)")
    for ax in axes:
        ax.grid(alpha=0.3, which="both")
        ax.legend(fontsize=8)
    save_figure(fig, path, title)


# -- command line: seqlab analyze gradients ----------------------------------------------------

def build_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(
        prog="seqlab analyze gradients", formatter_class=argparse.RawDescriptionHelpFormatter,
        description="For fresh cells on random inputs: the norm of dL_T/dh_k for k = T..1 with\n"
                    "L_T = v . h_T, and the spectral norm of the Jacobian product dh_T/dh_k\n"
                    "(Bengio et al. 1994; Pascanu et al. 2013), on one log-scale figure.",
        epilog="example:\n  seqlab analyze gradients --steps 100 --out gradients.png")
    p.add_argument("--cells", nargs="+", default=["rnn", "lstm", "gru"], help="cells to compare (default: rnn lstm gru)")
    p.add_argument("--hidden", type=int, default=64, help="hidden units (default: 64)")
    p.add_argument("--steps", type=int, default=100, help="sequence length T (default: 100)")
    p.add_argument("--init", default="default", choices=["default", "orthogonal", "identity"],
                   help="recurrent weight initialisation (default: default)")
    p.add_argument("--seed", type=int, default=0, help="random seed (default: 0)")
    p.add_argument("--out", default="gradients.png", help="PNG to write (default: gradients.png)")
    p.add_argument("--json", action="store_true", help="also print every norm as JSON")
    p.add_argument("--overwrite", action="store_true", help="replace the files to write if they exist (default: refuse)")
    return p


def main(argv: list[str]) -> int:
    args = build_parser().parse_args(argv[1:] if argv and argv[0] == "gradients" else argv)
    out = Output(args.out, "--out", overwrite=args.overwrite)
    if args.hidden <= 0 or args.steps <= 1:
        raise SeqlabError("--hidden must be greater than 0 and --steps greater than 1")
    flow = gradient_flow(args.cells, args.hidden, args.steps, recurrent_init=args.init, seed=args.seed)
    plot_gradient_flow(out, flow, title=f"gradient flow back through {args.steps} steps, hidden {args.hidden}, "
                                             f"{args.init} recurrent init")
    for name, f in flow.items():
        norms = ", ".join(f"{n:.2f}" for n in f["recurrent_spectral_norms"])
        print(f"{name:>5}: |dL/dh_T| {f['gradient'][-1]:.3g} -> |dL/dh_1| {f['gradient'][0]:.3g}; "
              f"|dh_T/dh_1| {f['jacobian'][0]:.3g}; spectral norm of W_hh per gate: {norms}")
    if args.json:
        print(json.dumps(flow))
    print(f"plot: {args.out}", file=sys.stderr)
    return 0
