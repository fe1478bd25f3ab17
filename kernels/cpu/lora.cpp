// The adapter path of LoRA linear layers (Hu et al. 2021), for a group of projections reading one x:
//   y = add + s · (drop(x) Aᵀ) Bᵀ,   A: [r, C], B: [OC, r], s = alpha/r (alpha/sqrt(r) with rsLoRA)
// (add: null, y itself, or the residual stream; the base GEMM then accumulates x Wᵀ onto y.)
// Two thin GEMMs through the rank-r bottleneck instead of forming s·B·A (OC×C): the work is
// O(N·r·(C+OC)), small next to the frozen base GEMM. Backward with u = drop(x)Aᵀ, du = s · dy B:
//   dB += s · dyᵀ u,   dA += duᵀ drop(x),   dx (+)= drop'(du A)
// Inverted dropout: kept elements are scaled by 1/(1−p); the mask is dropout_keep(key, index) (hash.h),
// index the element's place in x (n·C + c), so forward and backward regenerate the same mask.
//
// Blocks. drop(x) and du·A are never made whole: they go through one reused buffer a block at a
// time (kBlockRows × kBlockCols, 1 MB), and du a block of rows at a time. A whole copy of x per
// projection cost more than the products it fed: the default run's N·C copies came fresh from the
// OS every call, and their page faults alone took 0.6 ms of a 0.25 ms backward. Both block sizes are
// multiples of the GEMM's depth slice (GEMM_KC): a sum over rows (dA) or columns (u) is cut where
// the GEMM cuts it anyway, so every element is summed in the same order as by one unblocked GEMM.
#include <algorithm>
#include <vector>

#include "kernels/cpu/gemm.h"
#include "kernels/kernels.h"
#include "model/util.h"

namespace cpu {
namespace {

constexpr int kBlockRows = GEMM_KC, kBlockCols = 4 * GEMM_KC;

// The calling thread's block buffer (at least n floats) and du buffer (the GEMMs inside split the
// work over threads).
float* block_buffer(size_t n = (size_t)kBlockRows * kBlockCols) {
    static thread_local std::vector<float> b((size_t)kBlockRows * kBlockCols);
    if (b.size() < n) b.resize(n);
    return b.data();
}
float* du_buffer(int r) {
    static thread_local std::vector<float> b;
    b.resize((size_t)kBlockRows * r);
    return b.data();
}

// dst[i·ld_dst + j] (+)= drop(src[i·ld_src + j]) over a rows × cols block of an [N, C] tensor whose
// first element is (n0, c0): element (i, j) takes the mask of index (n0 + i)·C + c0 + j, so x's block
// (into the buffer) and du·A's (out of it, into dx) drop the same elements.
void drop_block(float* dst, size_t ld_dst, const float* src, size_t ld_src, int C, int n0, int rows, int c0, int cols,
                float p, uint64_t key, bool accumulate) {
    const float keep_scale = 1.0f / (1.0f - p);
    const uint32_t threshold = dropout_threshold(p);
    #pragma omp parallel for schedule(static)
    for (int i = 0; i < rows; i++) {
        const size_t base = (size_t)(n0 + i) * C + c0;
        const float* s = src + i * ld_src;
        float* d = dst + i * ld_dst;
        #pragma omp simd
        for (int j = 0; j < cols; j++) {
            const float v = dropout_keep(key, base + j, threshold) ? s[j] * keep_scale : 0.0f;
            d[j] = accumulate ? d[j] + v : v;
        }
    }
}

}  // namespace

void lora_forward(const LoraProj<float>* proj, int G, float* u, const float* x, int N, int C, int r, float scale,
                  float p) {
    const int ldu = G * r;
    for (int t = 0; t < G; t++) {
        const LoraProj<float>& a = proj[t];
        float* ut = u + t * r;
        if (p > 0.0f) {  // u_t = drop_t(x) A_tᵀ, its sum over C taken a column block at a time
            // gemm() sends a product of at most 4 rows (x·Wᵀ) down its few-rows path, which sums each
            // row over all of K in one vector reduction, not in GEMM_KC slices: so no block of rows is
            // that short unless N is (the last block gives 8 rows to the one before), and then the
            // block spans all of C, as the whole-tensor product did.
            const int block_cols = N <= 4 ? C : kBlockCols;
            float* blk = block_buffer((size_t)std::min(N, kBlockRows) * block_cols);
            for (int n0 = 0, rows; n0 < N; n0 += rows) {
                rows = std::min(kBlockRows, N - n0);
                if (N - n0 - rows > 0 && N - n0 - rows <= 4) rows -= 8;
                for (int c0 = 0; c0 < C; c0 += block_cols) {
                    const int cols = std::min(block_cols, C - c0);
                    drop_block(blk, cols, x + (size_t)n0 * C + c0, C, C, n0, rows, c0, cols, p, a.dropout_key, false);
                    gemm(false, true, rows, r, cols, 1.0f, blk, cols, a.A + c0, C, c0 ? 1.0f : 0.0f,
                         ut + (size_t)n0 * ldu, ldu);
                }
            }
        } else {
            gemm(false, true, N, r, C, 1.0f, x, C, a.A, C, 0.0f, ut, ldu);  // u_t = x A_tᵀ
        }
        start_from(a.y, a.add, (size_t)N * a.OC);
        // y_t = add_t + s · u_t B_tᵀ
        gemm(false, true, N, a.OC, r, scale, ut, ldu, a.B, r, a.add ? 1.0f : 0.0f, a.y, a.OC);
    }
}

// The oracle takes the group's projections one at a time: the sum over t is the same in any order
// up to FP32 rounding (a backend may stack them). Within a projection, a block of rows at a time:
// du of those rows, their share of dA's sum over rows, their rows of dx.
void lora_backward(const LoraProj<float>* proj, int G, float* dx, const float* x, const float* u, int N, int C, int r,
                   float scale, float p, bool accumulate) {
    const int ldu = G * r;
    float* du = du_buffer(r);
    float* blk = block_buffer();
    for (int t = 0; t < G; t++) {
        const LoraProj<float>& a = proj[t];
        gemm(true, false, a.OC, r, N, scale, a.dy, a.OC, u + t * r, ldu, 1.0f, a.dB, r);  // dB += s · dyᵀ u
        const bool acc = accumulate || t > 0;  // the group's later terms add to the first
        for (int n0 = 0; n0 < N; n0 += kBlockRows) {
            const int rows = std::min(kBlockRows, N - n0);
            const float* dy = a.dy + (size_t)n0 * a.OC;
            gemm(false, false, rows, r, a.OC, scale, dy, a.OC, a.B, r, 0.0f, du, r);  // du = s · dy B
            if (p == 0.0f) {
                gemm(true, false, r, C, rows, 1.0f, du, r, x + (size_t)n0 * C, C, 1.0f, a.dA, C);  // dA += duᵀ x
                if (dx) gemm(false, false, rows, C, r, 1.0f, du, r, a.A, C, acc ? 1.0f : 0.0f, dx + (size_t)n0 * C, C);
                continue;
            }
            for (int c0 = 0; c0 < C; c0 += kBlockCols) {
                const int cols = std::min(kBlockCols, C - c0);
                drop_block(blk, cols, x + (size_t)n0 * C + c0, C, C, n0, rows, c0, cols, p, a.dropout_key, false);
                gemm(true, false, r, cols, rows, 1.0f, du, r, blk, cols, 1.0f, a.dA + c0, C);  // dA += duᵀ drop(x)
                if (!dx) continue;
                gemm(false, false, rows, cols, r, 1.0f, du, r, a.A + c0, C, 0.0f, blk, cols);
                // dx (+)= drop(du A)
                drop_block(dx + (size_t)n0 * C + c0, C, blk, cols, C, n0, rows, c0, cols, p, a.dropout_key, acc);
            }
        }
    }
}

}  // namespace cpu
