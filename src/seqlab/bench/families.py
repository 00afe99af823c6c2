"""`seqlab bench families`: the lectures' model families on one table — smoothed n-grams of
order 1 to 10 (Kneser-Ney), the fixed-window MLP, the TCN and the LSTM, each given the same
CPU time budget on the same Shakespeare split (issue 4's comparison).
"""
from __future__ import annotations

from seqlab import SeqlabError
from seqlab.bench.common import bench_parser
from seqlab.bench.grid import run_grid

FAMILIES: dict[str, list[str]] = {
    **{f"{n}-gram, interpolated Kneser-Ney": ["model.name=ngram", f"model.order={n}", "model.smoothing=kneser_ney"]
       for n in range(1, 11)},
    "fixed-window MLP (Bengio et al. 2003), 16 tokens, 2 x 512": [
        "model.name=window", "model.context=16", "model.num_layers=2", "model.hidden_size=512",
        "model.embedding_size=32"],
    "TCN (Bai et al. 2018), 6 blocks x 128, kernel 3": [
        "model.name=tcn", "model.num_layers=6", "model.hidden_size=128", "model.kernel_size=3",
        "model.embedding_size=32"],
    "LSTM, 1 x 384": ["model.name=lstm", "model.num_layers=1", "model.hidden_size=384", "model.embedding_size=64"],
}


def run_families(out: str, seconds: float = 180.0, only: list[str] | None = None) -> dict:
    return run_grid("families", "n-grams, fixed-window MLP, TCN and LSTM on the same budget", FAMILIES,
                    ["model.dropout=0"], seconds, f"seqlab bench families --seconds {seconds:g}", out, only)


def main(argv: list[str] | None = None) -> int:
    p = bench_parser("families", __doc__, "benchmarks/families")
    p.add_argument("--seconds", type=float, default=180.0, help="training time per neural model")
    p.add_argument("--only", nargs="*", default=None, help="run only the rows whose name contains one of these")
    a = p.parse_args(argv)
    if a.seconds <= 0:
        raise SeqlabError("--seconds must be greater than 0")
    run_families(a.out, seconds=a.seconds, only=a.only)
    return 0
