#include "model/linear.h"

void linear_forward(const Pass& P, act* y, const act* x, size_t w, size_t b, int N, int C, int OC, int layer,
                    LoraTarget t, act* u, const act* add) {
    if (P.adapted(t)) {
        const LoraLayout& L = P.m.lora_layout;
        P.ops.lora_forward(y, u, x, P.adapter(L.A(layer, t)), P.adapter(L.B(layer, t)), N, C, OC, P.m.lora.rank,
                           P.m.lora.scale(), P.dropout, P.key(layer, t), add);
        add = y;
    }
    P.ops.matmul_forward(y, x, P.w(w), P.w(b), N, C, OC, add);
}

void linear_backward(const Pass& P, act* dx, const act* dy, const act* x, size_t w, size_t b, int N, int C, int OC,
                     int layer, LoraTarget t, const act* u, bool accumulate) {
    if (P.adapted(t)) {
        const LoraLayout& L = P.m.lora_layout;
        P.ops.lora_backward(dx, P.grads + L.A(layer, t), P.grads + L.B(layer, t), dy, x, u, P.adapter(L.A(layer, t)),
                            P.adapter(L.B(layer, t)), N, C, OC, P.m.lora.rank, P.m.lora.scale(), P.dropout,
                            P.key(layer, t), accumulate);
        accumulate = true;
    }
    P.ops.matmul_backward(dx, P.gw(w), P.gw(b), dy, x, P.w(w), N, C, OC, accumulate);
}
