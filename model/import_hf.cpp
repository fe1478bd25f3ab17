// Hugging Face directory → our model: config.json onto ModelConfig, safetensors tensors by their own
// names (our layout uses HF's names and [out, in] layout, and HF checkpoints use rotate-half RoPE, so
// nothing is permuted), tokenizer.json with its side files.
#include <climits>
#include <cstdio>

#include "data/json.h"
#include "model/import.h"
#include "model/safetensors.h"
#include "model/util.h"

namespace {
struct HfConfig {
    std::string path;
    JsonValue j;
    const JsonValue* get(const char* key) const { return j.get(key); }
    int32_t integer(const char* key, int64_t fallback = -1) const {
        const JsonValue* v = j.get(key);
        if (!v || v->is_null()) {
            if (fallback < 0) fail("%s: \"%s\" is missing", path.c_str(), key);
            return (int32_t)fallback;
        }
        if (v->type != JsonValue::Number || !v->exact_integer || v->integer < 0 || v->integer > INT32_MAX)
            fail("%s: \"%s\" must be a non-negative integer", path.c_str(), key);
        return (int32_t)v->integer;
    }
    double number(const JsonValue* v, const char* key, double fallback) const {
        if (!v || v->is_null()) return fallback;
        if (v->type != JsonValue::Number) fail("%s: \"%s\" must be a number", path.c_str(), key);
        return v->number;
    }
    bool flag(const char* key) const {
        const JsonValue* v = j.get(key);
        if (v && !v->is_null() && v->type != JsonValue::Bool) fail("%s: \"%s\" must be true or false", path.c_str(), key);
        return v && v->boolean;
    }
};

// SmolLM3's no_rope_layers (1: RoPE, 0: none, one per layer) as our interval: the layers without
// RoPE must be every k-th (k = no_rope_layer_interval, 4 in the released models), as llama.cpp
// also assumes; another pattern is refused.
int32_t smollm3_nope_interval(const HfConfig& h, int n_layers) {
    const int32_t k = h.integer("no_rope_layer_interval", 4);
    if (k < 2) fail("%s: no_rope_layer_interval must be at least 2 (got %d)", h.path.c_str(), k);
    const JsonValue* list = h.get("no_rope_layers");
    if (!list || list->is_null()) return k;
    // transformers reads entry l for layer l: a longer list is allowed, a shorter one is not
    if (list->type != JsonValue::Array || (int)list->array.size() < n_layers)
        fail("%s: no_rope_layers must list a 0 or 1 for each of the %d layers", h.path.c_str(), n_layers);
    for (int l = 0; l < n_layers; l++) {
        const JsonValue& v = list->array[l];
        const bool rope = (l + 1) % k != 0;
        if (v.type != JsonValue::Number || v.number != (rope ? 1 : 0))
            fail("%s: no_rope_layers[%d] is not %d: only NoPE in every %d-th layer (no_rope_layer_interval) is "
                 "supported", h.path.c_str(), l, rope ? 1 : 0, k);
    }
    return k;
}

ModelConfig hf_config(const std::string& dir) {
    HfConfig h;
    h.path = dir + "/config.json";
    try {
        h.j = json_parse(read_file(h.path));
    } catch (const std::runtime_error& e) {
        fail("%s: %s", h.path.c_str(), e.what());
    }
    const JsonValue* mt = h.get("model_type");
    std::string type = mt && mt->type == JsonValue::String ? mt->string : "";
    if (type != "llama" && type != "mistral" && type != "qwen2" && type != "qwen3" && type != "smollm3")
        fail("%s: model_type is '%s': supported are llama, mistral, qwen2, qwen3 and smollm3", h.path.c_str(), type.c_str());
    const JsonValue* act = h.get("hidden_act");
    if (act && act->type == JsonValue::String && act->string != "silu")
        fail("%s: hidden_act is '%s': only SwiGLU (silu) models are supported", h.path.c_str(), act->string.c_str());
    // LLaMA's and Qwen3's attention_bias puts a bias on o_proj too, which our layout has no place for.
    if ((type == "llama" || type == "qwen3" || type == "smollm3") && h.flag("attention_bias")) fail("%s: attention_bias = true is not supported", h.path.c_str());
    if (h.flag("mlp_bias")) fail("%s: mlp_bias = true is not supported", h.path.c_str());

    ModelConfig c;
    c.vocab_size = h.integer("vocab_size");
    c.dim = h.integer("hidden_size");
    c.n_layers = h.integer("num_hidden_layers");
    c.n_heads = h.integer("num_attention_heads");
    c.n_kv_heads = h.integer("num_key_value_heads", c.n_heads);
    c.head_dim = h.integer("head_dim", c.n_heads > 0 ? c.dim / c.n_heads : 0);
    c.ffn_dim = h.integer("intermediate_size");
    c.max_seq_len = h.integer("max_position_embeddings");
    // transformers 5 moved rope_theta (and rope_scaling) into "rope_parameters".
    const JsonValue* rp = h.get("rope_parameters");
    const JsonValue* theta = rp && rp->type == JsonValue::Object ? rp->get("rope_theta") : h.get("rope_theta");
    c.rope_theta = (float)h.number(theta, "rope_theta", type == "smollm3" ? 2000000.0 : 10000.0);  // transformers' defaults
    c.norm_eps = (float)h.number(h.get("rms_norm_eps"), "rms_norm_eps", 1e-6);
    // Absent, it is transformers' default: tied for SmolLM3 only.
    c.tied_embeddings = h.get("tie_word_embeddings") ? h.flag("tie_word_embeddings") : type == "smollm3";
    c.qkv_bias = type == "qwen2";
    c.qk_norm = type == "qwen3";
    if (type == "smollm3") c.nope_interval = smollm3_nope_interval(h, c.n_layers);
    c.validate(h.path);

    // RoPE scaling: "rope_parameters" (transformers 5) or "rope_scaling" (before), with "rope_type" (or
    // the older "type"). llama3 (Llama 3.1 and later) is implemented; others are not.
    const JsonValue* scaling = rp && rp->type == JsonValue::Object ? rp : h.get("rope_scaling");
    if (scaling && scaling->type == JsonValue::Object) {
        const JsonValue* t = scaling->get("rope_type") ? scaling->get("rope_type") : scaling->get("type");
        const std::string type = t && t->type == JsonValue::String ? t->string : "default";
        if (type == "llama3") {
            auto num = [&](const char* key) {
                const JsonValue* v = scaling->get(key);
                if (!v || v->type != JsonValue::Number) fail("%s: llama3 RoPE scaling needs a number \"%s\"", h.path.c_str(), key);
                return v->number;
            };
            c.rope_scale_factor = (float)num("factor");
            c.rope_low_freq_factor = (float)num("low_freq_factor");
            c.rope_high_freq_factor = (float)num("high_freq_factor");
            c.rope_original_max_pos = (int32_t)num("original_max_position_embeddings");
            c.validate(h.path);
        } else if (type != "default") {
            fprintf(stderr, "warning: %s: the model uses RoPE scaling of type '%s', which this trainer does not implement "
                    "(llama3 is); its outputs will differ from the original's\n", h.path.c_str(), type.c_str());
        }
    }
    // Mistral's sliding window (Qwen2/3 and SmolLM3 only with use_sliding_window): our attention sees the whole context.
    const JsonValue* window = h.get("sliding_window");
    bool windowed = window && window->type == JsonValue::Number && window->number < c.max_seq_len &&
                    ((type != "qwen2" && type != "qwen3" && type != "smollm3") || h.flag("use_sliding_window"));
    if (windowed)
        fprintf(stderr, "warning: %s: sliding-window attention (%g tokens) is not implemented; sequences longer than the "
                "window attend further back than the original model\n", h.path.c_str(), window->number);
    return c;
}
}  // namespace

ImportedModel import_hf_dir(const std::string& dir) {
    ImportedModel m;
    m.cfg = hf_config(dir);
    // tokenizer.json, or for LLaMA-1/2 directories that have only SentencePiece's file, tokenizer.model
    std::string tok_path = dir + "/tokenizer.json", spm_path = dir + "/tokenizer.model";
    if (file_exists(tok_path)) m.tok = tokenizer_load_hf(tok_path);
    else if (file_exists(spm_path)) m.tok = tokenizer_load_spm(spm_path);
    else fail("%s: no tokenizer.json or tokenizer.model: copy the model's tokenizer files into the directory", dir.c_str());
    tokenizer_fit_rows(m.tok, (size_t)m.cfg.vocab_size, dir, "the model's vocab_size is");
    SafetensorsSet st = safetensors_open_dir(dir);
    // Every tensor is checked before the parameters are allocated (see import_gguf).
    ParamLayout L = param_layout(m.cfg);
    for (const TensorInfo& t : L.tensors) {
        const SafeTensor* src = st.find(t.name);
        if (!src) fail("%s: tensor %s is missing", dir.c_str(), t.name.c_str());
        import_check_shape(t, src->shape, src->file->path + ": tensor " + t.name);
        st.check_readable(*src);
    }
    // Leftovers: a tied model may still store lm_head.weight, and old checkpoints store RoPE's inv_freq
    // buffers; anything else is a part of the architecture we would silently drop.
    for (const SafeTensor& t : st.tensors) {
        bool known = L.find(t.name) || (m.cfg.tied_embeddings && t.name == "lm_head.weight") ||
                     t.name.find("rotary_emb.inv_freq") != std::string::npos;
        if (!known)
            fail("%s: tensor %s is not part of the model as config.json describes it (architecture variant not supported)",
                 t.file->path.c_str(), t.name.c_str());
    }
    m.params.assign(L.total, 0.0f);
    for (const TensorInfo& t : L.tensors) st.read_f32(*st.find(t.name), m.params.data() + t.offset);
    return m;
}
