// Adapters out and in: the PEFT safetensors file reads back (with our own reader) with PEFT's names,
// shapes and exactly our values; an adapter PEFT wrote gives PeftModel's logits here, and what our
// PEFT reader refuses.
#include <algorithm>
#include <cmath>
#include <filesystem>

#include "data/json.h"
#include "model/import.h"
#include "model/lora_peft.h"
#include "model/model.h"
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

    // and back in: the same configuration and values
    LoraConfig back;
    std::vector<float> b;
    lora_load_any(dir, c, back, b);
    CHECK(back.rank == 4);
    CHECK(back.alpha == 8.0f);
    CHECK(back.targets == lc.targets);
    CHECK(b == a);
}

namespace {
const std::string kConvert = "tests/fixtures/convert/";

// A copy of the PEFT fixture whose adapter_config.json has `key` set to `value` (raw JSON).
std::string peft_with(const std::string& key, const std::string& value) {
    const std::filesystem::path d = std::filesystem::temp_directory_path() / "llmtrain-test-peft-bad";
    std::filesystem::remove_all(d);
    std::filesystem::create_directories(d);
    std::filesystem::copy(kConvert + "tiny_qwen3_peft/adapter_model.safetensors", d / "adapter_model.safetensors");
    std::string cfg = read_file(kConvert + "tiny_qwen3_peft/adapter_config.json");
    const std::string k = "\"" + key + "\": ";
    size_t at = cfg.find(k);
    REQUIRE(at != std::string::npos);
    size_t end = cfg.find_first_of(",\n", at + k.size());
    cfg = cfg.substr(0, at + k.size()) + value + cfg.substr(end);
    write_file_atomic((d / "adapter_config.json").string(), cfg);
    return d.string();
}
}  // namespace

TEST_CASE("import: a PEFT adapter (BF16, rsLoRA, q/v/gate/down) gives PeftModel's logits; what is refused") {
    ImportedModel base = import_hf_dir(kConvert + "tiny_qwen3_hf");
    LoraConfig lc;
    std::vector<float> adapters;
    lora_load_any(kConvert + "tiny_qwen3_peft", base.cfg, lc, adapters);
    CHECK(lc.rank == 4);
    CHECK(lc.use_rslora == 1);
    CHECK(lc.scale() == 4.0f);  // 8 / sqrt(4)
    CHECK(lora_targets_string(lc.targets) == "q,v,gate,down");
    Model m;
    model_init(m, base.cfg, base.params);
    model_set_lora(m, lc, adapters);
    std::vector<int32_t> ids;
    std::vector<float> got;
    const double worst = max_logit_diff(m, kConvert + "tiny_qwen3_peft_logits.json", ids, got);
    MESSAGE("PEFT adapter: max |logit - PeftModel's| " << worst);
    CHECK(worst < 1e-4);

    auto err = [&](const std::string& dir) {
        return error_of([&] { lora_load_any(dir, base.cfg, lc, adapters); });
    };
    CHECK(err(peft_with("use_dora", "true")) ==
          peft_with("use_dora", "true") + "/adapter_config.json: \"use_dora\" is set: DoRA's magnitude vectors cannot be loaded here");
    CHECK(contains(err(peft_with("modules_to_save", "[\"lm_head\"]")), "\"modules_to_save\" is set"));
    // PiSSA and its kind rewrite the base when PEFT loads them: refused rather than added to the plain base
    CHECK(contains(err(peft_with("init_lora_weights", "\"pissa_niter_4\"")),
                   "\"init_lora_weights\" is 'pissa_niter_4': PEFT changes the base weights"));
    CHECK(contains(err(peft_with("init_lora_weights", "\"OLoRA\"")), "\"init_lora_weights\" is 'OLoRA': PEFT changes"));
    CHECK(err(peft_with("init_lora_weights", "\"mica\"")).empty());  // A·B as plain LoRA, base untouched
    CHECK(contains(err(peft_with("kasa_config", "{\"x\": 1}")), "\"kasa_config\" is set"));
    CHECK(contains(err(peft_with("bias", "\"all\"")), "\"bias\" is 'all'"));
    CHECK(contains(err(peft_with("peft_type", "\"IA3\"")), "peft_type is 'IA3': only LoRA adapters can be read"));
    CHECK(contains(err(peft_with("r", "8")), "has shape [4, 16], but the model's config needs [8, 16]"));
    // another base model: the shapes do not fit
    ImportedModel llama = import_hf_dir(kConvert + "tiny_llama_hf");
    CHECK(contains(error_of([&] { lora_load_any(kConvert + "tiny_qwen3_peft", llama.cfg, lc, adapters); }),
                   "but the model's config needs"));
    CHECK(contains(err(kConvert + "tiny_qwen3_hf"), "adapter_config.json: cannot open"));
}
