#include "model/linear.h"

void linear_forward(const Pass& P, float* y, const float* x, size_t w, size_t b, int N, int C, int OC, int layer,
                    LoraTarget t, float* u, bool accumulate) {
    P.ops.matmul_forward(y, x, P.w(w), P.w(b), N, C, OC, accumulate);
    if (P.adapted(t)) {
        const LoraLayout& L = P.m.lora_layout;
        P.ops.lora_forward(y, u, x, P.m.adapters.data() + L.A(layer, t), P.m.adapters.data() + L.B(layer, t),
                           N, C, OC, P.m.lora.rank, P.m.lora.scale(), P.dropout, P.key(layer, t));
    }
}

void linear_backward(const Pass& P, float* dx, const float* dy, const float* x, size_t w, size_t b, int N, int C, int OC,
                     int layer, LoraTarget t, const float* u) {
    P.ops.matmul_backward(dx, P.gw(w), P.gw(b), dy, x, P.w(w), N, C, OC);
    if (P.adapted(t)) {
        const LoraLayout& L = P.m.lora_layout;
        P.ops.lora_backward(dx, P.grads + L.A(layer, t), P.grads + L.B(layer, t), dy, x, u,
                            P.m.adapters.data() + L.A(layer, t), P.m.adapters.data() + L.B(layer, t), N, C, OC,
                            P.m.lora.rank, P.m.lora.scale(), P.dropout, P.key(layer, t));
    }
}

