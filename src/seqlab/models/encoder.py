"""A recurrent encoder of variable-length token sequences: the shared trunk of the
classifier, the tagger and the seq2seq encoder.

    tokens (B, T) ─► embedding (B, T, E) ─► dropout ─► L layers, D directions ─► (B, T, D*H)
                                                                              └► final state

Padding never changes a result: PyTorch's fused modules get a packed sequence
(`pack_padded_sequence`), seqlab's own cells get `lengths` and stop each row at its end,
in both directions (models/stack.py). Outputs at padded positions are zero.

The recurrent layers come from the one builder (models/body.py), as for the language models:
the fused nn.RNN / nn.LSTM / nn.GRU whenever they compute the configured cell, else seqlab's.

State, batch first as everywhere in seqlab: (B, L*D, H), or a pair of those for the LSTM,
layer by layer, forward direction before backward.
"""
from __future__ import annotations

import torch
from torch import Tensor, nn
from seqlab import SeqlabError
from seqlab.config import ModelConfig
from seqlab.models.body import (body_options, build_recurrent, hidden_of, init_recurrent_weights, run_recurrent,
                                uses_fused)
from seqlab.tokens import PAD

ENCODER_CELLS = ("rnn", "jordan", "lstm", "gru")


def encoder_options(cfg: ModelConfig) -> tuple[str, ...]:
    """The model.* options the encoder honours: its recurrent part's (models/body.py) and its embedding."""
    return tuple(dict.fromkeys(body_options(cfg) + ("embedding_size", "dropout")))     # dropout: on the embedding too


class SequenceEncoder(nn.Module):
    def __init__(self, cfg: ModelConfig, vocab_size: int, bidirectional: bool = True, input_size: int = 0):
        """`input_size` > 0 makes it an encoder of (B, T, F) feature vectors instead of token ids."""
        super().__init__()
        if cfg.name not in ENCODER_CELLS:
            raise SeqlabError(f"model.name={cfg.name} cannot encode variable-length sequences; "
                              f"use one of {', '.join(ENCODER_CELLS)}")
        self.hidden_size, self.num_layers = cfg.hidden_size, cfg.num_layers
        self.directions = 2 if bidirectional else 1
        self.embedding = nn.Embedding(vocab_size, cfg.embedding_size, padding_idx=PAD) if not input_size else None
        size_in = input_size or cfg.embedding_size
        self.dropout = nn.Dropout(cfg.dropout)
        self.fused = uses_fused(cfg)
        self.rnn = build_recurrent(cfg, size_in, bidirectional)                           # models/body.py
        init_recurrent_weights(self.rnn, cfg)

    @property
    def output_size(self) -> int:
        return self.hidden_size * self.directions

    def forward(self, x: Tensor, lengths: Tensor) -> tuple[Tensor, object]:
        # x: (B, T) ids or (B, T, F) features; lengths (B,) on any device -> (B, T, D*H), state
        emb = self.dropout(self.embedding(x) if self.embedding is not None else x)        # (B, T, E)
        out, state = run_recurrent(self.rnn, emb, None, lengths)                          # (B, T, D*H)
        valid = (torch.arange(out.size(1), device=out.device)[None, :] < lengths.to(out.device)[:, None])
        return out * valid.unsqueeze(-1).to(out.dtype), state                             # zero at padding

    def summary(self, state) -> Tensor:
        """The last layer's final hidden state of every direction, concatenated: (B, D*H).

        The forward direction's final state has read the whole sequence left to right and
        the backward one right to left, so together they summarise it (many-to-one)."""
        h = hidden_of(state)                                                              # (B, L*D, H)
        top = h[:, (self.num_layers - 1) * self.directions:]                              # (B, D, H)
        return top.reshape(h.size(0), -1)


def lengths_mask(lengths: Tensor, max_len: int) -> Tensor:
    """(B,) lengths -> (B, T) bool, True at real positions."""
    return torch.arange(max_len, device=lengths.device)[None, :] < lengths[:, None]
