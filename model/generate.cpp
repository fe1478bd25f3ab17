// KV-cached decoding. A prefill pass runs the prompts' first positions through the layers at once
// (attention as in training); then each step runs every decoder layer on one new token per
// sequence: the same layer as training (model/layer.cpp, LoRA included), RoPE at the sequence's own
// position, and attention of the new query against the sequence's cached keys/values (kernels:
// attention_decode).
#include "model/generate.h"

#include <algorithm>
#include <cfloat>
#include <cmath>
#include <cstring>
#include <numeric>

#include "kernels/cpu/exp.h"
#include "model/layer.h"

// Temperature, then top-k, then top-p (transformers' order). The candidates are ranked by falling logit
// (equal logits: lower id first), but only as far as the draw needs: a vocabulary sorted whole took
// 5 ms a token at 49,152 ids and 38 ms at 262,144, where the nucleus or the draw is usually settled
// within the first few dozen. So the ranking grows as the draw reaches its end, to 64 ids, then 256,
// 1024, ... (each a partial sort of what is left): the same order and draw as a sort of them all.
int32_t sample_token(float* logits, int V, const SampleOptions& opt, Rng& rng) {
    static thread_local std::vector<int32_t> idx;
    idx.resize(V);
    std::iota(idx.begin(), idx.end(), 0);
    auto higher = [&](int32_t a, int32_t b) { return logits[a] > logits[b] || (logits[a] == logits[b] && a < b); };
    int ranked = 0;  // idx[0, ranked) is in final order
    auto rank = [&](int first, int end, int last) {  // ranks idx[first, end) out of idx[first, last)
        std::partial_sort(idx.begin() + first, idx.begin() + end, idx.begin() + last, higher);
        ranked = end;
    };
    // The candidates, with their probabilities in place of the logits (exp is monotone: the ranking
    // stands), and the sum of those: the top_k highest (ranked now), or every id.
    int k = opt.top_k > 0 && opt.top_k < V ? opt.top_k : V;
    // 1/T overflows float for T under ~3e-39: FLT_MAX keeps the top logit's (l − max)·(1/T) at 0, not NaN.
    const float inv_t = std::min(1.0f / opt.temperature, FLT_MAX);
    double sum = 0;
    if (k < V) {
        rank(0, k, V);
        // ids tied with the k-th logit stay candidates (transformers drops only logits below it),
        // ranked after it by id
        const float kth = logits[idx[k - 1]];
        auto tied_end = std::partition(idx.begin() + k, idx.end(), [&](int32_t a) { return logits[a] == kth; });
        std::sort(idx.begin() + k, tied_end);
        k = ranked = (int)(tied_end - idx.begin());
        const float mx = logits[idx[0]];
        for (int i = 0; i < k; i++) sum += logits[idx[i]] = std::exp((logits[idx[i]] - mx) * inv_t);
    } else {
        const float mx = *std::max_element(logits, logits + V);
        #pragma omp simd reduction(+ : sum)
        for (int i = 0; i < V; i++) sum += logits[i] = cpu::exp_fast((logits[i] - mx) * inv_t);
    }
    auto rank_through = [&](int i) {  // ranks at least idx[0..i]
        if (i >= ranked) rank(ranked, std::min(k, std::max({64, 4 * ranked, i + 1})), k);
    };
    // Nucleus: the most probable candidates until their mass reaches top_p.
    int keep = k;
    double total = sum;
    if (opt.top_p < 1.0f) {
        double acc = 0;
        for (int i = 0; i < k; i++) {
            rank_through(i);
            if ((acc += logits[idx[i]]) >= opt.top_p * sum) {
                keep = i + 1;
                break;
            }
        }
        total = acc;
    }
    double r = rng.uniform() * total;
    for (int i = 0; i < keep; i++) {
        rank_through(i);
        if ((r -= logits[idx[i]]) <= 0) return idx[i];
    }
    rank_through(keep - 1);
    return idx[keep - 1];
}

uint64_t sequence_seed(uint64_t seed, uint64_t i) {
    if (i == 0) return seed;
    Rng r(seed ^ (i * 0xD1B54A32D192ED03ull));  // a hashed state: no stream a shifted copy of another's
    return r.next_u64();
}

namespace {

// Prefill: every prompt but its last token (no logits are needed there) goes through the layers at
// once, instead of one step per token: big GEMMs instead of thin ones, and no LM head for prompt
// positions. The prompts are packed, as training packs examples: their rows one after another,
// each prompt its own segment, so attention never crosses from one into another (and the attention
// kernels skip the key blocks of other prompts). Their k and v fill the cache as steps would. A pass
// takes at most kPrefillRows rows (or one prompt alone, when it is longer), so the activation
// buffers stay small next to the KV cache.
constexpr int kPrefillRows = 2048;

struct GeneratePlan {
    int max_T = 0;            // cache positions per sequence: its prompt and max_new_tokens
    int rows = 0;             // rows of the activation buffers: the longest pass, or S for the steps
    std::vector<int> passes;  // prefill pass i takes sequences passes[i] .. passes[i+1]−1
    int longest = 0;          // the longest prompt: what the prefill's forwards reach (LongRoPE's table)
};

// The prefill passes of sequences whose first lengths[s] tokens go into the cache: consecutive
// sequences packed up to `limit` rows (a longer one alone). Returns the rows of the largest pass.
int plan_passes(const std::vector<int>& lengths, int limit, std::vector<int>& passes) {
    int rows = 0;
    passes.clear();
    for (int s = 0, in_pass = 0; s < (int)lengths.size(); s++) {
        if (passes.empty() || (in_pass > 0 && in_pass + lengths[s] > limit)) passes.push_back(s), in_pass = 0;
        rows = std::max(rows, in_pass += lengths[s]);
    }
    passes.push_back((int)lengths.size());
    return rows;
}

GeneratePlan plan_generate(const ModelConfig& c, const std::vector<std::vector<int32_t>>& prompts, const SampleOptions& opt) {
    GeneratePlan p;
    const int S = (int)prompts.size();
    std::vector<int> lengths(S);
    for (int s = 0; s < S; s++) {
        if (prompts[s].empty()) fail("generate: empty prompt");
        p.max_T = std::max(p.max_T, (int)prompts[s].size() + opt.max_new_tokens);
        p.longest = std::max(p.longest, (int)prompts[s].size());
        lengths[s] = (int)prompts[s].size() - 1;
    }
    p.rows = std::max(S, plan_passes(lengths, kPrefillRows, p.passes));
    // The recompute where LongRoPE switches to its long factors during the steps (the last step's
    // longest sequence, the longest prompt's max_new_tokens - 1 later, passes the original context):
    // at most the original context of each sequence, in passes of at most these rows.
    const int64_t last = (int64_t)p.longest + std::max(opt.max_new_tokens - 1, 0);
    if (!c.long_rope_for(p.longest) && c.long_rope_for(last)) p.rows = std::max(p.rows, (int)c.rope_original_max_pos);
    return p;
}

// Elements of the K (or the V) cache: per layer [S, max_T, kv_dim], as attention_decode reads it.
size_t cache_elems(const ModelConfig& c, int S, int max_T) { return (size_t)S * max_T * c.kv_dim() * c.n_layers; }

}  // namespace

size_t generate_bytes(const Model& m, const std::vector<std::vector<int32_t>>& prompts, const SampleOptions& opt,
                      size_t act_size) {
    const int S = (int)prompts.size();
    if (S == 0 || opt.max_new_tokens <= 0) return 0;
    const GeneratePlan p = plan_generate(m.cfg, prompts, opt);
    const ModelConfig& c = m.cfg;
    // The caches; the layer's activations, x and the int buffers (tok, pos, slot, seg) for `rows`
    // rows; the logits, lengths and greedy picks of S sequences: what generate() allocates below.
    return (2 * cache_elems(c, S, p.max_T) + (size_t)p.rows * c.dim + (size_t)S * c.vocab_size) * act_size +
           layer_acts_bytes(m, p.rows, act_size) + (4 * (size_t)p.rows + 2 * S) * sizeof(int32_t) +
           dora_norm_floats(m) * sizeof(float);
}

std::vector<std::vector<int32_t>> generate(const Model& m, const std::vector<std::vector<int32_t>>& prompts,
                                           const SampleOptions& opt, const std::vector<int32_t>& stop_ids,
                                           const std::function<void(int, int32_t)>& on_token, const Ops& ops) {
    const ModelConfig& c = m.cfg;
    Pass P(m, ops, nullptr, 0.0f, 0);
    int S = (int)prompts.size(), C = c.dim, KV = c.kv_dim(), V = c.vocab_size;
    std::vector<std::vector<int32_t>> out(S);
    if (S == 0 || opt.max_new_tokens <= 0) return out;
    const GeneratePlan plan = plan_generate(c, prompts, opt);
    const int max_T = plan.max_T, rows = plan.rows;
    const std::vector<int>& passes = plan.passes;
    // What generate_bytes counts: the K and V caches; one set of layer activations, refilled by every
    // layer (nothing is kept for a backward), and the residual stream x, which each layer updates in
    // place; the logits of the sequences; the rows' tokens, positions, cache slots and segments, and
    // the sequences' lengths and greedy picks; with DoRA every layer's row norms.
    const size_t layer_cache = cache_elems(c, S, max_T) / c.n_layers;
    const Mem M = Mem::activations;
    Buffer kc = act_buffer(ops, cache_elems(c, S, max_T), M), vc = act_buffer(ops, cache_elems(c, S, max_T), M);
    LayerActs A;
    layer_acts_init(A, m, rows, ops);
    Buffer dora_norms(ops, dora_norm_floats(m) * sizeof(float), M);  // computed by the first forward, read by the rest
    P.dora_norms = dora_norms.f();
    Buffer x = act_buffer(ops, (size_t)rows * C, M), dlogits = act_buffer(ops, (size_t)S * V, M),
           dtok(ops, rows * sizeof(int32_t), M), dpos(ops, rows * sizeof(int32_t), M),
           dslot(ops, rows * sizeof(int32_t), M), dseg(ops, rows * sizeof(int32_t), M), dlen(ops, S * sizeof(int32_t), M),
           dpick(ops, S * sizeof(int32_t), M);
    std::vector<int32_t> tok(rows), pos(rows), slot(rows), seg(rows), len(S), pick(S);  // slot: the cache row [s, pos] of each row

    // Every layer on n rows (tokens tok, positions pos, cache slots slot, uploaded by this call): each
    // row's k and v go into the cache at its slot, then attend(K, V, layer) fills A.att from A.q (K,
    // V: this layer's cache). Leaves the last hidden state of every row in x.
    // `positions`: what transformers' forward would reach here (LongRoPE picks its table by it): the
    // longest prompt for the prefill, whose last tokens are left to the first step.
    auto forward_rows = [&](int n, int64_t positions, const std::function<void(act* K, act* V, int layer)>& attend) {
        P.set_positions(positions);
        ops.to_device(dtok.p, tok.data(), n * sizeof(int32_t));
        ops.to_device(dpos.p, pos.data(), n * sizeof(int32_t));
        ops.to_device(dslot.p, slot.data(), n * sizeof(int32_t));
        ops.embedding_forward(x.a(), dtok.i(), P.w(m.off.embed), n, C, c.embedding_scale());
        for (int l = 0; l < c.n_layers; l++)
            layer_forward(P, l, n, x.a(), x.a(), dpos.i(), A, [&](LayerActs& a, int layer) {
                act* K = ops.at(kc.a(), layer * layer_cache);
                act* Vv = ops.at(vc.a(), layer * layer_cache);
                ops.scatter_rows(K, a.k.a(), dslot.i(), n, KV);  // the rows' k and v into their sequences' caches
                ops.scatter_rows(Vv, a.v.a(), dslot.i(), n, KV);
                attend(K, Vv, layer);
            });
    };

    // The cache of every sequence but its last token (seqs[s]: the prompt, or the prompt and what
    // was generated), in prefill passes (sequences pass[i] .. pass[i+1]-1 each), whose forwards all
    // reach `positions` (one RoPE table for all the sequences, as one transformers forward has).
    auto prefill = [&](const std::vector<std::vector<int32_t>>& seqs, const std::vector<int>& pass, int64_t positions) {
        for (size_t p = 0; p + 1 < pass.size(); p++) {
            int n = 0;
            for (int s = pass[p]; s < pass[p + 1]; s++)
                for (int t = 0; t + 1 < (int)seqs[s].size(); t++, n++) {
                    tok[n] = seqs[s][t];
                    pos[n] = t;
                    slot[n] = s * max_T + t;
                    seg[n] = s;
                }
            if (n == 0) continue;  // one-token prompts only
            ops.to_device(dseg.p, seg.data(), n * sizeof(int32_t));
            forward_rows(n, positions, [&](act*, act*, int l) {
                ops.attention_forward(A.att.a(), A.lse.f(), A.q.a(), A.k.a(), A.v.a(), dseg.i(), 1, n, c.n_heads,
                                      c.n_kv_heads, c.head_dim, c.attn_scale(), c.window_of_layer(l));
            });
        }
    };
    prefill(prompts, passes, plan.longest);
    // Greedy decoding picks on the backend and brings back S ids; sampling needs the logits on the host.
    const bool greedy = opt.temperature <= 0.0f;
    const int pickable = opt.vocab > 0 ? std::min(opt.vocab, V) : V;
    std::vector<float> logits(greedy ? 0 : (size_t)S * V);
    std::vector<char> done(S, 0);
    std::vector<Rng> rngs;  // one stream per sequence (SampleOptions::first_seq)
    for (int s = 0; s < S; s++) rngs.emplace_back(sequence_seed(opt.seed, opt.first_seq + s));
    for (int step = 0;; step++) {
        // Step 0 feeds each prompt's last token, later steps the token sampled last. Every sequence,
        // finished or not, takes part (a finished one just repeats its last token): one GEMM of S rows
        // per layer, and results of the live ones are unaffected.
        bool any = false;
        for (int s = 0; s < S; s++) {
            len[s] = std::min((int)prompts[s].size() + step, max_T);
            any |= !done[s];
        }
        if (!any) break;
        const int64_t reach = *std::max_element(len.begin(), len.end());
        if (c.long_rope_for(reach) && !P.long_rope) {
            // LongRoPE passes its original context at this step: as transformers' Phi-3 does there,
            // the cache is made again with the long factors (each sequence's tokens so far but the
            // one this step feeds; a finished one's, its results unused), not kept with keys
            // rotated by the short ones. Each sequence has at most the original context cached.
            std::vector<std::vector<int32_t>> seqs(S);
            std::vector<int> lengths(S), pass;
            for (int s = 0; s < S; s++) {
                seqs[s] = prompts[s];
                seqs[s].insert(seqs[s].end(), out[s].begin(), out[s].end());
                lengths[s] = (int)seqs[s].size() - 1;
            }
            if (plan_passes(lengths, rows, pass) > rows) fail("generate: the LongRoPE recompute needs more rows than planned");
            prefill(seqs, pass, reach);
        }
        for (int s = 0; s < S; s++) {  // (after the recompute, which fills these arrays with its rows)
            tok[s] = out[s].empty() ? prompts[s].back() : out[s].back();
            pos[s] = len[s] - 1;
            slot[s] = s * max_T + pos[s];
        }
        ops.to_device(dlen.p, len.data(), S * sizeof(int32_t));
        forward_rows(S, reach, [&](act* K, act* Vv, int l) {
            ops.attention_decode(A.att.a(), A.q.a(), K, Vv, dlen.i(), S, max_T, c.n_heads, c.n_kv_heads, c.head_dim,
                                 c.attn_scale(), c.window_of_layer(l));
        });
        // The final norm into ln1, free once the layers are done.
        ops.rmsnorm_forward(A.ln1.a(), A.rstd1.f(), x.a(), P.w(m.off.final_norm), S, C, c.norm_eps, nullptr);
        ops.matmul_forward(dlogits.a(), A.ln1.a(), P.w(m.off.lm_head), nullptr, S, C, V, nullptr);
        if (greedy) {
            ops.argmax_rows(dpick.i(), dlogits.a(), S, pickable, V);
            ops.to_host(pick.data(), dpick.p, S * sizeof(int32_t));
        } else {
            ops.download(logits.data(), dlogits.a(), (size_t)S * V);
        }
        for (int s = 0; s < S; s++) {
            if (done[s]) continue;
            const int32_t next = greedy ? pick[s] : sample_token(logits.data() + (size_t)s * V, pickable, opt, rngs[s]);
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
