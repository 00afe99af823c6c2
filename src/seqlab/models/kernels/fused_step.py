"""One decoding step of PyTorch's fused nn.RNN / nn.LSTM / nn.GRU, at the speed of its arithmetic.

Generating a token costs one step of the recurrence on a batch of one (or a few). Calling
nn.LSTM for a sequence of length 1 pays the fused kernel's set-up on every call: on the demo
model (1 x 384 LSTM) `model.step` took 0.77 ms where the matrix-vector products it needs take
0.10 ms. Here the same step is a few ATen calls on weights prepared once:

    gates (B, G*H) = b + x W_ih^T + h W_hh^T      layer 0: x W_ih^T + b is a row of E W_ih^T + b
                                                  (precomputed), later layers one product [x h][W_ih W_hh]^T
    LSTM:  i, f, o = σ(·), g = tanh(·);  c' = f c + i g;  h' = o tanh(c')       (gates i f g o)
    GRU:   r, z = σ(gi_rz + gh_rz);  n = tanh(gi_n + r (gh_n + b_hn));  h' = n + z (h - n)
    RNN:   h' = act(gates)

with PyTorch's gate order and equations, so the numbers equal nn.LSTM / nn.GRU / nn.RNN's (to
float rounding; tested). The transposed weights are cached and rebuilt whenever a parameter
changes (its version counter moves: an optimizer step, load_state_dict).

Used only where it computes the same thing: eval mode (no dropout between layers), no
gradient, no autocast.

For the LSTM and the GRU in float32 on the CPU, `step_logits` runs the whole step, output layer included,
as one call into seqlab's native library (native/decode.cpp) when it is built: the ~15
operations above cost more in dispatch than in arithmetic at batch 1.
"""
from __future__ import annotations

import torch
from torch import Tensor, nn

from seqlab.models.kernels import native


def _static_ok(rnn: nn.Module, head: nn.Linear) -> bool:
    """What does not change between calls: a module this step computes, and its dtype."""
    weight = rnn._parameters.get("weight_ih_l0") if isinstance(rnn, (nn.LSTM, nn.GRU, nn.RNN)) else None
    return (weight is not None and not rnn.bidirectional and rnn.bias and getattr(rnn, "proj_size", 0) == 0
            and head.weight.dtype == weight.dtype)


class StepWeights:
    """Per layer, built from `rnn` (and, for layer 0, the embedding that feeds it):
    - layer 0: a table (V, G*H) = E W_ih^T + b, so a token's input term is one row of it: the
      embedding lookup and the input product are folded into one gather (E: the embedding);
    - the LSTM and RNN's later layers: [W_ih W_hh]^T (I+H, G*H) and the summed bias, one product;
    - every layer: W_hh^T (H, G*H); the GRU keeps b_hh apart (r multiplies gh_n + b_hn);
    - the output layer: its W^T (H, V) and bias, in `self.head`;
    - `self.native`: the native op's name and its weight arguments, for the float32 CPU LSTM and GRU.

    Decoding calls `get` once per token, so its check is cheap: the parameters' version
    counters and storage (an optimizer step, load_state_dict or .to() changes one of them)."""

    def __init__(self) -> None:
        self.key: list | None = None
        self.params: list[Tensor] = []
        self.owner: tuple | None = None
        self.ok = False
        self.layers: list[dict[str, Tensor]] = []
        self.head: tuple[Tensor, Tensor] | None = None
        self.native: tuple | None = None
        self.device_type = "cpu"

    def get(self, rnn: nn.Module, embedding: nn.Embedding, head: nn.Linear) -> list[dict[str, Tensor]] | None:
        """The prepared weights, or None when this step does not compute `rnn`."""
        if (self.owner is not None and self.owner[0] is rnn and self.owner[1] is embedding and self.owner[2] is head
                and [(p._version, p.data_ptr()) for p in self.params] == self.key):
            return self.layers if self.ok else None
        self.owner = (rnn, embedding, head)
        self.params = [*rnn.parameters(), embedding.weight, *head.parameters()]
        self.key = [(p._version, p.data_ptr()) for p in self.params]
        self.ok = _static_ok(rnn, head)
        self.layers, self.head, self.native = [], None, None
        if self.ok:
            self._build(rnn, embedding, head)
        return self.layers if self.ok else None

    def _build(self, rnn: nn.Module, embedding: nn.Embedding, head: nn.Linear) -> None:
        gru = isinstance(rnn, nn.GRU)
        self.device_type = rnn.weight_ih_l0.device.type
        for layer in range(rnn.num_layers):
            w_ih = getattr(rnn, f"weight_ih_l{layer}").detach()                  # (G*H, I)
            w_hh = getattr(rnn, f"weight_hh_l{layer}").detach()                  # (G*H, H)
            b_ih = getattr(rnn, f"bias_ih_l{layer}").detach()
            b_hh = getattr(rnn, f"bias_hh_l{layer}").detach()
            bias = b_ih if gru else b_ih + b_hh
            entry = {"w_hh": w_hh.t().contiguous(), "b_hh": b_hh.clone()}
            if layer == 0:
                entry["table"] = torch.addmm(bias, embedding.weight.detach(), w_ih.t())   # (V, G*H)
            elif gru:
                entry["w_ih"], entry["b_ih"] = w_ih.t().contiguous(), b_ih.clone()
            else:
                entry["both"] = torch.cat([w_ih, w_hh], 1).t().contiguous()      # (I+H, G*H)
                entry["bias"] = bias
            self.layers.append(entry)
        hb = head.bias.detach() if head.bias is not None else head.weight.new_zeros(head.weight.size(0))
        self.head = (head.weight.detach().t().contiguous(), hb.contiguous())
        if rnn.weight_ih_l0.dtype == torch.float32 and self.device_type == "cpu":
            layers = self.layers
            if isinstance(rnn, nn.LSTM):
                self.native = ("lstm_decode_step", layers[0]["table"], [w["w_hh"] for w in layers],
                               [w["both"] for w in layers[1:]], [w["bias"] for w in layers[1:]])
            elif gru:
                self.native = ("gru_decode_step", layers[0]["table"], [w["w_ih"] for w in layers[1:]],
                               [w["b_ih"] for w in layers[1:]], [w["w_hh"] for w in layers], [w["b_hh"] for w in layers])


def usable(rnn: nn.Module) -> bool:
    """The conditions that change from call to call (with no autocast, checked once the
    weights' device is known): eval mode (no dropout between layers), no gradient."""
    return not rnn.training and not torch.is_grad_enabled()


def step(rnn: nn.Module, weights: StepWeights, embedding: nn.Embedding, tokens: Tensor, state):
    """tokens (B,) and seqlab's batch-first state ((B, L, H), or a pair for the LSTM) ->
    (top layer's output (B, H), new state in the same layout), on the weights `weights.get`
    prepared."""
    layers = weights.layers
    lstm, gru = isinstance(rnn, nn.LSTM), isinstance(rnn, nn.GRU)
    h_all, c_all = state if lstm else (state, None)
    hs, cs = [], []
    x = None
    for layer, w in enumerate(layers):
        h = h_all[:, layer]                                                         # (B, H)
        H = h.size(1)
        if lstm or not gru:
            if layer == 0:
                pre = w["table"].index_select(0, tokens).addmm_(h, w["w_hh"])       # (B, G*H)
            else:
                pre = torch.addmm(w["bias"], torch.cat([x, h], 1), w["both"])       # (B, G*H)
            if lstm:                                         # gates i, f, g, o
                sig = pre.sigmoid()
                c = torch.addcmul(sig[:, H:2 * H] * c_all[:, layer], sig[:, :H], pre[:, 2 * H:3 * H].tanh())
                x = sig[:, 3 * H:] * c.tanh()                                       # (B, H)
                cs.append(c)
            else:
                x = pre.tanh_() if rnn.nonlinearity == "tanh" else pre.relu_()
        else:
            gi = w["table"].index_select(0, tokens) if layer == 0 else torch.addmm(w["b_ih"], x, w["w_ih"])
            gh = torch.addmm(w["b_hh"], h, w["w_hh"])                               # (B, 3H)
            rz = (gi[:, :2 * H] + gh[:, :2 * H]).sigmoid_()
            n = torch.addcmul(gi[:, 2 * H:], rz[:, :H], gh[:, 2 * H:]).tanh_()
            x = torch.addcmul(n, rz[:, H:], h - n)
        hs.append(x)
    if len(hs) == 1:
        new_h = hs[0].unsqueeze(1)
        return x, ((new_h, cs[0].unsqueeze(1)) if lstm else new_h)
    new_h = torch.stack(hs, 1)
    return x, ((new_h, torch.stack(cs, 1)) if lstm else new_h)


def step_logits(rnn: nn.Module, weights: StepWeights, embedding: nn.Embedding, head: nn.Linear, tokens: Tensor,
                state):
    """One step and the output layer: tokens (B,) -> (logits (B, V), new state), or None where
    this hand-made step does not apply (the caller runs the module itself). One native call
    for the float32 CPU LSTM or GRU (native/decode.cpp), else the ATen calls of `step`."""
    if not usable(rnn) or weights.get(rnn, embedding, head) is None or torch.is_autocast_enabled(weights.device_type):
        return None
    if weights.native is not None and native.available():
        name, *prepared = weights.native
        op = getattr(torch.ops.seqlab_native, name)
        if isinstance(state, tuple):                                       # the LSTM: (h, c)
            logits, h, c = op(tokens.contiguous(), *prepared, state[0].contiguous(), state[1].contiguous(),
                              *weights.head)
            return logits, (h, c)
        logits, h = op(tokens.contiguous(), *prepared, state.contiguous(), *weights.head)
        return logits, h
    out, state = step(rnn, weights, embedding, tokens, state)
    return head(out), state
