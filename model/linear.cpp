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
        if (!P.adapted(layer, o.t)) continue;
        LoraProj<act>& a = out[G++];
        a = {P.adapter(L.A(layer, o.t)), P.adapter(L.B(layer, o.t)), o.OC, P.key(layer, o.t), nullptr, nullptr, nullptr,
             nullptr, nullptr};
        fill(a, o);
    }
    return G;
}

}  // namespace

void linear_forward(const Pass& P, const act* x, int N, int C, int layer, std::initializer_list<LinearOut> group,
                    act* u, DoraActs dora) {
    LoraProj<act> proj[kMaxLinearGroup];
    auto z = [&](LoraTarget t) { return P.ops.at(dora.z, (size_t)N * dora_offset(P.m.cfg, P.m.lora, t)); };
    int G = lora_group(P, layer, group, proj, [&](LoraProj<act>& a, const LinearOut& o) {
        if (P.dora(layer, o.t)) a.y = z(o.t), a.add = nullptr;
        else a.y = o.y, a.add = o.add;
    });
    if (G) P.ops.lora_forward(proj, G, u, x, N, C, P.m.lora.rank, P.m.lora.scale(), P.dropout);
    for (const LinearOut& o : group) {
        if (!P.dora(layer, o.t)) {
            P.ops.matmul_forward(o.y, x, P.w(o.w), P.w(o.b), N, C, o.OC, P.adapted(layer, o.t) ? o.y : o.add);
            continue;
        }
        // The norms read the same weight as the GEMM (an NF4 weight dequantized once for both).
        const LoraLayout& L = P.m.lora_layout;
        const act* w = P.w(o.w);
        float* norm = dora.norm + dora_offset(P.m.cfg, P.m.lora, o.t);
        P.ops.matmul_forward(z(o.t), x, w, nullptr, N, C, o.OC, z(o.t));
        char& fresh = P.dora_fresh[(size_t)layer * LORA_NUM_TARGETS + o.t];
        if (!fresh)
            P.ops.dora_norm(norm, w, P.adapter(L.A(layer, o.t)), P.adapter(L.B(layer, o.t)), o.OC, C, P.m.lora.rank,
                            P.m.lora.scale());
        fresh = 1;
        P.ops.dora_forward(o.y, z(o.t), P.adapter(L.M(layer, o.t)), norm, P.w(o.b), o.add, N, o.OC);
    }
}

void linear_backward(const Pass& P, act* dx, const act* x, int N, int C, int layer,
                     std::initializer_list<LinearGrad> group, const act* u, bool accumulate, DoraActs dora, act* dz) {
    LoraProj<act> proj[kMaxLinearGroup];
    const LoraLayout& L = P.m.lora_layout;
    // The gradient each projection passes on: dy, or a DoRA projection's dz (the group's side by side).
    const act* dy[kMaxLinearGroup];
    size_t dz_cols = 0;
    for (const LinearGrad& o : group) {
        const act* g = o.dy;
        if (P.dora(layer, o.t)) {
            act* d = P.ops.at(dz, (size_t)N * dz_cols);
            dz_cols += o.OC;
            const size_t col = dora_offset(P.m.cfg, P.m.lora, o.t);
            P.ops.dora_backward(d, P.grads + L.M(layer, o.t), g, P.ops.at(dora.z, (size_t)N * col),
                                P.adapter(L.M(layer, o.t)), dora.norm + col, N, o.OC);
            g = d;
        }
        dy[&o - group.begin()] = g;
    }
    int G = lora_group(P, layer, group, proj, [&](LoraProj<act>& a, const LinearGrad& o) {
        a.dy = dy[&o - group.begin()], a.dA = P.grads + L.A(layer, o.t), a.dB = P.grads + L.B(layer, o.t);
    });
    if (G) {
        P.ops.lora_backward(proj, G, dx, x, u, N, C, P.m.lora.rank, P.m.lora.scale(), P.dropout, accumulate);
        accumulate = true;
    }
    for (const LinearGrad& o : group) {
        P.ops.matmul_backward(dx, P.gw(o.w), P.gw(o.b), dy[&o - group.begin()], x, P.w(o.w), N, C, o.OC, accumulate);
        accumulate = true;
    }
}
