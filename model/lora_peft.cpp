#include "model/lora_peft.h"

#include <cstring>
#include <filesystem>

#include "data/json.h"
#include "model/util.h"

namespace {
// HF module paths of the seven projections (LoraTarget order).
const char* const kModule[LORA_NUM_TARGETS] = {"self_attn.q_proj", "self_attn.k_proj", "self_attn.v_proj",
                                               "self_attn.o_proj", "mlp.gate_proj",    "mlp.up_proj",
                                               "mlp.down_proj"};

std::string shape_json(const std::vector<int64_t>& shape) {
    std::string s = "[";
    for (size_t i = 0; i < shape.size(); i++) s += (i ? ", " : "") + std::to_string(shape[i]);
    return s + "]";
}
}  // namespace

void lora_export_peft(const std::string& dir, const ModelConfig& cfg, const LoraConfig& lc,
                      const std::vector<float>& adapters) {
    LoraLayout L = lora_layout(cfg, lc);
    if (adapters.size() != L.total) fail("%s: %zu adapter values, the layout needs %zu", dir.c_str(), adapters.size(), L.total);
    std::error_code ec;
    std::filesystem::create_directories(dir, ec);
    if (ec) fail("%s: cannot create directory: %s", dir.c_str(), ec.message().c_str());

    // safetensors: u64 header length, the JSON header (padded with spaces to 8 bytes), then the
    // tensors back to back in layout order; offsets count from the start of the data.
    std::string header = "{\"__metadata__\": {\"format\": \"pt\"}";
    size_t offset = 0;
    for (int l = 0; l < cfg.n_layers; l++)
        for (int t = 0; t < LORA_NUM_TARGETS; t++) {
            if (!lc.has((LoraTarget)t)) continue;
            int in, out;
            lora_target_shape(cfg, (LoraTarget)t, in, out);
            std::string base = "base_model.model.model.layers." + std::to_string(l) + "." + kModule[t];
            for (int ab = 0; ab < 2; ab++) {
                std::vector<int64_t> shape = ab == 0 ? std::vector<int64_t>{lc.rank, in} : std::vector<int64_t>{out, lc.rank};
                size_t bytes = (size_t)shape[0] * shape[1] * sizeof(float);
                header += ", " + json_quote(base + (ab == 0 ? ".lora_A.weight" : ".lora_B.weight")) +
                          ": {\"dtype\": \"F32\", \"shape\": " + shape_json(shape) + ", \"data_offsets\": [" +
                          std::to_string(offset) + ", " + std::to_string(offset + bytes) + "]}";
                offset += bytes;
            }
        }
    header += "}";
    while (header.size() % 8) header += ' ';
    AtomicFile st(dir + "/adapter_model.safetensors");
    st.put((uint64_t)header.size());
    st.write(header.data(), header.size());
    // lora_layout stores A then B for each (layer, target) in this same order: the data is the
    // adapter buffer as it is.
    st.write(adapters.data(), adapters.size() * sizeof(float));
    st.commit();

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
    AtomicFile cfgf(dir + "/adapter_config.json");
    cfgf.write(buf, strlen(buf));
    cfgf.commit();
}
