// exp(x) for the CPU kernels' hot loops (softmax in attention and cross-entropy, the SwiGLU sigmoid).
// libm's expf is an out-of-line call per element, so a loop over it cannot vectorise; this one is
// inline and branch-free, so `#pragma omp simd` loops of it become 16-wide AVX-512 code.
//
// Method (Cephes' expf): write x = n·ln2 + r with n = round(x·log2 e) and |r| <= ln2/2, evaluate
// e^r with a degree-7 polynomial (Cephes' minimax coefficients), and multiply by 2^n built directly
// in the exponent bits. ln2 is split in a short high part (exact in n·ln2_hi) and a low correction,
// so r keeps full precision. Relative error within 2 ulp of the true exp on [−87, 88.3]
// (tests/test_kernels.cpp checks it against double-precision exp). Below −87 it returns 0 (true
// exp there is under 1.7e-38, the bottom of the float range, and the softmax callers feed it −inf
// for masked entries); above 88.3 it saturates at 2.2e38 instead of overflowing to inf; NaN stays NaN.
#pragma once
#include <cstdint>
#include <cstring>

namespace cpu {

static inline float exp_fast(float x) {
    const float lo = -87.0f, hi = 88.3f;  // so n stays in [−126, 127]
    float xc = x > lo ? x : lo;             // NaN compares false: it computes on lo (no float→int of NaN)
    xc = xc < hi ? xc : hi;
    // n = round-to-nearest(x·log2 e): adding and subtracting 1.5·2^23 rounds in the FPU's own mode.
    const float shifter = 12582912.0f;
    float n = (xc * 1.44269504088896341f + shifter) - shifter;
    float r = xc - n * 0.693359375f;        // ln2_hi: 9 significant bits, so n·ln2_hi is exact
    r = r - n * -2.12194440e-4f;            // ln2_lo = ln2 − ln2_hi
    float p = 1.9875691500e-4f;
    p = p * r + 1.3981999507e-3f;
    p = p * r + 8.3334519073e-3f;
    p = p * r + 4.1665795894e-2f;
    p = p * r + 1.6666665459e-1f;
    p = p * r + 5.0000001201e-1f;
    p = p * r * r + r + 1.0f;               // e^r = 1 + r + r²·(1/2 + r/6 + …)
    int32_t bits = ((int32_t)n + 127) << 23;  // 2^n as a normal float: exponent field n + 127
    float scale;
    memcpy(&scale, &bits, sizeof scale);
    return x < lo ? 0.0f : x == x ? p * scale : x;
}

}  // namespace cpu
