#include "model/config.h"

#include <climits>
#include <cmath>
#include <cstring>

#include "kernels/kernels.h"
#include "model/util.h"

// The parameter count in T: int64_t for num_params(), double for validate(), which checks a corrupt
// config's count before anything computes it in int64_t (where it could overflow).
template <class T> static T count_params(const ModelConfig& c) {
    T C = c.dim, L = c.n_layers, Q = (T)c.n_heads * c.head_dim, KV = (T)c.n_kv_heads * c.head_dim;
    T attn = C * Q + 2 * C * KV + Q * C;
    if (c.qkv_bias) attn += Q + 2 * KV;
    T mlp = 3 * C * (T)c.ffn_dim;
    T per_layer = attn + mlp + (c.post_norms ? 4 : 2) * C + (c.qk_norm ? 2 * (T)c.head_dim : 0);
    T embed = (T)c.vocab_size * C;
    return embed + L * per_layer + C + (c.tied_embeddings ? 0 : embed);
}

int64_t ModelConfig::num_params() const { return count_params<int64_t>(*this); }

uint64_t ModelConfig::hash() const {
    // FNV-1a over the shape fields (not theta/eps: an adapter stays valid across those).
    int32_t f[] = {vocab_size, dim, n_layers, n_heads, n_kv_heads, head_dim, ffn_dim, tied_embeddings, qkv_bias};
    uint64_t h = 1469598103934665603ull;
    const unsigned char* p = (const unsigned char*)f;
    for (size_t i = 0; i < sizeof f; i++) h = (h ^ p[i]) * 1099511628211ull;
    // Mixed in only when set, so the fingerprints of models without it (in adapters already saved)
    // stay what they were.
    if (qk_norm) h = (h ^ 0x71) * 1099511628211ull;
    if (nope_interval) h = (h ^ (0x100u + (uint32_t)nope_interval)) * 1099511628211ull;
    if (post_norms) h = (h ^ 0x9e) * 1099511628211ull;
    if (mlp_act) h = (h ^ (0x200u + (uint32_t)mlp_act)) * 1099511628211ull;
    if (fused_projections) h = (h ^ 0x3f) * 1099511628211ull;
    return h;
}

float ModelConfig::attn_scale() const {
    const float scale = 1.0f / std::sqrt(query_pre_attn_scalar != 0.0f ? query_pre_attn_scalar : (float)head_dim);
    // LongRoPE's cos and sin times rope_attn_factor scale q and k both: q·k by its square
    return rope_attn_factor != 0.0f ? (float)((double)scale * rope_attn_factor * rope_attn_factor) : scale;
}

std::string ModelConfig::architecture(const std::string& where) const {
    const bool gemma = post_norms || mlp_act || embed_scale != 0.0f || query_pre_attn_scalar != 0.0f || rope_local_theta != 0.0f;
    if (gemma) {
        if (!(post_norms && mlp_act == 1 && embed_scale != 0.0f && qk_norm && !qkv_bias && !nope_interval))
            fail("%s: the model has some of Gemma 3's parts (post norms, GeGLU, scaled embeddings, QK-norm) but not "
                 "all, which no architecture other tools load has", where.c_str());
        return "gemma3";
    }
    if (fused_projections) {
        if (qkv_bias || qk_norm || nope_interval || sliding_pattern)
            fail("%s: the model has Phi-3's fused projections and q/k/v biases, QK-norm, NoPE layers or a window in "
                 "some layers only, which no architecture other tools load has", where.c_str());
        return "phi3";
    }
    if (longrope())
        fail("%s: the model has LongRoPE without Phi-3's fused projections, which no architecture other tools load has",
             where.c_str());
    if ((qkv_bias != 0) + (qk_norm != 0) + (nope_interval != 0) + (sliding_window != 0) > 1 || sliding_pattern)
        fail("%s: the model has more than one of q/k/v biases, QK-norm, NoPE layers and a sliding window (or the "
             "window in some layers only), which no architecture other tools load has", where.c_str());
    return qk_norm ? "qwen3" : qkv_bias ? "qwen2" : nope_interval ? "smollm3" : sliding_window ? "mistral" : "llama";
}

std::string ModelConfig::describe() const {
    char buf[256];
    char rope[128] = "";  // how positions enter: RoPE scaling, NoPE layers, windows
    if (rope_scale_factor != 0.0f)
        snprintf(rope, sizeof rope, ", %s RoPE x%g", rope_low_freq_factor == 0.0f ? "linear" : "llama3", rope_scale_factor);
    if (longrope()) snprintf(rope, sizeof rope, ", LongRoPE from %d positions", rope_original_max_pos);
    if (nope_interval) snprintf(rope + strlen(rope), sizeof rope - strlen(rope), ", NoPE every %d layers", nope_interval);
    if (sliding_window && sliding_pattern)
        snprintf(rope + strlen(rope), sizeof rope - strlen(rope), ", window %d (every %d-th layer global)", sliding_window,
                 sliding_pattern);
    else if (sliding_window)
        snprintf(rope + strlen(rope), sizeof rope - strlen(rope), ", window %d", sliding_window);
    snprintf(buf, sizeof buf, "dim %d, %d layers, %d/%d heads of %d, ffn %d, vocab %d%s%s%s%s%s%s, %.1fM params", dim,
             n_layers, n_heads, n_kv_heads, head_dim, ffn_dim, vocab_size, tied_embeddings ? ", tied" : "",
             qkv_bias ? ", qkv bias" : "", qk_norm ? ", qk norm" : "", mlp_act ? ", GeGLU" : "",
             post_norms ? ", post norms" : "", rope, num_params() / 1e6);
    return buf;
}

void ModelConfig::validate(const std::string& where) const {
    auto positive = [&](int v, const char* name) {
        if (v <= 0) fail("%s: config field %s must be positive (got %d)", where.c_str(), name, v);
    };
    positive(vocab_size, "vocab_size");
    if (vocab_size > kMaxTokenIds)
        fail("%s: config field vocab_size (%d) is larger than the %d token ids the kernels support", where.c_str(),
             vocab_size, kMaxTokenIds);
    positive(dim, "dim");
    positive(n_layers, "n_layers");
    positive(n_heads, "n_heads");
    positive(n_kv_heads, "n_kv_heads");
    positive(head_dim, "head_dim");
    positive(ffn_dim, "ffn_dim");
    positive(max_seq_len, "max_seq_len");
    if (n_heads % n_kv_heads) fail("%s: n_heads (%d) must be a multiple of n_kv_heads (%d)", where.c_str(), n_heads, n_kv_heads);
    if (head_dim % 2) fail("%s: head_dim (%d) must be even for RoPE", where.c_str(), head_dim);
    if (head_dim > 512) fail("%s: head_dim (%d) is larger than the 512 the kernels support", where.c_str(), head_dim);
    // q_dim() and kv_dim() are int, num_params() int64_t: a corrupt size must fail here, not overflow them.
    if ((int64_t)n_heads * head_dim > INT32_MAX)
        fail("%s: n_heads (%d) times head_dim (%d) is out of range", where.c_str(), n_heads, head_dim);
    const double params = count_params<double>(*this);
    if (params > kMaxModelParams)
        fail("%s: the config describes %.4g parameters, more than the %.4g allowed (a corrupt size field?)", where.c_str(),
             params, kMaxModelParams);
    const bool linear = rope_low_freq_factor == 0.0f && rope_high_freq_factor == 0.0f && rope_original_max_pos == 0;
    if (rope_scale_factor != 0.0f && !(rope_scale_factor >= 1.0f && linear) &&
        !(rope_scale_factor >= 1.0f && rope_low_freq_factor > 0.0f && rope_high_freq_factor > rope_low_freq_factor &&
          rope_original_max_pos > 0))
        fail("%s: llama3 RoPE scaling needs factor >= 1, 0 < low_freq_factor < high_freq_factor and an original "
             "context > 0, linear scaling factor >= 1 and the others 0 (got %g, %g, %g, %d)", where.c_str(),
             rope_scale_factor, rope_low_freq_factor, rope_high_freq_factor, rope_original_max_pos);
    if (!(rope_theta > 0)) fail("%s: rope_theta must be positive", where.c_str());
    if (nope_interval < 0 || nope_interval == 1)
        fail("%s: nope_interval must be 0 (RoPE everywhere) or at least 2 (got %d)", where.c_str(), nope_interval);
    if (!(norm_eps > 0)) fail("%s: norm_eps must be positive", where.c_str());
    if (mlp_act != 0 && mlp_act != 1) fail("%s: mlp_act must be 0 (SiLU) or 1 (GELU, tanh) (got %d)", where.c_str(), mlp_act);
    if (post_norms != 0 && post_norms != 1) fail("%s: post_norms must be 0 or 1 (got %d)", where.c_str(), post_norms);
    if (!(embed_scale >= 0.0f) || !(query_pre_attn_scalar >= 0.0f) || !(rope_local_theta >= 0.0f))
        fail("%s: embed_scale, query_pre_attn_scalar and rope_local_theta must be positive, or 0 for none", where.c_str());
    if (fused_projections != 0 && fused_projections != 1)
        fail("%s: fused_projections must be 0 or 1 (got %d)", where.c_str(), fused_projections);
    // LongRoPE: head_dim / 2 positive factors of each set (the rest 0), an attention factor, the
    // original context, and no other scaling
    bool factors_ok = head_dim / 2 <= kMaxRopeFactors;
    for (int i = 0; i < kMaxRopeFactors && factors_ok; i++) {
        const bool used = i < head_dim / 2;
        for (float f : {rope_short_factor[i], rope_long_factor[i]})
            factors_ok = longrope() ? (used ? f > 0.0f && std::isfinite(f) : f == 0.0f) : f == 0.0f;
    }
    if (!factors_ok || !(rope_attn_factor >= 0.0f && std::isfinite(rope_attn_factor)) ||
        (longrope() && (rope_attn_factor == 0.0f || rope_original_max_pos <= 0 || rope_scale_factor != 0.0f)))
        fail("%s: LongRoPE needs head_dim / 2 (at most %d) positive short and long factors, an attention factor > 0 and "
             "the original context, and no other RoPE scaling", where.c_str(), kMaxRopeFactors);
    if (sliding_window < 0 || sliding_pattern < 0 || (sliding_pattern && !sliding_window))
        fail("%s: sliding_window must be >= 0, and sliding_pattern (%d) >= 0 and only with a window", where.c_str(),
             sliding_pattern);
}

namespace {
struct Preset {
    const char* name;
    ModelConfig cfg;
};
ModelConfig make(int vocab, int dim, int layers, int heads, int kv, int ffn, int ctx, float theta, float eps, int tied) {
    ModelConfig c;
    c.vocab_size = vocab; c.dim = dim; c.n_layers = layers; c.n_heads = heads; c.n_kv_heads = kv;
    c.head_dim = dim / heads; c.ffn_dim = ffn; c.max_seq_len = ctx; c.rope_theta = theta; c.norm_eps = eps;
    c.tied_embeddings = tied;
    return c;
}
// Qwen3: head_dim 128 whatever dim / heads is, QK-norm, RoPE theta 1e6, eps 1e-6, context 40960.
ModelConfig qwen3(int dim, int layers, int heads, int kv, int ffn, int tied) {
    ModelConfig c = make(151936, dim, layers, heads, kv, ffn, 40960, 1000000.0f, 1e-6f, tied);
    c.head_dim = 128;
    c.qk_norm = 1;
    return c;
}
// The tiny shape with Qwen3's QK-norm and a head_dim that is not dim / heads, for tests.
ModelConfig tiny_qwen3() {
    ModelConfig c = make(512, 64, 2, 4, 2, 160, 256, 10000.0f, 1e-6f, 1);
    c.head_dim = 24;
    c.qk_norm = 1;
    return c;
}
// SmolLM3-3B: Llama 3's vocabulary, GQA 16/4, NoPE in every 4th layer, RoPE theta 5e6, 64k context.
ModelConfig smollm3() {
    ModelConfig c = make(128256, 2048, 36, 16, 4, 11008, 65536, 5000000.0f, 1e-6f, 1);
    c.nope_interval = 4;
    return c;
}
// Gemma 3 (text): GeGLU, post norms, QK-norm, embeddings scaled by sqrt(dim), head_dim 256, a
// window of 512 keys in five layers of every six (RoPE base 10000 there, 1e6 in the global ones),
// eps 1e-6, 262K vocabulary, tied; 4B and up scale the global RoPE linearly by 8.
ModelConfig gemma3(int vocab, int dim, int layers, int heads, int kv, int head_dim, int ffn, int ctx, int window) {
    ModelConfig c = make(vocab, dim, layers, heads, kv, ffn, ctx, 1000000.0f, 1e-6f, 1);
    c.head_dim = head_dim;
    c.qk_norm = 1;
    c.mlp_act = 1;
    c.post_norms = 1;
    c.embed_scale = (float)std::sqrt((double)dim);
    c.query_pre_attn_scalar = (float)head_dim;
    c.sliding_window = window;
    c.sliding_pattern = 6;
    c.rope_local_theta = 10000.0f;
    return c;
}
ModelConfig linear_rope(ModelConfig c, float factor) {
    c.rope_scale_factor = factor;
    return c;
}
// Gemma-3-27B scales scores by (dim / heads)^-1/2 = 168^-1/2, not head_dim's.
ModelConfig gemma3_27b() {
    ModelConfig c = linear_rope(gemma3(262208, 5376, 62, 32, 16, 128, 21504, 131072, 1024), 8.0f);
    c.query_pre_attn_scalar = 168.0f;
    return c;
}
// Llama 3.1 and later: the llama3 RoPE scaling of an 8192-token original context.
ModelConfig llama3_scaled(ModelConfig c, float factor) {
    c.rope_scale_factor = factor, c.rope_low_freq_factor = 1.0f, c.rope_high_freq_factor = 4.0f;
    c.rope_original_max_pos = 8192;
    return c;
}
// Phi-3: LLaMA's math, q/k/v and gate/up fused in its checkpoints, untied, eps 1e-5.
ModelConfig phi3(int vocab, int dim, int layers, int heads, int kv, int ffn, int ctx, float theta, int window) {
    ModelConfig c = make(vocab, dim, layers, heads, kv, ffn, ctx, theta, 1e-5f, 0);
    c.fused_projections = 1;
    c.sliding_window = window;
    return c;
}
// Shapes from each model's config.json.
const Preset kPresets[] = {
    {"tiny", make(512, 64, 2, 4, 2, 160, 256, 10000.0f, 1e-5f, 1)},
    {"tiny-qwen3", tiny_qwen3()},
    {"smollm2-135m", make(49152, 576, 30, 9, 3, 1536, 8192, 100000.0f, 1e-5f, 1)},
    {"smollm2-360m", make(49152, 960, 32, 15, 5, 2560, 8192, 100000.0f, 1e-5f, 1)},
    {"llama-3.2-1b", llama3_scaled(make(128256, 2048, 16, 32, 8, 8192, 131072, 500000.0f, 1e-5f, 1), 32.0f)},
    {"llama-3.1-8b", llama3_scaled(make(128256, 4096, 32, 32, 8, 14336, 131072, 500000.0f, 1e-5f, 0), 8.0f)},
    {"llama-7b", make(32000, 4096, 32, 32, 32, 11008, 2048, 10000.0f, 1e-6f, 0)},
    {"llama-13b", make(32000, 5120, 40, 40, 40, 13824, 2048, 10000.0f, 1e-6f, 0)},
    {"llama-33b", make(32000, 6656, 60, 52, 52, 17920, 2048, 10000.0f, 1e-6f, 0)},
    {"llama-65b", make(32000, 8192, 80, 64, 64, 22016, 2048, 10000.0f, 1e-5f, 0)},
    {"llama-2-7b", make(32000, 4096, 32, 32, 32, 11008, 4096, 10000.0f, 1e-5f, 0)},
    {"llama-2-13b", make(32000, 5120, 40, 40, 40, 13824, 4096, 10000.0f, 1e-5f, 0)},
    {"llama-2-70b", make(32000, 8192, 80, 64, 8, 28672, 4096, 10000.0f, 1e-5f, 0)},
    {"smollm3-3b", smollm3()},
    {"qwen3-0.6b", qwen3(1024, 28, 16, 8, 3072, 1)},
    {"qwen3-1.7b", qwen3(2048, 28, 16, 8, 6144, 1)},
    {"qwen3-4b", qwen3(2560, 36, 32, 8, 9728, 1)},
    {"qwen3-8b", qwen3(4096, 36, 32, 8, 12288, 0)},
    {"phi-3-mini", phi3(32064, 3072, 32, 32, 32, 8192, 4096, 10000.0f, 2047)},  // Phi-3-mini-4k-instruct
    {"phi-4", phi3(100352, 5120, 40, 40, 10, 17920, 16384, 250000.0f, 0)},
    {"tiny-gemma3", gemma3(512, 64, 6, 4, 2, 32, 160, 256, 5)},
    {"gemma3-270m", gemma3(262144, 640, 18, 4, 1, 256, 2048, 32768, 512)},
    {"gemma3-1b", gemma3(262144, 1152, 26, 4, 1, 256, 6912, 32768, 512)},
    {"gemma3-4b", linear_rope(gemma3(262208, 2560, 34, 8, 4, 256, 10240, 131072, 1024), 8.0f)},
    {"gemma3-12b", linear_rope(gemma3(262208, 3840, 48, 16, 8, 256, 15360, 131072, 1024), 8.0f)},
    {"gemma3-27b", gemma3_27b()},
};
}  // namespace

std::vector<std::string> config_preset_names() {
    std::vector<std::string> names;
    for (const Preset& p : kPresets) names.push_back(p.name);
    return names;
}

ModelConfig config_preset(const std::string& name) {
    for (const Preset& p : kPresets)
        if (name == p.name) return p.cfg;
    std::string all;
    for (const Preset& p : kPresets) all += std::string(all.empty() ? "" : ", ") + p.name;
    fail("unknown model preset '%s' (known: %s)", name.c_str(), all.c_str());
}

std::vector<float> rope_inv_freq(float theta, int head_dim) {
    std::vector<float> f(head_dim / 2);
    for (int i = 0; i < head_dim / 2; i++) f[i] = 1.0f / std::pow(theta, (float)(2 * i) / (float)head_dim);
    return f;
}

std::vector<float> rope_inv_freq_local(const ModelConfig& c) {
    return c.rope_local_theta != 0.0f ? rope_inv_freq(c.rope_local_theta, c.head_dim) : rope_inv_freq(c);
}

float longrope_default_attn_factor(double factor, int32_t original_max_pos) {
    return factor <= 1.0 ? 1.0f : (float)std::sqrt(1.0 + std::log(factor) / std::log((double)original_max_pos));
}

std::vector<float> rope_inv_freq(const ModelConfig& c, bool long_context) {
    const int half = c.head_dim / 2;
    std::vector<float> f = rope_inv_freq(c.rope_theta, c.head_dim);
    if (c.longrope()) {  // transformers' _compute_longrope_parameters: 1 / (factor_i · theta^(2i / head_dim)), FP32
        const float* factor = long_context ? c.rope_long_factor : c.rope_short_factor;
        for (int i = 0; i < half; i++) f[i] = 1.0f / (factor[i] * std::pow(c.rope_theta, (float)(2 * i) / (float)c.head_dim));
        return f;
    }
    if (c.rope_scale_factor == 0.0f) return f;
    if (c.rope_low_freq_factor == 0.0f) {  // linear: transformers' inv_freq / factor
        for (float& x : f) x /= c.rope_scale_factor;
        return f;
    }
    // transformers' _compute_llama3_parameters: tensors in FP32, the Python scalars cast to FP32 as
    // they meet them; the wavelength thresholds are Python (double) divisions.
    const float factor = c.rope_scale_factor, low = c.rope_low_freq_factor, high = c.rope_high_freq_factor;
    const double old_ctx = c.rope_original_max_pos;
    const float low_wavelen = (float)(old_ctx / low), high_wavelen = (float)(old_ctx / high);
    const float two_pi = (float)(2.0 * 3.14159265358979323846), ramp = (float)((double)high - (double)low);
    for (int i = 0; i < half; i++) {
        const float wavelen = (1.0f / f[i]) * two_pi;
        const float scaled = wavelen > low_wavelen ? f[i] / factor : f[i];
        if (wavelen < high_wavelen || wavelen > low_wavelen) {
            f[i] = scaled;
            continue;
        }
        // PyTorch's scalar / tensor is a reciprocal and a product. The two products that an addition
        // follows go through memory, so that the compiler (which contracts in C++ under -O3
        // -march=native) cannot fuse them with it into one FMA: one rounding fewer than PyTorch's.
        volatile float wavelen_ratio = (1.0f / wavelen) * (float)old_ctx;
        const float smooth = (wavelen_ratio - low) / ramp;
        const float a = (1.0f - smooth) * scaled / factor;
        volatile float b = smooth * scaled;
        f[i] = a + b;
    }
    return f;
}
