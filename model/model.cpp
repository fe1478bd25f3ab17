// Forward and backward of the decoder. One layer, as computed here:
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
#include "model/model.h"

#include <algorithm>
#include <climits>
#include <cmath>
#include <cstring>
#include <functional>

#include "model/linear.h"
#include "model/util.h"

void model_init(Model& m, const ModelConfig& cfg, std::vector<float> params) {
    cfg.validate("model");
    m.cfg = cfg;
    m.layout = param_layout(cfg);
    m.off = model_offsets(cfg);
    if (params.size() != m.layout.total) fail("model: %zu weights given, config needs %zu", params.size(), m.layout.total);
    m.params = std::move(params);
    m.method = Method::Full;
    m.adapters.clear();
    m.device.reset();  // it holds the old weights (model_upload again)
}

void model_init_random(Model& m, const ModelConfig& cfg, uint64_t seed) {
    std::vector<float> params;
    model_init_random(cfg, params, seed);
    model_init(m, cfg, std::move(params));
}

Method parse_method(const std::string& s) {
    if (s == "full") return Method::Full;
    if (s == "lora") return Method::Lora;
    if (s == "qlora") return Method::Qlora;
    fail("--method %s: use full, lora or qlora", s.c_str());
}

const char* method_name(Method m) { return m == Method::Full ? "full" : m == Method::Lora ? "lora" : "qlora"; }

size_t Model::base_bytes() const {
    size_t b = params.size() * sizeof(float);
    for (const NF4Weight& q : nf4) b += q.bytes();
    return b;
}

namespace {
// The NF4 base: every projection becomes an NF4 weight (made by `quantized` from its tensor), the
// other tensors are packed into a smaller FP32 buffer (filled by `fp32`), and every offset is
// pointed at its new home: an NF4 index (tagged) or the packed position.
void build_nf4_base(Model& m, const std::function<NF4Weight(size_t ti)>& quantized,
                    const std::function<void(size_t ti, float* dst)>& fp32) {
    std::vector<size_t> projections;
    for (const LayerOffsets& l : m.off.layers)
        for (size_t o : {l.wq, l.wk, l.wv, l.wo, l.w_gate, l.w_up, l.w_down}) projections.push_back(o);
    std::vector<size_t> new_offset(m.layout.tensors.size());
    size_t packed_total = 0, largest = 0;
    for (size_t i = 0; i < m.layout.tensors.size(); i++) {
        const TensorInfo& t = m.layout.tensors[i];
        bool q = std::find(projections.begin(), projections.end(), t.offset) != projections.end();
        new_offset[i] = q ? kNF4Tag | i : packed_total;  // NF4 indices are fixed below
        if (!q) packed_total += t.numel;
    }
    std::vector<float> packed(packed_total);
    m.nf4.clear();
    for (size_t i = 0; i < m.layout.tensors.size(); i++) {
        const TensorInfo& t = m.layout.tensors[i];
        if (new_offset[i] & kNF4Tag) {
            new_offset[i] = kNF4Tag | m.nf4.size();
            m.nf4.push_back(quantized(i));
            largest = std::max(largest, t.numel);
        } else {
            fp32(i, packed.data() + new_offset[i]);
        }
    }
    auto remap = [&](size_t& off) {
        if (off == SIZE_MAX) return;
        for (size_t i = 0; i < m.layout.tensors.size(); i++)
            if (m.layout.tensors[i].offset == off) { off = new_offset[i]; return; }
    };
    remap(m.off.embed);
    remap(m.off.final_norm);
    remap(m.off.lm_head);
    for (LayerOffsets& l : m.off.layers)
        for (size_t* o : l.all()) remap(*o);
    m.params = std::move(packed);
    m.dequant.assign(largest, 0.0f);
    m.absmax.assign((largest + 63) / 64, 0.0f);
    if (m.method == Method::Lora) m.method = Method::Qlora;
    m.device.reset();  // its layout is the FP32 one (model_upload again)
}
}  // namespace

void model_quantize_nf4(Model& m) {
    if (!m.nf4.empty()) return;
    const std::vector<float> fp32 = std::move(m.params);
    build_nf4_base(
        m, [&](size_t i) { return nf4_weight_quantize(cpu_ops(), fp32.data() + m.layout.tensors[i].offset, m.layout.tensors[i].numel); },
        [&](size_t i, float* dst) {
            const TensorInfo& t = m.layout.tensors[i];
            std::copy(fp32.begin() + t.offset, fp32.begin() + t.offset + t.numel, dst);
        });
}

void model_init_random_nf4(Model& m, const ModelConfig& cfg, uint64_t seed) {
    cfg.validate("model");
    m = Model{};
    m.cfg = cfg;
    m.layout = param_layout(cfg);
    m.off = model_offsets(cfg);
    build_nf4_base(
        m, [&](size_t i) { return nf4_weight_random(m.layout.tensors[i].numel, seed * 7919ull + i); },
        [&](size_t i, float* dst) { init_random_tensor(m.layout.tensors[i], i, dst, seed); });
}

void model_set_lora(Model& m, const LoraConfig& lc, std::vector<float> adapters) {
    m.method = m.nf4.empty() ? Method::Lora : Method::Qlora;
    m.lora = lc;
    m.lora_layout = lora_layout(m.cfg, lc);
    if (adapters.size() != m.lora_layout.total) fail("model: %zu adapter values given, layout needs %zu", adapters.size(), m.lora_layout.total);
    m.adapters = std::move(adapters);
    // A device copy holds the old adapters (or none, and masters of another size): reading it would
    // run stale weights or past its buffers, so it goes (model_upload again).
    m.device.reset();
}

void model_add_lora(Model& m, const LoraConfig& lc, uint64_t seed) {
    std::vector<float> a;
    lora_init(m.cfg, lc, a, seed);
    model_set_lora(m, lc, std::move(a));
}

size_t Workspace::bytes() const {
    size_t n = 0;
    for (const Buffer* b : {&resid, &final_ln, &final_rstd, &dresid, &dln, &datt, &dq, &dk, &dv, &dh, &dgate, &dup,
                            &dfinal, &dq_pre, &dk_pre, &logits, &hc, &dhc, &nll, &targets, &weights, &rows, &tokens,
                            &pos, &seg})
        n += b->bytes;
    for (const LayerActs& a : acts) {
        for (const Buffer* b : {&a.ln1, &a.rstd1, &a.q, &a.k, &a.v, &a.att, &a.lse, &a.x_mid, &a.ln2, &a.rstd2, &a.gate,
                                &a.up, &a.h, &a.q_pre, &a.k_pre, &a.rstd_q, &a.rstd_k, &a.o, &a.d, &a.rstd_o,
                                &a.rstd_d, &a.u_qkv, &a.u_o, &a.u_gate_up, &a.u_down})
            n += b->bytes;
    }
    return n;
}

void workspace_init(Workspace& ws, const Model& m, int B, int T, bool recompute, const Ops& ops) {
    const ModelConfig& c = m.cfg;
    size_t N = (size_t)B * T, C = c.dim, Q = c.q_dim(), KV = c.kv_dim(), F = c.ffn_dim;
    ws = Workspace{};
    ws.ops = &ops;
    ws.capacity = N;
    ws.B = B;
    ws.T = T;
    ws.max_B = B;
    ws.max_T = T;
    ws.recompute = recompute;
    const Mem A = Mem::activations;
    auto act = [&](size_t n) { return act_buffer(ops, n, A); };
    auto f32 = [&](size_t n) { return Buffer(ops, n * sizeof(float), A); };
    auto i32 = [&](size_t n) { return Buffer(ops, n * sizeof(int32_t), A); };
    ws.resid = act((c.n_layers + 1) * N * C);
    ws.acts.resize(recompute ? 1 : c.n_layers);
    for (LayerActs& a : ws.acts) {
        a.ln1 = act(N * C); a.rstd1 = f32(N); a.q = act(N * Q); a.k = act(N * KV); a.v = act(N * KV);
        a.att = act(N * Q); a.lse = f32(N * c.n_heads); a.x_mid = act(N * C); a.ln2 = act(N * C);
        a.rstd2 = f32(N); a.gate = act(N * F); a.up = act(N * F); a.h = act(N * F);
        const size_t qk = c.qk_norm ? 1 : 0;
        a.q_pre = act(qk * N * Q); a.k_pre = act(qk * N * KV);
        a.rstd_q = f32(qk * N * c.n_heads); a.rstd_k = f32(qk * N * c.n_kv_heads);
        const size_t post = c.post_norms ? 1 : 0;
        a.o = act(post * N * C); a.d = act(post * N * C); a.rstd_o = f32(post * N); a.rstd_d = f32(post * N);
        auto u = [&](std::initializer_list<LoraTarget> group) {
            size_t n = 0;
            for (LoraTarget t : group) n += m.has_adapters() && m.lora.has(t) ? N * m.lora.rank : 0;
            return act(n);
        };
        a.u_qkv = u({LORA_Q, LORA_K, LORA_V}), a.u_o = u({LORA_O}), a.u_gate_up = u({LORA_GATE, LORA_UP});
        a.u_down = u({LORA_DOWN});
    }
    ws.final_ln = act(N * C); ws.final_rstd = f32(N);
    ws.dresid = act(N * C); ws.dln = act(N * C); ws.datt = act(N * Q); ws.dq = act(N * Q);
    ws.dk = act(N * KV); ws.dv = act(N * KV); ws.dh = act(N * F); ws.dgate = act(N * F); ws.dup = act(N * F);
    ws.dfinal = act(N * C);
    ws.dq_pre = act(c.qk_norm ? N * Q : 0); ws.dk_pre = act(c.qk_norm ? N * KV : 0);
    size_t K = ws.chunk = loss_chunk(ops.host);
    ws.logits = act(K * c.vocab_size); ws.hc = act(K * C); ws.dhc = act(K * C);
    ws.nll = f32(N); ws.targets = i32(N); ws.weights = f32(N); ws.rows = i32(N);
    ws.tokens = i32(N); ws.pos = i32(N); ws.seg = i32(N);
}

namespace {

// Row l of a [rows, n] storage tensor.
act* row(const Pass& P, const Buffer& b, size_t l, size_t n) { return P.ops.at(b.a(), l * n); }

void layer_forward(const Pass& P, Workspace& ws, int l, LayerActs& A) {
    const ModelConfig& c = P.m.cfg;
    const bool post = c.post_norms;
    const LayerOffsets& o = P.m.off.layers[l];
    int N = ws.B * ws.T, C = c.dim, Q = c.q_dim(), KV = c.kv_dim(), F = c.ffn_dim;
    const act* x = row(P, ws.resid, l, (size_t)N * C);
    act* out = row(P, ws.resid, l + 1, (size_t)N * C);
    P.ops.rmsnorm_forward(A.ln1.a(), A.rstd1.f(), x, P.w(o.attn_norm), N, C, c.norm_eps, nullptr);
    // With QK-norm the projections land in q_pre/k_pre and the norm writes q/k: each head's row of
    // head_dim values is one rmsnorm row, so the one rmsnorm op does it over N·heads rows.
    act* q = c.qk_norm ? A.q_pre.a() : A.q.a();
    act* k = c.qk_norm ? A.k_pre.a() : A.k.a();
    linear_forward(P, A.ln1.a(), N, C, l,
                   {{q, nullptr, o.wq, o.bq, Q, LORA_Q}, {k, nullptr, o.wk, o.bk, KV, LORA_K},
                    {A.v.a(), nullptr, o.wv, o.bv, KV, LORA_V}},
                   A.u_qkv.a());
    if (c.qk_norm) {
        P.ops.rmsnorm_forward(A.q.a(), A.rstd_q.f(), q, P.w(o.q_norm), N * c.n_heads, c.head_dim, c.norm_eps, nullptr);
        P.ops.rmsnorm_forward(A.k.a(), A.rstd_k.f(), k, P.w(o.k_norm), N * c.n_kv_heads, c.head_dim, c.norm_eps, nullptr);
    }
    if (c.rope_in_layer(l)) {  // SmolLM3's NoPE layers attend without positions
        P.ops.rope_forward(A.q.a(), ws.pos.i(), N, c.n_heads, c.head_dim, P.rope_table(l));
        P.ops.rope_forward(A.k.a(), ws.pos.i(), N, c.n_kv_heads, c.head_dim, P.rope_table(l));
    }
    P.ops.attention_forward(A.att.a(), A.lse.f(), A.q.a(), A.k.a(), A.v.a(), ws.seg.i(), ws.B, ws.T, c.n_heads,
                            c.n_kv_heads, c.head_dim, c.attn_scale(), c.window_of_layer(l));
    // x_mid = x + o (one GEMM reading x), or with post norms o lands in A.o and x_mid = x + rmsnorm(o).
    linear_forward(P, A.att.a(), N, Q, l, {{post ? A.o.a() : A.x_mid.a(), post ? nullptr : x, o.wo, SIZE_MAX, C, LORA_O}},
                   A.u_o.a());
    if (post) P.ops.rmsnorm_forward(A.x_mid.a(), A.rstd_o.f(), A.o.a(), P.w(o.post_attn_norm), N, C, c.norm_eps, x);
    P.ops.rmsnorm_forward(A.ln2.a(), A.rstd2.f(), A.x_mid.a(), P.w(o.mlp_norm), N, C, c.norm_eps, nullptr);
    linear_forward(P, A.ln2.a(), N, C, l,
                   {{A.gate.a(), nullptr, o.w_gate, SIZE_MAX, F, LORA_GATE},
                    {A.up.a(), nullptr, o.w_up, SIZE_MAX, F, LORA_UP}},
                   A.u_gate_up.a());
    P.ops.glu_forward(A.h.a(), A.gate.a(), A.up.a(), (size_t)N * F, c.mlp_act);
    linear_forward(P, A.h.a(), N, F, l, {{post ? A.d.a() : out, post ? nullptr : A.x_mid.a(), o.w_down, SIZE_MAX, C, LORA_DOWN}},
                   A.u_down.a());
    if (post) P.ops.rmsnorm_forward(out, A.rstd_d.f(), A.d.a(), P.w(o.post_mlp_norm), N, C, c.norm_eps, A.x_mid.a());
}

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

// On entry ws.dresid = dL/d(layer output); on exit dL/d(layer input).
void layer_backward(const Pass& P, Workspace& ws, int l, const LayerActs& A) {
    const ModelConfig& c = P.m.cfg;
    const LayerOffsets& o = P.m.off.layers[l];
    int N = ws.B * ws.T, C = c.dim, Q = c.q_dim(), KV = c.kv_dim(), F = c.ffn_dim;
    const act* x = row(P, ws.resid, l, (size_t)N * C);
    // MLP branch: out = x_mid + down(h) (or + rmsnorm(down(h))). The first projection into each
    // gradient overwrites it (no zeroing pass), the next ones of the group add to it.
    const act* dd = branch_grad(P, ws, o.post_mlp_norm, A.d, A.rstd_d);
    linear_backward(P, ws.dh.a(), A.h.a(), N, F, l, {{dd, o.w_down, SIZE_MAX, C, LORA_DOWN}}, A.u_down.a(), false);
    P.ops.glu_backward(ws.dgate.a(), ws.dup.a(), ws.dh.a(), A.gate.a(), A.up.a(), (size_t)N * F, c.mlp_act);
    linear_backward(P, ws.dln.a(), A.ln2.a(), N, C, l,
                    {{ws.dgate.a(), o.w_gate, SIZE_MAX, F, LORA_GATE}, {ws.dup.a(), o.w_up, SIZE_MAX, F, LORA_UP}},
                    A.u_gate_up.a(), false);
    P.ops.rmsnorm_backward(ws.dresid.a(), P.gw(o.mlp_norm), ws.dln.a(), A.x_mid.a(), P.w(o.mlp_norm), A.rstd2.f(), N, C);
    // Attention branch: x_mid = x + o(att) (or + rmsnorm(o(att)))
    const act* dout_o = branch_grad(P, ws, o.post_attn_norm, A.o, A.rstd_o);
    linear_backward(P, ws.datt.a(), A.att.a(), N, Q, l, {{dout_o, o.wo, SIZE_MAX, C, LORA_O}}, A.u_o.a(), false);
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
                    A.u_qkv.a(), false);
    P.ops.rmsnorm_backward(ws.dresid.a(), P.gw(o.attn_norm), ws.dln.a(), x, P.w(o.attn_norm), A.rstd1.f(), N, C);
}

LayerActs& acts_for(Workspace& ws, int l) { return ws.recompute ? ws.acts[0] : ws.acts[l]; }

void forward_layers(const Pass& P, Workspace& ws, const Batch& batch) {
    const ModelConfig& c = P.m.cfg;
    if ((size_t)batch.B * batch.T > ws.capacity)
        fail("internal: a %dx%d batch does not fit the workspace (%zu tokens)", batch.B, batch.T, ws.capacity);
    if (ws.ops != &P.ops) fail("internal: the workspace was made for the %s backend, the pass runs on %s", ws.ops->name, P.ops.name);
    ws.B = batch.B;
    ws.T = batch.T;
    int N = ws.B * ws.T;
    P.ops.to_device(ws.tokens.p, batch.tokens.data(), N * sizeof(int32_t));
    P.ops.to_device(ws.pos.p, batch.pos.data(), N * sizeof(int32_t));
    P.ops.to_device(ws.seg.p, batch.seg.data(), N * sizeof(int32_t));
    P.ops.embedding_forward(ws.resid.a(), ws.tokens.i(), P.w(P.m.off.embed), N, c.dim, c.embedding_scale());
    for (int l = 0; l < c.n_layers; l++) layer_forward(P, ws, l, acts_for(ws, l));
    P.ops.rmsnorm_forward(ws.final_ln.a(), ws.final_rstd.f(), row(P, ws.resid, c.n_layers, (size_t)N * c.dim),
                          P.w(P.m.off.final_norm), N, c.dim, c.norm_eps, nullptr);
}

// The LM head and the weighted loss, chunked over the positions that carry weight: positions with
// weight 0 (padding, masked prompt) add nothing to loss or gradient, so they are skipped outright.
// Each chunk's hidden states are gathered into one block, its logits computed, turned into
// dlogits in place, and its gradient scattered back: full logits never exist. With grads,
// dL/d(final_ln) is written to ws.dfinal and the head's weight gradient accumulates. The rows'
// targets and weights go to the backend once and their nll comes back once, so on a GPU the chunks
// queue up without waiting for the host in between.
double lm_head_loss(const Pass& P, Workspace& ws, const Batch& batch, float grad_scale) {
    const ModelConfig& c = P.m.cfg;
    int N = ws.B * ws.T, C = c.dim, V = c.vocab_size;
    std::vector<int32_t> rows, tgt;
    std::vector<float> wt;
    for (int i = 0; i < N; i++)
        if (batch.weights[i] != 0.0f) {
            if (batch.targets[i] < 0 || batch.targets[i] >= V)
                fail("batch: target id %d at position %d is outside the vocabulary (%d)", batch.targets[i], i, V);
            rows.push_back(i);
            tgt.push_back(batch.targets[i]);
            wt.push_back(batch.weights[i]);
        }
    int nrows = (int)rows.size();
    if (nrows) {
        P.ops.to_device(ws.rows.p, rows.data(), nrows * sizeof(int32_t));
        P.ops.to_device(ws.targets.p, tgt.data(), nrows * sizeof(int32_t));
        P.ops.to_device(ws.weights.p, wt.data(), nrows * sizeof(float));
    }
    if (P.grads) ws.dfinal.zero();
    const act* W = P.w(P.m.off.lm_head);
    for (int r0 = 0; r0 < nrows; r0 += ws.chunk) {
        int n = std::min(ws.chunk, nrows - r0);
        P.ops.gather_rows(ws.hc.a(), ws.final_ln.a(), ws.rows.i() + r0, n, C);
        P.ops.matmul_forward(ws.logits.a(), ws.hc.a(), W, nullptr, n, C, V, nullptr);
        P.ops.crossentropy_forward_backward(ws.logits.a(), ws.nll.f() + r0, ws.targets.i() + r0, ws.weights.f() + r0,
                                            n, V, P.grads ? grad_scale : 0.0f);
        if (P.grads) {
            P.ops.matmul_backward(ws.dhc.a(), P.gw(P.m.off.lm_head), nullptr, ws.logits.a(), ws.hc.a(), W, n, C, V, false);
            P.ops.scatter_rows(ws.dfinal.a(), ws.dhc.a(), ws.rows.i() + r0, n, C);
        }
    }
    std::vector<float> nll(nrows);
    if (nrows) P.ops.to_host(nll.data(), ws.nll.p, nrows * sizeof(float));
    double loss = 0.0;
    for (int i = 0; i < nrows; i++) loss += (double)wt[i] * nll[i];
    return loss;
}

}  // namespace

double model_forward_backward(const Model& m, Workspace& ws, const Batch& batch, float* grads, float grad_scale,
                              uint64_t dropout_key, const Ops& ops) {
    Pass P(m, ops, grads, m.has_adapters() ? m.lora.dropout : 0.0f, dropout_key);
    const ModelConfig& c = m.cfg;
    forward_layers(P, ws, batch);  // sets ws.B, ws.T to the batch's shape
    int N = ws.B * ws.T;
    double loss = lm_head_loss(P, ws, batch, grad_scale);
    ws.dresid.zero();
    ops.rmsnorm_backward(ws.dresid.a(), P.gw(m.off.final_norm), ws.dfinal.a(), row(P, ws.resid, c.n_layers, (size_t)N * c.dim),
                         P.w(m.off.final_norm), ws.final_rstd.f(), N, c.dim);
    for (int l = c.n_layers - 1; l >= 0; l--) {
        // Gradient checkpointing: refill the one activation buffer from the kept layer input. The
        // same kernels run in the same order as in the forward, so the gradients are bit-identical.
        if (ws.recompute) layer_forward(P, ws, l, ws.acts[0]);
        layer_backward(P, ws, l, acts_for(ws, l));
    }
    if (P.gw(m.off.embed)) ops.embedding_backward(P.gw(m.off.embed), ws.dresid.a(), ws.tokens.i(), N, c.dim, c.embedding_scale());
    return loss;
}

double model_forward_loss(const Model& m, Workspace& ws, const Batch& batch, const Ops& ops) {
    Pass P(m, ops, nullptr, 0.0f, 0);
    forward_layers(P, ws, batch);
    return lm_head_loss(P, ws, batch, 0.0f);
}

void model_logits(const Model& m, const int32_t* tokens, int T, float* logits, const Ops& ops) {
    Workspace ws;
    workspace_init(ws, m, 1, T, true, ops);
    Batch b;
    b.resize(1, T);
    for (int t = 0; t < T; t++) {
        b.tokens[t] = tokens[t];
        b.pos[t] = t;
        b.seg[t] = 0;
    }
    Pass P(m, ops, nullptr, 0.0f, 0);
    forward_layers(P, ws, b);
    Buffer out = act_buffer(ops, (size_t)T * m.cfg.vocab_size, Mem::activations);
    ops.matmul_forward(out.a(), ws.final_ln.a(), P.w(m.off.lm_head), nullptr, T, m.cfg.dim, m.cfg.vocab_size, nullptr);
    ops.download(logits, out.a(), (size_t)T * m.cfg.vocab_size);
}
