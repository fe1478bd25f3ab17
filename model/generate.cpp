// KV-cached decoding. A prefill pass runs the prompts' first positions through the layers at once
// (attention as in training); then each step runs every decoder layer on one new token per
// sequence: the same linear layers (with LoRA) as training, RoPE at the sequence's own position,
// and attention of the new query against the sequence's cached keys/values (kernels:
// attention_decode).
#include "model/generate.h"

#include <algorithm>
#include <climits>
#include <cmath>
#include <cstring>
#include <numeric>

#include "model/linear.h"

int32_t sample_token(float* logits, int V, const SampleOptions& opt, Rng& rng) {
    if (opt.temperature <= 0.0f) return (int32_t)(std::max_element(logits, logits + V) - logits);
    std::vector<int32_t> idx(V);
    std::iota(idx.begin(), idx.end(), 0);
    int k = opt.top_k > 0 && opt.top_k < V ? opt.top_k : V;
    std::partial_sort(idx.begin(), idx.begin() + k, idx.end(), [&](int a, int b) { return logits[a] > logits[b]; });
    float mx = logits[idx[0]];
    std::vector<double> p(k);
    double sum = 0;
    for (int i = 0; i < k; i++) sum += p[i] = std::exp((logits[idx[i]] - mx) / opt.temperature);
    // Nucleus: keep the most probable tokens until their mass reaches top_p.
    int keep = k;
    if (opt.top_p < 1.0f) {
        double acc = 0;
        for (int i = 0; i < k; i++)
            if ((acc += p[i] / sum) >= opt.top_p) { keep = i + 1; break; }
    }
    double total = 0;
    for (int i = 0; i < keep; i++) total += p[i];
    double r = rng.uniform() * total;
    for (int i = 0; i < keep; i++)
        if ((r -= p[i]) <= 0) return idx[i];
    return idx[keep - 1];
}

std::vector<std::vector<int32_t>> generate(const Model& m, const std::vector<std::vector<int32_t>>& prompts,
                                           const SampleOptions& opt, const std::vector<int32_t>& stop_ids,
                                           const std::function<void(int, int32_t)>& on_token, const Ops& ops) {
    const ModelConfig& c = m.cfg;
    Pass P(m, ops, nullptr, 0.0f, 0);
    int S = (int)prompts.size(), C = c.dim, Q = c.q_dim(), KV = c.kv_dim(), F = c.ffn_dim, V = c.vocab_size;
    int max_T = 0, min_plen = INT32_MAX;
    for (const auto& p : prompts) {
        if (p.empty()) fail("generate: empty prompt");
        max_T = std::max(max_T, (int)p.size() + opt.max_new_tokens);
        min_plen = std::min(min_plen, (int)p.size());
    }
    std::vector<std::vector<int32_t>> out(S);
    if (S == 0) return out;
    // Prefill: the first Tp positions of every prompt (all but the last token of the shortest one:
    // no logits are needed there) go through the layers in passes of G sequences × Tp rows, with the
    // training forward's attention over each sequence, instead of Tp steps of S rows: big GEMMs
    // instead of thin ones, and no LM head for prompt positions. Their k and v fill the cache as the
    // steps would. G keeps a pass within kPrefillRows rows (unless one prompt alone is longer), so
    // the activation buffers stay small next to the KV cache, also when ./train samples while its
    // own buffers are allocated.
    constexpr int kPrefillRows = 2048;
    const int Tp = min_plen - 1, G = Tp > 0 ? std::max(1, std::min(S, kPrefillRows / Tp)) : 0;
    const int rows = std::max(S, G * Tp);
    // Cache layout per layer: [S, max_T, kv_dim], as attention_decode reads it.
    size_t layer_cache = (size_t)S * max_T * KV;
    const Mem A = Mem::activations;
    Buffer kc = act_buffer(ops, layer_cache * c.n_layers, A), vc = act_buffer(ops, layer_cache * c.n_layers, A);
    Buffer x = act_buffer(ops, (size_t)rows * C, A), ln = act_buffer(ops, (size_t)rows * C, A),
           rstd(ops, rows * sizeof(float), A), q = act_buffer(ops, (size_t)rows * Q, A),
           k = act_buffer(ops, (size_t)rows * KV, A), v = act_buffer(ops, (size_t)rows * KV, A),
           att = act_buffer(ops, (size_t)rows * Q, A), gate = act_buffer(ops, (size_t)rows * F, A),
           up = act_buffer(ops, (size_t)rows * F, A), h = act_buffer(ops, (size_t)rows * F, A),
           dlogits = act_buffer(ops, (size_t)S * V, A),
           u = act_buffer(ops, (size_t)rows * kMaxLinearGroup * std::max(1, m.lora.rank), A),
           dtok(ops, rows * sizeof(int32_t), A), dpos(ops, rows * sizeof(int32_t), A), dlen(ops, S * sizeof(int32_t), A),
           dslot(ops, rows * sizeof(int32_t), A);
    // QK-norm (Qwen3): k as projected, and the norm's statistics per row and head (q as projected
    // goes to att, which is free until attention writes it).
    const size_t qk = c.qk_norm ? 1 : 0;
    Buffer k_pre = act_buffer(ops, qk * rows * KV, A), rstd_qk(ops, qk * rows * c.n_heads * sizeof(float), A);
    std::vector<int32_t> tok(rows), pos(rows), len(S), slot(rows);  // slot: the cache row [s, pos] of each row

    // Every layer on n rows (tokens tok, positions pos, cache slots slot, uploaded by this call): each
    // row's k and v go into the cache at its slot, then attend(K, V, layer) fills att from q (K, V:
    // this layer's cache). Leaves the last hidden state of every row in x.
    auto forward_rows = [&](int n, const std::function<void(act* K, act* V, int layer)>& attend) {
        ops.to_device(dtok.p, tok.data(), n * sizeof(int32_t));
        ops.to_device(dpos.p, pos.data(), n * sizeof(int32_t));
        ops.to_device(dslot.p, slot.data(), n * sizeof(int32_t));
        ops.embedding_forward(x.a(), dtok.i(), P.w(m.off.embed), n, C, c.embedding_scale());
        for (int l = 0; l < c.n_layers; l++) {
            const LayerOffsets& o = m.off.layers[l];
            ops.rmsnorm_forward(ln.a(), rstd.f(), x.a(), P.w(o.attn_norm), n, C, c.norm_eps, nullptr);
            act* qp = c.qk_norm ? att.a() : q.a();
            act* kp = c.qk_norm ? k_pre.a() : k.a();
            linear_forward(P, ln.a(), n, C, l,
                           {{qp, nullptr, o.wq, o.bq, Q, LORA_Q}, {kp, nullptr, o.wk, o.bk, KV, LORA_K},
                            {v.a(), nullptr, o.wv, o.bv, KV, LORA_V}},
                           u.a());
            if (c.qk_norm) {
                ops.rmsnorm_forward(q.a(), rstd_qk.f(), qp, P.w(o.q_norm), n * c.n_heads, c.head_dim, c.norm_eps, nullptr);
                ops.rmsnorm_forward(k.a(), rstd_qk.f(), kp, P.w(o.k_norm), n * c.n_kv_heads, c.head_dim, c.norm_eps, nullptr);
            }
            if (c.rope_in_layer(l)) {
                ops.rope_forward(q.a(), dpos.i(), n, c.n_heads, c.head_dim, P.rope_table(l));
                ops.rope_forward(k.a(), dpos.i(), n, c.n_kv_heads, c.head_dim, P.rope_table(l));
            }
            act* K = ops.at(kc.a(), l * layer_cache);
            act* Vv = ops.at(vc.a(), l * layer_cache);
            ops.scatter_rows(K, k.a(), dslot.i(), n, KV);  // the rows' k and v into their sequences' caches
            ops.scatter_rows(Vv, v.a(), dslot.i(), n, KV);
            attend(K, Vv, l);
            // x += the branch's output, or with post norms (Gemma 3) x += rmsnorm(output), the output
            // going through ln, which is free once the branch's GEMMs have read it.
            const bool post = c.post_norms;
            linear_forward(P, att.a(), n, Q, l, {{post ? ln.a() : x.a(), post ? nullptr : x.a(), o.wo, SIZE_MAX, C, LORA_O}}, u.a());
            if (post) ops.rmsnorm_forward(x.a(), rstd.f(), ln.a(), P.w(o.post_attn_norm), n, C, c.norm_eps, x.a());
            ops.rmsnorm_forward(ln.a(), rstd.f(), x.a(), P.w(o.mlp_norm), n, C, c.norm_eps, nullptr);
            linear_forward(P, ln.a(), n, C, l,
                           {{gate.a(), nullptr, o.w_gate, SIZE_MAX, F, LORA_GATE},
                            {up.a(), nullptr, o.w_up, SIZE_MAX, F, LORA_UP}},
                           u.a());
            ops.glu_forward(h.a(), gate.a(), up.a(), (size_t)n * F, c.mlp_act);
            linear_forward(P, h.a(), n, F, l, {{post ? ln.a() : x.a(), post ? nullptr : x.a(), o.w_down, SIZE_MAX, C, LORA_DOWN}}, u.a());
            if (post) ops.rmsnorm_forward(x.a(), rstd.f(), ln.a(), P.w(o.post_mlp_norm), n, C, c.norm_eps, x.a());
        }
    };

    if (Tp > 0) {
        Buffer seg(ops, (size_t)G * Tp * sizeof(int32_t), A), lse(ops, (size_t)G * Tp * c.n_heads * sizeof(float), A);
        for (int s0 = 0; s0 < S; s0 += G) {
            // Row i·Tp + t is position t of sequence s0 + i: the [B = g, T = Tp] layout that
            // attention_forward takes, causal within each sequence (one segment per batch row).
            const int g = std::min(G, S - s0);
            for (int i = 0; i < g; i++)
                for (int t = 0; t < Tp; t++) {
                    tok[i * Tp + t] = prompts[s0 + i][t];
                    pos[i * Tp + t] = t;
                    slot[i * Tp + t] = (s0 + i) * max_T + t;
                }
            forward_rows(g * Tp, [&](act*, act*, int l) {
                ops.attention_forward(att.a(), lse.f(), q.a(), k.a(), v.a(), seg.i(), g, Tp, c.n_heads,
                                      c.n_kv_heads, c.head_dim, c.attn_scale(), c.window_of_layer(l));
            });
        }
    }
    std::vector<float> logits((size_t)S * V);
    std::vector<char> done(S, 0);
    Rng rng(opt.seed);
    for (int step = Tp;; step++) {
        // Every sequence, finished or not, takes part in the step (a finished one just repeats its
        // last token): one GEMM of S rows per layer, and results of the live ones are unaffected.
        bool any = false;
        for (int s = 0; s < S; s++) {
            int plen = (int)prompts[s].size();
            tok[s] = step < plen ? prompts[s][step] : out[s].empty() ? prompts[s].back() : out[s].back();
            pos[s] = std::min(step, max_T - 1);
            len[s] = pos[s] + 1;
            slot[s] = s * max_T + pos[s];
            any |= !done[s];
        }
        if (!any) break;
        ops.to_device(dlen.p, len.data(), S * sizeof(int32_t));
        forward_rows(S, [&](act* K, act* Vv, int l) {
            ops.attention_decode(att.a(), q.a(), K, Vv, dlen.i(), S, max_T, c.n_heads, c.n_kv_heads, c.head_dim,
                                 c.attn_scale(), c.window_of_layer(l));
        });
        ops.rmsnorm_forward(ln.a(), rstd.f(), x.a(), P.w(m.off.final_norm), S, C, c.norm_eps, nullptr);
        ops.matmul_forward(dlogits.a(), ln.a(), P.w(m.off.lm_head), nullptr, S, C, V, nullptr);
        ops.download(logits.data(), dlogits.a(), (size_t)S * V);
        for (int s = 0; s < S; s++) {
            if (done[s] || step + 1 < (int)prompts[s].size()) continue;  // still feeding the prompt
            int32_t next = sample_token(logits.data() + (size_t)s * V, V, opt, rng);
            if (std::find(stop_ids.begin(), stop_ids.end(), next) != stop_ids.end()) {
                done[s] = 1;
                continue;
            }
            out[s].push_back(next);
            if (on_token) on_token(s, next);
            if ((int)out[s].size() >= opt.max_new_tokens) done[s] = 1;
        }
    }
    return out;
}
