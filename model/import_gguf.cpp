// GGUF → our model: llama.cpp's tensor names and metadata keys mapped onto ModelConfig and the HF
// layout, q/k rows un-permuted, Phi-3's fused attn_qkv / ffn_up split, the tokenizer from tokenizer.ggml.*.
#include <algorithm>
#include <climits>
#include <cmath>
#include <cstdio>
#include <memory>

#include "kernels/kernels.h"
#include "model/gguf.h"
#include "model/import.h"
#include "model/util.h"

// GGUF tensor name of one of our (Hugging Face) tensor names; "" when there is none.
std::string gguf_tensor_name(const std::string& hf, bool post_norms) {
    if (hf == "model.embed_tokens.weight") return "token_embd.weight";
    if (hf == "model.norm.weight") return "output_norm.weight";
    if (hf == "lm_head.weight") return "output.weight";
    static const char* const layer_names[][2] = {
        {"input_layernorm.weight", "attn_norm.weight"},    {"self_attn.q_proj.weight", "attn_q.weight"},
        {"self_attn.k_proj.weight", "attn_k.weight"},      {"self_attn.v_proj.weight", "attn_v.weight"},
        {"self_attn.q_proj.bias", "attn_q.bias"},          {"self_attn.k_proj.bias", "attn_k.bias"},
        {"self_attn.v_proj.bias", "attn_v.bias"},          {"self_attn.o_proj.weight", "attn_output.weight"},
        {"self_attn.q_norm.weight", "attn_q_norm.weight"}, {"self_attn.k_norm.weight", "attn_k_norm.weight"},
        {"post_attention_layernorm.weight", "ffn_norm.weight"}, {"mlp.gate_proj.weight", "ffn_gate.weight"},
        {"mlp.up_proj.weight", "ffn_up.weight"},           {"mlp.down_proj.weight", "ffn_down.weight"},
        // Phi-3's fused tensors (stored_tensor): q, k, v rows in one; gate then up rows in ffn_up, the
        // first half the one llama.cpp's SwiGLU puts through SiLU
        {"self_attn.qkv_proj.weight", "attn_qkv.weight"},  {"mlp.gate_up_proj.weight", "ffn_up.weight"}};
    const std::string prefix = "model.layers.";
    if (hf.compare(0, prefix.size(), prefix) != 0) return "";
    size_t dot = hf.find('.', prefix.size());
    std::string layer = hf.substr(prefix.size(), dot - prefix.size()), rest = hf.substr(dot + 1);
    // Gemma 3's sandwich norms: llama.cpp's ffn_norm is the MLP's input norm, whatever HF calls it.
    static const char* const post_norm_names[][2] = {{"post_attention_layernorm.weight", "post_attention_norm.weight"},
                                                     {"pre_feedforward_layernorm.weight", "ffn_norm.weight"},
                                                     {"post_feedforward_layernorm.weight", "post_ffw_norm.weight"}};
    if (post_norms)
        for (const auto& m : post_norm_names)
            if (rest == m[0]) return "blk." + layer + "." + m[1];
    for (const auto& m : layer_names)
        if (rest == m[0]) return "blk." + layer + "." + m[1];
    return "";
}

namespace {
ModelConfig gguf_config(const GgufFile& g, const std::string& arch) {
    const std::string p = arch + ".";
    // Sizes are int32 in ModelConfig: a corrupt value must fail here, not wrap around.
    auto size = [&](const char* key, int64_t fallback) {
        int64_t v = fallback < 0 ? g.get_int(p + key) : g.get_int(p + key, fallback);
        if (v < 0 || v > INT32_MAX) fail("%s: %s%s = %lld is out of range", g.path().c_str(), p.c_str(), key, (long long)v);
        return (int32_t)v;
    };
    ModelConfig c;
    c.dim = size("embedding_length", -1);
    c.n_layers = size("block_count", -1);
    c.ffn_dim = size("feed_forward_length", -1);
    c.n_heads = size("attention.head_count", -1);
    c.n_kv_heads = size("attention.head_count_kv", c.n_heads);
    c.head_dim = size("attention.key_length", c.n_heads > 0 ? c.dim / c.n_heads : 0);
    c.max_seq_len = size("context_length", -1);
    c.rope_theta = (float)g.get_float(p + "rope.freq_base", 10000.0);
    c.norm_eps = (float)g.get_float(p + "attention.layer_norm_rms_epsilon");
    c.qkv_bias = arch == "qwen2";
    c.qk_norm = arch == "qwen3";
    c.nope_interval = arch == "smollm3" ? 4 : 0;  // llama.cpp's SmolLM3: no key, always every 4th layer
    c.fused_projections = arch == "phi3";
    c.tied_embeddings = g.find_tensor("output.weight") == nullptr;
    const GgufTensor* emb = g.find_tensor("token_embd.weight");
    if (!emb) fail("%s: tensor token_embd.weight is missing", g.path().c_str());
    if (emb->shape()[0] > INT32_MAX)
        fail("%s: tensor token_embd.weight has %lld rows, more than a vocabulary can have", g.path().c_str(),
             (long long)emb->shape()[0]);
    c.vocab_size = (int32_t)emb->shape()[0];
    if (arch == "gemma3") {
        // What llama.cpp hard-codes for it: a window in five layers of six, RoPE base 10000 there,
        // scores scaled by head_dim^-1/2 except in the 27B (62 layers): (dim / heads)^-1/2.
        c.qk_norm = 1;
        c.mlp_act = GLU_GELU_TANH;
        c.post_norms = 1;
        c.embed_scale = (float)std::sqrt((double)c.dim);
        c.sliding_window = size("attention.sliding_window", -1);
        c.sliding_pattern = 6;
        c.rope_local_theta = 10000.0f;
        c.query_pre_attn_scalar = gguf_gemma3_query_scalar(c);
        if (g.find(p + "final_logit_softcapping") || g.find(p + "attn_logit_softcapping"))
            fail("%s: logit soft-capping (Gemma 2) is not supported", g.path().c_str());
    }
    if (arch == "phi3") {
        // The window as Phi-3's converter writes it: config.json's sliding_window, 0 for none (Phi-4);
        // without the key (older GGUFs), llama.cpp's default for Phi-3-mini/medium-4k, 2047. A window
        // that spans the whole context is none, as the HF importer takes it (Phi-3-mini-128k: 262144).
        const bool mini_4k = (c.n_layers == 32 || c.n_layers == 40) && c.max_seq_len == 4096;
        const int64_t window = g.get_int(p + "attention.sliding_window", mini_4k ? 2047 : 0);
        if (window > 0 && window < c.max_seq_len) c.sliding_window = (int32_t)window;
    }

    int64_t rope_dims = g.get_int(p + "rope.dimension_count", c.head_dim);
    if (rope_dims != c.head_dim)
        fail("%s: %srope.dimension_count is %lld but heads have %d dims: partial rotary embeddings are not supported",
             g.path().c_str(), p.c_str(), (long long)rope_dims, c.head_dim);
    int64_t vocab_key = g.get_int(p + "vocab_size", c.vocab_size);
    if (vocab_key != c.vocab_size)
        fail("%s: %svocab_size is %lld but token_embd.weight has %d rows", g.path().c_str(), p.c_str(),
             (long long)vocab_key, c.vocab_size);
    c.validate(g.path());
    return c;
}

// Llama 3.1+ GGUFs ship llama.cpp's rope_freqs tensor: per frequency, the divisor of the unscaled
// inv_freq that the llama3 scaling amounts to (1 for short wavelengths, the factor for long ones, a
// ramp between). The parameters are recovered from it: the factor is the largest divisor; the ramp
// runs from 1 to 4 of the original context in every Llama 3.x; the original context is 8192 in all
// of them, else solved from a frequency on the ramp, else (no frequency on it: only the two ends
// matter) put just under the shortest divided wavelength. The config takes them when they rebuild
// the tensor within FP32 rounding. Other scalings (rope.scaling.type linear, yarn) are not
// implemented: a warning says so.
void gguf_rope_scaling(const GgufFile& g, const std::string& arch, ModelConfig& c) {
    const GgufValue* type = g.find(arch + ".rope.scaling.type");
    if (type && !type->strings.empty() && type->strings[0] == "linear") {  // Gemma 3 4B+: every frequency / factor
        c.rope_scale_factor = (float)g.get_float(arch + ".rope.scaling.factor");
        c.validate(g.path());
        return;
    }
    if (type && !type->strings.empty() && type->strings[0] != "none")
        fprintf(stderr, "warning: %s: RoPE scaling of type '%s' is not implemented (llama3 is); the model's outputs "
                "will differ from the original's\n", g.path().c_str(), type->strings[0].c_str());
    const GgufTensor* t = g.find_tensor("rope_freqs.weight");
    if (!t) return;
    const std::vector<float> plain = rope_inv_freq(c.rope_theta, c.head_dim);
    std::vector<float> divisors(plain.size());
    if (t->numel == (int64_t)plain.size()) g.read_f32(*t, divisors.data());  // fails naming it when unreadable
    ModelConfig s = c;
    s.rope_scale_factor = *std::max_element(divisors.begin(), divisors.end());
    s.rope_low_freq_factor = 1.0f, s.rope_high_freq_factor = 4.0f;
    std::vector<double> contexts = {8192.0};
    double shortest_divided = 1e30;
    for (size_t i = 0; i < plain.size(); i++) {
        const double wavelen = 2 * M_PI / plain[i], d = divisors[i], f = s.rope_scale_factor;
        if (d > 1.0 + 1e-6 && d < f * (1 - 1e-6)) {  // on the ramp: 1/d = (1 - r)/f + r, r = ctx/wavelen - 1, over 3
            const double r = (1.0 / d - 1.0 / f) / (1.0 - 1.0 / f);
            contexts.push_back(std::round(wavelen * (1.0 + 3.0 * r)));
        }
        if (d >= f * (1 - 1e-6)) shortest_divided = std::min(shortest_divided, wavelen);
    }
    contexts.push_back(std::floor(shortest_divided * (1 - 1e-6)));
    for (double ctx : contexts) {
        s.rope_original_max_pos = (int32_t)std::min(ctx, 2e9);
        bool match = s.rope_scale_factor > 1.0f && s.rope_original_max_pos > 0;
        const std::vector<float> scaled = match ? rope_inv_freq(s) : std::vector<float>();
        for (size_t i = 0; i < plain.size() && match; i++)
            match = std::fabs(plain[i] / divisors[i] - scaled[i]) <= 1e-5f * scaled[i];
        if (match) {
            c = s;
            return;
        }
    }
    fprintf(stderr, "warning: %s: rope_freqs.weight is not a llama3 scaling this converter recognises; RoPE runs "
            "unscaled and the model's outputs will differ from the original's\n", g.path().c_str());
}

// Phi-3's LongRoPE as its converter writes it: rope_factors_short.weight and rope_factors_long.weight
// (head_dim / 2 divisors of the frequencies each, one pair for all layers), the original context
// (phi3.rope.scaling.original_context_length; llama.cpp's default: the context length) and the
// attention factor that multiplies RoPE's cos and sin (phi3.rope.scaling.attn_factor; default 1).
// The converter computes that factor from the two contexts, as transformers does when config.json
// gives none (one config.json gives is lost in conversion). llama.cpp takes the long factors for every position once its context (-c) passes the
// original one; transformers, and this trainer, for a pass whose longest position does.
void gguf_longrope(const GgufFile& g, const std::string& arch, ModelConfig& c) {
    const GgufTensor* factors[] = {g.find_tensor("rope_factors_short.weight"), g.find_tensor("rope_factors_long.weight")};
    if (!factors[0] && !factors[1]) return;
    float* into[] = {c.rope_short_factor, c.rope_long_factor};
    const int64_t half = c.head_dim / 2;
    for (int i = 0; i < 2; i++) {
        const char* name = i ? "rope_factors_long.weight" : "rope_factors_short.weight";
        if (!factors[i]) fail("%s: tensor %s is missing (LongRoPE needs both sets of factors)", g.path().c_str(), name);
        if (factors[i]->numel != half || half > ModelConfig::kMaxRopeFactors)
            fail("%s: tensor %s has %lld values, but LongRoPE needs head_dim / 2 = %lld (at most %d)", g.path().c_str(),
                 name, (long long)factors[i]->numel, (long long)half, ModelConfig::kMaxRopeFactors);
        g.read_f32(*factors[i], into[i]);
    }
    const int64_t original = g.get_int(arch + ".rope.scaling.original_context_length", c.max_seq_len);
    if (original <= 0 || original > INT32_MAX)
        fail("%s: %s.rope.scaling.original_context_length = %lld is out of range", g.path().c_str(), arch.c_str(),
             (long long)original);
    c.rope_original_max_pos = (int32_t)original;
    c.rope_attn_factor = (float)g.get_float(arch + ".rope.scaling.attn_factor", 1.0);
    c.validate(g.path());
}

void finish_gguf_tokenizer(const GgufFile& g, Tokenizer& tok);

Tokenizer gguf_tokenizer(const GgufFile& g) {
    const std::string& path = g.path();
    std::string model = g.get_string("tokenizer.ggml.model");
    if (model != "gpt2" && model != "llama")
        fail("%s: tokenizer.ggml.model is '%s': only BPE tokenizers are supported, byte-level ('gpt2': SmolLM, Llama-3, "
             "Qwen2, ...) and SentencePiece's ('llama': LLaMA-1/2, Mistral v0.1)", path.c_str(), model.c_str());
    Tokenizer tok;
    tok.vocab = g.get_strings("tokenizer.ggml.tokens");
    tok.token_type.assign(tok.vocab.size(), TokenType::Normal);
    if (g.find("tokenizer.ggml.token_type")) {
        const std::vector<int64_t>& types = g.get_ints("tokenizer.ggml.token_type");
        if (types.size() != tok.vocab.size())
            fail("%s: tokenizer.ggml.token_type has %zu entries for %zu tokens", path.c_str(), types.size(), tok.vocab.size());
        for (size_t i = 0; i < types.size(); i++) {
            if (types[i] < (int)TokenType::Normal || types[i] > (int)TokenType::Byte)
                fail("%s: tokenizer.ggml.token_type[%zu] is %lld, not a known token type", path.c_str(), i, (long long)types[i]);
            tok.token_type[i] = (TokenType)types[i];
        }
    }
    // llama.cpp's SentencePiece tokenizer merges the pair whose token scores highest and puts "▁"
    // before the text at the start and after each special token (add_space_prefix, default on).
    if (model == "llama") {
        const std::vector<double>& s = g.get_floats("tokenizer.ggml.scores");
        if (s.size() != tok.vocab.size())
            fail("%s: tokenizer.ggml.scores has %zu entries for %zu tokens", path.c_str(), s.size(), tok.vocab.size());
        for (size_t i = 0; i < s.size(); i++)
            if (!std::isfinite(s[i])) fail("%s: tokenizer.ggml.scores[%zu] is %g: scores must be finite", path.c_str(), i, s[i]);
        tok.model = TokenizerModel::SentencePiece;
        // llama.cpp's converter writes a user-defined piece's "▁" as a space (Gemma's runs of "▁"),
        // to match it on raw text; Hugging Face builds those runs by merges instead (see
        // spm_merges_from_scores): back to the "▁" of tokenizer.model
        for (size_t i = 0; i < tok.vocab.size(); i++)
            if (tok.token_type[i] == TokenType::UserDefined) tok.vocab[i] = spm_spaces_to_meta(tok.vocab[i]);
        tok.space_prefix = g.get_int("tokenizer.ggml.add_space_prefix", 1) ? SpacePrefix::Always : SpacePrefix::None;
        tok.merges = spm_merges_from_scores(tok.vocab, std::vector<float>(s.begin(), s.end()), tok.token_type);
        tok.add_bos = g.get_int("tokenizer.ggml.add_bos_token", 1);
        finish_gguf_tokenizer(g, tok);
        return tok;
    }
    tok.add_bos = g.get_int("tokenizer.ggml.add_bos_token", 0);
    // Merges are "left right": byte-level token strings never contain a space (it is 'Ġ').
    const std::vector<std::string>& merges = g.get_strings("tokenizer.ggml.merges");
    tok.merges.reserve(merges.size());
    for (size_t r = 0; r < merges.size(); r++) {
        size_t sp = merges[r].find(' ', 1);
        if (sp == std::string::npos)
            fail("%s: tokenizer.ggml.merges[%zu] '%s' is not two tokens separated by a space", path.c_str(), r, merges[r].c_str());
        tok.merges.emplace_back(merges[r].substr(0, sp), merges[r].substr(sp + 1));
    }
    std::string pre = g.find("tokenizer.ggml.pre") ? g.get_string("tokenizer.ggml.pre") : "gpt2";
    try {
        tok.pre = pre_tokenizer_from_gguf(pre);
    } catch (const std::runtime_error& e) {
        fail("%s: %s", path.c_str(), e.what());
    }
    tok.ignore_merges = tok.pre == PreTokenizerKind::Llama3;  // as llama.cpp does for its llama-bpe family
    // Qwen2's own tokenizer.json normalizes text to NFC first; GGUF has no key for it (llama.cpp
    // skips it), and we follow the model's own tokenizer.
    tok.nfc = tok.pre == PreTokenizerKind::Qwen2;
    finish_gguf_tokenizer(g, tok);
    return tok;
}

// The ids, chat template and checks both tokenizer kinds share.
void finish_gguf_tokenizer(const GgufFile& g, Tokenizer& tok) {
    const std::string& path = g.path();
    const std::string name = g.find("general.name") ? g.get_string("general.name") : "";
    tok.strip = gguf_token_strips(tok, name);
    // Phi-3's own vocabulary (arch phi3 with SentencePiece's: Phi-4's is byte-level) strips after its
    // special tokens whatever the file is named: that is how the model was trained (its tokenizer.json's
    // rstrip). llama.cpp's converter names Phi-3.5 "Phi 3.5 Mini Instruct", which llama.cpp then runs
    // without it: the training data is tokenized as the model's own tokenizer does instead.
    if (tok.strip.empty() && tok.model == TokenizerModel::SentencePiece && g.get_string("general.architecture") == "phi3") {
        tok.strip = gguf_token_strips(tok, "phi-3");
        fprintf(stderr, "note: %s: general.name '%s' does not say Phi-3, so llama.cpp runs this file without taking the "
                "white space after <|user|>, <|end|>, ...; Phi-3's own tokenizer takes it, and so does this import "
                "(./export --gguf names its output Phi-3, so that llama.cpp does too)\n", path.c_str(), name.c_str());
    }
    tok.bos_id = (int32_t)g.get_int("tokenizer.ggml.bos_token_id", -1);
    tok.eos_id = (int32_t)g.get_int("tokenizer.ggml.eos_token_id", -1);
    tok.pad_id = (int32_t)g.get_int("tokenizer.ggml.padding_token_id", -1);
    if (g.find("tokenizer.chat_template")) {
        tok.chat_template = chat_template_or_plain(g.get_string("tokenizer.chat_template"), path);
    } else if (std::find(tok.vocab.begin(), tok.vocab.end(), "<|im_start|>") != tok.vocab.end()) {
        tok.chat_template.kind = ChatTemplateKind::ChatML;  // as tokenizer_load_hf does without a template
    }
    try {
        tokenizer_build(tok);
    } catch (const std::runtime_error& e) {
        fail("%s: tokenizer: %s", path.c_str(), e.what());
    }
}
}  // namespace

std::vector<uint8_t> gguf_token_strips(const Tokenizer& tok, const std::string& general_name) {
    std::string name = general_name;
    for (char& c : name) c = (char)std::tolower((unsigned char)c);
    if (name.find("phi-3") == std::string::npos && name.find("phi3") == std::string::npos) return {};
    std::vector<uint8_t> strip(tok.vocab.size(), 0);
    for (size_t id = 0; id < tok.vocab.size(); id++) {
        const TokenType t = tok.token_type[id];
        const std::string& s = tok.vocab[id];
        // (llama.cpp also names </s>, but cuts only these types out of text: an ordinary </s> strips nothing)
        const bool special = t == TokenType::Control || t == TokenType::UserDefined || t == TokenType::Unknown;
        if (special && s != "<unk>" && s != "<s>" && s != "<|endoftext|>") strip[id] = Tokenizer::kStripRight;
    }
    return strip;
}

ImportedModel import_gguf(const std::string& path, bool load_params) {
    auto file = std::make_shared<GgufFile>(gguf_open(path));
    const GgufFile& g = *file;
    std::string arch = g.get_string("general.architecture");
    if (arch != "llama" && arch != "qwen2" && arch != "qwen3" && arch != "smollm3" && arch != "gemma3" && arch != "phi3")
        fail("%s: general.architecture is '%s': supported are llama (also Mistral and SmolLM2 GGUFs), qwen2, qwen3, "
             "smollm3, gemma3 and phi3 (Phi-3, Phi-3.5, Phi-4)",
             path.c_str(), arch.c_str());
    ImportedModel m;
    m.cfg = gguf_config(g, arch);
    gguf_rope_scaling(g, arch, m.cfg);
    if (arch == "phi3") gguf_longrope(g, arch, m.cfg);
    m.tok = gguf_tokenizer(g);
    tokenizer_fit_rows(m.tok, (size_t)m.cfg.vocab_size, path, "token_embd.weight only has rows for");

    // Every tensor is checked (present, right shape, readable type) before the parameters are allocated,
    // so a bad file fails at once and no size from it is used unchecked (a block_count included).
    ParamLayout L = param_layout_within(m.cfg, g.tensors.size());
    std::vector<const GgufTensor*> src;
    std::vector<FusedPart> slices(L.tensors.size());  // Phi-3's: each tensor's rows of its fused one
    for (size_t i = 0; i < L.tensors.size(); i++) {
        const TensorInfo t = stored_tensor(m.cfg, L.tensors[i], slices[i]);
        std::string name = gguf_tensor_name(t.name, m.cfg.post_norms);
        const GgufTensor* s = g.find_tensor(name);
        if (!s) fail("%s: tensor %s (for %s) is missing", path.c_str(), name.c_str(), L.tensors[i].name.c_str());
        import_check_shape(t, s->shape(), path + ": tensor " + name);
        g.check_readable(*s);
        src.push_back(s);
    }
    for (const GgufTensor& t : g.tensors) {  // (the RoPE tensors are read into the config)
        const bool rope = t.name == "rope_freqs.weight" ||
                          (m.cfg.longrope() && (t.name == "rope_factors_short.weight" || t.name == "rope_factors_long.weight"));
        if (std::find(src.begin(), src.end(), &t) == src.end() && !rope)
            fail("%s: tensor %s is not part of a %s model as this converter knows it (architecture variant not supported)",
                 path.c_str(), t.name.c_str(), arch.c_str());
    }

    const ModelConfig c = m.cfg;
    auto fused = std::make_shared<FusedReads>();
    m.read_tensor = [file, src, slices, fused, tensors = L.tensors, c, arch](size_t i, float* dst) {
        if (slices[i].module) {  // (Phi-3's)
            auto whole = [&](float* all) { file->read_f32(*src[i], all); };
            return fused->read(src[i], slices[i], tensors[i], whole, dst);
        }
        file->read_f32(*src[i], dst);
        const std::string& name = src[i]->name;
        bool q = name.find(".attn_q.weight") != std::string::npos, k = name.find(".attn_k.weight") != std::string::npos;
        if (gguf_rope_interleaved(arch) && (q || k)) unpermute_rope_rows(dst, q ? c.n_heads : c.n_kv_heads, c.head_dim, c.dim);
    };
    if (load_params) import_load_params(m);
    return m;
}
