// Greedy decoding's pick (kernels.h): the first column of each row's largest value. A strict `>`
// scan from the left keeps the first of equal maxima and never takes NaN (every comparison with it
// is false); the CUDA version's reduction is built to give the same index.
#include <cmath>

#include "kernels/kernels.h"

namespace cpu {

void argmax_rows(int32_t* idx, const float* x, int rows, int n, int ld) {
    #pragma omp parallel for schedule(static)
    for (int i = 0; i < rows; i++) {
        const float* row = x + (size_t)i * ld;
        float best = -INFINITY;
        int32_t at = 0;
        for (int j = 0; j < n; j++)
            if (row[j] > best) best = row[j], at = j;
        idx[i] = at;
    }
}

}  // namespace cpu
