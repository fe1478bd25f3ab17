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

double optimizer_step(const Ops& ops, float* params, float* grads, const std::vector<TensorInfo>& tensors,
                      AdamState& st, const OptimConfig& oc, float lr) {
    double ss = 0;
    for (const TensorInfo& t : tensors) ss += ops.sum_squares(grads + t.offset, t.numel);
    double norm = std::sqrt(ss);
    float scale = oc.max_grad_norm > 0 && norm > oc.max_grad_norm ? (float)(oc.max_grad_norm / (norm + 1e-6)) : 1.0f;
    st.t++;
    for (const TensorInfo& t : tensors)
        ops.adamw_update(params + t.offset, grads + t.offset, st.m.data() + t.offset, st.v.data() + t.offset, t.numel,
                         lr, oc.beta1, oc.beta2, oc.eps, t.decay ? oc.weight_decay : 0.0f, scale, st.t);
    return norm;
}
