"""Fixed-window neural language model (Bengio, Ducharme, Vincent & Jauvin 2003, "A Neural
Probabilistic Language Model").

Dimension legend: B batch, T time, N context (tokens seen), E embedding size, H hidden size,
V vocabulary.

    P(x_{t+1} | x_{t−N+1} … x_t):
    window (B, T, N) -> embeddings, concatenated (B, T, N·E) -> dropout
                     -> num_layers × [linear -> tanh] (B, T, H) -> dropout -> linear (B, T, V)

(The paper's optional direct embedding-to-output connections are left out.) Before the first
token the window is padded with BOS (id 2), the start-of-stream symbol.

State: the last N − 1 tokens, (B, N − 1) long, BOS at the start of a stream. `forward`
prepends it to the chunk and slides the window over all positions at once (Tensor.unfold),
so a chunk boundary loses nothing; the new state is the tail of [state, chunk].
"""
from __future__ import annotations

import torch
from torch import Tensor, nn

from seqlab.config import ModelConfig
from seqlab.models.base import State, check_range
from seqlab.registry import register

BOS = 2        # seqlab's specials: PAD=0, UNK=1, BOS=2, EOS=3 (data/vocab.py)


class WindowLM(nn.Module):
    """init_state(B) -> (B, N−1) long of BOS;  forward(x (B, T), s) -> (logits (B, T, V), s);
    step(x_t (B,), s) -> (logits (B, V), s).  `receptive_field` (attribute) = N."""
    check = staticmethod(lambda cfg: check_range(cfg, "context", 1))

    @staticmethod
    def options(cfg: ModelConfig) -> tuple[str, ...]:
        """The model.* options this family honours."""
        return ("embedding_size", "hidden_size", "num_layers", "dropout", "context", "tie_weights")

    def __init__(self, cfg: ModelConfig, vocab_size: int):
        super().__init__()
        if cfg.context < 1:
            raise ValueError(f"model.context must be 1 or more, got {cfg.context}")
        self.cfg = cfg
        self.context = cfg.context
        self.receptive_field = cfg.context
        self.embedding = nn.Embedding(vocab_size, cfg.embedding_size)
        self.dropout = nn.Dropout(cfg.dropout)
        sizes = [cfg.context * cfg.embedding_size] + [cfg.hidden_size] * cfg.num_layers
        self.hidden = nn.ModuleList(nn.Linear(sizes[i], sizes[i + 1]) for i in range(cfg.num_layers))
        self.head = nn.Linear(sizes[-1], vocab_size)
        nn.init.uniform_(self.embedding.weight, -0.1, 0.1)
        if cfg.tie_weights:
            self.head.weight = self.embedding.weight

    def init_state(self, batch_size: int) -> State:
        return torch.full((batch_size, self.context - 1), BOS, dtype=torch.long, device=self.head.weight.device)

    def forward(self, x: Tensor, state: State = None) -> tuple[Tensor, State]:
        # x: (B, T) ids; state: (B, N−1) the previous tokens
        if state is None:
            state = self.init_state(x.size(0))
        ctx = torch.cat([state.to(x.device, x.dtype), x], dim=1)             # (B, N−1+T)
        windows = ctx.unfold(1, self.context, 1)                               # (B, T, N)
        B, T, N = windows.shape
        h = self.dropout(self.embedding(windows).reshape(B, T, N * self.cfg.embedding_size))
        for layer in self.hidden:
            h = torch.tanh(layer(h))                                           # (B, T, H)
        logits = self.head(self.dropout(h))                                    # (B, T, V)
        return logits, ctx[:, ctx.size(1) - (self.context - 1):]

    def step(self, x_t: Tensor, state: State) -> tuple[Tensor, State]:
        # x_t: (B,) -> logits (B, V)
        logits, state = self.forward(x_t.unsqueeze(1), state)
        return logits.squeeze(1), state


register("model", "window")(WindowLM)
