// NF4 (blocks of 64 weights, 4-bit codes) and bitsandbytes' blockwise 8-bit dynamic quantization
// (blocks of 256, the double quantization of the NF4 absmax values), on the GPU.
//
// The quantizers and the dequantizer are bit-identical to kernels/cpu/nf4.cpp: the same
// tables (kernels/nf4_tables.h), the same absmax, the same correctly rounded reciprocal 1/absmax,
// multiplied (not divided) into each value, the same midpoint comparisons and tie rule (a value
// exactly between two codes takes the lower one), the same nibble order (element 2j in the high
// nibble of byte j). Every step is a single IEEE operation with one possible result.
#include <array>

#include "kernels/cuda/common.cuh"
#include "kernels/cuda/packed.cuh"
#include "kernels/cuda/quant8.cuh"
#include "kernels/cuda/reduce.cuh"
#include "kernels/nf4_tables.h"

namespace cuda {

// The codebook is read at one address a warp (nf4_code's midpoints): constant memory broadcasts
// it. The 8-bit map is read at data-dependent addresses (an absmax code each, or a thread's entry
// when a block copies it to shared memory): constant memory would serialize a warp's distinct
// addresses (32 replays for a copy), so it lives in global memory, where a warp's reads coalesce.
__constant__ float c_nf4[16];  // kNF4
__device__ float g_map8[256];  // dynamic_map_values()

// The tables go to the device once, on the first call of any op here.
static void upload_tables() {
    static const bool done = [] {
        CUDA_CHECK(cudaMemcpyToSymbol(c_nf4, kNF4, sizeof(kNF4)));
        std::array<float, 256> map = dynamic_map_values();
        CUDA_CHECK(cudaMemcpyToSymbol(g_map8, map.data(), sizeof(float) * map.size()));
        return true;
    }();
    (void)done;
}

// ---- NF4 ----

// The code whose value is nearest x: the last of the 15 midpoints that x exceeds (x > mid, so a tie
// goes to the lower code; NaN exceeds none: code 0). The midpoints are computed as on the CPU.
__device__ inline uint8_t nf4_code(float x) {
    int c = 0;
    #pragma unroll
    for (int i = 1; i < 16; i++)
        if (x > 0.5f * (c_nf4[i - 1] + c_nf4[i])) c = i;
    return (uint8_t)c;
}

// One warp per block of 64 weights: lane l takes elements 2l and 2l+1 (its code byte), the warp
// reduces the absmax with shuffles. The last block may be short, and n may be odd (the low nibble
// of the last byte is then 0).
__global__ void nf4_quantize_kernel(uint8_t* codes, float* absmax, const float* w, size_t n) {
    size_t b = ((size_t)blockIdx.x * blockDim.x + threadIdx.x) / 32;
    int lane = threadIdx.x % 32;
    if (b >= (n + 63) / 64) return;  // whole warps leave together
    size_t i = b * 64 + 2 * lane;
    float x0 = i < n ? w[i] : 0.0f, x1 = i + 1 < n ? w[i + 1] : 0.0f;
    float amax = warp_reduce<MaxOp>(fmaxf(abs_for_max(x0), abs_for_max(x1)));
    float inv = inv_absmax(amax);
    if (lane == 0) absmax[b] = amax;
    // __fmul_rn: the scaled value is rounded on its own, as on the CPU; a plain product could be
    // fused by the compiler into a later add/sub (an FMA rounds differently).
    if (i < n)
        codes[i / 2] = (uint8_t)(nf4_code(__fmul_rn(x0, inv)) << 4 | (i + 1 < n ? nf4_code(__fmul_rn(x1, inv)) : 0));
}

void nf4_quantize(uint8_t* codes, float* absmax, const float* w, size_t n) {
    if (n == 0) return;
    upload_tables();
    const int threads = 256;  // 8 warps: 8 blocks of 64
    nf4_quantize_kernel<<<ceil_div((n + 63) / 64, threads / 32), threads>>>(codes, absmax, w, n);
    CUDA_LAUNCH_CHECK();
}

// ---- blockwise 8-bit ----

constexpr int kBlock8 = 256;  // elements per absmax, and threads per CUDA block below

// One CUDA block of 256 threads per quantization block, one element per thread. The map is copied
// to shared memory (data-dependent lookups); the absmax is a block max reduction.
__global__ void quantize_blockwise8_kernel(uint8_t* q, float* absmax, const float* x, size_t n) {
    __shared__ float map[256];
    map[threadIdx.x] = g_map8[threadIdx.x];
    __syncthreads();
    size_t i = (size_t)blockIdx.x * kBlock8 + threadIdx.x;
    float xi = i < n ? x[i] : 0.0f;
    float amax = block_reduce<MaxOp>(abs_for_max(xi));
    float inv = inv_absmax(amax);
    if (threadIdx.x == 0) absmax[blockIdx.x] = amax;
    // __fmul_rn: dynamic_code subtracts map entries from x; a plain x·inv could be contracted into
    // those subtractions (one FMA, another rounding than the CPU's product then difference).
    if (i < n) q[i] = dynamic_code(__fmul_rn(xi, inv), map);
}

void quantize_blockwise8(uint8_t* q, float* absmax, const float* x, size_t n) {
    if (n == 0) return;
    upload_tables();
    quantize_blockwise8_kernel<<<ceil_div(n, kBlock8), kBlock8>>>(q, absmax, x, n);
    CUDA_LAUNCH_CHECK();
}

// ---- NF4 dequantization with double-quantized absmax (QLoRA's storage) ----

// One thread per 8 weights: 4 code bytes (one 32-bit load when aligned) in, 8 BF16 (one 128-bit
// store) out; all 8 lie in one block of 64, so one absmax, which the thread decodes itself from the
// block's 8-bit code: a = map8[qabsmax[b]]·qscale[b/256] + offset as one fused multiply-add (what the
// CPU reference writes with std::fma; __fmaf_rn keeps it whatever nvcc's flags). Eight threads decode
// the same absmax; that costs a byte load (the warp's 4 blocks of 64 share one 32-byte sector) and
// an FMA, where a separate pass would write the FP32 absmax values out and read them back, and cost a
// launch (bitsandbytes' dequantize_4bit first runs dequantize_blockwise on them and adds the offset:
// two more). A warp's 256 weights are 4 blocks of 64, so its map lookups hit at most 4 entries of
// g_map8, through L1; the map is not copied to shared memory: that copy, from constant memory (32
// addresses a warp, serialized) and behind a barrier, in every CUDA block of 2,048 weights, made the
// kernel slower than the two passes it replaced (H200, 4096 × 11008: 58.7 µs with it, 35.6 without,
// 44.6 for the two passes; bitsandbytes 59.5). The 16 codebook entries are
// copied to shared memory: they sit in 16 banks, so a warp's data-dependent lookups never conflict
// (constant memory would serialise them). w = bf16(code value · absmax), the CPU's FP32 product
// rounded once.
constexpr int kDequantThreads = 256;

__global__ void nf4_dequantize_kernel(bf16* w, const uint8_t* codes, const uint8_t* qabsmax, const float* qscale,
                                      float offset, size_t n, bool vec) {
    __shared__ float book[16];
    if (threadIdx.x < 16) book[threadIdx.x] = c_nf4[threadIdx.x];
    __syncthreads();
    size_t i = 8 * ((size_t)blockIdx.x * blockDim.x + threadIdx.x);
    if (i >= n) return;
    uint32_t bytes = 0;  // byte q (codes[i/2 + q]) in bits 8q..8q+7, as a little-endian load puts it
    if (vec && i + 8 <= n) {
        bytes = *reinterpret_cast<const uint32_t*>(codes + i / 2);
    } else {
        for (int q = 0; q < 4; q++)
            if (i + 2 * q < n) bytes |= (uint32_t)codes[i / 2 + q] << (8 * q);
    }
    const size_t b = i / 64;
    const float a = __fmaf_rn(__ldg(g_map8 + qabsmax[b]), __ldg(qscale + b / 256), offset);
    float v[8];
    #pragma unroll
    for (int q = 0; q < 4; q++) {
        uint32_t byte = bytes >> (8 * q) & 0xff;
        v[2 * q] = __fmul_rn(book[byte >> 4], a);
        v[2 * q + 1] = __fmul_rn(book[byte & 15], a);
    }
    store8(w, v, i, n, vec);
}

void nf4_dequantize(bf16* w, const uint8_t* codes, const uint8_t* qabsmax, const float* qscale, float offset,
                    size_t n) {
    if (n == 0) return;
    upload_tables();
    bool vec = aligned16(w) && ((uintptr_t)codes & 3) == 0;
    nf4_dequantize_kernel<<<ceil_div(n, 8 * kDequantThreads), kDequantThreads>>>(w, codes, qabsmax, qscale, offset,
                                                                                  n, vec);
    CUDA_LAUNCH_CHECK();
}

}  // namespace cuda
