// Finite-difference gradient checks of every CPU op, and the GEMM against a naive triple loop.
// Sizes are deliberately awkward (not multiples of the GEMM's 6×32 tiles or of 16-wide vectors).
#include "kernels/cpu/exp.h"
#include "kernels/cpu/gemm.h"
#include "kernels/hash.h"
#include "kernels/kernels.h"
#include "model/config.h"
#include "tests/test_util.h"

#include <omp.h>

using std::vector;

TEST_CASE("gemm matches a naive product for every transpose, beta and awkward size") {
    for (int ta = 0; ta < 2; ta++)
        for (int tb = 0; tb < 2; tb++)
            for (float beta : {0.0f, 1.0f}) {
                for (auto [M, N] : {std::pair{37, 70}, std::pair{3, 70}, std::pair{7, 4200}, std::pair{8300, 9},
                                    std::pair{4200, 270}}) {
                // K > one 256-deep slice; M = 3 takes the few-rows path; N <= 128 (256 with AVX-512)
                // reads A in place, wider packs it; N = 4200: three column blocks; M = 8300 (A in
                // place) and 4200 (packed): several row blocks
                int K = 300;
                vector<float> A = random_vec((size_t)M * K, 1), B = random_vec((size_t)K * N, 2), C = random_vec((size_t)M * N, 3);
                vector<float> ref = C;
                for (int i = 0; i < M; i++)
                    for (int j = 0; j < N; j++) {
                        double s = 0;
                        for (int k = 0; k < K; k++)
                            s += (double)(ta ? A[(size_t)k * M + i] : A[(size_t)i * K + k]) * (tb ? B[(size_t)j * K + k] : B[(size_t)k * N + j]);
                        ref[(size_t)i * N + j] = (float)(0.5 * s + beta * ref[(size_t)i * N + j]);
                    }
                cpu::gemm(ta, tb, M, N, K, 0.5f, A.data(), ta ? M : K, B.data(), tb ? K : N, beta, C.data(), N);
                double worst = 0;
                for (size_t i = 0; i < C.size(); i++) worst = std::max(worst, (double)std::fabs(C[i] - ref[i]));
                CHECK(worst < 1e-3);
                }
            }
}

TEST_CASE("exp_fast: within 2 ulp of exp on [-87, 88.3]; 0 below, NaN stays NaN") {
    double worst_ulp = 0;
    float worst_x = 0;
    for (float x = -87.0f; x <= 88.3f; x += 0.000731f) {
        double want = std::exp((double)x);
        float got = cpu::exp_fast(x);
        double ulp = std::ldexp(1.0, std::ilogb(want) - 23);  // spacing of floats at want
        double e = std::fabs(got - want) / ulp;
        if (e > worst_ulp) worst_ulp = e, worst_x = x;
    }
    MESSAGE("exp_fast: worst error " << worst_ulp << " ulp at x = " << worst_x);
    CHECK(worst_ulp <= 2.0);
    CHECK(cpu::exp_fast(0.0f) == 1.0f);
    CHECK(cpu::exp_fast(-INFINITY) == 0.0f);
    CHECK(cpu::exp_fast(-100.0f) == 0.0f);
    CHECK(std::isnan(cpu::exp_fast(NAN)));
    CHECK(std::isfinite(cpu::exp_fast(INFINITY)));
}

TEST_CASE("tanh_fast: within 2e-7 of tanh (absolute) everywhere; exactly +-1 far out, NaN stays NaN") {
    double worst = 0;
    float worst_x = 0;
    for (float x = -60.0f; x <= 60.0f; x += 0.000917f) {
        double e = std::fabs(cpu::tanh_fast(x) - std::tanh((double)x));
        if (e > worst) worst = e, worst_x = x;
    }
    MESSAGE("tanh_fast: worst absolute error " << worst << " at x = " << worst_x);
    CHECK(worst < 2e-7);
    CHECK(cpu::tanh_fast(0.0f) == 0.0f);
    CHECK(cpu::tanh_fast(100.0f) == 1.0f);
    CHECK(cpu::tanh_fast(-100.0f) == -1.0f);
    CHECK(cpu::tanh_fast(INFINITY) == 1.0f);
    CHECK(cpu::tanh_fast(-INFINITY) == -1.0f);
    CHECK(std::isnan(cpu::tanh_fast(NAN)));
}

TEST_CASE("matmul backward: dinp, dw, dbias") {
    int N = 7, C = 13, OC = 11;
    vector<float> x = random_vec(N * C, 1), w = random_vec(OC * C, 2), b = random_vec(OC, 3), R = random_vec(N * OC, 4);
    vector<float> out(N * OC), dx(N * C, 0), dw(OC * C, 0), db(OC, 0);
    cpu::matmul_backward(dx.data(), dw.data(), db.data(), R.data(), x.data(), w.data(), N, C, OC, true);
    auto loss = [&] { cpu::matmul_forward(out.data(), x.data(), w.data(), b.data(), N, C, OC, nullptr); return dot_loss(out, R); };
    grad_check("matmul dinp", x, dx, loss, 1e-3);
    grad_check("matmul dw", w, dw, loss, 1e-3);
    grad_check("matmul dbias", b, db, loss, 1e-3);
}

TEST_CASE("embedding backward with repeated tokens, unscaled and scaled (Gemma)") {
    int N = 9, C = 5, V = 4;
    vector<int32_t> tok = {0, 1, 3, 1, 1, 2, 0, 3, 3};
    for (float scale : {1.0f, 2.236068f}) {
        vector<float> table = random_vec(V * C, 1), R = random_vec(N * C, 2), out(N * C), dt(V * C, 0);
        cpu::embedding_backward(dt.data(), R.data(), tok.data(), N, C, scale);
        auto loss = [&] { cpu::embedding_forward(out.data(), tok.data(), table.data(), N, C, scale); return dot_loss(out, R); };
        grad_check("embedding dtable", table, dt, loss, 1e-3);
        loss();
        CHECK(out[2 * C + 1] == table[3 * C + 1] * scale);
    }
}

// NEFTune's noise is uniform on [-m, m): checked by its moments and range over 10^6 draws, and for
// what training needs of it: the same key gives the same bits whatever the thread count (recompute
// and resume redraw it), another key other noise, magnitude 0 nothing.
TEST_CASE("embedding_noise: uniform in [-m, m), a function of (key, index) alone") {
    const size_t n = 1000003;
    const float m = 0.0375f;
    vector<float> x = random_vec(n, 1, 0.25f), base = x;
    cpu::embedding_noise(x.data(), n, m, 77);
    double sum = 0, sq = 0, lo = 0, hi = 0, third[3] = {0, 0, 0}, off = 0;
    for (size_t i = 0; i < n; i++) {
        const double d = (double)x[i] - base[i];  // the noise, up to x + d's rounding (|x| < 2: 1.2e-7)
        sum += d, sq += d * d, lo = std::min(lo, d), hi = std::max(hi, d);
        third[std::min(2, (int)((d + m) / (2 * m) * 3))]++;
        off = std::max(off, std::fabs(d - m * uniform_pm1(77, i)));
    }
    CHECK(off < 1.2e-7);
    CHECK(lo >= -m - 1.2e-7);
    CHECK(hi < m + 1.2e-7);
    const double mean = sum / n, var = sq / n - mean * mean;
    CHECK(std::fabs(mean) < 4 * m / std::sqrt(3.0 * n));  // 4 standard errors of U(-m, m)'s mean
    CHECK(var == doctest::Approx(m * m / 3).epsilon(0.005));
    CHECK(lo < -0.999 * m);
    CHECK(hi > 0.999 * m);
    for (double c : third) CHECK(c == doctest::Approx(n / 3.0).epsilon(0.01));
    // deterministic across thread counts, keyed, and nothing at magnitude 0
    vector<float> again = base, other = base, none = base;
    const int threads = omp_get_max_threads();
    omp_set_num_threads(1);
    cpu::embedding_noise(again.data(), n, m, 77);
    omp_set_num_threads(threads);
    CHECK(again == x);
    cpu::embedding_noise(other.data(), n, m, 78);
    size_t same = 0;
    for (size_t i = 0; i < n; i++) same += other[i] == x[i];
    CHECK(same < n / 1000);
    cpu::embedding_noise(none.data(), n, 0.0f, 77);
    CHECK(none == base);
}

TEST_CASE("rmsnorm backward: dx and dw") {
    int N = 5, C = 19;
    vector<float> x = random_vec(N * C, 1), w = random_vec(C, 2), R = random_vec(N * C, 3);
    vector<float> out(N * C), rstd(N), dx(N * C, 0), dw(C, 0);
    cpu::rmsnorm_forward(out.data(), rstd.data(), x.data(), w.data(), N, C, 1e-5f, nullptr);
    cpu::rmsnorm_backward(dx.data(), dw.data(), R.data(), x.data(), w.data(), rstd.data(), N, C);
    auto loss = [&] { cpu::rmsnorm_forward(out.data(), rstd.data(), x.data(), w.data(), N, C, 1e-5f, nullptr); return dot_loss(out, R); };
    grad_check("rmsnorm dx", x, dx, loss, 2e-3);
    grad_check("rmsnorm dw", w, dw, loss, 2e-3);
    // With a residual to add (post norms), out is that residual plus the same norm; in place too.
    cpu::rmsnorm_forward(out.data(), rstd.data(), x.data(), w.data(), N, C, 1e-5f, nullptr);
    vector<float> add = random_vec(N * C, 4), sum(N * C), rstd2(N);
    cpu::rmsnorm_forward(sum.data(), rstd2.data(), x.data(), w.data(), N, C, 1e-5f, add.data());
    // (within an FMA's rounding: the compiler may fuse the add with the norm's last product)
    for (int i = 0; i < N * C; i++) CHECK(sum[i] == doctest::Approx(add[i] + out[i]).epsilon(1e-6));
    cpu::rmsnorm_forward(add.data(), rstd2.data(), x.data(), w.data(), N, C, 1e-5f, add.data());
    CHECK(add == sum);
}

TEST_CASE("rope: backward is the transpose, and position 0 is the identity") {
    int N = 6, H = 3, D = 8;
    vector<int32_t> pos = {0, 1, 2, 7, 100, 3};
    vector<float> x = random_vec(N * H * D, 1), R = random_vec(N * H * D, 2), y;
    vector<float> dx = R;
    const vector<float> f = rope_inv_freq(10000.0f, D);
    cpu::rope_backward(dx.data(), pos.data(), N, H, D, f.data());
    auto loss = [&] { y = x; cpu::rope_forward(y.data(), pos.data(), N, H, D, f.data()); return dot_loss(y, R); };
    grad_check("rope dx", x, dx, loss, 1e-3);
    loss();
    for (int i = 0; i < H * D; i++) CHECK(y[i] == x[i]);
}

TEST_CASE("glu backward: SiLU (SwiGLU) and GELU-tanh (GeGLU)") {
    size_t N = 23;
    for (int act : {GLU_SILU, GLU_GELU_TANH}) {
        CAPTURE(act);
        vector<float> g = random_vec(N, 1, 2.0f), u = random_vec(N, 2), R = random_vec(N, 3), h(N), dg(N), du(N);
        cpu::glu_backward(dg.data(), du.data(), R.data(), g.data(), u.data(), N, act);
        auto loss = [&] { cpu::glu_forward(h.data(), g.data(), u.data(), N, act); return dot_loss(h, R); };
        grad_check("glu dgate", g, dg, loss, 1e-3);
        grad_check("glu dup", u, du, loss, 1e-3);
    }
    // PyTorch's gelu(approximate="tanh") of a few values, times up = 1
    // (torch.nn.functional.gelu(torch.tensor(g, dtype=torch.float64), approximate="tanh"), torch 2.x)
    const float g[] = {-3.0f, -0.5f, 0.0f, 0.7f, 2.5f}, want[] = {-0.003637392082f, -0.1542859902f, 0.0f, 0.5305701347f, 2.484915734f};
    const float one[] = {1, 1, 1, 1, 1};
    float h[5];
    cpu::glu_forward(h, g, one, 5, GLU_GELU_TANH);
    for (int i = 0; i < 5; i++) CHECK(h[i] == doctest::Approx(want[i]).epsilon(1e-5));
}

// Attention with GQA (4 query heads on 2 kv heads), two rows, packed segments and right padding.
TEST_CASE("attention backward with causal, segment and padding masks, GQA") {
    int B = 2, T = 7, nh = 4, nkv = 2, hd = 6;
    vector<int32_t> seg = {0, 0, 0, 1, 1, 2, 2,    // row 0: three packed examples
                           0, 0, 0, 0, 0, -1, -1};  // row 1: one example, then padding
    size_t NQ = (size_t)B * T * nh * hd, NK = (size_t)B * T * nkv * hd;
    vector<float> q = random_vec(NQ, 1), k = random_vec(NK, 2), v = random_vec(NK, 3), R = random_vec(NQ, 4);
    vector<float> out(NQ), lse(B * T * nh), dq(NQ), dk(NK), dv(NK);
    const float scale = 1.0f / std::sqrt((float)hd);
    auto run = [&] {
        cpu::attention_forward(out.data(), lse.data(), q.data(), k.data(), v.data(), seg.data(), B, T, nh, nkv, hd, scale,
                               0);
    };
    run();
    cpu::attention_backward(dq.data(), dk.data(), dv.data(), R.data(), out.data(), lse.data(), q.data(), k.data(),
                            v.data(), seg.data(), B, T, nh, nkv, hd, scale, 0);
    auto loss = [&] { run(); return dot_loss(out, R); };
    grad_check("attention dq", q, dq, loss, 2e-3, 60);
    grad_check("attention dk", k, dk, loss, 2e-3, 60);
    grad_check("attention dv", v, dv, loss, 2e-3, 60);

    SUBCASE("the first token of each segment attends only to itself") {
        run();
        int firsts[] = {0, 3, 5};
        for (int t : firsts)
            for (int h = 0; h < nh; h++)
                for (int d = 0; d < hd; d++)
                    CHECK(out[((size_t)t * nh + h) * hd + d] == v[((size_t)t * nkv + h / 2) * hd + d]);
    }
    SUBCASE("changing a later segment's keys leaves an earlier segment's outputs unchanged") {
        run();
        vector<float> before = out;
        for (int d = 0; d < nkv * hd; d++) k[(size_t)5 * nkv * hd + d] += 3.0f;
        run();
        for (size_t i = 0; i < (size_t)5 * nh * hd; i++) CHECK(out[i] == before[i]);
    }
}

namespace {

// Attention evaluated directly from its definition in double: for each query the softmax of
// q·k · scale over the keys it may see (s <= t, same segment, and s > t − window when window > 0),
// and the backward's formulas of kernels/cpu/attention.cpp. Shapes and layouts as the ops'.
struct AttentionReference {
    vector<double> out, lse, dq, dk, dv;
    AttentionReference(const vector<float>& q, const vector<float>& k, const vector<float>& v,
                       const vector<float>& dout, const vector<int32_t>& seg, int B, int T, int nh, int nkv, int hd,
                       double scale, int window)
        : out(q.size(), 0), lse((size_t)B * T * nh), dq(q.size(), 0), dk(k.size(), 0), dv(v.size(), 0) {
        const int group = nh / nkv;
        for (int b = 0; b < B; b++)
            for (int h = 0; h < nh; h++)
                for (int t = 0; t < T; t++) {
                    size_t row = ((size_t)b * T + t) * nh + h;
                    auto key = [&](int j) { return (((size_t)b * T + j) * nkv + h / group) * hd; };
                    auto allowed = [&](int j) {
                        return j <= t && seg[b * T + j] == seg[b * T + t] && (window <= 0 || j > t - window);
                    };
                    vector<double> p(T, 0.0);
                    double mx = -INFINITY, sum = 0, D = 0;
                    for (int j = 0; j < T; j++) {
                        if (!allowed(j)) continue;
                        double s = 0;
                        for (int d = 0; d < hd; d++) s += (double)q[row * hd + d] * k[key(j) + d];
                        p[j] = s * scale;
                        mx = std::max(mx, p[j]);
                    }
                    for (int j = 0; j < T; j++) {
                        p[j] = allowed(j) ? std::exp(p[j] - mx) : 0.0;
                        sum += p[j];
                    }
                    lse[row] = mx + std::log(sum);
                    for (int j = 0; j < T; j++)
                        for (int d = 0; d < hd; d++) out[row * hd + d] += p[j] / sum * v[key(j) + d];
                    for (int d = 0; d < hd; d++) D += (double)dout[row * hd + d] * out[row * hd + d];
                    for (int j = 0; j < T; j++) {
                        if (p[j] == 0) continue;
                        double pj = p[j] / sum, dp = 0;
                        for (int d = 0; d < hd; d++) dp += (double)dout[row * hd + d] * v[key(j) + d];
                        double ds = pj * (dp - D) * scale;
                        for (int d = 0; d < hd; d++) {
                            dq[row * hd + d] += ds * k[key(j) + d];
                            dk[key(j) + d] += ds * q[row * hd + d];
                            dv[key(j) + d] += pj * dout[row * hd + d];
                        }
                    }
                }
    }
};

// The largest |got − want| / max(1, |want|).
double worst_relative(const vector<float>& got, const vector<double>& want) {
    double w = 0;
    for (size_t i = 0; i < got.size(); i++) w = std::max(w, std::fabs(got[i] - want[i]) / std::max(1.0, std::fabs(want[i])));
    return w;
}

// The CPU attention's outputs for one set of inputs.
struct AttentionRun {
    vector<float> out, lse, dq, dk, dv;
    AttentionRun(const vector<float>& q, const vector<float>& k, const vector<float>& v, const vector<float>& dout,
                 const vector<int32_t>& seg, int B, int T, int nh, int nkv, int hd, float scale, int window)
        : out(q.size()), lse((size_t)B * T * nh), dq(q.size()), dk(k.size()), dv(v.size()) {
        cpu::attention_forward(out.data(), lse.data(), q.data(), k.data(), v.data(), seg.data(), B, T, nh, nkv, hd,
                               scale, window);
        cpu::attention_backward(dq.data(), dk.data(), dv.data(), dout.data(), out.data(), lse.data(), q.data(), k.data(),
                                v.data(), seg.data(), B, T, nh, nkv, hd, scale, window);
    }
    bool operator==(const AttentionRun& o) const {
        return out == o.out && lse == o.lse && dq == o.dq && dk == o.dk && dv == o.dv;
    }
};

}  // namespace

// The blocked kernels against the formulas of kernels/cpu/attention.cpp evaluated directly in double,
// at sizes that cut through every block: T = 75 (two 64-query blocks, key tiles of 32 with a tail),
// hd = 40 (one full and one partial 32-column tile), 6 query heads on 2 kv heads.
TEST_CASE("attention forward and backward match a direct double-precision evaluation") {
    int B = 2, T = 75, nh = 6, nkv = 2, hd = 40;
    vector<int32_t> seg(B * T);
    for (int t = 0; t < T; t++) {
        seg[t] = t < 30 ? 0 : t < 70 ? 1 : 2;  // row 0: three packed examples
        seg[T + t] = t < 66 ? 0 : -1;           // row 1: one example, then padding
    }
    size_t NQ = (size_t)B * T * nh * hd, NK = (size_t)B * T * nkv * hd;
    vector<float> q = random_vec(NQ, 1), k = random_vec(NK, 2), v = random_vec(NK, 3), dout = random_vec(NQ, 4);
    AttentionRun got(q, k, v, dout, seg, B, T, nh, nkv, hd, 1.0f / std::sqrt((float)hd), 0);
    AttentionReference want(q, k, v, dout, seg, B, T, nh, nkv, hd, 1.0 / std::sqrt((double)hd), 0);
    double e_out = worst_relative(got.out, want.out), e_lse = worst_relative(got.lse, want.lse),
           e_dq = worst_relative(got.dq, want.dq), e_dk = worst_relative(got.dk, want.dk),
           e_dv = worst_relative(got.dv, want.dv);
    MESSAGE("attention vs double: out " << e_out << ", lse " << e_lse << ", dq " << e_dq << ", dk " << e_dk << ", dv " << e_dv);
    CHECK(e_out < 1e-5);
    CHECK(e_lse < 1e-5);
    CHECK(e_dq < 1e-5);
    CHECK(e_dk < 1e-5);
    CHECK(e_dv < 1e-5);
}

// A long row packed with examples: the products of a query block start at its segments' first key
// (rounded down to 64), so most blocks skip keys. Segment ids need not come in runs: the last
// example reuses the first one's id, so it attends to it too, and its blocks must start at key 0.
TEST_CASE("attention over a packed row skips other examples' keys and matches a direct evaluation") {
    int B = 1, T = 330, nh = 4, nkv = 2, hd = 40;
    vector<int32_t> seg(T);
    for (int t = 0; t < T; t++) seg[t] = t < 70 ? 3 : t < 75 ? 7 : t < 200 ? 8 : t < 265 ? 9 : 3;
    size_t NQ = (size_t)B * T * nh * hd, NK = (size_t)B * T * nkv * hd;
    vector<float> q = random_vec(NQ, 5), k = random_vec(NK, 6), v = random_vec(NK, 7), dout = random_vec(NQ, 8);
    for (int window : {0, 100}) {
        CAPTURE(window);
        AttentionRun got(q, k, v, dout, seg, B, T, nh, nkv, hd, 0.2f, window);
        AttentionReference want(q, k, v, dout, seg, B, T, nh, nkv, hd, 0.2, window);
        CHECK(worst_relative(got.out, want.out) < 1e-5);
        CHECK(worst_relative(got.lse, want.lse) < 1e-5);
        CHECK(worst_relative(got.dq, want.dq) < 1e-5);
        CHECK(worst_relative(got.dk, want.dk) < 1e-5);
        CHECK(worst_relative(got.dv, want.dv) < 1e-5);
    }
}

// Gemma 3's attention: a sliding window and a scale that is not 1/sqrt(hd) (0.3 here; 1/sqrt(40) =
// 0.158), against the direct evaluation. T = 203 cuts through the 64-query blocks (the last has 11
// rows); windows of one key (a query sees only itself), 7 (smaller than a GEMM tile), 64 (one query
// block), 100 (a block's products then start below its first query's window: at a multiple of 64)
// and 250 > T (masks nothing: the same results as no window, bit for bit). Row 0 packs three
// examples, row 1 is one example and then padding; 6 query heads on 2 kv heads.
TEST_CASE("attention with a sliding window and an explicit scale matches a direct evaluation; deterministic") {
    int B = 2, T = 203, nh = 6, nkv = 2, hd = 40;
    const float scale = 0.3f;
    vector<int32_t> seg(B * T);
    for (int t = 0; t < T; t++) {
        seg[t] = t < 90 ? 0 : t < 180 ? 1 : 2;
        seg[T + t] = t < 190 ? 0 : -1;
    }
    size_t NQ = (size_t)B * T * nh * hd, NK = (size_t)B * T * nkv * hd;
    vector<float> q = random_vec(NQ, 1), k = random_vec(NK, 2), v = random_vec(NK, 3), dout = random_vec(NQ, 4);
    for (int window : {1, 7, 64, 100, 250}) {
        CAPTURE(window);
        AttentionRun got(q, k, v, dout, seg, B, T, nh, nkv, hd, scale, window);
        AttentionReference want(q, k, v, dout, seg, B, T, nh, nkv, hd, scale, window);
        double e_out = worst_relative(got.out, want.out), e_lse = worst_relative(got.lse, want.lse),
               e_dq = worst_relative(got.dq, want.dq), e_dk = worst_relative(got.dk, want.dk),
               e_dv = worst_relative(got.dv, want.dv);
        MESSAGE("window " << window << " vs double: out " << e_out << ", lse " << e_lse << ", dq " << e_dq << ", dk "
                          << e_dk << ", dv " << e_dv);
        CHECK(e_out < 1e-5);
        CHECK(e_lse < 1e-5);
        CHECK(e_dq < 1e-5);
        CHECK(e_dk < 1e-5);
        CHECK(e_dv < 1e-5);
        if (window == 1)  // a query's only key is itself: out is its value row
            for (int t = 0; t < T; t++)
                for (int d = 0; d < hd; d++) CHECK(got.out[(size_t)t * nh * hd + d] == v[(size_t)t * nkv * hd + d]);
    }
    CHECK(AttentionRun(q, k, v, dout, seg, B, T, nh, nkv, hd, scale, 250) ==
          AttentionRun(q, k, v, dout, seg, B, T, nh, nkv, hd, scale, 0));

    SUBCASE("bit-identical whatever the thread count") {
        const int threads = omp_get_max_threads();
        AttentionRun base(q, k, v, dout, seg, B, T, nh, nkv, hd, scale, 7);
        for (int n : {1, 3}) {
            omp_set_num_threads(n);
            CHECK(AttentionRun(q, k, v, dout, seg, B, T, nh, nkv, hd, scale, 7) == base);
        }
        omp_set_num_threads(threads);
    }
}

// Decoding with a window against the windowed forward: sequence s's output is the last row of
// attention_forward over its len[s] cached positions. In the cache that decoding reads, the keys and
// values before the window are NaN: they must not even be read. Lengths 1, the whole cache, 40
// (shorter than some windows) and the window plus one.
TEST_CASE("attention_decode with a window is the last row of the windowed forward") {
    const int S = 4, max_T = 150, nh = 4, nkv = 2, hd = 24;
    const size_t kvs = (size_t)nkv * hd;  // cache floats per position
    const float scale = 0.25f;
    for (int window : {1, 7, 64, 200}) {
        CAPTURE(window);
        const int lens[S] = {1, max_T, 40, std::min(window + 1, max_T)};
        vector<float> q = random_vec((size_t)S * nh * hd, 1), kc = random_vec((size_t)S * max_T * kvs, 2);
        vector<float> vc = random_vec(kc.size(), 3), kc_poisoned = kc, vc_poisoned = vc, out(q.size());
        for (int s = 0; s < S; s++)
            for (size_t i = (size_t)s * max_T * kvs; i < ((size_t)s * max_T + std::max(0, lens[s] - window)) * kvs; i++)
                kc_poisoned[i] = vc_poisoned[i] = NAN;
        cpu::attention_decode(out.data(), q.data(), kc_poisoned.data(), vc_poisoned.data(), lens, S, max_T, nh, nkv, hd,
                              scale, window);
        for (int s = 0; s < S; s++) {
            CAPTURE(s);
            // The forward over the sequence's T cached positions, its last query being the decoded one.
            const int T = lens[s];
            vector<float> fq = random_vec((size_t)T * nh * hd, 4), fout(fq.size()), flse((size_t)T * nh);
            std::copy(&q[(size_t)s * nh * hd], &q[(size_t)(s + 1) * nh * hd], &fq[(size_t)(T - 1) * nh * hd]);
            vector<int32_t> fseg(T, 0);
            cpu::attention_forward(fout.data(), flse.data(), fq.data(), &kc[(size_t)s * max_T * kvs],
                                   &vc[(size_t)s * max_T * kvs], fseg.data(), 1, T, nh, nkv, hd, scale, window);
            double worst = 0;
            for (int i = 0; i < nh * hd; i++) {
                double d = std::fabs(out[(size_t)s * nh * hd + i] - fout[(size_t)(T - 1) * nh * hd + i]);
                worst = d > worst || std::isnan(d) ? d : worst;  // NaN (a poisoned position read) sticks
            }
            CHECK(worst < 1e-5);
        }
    }
}

TEST_CASE("lora backward of a group of two projections: dx, dA, dB, with and without dropout") {
    int N = 5, C = 9, r = 3;
    const int OC[2] = {7, 4};
    for (float p : {0.0f, 0.3f}) {
        CAPTURE(p);
        vector<float> x = random_vec(N * C, 1), dx(N * C, 0), u(N * 2 * r);
        vector<float> A[2], Bm[2], R[2], y[2], dA[2], dB[2];
        LoraProj<float> proj[2];
        for (int t = 0; t < 2; t++) {
            A[t] = random_vec(r * C, 2 + t), Bm[t] = random_vec(OC[t] * r, 4 + t), R[t] = random_vec(N * OC[t], 6 + t);
            y[t].assign(N * OC[t], 0.0f), dA[t].assign(r * C, 0.0f), dB[t].assign(OC[t] * r, 0.0f);
            proj[t] = {A[t].data(), Bm[t].data(), OC[t], 42u + t, y[t].data(), nullptr, R[t].data(), dA[t].data(),
                       dB[t].data()};
        }
        auto loss = [&] {
            cpu::lora_forward(proj, 2, u.data(), x.data(), N, C, r, 1.5f, p);
            return dot_loss(y[0], R[0]) + dot_loss(y[1], R[1]);
        };
        loss();
        cpu::lora_backward(proj, 2, dx.data(), x.data(), u.data(), N, C, r, 1.5f, p, true);
        // The adapter outputs are linear in each of x, A and B, so a wide step has no truncation
        // error and keeps FP32 rounding of the loss out of the difference.
        grad_check("lora dx", x, dx, loss, 1e-3, 40, 5e-2f);
        for (int t = 0; t < 2; t++) {
            grad_check("lora dA", A[t], dA[t], loss, 1e-3, 40, 5e-2f);
            grad_check("lora dB", Bm[t], dB[t], loss, 1e-3, 40, 5e-2f);
        }
    }
}

TEST_CASE("lora forward and backward over several blocks of rows and columns equal the whole-tensor formulas") {
    // lora.cpp makes drop(x) and du·A a block at a time (256 rows × 1024 columns): N = 600 is three
    // row blocks (the last short), C = 1100 two column blocks. The reference applies each mask to the
    // whole tensor, by its flat index n·C + c, and sums in double; errors are relative to 1 + |value|.
    const int N = 600, C = 1100, r = 5, G = 2;
    const int OC[G] = {70, 33};
    const float scale = 1.5f;
    for (float p : {0.0f, 0.1f}) {
        CAPTURE(p);
        vector<float> x = random_vec((size_t)N * C, 11), u((size_t)N * G * r), dx = random_vec((size_t)N * C, 12);
        const vector<float> dx0 = dx;
        vector<float> A[G], Bm[G], dy[G], y[G], dA[G], dB[G];
        LoraProj<float> proj[G];
        for (int t = 0; t < G; t++) {
            A[t] = random_vec((size_t)r * C, 13 + t), Bm[t] = random_vec((size_t)OC[t] * r, 15 + t);
            dy[t] = random_vec((size_t)N * OC[t], 17 + t), y[t].assign((size_t)N * OC[t], 0.0f);
            dA[t].assign((size_t)r * C, 0.0f), dB[t].assign((size_t)OC[t] * r, 0.0f);
            proj[t] = {A[t].data(), Bm[t].data(), OC[t], 77u + t, y[t].data(), nullptr, dy[t].data(), dA[t].data(),
                       dB[t].data()};
        }
        cpu::lora_forward(proj, G, u.data(), x.data(), N, C, r, scale, p);
        cpu::lora_backward(proj, G, dx.data(), x.data(), u.data(), N, C, r, scale, p, true);
        const uint32_t threshold = dropout_threshold(p);
        double worst = 0;
        auto expect = [&](float got, double want) {
            worst = std::max(worst, std::fabs(got - want) / (1.0 + std::fabs(want)));
        };
        vector<double> dx_ref(dx0.begin(), dx0.end());
        for (int t = 0; t < G; t++) {
            auto drop = [&](size_t i) { return p > 0 && !dropout_keep(proj[t].dropout_key, i, threshold) ? 0.0 : 1.0 / (1.0 - p); };
            vector<double> uu((size_t)N * r, 0.0), du((size_t)N * r, 0.0);
            for (int n = 0; n < N; n++)
                for (int j = 0; j < r; j++) {
                    for (int c = 0; c < C; c++)
                        uu[(size_t)n * r + j] += drop((size_t)n * C + c) * x[(size_t)n * C + c] * A[t][(size_t)j * C + c];
                    for (int o = 0; o < OC[t]; o++)
                        du[(size_t)n * r + j] += scale * dy[t][(size_t)n * OC[t] + o] * Bm[t][(size_t)o * r + j];
                    expect(u[(size_t)n * G * r + t * r + j], uu[(size_t)n * r + j]);
                }
            for (int n = 0; n < N; n++)
                for (int o = 0; o < OC[t]; o++) {
                    double s = 0;
                    for (int j = 0; j < r; j++) s += uu[(size_t)n * r + j] * Bm[t][(size_t)o * r + j];
                    expect(y[t][(size_t)n * OC[t] + o], scale * s);
                }
            for (int o = 0; o < OC[t]; o++)
                for (int j = 0; j < r; j++) {
                    double s = 0;
                    for (int n = 0; n < N; n++) s += dy[t][(size_t)n * OC[t] + o] * uu[(size_t)n * r + j];
                    expect(dB[t][(size_t)o * r + j], scale * s);
                }
            for (int j = 0; j < r; j++)
                for (int c = 0; c < C; c++) {
                    double s = 0;
                    for (int n = 0; n < N; n++) s += du[(size_t)n * r + j] * drop((size_t)n * C + c) * x[(size_t)n * C + c];
                    expect(dA[t][(size_t)j * C + c], s);
                }
            for (int n = 0; n < N; n++)
                for (int c = 0; c < C; c++) {
                    double s = 0;
                    for (int j = 0; j < r; j++) s += du[(size_t)n * r + j] * A[t][(size_t)j * C + c];
                    dx_ref[(size_t)n * C + c] += drop((size_t)n * C + c) * s;
                }
        }
        for (size_t i = 0; i < dx.size(); i++) expect(dx[i], dx_ref[i]);
        CHECK(worst < 1e-3);  // FP32 sums of ~1e3 terms; a wrong mask or block is off by O(1)
    }
}

TEST_CASE("lora forward with dropout is bit-identical to one whole-tensor GEMM, short blocks and few rows included") {
    // The blocks must not change a sum's order. gemm() takes products of at most 4 rows down its
    // few-rows path (one reduction over all of K): a last row block of 1-4 rows (N = 258) or a short
    // N cut into column blocks (N = 3, C = 2048) would round differently from the unblocked GEMM.
    const int C = 2048, r = 8, OC = 16;
    const float p = 0.1f;
    for (int N : {3, 258, 600}) {
        CAPTURE(N);
        const vector<float> x = random_vec((size_t)N * C, 21), A = random_vec((size_t)r * C, 22),
                            Bm = random_vec((size_t)OC * r, 23);
        vector<float> u((size_t)N * r), y((size_t)N * OC);
        LoraProj<float> proj = {A.data(), Bm.data(), OC, 99u, y.data(), nullptr, nullptr, nullptr, nullptr};
        cpu::lora_forward(&proj, 1, u.data(), x.data(), N, C, r, 1.0f, p);
        const uint32_t threshold = dropout_threshold(p);
        vector<float> xd((size_t)N * C), want((size_t)N * r);
        for (size_t i = 0; i < xd.size(); i++) xd[i] = dropout_keep(99u, i, threshold) ? x[i] * (1.0f / (1.0f - p)) : 0.0f;
        cpu::gemm(false, true, N, r, C, 1.0f, xd.data(), C, A.data(), C, 0.0f, want.data(), r);
        CHECK(memcmp(u.data(), want.data(), u.size() * sizeof(float)) == 0);
    }
}

TEST_CASE("dropout masks: keep rate 1 - p, halves of a pair, keys and far indices independent") {
    // Statistics over 2^21 elements (binomial standard deviation at p = 0.1: ~2e-4): the 32-bit hash
    // (kernels/hash.h) must still behave like independent coins where the kernels rely on it.
    const float p = 0.1f;
    const uint32_t threshold = dropout_threshold(p);
    CHECK(threshold == 6554);  // ceil(0.1 · 65536)
    const uint64_t key_a = 0x1234567890ABCDEFull, key_b = key_a + 1, far = 1ull << 34;
    const size_t n = 1 << 21;
    size_t kept = 0, both_dropped = 0, keys_differ = 0, far_differ = 0, far_kept = 0, pair_mismatches = 0;
    for (size_t i = 0; i < n; i++) {
        const bool a = dropout_keep(key_a, i, threshold);
        kept += a;
        keys_differ += a != dropout_keep(key_b, i, threshold);
        const bool f = dropout_keep(key_a, i + far, threshold);
        far_kept += f, far_differ += a != f;
        if (i % 2 == 0) {
            bool lo, hi;
            dropout_keep2(key_a, i, i + 1, threshold, lo, hi);
            pair_mismatches += (lo != a) + (hi != dropout_keep(key_a, i + 1, threshold));
            both_dropped += !lo && !hi;
        }
    }
    CHECK(pair_mismatches == 0);  // one hash for the pair gives dropout_keep's bits
    const double q = 1.0 - threshold / 65536.0;  // the keep probability
    CHECK(std::fabs((double)kept / n - q) < 1.5e-3);
    CHECK(std::fabs((double)far_kept / n - q) < 1.5e-3);
    CHECK(std::fabs((double)both_dropped / (n / 2) - (1 - q) * (1 - q)) < 1.5e-3);  // p², not p
    CHECK(std::fabs((double)keys_differ / n - 2 * q * (1 - q)) < 2e-3);
    CHECK(std::fabs((double)far_differ / n - 2 * q * (1 - q)) < 2e-3);
    // dropout_keep2 of two elements that are not one pair hashes each on its own.
    bool lo, hi;
    dropout_keep2(key_a, 7, 8, threshold, lo, hi);
    CHECK(lo == dropout_keep(key_a, 7, threshold));
    CHECK(hi == dropout_keep(key_a, 8, threshold));
}

// DoRA: the norms against a double-precision W + s·B·A; the rescale's backward by finite differences
// (the norm a constant, as the model treats it), with add and bias, and dz in place of dy.
TEST_CASE("dora: norms of W + s·B·A; backward dz and dm of the rescale") {
    const int OC = 19, C = 37, r = 5, N = 11;
    const float s = 1.5f;
    vector<float> w = random_vec((size_t)OC * C, 1), A = random_vec((size_t)r * C, 2, 0.3f), B = random_vec((size_t)OC * r, 3, 0.3f);
    vector<float> norm(OC);
    cpu::dora_norm(norm.data(), w.data(), A.data(), B.data(), OC, C, r, s);
    for (int j = 0; j < OC; j++) {
        double sum = 0;
        for (int i = 0; i < C; i++) {
            double v = w[(size_t)j * C + i];
            for (int k = 0; k < r; k++) v += (double)s * B[(size_t)j * r + k] * A[(size_t)k * C + i];
            sum += v * v;
        }
        CHECK(norm[j] == doctest::Approx(std::sqrt(sum)).epsilon(1e-6));
    }
    vector<float> z = random_vec((size_t)N * OC, 4), m = random_vec(OC, 5), add = random_vec((size_t)N * OC, 6),
                  bias = random_vec(OC, 7), R = random_vec((size_t)N * OC, 8), y((size_t)N * OC);
    auto loss = [&] {
        cpu::dora_forward(y.data(), z.data(), m.data(), norm.data(), bias.data(), add.data(), N, OC);
        return dot_loss(y, R);
    };
    vector<float> dz((size_t)N * OC), dm = random_vec(OC, 9), dm0 = dm;
    cpu::dora_backward(dz.data(), dm.data(), R.data(), z.data(), m.data(), norm.data(), N, OC);
    for (int j = 0; j < OC; j++) dm[j] -= dm0[j];  // it adds: what it added is the gradient
    grad_check("dora dz", z, dz, loss, 1e-3);
    grad_check("dora dm", m, dm, loss, 1e-3);
    vector<float> in_place = R;  // dz may be dy
    cpu::dora_backward(in_place.data(), dm.data(), in_place.data(), z.data(), m.data(), norm.data(), N, OC);
    CHECK(in_place == dz);
}

TEST_CASE("cross-entropy gradient with per-token weights") {
    int n = 4, V = 11;
    vector<float> z = random_vec(n * V, 1, 2.0f), w = {1.0f, 0.0f, 0.1f, 2.0f}, nll(n);
    vector<int32_t> tgt = {3, 0, 10, 5};
    vector<float> dz = z;
    cpu::crossentropy_forward_backward(dz.data(), nll.data(), tgt.data(), w.data(), n, V, 0.5f);
    auto loss = [&] {
        vector<float> zz = z;
        cpu::crossentropy_forward_backward(zz.data(), nll.data(), tgt.data(), w.data(), n, V, 0.0f);
        double s = 0;
        for (int i = 0; i < n; i++) s += 0.5 * w[i] * nll[i];
        return s;
    };
    grad_check("cross-entropy dlogits", z, dz, loss, 1e-3, 44);
    for (int j = 0; j < V; j++) CHECK(dz[V + j] == 0.0f);  // weight 0: no gradient at all
}

TEST_CASE("adamw: first step moves each weight by lr against the gradient's sign, decay is decoupled") {
    vector<float> p = {1.0f, -2.0f, 0.5f}, g = {0.3f, -0.1f, 0.0f}, m(3, 0), v(3, 0);
    cpu::adamw_update(p.data(), g.data(), m.data(), v.data(), 3, 0.1f, 0.9f, 0.999f, 1e-8f, 0.01f, 1.0f, 1);
    // m̂ = g, v̂ = g², so the step is lr·sign(g) plus lr·wd·p.
    CHECK(p[0] == doctest::Approx(1.0f - 0.1f * (1.0f + 0.01f * 1.0f)).epsilon(1e-6));
    CHECK(p[1] == doctest::Approx(-2.0f - 0.1f * (-1.0f + 0.01f * -2.0f)).epsilon(1e-6));
    CHECK(p[2] == doctest::Approx(0.5f - 0.1f * 0.01f * 0.5f).epsilon(1e-6));
    CHECK(cpu::sum_squares(g.data(), 3) == doctest::Approx(0.1));
}
