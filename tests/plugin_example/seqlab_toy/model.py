"""model.name=toy: a leaky integrator language model, h_t = a * h_{t-1} + (1 - a) * tanh(W e_t),
logits = U h_t. Its own options are declared here, not in seqlab's config."""
from __future__ import annotations

import torch
from torch import nn

from seqlab.options import declare
from seqlab.registry import register

declare("model", "toy_width", 8, "toy: units of the toy model's one leaky layer")
declare("model", "toy_leak", 0.5, "toy: a, the share of h_{t-1} each step keeps, in [0, 1)")


def check(cfg) -> None:
    """The family's own rules, applied when the config is validated."""
    from seqlab import SeqlabError
    if cfg.toy_width < 1:
        raise SeqlabError(f"model.toy_width must be 1 or more, got {cfg.toy_width}")
    if not 0.0 <= cfg.toy_leak < 1.0:
        raise SeqlabError(f"model.toy_leak must be in [0, 1), got {cfg.toy_leak}")


class Leaky(nn.Module):
    """(B, T) ids -> (B, T, W) states; the state is (B, W)."""

    def __init__(self, cfg, vocab_size: int):
        super().__init__()
        self.leak = cfg.toy_leak
        self.width = cfg.toy_width
        self.embedding = nn.Embedding(vocab_size, cfg.embedding_size)
        self.inp = nn.Linear(cfg.embedding_size, cfg.toy_width)

    def run(self, x, state):
        drive = torch.tanh(self.inp(self.embedding(x)))                      # (B, T, W)
        out = []
        for t in range(x.size(1)):
            state = self.leak * state + (1 - self.leak) * drive[:, t]
            out.append(state)
        return torch.stack(out, 1), state


class ToyLM(Leaky):
    options = staticmethod(lambda cfg: ("embedding_size", "toy_width", "toy_leak"))
    check = staticmethod(check)

    def __init__(self, cfg, vocab_size: int):
        super().__init__(cfg, vocab_size)
        self.head = nn.Linear(cfg.toy_width, vocab_size)

    def init_state(self, batch_size: int):
        return torch.zeros(batch_size, self.width, device=self.head.weight.device)

    def forward(self, x, state=None):
        states, last = self.run(x, self.init_state(x.size(0)) if state is None else state)
        return self.head(states), last

    def step(self, x_t, state):
        logits, state = self.forward(x_t.unsqueeze(1), state)
        return logits.squeeze(1), state


register("model", "toy")(ToyLM)
