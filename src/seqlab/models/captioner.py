"""Image captioning: a small CNN encoder and an LSTM decoder, with or without soft attention.

    image (B, 1, H, W) ─► CNN ─► feature map (B, C, H/8, W/8) = R regions a_i (B, R, C)
      Show and Tell:            mean a ─► h_0, c_0; then the LSTM reads only words
      Show, Attend and Tell:    mean a ─► h_0, c_0; at every word t
                                    e_ti = vᵀ tanh(W_a a_i + W_h h_{t-1}),  α_t = softmax(e_t)
                                    z_t = β_t Σ_i α_ti a_i,  β_t = σ(w_β · h_{t-1})   (the gate)
                                    h_t = LSTM([E y_{t-1}; z_t], h_{t-1})
                                    p(y_t) = softmax(L_o(E y_{t-1} + L_h h_t + L_z z_t))   (deep output)

Papers:
- Vinyals, Toshev, Bengio & Erhan (2015), "Show and Tell: A Neural Image Caption Generator":
  the image enters once, before the words. (They feed the CNN code as the first input;
  seqlab sets the initial state from it, as Xu et al. do — the same information, one step
  shorter.)
- Xu et al. (2015), "Show, Attend and Tell: Neural Image Caption Generation with Visual
  Attention": soft attention over the convolutional feature map, the gating scalar β, the
  deep output layer, and the doubly stochastic penalty λ Σ_i (1 − Σ_t α_ti)² (applied by
  tasks/caption.py, which sees the padding).

The model answers the encoder–decoder calls of models/seq2seq.py — `encode(images, lengths)`
-> (Memory, state), `step(prev, state, memory)` -> (logits, attention, state) — so greedy and
beam decoding are decode/seq2seq.py's, unchanged. Decoding never emits <pad> or <bos>.

Dimension legend: B batch, C channels, R regions, U caption length, E embedding, H hidden, V vocabulary.
"""
from __future__ import annotations

import torch
from torch import Tensor, nn

from seqlab import SeqlabError
from seqlab.config import ModelConfig
from seqlab.models.seq2seq import Memory, evaluating, sequence_loss
from seqlab.tokens import BOS, PAD

ATTENTIONS = ("none", "bahdanau")          # bahdanau: Xu et al.'s soft attention is the additive score


class ImageEncoder(nn.Module):
    """(B, 1, H, W) -> regions (B, H/8 · W/8, C): two coordinate channels joined to the image
    (CoordConv, Liu et al. 2018: where a region is must be readable from its features, since
    the caption is in reading order), then three stages of 3x3 convolutions with ReLU, each
    closed by 2x2 max pooling; the last stage has two convolutions, so each region's
    receptive field (~34 pixels) spans a digit."""

    def __init__(self, channels: int = 64):
        super().__init__()
        c1, c2, c3 = channels // 4, channels // 2, channels
        self.net = nn.Sequential(
            nn.Conv2d(3, c1, 3, padding=1), nn.ReLU(), nn.MaxPool2d(2),
            nn.Conv2d(c1, c2, 3, padding=1), nn.ReLU(), nn.MaxPool2d(2),
            nn.Conv2d(c2, c3, 3, padding=1), nn.ReLU(), nn.Conv2d(c3, c3, 3, padding=1), nn.ReLU(), nn.MaxPool2d(2))
        for layer in self.net:
            if isinstance(layer, nn.Conv2d):      # He et al. (2015): ReLU layers keep their scale; torch's
                nn.init.kaiming_normal_(layer.weight, nonlinearity="relu")   # default starts them small,
                nn.init.zeros_(layer.bias)        # and a sparse scene then trains only after a long plateau
        self.channels = channels

    def forward(self, images: Tensor) -> tuple[Tensor, tuple[int, int]]:
        B, _, H, W = images.shape
        ys = torch.linspace(-1, 1, H, device=images.device, dtype=images.dtype)[:, None].expand(H, W)
        xs = torch.linspace(-1, 1, W, device=images.device, dtype=images.dtype)[None, :].expand(H, W)
        where = torch.stack([ys, xs])[None].expand(B, 2, H, W)
        maps = self.net(torch.cat([images, where], 1))                       # (B, C, h, w)
        return maps.flatten(2).transpose(1, 2), tuple(maps.shape[2:])        # (B, R, C), (h, w)


class Captioner(nn.Module):
    def __init__(self, cfg: ModelConfig, vocab_size: int, attention: str = "bahdanau",
                 image_size: tuple[int, int] = (64, 96)):
        super().__init__()
        if cfg.channels < 4 or cfg.channels % 4:
            raise SeqlabError(f"caption: model.channels must be a multiple of 4, at least 4; got {cfg.channels}")
        if attention not in ATTENTIONS:
            raise SeqlabError(f"caption: task.attention must be one of {', '.join(ATTENTIONS)}; got {attention!r}")
        H, E, C = cfg.hidden_size, cfg.embedding_size, cfg.channels
        self.attends, self.hidden_size = attention != "none", H
        self.encoder = ImageEncoder(C)
        # the image code that starts the decoder: with attention the mean region (Xu et al.);
        # without, a fully connected layer over the whole map (Show and Tell's CNN code keeps
        # where things are: a mean would lose it, and with it the reading order)
        self.grid = grid_of(*image_size)
        self.regions = R = self.grid[0] * self.grid[1]
        self.code = None if self.attends else nn.Sequential(nn.Flatten(), nn.Linear(R * C, H), nn.ReLU())
        self.init_h, self.init_c = nn.Linear(C if self.attends else H, H), nn.Linear(C if self.attends else H, H)
        self.embedding = nn.Embedding(vocab_size, E, padding_idx=PAD)
        self.cell = nn.LSTMCell(E + (C if self.attends else 0), H)
        with torch.no_grad():                   # gates stacked (i, f, g, o); both biases feed f
            self.cell.bias_ih[H:2 * H].fill_(cfg.forget_bias / 2)
            self.cell.bias_hh[H:2 * H].fill_(cfg.forget_bias / 2)
        self.dropout = nn.Dropout(cfg.dropout)
        if self.attends:
            self.key = nn.Linear(C, H)                                       # W_a (and the bias)
            self.query = nn.Linear(H, H, bias=False)                         # W_h
            self.v = nn.Linear(H, 1, bias=False)
            self.gate = nn.Linear(H, 1)                                      # β
            self.out_h, self.out_z = nn.Linear(H, E), nn.Linear(C, E, bias=False)
            self.output = nn.Linear(E, vocab_size)                           # L_o
        else:
            self.output = nn.Linear(H, vocab_size)

    def encode(self, images: Tensor, lengths: Tensor | None = None) -> tuple[Memory, dict[str, Tensor]]:
        """images (B, 1, H, W) in [0, 1] -> the regions to attend to and the decoder's first state.
        (`lengths` is the encoder–decoder signature's; an image has none.)"""
        regions, _ = self.encoder(images)                                    # (B, R, C)
        if regions.size(1) != self.regions:
            raise SeqlabError(f"caption: the model reads {self.grid[0] * 8} x {self.grid[1] * 8} images; got "
                              f"{images.size(2)} x {images.size(3)}")
        code = regions.mean(1) if self.attends else self.code(regions)       # (B, C) or (B, H)
        state = {"h": torch.tanh(self.init_h(code))[:, None], "c": self.init_c(code)[:, None]}   # (B, 1, H)
        keys = self.key(regions) if self.attends else regions                # (B, R, H)
        mask = torch.ones(regions.shape[:2], dtype=torch.bool, device=images.device)              # (B, R)
        return Memory(regions, keys, mask), state

    def step(self, prev: Tensor, state: dict[str, Tensor], memory: Memory) -> tuple[Tensor, Tensor, dict[str, Tensor]]:
        """prev (B,) token ids -> logits (B, V), attention (B, R) (zeros without), new state."""
        emb = self.dropout(self.embedding(prev))                             # (B, E)
        h, c = state["h"][:, 0], state["c"][:, 0]                            # (B, H)
        if self.attends:
            scores = self.v(torch.tanh(memory.keys + self.query(h)[:, None])).squeeze(-1)   # (B, R)
            weights = scores.softmax(-1)                                     # (B, R)
            z = torch.sigmoid(self.gate(h)) * torch.bmm(weights[:, None], memory.annotations).squeeze(1)  # (B, C)
            h, c = self.cell(torch.cat([emb, z], -1), (h, c))
            logits = self.output(self.dropout(emb + self.out_h(h) + self.out_z(z)))
        else:
            weights = memory.mask.to(emb.dtype) * 0.0                        # (B, R)
            h, c = self.cell(emb, (h, c))
            logits = self.output(self.dropout(h))
        return logits, weights, {"h": h[:, None], "c": c[:, None]}

    def forward(self, images: Tensor, tgt_in: Tensor) -> tuple[Tensor, Tensor]:
        """Teacher forcing: images (B, 1, H, W), tgt_in (B, U) = <bos> y_1 .. y_{U-1} ->
        logits (B, U, V), attention (B, U, R)."""
        memory, state = self.encode(images)
        logits, weights = [], []
        for t in range(tgt_in.size(1)):
            step_logits, step_weights, state = self.step(tgt_in[:, t], state, memory)
            logits.append(step_logits)
            weights.append(step_weights)
        return torch.stack(logits, 1), torch.stack(weights, 1)

    def score(self, images: Tensor, tgt: Tensor) -> Tensor:
        """Total log P(caption | image): tgt (B, U) = y_1 .. <eos>, padded with <pad> -> (B,)."""
        with evaluating(self):
            bos = torch.full_like(tgt[:, :1], BOS)
            logits, _ = self(images, torch.cat([bos, tgt[:, :-1]], 1))       # (B, U, V)
            logp = logits.float().log_softmax(-1).gather(-1, tgt[:, :, None]).squeeze(-1)   # (B, U)
            return (logp * (tgt != PAD)).sum(1)


def doubly_stochastic(weights: Tensor, tgt_out: Tensor) -> Tensor:
    """Xu et al.'s penalty, (1 − Σ_t α_ti)² over the real (unpadded) words, averaged over the
    regions i (the paper sums them; the mean keeps λ's scale independent of the grid):
    weights (B, U, R), tgt_out (B, U) -> (B,)."""
    coverage = (weights * (tgt_out != PAD)[:, :, None]).sum(1)               # (B, R)
    return ((1.0 - coverage) ** 2).mean(1)


def grid_of(height: int, width: int) -> tuple[int, int]:
    """The (rows, columns) of regions ImageEncoder makes of an image: three 2x2 poolings."""
    return height // 8, width // 8


__all__ = ["ATTENTIONS", "Captioner", "ImageEncoder", "doubly_stochastic", "grid_of", "sequence_loss"]
