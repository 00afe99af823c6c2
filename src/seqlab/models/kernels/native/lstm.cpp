// seqlab's fused CPU LSTM: the whole sequence, forward and backward (BPTT), in one call each.
//
// The Python fast path (models/kernels/fast.py) runs the same recurrence with one ATen kernel per
// elementwise operation, ~10 per step in each direction, each a Python call and a pass over
// memory. Here the time loop runs in C++: each step is one matrix product (ATen's, MKL or
// oneDNN underneath) and ONE pass over the batch rows that does every elementwise operation
// of the step (gates, cell, layer norms and, in the backward, their vector-Jacobian
// products) while the row is in cache. The weight gradients come from one large product
// after the loop, as in the Python path.
//
// Layout, time major (T, B, N), as models/kernels/fast_parts.py describes; gate blocks i, f, g, o
// (coupled: i, g, o, with f = 1 - i). Options: peephole weights (Gers & Schmidhuber 2000),
// coupled gates, layer normalisation of the recurrent product and of the cell before its
// tanh (Ba et al. 2016), a recurrent-dropout mask on h_{t-1} (Gal & Ghahramani 2016), reverse
// time. float32 and float64; the float32 exponential is a polynomial the compiler vectorises
// (below), float64 uses std::exp, which is what the float64 parity tests compare.
//
// Built once per machine by models/kernels/native.py with the system C++ compiler; without one,
// seqlab runs the Python fast path, which computes the same.

#include <ATen/ATen.h>
#include <ATen/Parallel.h>
#include <ATen/core/dispatch/Dispatcher.h>
#include <ATen/core/stack.h>
#include <torch/library.h>

#include <cmath>
#include <cstdint>
#include <cstring>
#include <mutex>
#include <optional>
#include <unordered_map>
#include <vector>

#include "maths.h"

namespace {

using at::Tensor;

using namespace seqlab_maths;

// mean and 1/sqrt(var + eps) of one row, two passes (as stable as ATen's)
template <typename T>
inline void row_stats(const T* __restrict x, int64_t n, double eps, T& mean, T& rstd) {
    T s = 0;
#pragma omp simd reduction(+ : s)
    for (int64_t j = 0; j < n; ++j) s += x[j];
    const T m = s / T(n);
    T v = 0;
#pragma omp simd reduction(+ : v)
    for (int64_t j = 0; j < n; ++j) v += (x[j] - m) * (x[j] - m);
    mean = m;
    rstd = T(1) / std::sqrt(v / T(n) + T(eps));
}

// dL/dx of y = gain * x̂ + bias, x̂ = (x - mean) rstd, given d = dL/dy (all rows of length
// n): rstd (gain d - mean(gain d) - x̂ mean(gain d x̂)), written into dx (ADD: added to it);
// the gain's and bias's gradients are added into dgain, dbias.
template <typename T, bool ADD = false>
inline void norm_backward_row(const T* __restrict d, const T* __restrict x, T mean, T rstd,
                              const T* __restrict gain, int64_t n, T* __restrict dx,
                              T* __restrict dgain, T* __restrict dbias) {
    T s1 = 0, s2 = 0;
#pragma omp simd reduction(+ : s1, s2)
    for (int64_t j = 0; j < n; ++j) {
        const T xh = (x[j] - mean) * rstd;
        const T gd = gain[j] * d[j];
        s1 += gd;
        s2 += gd * xh;
        dgain[j] += d[j] * xh;
        dbias[j] += d[j];
    }
    s1 /= T(n);
    s2 /= T(n);
#pragma omp simd
    for (int64_t j = 0; j < n; ++j) {
        const T xh = (x[j] - mean) * rstd;
        const T g = rstd * (gain[j] * d[j] - s1 - xh * s2);
        if constexpr (ADD) {
            dx[j] += g;
        } else {
            dx[j] = g;
        }
    }
}

// ------------------------------------------------------------------------------------------
// options and helpers
// ------------------------------------------------------------------------------------------

struct Opts {
    int64_t T, B, H, GH;
    bool coupled, peephole, ln, mask, reverse;
    int64_t ig, io;                              // offsets of the g and o blocks
};

Opts make_opts(const Tensor& act, const Tensor& h0, bool coupled, bool peephole, bool ln, bool mask,
               bool reverse) {
    Opts o;
    o.T = act.size(0);
    o.B = act.size(1);
    o.GH = act.size(2);
    o.H = h0.size(1);
    o.coupled = coupled;
    o.peephole = peephole;
    o.ln = ln;
    o.mask = mask;
    o.reverse = reverse;
    o.ig = (coupled ? 1 : 2) * o.H;
    o.io = o.GH - o.H;
    return o;
}

// the time index processed at position s of the forward order, and the one before it
inline int64_t at_pos(const Opts& o, int64_t s) { return o.reverse ? o.T - 1 - s : s; }

// rows per parallel task: enough elementwise work per task to pay for a thread
inline int64_t grain(const Opts& o) { return std::max<int64_t>(1, 32768 / (o.GH + 1)); }

template <typename T> const T* ptr(const std::optional<Tensor>& t) {
    if (!(t.has_value() && t->defined())) return nullptr;
    TORCH_CHECK(t->is_contiguous() && t->is_cpu(), "seqlab fused LSTM: parameters must be contiguous CPU tensors");
    return t->data_ptr<T>();
}

void check_input(const Tensor& t, const char* name) {
    TORCH_CHECK(t.device().is_cpu(), "seqlab fused LSTM: ", name, " must be on the CPU");
    TORCH_CHECK(t.is_contiguous(), "seqlab fused LSTM: ", name, " must be contiguous");
}

// y = x @ Mᵀ for a fixed matrix M (N, K), once per step. In float32, with oneDNN in this
// torch, M is packed once into oneDNN's blocked layout and every product runs oneDNN's
// matmul: on the project's AMD EPYC machine that ran 20-40 % faster than ATen's (MKL) for
// these shapes ((32, 256) x (256, 1024) and back), and it is the matmul nn.LSTM runs. float64,
// and builds without oneDNN, use at::mm.
// the oneDNN op `name`, if this torch build registers it (x86 builds do; others may not)
std::optional<c10::OperatorHandle> onednn_op(const char* name) {
    return c10::Dispatcher::singleton().findSchema({name, ""});
}

class Product {
  public:
    explicit Product(const Tensor& m) {
        static const std::optional<c10::OperatorHandle> reorder = onednn_op("mkldnn::_reorder_linear_weight");
        static const std::optional<c10::OperatorHandle> linear = onednn_op("mkldnn::_linear_pointwise");
        if (m.scalar_type() == at::kFloat && at::hasMKLDNN() && reorder && linear) {
            try {
                torch::jit::Stack st{m.contiguous(), c10::IValue()};
                reorder->callBoxed(&st);
                packed_ = st[0].toTensor();
                linear_ = &*linear;
            } catch (const std::exception&) {   // oneDNN refused this matrix: ATen's product
                linear_ = nullptr;
            }
        }
        if (!linear_) mt_ = m.t();
    }
    Tensor operator()(const Tensor& x) const {
        if (!linear_) return at::mm(x, mt_);
        torch::jit::Stack st{x, packed_, c10::IValue(), std::string("none"),
                             c10::List<std::optional<at::Scalar>>(), c10::IValue()};
        linear_->callBoxed(&st);
        return st[0].toTensor();
    }

  private:
    const c10::OperatorHandle* linear_ = nullptr;    // oneDNN's matmul, or null: at::mm
    Tensor packed_, mt_;
};

// ------------------------------------------------------------------------------------------
// a pool for the big per-call buffers
// ------------------------------------------------------------------------------------------

// Every call allocates tens of megabytes of buffers of the same few sizes (the gate buffer,
// cell and output states, the gradients). Fresh from malloc, a buffer of that size costs a
// page fault per 4 KiB page on first touch, on every call: glibc returns large blocks to the
// kernel when they are freed. Measured at the benchmark size, ~12,800 faults per forward +
// backward, the time of which swung with the machine's load (the kernel zeroes each page).
// Buffers from this pool go back to it when their tensor dies and are handed out again for
// the next request of the same size: up to 8 per size and 512 MiB in all, the rest is freed.
class Pool {
  public:
    static Pool& get() {
        static Pool* pool = new Pool();           // never destroyed: tensors may outlive statics
        return *pool;
    }
    void* take(size_t bytes) {
        {
            std::lock_guard<std::mutex> lock(m_);
            auto it = free_.find(bytes);
            if (it != free_.end() && !it->second.empty()) {
                void* p = it->second.back();
                it->second.pop_back();
                held_ -= bytes;
                return p;
            }
        }
        void* p = nullptr;
        if (posix_memalign(&p, 64, std::max<size_t>(bytes, 64)) != 0) throw std::bad_alloc();
        return p;
    }
    void give(void* p, size_t bytes) {
        {
            std::lock_guard<std::mutex> lock(m_);
            auto& list = free_[bytes];
            if (list.size() < 8 && held_ + bytes <= (size_t(512) << 20)) {
                list.push_back(p);
                held_ += bytes;
                return;
            }
        }
        std::free(p);
    }

  private:
    std::mutex m_;
    std::unordered_map<size_t, std::vector<void*>> free_;
    size_t held_ = 0;
};

// at::empty, from the pool
Tensor pooled(at::IntArrayRef sizes, const at::TensorOptions& opt) {
    int64_t numel = 1;
    for (int64_t d : sizes) numel *= d;
    const size_t bytes = size_t(numel) * c10::elementSize(c10::typeMetaToScalarType(opt.dtype()));
    if (bytes < (size_t(256) << 10)) return at::empty(sizes, opt);      // small: malloc keeps those
    void* p = Pool::get().take(bytes);
    return at::from_blob(p, sizes, [bytes](void* q) { Pool::get().give(q, bytes); }, opt);
}

// ------------------------------------------------------------------------------------------
// forward
// ------------------------------------------------------------------------------------------

// PEEP and LNC are template parameters so that every loop below is free of branches and
// the compiler vectorises it (a runtime test on a possibly absent pointer stops it)
template <typename T, bool PEEP, bool LNC>
void forward_rows(const Opts& o, int64_t b0, int64_t b1, T* a, const T* rec, T* raw, T* st_hh, const T* cp_,
                  T* c_, T* tc_, T* h_, T* st_c, const T* gain, const T* bias, double eps,
                  const T* __restrict gain_c, const T* __restrict bias_c, double eps_c,
                  const T* __restrict wci, const T* __restrict wcf, const T* __restrict wco) {
    const int64_t H = o.H, GH = o.GH;
    for (int64_t b = b0; b < b1; ++b) {
        T* __restrict ar = a + b * GH;
        const T* __restrict r = rec + b * GH;    // W_hh h, this row
        if (o.ln) {                              // a += LN(W_hh h); W_hh h kept for the backward
            T* __restrict rw = raw + b * GH;
            T m, rs;
            row_stats(r, GH, eps, m, rs);
            st_hh[2 * b] = m;
            st_hh[2 * b + 1] = rs;
#pragma omp simd
            for (int64_t j = 0; j < GH; ++j) {
                rw[j] = r[j];
                ar[j] += gain[j] * ((r[j] - m) * rs) + bias[j];
            }
        } else {
#pragma omp simd
            for (int64_t j = 0; j < GH; ++j) ar[j] += r[j];
        }
        const T* __restrict cp = cp_ + b * H;
        T* __restrict c = c_ + b * H;
        T* __restrict zi = ar;
        T* __restrict zf = ar + H;
        T* __restrict zg = ar + o.ig;
        T* __restrict zo = ar + o.io;
        if constexpr (PEEP) {                    // i (, f) see c_{t-1}: added in a pass of their own,
#pragma omp simd                                 // which keeps the gate loops below vectorised
            for (int64_t j = 0; j < H; ++j) zi[j] += wci[j] * cp[j];
            if (!o.coupled) {
#pragma omp simd
                for (int64_t j = 0; j < H; ++j) zf[j] += wcf[j] * cp[j];
            }
        }
        if (o.coupled) {
#pragma omp simd
            for (int64_t j = 0; j < H; ++j) {
                const T i = sigmoid(zi[j]);
                const T g = tanh_t(zg[j]);
                zi[j] = i;
                zg[j] = g;
                c[j] = cp[j] + i * (g - cp[j]);
            }
        } else {
#pragma omp simd
            for (int64_t j = 0; j < H; ++j) {
                const T i = sigmoid(zi[j]);
                const T f = sigmoid(zf[j]);
                const T g = tanh_t(zg[j]);
                zi[j] = i;
                zf[j] = f;
                zg[j] = g;
                c[j] = f * cp[j] + i * g;
            }
        }
        T* __restrict tc = tc_ + b * H;
        T* __restrict h = h_ + b * H;
        T m = 0, rs = 1;
        if constexpr (LNC) {
            row_stats(c, H, eps_c, m, rs);
            st_c[2 * b] = m;
            st_c[2 * b + 1] = rs;
        }
#pragma omp simd
        for (int64_t j = 0; j < H; ++j) {
            T xo = zo[j], xc = c[j];
            if constexpr (PEEP) xo += wco[j] * c[j];
            if constexpr (LNC) xc = gain_c[j] * ((c[j] - m) * rs) + bias_c[j];
            const T og = sigmoid(xo);
            const T t = tanh_t(xc);
            zo[j] = og;
            tc[j] = t;
            h[j] = og * t;
        }
    }
}

template <typename T, typename... Args>
void forward_rows_any(bool peep, bool lnc, Args... args) {
    if (peep && lnc) return forward_rows<T, true, true>(args...);
    if (peep) return forward_rows<T, true, false>(args...);
    if (lnc) return forward_rows<T, false, true>(args...);
    return forward_rows<T, false, false>(args...);
}

// The input projection's layer norm (Ba et al. 2016: LN(W_ih x_t)), fused: `act` holds the
// raw projections (T, B, N); each row is normalised in place, its mean and 1/std kept in
// st (T, B, 2). One pass over the buffer before the time loop.
template <typename T>
void input_norm_forward(T* act, T* st, const T* gain, const T* bias, double eps, int64_t rows, int64_t n) {
    at::parallel_for(0, rows, std::max<int64_t>(1, 32768 / (n + 1)), [&](int64_t r0, int64_t r1) {
        for (int64_t r = r0; r < r1; ++r) {
            T* __restrict a = act + r * n;
            T m, rs;
            row_stats(a, n, eps, m, rs);
            st[2 * r] = m;
            st[2 * r + 1] = rs;
#pragma omp simd
            for (int64_t j = 0; j < n; ++j) a[j] = gain[j] * ((a[j] - m) * rs) + bias[j];
        }
    });
}

// Its backward, after the time loop: d (T, B, N), the gradient of the normalised rows, is
// turned into the gradient of the raw projections in place; `raw` is the caller's
// projection, batch first (B, T, N). The gain's and bias's gradients come back summed.
template <typename T>
std::pair<Tensor, Tensor> input_norm_backward(T* d, const T* raw, const T* st, const T* gain, int64_t Tn, int64_t B,
                                              int64_t n, const at::TensorOptions& opt) {
    Tensor acc_g = at::zeros({B, n}, opt), acc_b = at::zeros({B, n}, opt);
    T* ag = acc_g.data_ptr<T>();
    T* ab = acc_b.data_ptr<T>();
    at::parallel_for(0, B, 1, [&](int64_t b0, int64_t b1) {
        std::vector<T> tmp(n);
        for (int64_t b = b0; b < b1; ++b) {
            for (int64_t t = 0; t < Tn; ++t) {
                T* dr = d + (t * B + b) * n;
                const T* st_r = st + 2 * (t * B + b);
                std::copy(dr, dr + n, tmp.begin());
                norm_backward_row(tmp.data(), raw + (b * Tn + t) * n, st_r[0], st_r[1], gain, n, dr, ag + b * n,
                                  ab + b * n);
            }
        }
    });
    return {acc_g.sum(0), acc_b.sum(0)};
}

// act (T, B, GH): the input half of every pre-activation, plus b_hh without layer norm (with
// in_gain: the raw input projections, normalised here); it is overwritten with the gate
// activations. Returns
//   [cell (T,B,H), tanh_c (T,B,H), out (T,B,H), raw (T,B,GH), stats_hh (T,B,2), stats_c (T,B,2),
//    seen (T,B,H), stats_in (T,B,2)]
// raw and stats_hh are empty without layer norm, stats_c without the cell norm, seen without a
// mask, stats_in without the input norm.
std::vector<Tensor> lstm_forward(Tensor act, const Tensor& h0, const Tensor& c0, const Tensor& weight_hh,
                                 const std::optional<Tensor>& w_ci, const std::optional<Tensor>& w_cf,
                                 const std::optional<Tensor>& w_co, const std::optional<Tensor>& ln_gain,
                                 const std::optional<Tensor>& ln_bias, double eps,
                                 const std::optional<Tensor>& lnc_gain, const std::optional<Tensor>& lnc_bias,
                                 double eps_c, const std::optional<Tensor>& mask, bool coupled, bool reverse,
                                 const std::optional<Tensor>& in_gain, const std::optional<Tensor>& in_bias,
                                 double eps_in) {
    check_input(act, "act");
    check_input(h0, "h0");
    check_input(c0, "c0");
    const bool peep = w_ci.has_value() && w_ci->defined();
    const bool ln = ln_gain.has_value() && ln_gain->defined();
    const bool lnc = lnc_gain.has_value() && lnc_gain->defined();
    const bool msk = mask.has_value() && mask->defined();
    TORCH_CHECK(act.dim() == 3 && h0.dim() == 2 && weight_hh.size(0) == act.size(2) &&
                    weight_hh.size(1) == h0.size(1) && h0.size(0) == act.size(1),
                "seqlab fused LSTM: act (T, B, G*H), h0 (B, H) and weight_hh (G*H, H) disagree");
    TORCH_CHECK(h0.scalar_type() == act.scalar_type() && weight_hh.scalar_type() == act.scalar_type(),
                "seqlab fused LSTM: every tensor must have act's dtype");
    const Opts o = make_opts(act, h0, coupled, peep, ln, msk, reverse);
    const auto opt = act.options();
    Tensor cell = pooled({o.T, o.B, o.H}, opt), tanh_c = pooled({o.T, o.B, o.H}, opt);
    Tensor out = pooled({o.T, o.B, o.H}, opt);
    Tensor raw = ln ? pooled({o.T, o.B, o.GH}, opt) : at::empty({0}, opt);
    Tensor st_hh = ln ? at::empty({o.T, o.B, 2}, opt) : at::empty({0}, opt);
    Tensor st_c = lnc ? at::empty({o.T, o.B, 2}, opt) : at::empty({0}, opt);
    Tensor seen = msk ? pooled({o.T, o.B, o.H}, opt) : at::empty({0}, opt);
    const bool lni = in_gain.has_value() && in_gain->defined();
    Tensor st_in = lni ? at::empty({o.T, o.B, 2}, opt) : at::empty({0}, opt);
    const Product product(weight_hh);
    const Tensor mask_c = msk ? mask->contiguous() : Tensor();
    AT_DISPATCH_FLOATING_TYPES(act.scalar_type(), "seqlab_lstm_forward", [&] {
        using T = scalar_t;
        if (lni)
            input_norm_forward<T>(act.data_ptr<T>(), st_in.data_ptr<T>(), ptr<T>(in_gain), ptr<T>(in_bias), eps_in,
                                  o.T * o.B, o.GH);
        for (int64_t s = 0; s < o.T; ++s) {
            const int64_t t = at_pos(o, s);
            const Tensor hp = s == 0 ? h0 : out[at_pos(o, s - 1)];
            const Tensor cp = s == 0 ? c0 : cell[at_pos(o, s - 1)];
            Tensor hs = hp;
            if (msk) {
                hs = seen[t];
                at::mul_out(hs, hp, mask_c);
            }
            const Tensor rec = product(hs);
            T* ap = act[t].data_ptr<T>();
            const T* recp = rec.data_ptr<T>();
            T* rp = ln ? raw[t].data_ptr<T>() : nullptr;
            T* shp = ln ? st_hh[t].data_ptr<T>() : nullptr;
            T* scp = lnc ? st_c[t].data_ptr<T>() : nullptr;
            const T* cpp = cp.data_ptr<T>();
            T* cpt = cell[t].data_ptr<T>();
            T* tcp = tanh_c[t].data_ptr<T>();
            T* hpt = out[t].data_ptr<T>();
            at::parallel_for(0, o.B, grain(o), [&](int64_t b0, int64_t b1) {
                forward_rows_any<T>(peep, lnc, o, b0, b1, ap, recp, rp, shp, cpp, cpt, tcp, hpt, scp, ptr<T>(ln_gain), ptr<T>(ln_bias), eps,
                                ptr<T>(lnc_gain), ptr<T>(lnc_bias), eps_c, ptr<T>(w_ci), ptr<T>(w_cf), ptr<T>(w_co));
            });
        }
    });
    return {cell, tanh_c, out, raw, st_hh, st_c, seen, st_in};
}

// ------------------------------------------------------------------------------------------
// backward
// ------------------------------------------------------------------------------------------

template <typename T>
struct BackRows {
    const Opts& o;
    // this step's buffers (row-major (B, ·))
    const T *gout, *ghT, *rec, *mask, *act, *cell, *cp, *tc, *raw, *st_hh, *st_c;
    T *dc, *dz, *draw, *dy_c;
    // parameters and per-row gradient accumulators (B, ·)
    const T *wci, *wcf, *wco, *gain, *gain_c;
    T *acc_ci, *acc_cf, *acc_co, *acc_g, *acc_b, *acc_gc, *acc_bc;

    void operator()(int64_t b0, int64_t b1) const {
        const int64_t H = o.H, GH = o.GH;
        for (int64_t b = b0; b < b1; ++b) {
            const T* __restrict ar = act + b * GH;
            const T* __restrict i_ = ar;
            const T* __restrict f_ = ar + H;
            const T* __restrict g_ = ar + o.ig;
            const T* __restrict o_ = ar + o.io;
            const T* __restrict c = cell + b * H;
            const T* __restrict cpr = cp + b * H;
            const T* __restrict t_ = tc + b * H;
            const T* __restrict go = gout + b * H;
            const T* __restrict r = rec ? rec + b * H : nullptr;
            const T* __restrict m = mask ? mask + b * H : nullptr;
            const T* __restrict gh = ghT ? ghT + b * H : nullptr;
            T* __restrict d = dz + b * GH;
            T* __restrict dzi = d;
            T* __restrict dzf = d + H;
            T* __restrict dzg = d + o.ig;
            T* __restrict dzo = d + o.io;
            T* __restrict dcr = dc + b * H;
            // dh, and from it dz_o and d(tanh input): dy_c holds the latter
            T* __restrict dy = dy_c + b * H;
#pragma omp simd
            for (int64_t j = 0; j < H; ++j) {
                T dh = go[j] + (gh ? gh[j] : T(0)) + (r ? (m ? r[j] * m[j] : r[j]) : T(0));
                const T og = o_[j], t = t_[j];
                dzo[j] = dh * t * og * (T(1) - og);
                dy[j] = dh * og * (T(1) - t * t);
            }
            if (gain_c) {                        // through tanh(LN(c)): dy (B,H) -> dc
                const T* st = st_c + 2 * b;
                norm_backward_row<T, true>(dy, c, st[0], st[1], gain_c, H, dcr, acc_gc + b * H, acc_bc + b * H);
            } else {
#pragma omp simd
                for (int64_t j = 0; j < H; ++j) dcr[j] += dy[j];
            }
            if (o.peephole) {
                T* __restrict aco = acc_co + b * H;
#pragma omp simd
                for (int64_t j = 0; j < H; ++j) {
                    dcr[j] += dzo[j] * wco[j];
                    aco[j] += dzo[j] * c[j];
                }
            }
            if (o.coupled) {                     // c = c_prev + i (g - c_prev)
#pragma omp simd
                for (int64_t j = 0; j < H; ++j) {
                    const T i = i_[j], g = g_[j], dcj = dcr[j];
                    dzi[j] = dcj * (g - cpr[j]) * i * (T(1) - i);
                    dzg[j] = dcj * i * (T(1) - g * g);
                    dcr[j] = dcj * (T(1) - i);
                }
            } else {                             // c = f c_prev + i g
#pragma omp simd
                for (int64_t j = 0; j < H; ++j) {
                    const T i = i_[j], f = f_[j], g = g_[j], dcj = dcr[j];
                    dzi[j] = dcj * g * i * (T(1) - i);
                    dzf[j] = dcj * cpr[j] * f * (T(1) - f);
                    dzg[j] = dcj * i * (T(1) - g * g);
                    dcr[j] = dcj * f;
                }
            }
            if (o.peephole) {                    // i (, f) saw c_prev
                T* __restrict aci = acc_ci + b * H;
#pragma omp simd
                for (int64_t j = 0; j < H; ++j) {
                    dcr[j] += dzi[j] * wci[j];
                    aci[j] += dzi[j] * cpr[j];
                }
                if (!o.coupled) {
                    T* __restrict acf = acc_cf + b * H;
#pragma omp simd
                    for (int64_t j = 0; j < H; ++j) {
                        dcr[j] += dzf[j] * wcf[j];
                        acf[j] += dzf[j] * cpr[j];
                    }
                }
            }
            if (o.ln) {                          // dz -> d(W_hh h) through the recurrent norm
                const T* st = st_hh + 2 * b;
                norm_backward_row(d, raw + b * GH, st[0], st[1], gain, GH, draw + b * GH, acc_g + b * GH,
                                  acc_b + b * GH);
            }
        }
    }
};

// A buffer that lives only inside one call, reused from call to call on this thread (up to
// 64 MiB; larger ones are allocated afresh). Fresh multi-megabyte buffers cost a page fault
// per 4 KiB page on every call: for the layer-norm LSTM's d(W_hh h) buffer at the benchmark
// size (13 MB) that was 14 ms of a 60 ms backward.
Tensor scratch(int64_t numel, const at::TensorOptions& opt) {
    static thread_local Tensor kept;
    const int64_t bytes = numel * static_cast<int64_t>(c10::elementSize(c10::typeMetaToScalarType(opt.dtype())));
    if (bytes > (int64_t(64) << 20)) return at::empty({numel}, opt);
    if (!kept.defined() || kept.numel() < numel || kept.dtype() != opt.dtype())
        kept = at::empty({numel}, opt);
    return kept.narrow(0, 0, numel);
}

// Returns [dz (T,B,GH), dh0 (B,H), dc0 (B,H), dW_hh (GH,H), dci, dcf, dco (H) , dgain, dbias (GH),
// dgain_c, dbias_c (H), dgain_in, dbias_in (GH)]; the gradients of absent parameters are empty.
// dz is the gradient of the projected inputs (through the input norm, where there is one) and,
// summed over (T, B), of b_hh.
std::vector<Tensor> lstm_backward(const Tensor& g_out, const Tensor& g_hT, const Tensor& g_cT, const Tensor& act,
                                  const Tensor& cell, const Tensor& tanh_c, const Tensor& out, const Tensor& raw,
                                  const Tensor& st_hh, const Tensor& st_c, const Tensor& seen, const Tensor& h0,
                                  const Tensor& c0, const Tensor& weight_hh, const std::optional<Tensor>& w_ci,
                                  const std::optional<Tensor>& w_cf, const std::optional<Tensor>& w_co,
                                  const std::optional<Tensor>& ln_gain, const std::optional<Tensor>& lnc_gain,
                                  const std::optional<Tensor>& mask, bool coupled, bool reverse,
                                  const std::optional<Tensor>& projected, const std::optional<Tensor>& in_gain,
                                  const Tensor& st_in) {
    check_input(g_out, "g_out");
    const bool peep = w_ci.has_value() && w_ci->defined();
    const bool ln = ln_gain.has_value() && ln_gain->defined();
    const bool lnc = lnc_gain.has_value() && lnc_gain->defined();
    const bool msk = mask.has_value() && mask->defined();
    const Opts o = make_opts(act, h0, coupled, peep, ln, msk, reverse);
    const auto opt = act.options();
    Tensor dz = pooled({o.T, o.B, o.GH}, opt);
    Tensor draw = ln ? scratch(o.T * o.B * o.GH, opt).view({o.T, o.B, o.GH}) : dz;
    Tensor dc = g_cT.clone().contiguous();
    Tensor dy_c = at::empty({o.B, o.H}, opt);
    const Product product(weight_hh.t());
    Tensor rec;
    auto zeros = [&](int64_t n, bool on) { return on ? at::zeros({o.B, n}, opt) : at::empty({0}, opt); };
    Tensor acc_ci = zeros(o.H, peep), acc_cf = zeros(o.H, peep && !coupled), acc_co = zeros(o.H, peep);
    Tensor acc_g = zeros(o.GH, ln), acc_b = zeros(o.GH, ln), acc_gc = zeros(o.H, lnc), acc_bc = zeros(o.H, lnc);
    const Tensor mask_c = msk ? mask->contiguous() : Tensor();
    const Tensor ghT = g_hT.contiguous();
    AT_DISPATCH_FLOATING_TYPES(act.scalar_type(), "seqlab_lstm_backward", [&] {
        using T = scalar_t;
        auto p = [](const Tensor& t) -> T* { return t.numel() ? t.data_ptr<T>() : nullptr; };
        for (int64_t s = o.T - 1; s >= 0; --s) {
            const int64_t t = at_pos(o, s);
            const bool last = s == o.T - 1;
            if (!last) rec = product(draw[at_pos(o, s + 1)]);
            const Tensor cp = s == 0 ? c0 : cell[at_pos(o, s - 1)];
            BackRows<T> rows{o,
                             g_out[t].data_ptr<T>(),
                             last ? ghT.data_ptr<T>() : nullptr,
                             last ? nullptr : rec.data_ptr<T>(),
                             msk ? mask_c.data_ptr<T>() : nullptr,
                             act[t].data_ptr<T>(),
                             cell[t].data_ptr<T>(),
                             cp.data_ptr<T>(),
                             tanh_c[t].data_ptr<T>(),
                             ln ? raw[t].data_ptr<T>() : nullptr,
                             ln ? st_hh[t].data_ptr<T>() : nullptr,
                             lnc ? st_c[t].data_ptr<T>() : nullptr,
                             dc.data_ptr<T>(),
                             dz[t].data_ptr<T>(),
                             ln ? draw[t].data_ptr<T>() : nullptr,
                             dy_c.data_ptr<T>(),
                             ptr<T>(w_ci), ptr<T>(w_cf), ptr<T>(w_co), ptr<T>(ln_gain), ptr<T>(lnc_gain),
                             p(acc_ci), p(acc_cf), p(acc_co), p(acc_g), p(acc_b), p(acc_gc), p(acc_bc)};
            at::parallel_for(0, o.B, grain(o), rows);
        }
    });
    // through the input projection's norm, in place: dz becomes the raw projections' gradient
    Tensor dg_in = at::empty({0}, opt), db_in = at::empty({0}, opt);
    if (in_gain.has_value() && in_gain->defined()) {
        TORCH_CHECK(ln, "seqlab fused LSTM: an input norm comes with the recurrent one (layer_norm=True)");
        TORCH_CHECK(projected.has_value() && projected->is_contiguous() && projected->dim() == 3,
                    "seqlab fused LSTM: the input norm's backward needs the raw projections (B, T, G*H)");
        AT_DISPATCH_FLOATING_TYPES(act.scalar_type(), "seqlab_lstm_input_norm", [&] {
            std::tie(dg_in, db_in) = input_norm_backward<scalar_t>(
                dz.data_ptr<scalar_t>(), projected->data_ptr<scalar_t>(), st_in.data_ptr<scalar_t>(),
                ptr<scalar_t>(in_gain), o.T, o.B, o.GH, opt);
        });
    }
    // the gradient reaching h0 through the first step's recurrent product
    Tensor dh0 = product(draw[at_pos(o, 0)]);
    if (msk) dh0.mul_(mask_c);
    // dW_hh = Σ_t src_tᵀ hs_t, with hs_t the state step t's product saw
    Tensor hs;
    if (msk) {
        hs = seen;
    } else if (o.T == 1) {
        hs = h0.unsqueeze(0);
    } else if (reverse) {
        hs = at::cat({out.slice(0, 1, o.T), h0.unsqueeze(0)});
    } else {
        hs = at::cat({h0.unsqueeze(0), out.slice(0, 0, o.T - 1)});
    }
    Tensor dw = draw.reshape({-1, o.GH}).t().mm(hs.reshape({-1, o.H}));
    auto sum0 = [](const Tensor& t) { return t.numel() ? t.sum(0) : t; };
    return {dz, dh0, dc, dw, sum0(acc_ci), sum0(acc_cf), sum0(acc_co), sum0(acc_g), sum0(acc_b),
            sum0(acc_gc), sum0(acc_bc), dg_in, db_in};
}

// an uninitialised pooled buffer, for the Python fast path's own big buffers (models/kernels/fast_parts.py)
Tensor pooled_empty(at::IntArrayRef size, at::ScalarType dtype) {
    return pooled(size, at::TensorOptions().dtype(dtype));
}

// x (B, T, N) -> a pooled, time-major (T, B, N) copy, plus bias (N) if given: the gate buffer
// the forward fills from the projections, and the output gradient the backward reads
Tensor time_major(const Tensor& x, const std::optional<Tensor>& bias) {
    TORCH_CHECK(x.dim() == 3, "seqlab time_major: x must be (B, T, N)");
    Tensor out = pooled({x.size(1), x.size(0), x.size(2)}, x.options());
    Tensor src = x.transpose(0, 1);
    if (bias.has_value() && bias->defined()) {
        at::add_out(out, src, *bias);
    } else {
        out.copy_(src);
    }
    return out;
}

// sigmoid(x) and tanh(x) as the LSTM's row loops compute them, for the accuracy test
template <typename T>
void gate_functions_loop(const T* __restrict in, T* __restrict sp, T* __restrict tp, int64_t n) {
#pragma omp simd
    for (int64_t j = 0; j < n; ++j) {
        sp[j] = sigmoid(in[j]);
        tp[j] = tanh_t(in[j]);
    }
}

std::vector<Tensor> gate_functions(const Tensor& x) {
    Tensor xc = x.contiguous();
    Tensor s = at::empty_like(xc), t = at::empty_like(xc);
    AT_DISPATCH_FLOATING_TYPES(xc.scalar_type(), "seqlab_gate_functions", [&] {
        gate_functions_loop<scalar_t>(xc.data_ptr<scalar_t>(), s.data_ptr<scalar_t>(), t.data_ptr<scalar_t>(),
                                      xc.numel());
    });
    return {s, t};
}

}  // namespace

TORCH_LIBRARY(seqlab_native, m) {
    m.def("lstm_forward(Tensor act, Tensor h0, Tensor c0, Tensor weight_hh, Tensor? w_ci, Tensor? w_cf, "
          "Tensor? w_co, Tensor? ln_gain, Tensor? ln_bias, float eps, Tensor? lnc_gain, Tensor? lnc_bias, "
          "float eps_c, Tensor? mask, bool coupled, bool reverse, Tensor? in_gain, Tensor? in_bias, float eps_in) -> Tensor[]");
    m.def("lstm_backward(Tensor g_out, Tensor g_hT, Tensor g_cT, Tensor act, Tensor cell, Tensor tanh_c, "
          "Tensor out, Tensor raw, Tensor st_hh, Tensor st_c, Tensor seen, Tensor h0, Tensor c0, "
          "Tensor weight_hh, Tensor? w_ci, Tensor? w_cf, Tensor? w_co, Tensor? ln_gain, Tensor? lnc_gain, "
          "Tensor? mask, bool coupled, bool reverse, Tensor? projected, Tensor? in_gain, Tensor st_in) -> Tensor[]");
    m.def("gate_functions(Tensor x) -> Tensor[]");
    m.def("time_major(Tensor x, Tensor? bias) -> Tensor");
    m.def("pooled_empty(int[] size, ScalarType dtype) -> Tensor");
}

TORCH_LIBRARY_IMPL(seqlab_native, CompositeExplicitAutograd, m) {
    m.impl("pooled_empty", &pooled_empty);
}

TORCH_LIBRARY_IMPL(seqlab_native, CPU, m) {
    m.impl("lstm_forward", &lstm_forward);
    m.impl("lstm_backward", &lstm_backward);
    m.impl("gate_functions", &gate_functions);
    m.impl("time_major", &time_major);
}
