"""`seqlab bench cells`: does every recurrent cell learn? One short character-model run
per cell on the same data and the same wall-clock budget; validation bits per character.

Same corpus and split for every row (Shakespeare when fetched, else a generated stand-in,
named as such in the table), same size (embedding 32, one layer of `hidden`), same
optimiser. The budget is time, not updates, so a cell whose path is slower does fewer
updates: the table shows both.
"""
from __future__ import annotations

from seqlab import SeqlabError
from seqlab.bench.common import bench_parser
from seqlab.bench.grid import run_grid

CELLS: dict[str, list[str]] = {
    "rnn (Elman, tanh)": ["model.name=rnn"],
    "rnn (Elman, relu, identity init)": ["model.name=rnn", "model.nonlinearity=relu", "model.recurrent_init=identity"],
    "jordan": ["model.name=jordan"],
    "lstm": ["model.name=lstm"],
    "lstm, peephole": ["model.name=lstm", "model.peephole=true"],
    "lstm, coupled gates": ["model.name=lstm", "model.coupled=true"],
    "lstm, layer norm": ["model.name=lstm", "model.layer_norm=true"],
    "lstm, variational + recurrent dropout": ["model.name=lstm", "model.variational=true", "model.dropout=0.1",
                                              "model.recurrent_dropout=0.1"],
    "lstm, zoneout": ["model.name=lstm", "model.zoneout=0.1"],
    "gru (PyTorch form)": ["model.name=gru"],
    "gru (Cho form)": ["model.name=gru", "model.gru_form=cho"],
    "gru, layer norm": ["model.name=gru", "model.layer_norm=true"],
    "minGRU (parallel scan)": ["model.name=mingru"],
    "minLSTM (parallel scan)": ["model.name=minlstm"],
}


def run_cells(out: str, seconds: float = 60.0, hidden: int = 128, only: list[str] | None = None) -> dict:
    shared = [f"model.hidden_size={hidden}", "model.embedding_size=32", "model.num_layers=1", "model.dropout=0"]
    return run_grid("cells", "does every recurrent cell learn? Same data, same time budget", CELLS, shared,
                    seconds, f"seqlab bench cells --seconds {seconds:g} --hidden {hidden}", out, only)


def main(argv: list[str] | None = None) -> int:
    p = bench_parser("cells", __doc__, "benchmarks/cells")
    p.add_argument("--seconds", type=float, default=60.0, help="training time per cell")
    p.add_argument("--hidden", type=int, default=128, help="hidden units, one layer")
    p.add_argument("--only", nargs="*", default=None, help="run only the cells whose name contains one of these")
    a = p.parse_args(argv)
    if a.seconds <= 0 or a.hidden <= 0:
        raise SeqlabError("--seconds and --hidden must be greater than 0")
    run_cells(a.out, seconds=a.seconds, hidden=a.hidden, only=a.only)
    return 0
