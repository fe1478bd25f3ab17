#include "model/optimizer.h"

#include <cmath>

#include "model/util.h"

Schedule parse_schedule(const std::string& s) {
    if (s == "constant") return Schedule::constant;
    if (s == "linear") return Schedule::linear;
    if (s == "cosine") return Schedule::cosine;
    fail("--lr-scheduler: unknown schedule '%s' (use constant, linear or cosine)", s.c_str());
}

const char* schedule_name(Schedule s) {
    return s == Schedule::constant ? "constant" : s == Schedule::linear ? "linear" : "cosine";
}

float lr_at(const OptimConfig& oc, int step, int total) {
    if (step < oc.warmup_steps) return oc.lr * (float)(step + 1) / (float)oc.warmup_steps;
    if (oc.schedule == Schedule::constant) return oc.lr;
    int decay_steps = total - oc.warmup_steps;
    float progress = decay_steps > 1 ? (float)(step - oc.warmup_steps) / (float)(decay_steps - 1) : 1.0f;
    progress = std::min(1.0f, std::max(0.0f, progress));
    float floor = oc.lr * oc.min_lr_ratio;
    float shape = oc.schedule == Schedule::linear ? 1.0f - progress : 0.5f * (1.0f + std::cos(3.14159265358979f * progress));
    return floor + (oc.lr - floor) * shape;
}

double grad_norm(const Ops& ops, const float* grads, size_t n) { return std::sqrt(ops.sum_squares(grads, n)); }

void optimizer_step(const Ops& ops, float* params, act* compute, float* grads, const std::vector<TensorInfo>& tensors,
                    AdamState& st, const OptimConfig& oc, float lr, double norm) {
    float scale = oc.max_grad_norm > 0 && norm > oc.max_grad_norm ? (float)(oc.max_grad_norm / (norm + 1e-6)) : 1.0f;
    st.t++;
    for (size_t i = 0; i < tensors.size();) {
        // A run of adjacent tensors that all decay (weights) or all don't (norms, biases).
        size_t j = i + 1, off = tensors[i].offset, n = tensors[i].numel;
        while (j < tensors.size() && tensors[j].decay == tensors[i].decay && tensors[j].offset == off + n) n += tensors[j++].numel;
        ops.adamw_update(params + off, compute ? ops.at(compute, off) : nullptr, grads + off, st.m.f() + off,
                         st.v.f() + off, n, lr, oc.beta1, oc.beta2, oc.eps, tensors[i].decay ? oc.weight_decay : 0.0f,
                         scale, st.t);
        i = j;
    }
}
