// ./convert on pre-quantized Hugging Face checkpoints (model/import_quantized.h): bitsandbytes 4-bit
// (NF4, FP4, with and without double quantization, packed in a BF16 tensor), 8-bit, FP8 with block
// scales, compressed-tensors' schemes (FP8 per row and per block, INT8 per group; INT4 and INT3 packed,
// with and without zero points), GPTQ (4- and 8-bit, act-order) and AWQ, each dequantized to the values the fixture's numpy code (checked there against bitsandbytes
// and transformers) gives, and to transformers' logits. Fixtures: tests/fixtures/quantized/gen_quantized_fixtures.py.
#include <doctest/doctest.h>

#include <algorithm>
#include <cstring>

#include "model/dequant.h"
#include "model/import.h"
#include "model/import_quantized.h"
#include "model/model.h"
#include "model/nf4.h"
#include "test_convert_util.h"
#include "test_util.h"

namespace {
const std::string kQDir = "tests/fixtures/quantized/";
const char* const kChecked[] = {"model.layers.0.self_attn.k_proj.weight", "model.layers.1.mlp.down_proj.weight"};

const float* param(const ImportedModel& m, const std::string& name) {
    for (const TensorInfo& t : param_layout(m.cfg).tensors)
        if (t.name == name) return m.params.data() + t.offset;
    FAIL("no tensor " << name);
    return nullptr;
}

// The stored bytes of every tensor of a fixture, to copy with some changed.
std::vector<StEntry> raw_tensors(const std::string& dir) {
    SafetensorsSet set = safetensors_open_dir(dir);
    std::vector<StEntry> out;
    for (const SafeTensor& t : set.tensors)
        out.push_back({t.name, t.dtype, t.shape, std::string((const char*)t.file->data + t.offset, t.nbytes)});
    return out;
}

StEntry& entry(std::vector<StEntry>& es, const std::string& name) {
    for (StEntry& e : es)
        if (e.name == name) return e;
    FAIL("no tensor " << name);
    return es[0];
}

// A copy of fixture `variant` with its tensors and config.json as given.
std::string variant_copy(const std::string& variant, const std::vector<StEntry>& tensors, const std::string& config) {
    std::string d = temp_dir();
    write_bytes(d + "/config.json", config);
    for (const char* f : {"tokenizer.json", "tokenizer_config.json"}) write_bytes(d + "/" + f, read_file(kQDir + variant + "/" + f));
    write_safetensors(d + "/model.safetensors", tensors);
    return d;
}
}  // namespace

TEST_CASE("convert quantized: bitsandbytes, FP8 and compressed-tensors checkpoints give numpy's weights and transformers' logits") {
    SafetensorsSet expected;
    safetensors_add_file(expected, kQDir + "expected.safetensors");
    for (const char* variant : {"bnb_nf4_dq", "bnb_nf4", "bnb_fp4", "bnb_nf4_bf16", "bnb_int8", "fp8", "ct_fp8_channel",
                                "ct_fp8_block", "ct_int8_group", "ct_w4_group", "ct_w4_asym", "ct_w3_channel", "gptq_w4",
                                "gptq_w4_asym_actorder", "gptq_w8", "awq_w4"}) {
        INFO(std::string(variant));
        ImportedModel m = import_hf_dir(kQDir + variant);
        for (const char* name : kChecked) {
            const SafeTensor* want = expected.find(std::string(variant) + "/" + name);
            REQUIRE(want);
            std::vector<float> w(want->numel);
            expected.read_f32(*want, w.data());
            const float* got = param(m, name);
            // GPTQModel dequantizes in FP16: the exact products (ours) rounded
            const bool f16 = std::string(variant).rfind("gptq", 0) == 0;
            size_t differ = 0;
            for (size_t i = 0; i < w.size(); i++) {
                const float ours = f16 ? f16_to_f32(f32_to_f16(got[i])) : got[i];
                differ += memcmp(&w[i], &ours, 4) != 0;
            }
            CHECK(differ == 0);
        }
        // no FP32 reference logits for these (the fixture says why; transformers reads GPTQ and AWQ only
        // through GPTQModel's kernels)
        if (std::string(variant) == "bnb_nf4_bf16" || std::string(variant).rfind("gptq", 0) == 0 || std::string(variant) == "awq_w4") continue;
        // compressed-tensors decompresses in BF16: its weights are ours (the exact products) rounded
        if (std::string(variant).rfind("ct_", 0) == 0)
            for (float& v : m.params) v = bf16_to_f32(f32_to_bf16(v));
        Model model;
        model_init(model, m.cfg, m.params);
        std::vector<int32_t> ids;
        std::vector<float> logits;
        const double worst = max_logit_diff(model, kQDir + variant + "_logits.json", ids, logits);
        MESSAGE(std::string(variant) << ": max |logit - transformers'| " << worst << " over " << ids.size() << " positions");
        CHECK(worst < 1e-4);
    }
}

TEST_CASE("convert quantized: --method qlora quantizes a bitsandbytes NF4 checkpoint's weights to its own codes") {
    // The dequantized block's absmax element is ±1 · absmax exactly, so NF4 finds the same absmax and
    // every value the code it came from. (The double-quantized absmax codes differ: bitsandbytes took
    // the mean offset of the absmax values before they were quantized, we of their dequantized values.)
    for (const char* variant : {"bnb_nf4_dq", "bnb_nf4", "bnb_nf4_bf16"}) {
        INFO(std::string(variant));
        ImportedModel m = import_hf_dir(kQDir + variant);
        SafetensorsSet st = safetensors_open_dir(kQDir + variant);
        const Ops& ops = cpu_ops();
        for (const TensorInfo& t : param_layout(m.cfg).tensors) {
            const SafeTensor* packed = st.find(t.name);
            REQUIRE(packed);
            if (!st.find(t.name + ".quant_state.bitsandbytes__nf4")) continue;  // not quantized (norms, embeddings)
            NF4Weight q = nf4_weight_quantize(ops, m.params.data() + t.offset, t.numel);
            REQUIRE(q.codes.size() == packed->nbytes);
            CHECK(memcmp(q.codes.data(), packed->file->data + packed->offset, packed->nbytes) == 0);
        }
    }
}

TEST_CASE("convert quantized: a 4-bit weight's quant state and absmax in another shard than its codes") {
    // A checkpoint sharded by tensor order (transformers < 4.50, other tools) can split a Linear4bit's
    // tensors at a shard boundary: the quant state must be read from its own file.
    const std::vector<StEntry> all = raw_tensors(kQDir + "bnb_nf4_dq");
    std::vector<StEntry> codes, side;
    for (const StEntry& e : all)
        (contains(e.name, ".quant_state.") || ends_with(e.name, ".absmax") ? side : codes).push_back(e);
    std::string d = variant_copy("bnb_nf4_dq", {}, read_file(kQDir + "bnb_nf4_dq/config.json"));
    std::remove((d + "/model.safetensors").c_str());
    write_safetensors(d + "/model-00001-of-00002.safetensors", codes);
    write_safetensors(d + "/model-00002-of-00002.safetensors", side);
    std::string index = "{\"metadata\": {}, \"weight_map\": {";
    for (size_t i = 0; i < all.size(); i++) {
        const bool second = contains(all[i].name, ".quant_state.") || ends_with(all[i].name, ".absmax");
        index += (i ? ", " : "") + json_quote(all[i].name) + ": \"model-0000" + (second ? "2" : "1") + "-of-00002.safetensors\"";
    }
    write_bytes(d + "/model.safetensors.index.json", index + "}}");
    const ImportedModel whole = import_hf_dir(kQDir + "bnb_nf4_dq"), split = import_hf_dir(d);
    REQUIRE(split.params.size() == whole.params.size());
    CHECK(memcmp(split.params.data(), whole.params.data(), whole.params.size() * 4) == 0);
}

TEST_CASE("convert quantized: activation and KV-cache scales are left out") {
    // llm-compressor's static activation scales (input_scale), its kv_cache_scheme's
    // self_attn.k_scale / v_scale and transformers' static FP8 activation_scale steer 8-bit inference
    // only: the weights are the same as without them.
    std::vector<StEntry> t = raw_tensors(kQDir + "ct_fp8_channel");
    const std::string bf16_one("\x80\x3f", 2);
    for (int l = 0; l < 2; l++) {
        const std::string p = "model.layers." + std::to_string(l) + ".self_attn.";
        t.push_back({p + "k_scale", "BF16", {}, bf16_one});
        t.push_back({p + "v_scale", "BF16", {}, bf16_one});
        t.push_back({p + "q_proj.input_scale", "BF16", {1}, bf16_one});
        t.push_back({p + "o_proj.activation_scale", "BF16", {}, bf16_one});
    }
    std::string cfg = read_file(kQDir + "ct_fp8_channel/config.json");
    const std::string kv = "\"kv_cache_scheme\": {\"num_bits\": 8, \"type\": \"float\", \"strategy\": \"tensor\", \"dynamic\": false, \"symmetric\": true}";
    REQUIRE(contains(cfg, "\"kv_cache_scheme\": null"));
    cfg.replace(cfg.find("\"kv_cache_scheme\": null"), 23, kv);
    const ImportedModel plain = import_hf_dir(kQDir + "ct_fp8_channel"), scaled = import_hf_dir(variant_copy("ct_fp8_channel", t, cfg));
    REQUIRE(scaled.params.size() == plain.params.size());
    CHECK(memcmp(scaled.params.data(), plain.params.data(), plain.params.size() * 4) == 0);
    // not in an unquantized checkpoint, where such a tensor is an unknown part of the model
    std::vector<StEntry> bf16 = raw_tensors(kDir + "tiny_llama_hf");
    bf16.push_back({"model.layers.0.self_attn.k_scale", "BF16", {}, bf16_one});
    std::string d = copy_hf_dir(kDir + "tiny_llama_hf/", bf16);
    CHECK(contains(error_of([&] { import_hf_dir(d); }), "tensor model.layers.0.self_attn.k_scale is not part of the model"));
}

TEST_CASE("convert quantized: FP8 with one scale per tensor (weight_block_size null, AutoFP8)") {
    // transformers' FineGrainedFP8Config(weight_block_size=None) stores one weight_scale_inv per
    // tensor and, for static activations, activation_scale; AutoFP8's checkpoints (neuralmagic's first
    // -FP8 models: no weight_block_size) a scalar MODULE.weight_scale and input_scale.
    const std::string cfg = read_file(kQDir + "fp8/config.json");
    const size_t at = cfg.find("\"weight_block_size\"");
    REQUIRE(at != std::string::npos);
    const size_t end = cfg.find(']', at) + 1;
    const std::string null_block = cfg.substr(0, at) + "\"weight_block_size\": null" + cfg.substr(end);
    const std::string no_block = cfg.substr(0, cfg.rfind(',', at)) + cfg.substr(end);
    const float half = 0.5f;
    const std::string f32_half((const char*)&half, 4);
    for (const bool autofp8 : {false, true}) {
        INFO("autofp8 " << autofp8);
        std::vector<StEntry> t;
        for (StEntry e : raw_tensors(kQDir + "fp8")) {
            if (ends_with(e.name, "_scale_inv")) {
                const std::string module = e.name.substr(0, e.name.size() - 17);
                t.push_back({autofp8 ? module + ".weight_scale" : e.name, "F32", {}, f32_half});
                t.push_back({module + (autofp8 ? ".input_scale" : ".activation_scale"), "F32", {}, f32_half});
            } else {
                t.push_back(e);
            }
        }
        const ImportedModel m = import_hf_dir(variant_copy("fp8", t, autofp8 ? no_block : null_block));
        CHECK(m.quantization == "FP8 E4M3 with a scale per tensor");
        const StEntry& codes = entry(t, kChecked[1]);
        const float* got = param(m, kChecked[1]);
        size_t differ = 0;
        for (size_t i = 0; i < codes.bytes.size(); i++) differ += got[i] != f8e4m3_to_f32((uint8_t)codes.bytes[i]) * 0.5f;
        CHECK(differ == 0);
    }
}

TEST_CASE("convert quantized: other methods and damaged layouts fail naming the key or tensor") {
    const std::string cfg4 = read_file(kQDir + "bnb_nf4_dq/config.json");
    auto error_with = [&](const std::string& variant, const std::vector<StEntry>& tensors, const std::string& config) {
        return error_of([&] { import_hf_dir(variant_copy(variant, tensors, config)); });
    };
    std::vector<StEntry> t4 = raw_tensors(kQDir + "bnb_nf4_dq");
    const std::string q = "model.layers.0.self_attn.q_proj.weight";

    std::string hqq = cfg4;
    hqq.replace(hqq.find("\"bitsandbytes\""), 14, "\"hqq\"");
    std::string e = error_with("bnb_nf4_dq", t4, hqq);
    CHECK(contains(e, "quantization_config.quant_method is 'hqq'"));
    CHECK(contains(e, "unquantized BF16/FP16 safetensors"));
    const std::string cfgg = read_file(kQDir + "gptq_w4/config.json");
    CHECK(contains(error_with("gptq_w4", raw_tensors(kQDir + "gptq_w4"), patched(cfgg, "\"bits\": 4", "\"bits\": 3")),
                   "quantization_config.bits is 3: gptq checkpoints of 2, 4 or 8 bits are read"));
    CHECK(contains(error_with("gptq_w4", raw_tensors(kQDir + "gptq_w4"), patched(cfgg, "\"checkpoint_format\": \"gptq\"",
                                                                                 "\"checkpoint_format\": \"marl\"")),
                   "checkpoint_format is 'marl': GPTQ's gptq and gptq_v2 layouts are read"));
    std::vector<StEntry> bad_g = raw_tensors(kQDir + "gptq_w4_asym_actorder");
    entry(bad_g, "model.layers.0.self_attn.q_proj.g_idx").bytes[0] = 9;  // input 0 in group 9 of 2
    CHECK(contains(error_with("gptq_w4_asym_actorder", bad_g, read_file(kQDir + "gptq_w4_asym_actorder/config.json")),
                   "q_proj.g_idx: input 0 is in group 9, not one of the 2"));
    std::vector<StEntry> no_zeros = raw_tensors(kQDir + "awq_w4");
    no_zeros.erase(std::find_if(no_zeros.begin(), no_zeros.end(),
                                [&](const StEntry& x) { return x.name == "model.layers.0.self_attn.q_proj.qzeros"; }));
    CHECK(contains(error_with("awq_w4", no_zeros, read_file(kQDir + "awq_w4/config.json")),
                   "q_proj.qweight is packed but model.layers.0.self_attn.q_proj.qzeros is missing beside it"));

    std::vector<StEntry> no_map = t4;
    no_map.erase(std::find_if(no_map.begin(), no_map.end(), [&](const StEntry& x) { return x.name == q + ".quant_map"; }));
    CHECK(contains(error_with("bnb_nf4_dq", no_map, cfg4), "has a 4-bit quant state but no " + q + ".quant_map beside it"));

    std::vector<StEntry> short_absmax = t4;
    StEntry& a = entry(short_absmax, q + ".absmax");
    a.bytes.pop_back();
    a.shape[0]--;
    CHECK(contains(error_with("bnb_nf4_dq", short_absmax, cfg4), "must hold 25 U8 codes, one per block of 64"));

    std::vector<StEntry> no_nested = t4;
    for (const char* part : {".nested_absmax", ".nested_quant_map"})
        no_nested.erase(std::find_if(no_nested.begin(), no_nested.end(), [&](const StEntry& x) { return x.name == q + part; }));
    CHECK(contains(error_with("bnb_nf4_dq", no_nested, cfg4), q + ".absmax holds 8-bit codes (double quantization) but " + q +
                                                                  ".nested_absmax and " + q + ".nested_quant_map are missing"));

    std::vector<StEntry> bad_state = t4;
    StEntry& s = entry(bad_state, q + ".quant_state.bitsandbytes__nf4");
    s.bytes = patched(s.bytes, "\"nf4\"", "\"fp4\"");
    CHECK(contains(error_with("bnb_nf4_dq", bad_state, cfg4), "\"quant_type\" must be \"nf4\", as its name says"));

    std::vector<StEntry> no_state = t4;  // codes without their state: not read as a plain tensor
    no_state.erase(std::find_if(no_state.begin(), no_state.end(),
                                [&](const StEntry& x) { return x.name == q + ".quant_state.bitsandbytes__nf4"; }));
    CHECK(contains(error_with("bnb_nf4_dq", no_state, cfg4), "is U8 without the side tensors that dequantize it"));

    std::vector<StEntry> t8 = raw_tensors(kQDir + "bnb_int8");
    entry(t8, "model.layers.0.self_attn.q_proj.weight_format").bytes = std::string(1, '\2');
    CHECK(contains(error_with("bnb_int8", t8, read_file(kQDir + "bnb_int8/config.json")),
                   "q_proj.weight_format is not 0: only the row-major layout"));

    const std::string cfg8 = read_file(kQDir + "fp8/config.json");
    const std::string wide = patched(cfg8, "[\n      4,", "[\n      8,");
    CHECK(contains(error_with("fp8", raw_tensors(kQDir + "fp8"), wide), "q_proj.weight_scale_inv must be [5, 10]: one scale per 8 x 4 block of"));
    const std::string cfgct = read_file(kQDir + "ct_fp8_channel/config.json");
    const std::vector<StEntry> tct = raw_tensors(kQDir + "ct_fp8_channel");
    CHECK(contains(error_with("ct_fp8_channel", tct, patched(cfgct, "\"float-quantized\"", "\"sparse-bitmask\" ")),
                   "quantization_config.format is 'sparse-bitmask': of compressed-tensors checkpoints ./convert reads"));
    CHECK(contains(error_with("ct_fp8_channel", tct, patched(cfgct, "\"symmetric\": true", "\"symmetric\":false",
                                                                  cfgct.find("\"weights\""))),
                   "weights.symmetric is false: weights with zero points are read packed only"));
    const std::string cfgw4 = read_file(kQDir + "ct_w4_asym/config.json");
    std::vector<StEntry> tw4 = raw_tensors(kQDir + "ct_w4_asym");
    const std::string qz = "model.layers.0.self_attn.q_proj.weight_zero_point";
    tw4.erase(std::find_if(tw4.begin(), tw4.end(), [&](const StEntry& x) { return x.name == qz; }));
    CHECK(contains(error_with("ct_w4_asym", tw4, cfgw4), "q_proj.weight_packed is packed but " + qz + " is missing beside it"));
    std::vector<StEntry> short_rows = raw_tensors(kQDir + "ct_w4_group");
    StEntry& packed = entry(short_rows, "model.layers.0.self_attn.q_proj.weight_packed");
    packed.shape[0]--;
    packed.bytes.resize(packed.bytes.size() - 4 * packed.shape[1]);
    CHECK(contains(error_with("ct_w4_group", short_rows, read_file(kQDir + "ct_w4_group/config.json")),
                   "q_proj.weight_packed must be I32 [40, 5]: 40 x 40 values of 4 bits packed into 32-bit words"));
    CHECK(contains(error_with("ct_fp8_channel", tct, patched(cfgct, "\"strategy\": \"channel\"", "\"strategy\": \"tensor\" ")),
                   "q_proj.weight_scale must be [1, 1]: one scale per 40 x 40 block of"));
    std::vector<StEntry> zero_point = tct;
    zero_point.push_back({"model.layers.0.self_attn.q_proj.weight_zero_point", "BF16", {40, 1}, std::string(80, '\0')});
    CHECK(contains(error_with("ct_fp8_channel", zero_point, cfgct), "q_proj.weight_zero_point: weights with zero points"));
    const std::string none = patched(cfg8, "\"fp8\"", "\"xyz\"");
    CHECK(contains(error_with("fp8", raw_tensors(kQDir + "fp8"), none), "quant_method is 'xyz'"));
}

TEST_CASE("convert quantized: FP8 E4M3 decodes every byte as PyTorch's float8_e4m3fn") {
    CHECK(f8e4m3_to_f32(0x00) == 0.0f);
    CHECK(std::signbit(f8e4m3_to_f32(0x80)));
    CHECK(f8e4m3_to_f32(0x01) == std::ldexp(1.0f, -9));   // the smallest subnormal
    CHECK(f8e4m3_to_f32(0x07) == 7 * std::ldexp(1.0f, -9));
    CHECK(f8e4m3_to_f32(0x08) == std::ldexp(1.0f, -6));   // the smallest normal
    CHECK(f8e4m3_to_f32(0x38) == 1.0f);
    CHECK(f8e4m3_to_f32(0x7E) == 448.0f);                  // the largest
    CHECK(f8e4m3_to_f32(0xFE) == -448.0f);
    CHECK(std::isnan(f8e4m3_to_f32(0x7F)));
    CHECK(std::isnan(f8e4m3_to_f32(0xFF)));
}
