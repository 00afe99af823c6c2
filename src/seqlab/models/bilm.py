"""A bidirectional language model and the scalar mix of its layers: ELMo (Peters et al. 2018,
"Deep contextualized word representations").

    x (B, T) ─► embedding e (B, T, H) ─┬─► forward  LSTM 1 ─► ... ─► forward  LSTM L ─► softmax: next word
                                       └─► backward LSTM 1 ─► ... ─► backward LSTM L ─► softmax: previous word
    layers:  j = 0: [e; e]    j = 1..L: [→h_j; ←h_j]                       (L+1, B, T, 2H)
    ELMo_k = γ · Σ_j s_j · h_{k,j},  s = softmax(w)                            (B, T, 2H)

Dimension legend: B batch, T time (the sentence with <bos> and <eos> around it), E = H the
embedding and hidden size, L layers, V words.

Choices, after the paper and its reference implementation:

- The token representation (layer 0) and the softmax are shared by both directions; the
  LSTMs are not. Peters et al. use a character CNN as the token layer; here it is a word
  embedding, so a word unseen by the biLM is <unk> to it.
- Layer 0 must be as wide as the others to be mixed with them: like AllenNLP's ELMo, the
  token vector is repeated, [e; e], which needs embedding_size == hidden_size (no learned
  projection, so the mix adds no parameters besides γ and s).
- `model.tie_weights` also ties the softmax to the embedding (possible since E = H).
- No residual connection between the layers and no layer normalisation inside the mix.

Padding never changes a representation: each direction runs on packed sequences, the
backward one on every row reversed within its own length, so no state ever passes
through a padded position; outputs at padding are zero.
"""
from __future__ import annotations

import dataclasses

import torch
from torch import Tensor, nn

from seqlab import SeqlabError
from seqlab.config import ModelConfig
from seqlab.models.body import build_recurrent, init_recurrent_weights, run_recurrent
from seqlab.tokens import BOS, EOS, PAD


def reverse_padded(x: Tensor, lengths: Tensor) -> Tensor:
    """Reverse each row of x (B, T, ...) within its length; padded positions stay where they are."""
    B, T = x.shape[:2]
    t = torch.arange(T, device=x.device)[None, :]                                 # (1, T)
    n = lengths.to(x.device)[:, None]                                              # (B, 1)
    index = torch.where(t < n, n - 1 - t, t)                                       # (B, T)
    index = index.view(B, T, *([1] * (x.dim() - 2))).expand_as(x)
    return x.gather(1, index)


class Direction(nn.Module):
    """L one-layer recurrent parts (models/body.py) read left to right; returns every layer's outputs."""

    def __init__(self, layer: ModelConfig, size: int, num_layers: int, dropout: float):
        super().__init__()
        self.rnns = nn.ModuleList(build_recurrent(layer, size) for _ in range(num_layers))
        for rnn in self.rnns:
            init_recurrent_weights(rnn, layer)
        self.dropout = nn.Dropout(dropout)

    def forward(self, x: Tensor, lengths: Tensor) -> list[Tensor]:
        # x (B, T, H), lengths (B,) -> L tensors (B, T, H), zero at padding
        real = (torch.arange(x.size(1), device=x.device)[None, :] < lengths.to(x.device)[:, None])[..., None]
        outputs = []
        for rnn in self.rnns:
            out, _ = run_recurrent(rnn, self.dropout(x), None, lengths)                 # (B, T, H)
            x = out * real.to(out.dtype)
            outputs.append(x)
        return outputs


class BiLM(nn.Module):
    """Two language models, one per direction, sharing the embedding and the softmax."""

    def __init__(self, vocab_size: int, hidden_size: int, num_layers: int, cell: str = "lstm",
                 dropout: float = 0.0, tie_weights: bool = False, forget_bias: float = 1.0,
                 options: ModelConfig | None = None):
        """`options`: the cell's options (model.*) for every recurrent layer; by default the plain cell."""
        super().__init__()
        if cell not in ("rnn", "lstm", "gru"):
            raise SeqlabError(f"the biLM's cell must be one of rnn, lstm, gru; got {cell!r}")
        layer = dataclasses.replace(options or ModelConfig(forget_bias=forget_bias), name=cell, hidden_size=hidden_size,
                                    num_layers=1, dropout=0.0)
        self.hidden_size, self.num_layers = hidden_size, num_layers
        self.embedding = nn.Embedding(vocab_size, hidden_size, padding_idx=PAD)
        self.forward_lm = Direction(layer, hidden_size, num_layers, dropout)
        self.backward_lm = Direction(layer, hidden_size, num_layers, dropout)
        self.dropout = nn.Dropout(dropout)
        self.head = nn.Linear(hidden_size, vocab_size)
        if tie_weights:
            self.head.weight = self.embedding.weight

    @property
    def output_size(self) -> int:
        return 2 * self.hidden_size

    def directions(self, x: Tensor, lengths: Tensor) -> tuple[Tensor, list[Tensor], list[Tensor]]:
        """(embedding (B, T, H), forward layers, backward layers: L tensors (B, T, H) each)."""
        e = self.embedding(x)                                                       # (B, T, H)
        forward = self.forward_lm(e, lengths)
        # the backward LM reads each sentence from its end: reverse, run, reverse back
        backward = [reverse_padded(h, lengths) for h in self.backward_lm(reverse_padded(e, lengths), lengths)]
        return e, forward, backward

    def forward(self, x: Tensor, lengths: Tensor) -> tuple[Tensor, Tensor]:
        # x (B, T) with <bos> first and <eos> last in each row -> two (B, T, V):
        # forward_logits[:, t] predicts x[:, t+1], backward_logits[:, t] predicts x[:, t-1]
        _, forward, backward = self.directions(x, lengths)
        return self.head(self.dropout(forward[-1])), self.head(self.dropout(backward[-1]))

    def layers(self, x: Tensor, lengths: Tensor) -> Tensor:
        # x (B, T), lengths (B,) -> (L+1, B, T, 2H), zero at padding
        e, forward, backward = self.directions(x, lengths)
        real = (torch.arange(x.size(1), device=x.device)[None, :] < lengths.to(x.device)[:, None])
        token = torch.cat([e, e], dim=-1) * real[:, :, None].to(e.dtype)           # (B, T, 2H)
        return torch.stack([token] + [torch.cat(pair, dim=-1) for pair in zip(forward, backward)])


class ScalarMix(nn.Module):
    """γ · Σ_j softmax(w)_j · layer_j, with w (one scalar per layer) and γ learned."""

    def __init__(self, num_layers: int):
        super().__init__()
        self.weights = nn.Parameter(torch.zeros(num_layers))    # w: the mix starts as the plain mean
        self.gamma = nn.Parameter(torch.ones(()))

    def forward(self, layers: Tensor) -> Tensor:
        # layers (L+1, B, T, D) -> (B, T, D)
        s = self.weights.softmax(0)                                                   # (L+1,)
        return self.gamma * torch.einsum("j,jbtd->btd", s, layers)


class Elmo(nn.Module):
    """Frozen biLM layers mixed by learned weights, one vector per word: a consumer's extra input.

    Only the mix trains: the biLM's parameters never require a gradient and it stays in eval
    mode (no dropout) even while its owner trains. It is a submodule, so its weights are saved
    with the owner's and a trained run holds every weight it predicts with.
    """

    def __init__(self, bilm: BiLM):
        super().__init__()
        self.bilm = bilm.eval()
        for p in self.bilm.parameters():
            p.requires_grad_(False)
        self.mix = ScalarMix(bilm.num_layers + 1)

    @property
    def output_size(self) -> int:
        return self.bilm.output_size

    def train(self, mode: bool = True) -> "Elmo":
        super().train(mode)
        self.bilm.eval()
        return self

    def forward(self, ids: Tensor, lengths: Tensor) -> Tensor:
        # ids (B, T) biLM word ids, lengths (B,) -> (B, T, 2H), zero at padding
        # the biLM was trained on <bos> w_1 ... w_n <eos>: give it the same, then drop the two
        B, T = ids.shape
        n = lengths.to(ids.device)
        x = torch.full((B, T + 2), PAD, dtype=ids.dtype, device=ids.device)
        x[:, 0] = BOS
        x[:, 1:T + 1] = ids.masked_fill(torch.arange(T, device=ids.device)[None, :] >= n[:, None], PAD)
        x[torch.arange(B, device=ids.device), n + 1] = EOS
        with torch.no_grad():
            layers = self.bilm.layers(x, lengths + 2)[:, :, 1:T + 1]                 # (L+1, B, T, 2H)
        return self.mix(layers)
