// AdamW over the trainable parameters, the learning-rate schedule, and clipping by global norm.
#pragma once
#include <string>
#include <vector>

#include "kernels/kernels.h"
#include "model/buffer.h"
#include "model/weights.h"

enum class Schedule { constant, linear, cosine, wsd };
Schedule parse_schedule(const std::string& s);  // fails naming the accepted values
const char* schedule_name(Schedule s);

struct OptimConfig {
    float lr = 2e-4f;
    float weight_decay = 0.0f;  // decoupled; never applied to norms and biases
    float beta1 = 0.9f, beta2 = 0.999f, eps = 1e-8f;
    float max_grad_norm = 1.0f; // 0 disables clipping
    Schedule schedule = Schedule::cosine;
    int warmup_steps = 0;
    float min_lr_ratio = 0.0f;  // the schedule ends at lr × this (the lr floor)
    float decay_ratio = 0.1f;   // wsd: the share of the run's steps in its final (cosine) decay
    // GPU: round the BF16 weights the kernels read stochastically from the FP32 masters (unbiased),
    // instead of to nearest. No effect on the CPU backend, whose weights are the FP32 masters.
    bool stochastic_rounding = false;
};

// Learning rate of optimizer step `step` (0-based) of `total`: linear warmup over warmup_steps,
// (step+1)/warmup so the first step already moves, then constant / linear / cosine decay from lr
// towards lr·min_lr_ratio over the decay_steps = total − warmup_steps that follow, at progress
// (step − warmup_steps)/decay_steps (transformers' get_{linear,cosine}_schedule_with_warmup): the
// first decay step runs at lr and the last one above the floor, so no step is wasted at lr 0 (a
// one-step run trains at lr). wsd (warmup-stable-decay, transformers' get_wsd_schedule with its
// cosine decay) holds lr after the warmup and decays only over the last round(decay_ratio × total)
// steps, at progress (step − decay start)/decay steps: a run that is cut short or extended changes
// only its cooldown.
float lr_at(const OptimConfig& oc, int step, int total);

struct AdamState {
    Buffer m, v;  // first and second moments, FP32, one per trainable parameter, in the memory of the
                  // backend AdamW runs on (the host's with --offload-optimizer)
    int t = 0;    // steps taken (bias correction)
};

// The global gradient norm: sqrt(Σ g²) over all n trainable parameters (one reduction).
double grad_norm(const Ops& ops, const float* grads, size_t n);
// Clips by global norm (`norm`, from grad_norm) and applies one AdamW step to every trainable
// tensor: FP32 masters `params`, and `compute` (the storage-type copy the ops read, or null) after.
// Tensors side by side with the same decay setting go in one launch. sr_key != 0 rounds `compute`
// stochastically (Ops::adamw_update), with random bits that depend on sr_key only.
void optimizer_step(const Ops& ops, float* params, act* compute, float* grads, const std::vector<TensorInfo>& tensors,
                    AdamState& st, const OptimConfig& oc, float lr, double norm, uint64_t sr_key = 0);
// compute = the stochastically rounded `params`, exactly as optimizer_step with the same sr_key left
// it: a run resumed from a checkpoint (which holds the FP32 masters) rebuilds its BF16 weights so.
void round_compute_copy(const Ops& ops, const float* params, act* compute, const std::vector<TensorInfo>& tensors,
                        uint64_t sr_key);
