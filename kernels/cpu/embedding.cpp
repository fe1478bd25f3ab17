// Token embedding: a row gather forward, a scatter-add backward.
#include <cstring>

#include "kernels/kernels.h"

namespace cpu {

void embedding_forward(float* out, const int32_t* tokens, const float* table, int N, int C) {
    #pragma omp parallel for schedule(static)
    for (int n = 0; n < N; n++) memcpy(out + (size_t)n * C, table + (size_t)tokens[n] * C, C * sizeof(float));
}

void embedding_backward(float* dtable, const float* dout, const int32_t* tokens, int N, int C) {
    // A token id can repeat within the batch, so threads split the columns, not the tokens: every
    // thread owns its slice of every row and the scatter-add needs no atomics (and stays in order).
    #pragma omp parallel for schedule(static)
    for (int c0 = 0; c0 < C; c0 += 16) {
        int c1 = c0 + 16 < C ? c0 + 16 : C;
        for (int n = 0; n < N; n++) {
            float* d = dtable + (size_t)tokens[n] * C;
            const float* g = dout + (size_t)n * C;
            for (int c = c0; c < c1; c++) d[c] += g[c];
        }
    }
}

}  // namespace cpu
