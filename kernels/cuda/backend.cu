// The CUDA backend: finding the GPU, device memory (counted per category for the memory table), the
// scratch buffers, and the dispatch table whose entries cast act* to bf16* and call the cuda:: ops.
// Everything runs on the legacy default stream 0, so the host's call order is the GPU's order.
#include <algorithm>
#include <string>
#include <unordered_map>
#include <vector>

#include "kernels/cuda/common.cuh"
#include "model/util.h"

void cuda_check(cudaError_t e, const char* what, const char* file, int line) {
    if (e != cudaSuccess) fail("CUDA error at %s:%d: %s: %s", file, line, what, cudaGetErrorString(e));
}

namespace {

MemStats stats;
struct Allocation {
    size_t bytes;
    Mem category;
};
std::unordered_map<void*, Allocation> live;  // what cuda_release needs to uncount a pointer

double gib(size_t bytes) { return bytes / (1024.0 * 1024.0 * 1024.0); }

[[noreturn]] void out_of_memory(size_t bytes, Mem category) {
    std::string in_use;
    for (int c = 0; c < (int)Mem::count; c++) {
        char part[64];
        snprintf(part, sizeof part, "%s%s %.2f GiB", c ? ", " : "", mem_name((Mem)c), gib(stats.bytes[c]));
        in_use += part;
    }
    size_t free_bytes = 0, total_bytes = 0;
    cudaMemGetInfo(&free_bytes, &total_bytes);  // best effort: the message matters more than this call's error
    fail("out of GPU memory allocating %.2f GiB (%zu bytes) for %s. In use by this run: %s; the GPU has %.2f GiB free "
         "of %.2f GiB. %s",
         gib(bytes), bytes, mem_name(category), in_use.c_str(), gib(free_bytes), gib(total_bytes),
         out_of_memory_advice(true));
}

inline bf16* bf(act* p) { return reinterpret_cast<bf16*>(p); }
inline const bf16* bf(const act* p) { return reinterpret_cast<const bf16*>(p); }
// A LoRA group's projections with this backend's element type.
std::vector<LoraProj<bf16>> as_bf16(const LoraProj<act>* p, int G) {
    std::vector<LoraProj<bf16>> b(G);
    for (int t = 0; t < G; t++)
        b[t] = {bf(p[t].A), bf(p[t].B), p[t].OC, p[t].dropout_key, bf(p[t].y), bf(p[t].add), bf(p[t].dy),
                p[t].dA, p[t].dB};
    return b;
}

// upload/download convert on the host through a bounded staging buffer (round-to-nearest-even, as
// the device cast), so a multi-GB tensor needs no device memory beyond its own BF16 copy.
constexpr size_t kStageElems = size_t(1) << 24;  // 32 MiB of BF16 per chunk

void upload(act* dst, const float* src, size_t n) {
    std::vector<bf16> stage(std::min(n, kStageElems));
    for (size_t off = 0; off < n; off += kStageElems) {
        size_t m = std::min(kStageElems, n - off);
        #pragma omp parallel for schedule(static)
        for (size_t i = 0; i < m; i++) stage[i] = __float2bfloat16(src[off + i]);
        CUDA_CHECK(cudaMemcpy(bf(dst) + off, stage.data(), m * sizeof(bf16), cudaMemcpyHostToDevice));
    }
}

void download(float* dst, const act* src, size_t n) {
    std::vector<bf16> stage(std::min(n, kStageElems));
    for (size_t off = 0; off < n; off += kStageElems) {
        size_t m = std::min(kStageElems, n - off);
        CUDA_CHECK(cudaMemcpy(stage.data(), bf(src) + off, m * sizeof(bf16), cudaMemcpyDeviceToHost));
        #pragma omp parallel for schedule(static)
        for (size_t i = 0; i < m; i++) dst[off + i] = __bfloat162float(stage[i]);
    }
}

Ops make_ops() {
    Ops o{};
    o.name = "cuda";
    o.act_size = sizeof(bf16);
    o.host = false;

    o.alloc = cuda_alloc;
    o.release = cuda_release;
    o.reset_peak = [] { stats.reset_peak(); };
    o.release_scratch = cuda_release_scratch;
    o.mem_stats = [] {
        MemStats s = stats;
        size_t free_b = 0, total_b = 0;
        CUDA_CHECK(cudaMemGetInfo(&free_b, &total_b));
        s.device_used = total_b - free_b;
        s.device_total = total_b;
        return s;
    };
    o.memset0 = [](void* p, size_t bytes) { CUDA_CHECK(cudaMemsetAsync(p, 0, bytes, 0)); };
    o.copy = [](void* dst, const void* src, size_t bytes) {
        CUDA_CHECK(cudaMemcpyAsync(dst, src, bytes, cudaMemcpyDeviceToDevice, 0));
    };
    o.to_device = [](void* dst, const void* src, size_t bytes) {
        CUDA_CHECK(cudaMemcpy(dst, src, bytes, cudaMemcpyHostToDevice));
    };
    o.to_host = [](void* dst, const void* src, size_t bytes) {
        CUDA_CHECK(cudaMemcpy(dst, src, bytes, cudaMemcpyDeviceToHost));
    };
    o.synchronize = [] { CUDA_CHECK(cudaDeviceSynchronize()); };
    o.upload = upload;
    o.download = download;
    o.cast = [](act* dst, const float* src, size_t n) { cuda::cast_f32_to_bf16(bf(dst), src, n); };
    o.cast_stochastic = [](act* dst, const float* src, size_t n, uint64_t key) {
        cuda::cast_f32_to_bf16_stochastic(bf(dst), src, n, key);
    };
    o.gather_rows = [](act* out, const act* in, const int32_t* rows, int n, int C) {
        cuda::gather_rows(bf(out), bf(in), rows, n, C);
    };
    o.scatter_rows = [](act* out, const act* in, const int32_t* rows, int n, int C) {
        cuda::scatter_rows(bf(out), bf(in), rows, n, C);
    };
    o.gather_columns = [](act* out, const act* in, const int32_t* cols, int n, int V, int k) {
        cuda::gather_columns(bf(out), bf(in), cols, n, V, k);
    };

    o.matmul_forward = [](act* out, const act* inp, const act* w, const act* bias, int N, int C, int OC, const act* add) {
        cuda::matmul_forward(bf(out), bf(inp), bf(w), bf(bias), N, C, OC, bf(add));
    };
    o.gemm_candidates = cuda::gemm_candidates;
    o.matmul_backward = [](act* dinp, float* dw, float* dbias, const act* dout, const act* inp, const act* w, int N,
                           int C, int OC, bool accumulate) {
        cuda::matmul_backward(bf(dinp), dw, dbias, bf(dout), bf(inp), bf(w), N, C, OC, accumulate);
    };
    o.embedding_forward = [](act* out, const int32_t* tokens, const act* table, int N, int C, float scale) {
        cuda::embedding_forward(bf(out), tokens, bf(table), N, C, scale);
    };
    o.embedding_backward = [](float* dtable, const act* dout, const int32_t* tokens, int N, int C, float scale) {
        cuda::embedding_backward(dtable, bf(dout), tokens, N, C, scale);
    };
    o.embedding_noise = [](act* x, size_t n, float magnitude, uint64_t key) {
        cuda::embedding_noise(bf(x), n, magnitude, key);
    };
    o.rmsnorm_forward = [](act* out, float* rstd, const act* x, const act* w, int N, int C, float eps, const act* add) {
        cuda::rmsnorm_forward(bf(out), rstd, bf(x), bf(w), N, C, eps, bf(add));
    };
    o.rmsnorm_backward = [](act* dx, float* dw, const act* dout, const act* x, const act* w, const float* rstd, int N,
                            int C) { cuda::rmsnorm_backward(bf(dx), dw, bf(dout), bf(x), bf(w), rstd, N, C); };
    o.rope_forward = [](act* x, const int32_t* pos, int N, int n_heads, int head_dim, const float* inv_freq) {
        cuda::rope_forward(bf(x), pos, N, n_heads, head_dim, inv_freq);
    };
    o.rope_backward = [](act* dx, const int32_t* pos, int N, int n_heads, int head_dim, const float* inv_freq) {
        cuda::rope_backward(bf(dx), pos, N, n_heads, head_dim, inv_freq);
    };
    o.attention_forward = [](act* out, float* lse, const act* q, const act* k, const act* v, const int32_t* seg, int B,
                             int T, int nh, int nkv, int hd, float scale, int window) {
        cuda::attention_forward(bf(out), lse, bf(q), bf(k), bf(v), seg, B, T, nh, nkv, hd, scale, window);
    };
    o.attention_backward = [](act* dq, act* dk, act* dv, const act* dout, const act* out, const float* lse,
                              const act* q, const act* k, const act* v, const int32_t* seg, int B, int T, int nh,
                              int nkv, int hd, float scale, int window) {
        cuda::attention_backward(bf(dq), bf(dk), bf(dv), bf(dout), bf(out), lse, bf(q), bf(k), bf(v), seg, B, T, nh,
                                 nkv, hd, scale, window);
    };
    o.attention_decode = [](act* out, const act* q, const act* kcache, const act* vcache, const int32_t* len, int S,
                            int max_T, int nh, int nkv, int hd, float scale, int window) {
        cuda::attention_decode(bf(out), bf(q), bf(kcache), bf(vcache), len, S, max_T, nh, nkv, hd, scale, window);
    };
    o.glu_forward = [](act* h, const act* gate, const act* up, size_t N, int a) {
        cuda::glu_forward(bf(h), bf(gate), bf(up), N, a);
    };
    o.glu_backward = [](act* dgate, act* dup, const act* dh, const act* gate, const act* up, size_t N, int a) {
        cuda::glu_backward(bf(dgate), bf(dup), bf(dh), bf(gate), bf(up), N, a);
    };
    o.lora_forward = [](const LoraProj<act>* proj, int G, act* u, const act* x, int N, int C, int r, float scale,
                        float p) {
        std::vector<LoraProj<bf16>> b = as_bf16(proj, G);
        cuda::lora_forward(b.data(), G, bf(u), bf(x), N, C, r, scale, p);
    };
    o.lora_backward = [](const LoraProj<act>* proj, int G, act* dx, const act* x, const act* u, int N, int C, int r,
                         float scale, float p, bool accumulate) {
        std::vector<LoraProj<bf16>> b = as_bf16(proj, G);
        cuda::lora_backward(b.data(), G, bf(dx), bf(x), bf(u), N, C, r, scale, p, accumulate);
    };
    o.dora_norm = [](float* norm, const act* w, const act* A, const act* B, int OC, int C, int r, float scale) {
        cuda::dora_norm(norm, bf(w), bf(A), bf(B), OC, C, r, scale);
    };
    o.dora_forward = [](act* y, const act* z, const act* m, const float* norm, const act* bias, const act* add, int N,
                        int OC) { cuda::dora_forward(bf(y), bf(z), bf(m), norm, bf(bias), bf(add), N, OC); };
    o.dora_backward = [](act* dz, float* dm, const act* dy, const act* z, const act* m, const float* norm, int N,
                         int OC) { cuda::dora_backward(bf(dz), dm, bf(dy), bf(z), bf(m), norm, N, OC); };
    o.crossentropy_forward_backward = [](act* logits, float* nll, const int32_t* targets, const float* weights, int n,
                                         int V, float grad_scale) {
        cuda::crossentropy_forward_backward(bf(logits), nll, targets, weights, n, V, grad_scale);
    };
    o.argmax_rows = [](int32_t* idx, const act* x, int rows, int n, int ld) { cuda::argmax_rows(idx, bf(x), rows, n, ld); };
    o.nf4_quantize = cuda::nf4_quantize;
    o.quantize_blockwise8 = cuda::quantize_blockwise8;
    o.nf4_dequantize = [](act* w, const uint8_t* codes, const uint8_t* qabsmax, const float* qscale, float offset,
                          size_t n) { cuda::nf4_dequantize(bf(w), codes, qabsmax, qscale, offset, n); };
    o.adamw_update = [](float* p, act* p_compute, const float* g, float* m, float* v, size_t n, float lr, float beta1,
                        float beta2, float eps, float weight_decay, float grad_scale, int t, uint64_t sr_key) {
        cuda::adamw_update(p, bf(p_compute), g, m, v, n, lr, beta1, beta2, eps, weight_decay, grad_scale, t, sr_key);
    };
    o.adamw8bit_update = [](float* p, act* p_compute, const float* g, uint8_t* m, uint8_t* v, float* absmax_m,
                            float* absmax_v, size_t n, float lr, float beta1, float beta2, float eps, float weight_decay,
                            float grad_scale, int t, uint64_t sr_key) {
        cuda::adamw8bit_update(p, bf(p_compute), g, m, v, absmax_m, absmax_v, n, lr, beta1, beta2, eps, weight_decay,
                               grad_scale, t, sr_key);
    };
    o.sum_squares = cuda::sum_squares;
    return o;
}

// The one place that asks the driver whether there is a GPU. Any error from cudaGetDeviceCount (no
// driver, driver older than this runtime, no device) means "no GPU", and then no other CUDA call is
// made, so an nvcc-built binary runs on the CPU on a machine without a GPU.
const Ops* probe(std::string& why) {
    int count = 0;
    cudaError_t e = cudaGetDeviceCount(&count);
    if (e != cudaSuccess) {
        why = std::string("no CUDA device (cudaGetDeviceCount: ") + cudaGetErrorString(e) + ")";
        return nullptr;
    }
    if (count == 0) {
        why = "no CUDA device (cudaGetDeviceCount found none)";
        return nullptr;
    }
    // Since CUDA 12 this also creates the context, so a device that exists but cannot be used
    // (exclusive mode, busy, broken) is reported here rather than at the first allocation.
    e = cudaSetDevice(0);
    if (e != cudaSuccess) {
        why = std::string("CUDA device 0 is not usable (cudaSetDevice: ") + cudaGetErrorString(e) + ")";
        return nullptr;
    }
    // The build holds sm_90 code and compute_80 PTX (BF16 tensor cores): an older GPU could run none
    // of its kernels, so it counts as no GPU rather than failing at the first launch.
    int major = 0, minor = 0;
    if (cudaDeviceGetAttribute(&major, cudaDevAttrComputeCapabilityMajor, 0) == cudaSuccess &&
        cudaDeviceGetAttribute(&minor, cudaDevAttrComputeCapabilityMinor, 0) == cudaSuccess && major < 8) {
        why = "CUDA device 0 has compute capability " + std::to_string(major) + "." + std::to_string(minor) +
              "; the CUDA backend needs 8.0 (Ampere) or newer";
        return nullptr;
    }
    static const Ops ops = make_ops();
    return &ops;
}

}  // namespace

const Ops* cuda_ops(const char** why) {
    static std::string reason;
    static const Ops* ops = probe(reason);
    if (!ops && why) *why = reason.c_str();
    return ops;
}

void* cuda_alloc(size_t bytes, Mem category) {
    void* p = nullptr;
    cudaError_t e = cudaMalloc(&p, bytes ? bytes : 1);  // a unique non-null pointer even for an empty tensor
    if (e == cudaErrorMemoryAllocation) {
        cudaGetLastError();  // clear it: the run ends with a message, not a sticky error
        out_of_memory(bytes, category);
    }
    cuda_check(e, "cudaMalloc", __FILE__, __LINE__);
    if (const cudaError_t z = cudaMemsetAsync(p, 0, bytes, 0); z != cudaSuccess) {
        cudaFree(p);  // not handed out: nothing may keep it, uncounted
        cuda_check(z, "cudaMemsetAsync(p, 0, bytes, 0)", __FILE__, __LINE__);
    }
    live[p] = {bytes, category};
    stats.count(category, bytes);
    return p;
}

void cuda_release(void* p) {
    if (!p) return;
    auto it = live.find(p);
    if (it == live.end()) fail("cuda_release: %p was not allocated by cuda_alloc", p);
    // Uncounted whatever cudaFree says: after a sticky error (a kernel fault) it returns that error,
    // the context and every allocation in it are gone, and the run is ending with the error that
    // found it. Its caller is usually a destructor, which reports rather than throws (Buffer).
    const cudaError_t e = cudaFree(p);
    stats.uncount(it->second.category, it->second.bytes);
    live.erase(it);
    cuda_check(e, "cudaFree", __FILE__, __LINE__);
}

namespace {
struct ScratchBuffer {
    void* p;
    size_t bytes;
};
ScratchBuffer scratch_buffers[(int)Scratch::count];
}  // namespace

void cuda_release_scratch() {
    CUDA_CHECK(cudaDeviceSynchronize());  // queued kernels may still use them
    for (ScratchBuffer& b : scratch_buffers) {
        void* p = b.p;
        b = {nullptr, 0};  // first: a release that fails must not leave the slot pointing at it
        cuda_release(p);
    }
}

void* cuda_scratch(Scratch slot, size_t bytes) {
    ScratchBuffer& b = scratch_buffers[(int)slot];
    if (bytes > b.bytes) {
        if (b.p) {
            CUDA_CHECK(cudaDeviceSynchronize());  // queued kernels may still use the old buffer
            void* old = b.p;
            b = {nullptr, 0};  // stays consistent if the release or the allocation below fails
            cuda_release(old);
        }
        b.p = cuda_alloc(bytes, Mem::scratch);
        b.bytes = bytes;
    }
    return b.p;
}
