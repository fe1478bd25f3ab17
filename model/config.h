// The shape of a LLaMA-family decoder and the presets the project knows by name.
#pragma once
#include <cstdint>
#include <string>
#include <vector>

struct ModelConfig {
    int32_t vocab_size = 0;
    int32_t dim = 0;          // hidden size
    int32_t n_layers = 0;
    int32_t n_heads = 0;      // query heads
    int32_t n_kv_heads = 0;   // key/value heads (GQA: n_heads is a multiple of n_kv_heads)
    int32_t head_dim = 0;     // usually dim / n_heads
    int32_t ffn_dim = 0;      // SwiGLU intermediate size
    int32_t max_seq_len = 0;  // max positions the model was trained for
    float rope_theta = 10000.0f;
    float norm_eps = 1e-5f;
    int32_t tied_embeddings = 0;  // lm_head shares the token embedding
    int32_t qkv_bias = 0;         // q/k/v projections have a bias (Qwen2)
    // RoPE scaling of Llama 3.1 and later (rope_type "llama3"; factor 0: none): frequencies whose
    // wavelength exceeds rope_original_max_pos / rope_low_freq_factor are divided by the factor,
    // those under rope_original_max_pos / rope_high_freq_factor kept, and a smooth ramp between.
    float rope_scale_factor = 0.0f;
    float rope_low_freq_factor = 0.0f;
    float rope_high_freq_factor = 0.0f;
    int32_t rope_original_max_pos = 0;
    // Qwen3's QK-norm: q and k are RMS-normalised per head (a [head_dim] weight each, shared by the
    // heads) after their projection and before RoPE; it keeps attention logits bounded.
    int32_t qk_norm = 0;
    // SmolLM3's NoPE layers: every nope_interval-th layer (layer l with (l + 1) % nope_interval == 0)
    // attends without RoPE, the others with it; 0: RoPE in every layer.
    int32_t nope_interval = 0;

    int q_dim() const { return n_heads * head_dim; }
    bool rope_in_layer(int l) const { return nope_interval == 0 || (l + 1) % nope_interval != 0; }
    int kv_dim() const { return n_kv_heads * head_dim; }
    int64_t num_params() const;      // every weight of the model
    uint64_t hash() const;           // fingerprint stored in adapters to refuse a wrong base
    std::string describe() const;    // one line: "dim 576, 30 layers, 9/3 heads of 64, ffn 1536, vocab 49152"
    void validate(const std::string& where) const;  // fails naming `where` and the bad field
    // The architecture exporters write: "qwen3" (QK-norm), "qwen2" (q/k/v bias), "smollm3" (NoPE
    // layers) or "llama". Two of them at once is no published architecture: fails naming `where`.
    std::string architecture(const std::string& where) const;
};

// RoPE's head_dim / 2 inverse frequencies, inv_freq_i = 1 / theta^(2i / head_dim), then the llama3
// scaling when the config has one, in FP32 with transformers' operations in its order: bit-identical
// to it for Llama 3.1/3.2 (tested), except where glibc's powf and torch's differ by an ulp (some
// theta/head_dim pairs, e.g. 1e6/128 at i = 37).
std::vector<float> rope_inv_freq(const ModelConfig& c);
// The unscaled table alone: 1 / theta^(2i / head_dim).
std::vector<float> rope_inv_freq(float theta, int head_dim);

// Presets with the real shapes (random weights are made by ./init_model). Fails listing the names
// it knows when `name` is unknown.
ModelConfig config_preset(const std::string& name);
std::vector<std::string> config_preset_names();
