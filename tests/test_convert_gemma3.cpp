// Gemma 3 (text) and Mistral's sliding window against transformers: tiny random models from
// tests/fixtures/convert/gen_convert_fixtures.py, imported from HF and GGUF, their logits checked
// against the ones transformers wrote (FP32, eager attention), each architectural part shown to matter
// by taking it out, and the configs transformers reads (old and new keys, the multimodal wrapper)
// read as it reads them.
#include <doctest/doctest.h>

#include "kernels/kernels.h"
#include "model/dequant.h"
#include "model/export_gguf.h"
#include "model/export_hf.h"
#include "model/gguf.h"
#include "test_convert_util.h"

TEST_CASE("import: a tiny Gemma 3 from GGUF (norms stored 1 + w) and HF agree; its logits are transformers'; every "
          "part of it counts") {
    ImportedModel g = import_gguf(kDir + "tiny_gemma3.gguf");
    ImportedModel h = import_hf_dir(kDir + "tiny_gemma3_hf");
    const ModelConfig& c = h.cfg;
    CHECK(c.post_norms == 1);
    CHECK(c.mlp_act == GLU_GELU_TANH);
    CHECK(c.qk_norm == 1);
    CHECK(c.embed_scale == 4.0f);  // sqrt(16)
    CHECK(c.sliding_window == 4);
    CHECK(c.sliding_pattern == 6);
    CHECK(c.window_of_layer(0) == 4);
    CHECK(c.window_of_layer(5) == 0);
    CHECK(c.rope_local_theta == 10000.0f);
    CHECK(c.rope_theta == 1000000.0f);
    CHECK(c.rope_scale_factor == 2.0f);  // linear, global layers only
    CHECK(c.rope_low_freq_factor == 0.0f);
    CHECK(c.attn_scale() == 1.0f / std::sqrt(8.0f));
    CHECK(c.architecture("t") == "gemma3");
    CHECK(g.cfg.describe() == c.describe());
    check_same_model(g, h);
    // HF stores Gemma's norm weights as w with (1 + w) applied: ours hold 1 + w, as the GGUF does.
    const ParamLayout L = param_layout(c);
    const TensorInfo* n = L.find("model.layers.0.post_feedforward_layernorm.weight");
    REQUIRE(n);
    SafetensorsSet st = safetensors_open_dir(kDir + "tiny_gemma3_hf");
    std::vector<float> raw(n->numel);
    st.read_f32(*st.find(n->name), raw.data());
    CHECK(h.params[n->offset] == raw[0] + 1.0f);

    const std::string want = kDir + "tiny_gemma3_logits.json";
    check_transformers_logits(h, want, "tiny Gemma 3", [](Model& m) { m.cfg.sliding_window = 0, m.cfg.sliding_pattern = 0; });
    check_transformers_logits(h, want, "tiny Gemma 3 (local RoPE base)", [](Model& m) { m.cfg.rope_local_theta = 0.0f; });
    check_transformers_logits(h, want, "tiny Gemma 3 (global RoPE scaling)", [](Model& m) { m.cfg.rope_scale_factor = 0.0f; });
    check_transformers_logits(h, want, "tiny Gemma 3 (GELU)", [](Model& m) { m.cfg.mlp_act = GLU_SILU; });
    check_transformers_logits(h, want, "tiny Gemma 3 (embedding scale)", [](Model& m) { m.cfg.embed_scale = 0.0f; });
    check_transformers_logits(h, want, "tiny Gemma 3 (post norms)", [](Model& m) {
        for (LayerOffsets& l : m.off.layers)
            for (size_t i = 0; i < (size_t)m.cfg.dim; i++) m.params[l.post_attn_norm + i] = 1.0f;
    });
}

TEST_CASE("import: Gemma 3 in transformers' older config keys, with scores by query_pre_attn_scalar^-1/2 and every "
          "3rd layer global: transformers' logits") {
    ImportedModel h = import_hf_dir(kDir + "tiny_gemma3_scaled_hf");
    CHECK(h.cfg.sliding_pattern == 3);
    CHECK(h.cfg.rope_local_theta == 2000.0f);
    CHECK(h.cfg.rope_theta == 50000.0f);
    CHECK(h.cfg.rope_scale_factor == 0.0f);
    CHECK(h.cfg.attn_scale() == 1.0f / std::sqrt(12.0f));
    check_transformers_logits(h, kDir + "tiny_gemma3_scaled_logits.json", "tiny Gemma 3 (query_pre_attn_scalar 12)",
                              [](Model& m) { m.cfg.query_pre_attn_scalar = 0.0f; });
    // llama.cpp hard-codes the scale, the pattern and the local base: a GGUF of this model would run
    // as another one, so it is refused.
    CHECK(contains(error_of([&] { export_gguf("/tmp/never.gguf", h.cfg, h.params, h.tok, GGML_F32); }),
                   "llama.cpp runs Gemma 3 with a window in five layers of six"));
}

TEST_CASE("import: Mistral's sliding window in every layer: transformers' logits; out to HF as Mistral and to GGUF as llama, and back") {
    ImportedModel h = import_hf_dir(kDir + "tiny_mistral_hf");
    CHECK(h.cfg.sliding_window == 5);
    CHECK(h.cfg.sliding_pattern == 0);
    CHECK(h.cfg.window_of_layer(1) == 5);
    CHECK(h.cfg.architecture("t") == "mistral");
    check_transformers_logits(h, kDir + "tiny_mistral_logits.json", "tiny Mistral (window 5)",
                              [](Model& m) { m.cfg.sliding_window = 0; });
    const std::string d = temp_dir() + "/hf";
    export_hf_dir(d, h.cfg, h.params, h.tok, DType::F32);
    CHECK(contains(read_file(d + "/config.json"), "\"sliding_window\": 5"));
    ImportedModel b = import_hf_dir(d);
    check_same_model(h, b);
    CHECK(b.cfg.sliding_window == 5);

    // Out to GGUF as llama (llama.cpp has no window for it): q/k rows permuted as llama.cpp's converter
    // permutes a llama's, so the file reads back (un-permuted, as any llama GGUF) as the same weights.
    const std::string g = temp_dir() + "/m.gguf";
    export_gguf(g, h.cfg, h.params, h.tok, GGML_F32);
    CHECK(gguf_open(g).get_string("general.architecture") == "llama");
    ImportedModel c = import_gguf(g);
    CHECK(c.cfg.sliding_window == 0);
    REQUIRE(c.params.size() == h.params.size());
    size_t differ = 0;
    for (size_t i = 0; i < h.params.size(); i++) differ += c.params[i] != h.params[i];
    CHECK(differ == 0);
}

TEST_CASE("import: a Gemma 3 4B-27B checkpoint (text_config, language-model prefixes, a vision tower) reads as its "
          "language model") {
    const std::string src = kDir + "tiny_gemma3_hf/";
    ImportedModel want = import_hf_dir(src);
    std::string text = read_file(src + "config.json");
    for (const char* prefix : {"language_model.", "model.language_model."}) {
        CAPTURE(prefix);
        std::vector<StEntry> tensors = hf_tensors(src);
        for (StEntry& e : tensors)
            e.name = std::string(prefix) == "language_model." ? prefix + e.name : "model.language_model." + e.name.substr(6);
        tensors.push_back({"vision_tower.vision_model.post_layernorm.weight", "F32", {2}, std::string(8, '\0')});
        tensors.push_back({"multi_modal_projector.mm_soft_emb_norm.weight", "F32", {2}, std::string(8, '\0')});
        const std::string d = copy_hf_dir(src, tensors);
        write_bytes(d + "/config.json", "{\"architectures\": [\"Gemma3ForConditionalGeneration\"], \"model_type\": \"gemma3\", "
                                        "\"text_config\": " + text + "}");
        ImportedModel m = import_hf_dir(d);
        check_same_model(want, m);
        CHECK(m.cfg.describe() == want.cfg.describe());
        // A tensor that is neither the language model's nor the vision tower's is refused.
        tensors.push_back({"model.language_model.layers.0.extra.weight", "F32", {2}, std::string(8, '\0')});
        const std::string e = copy_hf_dir(src, tensors);
        write_bytes(e + "/config.json", read_file(d + "/config.json"));
        CHECK(contains(error_of([&] { import_hf_dir(e); }), "is not part of the model as config.json describes it"));
    }
    // Keys the 4B-27B text_config leaves out are Gemma3TextConfig's defaults (8 heads, 4 kv heads, ...).
    const std::string d = temp_dir();
    write_bytes(d + "/config.json", "{\"model_type\": \"gemma3\", \"text_config\": {\"model_type\": \"gemma3_text\", "
                                    "\"hidden_size\": 2560, \"intermediate_size\": 10240, \"num_hidden_layers\": 34, "
                                    "\"rope_scaling\": {\"factor\": 8.0, \"rope_type\": \"linear\"}, \"sliding_window\": 1024}}");
    write_bytes(d + "/tokenizer.json", read_file(src + "tokenizer.json"));
    CHECK(contains(error_of([&] { import_hf_dir(d); }), "model.safetensors"));  // the config itself was read
}

TEST_CASE("import: Gemma 3 configs that describe another model are refused, naming the key") {
    const std::string src = kDir + "tiny_gemma3_hf/";
    const std::string config = read_file(src + "config.json");
    auto with = [&](const std::string& from, const std::string& to) {
        const std::string d = copy_hf_dir(src, hf_tensors(src));
        std::string c = config;
        const size_t at = c.find(from);
        REQUIRE(at != std::string::npos);
        write_bytes(d + "/config.json", c.replace(at, from.size(), to));
        return error_of([&] { import_hf_dir(d); });
    };
    CHECK(contains(with("\"final_logit_softcapping\": null", "\"final_logit_softcapping\": 30.0"),
                   "final_logit_softcapping is set: logit soft-capping (Gemma 2) is not supported"));
    CHECK(contains(with("\"hidden_activation\": \"gelu_pytorch_tanh\"", "\"hidden_activation\": \"silu\""),
                   "hidden_activation must be gelu_pytorch_tanh"));
    // layer 0 global, 1 windowed: no every-k-th pattern
    CHECK(contains(with("\"sliding_attention\",\n  \"sliding_attention\"", "\"full_attention\",\n  \"sliding_attention\""),
                   "layer_types[1] breaks the pattern"));
    CHECK(contains(with("\"attention_bias\": false", "\"use_bidirectional_attention\": true, \"attention_bias\": false"),
                   "use_bidirectional_attention = true (EmbeddingGemma) is not supported"));
}
