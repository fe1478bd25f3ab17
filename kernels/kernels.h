// The op interface: one declaration per op, shared by both backends.
//
// Every op has a CPU reference in kernels/cpu/<op>.cpp (FP32, plain loops + OpenMP: the numerical
// oracle) and, with the CUDA backend, a kernel of the same name and argument list in
// kernels/cuda/<op>.cu. Model code never calls a backend directly: it calls through `Ops`, a struct
// of function pointers filled by the backend, so one forward/backward serves both.
//
// Conventions
// - N is a number of tokens (B*T rows), C a row width. Tensors are row-major; linear weights are
//   [out, in] as in PyTorch, so a linear layer is y = x Wᵀ (+ b).
// - "accumulate" outputs (+=) are marked; everything else is overwritten. Gradients accumulate, so
//   one buffer can gather the contributions of several branches (q, k, v all read the same x).
// - Every op is deterministic: the same inputs give bit-identical outputs on every call, whatever
//   the thread count. Exact resume and recompute-equals-no-recompute rest on this.
#pragma once
#include <cstddef>
#include <cstdint>

namespace cpu {

// out[N,OC] = inp[N,C] · W[OC,C]ᵀ + bias[OC] (bias may be null); with `accumulate` the product is
// added to out (the residual stream uses this instead of a separate add).
void matmul_forward(float* out, const float* inp, const float* w, const float* bias, int N, int C, int OC, bool accumulate);
// dinp[N,C] += dout·W (if dinp), dw[OC,C] += doutᵀ·inp (if dw), dbias[OC] += Σ_n dout (if dbias).
void matmul_backward(float* dinp, float* dw, float* dbias, const float* dout, const float* inp, const float* w, int N,
                     int C, int OC);

// out[n,:] = table[tokens[n],:]
void embedding_forward(float* out, const int32_t* tokens, const float* table, int N, int C);
// dtable[tokens[n],:] += dout[n,:]
void embedding_backward(float* dtable, const float* dout, const int32_t* tokens, int N, int C);

// out = x / rms(x) * w, rms(x) = sqrt(mean(x²) + eps); saves rstd[N] = 1/rms for the backward.
void rmsnorm_forward(float* out, float* rstd, const float* x, const float* w, int N, int C, float eps);
// dx[N,C] += ..., dw[C] += ... (dw may be null when the norm is frozen)
void rmsnorm_backward(float* dx, float* dw, const float* dout, const float* x, const float* w, const float* rstd, int N, int C);

// In place on x[N, n_heads, head_dim]: HF "rotate-half" RoPE at position pos[n] with base theta.
void rope_forward(float* x, const int32_t* pos, int N, int n_heads, int head_dim, float theta);
// In place on dx: the transpose (inverse rotation) of rope_forward.
void rope_backward(float* dx, const int32_t* pos, int N, int n_heads, int head_dim, float theta);

// Causal grouped-query attention over B rows of T tokens. q[B*T, nh, hd], k/v[B*T, nkv, hd],
// out[B*T, nh, hd], lse[B*T, nh] (log-sum-exp of each query's scores, kept for the backward).
// Query t attends to key s iff s <= t and seg[b,s] == seg[b,t] (packing and padding masks).
// Scores are scaled by 1/sqrt(hd). Never materialises a T×T matrix.
void attention_forward(float* out, float* lse, const float* q, const float* k, const float* v, const int32_t* seg,
                       int B, int T, int nh, int nkv, int hd);
// dq, dk, dv overwritten. Recomputes the probabilities from lse (flash-attention style).
void attention_backward(float* dq, float* dk, float* dv, const float* dout, const float* out, const float* lse,
                        const float* q, const float* k, const float* v, const int32_t* seg, int B, int T, int nh,
                        int nkv, int hd);

// Decoding: one new query per sequence against that sequence's cached keys/values.
// q[S, nh, hd]; kcache/vcache[S, max_T, nkv, hd] (one layer); sequence s attends to its first
// len[s] cached positions (the new token's own k/v already written at len[s]-1). out[S, nh, hd].
void attention_decode(float* out, const float* q, const float* kcache, const float* vcache, const int32_t* len, int S,
                      int max_T, int nh, int nkv, int hd);

// h[N] = silu(gate) * up, silu(g) = g * sigmoid(g)
void swiglu_forward(float* h, const float* gate, const float* up, size_t N);
// dgate, dup overwritten
void swiglu_backward(float* dgate, float* dup, const float* dh, const float* gate, const float* up, size_t N);

// LoRA path of a linear layer: y[N,OC] += scale · (drop(x)[N,C] · A[r,C]ᵀ) · B[OC,r]ᵀ, saving
// u = drop(x)·Aᵀ [N,r]. drop() is inverted dropout with rate p whose mask is a hash of
// (dropout_key, element index): forward, recompute and backward regenerate it, nothing is stored.
void lora_forward(float* y, float* u, const float* x, const float* A, const float* B, int N, int C, int OC, int r,
                  float scale, float p, uint64_t dropout_key);
// dx[N,C] += (through the adapter), dA[r,C] += , dB[OC,r] +=
void lora_backward(float* dx, float* dA, float* dB, const float* dy, const float* x, const float* u, const float* A,
                   const float* B, int N, int C, int OC, int r, float scale, float p, uint64_t dropout_key);

// Weighted cross-entropy on a chunk of n rows of logits[n,V]: nll[i] = logsumexp(row) - row[target].
// When grad_scale != 0 the logits are overwritten by dloss/dlogits = (softmax - onehot) · w[i] · grad_scale,
// so the caller can run the LM head's matmul backward on them (no second buffer of n×V).
void crossentropy_forward_backward(float* logits, float* nll, const int32_t* targets, const float* weights, int n,
                                   int V, float grad_scale);

// NF4 (QLoRA, Dettmers et al. 2023): each block of 64 consecutive weights is scaled by its absmax
// into [-1, 1] and rounded to the nearest of the 16 NormalFloat values (the quantiles of N(0,1),
// bitsandbytes' codebook). Two codes per byte: element 2j in the high nibble, 2j+1 in the low.
// n need not be a multiple of 64 (the last block is shorter); codes has ceil(n/2) bytes.
void nf4_quantize(uint8_t* codes, float* absmax, const float* w, size_t n);
void nf4_dequantize(float* w, const uint8_t* codes, const float* absmax, size_t n);
// Blockwise 8-bit quantization with bitsandbytes' signed dynamic map (blocks of 256, one FP32
// absmax each): how double quantization stores the NF4 absmax values (after subtracting their mean).
void quantize_blockwise8(uint8_t* q, float* absmax, const float* x, size_t n);
void dequantize_blockwise8(float* x, const uint8_t* q, const float* absmax, size_t n);

// AdamW with decoupled weight decay (Loshchilov & Hutter): g' = g·grad_scale (clipping folded in),
// m = b1 m + (1-b1) g', v = b2 v + (1-b2) g'², p -= lr (m̂/(sqrt(v̂)+eps) + wd p), m̂,v̂ bias-corrected at step t (1-based).
void adamw_update(float* p, const float* g, float* m, float* v, size_t n, float lr, float beta1, float beta2,
                  float eps, float weight_decay, float grad_scale, int t);

// Σ g² in double, summed in a fixed order (deterministic).
double sum_squares(const float* g, size_t n);

}  // namespace cpu

// The dispatch: model code calls ops through one of these.
struct Ops {
    decltype(&cpu::matmul_forward) matmul_forward;
    decltype(&cpu::matmul_backward) matmul_backward;
    decltype(&cpu::embedding_forward) embedding_forward;
    decltype(&cpu::embedding_backward) embedding_backward;
    decltype(&cpu::rmsnorm_forward) rmsnorm_forward;
    decltype(&cpu::rmsnorm_backward) rmsnorm_backward;
    decltype(&cpu::rope_forward) rope_forward;
    decltype(&cpu::rope_backward) rope_backward;
    decltype(&cpu::attention_forward) attention_forward;
    decltype(&cpu::attention_backward) attention_backward;
    decltype(&cpu::attention_decode) attention_decode;
    decltype(&cpu::swiglu_forward) swiglu_forward;
    decltype(&cpu::swiglu_backward) swiglu_backward;
    decltype(&cpu::lora_forward) lora_forward;
    decltype(&cpu::lora_backward) lora_backward;
    decltype(&cpu::crossentropy_forward_backward) crossentropy_forward_backward;
    decltype(&cpu::nf4_quantize) nf4_quantize;
    decltype(&cpu::nf4_dequantize) nf4_dequantize;
    decltype(&cpu::quantize_blockwise8) quantize_blockwise8;
    decltype(&cpu::dequantize_blockwise8) dequantize_blockwise8;
    decltype(&cpu::adamw_update) adamw_update;
    decltype(&cpu::sum_squares) sum_squares;
};

const Ops& cpu_ops();
