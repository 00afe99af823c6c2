"""Encoder–decoder (seq2seq) with optional attention, teacher forcing and scheduled sampling.

    src (B, S) ─► bidirectional encoder ─► annotations (B, S, H) ──────────┐ attention
                            └─► final state ─► bridge ─► s_0 (B, L, H)      │
    tgt_in (B, U) = <bos> y_1 .. y_{U-1} ─► decoder, step by step ◄────────┘ ─► logits (B, U, V)

Papers:
- Sutskever, Vinyals & Le (2014), "Sequence to Sequence Learning with Neural Networks":
  the decoder sees the source only through its initial state (`attention="none"`).
- Bahdanau, Cho & Bengio (2015), "Neural Machine Translation by Jointly Learning to Align
  and Translate": additive attention e_tj = vᵀ tanh(W s_{t-1} + U h_j), queried with the
  PREVIOUS decoder state; the context c_t joins the input, s_t = f(s_{t-1}, [E y_{t-1}; c_t]),
  and a deep output reads [s_t; c_t; E y_{t-1}] (`attention="bahdanau"`). seqlab's readout
  is tanh(W_o [s_t; c_t; E y_{t-1}]) — tanh in place of the paper's maxout — then W_out.
- Luong, Pham & Manning (2015), "Effective Approaches to Attention-based Neural Machine
  Translation": global attention queried with the CURRENT state h_t, score h_tᵀ h̄_s
  (`"luong_dot"`) or h_tᵀ W_a h̄_s (`"luong_general"`); the attentional state
  h̃_t = tanh(W_c [c_t; h_t]) feeds the softmax, and with input feeding (on by default) also
  the next step's input, [E y_{t-1}; h̃_{t-1}], h̃_0 = 0.
- Bengio, Vinyals, Jaitly & Shazeer (2015), "Scheduled Sampling for Sequence Prediction with
  Recurrent Neural Networks": `forward(..., sampling_prob=p)` feeds, per example and step,
  the model's own token (a SAMPLE from its softmax, as the paper does; `own_token="argmax"`
  feeds the most likely one instead) with probability p, else the true token. No gradient
  flows through the choice. The schedules for p live in training/schedules.py.
- Wu et al. (2016), GNMT: beam search scored by log P(Y|X) / lp(Y), lp = ((5 + |Y|) / 6)^α
  (decode/seq2seq.py: greedy and beam search over this model's `encode` and `step`).

Choices, each a reason:
- `hidden_size` H is the width everywhere: each encoder direction has H/2 units, so an
  annotation h_j = [→h_j; ←h_j] has H units, the size of the decoder state, and Luong's dot
  score h_tᵀ h̄_s is defined without a projection (as OpenNMT's "brnn" does). H must be even.
- The bridge: per layer l, s_0^l = tanh(W_b [→h^l; ←h^l] + b) from the encoder's final states
  (a linear map, no tanh, for the LSTM's cell), one W_b shared by the layers; the decoder has
  as many layers as the encoder.
- Without attention the model is the classic Sutskever baseline: nothing but the bridged
  state carries the source; no summary is concatenated to the decoder inputs (as Cho et
  al. 2014 did), so the comparison with attention is the textbook one.
- Padding never changes a result: the encoder stops each row at its length, and attention
  sets the scores of padded source positions to -inf before the softmax (weight exactly 0).
  The decoder is causal in the target, so target padding cannot reach earlier positions.
- Decoding never emits <pad> or <bos> (`BANNED`); their log-probabilities are dropped, not
  renormalised, so a hypothesis's `logprob` equals `score()` of its tokens.
- Decoding (decode/seq2seq.py) runs in eval mode (no dropout) and restores the previous mode.

Dimension legend: B batch, S source length, U target length, E embedding size, H hidden
size, L layers, V target vocabulary, K beam width.
"""
from __future__ import annotations

import dataclasses
from contextlib import contextmanager
from dataclasses import dataclass
from typing import Iterator, Sequence

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from seqlab import SeqlabError
from seqlab.config import ModelConfig
from seqlab.models.body import has_cell, hidden_of, step_cell
from seqlab.models.encoder import SequenceEncoder, lengths_mask
from seqlab.tokens import BOS, EOS, PAD

ATTENTIONS = ("none", "bahdanau", "luong_dot", "luong_general")
DECODER_CELLS = ("rnn", "lstm", "gru")
OWN_TOKENS = ("sample", "argmax")
BANNED = (PAD, BOS)                     # never generated
NEG_INF = float("-inf")

DecoderState = dict[str, Tensor]        # "h" (B, L, H); "c" (B, L, H) for the LSTM; "feed" (B, H) h̃_{t-1}


# -- attention scores ---------------------------------------------------------------------------

class AdditiveScore(nn.Module):
    """Bahdanau et al. (2015): e_j = vᵀ tanh(W s + U h_j). U h_j is computed once per source."""

    def __init__(self, hidden_size: int):
        super().__init__()
        self.query = nn.Linear(hidden_size, hidden_size, bias=False)     # W
        self.key = nn.Linear(hidden_size, hidden_size)                   # U (and the bias)
        self.v = nn.Linear(hidden_size, 1, bias=False)                   # v

    def keys(self, annotations: Tensor) -> Tensor:
        return self.key(annotations)                                     # (B, S, H)

    def forward(self, query: Tensor, keys: Tensor) -> Tensor:
        hidden = torch.tanh(keys + self.query(query)[:, None, :])        # (B, S, H)
        return self.v(hidden).squeeze(-1)                                # (B, S)


class DotScore(nn.Module):
    """Luong et al. (2015), dot: score(h_t, h̄_s) = h_tᵀ h̄_s."""

    def __init__(self, hidden_size: int):
        super().__init__()

    def keys(self, annotations: Tensor) -> Tensor:
        return annotations                                               # (B, S, H)

    def forward(self, query: Tensor, keys: Tensor) -> Tensor:
        return torch.bmm(keys, query[:, :, None]).squeeze(-1)            # (B, S)


class GeneralScore(DotScore):
    """Luong et al. (2015), general: score(h_t, h̄_s) = h_tᵀ W_a h̄_s; W_a h̄_s is computed once."""

    def __init__(self, hidden_size: int):
        super().__init__(hidden_size)
        self.weight = nn.Linear(hidden_size, hidden_size, bias=False)    # W_a

    def keys(self, annotations: Tensor) -> Tensor:
        return self.weight(annotations)                                  # (B, S, H)


SCORES: dict[str, type[nn.Module]] = {"bahdanau": AdditiveScore, "luong_dot": DotScore,
                                      "luong_general": GeneralScore}


@dataclass
class Memory:
    """What the decoder attends to, computed once per source: annotations, keys and the mask."""
    annotations: Tensor     # (B, S, H) encoder outputs, zero at padding
    keys: Tensor            # (B, S, H) the score's precomputed source side
    mask: Tensor            # (B, S) bool, True at real source positions

    def select(self, index: Tensor) -> "Memory":
        return Memory(self.annotations.index_select(0, index), self.keys.index_select(0, index),
                      self.mask.index_select(0, index))


def select_decoder_state(state: DecoderState, index: Tensor) -> DecoderState:
    """Rows `index` of every state tensor: beam reordering."""
    return {name: s.index_select(0, index) for name, s in state.items()}


def mix_tokens(true_tokens: Tensor, logits: Tensor, sampling_prob: float, own_token: str = "sample",
               generator: torch.Generator | None = None) -> Tensor:
    """Scheduled sampling's coin (Bengio et al. 2015): per example, the model's own token with
    probability `sampling_prob`, else the true one. true_tokens (B,), logits (B, V) -> (B,).

    The own token is a sample from softmax(logits) ("sample", as in the paper) or its argmax;
    <pad> and <bos> are never chosen."""
    if own_token not in OWN_TOKENS:
        raise SeqlabError(f"own_token must be one of {', '.join(OWN_TOKENS)}; got {own_token!r}")
    device = true_tokens.device
    draw_on = generator.device if generator is not None else device
    logits = logits.detach().float().clone()                             # (B, V)
    logits[:, list(BANNED)] = NEG_INF
    if own_token == "argmax":
        own = logits.argmax(-1)                                          # (B,)
    else:
        probs = logits.softmax(-1).to(draw_on)                           # (B, V)
        own = torch.multinomial(probs, 1, generator=generator).squeeze(1).to(device)  # (B,)
    use_own = torch.rand(true_tokens.size(0), generator=generator, device=draw_on).to(device) < sampling_prob  # (B,)
    return torch.where(use_own, own, true_tokens)                        # (B,)


@contextmanager
def evaluating(model: nn.Module) -> Iterator[None]:
    was_training = model.training
    model.eval()
    try:
        with torch.no_grad():
            yield
    finally:
        model.train(was_training)


class Seq2Seq(nn.Module):
    """Bidirectional recurrent encoder, bridge, unidirectional recurrent decoder, optional attention.

    `cfg` supplies name (rnn / lstm / gru, the same cell for encoder and decoder), embedding_size,
    hidden_size (even), num_layers, dropout; the encoder also honours impl, forget_bias and the
    other options SequenceEncoder reads. `input_feeding` applies to the Luong attentions only.
    """

    def __init__(self, cfg: ModelConfig, src_vocab_size: int, tgt_vocab_size: int, attention: str = "bahdanau",
                 input_feeding: bool = True):
        super().__init__()
        if attention not in ATTENTIONS:
            raise SeqlabError(f"unknown attention {attention!r}; valid: {', '.join(ATTENTIONS)}")
        if cfg.name not in DECODER_CELLS:
            raise SeqlabError(f"seq2seq: model.name must be one of {', '.join(DECODER_CELLS)}; got {cfg.name!r}")
        if cfg.hidden_size % 2:
            raise SeqlabError(f"seq2seq: model.hidden_size must be even (each encoder direction has half), "
                              f"got {cfg.hidden_size}")
        H, E, L = cfg.hidden_size, cfg.embedding_size, cfg.num_layers
        self.attention_kind, self.hidden_size, self.num_layers = attention, H, L
        self.has_cell = has_cell(cfg)              # the LSTM's state carries c beside h (models/body.py)
        self.feeds = attention.startswith("luong") and input_feeding
        self.encoder = SequenceEncoder(dataclasses.replace(cfg, hidden_size=H // 2), src_vocab_size,
                                       bidirectional=True)
        self.bridge = nn.Linear(H, H)
        self.bridge_cell = nn.Linear(H, H) if self.has_cell else None
        self.embedding = nn.Embedding(tgt_vocab_size, E, padding_idx=PAD)
        self.dropout = nn.Dropout(cfg.dropout)
        size_in = E + (H if attention == "bahdanau" or self.feeds else 0)
        self.cells = nn.ModuleList(step_cell(cfg, size_in if layer == 0 else H) for layer in range(L))
        self.attention = SCORES[attention](H) if attention != "none" else None
        self.readout = nn.Linear(2 * H + E, H) if attention == "bahdanau" else None        # deep output
        self.combine = nn.Linear(2 * H, H, bias=False) if attention.startswith("luong") else None  # W_c
        self.output = nn.Linear(H, tgt_vocab_size)

    # -- encoder and one decoder step ------------------------------------------------------------

    def encode(self, src: Tensor, src_lengths: Tensor) -> tuple[Memory, DecoderState]:
        """src (B, S) ids, src_lengths (B,) >= 1 -> the memory and the decoder's initial state."""
        annotations, final = self.encoder(src, src_lengths)                   # (B, S, H), (B, 2L, H/2)
        B, S, H = annotations.shape
        mask = lengths_mask(src_lengths.to(src.device), S)                    # (B, S)
        keys = self.attention.keys(annotations) if self.attention is not None else annotations  # (B, S, H)
        h_final = hidden_of(final)                                            # (B, 2L, H/2)
        # layer by layer, forward before backward: a reshape puts [→h^l; ←h^l] side by side
        state = {"h": torch.tanh(self.bridge(h_final.reshape(B, self.num_layers, H)))}     # (B, L, H)
        if self.has_cell:
            state["c"] = self.bridge_cell(final[1].reshape(B, self.num_layers, H))       # (B, L, H)
        if self.feeds:
            state["feed"] = annotations.new_zeros(B, H)                        # h̃_0 = 0
        return Memory(annotations, keys, mask), state

    def _attend(self, query: Tensor, memory: Memory) -> tuple[Tensor, Tensor]:
        scores = self.attention(query, memory.keys)                               # (B, S)
        weights = scores.masked_fill(~memory.mask, NEG_INF).softmax(-1)       # (B, S), 0 at padding
        context = torch.bmm(weights[:, None, :], memory.annotations).squeeze(1)  # (B, H)
        return context, weights

    def _recur(self, x: Tensor, state: DecoderState) -> DecoderState:
        hs, cs = [], []
        inp = x                                                               # (B, E [+ H])
        for layer, cell in enumerate(self.cells):
            if self.has_cell:
                h, c = cell(inp, (state["h"][:, layer], state["c"][:, layer]))  # (B, H) each
                cs.append(c)
            else:
                h = cell(inp, state["h"][:, layer])                           # (B, H)
            hs.append(h)
            inp = self.dropout(h)                    # between layers, never on the recurrent path
        new = {"h": torch.stack(hs, 1)}                                       # (B, L, H)
        if self.has_cell:
            new["c"] = torch.stack(cs, 1)                                     # (B, L, H)
        return new

    def step(self, prev: Tensor, state: DecoderState, memory: Memory) -> tuple[Tensor, Tensor, DecoderState]:
        """One decoder step: prev (B,) token ids -> logits (B, V), attention (B, S), new state."""
        emb = self.dropout(self.embedding(prev))                              # (B, E)
        kind = self.attention_kind
        if kind == "bahdanau":
            context, weights = self._attend(state["h"][:, -1], memory)        # query s_{t-1}: (B, H), (B, S)
            x = torch.cat([emb, context], -1)                                 # (B, E + H)
        elif self.feeds:
            x = torch.cat([emb, state["feed"]], -1)                           # (B, E + H)
        else:
            x = emb                                                           # (B, E)
        new = self._recur(x, state)
        top = new["h"][:, -1]                                                 # (B, H) s_t / h_t
        if kind == "bahdanau":
            out = torch.tanh(self.readout(torch.cat([top, context, emb], -1)))  # (B, H)
        elif kind != "none":
            context, weights = self._attend(top, memory)                      # query h_t: (B, H), (B, S)
            out = torch.tanh(self.combine(torch.cat([context, top], -1)))     # h̃_t (B, H)
            if self.feeds:
                new["feed"] = out
        else:
            out = top                                                         # (B, H)
            weights = memory.mask.to(top.dtype) * 0.0                         # (B, S): no attention
        return self.output(self.dropout(out)), weights, new                  # (B, V), (B, S)

    # -- training -------------------------------------------------------------------------------

    def forward(self, src: Tensor, src_lengths: Tensor, tgt_in: Tensor, sampling_prob: float = 0.0,
                generator: torch.Generator | None = None, own_token: str = "sample") -> tuple[Tensor, Tensor]:
        """Teacher forcing: src (B, S), src_lengths (B,), tgt_in (B, U) = <bos> y_1 .. y_{U-1}
        -> logits (B, U, V) for y_1 .. y_U, attention (B, U, S) (zeros without attention).

        With sampling_prob > 0, the token fed at step t >= 1 is, per example, the model's own
        token from step t-1 with that probability (`mix_tokens`), else tgt_in[:, t]."""
        if not 0.0 <= sampling_prob <= 1.0:
            raise SeqlabError(f"sampling_prob must be in [0, 1], got {sampling_prob}")
        memory, state = self.encode(src, src_lengths)
        logits, weights = [], []
        prev = tgt_in[:, 0]                                                   # (B,)
        for t in range(tgt_in.size(1)):
            if t:
                prev = tgt_in[:, t]                                           # (B,)
                if sampling_prob > 0.0:
                    prev = mix_tokens(prev, logits[-1], sampling_prob, own_token, generator)
            step_logits, step_weights, state = self.step(prev, state, memory)  # (B, V), (B, S)
            logits.append(step_logits)
            weights.append(step_weights)
        return torch.stack(logits, 1), torch.stack(weights, 1)               # (B, U, V), (B, U, S)

    # -- scoring and decoding -------------------------------------------------------------------

    def score(self, src: Tensor, src_lengths: Tensor, tgt: Tensor) -> Tensor:
        """Total log P(y | x) of each target: tgt (B, U) = y_1 .. (ending in <eos>), padded with
        <pad> -> (B,). Eval mode, no gradient."""
        with evaluating(self):
            bos = torch.full_like(tgt[:, :1], BOS)                            # (B, 1)
            logits, _ = self(src, src_lengths, torch.cat([bos, tgt[:, :-1]], 1))  # (B, U, V)
            logp = logits.float().log_softmax(-1).gather(-1, tgt[:, :, None]).squeeze(-1)  # (B, U)
            return (logp * (tgt != PAD)).sum(1)                               # (B,)


def strip_eos(tokens: Sequence[int]) -> list[int]:
    """A decoded row without its closing <eos> (and anything after it)."""
    tokens = list(tokens)
    return tokens[:tokens.index(EOS)] if EOS in tokens else tokens


def sequence_loss(logits: Tensor, tgt_out: Tensor) -> Tensor:
    """Mean cross-entropy per real target token: logits (B, U, V), tgt_out (B, U) -> ()."""
    return F.cross_entropy(logits.flatten(0, 1).float(), tgt_out.flatten(), ignore_index=PAD)
