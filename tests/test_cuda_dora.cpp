// DoRA's ops on CUDA (kernels/cuda/dora.cu) against the CPU oracle (kernels/cpu/dora.cpp), at awkward
// sizes, with the tolerances of tests/test_cuda_util.h; the reductions are also run twice for the
// same bits. Suite "cuda": tests/main.cpp skips it when cuda_ops() finds no GPU.
#include "tests/test_cuda_util.h"

using std::vector;

namespace {

vector<float> rnd(size_t n, uint64_t seed, float scale = 1.0f) { return random_vec(n, seed, scale); }

// A row norm in FP32 from identical BF16 inputs: each (B·A)_ij sums its r products in the same order
// on both sides (a fused multiply-add may move the last bit), the squares are summed in another
// order: ~1e-6 relative. 1e-5 still catches a column too many or too few (1/C ≥ 1e-3 of the square).
constexpr Tol kDoraNorm{0.0, 1e-5};

}  // namespace

TEST_SUITE("cuda") {

// Blocks of 16 rows (77 and 130: a last block part-filled), and one row a block at ranks 761 (its 16
// rows of B fit the 48 KiB, not with the warps' partial sums beside them) and 800.
TEST_CASE("cuda dora_norm: the row norms of W + s·B·A (ranks 1 to 800, widths not multiples of a block); deterministic") {
    const Ops& g = cuda_backend();
    struct Shape {
        int OC, C, r;
    };
    for (Shape s : {Shape{1, 5, 1}, Shape{77, 300, 8}, Shape{576, 576, 17}, Shape{130, 1000, 64}, Shape{20, 40, 761}, Shape{33, 50, 800}}) {
        // W ~ N(0, 1/C) rows of norm about 1; s·B·A of the same order
        ActTwin w(g, rnd((size_t)s.OC * s.C, 1, 1.0f / std::sqrt((float)s.C))), A(g, rnd((size_t)s.r * s.C, 2, 0.1f)),
            B(g, rnd((size_t)s.OC * s.r, 3, 0.1f));
        BufTwin<float> norm(g, vector<float>(s.OC, -1.0f));
        auto op = [&](const Ops& o, On on) { o.dora_norm(norm[on], w[on], A[on], B[on], s.OC, s.C, s.r, 2.5f); };
        run_both(g, op);
        const std::string what = strf("dora_norm OC=%d C=%d r=%d", s.OC, s.C, s.r);
        expect_close(what + ": norm", norm, kDoraNorm);
        expect_deterministic(what, g, {{"norm", &norm}}, op);
    }
}

TEST_CASE("cuda dora_forward: y = add + m/norm·z + bias; with and without add and bias, in place on z") {
    const Ops& g = cuda_backend();
    struct Shape {
        int N, OC;
    };
    for (Shape s : {Shape{1, 1}, Shape{37, 77}, Shape{300, 576}, Shape{65, 1000}})
        for (int add_mode : {0, 1, 2})  // 0: no add; 1: another tensor; 2: none, in place (y is z)
            for (bool bias : {false, true}) {
                const size_t n = (size_t)s.N * s.OC;
                ActTwin z(g, rnd(n, 4)), add(g, rnd(n, 5)), y(g, rnd(n, 6)), m(g, rnd(s.OC, 7, 0.5f)),
                    b(g, rnd(s.OC, 8, 0.3f));
                vector<float> norms = rnd(s.OC, 9, 0.2f);
                for (float& x : norms) x = 0.5f + std::fabs(x);
                BufTwin<float> norm(g, norms);
                ActTwin& out = add_mode == 2 ? z : y;
                run_both(g, [&](const Ops& o, On on) {
                    o.dora_forward(out[on], z[on], m[on], norm[on], bias ? b[on] : nullptr, add_mode == 1 ? add[on] : nullptr,
                                   s.N, s.OC);
                });
                expect_close(strf("dora_forward N=%d OC=%d %s%s: y", s.N, s.OC,
                                  add_mode == 0 ? "no add" : add_mode == 1 ? "add" : "in place", bias ? ", bias" : ""),
                             out, kBf16Elementwise, s.OC);
            }
}

TEST_CASE("cuda dora_backward: dz = m/norm·dy (BF16, in place on dy too), dm += Σ dy·z / norm (FP32); deterministic") {
    const Ops& g = cuda_backend();
    struct Shape {
        int N, OC;
    };
    // 300 and 1025 rows: 2 and 5 stripes (dora_backward_stripes), their column sums added in order
    for (Shape s : {Shape{1, 1}, Shape{37, 77}, Shape{300, 576}, Shape{1025, 33}})
        for (bool in_place : {false, true}) {
            CHECK(dora_backward_stripes(s.N, s.OC) == (s.N == 300 ? 2 : s.N == 1025 ? 5 : 1));
            const size_t n = (size_t)s.N * s.OC;
            ActTwin dy(g, rnd(n, 10)), z(g, rnd(n, 11)), dz(g, rnd(n, 12)), m(g, rnd(s.OC, 13, 0.5f));
            vector<float> norms = rnd(s.OC, 14, 0.2f);
            for (float& x : norms) x = 0.5f + std::fabs(x);
            BufTwin<float> norm(g, norms), dm(g, rnd(s.OC, 15));
            ActTwin& out = in_place ? dy : dz;
            auto op = [&](const Ops& o, On on) { o.dora_backward(out[on], dm[on], dy[on], z[on], m[on], norm[on], s.N, s.OC); };
            run_both(g, op);
            const std::string what = strf("dora_backward N=%d OC=%d%s", s.N, s.OC, in_place ? " (dz in place of dy)" : "");
            expect_close(what + ": dz", out, kBf16Elementwise, s.OC);
            expect_close(what + ": dm", dm, kF32Sum);
            expect_deterministic(what, g, {{"dz", &out}, {"dm", &dm}}, op);
        }
}

}  // TEST_SUITE("cuda")
