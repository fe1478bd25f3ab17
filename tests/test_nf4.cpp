// NF4 and double quantization (the CPU reference of the QLoRA storage), and QLoRA training on it.
#include <cstring>

#include "kernels/nf4_tables.h"
#include "model/trainer.h"
#include "tests/test_util.h"

using std::vector;

static const float kCode[16] = {-1.0f, -0.6961928009986877f, -0.5250730514526367f, -0.39491748809814453f,
                                -0.28444138169288635f, -0.18477343022823334f, -0.09105003625154495f, 0.0f,
                                0.07958029955625534f, 0.16093020141124725f, 0.24611230194568634f, 0.33791524171829224f,
                                0.44070982933044434f, 0.5626170039176941f, 0.7229568362236023f, 1.0f};

// NF4 codes back to values with plain FP32 absmax values (the trainer only ever decodes
// double-quantized ones: nf4_weight_dequantize), from this file's own copy of the codebook.
static vector<float> nf4_decode(const vector<uint8_t>& codes, const float* absmax, size_t n) {
    vector<float> w(n);
    for (size_t i = 0; i < n; i++) w[i] = kCode[i % 2 ? codes[i / 2] & 15 : codes[i / 2] >> 4] * absmax[i / 64];
    return w;
}

TEST_CASE("nf4: codebook values round-trip exactly, nibble order, ties go to the lower code") {
    // One block of 64 whose absmax is 1: element i holds code i % 16.
    vector<float> w(64);
    for (int i = 0; i < 64; i++) w[i] = kCode[i % 16];
    vector<uint8_t> codes(32);
    float absmax;
    cpu::nf4_quantize(codes.data(), &absmax, w.data(), 64);
    CHECK(absmax == 1.0f);
    CHECK(codes[0] == 0x01);  // element 0 (code 0) in the high nibble, element 1 (code 1) in the low
    CHECK(codes[7] == 0xEF);
    vector<float> back = nf4_decode(codes, &absmax, 64);
    CHECK(memcmp(back.data(), w.data(), sizeof(float) * 64) == 0);
    // Exactly between codes 7 (0.0) and 8 (0.0796): the lower code.
    w[0] = 0.5f * (kCode[7] + kCode[8]);
    cpu::nf4_quantize(codes.data(), &absmax, w.data(), 64);
    CHECK((codes[0] >> 4) == 7);
}

TEST_CASE("nf4: error bound per element, odd sizes, zero blocks") {
    size_t n = 64 * 5 + 7;  // a short last block with an odd count
    vector<float> w = random_vec(n, 3), absmax((n + 63) / 64);
    for (size_t i = 128; i < 192; i++) w[i] = 0.0f;  // an all-zero block
    vector<uint8_t> codes((n + 1) / 2);
    cpu::nf4_quantize(codes.data(), absmax.data(), w.data(), n);
    vector<float> back = nf4_decode(codes, absmax.data(), n);
    double worst = 0;
    for (size_t i = 0; i < n; i++) {
        // The widest gap between neighbouring codes is 1 − 0.7230: no element is further than half of it.
        double bound = 0.5 * (1.0 - 0.7229568362236023) * absmax[i / 64] + 1e-7;
        worst = std::max(worst, std::fabs(w[i] - back[i]) / (absmax[i / 64] + 1e-30));
        CHECK(std::fabs(w[i] - back[i]) <= bound);
    }
    for (size_t i = 128; i < 192; i++) CHECK(back[i] == 0.0f);
    MESSAGE("nf4 worst error: " << worst << " of the block absmax");
}

TEST_CASE("double quantization: 4.127 bits per parameter, absmax recovered to 8-bit precision") {
    size_t n = 64 * 256 * 8;  // 8 blocks of absmax values
    vector<float> w = random_vec(n, 5, 0.02f), back(n);
    NF4Weight q = nf4_weight_quantize(cpu_ops(), w.data(), n);
    double bits = 8.0 * (q.bytes() - sizeof(float)) / n;
    MESSAGE("NF4 + double quant: " << bits << " bits per parameter");
    CHECK(bits == doctest::Approx(4.127).epsilon(1e-3));
    nf4_weight_dequantize(cpu_ops(), nf4_view(q), as_act(back.data()));
    // Reference: NF4 with exact FP32 absmax values.
    vector<uint8_t> codes((n + 1) / 2);
    vector<float> exact_absmax(n / 64);
    cpu::nf4_quantize(codes.data(), exact_absmax.data(), w.data(), n);
    CHECK(codes == q.codes);  // double quantization changes the scales only, never the 4-bit codes
    // The absmax each block was decoded with: a block's largest |w| is coded ±1, so it comes back as
    // exactly that absmax; every other value is its code times it.
    const std::array<float, 256> map = dynamic_map_values();
    vector<float> absmax(n / 64);
    double worst = 0;
    for (size_t b = 0; b < n / 64; b++) {
        absmax[b] = std::fma(map[q.qabsmax[b]], q.qscale[b / 256], q.offset);
        float largest = 0.0f;
        for (size_t i = b * 64; i < b * 64 + 64; i++) largest = std::max(largest, std::fabs(back[i]));
        CHECK(largest == absmax[b]);
        worst = std::max(worst, (double)std::fabs(absmax[b] - exact_absmax[b]) / exact_absmax[b]);
    }
    CHECK(back == nf4_decode(codes, absmax.data(), n));
    MESSAGE("absmax relative error after double quantization: " << worst);
    CHECK(worst < 0.02);
}

TEST_CASE("blockwise 8-bit: bitsandbytes' signed dynamic map, nearest code") {
    vector<float> x = {0.0f, 1.0f, -1.0f, 0.5f, -0.25f, 1e-6f, 0.99f};
    vector<uint8_t> q(x.size());
    float absmax;
    cpu::quantize_blockwise8(q.data(), &absmax, x.data(), x.size());
    const std::array<float, 256> map = dynamic_map_values();
    vector<float> back(x.size());
    for (size_t i = 0; i < x.size(); i++) back[i] = map[q[i]] * absmax;
    CHECK(absmax == 1.0f);
    CHECK(back[0] == 0.0f);
    CHECK(back[1] == 1.0f);
    CHECK(back[2] == doctest::Approx(-0.99296875).epsilon(1e-6));  // the map's most negative value: -(0.9859375 + 1)/2
    CHECK(q[1] == 255);
    for (size_t i = 3; i < x.size(); i++) CHECK(std::fabs(back[i] - x[i]) <= 0.01f * std::fabs(x[i]) + 1e-6f);
}

static ModelConfig small() {
    ModelConfig c = config_preset("tiny");
    c.vocab_size = 80;
    c.qkv_bias = 1;
    return c;
}

TEST_CASE("qlora: the NF4 model computes exactly what FP32 weights holding the dequantized values compute") {
    ModelConfig c = small();
    vector<float> p;
    model_init_random(c, p, 9);
    Model q, ref;
    model_init(q, c, p);
    model_quantize_nf4(q);
    CHECK(q.base_bytes() < ref.base_bytes() + p.size() * sizeof(float) / 2);
    // ref: the same weights, round-tripped through NF4 into FP32.
    vector<float> deq = p;
    nf4_round_trip_base(c, deq);
    size_t changed = 0;  // every projection moved, nothing else
    for (const TensorInfo& t : param_layout(c).tensors) {
        const bool projection = t.name.find("_proj.weight") != std::string::npos;
        size_t moved = 0;
        for (size_t i = t.offset; i < t.offset + t.numel; i++) moved += deq[i] != p[i];
        CHECK_MESSAGE((moved > 0) == projection, t.name);
        changed += moved;
    }
    CHECK(changed > 0);
    model_init(ref, c, deq);
    LoraConfig lc;
    lc.targets = lora_parse_targets("all");
    model_add_lora(q, lc, 1);
    model_add_lora(ref, lc, 1);
    CHECK(q.method == Method::Qlora);
    for (size_t i = 0; i < q.adapters.size(); i++) q.adapters[i] = ref.adapters[i] += 0.05f * Rng(i).normal();
    int32_t tok[7] = {3, 1, 4, 1, 5, 9, 2};
    vector<float> a(7 * c.vocab_size), b(7 * c.vocab_size);
    model_logits(q, tok, 7, a.data());
    model_logits(ref, tok, 7, b.data());
    CHECK(memcmp(a.data(), b.data(), a.size() * sizeof(float)) == 0);
}

// And a --preset's random weights quantized a projection at a time (model_init_random_quantized).
TEST_CASE("qlora: a model file streamed into NF4 (model_load_nf4), or random weights made a projection at a time, is the model made whole and quantized") {
    ModelConfig c = small();
    vector<float> p;
    model_init_random(c, p, 5);
    const std::string dir = temp_dir("nf4-load");
    for (const char* source : {"F32 file", "BF16 file", "random"}) {
        CAPTURE(source);
        Model whole, streamed;
        if (std::string(source) == "random") {
            model_init(whole, c, p);
            model_init_random_quantized(streamed, c, 5);
        } else {
            const std::string path = dir + "/m.bin";
            model_save(path, c, p, std::string(source) == "F32 file" ? DType::F32 : DType::BF16);
            ModelConfig loaded;
            vector<float> w;
            model_load(path, loaded, w);
            model_init(whole, loaded, w);
            model_load_nf4(streamed, path);
        }
        model_quantize_nf4(whole);
        CHECK(streamed.cfg.hash() == whole.cfg.hash());
        CHECK(streamed.method == whole.method);
        CHECK(streamed.params == whole.params);
        CHECK(streamed.dequant.size() == whole.dequant.size());
        REQUIRE(streamed.nf4.size() == whole.nf4.size());
        for (size_t i = 0; i < whole.nf4.size(); i++) {
            CHECK(streamed.nf4[i].codes == whole.nf4[i].codes);
            CHECK(streamed.nf4[i].qabsmax == whole.nf4[i].qabsmax);
            CHECK(streamed.nf4[i].qscale == whole.nf4[i].qscale);
            CHECK(streamed.nf4[i].offset == whole.nf4[i].offset);
        }
        const LayerOffsets& a = whole.off.layers[1], &b = streamed.off.layers[1];
        CHECK(a.wq == b.wq);  // the same tagged NF4 indices and packed offsets
        CHECK(a.attn_norm == b.attn_norm);
    }
}

TEST_CASE("qlora: the adapter merged into the base as NF4 holds it (./export --nf4) computes what training measured") {
    ModelConfig c = small();
    vector<float> p;
    model_init_random(c, p, 12);
    Model q;
    model_init(q, c, p);
    model_quantize_nf4(q);
    LoraConfig lc;
    lc.rank = 4;
    lc.targets = lora_parse_targets("all");
    model_add_lora(q, lc, 3);
    for (size_t i = 0; i < q.adapters.size(); i++) q.adapters[i] += 0.05f * Rng(i + 7).normal();
    int32_t tok[7] = {3, 1, 4, 1, 5, 9, 2};
    auto merged_logits = [&](bool nf4) {
        vector<float> w = p, out(7 * c.vocab_size);
        if (nf4) nf4_round_trip_base(c, w);
        lora_merge(c, q.lora, q.adapters, w);
        Model m;
        model_init(m, c, w);
        model_logits(m, tok, 7, out.data());
        return out;
    };
    vector<float> trained(7 * c.vocab_size);
    model_logits(q, tok, 7, trained.data());
    auto max_diff = [&](const vector<float>& a) {
        double d = 0;
        for (size_t i = 0; i < a.size(); i++) d = std::max(d, (double)std::fabs(a[i] - trained[i]));
        return d;
    };
    const double nf4_base = max_diff(merged_logits(true)), fp32_base = max_diff(merged_logits(false));
    MESSAGE("merged into the NF4 round trip: " << nf4_base << ", into the FP32 base: " << fp32_base);
    CHECK(nf4_base < 1e-5);
    CHECK(fp32_base > 100 * nf4_base);
}

TEST_CASE("qlora: adapter gradients pass the finite-difference check and training lowers the loss") {
    ModelConfig c = small();
    Trainer t;
    model_init_random(t.model, c, 4);
    model_quantize_nf4(t.model);
    TrainConfig tc;
    tc.method = Method::Qlora;
    tc.lora.rank = 4;
    tc.lora.targets = lora_parse_targets("all");
    model_add_lora(t.model, tc.lora, 2);
    Rng r(6);
    for (int i = 0; i < 8; i++) {
        Example e;
        for (int k = 0; k < 12; k++) {
            e.tokens.push_back((int)(r.next_u64() % c.vocab_size));
            e.weights.push_back(k ? 1.0f : 0.0f);
        }
        t.train.push_back(e);
    }
    tc.batch.batch_size = 8;
    tc.batch.max_seq_len = 12;
    tc.max_steps = 40;
    tc.optim.lr = 1e-2f;
    trainer_init(t, tc, cpu_ops());
    for (float& a : t.model.adapters) a += 0.1f * Rng((uint64_t)(&a - t.model.adapters.data())).normal();

    Batch b;
    vector<size_t> order = {0, 1, 2, 3, 4, 5, 6, 7};
    fill_batch(t.train, order, 0, tc.batch, b);
    double W = b.total_weight();
    vector<float> g(t.model.num_trainable(), 0.0f);
    model_forward_backward(t.model, t.ws, b, g.data(), (float)(1.0 / W), 0, 0.0f, cpu_ops());
    grad_check("qlora adapters", t.model.adapters, g, [&] { return model_forward_loss(t.model, t.ws, b, cpu_ops()) / W; },
               5e-3, 60, 2e-3f);

    double first = trainer_step(t).loss, last = first;
    while (t.step < t.total_steps) last = trainer_step(t).loss;
    MESSAGE("qlora training loss " << first << " -> " << last);
    CHECK(last < first - 0.3);
}
