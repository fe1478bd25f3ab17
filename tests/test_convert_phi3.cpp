// Phi-3 (Phi-3-mini, Phi-3-medium, Phi-3.5-mini, Phi-4) against transformers: tiny random models from
// tests/fixtures/phi3/gen_phi3_fixtures.py, whose fused qkv_proj and gate_up_proj import as our
// separate projections, with LongRoPE's short and long factors and its attention factor, and a
// sliding window; their logits checked against transformers' (FP32, eager attention), each part
// shown to matter by taking it out; and out again to HF and PEFT as Phi-3 has them.
#include <doctest/doctest.h>

#include "model/export_hf.h"
#include "model/lora_peft.h"
#include "test_convert_util.h"

namespace {
const std::string kPhi3 = "tests/fixtures/phi3/";
}  // namespace

TEST_CASE("import: a tiny Phi-3 with LongRoPE and a window: fused projections split, transformers' logits with the "
          "short factors and, past the original context, the long ones") {
    ImportedModel h = import_hf_dir(kPhi3 + "tiny_phi3_hf");
    const ModelConfig& c = h.cfg;
    CHECK(c.fused_projections == 1);
    CHECK(c.architecture("t") == "phi3");
    CHECK(c.longrope());
    CHECK(c.rope_original_max_pos == 16);
    CHECK(c.rope_short_factor[1] == 1.5f);
    CHECK(c.rope_long_factor[3] == 20.0f);
    CHECK(c.rope_short_factor[4] == 0.0f);
    CHECK(c.rope_attn_factor == (float)std::sqrt(1.0 + std::log(4.0) / std::log(16.0)));
    CHECK(c.sliding_window == 6);
    CHECK(c.head_dim == 8);
    CHECK(!c.long_rope_for(16));
    CHECK(c.long_rope_for(17));
    // q, k, v are rows 0-31, 32-47, 48-63 of qkv_proj; gate and up the halves of gate_up_proj
    SafetensorsSet st = safetensors_open_dir(kPhi3 + "tiny_phi3_hf");
    const ParamLayout L = param_layout(c);
    std::vector<float> qkv(64 * 32), gate_up(48 * 32);
    st.read_f32(*st.find("model.layers.1.self_attn.qkv_proj.weight"), qkv.data());
    st.read_f32(*st.find("model.layers.1.mlp.gate_up_proj.weight"), gate_up.data());
    CHECK(h.params[L.find("model.layers.1.self_attn.k_proj.weight")->offset + 5] == qkv[32 * 32 + 5]);
    CHECK(h.params[L.find("model.layers.1.self_attn.v_proj.weight")->offset + 33] == qkv[48 * 32 + 33]);
    CHECK(h.params[L.find("model.layers.1.mlp.up_proj.weight")->offset + 7] == gate_up[24 * 32 + 7]);

    const std::string longer = kPhi3 + "tiny_phi3_logits.json", shorter = kPhi3 + "tiny_phi3_short_logits.json";
    check_transformers_logits(h, longer, "tiny Phi-3 (24 positions: long factors)", [](Model& m) { m.cfg.sliding_window = 0; });
    check_transformers_logits(h, shorter, "tiny Phi-3 (12 positions: short factors)", [](Model& m) { m.cfg.rope_attn_factor = 1.0f; });
    check_transformers_logits(h, longer, "tiny Phi-3 (long factors)", [](Model& m) {
        std::copy_n(m.cfg.rope_short_factor, ModelConfig::kMaxRopeFactors, m.cfg.rope_long_factor);
    });
    check_transformers_logits(h, shorter, "tiny Phi-3 (short factors)", [](Model& m) {
        std::copy_n(m.cfg.rope_long_factor, ModelConfig::kMaxRopeFactors, m.cfg.rope_short_factor);
    });
}

TEST_CASE("import: Phi-3-mini-4k and Phi-4's form (no RoPE scaling, tied, older config keys): transformers' logits") {
    ImportedModel h = import_hf_dir(kPhi3 + "tiny_phi3_plain_hf");
    CHECK(h.cfg.fused_projections == 1);
    CHECK(!h.cfg.longrope());
    CHECK(h.cfg.rope_theta == 250000.0f);
    CHECK(h.cfg.tied_embeddings == 1);
    CHECK(h.cfg.sliding_window == 0);
    check_transformers_logits(h, kPhi3 + "tiny_phi3_plain_logits.json", "tiny Phi-3 (plain)",
                              [](Model& m) { m.cfg.rope_theta = 10000.0f; });
}
