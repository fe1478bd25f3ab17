// Linear layer y = x Wᵀ + b on the GPU: every direction is one cuBLASLt GEMM (BF16 operands, FP32
// accumulation), plus two small kernels for the bias. cuda::gemm (kernels/cuda/gemm.cuh) is also
// what LoRA uses: one GEMM mechanism for the whole backend. A shape for which cuBLASLt's heuristic
// offers no algorithm (not expected) runs on a plain tiled kernel instead, with a warning.
//
// The layout mapping. cuBLASLt is column-major, our tensors are row-major. A row-major X[R,K] with
// leading dimension ld is, byte for byte, the column-major Xᵀ[K,R] with the same ld. So the row-major
//     C[M,N] = op(A)[M,K] · op(B)[K,N]
// is, seen column-major, Cᵀ[N,M] = op(B)ᵀ[N,K] · op(A)ᵀ[K,M]: swap the operands (our B becomes
// cuBLASLt's A, ours A its B), swap M and N, and keep each operand's transpose flag:
//   - our B not transposed: row-major B[K,N] is column-major [N,K], already op(B)ᵀ: OP_N, layout N×K.
//   - our B transposed: it is stored row-major [N,K], i.e. column-major [K,N] = op(B); we need its
//     transpose: OP_T, layout K×N.
//   - our A likewise: layout K×M with OP_N, or (stored [K,M]) M×K with OP_T.
//   - C: column-major N×M with ld = ldc, which is row-major C[M,N].
// E.g. the forward out[N,OC] = inp[N,C]·W[OC,C]ᵀ runs as column-major outᵀ[OC,N] = op_T(W as [C,OC]) ·
// op_N(inp as [C,N]), i.e. outᵀ[o,n] = Σ_c W[o,c]·inp[n,c].
#include <cublasLt.h>

#include <algorithm>
#include <chrono>
#include <cstdio>
#include <cstring>
#include <map>
#include <tuple>
#include <type_traits>
#include <vector>

#include "kernels/cuda/gemm.cuh"
#include "model/util.h"

namespace {

void cublas_check(cublasStatus_t s, const char* what, const char* file, int line) {
    if (s != CUBLAS_STATUS_SUCCESS) fail("cuBLASLt error at %s:%d: %s: %s", file, line, what, cublasLtGetStatusString(s));
}
#define CUBLAS_CHECK(x) cublas_check((x), #x, __FILE__, __LINE__)

// Room for cuBLASLt's split-K algorithms (llm.c's size); the heuristic only offers algorithms that fit.
constexpr size_t kWorkspaceBytes = 32u << 20;

cublasLtHandle_t handle() {
    static cublasLtHandle_t h = [] {
        cublasLtHandle_t created;
        CUBLAS_CHECK(cublasLtCreate(&created));
        return created;
    }();
    return h;
}

// The alignment the algorithm is chosen for: the largest power of two dividing the address, capped
// at 16 bytes. The heuristic assumes 256-byte aligned operands unless told otherwise, and a view into
// a tensor (a row offset, a chunk) may be less aligned than that. The cap: 16 bytes covers the
// 128-bit loads and TMA accesses of the fast kernels, and with it an operand that moves between
// buffers (a layer's activations with and without recompute) keeps its algorithm, so its exact results.
uint32_t alignment(const void* p) {
    uint32_t a = 16;
    while ((uintptr_t)p % a) a /= 2;
    return a;
}

// Everything the algorithm choice depends on. A shape keeps the first algorithm the heuristic gave
// it, so a GEMM gives bit-identical results call after call (cuBLASLt is deterministic for a fixed
// algorithm, workspace and stream). beta is not part of the key: the heuristic does not see it.
struct GemmKey {
    bool transA, transB;
    int M, N, K, lda, ldb, ldc;
    cudaDataType_t ctype;
    uint32_t align_a, align_b, align_c;
    bool operator<(const GemmKey& o) const {
        return std::tie(transA, transB, M, N, K, lda, ldb, ldc, ctype, align_a, align_b, align_c) <
               std::tie(o.transA, o.transB, o.M, o.N, o.K, o.lda, o.ldb, o.ldc, o.ctype, o.align_a, o.align_b, o.align_c);
    }
};

struct GemmPlan {
    bool fallback;  // cuBLASLt offered no algorithm: gemm_fallback_kernel computes this shape
    cublasLtMatmulDesc_t desc;
    cublasLtMatrixLayout_t first, second, c;  // cuBLASLt's A (our B), its B (our A), C = D
    cublasLtMatmulAlgo_t algo;
};

// cuBLASLt's view of a shape: the descriptor and the three layouts (operands swapped, see the top).
GemmPlan make_descriptors(const GemmKey& k) {
    GemmPlan p{};
    CUBLAS_CHECK(cublasLtMatmulDescCreate(&p.desc, CUBLAS_COMPUTE_32F, CUDA_R_32F));
    cublasOperation_t op_first = k.transB ? CUBLAS_OP_T : CUBLAS_OP_N, op_second = k.transA ? CUBLAS_OP_T : CUBLAS_OP_N;
    CUBLAS_CHECK(cublasLtMatmulDescSetAttribute(p.desc, CUBLASLT_MATMUL_DESC_TRANSA, &op_first, sizeof op_first));
    CUBLAS_CHECK(cublasLtMatmulDescSetAttribute(p.desc, CUBLASLT_MATMUL_DESC_TRANSB, &op_second, sizeof op_second));
    // cublasLtMatrixLayoutCreate takes uint64 rows/cols and an int64 ld: no 32-bit products here.
    CUBLAS_CHECK(cublasLtMatrixLayoutCreate(&p.first, CUDA_R_16BF, k.transB ? k.K : k.N, k.transB ? k.N : k.K, k.ldb));
    CUBLAS_CHECK(cublasLtMatrixLayoutCreate(&p.second, CUDA_R_16BF, k.transA ? k.M : k.K, k.transA ? k.K : k.M, k.lda));
    CUBLAS_CHECK(cublasLtMatrixLayoutCreate(&p.c, k.ctype, k.N, k.M, k.ldc));
    return p;
}

void destroy_descriptors(GemmPlan& p) {
    CUBLAS_CHECK(cublasLtMatrixLayoutDestroy(p.c));
    CUBLAS_CHECK(cublasLtMatrixLayoutDestroy(p.second));
    CUBLAS_CHECK(cublasLtMatrixLayoutDestroy(p.first));
    CUBLAS_CHECK(cublasLtMatmulDescDestroy(p.desc));
}

// Up to `max` algorithms cuBLASLt's heuristic offers for the shape, its best-ranked first, within
// our workspace and the deterministic reduction schemes. An empty list: none (or an error, reported
// in `status`).
std::vector<cublasLtMatmulHeuristicResult_t> heuristic(const GemmKey& k, const GemmPlan& p, int max,
                                                       cublasStatus_t* status) {
    cublasLtMatmulPreference_t pref;
    CUBLAS_CHECK(cublasLtMatmulPreferenceCreate(&pref));
    uint64_t ws = kWorkspaceBytes;
    CUBLAS_CHECK(cublasLtMatmulPreferenceSetAttribute(pref, CUBLASLT_MATMUL_PREF_MAX_WORKSPACE_BYTES, &ws, sizeof ws));
    // Split-K reductions: only those that sum the partial products in FP32 in a fixed order. INPLACE
    // adds the partials into the output buffer in the output type (BF16 here: one rounding per
    // partial, not one in all) in the order the blocks get there; OUTPUT_TYPE stages them in the
    // output type, which is FP32 only for the FP32 outputs. NONE (no split) is always allowed.
    uint32_t reductions = CUBLASLT_REDUCTION_SCHEME_COMPUTE_TYPE;
    if (k.ctype == CUDA_R_32F) reductions |= CUBLASLT_REDUCTION_SCHEME_OUTPUT_TYPE;
    CUBLAS_CHECK(cublasLtMatmulPreferenceSetAttribute(pref, CUBLASLT_MATMUL_PREF_REDUCTION_SCHEME_MASK, &reductions,
                                                      sizeof reductions));
    CUBLAS_CHECK(cublasLtMatmulPreferenceSetAttribute(pref, CUBLASLT_MATMUL_PREF_MIN_ALIGNMENT_A_BYTES, &k.align_b,
                                                      sizeof k.align_b));
    CUBLAS_CHECK(cublasLtMatmulPreferenceSetAttribute(pref, CUBLASLT_MATMUL_PREF_MIN_ALIGNMENT_B_BYTES, &k.align_a,
                                                      sizeof k.align_a));
    CUBLAS_CHECK(cublasLtMatmulPreferenceSetAttribute(pref, CUBLASLT_MATMUL_PREF_MIN_ALIGNMENT_C_BYTES, &k.align_c,
                                                      sizeof k.align_c));
    CUBLAS_CHECK(cublasLtMatmulPreferenceSetAttribute(pref, CUBLASLT_MATMUL_PREF_MIN_ALIGNMENT_D_BYTES, &k.align_c,
                                                      sizeof k.align_c));
    std::vector<cublasLtMatmulHeuristicResult_t> results(max);
    int found = 0;
    *status = cublasLtMatmulAlgoGetHeuristic(handle(), p.desc, p.first, p.second, p.c, p.c, pref, max, results.data(),
                                             &found);
    CUBLAS_CHECK(cublasLtMatmulPreferenceDestroy(pref));
    if (*status != CUBLAS_STATUS_SUCCESS) found = 0;
    results.resize(found);
    while (!results.empty() && results.back().state != CUBLAS_STATUS_SUCCESS) results.pop_back();
    return results;
}

// D = alpha · op(A)·op(B) + beta · C_in with the plan's descriptors and `algo`, on the default stream.
// alpha, beta: host FP32 scalars (the default pointer mode; FP32 is the scale type of COMPUTE_32F).
// Our A, B are cuBLASLt's B, A (see the top); C_in is its C, ours its D (the same layout).
void launch(const GemmPlan& p, const cublasLtMatmulAlgo_t& algo, float alpha, const void* A, const void* B, float beta,
            const void* C_in, void* C) {
    void* ws = cuda_scratch(Scratch::cublas_workspace, kWorkspaceBytes);
    CUBLAS_CHECK(cublasLtMatmul(handle(), p.desc, &alpha, B, p.first, A, p.second, &beta, C_in, p.c, C, p.c, &algo, ws,
                                kWorkspaceBytes, 0));
}

const GemmPlan& plan_for(const GemmKey& k) {
    static std::map<GemmKey, GemmPlan> plans;
    auto it = plans.find(k);
    if (it != plans.end()) return it->second;

    GemmPlan p = make_descriptors(k);
    cublasStatus_t st;
    std::vector<cublasLtMatmulHeuristicResult_t> found = heuristic(k, p, 1, &st);
    if (!found.empty()) {
        p.algo = found[0].algo;
    } else {
        // Not expected for BF16 operands (cuBLASLt has alignment-agnostic kernels), but a shape it
        // refuses should run slowly rather than stop the run: say so once per shape.
        fprintf(stderr,
                "warning: cuBLASLt has no algorithm for the GEMM M=%d N=%d K=%d (trans %d/%d, ld %d/%d/%d, %s output, "
                "alignment %u/%u/%u bytes; status %s): using the slow fallback kernel for it\n",
                k.M, k.N, k.K, k.transA, k.transB, k.lda, k.ldb, k.ldc, k.ctype == CUDA_R_32F ? "FP32" : "BF16",
                k.align_a, k.align_b, k.align_c, cublasLtGetStatusString(st));
        p.fallback = true;
    }
    return plans.emplace(k, p).first->second;
}

__device__ inline float to_f32(float x) { return x; }
__device__ inline float to_f32(bf16 x) { return __bfloat162float(x); }
__device__ inline void store_f32(float* p, float v) { *p = v; }
__device__ inline void store_f32(bf16* p, float v) { *p = __float2bfloat16(v); }

// The same contract as cuda::gemm, for what cuBLASLt will not take (and K = 0): 16×16 tiles of C,
// one thread per element, op(A) and op(B) staged through shared memory, an FP32 sum in k order
// (deterministic). The grid's y dimension strides over rows, so any M fits in its 65535 blocks.
constexpr int kTile = 16;
template <class T>
__global__ void gemm_fallback_kernel(bool transA, bool transB, int M, int N, int K, float alpha, const bf16* A,
                                     int lda, const bf16* B, int ldb, float beta, const T* C_in, T* C, int ldc) {
    __shared__ float as[kTile][kTile + 1], bs[kTile][kTile + 1];
    int tx = threadIdx.x, ty = threadIdx.y;
    int n = blockIdx.x * kTile + tx;
    for (int m0 = blockIdx.y * kTile; m0 < M; m0 += gridDim.y * kTile) {  // uniform across the block
        int m = m0 + ty;
        float s = 0.0f;
        for (int k0 = 0; k0 < K; k0 += kTile) {
            int ka = k0 + tx;  // as[ty][tx] = op(A)[m][ka]
            as[ty][tx] = m < M && ka < K ? to_f32(transA ? A[(size_t)ka * lda + m] : A[(size_t)m * lda + ka]) : 0.0f;
            int kb = k0 + ty;  // bs[ty][tx] = op(B)[kb][n]
            bs[ty][tx] = kb < K && n < N ? to_f32(transB ? B[(size_t)n * ldb + kb] : B[(size_t)kb * ldb + n]) : 0.0f;
            __syncthreads();
            for (int k = 0; k < kTile; k++) s += as[ty][k] * bs[k][tx];
            __syncthreads();
        }
        if (m < M && n < N) {
            float v = alpha * s;
            if (beta != 0.0f) v += beta * to_f32(C_in[(size_t)m * ldc + n]);  // beta = 0: not read (may hold NaN)
            store_f32(C + (size_t)m * ldc + n, v);
        }
    }
}

template <class T>
void gemm_fallback(bool transA, bool transB, int M, int N, int K, float alpha, const bf16* A, int lda, const bf16* B,
                   int ldb, float beta, const T* C_in, T* C, int ldc) {
    dim3 grid(ceil_div(N, kTile), std::min(ceil_div(M, kTile), 65535u));
    gemm_fallback_kernel<T><<<grid, dim3(kTile, kTile)>>>(transA, transB, M, N, K, alpha, A, lda, B, ldb, beta, C_in, C,
                                                          ldc);
    CUDA_LAUNCH_CHECK();
}

template <class T>
void gemm_any(bool transA, bool transB, int M, int N, int K, float alpha, const bf16* A, int lda, const bf16* B,
              int ldb, float beta, T* C, int ldc, const T* C_in) {
    if (M <= 0 || N <= 0) return;
    if (!C_in) C_in = C;
    // cuBLASLt's C and D are the same buffer or disjoint; a partial overlap is undefined there.
    const size_t extent = ((size_t)(M - 1) * ldc + N) * sizeof(T);
    const char *ci = (const char*)C_in, *co = (const char*)C;
    if (C_in != C && ci < co + extent && co < ci + extent)
        fail("internal: gemm's added input overlaps its output without being it (%p, %p, %zu bytes)", (const void*)C_in,
             (const void*)C, extent);
    if (K <= 0) {  // C = beta·C_in, as cpu::gemm: nothing to do for beta = 1 in place, else one pass
        if (beta != 1.0f || C_in != C) gemm_fallback(transA, transB, M, N, 0, alpha, A, lda, B, ldb, beta, C_in, C, ldc);
        return;
    }
    constexpr cudaDataType_t ctype = std::is_same<T, float>::value ? CUDA_R_32F : CUDA_R_16BF;
    GemmKey key{transA, transB, M, N, K, lda, ldb, ldc, ctype, alignment(A), alignment(B),
                std::min(alignment(C), alignment(C_in))};
    const GemmPlan& p = plan_for(key);
    if (p.fallback) return gemm_fallback(transA, transB, M, N, K, alpha, A, lda, B, ldb, beta, C_in, C, ldc);
    launch(p, p.algo, alpha, A, B, beta, C_in, C);
}

// out[n,o] += bias[o]. A pass of its own rather than cuBLASLt's bias epilogue: it serves the
// accumulate case as well and puts no alignment condition on the bias; only models with biases pay it.
__global__ void add_bias_kernel(bf16* out, const bf16* bias, size_t n, int OC) {
    size_t i = (size_t)blockIdx.x * blockDim.x + threadIdx.x;
    if (i < n) out[i] = __float2bfloat16(__bfloat162float(out[i]) + __bfloat162float(bias[i % OC]));
}

// dbias[o] += Σ_n dout[n,o]. A block owns 32 adjacent columns (coalesced row reads); its kBiasRows
// thread rows each sum every kBiasRows-th row, then thread row 0 adds the partial sums in a fixed
// order: no atomics, the same bits every call.
constexpr int kBiasRows = 16;
__global__ void bias_backward_kernel(float* dbias, const bf16* dout, int N, int OC) {
    __shared__ float part[kBiasRows][32];
    int o = blockIdx.x * 32 + threadIdx.x;
    float s = 0.0f;
    if (o < OC)
        for (int n = threadIdx.y; n < N; n += kBiasRows) s += __bfloat162float(dout[(size_t)n * OC + o]);
    part[threadIdx.y][threadIdx.x] = s;
    __syncthreads();
    if (threadIdx.y == 0 && o < OC) {
        float total = 0.0f;
        for (int r = 0; r < kBiasRows; r++) total += part[r][threadIdx.x];
        dbias[o] += total;
    }
}

// One of cuBLASLt's configuration attributes of an algorithm (T: the attribute's type in the library).
template <class T>
long long algo_config(const cublasLtMatmulAlgo_t& algo, cublasLtMatmulAlgoConfigAttributes_t attr) {
    T v = 0;
    size_t written = 0;
    CUBLAS_CHECK(cublasLtMatmulAlgoConfigGetAttribute(&algo, attr, &v, sizeof v, &written));
    return (long long)v;
}

// What a candidate is: cuBLASLt's configuration attributes (the ids are the library's enums).
void describe(const cublasLtMatmulHeuristicResult_t& r, char* buf, size_t n) {
    const cublasLtMatmulAlgo_t& a = r.algo;
    snprintf(buf, n,
             "algo %lld tile %lld stages %lld splitk %lld red %lld swz %lld opt %lld inner %lld cluster %lld waves %.2f",
             algo_config<int32_t>(a, CUBLASLT_ALGO_CONFIG_ID), algo_config<uint32_t>(a, CUBLASLT_ALGO_CONFIG_TILE_ID),
             algo_config<uint32_t>(a, CUBLASLT_ALGO_CONFIG_STAGES_ID),
             algo_config<int32_t>(a, CUBLASLT_ALGO_CONFIG_SPLITK_NUM),
             algo_config<uint32_t>(a, CUBLASLT_ALGO_CONFIG_REDUCTION_SCHEME),
             algo_config<uint32_t>(a, CUBLASLT_ALGO_CONFIG_CTA_SWIZZLING),
             algo_config<uint32_t>(a, CUBLASLT_ALGO_CONFIG_CUSTOM_OPTION),
             algo_config<uint16_t>(a, CUBLASLT_ALGO_CONFIG_INNER_SHAPE_ID),
             algo_config<uint16_t>(a, CUBLASLT_ALGO_CONFIG_CLUSTER_SHAPE_ID), r.wavesCount);
}

// Whether b has a's split-K count and reduction scheme: the structural rule a timed choice among
// candidates would need to rest on (one order of each output's sum). It does not hold: on an H200
// candidates of the same split-K count and scheme gave other FP32 bits at small shapes (a dW of
// 130 × 300 × 77: 6,327 of 156,000 elements), though at every GEMM of a Llama-3.2-1B step they gave
// the same (bench/RESULTS.md, 2026-11-28): so gemm() keeps the first candidate, and
// bench_gemm_algos reports the rule against the bit comparison.
bool same_order(const cublasLtMatmulAlgo_t& a, const cublasLtMatmulAlgo_t& b) {
    return algo_config<int32_t>(a, CUBLASLT_ALGO_CONFIG_SPLITK_NUM) ==
               algo_config<int32_t>(b, CUBLASLT_ALGO_CONFIG_SPLITK_NUM) &&
           algo_config<uint32_t>(a, CUBLASLT_ALGO_CONFIG_REDUCTION_SCHEME) ==
               algo_config<uint32_t>(b, CUBLASLT_ALGO_CONFIG_REDUCTION_SCHEME);
}

}  // namespace

namespace cuda {

void gemm(bool transA, bool transB, int M, int N, int K, float alpha, const bf16* A, int lda, const bf16* B, int ldb,
          float beta, bf16* C, int ldc, const bf16* C_in) {
    gemm_any(transA, transB, M, N, K, alpha, A, lda, B, ldb, beta, C, ldc, C_in);
}

void gemm(bool transA, bool transB, int M, int N, int K, float alpha, const bf16* A, int lda, const bf16* B, int ldb,
          float beta, float* C, int ldc) {
    gemm_any(transA, transB, M, N, K, alpha, A, lda, B, ldb, beta, C, ldc, (const float*)nullptr);
}

// Fills `bytes` of device memory with random BF16 values in [-1, 1) (a 1 Mi-element pattern, repeated):
// read as FP32, each pair of them is a float in [-1, 1) too (its high half is the second value).
void fill_random_bf16(void* dev, size_t bytes, uint64_t key) {
    std::vector<uint16_t> pattern(1u << 20);
    for (size_t i = 0; i < pattern.size(); i++) {
        const float v = (float)(hash64(key, i) >> 40) * (2.0f / 16777216.0f) - 1.0f;  // 24 random bits
        uint32_t bits;
        memcpy(&bits, &v, 4);
        pattern[i] = (uint16_t)(bits >> 16);  // truncated: still in [-1, 1)
    }
    const size_t piece = pattern.size() * sizeof(uint16_t);
    for (size_t off = 0; off < bytes; off += piece)
        CUDA_CHECK(cudaMemcpy((char*)dev + off, pattern.data(), std::min(piece, bytes - off), cudaMemcpyHostToDevice));
}

// The candidates the heuristic ranks for one shape (row-major operands with the given leading
// dimensions, 16-byte aligned), each timed on the GPU: what gemm() would gain by choosing among them
// instead of taking the first (bench/bench_gemm_algos.cpp). out[i].us = µs per call of candidate i,
// the median of 5 batches of calls that each last about a millisecond, out[i].config what it is;
// returns how many candidates were timed (<= max).
// out[i].same_bits: candidate i's output equals candidate 0's bit for bit, on four draws of random
// operands (and of C for beta != 0). The algorithms differ in tiles, stages, split-K and cluster
// shapes; those that sum each output's K products in the same order give the same bits for every
// input. Random inputs tell the others apart when the output is large enough: two orders' FP32
// sums differ in their last bits, and a BF16 output shows that only where a sum lies near a rounding
// boundary (about one in 2^16 per ulp of difference), so among a training GEMM's millions of outputs
// some do, among a few thousand perhaps none. A choice by timing among bit-identical candidates
// could not change a run's numbers, so a resumed run would stay exact whatever its timings chose.
int gemm_candidates(bool transA, bool transB, int M, int N, int K, int lda, int ldb, int ldc, bool fp32_out,
                    float beta, GemmCandidate* out, int max) {
    if (M <= 0 || N <= 0 || K <= 0 || max <= 0) return 0;
    const cudaDataType_t ctype = fp32_out ? CUDA_R_32F : CUDA_R_16BF;
    const GemmKey k{transA, transB, M, N, K, lda, ldb, ldc, ctype, 16, 16, 16};
    GemmPlan p = make_descriptors(k);
    // The descriptors and the operands below are released at the end, also when a CUDA or cuBLASLt
    // call in between throws: a leaked block would stay counted in Mem::scratch, which the memory
    // table reports as the backend's scratch.
    struct Owned {
        GemmPlan* plan;
        void* p[4] = {};
        ~Owned() {
            for (void* q : p) {
                try {
                    cuda_release(q);
                } catch (...) {  // after a sticky CUDA error: the context and its memory are gone
                }
            }
            try {
                destroy_descriptors(*plan);
            } catch (...) {
            }
        }
    } owned{&p};
    cublasStatus_t st;
    std::vector<cublasLtMatmulHeuristicResult_t> found = heuristic(k, p, max, &st);
    // Row-major: A has transA ? K : M rows of lda elements, B transB ? N : K rows of ldb, C M of ldc.
    const size_t a_bytes = (size_t)(transA ? K : M) * lda * 2, b_bytes = (size_t)(transB ? N : K) * ldb * 2;
    const size_t out_bytes = (size_t)M * ldc * (fp32_out ? 4 : 2);
    void* A = owned.p[0] = cuda_alloc(a_bytes, Mem::scratch);
    void* B = owned.p[1] = cuda_alloc(b_bytes, Mem::scratch);
    void* C = owned.p[2] = cuda_alloc(out_bytes, Mem::scratch);
    // Small non-zero operands (every byte 0x3C: BF16 0.0115, FP32 0.0115): timing does not depend on
    // the values, but zeros might take a shortcut somewhere.
    CUDA_CHECK(cudaMemset(A, 0x3C, a_bytes));
    CUDA_CHECK(cudaMemset(B, 0x3C, b_bytes));
    CUDA_CHECK(cudaMemset(C, 0x3C, out_bytes));
    auto run = [&](const cublasLtMatmulAlgo_t& algo, int calls) {
        CUDA_CHECK(cudaDeviceSynchronize());
        const auto t0 = std::chrono::steady_clock::now();
        for (int c = 0; c < calls; c++) launch(p, algo, 1.0f, A, B, beta, C, C);
        CUDA_CHECK(cudaDeviceSynchronize());
        return std::chrono::duration<double, std::micro>(std::chrono::steady_clock::now() - t0).count() / calls;
    };
    for (size_t i = 0; i < found.size(); i++) {
        run(found[i].algo, 2);  // warm-up (and the kernel's first load)
        const int calls = (int)std::min(1000.0, std::max(1.0, 1000.0 / run(found[i].algo, 1)));
        double batch[5];
        for (double& b : batch) b = run(found[i].algo, calls);
        std::sort(batch, batch + 5);
        out[i].us = batch[2];
        out[i].same_order = same_order(found[i].algo, found[0].algo);
        describe(found[i], out[i].config, sizeof out[i].config);
    }
    // The bit comparison: random operands now (kFills draws, C as the added input), each candidate's
    // D to the host beside candidate 0's. Several draws because a BF16 output shows a different
    // order only where a sum lies near a rounding boundary: a thin product's 131,072 outputs may all
    // miss it in one draw (odds of about one in ten), in four hardly ever.
    constexpr int kFills = 4;
    void* D = owned.p[3] = cuda_alloc(out_bytes, Mem::scratch);
    std::vector<unsigned char> first(out_bytes), other(out_bytes);
    for (size_t i = 0; i < found.size(); i++) out[i].same_bits = true;
    for (int fill = 0; fill < kFills; fill++) {
        fill_random_bf16(A, a_bytes, 3 * fill + 1);
        fill_random_bf16(B, b_bytes, 3 * fill + 2);
        fill_random_bf16(C, out_bytes, 3 * fill + 3);
        for (size_t i = 0; i < found.size(); i++) {
            if (!out[i].same_bits) continue;  // already told apart
            CUDA_CHECK(cudaMemset(D, 0xFF, out_bytes));  // NaN everywhere: an output not written cannot match
            launch(p, found[i].algo, 1.0f, A, B, beta, C, D);
            CUDA_CHECK(cudaMemcpy(i == 0 ? first.data() : other.data(), D, out_bytes, cudaMemcpyDeviceToHost));
            if (i > 0) out[i].same_bits = memcmp(first.data(), other.data(), out_bytes) == 0;
        }
    }
    return (int)found.size();  // `owned` releases the operands and the descriptors
}

void matmul_forward(bf16* out, const bf16* inp, const bf16* w, const bf16* bias, int N, int C, int OC, const bf16* add) {
    gemm(false, true, N, OC, C, 1.0f, inp, C, w, C, add ? 1.0f : 0.0f, out, OC, add);  // out = add + inp · Wᵀ
    size_t n = (size_t)N * OC;
    if (bias && n > 0) {  // no launch of zero blocks (an invalid configuration)
        add_bias_kernel<<<ceil_div(n, 256), 256>>>(out, bias, n, OC);
        CUDA_LAUNCH_CHECK();
    }
}

void matmul_backward(bf16* dinp, float* dw, float* dbias, const bf16* dout, const bf16* inp, const bf16* w, int N, int C,
                     int OC, bool accumulate) {
    if (dinp) gemm(false, false, N, C, OC, 1.0f, dout, OC, w, C, accumulate ? 1.0f : 0.0f, dinp, C);  // dX (+)= dY · W
    if (dw) gemm(true, false, OC, C, N, 1.0f, dout, OC, inp, C, 1.0f, dw, C);     // dW += dYᵀ · X, in FP32
    if (dbias && OC > 0) {  // N = 0 leaves dbias as it was (+= 0)
        bias_backward_kernel<<<ceil_div(OC, 32), dim3(32, kBiasRows)>>>(dbias, dout, N, OC);
        CUDA_LAUNCH_CHECK();
    }
}

}  // namespace cuda
