// The adapter path of a LoRA linear layer on the GPU; the same math as kernels/cpu/lora.cpp:
//   y = add + s · (drop(x) Aᵀ) Bᵀ,   A: [r, C], B: [OC, r]
// Backward with u = drop(x)Aᵀ, du = s · dy B:
//   dB += s · dyᵀ u,   dA += duᵀ drop(x),   dx (+)= drop'(du A)
// Four thin GEMMs through the rank-r bottleneck (cuda::gemm, cuBLASLt). y and dx are written by the
// GEMM itself (beta = 1 with add or accumulate, else 0): no full-size temporary except for dropout,
// which the GEMMs cannot fold in because its mask sits on elements of x and of du·A. These GEMMs are
// memory-bound (K = r), so the model runs them before the base GEMM of the same output, which then
// accumulates onto it: the output is read once by a compute-bound GEMM instead of by this one.
#include "kernels/cuda/gemm.cuh"

namespace {

// dst = drop(src), or dst += drop(src) with accumulate. Element i of the flattened tensor is kept iff
// hash_uniform(key, i) >= p and then scaled by keep_scale = 1/(1-p): the CPU's mask, bit for bit.
__global__ void dropout_kernel(bf16* dst, const bf16* src, size_t n, float p, float keep_scale, uint64_t key,
                               bool accumulate) {
    size_t i = (size_t)blockIdx.x * blockDim.x + threadIdx.x;
    if (i >= n) return;
    // __fmul_rn: the scaled value is rounded on its own, as the CPU's drop(du·A) is before it is added
    // to dx (a plain product could be contracted with that add into one FMA).
    float v = hash_uniform(key, i) >= p ? __fmul_rn(__bfloat162float(src[i]), keep_scale) : 0.0f;
    dst[i] = __float2bfloat16(accumulate ? __bfloat162float(dst[i]) + v : v);
}

void dropout(bf16* dst, const bf16* src, size_t n, float p, uint64_t key, bool accumulate) {
    if (n == 0) return;
    dropout_kernel<<<ceil_div(n, 256), 256>>>(dst, src, n, p, 1.0f / (1.0f - p), key, accumulate);
    CUDA_LAUNCH_CHECK();
}

// drop(x) in the lora_x scratch, or x itself when there is no dropout (no copy).
const bf16* dropped_input(const bf16* x, size_t n, float p, uint64_t key) {
    if (p <= 0.0f) return x;
    bf16* xd = (bf16*)cuda_scratch(Scratch::lora_x, n * sizeof(bf16));
    dropout(xd, x, n, p, key, false);
    return xd;
}

}  // namespace

namespace cuda {

void lora_forward(bf16* y, bf16* u, const bf16* x, const bf16* A, const bf16* B, int N, int C, int OC, int r,
                  float scale, float p, uint64_t dropout_key, const bf16* add) {
    const bf16* xin = dropped_input(x, (size_t)N * C, p, dropout_key);
    gemm(false, true, N, r, C, 1.0f, xin, C, A, C, 0.0f, u, r);                       // u = drop(x) Aᵀ
    gemm(false, true, N, OC, r, scale, u, r, B, r, add ? 1.0f : 0.0f, y, OC, add);  // y = add + s · u Bᵀ
}

void lora_backward(bf16* dx, float* dA, float* dB, const bf16* dy, const bf16* x, const bf16* u, const bf16* A,
                   const bf16* B, int N, int C, int OC, int r, float scale, float p, uint64_t dropout_key,
                   bool accumulate) {
    bf16* du = (bf16*)cuda_scratch(Scratch::lora_u, (size_t)N * r * sizeof(bf16));
    gemm(true, false, OC, r, N, scale, dy, OC, u, r, 1.0f, dB, r);  // dB += s · dyᵀ u (FP32)
    gemm(false, false, N, r, OC, scale, dy, OC, B, r, 0.0f, du, r);  // du = s · dy B
    const bf16* xin = dropped_input(x, (size_t)N * C, p, dropout_key);
    gemm(true, false, r, C, N, 1.0f, du, r, xin, C, 1.0f, dA, C);    // dA += duᵀ drop(x) (FP32)
    if (!dx) return;
    if (p > 0.0f) {
        // dx (+)= drop(du A): the product goes to scratch, then dropout (same mask, same scale) writes it.
        bf16* dxd = (bf16*)cuda_scratch(Scratch::lora_dx, (size_t)N * C * sizeof(bf16));
        gemm(false, false, N, C, r, 1.0f, du, r, A, C, 0.0f, dxd, C);
        dropout(dx, dxd, (size_t)N * C, p, dropout_key, accumulate);
    } else {
        gemm(false, false, N, C, r, 1.0f, du, r, A, C, accumulate ? 1.0f : 0.0f, dx, C);  // dx (+)= du A
    }
}

}  // namespace cuda
