// Linear layer y = x Wᵀ + b on the GPU: every direction is one cuBLASLt GEMM (BF16 operands, FP32
// accumulation), plus two small kernels for the bias. cuda::gemm (kernels/cuda/gemm.cuh) is also
// what LoRA uses: one GEMM mechanism for the whole backend.
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

#include <map>
#include <tuple>

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
// algorithm, workspace and stream; its split-K reductions are ordered, not atomic).
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
    cublasLtMatmulDesc_t desc;
    cublasLtMatrixLayout_t first, second, c;  // cuBLASLt's A (our B), its B (our A), C = D
    cublasLtMatmulAlgo_t algo;
};

const GemmPlan& plan_for(const GemmKey& k) {
    static std::map<GemmKey, GemmPlan> plans;
    auto it = plans.find(k);
    if (it != plans.end()) return it->second;

    GemmPlan p;
    CUBLAS_CHECK(cublasLtMatmulDescCreate(&p.desc, CUBLAS_COMPUTE_32F, CUDA_R_32F));
    cublasOperation_t op_first = k.transB ? CUBLAS_OP_T : CUBLAS_OP_N, op_second = k.transA ? CUBLAS_OP_T : CUBLAS_OP_N;
    CUBLAS_CHECK(cublasLtMatmulDescSetAttribute(p.desc, CUBLASLT_MATMUL_DESC_TRANSA, &op_first, sizeof op_first));
    CUBLAS_CHECK(cublasLtMatmulDescSetAttribute(p.desc, CUBLASLT_MATMUL_DESC_TRANSB, &op_second, sizeof op_second));
    CUBLAS_CHECK(cublasLtMatrixLayoutCreate(&p.first, CUDA_R_16BF, k.transB ? k.K : k.N, k.transB ? k.N : k.K, k.ldb));
    CUBLAS_CHECK(cublasLtMatrixLayoutCreate(&p.second, CUDA_R_16BF, k.transA ? k.M : k.K, k.transA ? k.K : k.M, k.lda));
    CUBLAS_CHECK(cublasLtMatrixLayoutCreate(&p.c, k.ctype, k.N, k.M, k.ldc));

    cublasLtMatmulPreference_t pref;
    CUBLAS_CHECK(cublasLtMatmulPreferenceCreate(&pref));
    uint64_t ws = kWorkspaceBytes;
    CUBLAS_CHECK(cublasLtMatmulPreferenceSetAttribute(pref, CUBLASLT_MATMUL_PREF_MAX_WORKSPACE_BYTES, &ws, sizeof ws));
    CUBLAS_CHECK(cublasLtMatmulPreferenceSetAttribute(pref, CUBLASLT_MATMUL_PREF_MIN_ALIGNMENT_A_BYTES, &k.align_b,
                                                      sizeof k.align_b));
    CUBLAS_CHECK(cublasLtMatmulPreferenceSetAttribute(pref, CUBLASLT_MATMUL_PREF_MIN_ALIGNMENT_B_BYTES, &k.align_a,
                                                      sizeof k.align_a));
    CUBLAS_CHECK(cublasLtMatmulPreferenceSetAttribute(pref, CUBLASLT_MATMUL_PREF_MIN_ALIGNMENT_C_BYTES, &k.align_c,
                                                      sizeof k.align_c));
    CUBLAS_CHECK(cublasLtMatmulPreferenceSetAttribute(pref, CUBLASLT_MATMUL_PREF_MIN_ALIGNMENT_D_BYTES, &k.align_c,
                                                      sizeof k.align_c));
    cublasLtMatmulHeuristicResult_t result;
    int found = 0;
    cublasStatus_t st = cublasLtMatmulAlgoGetHeuristic(handle(), p.desc, p.first, p.second, p.c, p.c, pref, 1, &result, &found);
    CUBLAS_CHECK(cublasLtMatmulPreferenceDestroy(pref));
    if (st != CUBLAS_STATUS_SUCCESS || found == 0)
        fail("cuBLASLt has no algorithm for the GEMM M=%d N=%d K=%d (trans %d/%d, ld %d/%d/%d, %s output, alignment "
             "%u/%u/%u bytes): %s", k.M, k.N, k.K, k.transA, k.transB, k.lda, k.ldb, k.ldc,
             k.ctype == CUDA_R_32F ? "FP32" : "BF16", k.align_a, k.align_b, k.align_c, cublasLtGetStatusString(st));
    p.algo = result.algo;
    return plans.emplace(k, p).first->second;
}

void gemm_any(bool transA, bool transB, int M, int N, int K, float alpha, const bf16* A, int lda, const bf16* B,
              int ldb, float beta, void* C, cudaDataType_t ctype, int ldc) {
    if (M == 0 || N == 0) return;
    GemmKey key{transA, transB, M, N, K, lda, ldb, ldc, ctype, alignment(A), alignment(B), alignment(C)};
    const GemmPlan& p = plan_for(key);
    void* ws = cuda_scratch(Scratch::cublas_workspace, kWorkspaceBytes);
    CUBLAS_CHECK(cublasLtMatmul(handle(), p.desc, &alpha, B, p.first, A, p.second, &beta, C, p.c, C, p.c, &p.algo, ws,
                                kWorkspaceBytes, 0));
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

}  // namespace

namespace cuda {

void gemm(bool transA, bool transB, int M, int N, int K, float alpha, const bf16* A, int lda, const bf16* B, int ldb,
          float beta, bf16* C, int ldc) {
    gemm_any(transA, transB, M, N, K, alpha, A, lda, B, ldb, beta, C, CUDA_R_16BF, ldc);
}

void gemm(bool transA, bool transB, int M, int N, int K, float alpha, const bf16* A, int lda, const bf16* B, int ldb,
          float beta, float* C, int ldc) {
    gemm_any(transA, transB, M, N, K, alpha, A, lda, B, ldb, beta, C, CUDA_R_32F, ldc);
}

void matmul_forward(bf16* out, const bf16* inp, const bf16* w, const bf16* bias, int N, int C, int OC, bool accumulate) {
    gemm(false, true, N, OC, C, 1.0f, inp, C, w, C, accumulate ? 1.0f : 0.0f, out, OC);  // out (+)= inp · Wᵀ
    if (bias && N > 0) {
        size_t n = (size_t)N * OC;
        add_bias_kernel<<<ceil_div(n, 256), 256>>>(out, bias, n, OC);
        CUDA_LAUNCH_CHECK();
    }
}

void matmul_backward(bf16* dinp, float* dw, float* dbias, const bf16* dout, const bf16* inp, const bf16* w, int N, int C,
                     int OC) {
    if (dinp) gemm(false, false, N, C, OC, 1.0f, dout, OC, w, C, 1.0f, dinp, C);  // dX += dY · W
    if (dw) gemm(true, false, OC, C, N, 1.0f, dout, OC, inp, C, 1.0f, dw, C);     // dW += dYᵀ · X, in FP32
    if (dbias && OC > 0) {
        bias_backward_kernel<<<ceil_div(OC, 32), dim3(32, kBiasRows)>>>(dbias, dout, N, OC);
        CUDA_LAUNCH_CHECK();
    }
}

}  // namespace cuda
