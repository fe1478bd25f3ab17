// What every CUDA kernel file shares: the BF16 type, error checks, launch helpers, the backend's
// scratch buffers, and the declarations of the CUDA ops (namespace cuda).
//
// The CUDA ops have the names and argument lists of the CPU references in kernels/kernels.h, with
// the storage tensors (float* there, act* in Ops) as BF16 (`bf16*`). Everything FP32 there (rstd,
// lse, per-token losses and weights, parameter gradients, masters, moments) is FP32 here too.
// Conventions shared by every kernel:
// - All arithmetic accumulates in FP32; BF16 is only how tensors are stored.
// - Every kernel runs on the legacy default stream (0), so ops are ordered as the host calls them and
//   cuBLAS work interleaves correctly without events.
// - Deterministic: no floating-point atomics. Reductions over rows go through per-block partial sums
//   added in a fixed order, so the same inputs give bit-identical outputs every call (exact resume and
//   recompute-equals-no-recompute depend on it, as on the CPU). A GEMM shape keeps cuBLASLt's first
//   algorithm: a choice among its candidates by timing would change bits (even candidates of the same
//   split-K count and reduction scheme can sum in another order: seen on an H200, matmul.cu).
// - Pointers are device pointers. Shapes need not be multiples of any tile: every kernel guards its edges.
#pragma once
#include <cuda_bf16.h>
#include <cuda_runtime.h>

#include <cstddef>
#include <cstdint>

#include "kernels/kernels.h"

using bf16 = __nv_bfloat16;

// Fails (model/util.h fail()) naming the CUDA call, file and line, and the error string.
void cuda_check(cudaError_t e, const char* what, const char* file, int line);
#define CUDA_CHECK(x) cuda_check((x), #x, __FILE__, __LINE__)
// After every launch: catches bad launch configurations at once (not at the next sync).
#define CUDA_LAUNCH_CHECK() cuda_check(cudaGetLastError(), "kernel launch", __FILE__, __LINE__)

inline unsigned ceil_div(size_t a, size_t b) { return (unsigned)((a + b - 1) / b); }

// The backend's own growable scratch buffers (counted as Mem::scratch), one per use so two live
// ones never alias. A buffer only grows; its contents are undefined on return.
enum class Scratch { lora_du, lora_partials, lora_stacked, cublas_workspace, reduce, attention, count };
void* cuda_scratch(Scratch slot, size_t bytes);
void cuda_release_scratch();  // frees them all (Ops::release_scratch)
// Device allocation counted in a category of the memory table (kernels/cuda/backend.cu).
void* cuda_alloc(size_t bytes, Mem category);
void cuda_release(void* p);

// LoRA dropout keeps element i iff dropout_keep(key, i, threshold) (kernels/hash.h): the same function on
// host and device, so the CUDA masks equal the CPU's bit for bit.
#include "kernels/hash.h"

namespace cuda {
void matmul_forward(bf16* out, const bf16* inp, const bf16* w, const bf16* bias, int N, int C, int OC, const bf16* add);
void matmul_backward(bf16* dinp, float* dw, float* dbias, const bf16* dout, const bf16* inp, const bf16* w, int N, int C,
                     int OC, bool accumulate);
void embedding_forward(bf16* out, const int32_t* tokens, const bf16* table, int N, int C, float scale);
void embedding_backward(float* dtable, const bf16* dout, const int32_t* tokens, int N, int C, float scale);
void embedding_noise(bf16* x, size_t n, float magnitude, uint64_t key);
void rmsnorm_forward(bf16* out, float* rstd, const bf16* x, const bf16* w, int N, int C, float eps, const bf16* add);
void rmsnorm_backward(bf16* dx, float* dw, const bf16* dout, const bf16* x, const bf16* w, const float* rstd, int N, int C);
void rope_forward(bf16* x, const int32_t* pos, int N, int n_heads, int head_dim, const float* inv_freq);
void rope_backward(bf16* dx, const int32_t* pos, int N, int n_heads, int head_dim, const float* inv_freq);
void attention_forward(bf16* out, float* lse, const bf16* q, const bf16* k, const bf16* v, const int32_t* seg, int B,
                       int T, int nh, int nkv, int hd, float scale, int window);
void attention_backward(bf16* dq, bf16* dk, bf16* dv, const bf16* dout, const bf16* out, const float* lse,
                        const bf16* q, const bf16* k, const bf16* v, const int32_t* seg, int B, int T, int nh, int nkv,
                        int hd, float scale, int window);
void attention_decode(bf16* out, const bf16* q, const bf16* kcache, const bf16* vcache, const int32_t* len, int S,
                      int max_T, int nh, int nkv, int hd, float scale, int window);
void glu_forward(bf16* h, const bf16* gate, const bf16* up, size_t N, int act);
void glu_backward(bf16* dgate, bf16* dup, const bf16* dh, const bf16* gate, const bf16* up, size_t N, int act);
int gemm_candidates(bool transA, bool transB, int M, int N, int K, int lda, int ldb, int ldc, bool fp32_out,
                    float beta, GemmCandidate* out, int max);
void lora_forward(const LoraProj<bf16>* proj, int G, bf16* u, const bf16* x, int N, int C, int r, float scale, float p);
void lora_backward(const LoraProj<bf16>* proj, int G, bf16* dx, const bf16* x, const bf16* u, int N, int C, int r,
                   float scale, float p, bool accumulate);
void dora_norm(float* norm, const bf16* w, const bf16* A, const bf16* B, int OC, int C, int r, float scale);
void dora_forward(bf16* y, const bf16* z, const bf16* m, const float* norm, const bf16* bias, const bf16* add, int N,
                  int OC);
void dora_backward(bf16* dz, float* dm, const bf16* dy, const bf16* z, const bf16* m, const float* norm, int N, int OC);
void crossentropy_forward_backward(bf16* logits, float* nll, const int32_t* targets, const float* weights, int n, int V,
                                   float grad_scale);
void argmax_rows(int32_t* idx, const bf16* x, int rows, int n, int ld);
void nf4_quantize(uint8_t* codes, float* absmax, const float* w, size_t n);
void quantize_blockwise8(uint8_t* q, float* absmax, const float* x, size_t n);
void nf4_dequantize(bf16* w, const uint8_t* codes, const uint8_t* qabsmax, const float* qscale, float offset, size_t n);
void adamw_update(float* p, bf16* p_compute, const float* g, float* m, float* v, size_t n, float lr, float beta1,
                  float beta2, float eps, float weight_decay, float grad_scale, int t, uint64_t sr_key);
void adamw8bit_update(float* p, bf16* p_compute, const float* g, uint8_t* m, uint8_t* v, float* absmax_m,
                      float* absmax_v, size_t n, float lr, float beta1, float beta2, float eps, float weight_decay,
                      float grad_scale, int t, uint64_t sr_key);
double sum_squares(const float* g, size_t n);
// Casts and row moves (the memory half of Ops).
void cast_f32_to_bf16(bf16* dst, const float* src, size_t n);
void cast_f32_to_bf16_stochastic(bf16* dst, const float* src, size_t n, uint64_t key);
void gather_rows(bf16* out, const bf16* in, const int32_t* rows, int n, int C);
void scatter_rows(bf16* out, const bf16* in, const int32_t* rows, int n, int C);
void gather_columns(bf16* out, const bf16* in, const int32_t* cols, int n, int V, int k);
}  // namespace cuda
