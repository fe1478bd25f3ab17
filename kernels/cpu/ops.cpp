// The CPU backend's dispatch table.
#include "kernels/kernels.h"

const Ops& cpu_ops() {
    static const Ops ops = {
        cpu::matmul_forward,    cpu::matmul_backward,   cpu::embedding_forward,
        cpu::embedding_backward, cpu::rmsnorm_forward,  cpu::rmsnorm_backward,
        cpu::rope_forward,      cpu::rope_backward,     cpu::attention_forward,
        cpu::attention_backward, cpu::attention_decode, cpu::swiglu_forward,   cpu::swiglu_backward,
        cpu::lora_forward,      cpu::lora_backward,     cpu::crossentropy_forward_backward,
        cpu::nf4_quantize,      cpu::nf4_dequantize,    cpu::quantize_blockwise8,
        cpu::dequantize_blockwise8, cpu::adamw_update,  cpu::sum_squares,
    };
    return ops;
}
