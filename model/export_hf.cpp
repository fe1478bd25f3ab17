#include "model/export_hf.h"

#include <cstdlib>
#include <filesystem>

#include "model/import.h"
#include "model/safetensors.h"
#include "model/util.h"

namespace {
// The shortest decimal that reads back as the same float (config.json's eps and theta).
std::string float_json(float v) {
    for (int digits = 1; digits < 9; digits++) {
        std::string s = strf("%.*g", digits, (double)v);
        if (std::strtof(s.c_str(), nullptr) == v) return s;
    }
    return strf("%.9g", (double)v);
}
}  // namespace

void export_hf_dir(const std::string& dir, const ModelConfig& cfg, const std::vector<float>& params, const Tokenizer& tok,
                   DType dtype) {
    check_exportable(cfg, params, tok.vocab.size(), dir);
    std::error_code ec;
    std::filesystem::create_directories(dir, ec);
    if (ec) fail("%s: cannot create directory: %s", dir.c_str(), ec.message().c_str());
    // Another model's files beside ours would be loaded with them (a shard index, a generation
    // config, a special_tokens_map): only our own four files, from an earlier export, may be there.
    for (const auto& e : std::filesystem::directory_iterator(dir)) {
        const std::string name = e.path().filename().string();
        if (name != "config.json" && name != "model.safetensors" && name != "tokenizer.json" && name != "tokenizer_config.json")
            fail("%s already holds %s: export into a new or empty directory", dir.c_str(), name.c_str());
    }

    const std::string arch = cfg.architecture(dir);
    const char* cls = arch == "qwen3"     ? "Qwen3ForCausalLM"
                      : arch == "qwen2"   ? "Qwen2ForCausalLM"
                      : arch == "smollm3" ? "SmolLM3ForCausalLM"
                      : arch == "gemma3"  ? "Gemma3ForCausalLM"
                      : arch == "mistral" ? "MistralForCausalLM"
                      : arch == "phi3"    ? "Phi3ForCausalLM"
                                          : "LlamaForCausalLM";
    auto id = [](int32_t v) { return v < 0 ? std::string("null") : std::to_string(v); };
    const std::string model_type = arch == "gemma3" ? "gemma3_text" : arch;
    std::string config = "{\n  \"architectures\": [\"" + std::string(cls) + "\"],\n  \"model_type\": \"" + model_type + "\",\n";
    config += strf("  \"vocab_size\": %d,\n  \"hidden_size\": %d,\n  \"intermediate_size\": %d,\n  \"num_hidden_layers\": %d,\n"
                   "  \"num_attention_heads\": %d,\n  \"num_key_value_heads\": %d,\n  \"head_dim\": %d,\n"
                   "  \"max_position_embeddings\": %d,\n",
                   cfg.vocab_size, cfg.dim, cfg.ffn_dim, cfg.n_layers, cfg.n_heads, cfg.n_kv_heads, cfg.head_dim,
                   cfg.max_seq_len);
    auto factors = [&](const float* f) {
        std::string list;
        for (int i = 0; i < cfg.head_dim / 2; i++) list += (i ? ", " : "") + float_json(f[i]);
        return "[" + list + "]";
    };
    const std::string scaling =
        // (Phi-3's own keys, which transformers before 4.48 and vLLM require: no attention factor where
        // the context's ratio gives it)
        cfg.longrope() ? "{\"type\": \"longrope\", \"short_factor\": " + factors(cfg.rope_short_factor) +
                             ", \"long_factor\": " + factors(cfg.rope_long_factor) +
                             (cfg.rope_attn_factor == longrope_default_attn_factor((double)cfg.max_seq_len / cfg.rope_original_max_pos,
                                                                                   cfg.rope_original_max_pos)
                                  ? std::string("}")
                                  : ", \"attention_factor\": " + float_json(cfg.rope_attn_factor) + "}")
        : cfg.rope_scale_factor == 0.0f ? "null"
        : cfg.rope_low_freq_factor == 0.0f
            ? "{\"rope_type\": \"linear\", \"factor\": " + float_json(cfg.rope_scale_factor) + "}"
            : "{\"rope_type\": \"llama3\", \"factor\": " + float_json(cfg.rope_scale_factor) + ", \"low_freq_factor\": " +
                  float_json(cfg.rope_low_freq_factor) + ", \"high_freq_factor\": " + float_json(cfg.rope_high_freq_factor) +
                  ", \"original_max_position_embeddings\": " + std::to_string(cfg.rope_original_max_pos) + "}";
    // Gemma 3 in the keys both transformers 4.5x and 5 read: rope_local_base_freq and the global
    // layers' rope_scaling; layer_types and, for readers without them, sliding_window_pattern.
    const std::string act = arch == "gemma3" ? "\"hidden_activation\": \"gelu_pytorch_tanh\"" : "\"hidden_act\": \"silu\"";
    config += "  \"rms_norm_eps\": " + float_json(cfg.norm_eps) + ",\n  \"rope_theta\": " + float_json(cfg.rope_theta) +
              ",\n  \"rope_scaling\": " + scaling + ",\n  " + act + ",\n  \"tie_word_embeddings\": " +
              (cfg.tied_embeddings ? "true" : "false") + ",\n";
    if (arch == "qwen2") config += "  \"use_sliding_window\": false,\n";
    else if (arch == "qwen3") config += "  \"attention_bias\": false,\n  \"use_sliding_window\": false,\n";
    else config += "  \"attention_bias\": false,\n  \"mlp_bias\": false,\n";
    if (arch == "mistral") config += strf("  \"sliding_window\": %d,\n", cfg.sliding_window);
    if (arch == "phi3")
        config += strf("  \"sliding_window\": %s,\n  \"original_max_position_embeddings\": %d,\n",
                       cfg.sliding_window ? std::to_string(cfg.sliding_window).c_str() : "null",
                       cfg.longrope() ? cfg.rope_original_max_pos : cfg.max_seq_len);
    if (arch == "gemma3") {
        std::string types;
        for (int l = 0; l < cfg.n_layers; l++)
            types += std::string(l ? ", " : "") + (cfg.window_of_layer(l) ? "\"sliding_attention\"" : "\"full_attention\"");
        const int pattern = cfg.sliding_window == 0 ? 1 : cfg.sliding_pattern ? cfg.sliding_pattern : cfg.n_layers + 1;
        config += "  \"query_pre_attn_scalar\": " + float_json(cfg.query_pre_attn_scalar) + ",\n  \"rope_local_base_freq\": " +
                  float_json(cfg.rope_local_theta != 0.0f ? cfg.rope_local_theta : cfg.rope_theta) +
                  strf(",\n  \"sliding_window\": %d,\n  \"sliding_window_pattern\": %d,\n  \"layer_types\": [%s],\n",
                       cfg.sliding_window ? cfg.sliding_window : cfg.max_seq_len, pattern, types.c_str()) +
                  "  \"final_logit_softcapping\": null,\n  \"attn_logit_softcapping\": null,\n";
    }
    if (arch == "smollm3") {
        std::string layers;
        for (int l = 0; l < cfg.n_layers; l++) layers += std::string(l ? ", " : "") + (cfg.rope_in_layer(l) ? "1" : "0");
        config += strf("  \"use_sliding_window\": false,\n  \"no_rope_layer_interval\": %d,\n  \"no_rope_layers\": [%s],\n",
                       cfg.nope_interval, layers.c_str());
    }
    config += "  \"bos_token_id\": " + id(tok.bos_id) + ",\n  \"eos_token_id\": " + id(tok.eos_id) +
              ",\n  \"pad_token_id\": " + id(tok.pad_id) + ",\n  \"torch_dtype\": \"" +
              (dtype == DType::BF16 ? "bfloat16" : "float32") + "\"\n}\n";

    // Gemma's norms multiply by (1 + w): the 1 we store in the weights comes out (model/import.h).
    std::vector<float> shifted;
    const std::vector<float>* out = &params;
    if (arch == "gemma3") {
        shifted = params;
        gemma_norm_shift(cfg, shifted, -1.0f);
        out = &shifted;
    }
    std::vector<SafeTensorOut> tensors;
    for (const TensorInfo& layout : param_layout(cfg).tensors) {
        FusedPart part;
        const TensorInfo t = stored_tensor(cfg, layout, part);
        // (Phi-3's fused tensor: its parts lie one after another in the layout, so it is their span)
        if (part.index == 0) tensors.push_back({t.name, t.shape, out->data() + t.offset});
    }
    safetensors_write(dir + "/model.safetensors", tensors, dtype);
    tokenizer_save_hf(tok, dir, cfg.max_seq_len);
    write_file_atomic(dir + "/config.json", config);
}
