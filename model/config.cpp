#include "model/config.h"

#include "model/util.h"

int64_t ModelConfig::num_params() const {
    int64_t C = dim, L = n_layers;
    int64_t attn = C * q_dim() + 2 * C * kv_dim() + (int64_t)q_dim() * C;
    if (qkv_bias) attn += q_dim() + 2 * kv_dim();
    int64_t mlp = 3 * C * (int64_t)ffn_dim;
    int64_t per_layer = attn + mlp + 2 * C;
    int64_t embed = (int64_t)vocab_size * C;
    return embed + L * per_layer + C + (tied_embeddings ? 0 : embed);
}

uint64_t ModelConfig::hash() const {
    // FNV-1a over the shape fields (not theta/eps: an adapter stays valid across those).
    int32_t f[] = {vocab_size, dim, n_layers, n_heads, n_kv_heads, head_dim, ffn_dim, tied_embeddings, qkv_bias};
    uint64_t h = 1469598103934665603ull;
    const unsigned char* p = (const unsigned char*)f;
    for (size_t i = 0; i < sizeof f; i++) h = (h ^ p[i]) * 1099511628211ull;
    return h;
}

std::string ModelConfig::describe() const {
    char buf[256];
    snprintf(buf, sizeof buf, "dim %d, %d layers, %d/%d heads of %d, ffn %d, vocab %d%s%s, %.1fM params", dim, n_layers,
             n_heads, n_kv_heads, head_dim, ffn_dim, vocab_size, tied_embeddings ? ", tied" : "",
             qkv_bias ? ", qkv bias" : "", num_params() / 1e6);
    return buf;
}

void ModelConfig::validate(const std::string& where) const {
    auto positive = [&](int v, const char* name) {
        if (v <= 0) fail("%s: config field %s must be positive (got %d)", where.c_str(), name, v);
    };
    positive(vocab_size, "vocab_size");
    positive(dim, "dim");
    positive(n_layers, "n_layers");
    positive(n_heads, "n_heads");
    positive(n_kv_heads, "n_kv_heads");
    positive(head_dim, "head_dim");
    positive(ffn_dim, "ffn_dim");
    positive(max_seq_len, "max_seq_len");
    if (n_heads % n_kv_heads) fail("%s: n_heads (%d) must be a multiple of n_kv_heads (%d)", where.c_str(), n_heads, n_kv_heads);
    if (head_dim % 2) fail("%s: head_dim (%d) must be even for RoPE", where.c_str(), head_dim);
    if (!(rope_theta > 0)) fail("%s: rope_theta must be positive", where.c_str());
    if (!(norm_eps > 0)) fail("%s: norm_eps must be positive", where.c_str());
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
// Shapes from each model's config.json.
const Preset kPresets[] = {
    {"tiny", make(512, 64, 2, 4, 2, 160, 256, 10000.0f, 1e-5f, 1)},
    {"smollm2-135m", make(49152, 576, 30, 9, 3, 1536, 8192, 100000.0f, 1e-5f, 1)},
    {"smollm2-360m", make(49152, 960, 32, 15, 5, 2560, 8192, 100000.0f, 1e-5f, 1)},
    {"llama-3.2-1b", make(128256, 2048, 16, 32, 8, 8192, 131072, 500000.0f, 1e-5f, 1)},
    {"llama-3.1-8b", make(128256, 4096, 32, 32, 8, 14336, 131072, 500000.0f, 1e-5f, 0)},
    {"llama-7b", make(32000, 4096, 32, 32, 32, 11008, 2048, 10000.0f, 1e-6f, 0)},
    {"llama-13b", make(32000, 5120, 40, 40, 40, 13824, 2048, 10000.0f, 1e-6f, 0)},
    {"llama-33b", make(32000, 6656, 60, 52, 52, 17920, 2048, 10000.0f, 1e-6f, 0)},
    {"llama-65b", make(32000, 8192, 80, 64, 64, 22016, 2048, 10000.0f, 1e-5f, 0)},
    {"llama-2-7b", make(32000, 4096, 32, 32, 32, 11008, 4096, 10000.0f, 1e-5f, 0)},
    {"llama-2-13b", make(32000, 5120, 40, 40, 40, 13824, 4096, 10000.0f, 1e-5f, 0)},
    {"llama-2-70b", make(32000, 8192, 80, 64, 8, 28672, 4096, 10000.0f, 1e-5f, 0)},
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
