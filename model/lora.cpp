#include "model/lora.h"

#include <algorithm>
#include <climits>
#include <cmath>
#include <cstddef>
#include <sstream>

#include "kernels/cpu/gemm.h"
#include "model/util.h"

const char* const kLoraTargetNames[LORA_NUM_TARGETS] = {"q", "k", "v", "o", "gate", "up", "down"};
const std::vector<LoraTarget> kLinearGroups[kNumLinearGroups] = {
    {LORA_Q, LORA_K, LORA_V}, {LORA_O}, {LORA_GATE, LORA_UP}, {LORA_DOWN}};

namespace {
const uint32_t kLoraMagic = 0x414d4c4c;  // "LLMA"
const uint32_t kLoraVersion = 5;
// The LoraScalars as each version stores them: each is a prefix of the next (version 1: before
// use_dora, version 2: before save_modules; versions 4 and 5 add lists after them).
constexpr size_t kLoraConfigBytes[kLoraVersion + 1] = {0, 20, 24, sizeof(LoraScalars), sizeof(LoraScalars),
                                                       sizeof(LoraScalars)};
static_assert(offsetof(LoraScalars, use_dora) == 20, "the version 1 config is the prefix");
static_assert(offsetof(LoraScalars, save_modules) == 24, "the version 2 config is the prefix");
static_assert(sizeof(LoraScalars) == 28, "a new config field needs a new version");
const char* const kTableNames[LORA_NUM_TABLES] = {"embed_tokens", "lm_head"};
}  // namespace

float LoraConfig::scale() const { return use_rslora ? alpha / std::sqrt((float)rank) : alpha / (float)rank; }

uint32_t lora_parse_targets(const std::string& list) {
    if (list == "all" || list == "all-linear") return (1u << LORA_NUM_TARGETS) - 1;  // all-linear: PEFT's name
    uint32_t mask = 0;
    std::stringstream ss(list);
    std::string item;
    while (std::getline(ss, item, ',')) {
        // "q_proj, v_proj", as a list copied from a config reads
        item.erase(0, item.find_first_not_of(' '));
        item.erase(item.find_last_not_of(' ') + 1);
        // Accept HF module names too: q_proj, gate_proj, ...
        std::string name = item.size() > 5 && item.compare(item.size() - 5, 5, "_proj") == 0 ? item.substr(0, item.size() - 5) : item;
        // Phi-3's fused modules (qkv_proj, gate_up_proj), as its PEFT recipes name them: their projections
        if (name == "qkv" || name == "gate_up") {
            mask |= name == "qkv" ? 1u << LORA_Q | 1u << LORA_K | 1u << LORA_V : 1u << LORA_GATE | 1u << LORA_UP;
            continue;
        }
        int found = -1;
        for (int t = 0; t < LORA_NUM_TARGETS; t++)
            if (name == kLoraTargetNames[t]) found = t;
        if (found < 0)
            fail("--lora-targets: unknown target '%s' (use a comma list of q,k,v,o,gate,up,down (or qkv, gate_up), or all)",
                 item.c_str());
        mask |= 1u << found;
    }
    if (!mask) fail("--lora-targets: empty list (use e.g. q,k,v,o or all)");
    return mask;
}

uint32_t lora_parse_saves(const std::string& list) {
    uint32_t bits = 0;
    std::stringstream ss(list);
    std::string item;
    while (std::getline(ss, item, ',')) {
        if (item.empty()) continue;  // "embed_tokens," as "embed_tokens"
        if (item == "embed_tokens" || item == "embed") bits |= LORA_SAVE_EMBED;
        else if (item == "lm_head" || item == "head") bits |= LORA_SAVE_LM_HEAD;
        else fail("--modules-to-save: unknown module '%s' (use embed_tokens, lm_head or both: embed_tokens,lm_head)", item.c_str());
    }
    if (!bits) fail("--modules-to-save: empty list (use embed_tokens, lm_head or embed_tokens,lm_head)");
    return bits;
}

uint32_t lora_saves(const ModelConfig& cfg, uint32_t bits) {
    return cfg.tied_embeddings && bits ? LORA_SAVE_EMBED | LORA_SAVE_LM_HEAD : bits;
}

std::string lora_saves_string(uint32_t bits) {
    std::string s = bits & LORA_SAVE_EMBED ? "embed_tokens" : "";
    if (bits & LORA_SAVE_LM_HEAD) s += std::string(s.empty() ? "" : ",") + "lm_head";
    return s;
}

std::vector<int32_t> lora_parse_tokens(const std::string& list, const std::function<int32_t(const std::string&)>& lookup) {
    std::vector<int32_t> ids;
    std::stringstream ss(list);
    std::string item;
    while (std::getline(ss, item, ',')) {
        if (item.empty()) continue;
        // A number is an id (digits are tokens too, but not the ones a template adds), else a token
        const bool number = item.find_first_not_of("0123456789") == std::string::npos && item.size() <= 9;
        const int32_t id = number ? std::stoi(item) : lookup(item);
        if (id < 0)
            fail("--trainable-tokens: '%s' is neither a token of the vocabulary (as tokenizer.json writes it: "
                 "<|im_end|>, <|eot_id|>) nor a token id", item.c_str());
        ids.push_back(id);
    }
    if (ids.empty()) fail("--trainable-tokens: empty list (use token ids or tokens, e.g. <|im_start|>,<|im_end|>)");
    return ids;
}

void lora_check_tokens(const ModelConfig& cfg, LoraConfig& lc, const std::string& where) {
    std::vector<int32_t>& embed = lc.tokens[LORA_TABLE_EMBED];
    std::vector<int32_t>& head = lc.tokens[LORA_TABLE_LM_HEAD];
    if (cfg.tied_embeddings && !head.empty()) {
        if (embed.empty())
            fail("%s: the base model ties its LM head to its embedding, but trainable tokens are listed for the LM head "
                 "alone, whose rows would then differ from the embedding's: list them for the embedding (a tied "
                 "model's one row serves both)", where.c_str());
        if (embed != head)
            fail("%s: the base model ties its LM head to its embedding, but the trainable tokens of the two differ "
                 "(the LM head's: %zu, the embedding's: %zu): a tied model holds one row per token for both", where.c_str(),
                 head.size(), embed.size());
        head.clear();
    }
    for (int t = 0; t < LORA_NUM_TABLES; t++) {
        std::vector<char> seen(cfg.vocab_size, 0);
        for (int32_t id : lc.tokens[t]) {
            if (id < 0 || id >= cfg.vocab_size)
                fail("%s: trainable token %d of %s is outside the vocabulary (0..%d)", where.c_str(), id, kTableNames[t],
                     cfg.vocab_size - 1);
            if (seen[id]++) fail("%s: trainable token %d is listed twice for %s", where.c_str(), id, kTableNames[t]);
        }
    }
    if ((!embed.empty() && (lora_saves(cfg, lc.save_modules) & LORA_SAVE_EMBED)) ||
        (!head.empty() && (lora_saves(cfg, lc.save_modules) & LORA_SAVE_LM_HEAD)))
        fail("%s: trainable tokens in a table that modules_to_save trains in full already (%s): use one of the two",
             where.c_str(), lora_saves_string(lora_saves(cfg, lc.save_modules)).c_str());
}

std::string lora_tokens_string(const ModelConfig& cfg, const LoraConfig& lc) {
    const size_t e = lc.tokens[LORA_TABLE_EMBED].size(), h = lc.tokens[LORA_TABLE_LM_HEAD].size();
    if (cfg.tied_embeddings) return strf("%zu token%s (embed_tokens, tied: also the LM head)", e, e == 1 ? "" : "s");
    if (e && h && lc.tokens[LORA_TABLE_EMBED] == lc.tokens[LORA_TABLE_LM_HEAD])
        return strf("%zu token%s (embed_tokens, lm_head)", e, e == 1 ? "" : "s");
    std::string s;
    for (int t = 0; t < LORA_NUM_TABLES; t++)
        if (size_t k = lc.tokens[t].size())
            s += strf("%s%zu token%s (%s)", s.empty() ? "" : " + ", k, k == 1 ? "" : "s", kTableNames[t]);
    return s;
}

std::vector<int32_t> lora_parse_layers(const std::string& list) {
    std::vector<int32_t> layers;
    if (list == "all") return layers;  // (as the logs write the default)
    std::stringstream ss(list);
    std::string item;
    auto number = [&](const std::string& s) {
        if (s.empty() || s.size() > 6 || s.find_first_not_of("0123456789") != std::string::npos)
            fail("--lora-layers: '%s' is not a layer index or a range of them (e.g. 0-3,10)", item.c_str());
        return std::stoi(s);
    };
    while (std::getline(ss, item, ',')) {
        if (item.empty()) continue;
        const size_t dash = item.find('-');
        const int first = number(item.substr(0, dash)), last = dash == std::string::npos ? first : number(item.substr(dash + 1));
        if (last < first) fail("--lora-layers: '%s' runs backwards (write the lower layer first)", item.c_str());
        for (int l = first; l <= last; l++) layers.push_back(l);
    }
    if (layers.empty()) fail("--lora-layers: empty list (use layer indices and ranges, e.g. 0-3,10)");
    std::sort(layers.begin(), layers.end());
    layers.erase(std::unique(layers.begin(), layers.end()), layers.end());
    return layers;
}

void lora_check_layers(const ModelConfig& cfg, const LoraConfig& lc, const std::string& where) {
    for (size_t i = 0; i < lc.layers.size(); i++) {
        if (lc.layers[i] < 0 || lc.layers[i] >= cfg.n_layers)
            fail("%s: layer %d is not a layer of the model (0..%d)", where.c_str(), lc.layers[i], cfg.n_layers - 1);
        if (i && lc.layers[i] <= lc.layers[i - 1])
            fail("%s: the adapted layers are not in ascending order, each once (%d after %d)", where.c_str(),
                 lc.layers[i], lc.layers[i - 1]);
    }
}

std::string lora_layers_string(const std::vector<int32_t>& layers) {
    std::string s;
    for (size_t i = 0; i < layers.size();) {
        size_t j = i;
        while (j + 1 < layers.size() && layers[j + 1] == layers[j] + 1) j++;
        s += (s.empty() ? "" : ",") + std::to_string(layers[i]) + (j > i ? "-" + std::to_string(layers[j]) : "");
        i = j + 1;
    }
    return s.empty() ? "all" : s;
}

std::string lora_targets_string(uint32_t mask) {
    std::string s;
    for (int t = 0; t < LORA_NUM_TARGETS; t++)
        if (mask >> t & 1u) s += std::string(s.empty() ? "" : ",") + kLoraTargetNames[t];
    return s;
}

void lora_target_shape(const ModelConfig& c, LoraTarget t, int& in, int& out) {
    switch (t) {
        case LORA_Q: in = c.dim; out = c.q_dim(); break;
        case LORA_K: case LORA_V: in = c.dim; out = c.kv_dim(); break;
        case LORA_O: in = c.q_dim(); out = c.dim; break;
        case LORA_GATE: case LORA_UP: in = c.dim; out = c.ffn_dim; break;
        default: in = c.ffn_dim; out = c.dim; break;  // LORA_DOWN
    }
}

LoraLayout lora_layout(const ModelConfig& cfg, const LoraConfig& lc) {
    LoraLayout L;
    L.a.assign((size_t)cfg.n_layers * LORA_NUM_TARGETS, SIZE_MAX);
    L.b = L.m = L.a;
    for (int l = 0; l < cfg.n_layers; l++)
        for (int t = 0; t < LORA_NUM_TARGETS; t++) {
            if (!lc.adapts(l, (LoraTarget)t)) continue;
            int in, out;
            lora_target_shape(cfg, (LoraTarget)t, in, out);
            std::string base = "layers." + std::to_string(l) + "." + kLoraTargetNames[t];
            TensorInfo a{base + ".lora_A", {lc.rank, in}, L.total, (size_t)lc.rank * in, true};
            L.a[(size_t)l * LORA_NUM_TARGETS + t] = L.total;
            L.total += a.numel;
            TensorInfo b{base + ".lora_B", {out, lc.rank}, L.total, (size_t)out * lc.rank, true};
            L.b[(size_t)l * LORA_NUM_TARGETS + t] = L.total;
            L.total += b.numel;
            L.tensors.push_back(a);
            L.tensors.push_back(b);
            if (lc.use_dora) {
                L.m[(size_t)l * LORA_NUM_TARGETS + t] = L.total;
                L.tensors.push_back({base + ".lora_magnitude", {out}, L.total, (size_t)out, true});
                L.total += out;
            }
        }
    // The saved modules after every adapter, so that the adapters' offsets do not depend on them.
    const uint32_t saves = lora_saves(cfg, lc.save_modules);
    auto save = [&](const char* name, size_t& at) {
        at = L.total;
        L.tensors.push_back({name, {cfg.vocab_size, cfg.dim}, L.total, (size_t)cfg.vocab_size * cfg.dim, true});
        L.total += (size_t)cfg.vocab_size * cfg.dim;
    };
    if (saves & LORA_SAVE_EMBED) save("embed_tokens", L.embed);
    if (cfg.tied_embeddings) L.lm_head = L.embed;
    else if (saves & LORA_SAVE_LM_HEAD) save("lm_head", L.lm_head);
    // The trainable tokens' rows last (a tied model's one set serves both tables).
    for (int t = 0; t < LORA_NUM_TABLES; t++) {
        const size_t k = lc.tokens[t].size();
        if (!k) continue;
        L.tokens[t] = L.total;
        L.tensors.push_back({std::string(kTableNames[t]) + ".trainable_tokens", {(int64_t)k, cfg.dim}, L.total,
                             k * cfg.dim, true});
        L.total += k * cfg.dim;
    }
    if (cfg.tied_embeddings) L.tokens[LORA_TABLE_LM_HEAD] = L.tokens[LORA_TABLE_EMBED];
    return L;
}

namespace {
// The output columns of the targets with a magnitude (0 without DoRA).
size_t dora_out(const ModelConfig& cfg, const LoraConfig& lc, LoraTarget t) {
    int in, out;
    lora_target_shape(cfg, t, in, out);
    return lc.use_dora && lc.has(t) ? (size_t)out : 0;
}
}  // namespace

size_t dora_offset(const ModelConfig& cfg, const LoraConfig& lc, int t) {
    size_t cols = 0;
    for (int s = 0; s < t; s++) cols += dora_out(cfg, lc, (LoraTarget)s);
    return cols;
}

size_t dora_group_width(const ModelConfig& cfg, const LoraConfig& lc) {
    size_t widest = 0;
    for (const std::vector<LoraTarget>& group : kLinearGroups) {
        size_t cols = 0;
        for (LoraTarget t : group) cols += dora_out(cfg, lc, t);
        widest = std::max(widest, cols);
    }
    return widest;
}

bool lora_is_b(const TensorInfo& t) { return ends_with(t.name, ".lora_B") || ends_with(t.name, ".lora_magnitude"); }

bool lora_is_saved_module(const TensorInfo& t) { return t.name == "embed_tokens" || t.name == "lm_head"; }

bool lora_is_token_rows(const TensorInfo& t) { return ends_with(t.name, ".trainable_tokens"); }

void lora_init(const ModelConfig& cfg, const LoraConfig& lc, std::vector<float>& adapters, uint64_t seed) {
    LoraLayout L = lora_layout(cfg, lc);
    adapters.assign(L.total, 0.0f);
    Rng rng(seed);
    for (const TensorInfo& t : L.tensors) {
        // B stays zero; the magnitudes, saved modules and token rows are set from the base by the caller
        if (lora_is_b(t) || lora_is_saved_module(t) || lora_is_token_rows(t)) continue;
        float bound = 1.0f / std::sqrt((float)t.shape[1]);
        for (size_t i = 0; i < t.numel; i++) adapters[t.offset + i] = (2.0f * rng.uniform() - 1.0f) * bound;
    }
}

void lora_merge(const ModelConfig& cfg, const LoraConfig& lc, const std::vector<float>& adapters, std::vector<float>& params) {
    LoraLayout L = lora_layout(cfg, lc);
    ModelOffsets off = model_offsets(cfg);
    for (int l = 0; l < cfg.n_layers; l++) {
        for (int t = 0; t < LORA_NUM_TARGETS; t++) {
            if (!lc.adapts(l, (LoraTarget)t)) continue;
            int in, out;
            lora_target_shape(cfg, (LoraTarget)t, in, out);
            float* w = params.data() + off.layers[l].projection(t);
            // W[out,in] += s · B[out,r] · A[r,in]
            cpu::gemm(false, false, out, in, lc.rank, lc.scale(), adapters.data() + L.B(l, t), lc.rank,
                      adapters.data() + L.A(l, t), in, 1.0f, w, in);
            if (!lc.use_dora) continue;
            // DoRA: row j of the merged weight is m_j · W_j / ‖W_j‖ (the norm of W + s·BA, as the
            // forward's dora_norm takes it, in double here: a merge is done once).
            const float* mag = adapters.data() + L.M(l, t);
            for (int j = 0; j < out; j++) {
                float* row = w + (size_t)j * in;
                double sum = 0.0;
                for (int i = 0; i < in; i++) sum += (double)row[i] * row[i];
                const float g = (float)(mag[j] / std::sqrt(sum));
                for (int i = 0; i < in; i++) row[i] *= g;
            }
        }
    }
    // The saved modules replace the base tensors (a tied model's one tensor is written once).
    const size_t n = (size_t)cfg.vocab_size * cfg.dim;
    if (L.embed != SIZE_MAX) std::copy_n(adapters.begin() + L.embed, n, params.begin() + off.embed);
    if (L.lm_head != SIZE_MAX && L.lm_head != L.embed) std::copy_n(adapters.begin() + L.lm_head, n, params.begin() + off.lm_head);
    // and the trainable tokens' rows theirs
    for (int t = 0; t < LORA_NUM_TABLES; t++)
        for (size_t i = 0; i < lc.tokens[t].size(); i++)
            std::copy_n(adapters.begin() + L.tokens[t] + i * cfg.dim, cfg.dim,
                        params.begin() + (t == LORA_TABLE_EMBED ? off.embed : off.lm_head) + (size_t)lc.tokens[t][i] * cfg.dim);
}


void lora_save(const std::string& path, const ModelConfig& cfg, const LoraConfig& lc, const std::vector<float>& adapters) {
    AtomicFile f(path);
    f.put(kLoraMagic);
    f.put(kLoraVersion);
    LoraScalars stored = lc;
    stored.save_modules = lora_saves(cfg, lc.save_modules);  // as lora_load checks it
    f.put(stored);
    f.put(cfg.hash());
    f.put((int32_t)cfg.n_layers);
    for (const std::vector<int32_t>* ids : {&lc.tokens[0], &lc.tokens[1], &lc.layers}) {
        f.put((uint32_t)ids->size());
        f.write(ids->data(), ids->size() * sizeof(int32_t));
    }
    f.put((uint64_t)adapters.size());
    f.write(adapters.data(), adapters.size() * sizeof(float));
    f.commit();
}

void lora_load(const std::string& path, const ModelConfig& cfg, LoraConfig& lc, std::vector<float>& adapters) {
    ByteReader r(path, read_file(path));
    uint32_t magic = r.get<uint32_t>("magic");
    if (magic != kLoraMagic) fail("%s: not a LoRA adapter file (bad magic 0x%08x)", path.c_str(), magic);
    uint32_t version = r.get<uint32_t>("version");
    if (version < 1 || version > kLoraVersion)
        fail("%s: adapter file version %u is not supported (this build reads 1 to %u)", path.c_str(), version, kLoraVersion);
    lc = LoraConfig{};  // the fields an older version lacks keep their defaults
    r.read(static_cast<LoraScalars*>(&lc), kLoraConfigBytes[version], "LoRA config");
    uint64_t hash = r.get<uint64_t>("base model hash");
    int32_t layers = r.get<int32_t>("layer count");
    if (hash != cfg.hash() || layers != cfg.n_layers)
        fail("%s: this adapter was trained on another base model (%d layers, shape hash %016llx) than the one loaded (%s)",
             path.c_str(), layers, (unsigned long long)hash, cfg.describe().c_str());
    if (lc.rank <= 0 || lc.rank > 65536 || lc.targets == 0 || lc.targets >> LORA_NUM_TARGETS || (lc.use_dora & ~1) ||
        lc.save_modules > (LORA_SAVE_EMBED | LORA_SAVE_LM_HEAD) || lora_saves(cfg, lc.save_modules) != lc.save_modules)
        fail("%s: corrupt LoRA config (rank %d, targets 0x%x, DoRA %d, saved modules 0x%x)", path.c_str(), lc.rank,
             lc.targets, lc.use_dora, lc.save_modules);
    for (int t = 0; t < LORA_NUM_TABLES && version >= 4; t++) {
        const uint32_t k = r.get<uint32_t>("trainable token count");
        if (k > (uint32_t)cfg.vocab_size) fail("%s: corrupt LoRA config (%u trainable tokens of %s)", path.c_str(), k, kTableNames[t]);
        r.need((size_t)k * sizeof(int32_t), "trainable token ids");  // before sizing the list
        lc.tokens[t].resize(k);
        r.read(lc.tokens[t].data(), k * sizeof(int32_t), "trainable token ids");
    }
    if (version >= 5) {
        const uint32_t k = r.get<uint32_t>("adapted layer count");
        if (k > (uint32_t)cfg.n_layers) fail("%s: corrupt LoRA config (%u adapted layers of %d)", path.c_str(), k, cfg.n_layers);
        r.need((size_t)k * sizeof(int32_t), "adapted layers");
        lc.layers.resize(k);
        r.read(lc.layers.data(), k * sizeof(int32_t), "adapted layers");
        lora_check_layers(cfg, lc, path);
    }
    const std::vector<int32_t> stored_tokens[LORA_NUM_TABLES] = {lc.tokens[0], lc.tokens[1]};
    lora_check_tokens(cfg, lc, path);
    if (lc.tokens[0] != stored_tokens[0] || lc.tokens[1] != stored_tokens[1])
        fail("%s: corrupt LoRA config (a tied model's trainable tokens listed for its LM head)", path.c_str());
    uint64_t n = r.get<uint64_t>("adapter size");
    LoraLayout L = lora_layout(cfg, lc);
    if (n != L.total)
        fail("%s: holds %llu adapter values but rank %d on targets %s needs %zu (mismatched shapes)", path.c_str(),
             (unsigned long long)n, lc.rank, lora_targets_string(lc.targets).c_str(), L.total);
    r.need(n * sizeof(float), "adapter weights");  // before sizing the buffer: a corrupt rank must not allocate
    adapters.resize(n);
    r.read(adapters.data(), n * sizeof(float), "adapter weights");
    if (r.remaining()) fail("%s: %zu unexpected bytes after the adapter weights", path.c_str(), r.remaining());
}
