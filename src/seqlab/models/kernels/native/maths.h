// seqlab's native kernels: the elementwise maths every source file shares (lstm.cpp, decode.cpp).
#pragma once

#include <cmath>
#include <cstdint>
#include <cstring>

namespace seqlab_maths {

// ------------------------------------------------------------------------------------------
// elementwise maths
// ------------------------------------------------------------------------------------------

// e^x for float32, vectorisable (measured over [-87, 88] in steps of 1e-4 against double
// exp: at most 9.9e-8 relative error; sigmoid and tanh built on it: 8.9e-8 and 1.8e-7 absolute
// on [-20, 20]; tests/models/test_native.py checks the gate functions against torch's): x = k ln2 + r with k = round(x / ln2) and |r| <= ln2 / 2,
// e^r from its Taylor series to degree 7 (truncation error < 2e-9 relative), 2^k written
// straight into the exponent bits. ln2 is split in a part exact in float and a remainder
// (Cody & Waite) so that r keeps its low bits. Inputs are clamped to [-87, 88], inside
// float's normal range; a NaN stays NaN through r.
// always inlined: a call inside a row loop keeps the compiler from vectorising it (with the
// eight instantiations of the forward, g++ stopped inlining it in some of them)
#define SEQLAB_INLINE inline __attribute__((always_inline))

SEQLAB_INLINE float exp_f(float x) {
    x = x < -87.0f ? -87.0f : x;
    x = x > 88.0f ? 88.0f : x;
    // round to nearest by adding and subtracting 1.5 * 2^23 (no floor call, which stops the
    // vectoriser); compiled without -ffast-math, so the two additions are kept
    const float k = (x * 1.44269504088896341f + 12582912.0f) - 12582912.0f;
    const float r = (x - k * 0.693359375f) + k * 2.12194440e-4f;
    float p = 1.98412698e-4f;                    // 1/7!
    p = p * r + 1.38888889e-3f;                  // 1/6!
    p = p * r + 8.33333333e-3f;                  // 1/5!
    p = p * r + 4.16666667e-2f;                  // 1/4!
    p = p * r + 1.66666667e-1f;                  // 1/3!
    p = p * r + 0.5f;
    p = p * r + 1.0f;
    p = p * r + 1.0f;
    // 2^k: k + 127 in the exponent field. Adding 2^23 + 127 puts k + 127 in the low
    // mantissa bits of a float exactly (|k| <= 127), from where a shift moves it up.
    const float biased = k + 8388735.0f;         // 2^23 + 127
    uint32_t bits;
    std::memcpy(&bits, &biased, 4);
    bits <<= 23;
    float scale;
    std::memcpy(&scale, &bits, 4);
    return p * scale;
}

SEQLAB_INLINE float exp_t(float x) { return exp_f(x); }
SEQLAB_INLINE double exp_t(double x) { return std::exp(x); }

template <typename T> SEQLAB_INLINE T sigmoid(T x) { return T(1) / (T(1) + exp_t(-x)); }
template <typename T> SEQLAB_INLINE T tanh_t(T x) { return T(2) / (T(1) + exp_t(T(-2) * x)) - T(1); }

}  // namespace seqlab_maths
