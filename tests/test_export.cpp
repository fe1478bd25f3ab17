// Adapters out: the PEFT safetensors file reads back (with our own reader) with PEFT's names,
// shapes and exactly our values.
#include <filesystem>

#include "model/lora_peft.h"
#include "model/safetensors.h"
#include "tests/test_util.h"

TEST_CASE("export: PEFT adapter_model.safetensors holds every A and B under PEFT's names") {
    ModelConfig c = config_preset("tiny");
    LoraConfig lc;
    lc.rank = 4;
    lc.alpha = 8;
    lc.targets = lora_parse_targets("q,v,down");
    std::vector<float> a;
    lora_init(c, lc, a, 1);
    for (size_t i = 0; i < a.size(); i++) a[i] += 0.01f * (float)(i % 7);  // B ≠ 0 too
    std::string dir = (std::filesystem::temp_directory_path() / "llmtrain-test-peft").string();
    std::filesystem::remove_all(dir);
    lora_export_peft(dir, c, lc, a);

    SafetensorsSet st;
    safetensors_add_file(st, dir + "/adapter_model.safetensors");
    CHECK(st.tensors.size() == (size_t)c.n_layers * 3 * 2);
    LoraLayout L = lora_layout(c, lc);
    const char* names[] = {"self_attn.q_proj", "self_attn.v_proj", "mlp.down_proj"};
    LoraTarget targets[] = {LORA_Q, LORA_V, LORA_DOWN};
    for (int l = 0; l < c.n_layers; l++)
        for (int k = 0; k < 3; k++) {
            std::string base = "base_model.model.model.layers." + std::to_string(l) + "." + names[k];
            int in, out;
            lora_target_shape(c, targets[k], in, out);
            const SafeTensor* A = st.find(base + ".lora_A.weight");
            const SafeTensor* B = st.find(base + ".lora_B.weight");
            REQUIRE(A);
            REQUIRE(B);
            CHECK(A->shape == std::vector<int64_t>{lc.rank, in});
            CHECK(B->shape == std::vector<int64_t>{out, lc.rank});
            std::vector<float> va(A->numel), vb(B->numel);
            st.read_f32(*A, va.data());
            st.read_f32(*B, vb.data());
            CHECK(std::equal(va.begin(), va.end(), a.begin() + L.A(l, targets[k])));
            CHECK(std::equal(vb.begin(), vb.end(), a.begin() + L.B(l, targets[k])));
        }
    std::string cfg = read_file(dir + "/adapter_config.json");
    CHECK(cfg.find("\"target_modules\": [\"q_proj\", \"v_proj\", \"down_proj\"]") != std::string::npos);
    CHECK(cfg.find("\"r\": 4,") != std::string::npos);
    CHECK(cfg.find("\"lora_alpha\": 8,") != std::string::npos);
}
