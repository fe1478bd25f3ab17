// The 8-bit AdamW (kernels/cpu/adamw.cpp, adamw8bit_update) against bitsandbytes' AdamW8bit: three
// steps of its CPU blockwise path on one tensor (tests/fixtures/optim/gen_adamw8bit.py), and the
// dynamic maps it quantizes the moments with.
#include <doctest/doctest.h>

#include <array>
#include <cmath>
#include <cstring>
#include <string>
#include <vector>

#include "data/json.h"
#include "kernels/kernels.h"
#include "kernels/nf4_tables.h"
#include "model/lora.h"
#include "model/optimizer.h"
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

// The table-driven encoder gives the nearest map entry (ties to the lower, NaN 0, past the ends the
// end codes) for every kind of float: each entry, each midpoint and the floats beside it, zeros,
// subnormals, infinities, and two million others, against a search through all 256 entries.
TEST_CASE("DynamicCoder: the nearest entry of either map, as a full search finds it") {
    for (bool is_signed : {true, false}) {
        const DynamicCoder coder(is_signed);
        const std::array<float, 256>& map = coder.map;
        auto nearest = [&](float x) -> int {
            if (std::fabs(x) > 2.0f) return x > 0 ? 255 : 0;  // where |x − entry| rounds to one value for all
            int best = 0;
            for (int i = 1; i < 256; i++)
                if (std::fabs(x - map[i]) < std::fabs(x - map[best])) best = i;
            return best;
        };
        vector<float> xs = {0.0f, -0.0f, 1e-45f, -1e-45f, 1e-38f, -1e-38f, INFINITY, -INFINITY, NAN, 2.0f, -2.0f};
        for (int i = 0; i < 256; i++) {
            xs.push_back(map[i]);
            if (i == 0) continue;
            const float mid = 0.5f * (map[i - 1] + map[i]);
            for (float x : {mid, std::nextafter(mid, -1.0f), std::nextafter(mid, 2.0f)}) xs.push_back(x);
        }
        uint64_t s = 99;
        for (int k = 0; k < 2000000; k++) {
            s = s * 6364136223846793005ull + 1442695040888963407ull;
            uint32_t bits = (uint32_t)(s >> 32);
            float x;
            if (k % 2) std::memcpy(&x, &bits, 4);            // any bit pattern
            else x = (float)((double)bits / 4294967296.0 * 2.2 - 1.1);  // the range moments take
            xs.push_back(x);
        }
        size_t wrong = 0;
        for (float x : xs) wrong += coder.code(x) != (std::isnan(x) ? 0 : nearest(x));
        INFO(std::string(is_signed ? "signed" : "unsigned") << " map, " << xs.size() << " floats");
        CHECK(wrong == 0);
    }
}

// optimizer_step with 8-bit moments on a layout of several tensors (two 8-bit ones with short last
// blocks, FP32 ones between them): each tensor's update equals the kernel's on buffers of its own,
// its codes, its absmax values (m's, then v's after all of m's) and its FP32 moments; with LoRA+,
// the B among them at lr × the ratio.
TEST_CASE("adamw8bit in optimizer_step: each tensor's state where its slot says, as if updated alone (LoRA+ too)") {
    vector<TensorInfo> tensors;
    size_t off = 0;
    for (size_t numel : {(size_t)5000, (size_t)300, (size_t)4096 + 7, (size_t)17}) {
        TensorInfo t;
        t.name = "t" + std::to_string(tensors.size()) + (numel == 4096 + 7 ? ".lora_B" : ".lora_A");
        t.offset = off, t.numel = numel, t.decay = numel != 17;
        tensors.push_back(t);
        off += numel;
    }
    const size_t n = off;
    vector<float> p(n), g(n);
    for (size_t i = 0; i < n; i++) p[i] = 0.01f * std::sin(0.37f * (float)i), g[i] = std::cos(0.11f * (float)i) * (i % 5 ? 1e-3f : 1.0f);
    vector<float> q = p;
    AdamState st;
    adam_state_init(st, cpu_ops(), tensors, true);
    OptimConfig oc;
    oc.eight_bit = true, oc.weight_decay = 0.1f, oc.max_grad_norm = 0.0f, oc.lora_b_lr_ratio = 4.0f;
    for (int step = 0; step < 3; step++) optimizer_step(cpu_ops(), p.data(), nullptr, g.data(), tensors, st, oc, 1e-3f, 1.0);
    REQUIRE(st.slots.size() == 4);
    const size_t m_blocks = st.absmax.bytes / sizeof(float) / 2;
    CHECK(m_blocks == (5000 + 255) / 256 + (4096 + 7 + 255) / 256);
    for (const TensorInfo& t : tensors) {
        CAPTURE(t.name);
        const MomentSlot& s = st.slots[&t - tensors.data()];
        vector<float> pa(q.begin() + t.offset, q.begin() + t.offset + t.numel), ga(g.begin() + t.offset, g.begin() + t.offset + t.numel);
        const float wd = t.decay ? 0.1f : 0.0f, lr = lora_is_b(t) ? 4e-3f : 1e-3f;
        if (t.numel >= kAdam8MinSize) {
            REQUIRE(s.eight_bit);
            const size_t blocks = (t.numel + 255) / 256;
            vector<uint8_t> m(t.numel, 0), v(t.numel, 0);
            vector<float> am(blocks, 0.0f), av(blocks, 0.0f);
            for (int step = 1; step <= 3; step++)
                cpu::adamw8bit_update(pa.data(), ga.data(), m.data(), v.data(), am.data(), av.data(), t.numel, lr, 0.9f,
                                      0.999f, 1e-8f, wd, 1.0f, step);
            CHECK(memcmp(m.data(), st.m8.u8() + s.at, t.numel) == 0);
            CHECK(memcmp(v.data(), st.v8.u8() + s.at, t.numel) == 0);
            CHECK(memcmp(am.data(), st.absmax.f() + s.block, blocks * 4) == 0);
            CHECK(memcmp(av.data(), st.absmax.f() + m_blocks + s.block, blocks * 4) == 0);
        } else {
            REQUIRE(!s.eight_bit);
            vector<float> m(t.numel, 0.0f), v(t.numel, 0.0f);
            for (int step = 1; step <= 3; step++)
                cpu::adamw_update(pa.data(), ga.data(), m.data(), v.data(), t.numel, lr, 0.9f, 0.999f, 1e-8f, wd, 1.0f, step);
            CHECK(memcmp(m.data(), st.m.f() + s.at, t.numel * 4) == 0);
            CHECK(memcmp(v.data(), st.v.f() + s.at, t.numel * 4) == 0);
        }
        CHECK(memcmp(pa.data(), p.data() + t.offset, t.numel * 4) == 0);
    }
}
