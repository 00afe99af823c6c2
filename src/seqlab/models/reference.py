"""A numpy (float64) teaching reference for recurrent cells: forward pass and hand-written BPTT.

Nothing here is fast; everything here is meant to be read. Each cell is one `*_step` function
(the cell's equations) and one `*_step_backward` function (their derivative, by the chain rule).
`forward` runs a step function over time; `backward` runs the backward functions in reverse
time order: backpropagation through time (BPTT, Werbos 1990, "Backpropagation through time:
what it does and how to do it"). With `truncate=k` it does truncated BPTT as defined by
Williams & Peng (1990), "An efficient gradient-based algorithm for on-line training of
recurrent network trajectories".

Cells (shapes: x (T, B, I) time first, hidden size H, batch B; all arrays float64):

  elman   h_t = act(W_ih x_t + b_ih + W_hh h_{t-1} + b_hh)        act = tanh or relu (Elman 1990)
  jordan  h_t = tanh(W_ih x_t + b_ih + W_hh y_{t-1} + b_hh)        the state is the previous
          y_t = tanh(W_ho h_t + b_o)                               OUTPUT y (Jordan 1986)
  lstm    z   = W_ih x_t + b_ih + W_hh h_{t-1} + b_hh, gates stacked (i, f, g, o)
          i = σ(z_i), f = σ(z_f), g = tanh(z_g), o = σ(z_o)        (Hochreiter & Schmidhuber 1997;
          c_t = f ⊙ c_{t-1} + i ⊙ g,   h_t = o ⊙ tanh(c_t)          forget gate: Gers et al. 2000)
          peephole=True: z_i += w_ci ⊙ c_{t-1}, z_f += w_cf ⊙ c_{t-1}, z_o += w_co ⊙ c_t
                         (note: the output gate looks at the NEW cell; Gers & Schmidhuber 2000)
          coupled=True:  no forget gate, f = 1 - i, gates stacked (i, g, o)
  gru     r = σ(W_ir x + b_ir + W_hr h + b_hr),  u = σ(W_iz x + b_iz + W_hz h + b_hz)
          form="pytorch": n = tanh(W_in x + b_in + r ⊙ (W_hn h + b_hn))     (torch.nn.GRU)
          form="cho":     n = tanh(W_in x + b_in + W_hn (r ⊙ h) + b_hn)     (Cho et al. 2014)
          h_t = (1 - u) ⊙ n + u ⊙ h_{t-1},  gates stacked (r, z, n) as in PyTorch

Parameter names and layouts match torch.nn.RNN / LSTM / GRU (W_ih = weight_ih_l0, W_hh =
weight_hh_l0, b_ih = bias_ih_l0, b_hh = bias_hh_l0), so weights can be copied across.

The output at step t is always the first part of the state: h_t (elman, lstm, gru) or y_t
(jordan). The state is an array (B, H), or the tuple (h, c) for the LSTM.
"""
from __future__ import annotations

import numpy as np

CELLS = ("elman", "jordan", "lstm", "gru")
DEFAULT_OPTIONS = {
    "elman": {"nonlinearity": "tanh"},
    "jordan": {},
    "lstm": {"peephole": False, "coupled": False},
    "gru": {"form": "pytorch"},
}


# -- options, parameters, states ----------------------------------------------------------

def cell_options(cell: str, options: dict) -> dict:
    """The cell's options with defaults filled in; unknown cells, options or values raise."""
    if cell not in DEFAULT_OPTIONS:
        raise ValueError(f"unknown cell {cell!r}; expected one of {CELLS}")
    unknown = set(options) - set(DEFAULT_OPTIONS[cell])
    if unknown:
        raise TypeError(f"cell {cell!r} has no option(s) {sorted(unknown)}")
    merged = {**DEFAULT_OPTIONS[cell], **options}
    if cell == "elman" and merged["nonlinearity"] not in ("tanh", "relu"):
        raise ValueError("nonlinearity must be 'tanh' or 'relu'")
    if cell == "gru" and merged["form"] not in ("pytorch", "cho"):
        raise ValueError("form must be 'pytorch' or 'cho'")
    return merged


def param_shapes(cell: str, input_size: int, hidden_size: int, **options) -> dict:
    """Name -> shape of every parameter of `cell` (see the module docstring)."""
    options = cell_options(cell, options)
    H, I = hidden_size, input_size
    if cell == "lstm":
        gates = 3 if options["coupled"] else 4          # (i, g, o) or (i, f, g, o)
    elif cell == "gru":
        gates = 3                                       # (r, z, n)
    else:
        gates = 1
    shapes = {"W_ih": (gates * H, I), "W_hh": (gates * H, H), "b_ih": (gates * H,), "b_hh": (gates * H,)}
    if cell == "jordan":
        shapes.update(W_ho=(H, H), b_o=(H,))
    if cell == "lstm" and options["peephole"]:
        shapes["w_ci"] = (H,)
        if not options["coupled"]:
            shapes["w_cf"] = (H,)
        shapes["w_co"] = (H,)
    return shapes


def init_params(cell: str, input_size: int, hidden_size: int, rng, **options) -> dict:
    """Every parameter drawn from uniform(-1/√H, 1/√H), as PyTorch initialises its RNNs."""
    rng = np.random.default_rng(rng)                    # a Generator, or a seed
    bound = 1.0 / np.sqrt(hidden_size)
    shapes = param_shapes(cell, input_size, hidden_size, **options)
    return {name: rng.uniform(-bound, bound, size=shape) for name, shape in shapes.items()}


def zero_state(cell: str, batch_size: int, hidden_size: int):
    """An all-zero state: (B, H), or the pair (h, c) for the LSTM."""
    zeros = np.zeros((batch_size, hidden_size))                                   # (B, H)
    return (zeros, zeros.copy()) if cell == "lstm" else zeros


def _add_states(cell: str, a, b):
    """a + b for two states (or two state gradients) of the same cell."""
    if cell == "lstm":
        return (a[0] + b[0], a[1] + b[1])
    return a + b


def _add_to_output(cell: str, d_state, d_output):
    """Add dL/d(output_t) to the gradient of the state; the output is the state's first part."""
    if cell == "lstm":
        d_h, d_c = d_state
        return (d_h + d_output, d_c)
    return d_state + d_output


def sigmoid(z):
    return 1.0 / (1.0 + np.exp(-z))


# -- Elman ---------------------------------------------------------------------------------

def elman_step(params, x_t, h_prev, nonlinearity="tanh"):
    """h_t = act(a_t),  a_t = W_ih x_t + b_ih + W_hh h_{t-1} + b_hh."""
    a = x_t @ params["W_ih"].T + params["b_ih"] + h_prev @ params["W_hh"].T + params["b_hh"]  # (B, H)
    h = np.tanh(a) if nonlinearity == "tanh" else np.maximum(a, 0.0)                         # (B, H)
    return h, {"x": x_t, "h_prev": h_prev, "preactivation": a, "h": h}


def elman_step_backward(params, cache, d_h, grads, nonlinearity="tanh"):
    """From dL/dh_t to dL/dx_t and dL/dh_{t-1}; parameter gradients are added into `grads`."""
    if nonlinearity == "tanh":
        d_a = d_h * (1.0 - cache["h"] ** 2)             # tanh' = 1 - tanh²           (B, H)
    else:
        d_a = d_h * (cache["preactivation"] > 0)        # relu' = 1 where a > 0       (B, H)
    grads["W_ih"] += d_a.T @ cache["x"]                                                # (H, I)
    grads["W_hh"] += d_a.T @ cache["h_prev"]                                           # (H, H)
    grads["b_ih"] += d_a.sum(axis=0)                                                   # (H,)
    grads["b_hh"] += d_a.sum(axis=0)                                                   # (H,)
    d_x = d_a @ params["W_ih"]                                                         # (B, I)
    d_h_prev = d_a @ params["W_hh"]                                                    # (B, H)
    return d_x, d_h_prev


# -- Jordan --------------------------------------------------------------------------------

def jordan_step(params, x_t, y_prev):
    """h_t = tanh(W_ih x_t + b_ih + W_hh y_{t-1} + b_hh);  y_t = tanh(W_ho h_t + b_o)."""
    a = x_t @ params["W_ih"].T + params["b_ih"] + y_prev @ params["W_hh"].T + params["b_hh"]  # (B, H)
    h = np.tanh(a)                                                                            # (B, H)
    y = np.tanh(h @ params["W_ho"].T + params["b_o"])                                         # (B, H)
    return y, {"x": x_t, "y_prev": y_prev, "h": h, "y": y}


def jordan_step_backward(params, cache, d_y, grads):
    """From dL/dy_t to dL/dx_t and dL/dy_{t-1}."""
    d_o = d_y * (1.0 - cache["y"] ** 2)                 # through y = tanh(o)         (B, H)
    grads["W_ho"] += d_o.T @ cache["h"]                                                # (H, H)
    grads["b_o"] += d_o.sum(axis=0)                                                    # (H,)
    d_h = d_o @ params["W_ho"]                                                         # (B, H)
    d_a = d_h * (1.0 - cache["h"] ** 2)                 # through h = tanh(a)         (B, H)
    grads["W_ih"] += d_a.T @ cache["x"]                                                # (H, I)
    grads["W_hh"] += d_a.T @ cache["y_prev"]                                           # (H, H)
    grads["b_ih"] += d_a.sum(axis=0)                                                   # (H,)
    grads["b_hh"] += d_a.sum(axis=0)                                                   # (H,)
    d_x = d_a @ params["W_ih"]                                                         # (B, I)
    d_y_prev = d_a @ params["W_hh"]                                                    # (B, H)
    return d_x, d_y_prev


# -- LSTM ----------------------------------------------------------------------------------

def lstm_step(params, x_t, state, peephole=False, coupled=False):
    """One LSTM step; see the module docstring for the equations and the two options."""
    h_prev, c_prev = state                                                         # (B, H) each
    z = x_t @ params["W_ih"].T + params["b_ih"] + h_prev @ params["W_hh"].T + params["b_hh"]  # (B, G*H)
    if coupled:
        z_i, z_g, z_o = np.split(z, 3, axis=1)                                     # (B, H) each
    else:
        z_i, z_f, z_g, z_o = np.split(z, 4, axis=1)                                # (B, H) each
    if peephole:
        z_i = z_i + params["w_ci"] * c_prev             # input gate peeks at c_{t-1}
        if not coupled:
            z_f = z_f + params["w_cf"] * c_prev         # forget gate peeks at c_{t-1}
    i = sigmoid(z_i)                                                               # (B, H)
    f = 1.0 - i if coupled else sigmoid(z_f)                                       # (B, H)
    g = np.tanh(z_g)                                                               # (B, H)
    c = f * c_prev + i * g                                                         # (B, H)
    if peephole:
        z_o = z_o + params["w_co"] * c                  # output gate peeks at the NEW c_t
    o = sigmoid(z_o)                                                               # (B, H)
    tanh_c = np.tanh(c)                                                            # (B, H)
    h = o * tanh_c                                                                 # (B, H)
    cache = {"x": x_t, "h_prev": h_prev, "c_prev": c_prev,
             "i": i, "f": f, "g": g, "o": o, "c": c, "tanh_c": tanh_c}
    return (h, c), cache


def lstm_step_backward(params, cache, d_state, grads, peephole=False, coupled=False):
    """From (dL/dh_t, dL/dc_t) to dL/dx_t and (dL/dh_{t-1}, dL/dc_{t-1})."""
    d_h, d_c_from_future = d_state                                                 # (B, H) each
    i, f, g, o, c = cache["i"], cache["f"], cache["g"], cache["o"], cache["c"]
    c_prev, tanh_c = cache["c_prev"], cache["tanh_c"]
    # h = o ⊙ tanh(c)
    d_z_o = d_h * tanh_c * o * (1.0 - o)                # σ' = σ(1 - σ)                (B, H)
    d_c = d_c_from_future + d_h * o * (1.0 - tanh_c ** 2)                          # (B, H)
    if peephole:                                        # z_o = ... + w_co ⊙ c
        d_c = d_c + d_z_o * params["w_co"]
        grads["w_co"] += (d_z_o * c).sum(axis=0)                                   # (H,)
    # c = f ⊙ c_prev + i ⊙ g
    d_f = d_c * c_prev                                                             # (B, H)
    d_i = d_c * g                                                                  # (B, H)
    d_g = d_c * i                                                                  # (B, H)
    d_c_prev = d_c * f                                                             # (B, H)
    if coupled:
        d_i = d_i - d_f                                 # f = 1 - i, so df/di = -1
    d_z_i = d_i * i * (1.0 - i)                                                    # (B, H)
    d_z_g = d_g * (1.0 - g ** 2)                                                   # (B, H)
    if peephole:                                        # z_i = ... + w_ci ⊙ c_prev
        d_c_prev = d_c_prev + d_z_i * params["w_ci"]
        grads["w_ci"] += (d_z_i * c_prev).sum(axis=0)                              # (H,)
    if coupled:
        d_z = np.concatenate([d_z_i, d_z_g, d_z_o], axis=1)                        # (B, 3H)
    else:
        d_z_f = d_f * f * (1.0 - f)                                                # (B, H)
        if peephole:                                    # z_f = ... + w_cf ⊙ c_prev
            d_c_prev = d_c_prev + d_z_f * params["w_cf"]
            grads["w_cf"] += (d_z_f * c_prev).sum(axis=0)                          # (H,)
        d_z = np.concatenate([d_z_i, d_z_f, d_z_g, d_z_o], axis=1)                 # (B, 4H)
    # z = W_ih x + b_ih + W_hh h_prev + b_hh
    grads["W_ih"] += d_z.T @ cache["x"]                                            # (G*H, I)
    grads["W_hh"] += d_z.T @ cache["h_prev"]                                       # (G*H, H)
    grads["b_ih"] += d_z.sum(axis=0)                                               # (G*H,)
    grads["b_hh"] += d_z.sum(axis=0)                                               # (G*H,)
    d_x = d_z @ params["W_ih"]                                                     # (B, I)
    d_h_prev = d_z @ params["W_hh"]                                                # (B, H)
    return d_x, (d_h_prev, d_c_prev)


# -- GRU -----------------------------------------------------------------------------------

def gru_step(params, x_t, h_prev, form="pytorch"):
    """One GRU step; `form` chooses where the reset gate acts (see the module docstring)."""
    W_ir, W_iz, W_in = np.split(params["W_ih"], 3, axis=0)                         # (H, I) each
    W_hr, W_hz, W_hn = np.split(params["W_hh"], 3, axis=0)                         # (H, H) each
    b_ir, b_iz, b_in = np.split(params["b_ih"], 3)                                 # (H,) each
    b_hr, b_hz, b_hn = np.split(params["b_hh"], 3)                                 # (H,) each
    r = sigmoid(x_t @ W_ir.T + b_ir + h_prev @ W_hr.T + b_hr)     # reset gate      (B, H)
    u = sigmoid(x_t @ W_iz.T + b_iz + h_prev @ W_hz.T + b_hz)     # update gate     (B, H)
    cache = {"x": x_t, "h_prev": h_prev, "r": r, "u": u}
    if form == "pytorch":
        cache["hn"] = h_prev @ W_hn.T + b_hn            # W_hn h + b_hn               (B, H)
        n = np.tanh(x_t @ W_in.T + b_in + r * cache["hn"])                         # (B, H)
    else:
        cache["rh"] = r * h_prev                        # r ⊙ h                       (B, H)
        n = np.tanh(x_t @ W_in.T + b_in + cache["rh"] @ W_hn.T + b_hn)             # (B, H)
    cache["n"] = n
    h = (1.0 - u) * n + u * h_prev                                                 # (B, H)
    return h, cache


def gru_step_backward(params, cache, d_h, grads, form="pytorch"):
    """From dL/dh_t to dL/dx_t and dL/dh_{t-1}."""
    H = d_h.shape[1]
    W_hr, W_hz, W_hn = np.split(params["W_hh"], 3, axis=0)                         # (H, H) each
    x, h_prev, r, u, n = cache["x"], cache["h_prev"], cache["r"], cache["u"], cache["n"]
    # h = (1 - u) ⊙ n + u ⊙ h_prev
    d_n = d_h * (1.0 - u)                                                          # (B, H)
    d_u = d_h * (h_prev - n)                                                       # (B, H)
    d_h_prev = d_h * u                                                             # (B, H)
    d_a_n = d_n * (1.0 - n ** 2)                        # n = tanh(a_n)               (B, H)
    if form == "pytorch":                               # a_n = W_in x + b_in + r ⊙ hn
        d_r = d_a_n * cache["hn"]                                                  # (B, H)
        d_hn = d_a_n * r                                # hn = W_hn h_prev + b_hn     (B, H)
        grads["W_hh"][2 * H:] += d_hn.T @ h_prev                                   # (H, H)
        grads["b_hh"][2 * H:] += d_hn.sum(axis=0)                                  # (H,)
        d_h_prev = d_h_prev + d_hn @ W_hn
    else:                                               # a_n = W_in x + b_in + W_hn (r ⊙ h) + b_hn
        d_rh = d_a_n @ W_hn                                                        # (B, H)
        grads["W_hh"][2 * H:] += d_a_n.T @ cache["rh"]                             # (H, H)
        grads["b_hh"][2 * H:] += d_a_n.sum(axis=0)                                 # (H,)
        d_r = d_rh * h_prev                                                        # (B, H)
        d_h_prev = d_h_prev + d_rh * r
    d_a_r = d_r * r * (1.0 - r)                         # r = σ(a_r)                  (B, H)
    d_a_u = d_u * u * (1.0 - u)                         # u = σ(a_u)                  (B, H)
    d_a_x = np.concatenate([d_a_r, d_a_u, d_a_n], axis=1)   # w.r.t. W_ih x + b_ih   (B, 3H)
    grads["W_ih"] += d_a_x.T @ x                                                   # (3H, I)
    grads["b_ih"] += d_a_x.sum(axis=0)                                             # (3H,)
    d_a_ru = np.concatenate([d_a_r, d_a_u], axis=1)     # w.r.t. the r, z rows of W_hh h  (B, 2H)
    grads["W_hh"][: 2 * H] += d_a_ru.T @ h_prev                                    # (2H, H)
    grads["b_hh"][: 2 * H] += d_a_ru.sum(axis=0)                                   # (2H,)
    d_h_prev = d_h_prev + d_a_r @ W_hr + d_a_u @ W_hz                              # (B, H)
    d_x = d_a_x @ params["W_ih"]                                                   # (B, I)
    return d_x, d_h_prev


STEPS = {"elman": elman_step, "jordan": jordan_step, "lstm": lstm_step, "gru": gru_step}
STEP_BACKWARDS = {"elman": elman_step_backward, "jordan": jordan_step_backward,
                  "lstm": lstm_step_backward, "gru": gru_step_backward}


# -- over time -----------------------------------------------------------------------------

def forward(cell: str, params: dict, x, state, **options):
    """Run `cell` over x (T, B, I) from `state`.

    Returns (outputs (T, B, H), final_state, cache); the cache holds what `backward` needs.
    """
    options = cell_options(cell, options)
    T, B, I = x.shape
    H = params["W_hh"].shape[1]
    expected = param_shapes(cell, I, H, **options)
    if set(params) != set(expected) or any(params[k].shape != s for k, s in expected.items()):
        raise ValueError(f"parameters for {cell} {options} must have shapes {expected}")
    outputs = np.zeros((T, B, H))                                                  # (T, B, H)
    step_caches = []
    for t in range(T):
        state, step_cache = STEPS[cell](params, x[t], state, **options)
        outputs[t] = state[0] if cell == "lstm" else state  # output = h_t (or y_t)  (B, H)
        step_caches.append(step_cache)
    cache = {"cell": cell, "options": options, "x_shape": x.shape, "hidden_size": H,
             "steps": step_caches}
    return outputs, state, cache


def backward(cell: str, params: dict, cache: dict, d_outputs, d_final_state=None, truncate=None,
             **options):
    """Backpropagation through time. Returns (grads, d_x (T, B, I), d_initial_state).

    d_outputs (T, B, H) is dL/d(output_t) for every t; d_final_state (optional) is dL/d(final
    state), the same structure as the state. `grads` has the same keys as `params`.

    truncate=None: full BPTT (Werbos 1990). Every loss term flows back to step 0 and into the
        initial state: one reverse sweep, carrying dL/d(state) from step t to step t-1.

    truncate=k: truncated BPTT, BPTT(k) of Williams & Peng (1990). The gradient of the loss term
        at step t flows back through at most k steps: steps t, t-1, ..., t-k+1 receive it and the
        gradient w.r.t. the state entering step t-k+1 is thrown away, as if that state were a
        constant. The initial state is an input of step 0, so it receives term t only when the
        window reaches step 0 (t < k). Done plainly: one backward sweep of length <= k per output
        step, O(T k) work. `d_final_state` is IGNORED here (it is not a loss term of any step).
        With k >= T, this gives exactly the same result as full BPTT without d_final_state.
    """
    options = cell_options(cell, options)
    if options != cache["options"]:
        raise ValueError(f"options {options} differ from the forward pass's {cache['options']}")
    step_backward = STEP_BACKWARDS[cell]
    steps = cache["steps"]
    T, B, I = cache["x_shape"]
    H = cache["hidden_size"]
    grads = {name: np.zeros_like(value) for name, value in params.items()}
    d_x = np.zeros((T, B, I))                                                      # (T, B, I)

    if truncate is None:
        # dL/d(state_t) = dL/d(output_t) + (what step t+1 sends back to state_t)
        d_state = zero_state(cell, B, H) if d_final_state is None else d_final_state
        for t in reversed(range(T)):
            d_state = _add_to_output(cell, d_state, d_outputs[t])
            d_x[t], d_state = step_backward(params, steps[t], d_state, grads, **options)
        return grads, d_x, d_state          # after step 0, d_state is dL/d(initial state)

    if int(truncate) != truncate or truncate < 1:
        raise ValueError(f"truncate must be a positive integer or None, got {truncate!r}")
    d_initial_state = zero_state(cell, B, H)
    for t in range(T):                      # the loss term at step t, on its own
        d_state = _add_to_output(cell, zero_state(cell, B, H), d_outputs[t])
        first = max(0, t - truncate + 1)    # the earliest step this term may reach
        for s in reversed(range(first, t + 1)):
            d_x_s, d_state = step_backward(params, steps[s], d_state, grads, **options)
            d_x[s] += d_x_s
        if first == 0:                      # the window reached the start: keep it
            d_initial_state = _add_states(cell, d_initial_state, d_state)
        # otherwise d_state is dL/d(state after step first-1): truncated, i.e. dropped.
    return grads, d_x, d_initial_state
