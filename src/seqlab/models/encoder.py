"""A recurrent encoder of variable-length token sequences: the shared trunk of the
classifier, the tagger and the seq2seq encoder.

    tokens (B, T) ─► embedding (B, T, E) ─► dropout ─► L layers, D directions ─► (B, T, D*H)
                                                                              └► final state

Padding never changes a result: PyTorch's fused modules get a packed sequence
(`pack_padded_sequence`), seqlab's own cells get `lengths` and stop each row at its end,
in both directions (models/stack.py). Outputs at padded positions are zero.

Which path runs follows `model.impl` exactly as for the language models (models/recurrent.py):
the fused nn.RNN / nn.LSTM / nn.GRU whenever they compute the configured cell, else seqlab's.

State, batch first as everywhere in seqlab: (B, L*D, H), or a pair of those for the LSTM,
layer by layer, forward direction before backward.
"""
from __future__ import annotations

import torch
from torch import Tensor, nn
from torch.nn.utils.rnn import pack_padded_sequence, pad_packed_sequence

from seqlab import SeqlabError
from seqlab.config import ModelConfig, fused_possible
from seqlab.models.fused import MODULES as _FUSED
from seqlab.tokens import PAD

ENCODER_CELLS = ("rnn", "jordan", "lstm", "gru")
# the model.* options the encoder honours (the cell's own through models/recurrent.cell_factory)
ENCODER_OPTIONS = ("embedding_size", "hidden_size", "num_layers", "dropout", "forget_bias", "nonlinearity", "peephole",
                   "coupled", "layer_norm", "gru_form", "residual", "variational", "recurrent_dropout", "zoneout",
                   "recurrent_init", "impl")


class SequenceEncoder(nn.Module):
    def __init__(self, cfg: ModelConfig, vocab_size: int, bidirectional: bool = True, input_size: int = 0):
        """`input_size` > 0 makes it an encoder of (B, T, F) feature vectors instead of token ids."""
        super().__init__()
        if cfg.name not in ENCODER_CELLS:
            raise SeqlabError(f"model.name={cfg.name} cannot encode variable-length sequences; "
                              f"use one of {', '.join(ENCODER_CELLS)}")
        self.hidden_size, self.num_layers = cfg.hidden_size, cfg.num_layers
        self.directions = 2 if bidirectional else 1
        self.is_lstm = cfg.name == "lstm"
        self.embedding = nn.Embedding(vocab_size, cfg.embedding_size, padding_idx=PAD) if not input_size else None
        size_in = input_size or cfg.embedding_size
        self.dropout = nn.Dropout(cfg.dropout)
        between = cfg.dropout if cfg.num_layers > 1 else 0.0
        self.fused = cfg.impl == "fused" or (cfg.impl == "auto" and fused_possible(cfg))
        if self.fused:
            extra = {"nonlinearity": cfg.nonlinearity} if cfg.name == "rnn" else {}
            self.rnn = _FUSED[cfg.name](size_in, cfg.hidden_size, cfg.num_layers, batch_first=True,
                                        dropout=between, bidirectional=bidirectional, **extra)
            if self.is_lstm:
                with torch.no_grad():   # gates stacked (i, f, g, o); both bias vectors feed f: split it
                    H = cfg.hidden_size
                    for name, p in self.rnn.named_parameters():
                        if name.startswith("bias"):
                            p[H:2 * H].fill_(cfg.forget_bias / 2)
        else:
            from seqlab.models.recurrent import cell_factory
            from seqlab.models.stack import RecurrentStack
            self.rnn = RecurrentStack(cell_factory(cfg), size_in, cfg.hidden_size, cfg.num_layers,
                                      dropout=between, bidirectional=bidirectional, residual=cfg.residual,
                                      variational=cfg.variational, recurrent_dropout=cfg.recurrent_dropout,
                                      zoneout=cfg.zoneout, fast=cfg.impl != "loop")
        if cfg.recurrent_init != "default":
            from seqlab.models.recurrent import init_recurrent
            for name, p in self.rnn.named_parameters():
                if name.split(".")[-1].startswith("weight_hh"):
                    init_recurrent(p, cfg.hidden_size, cfg.recurrent_init)

    @property
    def output_size(self) -> int:
        return self.hidden_size * self.directions

    def forward(self, x: Tensor, lengths: Tensor) -> tuple[Tensor, object]:
        # x: (B, T) ids or (B, T, F) features; lengths (B,) on any device -> (B, T, D*H), state
        emb = self.dropout(self.embedding(x) if self.embedding is not None else x)        # (B, T, E)
        if not self.fused:
            out, state = self.rnn(emb, lengths=lengths.to(emb.device))
        else:
            T = emb.size(1)
            packed = pack_padded_sequence(emb, lengths.cpu(), batch_first=True, enforce_sorted=False)
            out, state = self.rnn(packed)
            out, _ = pad_packed_sequence(out, batch_first=True, total_length=T)           # (B, T, D*H)
            # PyTorch's h_n is (L*D, B, H); seqlab's state is batch first
            state = tuple(s.transpose(0, 1).contiguous() for s in state) if self.is_lstm \
                else state.transpose(0, 1).contiguous()
        valid = (torch.arange(out.size(1), device=out.device)[None, :] < lengths.to(out.device)[:, None])
        return out * valid.unsqueeze(-1).to(out.dtype), state                             # zero at padding

    def summary(self, state) -> Tensor:
        """The last layer's final hidden state of every direction, concatenated: (B, D*H).

        The forward direction's final state has read the whole sequence left to right and
        the backward one right to left, so together they summarise it (many-to-one)."""
        h = state[0] if self.is_lstm else state                                           # (B, L*D, H)
        top = h[:, (self.num_layers - 1) * self.directions:]                              # (B, D, H)
        return top.reshape(h.size(0), -1)


def lengths_mask(lengths: Tensor, max_len: int) -> Tensor:
    """(B,) lengths -> (B, T) bool, True at real positions."""
    return torch.arange(max_len, device=lengths.device)[None, :] < lengths[:, None]
