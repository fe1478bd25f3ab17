// Builds without nvcc have no CUDA backend: cuda_ops() says so, --device auto takes the CPU, and
// --device cuda fails with this reason. (With nvcc, kernels/cuda/backend.cu defines cuda_ops instead.)
#include "kernels/kernels.h"

const Ops* cuda_ops(const char** why) {
    if (why) *why = "this build has no CUDA backend (nvcc was not found when it was built)";
    return nullptr;
}
