// Token embedding: a row gather forward, a scatter-add backward, both times `scale` (Gemma's
// sqrt(dim); 1 for the others, which is a plain copy: x·1 is x), and NEFTune's training noise.
#include <algorithm>
#include <cstring>

#include "kernels/hash.h"
#include "kernels/kernels.h"

namespace cpu {

void embedding_forward(float* out, const int32_t* tokens, const float* table, int N, int C, float scale) {
    #pragma omp parallel for schedule(static)
    for (int n = 0; n < N; n++) {
        const float* src = table + (size_t)tokens[n] * C;
        float* dst = out + (size_t)n * C;
        if (scale == 1.0f) memcpy(dst, src, C * sizeof(float));
        else for (int c = 0; c < C; c++) dst[c] = src[c] * scale;
    }
}

void embedding_backward(float* dtable, const float* dout, const int32_t* tokens, int N, int C, float scale) {
    // A token id can repeat within the batch, so threads split the columns, not the tokens: every
    // thread owns its slice of every row and the scatter-add needs no atomics (and stays in order).
    #pragma omp parallel for schedule(static)
    for (int c0 = 0; c0 < C; c0 += 16) {
        int c1 = c0 + 16 < C ? c0 + 16 : C;
        for (int n = 0; n < N; n++) {
            float* d = dtable + (size_t)tokens[n] * C;
            const float* g = dout + (size_t)n * C;
            for (int c = c0; c < c1; c++) d[c] += g[c] * scale;
        }
    }
}

// A fixed number of elements per thread chunk (not n / threads): the noise of element i depends on i
// alone, so any split gives the same bits, and the loop over a chunk vectorises.
void embedding_noise(float* x, size_t n, float magnitude, uint64_t key) {
    #pragma omp parallel for schedule(static)
    for (size_t i0 = 0; i0 < n; i0 += 4096)
        for (size_t i = i0; i < std::min(n, i0 + 4096); i++) x[i] += magnitude * uniform_pm1(key, i);
}

}  // namespace cpu
