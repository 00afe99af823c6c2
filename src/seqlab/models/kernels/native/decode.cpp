// One decoding step of an LSTM or GRU language model, and one draw from its softmax, each in one call.
//
// Batch-1 generation is a chain of tiny operations: per token, per layer, a gather of the
// input term, one matrix-vector product with the recurrent weights, ten elementwise gate
// operations, then the output layer, the softmax and the draw. Dispatched one by one from
// Python, every operation costs a few microseconds of overhead, which at batch 1 is more
// than its arithmetic: on the demo model (1 x 384 LSTM) the step ran at 37 % of the speed of
// its matrix-vector products (benchmarks/decoding.md). Here the whole step is one call:
//
//   lstm_decode_step(tokens (B,), table (V, 4H), w_hh [(H, 4H) per layer],
//                    w_both [(I+H, 4H) for layers 1..L-1], bias [(4H) for layers 1..L-1],
//                    h (B, L, H), c (B, L, H), head_w (H, V), head_b (V)) -> [logits (B, V), h', c']
//
// with models/kernels/fused_step.py's prepared weights (the same equations and gate order
// i, f, g, o as nn.LSTM: layer 0's input term is a row of table = E W_ih^T + b; later layers
// one product of [x h] with [W_ih W_hh]^T): ATen's matrix products, and one pass over each
// row for the gates, the cell and the new h.
//
//   gru_decode_step(tokens, table (V, 3H), w_ih [(H, 3H) for layers 1..L-1], b_ih [...],
//                   w_hh [(H, 3H) per layer], b_hh [(3H) per layer], h (B, L, H), head_w, head_b)
//                   -> [logits (B, V), h']
//
// the same for nn.GRU (gate blocks r, z, n; b_hh kept apart, as r multiplies W_hn h + b_hn).
//
//   draw_rows(logits (B, V), temperature, u (B,)) -> tokens (B,)
//
// samples each row from softmax(logits / temperature) by inverting its cumulative sum at
// u * total (u uniform in [0, 1), drawn by the caller from its generator), the rule
// decode/sampling.draw applies in three ATen calls: the first token whose cumulative mass
// exceeds u * total; a token with logit -inf (banned) has mass 0 and is never drawn.
//
// float32 only (decoding runs in float32); the Python path serves everything else.

#include <ATen/ATen.h>
#include <torch/library.h>

#include <cmath>
#include <cstdint>
#include <limits>
#include <vector>

#include "maths.h"

namespace {

using at::Tensor;
using namespace seqlab_maths;

void check_f32(const Tensor& t, const char* name) {
    TORCH_CHECK(t.device().is_cpu() && t.is_contiguous() && t.scalar_type() == at::kFloat,
                "seqlab decode step: ", name, " must be a contiguous float32 CPU tensor");
}

// acc (B, n) += x (B, K; rows ldx apart) @ w (K, n), by ATen's matrix product (MKL or oneDNN
// underneath; at one row it ran as fast as a hand-blocked loop, and at more rows it reads
// each weight once for all of them)
void rows_times(const float* x, int64_t ldx, int64_t B, int64_t K, const Tensor& w, float* acc) {
    const auto opt = w.options();
    Tensor xs = at::from_blob(const_cast<float*>(x), {B, K}, {ldx, 1}, opt);
    Tensor out = at::from_blob(acc, {B, w.size(1)}, opt);
    out.addmm_(xs, w);
}

// the token ids, each checked to be a row of the input table
const int64_t* checked_tokens(const Tensor& tokens, int64_t B, int64_t rows) {
    TORCH_CHECK(tokens.scalar_type() == at::kLong && tokens.dim() == 1 && tokens.is_contiguous() && tokens.size(0) == B,
                "seqlab decode step: tokens must be a contiguous (B,) int64 tensor, B the state's batch");
    const int64_t* tok = tokens.data_ptr<int64_t>();
    for (int64_t b = 0; b < B; ++b)
        TORCH_CHECK(tok[b] >= 0 && tok[b] < rows, "seqlab decode step: token id ", tok[b], " outside the vocabulary of ", rows);
    return tok;
}

// logits (B, V) = head_b + h_top (B, H; rows ldh apart) @ head_w (H, V)
void output_layer(const float* h_top, int64_t ldh, int64_t B, int64_t H, const Tensor& head_w, const Tensor& head_b,
                  Tensor& logits) {
    const int64_t V = head_w.size(1);
    float* lp = logits.data_ptr<float>();
    const float* hb = head_b.data_ptr<float>();
    for (int64_t b = 0; b < B; ++b) std::copy(hb, hb + V, lp + b * V);
    rows_times(h_top, ldh, B, H, head_w, lp);
}

// the gates of one row in place -> c' and h' (gate blocks i, f, g, o)
SEQLAB_INLINE void lstm_gates(const float* __restrict g, const float* __restrict c, float* __restrict c_new,
                              float* __restrict h_new, int64_t H) {
#pragma omp simd
    for (int64_t j = 0; j < H; ++j) {
        const float i = sigmoid(g[j]), f = sigmoid(g[H + j]), gg = tanh_t(g[2 * H + j]), o = sigmoid(g[3 * H + j]);
        const float cj = f * c[j] + i * gg;
        c_new[j] = cj;
        h_new[j] = o * tanh_t(cj);
    }
}

std::vector<Tensor> lstm_decode_step(const Tensor& tokens, const Tensor& table, at::TensorList w_hh,
                                     at::TensorList w_both, at::TensorList bias, const Tensor& h, const Tensor& c,
                                     const Tensor& head_w, const Tensor& head_b) {
    check_f32(table, "table");
    check_f32(h, "h");
    check_f32(c, "c");
    check_f32(head_w, "head_w");
    check_f32(head_b, "head_b");
    const int64_t B = h.size(0), L = h.size(1), H = h.size(2), G = 4 * H, V = head_w.size(1), rows = table.size(0);
    TORCH_CHECK(c.sizes() == h.sizes(), "seqlab decode step: h and c must have the same shape");
    TORCH_CHECK(table.size(1) == G && head_w.size(0) == H && head_b.size(0) == V, "seqlab decode step: weight shapes");
    TORCH_CHECK(int64_t(w_hh.size()) == L && int64_t(w_both.size()) == L - 1 && int64_t(bias.size()) == L - 1,
                "seqlab decode step: one recurrent matrix per layer, one [W_ih W_hh] and bias per later layer");
    for (int64_t l = 0; l < L; ++l) {
        check_f32(w_hh[l], "w_hh");
        TORCH_CHECK(w_hh[l].size(0) == H && w_hh[l].size(1) == G, "seqlab decode step: w_hh must be (H, 4H)");
        if (l) {
            check_f32(w_both[l - 1], "w_both");
            check_f32(bias[l - 1], "bias");
            TORCH_CHECK(w_both[l - 1].size(0) == 2 * H && w_both[l - 1].size(1) == G,
                        "seqlab decode step: w_both must be (2H, 4H)");
        }
    }
    const int64_t* tok = checked_tokens(tokens, B, rows);

    Tensor h_new = at::empty_like(h), c_new = at::empty_like(c);
    Tensor logits = at::empty({B, V}, h.options());
    std::vector<float> acc(static_cast<size_t>(B * G));
    const float *hp = h.data_ptr<float>(), *cp = c.data_ptr<float>(), *tab = table.data_ptr<float>();
    float *hn = h_new.data_ptr<float>(), *cn = c_new.data_ptr<float>();
    for (int64_t l = 0; l < L; ++l) {
        // acc = input term: a table row (layer 0), else the bias plus the layer below's new h times W_ih^T
        for (int64_t b = 0; b < B; ++b) {
            const float* src = l == 0 ? tab + tok[b] * G : bias[l - 1].data_ptr<float>();
            std::copy(src, src + G, acc.data() + b * G);
        }
        if (l) {
            // rows 0..H-1 of w_both multiply the input (the layer below's h'), rows H..2H-1 are W_hh^T
            rows_times(hn + (l - 1) * H, L * H, B, H, w_both[l - 1].narrow(0, 0, H), acc.data());
        }
        rows_times(hp + l * H, L * H, B, H, w_hh[l], acc.data());
        for (int64_t b = 0; b < B; ++b) {
            const int64_t at_ = (b * L + l) * H;
            lstm_gates(acc.data() + b * G, cp + at_, cn + at_, hn + at_, H);
        }
    }
    output_layer(hn + (L - 1) * H, L * H, B, H, head_w, head_b, logits);
    return {logits, h_new, c_new};
}

// the GRU's new h of one row from its input and recurrent terms (blocks r, z, n; PyTorch's
// form: r multiplies the recurrent term of n, bias b_hn included)
SEQLAB_INLINE void gru_gates(const float* __restrict gi, const float* __restrict gh, const float* __restrict h,
                             float* __restrict h_new, int64_t H) {
#pragma omp simd
    for (int64_t j = 0; j < H; ++j) {
        const float r = sigmoid(gi[j] + gh[j]), z = sigmoid(gi[H + j] + gh[H + j]);
        const float n = tanh_t(gi[2 * H + j] + r * gh[2 * H + j]);
        h_new[j] = n + z * (h[j] - n);
    }
}

std::vector<Tensor> gru_decode_step(const Tensor& tokens, const Tensor& table, at::TensorList w_ih,
                                    at::TensorList b_ih, at::TensorList w_hh, at::TensorList b_hh, const Tensor& h,
                                    const Tensor& head_w, const Tensor& head_b) {
    check_f32(table, "table");
    check_f32(h, "h");
    check_f32(head_w, "head_w");
    check_f32(head_b, "head_b");
    const int64_t B = h.size(0), L = h.size(1), H = h.size(2), G = 3 * H, V = head_w.size(1);
    TORCH_CHECK(table.size(1) == G && head_w.size(0) == H && head_b.size(0) == V, "seqlab decode step: weight shapes");
    TORCH_CHECK(int64_t(w_hh.size()) == L && int64_t(b_hh.size()) == L && int64_t(w_ih.size()) == L - 1 &&
                    int64_t(b_ih.size()) == L - 1,
                "seqlab decode step: W_hh and b_hh per layer, W_ih and b_ih per later layer");
    for (int64_t l = 0; l < L; ++l) {
        check_f32(w_hh[l], "w_hh");
        check_f32(b_hh[l], "b_hh");
        TORCH_CHECK(w_hh[l].size(0) == H && w_hh[l].size(1) == G, "seqlab decode step: w_hh must be (H, 3H)");
        if (l) {
            check_f32(w_ih[l - 1], "w_ih");
            check_f32(b_ih[l - 1], "b_ih");
            TORCH_CHECK(w_ih[l - 1].size(0) == H && w_ih[l - 1].size(1) == G, "seqlab decode step: w_ih must be (H, 3H)");
        }
    }
    const int64_t* tok = checked_tokens(tokens, B, table.size(0));
    Tensor h_new = at::empty_like(h);
    Tensor logits = at::empty({B, V}, h.options());
    std::vector<float> gi(static_cast<size_t>(B * G)), gh(static_cast<size_t>(B * G));
    const float *hp = h.data_ptr<float>(), *tab = table.data_ptr<float>();
    float* hn = h_new.data_ptr<float>();
    for (int64_t l = 0; l < L; ++l) {
        for (int64_t b = 0; b < B; ++b) {
            const float* src = l == 0 ? tab + tok[b] * G : b_ih[l - 1].data_ptr<float>();
            std::copy(src, src + G, gi.data() + b * G);
            const float* bh = b_hh[l].data_ptr<float>();
            std::copy(bh, bh + G, gh.data() + b * G);
        }
        if (l) rows_times(hn + (l - 1) * H, L * H, B, H, w_ih[l - 1], gi.data());
        rows_times(hp + l * H, L * H, B, H, w_hh[l], gh.data());
        for (int64_t b = 0; b < B; ++b) {
            const int64_t at_ = (b * L + l) * H;
            gru_gates(gi.data() + b * G, gh.data() + b * G, hp + at_, hn + at_, H);
        }
    }
    output_layer(hn + (L - 1) * H, L * H, B, H, head_w, head_b, logits);
    return {logits, h_new};
}

Tensor draw_rows(const Tensor& logits, double temperature, const Tensor& u) {
    check_f32(logits, "logits");
    check_f32(u, "u");
    TORCH_CHECK(logits.dim() == 2 && u.dim() == 1 && u.size(0) == logits.size(0),
                "seqlab draw: logits (B, V) and u (B,)");
    TORCH_CHECK(temperature > 0, "seqlab draw: the temperature must be positive");
    const int64_t B = logits.size(0), V = logits.size(1);
    Tensor out = at::empty({B}, logits.options().dtype(at::kLong));
    int64_t* op = out.data_ptr<int64_t>();
    const float* up = u.data_ptr<float>();
    std::vector<float> cdf(static_cast<size_t>(V));
    const float inv_t = float(1.0 / temperature);
    for (int64_t b = 0; b < B; ++b) {
        const float* l = logits.data_ptr<float>() + b * V;
        float m = -std::numeric_limits<float>::infinity();
        for (int64_t j = 0; j < V; ++j) m = l[j] > m ? l[j] : m;
        float total = 0;
        for (int64_t j = 0; j < V; ++j) {
            total += l[j] == -std::numeric_limits<float>::infinity() ? 0.0f : exp_f((l[j] - m) * inv_t);
            cdf[size_t(j)] = total;
        }
        const float target = up[b] * total;
        int64_t j = 0;
        while (j < V - 1 && cdf[size_t(j)] <= target) ++j;
        op[b] = j;
    }
    return out;
}

}  // namespace

TORCH_LIBRARY_FRAGMENT(seqlab_native, m) {
    m.def("lstm_decode_step(Tensor tokens, Tensor table, Tensor[] w_hh, Tensor[] w_both, Tensor[] bias, Tensor h, "
          "Tensor c, Tensor head_w, Tensor head_b) -> Tensor[]");
    m.def("gru_decode_step(Tensor tokens, Tensor table, Tensor[] w_ih, Tensor[] b_ih, Tensor[] w_hh, Tensor[] b_hh, "
          "Tensor h, Tensor head_w, Tensor head_b) -> Tensor[]");
    m.def("draw_rows(Tensor logits, float temperature, Tensor u) -> Tensor");
}

TORCH_LIBRARY_IMPL(seqlab_native, CPU, m) {
    m.impl("lstm_decode_step", &lstm_decode_step);
    m.impl("gru_decode_step", &gru_decode_step);
    m.impl("draw_rows", &draw_rows);
}
