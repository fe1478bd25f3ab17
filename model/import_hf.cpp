// Hugging Face directory → our model: config.json onto ModelConfig, safetensors tensors by their own
// names (our layout uses HF's names and [out, in] layout, and HF checkpoints use rotate-half RoPE, so
// nothing is permuted), tokenizer.json with its side files.
#include <algorithm>
#include <climits>
#include <cmath>
#include <cstdio>
#include <memory>
#include <cstring>

#include "data/json.h"
#include "kernels/kernels.h"
#include "model/import.h"
#include "model/import_quantized.h"
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

// A RoPE parameters object's "rope_type" (or the older "type"); "default" when absent.
std::string rope_type(const JsonValue* params) {
    const JsonValue* t = params ? (params->get("rope_type") ? params->get("rope_type") : params->get("type")) : nullptr;
    return t && t->type == JsonValue::String ? t->string : "default";
}

// Gemma 3's layer_types (or, before them, sliding_window_pattern k: every k-th layer global) as our
// sliding_pattern: every k-th layer "full_attention", the others "sliding_attention". 0: every layer
// windowed; -1: none (every layer global).
int32_t gemma3_sliding_pattern(const HfConfig& h, int n_layers) {
    const JsonValue* list = h.get("layer_types");
    if (!list || list->is_null()) {
        const int32_t k = h.integer("sliding_window_pattern", 6);
        if (k < 1) fail("%s: sliding_window_pattern must be at least 1 (got %d)", h.path.c_str(), k);
        return k == 1 ? -1 : k;
    }
    if (list->type != JsonValue::Array || (int)list->array.size() != n_layers)
        fail("%s: layer_types must be a list of %d layer types", h.path.c_str(), n_layers);
    int first_full = -1;
    for (int l = 0; l < n_layers; l++) {
        const JsonValue& v = list->array[l];
        if (v.type != JsonValue::String || (v.string != "full_attention" && v.string != "sliding_attention"))
            fail("%s: layer_types[%d] must be \"full_attention\" or \"sliding_attention\"", h.path.c_str(), l);
        if (v.string == "full_attention" && first_full < 0) first_full = l;
    }
    const int32_t k = first_full + 1;  // 0 when no layer is global
    for (int l = 0; l < n_layers; l++)
        if ((list->array[l].string == "full_attention") != (k > 0 && (l + 1) % k == 0))
            fail("%s: layer_types[%d] breaks the pattern: only every k-th layer global (here k = %d) is supported",
                 h.path.c_str(), l, k);
    return k == 1 ? -1 : k;
}

// Gemma 3's own parts (gemma3_text, or the text model of a gemma3 checkpoint). Absent keys take
// Gemma3TextConfig's defaults, as the 4B-27B configs rely on.
void gemma3_config(const HfConfig& h, ModelConfig& c) {
    const JsonValue* act = h.get("hidden_activation") ? h.get("hidden_activation") : h.get("hidden_act");
    if (act && !act->is_null() && (act->type != JsonValue::String || act->string != "gelu_pytorch_tanh"))
        fail("%s: hidden_activation must be gelu_pytorch_tanh, Gemma 3's", h.path.c_str());
    for (const char* key : {"final_logit_softcapping", "attn_logit_softcapping"})
        if (h.get(key) && !h.get(key)->is_null()) fail("%s: %s is set: logit soft-capping (Gemma 2) is not supported", h.path.c_str(), key);
    if (h.flag("use_bidirectional_attention"))
        fail("%s: use_bidirectional_attention = true (EmbeddingGemma) is not supported: only causal models", h.path.c_str());
    c.mlp_act = GLU_GELU_TANH;
    c.post_norms = 1;
    c.qk_norm = 1;
    c.embed_scale = (float)std::sqrt((double)c.dim);  // transformers: hidden_size**0.5, cast to FP32
    c.query_pre_attn_scalar = (float)h.number(h.get("query_pre_attn_scalar"), "query_pre_attn_scalar", 256.0);
    const int32_t pattern = gemma3_sliding_pattern(h, c.n_layers);
    c.sliding_window = pattern < 0 ? 0 : h.integer("sliding_window", 4096);
    c.sliding_pattern = pattern < 0 ? 0 : pattern;
    // RoPE: transformers 5's rope_parameters per layer type, or rope_theta, rope_local_base_freq and
    // rope_scaling (global layers only) before.
    const JsonValue* rp = h.get("rope_parameters");
    const JsonValue* full = rp && rp->type == JsonValue::Object ? rp->get("full_attention") : nullptr;
    const JsonValue* local = rp && rp->type == JsonValue::Object ? rp->get("sliding_attention") : nullptr;
    const JsonValue* scaling = full ? full : h.get("rope_scaling");
    c.rope_theta = (float)h.number(full ? full->get("rope_theta") : h.get("rope_theta"), "rope_theta", 1000000.0);
    c.rope_local_theta = (float)h.number(local ? local->get("rope_theta") : h.get("rope_local_base_freq"),
                                         "rope_local_base_freq", 10000.0);
    if (rope_type(local) != "default") fail("%s: RoPE scaling of the sliding layers is not supported", h.path.c_str());
    if (scaling && scaling->type == JsonValue::Object) {
        const std::string type = rope_type(scaling);
        if (type == "linear") c.rope_scale_factor = (float)h.number(scaling->get("factor"), "factor", 1.0);
        else if (type != "default") fail("%s: Gemma 3 RoPE scaling of type '%s' is not supported (linear is)", h.path.c_str(), type.c_str());
    }
}

// Phi-3's LongRoPE (rope_type "longrope", "su" in the first releases) as transformers'
// _compute_longrope_parameters reads it: a short and a long factor per frequency, the original
// context (in the RoPE parameters or, in Phi-3's configs, beside them), and the attention factor,
// given or sqrt(1 + ln(factor) / ln(original)) with factor max_position_embeddings / original.
void phi3_longrope(const HfConfig& h, const JsonValue& scaling, ModelConfig& c) {
    const int half = c.head_dim / 2;
    auto factors = [&](const char* key, float* out) {
        const JsonValue* v = scaling.get(key);
        if (!v || v->type != JsonValue::Array || (int)v->array.size() != half || half > ModelConfig::kMaxRopeFactors)
            fail("%s: LongRoPE needs \"%s\", a list of head_dim / 2 = %d numbers", h.path.c_str(), key, half);
        for (int i = 0; i < half; i++) {
            const JsonValue& x = v->array[i];
            if (x.type != JsonValue::Number || !(x.number > 0)) fail("%s: %s[%d] must be a positive number", h.path.c_str(), key, i);
            out[i] = (float)x.number;
        }
    };
    factors("short_factor", c.rope_short_factor);
    factors("long_factor", c.rope_long_factor);
    const JsonValue* orig = scaling.get("original_max_position_embeddings");
    c.rope_original_max_pos = orig && !orig->is_null() ? (int32_t)h.number(orig, "original_max_position_embeddings", 0)
                                                       : h.integer("original_max_position_embeddings", 4096);
    if (c.rope_original_max_pos <= 0) fail("%s: original_max_position_embeddings must be positive", h.path.c_str());
    const double factor = h.number(scaling.get("factor"), "factor", (double)c.max_seq_len / c.rope_original_max_pos);
    c.rope_attn_factor = (float)h.number(scaling.get("attention_factor"), "attention_factor",
                                         longrope_default_attn_factor(factor, c.rope_original_max_pos));
    c.validate(h.path);
}

// A gemma3 (multimodal) config keeps its language model's in "text_config".
const char* const kGemma3Defaults[][2] = {{"vocab_size", "262208"}, {"hidden_size", "2304"}, {"intermediate_size", "9216"},
                                          {"num_hidden_layers", "26"}, {"num_attention_heads", "8"},
                                          {"num_key_value_heads", "4"}, {"head_dim", "256"},
                                          {"max_position_embeddings", "131072"}, {"rms_norm_eps", "1e-6"}};

ModelConfig hf_config(const std::string& dir, HfQuantization& quantization) {
    HfConfig h;
    h.path = dir + "/config.json";
    try {
        h.j = json_parse(read_file(h.path));
    } catch (const std::runtime_error& e) {
        fail("%s: %s", h.path.c_str(), e.what());
    }
    quantization = hf_quantization(h.j, h.path);  // top level, for a gemma3 checkpoint too
    const JsonValue* mt = h.get("model_type");
    std::string type = mt && mt->type == JsonValue::String ? mt->string : "";
    if (type == "gemma3") {  // Gemma 3 4B-27B: the language model's config, the vision tower's tensors skipped
        const JsonValue* text = h.get("text_config");
        if (!text || text->type != JsonValue::Object) fail("%s: a gemma3 config needs \"text_config\"", h.path.c_str());
        JsonValue t = *text;
        h.j = t;
        type = "gemma3_text";
    }
    if (type == "gemma3_text")  // fill in what the config leaves to Gemma3TextConfig's defaults
        for (const auto& d : kGemma3Defaults)
            if (!h.get(d[0])) h.j.object.emplace_back(d[0], json_parse(d[1]));
    if (type != "llama" && type != "mistral" && type != "qwen2" && type != "qwen3" && type != "smollm3" &&
        type != "gemma3_text" && type != "phi3")
        fail("%s: %s: supported are llama, mistral, qwen2, qwen3, smollm3, phi3, gemma3_text and gemma3", h.path.c_str(),
             type.empty() ? "no \"model_type\"" : ("model_type is '" + type + "'").c_str());
    const JsonValue* act = h.get("hidden_act");
    if (type != "gemma3_text" && act && act->type == JsonValue::String && act->string != "silu")
        fail("%s: hidden_act is '%s': only SwiGLU (silu) models are supported", h.path.c_str(), act->string.c_str());
    // LLaMA's and Qwen3's attention_bias puts a bias on o_proj too, which our layout has no place for.
    if ((type == "llama" || type == "qwen3" || type == "smollm3" || type == "gemma3_text") && h.flag("attention_bias"))
        fail("%s: attention_bias = true is not supported", h.path.c_str());
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
    c.tied_embeddings = h.get("tie_word_embeddings") ? h.flag("tie_word_embeddings") : type == "smollm3" || type == "gemma3_text";
    c.qkv_bias = type == "qwen2";
    c.qk_norm = type == "qwen3";
    if (type == "smollm3") c.nope_interval = smollm3_nope_interval(h, c.n_layers);
    c.fused_projections = type == "phi3";
    if (c.fused_projections) {  // (transformers 5 keeps it in rope_parameters, earlier ones beside them)
        const JsonValue* in_rp = rp && rp->type == JsonValue::Object ? rp->get("partial_rotary_factor") : nullptr;
        const double rotary = h.number(in_rp ? in_rp : h.get("partial_rotary_factor"), "partial_rotary_factor", 1.0);
        if (rotary != 1.0)
            fail("%s: partial_rotary_factor is %g: RoPE on part of each head (Phi-4-mini) is not supported",
                 h.path.c_str(), rotary);
    }
    if (type == "gemma3_text") {
        gemma3_config(h, c);
        c.validate(h.path);
        return c;
    }
    c.validate(h.path);

    // RoPE scaling: "rope_parameters" (transformers 5) or "rope_scaling" (before), with "rope_type" (or
    // the older "type"). llama3 (Llama 3.1 and later) is implemented; others are not.
    const JsonValue* scaling = rp && rp->type == JsonValue::Object ? rp : h.get("rope_scaling");
    if (scaling && scaling->type == JsonValue::Object) {
        const std::string type = rope_type(scaling);
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
        } else if (type == "linear") {  // every frequency divided by the factor
            c.rope_scale_factor = (float)h.number(scaling->get("factor"), "factor", 1.0);
            c.validate(h.path);
        } else if (c.fused_projections && (type == "longrope" || type == "su")) {
            phi3_longrope(h, *scaling, c);
        } else if (type != "default") {
            fprintf(stderr, "warning: %s: the model uses RoPE scaling of type '%s', which this trainer does not implement "
                    "(llama3 is); its outputs will differ from the original's\n", h.path.c_str(), type.c_str());
        }
    }
    // Mistral's sliding window, in every layer as MistralAttention has it. Qwen2/3 and SmolLM3 have
    // one only with use_sliding_window, in the layers from max_window_layers on: not implemented.
    const JsonValue* window = h.get("sliding_window");
    const bool has_window = window && window->type == JsonValue::Number && window->number < c.max_seq_len;
    if (has_window && (type == "mistral" || type == "phi3")) {  // (Phi-3-mini-4k: 2047 keys)
        c.sliding_window = h.integer("sliding_window");
        c.validate(h.path);
    } else if (has_window && type != "llama" && h.flag("use_sliding_window")) {
        fprintf(stderr, "warning: %s: sliding-window attention in some layers (use_sliding_window) is not implemented; "
                "sequences longer than the window (%g tokens) attend further back than the original model\n",
                h.path.c_str(), window->number);
    }
    return c;
}
}  // namespace

ImportedModel import_hf_dir(const std::string& dir, bool load_params) {
    ImportedModel m;
    HfQuantization quantization;
    m.cfg = hf_config(dir, quantization);
    // tokenizer.json, or for LLaMA-1/2 directories that have only SentencePiece's file, tokenizer.model
    std::string tok_path = dir + "/tokenizer.json", spm_path = dir + "/tokenizer.model";
    if (file_exists(tok_path)) m.tok = tokenizer_load_hf(tok_path);
    else if (file_exists(spm_path)) m.tok = tokenizer_load_spm(spm_path);
    else fail("%s: no tokenizer.json or tokenizer.model: copy the model's tokenizer files into the directory", dir.c_str());
    tokenizer_fit_rows(m.tok, (size_t)m.cfg.vocab_size, dir, "the model's vocab_size is");
    auto set = std::make_shared<SafetensorsSet>(safetensors_open_dir(dir));
    const SafetensorsSet& st = *set;
    // A Gemma 3 4B-27B checkpoint (Gemma3ForConditionalGeneration) keeps the language model under
    // "language_model.model." / "language_model.lm_head." (transformers < 4.52) or
    // "model.language_model." (later), beside the vision tower and projector, which are skipped.
    auto source = [&](const std::string& name) -> const SafeTensor* {
        const std::string in_model = name.compare(0, 6, "model.") == 0 ? name.substr(6) : "";
        for (const std::string& n : {name, "language_model." + name, in_model.empty() ? "" : "model.language_model." + in_model})
            if (!n.empty())
                if (const SafeTensor* t = st.find(n)) return t;
        return nullptr;
    };
    auto vision = [](const std::string& n) {
        for (const char* p : {"vision_tower.", "multi_modal_projector.", "model.vision_tower.", "model.multi_modal_projector."})
            if (n.compare(0, strlen(p), p) == 0) return true;
        return false;
    };
    // Every tensor is checked before the parameters are allocated (see import_gguf).
    ParamLayout L = param_layout_within(m.cfg, st.tensors.size());
    std::vector<HfWeight> weights;
    std::vector<const SafeTensor*> used;  // the weights and the side tensors of quantized ones
    std::vector<FusedPart> slices(L.tensors.size());  // Phi-3's: each tensor's rows of its fused one
    for (size_t i = 0; i < L.tensors.size(); i++) {
        const TensorInfo t = stored_tensor(m.cfg, L.tensors[i], slices[i]);  // what the checkpoint holds
        const SafeTensor* src = source(t.name);
        if (!src && quantization.packed) src = source(t.name + "_packed");  // compressed-tensors' packed weights
        if (!src && ends_with(t.name, ".weight") && (quantization.method == "gptq" || quantization.method == "awq"))
            src = source(t.name.substr(0, t.name.size() - 7) + ".qweight");
        if (!src) fail("%s: tensor %s is missing", dir.c_str(), t.name.c_str());
        weights.push_back(hf_weight(st, *src, quantization));
        import_check_shape(t, weights.back().shape, src->file->path + ": tensor " + src->name);
        used.push_back(src);
        used.insert(used.end(), weights.back().parts.begin(), weights.back().parts.end());
    }
    // Leftovers: a tied model may still store lm_head.weight, old checkpoints store RoPE's inv_freq
    // buffers, and quantized ones their activation and KV-cache scales; anything else is a part of the
    // architecture we would silently drop.
    const bool gemma3 = m.cfg.architecture(dir) == "gemma3";
    for (const SafeTensor& t : st.tensors) {
        bool known = std::find(used.begin(), used.end(), &t) != used.end() ||
                     (quantization.present && hf_activation_scale(t.name)) ||
                     (m.cfg.tied_embeddings && (t.name == "lm_head.weight" || t.name == "language_model.lm_head.weight")) ||
                     t.name.find("rotary_emb.inv_freq") != std::string::npos || (gemma3 && vision(t.name));
        if (!known)
            fail("%s: tensor %s is not part of the model as config.json describes it (architecture variant not supported)",
                 t.file->path.c_str(), t.name.c_str());
    }
    if (!quantization.method.empty()) m.quantization = quantization.describe();
    auto fused = std::make_shared<FusedReads>();
    m.read_tensor = [set, weights, slices, fused, tensors = L.tensors, gemma3](size_t i, float* dst) {
        if (slices[i].module) {  // (Phi-3's)
            auto whole = [&](float* all) { hf_weight_read(*set, weights[i], all); };
            return fused->read(weights[i].data, slices[i], tensors[i], whole, dst);
        }
        hf_weight_read(*set, weights[i], dst);
        if (gemma3 && gemma_norm_tensor(tensors[i]))  // Gemma3RMSNorm's (1 + w), stored with the 1 in
            for (size_t j = 0; j < tensors[i].numel; j++) dst[j] += 1.0f;
    };
    if (load_params) import_load_params(m);
    return m;
}
