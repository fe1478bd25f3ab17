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
    // With the three others 0 it is the "linear" scaling (Gemma 3 4B and up): every frequency
    // divided by the factor.
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
    // Gemma 3 (all 0 for the others, which is LLaMA's behaviour):
    // - mlp_act: the gate's activation, 0 SiLU (SwiGLU), 1 GELU with the tanh approximation (GeGLU);
    // - embed_scale: the embedding's rows are multiplied by it on the way in (Gemma: sqrt(dim) in
    //   FP32), not on the tied LM head's way out; 0: 1;
    // - post_norms: "sandwich" norms, each branch's output RMS-normalised (post_attention_layernorm,
    //   post_feedforward_layernorm) before it is added to the residual stream;
    // - query_pre_attn_scalar: attention scores are scaled by its -1/2 power instead of head_dim's;
    // - sliding_window: a layer with a window attends to the last sliding_window keys only (itself
    //   included); every sliding_pattern-th layer (l with (l + 1) % sliding_pattern == 0) attends
    //   globally (pattern 0 with a window: every layer windowed, as Mistral v0.1);
    // - rope_local_theta: RoPE's base in the windowed layers (Gemma 3: 10000; 0: rope_theta), with
    //   no scaling there: the scaling applies to the global layers.
    // Gemma's norms multiply by (1 + weight): the weights are stored here with the 1 added (as
    // llama.cpp stores them), so one RMSNorm serves every model; the HF importer and exporter add
    // and subtract it.
    int32_t mlp_act = 0;
    float embed_scale = 0.0f;
    int32_t post_norms = 0;
    float query_pre_attn_scalar = 0.0f;
    int32_t sliding_window = 0;
    int32_t sliding_pattern = 0;
    float rope_local_theta = 0.0f;
    // Phi-3 (all 0 for the others):
    // - fused_projections: Hugging Face stores q/k/v as one qkv_proj ([q; k; v] rows) and gate/up as
    //   one gate_up_proj ([gate; up] rows). The layout here keeps them apart (the math is LLaMA's);
    //   the HF and PEFT importers split them, the exporters fuse them back.
    // - LongRoPE (Phi-3-128k, Phi-3.5): frequency i is divided by rope_short_factor[i] (positions
    //   within rope_original_max_pos; rope_long_factor[i] past them), and RoPE's cos and sin are
    //   multiplied by rope_attn_factor, i.e. q·k by its square. Factor 0: none (the arrays hold
    //   head_dim / 2 values, the rest 0).
    int32_t fused_projections = 0;
    float rope_attn_factor = 0.0f;
    static constexpr int kMaxRopeFactors = 128;  // head_dim 256
    float rope_short_factor[kMaxRopeFactors] = {};
    float rope_long_factor[kMaxRopeFactors] = {};

    bool longrope() const { return rope_short_factor[0] != 0.0f; }
    // A pass over sequences of up to `positions` tokens takes LongRoPE's long factors (transformers:
    // max(position_ids) + 1 > original_max_position_embeddings).
    bool long_rope_for(int64_t positions) const { return longrope() && positions > rope_original_max_pos; }
    int q_dim() const { return n_heads * head_dim; }
    bool rope_in_layer(int l) const { return nope_interval == 0 || (l + 1) % nope_interval != 0; }
    // The keys a query of layer l sees back (itself included); 0: its whole causal context.
    int window_of_layer(int l) const {
        return sliding_window && (sliding_pattern == 0 || (l + 1) % sliding_pattern != 0) ? sliding_window : 0;
    }
    // Layer l takes RoPE's local table (rope_inv_freq_local) rather than the global one.
    bool rope_local(int l) const { return rope_local_theta != 0.0f && window_of_layer(l) != 0; }
    float attn_scale() const;  // what attention multiplies q·k by
    float embedding_scale() const { return embed_scale != 0.0f ? embed_scale : 1.0f; }
    int kv_dim() const { return n_kv_heads * head_dim; }
    int64_t num_params() const;      // every weight of the model
    uint64_t hash() const;           // fingerprint stored in adapters to refuse a wrong base
    std::string describe() const;    // one line: "dim 576, 30 layers, 9/3 heads of 64, ffn 1536, vocab 49152"
    void validate(const std::string& where) const;  // fails naming `where` and the bad field
    // The architecture exporters write: "phi3" (fused projections), "gemma3" (post norms, GeGLU, scaled embeddings, QK-norm),
    // "qwen3" (QK-norm), "qwen2" (q/k/v bias), "smollm3" (NoPE layers), "mistral" (a sliding window
    // in every layer) or "llama". Any other mix is no published architecture: fails naming `where`.
    std::string architecture(const std::string& where) const;
};

// RoPE's head_dim / 2 inverse frequencies, inv_freq_i = 1 / theta^(2i / head_dim), then the llama3
// (or linear, or LongRoPE's short-context) scaling when the config has one, in FP32 with transformers' operations in its order: bit-identical
// to it for Llama 3.1/3.2 (tested), except where glibc's powf and torch's differ by an ulp (some
// theta/head_dim pairs, e.g. 1e6/128 at i = 37).
// LongRoPE's attention factor when the config gives none (transformers' _compute_longrope_parameters):
// sqrt(1 + ln(s) / ln(original)) with s = max_position_embeddings / original, 1 for s <= 1.
float longrope_default_attn_factor(double factor, int32_t original_max_pos);
// long_context: LongRoPE's long factors, which transformers takes for a pass whose longest position
// passes rope_original_max_pos (ModelConfig::long_rope_for); the other scalings ignore it.
std::vector<float> rope_inv_freq(const ModelConfig& c, bool long_context = false);
// The windowed layers' table (ModelConfig::rope_local): rope_local_theta's, unscaled.
std::vector<float> rope_inv_freq_local(const ModelConfig& c);
// The unscaled table alone: 1 / theta^(2i / head_dim).
std::vector<float> rope_inv_freq(float theta, int head_dim);

// The most parameters a valid config may describe (2^48, about 2.8e14: a thousand times the largest
// open models). validate() fails above it, so a corrupt size field gives an error, never an
// overflowing count or a layout too large to build.
constexpr double kMaxModelParams = 281474976710656.0;

// Presets with the real shapes (random weights are made by ./init_model). Fails listing the names
// it knows when `name` is unknown.
ModelConfig config_preset(const std::string& name);
std::vector<std::string> config_preset_names();
