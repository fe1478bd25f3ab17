#include "model/optimizer.h"

#include <algorithm>
#include <cmath>

#include "kernels/hash.h"
#include "model/lora.h"
#include "model/util.h"

Schedule parse_schedule(const std::string& s) {
    if (s == "constant") return Schedule::constant;
    if (s == "linear") return Schedule::linear;
    if (s == "cosine") return Schedule::cosine;
    if (s == "wsd") return Schedule::wsd;
    fail("--lr-scheduler: unknown schedule '%s' (use constant, linear, cosine or wsd)", s.c_str());
}

const char* schedule_name(Schedule s) {
    return s == Schedule::constant ? "constant" : s == Schedule::linear ? "linear" : s == Schedule::cosine ? "cosine" : "wsd";
}

int wsd_cooldown_steps(const OptimConfig& oc, int total) {
    return std::max(1, (int)std::lround((double)oc.decay_ratio * total));
}

int lr_decay_start(const OptimConfig& oc, int total) {
    if (oc.schedule != Schedule::wsd) return oc.warmup_steps;
    return std::max(oc.warmup_steps, total - wsd_cooldown_steps(oc, total));
}

float lr_at(const OptimConfig& oc, int step, int total) {
    if (step < oc.warmup_steps) return oc.lr * (float)(step + 1) / (float)oc.warmup_steps;
    if (oc.schedule == Schedule::constant) return oc.lr;
    const int decay_start = lr_decay_start(oc, total);
    if (step < decay_start) return oc.lr;
    const int decay_steps = std::max(1, total - decay_start);
    float progress = std::min(1.0f, (float)(step - decay_start) / (float)decay_steps);
    float floor = oc.lr * oc.min_lr_ratio;
    float shape = oc.schedule == Schedule::linear ? 1.0f - progress : 0.5f * (1.0f + std::cos(3.14159265358979f * progress));
    return floor + (oc.lr - floor) * shape;
}

double grad_norm(const Ops& ops, const float* grads, size_t n) { return std::sqrt(ops.sum_squares(grads, n)); }

namespace {

// A tensor's learning-rate multiplier: LoRA+'s ratio for an adapter's B, --embedding-lr's for the
// embedding and the LM head (full fine-tuning's tensors, LoRA's saved copies or trainable token
// rows), else 1.
float lr_scale(const TensorInfo& t, const OptimConfig& oc) {
    const bool embedding = lora_is_saved_module(t) || lora_is_token_rows(t) || t.name == "model.embed_tokens.weight" ||
                           t.name == "lm_head.weight";
    if (embedding && oc.embedding_lr > 0.0f) return oc.embedding_lr / oc.lr;
    return lora_is_b(t) ? oc.lora_b_lr_ratio : 1.0f;
}

// Runs of adjacent tensors that all decay (weights) or all don't (norms, biases), at one learning
// rate: one AdamW launch each, and each its own stream of random bits for stochastic rounding,
// indexed from its start.
template <class F>
void for_each_run(const std::vector<TensorInfo>& tensors, const OptimConfig& oc, F f) {
    for (size_t i = 0; i < tensors.size();) {
        size_t j = i + 1, off = tensors[i].offset, n = tensors[i].numel;
        const float scale = lr_scale(tensors[i], oc);
        while (j < tensors.size() && tensors[j].decay == tensors[i].decay && lr_scale(tensors[j], oc) == scale &&
               tensors[j].offset == off + n)
            n += tensors[j++].numel;
        f(off, n, tensors[i].decay, scale);
        i = j;
    }
}

uint64_t run_key(uint64_t sr_key, size_t off) { return sr_key ? hash64(sr_key, off) | 1 : 0; }

}  // namespace

std::vector<MomentSlot> moment_slots(const std::vector<TensorInfo>& tensors, bool eight_bit, size_t* fp32,
                                     size_t* codes, size_t* blocks) {
    std::vector<MomentSlot> slots;
    *fp32 = *codes = *blocks = 0;
    for (const TensorInfo& t : tensors) {
        if (!eight_bit) {
            *fp32 = std::max(*fp32, t.offset + t.numel);
            continue;
        }
        MomentSlot s{t.numel >= kAdam8MinSize, 0, 0};
        if (s.eight_bit) {
            s.at = *codes, s.block = *blocks;
            *codes += t.numel, *blocks += (t.numel + kAdam8Block - 1) / kAdam8Block;
        } else {
            s.at = *fp32;
            *fp32 += t.numel;
        }
        slots.push_back(s);
    }
    return slots;
}

size_t adam_state_bytes(const std::vector<TensorInfo>& tensors, bool eight_bit) {
    size_t fp32, codes, blocks;
    moment_slots(tensors, eight_bit, &fp32, &codes, &blocks);
    return 2 * (fp32 * sizeof(float) + codes + blocks * sizeof(float));
}

void adam_state_init(AdamState& st, const Ops& ops, const std::vector<TensorInfo>& tensors, bool eight_bit) {
    size_t fp32, codes, blocks;
    st.slots = moment_slots(tensors, eight_bit, &fp32, &codes, &blocks);
    st.m = Buffer(ops, fp32 * sizeof(float), Mem::optimizer);
    st.v = Buffer(ops, fp32 * sizeof(float), Mem::optimizer);
    st.m8 = Buffer(ops, codes, Mem::optimizer);
    st.v8 = Buffer(ops, codes, Mem::optimizer);
    st.absmax = Buffer(ops, 2 * blocks * sizeof(float), Mem::optimizer);
    st.t = 0;
}

void optimizer_step(const Ops& ops, float* params, act* compute, float* grads, const std::vector<TensorInfo>& tensors,
                    AdamState& st, const OptimConfig& oc, float lr, double norm, uint64_t sr_key) {
    float scale = oc.max_grad_norm > 0 && norm > oc.max_grad_norm ? (float)(oc.max_grad_norm / (norm + 1e-6)) : 1.0f;
    st.t++;
    if (st.eight_bit()) {
        // a launch per tensor: each has its own blocks (a block never spans two tensors' scales)
        const size_t v_blocks = st.absmax.bytes / sizeof(float) / 2;
        for (size_t k = 0; k < st.slots.size(); k++) {
            const MomentSlot& s = st.slots[k];
            const TensorInfo& t = tensors[k];
            act* pc = compute ? ops.at(compute, t.offset) : nullptr;
            const float wd = t.decay ? oc.weight_decay : 0.0f, tlr = lr * lr_scale(t, oc);
            if (s.eight_bit)
                ops.adamw8bit_update(params + t.offset, pc, grads + t.offset, st.m8.u8() + s.at, st.v8.u8() + s.at,
                                     st.absmax.f() + s.block, st.absmax.f() + v_blocks + s.block, t.numel, tlr, oc.beta1,
                                     oc.beta2, oc.eps, wd, scale, st.t, run_key(sr_key, t.offset));
            else
                ops.adamw_update(params + t.offset, pc, grads + t.offset, st.m.f() + s.at, st.v.f() + s.at, t.numel, tlr,
                                 oc.beta1, oc.beta2, oc.eps, wd, scale, st.t, run_key(sr_key, t.offset));
        }
        return;
    }
    for_each_run(tensors, oc, [&](size_t off, size_t n, bool decay, float lr_mult) {
        ops.adamw_update(params + off, compute ? ops.at(compute, off) : nullptr, grads + off, st.m.f() + off,
                         st.v.f() + off, n, lr * lr_mult, oc.beta1, oc.beta2, oc.eps, decay ? oc.weight_decay : 0.0f,
                         scale, st.t, run_key(sr_key, off));
    });
}

void round_compute_copy(const Ops& ops, const float* params, act* compute, const std::vector<TensorInfo>& tensors,
                        const OptimConfig& oc, uint64_t sr_key) {
    for_each_run(tensors, oc, [&](size_t off, size_t n, bool, float) {
        ops.cast_stochastic(ops.at(compute, off), params + off, n, run_key(sr_key, off));
    });
}
