// Every linear layer of the model goes through these two functions: the base GEMM, plus the LoRA
// adapter path when that weight is adapted (model/layer.cpp, which training and decoding share).
#pragma once
#include <climits>
#include <initializer_list>

#include "model/model.h"
#include "model/util.h"

// What a pass needs besides the buffers: the model, the backend and the weights as it reads them,
// the gradient sink.
struct Pass {
    const Model& m;
    const Ops& ops;
    WeightsView W;         // model_weights(m, ops)
    float* grads;          // null in a forward-only pass; FP32, num_trainable, in the backend's memory
    float dropout;         // LoRA dropout rate (0 when evaluating)
    uint64_t dropout_key;  // the key of the pass's randomness: dropout masks and NEFTune's noise
    float neftune_alpha;   // NEFTune's noise on the embeddings (0: off, and when evaluating)
    // DoRA's row norms of every layer's projections, [n_layers × dora_offset(all)] FP32 in the
    // backend's memory (the workspace's, or generate()'s), and which (layer, target) this pass has
    // computed: the weights do not change within a pass, so the forward computes each norm once and
    // the backward's recompute, and every decoding step of generate(), read it again.
    float* dora_norms = nullptr;
    mutable std::vector<char> dora_fresh;
    mutable std::vector<float> inv_freq;  // RoPE's frequencies (rope_inv_freq of the config)
    std::vector<float> inv_freq_local;  // those of the windowed layers, when they have their own
    mutable bool long_rope = false;     // inv_freq holds LongRoPE's long factors (set_positions)
    Pass(const Model& model, const Ops& o, float* g, float p, uint64_t key, float neftune = 0.0f)
        : m(model), ops(o), W(model_weights(model, o)), grads(g), dropout(p), dropout_key(key), neftune_alpha(neftune),
          dora_fresh((size_t)model.cfg.n_layers * LORA_NUM_TARGETS, 0), inv_freq(rope_inv_freq(model.cfg)),
          inv_freq_local(model.cfg.rope_local_theta != 0.0f ? rope_inv_freq_local(model.cfg) : std::vector<float>()) {}
    // The forward about to run reaches `positions` (its longest position + 1): LongRoPE takes its long
    // factors past the original context, for every position of that forward, as transformers does
    // (ModelConfig::long_rope_for). Nothing changes for other models.
    void set_positions(int64_t positions) const {
        const bool want = m.cfg.long_rope_for(positions);
        if (want != long_rope) inv_freq = rope_inv_freq(m.cfg, want), long_rope = want;
    }
    // Layer l's RoPE table.
    const float* rope_table(int l) const { return m.cfg.rope_local(l) ? inv_freq_local.data() : inv_freq.data(); }
    // The one way to a base weight: in place, or an NF4 weight dequantized into the scratch (valid
    // until the next NF4 weight is fetched: each is used by one GEMM, then dropped).
    const act* w(size_t off) const {
        if (off == SIZE_MAX) return nullptr;
        if (const size_t s = saved(off); s != SIZE_MAX) return adapter(s);
        if (off & kNF4Tag) {
            nf4_weight_dequantize(ops, W.nf4[off & ~kNF4Tag], W.dequant);
            return W.dequant;
        }
        return ops.at(W.params, off);
    }
    const act* adapter(size_t off) const { return ops.at(W.adapters, off); }
    // The trained copy of a base tensor among the adapters (modules_to_save: the embedding, the LM
    // head), or SIZE_MAX: the ops read and train it in place of the base tensor.
    size_t saved(size_t off) const {
        if (!m.has_adapters() || off == SIZE_MAX) return SIZE_MAX;
        return off == m.off.embed ? m.lora_layout.embed : off == m.off.lm_head ? m.lora_layout.lm_head : SIZE_MAX;
    }
    // Gradient slot of a base weight: when training every weight, or its saved copy's.
    float* gw(size_t off) const {
        if (!grads || off == SIZE_MAX) return nullptr;
        if (m.method == Method::Full) return grads + off;
        const size_t s = saved(off);
        return s == SIZE_MAX ? nullptr : grads + s;
    }
    bool adapted(int layer, LoraTarget t) const { return m.has_adapters() && m.lora.adapts(layer, t); }
    bool dora(int layer, LoraTarget t) const { return adapted(layer, t) && m.lora.use_dora; }
    // Layer l's slice of dora_norms (null without DoRA).
    float* dora_norms_of(int l) const {
        if (!m.has_adapters() || !m.lora.use_dora) return nullptr;
        if (!dora_norms) fail("internal: a pass over a DoRA model without its row norms' buffer (Pass::dora_norms)");
        return dora_norms + (size_t)l * dora_columns(m);
    }
    uint64_t key(int layer, LoraTarget t) const { return dropout_key ^ (0x9E3779B97F4A7C15ull * (uint64_t)(layer * LORA_NUM_TARGETS + t + 1)); }
};

// The linear layers of a layer that read the same input x go through these functions together, as
// a group (q, k, v; o; gate, up; down), so that their LoRA adapters can share passes over x and dx
// (kernels.h, LoraProj). Every group has at most kMaxLinearGroup projections.
constexpr int kMaxLinearGroup = 3;

// DoRA's buffers of one layer: for each projection with a magnitude, in target order,
// z = x Wᵀ + s·(drop(x) Aᵀ) Bᵀ [N, OC] (LayerActs::dora_z: what the magnitude rescales, kept for its
// gradient) and the row norms of W + s·B·A [OC] (Pass::dora_norms_of). dora_offset (model/lora.h)
// places a target in them.
struct DoraActs {
    act* z;
    float* norm;
};

// One projection of a group in the forward: y = add + x Wᵀ + b (+ s·(drop(x) Aᵀ) Bᵀ), add null, y
// (accumulate) or the residual stream's input (x_mid = x + att·Woᵀ with no copy of x).
struct LinearOut {
    act* y;
    const act* add;
    size_t w, b;  // offsets of the weight and the bias (SIZE_MAX: none)
    int OC;
    LoraTarget t;
};
// u [N, (adapted projections)·r] keeps x·Aᵀ of the group's adapters for the backward. The adapters'
// terms are written first and each base GEMM accumulates onto its output: the adapters' GEMMs
// through the rank-r bottleneck are memory-bound, so they should not be the ones that read y.
// A DoRA projection writes z (in `dora`) that way, then y = add + (m / norm) ⊙ z + b, the norms
// computed by the pass's first forward of the layer (Pass::dora_fresh).
void linear_forward(const Pass& P, const act* x, int N, int C, int layer, std::initializer_list<LinearOut> group,
                    act* u, DoraActs dora);

// One projection of a group in the backward: its output's gradient dy.
struct LinearGrad {
    const act* dy;
    size_t w, b;
    int OC;
    LoraTarget t;
};
// dx (+)= Σ dy W (+ the adapters' paths): accumulate adds, else dx is overwritten (the first
// projection into a gradient, so no zeroing pass); weight/bias/adapter gradients accumulate into
// the pass's grads. As in the forward, the adapters write dx first and the base GEMMs accumulate.
// A DoRA projection first takes its magnitude's gradient and dz = (m / norm) ⊙ dy into dz (N ×
// dora_group_width, model/lora.h), which then goes where dy would.
void linear_backward(const Pass& P, act* dx, const act* x, int N, int C, int layer,
                     std::initializer_list<LinearGrad> group, const act* u, bool accumulate, DoraActs dora, act* dz);
