#include "model/weights.h"

#include <algorithm>
#include <cerrno>
#include <climits>
#include <cstddef>
#include <cmath>
#include <cstdio>
#include <cstring>
#include <fcntl.h>
#include <filesystem>
#include <sys/stat.h>
#include <unistd.h>

#include "model/import.h"
#include "model/util.h"

namespace {
const uint32_t kModelMagic = 0x424d4c4c;  // "LLMB"
// Version 2 appended the llama3 RoPE scaling fields to the config, version 3 the QK-norm flag,
// version 4 the NoPE interval, version 5 Gemma 3's fields and the sliding window, version 6 Phi-3's
// (fused projections, LongRoPE); each version's config is a prefix of the next (48, 64, 68, 72, 100
// bytes). A file is written in the oldest version that holds its model, so older builds read what
// they can.
const uint32_t kModelVersion = 6;
constexpr size_t kConfigBytes[kModelVersion + 1] = {0, 48, 64, 68, 72, 100, sizeof(ModelConfig)};
static_assert(offsetof(ModelConfig, rope_scale_factor) == 48, "the version 1 config is the prefix");
static_assert(offsetof(ModelConfig, qk_norm) == 64, "the version 2 config is the prefix");
static_assert(offsetof(ModelConfig, nope_interval) == 68, "the version 3 config is the prefix");
static_assert(offsetof(ModelConfig, mlp_act) == 72, "the version 4 config is the prefix");
static_assert(offsetof(ModelConfig, fused_projections) == 100, "the version 5 config is the prefix");
static_assert(sizeof(ModelConfig) == 1132, "a new config field needs a new version");
const size_t kAlign = 64;                 // bytes; lets readers mmap tensors with aligned vector loads

void add(ParamLayout& L, const std::string& name, std::vector<int64_t> shape, bool decay) {
    TensorInfo t;
    t.name = name;
    t.shape = std::move(shape);
    t.numel = 1;
    for (int64_t d : t.shape) t.numel *= (size_t)d;
    t.offset = L.total;
    t.decay = decay;
    L.total += t.numel;
    L.tensors.push_back(t);
}
}  // namespace

const TensorInfo* ParamLayout::find(const std::string& name) const {
    for (const TensorInfo& t : tensors)
        if (t.name == name) return &t;
    return nullptr;
}

ParamLayout param_layout(const ModelConfig& c) {
    ParamLayout L;
    int64_t C = c.dim, Q = c.q_dim(), KV = c.kv_dim(), F = c.ffn_dim;
    add(L, "model.embed_tokens.weight", {c.vocab_size, C}, true);
    for (int i = 0; i < c.n_layers; i++) {
        std::string p = "model.layers." + std::to_string(i) + ".";
        add(L, p + "input_layernorm.weight", {C}, false);
        add(L, p + "self_attn.q_proj.weight", {Q, C}, true);
        if (c.qkv_bias) add(L, p + "self_attn.q_proj.bias", {Q}, false);
        add(L, p + "self_attn.k_proj.weight", {KV, C}, true);
        if (c.qkv_bias) add(L, p + "self_attn.k_proj.bias", {KV}, false);
        add(L, p + "self_attn.v_proj.weight", {KV, C}, true);
        if (c.qkv_bias) add(L, p + "self_attn.v_proj.bias", {KV}, false);
        add(L, p + "self_attn.o_proj.weight", {C, Q}, true);
        if (c.qk_norm) add(L, p + "self_attn.q_norm.weight", {c.head_dim}, false);
        if (c.qk_norm) add(L, p + "self_attn.k_norm.weight", {c.head_dim}, false);
        add(L, p + "post_attention_layernorm.weight", {C}, false);
        if (c.post_norms) add(L, p + "pre_feedforward_layernorm.weight", {C}, false);
        add(L, p + "mlp.gate_proj.weight", {F, C}, true);
        add(L, p + "mlp.up_proj.weight", {F, C}, true);
        add(L, p + "mlp.down_proj.weight", {C, F}, true);
        if (c.post_norms) add(L, p + "post_feedforward_layernorm.weight", {C}, false);
    }
    add(L, "model.norm.weight", {C}, false);
    if (!c.tied_embeddings) add(L, "lm_head.weight", {c.vocab_size, C}, true);
    return L;
}

// The tensors of c's layout outside its layers and in each layer, from the layouts of 0 and 1 layers:
// counts for a layer count that may be corrupt, without building a layout of that many layers.
static std::pair<size_t, size_t> layout_counts(const ModelConfig& c) {
    ModelConfig none = c, one = c;
    none.n_layers = 0, one.n_layers = 1;
    const size_t base = param_layout(none).tensors.size();
    return {base, param_layout(one).tensors.size() - base};
}

ParamLayout param_layout_within(const ModelConfig& c, size_t n_tensors) {
    const size_t per_layer = layout_counts(c).second;
    ModelConfig held = c;
    held.n_layers = (int32_t)std::min<size_t>((size_t)c.n_layers, n_tensors / per_layer + 1);
    return param_layout(held);
}

ModelOffsets model_offsets(const ModelConfig& c) {
    ParamLayout L = param_layout(c);
    auto off = [&](const std::string& n) {
        const TensorInfo* t = L.find(n);
        return t ? t->offset : SIZE_MAX;
    };
    ModelOffsets o;
    o.embed = off("model.embed_tokens.weight");
    o.final_norm = off("model.norm.weight");
    o.lm_head = c.tied_embeddings ? o.embed : off("lm_head.weight");
    for (int i = 0; i < c.n_layers; i++) {
        std::string p = "model.layers." + std::to_string(i) + ".";
        LayerOffsets l;
        l.attn_norm = off(p + "input_layernorm.weight");
        l.wq = off(p + "self_attn.q_proj.weight");
        l.wk = off(p + "self_attn.k_proj.weight");
        l.wv = off(p + "self_attn.v_proj.weight");
        l.bq = off(p + "self_attn.q_proj.bias");
        l.bk = off(p + "self_attn.k_proj.bias");
        l.bv = off(p + "self_attn.v_proj.bias");
        l.wo = off(p + "self_attn.o_proj.weight");
        l.q_norm = off(p + "self_attn.q_norm.weight");
        l.k_norm = off(p + "self_attn.k_norm.weight");
        // With post norms post_attention_layernorm is the attention's output norm (Gemma's names).
        l.post_attn_norm = c.post_norms ? off(p + "post_attention_layernorm.weight") : SIZE_MAX;
        l.mlp_norm = off(p + (c.post_norms ? "pre_feedforward_layernorm.weight" : "post_attention_layernorm.weight"));
        l.post_mlp_norm = off(p + "post_feedforward_layernorm.weight");
        l.w_gate = off(p + "mlp.gate_proj.weight");
        l.w_up = off(p + "mlp.up_proj.weight");
        l.w_down = off(p + "mlp.down_proj.weight");
        o.layers.push_back(l);
    }
    return o;
}

FusedPart fused_part(const ModelConfig& c, int t) {
    FusedPart p;
    if (!c.fused_projections || t == 3 || t == 6) return p;  // (o and down stand alone)
    const int64_t Q = c.q_dim(), KV = c.kv_dim(), F = c.ffn_dim;
    if (t < 3) {
        p.module = "self_attn.qkv_proj", p.total = Q + 2 * KV, p.count = 3, p.index = t, p.first = 0;
        p.row0 = t == 0 ? 0 : Q + (t - 1) * KV, p.rows = t == 0 ? Q : KV;
    } else {
        p.module = "mlp.gate_up_proj", p.total = 2 * F, p.count = 2, p.index = t - 4, p.first = 4;
        p.row0 = (t - 4) * F, p.rows = F;
    }
    return p;
}

// The fused tensor that holds layout tensor `name`, with its part; empty for one stored as it is.
static std::string fused_tensor_name(const ModelConfig& c, const std::string& name, FusedPart& part) {
    static const char* const kParts[] = {"self_attn.q_proj.weight", "self_attn.k_proj.weight", "self_attn.v_proj.weight",
                                         nullptr, "mlp.gate_proj.weight", "mlp.up_proj.weight"};
    const size_t dot = name.rfind('.', name.rfind('.') - 1);  // before "q_proj.weight"
    if (!c.fused_projections || dot == std::string::npos || name.compare(0, 13, "model.layers.") != 0) return "";
    const size_t module = name.rfind('.', dot - 1) + 1;  // "self_attn.q_proj.weight"
    for (int t = 0; t < 6; t++)
        if (kParts[t] && name.compare(module, std::string::npos, kParts[t]) == 0) {
            part = fused_part(c, t);
            return name.substr(0, module) + part.module + ".weight";
        }
    return "";
}

TensorInfo stored_tensor(const ModelConfig& c, TensorInfo t, FusedPart& part) {
    const std::string fused = fused_tensor_name(c, t.name, part);
    if (!fused.empty()) t.name = fused, t.shape[0] = part.total, t.numel = (size_t)part.total * t.shape[1];
    return t;
}

uint16_t f32_to_bf16(float f) {
    uint32_t u;
    memcpy(&u, &f, 4);
    if ((u & 0x7fffffff) > 0x7f800000) return (uint16_t)((u >> 16) | 0x40);  // NaN stays a (quiet) NaN
    u += 0x7fff + ((u >> 16) & 1);                                          // round to nearest even
    return (uint16_t)(u >> 16);
}

float bf16_to_f32(uint16_t h) {
    uint32_t u = (uint32_t)h << 16;
    float f;
    memcpy(&f, &u, 4);
    return f;
}

// Header: magic, version, then the config fields in declaration order, dtype, tensor count. The
// version is the oldest that holds the model: 2, 3 with QK-norm, 4 with NoPE layers, 5 with Gemma 3's
// fields or a sliding window, 6 with Phi-3's.
uint32_t model_file_version(const ModelConfig& c) {
    const ModelConfig plain{};
    if (memcmp((const char*)&c + kConfigBytes[5], (const char*)&plain + kConfigBytes[5], kConfigBytes[6] - kConfigBytes[5]))
        return 6;
    if (memcmp((const char*)&c + kConfigBytes[4], (const char*)&plain + kConfigBytes[4], kConfigBytes[5] - kConfigBytes[4]))
        return 5;
    return c.nope_interval ? 4u : c.qk_norm ? 3u : 2u;
}

static void write_header(AtomicFile& f, const ModelConfig& c, DType dtype, uint32_t n_tensors) {
    const uint32_t version = model_file_version(c);
    f.put(kModelMagic);
    f.put(version);
    // ModelConfig is a plain struct of int32/float: written as is (little-endian)
    f.write(&c, kConfigBytes[version]);
    f.put((uint32_t)dtype);
    f.put(n_tensors);
}

// The .bin of `cfg`, tensor i's values from values_of(i, scratch): a pointer into memory that already
// holds them (a model's params, not copied), or scratch filled by a reader.
static void write_model(const std::string& path, const ModelConfig& cfg, DType dtype,
                        const std::function<const float*(size_t, std::vector<float>&)>& values_of) {
    ParamLayout L = param_layout(cfg);
    AtomicFile f(path);
    write_header(f, cfg, dtype, (uint32_t)L.tensors.size());
    std::vector<float> scratch;
    std::vector<uint16_t> half;
    for (size_t i = 0; i < L.tensors.size(); i++) {
        const size_t n = L.tensors[i].numel;
        f.pad_to(kAlign);
        const float* values = values_of(i, scratch);
        if (dtype == DType::F32) {
            f.write(values, n * sizeof(float));
        } else {
            half.resize(n);
            for (size_t j = 0; j < n; j++) half[j] = f32_to_bf16(values[j]);
            f.write(half.data(), n * sizeof(uint16_t));
        }
    }
    f.commit();
}

void model_save(const std::string& path, const ModelConfig& cfg, const std::function<void(size_t, float*)>& read_tensor,
                DType dtype) {
    const ParamLayout L = param_layout(cfg);
    write_model(path, cfg, dtype, [&](size_t i, std::vector<float>& scratch) {
        scratch.resize(L.tensors[i].numel);
        read_tensor(i, scratch.data());
        return (const float*)scratch.data();
    });
}

void model_save(const std::string& path, const ModelConfig& cfg, const std::vector<float>& params, DType dtype) {
    const ParamLayout L = param_layout(cfg);
    if (params.size() != L.total)
        fail("%s: internal error: %zu parameters given, the config needs %zu", path.c_str(), params.size(), L.total);
    write_model(path, cfg, dtype, [&](size_t i, std::vector<float>&) { return params.data() + L.tensors[i].offset; });
}

static void read_header(ByteReader& r, ModelConfig& cfg, DType& dtype, uint32_t& n_tensors) {
    uint32_t magic = r.get<uint32_t>("magic");
    if (magic != kModelMagic) fail("%s: not a model .bin file (bad magic 0x%08x; convert models with ./convert)", r.path.c_str(), magic);
    uint32_t version = r.get<uint32_t>("version");
    if (version < 1 || version > kModelVersion)
        fail("%s: model file version %u is not supported (this build reads versions 1 to %u)", r.path.c_str(), version,
             kModelVersion);
    cfg = ModelConfig{};
    r.read(&cfg, kConfigBytes[version], "config");
    // A Llama 3 shape converted before the scaling was read: 3.1 and later need it (once per run).
    static bool told = false;
    if (version == 1 && cfg.vocab_size == 128256 && cfg.rope_theta == 500000.0f && !told) {
        told = true;
        fprintf(stderr, "note: %s was converted before llama3 RoPE scaling was supported and runs unscaled: if it is "
                "Llama 3.1 or later, convert it again\n", r.path.c_str());
    }
    uint32_t dt = r.get<uint32_t>("dtype");
    if (dt > (uint32_t)DType::BF16) fail("%s: unknown dtype code %u", r.path.c_str(), dt);
    dtype = (DType)dt;
    n_tensors = r.get<uint32_t>("tensor count");
    cfg.validate(r.path);
}


ModelConfig model_read_config(const std::string& path) {
    if (model_is_imported(path)) return model_import_cached(path).cfg;
    check_model_not_directory(path);
    FILE* f = fopen(path.c_str(), "rb");
    if (!f) fail("%s: cannot open model file", path.c_str());
    std::string head(sizeof(ModelConfig) + 64, '\0');  // magic, version, config, dtype, count
    head.resize(fread(&head[0], 1, head.size(), f));
    fclose(f);
    ByteReader r(path, head);
    ModelConfig cfg;
    DType dtype;
    uint32_t n;
    read_header(r, cfg, dtype, n);
    return cfg;
}

namespace {
// n bytes at `offset` of the open file, or a failure naming the file and what was being read.
void pread_all(int fd, void* dst, size_t n, size_t offset, const std::string& path, const char* what) {
    for (size_t done = 0; done < n;) {
        const ssize_t k = pread(fd, (char*)dst + done, n - done, (off_t)(offset + done));
        if (k < 0 && errno == EINTR) continue;
        if (k <= 0)
            fail("%s: %s: the file changed while it was read (%s)", path.c_str(), what, k < 0 ? strerror(errno) : "now shorter");
        done += (size_t)k;
    }
}
}  // namespace

ModelFile::ModelFile(const std::string& p) : path(p) {
    if (model_is_imported(path)) {
        const ImportedModel& m = model_import_cached(path);
        cfg = m.cfg;
        layout = param_layout(cfg);
        imported = m.read_tensor;
        return;
    }
    check_model_not_directory(path);
    fd = open(path.c_str(), O_RDONLY);
    if (fd < 0) fail("%s: cannot open: %s", path.c_str(), strerror(errno));
    struct stat st;
    if (fstat(fd, &st) != 0 || !S_ISREG(st.st_mode)) {
        close(fd);
        fail("%s: not a regular file", path.c_str());
    }
    const size_t size = (size_t)st.st_size;
    try {
        // The header is a few hundred bytes (model_read_config reads 256)
        std::string head(std::min<size_t>(size, 4096), '\0');
        pread_all(fd, &head[0], head.size(), 0, path, "header");
        ByteReader r(path, std::move(head));
        uint32_t n_tensors;
        read_header(r, cfg, dtype, n_tensors);
        // Sizes from the header are checked against the file before anything is allocated for them:
        // the tensor count against the config's, then against the file's length (each tensor but the
        // last spans at least kAlign bytes), so the layout is only built for a file that can hold it.
        const auto [base, per_layer] = layout_counts(cfg);
        const size_t needed = base + (size_t)cfg.n_layers * per_layer;
        if (n_tensors != needed)
            fail("%s: holds %u tensors but its config (%s) needs %zu", path.c_str(), n_tensors, cfg.describe().c_str(), needed);
        if ((uint64_t)(n_tensors - 1) * kAlign > size - r.pos)
            fail("%s: file is truncated: its %u tensors need more than the %zu bytes after the header", path.c_str(),
                 n_tensors, size - r.pos);
        layout = param_layout(cfg);
        const size_t esize = dtype == DType::F32 ? 4 : 2;
        size_t pos = r.pos;
        for (const TensorInfo& t : layout.tensors) {
            pos = (pos + kAlign - 1) / kAlign * kAlign;
            if (pos > size) fail("%s: file is truncated before %s", path.c_str(), t.name.c_str());
            if (t.numel > (size - pos) / esize)
                fail("%s: file is truncated: %s needs %zu bytes at offset %zu but only %zu remain", path.c_str(),
                     t.name.c_str(), t.numel * esize, pos, size - pos);
            at.push_back(pos);
            pos += t.numel * esize;
        }
        if (pos != size) fail("%s: %zu unexpected bytes after the last tensor (wrong shapes?)", path.c_str(), size - pos);
    } catch (...) {
        close(fd);
        throw;
    }
}

ModelFile::~ModelFile() {
    if (fd >= 0) close(fd);
}

void ModelFile::read(size_t ti, float* dst) const {
    if (imported) return imported(ti, dst);
    const TensorInfo& t = layout.tensors[ti];
    if (dtype == DType::F32) return pread_all(fd, dst, t.numel * sizeof(float), at[ti], path, t.name.c_str());
    // BF16: read in slices of 1M values, widened as they come
    std::vector<uint16_t> h(std::min<size_t>(t.numel, (size_t)1 << 20));
    for (size_t i = 0; i < t.numel; i += h.size()) {
        const size_t n = std::min(h.size(), t.numel - i);
        pread_all(fd, h.data(), n * sizeof(uint16_t), at[ti] + i * sizeof(uint16_t), path, t.name.c_str());
        #pragma omp parallel for schedule(static)
        for (size_t j = 0; j < n; j++) dst[i + j] = bf16_to_f32(h[j]);
    }
}

void model_load(const std::string& path, ModelConfig& cfg, std::vector<float>& params) {
    const ModelFile mf(path);
    cfg = mf.cfg;
    params.resize(mf.layout.total);
    for (size_t i = 0; i < mf.layout.tensors.size(); i++) mf.read(i, params.data() + mf.layout.tensors[i].offset);
}

void init_random_tensor(const TensorInfo& t, size_t ti, float* p, uint64_t seed) {
    bool is_norm = t.name.find("norm") != std::string::npos;
    bool is_bias = t.name.find(".bias") != std::string::npos;
    if (is_norm) {
        for (size_t i = 0; i < t.numel; i++) p[i] = 1.0f;
    } else if (is_bias) {
        for (size_t i = 0; i < t.numel; i++) p[i] = 0.0f;
    } else {
        // One stream per tensor, parallel over chunks so a 7B-shape init takes seconds, not minutes.
        const size_t chunk = 1 << 16;
        #pragma omp parallel for schedule(static)
        for (size_t c0 = 0; c0 < t.numel; c0 += chunk) {
            Rng rng(seed * 1000003ull + ti * 7919ull + c0);
            size_t end = std::min(t.numel, c0 + chunk);
            for (size_t i = c0; i < end; i++) p[i] = 0.02f * rng.normal();
        }
    }
}

void model_init_random(const ModelConfig& cfg, std::vector<float>& params, uint64_t seed) {
    ParamLayout L = param_layout(cfg);
    params.assign(L.total, 0.0f);
    for (size_t ti = 0; ti < L.tensors.size(); ti++) init_random_tensor(L.tensors[ti], ti, params.data() + L.tensors[ti].offset, seed);
}

void check_exportable(const ModelConfig& cfg, const std::vector<float>& params, size_t n_tokens, const std::string& where) {
    cfg.validate(where);
    const ParamLayout L = param_layout(cfg);
    if (params.size() != L.total) fail("%s: %zu weights given, the config needs %zu", where.c_str(), params.size(), L.total);
    if (n_tokens > (size_t)cfg.vocab_size)
        fail("%s: the tokenizer has %zu tokens but the model only %d embeddings", where.c_str(), n_tokens, cfg.vocab_size);
    for (const TensorInfo& t : L.tensors)
        for (size_t i = 0; i < t.numel; i++)
            if (!std::isfinite(params[t.offset + i]))
                fail("%s: %s[%zu] is %g: the model has non-finite weights, nothing was written", where.c_str(),
                     t.name.c_str(), i, (double)params[t.offset + i]);
}
