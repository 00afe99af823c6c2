"""The one recurrent builder: L layers of the configured cell, D directions, over (B, T, I)
inputs, used by every model with a recurrent part (the language models, the encoders of
the classifier, tagger and seq2seq, the biLM, the conditional LM, the forecasters and the
sequence benchmarks). Options mean the same everywhere, and an option is honoured wherever
a recurrent part is built.

    rnn = build_recurrent(cfg, input_size, bidirectional=False)       # an nn.Module
    init_recurrent_weights(rnn, cfg)                                   # model.recurrent_init
    out, state = run_recurrent(rnn, x, state, lengths)                 # (B, T, D*H), batch first

Which path runs follows `model.impl`: PyTorch's fused nn.RNN / nn.LSTM / nn.GRU (oneDNN on
CPU, cuDNN on GPU) whenever they compute the configured cell (`auto`), seqlab's cells
(models/cells.py, stack.py; the C++ or Python sequence backward, or per-step autograd with
`loop`) otherwise; mingru and minlstm are the parallel-scan stacks of models/minimal.py.
The returned module is the one that holds the weights, so a model that keeps it as
`self.rnn` has the weight names PyTorch's modules give (rnn.weight_ih_l0, ...).

State is batch first everywhere in seqlab: (B, L*D, H), or a pair for the LSTM.
"""
from __future__ import annotations

import torch
from torch import Tensor, nn
from torch.nn.utils.rnn import pack_padded_sequence, pad_packed_sequence

from seqlab import SeqlabError
from seqlab.config import ModelConfig
from seqlab.models.cells import ElmanCell, GRUCell, JordanCell, LSTMCell
from seqlab.models.kernels.fused import MODULES
from seqlab.models.minimal import MinimalStack
from seqlab.models.stack import RecurrentStack

RECURRENT_NAMES = ("rnn", "jordan", "lstm", "gru", "mingru", "minlstm")
_CELL = ("hidden_size", "num_layers", "dropout", "impl", "layer_norm", "residual", "variational",
         "recurrent_dropout", "zoneout", "recurrent_init", "recurrent_gain")
# the model.* options a recurrent part of each cell honours (dropout: between its layers)
BODY_OPTIONS = {"rnn": _CELL + ("nonlinearity",), "jordan": _CELL, "lstm": _CELL + ("forget_bias", "peephole", "coupled"),
                "gru": _CELL + ("gru_form",), "mingru": ("hidden_size", "num_layers", "dropout"),
                "minlstm": ("hidden_size", "num_layers", "dropout")}


def body_options(cfg: ModelConfig) -> tuple[str, ...]:
    """The model.* options a recurrent part built from `cfg` honours: its cell's, less those
    that act between layers when there is one layer (dropout, residual) or nothing to drop
    (variational masks need dropout between layers). A model that drops elsewhere too (its
    embedding, its output) adds model.dropout itself."""
    unused = set()
    if cfg.num_layers < 2:
        unused |= {"dropout", "residual", "variational"}
    if not cfg.dropout:
        unused.add("variational")
    chrono = ("chrono",) if cfg.name in ("lstm", "gru") and uses_fused(cfg) else ()
    return tuple(o for o in BODY_OPTIONS[cfg.name] if o not in unused) + chrono


def fused_possible(m: ModelConfig) -> bool:
    """Does nn.RNN / nn.LSTM / nn.GRU compute exactly this model?"""
    return (m.name in ("rnn", "lstm", "gru") and m.gru_form == "pytorch"
            and not (m.peephole or m.coupled or m.layer_norm or m.residual or m.variational
                     or m.recurrent_dropout or m.zoneout))


def check_recurrent(m: ModelConfig) -> None:
    """The rules of the recurrent options (the recurrent families' `check`, run by checks.validate)."""
    choices = {"nonlinearity": ("tanh", "relu"), "gru_form": ("pytorch", "cho"), "impl": ("auto", "fused", "fast", "loop"),
               "recurrent_init": ("default", "orthogonal", "identity")}
    for key in ("recurrent_dropout", "zoneout"):
        if not 0.0 <= getattr(m, key) < 1.0:
            raise SeqlabError(f"model.{key} must be in [0, 1), got {getattr(m, key)}")
    if not m.recurrent_gain > 0:
        raise SeqlabError(f"model.recurrent_gain must be greater than 0, got {m.recurrent_gain}")
    if m.norm_stabilizer < 0:
        raise SeqlabError(f"model.norm_stabilizer must be 0 or more, got {m.norm_stabilizer}")
    for key, valid in choices.items():
        if getattr(m, key) not in valid:
            raise SeqlabError(f"model.{key} must be one of {', '.join(valid)}; got {getattr(m, key)!r}")
    for key, cell in (("peephole", "lstm"), ("coupled", "lstm")):
        if getattr(m, key) and m.name != cell:
            raise SeqlabError(f"model.{key} applies to model.name={cell}, not {m.name}")
    if m.nonlinearity != "tanh" and m.name != "rnn":
        raise SeqlabError(f"model.nonlinearity applies to model.name=rnn, not {m.name}")
    if m.gru_form != "pytorch" and m.name != "gru":
        raise SeqlabError(f"model.gru_form applies to model.name=gru, not {m.name}")
    if m.name in ("mingru", "minlstm"):
        unsupported = [k for k in ("layer_norm", "residual", "variational", "recurrent_dropout", "zoneout")
                       if getattr(m, k)] + (["recurrent_init"] if m.recurrent_init != "default" else []) \
            + (["recurrent_gain"] if m.recurrent_gain != 1.0 else [])
        if unsupported:
            raise SeqlabError(f"model.name={m.name} has no recurrent weights to apply "
                              f"{', '.join('model.' + k for k in unsupported)} to")
    if m.layer_norm and m.gru_form == "cho":
        raise SeqlabError("the layer-normalised GRU uses model.gru_form=pytorch")
    if m.impl == "fused" and not fused_possible(m):
        raise SeqlabError(f"model.impl=fused: PyTorch's fused modules have no {m.name} with these options; "
                          f"use model.impl=auto")


def cell_factory(cfg: ModelConfig):
    """(input_size, hidden_size) -> a seqlab cell with the configured options."""
    def make(input_size: int, hidden_size: int):
        if cfg.name == "rnn":
            return ElmanCell(input_size, hidden_size, cfg.nonlinearity, cfg.layer_norm)
        if cfg.name == "jordan":
            return JordanCell(input_size, hidden_size, cfg.layer_norm)
        if cfg.name == "lstm":
            return LSTMCell(input_size, hidden_size, cfg.peephole, cfg.coupled, cfg.layer_norm, cfg.forget_bias)
        return GRUCell(input_size, hidden_size, cfg.gru_form, cfg.layer_norm)
    return make


def uses_fused(cfg: ModelConfig) -> bool:
    """Will build_recurrent return PyTorch's fused module for `cfg`?"""
    return cfg.name in MODULES and (cfg.impl == "fused" or (cfg.impl == "auto" and fused_possible(cfg)))


def build_recurrent(cfg: ModelConfig, input_size: int, bidirectional: bool = False) -> nn.Module:
    """The recurrent layers of `cfg` (model.name, sizes, cell options) reading `input_size` features."""
    if cfg.name not in RECURRENT_NAMES:
        raise SeqlabError(f"model.name={cfg.name} is not a recurrent cell; use one of {', '.join(RECURRENT_NAMES)}")
    between = cfg.dropout if cfg.num_layers > 1 else 0.0
    if cfg.name in ("mingru", "minlstm"):   # Feng et al. 2024: parallel scan in training
        if bidirectional:
            raise SeqlabError(f"model.name={cfg.name} reads left to right only; use lstm or gru for a bidirectional part")
        return MinimalStack(cfg.name, input_size, cfg.hidden_size, cfg.num_layers, dropout=between)
    if uses_fused(cfg):
        extra = {"nonlinearity": cfg.nonlinearity} if cfg.name == "rnn" else {}
        rnn = MODULES[cfg.name](input_size, cfg.hidden_size, cfg.num_layers, batch_first=True, dropout=between,
                                bidirectional=bidirectional, **extra)
        set_forget_bias(rnn, cfg)
        return rnn
    return RecurrentStack(cell_factory(cfg), input_size, cfg.hidden_size, cfg.num_layers, dropout=between,
                          bidirectional=bidirectional, residual=cfg.residual, variational=cfg.variational,
                          recurrent_dropout=cfg.recurrent_dropout, zoneout=cfg.zoneout, fast=cfg.impl != "loop")


@torch.no_grad()
def set_forget_bias(rnn: nn.Module, cfg: ModelConfig) -> None:
    """A fused LSTM's (or nn.LSTMCell's) forget-gate bias to model.forget_bias (Gers et al. 2000;
    Jozefowicz et al. 2015): gates are stacked (i, f, g, o) and both bias vectors feed f, so each
    gets half. (seqlab's LSTMCell sets its own.)"""
    if not has_cell(cfg) or not isinstance(rnn, (nn.LSTM, nn.LSTMCell)):
        return
    H = cfg.hidden_size
    with torch.no_grad():
        for name, p in rnn.named_parameters():
            if name.startswith("bias"):
                p[H:2 * H].fill_(cfg.forget_bias / 2)


# -- what a recurrent state is: the one place that knows the LSTM carries a cell ------------------

def has_cell(cfg: ModelConfig) -> bool:
    """Does model.name's state carry a memory cell beside h (the LSTM's (h, c))?"""
    return cfg.name == "lstm"


def state_from_hidden(cfg: ModelConfig, h: Tensor):
    """The recurrent state whose hidden part is `h` (B, L, H): (h, zero cell) for the LSTM."""
    return (h, torch.zeros_like(h)) if has_cell(cfg) else h


def zero_state(cfg: ModelConfig, batch_size: int, layers: int, like: Tensor):
    """The initial state (B, layers, H) of zeros, a pair for the LSTM, on `like`'s device and dtype."""
    return state_from_hidden(cfg, like.new_zeros(batch_size, layers, cfg.hidden_size))


def hidden_of(state):
    """The hidden part h of a recurrent state (the LSTM's pair's first)."""
    return state[0] if isinstance(state, tuple) else state


def step_cell(cfg: ModelConfig, size_in: int) -> nn.Module:
    """One layer's PyTorch cell stepped by hand (nn.LSTMCell / GRUCell / RNNCell), for a decoder
    whose every step reads attention, with model.forget_bias applied as build_recurrent does."""
    H = cfg.hidden_size
    if has_cell(cfg):
        cell = nn.LSTMCell(size_in, H)
        set_forget_bias(cell, cfg)
        return cell
    if cfg.name == "gru":
        return nn.GRUCell(size_in, H)
    return nn.RNNCell(size_in, H, nonlinearity=cfg.nonlinearity)


def init_recurrent_weights(rnn: nn.Module, cfg: ModelConfig) -> None:
    """model.recurrent_init: orthogonal (Saxe et al. 2014) or identity (Le et al. 2015) recurrent
    weights, one (H, H) block per gate; 'default' leaves the module's own initialisation.
    model.recurrent_gain: the recurrent weights then multiplied by it.
    model.chrono: the fused LSTM's or GRU's gate biases chrono-initialised (chrono_init)."""
    if cfg.chrono and isinstance(rnn, (nn.LSTM, nn.GRU)):
        chrono_init(rnn, cfg.chrono)
    for name, p in rnn.named_parameters():
        if name.split(".")[-1].startswith("weight_hh"):
            if cfg.recurrent_init != "default":
                init_recurrent(p, cfg.hidden_size, cfg.recurrent_init)
            if cfg.recurrent_gain != 1.0:
                with torch.no_grad():
                    p.mul_(cfg.recurrent_gain)


def chrono_timescales(hidden_size: int, max_lag: int, generator: torch.Generator | None = None) -> Tensor:
    """Chrono initialisation (Tallec & Ollivier 2018, "Can recurrent neural networks warp time?"):
    log u, u ~ U[1, max_lag - 1], one per unit (H,). Used as the forget (LSTM) or keep (GRU
    update) gate bias, with its negative on the LSTM's input gate, it starts the units with
    memory time scales spread up to the longest dependency."""
    return torch.log(torch.rand(hidden_size, generator=generator) * max(max_lag - 2, 0) + 1)


@torch.no_grad()
def chrono_init(rnn: nn.LSTM | nn.GRU, max_lag: int) -> None:
    """Per unit and layer, on bias_ih (bias_hh's part 0): the LSTM's forget bias b_f = log U[1, max_lag - 1]
    and its input bias -b_f (gates i, f, g, o); the GRU's update bias b_z = log U[1, max_lag - 1]
    (gates r, z, n; h_t = (1 - z) n + z h_{t-1}, so z keeps)."""
    H = rnn.hidden_size
    for layer in range(rnn.num_layers):
        for suffix in ("", "_reverse")[: 2 if rnn.bidirectional else 1]:
            b_ih, b_hh = getattr(rnn, f"bias_ih_l{layer}{suffix}"), getattr(rnn, f"bias_hh_l{layer}{suffix}")
            keep = chrono_timescales(H, max_lag)                                   # (H,)
            b_ih[H:2 * H], b_hh[H:2 * H] = keep, 0.0
            if isinstance(rnn, nn.LSTM):
                b_ih[:H], b_hh[:H] = -keep, 0.0


@torch.no_grad()
def init_recurrent(weight: Tensor, hidden_size: int, how: str) -> None:
    """Orthogonal or identity init of each gate's (H, H) block of a recurrent weight."""
    for block in weight.split(hidden_size, dim=0):                          # (H, H) per gate
        if how == "orthogonal":
            nn.init.orthogonal_(block)
        else:
            block.copy_(torch.eye(hidden_size, dtype=weight.dtype, device=weight.device))


def run_recurrent(rnn: nn.Module, x: Tensor, state=None, lengths: Tensor | None = None) -> tuple[Tensor, object]:
    """x (B, T, I), state batch first or None (zeros), lengths (B,) or None -> (B, T, D*H), state.
    With `lengths` every row stops at its end (padding never changes a result); outputs at
    padded positions are then whatever the path leaves (the callers that pad mask them)."""
    if isinstance(rnn, (nn.RNN, nn.LSTM, nn.GRU)):
        first = None if state is None else to_layer_first(state)
        if lengths is None:
            out, new = rnn(x, first)                                                   # (B, T, D*H)
        else:
            packed = pack_padded_sequence(x, lengths.cpu(), batch_first=True, enforce_sorted=False)
            out, new = rnn(packed, first)
            out, _ = pad_packed_sequence(out, batch_first=True, total_length=x.size(1))  # (B, T, D*H)
        return out, to_batch_first(new)
    if isinstance(rnn, MinimalStack):
        if lengths is not None:
            raise SeqlabError("mingru / minlstm read whole rows; padded batches need another cell")
        return rnn(x, state)
    return rnn(x, state, lengths=None if lengths is None else lengths.to(x.device))


def to_layer_first(state):
    """seqlab's (B, L, H) -> PyTorch's (L, B, H) (each of a pair)."""
    if isinstance(state, tuple):
        return tuple(s.transpose(0, 1).contiguous() for s in state)
    return state.transpose(0, 1).contiguous()


def to_batch_first(state):
    if isinstance(state, tuple):
        return tuple(s.transpose(0, 1) for s in state)
    return state.transpose(0, 1)
