"""Recurrent language models: Elman RNN, Jordan net, LSTM (and variants), GRU (both forms).

Standard cells run on PyTorch's fused kernels (nn.RNN / nn.LSTM / nn.GRU: oneDNN on CPU,
cuDNN on GPU); every other variant runs on seqlab's own cells (models/cells.py, stack.py).
`model.impl` forces one path; `auto` takes the fused one whenever it computes the same model.

    tokens (B, T) -> embedding (B, T, E) -> dropout -> L recurrent layers (B, T, H)
                  -> dropout -> linear (B, T, V) logits

Dropout is applied to non-recurrent connections only (Zaremba et al. 2014): on the
embedding, between layers (inside nn.LSTM) and before the output layer; the recurrent
path h_{t-1} -> h_t is never dropped. Weight tying follows Press & Wolf (2017) and
Inan et al. (2017). The LSTM forget-gate bias starts at `forget_bias` (Gers et al. 2000;
Jozefowicz et al. 2015) so that early in training the cell remembers by default.
"""
from __future__ import annotations

import torch
from torch import Tensor, nn

from seqlab.config import ModelConfig
from seqlab.models.kernels import fused_step
from seqlab.models.base import State
from seqlab.models.body import (RECURRENT_NAMES, body_options, build_recurrent, check_recurrent,
                                init_recurrent_weights, run_recurrent, set_forget_bias, uses_fused, zero_state)
from seqlab.models.stack import sequence_mask
from seqlab.registry import register


class RecurrentLM(nn.Module):
    """A token-level language model over a stack of recurrent layers."""
    check = staticmethod(check_recurrent)     # the rules of the recurrent options (models/body.py)

    @staticmethod
    def options(cfg: ModelConfig) -> tuple[str, ...]:
        """The model.* options this family honours: its recurrent part's, the embedding's, and
        the norm stabiliser and variational dropout it applies itself (embedding and output)."""
        own = ("norm_stabilizer",) + (("variational",) if cfg.dropout else ()) if cfg.name not in ("mingru", "minlstm") else ()
        return tuple(dict.fromkeys(body_options(cfg) + ("embedding_size", "tie_weights", "dropout") + own))

    def __init__(self, cfg: ModelConfig, vocab_size: int):
        super().__init__()
        self.cfg = cfg
        self.kind = cfg.name
        self.embedding = nn.Embedding(vocab_size, cfg.embedding_size)
        self.dropout = nn.Dropout(cfg.dropout)
        self.fused = uses_fused(cfg)
        self.rnn = build_recurrent(cfg, cfg.embedding_size)                  # models/body.py
        self.aux_loss: Tensor | float = 0.0      # added to the training loss (norm stabiliser)
        self.fast_step = True                    # False: step through nn.LSTM itself (the benchmark's baseline)
        self._step_weights = fused_step.StepWeights()
        self.head = nn.Linear(cfg.hidden_size, vocab_size)
        if cfg.tie_weights:
            self.head.weight = self.embedding.weight
        self.reset_parameters()

    def reset_parameters(self) -> None:
        nn.init.uniform_(self.embedding.weight, -0.1, 0.1)
        init_recurrent_weights(self.rnn, self.cfg)
        set_forget_bias(self.rnn, self.cfg)

    # -- the SequenceModel protocol ----------------------------------------------------

    def init_state(self, batch_size: int) -> State:
        return zero_state(self.cfg, batch_size, self.cfg.num_layers, self.head.weight)     # (B, L, H)

    def forward(self, x: Tensor, state: State = None) -> tuple[Tensor, State]:
        # x: (B, T) token ids; state: batch-first (B, L, H), or a pair of them for the LSTM
        if state is None:
            state = self.init_state(x.size(0))
        emb = self._drop(self.embedding(x))                                  # (B, T, E)
        out, new_state = run_recurrent(self.rnn, emb, state)                 # (B, T, H)
        self.aux_loss = 0.0
        if self.training and self.cfg.norm_stabilizer and out.size(1) > 1:
            norms = out.norm(dim=-1)                                         # (B, T)
            self.aux_loss = self.cfg.norm_stabilizer * (norms[:, 1:] - norms[:, :-1]).pow(2).mean()
        logits = self.head(self._drop(out))                                  # (B, T, V)
        return logits, new_state

    def _drop(self, x: Tensor) -> Tensor:
        # x: (B, T, F); variational: one mask per sequence, broadcast over time
        if self.cfg.variational and self.training and self.cfg.dropout:
            return x * sequence_mask(x, self.cfg.dropout, (x.size(0), 1, x.size(-1)))
        return self.dropout(x)

    def step(self, x_t: Tensor, state: State) -> tuple[Tensor, State]:
        # x_t: (B,) -> logits (B, V); one time step, the state carries all the history
        if self.fused and self.fast_step:
            # decoding: PyTorch's fused modules stepped by hand on cached weights (fused_step.py)
            done = fused_step.step_logits(self.rnn, self._step_weights, self.embedding, self.head, x_t,
                                          self.init_state(x_t.size(0)) if state is None else state)
            if done is not None:
                return done                                                  # (B, V), state
        logits, state = self.forward(x_t.unsqueeze(1), state)
        return logits.squeeze(1), state


for _name in RECURRENT_NAMES:
    register("model", _name)(RecurrentLM)
