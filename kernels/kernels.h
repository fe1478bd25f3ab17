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
#include <algorithm>
#include <cstddef>
#include <cstdint>

// The two backends store weights and activations in different types: FP32 on the CPU, BF16 on
// CUDA (FP32 accumulation inside every kernel). The CPU reference functions below are written on
// float; the dispatch (`Ops`, at the end) passes such tensors as `act*`, an opaque element that each
// backend casts to its own type. Model code never dereferences an `act*`: it only moves pointers
// (with Ops::at) and hands them to ops. Everything that must stay FP32 on both backends (rstd, lse,
// per-token losses and weights, gradients of parameters, optimizer masters and moments) is float*.

// One adapted projection of a LoRA group (cpu::lora_forward below), in a backend's element type.
template <class T>
struct LoraProj {
    const T* A;            // [r, C]
    const T* B;            // [OC, r]
    int OC;
    uint64_t dropout_key;
    T* y;                  // forward: output [N, OC]
    const T* add;          // forward: what y starts from (null: 0)
    const T* dy;           // backward: gradient of y
    float* dA;             // backward: += [r, C]
    float* dB;             // backward: += [OC, r]
};

// The gated MLP's activation: h[N] = act(gate) * up, with act (ModelConfig::mlp_act)
//   GLU_SILU (SwiGLU, LLaMA):        silu(g) = g · sigmoid(g)
//   GLU_GELU_TANH (GeGLU, Gemma):    gelu(g) = g/2 · (1 + tanh(sqrt(2/π) · (g + 0.044715 g³)))
enum GluAct { GLU_SILU = 0, GLU_GELU_TANH = 1 };

// Parameters per absmax of the 8-bit AdamW moments (adamw8bit_update), as bitsandbytes' blockwise
// 8-bit optimizers.
constexpr int kAdam8Block = 256;

namespace cpu {

// out[N,OC] = add + inp[N,C] · W[OC,C]ᵀ + bias[OC] (bias may be null). add is null (overwrite), out
// itself (accumulate) or another [N,OC] tensor: the residual stream x_mid = x + att·Woᵀ is one GEMM
// reading x, with no copy of x into x_mid first.
void matmul_forward(float* out, const float* inp, const float* w, const float* bias, int N, int C, int OC, const float* add);
// dinp[N,C] (+)= dout·W (if dinp; += with accumulate, = without), dw[OC,C] += doutᵀ·inp (if dw),
// dbias[OC] += Σ_n dout (if dbias). The first GEMM into a gradient overwrites, the others add:
// no zeroing pass over the buffer first.
void matmul_backward(float* dinp, float* dw, float* dbias, const float* dout, const float* inp, const float* w, int N,
                     int C, int OC, bool accumulate);

// out[n,:] = table[tokens[n],:] · scale (Gemma scales its embeddings by sqrt(dim); 1 for the others)
void embedding_forward(float* out, const int32_t* tokens, const float* table, int N, int C, float scale);
// dtable[tokens[n],:] += dout[n,:] · scale
void embedding_backward(float* dtable, const float* dout, const int32_t* tokens, int N, int C, float scale);
// NEFTune (Jain et al. 2023, transformers' neftune_noise_alpha): while training, the embeddings get
// uniform noise, x[i] += magnitude · u_i with u_i = uniform_pm1(key, i) in [-1, 1) (kernels/hash.h),
// magnitude = alpha / sqrt(T · dim) for a batch of rows of T tokens. The noise is a constant of the
// step (no gradient flows into it), drawn from the key alone, so a resumed run redraws it.
void embedding_noise(float* x, size_t n, float magnitude, uint64_t key);

// out = add + x / rms(x) * w, rms(x) = sqrt(mean(x²) + eps); saves rstd[N] = 1/rms for the backward.
// add is null (out = the norm), out itself (accumulate) or another [N,C] tensor: a branch's post-norm
// (Gemma 3) added to the residual stream in the same pass. The backward is the norm's alone (add's
// gradient is dout).
void rmsnorm_forward(float* out, float* rstd, const float* x, const float* w, int N, int C, float eps, const float* add);
// dx[N,C] += ..., dw[C] += ... (dw may be null when the norm is frozen)
void rmsnorm_backward(float* dx, float* dw, const float* dout, const float* x, const float* w, const float* rstd, int N, int C);

// In place on x[N, n_heads, head_dim]: HF "rotate-half" RoPE at position pos[n], turning pair i by
// pos[n] · inv_freq[i]; inv_freq is a host array of head_dim / 2 (rope_inv_freq in model/config.h:
// the base theta and any llama3 scaling are in it).
void rope_forward(float* x, const int32_t* pos, int N, int n_heads, int head_dim, const float* inv_freq);
// In place on dx: the transpose (inverse rotation) of rope_forward.
void rope_backward(float* dx, const int32_t* pos, int N, int n_heads, int head_dim, const float* inv_freq);

// Causal grouped-query attention over B rows of T tokens. q[B*T, nh, hd], k/v[B*T, nkv, hd],
// out[B*T, nh, hd], lse[B*T, nh] (log-sum-exp of each query's scores, kept for the backward).
// Query t attends to key s iff s <= t and seg[b,s] == seg[b,t] (packing and padding masks) and,
// with window > 0, s > t - window (a sliding window of `window` keys, t's own included: Gemma 3's
// sliding_attention layers, transformers' sliding_window_overlay; window 0: the whole causal
// context). Scores are q·k · scale (1/sqrt(hd) in LLaMA-family models; Gemma 3 takes
// query_pre_attn_scalar^-0.5). Never materialises a T×T matrix, and with a window the cost is
// O(T·window), not O(T²): keys below every window of a block of queries are never visited.
void attention_forward(float* out, float* lse, const float* q, const float* k, const float* v, const int32_t* seg,
                       int B, int T, int nh, int nkv, int hd, float scale, int window);
// dq, dk, dv overwritten. Recomputes the probabilities from lse (flash-attention style). scale and
// window as in the forward that produced out and lse.
void attention_backward(float* dq, float* dk, float* dv, const float* dout, const float* out, const float* lse,
                        const float* q, const float* k, const float* v, const int32_t* seg, int B, int T, int nh,
                        int nkv, int hd, float scale, int window);

// Decoding: one new query per sequence against that sequence's cached keys/values.
// q[S, nh, hd]; kcache/vcache[S, max_T, nkv, hd] (one layer); sequence s attends to its cached
// positions max(0, len[s] - window) .. len[s]-1 (window 0: all len[s] of them; the new token's own
// k/v already written at len[s]-1), scores scaled by `scale`: the last row of attention_forward
// with the same scale and window. out[S, nh, hd].
void attention_decode(float* out, const float* q, const float* kcache, const float* vcache, const int32_t* len, int S,
                      int max_T, int nh, int nkv, int hd, float scale, int window);

// The gated MLP's activation: h[N] = act(gate) * up, act a GluAct (above).
void glu_forward(float* h, const float* gate, const float* up, size_t N, int act);
// dgate, dup overwritten
void glu_backward(float* dgate, float* dup, const float* dh, const float* gate, const float* up, size_t N, int act);

// LoRA path of the linear layers of a group: the projections of a layer that read the same input x
// [N,C] (q, k, v; gate, up; or one alone), G of them, each with its adapter A_t [r,C], B_t [OC_t,r]:
//   y_t = add_t + scale · u_t B_tᵀ,   u_t = drop_t(x) A_tᵀ
// (add_t as in matmul_forward: null, y_t or another tensor). u [N, G·r] keeps u_t in columns t·r ..
// t·r + r − 1 for the backward. drop_t() is inverted dropout with rate p whose mask is a hash of
// (dropout_key_t, element index): forward, recompute and backward regenerate it, nothing is stored.
// The model runs this before the base GEMMs, which then accumulate onto y_t: the read of y_t falls to
// the compute-bound GEMM instead of this memory-bound one. The group's adapters share x, so a backend
// may take u for all of them in one pass over x (and, backward, dA and dx), dropout's masks included.
void lora_forward(const LoraProj<float>* proj, int G, float* u, const float* x, int N, int C, int r, float scale,
                  float p);
// dx[N,C] (+)= Σ_t drop_t'(du_t A_t) with du_t = scale · dy_t B_t (+= with accumulate, else the
// first term overwrites; no dx: skipped), dA_t += du_tᵀ drop_t(x), dB_t += scale · dy_tᵀ u_t.
void lora_backward(const LoraProj<float>* proj, int G, float* dx, const float* x, const float* u, int N, int C, int r,
                   float scale, float p, bool accumulate);

// DoRA (Liu et al. 2024; PEFT's use_dora): an adapted projection's weight W + s·B·A is rescaled row
// by row to a trained magnitude m [OC]: y = (m / norm) ⊙ z + bias, z = x·Wᵀ + s·(drop(x)·Aᵀ)·Bᵀ (the
// LoRA projection without its bias), norm[j] = ‖W_j + s·(B·A)_j‖₂. The norm is a constant of the step
// (the paper's section 4.3, as PEFT: detached), so gradients reach A and B only through z.
// norm[j] = ‖w[j,:] + scale·(B A)[j,:]‖₂ for w [OC,C], A [r,C], B [OC,r]; FP32 whatever w's type.
void dora_norm(float* norm, const float* w, const float* A, const float* B, int OC, int C, int r, float scale);
// y[n,j] = add[n,j] + m[j]/norm[j]·z[n,j] + bias[j] (add, bias may be null; y may be z or add).
void dora_forward(float* y, const float* z, const float* m, const float* norm, const float* bias, const float* add,
                  int N, int OC);
// dz = m/norm ⊙ dy (dz may be dy) and dm[j] += Σ_n dy[n,j]·z[n,j] / norm[j].
void dora_backward(float* dz, float* dm, const float* dy, const float* z, const float* m, const float* norm, int N,
                   int OC);

// Weighted cross-entropy on a chunk of n rows of logits[n,V]: nll[i] = logsumexp(row) - row[target].
// When grad_scale != 0 the logits are overwritten by dloss/dlogits = (softmax - onehot) · w[i] · grad_scale,
// so the caller can run the LM head's matmul backward on them (no second buffer of n×V).
void crossentropy_forward_backward(float* logits, float* nll, const int32_t* targets, const float* weights, int n,
                                   int V, float grad_scale);
// Greedy decoding's pick: idx[i] = the first column of the largest value among the first n of row i
// of x [rows, ld]. NaN is never picked; a row with nothing above −inf gives 0.
void argmax_rows(int32_t* idx, const float* x, int rows, int n, int ld);

// NF4 (QLoRA, Dettmers et al. 2023): each block of 64 consecutive weights is scaled by its absmax
// into [-1, 1] and rounded to the nearest of the 16 NormalFloat values (the quantiles of N(0,1),
// bitsandbytes' codebook). Two codes per byte: element 2j in the high nibble, 2j+1 in the low.
// n need not be a multiple of 64 (the last block is shorter); codes has ceil(n/2) bytes.
void nf4_quantize(uint8_t* codes, float* absmax, const float* w, size_t n);
// Blockwise 8-bit quantization with bitsandbytes' signed dynamic map (blocks of 256, one FP32
// absmax each): how double quantization stores the NF4 absmax values (after subtracting their mean).
void quantize_blockwise8(uint8_t* q, float* absmax, const float* x, size_t n);
// The inverse for NF4 with double-quantized absmax values, as QLoRA stores its weights, in one pass:
// block b's absmax a_b = map8[qabsmax[b]]·qscale[b/256] + offset (one fused multiply-add; map8 the
// dynamic map, offset the mean subtracted before quantize_blockwise8), then w_i = NF4[code_i]·a_{i/64}
// (one FP32 product). The absmax values are never stored: they live in registers for their 64 weights.
void nf4_dequantize(float* w, const uint8_t* codes, const uint8_t* qabsmax, const float* qscale, float offset,
                    size_t n);

// AdamW with decoupled weight decay (Loshchilov & Hutter): g' = g·grad_scale (clipping folded in),
// m = b1 m + (1-b1) g', v = b2 v + (1-b2) g'², p -= lr (m̂/(sqrt(v̂)+eps) + wd p), m̂,v̂ bias-corrected at step t (1-based).
// p, g, m, v are FP32 (the masters). Ops::adamw_update has two more arguments, p_compute and
// sr_key: on a backend that computes with another copy of the weights (CUDA: BF16) p_compute
// receives the updated p in that type, rounded to nearest, or stochastically (unbiased) with the
// random bits hash64(sr_key, i) when sr_key != 0; on the CPU the masters are the weights the ops
// read, p_compute is null and sr_key has no use.
void adamw_update(float* p, const float* g, float* m, float* v, size_t n, float lr, float beta1, float beta2,
                  float eps, float weight_decay, float grad_scale, int t);
// The same update with 8-bit moments (bitsandbytes' blockwise AdamW8bit): m and v are codes of the
// signed and unsigned dynamic maps (kernels/nf4_tables.h), each block of kAdam8Block (256) scaled
// by absmax_m[b], absmax_v[b]; decoded, updated in FP32 as above, encoded again against the block's
// new absmax. 2 bytes + 8/256 per parameter instead of 8. All zero (codes and absmax) is m = v = 0.
// Ops::adamw8bit_update takes p_compute and sr_key as Ops::adamw_update does.
void adamw8bit_update(float* p, const float* g, uint8_t* m, uint8_t* v, float* absmax_m, float* absmax_v, size_t n,
                      float lr, float beta1, float beta2, float eps, float weight_decay, float grad_scale, int t);
// Σ g² in double, summed in a fixed order (deterministic).
double sum_squares(const float* g, size_t n);

}  // namespace cpu

// The CUDA rmsnorm_backward's grid, a function of the shape alone (so its dw partials, one row of C
// floats per block in the reduce scratch, sum in the same order on every GPU; the memory estimate
// counts them): rows of up to 256 go to the short-row kernel, kRmsnormShortThreads / L rows a block
// at a time with L lanes a row (rmsnorm_short_row_lanes), wider rows one a block; at most 512 blocks.
constexpr int kRmsnormShortThreads = 256;
// Lanes a short row takes: the power of two >= its 8-element chunks, at least 8 (C <= 256).
inline int rmsnorm_short_row_lanes(int C) {
    int lanes = 8;
    while (lanes < (C + 7) / 8) lanes *= 2;
    return lanes;
}
inline int rmsnorm_backward_blocks(long long N, int C) {
    long long rows_at_once = C <= 256 ? kRmsnormShortThreads / rmsnorm_short_row_lanes(C) : 1;
    long long blocks = (N + rows_at_once - 1) / rows_at_once;
    return (int)(blocks < 512 ? blocks : 512);
}

// The CUDA attention_backward's scratch, a function of the shape alone (the memory estimate counts
// it): D = rowsum(dO∘O), an FP32 per token and query head.
inline size_t attention_backward_scratch_bytes(long long B, long long T, int nh) { return (size_t)(B * T) * nh * 4; }

// Token ids the kernels take: below 2^24 (the CUDA embedding backward sorts them in three 8-bit radix
// passes; ModelConfig::validate refuses a larger vocabulary).
constexpr int kMaxTokenIds = 1 << 24;
// The CUDA embedding_backward's scratch (kernels/cuda/embedding.cu, in the reduce slot; the memory
// estimate counts it), one layout for both: two sort buffers of N ids and N positions (each `ids`
// bytes, from 0), the radix histogram (256 digits × tiles of 256 positions, at `hist`) and two FP32
// rows a tile for the runs that cross its edges (at `slots`); each part 16-byte aligned.
struct EmbeddingBackwardScratch {
    size_t ids, hist, slots, bytes;
};
inline EmbeddingBackwardScratch embedding_backward_scratch(long long N, int C) {
    auto up16 = [](size_t b) { return (b + 15) / 16 * 16; };
    const size_t tiles = (size_t)(N + 255) / 256, ids = up16((size_t)N * 4), hist = 4 * ids;
    const size_t slots = hist + up16(256 * tiles * 4);
    return {ids, hist, slots, slots + 2 * tiles * C * 4};
}
inline size_t embedding_backward_scratch_bytes(long long N, int C) { return embedding_backward_scratch(N, C).bytes; }

// The CUDA dora_backward's split of its N rows into stripes (kernels/cuda/dora.cu): enough blocks of
// 32 columns × a stripe to fill a GPU even for a narrow projection (2048 columns are 64 blocks), each
// stripe at least 256 rows; with more than one, each stripe's column sums go to the reduce slot,
// stripes × OC FP32 (the memory estimate counts it).
inline int dora_backward_stripes(long long N, int OC) {
    const long long col_blocks = (OC + 31) / 32, want = (1024 + col_blocks - 1) / col_blocks, most = (N + 255) / 256;
    const long long stripes = want < most ? want : most;
    return stripes > 1 ? (int)stripes : 1;
}
inline size_t dora_backward_scratch_bytes(long long N, int OC) {
    const int stripes = dora_backward_stripes(N, OC);
    return stripes > 1 ? (size_t)stripes * OC * 4 : 0;
}

// The CUDA LoRA scratch (kernels/cuda/lora.cu), a function of the shape alone (the memory estimate
// counts it). With dropout the products that touch x or dx are hand-written kernels, for which a
// group's G adapters sit side by side in a "stacked" space of G·RP columns, projection t at column
// t·RP, RP = r rounded up to 16; du is kept that way, [N, G·RP] BF16. Two sums are cut into parts
// whose FP32 partial sums a second pass adds in order (deterministic), in one buffer (the two never
// run at once):
//  - dA_t += du_tᵀ·drop_t(x) sums over N: stripes of rows for lora_ctas() CTAs of 64 columns of x,
//    none under 512 rows (the partials, [stripes][G·r][C], then weigh at most 2·G·r/512 of x's bytes);
//  - u = drop(x)·Aᵀ sums over C: parts of at least 256 columns when the grid's CTAs of 64 rows are
//    fewer than lora_ctas() / 2, [parts][N][G·r].
struct LoraSplit {
    int count, len;  // parts, and the length of each (a multiple of 64)
};
inline int lora_rp(int r) { return (r + 15) / 16 * 16; }
inline LoraSplit lora_split(long long total, long long want, long long most) {
    if (want > most) want = most;
    if (want < 1) want = 1;
    const long long len = total > 0 ? ((total + want - 1) / want + 63) / 64 * 64 : 64;
    return {(int)((total + len - 1) / len), (int)len};
}
// The CTAs those splits aim for: three per SM of a 132-SM H100/H200 (72 KB of shared memory and 168
// registers × 128 threads each let three share an SM), one wave that keeps enough of x's loads in
// flight to stream it at DRAM speed; one CTA per SM, an H200 measured, read x at 0.4-0.8 TB/s.
// LORA_CTAS=n overrides it (tuning; the memory estimate follows it).
int lora_ctas();
inline LoraSplit lora_dA_stripes(long long N, int C, int G, int r) {
    const long long blocks = (C + 63) / 64 * (((long long)G * lora_rp(r) + 63) / 64);
    return lora_split(N, lora_ctas() / blocks, (N + 511) / 512);
}
inline LoraSplit lora_u_parts(long long N, int C, int G, int r) {
    const long long blocks = (N + 63) / 64 * (((long long)G * lora_rp(r) + 63) / 64);
    return lora_split(C, lora_ctas() / blocks, C / 256);
}
// The partials buffer of a group at N rows: what lora_down (u's parts: count · N · G·r floats, when
// count > 1) and lora_dA (dA's stripes: count · G·r · C floats) take at N rows or any fewer. The exact
// need at N is not monotone in N (fewer rows leave room for more parts, and the parts' lengths round
// to 64), and the scratch only grows: a batch shorter than the longest (dynamic padding, an epoch's
// last batch) would grow it past its size at the workspace's B·T, which is what the memory estimate
// counts. So each term is a bound that never decreases with N: a split's count is at most its `want`
// (lora_split), u's parts at most C/256 and lora_ctas() / (ceil(N/64)·cols), whose product with N is
// at most 64·lora_ctas() / cols; dA's stripes at most min(lora_ctas() / blocks, ceil(N/512)).
inline size_t lora_partials_bytes(long long N, int C, int G, int r) {
    const long long cols = ((long long)G * lora_rp(r) + 63) / 64, ctas = lora_ctas();
    const long long most_u = C / 256, u_cap = 64 * ctas / cols;
    const long long u_rows = most_u < 2 ? 0 : std::min(most_u * N, u_cap);  // a part count >= 2
    const long long d_blocks = (C + 63) / 64 * cols, d_most = (N + 511) / 512;
    const long long stripes = std::max(1LL, std::min(ctas / d_blocks, d_most));
    return std::max((size_t)u_rows * G * r * 4, (size_t)stripes * G * r * C * 4);
}
inline size_t lora_du_bytes(long long N, int G, int r) { return (size_t)N * G * lora_rp(r) * 2; }
// Without dropout (cuBLASLt GEMMs; evaluation and generation too) the group's A matrices stacked,
// [G·r, C] BF16 (a group of one uses its own A); dA's stacked product goes to the partials, which hold
// at least [G·r][C] FP32.
inline size_t lora_stacked_bytes(int G, int r, long long C) { return G > 1 ? (size_t)G * r * C * 2 : 0; }

// Where a backend's allocations go, for the memory table (bytes per category, current and peak).
enum class Mem { weights, adapters, gradients, optimizer, activations, scratch, count };
const char* mem_name(Mem c);
// What to change when memory runs out: every out-of-memory message ends with it. The GPU's names
// its own knob too, --offload-optimizer (which frees GPU memory by using the host's).
const char* out_of_memory_advice(bool gpu);
struct MemStats {
    size_t bytes[(int)Mem::count] = {};  // live now
    size_t peak[(int)Mem::count] = {};   // most ever live at once, per category
    size_t peak_total = 0;               // most ever live at once, all categories together
    size_t device_used = 0;  // CUDA: the driver's bytes in use (cudaMemGetInfo total − free: our
                             // allocations + the CUDA context + cuBLAS' own); 0 on the CPU
    size_t device_total = 0;  // CUDA: the GPU's memory (cudaMemGetInfo total); 0 on the CPU
    size_t total() const;
    void count(Mem c, size_t n);    // an allocation of n bytes (updates the peaks)
    void uncount(Mem c, size_t n);  // its release
    void reset_peak();              // peaks restart from what is live now
};

// One algorithm the GEMM heuristic offers for a shape (Ops::gemm_candidates): µs per call, and what it
// is, in the library's terms (for cuBLASLt: algorithm, tile, stages, split-K and its reduction,
// swizzle, custom option, inner and cluster shape ids, and the heuristic's waves count), and whether
// it computes the same bits as the first.
struct GemmCandidate {
    double us;
    char config[256];
    bool same_bits;   // its output is candidate 0's, bit for bit, on random operands
    bool same_order;  // candidate 0's split-K count and reduction scheme (not a promise of its bits)
};
struct act;  // an element of a weight or activation tensor in the backend's storage type (see top)

// The dispatch: model code calls every op and every memory operation through one of these. The
// ops have the argument lists of the cpu:: functions above with float* storage tensors as act*.
struct Ops {
    const char* name;  // "cpu" or "cuda"
    size_t act_size;   // bytes per act element: 4 (FP32) or 2 (BF16)
    bool host;         // its memory is host memory (tests and tools may read it directly)

    // ---- memory (all sizes in bytes unless named n = elements) ----
    void* (*alloc)(size_t bytes, Mem category);  // zero-filled; fails naming the category when out of memory
    void (*release)(void* p);
    MemStats (*mem_stats)();
    void (*reset_peak)();  // peaks restart from what is live now (to measure one phase)
    void (*release_scratch)();  // frees the backend's own scratch buffers; the next op that needs one regrows it
    void (*memset0)(void* p, size_t bytes);
    void (*copy)(void* dst, const void* src, size_t bytes);       // backend memory to backend memory
    void (*to_device)(void* dst, const void* src, size_t bytes);  // host to backend (plain bytes: ints, FP32)
    void (*to_host)(void* dst, const void* src, size_t bytes);    // backend to host; waits for pending work
    void (*synchronize)();                                        // waits for pending work (timing)
    void (*upload)(act* dst, const float* src, size_t n);         // host FP32 to the storage type
    void (*download)(float* dst, const act* src, size_t n);       // the storage type to host FP32
    void (*cast)(act* dst, const float* src, size_t n);           // backend FP32 to the storage type
    // The same with stochastic rounding, random bits hash64(key, i) (CUDA: as adamw_update's
    // p_compute, bit for bit; CPU: a copy, FP32 being the storage type).
    void (*cast_stochastic)(act* dst, const float* src, size_t n, uint64_t key);
    // out[i,:] = in[rows[i],:] and out[rows[i],:] = in[i,:] for i < n (rows in backend memory).
    void (*gather_rows)(act* out, const act* in, const int32_t* rows, int n, int C);
    void (*scatter_rows)(act* out, const act* in, const int32_t* rows, int n, int C);
    // out[i,j] = in[i,cols[j]] for i < n, j < k: in [n, V], out [n, k] (cols in backend memory). The
    // LM head's dlogits of the trainable tokens, whose rows' gradient is then one small GEMM.
    void (*gather_columns)(act* out, const act* in, const int32_t* cols, int n, int V, int k);

    // ---- ops ----
    void (*matmul_forward)(act* out, const act* inp, const act* w, const act* bias, int N, int C, int OC, const act* add);
    void (*matmul_backward)(act* dinp, float* dw, float* dbias, const act* dout, const act* inp, const act* w, int N,
                            int C, int OC, bool accumulate);
    void (*embedding_forward)(act* out, const int32_t* tokens, const act* table, int N, int C, float scale);
    void (*embedding_backward)(float* dtable, const act* dout, const int32_t* tokens, int N, int C, float scale);
    void (*embedding_noise)(act* x, size_t n, float magnitude, uint64_t key);
    void (*rmsnorm_forward)(act* out, float* rstd, const act* x, const act* w, int N, int C, float eps, const act* add);
    void (*rmsnorm_backward)(act* dx, float* dw, const act* dout, const act* x, const act* w, const float* rstd, int N, int C);
    void (*rope_forward)(act* x, const int32_t* pos, int N, int n_heads, int head_dim, const float* inv_freq);
    void (*rope_backward)(act* dx, const int32_t* pos, int N, int n_heads, int head_dim, const float* inv_freq);
    void (*attention_forward)(act* out, float* lse, const act* q, const act* k, const act* v, const int32_t* seg, int B,
                              int T, int nh, int nkv, int hd, float scale, int window);
    void (*attention_backward)(act* dq, act* dk, act* dv, const act* dout, const act* out, const float* lse,
                               const act* q, const act* k, const act* v, const int32_t* seg, int B, int T, int nh,
                               int nkv, int hd, float scale, int window);
    void (*attention_decode)(act* out, const act* q, const act* kcache, const act* vcache, const int32_t* len, int S,
                             int max_T, int nh, int nkv, int hd, float scale, int window);
    void (*glu_forward)(act* h, const act* gate, const act* up, size_t N, int act);
    void (*glu_backward)(act* dgate, act* dup, const act* dh, const act* gate, const act* up, size_t N, int act);
    void (*lora_forward)(const LoraProj<act>* proj, int G, act* u, const act* x, int N, int C, int r, float scale,
                         float p);
    void (*lora_backward)(const LoraProj<act>* proj, int G, act* dx, const act* x, const act* u, int N, int C, int r,
                          float scale, float p, bool accumulate);
    void (*dora_norm)(float* norm, const act* w, const act* A, const act* B, int OC, int C, int r, float scale);
    void (*dora_forward)(act* y, const act* z, const act* m, const float* norm, const act* bias, const act* add, int N,
                         int OC);
    void (*dora_backward)(act* dz, float* dm, const act* dy, const act* z, const act* m, const float* norm, int N,
                          int OC);
    void (*crossentropy_forward_backward)(act* logits, float* nll, const int32_t* targets, const float* weights, int n,
                                          int V, float grad_scale);
    void (*argmax_rows)(int32_t* idx, const act* x, int rows, int n, int ld);  // idx in backend memory
    void (*nf4_quantize)(uint8_t* codes, float* absmax, const float* w, size_t n);
    void (*quantize_blockwise8)(uint8_t* q, float* absmax, const float* x, size_t n);
    void (*nf4_dequantize)(act* w, const uint8_t* codes, const uint8_t* qabsmax, const float* qscale, float offset,
                           size_t n);
    void (*adamw_update)(float* p, act* p_compute, const float* g, float* m, float* v, size_t n, float lr, float beta1,
                         float beta2, float eps, float weight_decay, float grad_scale, int t, uint64_t sr_key);
    void (*adamw8bit_update)(float* p, act* p_compute, const float* g, uint8_t* m, uint8_t* v, float* absmax_m,
                             float* absmax_v, size_t n, float lr, float beta1, float beta2, float eps,
                             float weight_decay, float grad_scale, int t, uint64_t sr_key);
    double (*sum_squares)(const float* g, size_t n);
    // A tuning probe, null where the backend has one GEMM kernel (the CPU): the algorithms the GEMM's
    // heuristic ranks for C[M,N] = op(A)·op(B) (+ beta·C; row-major, leading dimensions lda, ldb, ldc
    // in elements; BF16 operands, FP32 or BF16 output), each timed; out[i] = candidate i (candidate 0
    // being what the GEMM runs). Returns how many were timed (<= max). bench/bench_gemm_algos.cpp.
    int (*gemm_candidates)(bool transA, bool transB, int M, int N, int K, int lda, int ldb, int ldc, bool fp32_out,
                           float beta, GemmCandidate* out, int max);

    // Element i of a storage tensor starting at p.
    act* at(act* p, size_t i) const { return (act*)((char*)p + i * act_size); }
    const act* at(const act* p, size_t i) const { return (const act*)((const char*)p + i * act_size); }
};

const Ops& cpu_ops();
// The CUDA backend, or null when this build has none or no GPU is usable (any error from the
// driver, e.g. none installed, counts as no GPU). `why` (optional) receives the reason.
const Ops* cuda_ops(const char** why = nullptr);
// --device cpu|cuda|auto: auto takes CUDA when cuda_ops() has it. Fails naming the reason for cuda.
const Ops& select_ops(const char* device);

// Views of FP32 host buffers as storage tensors, for code that only ever runs on the CPU backend.
inline act* as_act(float* p) { return reinterpret_cast<act*>(p); }
inline const act* as_act(const float* p) { return reinterpret_cast<const act*>(p); }
