// The decoder: model set-up (random, NF4, LoRA), the workspace, and a whole forward and backward
// over a batch, layer by layer (model/layer.cpp), then the LM head and the loss, chunked.
#include "model/model.h"

#include <algorithm>
#include <climits>
#include <cmath>
#include <cstring>
#include <functional>

#include "model/layer.h"
#include "model/util.h"

void model_init(Model& m, const ModelConfig& cfg, std::vector<float> params) {
    cfg.validate("model");
    const ParamLayout layout = param_layout(cfg);
    if (params.size() != layout.total) fail("model: %zu weights given, config needs %zu", params.size(), layout.total);
    // A fresh model: nothing of an earlier one stays (its adapters, token rows, NF4 parts, device copy)
    m = Model{};
    m.cfg = cfg;
    m.layout = layout;
    m.off = model_offsets(cfg);
    m.params = std::move(params);
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
// The weights QLoRA stores in NF4: the seven projections of every layer.
std::vector<size_t> base_projections(const ModelOffsets& off) {
    std::vector<size_t> projections;
    for (const LayerOffsets& l : off.layers)
        for (int t = 0; t < 7; t++) projections.push_back(l.projection(t));
    return projections;
}

// The NF4 base: every projection becomes an NF4 weight (made by `quantized` from its tensor), the
// other tensors are packed into a smaller FP32 buffer (filled by `fp32`), and every offset is
// pointed at its new home: an NF4 index (tagged) or the packed position.
void build_nf4_base(Model& m, const std::function<NF4Weight(size_t ti)>& quantized,
                    const std::function<void(size_t ti, float* dst)>& fp32) {
    const std::vector<size_t> projections = base_projections(m.off);
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
    if (m.method == Method::Lora) m.method = Method::Qlora;
    m.device.reset();  // its layout is the FP32 one (model_upload again)
}
// A fresh NF4 model of shape cfg, its tensors from `quantized` and `fp32` (build_nf4_base).
void new_nf4_model(Model& m, const ModelConfig& cfg, const std::function<NF4Weight(size_t ti)>& quantized,
                   const std::function<void(size_t ti, float* dst)>& fp32) {
    cfg.validate("model");
    m = Model{};
    m.cfg = cfg;
    m.layout = param_layout(cfg);
    m.off = model_offsets(cfg);
    build_nf4_base(m, quantized, fp32);
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

void model_load_nf4(Model& m, const std::string& path) {
    const ModelFile mf(path);
    std::vector<float> tmp;  // one projection in FP32 at a time
    new_nf4_model(
        m, mf.cfg, [&](size_t i) {
            tmp.resize(mf.layout.tensors[i].numel);
            mf.read(i, tmp.data());
            return nf4_weight_quantize(cpu_ops(), tmp.data(), tmp.size());
        },
        [&](size_t i, float* dst) { mf.read(i, dst); });
}

void nf4_round_trip_base(const ModelConfig& cfg, std::vector<float>& params) {
    const std::vector<size_t> projections = base_projections(model_offsets(cfg));
    for (const TensorInfo& t : param_layout(cfg).tensors)
        if (std::find(projections.begin(), projections.end(), t.offset) != projections.end())
            nf4_weight_dequantize(cpu_ops(), nf4_view(nf4_weight_quantize(cpu_ops(), params.data() + t.offset, t.numel)),
                                  as_act(params.data() + t.offset));
}

void model_init_random_nf4(Model& m, const ModelConfig& cfg, uint64_t seed) {
    new_nf4_model(
        m, cfg, [&](size_t i) { return nf4_weight_random(m.layout.tensors[i].numel, seed * 7919ull + i); },
        [&](size_t i, float* dst) { init_random_tensor(m.layout.tensors[i], i, dst, seed); });
}

void model_init_random_quantized(Model& m, const ModelConfig& cfg, uint64_t seed) {
    std::vector<float> tmp;  // one projection in FP32 at a time
    new_nf4_model(
        m, cfg, [&](size_t i) {
            tmp.resize(m.layout.tensors[i].numel);
            init_random_tensor(m.layout.tensors[i], i, tmp.data(), seed);
            return nf4_weight_quantize(cpu_ops(), tmp.data(), tmp.size());
        },
        [&](size_t i, float* dst) { init_random_tensor(m.layout.tensors[i], i, dst, seed); });
}

namespace {
// Table t's rows of the trainable tokens `ids` in the host params, one after another, to or from `rows`.
void table_rows(Model& m, int t, const std::vector<int32_t>& ids, float* rows, bool to_table) {
    const size_t C = m.cfg.dim, table = t == LORA_TABLE_EMBED ? m.off.embed : m.off.lm_head;
    for (size_t i = 0; i < ids.size(); i++) {
        float* row = m.params.data() + table + (size_t)ids[i] * C;
        if (to_table) std::copy_n(rows + i * C, C, row);
        else std::copy_n(row, C, rows + i * C);
    }
}

// The base's own rows back where trainable tokens replaced them (Model::token_base).
void restore_token_rows(Model& m) {
    size_t at = 0, rows = m.lora.tokens[LORA_TABLE_EMBED].size() + m.lora.tokens[LORA_TABLE_LM_HEAD].size();
    for (int t = 0; t < LORA_NUM_TABLES && m.token_base.size() == rows * m.cfg.dim; t++) {
        table_rows(m, t, m.lora.tokens[t], m.token_base.data() + at, true);
        at += m.lora.tokens[t].size() * m.cfg.dim;
    }
    m.token_base.clear();
}
}  // namespace

void model_set_lora(Model& m, const LoraConfig& lc, std::vector<float> adapters) {
    restore_token_rows(m);
    m.method = m.nf4.empty() ? Method::Lora : Method::Qlora;
    m.lora = lc;
    m.lora.save_modules = lora_saves(m.cfg, lc.save_modules);
    lora_check_tokens(m.cfg, m.lora, "adapter");
    lora_check_layers(m.cfg, m.lora, "adapter");
    m.lora_layout = lora_layout(m.cfg, m.lora);
    if (adapters.size() != m.lora_layout.total) fail("model: %zu adapter values given, layout needs %zu", adapters.size(), m.lora_layout.total);
    m.adapters = std::move(adapters);
    // The trainable tokens' rows go into the tables the ops read, the base's own kept aside.
    for (int t = 0; t < LORA_NUM_TABLES; t++) {
        const size_t at = m.token_base.size();
        m.token_base.resize(at + m.lora.tokens[t].size() * m.cfg.dim);
        table_rows(m, t, m.lora.tokens[t], m.token_base.data() + at, false);
    }
    model_put_token_rows(m, cpu_ops());
    // A device copy holds the old adapters (or none, and masters of another size): reading it would
    // run stale weights or past its buffers, so it goes (model_upload again).
    m.device.reset();
}

void model_add_lora(Model& m, const LoraConfig& lc, uint64_t seed) {
    std::vector<float> a;
    lora_init(m.cfg, lc, a, seed);
    model_set_lora(m, lc, std::move(a));
    // The saved modules and token rows start as the base's (FP32 in every method: QLoRA quantizes
    // only the projections), so training starts at the base model.
    const LoraLayout& L = m.lora_layout;
    const size_t n = (size_t)m.cfg.vocab_size * m.cfg.dim;
    if (L.embed != SIZE_MAX) std::copy_n(m.params.begin() + m.off.embed, n, m.adapters.begin() + L.embed);
    if (L.lm_head != SIZE_MAX && L.lm_head != L.embed)  // (a tied model's one tensor is copied once)
        std::copy_n(m.params.begin() + m.off.lm_head, n, m.adapters.begin() + L.lm_head);
    for (int t = 0, at = 0; t < LORA_NUM_TABLES; at += (int)m.lora.tokens[t].size(), t++)
        std::copy_n(m.token_base.begin() + (size_t)at * m.cfg.dim, m.lora.tokens[t].size() * m.cfg.dim,
                    m.adapters.begin() + L.tokens[t]);
    model_put_token_rows(m, cpu_ops());  // (model_set_lora put lora_init's zeros there)
    if (lc.use_dora) lora_init_magnitudes(m);
}

void lora_init_magnitudes(Model& m) {
    const Pass P(m, cpu_ops(), nullptr, 0.0f, 0);
    const LoraLayout& L = m.lora_layout;
    for (int l = 0; l < m.cfg.n_layers; l++)
        for (int t = 0; t < LORA_NUM_TARGETS; t++) {
            if (!m.lora.adapts(l, (LoraTarget)t)) continue;
            int in, out;
            lora_target_shape(m.cfg, (LoraTarget)t, in, out);
            // B = 0 (a new adapter): the norms of W alone, without forming B·A (r·in·out multiply-adds)
            const float* B = m.adapters.data() + L.B(l, t);
            const bool b_zero = std::all_of(B, B + (size_t)out * m.lora.rank, [](float b) { return b == 0.0f; });
            cpu::dora_norm(m.adapters.data() + L.M(l, t), (const float*)P.w(m.off.layers[l].projection(t)),
                           m.adapters.data() + L.A(l, t), B, out, in, b_zero ? 0 : m.lora.rank, m.lora.scale());
        }
    m.device.reset();  // the magnitudes changed (as model_set_lora)
}

std::vector<int32_t> untrained_tokens(const Model& m, const std::vector<int32_t>& ids) {
    const int V = m.cfg.vocab_size, C = m.cfg.dim;
    std::vector<int32_t> found;
    for (size_t table : {m.off.embed, m.off.lm_head == m.off.embed ? SIZE_MAX : m.off.lm_head}) {
        if (table == SIZE_MAX) continue;
        std::vector<float> norm(V);
        #pragma omp parallel for
        for (int v = 0; v < V; v++) {
            const float* row = m.params.data() + table + (size_t)v * C;
            double s = 0;
            for (int i = 0; i < C; i++) s += (double)row[i] * row[i];
            norm[v] = (float)std::sqrt(s);
        }
        std::vector<float> sorted = norm;
        std::nth_element(sorted.begin(), sorted.begin() + V / 2, sorted.end());
        const float floor = 1e-3f * sorted[V / 2];
        for (int32_t id : ids)
            if (id >= 0 && id < V && norm[id] < floor) found.push_back(id);
    }
    std::sort(found.begin(), found.end());
    found.erase(std::unique(found.begin(), found.end()), found.end());
    return found;
}

size_t Workspace::bytes() const {
    size_t n = 0;
    for (const Buffer* b : {&resid, &final_ln, &final_rstd, &dresid, &dln, &datt, &dq, &dk, &dv, &dh, &dgate, &dup,
                            &dfinal, &dq_pre, &dk_pre, &ddora, &dora_norms, &logits, &hc, &dhc, &token_dlogits, &nll, &targets, &weights, &rows, &tokens,
                            &pos, &seg})
        n += b->bytes;
    for (const LayerActs& a : acts)
        for (const Buffer* b : a.buffers()) n += b->bytes;
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
    for (LayerActs& a : ws.acts) layer_acts_init(a, m, N, ops);
    ws.final_ln = act(N * C); ws.final_rstd = f32(N);
    ws.dresid = act(N * C); ws.dln = act(N * C); ws.datt = act(N * Q); ws.dq = act(N * Q);
    ws.dk = act(N * KV); ws.dv = act(N * KV); ws.dh = act(N * F); ws.dgate = act(N * F); ws.dup = act(N * F);
    ws.dfinal = act(N * C);
    ws.dq_pre = act(c.qk_norm ? N * Q : 0); ws.dk_pre = act(c.qk_norm ? N * KV : 0);
    ws.ddora = act(m.has_adapters() ? N * dora_group_width(c, m.lora) : 0);
    ws.dora_norms = f32(dora_norm_floats(m));
    size_t K = ws.chunk = loss_chunk(ops.host);
    ws.logits = act(K * c.vocab_size); ws.hc = act(K * C); ws.dhc = act(K * C);
    ws.token_dlogits = act(m.has_adapters() ? K * lora_table_tokens(c, m.lora, LORA_TABLE_LM_HEAD).size() : 0);
    ws.nll = f32(N); ws.targets = i32(N); ws.weights = f32(N); ws.rows = i32(N);
    ws.tokens = i32(N); ws.pos = i32(N); ws.seg = i32(N);
}

namespace {

// Row l of a [rows, n] storage tensor.
act* row(const Pass& P, const Buffer& b, size_t l, size_t n) { return P.ops.at(b.a(), l * n); }

LayerActs& acts_for(Workspace& ws, int l) { return ws.recompute ? ws.acts[0] : ws.acts[l]; }

// Layer l over the workspace's batch: its input and output are rows l and l+1 of the residual
// stream, and it attends within each sequence (ws.seg: padding and packed examples).
void layer_forward_batch(const Pass& P, Workspace& ws, int l) {
    const ModelConfig& c = P.m.cfg;
    const int N = ws.B * ws.T;
    layer_forward(P, l, N, row(P, ws.resid, l, (size_t)N * c.dim), row(P, ws.resid, l + 1, (size_t)N * c.dim),
                  ws.pos.i(), acts_for(ws, l), [&](LayerActs& A, int layer) {
                      P.ops.attention_forward(A.att.a(), A.lse.f(), A.q.a(), A.k.a(), A.v.a(), ws.seg.i(), ws.B, ws.T,
                                              c.n_heads, c.n_kv_heads, c.head_dim, c.attn_scale(),
                                              c.window_of_layer(layer));
                  });
}

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
    P.set_positions(N ? *std::max_element(batch.pos.begin(), batch.pos.begin() + N) + 1 : 0);
    P.ops.embedding_forward(ws.resid.a(), ws.tokens.i(), P.w(P.m.off.embed), N, c.dim, c.embedding_scale());
    // NEFTune as transformers adds it (a hook on the embedding's output, after Gemma's scale): the
    // magnitude is alpha / sqrt(L · dim) with L the batch's row length, padded or packed, and every
    // position gets noise (padding too: it is never attended to nor scored).
    if (P.neftune_alpha > 0.0f)
        P.ops.embedding_noise(ws.resid.a(), (size_t)N * c.dim, P.neftune_alpha / std::sqrt((float)ws.T * c.dim),
                              hash64(P.dropout_key, 0x4E4546ull));
    for (int l = 0; l < c.n_layers; l++) layer_forward_batch(P, ws, l);
    P.ops.rmsnorm_forward(ws.final_ln.a(), ws.final_rstd.f(), row(P, ws.resid, c.n_layers, (size_t)N * c.dim),
                          P.w(P.m.off.final_norm), N, c.dim, c.norm_eps, nullptr);
}

// The trainable tokens of table t (LoraConfig::tokens) when this pass trains them, else 0.
int token_count(const Pass& P, int t) {
    return P.grads && P.m.has_adapters() ? (int)lora_table_tokens(P.m.cfg, P.m.lora, t).size() : 0;
}

// The embedding's trainable token rows: the batch positions holding one of the tokens (found on the
// host, which has the batch) gather their rows of dresid, which then add up per token as the
// embedding backward adds rows of a table. The LM head's row lists (ws.rows, ws.targets) are free by
// now and hold the positions and their tokens' slots.
void token_rows_backward(const Pass& P, Workspace& ws, const Batch& batch) {
    const std::vector<int32_t>& ids = P.m.lora.tokens[LORA_TABLE_EMBED];
    std::vector<std::pair<int32_t, int32_t>> slot_of;  // (id, slot), sorted by id
    for (size_t j = 0; j < ids.size(); j++) slot_of.push_back({ids[j], (int32_t)j});
    std::sort(slot_of.begin(), slot_of.end());
    std::vector<int32_t> pos, slot;
    for (int i = 0; i < ws.B * ws.T; i++) {
        auto it = std::lower_bound(slot_of.begin(), slot_of.end(), std::make_pair(batch.tokens[i], INT32_MIN));
        if (it != slot_of.end() && it->first == batch.tokens[i]) pos.push_back(i), slot.push_back(it->second);
    }
    if (pos.empty()) return;
    const int n = (int)pos.size(), C = P.m.cfg.dim;
    P.ops.to_device(ws.rows.p, pos.data(), n * sizeof(int32_t));
    P.ops.to_device(ws.targets.p, slot.data(), n * sizeof(int32_t));
    P.ops.gather_rows(ws.dln.a(), ws.dresid.a(), ws.rows.i(), n, C);
    P.ops.embedding_backward(P.grads + P.m.lora_layout.tokens[LORA_TABLE_EMBED], ws.dln.a(), ws.targets.i(), n, C,
                             P.m.cfg.embedding_scale());
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
            // The trainable tokens' rows of the head: their k columns of dlogits, then dRows += dlogitsᵀ·h
            if (const int k = token_count(P, LORA_TABLE_LM_HEAD)) {
                P.ops.gather_columns(ws.token_dlogits.a(), ws.logits.a(), P.W.tokens[LORA_TABLE_LM_HEAD], n, V, k);
                P.ops.matmul_backward(nullptr, P.grads + P.m.lora_layout.tokens[LORA_TABLE_LM_HEAD], nullptr,
                                      ws.token_dlogits.a(), ws.hc.a(), nullptr, n, C, k, false);
            }
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
                              uint64_t dropout_key, float neftune_alpha, const Ops& ops) {
    Pass P(m, ops, grads, m.has_adapters() ? m.lora.dropout : 0.0f, dropout_key, neftune_alpha);
    P.dora_norms = ws.dora_norms.f();
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
        if (ws.recompute) layer_forward_batch(P, ws, l);
        layer_backward(P, ws, l, acts_for(ws, l));
    }
    if (P.gw(m.off.embed)) ops.embedding_backward(P.gw(m.off.embed), ws.dresid.a(), ws.tokens.i(), N, c.dim, c.embedding_scale());
    if (token_count(P, LORA_TABLE_EMBED)) token_rows_backward(P, ws, batch);
    return loss;
}

double model_forward_loss(const Model& m, Workspace& ws, const Batch& batch, const Ops& ops) {
    Pass P(m, ops, nullptr, 0.0f, 0);
    P.dora_norms = ws.dora_norms.f();
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
    P.dora_norms = ws.dora_norms.f();
    forward_layers(P, ws, b);
    Buffer out = act_buffer(ops, (size_t)T * m.cfg.vocab_size, Mem::activations);
    ops.matmul_forward(out.a(), ws.final_ln.a(), P.w(m.off.lm_head), nullptr, T, m.cfg.dim, m.cfg.vocab_size, nullptr);
    ops.download(logits, out.a(), (size_t)T * m.cfg.vocab_size);
}
