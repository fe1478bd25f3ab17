// The CUDA backend's memory half (alloc and MemStats, copies, casts, row moves), its quantization
// (NF4, blockwise 8-bit) and its optimizer (AdamW, sum of squares), against the CPU backend. These
// are exact operations or FP32 arithmetic, so the tolerances are bit-identity or an ulp or two
// (tests/test_cuda_util.h). Suite "cuda": tests/main.cpp skips it when cuda_ops() finds no GPU.
// The compute ops are in tests/test_cuda_ops.cpp.
#include <algorithm>
#include <cfloat>
#include <cmath>
#include <cstring>
#include <numeric>

#include "kernels/nf4_tables.h"
#include "model/buffer.h"
#include "model/nf4.h"
#include "tests/test_cuda_util.h"

using std::vector;

namespace {

vector<float> rnd(size_t n, uint64_t seed, float scale = 1.0f) { return random_vec(n, seed, scale); }

vector<uint8_t> random_bytes(size_t n, uint64_t seed) {
    vector<int32_t> v = random_ints(n, seed, 0, 256);
    return vector<uint8_t>(v.begin(), v.end());
}

size_t bytes_in(const MemStats& s, Mem c) { return s.bytes[(int)c]; }

// Allocation accounting of one backend: two blocks in two categories, released one by one.
void check_accounting(const Ops& o) {
    INFO("backend " << o.name);
    const size_t a = size_t(3) << 20, b = (size_t(5) << 20) + 7;
    const MemStats s0 = o.mem_stats();
    void* pa = o.alloc(a, Mem::adapters);
    const MemStats s1 = o.mem_stats();
    void* pb = o.alloc(b, Mem::optimizer);
    const MemStats s2 = o.mem_stats();
    o.release(pa);
    const MemStats s3 = o.mem_stats();

    CHECK(bytes_in(s1, Mem::adapters) == bytes_in(s0, Mem::adapters) + a);
    CHECK(bytes_in(s2, Mem::optimizer) == bytes_in(s0, Mem::optimizer) + b);
    size_t sum = 0;
    for (int c = 0; c < (int)Mem::count; c++) {
        INFO("category " << mem_name((Mem)c));
        if ((Mem)c != Mem::adapters && (Mem)c != Mem::optimizer) CHECK(s2.bytes[c] == s0.bytes[c]);
        sum += s2.bytes[c];
    }
    CHECK(s2.total() == sum);
    CHECK(s2.total() == s0.total() + a + b);
    CHECK(s2.peak_total >= s0.total() + a + b);
    CHECK(s2.peak[(int)Mem::optimizer] >= bytes_in(s0, Mem::optimizer) + b);
    // After a release: bytes back down, peaks kept.
    CHECK(bytes_in(s3, Mem::adapters) == bytes_in(s0, Mem::adapters));
    CHECK(s3.peak[(int)Mem::adapters] >= bytes_in(s0, Mem::adapters) + a);
    CHECK(s3.peak_total >= s0.total() + a + b);

    // Zero-filled, even where the memory was just used: fill, release, allocate the same size again.
    vector<uint8_t> fill(b, 0xAB), back(b, 0xCD);
    o.to_device(pb, fill.data(), b);
    o.release(pb);
    void* pc = o.alloc(b, Mem::optimizer);
    o.to_host(back.data(), pc, b);
    CHECK_MESSAGE(std::count(back.begin(), back.end(), 0) == (long)b, "alloc did not zero-fill");
    o.release(pc);
    const MemStats s4 = o.mem_stats();
    for (int c = 0; c < (int)Mem::count; c++) {
        INFO("category " << mem_name((Mem)c) << " after releasing everything");
        CHECK(s4.bytes[c] == s0.bytes[c]);
    }
}

// Values that test the rounding: ties go to even, a tie broken by a low bit goes up, overflow to
// infinity, subnormals, signed zeros, infinities.
vector<float> rounding_values() {
    const float u = std::ldexp(1.0f, -8);  // half a BF16 ulp at 1
    vector<float> v = {0.0f, -0.0f, 1.0f, 1.0f + u, 1.0f + 3 * u, 1.0f + u + std::ldexp(1.0f, -20), -(1.0f + u),
                       -(1.0f + 3 * u), FLT_MAX, -FLT_MAX, 3.3e38f, 1e-40f, -1e-40f, FLT_MIN, INFINITY, -INFINITY,
                       65504.0f, 1e-20f};
    vector<float> r = rnd(1000, 1, 100.0f);
    v.insert(v.end(), r.begin(), r.end());
    return v;
}

// The NF4 codebook and the 8-bit dynamic map, the tables both backends use.
vector<float> nf4_codebook() { return vector<float>(kNF4, kNF4 + 16); }
vector<float> dynamic_map() {
    const std::array<float, 256> map = dynamic_map_values();
    return vector<float>(map.begin(), map.end());
}

// Writes, from x[at], the codes themselves, the midpoints between neighbours (exact ties, which go
// to the lower code), and the midpoints nudged one ulp up and down; `scale` multiplies them all (a
// power of two keeps the ties exact after the absmax scaling). Returns the index after the last.
size_t put_ties(vector<float>& x, size_t at, const vector<float>& codes, float scale) {
    for (float c : codes) x[at++] = c * scale;
    for (size_t i = 0; i + 1 < codes.size(); i++) {
        float mid = 0.5f * (codes[i] + codes[i + 1]);
        x[at++] = mid * scale;
        x[at++] = std::nextafter(mid, INFINITY) * scale;
        x[at++] = std::nextafter(mid, -INFINITY) * scale;
    }
    return at;
}

}  // namespace

TEST_SUITE("cuda") {

TEST_CASE("cuda alloc, release and MemStats: bytes per category go up and down, peaks are kept, zero-filled") {
    const Ops& g = cuda_backend();
    check_accounting(cpu_ops());
    check_accounting(g);
}

// cudaMalloc failing must end the run with a message a user can act on (the category that did not
// fit, what the run holds, the flags that shrink it), count nothing, and leave the backend usable
// (an allocation failure is not a sticky CUDA error). 1 PiB fits no GPU, nor the emulator's 80 GiB.
TEST_CASE("cuda out of memory: the message names the category, the bytes in use and the flags; nothing leaks") {
    const Ops& g = cuda_backend();
    const size_t before = g.mem_stats().total();
    std::string msg;
    try {
        g.alloc(size_t(1) << 50, Mem::activations);
    } catch (const std::exception& e) {
        msg = e.what();
    }
    INFO("message: " << msg);
    CHECK(msg.find("out of GPU memory allocating 1048576.00 GiB") != std::string::npos);
    CHECK(msg.find("for activations") != std::string::npos);
    CHECK(msg.find("In use by this run: weights") != std::string::npos);
    CHECK(msg.find("--batch-size") != std::string::npos);
    CHECK(msg.find("--recompute") != std::string::npos);
    CHECK(msg.find("--offload-optimizer") != std::string::npos);  // the GPU's own knob
    CHECK(msg.find("this GPU's memory") != std::string::npos);
    CHECK(g.mem_stats().total() == before);
    void* p = g.alloc(4096, Mem::scratch);  // the backend goes on
    CHECK(p != nullptr);
    g.release(p);
    CHECK(g.mem_stats().total() == before);
}

TEST_CASE("cuda memset0 and copy touch exactly their byte ranges") {
    const Ops& g = cuda_backend();
    BufTwin<uint8_t> src(g, random_bytes(1001, 1)), dst(g, random_bytes(1001, 2));
    run_both(g, [&](const Ops& o, On on) {
        o.copy(dst[on] + 3, src[on] + 5, 990);
        o.memset0(dst[on] + 100, 77);
    });
    expect_identical("copy 990 bytes to offset 3, then memset0 77 bytes at offset 100", dst);
}

TEST_CASE("cuda upload, download and cast round to nearest even, exactly as bf16_round") {
    const Ops& g = cuda_backend();
    vector<float> v = rounding_values();
    ActTwin up(g, v);  // uploads, then downloads into up.h
    expect_identical("upload then download", up.h, bf16_round(v));
    BufTwin<float> src(g, v);
    ActTwin cast(g, vector<float>(v.size()));
    g.cast(cast[On::cuda], src[On::cuda], v.size());
    expect_identical("cast (device FP32 to BF16) then download", cast.cuda(), bf16_round(v));
    ActTwin nan(g, {NAN, -NAN});
    CHECK(std::isnan(nan.h[0]));
    CHECK(std::isnan(nan.h[1]));
}

TEST_CASE("cuda gather_rows and scatter_rows move BF16 rows exactly") {
    const Ops& g = cuda_backend();
    int R = 50, n = 37, C = 100;
    ActTwin table(g, rnd((size_t)R * C, 1)), rows_out(g, rnd((size_t)n * C, 2));
    BufTwin<int32_t> picks(g, random_ints(n, 3, 0, R));  // with repeats
    run_both(g, [&](const Ops& o, On on) { o.gather_rows(rows_out[on], table[on], picks[on], n, C); });
    expect_identical(strf("gather_rows n=%d C=%d", n, C), rows_out);

    vector<int32_t> perm(R);  // scatter: distinct destinations, some rows left untouched
    std::iota(perm.begin(), perm.end(), 0);
    Rng r(4);
    for (int i = R - 1; i > 0; i--) std::swap(perm[i], perm[r.next_u64() % (i + 1)]);
    perm.resize(n);
    BufTwin<int32_t> dests(g, perm);
    ActTwin rows_in(g, rnd((size_t)n * C, 5)), dst(g, rnd((size_t)R * C, 6));
    run_both(g, [&](const Ops& o, On on) { o.scatter_rows(dst[on], rows_in[on], dests[on], n, C); });
    expect_identical(strf("scatter_rows n=%d C=%d into %d rows", n, C, R), dst);
}

// The LM head's columns of the trainable tokens: k of 1 (one block thread past it idle), 40 and 300
// (more columns than a block's threads) of a vocabulary of 1537, in any order, over 37 rows.
TEST_CASE("cuda gather_columns moves BF16 columns exactly") {
    const Ops& g = cuda_backend();
    const int n = 37, V = 1537;
    ActTwin logits(g, rnd((size_t)n * V, 7));
    for (int k : {1, 40, 300}) {
        BufTwin<int32_t> cols(g, random_ints(k, 8 + k, 0, V));
        ActTwin out(g, rnd((size_t)n * k, 9));
        run_both(g, [&](const Ops& o, On on) { o.gather_columns(out[on], logits[on], cols[on], n, V, k); });
        expect_identical(strf("gather_columns n=%d V=%d k=%d", n, V, k), out);
    }
}

TEST_CASE("cuda nf4_quantize: codes and absmax bit-identical to the CPU") {
    const Ops& g = cuda_backend();
    const size_t n = 64 * 40 + 37;  // a short, odd last block
    vector<float> w = rnd(n, 1, 0.02f);
    std::fill(w.begin() + 3 * 64, w.begin() + 4 * 64, 0.0f);  // an all-zero block
    vector<float> book = nf4_codebook();                       // block 5 at absmax 1, block 7 at 1/4
    REQUIRE(put_ties(w, 5 * 64, book, 1.0f) <= 6 * 64);        // 16 codes + 15 × 3 midpoints: one block
    put_ties(w, 7 * 64, book, 0.25f);
    BufTwin<float> wt(g, w), absmax(g, vector<float>((n + 63) / 64, -1.0f));
    BufTwin<uint8_t> codes(g, vector<uint8_t>((n + 1) / 2, 0xAA));
    run_both(g, [&](const Ops& o, On on) { o.nf4_quantize(codes[on], absmax[on], wt[on], n); });
    expect_identical(strf("nf4_quantize n=%zu: codes", n), codes);
    expect_identical(strf("nf4_quantize n=%zu: absmax", n), absmax);
}

TEST_CASE("cuda nf4_dequantize (double-quantized absmax): the CPU's values rounded to BF16, exactly") {
    const Ops& g = cuda_backend();
    // A short, odd last block, and 601 absmax codes: three scales of 256, the last one short.
    const size_t n = 64 * 600 + 37;
    vector<float> w = rnd(n, 1, 0.02f);
    std::fill(w.begin() + 3 * 64, w.begin() + 4 * 64, 0.0f);  // an all-zero block
    const NF4Weight q = nf4_weight_quantize(cpu_ops(), w.data(), n);
    REQUIRE(q.qscale.size() == 3);
    REQUIRE(q.offset != 0.0f);
    BufTwin<uint8_t> codes(g, q.codes), qabsmax(g, q.qabsmax);
    BufTwin<float> qscale(g, q.qscale);
    ActTwin out(g, rnd(n, 2));  // garbage: overwritten
    run_both(g, [&](const Ops& o, On on) { o.nf4_dequantize(out[on], codes[on], qabsmax[on], qscale[on], q.offset, n); });
    // One FMA for the absmax, one FP32 product code·absmax, then the storage rounding: nothing to
    // differ in.
    expect_identical(strf("nf4_dequantize n=%zu: w", n), out.cuda(), bf16_round(out.h));
}

TEST_CASE("cuda quantize_blockwise8: codes and absmax bit-identical to the CPU") {
    const Ops& g = cuda_backend();
    const size_t n = 256 * 12 + 37;
    vector<float> x = rnd(n, 1, 0.01f);
    std::fill(x.begin() + 2 * 256, x.begin() + 3 * 256, 0.0f);  // an all-zero block
    put_ties(x, 4 * 256, dynamic_map(), 1.0f);                   // blocks 4-7 at absmax 1
    put_ties(x, 8 * 256, dynamic_map(), 0.5f);                   // blocks 8-11 at 1/2
    for (size_t b = 4; b < 12; b++) x[b * 256 + 255] = b < 8 ? 1.0f : 0.5f;  // each of them holds its absmax
    BufTwin<float> xt(g, x), absmax(g, vector<float>((n + 255) / 256, -1.0f));
    BufTwin<uint8_t> q(g, vector<uint8_t>(n, 0xAA));
    run_both(g, [&](const Ops& o, On on) { o.quantize_blockwise8(q[on], absmax[on], xt[on], n); });
    expect_identical(strf("quantize_blockwise8 n=%zu: codes", n), q);
    expect_identical(strf("quantize_blockwise8 n=%zu: absmax", n), absmax);
}

TEST_CASE("cuda adamw_update: FP32 masters and moments, p_compute = BF16 of p; weight decay, grad_scale") {
    const Ops& g = cuda_backend();
    const size_t n = 100003;
    struct Case {
        float weight_decay, grad_scale;
        int t;
    };
    for (Case c : {Case{0.0f, 1.0f, 1}, Case{0.1f, 1.0f, 1}, Case{0.1f, 0.37f, 10}, Case{0.0f, 0.37f, 1000}}) {
        vector<float> v0 = rnd(n, 4, 0.01f);
        for (float& x : v0) x *= x;  // a second moment is ≥ 0
        BufTwin<float> p(g, rnd(n, 1)), grad(g, rnd(n, 2, 0.1f)), m(g, rnd(n, 3, 0.01f)), v(g, v0);
        ActTwin p_compute(g, vector<float>(n));
        run_both(g, [&](const Ops& o, On on) {
            o.adamw_update(p[on], on == On::cuda ? p_compute[on] : nullptr, grad[on], m[on], v[on], n, 1e-3f, 0.9f,
                           0.999f, 1e-8f, c.weight_decay, c.grad_scale, c.t, 0);
        });
        std::string what = strf("adamw_update n=%zu wd=%g grad_scale=%g t=%d", n, c.weight_decay, c.grad_scale, c.t);
        expect_close(what + ": p", p, kAdamW);
        expect_close(what + ": m", m, kAdamW);
        expect_close(what + ": v", v, kAdamW);
        expect_identical(what + ": p_compute = bf16(p)", p_compute.cuda(), bf16_round(p.cuda()));
    }
}

// The 8-bit moments from a state three CPU steps made (codes of every size, blocks of different
// absmax), then one step on each backend: the same parameters to AdamW's tolerance, p_compute their
// BF16, the same absmax values, and the same codes but where a moment sits at a midpoint (an FMA the
// one compiler fuses and the other does not moves it by an ulp): then a neighbouring code.
TEST_CASE("cuda adamw8bit_update: the CPU's codes, absmax values and parameters; a short last block") {
    const Ops& g = cuda_backend();
    const size_t n = 100003, blocks = (n + kAdam8Block - 1) / kAdam8Block;
    for (float weight_decay : {0.0f, 0.1f}) {
        vector<float> p0 = rnd(n, 1), am0(blocks, 0.0f), av0(blocks, 0.0f);
        vector<uint8_t> m0(n, 0), v0(n, 0);
        for (int t = 1; t <= 3; t++) {
            vector<float> grad = rnd(n, 10 + t, 0.1f);
            for (size_t i = 0; i < n; i += 997) grad[i] *= 50.0f;  // a few large gradients: uneven blocks
            cpu::adamw8bit_update(p0.data(), grad.data(), m0.data(), v0.data(), am0.data(), av0.data(), n, 1e-3f, 0.9f,
                                  0.999f, 1e-8f, weight_decay, 1.0f, t);
        }
        BufTwin<float> p(g, p0), grad(g, rnd(n, 2, 0.1f)), am(g, am0), av(g, av0);
        BufTwin<uint8_t> m(g, m0), v(g, v0);
        ActTwin p_compute(g, vector<float>(n));
        run_both(g, [&](const Ops& o, On on) {
            o.adamw8bit_update(p[on], on == On::cuda ? p_compute[on] : nullptr, grad[on], m[on], v[on], am[on], av[on], n,
                               1e-3f, 0.9f, 0.999f, 1e-8f, weight_decay, 0.37f, 4, 0);
        });
        std::string what = strf("adamw8bit_update n=%zu wd=%g", n, weight_decay);
        expect_close(what + ": p", p, kAdamW);
        expect_identical(what + ": p_compute = bf16(p)", p_compute.cuda(), bf16_round(p.cuda()));
        expect_close(what + ": absmax of m", am, kAdamW);
        expect_close(what + ": absmax of v", av, kAdamW);
        const vector<uint8_t> mc = m.cuda(), vc = v.cuda();
        size_t differ = 0, far = 0;
        for (size_t i = 0; i < n; i++) {
            differ += mc[i] != m.h[i] || vc[i] != v.h[i];
            far += std::abs(mc[i] - m.h[i]) > 1 || std::abs(vc[i] - v.h[i]) > 1;
        }
        MESSAGE(what << ": codes unlike the CPU's " << differ << " of " << n << ", " << far << " beyond a neighbour");
        CHECK(differ <= n / 1000);
        CHECK(far == 0);
    }
}

// Stochastic rounding of the BF16 copy: each value is one of the two BF16 neighbours of the FP32
// master (truncated, or one BF16 ulp further from zero), the far one with probability equal to the
// master's position between them, so the rounding is unbiased; the same key gives the same bits, and
// the masters and moments do not depend on the rounding at all.
TEST_CASE("cuda adamw_update with stochastic rounding: unbiased between the two BF16 neighbours, keyed") {
    const Ops& g = cuda_backend();
    const size_t n = (size_t(1) << 16) + 3;  // + 3: the tail that takes the scalar path
    vector<float> p0 = rnd(n, 1), v0 = rnd(n, 4, 0.01f);
    for (float& x : v0) x *= x;
    p0[0] = FLT_MAX, p0[1] = -FLT_MAX;  // finite beyond the largest BF16: saturate there, never ±Inf
    auto run = [&](uint64_t key, float lr, vector<float>* p_out) {
        Buffer p(g, n * 4, Mem::weights), grad(g, n * 4, Mem::gradients), m(g, n * 4, Mem::optimizer),
            v(g, n * 4, Mem::optimizer), pc = act_buffer(g, n, Mem::weights);
        g.to_device(p.p, p0.data(), n * 4);
        g.to_device(grad.p, rnd(n, 2, 0.1f).data(), n * 4);
        g.to_device(v.p, v0.data(), n * 4);
        g.adamw_update(p.f(), pc.a(), grad.f(), m.f(), v.f(), n, lr, 0.9f, 0.999f, 1e-8f, 0.0f, 1.0f, 1, key);
        if (p_out) {
            p_out->resize(n);
            g.to_host(p_out->data(), p.p, n * 4);
        }
        vector<float> out(n);
        g.download(out.data(), pc.a(), n);
        return out;
    };
    // lr 0: the masters stay p0, so the expected rounding of each is known exactly.
    const vector<float> a = run(0x1234, 0.0f, nullptr);
    // Per half of the BF16 step (masters in the lower half, which round-to-nearest never rounds
    // away from zero, and in the upper half): the count rounded away from zero against its
    // expectation Σ frac, within 5 standard deviations.
    double ups[2] = {0, 0}, expected[2] = {0, 0}, variance[2] = {0, 0};
    size_t outside = 0;
    for (size_t i = 0; i < n; i++) {
        uint32_t bits;
        std::memcpy(&bits, &p0[i], 4);
        uint32_t lo_bits = bits & 0xFFFF0000u, hi_bits = lo_bits + 0x10000u;
        float lo, hi;
        std::memcpy(&lo, &lo_bits, 4);
        std::memcpy(&hi, &hi_bits, 4);
        const double frac = (bits & 0xFFFFu) / 65536.0;
        const int half = frac >= 0.5;
        outside += a[i] != lo && a[i] != hi;
        ups[half] += a[i] == hi && hi != lo;
        expected[half] += frac;
        variance[half] += frac * (1 - frac);
    }
    CHECK(outside == 0);
    const float bf16_max = 3.38953139e38f;  // 0x7F7F
    CHECK(a[0] == bf16_max);
    CHECK(a[1] == -bf16_max);
    for (int half = 0; half < 2; half++) {
        MESSAGE((half ? "upper" : "lower") << " half of the BF16 step: rounded away from zero " << ups[half]
                                            << " times, expected " << expected[half] << " ± "
                                            << std::sqrt(variance[half]));
        CHECK(std::fabs(ups[half] - expected[half]) < 5 * std::sqrt(variance[half]));
    }
    CHECK(run(0x1234, 0.0f, nullptr) == a);  // keyed: the same bits again
    vector<float> other = run(0x9876, 0.0f, nullptr);
    CHECK(std::count_if(other.begin(), other.end(), [&, i = size_t(0)](float x) mutable { return x != a[i++]; }) > 1000);
    // The rounding touches the BF16 copy only: the FP32 masters of an update are the same bits.
    vector<float> p_sr, p_rn;
    run(0x1234, 1e-3f, &p_sr);
    run(0, 1e-3f, &p_rn);
    CHECK(p_sr == p_rn);
}

TEST_CASE("cuda sum_squares: Σ g² in double; deterministic") {
    const Ops& g = cuda_backend();
    for (size_t n : {size_t(1), size_t(37), size_t(1000003)}) {
        BufTwin<float> grad(g, rnd(n, n));
        double ref = cpu_ops().sum_squares(grad[On::cpu], n);
        double got = g.sum_squares(grad[On::cuda], n), again = g.sum_squares(grad[On::cuda], n);
        double rel = std::fabs(got - ref) / ref;
        std::printf("  %s sum_squares n=%zu: cuda=%.17g cpu=%.17g rel err %.3g (tolerance %.3g)\n",
                    rel <= kSumSquaresRtol ? "ok" : "FAIL", n, got, ref, rel, kSumSquaresRtol);
        CHECK_MESSAGE(rel <= kSumSquaresRtol, "sum_squares n=" << n << ": cuda " << show(got) << " vs cpu " << show(ref));
        expect_identical(strf("sum_squares n=%zu: second call vs first", n), vector<double>{again}, vector<double>{got});
    }
}

}  // TEST_SUITE("cuda")
