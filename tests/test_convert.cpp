// ./convert's readers: GGUF metadata and dequantisation against the PyPI `gguf` package, the same tiny
// model imported from GGUF / HF / sharded HF, and bad inputs failing with messages that name the problem.
// Fixtures: tests/fixtures/convert/gen_convert_fixtures.py.
#include <doctest/doctest.h>

#include <algorithm>
#include <cmath>
#include <cstring>
#include <functional>
#include <sys/stat.h>
#include <unistd.h>

#include "data/json.h"
#include "model/dequant.h"
#include "model/export_gguf.h"
#include "model/export_hf.h"
#include "model/gguf.h"
#include "model/import.h"
#include "model/model.h"
#include "model/safetensors.h"
#include "model/util.h"
#include "test_convert_util.h"
#include "test_util.h"

TEST_CASE("gguf: metadata of every value type, nested arrays skipped, custom alignment") {
    GgufFile g = gguf_open(kDir + "quants.gguf");
    CHECK(g.version == 3);
    CHECK(g.alignment == 64);
    CHECK(g.get_string("general.architecture") == "test");
    CHECK(g.get_int("test.u8") == 200);
    CHECK(g.get_int("test.i8") == -100);
    CHECK(g.get_int("test.u16") == 60000);
    CHECK(g.get_int("test.i16") == -30000);
    CHECK(g.get_int("test.u32") == 4000000000LL);
    CHECK(g.get_int("test.i32") == -2000000000LL);
    CHECK(g.get_float("test.f32") == 0.25);
    CHECK((uint64_t)g.get_int("test.u64") == (1ull << 63) + 5);
    CHECK(g.get_int("test.i64") == -(1LL << 40));
    CHECK(g.get_float("test.f64") == 1e-300);
    CHECK(g.get_int("test.bool") == 1);
    CHECK(g.get_string("test.str") == "h\xc3\xa9llo \xed\x95\x9c\xea\xb5\xad\xec\x96\xb4");
    CHECK(g.get_strings("test.arr_str") == std::vector<std::string>{"a", "", "\xc4\xa0the", "<|im_end|>"});
    CHECK(g.get_ints("test.arr_i32") == std::vector<int64_t>{1, -2, 3});
    CHECK(g.find("test.arr_f32")->floats == std::vector<double>{0.5, -1.5});
    CHECK(g.find("test.arr_arr")->type == GGUF_ARRAY);
    CHECK(g.get_string("test.after_nested") == "still parsed");
    CHECK(g.get_int("test.missing", 7) == 7);

    CHECK(contains(error_of([&] { g.get_int("test.str"); }), "test.str is a string, expected an integer"));
    CHECK(contains(error_of([&] { g.get_strings("test.arr_i32"); }), "test.arr_i32 is an array of int32, expected an array of strings"));
    CHECK(contains(error_of([&] { g.get_float("nope"); }), "metadata key nope is missing"));
    for (const GgufTensor& t : g.tensors) CHECK(t.offset % 64 == 0);
}

TEST_CASE("dequant: every supported GGML type equals the gguf package's numpy dequantiser") {
    GgufFile g = gguf_open(kDir + "quants.gguf");
    for (const char* type : {"F32", "F16", "BF16", "Q8_0", "Q4_0", "Q4_1", "Q5_0", "Q5_1", "Q4_K", "Q5_K", "Q6_K"}) {
        const GgufTensor* t = g.find_tensor(type);
        const GgufTensor* want = g.find_tensor(std::string(type) + ".expected");
        INFO(std::string(type));
        REQUIRE(t);
        REQUIRE(want);
        CHECK(std::string(ggml_type_name(t->type)) == type);
        CHECK(t->shape() == std::vector<int64_t>{2, 256});
        std::vector<float> got(t->numel), ref(want->numel);
        g.read_f32(*t, got.data());
        g.read_f32(*want, ref.data());
        double worst = 0;
        for (size_t i = 0; i < got.size(); i++) worst = std::max(worst, std::fabs((double)got[i] - ref[i]) / std::max(1.0f, std::fabs(ref[i])));
        CHECK(worst <= 1e-6);  // the same float operations; only FMA contraction could change a last bit
        if (t->type != GGML_Q4_K && t->type != GGML_Q5_K && t->type != GGML_Q6_K)  // quantised from data whose row 1 starts with 32 zeros
            for (int i = 256; i < 288; i++) CHECK(got[i] == 0.0f);
    }
}

TEST_CASE("dequant: half floats, including subnormals, infinities and NaN") {
    CHECK(f16_to_f32(0x3C00) == 1.0f);
    CHECK(f16_to_f32(0xC000) == -2.0f);
    CHECK(f16_to_f32(0x7BFF) == 65504.0f);
    CHECK(f16_to_f32(0x0001) == std::ldexp(1.0f, -24));  // smallest subnormal
    CHECK(f16_to_f32(0x03FF) == std::ldexp(1023.0f, -24));  // largest subnormal
    CHECK(f16_to_f32(0x0400) == std::ldexp(1.0f, -14));  // smallest normal
    CHECK(std::signbit(f16_to_f32(0x8000)));
    CHECK(std::isinf(f16_to_f32(0x7C00)));
    CHECK(std::isnan(f16_to_f32(0x7E00)));
}

TEST_CASE("quant: FP32 to half rounds to nearest even; Q8_0 blocks as llama.cpp's reference quantiser") {
    for (uint32_t h = 0; h < 0x10000; h++) {  // every half that is a number comes back to itself
        float f = f16_to_f32((uint16_t)h);
        if (!std::isnan(f)) REQUIRE(f32_to_f16(f) == h);
    }
    CHECK(f32_to_f16(1.0f + std::ldexp(1.0f, -11)) == 0x3C00);      // tie: to the even 1.0
    CHECK(f32_to_f16(1.0f + 3 * std::ldexp(1.0f, -11)) == 0x3C02);  // tie: up to the even neighbour
    CHECK(f32_to_f16(1.0f + std::ldexp(1.0f, -11) + std::ldexp(1.0f, -20)) == 0x3C01);  // just above the tie
    CHECK(f32_to_f16(std::ldexp(1.0f, -25)) == 0x0000);              // subnormal tie to even zero
    CHECK(f32_to_f16(3 * std::ldexp(1.0f, -25)) == 0x0002);
    CHECK(f32_to_f16(std::ldexp(1023.5f, -24)) == 0x0400);            // rounds up into the smallest normal
    CHECK(f32_to_f16(65519.0f) == 0x7BFF);
    CHECK(f32_to_f16(65520.0f) == 0x7C00);                            // half an ulp past 65504: infinity
    CHECK(f32_to_f16(-1e30f) == 0xFC00);
    CHECK(std::isnan(f16_to_f32(f32_to_f16(std::nanf("")))));

    std::vector<float> x(64);
    for (int i = 0; i < 64; i++) x[i] = (i < 32 ? 0.37f : -5.1f) * std::sin(0.7f * (float)i + 0.3f);
    x[40] = -5.1f * 1.0f;  // the block's max |x| is negative: q = -127
    std::vector<uint8_t> q(2 * 34);
    ggml_quantize(GGML_Q8_0, x.data(), q.data(), 64);
    std::vector<float> y(64);
    ggml_dequantize(GGML_Q8_0, q.data(), y.data(), 64);
    CHECK((int8_t)q[34 + 2 + 8] == -127);
    for (int b = 0; b < 2; b++) {
        float amax = 0;
        for (int i = 0; i < 32; i++) amax = std::max(amax, std::fabs(x[32 * b + i]));
        const float d = f16_to_f32((uint16_t)(q[34 * b] | q[34 * b + 1] << 8));
        CHECK(d == f16_to_f32(f32_to_f16(amax / 127.0f)));
        for (int i = 0; i < 32; i++) {
            CHECK((int8_t)q[34 * b + 2 + i] == (int)std::round(x[32 * b + i] * (127.0f / amax)));
            CHECK(std::fabs(y[32 * b + i] - x[32 * b + i]) <= 0.5f * d + 1e-3f * amax);  // half a step, and d's rounding
        }
    }
}

TEST_CASE("import: a tiny LLaMA from GGUF (permuted q/k), HF safetensors and sharded F16 HF agree exactly") {
    ImportedModel g = import_gguf(kDir + "tiny_llama.gguf");
    ImportedModel h = import_hf_dir(kDir + "tiny_llama_hf");
    ImportedModel s = import_hf_dir(kDir + "tiny_llama_sharded");
    CHECK(g.cfg.describe() == "dim 16, 2 layers, 4/2 heads of 4, ffn 24, vocab 300, 0.0M params");
    CHECK(g.cfg.rope_theta == 50000.0f);
    CHECK(g.cfg.norm_eps == 1e-6f);
    CHECK(g.cfg.max_seq_len == 128);
    CHECK(g.cfg.tied_embeddings == 0);
    CHECK(g.tok.bos_id == 1);
    CHECK(g.tok.eos_id == 2);
    CHECK(g.tok.chat_template.kind == ChatTemplateKind::ChatML);
    check_same_model(g, h);
    check_same_model(g, s);
    CHECK(encode(g.tok, "the quick brown fox, 1234") == encode(h.tok, "the quick brown fox, 1234"));
}

TEST_CASE("import: a tiny Qwen2 (q/k/v bias, tied, rope_parameters) from GGUF and HF agree exactly") {
    ImportedModel g = import_gguf(kDir + "tiny_qwen2.gguf");
    ImportedModel h = import_hf_dir(kDir + "tiny_qwen2_hf");
    CHECK(g.cfg.qkv_bias == 1);
    CHECK(g.cfg.tied_embeddings == 1);
    CHECK(h.cfg.rope_theta == 1000000.0f);
    check_same_model(g, h);
}

TEST_CASE("import: a tiny Qwen3 (QK-norm, head_dim 8 with hidden 16 / 4 heads) from GGUF and HF agree exactly; "
          "its logits are transformers'") {
    ImportedModel g = import_gguf(kDir + "tiny_qwen3.gguf");
    ImportedModel h = import_hf_dir(kDir + "tiny_qwen3_hf");
    CHECK(h.cfg.qk_norm == 1);
    CHECK(h.cfg.qkv_bias == 0);
    CHECK(h.cfg.head_dim == 8);
    CHECK(h.cfg.rope_theta == 1000000.0f);
    check_same_model(g, h);
    // transformers' Qwen3ForCausalLM (FP32, eager attention) on the same weights and ids; the norm
    // weights count: with layer 0's q_norm weight set to ones the logits move far.
    check_transformers_logits(h, kDir + "tiny_qwen3_logits.json", "tiny Qwen3", [](Model& m) {
        for (int i = 0; i < m.cfg.head_dim; i++) m.params[m.off.layers[0].q_norm + i] = 1.0f;
    });
}

TEST_CASE("import: a tiny SmolLM3 (NoPE in its 4th layer) from GGUF (q/k permuted) and HF agree; its logits are "
          "transformers'") {
    ImportedModel g = import_gguf(kDir + "tiny_smollm3.gguf");
    ImportedModel h = import_hf_dir(kDir + "tiny_smollm3_hf");
    CHECK(h.cfg.nope_interval == 4);
    CHECK(g.cfg.nope_interval == 4);
    CHECK(!h.cfg.rope_in_layer(3));
    CHECK(h.cfg.rope_in_layer(2));
    check_same_model(g, h);
    // With RoPE in every layer the logits are another model's
    check_transformers_logits(h, kDir + "tiny_smollm3_logits.json", "tiny SmolLM3", [](Model& m) { m.cfg.nope_interval = 0; });
}

TEST_CASE("import: SmolLM3's config.json as transformers reads it: tied without the key, a longer no_rope_layers, "
          "another pattern refused") {
    const std::string src = kDir + "tiny_smollm3_hf/";
    auto with_config = [&](const std::string& from, std::string to) {  // `to` padded with JSON spaces
        const std::string d = copy_hf_dir(src, hf_tensors(src));
        to.resize(from.size(), ' ');
        write_bytes(d + "/config.json", patched(read_file(src + "config.json"), from, to));
        return d;
    };
    // transformers' SmolLM3Config ties the head when the key is absent
    ImportedModel untold = import_hf_dir(with_config("\"tie_word_embeddings\": true,", ""));
    CHECK(untold.cfg.tied_embeddings == 1);
    // transformers reads entry l for layer l of a list that may be longer
    const std::string list = "[\n  1,\n  1,\n  1,\n  0\n ]";
    CHECK(import_hf_dir(with_config(list, "[1, 1, 1, 0, 1]")).cfg.nope_interval == 4);
    CHECK(contains(error_of([&] { import_hf_dir(with_config(list, "[1, 1, 0, 1]")); }),
                   "no_rope_layers[2] is not 1: only NoPE in every 4-th layer"));
}

TEST_CASE("export: a tiny LLaMA, Qwen2, Qwen3, SmolLM3 and Gemma 3 out to a Hugging Face directory and back: the same "
          "model (BF16: rounded)") {
    for (const char* src : {"tiny_llama_hf", "tiny_qwen2_hf", "tiny_qwen3_hf", "tiny_smollm3_hf", "tiny_gemma3_hf",
                            "tiny_gemma3_scaled_hf"}) {
        CAPTURE(src);
        ImportedModel a = import_hf_dir(kDir + src);
        std::string d = temp_dir() + "/hf";
        export_hf_dir(d, a.cfg, a.params, a.tok, DType::F32);
        ImportedModel b = import_hf_dir(d);
        check_same_model(a, b);
        CHECK(b.cfg.head_dim == a.cfg.head_dim);
        CHECK(b.cfg.tied_embeddings == a.cfg.tied_embeddings);
        CHECK(b.cfg.qkv_bias == a.cfg.qkv_bias);
        CHECK(b.cfg.qk_norm == a.cfg.qk_norm);
        CHECK(b.cfg.nope_interval == a.cfg.nope_interval);
        CHECK(b.cfg.describe() == a.cfg.describe());
        CHECK(b.cfg.attn_scale() == a.cfg.attn_scale());
        CHECK(b.cfg.rope_local_theta == a.cfg.rope_local_theta);
        CHECK(b.cfg.rope_scale_factor == a.cfg.rope_scale_factor);
        const std::string arch = a.cfg.architecture(src);
        CHECK(contains(read_file(d + "/config.json"), "\"model_type\": \"" + (arch == "gemma3" ? "gemma3_text" : arch) + "\""));
        CHECK(b.tok.chat_template.default_system == a.tok.chat_template.default_system);
        CHECK(encode(b.tok, "the quick brown fox, 1234 <|im_end|>") == encode(a.tok, "the quick brown fox, 1234 <|im_end|>"));

        export_hf_dir(d, a.cfg, a.params, a.tok, DType::BF16);  // over the F32 export
        ImportedModel c = import_hf_dir(d);
        // Rounded as the file holds them: Gemma's norms as w, not our 1 + w
        if (arch == "gemma3") gemma_norm_shift(a.cfg, a.params, -1.0f);
        for (float& v : a.params) v = bf16_to_f32(f32_to_bf16(v));
        if (arch == "gemma3") gemma_norm_shift(a.cfg, a.params, 1.0f);
        check_same_model(a, c);
        CHECK(contains(read_file(d + "/config.json"), "\"torch_dtype\": \"bfloat16\""));
    }
    ImportedModel a = import_hf_dir(kDir + "tiny_llama_hf");
    const std::string d = temp_dir();  // another model's file in the directory: refused, nothing written
    write_bytes(d + "/model.safetensors.index.json", "{}");
    CHECK(error_of([&] { export_hf_dir(d, a.cfg, a.params, a.tok, DType::F32); }) ==
          d + " already holds model.safetensors.index.json: export into a new or empty directory");
    CHECK(!file_exists(d + "/config.json"));
    a.params.pop_back();
    CHECK(contains(error_of([&] { export_hf_dir(temp_dir() + "/x", a.cfg, a.params, a.tok, DType::F32); }),
                   "weights given, the config needs"));
}

TEST_CASE("export: a tiny LLaMA and SmolLM3 (q/k permuted back), Qwen2, Qwen3 and Gemma 3 out to GGUF and back: the "
          "same model; F16/Q8_0 rounded") {
    for (const char* src : {"tiny_llama.gguf", "tiny_qwen2.gguf", "tiny_qwen3.gguf", "tiny_smollm3.gguf", "tiny_gemma3.gguf"}) {
        CAPTURE(src);
        ImportedModel a = import_gguf(kDir + src);
        const std::string path = temp_dir() + "/m.gguf";
        export_gguf(path, a.cfg, a.params, a.tok, GGML_F32);
        check_same_model(a, import_gguf(path));
        CHECK(import_gguf(path).cfg.describe() == a.cfg.describe());
        GgufFile g = gguf_open(path);
        CHECK(g.get_string("general.architecture") == a.cfg.architecture(src));
        CHECK(g.get_string("tokenizer.chat_template") == chat_template_to_jinja(a.tok.chat_template));
        CHECK(g.get_int("tokenizer.ggml.add_bos_token") == 0);

        export_gguf(path, a.cfg, a.params, a.tok, GGML_F16);  // dim 16: every matrix in F16
        ImportedModel h = import_gguf(path);
        ParamLayout L = param_layout(a.cfg);
        size_t differ = 0;
        for (const TensorInfo& t : L.tensors)
            for (size_t i = t.offset; i < t.offset + t.numel; i++)
                differ += h.params[i] != (t.shape.size() == 1 ? a.params[i] : f16_to_f32(f32_to_f16(a.params[i])));
        CHECK(differ == 0);
        CHECK(gguf_open(path).get_int("general.file_type") == 1);
    }
    // Q8_0 where the rows are whole blocks of 32 (dim 64), F16 where not (ffn 48: down_proj's rows);
    // 4 embedding rows past the tokenizer's 300 tokens get unused [PAD<id>] tokens.
    ImportedModel a = import_gguf(kDir + "tiny_llama.gguf");
    a.cfg.dim = 64, a.cfg.ffn_dim = 48, a.cfg.head_dim = 16, a.cfg.vocab_size = 304;
    model_init_random(a.cfg, a.params, 5);
    const std::string path = temp_dir() + "/q8.gguf";
    export_gguf(path, a.cfg, a.params, a.tok, GGML_Q8_0);
    GgufFile g = gguf_open(path);
    CHECK(g.find_tensor("blk.0.attn_q.weight")->type == GGML_Q8_0);
    CHECK(g.find_tensor("blk.0.ffn_down.weight")->type == GGML_F16);
    CHECK(g.find_tensor("blk.0.attn_norm.weight")->type == GGML_F32);
    ImportedModel b = import_gguf(path);
    double worst = 0;
    for (size_t i = 0; i < a.params.size(); i++) worst = std::max(worst, (double)std::fabs(b.params[i] - a.params[i]));
    CHECK(worst <= 0.16 / 254);  // half a Q8_0 step, max|w| / 254, with |w| under 8 sigma of N(0, 0.02²)
    REQUIRE(b.tok.vocab.size() == 304);
    CHECK(std::equal(a.tok.vocab.begin(), a.tok.vocab.end(), b.tok.vocab.begin()));
    CHECK(b.tok.vocab[302] == "[PAD302]");
    CHECK(b.tok.token_type[302] == TokenType::Unused);
    CHECK(encode(b.tok, "the quick brown fox [PAD302]") == encode(a.tok, "the quick brown fox [PAD302]"));
    CHECK(g.get_int("tokenizer.ggml.add_bos_token") == 0);  // ChatML: no BOS
    for (ChatTemplateKind k : {ChatTemplateKind::Llama3, ChatTemplateKind::Llama31}) {  // their templates start with BOS: llama.cpp adds it
        a.tok.chat_template.kind = k;
        export_gguf(path, a.cfg, a.params, a.tok, GGML_Q8_0);
        CHECK(gguf_open(path).get_int("tokenizer.ggml.add_bos_token") == 1);
    }
    a.params[param_layout(a.cfg).find("model.layers.0.mlp.up_proj.weight")->offset + 3] = 70000.0f;  // beyond half floats: refused for F16, written in BF16
    CHECK(contains(error_of([&] { export_gguf(path, a.cfg, a.params, a.tok, GGML_F16); }), "does not fit F16 (largest 65504): use --dtype bf16 or f32"));
    export_gguf(path, a.cfg, a.params, a.tok, GGML_BF16);
    a.params[5] = std::nanf("");
    CHECK(contains(error_of([&] { export_gguf(path, a.cfg, a.params, a.tok, GGML_Q8_0); }),
                   "model.embed_tokens.weight[5] is nan: the model has non-finite weights, nothing was written"));
    CHECK(contains(error_of([&] { export_hf_dir(temp_dir(), a.cfg, a.params, a.tok, DType::F32); }), "is nan: the model has non-finite"));
    a.params.pop_back();
    CHECK(contains(error_of([&] { export_gguf(path, a.cfg, a.params, a.tok, GGML_Q8_0); }), "weights given, the config needs"));
    CHECK(contains(error_of([&] { export_gguf(path, a.cfg, a.params, a.tok, GGML_Q4_0); }), "GGUF output type Q4_0 is not supported"));
}

TEST_CASE("llama3 RoPE scaling: transformers' frequencies bit for bit, its logits on a tiny scaled LLaMA, and out again") {
    JsonValue fx = json_parse(read_file(kDir + "tiny_llama3_rope/expected.json"));
    auto bits_of = [](const std::vector<float>& f) {
        std::vector<int64_t> b;
        for (float v : f) {
            uint32_t u;
            memcpy(&u, &v, 4);
            b.push_back(u);
        }
        return b;
    };
    auto ints_of = [](const JsonValue& a) {
        std::vector<int64_t> v;
        for (const JsonValue& x : a.array) v.push_back(x.integer);
        return v;
    };
    ModelConfig l32 = config_preset("llama-3.2-1b");  // Llama-3.2-1B's own scaling: factor 32, 1, 4, 8192
    CHECK(l32.rope_scale_factor == 32.0f);
    CHECK(bits_of(rope_inv_freq(l32)) == ints_of(*fx.get("llama32_inv_freq_bits")));

    ImportedModel a = import_hf_dir(kDir + "tiny_llama3_rope");  // rope_parameters, as transformers 5 writes it
    CHECK(a.cfg.rope_scale_factor == 4.0f);
    CHECK(a.cfg.rope_original_max_pos == 32);
    CHECK(bits_of(rope_inv_freq(a.cfg)) == ints_of(*fx.get("inv_freq_bits")));
    Model m;
    model_init(m, a.cfg, a.params);
    std::vector<int32_t> ids;
    for (int64_t v : ints_of(*fx.get("ids"))) ids.push_back((int32_t)v);
    const int T = (int)ids.size(), V = a.cfg.vocab_size;
    std::vector<float> logits((size_t)T * V);
    model_logits(m, ids.data(), T, logits.data());
    const std::vector<int64_t> cols = ints_of(*fx.get("columns")), argmax = ints_of(*fx.get("argmax"));
    double worst = 0, unscaled_worst = 0;
    for (int t = 0; t < T; t++) {
        const float* row = logits.data() + (size_t)t * V;
        for (size_t j = 0; j < cols.size(); j++)
            worst = std::max(worst, std::fabs(row[cols[j]] - fx.get("logits")->array[t].array[j].number));
        CHECK(std::max_element(row, row + V) - row == argmax[t]);
    }
    // Without the scaling the same weights give other logits: the fixture does exercise it.
    Model plain;
    ModelConfig pc = a.cfg;
    pc.rope_scale_factor = 0.0f;
    model_init(plain, pc, a.params);
    std::vector<float> plain_logits((size_t)T * V);
    model_logits(plain, ids.data(), T, plain_logits.data());
    for (int t = 0; t < T; t++)
        for (int64_t c : cols)
            unscaled_worst = std::max(unscaled_worst, (double)std::fabs(plain_logits[(size_t)t * V + c] - logits[(size_t)t * V + c]));
    MESSAGE("llama3-scaled tiny LLaMA: max |logit - transformers| " << worst << "; unscaled RoPE would differ by " << unscaled_worst);
    CHECK(worst <= 1e-4);
    CHECK(unscaled_worst > 5e-3);

    // Out and back in: HF (rope_scaling), GGUF (rope_freqs.weight, as llama.cpp's converter writes it), .bin.
    const std::string d = temp_dir();
    export_hf_dir(d + "/hf", a.cfg, a.params, a.tok, DType::F32);
    ImportedModel h = import_hf_dir(d + "/hf");
    export_gguf(d + "/m.gguf", a.cfg, a.params, a.tok, GGML_F32);
    ImportedModel g = import_gguf(d + "/m.gguf");
    model_save(d + "/m.bin", a.cfg, a.params, DType::F32);
    ModelConfig b = model_read_config(d + "/m.bin");
    auto same_scaling = [](const ModelConfig& x, const ModelConfig& y) {
        CHECK(x.rope_scale_factor == y.rope_scale_factor);
        CHECK(x.rope_low_freq_factor == y.rope_low_freq_factor);
        CHECK(x.rope_high_freq_factor == y.rope_high_freq_factor);
        CHECK(x.rope_original_max_pos == y.rope_original_max_pos);
    };
    same_scaling(h.cfg, a.cfg);
    same_scaling(b, a.cfg);
    check_same_model(a, h);
    check_same_model(a, g);
    // GGUF keeps llama.cpp's divisors, not the parameters: with 4 frequencies and none on the ramp any
    // original context between the two ends gives the same frequencies, and import picks one of them.
    CHECK(bits_of(rope_inv_freq(g.cfg)) == bits_of(rope_inv_freq(a.cfg)));
    // At Llama-3.2-1B's head dim, theta and scaling the parameters come back exactly.
    ModelConfig c = a.cfg;
    c.head_dim = 64, c.rope_theta = l32.rope_theta, c.rope_scale_factor = 32.0f, c.rope_original_max_pos = 8192;
    std::vector<float> p;
    model_init_random(c, p, 3);
    export_gguf(d + "/l32.gguf", c, p, a.tok, GGML_F32);
    same_scaling(import_gguf(d + "/l32.gguf").cfg, c);
}

TEST_CASE("model .bin: files of older versions still load: 1 (before RoPE scaling) unscaled, 2 (before QK-norm)") {
    // Written by ./init_model of their day with --seed 7: version 1 from --preset tiny with a small
    // shape, version 2 (built at e8fa65a) from --preset llama-3.2-1b --layers 1 --dim 16 --heads 2
    // --kv-heads 1 --head-dim 8 --ffn 24 --vocab 40, which keeps the llama3 scaling.
    struct Old {
        const char* path;
        const char* describe;
        int32_t original_max_pos;
    };
    for (const Old& o : {Old{"tests/fixtures/model/v1_tiny.bin", "dim 16, 1 layers, 2/1 heads of 8, ffn 24, vocab 40, tied, 0.0M params", 0},
                         Old{"tests/fixtures/model/v2_tiny.bin",
                             "dim 16, 1 layers, 2/1 heads of 8, ffn 24, vocab 40, tied, llama3 RoPE x32, 0.0M params", 8192}}) {
        CAPTURE(o.path);
        ModelConfig c;
        std::vector<float> params;
        model_load(o.path, c, params);
        CHECK(c.describe() == o.describe);
        CHECK(c.rope_original_max_pos == o.original_max_pos);
        CHECK(c.qk_norm == 0);
        std::vector<float> want;
        model_init_random(c, want, 7);
        CHECK(params == want);
    }
}

TEST_CASE("model .bin: version 2 for models without QK-norm or NoPE (older builds read them), 3 with QK-norm, 4 with NoPE, "
          "5 with Gemma 3's fields or a window") {
    const std::string d = temp_dir();
    for (const char* preset : {"tiny", "tiny-qwen3", "tiny-nope", "tiny-gemma3", "tiny-window"}) {
        CAPTURE(preset);
        const std::string name = preset;
        ModelConfig c = config_preset(name == "tiny-nope" || name == "tiny-window" ? "tiny" : preset), back;
        if (name == "tiny-nope") c.nope_interval = 2;
        if (name == "tiny-window") c.sliding_window = 3;
        std::vector<float> p, q;
        model_init_random(c, p, 3);
        model_save(d + "/m.bin", c, p, DType::F32);
        const std::string bytes = read_file(d + "/m.bin");
        uint32_t version;
        memcpy(&version, bytes.data() + 4, 4);
        CHECK(version == (c.sliding_window ? 5u : c.nope_interval ? 4u : c.qk_norm ? 3u : 2u));
        model_load(d + "/m.bin", back, q);
        CHECK(back.describe() == c.describe());
        CHECK(q == p);
    }
}

TEST_CASE("import: BF16 and F16 safetensors, and bad safetensors files") {
    std::string d = temp_dir();
    // 1.5 and -2.25 in each format: BF16 is the top half of the FP32 bits, F16 its own layout.
    uint16_t bf[2] = {0x3FC0, 0xC010}, hf[2] = {0x3E00, 0xC080};
    float f32[2] = {1.5f, -2.25f};
    write_safetensors(d + "/a.safetensors", {{"bf", "BF16", {2}, std::string((const char*)bf, 4)},
                                             {"hf", "F16", {1, 2}, std::string((const char*)hf, 4)},
                                             {"f", "F32", {2, 1}, std::string((const char*)f32, 8)},
                                             {"i", "I64", {1}, std::string(8, '\0')}});
    SafetensorsSet set;
    safetensors_add_file(set, d + "/a.safetensors");
    for (const char* name : {"bf", "hf", "f"}) {
        float v[2];
        set.read_f32(*set.find(name), v);
        CHECK(v[0] == 1.5f);
        CHECK(v[1] == -2.25f);
    }
    CHECK(contains(error_of([&] { float v; set.read_f32(*set.find("i"), &v); }), "tensor i has dtype I64"));
    CHECK(contains(error_of([&] { safetensors_add_file(set, d + "/a.safetensors"); }), "tensor bf is also in another shard"));

    std::string good = read_file(d + "/a.safetensors");
    write_bytes(d + "/cut.safetensors", good.substr(0, good.size() - 1));
    CHECK(contains(error_of([&] { SafetensorsSet s; safetensors_add_file(s, d + "/cut.safetensors"); }), "truncated or corrupt: tensor"));
    write_bytes(d + "/short.safetensors", good.substr(0, 5));
    CHECK(contains(error_of([&] { SafetensorsSet s; safetensors_add_file(s, d + "/short.safetensors"); }), "truncated"));
    write_bytes(d + "/huge.safetensors", std::string("\xff\xff\xff\xff\0\0\0\0{}", 10));
    CHECK(contains(error_of([&] { SafetensorsSet s; safetensors_add_file(s, d + "/huge.safetensors"); }), "not a safetensors file"));
    write_safetensors(d + "/size.safetensors", {{"w", "F32", {3}, std::string(8, '\0')}});
    CHECK(contains(error_of([&] { SafetensorsSet s; safetensors_add_file(s, d + "/size.safetensors"); }), "tensor w: 8 data bytes do not match its shape"));
}

TEST_CASE("import: bad HF directories name the key or tensor") {
    const std::string src = kDir + "tiny_llama_hf/";
    std::vector<StEntry> all = hf_tensors(src);

    // BF16 storage: the values are rounded to BF16 and otherwise the same model.
    std::vector<StEntry> bf = all;
    for (StEntry& e : bf) {
        std::string out;
        for (size_t i = 0; i < e.bytes.size(); i += 4) {
            float x;
            memcpy(&x, e.bytes.data() + i, 4);
            uint16_t b = f32_to_bf16(x);
            out.append((const char*)&b, 2);
        }
        e.dtype = "BF16", e.bytes = out;
    }
    ImportedModel ref = import_hf_dir(src), m = import_hf_dir(copy_hf_dir(src, bf));
    size_t differ = 0;
    for (size_t i = 0; i < ref.params.size(); i++) differ += m.params[i] != bf16_to_f32(f32_to_bf16(ref.params[i]));
    CHECK(differ == 0);

    std::vector<StEntry> missing;
    for (const StEntry& e : all) if (e.name != "model.layers.1.mlp.up_proj.weight") missing.push_back(e);
    CHECK(contains(error_of([&] { import_hf_dir(copy_hf_dir(src, missing)); }), "tensor model.layers.1.mlp.up_proj.weight is missing"));

    std::vector<StEntry> extra = all;
    extra.push_back({"model.layers.0.self_attn.o_proj.bias", "F32", {16}, std::string(64, '\0')});
    CHECK(contains(error_of([&] { import_hf_dir(copy_hf_dir(src, extra)); }), "tensor model.layers.0.self_attn.o_proj.bias is not part of the model"));

    std::vector<StEntry> shape = all;
    for (StEntry& e : shape) if (e.name == "model.norm.weight") e.shape = {4, 4};
    CHECK(contains(error_of([&] { import_hf_dir(copy_hf_dir(src, shape)); }), "tensor model.norm.weight has shape [4, 4], but the model's config needs [16]"));

    std::string d = copy_hf_dir(src, all);
    write_bytes(d + "/config.json", patched(read_file(src + "config.json"), "\"llama\"", "\"gpt_2\""));
    CHECK(contains(error_of([&] { import_hf_dir(d); }), "model_type is 'gpt_2'"));
    write_bytes(d + "/config.json", patched(read_file(src + "config.json"), "\"num_hidden_layers\": 2", "\"num_hidden_layers\": 3"));
    CHECK(contains(error_of([&] { import_hf_dir(d); }), "tensor model.layers.2.input_layernorm.weight is missing"));
    write_bytes(d + "/config.json", "{\"model_type\": \"llama\",}");
    CHECK(contains(error_of([&] { import_hf_dir(d); }), "config.json: line 1"));
    CHECK(contains(error_of([&] { import_model(d + "/nothing"); }), "no such file or directory"));

    // A shard index that points at the wrong shard.
    std::string sh = temp_dir(), sd = kDir + "tiny_llama_sharded/";
    for (const char* f : {"config.json", "tokenizer.json", "tokenizer_config.json", "model-00001-of-00002.safetensors",
                          "model-00002-of-00002.safetensors"})
        write_bytes(sh + "/" + f, read_file(sd + f));
    write_bytes(sh + "/model.safetensors.index.json",
                patched(read_file(sd + "model.safetensors.index.json"), "model-00001-of-00002", "model-00002-of-00002"));
    CHECK(contains(error_of([&] { import_hf_dir(sh); }), "but that shard does not hold it"));
}

TEST_CASE("import: bad GGUF files fail with a message naming the problem, never crash") {
    const std::string good = read_file(kDir + "tiny_llama.gguf");
    std::string d = temp_dir(), p = d + "/m.gguf";
    auto err = [&](const std::string& bytes) {
        write_bytes(p, bytes);
        return error_of([&] { import_gguf(p); });
    };
    CHECK(err(good).empty());
    CHECK(contains(err("GGML" + good.substr(4)), "not a GGUF file (bad magic"));
    CHECK(contains(err(good.substr(0, 4) + std::string("\x01\0\0\0", 4) + good.substr(8)), "GGUF version 1 is not supported"));
    std::string arch_at = "general.architecture";
    CHECK(contains(err(patched(good, "llama", "gpt99", good.find(arch_at))), "general.architecture is 'gpt99'"));
    CHECK(contains(err(patched(good, "blk.1.ffn_up.weight", "blk.1.ffn_xx.weight")),
                   "tensor blk.1.ffn_up.weight (for model.layers.1.mlp.up_proj.weight) is missing"));
    // llama.feed_forward_length: the u32 after the key and its type.
    std::string ffn = "llama.feed_forward_length";
    std::string wrong_ffn = good;
    wrong_ffn[good.find(ffn) + ffn.size() + 4] = 32;
    CHECK(contains(err(wrong_ffn), "tensor blk.0.ffn_gate.weight has shape [24, 16], but the model's config needs [32, 16]"));
    // The ggml type of blk.0.ffn_up.weight (after name, n_dims and two u64 dims) set to Q3_K.
    std::string name = "blk.0.ffn_up.weight";
    std::string q3 = good;
    size_t type_at = good.find(name) + name.size() + 4 + 16;
    q3[type_at] = 11;
    CHECK(contains(err(q3), "tensor blk.0.ffn_up.weight has type Q3_K, which cannot be dequantised"));
    // A metadata count no file could hold.
    std::string huge = good;
    huge[23] = 0x10;
    CHECK(contains(err(huge), "metadata count claims"));
    // Found by fuzzing. A block_count of 2^31 - 1: the first missing tensor is named as with 3 layers,
    // without building a layout of 20 billion tensors first.
    std::string layers = "llama.block_count";
    std::string many_layers = good;
    memcpy(&many_layers[good.find(layers) + layers.size() + 4], "\xff\xff\xff\x7f", 4);
    CHECK(contains(err(many_layers), "tensor blk.2.attn_norm.weight (for model.layers.2.input_layernorm.weight) is missing"));
    // Arrays of arrays 200000 deep (a 2.4 MB file): an error, not a stack overflow in the recursive skip.
    std::string nested = std::string("GGUF\x03\0\0\0", 8) + std::string(8, '\0') + std::string("\x01\0\0\0\0\0\0\0", 8) +
                         std::string("\x01\0\0\0\0\0\0\0k\x09\0\0\0", 13);
    for (int i = 0; i < 200000; i++) nested += std::string("\x09\0\0\0\x01\0\0\0\0\0\0\0", 12);
    nested += std::string(12, '\0');
    CHECK(contains(err(nested), "k has arrays nested more than 16 deep"));
    // Cut anywhere: header, metadata, tensor infos, data. Each must fail cleanly, mostly as truncation.
    int truncated = 0, cuts = 0;
    for (size_t n = 0; n < good.size(); n += 37, cuts++) {
        std::string e = err(good.substr(0, n));
        CHECK(!e.empty());
        truncated += contains(e, "truncated");
    }
    CHECK(truncated == cuts);
}

TEST_CASE("import: the converted default model's tokenizer equals the reference tokenizer.json") {
    const std::string tok_path = "models/smollm2-135m-instruct.tok";
    const std::string ref_path = "../shared/reference/smollm2-135m-instruct/tokenizer.json";
    if (!file_exists(tok_path) || !file_exists(ref_path)) {
        MESSAGE("SKIPPED: needs " << tok_path << " (`make model`) and " << ref_path);
        return;
    }
    Tokenizer ours = tokenizer_load(tok_path), ref = tokenizer_load_hf(ref_path);
    CHECK(ours.vocab == ref.vocab);
    CHECK(ours.token_type == ref.token_type);
    CHECK(ours.merges == ref.merges);
    CHECK(ours.pre == ref.pre);
    CHECK(ours.ignore_merges == ref.ignore_merges);
    CHECK(ours.bos_id == ref.bos_id);
    CHECK(ours.eos_id == ref.eos_id);
    CHECK(ours.pad_id == ref.pad_id);
    CHECK(ours.chat_template.kind == ChatTemplateKind::ChatML);
    CHECK(ours.chat_template.default_system == "You are a helpful AI assistant named SmolLM, trained by Hugging Face");
}
