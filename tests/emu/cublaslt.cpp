// cuBLASLt on the CPU (tests/emu/include/cublasLt.h), for kernels/cuda/matmul.cu. The point is to
// check our use of the API against cuBLASLt's documented semantics, so the descriptors are
// validated as the library defines them and the GEMM is computed from them, nothing else:
//   D = alpha · op(A) · op(B) + beta · C,   column-major: X(i, j) = X[i + j·ld],
//   op(A) is m×k (A stored m×k with OP_N, k×m with OP_T), op(B) is k×n, C and D are m×n,
//   C is not read when beta == 0; D may be C (in place) when both have the same layout.
// Products of the BF16 inputs accumulate in FP32 (CUBLAS_COMPUTE_32F), alpha and beta are host FP32
// scalars (scale type CUDA_R_32F, pointer mode host), D is rounded to its type (BF16 to nearest even).
// Every call that the real library would reject (CUBLAS_STATUS_INVALID_VALUE / NOT_SUPPORTED), or
// that would compute garbage (an algorithm used for another problem or with pointers less aligned
// than it was chosen for, operands outside their allocations), throws emu::Error: in matmul.cu a
// rejected heuristic would otherwise fall back silently to another kernel.
#include <cublasLt.h>
#include <cuda_bf16.h>

#include <cstdarg>
#include <cstdio>
#include <string>
#include <vector>

#include "internal.h"  // tests/emu/include

struct cublasLtContext {
    int magic;
};

namespace {

constexpr uint64_t kAlgoMagic = 0x656d75616c676fULL;  // "emualgo"

[[noreturn]] void reject(cublasStatus_t st, const char* fmt, ...) __attribute__((format(printf, 2, 3)));
void reject(cublasStatus_t st, const char* fmt, ...) {
    char msg[1024];
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(msg, sizeof msg, fmt, ap);
    va_end(ap);
    throw emu::Error(std::string("emu cuBLASLt: ") + msg + " (cuBLASLt: " + cublasLtGetStatusName(st) + ")");
}

size_t type_size(cudaDataType_t t) { return t == CUDA_R_32F ? 4 : t == CUDA_R_16BF || t == CUDA_R_16F ? 2 : 0; }
const char* type_name(cudaDataType_t t) {
    return t == CUDA_R_32F ? "CUDA_R_32F" : t == CUDA_R_16BF ? "CUDA_R_16BF" : t == CUDA_R_16F ? "CUDA_R_16F" : "other";
}

struct Problem {
    uint64_t m, n, k;
};

// The shape the descriptors define, or a rejection saying what is inconsistent.
Problem check_problem(const char* fn, cublasLtMatmulDesc_t d, cublasLtMatrixLayout_t A, cublasLtMatrixLayout_t B,
                      cublasLtMatrixLayout_t C, cublasLtMatrixLayout_t D) {
    if (!d || !A || !B || !C || !D) reject(CUBLAS_STATUS_INVALID_VALUE, "%s: a null descriptor", fn);
    if (d->compute != CUBLAS_COMPUTE_32F || d->scale != CUDA_R_32F)
        reject(CUBLAS_STATUS_NOT_SUPPORTED, "%s: only CUBLAS_COMPUTE_32F with scale type CUDA_R_32F is emulated", fn);
    // The supported type combinations for COMPUTE_32F / scale 32F with BF16 inputs (cuBLASLt docs,
    // cublasLtMatmul "Datatypes Supported"): A = B = BF16, C = D = BF16 or FP32.
    if (A->type != CUDA_R_16BF || B->type != CUDA_R_16BF)
        reject(CUBLAS_STATUS_NOT_SUPPORTED, "%s: A is %s and B is %s; the emulated combination has both CUDA_R_16BF", fn,
               type_name(A->type), type_name(B->type));
    if (C->type != D->type || (C->type != CUDA_R_16BF && C->type != CUDA_R_32F))
        reject(CUBLAS_STATUS_NOT_SUPPORTED, "%s: C is %s and D is %s: must be the same, CUDA_R_16BF or CUDA_R_32F", fn,
               type_name(C->type), type_name(D->type));
    const bool ta = d->transa == CUBLAS_OP_T, tb = d->transb == CUBLAS_OP_T;
    Problem p{ta ? A->cols : A->rows, tb ? B->rows : B->cols, ta ? A->rows : A->cols};
    const uint64_t kb = tb ? B->cols : B->rows;
    if (kb != p.k || C->rows != p.m || C->cols != p.n || D->rows != p.m || D->cols != p.n)
        reject(CUBLAS_STATUS_INVALID_VALUE,
               "%s: inconsistent shapes: op%s(A) is %llux%llu (A layout %llux%llu), op%s(B) is %llux%llu (B layout "
               "%llux%llu), C is %llux%llu, D is %llux%llu",
               fn, ta ? "_T" : "_N", (unsigned long long)p.m, (unsigned long long)p.k, (unsigned long long)A->rows,
               (unsigned long long)A->cols, tb ? "_T" : "_N", (unsigned long long)kb, (unsigned long long)p.n,
               (unsigned long long)B->rows, (unsigned long long)B->cols, (unsigned long long)C->rows,
               (unsigned long long)C->cols, (unsigned long long)D->rows, (unsigned long long)D->cols);
    if (!p.m || !p.n || !p.k) reject(CUBLAS_STATUS_INVALID_VALUE, "%s: an empty dimension (m %llu n %llu k %llu)", fn,
                                     (unsigned long long)p.m, (unsigned long long)p.n, (unsigned long long)p.k);
    const cublasLtMatrixLayout_t all[] = {A, B, C, D};
    for (int i = 0; i < 4; i++)
        if (all[i]->ld < (int64_t)all[i]->rows)
            reject(CUBLAS_STATUS_INVALID_VALUE, "%s: %c has ld %lld < rows %llu (column-major: ld >= rows)", fn, "ABCD"[i],
                   (long long)all[i]->ld, (unsigned long long)all[i]->rows);
    return p;
}

// Identifies a problem: an algorithm from the heuristic is only valid for the problem it was given.
uint64_t signature(cublasLtMatmulDesc_t d, cublasLtMatrixLayout_t A, cublasLtMatrixLayout_t B, cublasLtMatrixLayout_t C,
                   cublasLtMatrixLayout_t D) {
    uint64_t h = 1469598103934665603ULL;
    auto mix = [&](uint64_t v) { h = (h ^ v) * 1099511628211ULL; };
    mix(d->transa), mix(d->transb), mix(d->compute);
    for (cublasLtMatrixLayout_t l : {A, B, C, D}) mix(l->type), mix(l->rows), mix(l->cols), mix((uint64_t)l->ld);
    return h;
}

// The bytes a column-major rows×cols matrix with leading dimension ld spans.
size_t extent(cublasLtMatrixLayout_t l) { return ((l->cols - 1) * (uint64_t)l->ld + l->rows) * type_size(l->type); }

// Σ x[q]·y[q] over q < k as eight interleaved FP32 sums, added in a fixed tree (deterministic).
float dot(const float* x, const float* y, uint64_t k) {
    float part[8] = {};
    uint64_t q = 0;
    for (; q + 8 <= k; q += 8)
        for (int r = 0; r < 8; r++) part[r] += x[q + r] * y[q + r];
    for (; q < k; q++) part[q % 8] += x[q] * y[q];
    return ((part[0] + part[1]) + (part[2] + part[3])) + ((part[4] + part[5]) + (part[6] + part[7]));
}

float load(const void* p, cudaDataType_t t, size_t i) {
    return t == CUDA_R_32F ? ((const float*)p)[i] : emu::bf16_to_f32(((const uint16_t*)p)[i]);
}

}  // namespace

const char* cublasLtGetStatusName(cublasStatus_t s) {
    switch (s) {
        case CUBLAS_STATUS_SUCCESS: return "CUBLAS_STATUS_SUCCESS";
        case CUBLAS_STATUS_NOT_INITIALIZED: return "CUBLAS_STATUS_NOT_INITIALIZED";
        case CUBLAS_STATUS_ALLOC_FAILED: return "CUBLAS_STATUS_ALLOC_FAILED";
        case CUBLAS_STATUS_INVALID_VALUE: return "CUBLAS_STATUS_INVALID_VALUE";
        case CUBLAS_STATUS_ARCH_MISMATCH: return "CUBLAS_STATUS_ARCH_MISMATCH";
        case CUBLAS_STATUS_MAPPING_ERROR: return "CUBLAS_STATUS_MAPPING_ERROR";
        case CUBLAS_STATUS_EXECUTION_FAILED: return "CUBLAS_STATUS_EXECUTION_FAILED";
        case CUBLAS_STATUS_INTERNAL_ERROR: return "CUBLAS_STATUS_INTERNAL_ERROR";
        case CUBLAS_STATUS_NOT_SUPPORTED: return "CUBLAS_STATUS_NOT_SUPPORTED";
    }
    return "CUBLAS_STATUS_UNKNOWN";
}
const char* cublasLtGetStatusString(cublasStatus_t s) { return cublasLtGetStatusName(s); }

cublasStatus_t cublasLtCreate(cublasLtHandle_t* h) {
    *h = new cublasLtContext{1};
    return CUBLAS_STATUS_SUCCESS;
}
cublasStatus_t cublasLtDestroy(cublasLtHandle_t h) {
    delete h;
    return CUBLAS_STATUS_SUCCESS;
}

cublasStatus_t cublasLtMatmulDescCreate(cublasLtMatmulDesc_t* d, cublasComputeType_t compute, cudaDataType_t scale) {
    *d = new cublasLtMatmulDescOpaque_t{compute, scale, CUBLAS_OP_N, CUBLAS_OP_N};
    return CUBLAS_STATUS_SUCCESS;
}
cublasStatus_t cublasLtMatmulDescDestroy(cublasLtMatmulDesc_t d) {
    delete d;
    return CUBLAS_STATUS_SUCCESS;
}
cublasStatus_t cublasLtMatmulDescSetAttribute(cublasLtMatmulDesc_t d, cublasLtMatmulDescAttributes_t attr,
                                              const void* buf, size_t size) {
    if (attr != CUBLASLT_MATMUL_DESC_TRANSA && attr != CUBLASLT_MATMUL_DESC_TRANSB)
        reject(CUBLAS_STATUS_NOT_SUPPORTED, "cublasLtMatmulDescSetAttribute: attribute %d is not emulated", (int)attr);
    if (size != sizeof(int32_t))  // the documented type of TRANSA/TRANSB: int32_t
        reject(CUBLAS_STATUS_INVALID_VALUE, "cublasLtMatmulDescSetAttribute(TRANS%c): %zu bytes, expected 4",
               attr == CUBLASLT_MATMUL_DESC_TRANSA ? 'A' : 'B', size);
    int32_t v;
    memcpy(&v, buf, 4);
    if (v != CUBLAS_OP_N && v != CUBLAS_OP_T)
        reject(CUBLAS_STATUS_INVALID_VALUE, "cublasLtMatmulDescSetAttribute: transpose %d (OP_N or OP_T)", v);
    (attr == CUBLASLT_MATMUL_DESC_TRANSA ? d->transa : d->transb) = v;
    return CUBLAS_STATUS_SUCCESS;
}

cublasStatus_t cublasLtMatrixLayoutCreate(cublasLtMatrixLayout_t* l, cudaDataType type, uint64_t rows, uint64_t cols,
                                          int64_t ld) {
    *l = new cublasLtMatrixLayoutOpaque_t{type, rows, cols, ld};
    return CUBLAS_STATUS_SUCCESS;
}
cublasStatus_t cublasLtMatrixLayoutDestroy(cublasLtMatrixLayout_t l) {
    delete l;
    return CUBLAS_STATUS_SUCCESS;
}

cublasStatus_t cublasLtMatmulPreferenceCreate(cublasLtMatmulPreference_t* p) {
    *p = new cublasLtMatmulPreferenceOpaque_t{0, CUBLASLT_REDUCTION_SCHEME_MASK, {256, 256, 256, 256}};  // the defaults
    return CUBLAS_STATUS_SUCCESS;
}
cublasStatus_t cublasLtMatmulPreferenceDestroy(cublasLtMatmulPreference_t p) {
    delete p;
    return CUBLAS_STATUS_SUCCESS;
}
cublasStatus_t cublasLtMatmulPreferenceSetAttribute(cublasLtMatmulPreference_t p,
                                                    cublasLtMatmulPreferenceAttributes_t attr, const void* buf,
                                                    size_t size) {
    const bool wide = attr == CUBLASLT_MATMUL_PREF_MAX_WORKSPACE_BYTES;  // uint64_t; the others used are uint32_t
    if (attr != CUBLASLT_MATMUL_PREF_MAX_WORKSPACE_BYTES && attr != CUBLASLT_MATMUL_PREF_REDUCTION_SCHEME_MASK &&
        (attr < CUBLASLT_MATMUL_PREF_MIN_ALIGNMENT_A_BYTES || attr > CUBLASLT_MATMUL_PREF_MIN_ALIGNMENT_D_BYTES))
        reject(CUBLAS_STATUS_NOT_SUPPORTED, "cublasLtMatmulPreferenceSetAttribute: attribute %d is not emulated", (int)attr);
    if (size != (wide ? 8u : 4u))
        reject(CUBLAS_STATUS_INVALID_VALUE, "cublasLtMatmulPreferenceSetAttribute(%d): %zu bytes, expected %d", (int)attr,
               size, wide ? 8 : 4);
    if (wide) {
        memcpy(&p->max_workspace, buf, 8);
        return CUBLAS_STATUS_SUCCESS;
    }
    uint32_t v;
    memcpy(&v, buf, 4);
    if (attr == CUBLASLT_MATMUL_PREF_REDUCTION_SCHEME_MASK) {
        p->reduction_mask = v;
    } else {
        if (v == 0 || (v & (v - 1)))
            reject(CUBLAS_STATUS_INVALID_VALUE, "cublasLtMatmulPreferenceSetAttribute: alignment %u is not a power of 2", v);
        p->min_alignment[attr - CUBLASLT_MATMUL_PREF_MIN_ALIGNMENT_A_BYTES] = v;
    }
    return CUBLAS_STATUS_SUCCESS;
}

// Three algorithms for every valid problem, valid for pointers aligned at least as the preference
// says and with no workspace: id -1 (reported as such by cublasLtMatmulAlgoConfigGetAttribute; the
// real library's ids are not negative) sums each output's K products in one order; id -2, offered
// second when more are asked for, sums the two halves of K apart and then adds them, as a split-K
// algorithm does: different bits, which gemm_candidates' bit comparison must see; id -3, third,
// stands for another tile shape with id -1's order: the same bits, which it must see as such.
cublasStatus_t cublasLtMatmulAlgoGetHeuristic(cublasLtHandle_t h, cublasLtMatmulDesc_t d, cublasLtMatrixLayout_t A,
                                              cublasLtMatrixLayout_t B, cublasLtMatrixLayout_t C,
                                              cublasLtMatrixLayout_t D, cublasLtMatmulPreference_t pref, int requested,
                                              cublasLtMatmulHeuristicResult_t results[], int* returned) {
    if (!h || !pref || requested < 1 || !results || !returned)
        reject(CUBLAS_STATUS_INVALID_VALUE, "cublasLtMatmulAlgoGetHeuristic: bad arguments");
    check_problem("cublasLtMatmulAlgoGetHeuristic", d, A, B, C, D);
    results[0] = {};
    results[0].algo.data[0] = kAlgoMagic;
    results[0].algo.data[1] = signature(d, A, B, C, D);
    for (int i = 0; i < 4; i++) results[0].algo.data[2 + i] = pref->min_alignment[i];
    results[0].workspaceSize = 0;
    results[0].state = CUBLAS_STATUS_SUCCESS;
    results[0].wavesCount = 1.0f;
    *returned = 1;
    for (int variant = 1; variant <= 2 && variant < requested; variant++) {
        results[variant] = results[0];
        results[variant].algo.data[6] = (uint64_t)variant;  // 1: the split variant, 2: the same order
        *returned = variant + 1;
    }
    return CUBLAS_STATUS_SUCCESS;
}

// The attribute sizes of the real library: ALGO_ID and SPLITK_NUM int32, the shape ids uint16, the
// rest uint32. A buffer of another size is refused, as the library does.
cublasStatus_t cublasLtMatmulAlgoConfigGetAttribute(const cublasLtMatmulAlgo_t* algo,
                                                    cublasLtMatmulAlgoConfigAttributes_t attr, void* buf, size_t size,
                                                    size_t* written) {
    if (!algo || algo->data[0] != kAlgoMagic)
        reject(CUBLAS_STATUS_INVALID_VALUE, "cublasLtMatmulAlgoConfigGetAttribute: not an algorithm of this library");
    const size_t want = attr == CUBLASLT_ALGO_CONFIG_INNER_SHAPE_ID || attr == CUBLASLT_ALGO_CONFIG_CLUSTER_SHAPE_ID ? 2 : 4;
    if (attr < CUBLASLT_ALGO_CONFIG_ID || attr > CUBLASLT_ALGO_CONFIG_CLUSTER_SHAPE_ID || !buf || size != want)
        reject(CUBLAS_STATUS_INVALID_VALUE, "cublasLtMatmulAlgoConfigGetAttribute: attribute %d with a %zu-byte buffer",
               (int)attr, size);
    memset(buf, 0, size);
    const int32_t variant = (int32_t)algo->data[6];
    if (attr == CUBLASLT_ALGO_CONFIG_ID) *(int32_t*)buf = -1 - variant;
    if (attr == CUBLASLT_ALGO_CONFIG_SPLITK_NUM) *(int32_t*)buf = variant == 1 ? 2 : 1;
    if (written) *written = size;
    return CUBLAS_STATUS_SUCCESS;
}

cublasStatus_t cublasLtMatmul(cublasLtHandle_t h, cublasLtMatmulDesc_t d, const void* alpha_p, const void* A,
                              cublasLtMatrixLayout_t Ad, const void* B, cublasLtMatrixLayout_t Bd, const void* beta_p,
                              const void* C, cublasLtMatrixLayout_t Cd, void* D, cublasLtMatrixLayout_t Dd,
                              const cublasLtMatmulAlgo_t* algo, void* ws, size_t ws_bytes, cudaStream_t) {
    const emu::DeviceAccess access;
    const char* fn = "cublasLtMatmul";
    if (!h) reject(CUBLAS_STATUS_NOT_INITIALIZED, "%s: no handle", fn);
    const Problem p = check_problem(fn, d, Ad, Bd, Cd, Dd);
    if (algo) {
        if (algo->data[0] != kAlgoMagic || algo->data[1] != signature(d, Ad, Bd, Cd, Dd))
            reject(CUBLAS_STATUS_INVALID_VALUE, "%s: the algorithm was not obtained for this problem (types, "
                   "transposes, shapes, leading dimensions)", fn);
        const void* ptrs[4] = {A, B, C, D};
        for (int i = 0; i < 4; i++)
            if ((uintptr_t)ptrs[i] % algo->data[2 + i])
                reject(CUBLAS_STATUS_INVALID_VALUE, "%s: %c = %p is less aligned than the %llu bytes the algorithm was "
                       "chosen for (CUBLASLT_MATMUL_PREF_MIN_ALIGNMENT_%c_BYTES)", fn, "ABCD"[i], ptrs[i],
                       (unsigned long long)algo->data[2 + i], "ABCD"[i]);
    }
    // Pointer mode host: alpha and beta are read on the host, the matrices are device memory.
    if (emu::find_allocation(alpha_p, 4) || emu::find_allocation(beta_p, 4))
        reject(CUBLAS_STATUS_INVALID_VALUE, "%s: alpha/beta point to device memory in the host pointer mode", fn);
    const float alpha = *(const float*)alpha_p, beta = *(const float*)beta_p;
    emu::check_global(A, extent(Ad), "cublasLtMatmul: matrix A (the layout's extent)");
    emu::check_global(B, extent(Bd), "cublasLtMatmul: matrix B (the layout's extent)");
    if (beta != 0.0f) emu::check_global(C, extent(Cd), "cublasLtMatmul: matrix C (the layout's extent)");
    emu::check_global(D, extent(Dd), "cublasLtMatmul: matrix D (the layout's extent)");
    if (ws_bytes) emu::check_global(ws, ws_bytes, "cublasLtMatmul: workspace");
    const char *c0 = (const char*)C, *d0 = (const char*)D;
    if (C == D ? Cd->ld != Dd->ld : (c0 < d0 + extent(Dd) && d0 < c0 + extent(Cd)))
        reject(CUBLAS_STATUS_INVALID_VALUE, "%s: D overlaps C without being C with the same layout (in place)", fn);

    // op(A) as rows of k, op(B) transposed as rows of k: each D(i, j) is a dot product of two rows.
    const uint64_t m = p.m, n = p.n, k = p.k;
    const bool ta = d->transa == CUBLAS_OP_T, tb = d->transb == CUBLAS_OP_T;
    const uint64_t half = algo && algo->data[6] == 1 ? k / 2 : 0;  // the split variant: [0, half) and [half, k) apart
    std::vector<float> a(m * k), b(n * k);
    for (uint64_t i = 0; i < m; i++)
        for (uint64_t q = 0; q < k; q++) a[i * k + q] = load(A, Ad->type, ta ? q + i * Ad->ld : i + q * Ad->ld);
    for (uint64_t j = 0; j < n; j++)
        for (uint64_t q = 0; q < k; q++) b[j * k + q] = load(B, Bd->type, tb ? j + q * Bd->ld : q + j * Bd->ld);
    #pragma omp parallel for schedule(static) if (m * n * k > (1u << 22))
    for (uint64_t j = 0; j < n; j++)
        for (uint64_t i = 0; i < m; i++) {
            const float *x = &a[i * k], *y = &b[j * k];
            const float s = half ? dot(x, y, half) + dot(x + half, y + half, k - half) : dot(x, y, k);
            float v = alpha * s;
            if (beta != 0.0f) v += beta * load(C, Cd->type, i + j * Cd->ld);
            const size_t at = i + j * Dd->ld;
            if (Dd->type == CUDA_R_32F)
                ((float*)D)[at] = v;
            else
                ((uint16_t*)D)[at] = emu::f32_to_bf16_rn(v);
        }
    return CUBLAS_STATUS_SUCCESS;
}
