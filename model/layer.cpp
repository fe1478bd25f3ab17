// One decoder layer, forward and backward, as computed here:
//   ln1 = rmsnorm(x)                       q,k,v = ln1 W{q,k,v}ᵀ (+ bias, + LoRA); rope(q), rope(k)
//                                          (Qwen3: q, k = rmsnorm per head of q, k before RoPE;
//                                          SmolLM3: no RoPE in every nope_interval-th layer)
//   att = attention(q, k, v)               x_mid = x + att Woᵀ (+ LoRA)
//   ln2 = rmsnorm(x_mid)                   gate, up = ln2 W{gate,up}ᵀ (+ LoRA); h = silu(gate)·up
//   out = x_mid + h Wdownᵀ (+ LoRA)
// Gemma 3 changes four things: the input is the embedding times sqrt(dim); h = gelu(gate)·up; five
// layers in six attend within a window of keys, with RoPE of another base; and each branch's output
// is normalised before it joins the residual stream ("sandwich" norms, post_norms):
//   o = att Woᵀ (+ LoRA), x_mid = x + rmsnorm(o);  d = h Wdownᵀ (+ LoRA), out = x_mid + rmsnorm(d)
// (the norm and the add are one op: rmsnorm_forward with `add`).
// The backward walks the same steps in reverse; `dresid` carries dL/d(residual stream) from the
// layer's output down to its input. Every linear layer goes through linear_forward/backward, which
// add the adapter path when that weight is adapted: one mechanism for every projection.
#include "model/layer.h"

#include <vector>

namespace {

// Every LayerActs buffer with its size for N rows: elements, and whether they are FP32 (norm
// statistics, lse) or the storage type. One table for allocating and for counting bytes.
struct ActSize {
    Buffer LayerActs::*buf;
    size_t n;
    bool fp32;
};
std::vector<ActSize> layer_act_sizes(const Model& m, size_t N) {
    const ModelConfig& c = m.cfg;
    const size_t C = c.dim, Q = c.q_dim(), KV = c.kv_dim(), F = c.ffn_dim;
    const size_t qk = c.qk_norm ? 1 : 0, post = c.post_norms ? 1 : 0;
    auto u = [&](std::initializer_list<LoraTarget> group) {
        size_t n = 0;
        for (LoraTarget t : group) n += m.has_adapters() && m.lora.has(t) ? N * m.lora.rank : 0;
        return n;
    };
    using L = LayerActs;
    return {{&L::ln1, N * C, false},     {&L::rstd1, N, true},       {&L::q, N * Q, false},
            {&L::k, N * KV, false},      {&L::v, N * KV, false},     {&L::att, N * Q, false},
            {&L::lse, N * c.n_heads, true},                          {&L::x_mid, N * C, false},
            {&L::ln2, N * C, false},     {&L::rstd2, N, true},       {&L::gate, N * F, false},
            {&L::up, N * F, false},      {&L::h, N * F, false},
            // QK-norm
            {&L::q_pre, qk * N * Q, false}, {&L::k_pre, qk * N * KV, false},
            {&L::rstd_q, qk * N * c.n_heads, true}, {&L::rstd_k, qk * N * c.n_kv_heads, true},
            // post norms
            {&L::o, post * N * C, false}, {&L::d, post * N * C, false}, {&L::rstd_o, post * N, true},
            {&L::rstd_d, post * N, true},
            // the adapters' x·Aᵀ of each linear group
            {&L::u_qkv, u({LORA_Q, LORA_K, LORA_V}), false}, {&L::u_o, u({LORA_O}), false},
            {&L::u_gate_up, u({LORA_GATE, LORA_UP}), false}, {&L::u_down, u({LORA_DOWN}), false},
            // DoRA: z of every projection with a magnitude (the norms: Pass::dora_norms)
            {&L::dora_z, N * dora_columns(m), false}};
}

}  // namespace

void layer_acts_init(LayerActs& a, const Model& m, size_t N, const Ops& ops) {
    for (const ActSize& s : layer_act_sizes(m, N))
        a.*s.buf = s.fp32 ? Buffer(ops, s.n * sizeof(float), Mem::activations) : act_buffer(ops, s.n, Mem::activations);
}

size_t layer_acts_bytes(const Model& m, size_t N, size_t act_size) {
    size_t bytes = 0;
    for (const ActSize& s : layer_act_sizes(m, N)) bytes += s.n * (s.fp32 ? sizeof(float) : act_size);
    return bytes;
}

void layer_forward(const Pass& P, int l, int N, const act* x, act* out, const int32_t* pos, LayerActs& A,
                   const Attend& attend) {
    const ModelConfig& c = P.m.cfg;
    const bool post = c.post_norms;
    const LayerOffsets& o = P.m.off.layers[l];
    int C = c.dim, Q = c.q_dim(), KV = c.kv_dim(), F = c.ffn_dim;
    const DoraActs dora{A.dora_z.a(), P.dora_norms_of(l)};
    P.ops.rmsnorm_forward(A.ln1.a(), A.rstd1.f(), x, P.w(o.attn_norm), N, C, c.norm_eps, nullptr);
    // With QK-norm the projections land in q_pre/k_pre and the norm writes q/k: each head's row of
    // head_dim values is one rmsnorm row, so the one rmsnorm op does it over N·heads rows.
    act* q = c.qk_norm ? A.q_pre.a() : A.q.a();
    act* k = c.qk_norm ? A.k_pre.a() : A.k.a();
    linear_forward(P, A.ln1.a(), N, C, l,
                   {{q, nullptr, o.wq, o.bq, Q, LORA_Q}, {k, nullptr, o.wk, o.bk, KV, LORA_K},
                    {A.v.a(), nullptr, o.wv, o.bv, KV, LORA_V}},
                   A.u_qkv.a(), dora);
    if (c.qk_norm) {
        P.ops.rmsnorm_forward(A.q.a(), A.rstd_q.f(), q, P.w(o.q_norm), N * c.n_heads, c.head_dim, c.norm_eps, nullptr);
        P.ops.rmsnorm_forward(A.k.a(), A.rstd_k.f(), k, P.w(o.k_norm), N * c.n_kv_heads, c.head_dim, c.norm_eps, nullptr);
    }
    if (c.rope_in_layer(l)) {  // SmolLM3's NoPE layers attend without positions
        P.ops.rope_forward(A.q.a(), pos, N, c.n_heads, c.head_dim, P.rope_table(l));
        P.ops.rope_forward(A.k.a(), pos, N, c.n_kv_heads, c.head_dim, P.rope_table(l));
    }
    attend(A, l);
    // x_mid = x + o (one GEMM reading x), or with post norms o lands in A.o and x_mid = x + rmsnorm(o).
    linear_forward(P, A.att.a(), N, Q, l, {{post ? A.o.a() : A.x_mid.a(), post ? nullptr : x, o.wo, SIZE_MAX, C, LORA_O}},
                   A.u_o.a(), dora);
    if (post) P.ops.rmsnorm_forward(A.x_mid.a(), A.rstd_o.f(), A.o.a(), P.w(o.post_attn_norm), N, C, c.norm_eps, x);
    P.ops.rmsnorm_forward(A.ln2.a(), A.rstd2.f(), A.x_mid.a(), P.w(o.mlp_norm), N, C, c.norm_eps, nullptr);
    linear_forward(P, A.ln2.a(), N, C, l,
                   {{A.gate.a(), nullptr, o.w_gate, SIZE_MAX, F, LORA_GATE},
                    {A.up.a(), nullptr, o.w_up, SIZE_MAX, F, LORA_UP}},
                   A.u_gate_up.a(), dora);
    P.ops.glu_forward(A.h.a(), A.gate.a(), A.up.a(), (size_t)N * F, c.mlp_act);
    linear_forward(P, A.h.a(), N, F, l, {{post ? A.d.a() : out, post ? nullptr : A.x_mid.a(), o.w_down, SIZE_MAX, C, LORA_DOWN}},
                   A.u_down.a(), dora);
    if (post) P.ops.rmsnorm_forward(out, A.rstd_d.f(), A.d.a(), P.w(o.post_mlp_norm), N, C, c.norm_eps, A.x_mid.a());
}

namespace {
// With post norms: dL/d(branch output) from dL/d(residual after it) = ws.dresid, through the branch's
// norm, into ws.dln (free at this point of either branch; rmsnorm_backward adds, so zeroed first).
// Without: the branch output is added to the stream as is, and its gradient is ws.dresid itself.
const act* branch_grad(const Pass& P, Workspace& ws, size_t norm, const Buffer& y, const Buffer& rstd) {
    if (!P.m.cfg.post_norms) return ws.dresid.a();
    const int N = ws.B * ws.T, C = P.m.cfg.dim;
    ws.dln.zero();
    P.ops.rmsnorm_backward(ws.dln.a(), P.gw(norm), ws.dresid.a(), y.a(), P.w(norm), rstd.f(), N, C);
    return ws.dln.a();
}
}  // namespace

void layer_backward(const Pass& P, Workspace& ws, int l, const LayerActs& A) {
    const ModelConfig& c = P.m.cfg;
    const LayerOffsets& o = P.m.off.layers[l];
    int N = ws.B * ws.T, C = c.dim, Q = c.q_dim(), KV = c.kv_dim(), F = c.ffn_dim;
    const act* x = P.ops.at(ws.resid.a(), (size_t)l * N * C);
    const DoraActs dora{A.dora_z.a(), P.dora_norms_of(l)};
    act* dz = ws.ddora.a();
    // MLP branch: out = x_mid + down(h) (or + rmsnorm(down(h))). The first projection into each
    // gradient overwrites it (no zeroing pass), the next ones of the group add to it.
    const act* dd = branch_grad(P, ws, o.post_mlp_norm, A.d, A.rstd_d);
    linear_backward(P, ws.dh.a(), A.h.a(), N, F, l, {{dd, o.w_down, SIZE_MAX, C, LORA_DOWN}}, A.u_down.a(), false, dora, dz);
    P.ops.glu_backward(ws.dgate.a(), ws.dup.a(), ws.dh.a(), A.gate.a(), A.up.a(), (size_t)N * F, c.mlp_act);
    linear_backward(P, ws.dln.a(), A.ln2.a(), N, C, l,
                    {{ws.dgate.a(), o.w_gate, SIZE_MAX, F, LORA_GATE}, {ws.dup.a(), o.w_up, SIZE_MAX, F, LORA_UP}},
                    A.u_gate_up.a(), false, dora, dz);
    P.ops.rmsnorm_backward(ws.dresid.a(), P.gw(o.mlp_norm), ws.dln.a(), A.x_mid.a(), P.w(o.mlp_norm), A.rstd2.f(), N, C);
    // Attention branch: x_mid = x + o(att) (or + rmsnorm(o(att)))
    const act* dout_o = branch_grad(P, ws, o.post_attn_norm, A.o, A.rstd_o);
    linear_backward(P, ws.datt.a(), A.att.a(), N, Q, l, {{dout_o, o.wo, SIZE_MAX, C, LORA_O}}, A.u_o.a(), false, dora, dz);
    P.ops.attention_backward(ws.dq.a(), ws.dk.a(), ws.dv.a(), ws.datt.a(), A.att.a(), A.lse.f(), A.q.a(), A.k.a(),
                             A.v.a(), ws.seg.i(), ws.B, ws.T, c.n_heads, c.n_kv_heads, c.head_dim, c.attn_scale(),
                             c.window_of_layer(l));
    if (c.rope_in_layer(l)) {
        P.ops.rope_backward(ws.dq.a(), ws.pos.i(), N, c.n_heads, c.head_dim, P.rope_table(l));
        P.ops.rope_backward(ws.dk.a(), ws.pos.i(), N, c.n_kv_heads, c.head_dim, P.rope_table(l));
    }
    act* dq = ws.dq.a();
    act* dk = ws.dk.a();
    if (c.qk_norm) {  // through the per-head norms (rmsnorm_backward adds into dx: start from zero)
        ws.dq_pre.zero();
        ws.dk_pre.zero();
        P.ops.rmsnorm_backward(ws.dq_pre.a(), P.gw(o.q_norm), dq, A.q_pre.a(), P.w(o.q_norm), A.rstd_q.f(),
                               N * c.n_heads, c.head_dim);
        P.ops.rmsnorm_backward(ws.dk_pre.a(), P.gw(o.k_norm), dk, A.k_pre.a(), P.w(o.k_norm), A.rstd_k.f(),
                               N * c.n_kv_heads, c.head_dim);
        dq = ws.dq_pre.a();
        dk = ws.dk_pre.a();
    }
    linear_backward(P, ws.dln.a(), A.ln1.a(), N, C, l,
                    {{dq, o.wq, o.bq, Q, LORA_Q}, {dk, o.wk, o.bk, KV, LORA_K}, {ws.dv.a(), o.wv, o.bv, KV, LORA_V}},
                    A.u_qkv.a(), false, dora, dz);
    P.ops.rmsnorm_backward(ws.dresid.a(), P.gw(o.attn_norm), ws.dln.a(), x, P.w(o.attn_norm), A.rstd1.f(), N, C);
}
