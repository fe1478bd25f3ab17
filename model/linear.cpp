#include "model/linear.h"

#include "model/util.h"

namespace {

// The group's adapted projections as the LoRA ops take them; returns how many.
template <class Proj, class Fill>
int lora_group(const Pass& P, int layer, std::initializer_list<Proj> group, LoraProj<act> (&out)[kMaxLinearGroup],
               Fill fill) {
    if ((int)group.size() > kMaxLinearGroup) fail("internal: a linear group of %zu projections", group.size());
    const LoraLayout& L = P.m.lora_layout;
    int G = 0;
    for (const Proj& o : group) {
        if (!P.adapted(o.t)) continue;
        LoraProj<act>& a = out[G++];
        a = {P.adapter(L.A(layer, o.t)), P.adapter(L.B(layer, o.t)), o.OC, P.key(layer, o.t), nullptr, nullptr, nullptr,
             nullptr, nullptr};
        fill(a, o);
    }
    return G;
}

}  // namespace

void linear_forward(const Pass& P, const act* x, int N, int C, int layer, std::initializer_list<LinearOut> group,
                    act* u) {
    LoraProj<act> proj[kMaxLinearGroup];
    int G = lora_group(P, layer, group, proj, [](LoraProj<act>& a, const LinearOut& o) { a.y = o.y, a.add = o.add; });
    if (G) P.ops.lora_forward(proj, G, u, x, N, C, P.m.lora.rank, P.m.lora.scale(), P.dropout);
    for (const LinearOut& o : group)
        P.ops.matmul_forward(o.y, x, P.w(o.w), P.w(o.b), N, C, o.OC, P.adapted(o.t) ? o.y : o.add);
}

void linear_backward(const Pass& P, act* dx, const act* x, int N, int C, int layer,
                     std::initializer_list<LinearGrad> group, const act* u, bool accumulate) {
    LoraProj<act> proj[kMaxLinearGroup];
    const LoraLayout& L = P.m.lora_layout;
    int G = lora_group(P, layer, group, proj, [&](LoraProj<act>& a, const LinearGrad& o) {
        a.dy = o.dy, a.dA = P.grads + L.A(layer, o.t), a.dB = P.grads + L.B(layer, o.t);
    });
    if (G) {
        P.ops.lora_backward(proj, G, dx, x, u, N, C, P.m.lora.rank, P.m.lora.scale(), P.dropout, accumulate);
        accumulate = true;
    }
    for (const LinearGrad& o : group) {
        P.ops.matmul_backward(dx, P.gw(o.w), P.gw(o.b), o.dy, x, P.w(o.w), N, C, o.OC, accumulate);
        accumulate = true;
    }
}
