// Forward and backward of the decoder. One layer, as computed here:
//   ln1 = rmsnorm(x)                       q,k,v = ln1 W{q,k,v}ᵀ (+ bias, + LoRA); rope(q), rope(k)
//   att = attention(q, k, v)               x_mid = x + att Woᵀ (+ LoRA)
//   ln2 = rmsnorm(x_mid)                   gate, up = ln2 W{gate,up}ᵀ (+ LoRA); h = silu(gate)·up
//   out = x_mid + h Wdownᵀ (+ LoRA)
// The backward walks the same steps in reverse; `dresid` carries dL/d(residual stream) from the
// layer's output down to its input. Every linear layer goes through linear_forward/backward, which
// add the adapter path when that weight is adapted: one mechanism for every projection.
#include "model/model.h"

#include <algorithm>
#include <climits>
#include <cstring>

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

void model_quantize_nf4(Model& m) {
    if (!m.nf4.empty()) return;
    // Quantize each projection, then pack the remaining FP32 tensors into a smaller buffer and
    // point every offset at its new home: an NF4 index (tagged) or the packed position.
    std::vector<size_t> quantized;
    for (const LayerOffsets& l : m.off.layers)
        for (size_t o : {l.wq, l.wk, l.wv, l.wo, l.w_gate, l.w_up, l.w_down}) quantized.push_back(o);
    std::vector<size_t> new_offset(m.layout.tensors.size());
    std::vector<float> packed;
    size_t largest = 0;
    for (size_t i = 0; i < m.layout.tensors.size(); i++) {
        const TensorInfo& t = m.layout.tensors[i];
        if (std::find(quantized.begin(), quantized.end(), t.offset) != quantized.end()) {
            new_offset[i] = kNF4Tag | m.nf4.size();
            m.nf4.push_back(nf4_weight_quantize(cpu_ops(), m.params.data() + t.offset, t.numel));
            largest = std::max(largest, t.numel);
        } else {
            new_offset[i] = packed.size();
            packed.insert(packed.end(), m.params.begin() + t.offset, m.params.begin() + t.offset + t.numel);
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
        for (size_t* o : {&l.attn_norm, &l.wq, &l.wk, &l.wv, &l.bq, &l.bk, &l.bv, &l.wo, &l.mlp_norm, &l.w_gate, &l.w_up, &l.w_down})
            remap(*o);
    m.params = std::move(packed);
    m.params.shrink_to_fit();
    m.dequant.resize(largest);
    m.absmax.resize((largest + 63) / 64);
    if (m.method == Method::Lora) m.method = Method::Qlora;
}

void model_set_lora(Model& m, const LoraConfig& lc, std::vector<float> adapters) {
    m.method = m.nf4.empty() ? Method::Lora : Method::Qlora;
    m.lora = lc;
    m.lora_layout = lora_layout(m.cfg, lc);
    if (adapters.size() != m.lora_layout.total) fail("model: %zu adapter values given, layout needs %zu", adapters.size(), m.lora_layout.total);
    m.adapters = std::move(adapters);
}

void model_add_lora(Model& m, const LoraConfig& lc, uint64_t seed) {
    std::vector<float> a;
    lora_init(m.cfg, lc, a, seed);
    model_set_lora(m, lc, std::move(a));
}

size_t Workspace::bytes() const {
    size_t n = resid.size() + final_ln.size() + final_rstd.size() + dresid.size() + dln.size() + datt.size() + dq.size() +
               dk.size() + dv.size() + dh.size() + dgate.size() + dup.size() + dfinal.size() + logits.size() + hc.size() +
               dhc.size() + nll.size() + rows.size();
    for (const LayerActs& a : acts) {
        n += a.ln1.size() + a.rstd1.size() + a.q.size() + a.k.size() + a.v.size() + a.att.size() + a.lse.size() +
             a.x_mid.size() + a.ln2.size() + a.rstd2.size() + a.gate.size() + a.up.size() + a.h.size();
        for (const auto& u : a.u) n += u.size();
    }
    return n * sizeof(float);
}

void workspace_init(Workspace& ws, const Model& m, int B, int T, bool recompute) {
    const ModelConfig& c = m.cfg;
    size_t N = (size_t)B * T, C = c.dim, Q = c.q_dim(), KV = c.kv_dim(), F = c.ffn_dim;
    ws.capacity = N;
    ws.B = B;
    ws.T = T;
    ws.recompute = recompute;
    ws.resid.assign((c.n_layers + 1) * N * C, 0.0f);
    ws.acts.assign(recompute ? 1 : c.n_layers, LayerActs{});
    for (LayerActs& a : ws.acts) {
        a.ln1.resize(N * C); a.rstd1.resize(N); a.q.resize(N * Q); a.k.resize(N * KV); a.v.resize(N * KV);
        a.att.resize(N * Q); a.lse.resize(N * c.n_heads); a.x_mid.resize(N * C); a.ln2.resize(N * C);
        a.rstd2.resize(N); a.gate.resize(N * F); a.up.resize(N * F); a.h.resize(N * F);
        for (int t = 0; t < LORA_NUM_TARGETS; t++)
            a.u[t].assign(m.has_adapters() && m.lora.has((LoraTarget)t) ? N * m.lora.rank : 0, 0.0f);
    }
    ws.final_ln.resize(N * C); ws.final_rstd.resize(N);
    ws.dresid.resize(N * C); ws.dln.resize(N * C); ws.datt.resize(N * Q); ws.dq.resize(N * Q);
    ws.dk.resize(N * KV); ws.dv.resize(N * KV); ws.dh.resize(N * F); ws.dgate.resize(N * F); ws.dup.resize(N * F);
    ws.dfinal.resize(N * C);
    ws.logits.resize((size_t)kLossChunk * c.vocab_size); ws.hc.resize(kLossChunk * C); ws.dhc.resize(kLossChunk * C);
    ws.nll.resize(kLossChunk); ws.rows.resize(N);
}

namespace {

void zero(std::vector<float>& v) { std::fill(v.begin(), v.end(), 0.0f); }

void layer_forward(const Pass& P, Workspace& ws, const Batch& batch, int l, LayerActs& A) {
    const ModelConfig& c = P.m.cfg;
    const LayerOffsets& o = P.m.off.layers[l];
    int N = ws.B * ws.T, C = c.dim, Q = c.q_dim(), KV = c.kv_dim(), F = c.ffn_dim;
    const float* x = ws.resid.data() + (size_t)l * N * C;
    float* out = ws.resid.data() + (size_t)(l + 1) * N * C;
    P.ops.rmsnorm_forward(A.ln1.data(), A.rstd1.data(), x, P.w(o.attn_norm), N, C, c.norm_eps);
    linear_forward(P, A.q.data(), A.ln1.data(), o.wq, o.bq, N, C, Q, l, LORA_Q, A.u[LORA_Q].data(), false);
    linear_forward(P, A.k.data(), A.ln1.data(), o.wk, o.bk, N, C, KV, l, LORA_K, A.u[LORA_K].data(), false);
    linear_forward(P, A.v.data(), A.ln1.data(), o.wv, o.bv, N, C, KV, l, LORA_V, A.u[LORA_V].data(), false);
    P.ops.rope_forward(A.q.data(), batch.pos.data(), N, c.n_heads, c.head_dim, c.rope_theta);
    P.ops.rope_forward(A.k.data(), batch.pos.data(), N, c.n_kv_heads, c.head_dim, c.rope_theta);
    P.ops.attention_forward(A.att.data(), A.lse.data(), A.q.data(), A.k.data(), A.v.data(), batch.seg.data(), ws.B,
                            ws.T, c.n_heads, c.n_kv_heads, c.head_dim);
    memcpy(A.x_mid.data(), x, (size_t)N * C * sizeof(float));
    linear_forward(P, A.x_mid.data(), A.att.data(), o.wo, SIZE_MAX, N, Q, C, l, LORA_O, A.u[LORA_O].data(), true);
    P.ops.rmsnorm_forward(A.ln2.data(), A.rstd2.data(), A.x_mid.data(), P.w(o.mlp_norm), N, C, c.norm_eps);
    linear_forward(P, A.gate.data(), A.ln2.data(), o.w_gate, SIZE_MAX, N, C, F, l, LORA_GATE, A.u[LORA_GATE].data(), false);
    linear_forward(P, A.up.data(), A.ln2.data(), o.w_up, SIZE_MAX, N, C, F, l, LORA_UP, A.u[LORA_UP].data(), false);
    P.ops.swiglu_forward(A.h.data(), A.gate.data(), A.up.data(), (size_t)N * F);
    memcpy(out, A.x_mid.data(), (size_t)N * C * sizeof(float));
    linear_forward(P, out, A.h.data(), o.w_down, SIZE_MAX, N, F, C, l, LORA_DOWN, A.u[LORA_DOWN].data(), true);
}

// On entry ws.dresid = dL/d(layer output); on exit dL/d(layer input).
void layer_backward(const Pass& P, Workspace& ws, const Batch& batch, int l, const LayerActs& A) {
    const ModelConfig& c = P.m.cfg;
    const LayerOffsets& o = P.m.off.layers[l];
    int N = ws.B * ws.T, C = c.dim, Q = c.q_dim(), KV = c.kv_dim(), F = c.ffn_dim;
    const float* x = ws.resid.data() + (size_t)l * N * C;
    // MLP branch: out = x_mid + down(h)
    zero(ws.dh);
    linear_backward(P, ws.dh.data(), ws.dresid.data(), A.h.data(), o.w_down, SIZE_MAX, N, F, C, l, LORA_DOWN, A.u[LORA_DOWN].data());
    P.ops.swiglu_backward(ws.dgate.data(), ws.dup.data(), ws.dh.data(), A.gate.data(), A.up.data(), (size_t)N * F);
    zero(ws.dln);
    linear_backward(P, ws.dln.data(), ws.dgate.data(), A.ln2.data(), o.w_gate, SIZE_MAX, N, C, F, l, LORA_GATE, A.u[LORA_GATE].data());
    linear_backward(P, ws.dln.data(), ws.dup.data(), A.ln2.data(), o.w_up, SIZE_MAX, N, C, F, l, LORA_UP, A.u[LORA_UP].data());
    P.ops.rmsnorm_backward(ws.dresid.data(), P.gw(o.mlp_norm), ws.dln.data(), A.x_mid.data(), P.w(o.mlp_norm),
                           A.rstd2.data(), N, C);
    // Attention branch: x_mid = x + o(att)
    zero(ws.datt);
    linear_backward(P, ws.datt.data(), ws.dresid.data(), A.att.data(), o.wo, SIZE_MAX, N, Q, C, l, LORA_O, A.u[LORA_O].data());
    P.ops.attention_backward(ws.dq.data(), ws.dk.data(), ws.dv.data(), ws.datt.data(), A.att.data(), A.lse.data(),
                             A.q.data(), A.k.data(), A.v.data(), batch.seg.data(), ws.B, ws.T, c.n_heads, c.n_kv_heads,
                             c.head_dim);
    P.ops.rope_backward(ws.dq.data(), batch.pos.data(), N, c.n_heads, c.head_dim, c.rope_theta);
    P.ops.rope_backward(ws.dk.data(), batch.pos.data(), N, c.n_kv_heads, c.head_dim, c.rope_theta);
    zero(ws.dln);
    linear_backward(P, ws.dln.data(), ws.dq.data(), A.ln1.data(), o.wq, o.bq, N, C, Q, l, LORA_Q, A.u[LORA_Q].data());
    linear_backward(P, ws.dln.data(), ws.dk.data(), A.ln1.data(), o.wk, o.bk, N, C, KV, l, LORA_K, A.u[LORA_K].data());
    linear_backward(P, ws.dln.data(), ws.dv.data(), A.ln1.data(), o.wv, o.bv, N, C, KV, l, LORA_V, A.u[LORA_V].data());
    P.ops.rmsnorm_backward(ws.dresid.data(), P.gw(o.attn_norm), ws.dln.data(), x, P.w(o.attn_norm), A.rstd1.data(), N, C);
}

LayerActs& acts_for(Workspace& ws, int l) { return ws.recompute ? ws.acts[0] : ws.acts[l]; }

void forward_layers(const Pass& P, Workspace& ws, const Batch& batch) {
    const ModelConfig& c = P.m.cfg;
    if ((size_t)batch.B * batch.T > ws.capacity)
        fail("internal: a %dx%d batch does not fit the workspace (%zu tokens)", batch.B, batch.T, ws.capacity);
    ws.B = batch.B;
    ws.T = batch.T;
    int N = ws.B * ws.T;
    P.ops.embedding_forward(ws.resid.data(), batch.tokens.data(), P.w(P.m.off.embed), N, c.dim);
    for (int l = 0; l < c.n_layers; l++) layer_forward(P, ws, batch, l, acts_for(ws, l));
    P.ops.rmsnorm_forward(ws.final_ln.data(), ws.final_rstd.data(), ws.resid.data() + (size_t)c.n_layers * N * c.dim,
                          P.w(P.m.off.final_norm), N, c.dim, c.norm_eps);
}

// The LM head and the weighted loss, chunked over the positions that carry weight: positions with
// weight 0 (padding, masked prompt) add nothing to loss or gradient, so they are skipped outright.
// With grads, dL/d(final_ln) is written to ws.dfinal and the head's weight gradient accumulates.
double lm_head_loss(const Pass& P, Workspace& ws, const Batch& batch, float grad_scale) {
    const ModelConfig& c = P.m.cfg;
    int N = ws.B * ws.T, C = c.dim, V = c.vocab_size;
    int nrows = 0;
    for (int i = 0; i < N; i++)
        if (batch.weights[i] != 0.0f) ws.rows[nrows++] = i;
    if (P.grads) zero(ws.dfinal);
    const float* W = P.w(P.m.off.lm_head);
    double loss = 0.0;
    for (int r0 = 0; r0 < nrows; r0 += kLossChunk) {
        int n = std::min(kLossChunk, nrows - r0);
        std::vector<int32_t> tgt(n);
        std::vector<float> wt(n);
        for (int i = 0; i < n; i++) {
            int row = ws.rows[r0 + i];
            memcpy(ws.hc.data() + (size_t)i * C, ws.final_ln.data() + (size_t)row * C, C * sizeof(float));
            tgt[i] = batch.targets[row];
            wt[i] = batch.weights[row];
            if (tgt[i] < 0 || tgt[i] >= V) fail("batch: target id %d at position %d is outside the vocabulary (%d)", tgt[i], row, V);
        }
        P.ops.matmul_forward(ws.logits.data(), ws.hc.data(), W, nullptr, n, C, V, false);
        P.ops.crossentropy_forward_backward(ws.logits.data(), ws.nll.data(), tgt.data(), wt.data(), n, V,
                                            P.grads ? grad_scale : 0.0f);
        for (int i = 0; i < n; i++) loss += (double)wt[i] * ws.nll[i];
        if (P.grads) {
            std::fill(ws.dhc.begin(), ws.dhc.begin() + (size_t)n * C, 0.0f);
            P.ops.matmul_backward(ws.dhc.data(), P.gw(P.m.off.lm_head), nullptr, ws.logits.data(), ws.hc.data(), W, n, C, V);
            for (int i = 0; i < n; i++)
                memcpy(ws.dfinal.data() + (size_t)ws.rows[r0 + i] * C, ws.dhc.data() + (size_t)i * C, C * sizeof(float));
        }
    }
    return loss;
}

}  // namespace

double model_forward_backward(const Model& m, Workspace& ws, const Batch& batch, float* grads, float grad_scale,
                              uint64_t dropout_key, const Ops& ops) {
    Pass P{m, ops, grads, m.has_adapters() ? m.lora.dropout : 0.0f, dropout_key};
    const ModelConfig& c = m.cfg;
    forward_layers(P, ws, batch);  // sets ws.B, ws.T to the batch's shape
    int N = ws.B * ws.T;
    double loss = lm_head_loss(P, ws, batch, grad_scale);
    zero(ws.dresid);
    ops.rmsnorm_backward(ws.dresid.data(), P.gw(m.off.final_norm), ws.dfinal.data(),
                         ws.resid.data() + (size_t)c.n_layers * N * c.dim, P.w(m.off.final_norm), ws.final_rstd.data(),
                         N, c.dim);
    for (int l = c.n_layers - 1; l >= 0; l--) {
        // Gradient checkpointing: refill the one activation buffer from the kept layer input. The
        // same kernels run in the same order as in the forward, so the gradients are bit-identical.
        if (ws.recompute) layer_forward(P, ws, batch, l, ws.acts[0]);
        layer_backward(P, ws, batch, l, acts_for(ws, l));
    }
    if (P.gw(m.off.embed)) ops.embedding_backward(P.gw(m.off.embed), ws.dresid.data(), batch.tokens.data(), N, c.dim);
    return loss;
}

double model_forward_loss(const Model& m, Workspace& ws, const Batch& batch, const Ops& ops) {
    Pass P{m, ops, nullptr, 0.0f, 0};
    forward_layers(P, ws, batch);
    return lm_head_loss(P, ws, batch, 0.0f);
}

void model_logits(const Model& m, const int32_t* tokens, int T, float* logits) {
    Workspace ws;
    workspace_init(ws, m, 1, T, true);
    Batch b;
    b.resize(1, T);
    for (int t = 0; t < T; t++) {
        b.tokens[t] = tokens[t];
        b.pos[t] = t;
        b.seg[t] = 0;
    }
    Pass P{m, cpu_ops(), nullptr, 0.0f, 0};
    forward_layers(P, ws, b);
    cpu_ops().matmul_forward(logits, ws.final_ln.data(), P.w(m.off.lm_head), nullptr, T, m.cfg.dim, m.cfg.vocab_size, false);
}
