// The CUDA compute ops against the CPU oracle (DESIGN.md §8): each op runs on both backends on the
// same BF16-rounded inputs, at awkward sizes (not multiples of 8/16/64/128), and the outputs are
// compared with the tolerance stated for that op in tests/test_cuda_util.h. Every comparison
// prints one line (worst error against its tolerance), so a single GPU run both checks and
// calibrates. The backward ops that reduce over tokens are also run twice: bit-identical required.
// Suite "cuda": tests/main.cpp skips it when cuda_ops() finds no GPU.
// Memory ops, quantization and the optimizer are in tests/test_cuda_memory.cpp.
#include <algorithm>
#include <deque>
#include <iterator>

#include "tests/test_cuda_util.h"

using std::vector;

namespace {

// N(0, scale²) values from stream `seed`.
vector<float> rnd(size_t n, uint64_t seed, float scale = 1.0f) { return random_vec(n, seed, scale); }
float inv_sqrt(int n) { return 1.0f / std::sqrt((float)n); }

// ---- shared shapes ----

// Small and awkward; few rows (the decode path) with a long inner dimension; SmolLM's width with an
// odd output width.
struct MatShape {
    int N, C, OC;
};
const MatShape kMatShapes[] = {{37, 100, 77}, {5, 2051, 33}, {130, 576, 1537}};

// GQA with head dims 16 (the FP32 fallback), 64 and 128 at T = 300 (longer than any tile), plain
// multi-head attention, and a short row with 2 query heads per kv head; then rows shorter than one
// 16-row tile, rows one short of and one past a 128-row block (the tiles of 32 rows per warp), and 4
// and 8 query heads sharing a single kv head; hd 256 (Gemma 3) across several of its 64-query and
// 16- and 32-key blocks, packed and padded, and with 8 query heads on one kv head.
struct AttnCase {
    int B, T, nh, nkv, hd;
};
const AttnCase kAttnCases[] = {{3, 300, 6, 2, 16}, {3, 300, 6, 2, 64}, {3, 300, 6, 2, 128}, {2, 67, 4, 4, 64},
                               {3, 37, 6, 3, 128},  {2, 6, 2, 1, 64},   {2, 11, 4, 2, 128},  {2, 127, 4, 1, 64},
                               {2, 129, 2, 2, 64},  {2, 129, 2, 1, 128}, {1, 33, 8, 1, 128}, {3, 150, 4, 2, 256},
                               {1, 70, 8, 1, 256}};

std::string name(const AttnCase& c) {
    return strf("B=%d T=%d nh=%d nkv=%d hd=%d", c.B, c.T, c.nh, c.nkv, c.hd);
}

// Segment ids, by row: b%3 == 0 packs three examples of unequal lengths; 1 is one example followed
// by padding (−1); 2 is one example filling the row.
vector<int32_t> attn_segments(int B, int T) {
    vector<int32_t> seg((size_t)B * T);
    for (int b = 0; b < B; b++)
        for (int t = 0; t < T; t++)
            seg[(size_t)b * T + t] = b % 3 == 0 ? (t <= T / 3 ? 0 : t < 3 * T / 4 ? 1 : 2)
                                   : b % 3 == 1 ? (t <= 2 * T / 3 ? 0 : -1)
                                                : 0;
    return seg;
}

// q, k, v ~ N(0, 1): scores q·k/sqrt(hd) ~ N(0, 1), neither flat nor one-hot.
struct AttnInputs {
    AttnInputs(const Ops& g, const AttnCase& c)
        : NQ((size_t)c.B * c.T * c.nh * c.hd), NK((size_t)c.B * c.T * c.nkv * c.hd), NL((size_t)c.B * c.T * c.nh),
          q(g, rnd(NQ, 1)), k(g, rnd(NK, 2)), v(g, rnd(NK, 3)), seg(g, attn_segments(c.B, c.T)) {}
    size_t NQ, NK, NL;  // elements of q (and out), of k (and v), of lse
    ActTwin q, k, v;
    BufTwin<int32_t> seg;
};

// Zero-pattern of a tensor (1 where 0): how a dropout mask shows in its output.
vector<int32_t> zeros_of(const vector<float>& v) {
    vector<int32_t> z(v.size());
    for (size_t i = 0; i < v.size(); i++) z[i] = v[i] == 0.0f;
    return z;
}

}  // namespace

TEST_SUITE("cuda") {

// How an op's output starts: overwritten (add = null), accumulated onto (add = out), or another
// tensor plus the product (add = a residual input; out's old value must be ignored).
enum class AddMode { overwrite, accumulate, other };
const AddMode kAddModes[] = {AddMode::overwrite, AddMode::accumulate, AddMode::other};
const char* name(AddMode m) { return m == AddMode::overwrite ? "overwrite" : m == AddMode::accumulate ? "accumulate" : "add another"; }
act* add_for(AddMode m, ActTwin& out, ActTwin& other, On on) {
    return m == AddMode::overwrite ? nullptr : m == AddMode::accumulate ? out[on] : other[on];
}

TEST_CASE("cuda matmul_forward: with and without bias; overwrite, accumulate, add another tensor") {
    const Ops& g = cuda_backend();
    for (MatShape s : kMatShapes)
        for (bool bias : {false, true})
            for (AddMode mode : kAddModes) {
                int N = s.N, C = s.C, OC = s.OC;
                // w ~ N(0, 1/C): x·wᵀ ~ N(0, 1), the size of the bias and of the old value of out
                // (which accumulate adds to and the other modes must ignore) and of the added tensor.
                ActTwin x(g, rnd((size_t)N * C, 1)), w(g, rnd((size_t)OC * C, 2, inv_sqrt(C)));
                ActTwin b(g, rnd(OC, 3)), out(g, rnd((size_t)N * OC, 4)), res(g, rnd((size_t)N * OC, 5));
                run_both(g, [&](const Ops& o, On on) {
                    o.matmul_forward(out[on], x[on], w[on], bias ? b[on] : nullptr, N, C, OC, add_for(mode, out, res, on));
                });
                expect_close(strf("matmul_forward N=%d C=%d OC=%d bias=%d %s: out", N, C, OC, bias, name(mode)), out,
                             kBf16Dot, OC);
                if (mode == AddMode::other) expect_identical("matmul_forward: the added tensor is only read", res);
            }
}

// The added tensor and the output at addresses less aligned than the first call of the same shape
// (1 and 3 elements in): the GEMM's algorithm is chosen for the alignment of both, and must not be
// reused for a less aligned one.
TEST_CASE("cuda matmul_forward, lora_forward: add and out less aligned than an earlier call of the shape") {
    const Ops& g = cuda_backend();
    int N = 37, C = 100, OC = 77, r = 8;
    ActTwin x(g, rnd((size_t)N * C, 1)), w(g, rnd((size_t)OC * C, 2, inv_sqrt(C)));
    ActTwin A(g, rnd((size_t)r * C, 3, inv_sqrt(C))), B(g, rnd((size_t)OC * r, 4, inv_sqrt(r)));
    for (int off : {0, 1, 3}) {
        ActTwin out(g, rnd((size_t)N * OC, 5)), res(g, rnd((size_t)N * OC + 4, 6)), u(g, rnd((size_t)N * r, 7));
        run_both(g, [&](const Ops& o, On on) {
            LoraProj<act> proj{A[on], B[on], OC, 1, out[on], o.at(res[on], off), nullptr, nullptr, nullptr};
            o.lora_forward(&proj, 1, u[on], x[on], N, C, r, 2.0f, 0.0f);
            o.matmul_forward(out[on], x[on], w[on], nullptr, N, C, OC, out[on]);
        });
        expect_close(strf("lora_forward then matmul_forward, add %d elements in: out", off), out, kLora, OC);
        ActTwin out2(g, rnd((size_t)N * OC + 4, 8));
        run_both(g, [&](const Ops& o, On on) {
            o.matmul_forward(o.at(out2[on], off), x[on], w[on], nullptr, N, C, OC, res[on]);
        });
        expect_close(strf("matmul_forward, out %d elements in: out", off), out2, kBf16Dot, OC);
    }
}

TEST_CASE("cuda gemm_candidates: the heuristic's candidates for a shape, each timed and compared bit for bit with the first, leave the GEMM as it was") {
    const Ops& g = cuda_backend();
    REQUIRE(static_cast<bool>(g.gemm_candidates));
    CHECK_FALSE(static_cast<bool>(cpu_ops().gemm_candidates));
    const MatShape s = kMatShapes[0];
    ActTwin x(g, rnd((size_t)s.N * s.C, 1)), w(g, rnd((size_t)s.OC * s.C, 2, inv_sqrt(s.C))), out(g, rnd((size_t)s.N * s.OC, 3));
    auto op = [&](const Ops& o, On on) { o.matmul_forward(out[on], x[on], w[on], nullptr, s.N, s.C, s.OC, nullptr); };
    run_both(g, op);
    for (bool fp32_out : {false, true}) {
        vector<GemmCandidate> cand(4, GemmCandidate{-1.0, "", false, false});
        int n = g.gemm_candidates(false, true, s.N, s.OC, s.C, s.C, s.C, s.OC, fp32_out, 1.0f, cand.data(), 4);
        CHECK_MESSAGE(n >= 1, "no candidate for " << s.N << " x " << s.OC << " x " << s.C);
        CHECK(n <= 4);
        for (int i = 0; i < n; i++) {
            CHECK_MESSAGE(cand[i].us > 0.0, "candidate " << i << ": " << cand[i].us << " µs");
            CHECK_MESSAGE(std::string(cand[i].config).rfind("algo ", 0) == 0, "candidate " << i << ": " << cand[i].config);
        }
        CHECK_MESSAGE(cand[0].same_bits, "candidate 0 against itself");
        CHECK(cand[0].same_order);
        // The emulator's second algorithm (id -2; real ids are >= 0) sums K in two halves: in FP32 its
        // outputs differ (in BF16 few of these 2,849 would: a sum's last bits rarely cross a rounding);
        // its third (id -3) sums in the first one's order: the same bits, in either output type.
        for (int i = 1; i < n; i++) {
            const std::string config = cand[i].config;
            if (config.rfind("algo -2 ", 0) == 0) CHECK_FALSE(cand[i].same_order);
            if (config.rfind("algo -2 ", 0) == 0 && fp32_out) CHECK_FALSE(cand[i].same_bits);
            if (config.rfind("algo -3 ", 0) == 0) CHECK(cand[i].same_bits);
        }
    }
    CHECK(g.gemm_candidates(false, true, 0, s.OC, s.C, s.C, s.C, s.OC, false, 0.0f, nullptr, 4) == 0);
    // Strided operands (a slice of a wider u, as the LoRA products read it): candidates exist too.
    vector<GemmCandidate> strided(2, GemmCandidate{-1.0, "", false, false});
    CHECK(g.gemm_candidates(false, true, s.N, s.OC, 16, 48, 16, s.OC, false, 0.0f, strided.data(), 2) >= 1);
    // The GEMM itself still runs its first algorithm: the same bits as before the probe.
    expect_deterministic("matmul_forward after gemm_candidates", g, {{"out", &out}}, op);
}

TEST_CASE("cuda matmul_backward: dinp (BF16 += or =), dw and dbias (FP32 +=), null outputs skipped; deterministic") {
    const Ops& g = cuda_backend();
    struct Outputs {
        bool dinp, dw, dbias;
    };
    // All three; frozen weight (dinp only); first layer (no dinp); dbias alone.
    const Outputs subsets[] = {{true, true, true}, {true, false, false}, {false, true, true}, {false, false, true}};
    for (const MatShape& s : kMatShapes)
        for (const Outputs& want : subsets)
        for (bool acc : {true, false}) {
            bool all = want.dinp && want.dw && want.dbias;
            if (&s != &kMatShapes[0] && !all) continue;  // the null-pointer subsets on the first shape only
            if (!acc && !want.dinp) continue;              // accumulate only concerns dinp
            int N = s.N, C = s.C, OC = s.OC;
            // w ~ N(0, 1/OC) keeps dinp ~ N(0, 1); every output starts non-zero: dw and dbias are added
            // to, dinp too with acc (without, its old value must be ignored).
            ActTwin dout(g, rnd((size_t)N * OC, 1)), x(g, rnd((size_t)N * C, 2)), w(g, rnd((size_t)OC * C, 3, inv_sqrt(OC)));
            ActTwin dinp(g, rnd((size_t)N * C, 4));
            BufTwin<float> dw(g, rnd((size_t)OC * C, 5)), dbias(g, rnd(OC, 6));
            auto op = [&](const Ops& o, On on) {
                o.matmul_backward(want.dinp ? dinp[on] : nullptr, want.dw ? dw[on] : nullptr,
                                  want.dbias ? dbias[on] : nullptr, dout[on], x[on], w[on], N, C, OC, acc);
            };
            run_both(g, op);
            std::string what = strf("matmul_backward N=%d C=%d OC=%d outputs%s%s%s%s", N, C, OC, want.dinp ? " dinp" : "",
                                    want.dw ? " dw" : "", want.dbias ? " dbias" : "", acc ? "" : " (dinp overwritten)");
            auto check = [&](bool computed, const char* out, const auto& twin, Tol tol, size_t cols) {
                if (computed)
                    expect_close(what + ": " + out, twin, tol, cols);
                else
                    expect_identical(what + ": " + out + " (null: must stay as it was)", twin);
            };
            check(want.dinp, "dinp", dinp, kBf16Dot, C);
            check(want.dw, "dw", dw, kF32Sum, C);
            check(want.dbias, "dbias", dbias, kF32Sum, 0);
            if (all) expect_deterministic(what, g, {{"dinp", &dinp}, {"dw", &dw}, {"dbias", &dbias}}, op);
        }
}

TEST_CASE("cuda embedding_forward: an exact gather, and scaled (Gemma) one rounding from the CPU's") {
    const Ops& g = cuda_backend();
    for (int C : {100, 577, 640, 24})
        for (float scale : {1.0f, 25.298221f}) {
            int V = 50, N = C == 24 ? 65536 + 37 : 300;  // more rows than a grid's y dimension holds
            BufTwin<int32_t> tok(g, random_ints(N, 1, 0, V));
            ActTwin table(g, rnd((size_t)V * C, 2)), out(g, rnd((size_t)N * C, 3));
            run_both(g, [&](const Ops& o, On on) { o.embedding_forward(out[on], tok[on], table[on], N, C, scale); });
            std::string what = strf("embedding_forward N=%d C=%d V=%d scale=%g: out", N, C, V, scale);
            if (scale == 1.0f) expect_identical(what, out);
            else expect_close(what, out, kBf16Elementwise);
        }
}

// NEFTune's noise: the CUDA kernel draws the CPU's noise (uniform_pm1, element by element) and rounds
// the sum once to BF16. On zeros the output is the noise itself, so each element's draw is compared;
// a view that starts one element in takes the unaligned path.
TEST_CASE("cuda embedding_noise: the CPU's noise, one BF16 rounding from it") {
    const Ops& g = cuda_backend();
    for (size_t n : {(size_t)1, (size_t)7, (size_t)8, (size_t)4099, (size_t)300017})
        for (bool zeros : {true, false})
            for (size_t off : {(size_t)0, (size_t)1}) {
                ActTwin x(g, zeros ? vector<float>(n + off, 0.0f) : rnd(n + off, 4));
                run_both(g, [&](const Ops& o, On on) { o.embedding_noise(o.at(x[on], off), n, 0.0625f, 1234567); });
                expect_close(strf("embedding_noise n=%zu %s offset %zu", n, zeros ? "zeros" : "random", off), x,
                             kBf16Elementwise);
            }
}

// dtable[V, C] += dout rows at ids (scale), CUDA against the CPU and run twice for the same bits;
// dout and dtable from seeds `seed` and seed + 1.
static void check_embedding_backward(const vector<int32_t>& ids, int V, int C, float scale, uint64_t seed,
                                     const std::string& what) {
    const Ops& g = cuda_backend();
    const int N = (int)ids.size();
    BufTwin<int32_t> tok(g, ids);
    ActTwin dout(g, rnd((size_t)N * C, seed));
    BufTwin<float> dtable(g, rnd((size_t)V * C, seed + 1));
    auto op = [&](const Ops& o, On on) { o.embedding_backward(dtable[on], dout[on], tok[on], N, C, scale); };
    run_both(g, op);
    expect_close(what + ": dtable", dtable, kF32Sum, C);
    expect_deterministic(what, g, {{"dtable", &dtable}}, op);
}

TEST_CASE("cuda embedding_backward: FP32 += with repeated token ids; deterministic") {
    for (int C : {100, 577}) {
        int V = 50, N = 300;  // each id about six times
        vector<int32_t> ids = random_ints(N, 1, 0, V);
        ids[0] = 0, ids[1] = V - 1, ids[2] = ids[3] = ids[4] = 7;  // both ends of the table; a run of one id
        const float scale = C == 577 ? 25.298221f : 1.0f;
        check_embedding_backward(ids, V, C, scale, 2, strf("embedding_backward N=%d C=%d V=%d", N, C, V));
    }
}

// The sort by id and the runs cut at its tiles of 256 positions (kernels/cuda/embedding.cu): ids in
// all three 8-bit digits (up to 69,999), one id 600 times (a run across two tile edges, as a padding
// token would be), N not a multiple of the tile, and C past one column slice of 256, not a multiple
// of 8 (the scalar path) and a multiple. The test above has runs straddling an edge (V 50, N 300).
TEST_CASE("cuda embedding_backward: runs across the sort's tiles, ids of three radix digits") {
    const int V = 70000, N = 1100;
    for (int C : {300, 264}) {
        vector<int32_t> ids = random_ints(N, 4, 0, V);
        for (int i = 0; i < 600; i++) ids[(i * 7) % N] = 12345;  // spread over the positions
        ids[1] = 69999, ids[2] = 0, ids[3] = 65536;
        check_embedding_backward(ids, V, C, 1.0f, 5, strf("embedding_backward N=%d C=%d V=%d", N, C, V));
    }
}

// Edges of the sort's tiles of 256: N = 1; a tile exactly full of one id; a run one past an edge;
// tiles that are all one continuing run (a run over 5 tiles, and 60,000 of one id: the scan's chunks
// of more than one count); a run that starts exactly at a tile edge, and one that fills whole tiles
// from edge to edge; two runs interleaved across an edge; all ids distinct; C of 8, 16, 24 and 264
// (vector path), 300 and 513 (scalar, several column slices).
TEST_CASE("cuda embedding_backward: tile edges (N 1, 256, 257, 512, runs from an edge, 60,000 of one id)") {
    struct Case {
        int N, C;
        const char* kind;
    };
    const Case cases[] = {{1, 8, "random"},   {1, 300, "random"},    {256, 8, "same"},      {257, 8, "same"},
                          {512, 264, "same"}, {1200, 8, "same"},     {257, 513, "same"},    {600, 264, "edge"},
                          {600, 300, "edge"}, {1030, 16, "edge3"},   {700, 24, "distinct"}, {256, 264, "random"},
                          {513, 8, "two"},    {2049, 8, "pad"},      {70000, 8, "pad60k"}};
    for (const Case& k : cases) {
        const int N = k.N, C = k.C, V = 4000;
        vector<int32_t> ids = random_ints(N, 9, 0, V);
        const std::string kind = k.kind;
        for (int i = 0; i < N; i++) {
            if (kind == "same") ids[i] = V - 1;
            if (kind == "edge") ids[i] = i < 256 ? 1 : i < 556 ? 2 : 3;    // id 2's run starts at sorted 256
            if (kind == "edge3") ids[i] = i < 256 ? 5 : i < 1024 ? 6 : 7;  // id 6 fills tiles 1 to 3 exactly
            if (kind == "distinct") ids[i] = (i * 37) % V;
            if (kind == "two") ids[i] = i % 2 ? 100 : V - 1;  // two runs of about 256: one crosses the edge
            if (kind == "pad" && i % 3) ids[i] = 0;
            if (kind == "pad60k" && i % 7) ids[i] = 0;
        }
        check_embedding_backward(ids, V, C, 1.5f, 5, strf("embedding_backward %s N=%d C=%d", k.kind, N, C));
    }
}

namespace {
struct NormShape {
    int N, C;
};
// N = 1100 > 512: rmsnorm_backward's blocks each walk several rows (its grid stops at 512). The
// forward's wide-row blocks walk several rows wherever N exceeds its grid (what fits on the GPU at
// once; 132 blocks on the emulator; on an H100 1056 at C 1536, 396 at C 4096 and 4104, 132 at
// C 16384): N = 1100, 600 and 300 there. The C values reach every path: C % 8 != 0 (100, 2050: no
// 16-byte access); the forward's 8 and 16 lanes a row (64, 128; rows of a block past N: 2100, 9000)
// and its warp per row with 1 and 3 chunks per lane in registers (256, 576)
// and its block per row with 1, 2 and 4 chunks per thread (1536; 2050 and 4096; 4104 with 160
// threads, its last chunks partly past the row, and 16384 with 512), past them (16400: a warp loop);
// the backward's threads owning more than one chunk each (4104, 16384, 16400); its short-row kernel
// (C <= 256) at 8, 16 and 32 lanes a row (64; 100 and 128; 256), with blocks walking several row
// groups where N exceeds 512 blocks of them (9000 rows of 128: 16 a group; 4500 of 256: 8).
const NormShape kNormShapes[] = {{37, 100},   {5, 2050},   {64, 576},   {1100, 100}, {9, 256},
                                 {11, 1536},  {1100, 1536}, {600, 4096}, {600, 4104}, {300, 16384},
                                 {2, 16400},  {2100, 64},  {9000, 128}, {4500, 256}};
const float kEps = 1e-5f;
// x ~ N(0, 4) (rstd ≈ 0.5, not 1); w ≈ 1 ± 0.2 as trained norms are.
vector<float> norm_weight(int C) {
    vector<float> w = rnd(C, 12, 0.2f);
    for (float& x : w) x += 1.0f;
    return w;
}
}  // namespace

TEST_CASE("cuda rmsnorm_forward: out (BF16) and rstd (FP32)") {
    const Ops& g = cuda_backend();
    for (NormShape s : kNormShapes) {
        int N = s.N, C = s.C;
        ActTwin x(g, rnd((size_t)N * C, 1, 2.0f)), w(g, norm_weight(C)), out(g, rnd((size_t)N * C, 3));
        BufTwin<float> rstd(g, rnd(N, 4));
        run_both(g, [&](const Ops& o, On on) { o.rmsnorm_forward(out[on], rstd[on], x[on], w[on], N, C, kEps, nullptr); });
        std::string what = strf("rmsnorm_forward N=%d C=%d", N, C);
        expect_close(what + ": out", out, kBf16Elementwise, C);
        expect_close(what + ": rstd", rstd, kF32Rstd);
        // A post-norm (Gemma 3): the residual added in the same pass, into another tensor and in place.
        ActTwin add(g, rnd((size_t)N * C, 6)), sum(g, rnd((size_t)N * C, 7));
        run_both(g, [&](const Ops& o, On on) { o.rmsnorm_forward(sum[on], rstd[on], x[on], w[on], N, C, kEps, add[on]); });
        expect_close(what + " + add: out", sum, kBf16Elementwise, C);
        run_both(g, [&](const Ops& o, On on) { o.rmsnorm_forward(add[on], rstd[on], x[on], w[on], N, C, kEps, add[on]); });
        expect_close(what + " + add in place: out", add, kBf16Elementwise, C);
    }
}

TEST_CASE("cuda rmsnorm_backward: dx (BF16 +=), dw (FP32 +=, or null); deterministic") {
    const Ops& g = cuda_backend();
    for (NormShape s : kNormShapes)
        for (bool with_dw : {true, false}) {
            int N = s.N, C = s.C;
            ActTwin x(g, rnd((size_t)N * C, 1, 2.0f)), w(g, norm_weight(C)), dout(g, rnd((size_t)N * C, 3));
            vector<float> out_h((size_t)N * C), rstd_h(N);  // the forward's rstd, from the CPU
            cpu_ops().rmsnorm_forward(as_act(out_h.data()), rstd_h.data(), x[On::cpu], w[On::cpu], N, C, kEps, nullptr);
            BufTwin<float> rstd(g, rstd_h), dw(g, rnd(C, 4));
            ActTwin dx(g, rnd((size_t)N * C, 5, 0.5f));  // smaller than the gradient added to it
            auto op = [&](const Ops& o, On on) {
                o.rmsnorm_backward(dx[on], with_dw ? dw[on] : nullptr, dout[on], x[on], w[on], rstd[on], N, C);
            };
            run_both(g, op);
            std::string what = strf("rmsnorm_backward N=%d C=%d dw=%s", N, C, with_dw ? "yes" : "null");
            expect_close(what + ": dx", dx, kBf16Dot, C);
            if (with_dw) {
                expect_close(what + ": dw", dw, kF32Sum);
                expect_deterministic(what, g, {{"dx", &dx}, {"dw", &dw}}, op);
            } else {
                expect_identical(what + ": dw (null: must stay as it was)", dw);
            }
        }
}

namespace {
// RoPE in place on x[N, H, hd] at positions up to 4095 (0 included: the identity); forward and
// backward share everything but the op.
void check_rope(const Ops& g, decltype(&Ops::rope_forward) op, const char* op_name) {
    struct Case {
        int N, H, hd;
        float theta, llama3_factor;  // 0: no scaling; else llama3 with Llama-3.1's ramp (1, 4, 8192)
    };
    for (Case c : {Case{37, 5, 16, 10000.0f, 0}, Case{37, 5, 64, 10000.0f, 0}, Case{37, 3, 128, 500000.0f, 0},
                   Case{37, 3, 64, 500000.0f, 32.0f}}) {
        ModelConfig cfg;
        cfg.head_dim = c.hd, cfg.rope_theta = c.theta, cfg.rope_scale_factor = c.llama3_factor;
        cfg.rope_low_freq_factor = 1.0f, cfg.rope_high_freq_factor = 4.0f, cfg.rope_original_max_pos = 8192;
        const vector<float> f = rope_inv_freq(cfg);
        vector<int32_t> pos = random_ints(c.N, 1, 0, 4096);
        pos[0] = 0, pos[1] = 4095;
        BufTwin<int32_t> p(g, pos);
        ActTwin x(g, rnd((size_t)c.N * c.H * c.hd, 2));
        run_both(g, [&](const Ops& o, On on) { (o.*op)(x[on], p[on], c.N, c.H, c.hd, f.data()); });
        expect_close(strf("%s N=%d heads=%d hd=%d theta=%g llama3 factor %g: x", op_name, c.N, c.H, c.hd, c.theta,
                          c.llama3_factor), x, kRope, (size_t)c.H * c.hd);
    }
}
}  // namespace

TEST_CASE("cuda rope_forward") { check_rope(cuda_backend(), &Ops::rope_forward, "rope_forward"); }
TEST_CASE("cuda rope_backward") { check_rope(cuda_backend(), &Ops::rope_backward, "rope_backward"); }

namespace {
// attention_forward on both backends, for one case at a score scale and a window (0: none); `what`
// names the case in the messages. Rows are tokens b·T + t: the index says which token, and so which
// segment, went wrong.
void check_attention_forward(const Ops& g, const AttnCase& c, float scale, int window, const std::string& what) {
    AttnInputs in(g, c);
    ActTwin out(g, rnd(in.NQ, 4));
    BufTwin<float> lse(g, rnd(in.NL, 5));
    run_both(g, [&](const Ops& o, On on) {
        o.attention_forward(out[on], lse[on], in.q[on], in.k[on], in.v[on], in.seg[on], c.B, c.T, c.nh, c.nkv, c.hd,
                            scale, window);
    });
    expect_close("attention_forward " + what + ": out", out, kAttnOut, (size_t)c.nh * c.hd);
    expect_close("attention_forward " + what + ": lse", lse, kF32Lse, c.nh);
}

// attention_backward likewise, from the forward's out and lse computed on the CPU and kept as each
// backend keeps them (out in BF16), and run twice for determinism.
void check_attention_backward(const Ops& g, const AttnCase& c, float scale, int window, const std::string& what_case) {
    AttnInputs in(g, c);
    vector<float> out_h(in.NQ), lse_h(in.NL);
    cpu_ops().attention_forward(as_act(out_h.data()), lse_h.data(), in.q[On::cpu], in.k[On::cpu], in.v[On::cpu],
                                in.seg[On::cpu], c.B, c.T, c.nh, c.nkv, c.hd, scale, window);
    ActTwin out(g, out_h), dout(g, rnd(in.NQ, 6));
    BufTwin<float> lse(g, lse_h);
    ActTwin dq(g, rnd(in.NQ, 7)), dk(g, rnd(in.NK, 8)), dv(g, rnd(in.NK, 9));  // garbage: overwritten
    auto op = [&](const Ops& o, On on) {
        o.attention_backward(dq[on], dk[on], dv[on], dout[on], out[on], lse[on], in.q[on], in.k[on], in.v[on],
                             in.seg[on], c.B, c.T, c.nh, c.nkv, c.hd, scale, window);
    };
    run_both(g, op);
    std::string what = "attention_backward " + what_case;
    // A window of one key: P = 1, so dS = P (dP − D) = dO·v − dO·o = 0 exactly (o = v), and dq, dk
    // are rounding noise on both sides; dv (the group's dO rows summed) is still checked.
    if (window != 1) {
        expect_close(what + ": dq", dq, kAttnGrad, (size_t)c.nh * c.hd);
        expect_close(what + ": dk", dk, kAttnGrad, (size_t)c.nkv * c.hd);
    }
    expect_close(what + ": dv", dv, kAttnGrad, (size_t)c.nkv * c.hd);
    expect_deterministic(what, g, {{"dq", &dq}, {"dk", &dk}, {"dv", &dv}}, op);
}
}  // namespace

TEST_CASE("cuda attention_forward: causal, packed segments, padding, GQA; head dims 16, 64, 128, 256") {
    for (const AttnCase& c : kAttnCases) check_attention_forward(cuda_backend(), c, inv_sqrt(c.hd), 0, name(c));
}

TEST_CASE("cuda attention_backward: causal, packed segments, padding, GQA; head dims 16, 64, 128, 256; deterministic") {
    for (const AttnCase& c : kAttnCases) check_attention_backward(cuda_backend(), c, inv_sqrt(c.hd), 0, name(c));
}

TEST_CASE("cuda attention_decode: one query per sequence against its cache prefix, GQA") {
    const Ops& g = cuda_backend();
    struct Case {
        int S, max_T, nh, nkv, hd;
    };
    for (Case c : {Case{4, 300, 6, 2, 64}, Case{4, 300, 6, 2, 128}, Case{3, 67, 6, 2, 16}}) {
        // Lengths: one position, the whole cache, and two in between. The cache past each length
        // holds random values that must be ignored.
        const int pattern[4] = {1, c.max_T, c.max_T / 2 + 3, 37};
        vector<int32_t> len(c.S);
        for (int s = 0; s < c.S; s++) len[s] = std::min(c.max_T, pattern[s % 4]);
        BufTwin<int32_t> lens(g, len);
        size_t NQ = (size_t)c.S * c.nh * c.hd, NC = (size_t)c.S * c.max_T * c.nkv * c.hd;
        ActTwin q(g, rnd(NQ, 1)), kc(g, rnd(NC, 2)), vc(g, rnd(NC, 3)), out(g, rnd(NQ, 4));
        run_both(g, [&](const Ops& o, On on) {
            o.attention_decode(out[on], q[on], kc[on], vc[on], lens[on], c.S, c.max_T, c.nh, c.nkv, c.hd, inv_sqrt(c.hd),
                               0);
        });
        expect_close(strf("attention_decode S=%d max_T=%d nh=%d nkv=%d hd=%d: out", c.S, c.max_T, c.nh, c.nkv, c.hd),
                     out, kAttnOut, (size_t)c.nh * c.hd);
    }
}

namespace {
// Sliding windows and scales other than 1/sqrt(hd) (Gemma 3: query_pre_attn_scalar^-0.5, such as
// Gemma-3-27B's 168^-0.5 at hd 128): the mma kernels at hd 64, 128 and 256 (Gemma 3's head dim), the
// FP32 fallback at hd 96. Windows of 1, 2 and 7 keys (inside one key tile), 45 and 150 (across key tiles
// and query blocks: the forward and dQ start at the key block of their first query's window, dK/dV
// stop at the last query block that the window of their last key reaches, and tiles are masked
// where a window edge crosses them) and 400 > T (masks nothing); segments as above (packed, padded).
struct WindowCase {
    AttnCase c;
    int window;
    float scale;
};
const float kScale64 = 0.1f, kScale128 = 1.0f / std::sqrt(168.0f), kScale256 = 0.05f;  // 1/8, 1/11.3, 1/16 by default
const float kScale96 = 0.09f;                                                            // 1/9.8
const WindowCase kWindowCases[] = {
    {{3, 300, 6, 2, 64}, 1, kScale64},      {{3, 300, 6, 2, 64}, 2, kScale64},     {{3, 300, 6, 2, 64}, 150, kScale64},
    {{3, 300, 6, 2, 128}, 7, kScale128},    {{3, 300, 6, 2, 128}, 45, kScale128},  {{2, 300, 4, 1, 128}, 150, kScale128},
    {{2, 129, 2, 2, 128}, 400, kScale128},  {{3, 150, 4, 2, 256}, 7, kScale256},   {{3, 150, 4, 2, 256}, 45, kScale256},
    {{2, 67, 4, 2, 256}, 400, kScale256},   {{2, 150, 4, 2, 96}, 45, kScale96}};
std::string name(const WindowCase& w) { return name(w.c) + strf(" window=%d scale=%.4g", w.window, w.scale); }
}  // namespace

TEST_CASE("cuda attention_forward with a sliding window and an explicit scale; head dims 64, 96, 128, 256") {
    for (const WindowCase& w : kWindowCases) check_attention_forward(cuda_backend(), w.c, w.scale, w.window, name(w));
}

TEST_CASE("cuda attention_backward with a sliding window and an explicit scale; head dims 64, 96, 128, 256; deterministic") {
    for (const WindowCase& w : kWindowCases) check_attention_backward(cuda_backend(), w.c, w.scale, w.window, name(w));
}

// Decoding with a window: positions len − window .. len − 1 only. The cached keys and values before
// the window are NaN on both sides, so reading one (rather than masking it) shows as a NaN output.
TEST_CASE("cuda attention_decode with a sliding window and an explicit scale") {
    const Ops& g = cuda_backend();
    struct Case {
        int S, max_T, nh, nkv, hd, window;
        float scale;
    };
    for (Case c : {Case{4, 300, 6, 2, 64, 1, kScale64}, Case{4, 300, 6, 2, 128, 7, kScale128},
                   Case{4, 300, 6, 2, 128, 100, kScale128}, Case{4, 150, 4, 2, 256, 45, kScale256}}) {
        const int pattern[4] = {1, c.max_T, c.max_T / 2 + 3, 37};
        vector<int32_t> len(c.S);
        for (int s = 0; s < c.S; s++) len[s] = std::min(c.max_T, pattern[s % 4]);
        BufTwin<int32_t> lens(g, len);
        const size_t NQ = (size_t)c.S * c.nh * c.hd, NC = (size_t)c.S * c.max_T * c.nkv * c.hd, pos = (size_t)c.nkv * c.hd;
        vector<float> kc_h = rnd(NC, 2), vc_h = rnd(NC, 3);
        for (int s = 0; s < c.S; s++)
            for (size_t i = (size_t)s * c.max_T * pos; i < ((size_t)s * c.max_T + std::max(0, len[s] - c.window)) * pos; i++)
                kc_h[i] = vc_h[i] = NAN;
        ActTwin q(g, rnd(NQ, 1)), kc(g, kc_h), vc(g, vc_h), out(g, rnd(NQ, 4));
        run_both(g, [&](const Ops& o, On on) {
            o.attention_decode(out[on], q[on], kc[on], vc[on], lens[on], c.S, c.max_T, c.nh, c.nkv, c.hd, c.scale,
                               c.window);
        });
        expect_close(strf("attention_decode S=%d max_T=%d nh=%d nkv=%d hd=%d window=%d scale=%.4g: out", c.S, c.max_T,
                          c.nh, c.nkv, c.hd, c.window, c.scale),
                     out, kAttnOut, (size_t)c.nh * c.hd);
    }
}

namespace {
// Gate values: N(0, 9), led by values where silu and gelu saturate, cross zero and silu's
// derivative's root.
const size_t kGluN = 100003;
vector<float> glu_gate() {
    vector<float> gate = rnd(kGluN, 1, 3.0f);
    const float extremes[] = {-100.0f, -30.0f, -10.0f, -1.278f, 0.0f, 10.0f, 30.0f, 100.0f};
    std::copy(std::begin(extremes), std::end(extremes), gate.begin());
    return gate;
}
}  // namespace

TEST_CASE("cuda glu_forward: SiLU and GELU-tanh") {
    const Ops& g = cuda_backend();
    for (int act : {GLU_SILU, GLU_GELU_TANH}) {
        ActTwin gate(g, glu_gate()), up(g, rnd(kGluN, 2)), h(g, rnd(kGluN, 3));
        run_both(g, [&](const Ops& o, On on) { o.glu_forward(h[on], gate[on], up[on], kGluN, act); });
        expect_close(strf("glu_forward N=%zu act=%d: h", kGluN, act), h, kBf16Elementwise);
    }
}

TEST_CASE("cuda glu_backward: SiLU and GELU-tanh") {
    const Ops& g = cuda_backend();
    for (int act : {GLU_SILU, GLU_GELU_TANH}) {
        ActTwin gate(g, glu_gate()), up(g, rnd(kGluN, 2)), dh(g, rnd(kGluN, 3));
        ActTwin dgate(g, rnd(kGluN, 4)), dup(g, rnd(kGluN, 5));  // garbage: overwritten
        run_both(g, [&](const Ops& o, On on) { o.glu_backward(dgate[on], dup[on], dh[on], gate[on], up[on], kGluN, act); });
        expect_close(strf("glu_backward N=%zu act=%d: dgate", kGluN, act), dgate, kBf16Elementwise);
        expect_close(strf("glu_backward N=%zu act=%d: dup", kGluN, act), dup, kBf16Elementwise);
    }
}

namespace {
// G projections reading the same x (a linear group: q, k, v or gate, up), of widths OC, OC + 3, OC + 6.
// The kernels' edges (kernels/cuda/lora.cu): odd C and r (element-wise tile loads) and C, r multiples
// of 8 (cp.async; r = 12: du's 16-byte chunks carry padding columns into dA's product); N = 1100 sums
// dA over 3 row stripes; N = 130, C = 576 sums u over 2 parts of C; G·RP = 96 and 160 (r = 24, 72)
// take two blocks of 64 stacked columns, and r = 72 five 16-deep steps of dx's product.
struct LoraCase {
    int N, C, OC, r;
    float p;
    int G;
    int width(int t) const { return OC + 3 * t; }
};
const LoraCase kLoraCases[] = {{37, 100, 77, 8, 0.0f, 1},   {37, 100, 77, 13, 0.1f, 1}, {130, 576, 1537, 16, 0.1f, 1},
                               {37, 100, 77, 8, 0.0f, 3},   {130, 576, 300, 16, 0.0f, 2}, {37, 100, 77, 13, 0.1f, 3},
                               {1100, 200, 96, 24, 0.1f, 3}, {70, 136, 50, 72, 0.1f, 2},  {1100, 200, 96, 24, 0.0f, 3},
                               {70, 136, 50, 12, 0.1f, 3}};
const float kLoraScale = 2.0f;  // alpha / r
const uint64_t kLoraKey = 0x5eedf00d;
const char* const kSlot[] = {"0", "1", "2"};

std::string name(const LoraCase& c) { return strf("N=%d C=%d OC=%d r=%d p=%g G=%d", c.N, c.C, c.OC, c.r, c.p, c.G); }

// x ~ N(0, 1), A ~ N(0, 1/C), B ~ N(0, 1/r): u = drop(x)·Aᵀ and the adapter's output are O(1).
struct LoraInputs {
    LoraInputs(const Ops& g, const LoraCase& c) : c(c), x(g, rnd((size_t)c.N * c.C, 1)) {
        for (int t = 0; t < c.G; t++) {
            A.emplace_back(g, rnd((size_t)c.r * c.C, 2 + 10 * t, inv_sqrt(c.C)));
            B.emplace_back(g, rnd((size_t)c.width(t) * c.r, 3 + 10 * t, inv_sqrt(c.r)));
        }
    }
    // The group as the ops take it, on one side (outputs and gradients left for the caller to set).
    std::vector<LoraProj<act>> proj(On on) {
        std::vector<LoraProj<act>> p(c.G);
        for (int t = 0; t < c.G; t++)
            p[t] = {A[t][on], B[t][on], c.width(t), kLoraKey + t, nullptr, nullptr, nullptr, nullptr, nullptr};
        return p;
    }
    LoraCase c;
    ActTwin x;
    std::deque<ActTwin> A, B;
};
}  // namespace

TEST_CASE("cuda lora_forward: y = add + scale·drop(x)·Aᵀ·Bᵀ and u, groups of 1-3, dropout p = 0 and 0.1; overwrite, accumulate, add another") {
    const Ops& g = cuda_backend();
    for (const LoraCase& c : kLoraCases)
        for (AddMode mode : kAddModes) {
            LoraInputs in(g, c);
            // y starts non-zero (added to or ignored, by mode); u overwritten.
            std::deque<ActTwin> y, res;
            for (int t = 0; t < c.G; t++) {
                y.emplace_back(g, rnd((size_t)c.N * c.width(t), 4 + 10 * t));
                res.emplace_back(g, rnd((size_t)c.N * c.width(t), 6 + 10 * t));
            }
            ActTwin u(g, rnd((size_t)c.N * c.G * c.r, 5));
            run_both(g, [&](const Ops& o, On on) {
                std::vector<LoraProj<act>> proj = in.proj(on);
                for (int t = 0; t < c.G; t++) proj[t].y = y[t][on], proj[t].add = add_for(mode, y[t], res[t], on);
                o.lora_forward(proj.data(), c.G, u[on], in.x[on], c.N, c.C, c.r, kLoraScale, c.p);
            });
            std::string what = "lora_forward " + name(c) + " " + name(mode);
            for (int t = 0; t < c.G; t++) expect_close(what + ": y" + kSlot[t], y[t], kLora, c.width(t));
            expect_close(what + ": u", u, kBf16Dot, c.G * c.r);
        }
}

TEST_CASE("cuda lora_backward: dx (BF16 += or =), dA and dB (FP32 +=), groups of 1-3, dropout p = 0 and 0.1; deterministic") {
    const Ops& g = cuda_backend();
    for (const LoraCase& c : kLoraCases)
    for (bool acc : {true, false}) {
        LoraInputs in(g, c);
        // The forward's u, from the CPU.
        vector<float> u_h((size_t)c.N * c.G * c.r);
        std::deque<vector<float>> y_h;
        std::vector<LoraProj<act>> fwd = in.proj(On::cpu);
        for (int t = 0; t < c.G; t++) fwd[t].y = as_act(y_h.emplace_back((size_t)c.N * c.width(t)).data());
        cpu_ops().lora_forward(fwd.data(), c.G, as_act(u_h.data()), in.x[On::cpu], c.N, c.C, c.r, kLoraScale, c.p);
        ActTwin u(g, u_h), dx(g, rnd((size_t)c.N * c.C, 7));
        std::deque<ActTwin> dy;
        std::deque<BufTwin<float>> dA, dB;
        for (int t = 0; t < c.G; t++) {
            dy.emplace_back(g, rnd((size_t)c.N * c.width(t), 6 + 10 * t));
            dA.emplace_back(g, rnd((size_t)c.r * c.C, 8 + 10 * t));
            dB.emplace_back(g, rnd((size_t)c.width(t) * c.r, 9 + 10 * t));
        }
        auto op = [&](const Ops& o, On on) {
            std::vector<LoraProj<act>> proj = in.proj(on);
            for (int t = 0; t < c.G; t++) proj[t].dy = dy[t][on], proj[t].dA = dA[t][on], proj[t].dB = dB[t][on];
            o.lora_backward(proj.data(), c.G, dx[on], in.x[on], u[on], c.N, c.C, c.r, kLoraScale, c.p, acc);
        };
        run_both(g, op);
        std::string what = "lora_backward " + name(c) + (acc ? "" : " (dx overwritten)");
        expect_close(what + ": dx", dx, kLora, c.C);
        std::vector<std::pair<const char*, Twin*>> outs = {{"dx", &dx}};
        for (int t = 0; t < c.G; t++) {
            expect_close(what + ": dA" + kSlot[t], dA[t], kF32ViaBf16, c.C);
            expect_close(what + ": dB" + kSlot[t], dB[t], kF32Sum, c.r);
            outs.push_back({"dA", &dA[t]});
            outs.push_back({"dB", &dB[t]});
        }
        expect_deterministic(what, g, outs, op);
    }
}

// With A the identity (r = C), u = drop(x) and, from dx = 0, dx = drop(du): the dropout masks show
// as the zeros of u and dx and must be the CPU's exactly (both hash (key, element index)).
TEST_CASE("cuda lora dropout masks are the CPU's, forward and backward") {
    const Ops& g = cuda_backend();
    int N = 37, C = 13, OC = 5, r = 13;
    float p = 0.1f;
    vector<float> eye((size_t)r * C, 0.0f);
    for (int i = 0; i < r; i++) eye[(size_t)i * C + i] = 1.0f;
    ActTwin x(g, rnd((size_t)N * C, 1)), A(g, eye), B(g, rnd((size_t)OC * r, 2)), y(g, rnd((size_t)N * OC, 3));
    ActTwin u(g, vector<float>((size_t)N * r)), dy(g, rnd((size_t)N * OC, 4)), dx(g, vector<float>((size_t)N * C));
    BufTwin<float> dA(g, vector<float>((size_t)r * C)), dB(g, vector<float>((size_t)OC * r));
    run_both(g, [&](const Ops& o, On on) {
        LoraProj<act> proj{A[on], B[on], OC, kLoraKey, y[on], y[on], dy[on], dA[on], dB[on]};
        o.lora_forward(&proj, 1, u[on], x[on], N, C, r, kLoraScale, p);
        o.lora_backward(&proj, 1, dx[on], x[on], u[on], N, C, r, kLoraScale, p, true);
    });
    vector<int32_t> mask = zeros_of(u.h);
    size_t dropped = std::count(mask.begin(), mask.end(), 1);
    CHECK_MESSAGE(dropped > 0, "the CPU dropped nothing: the test shows no mask");
    CHECK_MESSAGE(dropped < mask.size() / 4, "the CPU dropped " << dropped << " of " << mask.size() << " at p = 0.1");
    CHECK_MESSAGE(zeros_of(dx.h) == mask, "the CPU's backward mask differs from its forward mask");
    expect_identical("lora dropout mask (zeros of u = drop(x))", zeros_of(u.cuda()), mask);
    expect_identical("lora dropout mask (zeros of dx = drop(du))", zeros_of(dx.cuda()), mask);
    expect_close("lora identity-A forward: u = drop(x)", u, kBf16Elementwise, C, 0.5);
}

TEST_CASE("cuda crossentropy_forward_backward: nll, gradient in place, zero-weight rows, grad_scale 0 and not") {
    const Ops& g = cuda_backend();
    struct Case {
        int n, V;
    };
    // 49152: the 128-bit path (V % 8 == 0); 128256 and 65537: the 1024-thread blocks for long rows.
    for (Case c : {Case{5, 77}, Case{13, 49157}, Case{7, 49152}, Case{5, 128256}, Case{4, 65537}})
        for (float grad_scale : {0.0f, 0.37f}) {
            int n = c.n, V = c.V;
            vector<float> z = rnd((size_t)n * V, 1, 2.0f);
            for (int j = 0; j < V; j++) z[(size_t)1 * V + j] += 120.0f;  // exp() overflows without the max
            z[(size_t)2 * V + V - 1] = 12.0f;                             // rows dominated by the last and
            z[(size_t)3 * V + 0] = 12.0f;                                 // the first column
            vector<int32_t> targets = random_ints(n, 2, 0, V);
            targets[0] = 0, targets[2] = V - 1;
            vector<float> w(n);
            for (int i = 0; i < n; i++) w[i] = i % 4 == 1 ? 0.0f : 0.25f * (1 + i % 3);  // rows 1, 5, 9: weight 0
            ActTwin logits(g, z);
            BufTwin<int32_t> tgt(g, targets);
            BufTwin<float> weights(g, w), nll(g, rnd(n, 3));
            run_both(g, [&](const Ops& o, On on) {
                o.crossentropy_forward_backward(logits[on], nll[on], tgt[on], weights[on], n, V, grad_scale);
            });
            std::string what = strf("crossentropy n=%d V=%d grad_scale=%g", n, V, grad_scale);
            expect_close(what + ": nll", nll, kF32Lse);
            if (grad_scale == 0.0f)
                expect_identical(what + ": logits (grad_scale 0: must stay as they were)", logits);
            else
                expect_close(what + ": dlogits", logits, kCeGrad, V);  // zero-weight rows: exactly 0
        }
}

TEST_CASE("cuda argmax_rows: the CPU's picks, with ties, NaN, −inf rows and a restricted width") {
    const Ops& g = cuda_backend();
    struct Case {
        int rows, n, ld;
    };
    // 128256 and 49152: the 16-byte path; 77 and 1001: odd widths, element by element; n < ld: the
    // columns past n (Qwen's padded vocabulary) are never picked.
    for (Case c : {Case{16, 128256, 128256}, Case{5, 77, 77}, Case{6, 1001, 1001}, Case{7, 49000, 49152}}) {
        CAPTURE(c.n);
        CAPTURE(c.ld);
        vector<float> z = rnd((size_t)c.rows * c.ld, 1, 2.0f);
        auto at = [&](int r, int j) -> float& { return z[(size_t)r * c.ld + j]; };
        at(0, c.n - 1) = 50.0f, at(0, 3) = 50.0f, at(0, c.n / 2) = 50.0f;  // equal maxima: the first wins
        for (int j = 0; j < c.ld; j++) at(1, j) = -INFINITY;               // nothing above −inf: 0
        at(2, 0) = NAN, at(2, c.n - 2) = 40.0f;                            // NaN is never picked
        at(3, c.n - 1) = 30.0f;                                            // the last column
        if (c.n < c.ld) at(4, c.n) = 99.0f;                                // past n: not a candidate
        if (c.rows > 5) {  // −0 and +0 are equal maxima: the first wins, whatever their signs
            for (int j = 0; j < c.ld; j++) at(5, j) = -1.0f;
            at(5, 0) = -0.0f, at(5, c.n - 1) = 0.0f;
        }
        ActTwin x(g, z);
        BufTwin<int32_t> idx(g, vector<int32_t>(c.rows, -7));
        run_both(g, [&](const Ops& o, On on) { o.argmax_rows(idx[on], x[on], c.rows, c.n, c.ld); });
        expect_identical(strf("argmax_rows rows=%d n=%d ld=%d", c.rows, c.n, c.ld), idx);
        CHECK(idx.h[0] == 3);
        CHECK(idx.h[1] == 0);
        CHECK(idx.h[2] == c.n - 2);
        CHECK(idx.h[3] == c.n - 1);
        CHECK(idx.h[4] < c.n);
        if (c.rows > 5) CHECK(idx.h[5] == 0);
    }
}

}  // TEST_SUITE("cuda")
