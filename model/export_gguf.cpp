#include "model/export_gguf.h"

#include <algorithm>
#include <cmath>
#include <cstdio>
#include <cstring>

#include "model/dequant.h"
#include "model/gguf.h"
#include "model/import.h"
#include "model/util.h"
#include "model/weights.h"

namespace {
constexpr size_t kAlign = 32;  // GGUF's default general.alignment

// The metadata section: each entry is a string key, a u32 value type and the value (strings are u64
// length + bytes; arrays u32 element type, u64 count, elements).
struct Metadata {
    std::string bytes;
    uint64_t count = 0;
    template <class T> void raw(const T& v) { bytes.append((const char*)&v, sizeof v); }
    void str(const std::string& s) { raw((uint64_t)s.size()), bytes += s; }
    void key(const std::string& k, GgufValueType t) { str(k), raw((uint32_t)t), count++; }
    void u32(const std::string& k, uint32_t v) { key(k, GGUF_UINT32), raw(v); }
    void f32(const std::string& k, float v) { key(k, GGUF_FLOAT32), raw(v); }
    void boolean(const std::string& k, bool v) { key(k, GGUF_BOOL), raw((uint8_t)v); }
    void string(const std::string& k, const std::string& v) { key(k, GGUF_STRING), str(v); }
    void strings(const std::string& k, const std::vector<std::string>& v) {
        key(k, GGUF_ARRAY), raw((uint32_t)GGUF_STRING), raw((uint64_t)v.size());
        for (const std::string& s : v) str(s);
    }
    template <class T> void array(const std::string& k, GgufValueType t, const std::vector<T>& v) {
        key(k, GGUF_ARRAY), raw((uint32_t)t), raw((uint64_t)v.size());
        bytes.append((const char*)v.data(), v.size() * sizeof(T));
    }
};

// Whether llama.cpp's Gemma 3 (which hard-codes these) runs the model as it is.
bool llama_cpp_runs_gemma3(const ModelConfig& c) {
    return c.sliding_window > 0 && c.sliding_pattern == 6 && c.rope_local_theta == 10000.0f &&
           c.query_pre_attn_scalar == gguf_gemma3_query_scalar(c);
}

// general.file_type (llama_ftype) of a model whose matrices are `type`.
uint32_t file_type(uint32_t type) {
    return type == GGML_F16 ? 1 : type == GGML_Q8_0 ? 7 : type == GGML_BF16 ? 32 : 0;
}
}  // namespace

std::string gguf_unsupported(const ModelConfig& c) {
    if (c.nope_interval && c.nope_interval != 4)
        return strf("llama.cpp runs SmolLM3 with NoPE in every 4th layer; this model has it every %d", c.nope_interval);
    if (c.nope_interval && c.rope_scale_factor != 0.0f)
        return "llama.cpp runs SmolLM3 without RoPE frequency factors, so its llama3 scaling would be lost";
    if (c.post_norms && !llama_cpp_runs_gemma3(c))
        return "llama.cpp runs Gemma 3 with a window in five layers of six, RoPE base 10000 in them and scores scaled by "
               "head_dim^-1/2 (by (dim/heads)^-1/2 at 62 layers); this model differs";
    // llama.cpp's Phi-3 loads attn_qkv as [dim, dim + 2 kv_dim] and attn_output as [dim, dim], and no
    // frequency factors but LongRoPE's
    if (c.fused_projections && c.q_dim() != c.dim)
        return strf("llama.cpp runs Phi-3 with heads x head_dim = dim; this model has %d x %d = %d and dim %d", c.n_heads,
                    c.head_dim, c.q_dim(), c.dim);
    if (c.fused_projections && c.rope_scale_factor != 0.0f && c.rope_low_freq_factor != 0.0f)
        return "llama.cpp runs Phi-3 without RoPE frequency factors other than LongRoPE's, so its llama3 scaling would "
               "be lost";
    return "";
}

void export_gguf(const std::string& path, const ModelConfig& cfg, const std::vector<float>& params, const Tokenizer& tok,
                 uint32_t type) {
    if (type != GGML_F32 && type != GGML_F16 && type != GGML_BF16 && type != GGML_Q8_0)
        fail("%s: GGUF output type %s is not supported: use F32, F16, BF16 or Q8_0", path.c_str(), ggml_type_name(type));
    check_exportable(cfg, params, tok.vocab.size(), path);
    const ParamLayout L = param_layout(cfg);
    const std::string arch = cfg.architecture(path);
    const std::string unsupported = gguf_unsupported(cfg);
    if (!unsupported.empty()) fail("%s: %s: export --hf instead", path.c_str(), unsupported.c_str());
    // llama.cpp runs Mistral as llama, without the window (its own converter writes it so), and Phi-3
    // without its window too (llama.cpp disabled Phi's sliding window: its PR 13676).
    const std::string gguf_arch = arch == "mistral" ? "llama" : arch;
    if (arch == "mistral" || (arch == "phi3" && cfg.sliding_window))
        fprintf(stderr, "warning: %s: llama.cpp runs this model without its %d-token sliding window (as it runs %s): "
                "beyond that many tokens its outputs differ from this trainer's\n", path.c_str(), cfg.sliding_window,
                arch == "phi3" ? "every Phi-3" : "Mistral v0.1");
    const std::string a = gguf_arch + ".";

    Metadata md;
    md.string("general.architecture", gguf_arch);
    // llama.cpp strips white space beside added tokens by the model's name alone (gguf_token_strips):
    // a tokenizer that strips as Phi-3's does gets a name that says Phi-3; one that strips otherwise
    // cannot be told to llama.cpp.
    std::string name = path.substr(path.rfind('/') + 1);
    name = name.substr(0, name.rfind(".gguf"));
    const bool strips = std::any_of(tok.strip.begin(), tok.strip.end(), [](uint8_t b) { return b != 0; });
    if (strips && gguf_token_strips(tok, name).empty() && gguf_token_strips(tok, "phi-3") == tok.strip) name = "Phi-3 " + name;
    // What llama.cpp will strip for that name against what the tokenizer strips (an empty list: none).
    const std::vector<uint8_t> by_name = gguf_token_strips(tok, name);
    bool differ = false;
    for (size_t id = 0; id < tok.vocab.size(); id++)
        differ |= (id < by_name.size() ? by_name[id] : 0) != (id < tok.strip.size() ? tok.strip[id] : 0);
    if (differ && strips)
        fprintf(stderr, "warning: %s: the tokenizer's added tokens take the white space beside them in a way llama.cpp "
                "cannot be told (it strips only Phi-3's, by the model's name): llama.cpp tokenizes the white space after "
                "them as text\n", path.c_str());
    else if (differ)
        fprintf(stderr, "warning: %s: llama.cpp strips the white space after the special tokens of a model whose name "
                "says Phi-3, as this file's does ('%s'), but this tokenizer keeps it: llama.cpp will tokenize prompts "
                "otherwise than they were trained (name the file without phi-3 or phi3)\n", path.c_str(), name.c_str());
    md.string("general.name", name);
    md.u32("general.file_type", file_type(type));
    md.u32("general.quantization_version", 2);  // GGML_QNT_VERSION, as llama.cpp's converter writes
    md.u32(a + "context_length", cfg.max_seq_len);
    md.u32(a + "embedding_length", cfg.dim);
    md.u32(a + "block_count", cfg.n_layers);
    md.u32(a + "feed_forward_length", cfg.ffn_dim);
    md.u32(a + "attention.head_count", cfg.n_heads);
    md.u32(a + "attention.head_count_kv", cfg.n_kv_heads);
    md.u32(a + "attention.key_length", cfg.head_dim);
    md.u32(a + "attention.value_length", cfg.head_dim);
    md.u32(a + "rope.dimension_count", cfg.head_dim);
    md.f32(a + "rope.freq_base", cfg.rope_theta);
    const bool linear_rope = cfg.rope_scale_factor != 0.0f && cfg.rope_low_freq_factor == 0.0f;
    if (linear_rope) {
        md.string(a + "rope.scaling.type", "linear");
        md.f32(a + "rope.scaling.factor", cfg.rope_scale_factor);
    }
    if (arch == "gemma3") md.u32(a + "attention.sliding_window", cfg.sliding_window);
    if (arch == "phi3") {
        // As Phi-3's converter writes it: the window (0 for none), the original context (max_seq_len
        // without LongRoPE, as the HF exporter writes it), and with LongRoPE its attention factor, the
        // one llama.cpp multiplies cos and sin by; the factors are tensors (below).
        md.u32(a + "attention.sliding_window", cfg.sliding_window);
        md.u32(a + "rope.scaling.original_context_length", cfg.longrope() ? cfg.rope_original_max_pos : cfg.max_seq_len);
        if (cfg.longrope()) md.f32(a + "rope.scaling.attn_factor", cfg.rope_attn_factor);
    }
    md.f32(a + "attention.layer_norm_rms_epsilon", cfg.norm_eps);
    md.u32(a + "vocab_size", cfg.vocab_size);
    const bool spm = tok.model == TokenizerModel::SentencePiece;
    md.string("tokenizer.ggml.model", spm ? "llama" : "gpt2");
    md.string("tokenizer.ggml.pre", spm ? "default" : pre_tokenizer_to_gguf(tok.pre));
    // llama.cpp needs a token for every embedding row: rows past the tokenizer's vocabulary (Qwen2's
    // padding) get "[PAD<id>]" tokens of type Unused, as its converter writes them.
    std::vector<std::string> tokens = tok.vocab;
    std::vector<int32_t> types;
    for (TokenType t : tok.token_type) types.push_back((int32_t)t);
    for (size_t i = 0; i < tokens.size() && spm; i++)  // a user-defined "▁▁" as "  ", as llama.cpp's converter writes it
        if (tok.token_type[i] == TokenType::UserDefined) tokens[i] = spm_meta_to_spaces(tokens[i]);
    for (int32_t id = (int32_t)tokens.size(); id < cfg.vocab_size; id++)
        tokens.push_back("[PAD" + std::to_string(id) + "]"), types.push_back((int32_t)TokenType::Unused);
    md.strings("tokenizer.ggml.tokens", tokens);
    md.array("tokenizer.ggml.token_type", GGUF_INT32, types);
    if (spm) {
        // llama.cpp's SentencePiece tokenizer merges by score, not by a merge list. It knows one
        // space prefix, before the text and after each special token: Metaspace's variants
        // ("first", "always") become that.
        std::vector<float> scores = spm_scores_from_merges(tok);
        scores.resize(tokens.size(), 0.0f);
        md.array("tokenizer.ggml.scores", GGUF_FLOAT32, scores);
        md.boolean("tokenizer.ggml.add_space_prefix", tok.space_prefix != SpacePrefix::None);
    } else {
        std::vector<std::string> merges;
        for (const auto& [l, r] : tok.merges) merges.push_back(l + " " + r);
        md.strings("tokenizer.ggml.merges", merges);
    }
    if (tok.bos_id >= 0) md.u32("tokenizer.ggml.bos_token_id", tok.bos_id);
    if (tok.eos_id >= 0) md.u32("tokenizer.ggml.eos_token_id", tok.eos_id);
    if (tok.pad_id >= 0) md.u32("tokenizer.ggml.padding_token_id", tok.pad_id);
    // True when the model wants BOS, and for the Llama-3 (3.1's too) and Gemma templates: they put BOS
    // in the text, but llama.cpp's built-in versions of them leave it out and rely on add_bos_token
    // (its Jinja path drops the doubled one).
    const ChatTemplateKind kind = tok.chat_template.kind;
    md.boolean("tokenizer.ggml.add_bos_token", tok.add_bos || kind == ChatTemplateKind::Llama3 || kind == ChatTemplateKind::Llama31 ||
                                                   kind == ChatTemplateKind::Gemma || kind == ChatTemplateKind::Gemma3);
    md.boolean("tokenizer.ggml.add_eos_token", false);
    md.string("tokenizer.chat_template", chat_template_to_jinja(tok.chat_template));

    // Tensor infos: name, dims innermost first, ggml type, offset into the data section (aligned).
    // The tensors: the model's, in layout order (Phi-3's q, k, v as one attn_qkv, gate and up as one
    // ffn_up: their parts are one span of the layout), and for llama3 RoPE scaling llama.cpp's
    // rope_freqs (per frequency, the divisor of the unscaled inv_freq: 1, the factor, or the ramp
    // between), for LongRoPE its short and long factors.
    struct Out {
        std::string name;
        std::vector<int64_t> shape;
        const float* src;
        size_t numel;
        uint32_t type;
        size_t bytes = 0, offset = 0;
    };
    std::vector<Out> outs;
    for (const TensorInfo& layout : L.tensors) {
        FusedPart part;
        const TensorInfo t = stored_tensor(cfg, layout, part);
        if (part.index == 0)  // (a fused tensor's other parts are in its span)
            outs.push_back({gguf_tensor_name(t.name, cfg.post_norms), t.shape, params.data() + t.offset, t.numel,
                            t.shape.size() == 1 ? (uint32_t)GGML_F32 : type});
    }
    std::vector<float> rope_freqs;
    if (cfg.rope_scale_factor != 0.0f && !linear_rope) {
        const std::vector<float> plain = rope_inv_freq(cfg.rope_theta, cfg.head_dim), scaled = rope_inv_freq(cfg);
        for (size_t i = 0; i < plain.size(); i++) rope_freqs.push_back(plain[i] / scaled[i]);
        outs.push_back({"rope_freqs.weight", {(int64_t)rope_freqs.size()}, rope_freqs.data(), rope_freqs.size(), GGML_F32});
    }
    const int64_t half = cfg.head_dim / 2;
    if (cfg.longrope()) {
        outs.push_back({"rope_factors_long.weight", {half}, cfg.rope_long_factor, (size_t)half, GGML_F32});
        outs.push_back({"rope_factors_short.weight", {half}, cfg.rope_short_factor, (size_t)half, GGML_F32});
    }
    std::string infos;
    auto raw = [&](const auto& v) { infos.append((const char*)&v, sizeof v); };
    size_t offset = 0;
    for (Out& o : outs) {
        if (o.type == GGML_Q8_0 && o.shape.back() % 32 != 0) o.type = GGML_F16;
        size_t be = 0, bb = 0;
        ggml_block_size(o.type, be, bb);
        o.bytes = o.numel / be * bb;
        o.offset = offset;
        offset += (o.bytes + kAlign - 1) / kAlign * kAlign;
        raw((uint64_t)o.name.size()), infos += o.name;
        raw((uint32_t)o.shape.size());
        for (size_t d = o.shape.size(); d-- > 0;) raw((uint64_t)o.shape[d]);
        raw(o.type), raw((uint64_t)o.offset);
    }

    AtomicFile f(path);
    f.write("GGUF", 4);
    f.put<uint32_t>(3);
    f.put<uint64_t>(outs.size());
    f.put<uint64_t>(md.count);
    f.write(md.bytes.data(), md.bytes.size());
    f.write(infos.data(), infos.size());
    f.pad_to(kAlign);
    std::vector<float> rows;
    std::vector<uint8_t> data;
    for (const Out& o : outs) {
        const float* src = o.src;
        // llama.cpp's converter permutes q/k rows for the architectures it runs with interleaved RoPE
        // (by the architecture written: Mistral goes out as llama, and llama.cpp un-permutes it as one)
        const bool q = o.name.find(".attn_q.weight") != std::string::npos, k = o.name.find(".attn_k.weight") != std::string::npos;
        if (gguf_rope_interleaved(gguf_arch) && (q || k)) {
            rows.assign(src, src + o.numel);
            permute_rope_rows(rows.data(), q ? cfg.n_heads : cfg.n_kv_heads, cfg.head_dim, cfg.dim);
            src = rows.data();
        }
        // Half floats end at 65504: a larger weight would become infinity in llama.cpp.
        for (size_t i = 0; o.type == GGML_F16 && i < o.numel; i++)
            if (std::fabs(src[i]) >= 65520.0f)
                fail("%s: %s[%zu] = %g does not fit F16 (largest 65504): use --dtype bf16 or f32", path.c_str(),
                     o.name.c_str(), i, (double)src[i]);
        data.resize(o.bytes);
        ggml_quantize(o.type, src, data.data(), o.numel);
        f.write(data.data(), data.size());
        f.pad_to(kAlign);
    }
    f.commit();
}
