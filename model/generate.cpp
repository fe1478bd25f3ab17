// KV-cached decoding. Each step runs every decoder layer on one new token per sequence: the same
// linear layers (with LoRA) as training, RoPE at the sequence's own position, and attention of the
// new query against the sequence's cached keys/values (kernels: attention_decode).
#include "model/generate.h"

#include <algorithm>
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
                                           const std::function<void(int, int32_t)>& on_token) {
    const ModelConfig& c = m.cfg;
    const Ops& ops = cpu_ops();
    Pass P{m, ops, nullptr, 0.0f, 0};
    int S = (int)prompts.size(), C = c.dim, Q = c.q_dim(), KV = c.kv_dim(), F = c.ffn_dim, V = c.vocab_size;
    int max_T = 0;
    for (const auto& p : prompts) {
        if (p.empty()) fail("generate: empty prompt");
        max_T = std::max(max_T, (int)p.size() + opt.max_new_tokens);
    }
    std::vector<std::vector<int32_t>> out(S);
    if (S == 0) return out;
    // Cache layout per layer: [S, max_T, kv_dim], as attention_decode reads it.
    size_t layer_cache = (size_t)S * max_T * KV;
    std::vector<float> kc(layer_cache * c.n_layers), vc(layer_cache * c.n_layers);
    std::vector<float> x(S * C), ln(S * C), rstd(S), q(S * Q), k(S * KV), v(S * KV), att(S * Q), gate((size_t)S * F),
        up((size_t)S * F), h((size_t)S * F), logits((size_t)S * V), u((size_t)S * std::max(1, m.lora.rank));
    std::vector<int32_t> tok(S), pos(S), len(S);
    std::vector<char> done(S, 0);
    Rng rng(opt.seed);
    for (int step = 0;; step++) {
        // Every sequence, finished or not, takes part in the step (a finished one just repeats its
        // last token): one GEMM of S rows per layer, and results of the live ones are unaffected.
        bool any = false;
        for (int s = 0; s < S; s++) {
            int plen = (int)prompts[s].size();
            tok[s] = step < plen ? prompts[s][step] : out[s].empty() ? prompts[s].back() : out[s].back();
            pos[s] = std::min(step, max_T - 1);
            len[s] = pos[s] + 1;
            any |= !done[s];
        }
        if (!any) break;
        ops.embedding_forward(x.data(), tok.data(), P.w(m.off.embed), S, C);
        for (int l = 0; l < c.n_layers; l++) {
            const LayerOffsets& o = m.off.layers[l];
            ops.rmsnorm_forward(ln.data(), rstd.data(), x.data(), P.w(o.attn_norm), S, C, c.norm_eps);
            linear_forward(P, q.data(), ln.data(), o.wq, o.bq, S, C, Q, l, LORA_Q, u.data(), false);
            linear_forward(P, k.data(), ln.data(), o.wk, o.bk, S, C, KV, l, LORA_K, u.data(), false);
            linear_forward(P, v.data(), ln.data(), o.wv, o.bv, S, C, KV, l, LORA_V, u.data(), false);
            ops.rope_forward(q.data(), pos.data(), S, c.n_heads, c.head_dim, c.rope_theta);
            ops.rope_forward(k.data(), pos.data(), S, c.n_kv_heads, c.head_dim, c.rope_theta);
            float* K = kc.data() + l * layer_cache;
            float* Vv = vc.data() + l * layer_cache;
            for (int s = 0; s < S; s++) {
                memcpy(K + ((size_t)s * max_T + pos[s]) * KV, k.data() + (size_t)s * KV, KV * sizeof(float));
                memcpy(Vv + ((size_t)s * max_T + pos[s]) * KV, v.data() + (size_t)s * KV, KV * sizeof(float));
            }
            ops.attention_decode(att.data(), q.data(), K, Vv, len.data(), S, max_T, c.n_heads, c.n_kv_heads, c.head_dim);
            linear_forward(P, x.data(), att.data(), o.wo, SIZE_MAX, S, Q, C, l, LORA_O, u.data(), true);
            ops.rmsnorm_forward(ln.data(), rstd.data(), x.data(), P.w(o.mlp_norm), S, C, c.norm_eps);
            linear_forward(P, gate.data(), ln.data(), o.w_gate, SIZE_MAX, S, C, F, l, LORA_GATE, u.data(), false);
            linear_forward(P, up.data(), ln.data(), o.w_up, SIZE_MAX, S, C, F, l, LORA_UP, u.data(), false);
            ops.swiglu_forward(h.data(), gate.data(), up.data(), (size_t)S * F);
            linear_forward(P, x.data(), h.data(), o.w_down, SIZE_MAX, S, F, C, l, LORA_DOWN, u.data(), true);
        }
        ops.rmsnorm_forward(ln.data(), rstd.data(), x.data(), P.w(m.off.final_norm), S, C, c.norm_eps);
        ops.matmul_forward(logits.data(), ln.data(), P.w(m.off.lm_head), nullptr, S, C, V, false);
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
