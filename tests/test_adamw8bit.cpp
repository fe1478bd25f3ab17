// The 8-bit AdamW (kernels/cpu/adamw.cpp, adamw8bit_update) against bitsandbytes' AdamW8bit: three
// steps of its CPU blockwise path on one tensor (tests/fixtures/optim/gen_adamw8bit.py), and the
// dynamic maps it quantizes the moments with.
#include <doctest/doctest.h>

#include <array>
#include <cmath>
#include <vector>

#include "data/json.h"
#include "kernels/kernels.h"
#include "kernels/nf4_tables.h"
#include "model/util.h"

using std::vector;

namespace {

vector<float> floats(const JsonValue& a) {
    vector<float> out;
    for (const JsonValue& x : a.array) out.push_back((float)x.number);
    return out;
}

}  // namespace

TEST_CASE("adamw8bit: bitsandbytes' two dynamic maps, value for value") {
    const JsonValue ref = json_parse(read_file("tests/fixtures/optim/adamw8bit.json"));
    const std::array<float, 256> s = dynamic_map_values(true), u = dynamic_map_values(false);
    const vector<float> bs = floats(*ref.get("map_signed")), bu = floats(*ref.get("map_unsigned"));
    REQUIRE(bs.size() == 256);
    REQUIRE(bu.size() == 256);
    for (int i = 0; i < 256; i++) {
        INFO("code " << i);
        CHECK(s[i] == bs[i]);
        CHECK(u[i] == bu[i]);
    }
}

// Each of the three steps replayed from bitsandbytes' own state after the step before (its codes,
// absmax values and parameters), so that every difference is the step's own. bitsandbytes computes
// 1 − beta2 and the bias corrections in double from Python's 0.999 (ours: in float from 0.999f, as
// our FP32 AdamW does), 1.3e-5 apart relative in v's new term, and rounds in another order (torch's
// mul_ then add_ with alpha, the decay as p·(1 − lr·wd) first). Near 0 the map's codes are 1e-7 of the
// absmax apart, so such differences move a small moment to a neighbouring code now and then. So: the
// updates agree to 3e-5 of lr, the absmax values to those 1.3e-5, the codes but for a few, and those
// few, where the codes are coarser than 1e-3 of the absmax, by one code (a value at a midpoint).
TEST_CASE("adamw8bit: each step as bitsandbytes' AdamW8bit (blocks of 256, a short one; weight decay)") {
    const JsonValue ref = json_parse(read_file("tests/fixtures/optim/adamw8bit.json"));
    const size_t n = (size_t)ref.get("n")->integer;
    const size_t blocks = (n + kAdam8Block - 1) / kAdam8Block;
    const float lr = (float)ref.get("lr")->number, wd = (float)ref.get("weight_decay")->number;
    const vector<JsonValue>& grads = ref.get("grads")->array;
    const vector<JsonValue>& after = ref.get("after")->array;
    REQUIRE(after.size() == grads.size());
    vector<float> p = floats(*ref.get("p0")), am(blocks, 0.0f), av(blocks, 0.0f);
    vector<uint8_t> m(n, 0), v(n, 0);
    for (size_t k = 0; k < grads.size(); k++) {
        CAPTURE(k + 1);
        if (k > 0) {  // bitsandbytes' state after step k
            const JsonValue& prev = after[k - 1];
            p = floats(*prev.get("p")), am = floats(*prev.get("absmax1")), av = floats(*prev.get("absmax2"));
            for (size_t i = 0; i < n; i++)
                m[i] = (uint8_t)prev.get("state1")->array[i].integer, v[i] = (uint8_t)prev.get("state2")->array[i].integer;
        }
        const vector<float> grad = floats(grads[k]);
        cpu::adamw8bit_update(p.data(), grad.data(), m.data(), v.data(), am.data(), av.data(), n, lr, 0.9f, 0.999f,
                              1e-8f, wd, 1.0f, (int)k + 1);
        const JsonValue& want = after[k];
        const vector<float> want_p = floats(*want.get("p")), want_am = floats(*want.get("absmax1")),
                            want_av = floats(*want.get("absmax2"));
        // the codes compared by what they decode to, against the block's absmax
        static const std::array<float, 256> smap = dynamic_map_values(true), umap = dynamic_map_values(false);
        size_t off = 0, coarse = 0;
        double worst_p = 0;
        for (size_t i = 0; i < n; i++) {
            const size_t b = i / kAdam8Block;
            const int c1 = (int)want.get("state1")->array[i].integer, c2 = (int)want.get("state2")->array[i].integer;
            const double d1 = std::fabs((double)smap[m[i]] - smap[c1]) * want_am[b];
            const double d2 = std::fabs((double)umap[v[i]] - umap[c2]) * want_av[b];
            off += d1 > 0 || d2 > 0;
            // beyond the dense region near 0, only a neighbouring code (a value at a midpoint)
            coarse += (d1 > 1e-3 * want_am[b] && std::abs(m[i] - c1) > 1) || (d2 > 1e-3 * want_av[b] && std::abs(v[i] - c2) > 1);
            worst_p = std::max(worst_p, std::fabs((double)p[i] - want_p[i]) / lr);  // updates are ~lr
        }
        MESSAGE("step " << k + 1 << ": codes unlike bitsandbytes' " << off << " of " << n << " (" << coarse
                        << " beyond a neighbour where codes are 1e-3 of the absmax apart), parameters within "
                        << worst_p << " lr");
        CHECK(off <= n / 20);
        CHECK(coarse == 0);
        CHECK(worst_p < 3e-5);
        REQUIRE(want_am.size() == blocks);
        for (size_t b = 0; b < blocks; b++) {
            CHECK(am[b] == doctest::Approx(want_am[b]).epsilon(1e-6));
            CHECK(av[b] == doctest::Approx(want_av[b]).epsilon(3e-5));  // 1 − beta2: 1.3e-5 apart
        }
    }
}

// What the 8 bits cost against FP32 moments on the same gradients: the parameters after 50 steps of
// noisy gradients (block 0 two thousand times block 1's), relative to how far they moved.
TEST_CASE("adamw8bit: tracks the FP32 AdamW, the small block beside the large one included") {
    const size_t n = 700;
    vector<float> p8(n), p32(n), m32(n, 0.0f), v32(n, 0.0f), am(3, 0.0f), av(3, 0.0f), g(n);
    vector<uint8_t> m8(n, 0), v8(n, 0);
    for (size_t i = 0; i < n; i++) p8[i] = p32[i] = 0.01f * std::sin((float)i);
    const vector<float> start = p32;
    uint64_t s = 12345;
    for (int t = 1; t <= 50; t++) {
        for (size_t i = 0; i < n; i++) {
            s = s * 6364136223846793005ull + 1442695040888963407ull;
            const float noise = (float)((s >> 40) & 0xFFFF) / 65536.0f - 0.5f;
            g[i] = (i < 256 ? 1.0f : 5e-4f) * (std::cos(0.1f * (float)i) + noise);
        }
        cpu::adamw8bit_update(p8.data(), g.data(), m8.data(), v8.data(), am.data(), av.data(), n, 1e-3f, 0.9f, 0.999f,
                              1e-8f, 0.01f, 1.0f, t);
        cpu::adamw_update(p32.data(), g.data(), m32.data(), v32.data(), n, 1e-3f, 0.9f, 0.999f, 1e-8f, 0.01f, 1.0f, t);
    }
    for (size_t lo : {(size_t)0, (size_t)256}) {  // the large block, then the small ones
        double diff = 0, moved = 0;
        for (size_t i = lo; i < (lo ? n : 256); i++) {
            diff += ((double)p8[i] - p32[i]) * ((double)p8[i] - p32[i]);
            moved += ((double)p32[i] - start[i]) * ((double)p32[i] - start[i]);
        }
        const double rel = std::sqrt(diff / moved);
        MESSAGE("from " << lo << ": ||p8 - p32|| / ||p32 - p0|| = " << rel);
        CHECK(rel < 0.05);
    }
}
