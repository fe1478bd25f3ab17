#include "model/lora_peft.h"

#include <algorithm>
#include <cctype>
#include <cmath>
#include <cstring>
#include <filesystem>

#include "data/json.h"
#include "model/import.h"
#include "model/safetensors.h"
#include "model/util.h"

namespace {
// HF module paths of the seven projections (LoraTarget order).
const char* const kModule[LORA_NUM_TARGETS] = {"self_attn.q_proj", "self_attn.k_proj", "self_attn.v_proj",
                                               "self_attn.o_proj", "mlp.gate_proj",    "mlp.up_proj",
                                               "mlp.down_proj"};

// Where PEFT's saved names put the decoder layers (PeftBase order), then the image-text model's older
// form (transformers before 4.52), which is read but not written.
const char* const kLayers[] = {"base_model.model.model.layers.", "base_model.model.model.language_model.layers.",
                               "base_model.model.language_model.model.layers."};
constexpr int kNumLayerPrefixes = 3;

// The saved tensors of one adapted projection: A, B, and with DoRA the magnitude vector.
enum PeftPart { kPartA, kPartB, kPartMagnitude, kNumParts };
const char* const kPartSuffix[kNumParts] = {".lora_A.weight", ".lora_B.weight", ".lora_magnitude_vector"};

// The module PEFT adapts for target t: its own, or Phi-3's fused one that holds it (qkv_proj for q, k
// and v; gate_up_proj for gate and up), whose adapter is all of theirs.
const char* peft_module(const ModelConfig& cfg, int t) {
    const FusedPart f = fused_part(cfg, t);
    return f.module ? f.module : kModule[t];
}

// PEFT's saved name of part `part` of layer l's target t under layer prefix p:
// base_model.model.model.layers.{l}.{module}.lora_A.weight for a text-only model.
std::string peft_tensor_name(const ModelConfig& cfg, int p, int l, int t, int part) {
    return kLayers[p] + std::to_string(l) + "." + peft_module(cfg, t) + kPartSuffix[part];
}

// Where each part of target t of layer l lives in the adapter buffer, and its shape.
size_t part_offset(const LoraLayout& L, int l, int t, int part) {
    return part == kPartA ? L.A(l, t) : part == kPartB ? L.B(l, t) : L.M(l, t);
}
std::vector<int64_t> part_shape(const ModelConfig& cfg, const LoraConfig& lc, int t, int part) {
    int in, out;
    lora_target_shape(cfg, (LoraTarget)t, in, out);
    if (part == kPartA) return {lc.rank, in};
    if (part == kPartB) return {out, lc.rank};
    return {out};
}
int num_parts(const LoraConfig& lc) { return lc.use_dora ? 3 : 2; }

// PEFT's saved names of the modules_to_save tensors for layer prefix p: the embedding beside the
// layers (base_model.model.model.embed_tokens.weight), the LM head at the top of the causal-LM model
// (base_model.model.lm_head.weight; inside language_model in transformers' older image-text form).
std::string peft_embed_name(int p) {
    const std::string layers = kLayers[p];
    return layers.substr(0, layers.size() - strlen("layers.")) + "embed_tokens.weight";
}
std::string peft_head_name(int p) {
    return p == 2 ? "base_model.model.language_model.lm_head.weight" : "base_model.model.lm_head.weight";
}
// PEFT's saved name of table t's trainable token rows (trainable_token_indices) for layer prefix p:
// base_model.model.model.embed_tokens.token_adapter.trainable_tokens_delta (the rows themselves,
// not a difference, despite the name).
std::string peft_token_rows_name(int p, int t) {
    const std::string table = t == LORA_TABLE_EMBED ? peft_embed_name(p) : peft_head_name(p);
    return table.substr(0, table.size() - strlen("weight")) + "token_adapter.trainable_tokens_delta";
}
// An integer of [0, count) that adapter_config.json gives as `what`, or a failure naming it as not
// `kind`.
int32_t json_index(const JsonValue& x, int count, const std::string& cpath, const std::string& what, const char* kind) {
    if (x.type != JsonValue::Number || !x.exact_integer || x.integer < 0 || x.integer >= count)
        fail("%s: %s holds %s, not %s (0..%d)", cpath.c_str(), what.c_str(),
             x.type == JsonValue::Number ? strf("%g", x.number).c_str() : json_type_name(x.type), kind, count - 1);
    return (int32_t)x.integer;
}
std::string json_ids(const std::vector<int32_t>& ids) {
    std::string s;
    for (int32_t id : ids) s += (s.empty() ? "" : ", ") + std::to_string(id);
    return "[" + s + "]";
}
}  // namespace

namespace {
// Whether target t is the first adapted projection of its PEFT module (a fused module is listed, and
// written, once: at its first adapted projection).
bool first_of_module(const ModelConfig& cfg, const LoraConfig& lc, int t) {
    const FusedPart f = fused_part(cfg, t);
    for (int u = f.module ? f.first : t; u < t; u++)
        if (lc.has((LoraTarget)u)) return false;
    return lc.has((LoraTarget)t);
}

// Phi-3's adapters as PEFT has them: on the fused qkv_proj and gate_up_proj, whose adapter is that of
// all their projections at once. A fused module's adapted projections that share one A (an adapter
// that came from PEFT so) give that A and their B's rows one after another: rank r. Otherwise its A
// stacks theirs and its B is block-diagonal, so that the rows of projection i get B_i·A_i exactly,
// at rank n·r for n adapted projections. PEFT and vLLM take one rank for every module, so every
// module then goes out at the largest such rank R, its A padded with zero rows and its B with zero
// columns (which add nothing to B·A), and alpha scaled to keep the scale (lora_alpha_at_rank).
// Appends every adapter's tensors to `out` (their memory in `owned`) and returns R; for another
// model, appends nothing and returns r.
int fused_peft_modules(const ModelConfig& cfg, const LoraConfig& lc, const std::vector<float>& adapters,
                       const LoraLayout& L, PeftBase base, std::vector<SafeTensorOut>& out,
                       std::vector<std::vector<float>>& owned) {
    if (!cfg.fused_projections) return lc.rank;
    const int r = lc.rank;
    auto module_targets = [&](int t) {  // the adapted projections of t's module, t the first
        std::vector<int> ts = {t};
        const FusedPart f = fused_part(cfg, t);
        for (int u = t + 1; f.module && u < f.first + f.count; u++)
            if (lc.has((LoraTarget)u)) ts.push_back(u);
        return ts;
    };
    auto shared_a = [&](int l, const std::vector<int>& ts) {
        for (int t : ts)
            if (!std::equal(adapters.begin() + L.A(l, t), adapters.begin() + L.A(l, t) + L.B(l, t) - L.A(l, t),
                            adapters.begin() + L.A(l, ts[0])))
                return false;
        return true;
    };
    if (const std::string why = peft_unexportable(cfg, lc); !why.empty()) fail("%s", why.c_str());
    int R = r;
    for (int l = 0; l < cfg.n_layers; l++)
        for (int t = 0; t < LORA_NUM_TARGETS; t++)
            if (lc.has_layer(l) && first_of_module(cfg, lc, t)) {
                const std::vector<int> ts = module_targets(t);
                if (!shared_a(l, ts)) R = std::max(R, (int)ts.size() * r);
            }
    for (int l = 0; l < cfg.n_layers; l++)
        for (int t0 = 0; t0 < LORA_NUM_TARGETS; t0++) {
            if (!lc.has_layer(l) || !first_of_module(cfg, lc, t0)) continue;
            const std::vector<int> ts = module_targets(t0);
            const bool shared = shared_a(l, ts);
            const FusedPart f0 = fused_part(cfg, t0);
            int in, rows;
            lora_target_shape(cfg, (LoraTarget)t0, in, rows);
            if (f0.module) rows = (int)f0.total;
            std::vector<float> A((size_t)R * in), B((size_t)rows * R), M(lc.use_dora ? rows : 0);
            for (size_t i = 0; i < ts.size(); i++) {
                const int t = ts[i];
                const FusedPart f = fused_part(cfg, t);
                const int64_t row0 = f.module ? f.row0 : 0, col0 = shared ? 0 : (int64_t)i * r;
                int t_in, t_out;
                lora_target_shape(cfg, (LoraTarget)t, t_in, t_out);
                std::copy_n(adapters.begin() + L.A(l, t), (size_t)r * in, A.begin() + col0 * in);
                for (int j = 0; j < t_out; j++)
                    std::copy_n(adapters.begin() + L.B(l, t) + (size_t)j * r, r, B.begin() + (row0 + j) * R + col0);
                if (lc.use_dora) std::copy_n(adapters.begin() + L.M(l, t), t_out, M.begin() + row0);
            }
            const std::vector<int64_t> shapes[kNumParts] = {{R, in}, {rows, R}, {rows}};
            std::vector<float>* parts[kNumParts] = {&A, &B, &M};
            for (int part = 0; part < num_parts(lc); part++) {
                owned.push_back(std::move(*parts[part]));  // (a moved vector keeps its memory: the pointer stays good)
                out.push_back({peft_tensor_name(cfg, (int)base, l, t0, part), shapes[part], owned.back().data()});
            }
        }
    return R;
}
}  // namespace

std::string peft_unexportable(const ModelConfig& cfg, const LoraConfig& lc) {
    if (!lc.use_dora) return "";
    for (int t = 0; t < LORA_NUM_TARGETS; t++) {
        const FusedPart f = fused_part(cfg, t);
        if (!f.module || f.index != 0) continue;
        int adapted = 0;
        for (int u = t; u < t + f.count; u++) adapted += lc.has((LoraTarget)u);
        if (adapted > 0 && adapted < f.count)
            return strf("Phi-3's %s: DoRA adapts it as a whole in PEFT, so its magnitudes need all of its projections "
                        "adapted (this adapter has %d of %d): train them all (--lora-targets %s) to export it with --peft",
                        f.module, adapted, f.count, t == 0 ? "q,k,v or qkv_proj" : "gate,up or gate_up_proj");
    }
    return "";
}

double lora_alpha_at_rank(const LoraConfig& lc, int rank) {
    const double k = (double)rank / lc.rank;
    return lc.alpha * (lc.use_rslora ? std::sqrt(k) : k);
}

PeftBase peft_base_default(const ModelConfig& cfg) {
    return cfg.architecture("peft_base_default") == "gemma3" && cfg.dim >= 2560 ? PeftBase::image_text : PeftBase::text;
}

int lora_export_peft(const std::string& dir, const ModelConfig& cfg, const LoraConfig& lc,
                     const std::vector<float>& adapters, PeftBase base) {
    LoraLayout L = lora_layout(cfg, lc);
    if (adapters.size() != L.total) fail("%s: %zu adapter values, the layout needs %zu", dir.c_str(), adapters.size(), L.total);
    std::error_code ec;
    std::filesystem::create_directories(dir, ec);
    if (ec) fail("%s: cannot create directory: %s", dir.c_str(), ec.message().c_str());
    // Beside a model export (./export --hf) the folder would be read as a model and as an adapter at
    // once, and other files would be taken for the adapter's: only our own two files, from an
    // earlier export, may be there (as --hf allows its own four).
    for (const auto& e : std::filesystem::directory_iterator(dir)) {
        const std::string name = e.path().filename().string();
        if (name == "config.json" || name == "model.safetensors")
            fail("%s holds a model export (%s): write the adapter into another directory", dir.c_str(), name.c_str());
        if (name != "adapter_config.json" && name != "adapter_model.safetensors")
            fail("%s already holds %s: export into a new or empty directory", dir.c_str(), name.c_str());
    }

    // PEFT's names in lora_layout's order (A, B and with DoRA the magnitude of each adapted
    // projection of each layer); Phi-3's fused modules and the rank they need, fused_peft_modules.
    std::vector<SafeTensorOut> tensors;
    std::vector<std::vector<float>> fused;  // the tensors made for them
    const int rank = fused_peft_modules(cfg, lc, adapters, L, base, tensors, fused);
    for (int l = 0; l < cfg.n_layers && !cfg.fused_projections; l++)
        for (int t = 0; t < LORA_NUM_TARGETS; t++)
            if (lc.adapts(l, (LoraTarget)t))
                for (int part = 0; part < num_parts(lc); part++)
                    tensors.push_back({peft_tensor_name(cfg, (int)base, l, t, part), part_shape(cfg, lc, t, part),
                                       adapters.data() + part_offset(L, l, t, part)});
    // The saved modules; a tied model's one tensor under both names, as PEFT's ensure_weight_tying
    // writes it.
    const std::vector<int64_t> table = {cfg.vocab_size, cfg.dim};
    if (L.embed != SIZE_MAX) tensors.push_back({peft_embed_name((int)base), table, adapters.data() + L.embed});
    if (L.lm_head != SIZE_MAX) tensors.push_back({peft_head_name((int)base), table, adapters.data() + L.lm_head});
    // The trainable tokens' rows; a tied model's once, under the embedding (PEFT ties the head's to them).
    for (int t = 0; t < LORA_NUM_TABLES; t++)
        if (const int64_t k = (int64_t)lc.tokens[t].size())
            tensors.push_back({peft_token_rows_name((int)base, t), {k, cfg.dim}, adapters.data() + L.tokens[t]});
    safetensors_write(dir + "/adapter_model.safetensors", tensors, DType::F32);

    // A list of module names matches them anywhere in the model: in the image-text model also the
    // vision tower's q/k/v_proj, which would get adapters that this file does not fill. There a regular
    // expression (which PEFT matches against whole module paths) names the language model's alone.
    std::string targets;
    for (int t = 0; t < LORA_NUM_TARGETS; t++)
        if (first_of_module(cfg, lc, t)) {
            std::string m = peft_module(cfg, t);
            m = m.substr(m.find('.') + 1);
            if (base == PeftBase::text) targets += std::string(targets.empty() ? "" : ", ") + json_quote(m);
            else targets += (targets.empty() ? "" : "|") + m;
        }
    // Some layers only: layers_to_transform beside a list; PEFT ignores it beside a regular expression,
    // which then names the layers itself.
    std::string layer_regex = "\\d+";
    if (!lc.layers.empty()) {
        layer_regex.clear();
        for (int32_t l : lc.layers) layer_regex += (layer_regex.empty() ? "" : "|") + std::to_string(l);
        layer_regex = "(?:" + layer_regex + ")";
    }
    const std::string layers_json = lc.layers.empty() || base != PeftBase::text ? "null" : json_ids(lc.layers);
    if (base == PeftBase::image_text)
        targets = json_quote(".*\\.language_model\\.layers\\." + layer_regex + "\\..*\\.(" + targets + ")");
    else targets = "[" + targets + "]";
    // modules_to_save: a tied model's tensor is named once, as the embedding, and ensure_weight_tying
    // makes PEFT train (and load) the LM head as that same tensor.
    const uint32_t saves = lora_saves(cfg, lc.save_modules);
    std::string saved;
    for (uint32_t bit : {LORA_SAVE_EMBED, LORA_SAVE_LM_HEAD})
        if ((saves & bit) && !(cfg.tied_embeddings && bit == LORA_SAVE_LM_HEAD))
            saved += (saved.empty() ? "" : ", ") + json_quote(bit == LORA_SAVE_EMBED ? "embed_tokens" : "lm_head");
    saved = saved.empty() ? "null" : "[" + saved + "]";
    // trainable_token_indices: a tied model's one list as a list (the input embedding's, which PEFT
    // ties the LM head to); an untied model's by module name.
    std::string tokens = "null";
    if (cfg.tied_embeddings && lc.has_tokens()) tokens = json_ids(lc.tokens[LORA_TABLE_EMBED]);
    else if (lc.has_tokens()) {
        tokens.clear();
        for (int t = 0; t < LORA_NUM_TABLES; t++)
            if (!lc.tokens[t].empty())
                tokens += std::string(tokens.empty() ? "" : ", ") + (t == LORA_TABLE_EMBED ? "\"embed_tokens\": " : "\"lm_head\": ") +
                          json_ids(lc.tokens[t]);
        tokens = "{" + tokens + "}";
    }
    std::string buf(4096 + tokens.size(), '\0');
    buf.resize(snprintf(buf.data(), buf.size(),
             "{\n  \"peft_type\": \"LORA\",\n  \"task_type\": \"CAUSAL_LM\",\n  \"r\": %d,\n  \"lora_alpha\": %.9g,\n"
             "  \"lora_dropout\": %g,\n  \"use_rslora\": %s,\n  \"use_dora\": %s,\n  \"target_modules\": %s,\n"
             "  \"layers_to_transform\": %s,\n"
             "  \"modules_to_save\": %s,\n  \"ensure_weight_tying\": %s,\n  \"trainable_token_indices\": %s,\n"
             "  \"bias\": \"none\",\n  \"fan_in_fan_out\": false,\n  \"inference_mode\": true,\n"
             "  \"base_model_name_or_path\": null\n}\n",
             rank, lora_alpha_at_rank(lc, rank), lc.dropout, lc.use_rslora ? "true" : "false", lc.use_dora ? "true" : "false",
             targets.c_str(), layers_json.c_str(), saved.c_str(), saves && cfg.tied_embeddings ? "true" : "false",
             tokens.c_str()));
    write_file_atomic(dir + "/adapter_config.json", buf);
    return rank;
}

namespace {
// The PEFT module name of `tensor` (".../layers.{l}.self_attn.q_proj.lora_A.weight") as its layer
// prefix (kLayers), layer, target and part, or false when it is no LoRA tensor of a decoder projection.
bool parse_peft_name(const ModelConfig& cfg, const std::string& tensor, int& prefix, int& layer, uint32_t& targets, int& part) {
    for (int p = 0; p < kNumLayerPrefixes; p++) {
        const std::string pre = kLayers[p];
        if (tensor.compare(0, pre.size(), pre) != 0) continue;
        size_t dot = tensor.find('.', pre.size());
        if (dot == std::string::npos || dot == pre.size()) return false;
        const std::string num = tensor.substr(pre.size(), dot - pre.size());
        if (num.find_first_not_of("0123456789") != std::string::npos || num.size() > 6) return false;
        layer = std::stoi(num);
        targets = 0;  // (every projection of a fused module)
        for (int t = 0; t < LORA_NUM_TARGETS; t++)
            for (int k = 0; k < kNumParts; k++)
                if (tensor == peft_tensor_name(cfg, p, layer, t, k)) prefix = p, targets |= 1u << t, part = k;
        return targets != 0;
    }
    return false;
}

// An image-text model's adapter on its vision tower or projector: no part of what the text-only
// model here computes, so leaving it out changes no answer to text.
bool is_vision_adapter(const std::string& tensor) {
    const bool lora = tensor.find(".lora_A.") != std::string::npos || tensor.find(".lora_B.") != std::string::npos ||
                      tensor.find(".lora_magnitude_vector") != std::string::npos;
    return lora && (tensor.find(".vision_tower.") != std::string::npos ||
                    tensor.find(".multi_modal_projector.") != std::string::npos);
}
}  // namespace

namespace {
// Tensor `src` of `st` (named `name`) into dst as FP32, after checking it has `shape` (the one the
// base model and adapter_config.json give it).
void read_checked(const SafetensorsSet& st, const SafeTensor& src, const std::string& wpath, const std::string& name,
                  const std::vector<int64_t>& shape, float* dst) {
    TensorInfo want;
    want.name = name;
    want.shape = shape;
    import_check_shape(want, src.shape, wpath + ": tensor " + name);
    st.check_readable(src);
    st.read_f32(src, dst);
}

// A tensor of PEFT's module wrappers that save_embedding_layers (PEFT's default after a vocabulary
// resize) writes beside a saved table X.weight: X.modules_to_save.weight, the trained copy (the
// values of X.weight, which is read), and X.original_module.weight, the base's copy kept to switch the
// adapter off: skipped. X.token_adapter.base_layer.weight, the whole base table beside trainable
// token rows, is refused: its rows past the original vocabulary exist nowhere else.
bool peft_wrapper_tensor(const SafetensorsSet& st, const std::string& name, const std::string& wpath) {
    for (int q = 0; q < kNumLayerPrefixes; q++)
        for (const std::string& table : {peft_embed_name(q), peft_head_name(q)}) {
            const std::string stem = table.substr(0, table.size() - strlen("weight"));
            if (name == stem + "original_module.weight") return true;
            if (name == stem + "token_adapter.base_layer.weight")
                fail("%s: tensor %s is the whole table beside trainable token rows, as PEFT's save_embedding_layers "
                     "writes it after a vocabulary resize; it cannot be read here: load the adapter into the resized "
                     "model in PEFT and save it again with save_embedding_layers=False (the token rows alone), and "
                     "convert the resized model (save_pretrained) as the base", wpath.c_str(), name.c_str());
            if (name != stem + "modules_to_save.weight") continue;
            const SafeTensor* copy = st.find(name);
            const SafeTensor* saved = st.find(table);
            if (!saved)
                fail("%s: tensor %s is PEFT's trained copy of %s, which is missing", wpath.c_str(), name.c_str(), table.c_str());
            // (PEFT writes both from one tensor: the same dtype, shape and bytes)
            if (copy->dtype != saved->dtype || copy->shape != saved->shape || copy->nbytes != saved->nbytes ||
                memcmp(copy->file->data + copy->offset, saved->file->data + saved->offset, copy->nbytes) != 0)
                fail("%s: tensors %s and %s, both the trained %s, differ", wpath.c_str(), name.c_str(), table.c_str(),
                     table.c_str());
            return true;
        }
    return false;
}

// The saved embedding and LM head into `adapters`, which grow to the layout with them. PEFT loads such
// a tensor into the model whether modules_to_save names it (`named`, from adapter_config.json) or
// save_embedding_layers wrote it (modules_to_save null, as after a vocabulary resize), so both are
// read. A tied model holds one tensor for both: PEFT trained it so with ensure_weight_tying (or
// saved the tied layers as they are); naming one of the two without it, PEFT trains a copy of that
// one apart from the other, which a tied model cannot hold.
void read_saved_modules(const SafetensorsSet& st, const std::string& wpath, const std::string& cpath,
                        const ModelConfig& cfg, uint32_t named, bool tying, int prefix, LoraConfig& lc,
                        std::vector<float>& adapters) {
    const std::string embed = peft_embed_name(prefix), head = peft_head_name(prefix);
    for (int q = 0; q < kNumLayerPrefixes; q++)
        for (const std::string& name : {peft_embed_name(q), peft_head_name(q)})
            if (st.find(name) && name != embed && name != head)
                fail("%s: tensor %s names the model as %s..., the layers as %s...: one adapter is for one model",
                     wpath.c_str(), name.c_str(), kLayers[q], kLayers[prefix]);
    const bool has_embed = st.find(embed), has_head = st.find(head);
    const uint32_t saves = named | (has_embed ? LORA_SAVE_EMBED : 0u) | (has_head ? LORA_SAVE_LM_HEAD : 0u);
    if (!saves) return;
    const uint32_t both_named = LORA_SAVE_EMBED | LORA_SAVE_LM_HEAD;
    if (cfg.tied_embeddings && named && !tying && named != both_named)
        fail("%s: the base model ties its LM head to its embedding, but PEFT trained %s apart from the other "
             "(\"ensure_weight_tying\" is not set), which a tied model cannot hold: train the adapter with "
             "ensure_weight_tying=True", cpath.c_str(), named == LORA_SAVE_EMBED ? "the embedding" : "the LM head");
    const std::vector<int64_t> table = {cfg.vocab_size, cfg.dim};
    auto read = [&](const std::string& name, float* dst) {
        const SafeTensor* src = st.find(name);
        if (!src) fail("%s: tensor %s is missing (\"modules_to_save\" in %s names it)", wpath.c_str(), name.c_str(), cpath.c_str());
        if (src->shape.size() == 2 && src->shape[1] == cfg.dim && src->shape[0] != cfg.vocab_size)
            fail("%s: tensor %s has %lld rows, the base model %d tokens: the adapter was trained on a model whose "
                 "vocabulary was resized; pass that model (saved with save_pretrained, then converted) as the base",
                 wpath.c_str(), name.c_str(), (long long)src->shape[0], cfg.vocab_size);
        read_checked(st, *src, wpath, name, table, dst);
    };
    lc.save_modules = lora_saves(cfg, saves);
    const LoraLayout L = lora_layout(cfg, lc);
    adapters.resize(L.total);
    if (!cfg.tied_embeddings) {
        if (saves & LORA_SAVE_EMBED) read(embed, adapters.data() + L.embed);
        if (saves & LORA_SAVE_LM_HEAD) read(head, adapters.data() + L.lm_head);
        return;
    }
    // One tensor (L.embed == L.lm_head); both copies when both were saved (both named without the
    // tying: both were trained, and both must be there), which must then be equal.
    const bool both = (has_embed && has_head) || (named == both_named && !tying);
    float* one = adapters.data() + L.embed;
    read(both || has_embed || !has_head ? embed : head, one);
    if (!both) return;
    std::vector<float> other((size_t)cfg.vocab_size * cfg.dim);
    read(head, other.data());
    if (!std::equal(other.begin(), other.end(), one))
        fail("%s: the base model ties its LM head to its embedding, but the adapter's trained embedding and LM head "
             "differ (PEFT trained the two apart%s): a tied model cannot hold them", wpath.c_str(),
             tying ? "" : ": set ensure_weight_tying=True when training");
}
}  // namespace

namespace {
// The trainable tokens' rows of each table adapter_config.json lists them for, into `adapters`, which
// grow to the layout with them. A tied model's LM head rows are the embedding's (PEFT saves them
// once); rows saved for a table that lists no tokens, or for a tied model's head, are refused, not dropped.
void read_token_rows(const SafetensorsSet& st, const std::string& wpath, const std::string& cpath,
                     const ModelConfig& cfg, int prefix, const LoraConfig& lc, std::vector<float>& adapters) {
    for (int q = 0; q < kNumLayerPrefixes; q++)
        for (int t = 0; t < LORA_NUM_TABLES; t++) {
            const std::string name = peft_token_rows_name(q, t);
            if (!st.find(name)) continue;
            if (name != peft_token_rows_name(prefix, t))  // (the LM head's name is one for two prefixes)
                fail("%s: tensor %s names the model as %s..., the layers as %s...: one adapter is for one model",
                     wpath.c_str(), name.c_str(), kLayers[q], kLayers[prefix]);
            if (cfg.tied_embeddings && t == LORA_TABLE_LM_HEAD)
                fail("%s: tensor %s holds LM head rows apart from the embedding's, which a base model that ties the two "
                     "cannot hold", wpath.c_str(), name.c_str());
            if (lc.tokens[t].empty())
                fail("%s: tensor %s holds trained token rows, but \"trainable_token_indices\" in %s lists no tokens for %s",
                     wpath.c_str(), name.c_str(), cpath.c_str(), t == LORA_TABLE_EMBED ? "embed_tokens" : "lm_head");
        }
    const LoraLayout L = lora_layout(cfg, lc);
    adapters.resize(L.total);
    for (int t = 0; t < LORA_NUM_TABLES; t++) {
        if (lc.tokens[t].empty()) continue;
        const std::string name = peft_token_rows_name(prefix, t);
        const SafeTensor* src = st.find(name);
        if (!src)
            fail("%s: tensor %s is missing (\"trainable_token_indices\" in %s lists %zu tokens for it)", wpath.c_str(),
                 name.c_str(), cpath.c_str(), lc.tokens[t].size());
        read_checked(st, *src, wpath, name, {(int64_t)lc.tokens[t].size(), cfg.dim}, adapters.data() + L.tokens[t]);
    }
}
}  // namespace

void lora_import_peft(const std::string& dir, const ModelConfig& cfg, LoraConfig& lc, std::vector<float>& adapters) {
    const std::string cpath = dir + "/adapter_config.json";
    const std::string text = read_file(cpath);  // its errors name the file already
    JsonValue j;
    try {
        j = json_parse(text);
    } catch (const std::runtime_error& e) {
        fail("%s: %s", cpath.c_str(), e.what());
    }
    auto str = [&](const char* key) {
        const JsonValue* v = j.get(key);
        return v && v->type == JsonValue::String ? v->string : std::string();
    };
    auto truthy = [&](const char* key) {  // set to anything but null, false, "", [] or {}
        const JsonValue* v = j.get(key);
        return v && !v->is_null() && !(v->type == JsonValue::Bool && !v->boolean) &&
               !(v->type == JsonValue::String && v->string.empty()) && !(v->type == JsonValue::Array && v->array.empty()) &&
               !(v->type == JsonValue::Object && v->object.empty());
    };
    auto number = [&](const char* key, double fallback) {
        const JsonValue* v = j.get(key);
        if (!v || v->is_null()) return fallback;
        if (v->type != JsonValue::Number) fail("%s: \"%s\" must be a number", cpath.c_str(), key);
        return v->number;
    };
    if (str("peft_type") != "LORA")
        fail("%s: peft_type is '%s': only LoRA adapters can be read", cpath.c_str(), str("peft_type").c_str());
    const char* why[][2] = {{"rank_pattern", "per-module ranks"},
                            {"alpha_pattern", "per-module alphas"},
                            {"fan_in_fan_out", "transposed (Conv1D) weights"},
                            {"lora_bias", "a bias on lora_B"},
                            {"use_qalora", "QA-LoRA"},
                            {"use_bdlora", "block-diagonal LoRA"},
                            {"layer_replication", "replicated layers"},
                            {"target_parameters", "adapters on parameters instead of modules"},
                            {"alora_invocation_tokens", "activated LoRA (adapters that switch on at given tokens)"},
                            {"velora_config", "the VeLoRA variant"},
                            {"monteclora_config", "the MonteCLoRA variant"},
                            {"arrow_config", "Arrow routing between adapters"},
                            {"kasa_config", "the KaSA variant"}};
    for (const auto& w : why)
        if (truthy(w[0])) fail("%s: \"%s\" is set: %s cannot be loaded here", cpath.c_str(), w[0], w[1]);
    // Initialisations that rewrite the base weights when PEFT loads the adapter (the residual after
    // taking out B·A): on the unmodified base here, B·A would be counted twice. PEFT compares some of
    // these names case-insensitively ("OLoRA"), so the check does too. (MiCA, EVA, orthogonal and
    // Gaussian inits leave the base alone and run as plain LoRA: accepted.)
    std::string init = str("init_lora_weights");
    for (char& ch : init) ch = (char)std::tolower((unsigned char)ch);
    for (const char* base_changing : {"pissa", "corda", "olora", "loftq", "lora_ga"})
        if (init.compare(0, strlen(base_changing), base_changing) == 0)
            fail("%s: \"init_lora_weights\" is '%s': PEFT changes the base weights for such an adapter when it loads "
                 "it, so it cannot be added to the plain base here; convert it to a plain LoRA adapter first (PEFT's "
                 "save_pretrained(..., path_initial_model_for_weight_conversion=...))", cpath.c_str(),
                 str("init_lora_weights").c_str());
    if (!str("bias").empty() && str("bias") != "none")
        fail("%s: \"bias\" is '%s': trained biases cannot be loaded here (only \"none\")", cpath.c_str(), str("bias").c_str());
    const double r = number("r", 8), alpha = number("lora_alpha", 8);
    if (!(r >= 1 && r <= 65536 && r == std::floor(r))) fail("%s: \"r\" must be a positive integer (got %g)", cpath.c_str(), r);
    if (!(alpha > 0)) fail("%s: \"lora_alpha\" must be positive (got %g)", cpath.c_str(), alpha);
    lc = LoraConfig{};
    lc.rank = (int32_t)r;
    lc.alpha = (float)alpha;
    lc.dropout = (float)number("lora_dropout", 0.0);
    const JsonValue* rs = j.get("use_rslora");
    lc.use_rslora = rs && rs->type == JsonValue::Bool && rs->boolean;
    lc.use_dora = truthy("use_dora");
    // modules_to_save: the embedding and the LM head, by their module names (PEFT matches the last
    // components: embed_tokens, model.embed_tokens, model.language_model.embed_tokens).
    uint32_t saves = 0;
    if (truthy("modules_to_save")) {
        const JsonValue* list = j.get("modules_to_save");
        if (list->type != JsonValue::Array) fail("%s: \"modules_to_save\" must be a list of module names", cpath.c_str());
        for (const JsonValue& v : list->array) {
            const std::string name = v.type == JsonValue::String ? v.string : "";
            const std::string last = name.substr(name.rfind('.') == std::string::npos ? 0 : name.rfind('.') + 1);
            if (last == "embed_tokens") saves |= LORA_SAVE_EMBED;
            else if (last == "lm_head") saves |= LORA_SAVE_LM_HEAD;
            else fail("%s: \"modules_to_save\" names '%s': only embed_tokens and lm_head can be trained beside the "
                      "adapter here", cpath.c_str(), name.c_str());
        }
    }

    // trainable_token_indices: a list (the input embedding's, which PEFT ties a tied LM head to) or
    // module names (embed_tokens, lm_head, matched by their last component as PEFT does) to lists.
    if (truthy("trainable_token_indices")) {
        const JsonValue& v = *j.get("trainable_token_indices");
        auto ids = [&](const JsonValue& list, const std::string& what) {
            std::vector<int32_t> out;
            if (list.type != JsonValue::Array) fail("%s: \"trainable_token_indices\"%s must be a list of token ids", cpath.c_str(), what.c_str());
            for (const JsonValue& id : list.array)
                out.push_back(json_index(id, cfg.vocab_size, cpath, "\"trainable_token_indices\"" + what,
                                         "a token id of the base model's vocabulary"));
            return out;
        };
        if (v.type == JsonValue::Object) {
            for (const auto& [name, list] : v.object) {
                const std::string last = name.substr(name.rfind('.') == std::string::npos ? 0 : name.rfind('.') + 1);
                const int t = last == "embed_tokens" ? LORA_TABLE_EMBED : last == "lm_head" ? LORA_TABLE_LM_HEAD : -1;
                if (t < 0)
                    fail("%s: \"trainable_token_indices\" names '%s': only embed_tokens and lm_head can train token rows "
                         "here", cpath.c_str(), name.c_str());
                lc.tokens[t] = ids(list, "[\"" + name + "\"]");
            }
        } else {
            lc.tokens[LORA_TABLE_EMBED] = ids(v, "");
        }
        lora_check_tokens(cfg, lc, cpath);
    }

    const std::string wpath = dir + "/adapter_model.safetensors";
    if (!file_exists(wpath))
        fail("%s: no adapter_model.safetensors%s", dir.c_str(),
             file_exists(dir + "/adapter_model.bin") ? " (adapter_model.bin is a pickle, which is not read: save the adapter "
                                                       "with safe_serialization=True, PEFT's default)" : "");
    SafetensorsSet st;
    safetensors_add_file(st, wpath);
    // The tensors say which projections are adapted; every layer must have the same ones, all under
    // one layer prefix (the text model's or the image-text model's).
    lc.targets = 0;
    int prefix = -1, vision = 0;
    std::vector<char> present(cfg.n_layers, 0);  // the layers with adapter tensors
    for (const SafeTensor& t : st.tensors) {
        int p, layer, part;
        uint32_t targets;
        bool saved_module = false;
        for (int q = 0; q < kNumLayerPrefixes; q++)
            saved_module |= t.name == peft_embed_name(q) || t.name == peft_head_name(q) ||
                            t.name == peft_token_rows_name(q, LORA_TABLE_EMBED) || t.name == peft_token_rows_name(q, LORA_TABLE_LM_HEAD);
        if (saved_module) continue;  // read below, under the layers' prefix
        if (peft_wrapper_tensor(st, t.name, wpath)) continue;
        if (is_vision_adapter(t.name)) {
            vision++;
            continue;
        }
        if (!parse_peft_name(cfg, t.name, p, layer, targets, part)) {
            ModelConfig apart = cfg;  // Phi-3's: an adapter of its projections one by one
            apart.fused_projections = 0;
            if (cfg.fused_projections && parse_peft_name(apart, t.name, p, layer, targets, part)) {
                const int t0 = __builtin_ctz(targets);
                fail("%s: tensor %s adapts %s, which Phi-3 holds fused in %s: the adapter is for a model with the "
                     "projections apart (as unsloth's Llama-form Phi-3 has them): load it with that model", wpath.c_str(),
                     t.name.c_str(), kModule[t0], fused_part(cfg, t0).module);
            }
            // PEFT's names in memory hold the adapter's name: lora_A.default.weight, lora_magnitude_vector.default.weight
            for (const char* in_memory : {".lora_A.", ".lora_B.", ".lora_magnitude_vector."})
                if (const size_t at = t.name.find(in_memory);
                    at != std::string::npos && t.name.compare(at + strlen(in_memory), std::string::npos, "weight") != 0)
                    fail("%s: tensor %s carries an adapter name, as PEFT names tensors in memory: save the adapter with "
                         "save_pretrained, which writes ...lora_A.weight", wpath.c_str(), t.name.c_str());
            fail("%s: tensor %s is not a LoRA A or B of a decoder projection, nor a saved embedding or LM head (LoRA on "
                 "other modules is not supported)", wpath.c_str(), t.name.c_str());
        }
        if (part == kPartMagnitude && !lc.use_dora)
            fail("%s: tensor %s is a DoRA magnitude, but %s does not set \"use_dora\": true", wpath.c_str(),
                 t.name.c_str(), cpath.c_str());
        if (layer >= cfg.n_layers)
            fail("%s: tensor %s is for layer %d, but the base model has %d layers", wpath.c_str(), t.name.c_str(), layer,
                 cfg.n_layers);
        if (prefix >= 0 && p != prefix)
            fail("%s: tensor %s names its layer as %s..., an earlier one as %s...: one adapter is for one model", wpath.c_str(),
                 t.name.c_str(), kLayers[p], kLayers[prefix]);
        prefix = p;
        lc.targets |= targets;
        present[layer] = 1;
    }
    if (!lc.targets) fail("%s: holds no LoRA tensors of the language model's layers", wpath.c_str());
    // The adapted layers: layers_to_transform's, or those the tensors cover (a regular expression in
    // target_modules may name some layers only).
    if (truthy("layers_to_transform")) {
        const JsonValue& v = *j.get("layers_to_transform");
        auto layer = [&](const JsonValue& x) {
            return json_index(x, cfg.n_layers, cpath, "\"layers_to_transform\"", "a layer of the base model");
        };
        if (v.type == JsonValue::Array)
            for (const JsonValue& x : v.array) lc.layers.push_back(layer(x));
        else lc.layers.push_back(layer(v));
        std::sort(lc.layers.begin(), lc.layers.end());
        lc.layers.erase(std::unique(lc.layers.begin(), lc.layers.end()), lc.layers.end());
        for (int l = 0; l < cfg.n_layers; l++)
            if (present[l] && !lc.has_layer(l))
                fail("%s: holds adapters of layer %d, which \"layers_to_transform\" in %s leaves out", wpath.c_str(), l,
                     cpath.c_str());
    } else if (std::find(present.begin(), present.end(), 0) != present.end()) {
        for (int l = 0; l < cfg.n_layers; l++)
            if (present[l]) lc.layers.push_back(l);
    }
    if (vision)
        fprintf(stderr, "note: %s: %d adapter tensors of the vision tower are left out (the model here is text-only: its "
                "answers to text are what PEFT's image-text model gives)\n", wpath.c_str(), vision);
    LoraLayout L = lora_layout(cfg, lc);
    adapters.assign(L.total, 0.0f);
    for (int l = 0; l < cfg.n_layers; l++)
        for (int t = 0; t < LORA_NUM_TARGETS; t++) {
            if (!lc.adapts(l, (LoraTarget)t)) continue;
            for (int part = 0; part < num_parts(lc); part++) {
                const std::string name = peft_tensor_name(cfg, prefix, l, t, part);
                const SafeTensor* src = st.find(name);
                if (!src)
                    fail("%s: tensor %s is missing (every adapted layer needs the same adapted projections%s)", wpath.c_str(),
                         name.c_str(), part == kPartMagnitude ? ", and with use_dora each its magnitude" : "");
                // r from adapter_config.json, in/out from the base model
                float* dst = adapters.data() + part_offset(L, l, t, part);
                const FusedPart f = fused_part(cfg, t);
                if (!f.module || part == kPartA) {  // (a fused module's A is each of its projections')
                    read_checked(st, *src, wpath, name, part_shape(cfg, lc, t, part), dst);
                    continue;
                }
                // B [total, r] or the magnitude [total]: this projection's rows of them
                std::vector<int64_t> shape = part_shape(cfg, lc, t, part);
                shape[0] = f.total;
                std::vector<float> all((size_t)f.total * (part == kPartB ? lc.rank : 1));
                read_checked(st, *src, wpath, name, shape, all.data());
                const size_t row = part == kPartB ? lc.rank : 1;
                std::copy_n(all.begin() + f.row0 * row, f.rows * row, dst);
            }
        }
    read_saved_modules(st, wpath, cpath, cfg, saves, truthy("ensure_weight_tying"), prefix, lc, adapters);
    read_token_rows(st, wpath, cpath, cfg, prefix, lc, adapters);
    for (size_t i = 0; i < adapters.size(); i++)
        if (!std::isfinite(adapters[i])) fail("%s: the adapter holds a non-finite value (%g)", wpath.c_str(), (double)adapters[i]);
}

namespace {

// What a directory without an adapter is, when it is something ./train wrote, and what to pass
// instead: a run's --out (its newest checkpoint) or a full fine-tune's checkpoint (a model, no adapter).
std::string not_an_adapter_hint(const std::filesystem::path& dir) {
    if (file_exists((dir / "model.bin").string()))
        return strf(": it holds model.bin, the weights of a full fine-tune (--method full), not an adapter; pass "
                    "--model %s instead of --lora", (dir / "model.bin").string().c_str());
    std::string newest;  // ckpt-NNNNNNNN: zero-padded, so the largest name is the latest step
    std::error_code ec;
    for (const auto& e : std::filesystem::directory_iterator(dir, ec)) {
        const std::string name = e.path().filename().string();
        if (name.rfind("ckpt-", 0) == 0 && file_exists((e.path() / "adapter.lora").string()) && name > newest) newest = name;
    }
    if (newest.empty()) return "";
    return strf(": it is a training run's output; pass one of its checkpoints, the newest %s", (dir / newest).string().c_str());
}

}  // namespace

// A directory is a PEFT adapter, or a checkpoint of ./train (ckpt-N/ holds adapter.lora).
void lora_load_any(const std::string& path, const ModelConfig& cfg, LoraConfig& lc, std::vector<float>& adapters) {
    if (!std::filesystem::is_directory(path)) return lora_load(path, cfg, lc, adapters);
    const std::string peft = (std::filesystem::path(path) / "adapter_config.json").string(),
                      ours = (std::filesystem::path(path) / "adapter.lora").string();
    if (file_exists(peft)) lora_import_peft(path, cfg, lc, adapters);
    else if (file_exists(ours)) lora_load(ours, cfg, lc, adapters);
    else fail("%s holds neither a PEFT adapter (adapter_config.json) nor an adapter.lora%s", path.c_str(),
              not_an_adapter_hint(path).c_str());
}
