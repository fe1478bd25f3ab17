// The CPU backend's dispatch table (its storage type is FP32, so act* is float*), its host memory
// (counted per category for the memory table, like the GPU's), and the --device choice.
#include <algorithm>
#include <cstdlib>
#include <cstring>
#include <vector>

#include "kernels/kernels.h"
#include "model/util.h"

const char* out_of_memory_advice(bool gpu) {
    auto advice = [](bool on_gpu) {
        return strf("When training: lower --batch-size or --max-seq-len, add --recompute, %sor train with --method "
                    "lora or qlora; ./train --dry-run prints the memory table, ./memory estimates any setup. "
                    "Otherwise: the model does not fit this %s's memory",
                    on_gpu ? "add --offload-optimizer (AdamW's state in host memory; not with --stochastic-rounding), "
                           : "",
                    on_gpu ? "GPU" : "machine");
    };
    static const std::string texts[2] = {advice(false), advice(true)};
    return texts[gpu].c_str();
}

int lora_ctas() {
    static const int ctas = [] {
        const char* e = getenv("LORA_CTAS");
        if (!e || !*e) return 396;
        char* end = nullptr;
        const long v = strtol(e, &end, 10);
        if (*end || v < 1 || v > 100000) fail("LORA_CTAS=%s: use a number of CTAs from 1 to 100000, or leave it unset", e);
        return (int)v;
    }();
    return ctas;
}

const char* mem_name(Mem c) {
    static const char* names[] = {"weights", "adapters", "gradients", "optimizer", "activations", "scratch"};
    static_assert(sizeof names / sizeof names[0] == (size_t)Mem::count, "one name per Mem category");
    return names[(int)c];
}

size_t MemStats::total() const {
    size_t t = 0;
    for (size_t b : bytes) t += b;
    return t;
}

void MemStats::count(Mem c, size_t n) {
    bytes[(int)c] += n;
    peak[(int)c] = std::max(peak[(int)c], bytes[(int)c]);
    peak_total = std::max(peak_total, total());
}

void MemStats::uncount(Mem c, size_t n) { bytes[(int)c] -= n; }

void MemStats::reset_peak() {
    for (int c = 0; c < (int)Mem::count; c++) peak[c] = bytes[c];
    peak_total = total();
}

namespace {

MemStats stats;

// Each allocation carries a header in the 64 bytes before the pointer it hands out: what release
// needs to uncount it and to free the underlying block.
struct Header {
    void* raw;
    size_t bytes;
    Mem category;
};
constexpr size_t kAlign = 64;
static_assert(sizeof(Header) <= kAlign, "the header fits in front of the aligned block");

void* host_alloc(size_t bytes, Mem category) {
    // calloc: zero-filled, and for large blocks fresh pages from the OS (zeroed lazily, not touched here).
    // kAlign bytes for the header plus up to kAlign-1 to round the returned pointer up to kAlign.
    void* raw = calloc(1, bytes + 2 * kAlign);
    if (!raw)
        fail("out of host memory allocating %.2f GiB for %s. %s", bytes / (1024.0 * 1024.0 * 1024.0),
             mem_name(category), out_of_memory_advice(false));
    char* p = (char*)(((uintptr_t)raw + kAlign + kAlign - 1) / kAlign * kAlign);
    *((Header*)p - 1) = {raw, bytes, category};
    stats.count(category, bytes);
    return p;
}

void host_release(void* p) {
    if (!p) return;
    Header h = *((Header*)p - 1);
    stats.uncount(h.category, h.bytes);
    free(h.raw);
}

inline float* F(act* p) { return reinterpret_cast<float*>(p); }
inline const float* F(const act* p) { return reinterpret_cast<const float*>(p); }
// A LoRA group's projections with this backend's element type.
std::vector<LoraProj<float>> as_float(const LoraProj<act>* p, int G) {
    std::vector<LoraProj<float>> f(G);
    for (int t = 0; t < G; t++)
        f[t] = {F(p[t].A), F(p[t].B), p[t].OC, p[t].dropout_key, F(p[t].y), F(p[t].add), F(p[t].dy),
                p[t].dA, p[t].dB};
    return f;
}

Ops make_ops() {
    Ops o{};
    o.name = "cpu";
    o.act_size = sizeof(float);
    o.host = true;

    o.alloc = host_alloc;
    o.release = host_release;
    o.mem_stats = [] { return stats; };
    o.reset_peak = [] { stats.reset_peak(); };
    o.release_scratch = [] {};  // the CPU ops' own buffers are small and reused (docs/memory.md): nothing to free
    o.memset0 = [](void* p, size_t bytes) { memset(p, 0, bytes); };
    o.copy = [](void* dst, const void* src, size_t bytes) { memcpy(dst, src, bytes); };
    o.to_device = o.copy;
    o.to_host = o.copy;
    o.synchronize = [] {};
    o.upload = [](act* dst, const float* src, size_t n) { memcpy(dst, src, n * sizeof(float)); };
    o.download = [](float* dst, const act* src, size_t n) { memcpy(dst, src, n * sizeof(float)); };
    o.cast = o.upload;  // FP32 is the storage type: both are copies
    o.cast_stochastic = [](act* dst, const float* src, size_t n, uint64_t) { memcpy(dst, src, n * sizeof(float)); };
    o.gather_rows = [](act* out, const act* in, const int32_t* rows, int n, int C) {
        for (int i = 0; i < n; i++) memcpy(F(out) + (size_t)i * C, F(in) + (size_t)rows[i] * C, C * sizeof(float));
    };
    o.scatter_rows = [](act* out, const act* in, const int32_t* rows, int n, int C) {
        for (int i = 0; i < n; i++) memcpy(F(out) + (size_t)rows[i] * C, F(in) + (size_t)i * C, C * sizeof(float));
    };
    o.gather_columns = [](act* out, const act* in, const int32_t* cols, int n, int V, int k) {
        for (int i = 0; i < n; i++)
            for (int j = 0; j < k; j++) F(out)[(size_t)i * k + j] = F(in)[(size_t)i * V + cols[j]];
    };

    o.matmul_forward = [](act* out, const act* inp, const act* w, const act* bias, int N, int C, int OC, const act* add) {
        cpu::matmul_forward(F(out), F(inp), F(w), F(bias), N, C, OC, F(add));
    };
    o.matmul_backward = [](act* dinp, float* dw, float* dbias, const act* dout, const act* inp, const act* w, int N,
                           int C, int OC, bool accumulate) {
        cpu::matmul_backward(F(dinp), dw, dbias, F(dout), F(inp), F(w), N, C, OC, accumulate);
    };
    o.embedding_forward = [](act* out, const int32_t* tokens, const act* table, int N, int C, float scale) {
        cpu::embedding_forward(F(out), tokens, F(table), N, C, scale);
    };
    o.embedding_backward = [](float* dtable, const act* dout, const int32_t* tokens, int N, int C, float scale) {
        cpu::embedding_backward(dtable, F(dout), tokens, N, C, scale);
    };
    o.embedding_noise = [](act* x, size_t n, float magnitude, uint64_t key) {
        cpu::embedding_noise(F(x), n, magnitude, key);
    };
    o.rmsnorm_forward = [](act* out, float* rstd, const act* x, const act* w, int N, int C, float eps, const act* add) {
        cpu::rmsnorm_forward(F(out), rstd, F(x), F(w), N, C, eps, F(add));
    };
    o.rmsnorm_backward = [](act* dx, float* dw, const act* dout, const act* x, const act* w, const float* rstd, int N,
                            int C) { cpu::rmsnorm_backward(F(dx), dw, F(dout), F(x), F(w), rstd, N, C); };
    o.rope_forward = [](act* x, const int32_t* pos, int N, int n_heads, int head_dim, const float* inv_freq) {
        cpu::rope_forward(F(x), pos, N, n_heads, head_dim, inv_freq);
    };
    o.rope_backward = [](act* dx, const int32_t* pos, int N, int n_heads, int head_dim, const float* inv_freq) {
        cpu::rope_backward(F(dx), pos, N, n_heads, head_dim, inv_freq);
    };
    o.attention_forward = [](act* out, float* lse, const act* q, const act* k, const act* v, const int32_t* seg, int B,
                             int T, int nh, int nkv, int hd, float scale, int window) {
        cpu::attention_forward(F(out), lse, F(q), F(k), F(v), seg, B, T, nh, nkv, hd, scale, window);
    };
    o.attention_backward = [](act* dq, act* dk, act* dv, const act* dout, const act* out, const float* lse,
                              const act* q, const act* k, const act* v, const int32_t* seg, int B, int T, int nh,
                              int nkv, int hd, float scale, int window) {
        cpu::attention_backward(F(dq), F(dk), F(dv), F(dout), F(out), lse, F(q), F(k), F(v), seg, B, T, nh, nkv, hd,
                                scale, window);
    };
    o.attention_decode = [](act* out, const act* q, const act* kcache, const act* vcache, const int32_t* len, int S,
                            int max_T, int nh, int nkv, int hd, float scale, int window) {
        cpu::attention_decode(F(out), F(q), F(kcache), F(vcache), len, S, max_T, nh, nkv, hd, scale, window);
    };
    o.glu_forward = [](act* h, const act* gate, const act* up, size_t N, int a) {
        cpu::glu_forward(F(h), F(gate), F(up), N, a);
    };
    o.glu_backward = [](act* dgate, act* dup, const act* dh, const act* gate, const act* up, size_t N, int a) {
        cpu::glu_backward(F(dgate), F(dup), F(dh), F(gate), F(up), N, a);
    };
    o.lora_forward = [](const LoraProj<act>* proj, int G, act* u, const act* x, int N, int C, int r, float scale,
                        float p) {
        std::vector<LoraProj<float>> f = as_float(proj, G);
        cpu::lora_forward(f.data(), G, F(u), F(x), N, C, r, scale, p);
    };
    o.lora_backward = [](const LoraProj<act>* proj, int G, act* dx, const act* x, const act* u, int N, int C, int r,
                         float scale, float p, bool accumulate) {
        std::vector<LoraProj<float>> f = as_float(proj, G);
        cpu::lora_backward(f.data(), G, F(dx), F(x), F(u), N, C, r, scale, p, accumulate);
    };
    o.dora_norm = [](float* norm, const act* w, const act* A, const act* B, int OC, int C, int r, float scale) {
        cpu::dora_norm(norm, F(w), F(A), F(B), OC, C, r, scale);
    };
    o.dora_forward = [](act* y, const act* z, const act* m, const float* norm, const act* bias, const act* add, int N,
                        int OC) { cpu::dora_forward(F(y), F(z), F(m), norm, F(bias), F(add), N, OC); };
    o.dora_backward = [](act* dz, float* dm, const act* dy, const act* z, const act* m, const float* norm, int N,
                         int OC) { cpu::dora_backward(F(dz), dm, F(dy), F(z), F(m), norm, N, OC); };
    o.crossentropy_forward_backward = [](act* logits, float* nll, const int32_t* targets, const float* weights, int n,
                                         int V, float grad_scale) {
        cpu::crossentropy_forward_backward(F(logits), nll, targets, weights, n, V, grad_scale);
    };
    o.argmax_rows = [](int32_t* idx, const act* x, int rows, int n, int ld) { cpu::argmax_rows(idx, F(x), rows, n, ld); };
    o.nf4_quantize = cpu::nf4_quantize;
    o.quantize_blockwise8 = cpu::quantize_blockwise8;
    o.nf4_dequantize = [](act* w, const uint8_t* codes, const uint8_t* qabsmax, const float* qscale, float offset,
                          size_t n) { cpu::nf4_dequantize(F(w), codes, qabsmax, qscale, offset, n); };
    // p_compute is null here: the FP32 masters are the very weights the CPU ops read (so there is
    // nothing to round, stochastically or not).
    o.adamw_update = [](float* p, act*, const float* g, float* m, float* v, size_t n, float lr, float beta1,
                        float beta2, float eps, float weight_decay, float grad_scale, int t, uint64_t) {
        cpu::adamw_update(p, g, m, v, n, lr, beta1, beta2, eps, weight_decay, grad_scale, t);
    };
    o.adamw8bit_update = [](float* p, act*, const float* g, uint8_t* m, uint8_t* v, float* absmax_m, float* absmax_v,
                            size_t n, float lr, float beta1, float beta2, float eps, float weight_decay,
                            float grad_scale, int t, uint64_t) {
        cpu::adamw8bit_update(p, g, m, v, absmax_m, absmax_v, n, lr, beta1, beta2, eps, weight_decay, grad_scale, t);
    };
    o.sum_squares = cpu::sum_squares;
    return o;
}

}  // namespace

const Ops& cpu_ops() {
    static const Ops ops = make_ops();
    return ops;
}

const Ops& select_ops(const char* device) {
    if (!strcmp(device, "cpu")) return cpu_ops();
    bool want_cuda = !strcmp(device, "cuda");
    if (!want_cuda && strcmp(device, "auto")) fail("--device %s: expected cpu, cuda or auto", device);
    const char* why = nullptr;
    if (const Ops* cuda = cuda_ops(&why)) return *cuda;
    if (want_cuda) fail("--device cuda: %s", why);
    return cpu_ops();
}
