#include "model/lora_peft.h"

#include <filesystem>

#include "data/json.h"
#include "model/safetensors.h"
#include "model/util.h"

namespace {
// HF module paths of the seven projections (LoraTarget order).
const char* const kModule[LORA_NUM_TARGETS] = {"self_attn.q_proj", "self_attn.k_proj", "self_attn.v_proj",
                                               "self_attn.o_proj", "mlp.gate_proj",    "mlp.up_proj",
                                               "mlp.down_proj"};
}  // namespace

void lora_export_peft(const std::string& dir, const ModelConfig& cfg, const LoraConfig& lc,
                      const std::vector<float>& adapters) {
    LoraLayout L = lora_layout(cfg, lc);
    if (adapters.size() != L.total) fail("%s: %zu adapter values, the layout needs %zu", dir.c_str(), adapters.size(), L.total);
    std::error_code ec;
    std::filesystem::create_directories(dir, ec);
    if (ec) fail("%s: cannot create directory: %s", dir.c_str(), ec.message().c_str());

    // PEFT's names in lora_layout's order (A then B for each adapted projection of each layer).
    std::vector<SafeTensorOut> tensors;
    for (int l = 0; l < cfg.n_layers; l++)
        for (int t = 0; t < LORA_NUM_TARGETS; t++) {
            if (!lc.has((LoraTarget)t)) continue;
            int in, out;
            lora_target_shape(cfg, (LoraTarget)t, in, out);
            std::string base = "base_model.model.model.layers." + std::to_string(l) + "." + kModule[t];
            tensors.push_back({base + ".lora_A.weight", {lc.rank, in}, adapters.data() + L.A(l, (LoraTarget)t)});
            tensors.push_back({base + ".lora_B.weight", {out, lc.rank}, adapters.data() + L.B(l, (LoraTarget)t)});
        }
    safetensors_write(dir + "/adapter_model.safetensors", tensors, DType::F32);

    std::string targets;
    for (int t = 0; t < LORA_NUM_TARGETS; t++)
        if (lc.has((LoraTarget)t)) {
            std::string m = kModule[t];
            targets += std::string(targets.empty() ? "" : ", ") + json_quote(m.substr(m.find('.') + 1));
        }
    char buf[1024];
    snprintf(buf, sizeof buf,
             "{\n  \"peft_type\": \"LORA\",\n  \"task_type\": \"CAUSAL_LM\",\n  \"r\": %d,\n  \"lora_alpha\": %g,\n"
             "  \"lora_dropout\": %g,\n  \"use_rslora\": %s,\n  \"target_modules\": [%s],\n  \"bias\": \"none\",\n"
             "  \"fan_in_fan_out\": false,\n  \"inference_mode\": true,\n  \"base_model_name_or_path\": null\n}\n",
             lc.rank, lc.alpha, lc.dropout, lc.use_rslora ? "true" : "false", targets.c_str());
    write_file_atomic(dir + "/adapter_config.json", buf);
}
