// The tolerances of the CUDA-vs-CPU tests (tests/test_cuda_util.h) must bite (DESIGN.md §8): for
// each, a result with the errors a correct BF16 kernel makes passes, and the output of a plausible
// bug fails. Both are made on the CPU from the reference ops, so this runs on every machine, GPU or
// not (no "cuda" suite), and guards the constants against being loosened into testing nothing.
#include <algorithm>

#include "tests/test_cuda_util.h"

using std::vector;

namespace {

vector<float> rnd(size_t n, uint64_t seed, float scale = 1.0f) { return bf16_round(random_vec(n, seed, scale)); }

// `honest` passes `tol` against `ref`; `buggy` fails it.
void expect_bites(const std::string& what, const vector<float>& ref, const vector<float>& honest,
                  const vector<float>& buggy, Tol tol, const char* bug) {
    Comparison good = compare(honest, ref, tol), bad = compare(buggy, ref, tol);
    CHECK_MESSAGE(good.ok, what << ": a correct BF16 result fails the tolerance: " << good.text);
    CHECK_MESSAGE(!bad.ok, what << ": the bug (" << bug << ") passes the tolerance: " << bad.text);
}

struct Attn {
    int B = 2, T = 67, nh = 4, nkv = 2, hd = 16;
    size_t NQ = (size_t)B * T * nh * hd, NK = (size_t)B * T * nkv * hd, NL = (size_t)B * T * nh;
    vector<float> q = rnd(NQ, 1), k = rnd(NK, 2), v = rnd(NK, 3), dout = rnd(NQ, 4);
    // Row 0 packs two examples, row 1 is one example then padding.
    vector<int32_t> seg = [this] {
        vector<int32_t> s((size_t)B * T);
        for (int t = 0; t < T; t++) s[t] = t < 30 ? 0 : 1, s[T + t] = t < 50 ? 0 : -1;
        return s;
    }();
    void forward(vector<float>& out, vector<float>& lse, const vector<float>& qq, const vector<int32_t>& sg) const {
        out.resize(NQ), lse.resize(NL);
        cpu_ops().attention_forward(as_act(out.data()), lse.data(), as_act(qq.data()), as_act(k.data()),
                                    as_act(v.data()), sg.data(), B, T, nh, nkv, hd, 1.0f / std::sqrt((float)hd), 0);
    }
    vector<float> dq(const vector<float>& out, const vector<float>& lse, const vector<int32_t>& sg) const {
        vector<float> dq(NQ), dk(NK), dv(NK);
        cpu_ops().attention_backward(as_act(dq.data()), as_act(dk.data()), as_act(dv.data()), as_act(dout.data()),
                                     as_act(out.data()), lse.data(), as_act(q.data()), as_act(k.data()),
                                     as_act(v.data()), sg.data(), B, T, nh, nkv, hd, 1.0f / std::sqrt((float)hd), 0);
        return dq;
    }
};

}  // namespace

TEST_CASE("tolerance bites: matmul output (kBf16Dot)") {
    int N = 5, C = 2051, OC = 33;  // a long inner dimension whose tail a tiled kernel could drop
    vector<float> x = rnd((size_t)N * C, 1), w = rnd((size_t)OC * C, 2, 1 / std::sqrt((float)C)), b = rnd(OC, 3);
    vector<float> ref((size_t)N * OC), honest(ref.size()), buggy(ref.size()), x_tail = x;
    cpu_ops().matmul_forward(as_act(ref.data()), as_act(x.data()), as_act(w.data()), as_act(b.data()), N, C, OC, nullptr);
    // Correct on a GPU: the product rounded to BF16, then the bias added and rounded again.
    cpu_ops().matmul_forward(as_act(honest.data()), as_act(x.data()), as_act(w.data()), nullptr, N, C, OC, nullptr);
    for (int i = 0; i < N * OC; i++) honest[i] = bf16_round(bf16_round(honest[i]) + b[i % OC]);
    for (int n = 0; n < N; n++) std::fill(&x_tail[(size_t)n * C + C - 3], &x_tail[(size_t)n * C + C], 0.0f);
    cpu_ops().matmul_forward(as_act(buggy.data()), as_act(x_tail.data()), as_act(w.data()), as_act(b.data()), N, C, OC,
                             nullptr);
    expect_bites("matmul out", ref, honest, buggy, kBf16Dot, "last 3 of 2051 inner terms dropped");
}

TEST_CASE("tolerance bites: rmsnorm rstd (kF32Rstd)") {
    int N = 16, C = 576;
    vector<float> x = rnd((size_t)N * C, 1, 2.0f), w(C, 1.0f), out((size_t)N * C), ref(N), honest(N), buggy(N);
    cpu_ops().rmsnorm_forward(as_act(out.data()), ref.data(), as_act(x.data()), as_act(w.data()), N, C, 1e-5f, nullptr);
    for (int n = 0; n < N; n++) {
        double ss = 0;
        for (int c = 0; c < C; c++) ss += (double)x[(size_t)n * C + c] * x[(size_t)n * C + c];
        honest[n] = (float)(1.0 / std::sqrt(ss / C + 1e-5));  // exact sum: differs in the last bits only
        buggy[n] = (float)(1.0 / std::sqrt(ss / (C - 1) + 1e-5));
    }
    expect_bites("rmsnorm rstd", ref, honest, buggy, kF32Rstd, "mean over C-1");
}

TEST_CASE("tolerance bites: attention out, lse and gradients") {
    Attn a;
    vector<float> out, lse, out_packing, lse_packing, out_scale, lse_scale, q_scaled = a.q;
    a.forward(out, lse, a.q, a.seg);
    vector<int32_t> one_segment = a.seg;  // packing ignored: row 0 one example
    std::fill(one_segment.begin(), one_segment.begin() + a.T, 0);
    a.forward(out_packing, lse_packing, a.q, one_segment);
    for (float& x : q_scaled) x /= std::sqrt((float)a.hd);  // scores scaled by 1/hd, not 1/sqrt(hd)
    a.forward(out_scale, lse_scale, q_scaled, a.seg);
    vector<float> lse_ulp = lse;
    for (float& x : lse_ulp) x = std::nextafter(std::nextafter(x, INFINITY), INFINITY);

    expect_bites("attention out", out, bf16_round(out), out_packing, kAttnOut, "packing mask ignored");
    expect_bites("attention out", out, bf16_round(out), out_scale, kAttnOut, "scale 1/hd");
    expect_bites("attention lse", lse, lse_ulp, lse_packing, kF32Lse, "packing mask ignored");
    expect_bites("attention lse", lse, lse_ulp, lse_scale, kF32Lse, "scale 1/hd");

    out = bf16_round(out);  // the backward reads the BF16 out, on both sides
    vector<float> dq = a.dq(out, lse, a.seg), dq_packing = a.dq(out, lse, one_segment);
    expect_bites("attention dq", dq, bf16_round(dq), dq_packing, kAttnGrad, "packing mask ignored in the backward");
    expect_bites("attention dq", dq, bf16_round(dq), vector<float>(dq.size()), kAttnGrad, "kernel wrote zeros");
}

TEST_CASE("tolerance bites: cross-entropy nll (kF32Lse)") {
    int n = 8, V = 77;
    vector<float> z = rnd((size_t)n * V, 1, 2.0f), w(n, 1.0f), ref(n), buggy(n), z_short((size_t)n * (V - 1));
    vector<int32_t> t = random_ints(n, 2, 0, V - 1);
    vector<float> zz = z;
    cpu_ops().crossentropy_forward_backward(as_act(zz.data()), ref.data(), t.data(), w.data(), n, V, 0.0f);
    for (int i = 0; i < n; i++) std::copy_n(&z[(size_t)i * V], V - 1, &z_short[(size_t)i * (V - 1)]);
    cpu_ops().crossentropy_forward_backward(as_act(z_short.data()), buggy.data(), t.data(), w.data(), n, V - 1, 0.0f);
    vector<float> honest = ref;
    for (float& x : honest) x *= 1.0f + 1e-6f;  // a few ulp of log-sum-exp
    expect_bites("crossentropy nll", ref, honest, buggy, kF32Lse, "last vocabulary column ignored");
}

TEST_CASE("tolerance bites: rope (kRope)") {
    int N = 37, H = 3, hd = 64;
    vector<int32_t> pos = random_ints(N, 1, 0, 4096), pos1 = pos;
    for (int32_t& p : pos1) p += 1;
    vector<float> x = rnd((size_t)N * H * hd, 2), ref = x, buggy = x;
    const vector<float> f = rope_inv_freq(10000.0f, hd);
    cpu_ops().rope_forward(as_act(ref.data()), pos.data(), N, H, hd, f.data());
    cpu_ops().rope_forward(as_act(buggy.data()), pos1.data(), N, H, hd, f.data());
    expect_bites("rope", ref, bf16_round(ref), buggy, kRope, "positions off by one");
}

TEST_CASE("tolerance bites: lora y (kLora)") {
    int N = 37, C = 100, OC = 77, r = 8;
    float p = 0.1f, s = 2.0f;
    vector<float> x = rnd((size_t)N * C, 1), A = rnd((size_t)r * C, 2, 0.1f), B = rnd((size_t)OC * r, 3, 0.35f);
    vector<float> y0 = rnd((size_t)N * OC, 4), u((size_t)N * r);
    auto run = [&](uint64_t key) {
        vector<float> y = y0;
        LoraProj<act> proj{as_act(A.data()), as_act(B.data()), OC, key, as_act(y.data()), as_act(y.data()), nullptr,
                           nullptr, nullptr};
        cpu_ops().lora_forward(&proj, 1, as_act(u.data()), as_act(x.data()), N, C, r, s, p);
        return y;
    };
    vector<float> ref = run(7), other_key = run(8), unscaled = ref;
    for (size_t i = 0; i < ref.size(); i++) unscaled[i] = y0[i] + (ref[i] - y0[i]) * (1.0f - p);
    expect_bites("lora y", ref, bf16_round(ref), other_key, kLora, "another dropout mask");
    expect_bites("lora y", ref, bf16_round(ref), unscaled, kLora, "kept values not scaled by 1/(1-p)");
}

TEST_CASE("tolerance bites: adamw (kAdamW)") {
    const size_t n = 10007;
    const float lr = 1e-3f, b1 = 0.9f, b2 = 0.999f, eps = 1e-8f, wd = 0.1f;
    const int t = 10;
    vector<float> p0 = rnd(n, 1), g = rnd(n, 2, 0.1f), m0 = rnd(n, 3, 0.01f), v0 = rnd(n, 4, 0.01f);
    for (float& x : v0) x *= x;
    auto run = [&](float weight_decay, int step, const vector<float>& grad) {
        vector<float> p = p0, m = m0, v = v0;
        cpu_ops().adamw_update(p.data(), nullptr, grad.data(), m.data(), v.data(), n, lr, b1, b2, eps, weight_decay,
                               1.0f, step, 0);
        return p;
    };
    vector<float> ref = run(wd, t, g), honest(n), coupled = g;
    for (size_t i = 0; i < n; i++) {  // the same update in double: differs in the last bit or so
        double m = b1 * (double)m0[i] + (1 - b1) * (double)g[i], v = b2 * (double)v0[i] + (1 - b2) * (double)g[i] * g[i];
        double mhat = m / (1 - std::pow((double)b1, t)), vhat = v / (1 - std::pow((double)b2, t));
        honest[i] = (float)(p0[i] - lr * (mhat / (std::sqrt(vhat) + eps) + wd * p0[i]));
        coupled[i] += wd * p0[i];  // L2 through the gradient instead of decoupled decay
    }
    expect_bites("adamw p", ref, honest, run(wd, 100000, g), kAdamW, "no bias correction");
    expect_bites("adamw p", ref, honest, run(0.0f, t, coupled), kAdamW, "weight decay coupled into the gradient");
}
