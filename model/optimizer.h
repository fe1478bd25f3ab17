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
    // --optimizer adamw8bit: bitsandbytes' 8-bit AdamW moments (kernels.h, adamw8bit_update) for the
    // tensors of at least kAdam8MinSize parameters; FP32 moments for the smaller ones, as bitsandbytes
    // keeps them (its min_8bit_size).
    bool eight_bit = false;
    // LoRA+ (Hayou et al. 2024; PEFT's create_loraplus_optimizer, loraplus_lr_ratio): the adapters'
    // B matrices train at lr × this (1: plain LoRA; the paper suggests 16).
    float lora_b_lr_ratio = 1.0f;
    // --embedding-lr (unsloth's embedding_learning_rate): the peak learning rate of the token embedding
    // and the LM head, trained in full fine-tuning or as LoRA's saved modules (0: lr, as the rest);
    // the schedule scales it as it scales lr.
    float embedding_lr = 0.0f;
};
constexpr size_t kAdam8MinSize = 4096;

// Learning rate of optimizer step `step` (0-based) of `total`: linear warmup over warmup_steps,
// (step+1)/warmup so the first step already moves, then constant / linear / cosine decay from lr
// towards lr·min_lr_ratio over the decay_steps = total − warmup_steps that follow, at progress
// (step − warmup_steps)/decay_steps (transformers' get_{linear,cosine}_schedule_with_warmup): the
// first decay step runs at lr and the last one above the floor, so no step is wasted at lr 0 (a
// one-step run trains at lr). wsd (warmup-stable-decay, transformers' get_wsd_schedule with its
// cosine decay) holds lr after the warmup and decays only over the last round(decay_ratio × total)
// steps, at progress (step − decay start)/decay steps: a run that is cut short or extended changes
// only its cooldown.
// steps: the last decay_steps of a run always start after its warmup, so a cooldown longer than what
// follows the warmup starts where the warmup ends (transformers' would start inside the warmup).
float lr_at(const OptimConfig& oc, int step, int total);
// The first step of the decay: the end of the warmup (linear, cosine), or wsd's cooldown start.
int lr_decay_start(const OptimConfig& oc, int total);
// The cooldown wsd asks for: round(decay_ratio × total) steps, at least 1 (fewer when the warmup
// overlaps it: lr_decay_start).
int wsd_cooldown_steps(const OptimConfig& oc, int total);

// Where one trainable tensor's moments live (the slots follow the trainable tensors, one each): FP32
// at m/v[at], or 8-bit codes at m8/v8[at] with their absmax values from block `block` on.
struct MomentSlot {
    bool eight_bit;
    size_t at, block;
};

struct AdamState {
    Buffer m, v;     // first and second moments, FP32, in the memory of the backend AdamW runs on (the
                     // host's with --offload-optimizer): one per trainable parameter, or with 8-bit
                     // moments those of the small tensors only, packed
    Buffer m8, v8;   // 8-bit moments: the codes of the other tensors, packed
    Buffer absmax;   // their blocks' absmax values: m's blocks, then v's
    std::vector<MomentSlot> slots;  // 8-bit moments: per trainable tensor
    int t = 0;       // steps taken (bias correction)
    bool eight_bit() const { return !slots.empty(); }
    size_t bytes() const { return m.bytes + v.bytes + m8.bytes + v8.bytes + absmax.bytes; }
};

// The moments' layout for `tensors`: FP32 for all (eight_bit false: no slots), or 8-bit for those
// of kAdam8MinSize parameters and more. Returns the slots, with the FP32 floats, 8-bit codes and
// absmax blocks (of each moment) they take in total.
std::vector<MomentSlot> moment_slots(const std::vector<TensorInfo>& tensors, bool eight_bit, size_t* fp32,
                                     size_t* codes, size_t* blocks);
// Bytes of AdamW's two moments for `tensors` (the memory estimate's optimizer state, masters aside).
size_t adam_state_bytes(const std::vector<TensorInfo>& tensors, bool eight_bit);
// Zeroed moments on `ops` in category Mem::optimizer.
void adam_state_init(AdamState& st, const Ops& ops, const std::vector<TensorInfo>& tensors, bool eight_bit);

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
                        const OptimConfig& oc, uint64_t sr_key);
