// The adapter path of LoRA linear layers on the GPU, for a group of G projections reading the same x
// (q, k, v; gate, up; or one); the same math as kernels/cpu/lora.cpp:
//   y_t = add_t + s · (drop_t(x) A_tᵀ) B_tᵀ,   A_t: [r, C], B_t: [OC_t, r]
// Backward with u_t = drop_t(x)A_tᵀ, du_t = s · dy_t B_t:
//   dB_t += s · dy_tᵀ u_t,   dA_t += du_tᵀ drop_t(x),   dx (+)= Σ_t drop_t'(du_t A_t)
// Thin GEMMs through the rank-r bottleneck (cuda::gemm, cuBLASLt). Each is one memory-bound pass over
// an [N, C] or [N, OC] activation, so the model runs them before the base GEMM of the same output,
// which then accumulates onto it (the output is read once, by a compute-bound GEMM), and without
// dropout the group's adapters are stacked, A = [A_1; ...; A_G] ([G·r, C], gathered into scratch:
// G·r·C elements), so that x is read once for all the u_t (u = x Aᵀ, [N, G·r]) and once for all the dA_t
// (duᵀ x), and dx is written once (dx (+)= du A, K = G·r) instead of once per projection, read and
// written again for each later one. (On an H100 at 7B a beta = 1 dx pass takes 72 µs, a beta = 0 one
// 30 µs: bench_gemm_algos.) With dropout each projection has its own mask on x and on du_t A_t, so
// they go one at a time. No full-size temporary except for dropout, which the GEMMs cannot fold in.
#include "kernels/cuda/gemm.cuh"
#include "model/util.h"

namespace {

// dst = drop(src), or dst += drop(src) with accumulate. Element i of the flattened tensor is kept iff
// dropout_keep(key, i, threshold) (kernels/hash.h) and then scaled by keep_scale = 1/(1-p): the CPU's
// mask, bit for bit.
__global__ void dropout_kernel(bf16* dst, const bf16* src, size_t n, uint32_t threshold, float keep_scale,
                               uint64_t key, bool accumulate) {
    size_t i = (size_t)blockIdx.x * blockDim.x + threadIdx.x;
    if (i >= n) return;
    // __fmul_rn: the scaled value is rounded on its own before the add (a plain product could be
    // contracted with that add into one FMA).
    float v = dropout_keep(key, i, threshold) ? __fmul_rn(__bfloat162float(src[i]), keep_scale) : 0.0f;
    dst[i] = __float2bfloat16(accumulate ? __bfloat162float(dst[i]) + v : v);
}

void dropout(bf16* dst, const bf16* src, size_t n, float p, uint64_t key, bool accumulate) {
    if (n == 0) return;
    dropout_kernel<<<ceil_div(n, 256), 256>>>(dst, src, n, dropout_threshold(p), 1.0f / (1.0f - p), key,
                                              accumulate);
    CUDA_LAUNCH_CHECK();
}

// drop(x) in the lora_x scratch, or x itself when there is no dropout (no copy).
const bf16* dropped_input(const bf16* x, size_t n, float p, uint64_t key) {
    if (p <= 0.0f) return x;
    bf16* xd = (bf16*)cuda_scratch(Scratch::lora_x, n * sizeof(bf16));
    dropout(xd, x, n, p, key, false);
    return xd;
}

// The G tensors of n elements that a stacked operand gathers or scatters (by value: one launch for
// the whole group).
constexpr int kMaxStack = 8;
template <class T>
struct Slices {
    T* p[kMaxStack];
};
// The group's G pointers get(proj[t]) as a kernel argument.
template <class T, class Get>
Slices<T> group_slices(const LoraProj<bf16>* proj, int G, Get get) {
    if (G > kMaxStack) fail("internal: a LoRA group of %d projections (at most %d)", G, kMaxStack);
    Slices<T> s{};
    for (int t = 0; t < G; t++) s.p[t] = get(proj[t]);
    return s;
}

// dst[t·n + i] = src_t[i]: the group's A matrices stacked. Grid y = t.
__global__ void stack_kernel(bf16* dst, Slices<const bf16> src, size_t n) {
    size_t i = (size_t)blockIdx.x * blockDim.x + threadIdx.x;
    if (i < n) dst[blockIdx.y * n + i] = src.p[blockIdx.y][i];
}

// dst_t[i] += src[t·n + i]: a stacked dA added to each projection's gradient (FP32). Grid y = t.
__global__ void unstack_add_kernel(Slices<float> dst, const float* src, size_t n) {
    size_t i = (size_t)blockIdx.x * blockDim.x + threadIdx.x;
    if (i < n) dst.p[blockIdx.y][i] += src[blockIdx.y * n + i];
}

// A = [A_1; ...; A_G] ([G·r, C]) in the lora_a scratch, or A_1 itself for a group of one.
const bf16* stacked_A(const LoraProj<bf16>* proj, int G, int r, int C) {
    if (G == 1) return proj[0].A;
    const auto src = group_slices<const bf16>(proj, G, [](const LoraProj<bf16>& a) { return a.A; });
    const size_t n = (size_t)r * C;
    bf16* a = (bf16*)cuda_scratch(Scratch::lora_a, G * n * sizeof(bf16));
    stack_kernel<<<dim3(ceil_div(n, 256), G), 256>>>(a, src, n);
    CUDA_LAUNCH_CHECK();
    return a;
}

// dA_t += duᵀ x for all t in one pass over x: the stacked product into the lora_da scratch, then
// added to each gradient.
void stacked_dA(const LoraProj<bf16>* proj, int G, const bf16* du, const bf16* x, int N, int C, int r) {
    const auto dst = group_slices<float>(proj, G, [](const LoraProj<bf16>& a) { return a.dA; });
    const size_t n = (size_t)r * C;
    float* dA = (float*)cuda_scratch(Scratch::lora_da, G * n * sizeof(float));
    cuda::gemm(true, false, G * r, C, N, 1.0f, du, G * r, x, C, 0.0f, dA, C);
    unstack_add_kernel<<<dim3(ceil_div(n, 256), G), 256>>>(dst, dA, n);
    CUDA_LAUNCH_CHECK();
}

}  // namespace

namespace cuda {

void lora_forward(const LoraProj<bf16>* proj, int G, bf16* u, const bf16* x, int N, int C, int r, float scale,
                  float p) {
    const int ldu = G * r;
    if (p <= 0.0f) {
        gemm(false, true, N, G * r, C, 1.0f, x, C, stacked_A(proj, G, r, C), C, 0.0f, u, ldu);  // u = x Aᵀ
    } else {
        for (int t = 0; t < G; t++) {
            const bf16* xin = dropped_input(x, (size_t)N * C, p, proj[t].dropout_key);
            gemm(false, true, N, r, C, 1.0f, xin, C, proj[t].A, C, 0.0f, u + t * r, ldu);  // u_t = drop_t(x) A_tᵀ
        }
    }
    for (int t = 0; t < G; t++) {  // y_t = add_t + s · u_t B_tᵀ
        const LoraProj<bf16>& a = proj[t];
        gemm(false, true, N, a.OC, r, scale, u + t * r, ldu, a.B, r, a.add ? 1.0f : 0.0f, a.y, a.OC, a.add);
    }
}

void lora_backward(const LoraProj<bf16>* proj, int G, bf16* dx, const bf16* x, const bf16* u, int N, int C, int r,
                   float scale, float p, bool accumulate) {
    const int ldu = G * r;
    bf16* du = (bf16*)cuda_scratch(Scratch::lora_u, (size_t)N * ldu * sizeof(bf16));  // [N, G·r]
    for (int t = 0; t < G; t++) {
        const LoraProj<bf16>& a = proj[t];
        gemm(true, false, a.OC, r, N, scale, a.dy, a.OC, u + t * r, ldu, 1.0f, a.dB, r);   // dB_t += s · dy_tᵀ u_t
        gemm(false, false, N, r, a.OC, scale, a.dy, a.OC, a.B, r, 0.0f, du + t * r, ldu);  // du_t = s · dy_t B_t
    }
    if (p <= 0.0f) {
        if (G == 1) gemm(true, false, r, C, N, 1.0f, du, r, x, C, 1.0f, proj[0].dA, C);  // dA += duᵀ x (FP32)
        else stacked_dA(proj, G, du, x, N, C, r);
        if (dx)  // dx (+)= du A, K = G·r
            gemm(false, false, N, C, G * r, 1.0f, du, ldu, stacked_A(proj, G, r, C), C, accumulate ? 1.0f : 0.0f, dx, C);
        return;
    }
    for (int t = 0; t < G; t++) {
        const LoraProj<bf16>& a = proj[t];
        const bf16* xin = dropped_input(x, (size_t)N * C, p, a.dropout_key);
        gemm(true, false, r, C, N, 1.0f, du + t * r, ldu, xin, C, 1.0f, a.dA, C);  // dA_t += du_tᵀ drop_t(x) (FP32)
        if (!dx) continue;
        // dx (+)= drop_t(du_t A_t): the product goes to scratch, then dropout (same mask, same scale) writes it.
        bf16* dxd = (bf16*)cuda_scratch(Scratch::lora_dx, (size_t)N * C * sizeof(bf16));
        gemm(false, false, N, C, r, 1.0f, du + t * r, ldu, a.A, C, 0.0f, dxd, C);
        dropout(dx, dxd, (size_t)N * C, p, a.dropout_key, accumulate || t > 0);
    }
}

}  // namespace cuda
