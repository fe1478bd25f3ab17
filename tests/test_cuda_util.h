// Helpers for the CUDA-vs-CPU tests (tests/test_cuda_*.cpp): tensors held on both backends with
// the same values, the host BF16 rounding, the tolerances, and comparisons that print enough to
// diagnose a failure from a single run on a GPU (worst error, its index, both values, the tolerance).
#pragma once
#include <cinttypes>
#include <cmath>
#include <cstdio>
#include <cstring>
#include <string>
#include <utility>
#include <vector>

#include "kernels/kernels.h"
#include "model/config.h"
#include "tests/test_util.h"

// ---------------------------------------------------------------------------------------------
// Tolerances. A comparison passes when, for every element,
//     |cuda − cpu| <= atol + rtol·|cpu|,   atol = atol_rms · rms(cpu over the whole tensor).
// atol is stated relative to the reference's RMS so one constant holds at any data scale: the
// rounding and reordering errors of a sum scale with the size of its terms, which (random signs)
// is about the RMS of the result; rtol covers the final BF16 rounding, which is relative to each
// value. BF16 keeps 8 significant bits: one round-to-nearest is off by at most 2^-8 = 0.39% of the
// value (2^-9 typically). The CUDA side reads the same BF16-rounded inputs as the CPU, so only the
// kernel's own error is measured. DESIGN.md §8: loose tolerances hide bugs, so each constant says
// why it is as large as it is, and tests/test_cuda_tolerance.cpp checks that plausible bugs fail.
struct Tol {
    double atol_rms, rtol;
};

// An elementwise FP32 result rounded once (or twice) to BF16: |err| <= 2 · 2^-8 relative; atol
// only absorbs FP32 ulp-level differences (expf vs __expf) on values near zero.
constexpr Tol kBf16Elementwise{1e-4, 1e-2};
// A BF16 output of a dot product or an accumulation (+=), with inputs scaled so terms are O(rms):
// one rounding of the result (2^-8·|ref|) plus possibly one of an intermediate of size ~rms (the
// product before the bias or the old value is added): about 2^-8·rms.
// FP32 summation-order differences are ~1e-6 and do not matter.
constexpr Tol kBf16Dot{1e-2, 1e-2};
// RoPE: a BF16 rounding, plus sincosf on the device (≤ 2 ulp) against the host's sinf/cosf of the
// same FP32 angle (the same inv_freq table); 4e-3 of rms leaves room for a rounding of x either way.
constexpr Tol kRope{4e-3, 1e-2};
// Attention output: each row is a convex combination of V rows; a flash kernel rounds the
// probabilities to BF16 for the P·V product (2^-9 each, random over the keys), which on a short
// row with cancelling V values is up to ~2^-8·|v| ≈ 3·2^-8·rms(out). lse (kF32Lse) is the sharp
// check of the scores and masks.
constexpr Tol kAttnOut{5e-2, 1e-2};
// Attention gradients: dS and P are rounded to BF16 for the four GEMMs of the backward, and dK, dV
// sum those rounded terms over up to T·nh/nkv queries.
constexpr Tol kAttnGrad{5e-2, 2e-2};
// LoRA's y and dx come through BF16 intermediates on the GPU: u (BF16 by the interface) and
// du = s·dy·B (the operand of the products that follow). Each is off by up to 2^-8, and one rounding of u is shared by a whole row of y (correlated, heavy tails):
// an emulation of exactly these roundings reaches 1.3e-2·rms on the largest case below.
constexpr Tol kLora{4e-2, 2e-2};
// FP32 sums over tokens of products of identical BF16 inputs (dw, dbias, dtable, LoRA dB): the
// products are exact in FP32, only the summation order differs (tensor cores may also truncate):
// ≲ n·2^-24 of Σ|terms| ≈ 1e-5·rms for n in the hundreds. 1e-3 still catches a BF16 rounding.
constexpr Tol kF32Sum{1e-3, 1e-3};
// FP32 sums whose terms pass through a BF16 intermediate on the GPU (LoRA dA = duᵀ·drop(x) with du
// stored in BF16 for the GEMM): each term is off by up to 2^-8 of itself.
constexpr Tol kF32ViaBf16{2e-2, 1e-2};
// A log-sum-exp in FP32 (attention lse, cross-entropy nll) from identical BF16 inputs: score dot
// products in another order and a device expf/logf (a few ulp): ~1e-6 of |lse| ≈ 5–12. 1e-4
// catches one key too many or too few on rows of up to a few hundred keys.
constexpr Tol kF32Lse{1e-4, 1e-4};
// rmsnorm's rstd: an FP32 mean of squares (reordered) and 1/sqrtf: ~1e-6 relative. Tight on
// purpose: a mean over C−1 instead of C is only 1/(2C) = 0.09% at C = 576.
constexpr Tol kF32Rstd{0.0, 1e-5};
// Cross-entropy gradient: each entry is one FP32 product softmax·w·scale rounded to BF16; no
// cancellation, so purely relative (rows of weight 0 must be exactly 0).
constexpr Tol kCeGrad{0.0, 1e-2};
// AdamW masters and moments (FP32): the same formula; a fused multiply-add or a device powf/sqrtf
// changes the last bit or two: ~1e-7 relative, 1e-6 with margin.
constexpr Tol kAdamW{1e-6, 1e-6};
// Σ g² in double (a scalar): FP32 or double partial sums in another order.
constexpr double kSumSquaresRtol = 1e-6;

// ---------------------------------------------------------------------------------------------
// Small utilities.

// FP32 → BF16 → FP32 with round-to-nearest-even, as __float2bfloat16 (the CUDA storage type) does.
inline float bf16_round(float x) {
    uint32_t u;
    std::memcpy(&u, &x, 4);
    if ((u & 0x7fffffffu) > 0x7f800000u)
        u |= 0x00400000u;  // NaN stays a (quiet) NaN instead of rounding into infinity
    else
        u += 0x7fffu + ((u >> 16) & 1u);
    u &= 0xffff0000u;
    std::memcpy(&x, &u, 4);
    return x;
}
inline std::vector<float> bf16_round(std::vector<float> v) {
    for (float& x : v) x = bf16_round(x);
    return v;
}

// Uniform integers in [lo, hi).
inline std::vector<int32_t> random_ints(size_t n, uint64_t seed, int lo, int hi) {
    Rng r(seed);
    std::vector<int32_t> v(n);
    for (int32_t& x : v) x = lo + (int32_t)(r.next_u64() % (uint64_t)(hi - lo));
    return v;
}

// The CUDA backend; the test fails (naming why) when there is none. tests/main.cpp skips the
// "cuda" suite without a GPU, so this only fails when that suite is asked for explicitly.
inline const Ops& cuda_backend() {
    const char* why = nullptr;
    const Ops* g = cuda_ops(&why);
    REQUIRE_MESSAGE(g != nullptr, "no CUDA backend: " << (why ? why : "(no reason given)"));
    return *g;
}

// ---------------------------------------------------------------------------------------------
// Comparisons.

struct Comparison {
    bool ok = true;
    size_t bad = 0;            // elements out of tolerance
    double significant = 1.0;  // fraction of reference values larger than their tolerance
    std::string text;          // everything above and where the worst errors are, on one line
    std::string brief;         // the worst error against the tolerance, for the line printed on success
};

// Where element i is: "[i]", or "[i = row r, col c]" when a row width is given.
inline std::string where(size_t i, size_t cols) {
    return cols ? strf("[%zu = row %zu, col %zu]", i, i / cols, i % cols) : strf("[%zu]", i);
}

// Compares got with ref (in the CUDA tests: got = CUDA, ref = the CPU reference).
inline Comparison compare(const std::vector<float>& got, const std::vector<float>& ref, Tol tol, size_t cols = 0) {
    Comparison c;
    if (got.size() != ref.size()) {
        c.ok = false;
        c.text = strf("size mismatch: got %zu, ref %zu elements", got.size(), ref.size());
        return c;
    }
    double ss = 0;
    for (float r : ref) ss += std::isfinite(r) ? (double)r * r : 0.0;
    double rms = ref.empty() ? 0.0 : std::sqrt(ss / ref.size());
    double atol = tol.atol_rms * rms;
    size_t worst = 0, i_abs = 0, first_bad = 0, above = 0;
    double worst_ratio = -1, max_abs = -1;
    for (size_t i = 0; i < ref.size(); i++) {
        double err = std::fabs((double)got[i] - ref[i]), allowed = atol + tol.rtol * std::fabs(ref[i]);
        if (std::isnan(err)) err = INFINITY;  // a NaN on either side is the worst error there is
        double ratio = allowed > 0 ? err / allowed : (err > 0 ? INFINITY : 0.0);
        if (!(err <= allowed) && c.bad++ == 0) first_bad = i;
        if (ratio > worst_ratio) worst_ratio = ratio, worst = i;
        if (err > max_abs) max_abs = err, i_abs = i;
        if (std::fabs(ref[i]) > allowed) above++;
    }
    c.ok = c.bad == 0;
    c.significant = ref.empty() ? 1.0 : (double)above / ref.size();
    c.text = strf("n=%zu rms(ref)=%.3g tol |err| <= %.3g + %.3g|ref|", ref.size(), rms, atol, tol.rtol);
    if (!ref.empty()) {
        c.text += strf("; worst %s got=%.9g ref=%.9g |err|=%.3g = %.3g of allowed", where(worst, cols).c_str(),
                       got[worst], ref[worst], std::fabs((double)got[worst] - ref[worst]), worst_ratio);
        c.text += strf("; max |err| %.3g at %s (got=%.9g ref=%.9g)", max_abs, where(i_abs, cols).c_str(), got[i_abs],
                       ref[i_abs]);
        c.brief = strf("worst %.3g of tolerance at [%zu] (|err| %.3g, tol %.3g + %.3g|ref|, rms(ref) %.3g)", worst_ratio,
                       worst, std::fabs((double)got[worst] - ref[worst]), atol, tol.rtol, rms);
    }
    if (c.bad) c.text += strf("; %zu out of tolerance, first %s", c.bad, where(first_bad, cols).c_str());
    c.text += strf("; %.1f%% of |ref| above tolerance", 100.0 * c.significant);
    return c;
}

// Checks got (CUDA) against ref (CPU). A pass prints one short line (the achieved error next to the
// tolerance is what a later session tunes from); a failure, everything about the worst elements.
// min_significant: the share of reference values that must exceed their tolerance, so that an
// all-zero (or never-run) kernel could not pass.
inline void expect_close(const std::string& what, const std::vector<float>& got, const std::vector<float>& ref, Tol tol,
                         size_t cols = 0, double min_significant = 0.5) {
    Comparison c = compare(got, ref, tol, cols);
    if (c.ok)
        std::printf("  ok %s: %s\n", what.c_str(), c.brief.c_str());
    else
        FAIL_CHECK(what << ": CUDA (got) differs from the CPU reference (ref): " << c.text);
    if (c.significant < min_significant)
        FAIL_CHECK(what << ": test data too small for the tolerance (an all-zero output would nearly pass): only "
                        << 100.0 * c.significant << "% of the reference values exceed their tolerance, need "
                        << 100.0 * min_significant << "%");
}

inline std::string show(float x) {
    uint32_t u;
    std::memcpy(&u, &x, 4);
    return strf("%.9g (0x%08x)", x, u);
}
inline std::string show(double x) { return strf("%.17g", x); }
inline std::string show(int32_t x) { return strf("%d", x); }
inline std::string show(uint8_t x) { return strf("0x%02x", x); }

// Bit-identical comparison (codes, exact gathers, determinism): counts the differing elements and
// shows the first few with both values.
template <class T>
void expect_identical(const std::string& what, const std::vector<T>& got, const std::vector<T>& ref) {
    std::string diffs;
    size_t bad = 0;
    if (got.size() != ref.size()) {
        FAIL_CHECK(what << ": size mismatch: " << got.size() << " vs " << ref.size());
        return;
    }
    for (size_t i = 0; i < ref.size(); i++)
        if (std::memcmp(&got[i], &ref[i], sizeof(T)) != 0 && bad++ < 4)
            diffs += strf("; [%zu] got %s want %s", i, show(got[i]).c_str(), show(ref[i]).c_str());
    if (bad)
        FAIL_CHECK(what << ": " << bad << " of " << ref.size() << " elements differ (bit-exact required)" << diffs);
    else
        std::printf("  ok %s: %zu elements bit-identical\n", what.c_str(), ref.size());
}

// ---------------------------------------------------------------------------------------------
// Tensors on both backends. Each twin holds the CPU op's buffer (host, `h`) and the CUDA op's
// (device) with the same initial values; twin[On::cpu] / twin[On::cuda] is the pointer each op
// takes, so one lambda can call an op on either backend (run_both).

enum class On { cpu, cuda };

struct Twin {
    explicit Twin(const Ops& g) : g(g) {}
    virtual ~Twin() = default;
    Twin(const Twin&) = delete;
    Twin& operator=(const Twin&) = delete;
    virtual void restore() = 0;                           // both sides back to the initial values
    virtual std::vector<uint8_t> cuda_bytes() const = 0;  // the CUDA side's storage, bit for bit
    const Ops& g;
};

// A storage tensor (act: FP32 on the CPU backend, BF16 on CUDA). Construction rounds the values to
// the CUDA storage type (upload, then download), so the CPU op reads exactly what the CUDA op reads.
struct ActTwin : Twin {
    ActTwin(const Ops& g, const std::vector<float>& values) : Twin(g), n(values.size()), h(n) {
        d = (act*)g.alloc(n * g.act_size, Mem::scratch);
        g.upload(d, values.data(), n);
        g.download(h.data(), d, n);
        init = h;
    }
    ~ActTwin() override { g.release(d); }
    act* operator[](On on) { return on == On::cpu ? as_act(h.data()) : d; }
    std::vector<float> cuda() const {
        std::vector<float> v(n);
        g.download(v.data(), d, n);
        return v;
    }
    void restore() override {
        h = init;
        g.upload(d, init.data(), n);  // exact: init is already BF16
    }
    std::vector<uint8_t> cuda_bytes() const override {
        std::vector<uint8_t> b(n * g.act_size);
        g.to_host(b.data(), d, b.size());
        return b;
    }
    size_t n;
    std::vector<float> h, init;
    act* d;
};

// A plain tensor (FP32, int32, uint8: the same type on both backends) with the same bytes.
template <class T>
struct BufTwin : Twin {
    BufTwin(const Ops& g, std::vector<T> values) : Twin(g), n(values.size()), h(std::move(values)), init(h) {
        d = (T*)g.alloc(n * sizeof(T), Mem::scratch);
        g.to_device(d, h.data(), n * sizeof(T));
    }
    ~BufTwin() override { g.release(d); }
    T* operator[](On on) { return on == On::cpu ? h.data() : d; }
    std::vector<T> cuda() const {
        std::vector<T> v(n);
        g.to_host(v.data(), d, n * sizeof(T));
        return v;
    }
    void restore() override {
        h = init;
        g.to_device(d, init.data(), n * sizeof(T));
    }
    std::vector<uint8_t> cuda_bytes() const override {
        std::vector<uint8_t> b(n * sizeof(T));
        g.to_host(b.data(), d, b.size());
        return b;
    }
    size_t n;
    std::vector<T> h, init;
    T* d;
};

// Runs f(ops, side) on the CPU backend (the reference) and then on CUDA.
template <class F>
void run_both(const Ops& g, F&& f) {
    f(cpu_ops(), On::cpu);
    f(g, On::cuda);
}

inline void expect_close(const std::string& what, const ActTwin& t, Tol tol, size_t cols = 0, double min_sig = 0.5) {
    expect_close(what, t.cuda(), t.h, tol, cols, min_sig);
}
inline void expect_close(const std::string& what, const BufTwin<float>& t, Tol tol, size_t cols = 0,
                         double min_sig = 0.5) {
    expect_close(what, t.cuda(), t.h, tol, cols, min_sig);
}
inline void expect_identical(const std::string& what, const ActTwin& t) { expect_identical(what, t.cuda(), t.h); }
template <class T>
void expect_identical(const std::string& what, const BufTwin<T>& t) {
    expect_identical(what, t.cuda(), t.h);
}

// Every op is deterministic (kernels/kernels.h): runs the CUDA op twice from the same state (the
// outputs restored in between, as accumulating outputs must be) and requires bit-identical outputs.
template <class F>
void expect_deterministic(const std::string& what, const Ops& g, std::vector<std::pair<const char*, Twin*>> outs,
                          F&& f) {
    std::vector<std::vector<uint8_t>> first;
    for (auto& o : outs) o.second->restore();
    f(g, On::cuda);
    for (auto& o : outs) first.push_back(o.second->cuda_bytes());
    for (auto& o : outs) o.second->restore();
    f(g, On::cuda);
    for (size_t i = 0; i < outs.size(); i++)
        expect_identical(what + " " + outs[i].first + ": second run vs first (bytes)", outs[i].second->cuda_bytes(),
                         first[i]);
}
