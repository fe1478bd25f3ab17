// Self-tests of the CPU emulator (suite "emu", only in test_runner_emu): the emulated instructions
// against their PTX ISA definitions and CUDA's documented semantics, and every check the emulator
// makes, each shown to catch a planted bug. CUDA source, rewritten by tests/emu/cudapp like the kernels.
#include <cublasLt.h>
#include <cuda_bf16.h>
#include <cuda_runtime.h>
#include <doctest/doctest.h>

#include <algorithm>
#include <cmath>
#include <string>
#include <vector>

#include "emu.h"

using bf16 = __nv_bfloat16;
using std::vector;

namespace {

constexpr unsigned kFull = 0xffffffffu;

// A device copy of a host vector, freed at the end of the scope.
template <class T>
struct Dev {
    explicit Dev(const vector<T>& h) : n(h.size()) {
        REQUIRE(cudaMalloc(&p, n * sizeof(T)) == cudaSuccess);
        REQUIRE(cudaMemcpy(p, h.data(), n * sizeof(T), cudaMemcpyHostToDevice) == cudaSuccess);
    }
    ~Dev() { cudaFree(p); }
    vector<T> get() const {
        vector<T> h(n);
        REQUIRE(cudaMemcpy(h.data(), p, n * sizeof(T), cudaMemcpyDeviceToHost) == cudaSuccess);
        return h;
    }
    T* p = nullptr;
    size_t n;
};

// The message of the emu::Error that f throws ("" if none).
template <class F>
std::string error_of(F&& f) {
    try {
        f();
    } catch (const emu::Error& e) {
        return e.what();
    }
    return "";
}
#define CHECK_CAUGHT(launch, text)                                                  \
    do {                                                                            \
        std::string msg = error_of([&] { launch; });                                \
        INFO("message: " << msg);                                                   \
        CHECK_MESSAGE(msg.find(text) != std::string::npos, "expected: " << text);  \
    } while (0)

uint32_t pack(bf16 lo, bf16 hi) { return (uint32_t)lo.__x | (uint32_t)hi.__x << 16; }
vector<bf16> bf16_vec(size_t n, int seed) {
    vector<bf16> v(n);
    for (size_t i = 0; i < n; i++) v[i] = __float2bfloat16((float)((i * 7 + seed * 13) % 17) - 8.0f);
    return v;
}

// ---- the tensor-core instructions ----

// One mma with fragments assembled by the PTX ISA's formulas (g = lane/4, c = lane%4) from a
// row-major A[16][16] and B given as its columns b[n][k]; D = A·B + 1 written back the same way.
__global__ void mma_kernel(float* d, const bf16* a, const bf16* b) {
    const int l = threadIdx.x, g = l / 4, c = l % 4;
    const uint32_t ra[4] = {pack(a[g * 16 + 2 * c], a[g * 16 + 2 * c + 1]),
                            pack(a[(g + 8) * 16 + 2 * c], a[(g + 8) * 16 + 2 * c + 1]),
                            pack(a[g * 16 + 2 * c + 8], a[g * 16 + 2 * c + 9]),
                            pack(a[(g + 8) * 16 + 2 * c + 8], a[(g + 8) * 16 + 2 * c + 9])};
    const uint32_t b0 = pack(b[g * 16 + 2 * c], b[g * 16 + 2 * c + 1]), b1 = pack(b[g * 16 + 2 * c + 8], b[g * 16 + 2 * c + 9]);
    float acc[4] = {1.0f, 1.0f, 1.0f, 1.0f};
    emu::mma_m16n8k16_bf16(acc, ra, b0, b1);
    d[g * 8 + 2 * c] = acc[0], d[g * 8 + 2 * c + 1] = acc[1];
    d[(g + 8) * 8 + 2 * c] = acc[2], d[(g + 8) * 8 + 2 * c + 1] = acc[3];
}

// ldmatrix.x4 of a 16x16 tile, each lane pointing at row l%16, column (l/16)·8: without .trans the
// registers are the A fragments of the tile, with .trans the B fragments of the tile read as B[k][n]
// (two n-tiles of 8). Counts the lanes whose registers differ from the formulas.
__global__ void ldmatrix_kernel(int* bad, const bf16* m) {
    __shared__ bf16 tile[16][16];
    for (int i = threadIdx.x; i < 256; i += 32) tile[i / 16][i % 16] = m[i];
    __syncthreads();
    const int l = threadIdx.x, g = l / 4, c = l % 4;
    uint32_t r[4], t[4];
    emu::ldmatrix_x4(r, &tile[l % 16][(l / 16) * 8], false);
    emu::ldmatrix_x4(t, &tile[l % 16][(l / 16) * 8], true);
    const uint32_t want_r[4] = {pack(tile[g][2 * c], tile[g][2 * c + 1]), pack(tile[g + 8][2 * c], tile[g + 8][2 * c + 1]),
                                pack(tile[g][2 * c + 8], tile[g][2 * c + 9]),
                                pack(tile[g + 8][2 * c + 8], tile[g + 8][2 * c + 9])};
    const uint32_t want_t[4] = {pack(tile[2 * c][g], tile[2 * c + 1][g]), pack(tile[2 * c + 8][g], tile[2 * c + 9][g]),
                                pack(tile[2 * c][g + 8], tile[2 * c + 1][g + 8]),
                                pack(tile[2 * c + 8][g + 8], tile[2 * c + 9][g + 8])};
    int wrong = 0;
    for (int i = 0; i < 4; i++) wrong += (r[i] != want_r[i]) + (t[i] != want_t[i]);
    bad[l] = wrong;
}

// ---- warp and block intrinsics ----
__global__ void intrinsics_kernel(int* out) {
    const int t = threadIdx.x, l = t % 32;
    int* o = out + t * 8;
    o[0] = __shfl_xor_sync(kFull, t, 5);
    o[1] = __shfl_down_sync(kFull, t, 3);
    o[2] = __shfl_up_sync(kFull, t, 2, 16);
    o[3] = __shfl_sync(kFull, 10 * t, 7, 8);
    o[4] = (int)__ballot_sync(kFull, l % 3 == 0);
    o[5] = __syncthreads_count(t % 3 == 0);
    o[6] = __syncthreads_and(t < 60);
    o[7] = __syncthreads_or(t == 5);
}

// ---- planted bugs ----
__global__ void static_smem_overflow(float* out) {
    __shared__ float a[32];
    a[threadIdx.x] = 1.0f;  // 64 threads
    out[threadIdx.x] = 0.0f;
}
__global__ void dynamic_smem_overflow() {
    extern __shared__ float s[];
    s[threadIdx.x] = 0.0f;  // more threads than floats
}
__global__ void global_overflow(float* out) { out[threadIdx.x] = 1.0f; }
__global__ void exited_lane(float* out) {
    if (threadIdx.x == 3) return;
    out[threadIdx.x] = __shfl_xor_sync(kFull, 1.0f, 1);
}
__global__ void divergent_barriers() {
    if (threadIdx.x < 32) __syncthreads();
    else __syncthreads();
}
__global__ void barrier_after_exit() {
    if (threadIdx.x == 7) return;
    __syncthreads();
}
__global__ void shuffle_and_barrier(float* out) {
    if (threadIdx.x < 16) out[threadIdx.x] = __shfl_xor_sync(kFull, 1.0f, 1);
    __syncthreads();
}
__global__ void missing_barrier(float* out) {
    __shared__ float s[256];
    s[threadIdx.x] = (float)threadIdx.x;
    out[threadIdx.x] = s[(threadIdx.x + 1) % 256];  // no __syncthreads between
}
__global__ void __launch_bounds__(64) bounded(float* out) { out[threadIdx.x] = 1.0f; }
__global__ void big_smem(float* out) {
    extern __shared__ float s[];
    s[threadIdx.x] = (float)threadIdx.x;
    __syncthreads();
    out[threadIdx.x] = s[(threadIdx.x + 1) % blockDim.x];
}
__global__ void cp_async_misaligned(const float* src) {
    __shared__ float s[64];
    emu::cp_async16((char*)s + 4, src, 16);
}

}  // namespace

TEST_SUITE("emu") {

TEST_CASE("emu: mma.m16n8k16 computes A·B + C with the PTX ISA fragment layouts") {
    vector<bf16> a = bf16_vec(256, 1), b = bf16_vec(128, 2);
    Dev<bf16> da(a), db(b);
    Dev<float> dd(vector<float>(128));
    mma_kernel<<<1, 32>>>(dd.p, da.p, db.p);
    vector<float> d = dd.get();
    int wrong = 0;
    for (int m = 0; m < 16; m++)
        for (int n = 0; n < 8; n++) {
            float s = 1.0f;
            for (int k = 0; k < 16; k++) s += __bfloat162float(a[m * 16 + k]) * __bfloat162float(b[n * 16 + k]);
            wrong += d[m * 8 + n] != s;  // small integers: exact
        }
    CHECK(wrong == 0);
}

TEST_CASE("emu: ldmatrix.x4 and .trans give the fragments of the PTX ISA") {
    Dev<bf16> dm(bf16_vec(256, 3));
    Dev<int> bad(vector<int>(32, -1));
    ldmatrix_kernel<<<1, 32>>>(bad.p, dm.p);
    vector<int> b = bad.get();
    CHECK(std::count(b.begin(), b.end(), 0) == 32);
}

TEST_CASE("emu: shuffles, ballot and the counting barriers follow CUDA's definitions") {
    Dev<int> out(vector<int>(64 * 8));
    intrinsics_kernel<<<1, 64>>>(out.p);
    vector<int> o = out.get();
    int wrong = 0;
    for (int t = 0; t < 64; t++) {
        const int l = t % 32, w = t - l;
        unsigned ballot = 0;
        for (int i = 0; i < 32; i += 3) ballot |= 1u << i;
        const int want[8] = {w + (l ^ 5), l + 3 < 32 ? t + 3 : t, l % 16 >= 2 ? t - 2 : t, 10 * (w + (l & ~7) + 7),
                             (int)ballot, 22, 0, 1};
        for (int i = 0; i < 8; i++) wrong += o[t * 8 + i] != want[i];
    }
    CHECK(wrong == 0);
}

TEST_CASE("emu: out-of-range shared and global accesses are reported") {
    Dev<float> out(vector<float>(100));
    CHECK_CAUGHT(static_smem_overflow<<<1, 64>>>(out.p), "past the end of __shared__ a (128 bytes)");
    CHECK_CAUGHT(dynamic_smem_overflow<<<1, 64, 128>>>(), "past the end of the dynamic shared memory (128 bytes)");
    CHECK_CAUGHT(global_overflow<<<1, 128>>>(out.p), "past the end of the device allocation of 400 bytes");
    CHECK_CAUGHT(global_overflow<<<1, 32>>>((float*)&out), "not device memory");
    CHECK_CAUGHT(cp_async_misaligned<<<1, 1>>>(out.p), "misaligned");
}

TEST_CASE("emu: divergent barriers and warp operations are reported") {
    Dev<float> out(vector<float>(64));
    CHECK_CAUGHT(exited_lane<<<1, 32>>>(out.p), "exit");  // "lanes 3 have already exited" or "exits while ..."
    CHECK_CAUGHT(divergent_barriers<<<1, 64>>>(), "divergent barriers");
    CHECK_CAUGHT(barrier_after_exit<<<1, 64>>>(), "not reached by the 1 thread(s) that exited");
    CHECK_CAUGHT(shuffle_and_barrier<<<1, 32>>>(out.p), "at __shfl_*_sync");  // a deadlock, seen from either side
}

TEST_CASE("emu: a missing __syncthreads shows as a wrong result") {
    Dev<float> out(vector<float>(256));
    missing_barrier<<<1, 256>>>(out.p);
    vector<float> o = out.get();
    int stale = 0;
    for (int t = 0; t < 256; t++) stale += o[t] != (float)((t + 1) % 256);
    CHECK(stale > 0);
}

// Each refused launch also prints "emu: launch of ... refused: <why>" to stderr, as it should.
TEST_CASE("emu: launches are validated like the driver does") {
    Dev<float> out(vector<float>(1024));
    global_overflow<<<1, 2048>>>(out.p);
    CHECK(cudaGetLastError() == cudaErrorInvalidConfiguration);
    global_overflow<<<dim3(1, 70000), 32>>>(out.p);
    CHECK(cudaGetLastError() == cudaErrorInvalidConfiguration);
    big_smem<<<1, 1024, 64 << 10>>>(out.p);  // over 48 KB without the opt-in
    CHECK(cudaGetLastError() == cudaErrorInvalidValue);
    CHECK(cudaFuncSetAttribute(big_smem, cudaFuncAttributeMaxDynamicSharedMemorySize, 64 << 10) == cudaSuccess);
    big_smem<<<1, 1024, 64 << 10>>>(out.p);
    CHECK(cudaGetLastError() == cudaSuccess);
    CHECK(out.get()[1023] == 0.0f);
    CHECK_CAUGHT(bounded<<<1, 128>>>(out.p), "over its __launch_bounds__(64)");
    bounded<<<2, 64>>>(out.p);
    CHECK(cudaGetLastError() == cudaSuccess);
}

TEST_CASE("emu: cuBLASLt computes D = alpha·op(A)·op(B) + beta·C column-major, and rejects bad descriptors") {
    const int m = 5, n = 3, k = 7, lda = 9, ldb = 8, ldc = 6;  // A is k×m (OP_T), B k×n (OP_N), C m×n FP32
    vector<bf16> a = bf16_vec((size_t)lda * m, 4), b = bf16_vec((size_t)ldb * n, 5);
    vector<float> c((size_t)ldc * n);
    for (size_t i = 0; i < c.size(); i++) c[i] = 0.25f * (float)i;
    Dev<bf16> da(a), db(b);
    Dev<float> dc(c);
    cublasLtHandle_t h;
    cublasLtMatmulDesc_t desc;
    cublasLtMatrixLayout_t la, lb, lc, bad;
    cublasLtMatmulPreference_t pref;
    cublasLtCreate(&h);
    cublasLtMatmulDescCreate(&desc, CUBLAS_COMPUTE_32F, CUDA_R_32F);
    int32_t ta = CUBLAS_OP_T, tb = CUBLAS_OP_N;
    cublasLtMatmulDescSetAttribute(desc, CUBLASLT_MATMUL_DESC_TRANSA, &ta, sizeof ta);
    cublasLtMatmulDescSetAttribute(desc, CUBLASLT_MATMUL_DESC_TRANSB, &tb, sizeof tb);
    cublasLtMatrixLayoutCreate(&la, CUDA_R_16BF, k, m, lda);
    cublasLtMatrixLayoutCreate(&lb, CUDA_R_16BF, k, n, ldb);
    cublasLtMatrixLayoutCreate(&lc, CUDA_R_32F, m, n, ldc);
    cublasLtMatrixLayoutCreate(&bad, CUDA_R_32F, n, m, ldc);
    cublasLtMatmulPreferenceCreate(&pref);
    cublasLtMatmulHeuristicResult_t r;
    int found = 0;
    REQUIRE(cublasLtMatmulAlgoGetHeuristic(h, desc, la, lb, lc, lc, pref, 1, &r, &found) == CUBLAS_STATUS_SUCCESS);
    REQUIRE(found == 1);
    const float alpha = 0.5f, beta = 1.0f;
    REQUIRE(cublasLtMatmul(h, desc, &alpha, da.p, la, db.p, lb, &beta, dc.p, lc, dc.p, lc, &r.algo, nullptr, 0, 0) ==
            CUBLAS_STATUS_SUCCESS);
    vector<float> d = dc.get();
    int wrong = 0;
    for (int j = 0; j < n; j++)
        for (int i = 0; i < m; i++) {
            float s = 0.0f;
            for (int p = 0; p < k; p++) s += __bfloat162float(a[p + i * lda]) * __bfloat162float(b[p + j * ldb]);
            wrong += d[i + j * ldc] != alpha * s + c[i + j * ldc];  // small multiples of 1/4: exact
        }
    CHECK(wrong == 0);
    CHECK(d[m] == c[m]);  // rows m..ldc-1 of each column are not part of C
    CHECK_CAUGHT(cublasLtMatmulAlgoGetHeuristic(h, desc, la, lb, bad, bad, pref, 1, &r, &found), "inconsistent shapes");
    cublasLtMatmulPreferenceDestroy(pref);
    for (auto l : {la, lb, lc, bad}) cublasLtMatrixLayoutDestroy(l);
    cublasLtMatmulDescDestroy(desc);
    cublasLtDestroy(h);
}

}  // TEST_SUITE("emu")
