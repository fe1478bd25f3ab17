// The memory estimator: bytes of each part of a fine-tuning run (weights, adapters, gradients,
// optimizer state, activations, logits, scratch) computed from the shape and the settings alone,
// each with the formula behind it. On the CPU backend (FP32) it mirrors the trainer's buffers
// exactly, so estimate and trainer_memory() agree to the byte; for CUDA (BF16 compute, FP32
// masters and moments, NF4 base for qlora) it models DESIGN.md §4. docs/memory.md has the formulas
// and the published figures they reproduce.
#pragma once
#include <cstddef>
#include <cstdint>
#include <cstdio>
#include <string>
#include <vector>

#include "model/config.h"
#include "model/lora.h"
#include "model/model.h"

struct MemoryUse;  // model/trainer.h
struct TrainConfig;
struct Trainer;

enum class OptimKind { AdamW, SGD, Momentum, AdamW8bit };
enum class WeightFormat { FP32, BF16, NF4, NF4_DQ };  // storage of the base weights
enum class Backend { Cpu, Cuda };

// Parsers for the flags (--method: parse_method in model/model.h) (each fails naming the flag and the accepted values) and names for output.
OptimKind parse_optim_kind(const std::string& s);
WeightFormat parse_weight_format(const std::string& s);
Backend parse_backend(const std::string& s);
const char* optim_kind_name(OptimKind o);
const char* weight_format_name(WeightFormat w);
int optim_states(OptimKind o);  // moments per trainable parameter: AdamW (8-bit too) 2, momentum 1, SGD 0

struct MemorySpec {
    ModelConfig cfg;       // the shape; ignored when params > 0
    int64_t params = 0;    // a bare parameter count (--params) for the rules of thumb: no shape, no activations
    Method method = Method::Full;
    OptimKind optimizer = OptimKind::AdamW;
    LoraConfig lora;
    Backend backend = Backend::Cuda;
    WeightFormat base = WeightFormat::BF16;
    int compute_bytes = 2;  // activations, adapters, norms/embeddings of a quantized base
    int master_bytes = 4;   // a separate master copy of the trainable parameters (0: none)
    int grad_bytes = 4;     // per trainable parameter
    int state_bytes = 4;    // per optimizer state per trainable parameter
    int B = 1, T = 512;     // micro-batch rows × tokens per row
    bool recompute = false; // gradient checkpointing
    bool offload_optimizer = false;  // CUDA: optimizer state, masters and a gradient copy in host memory
};

// The byte sizes of a backend (DESIGN.md §4): CPU FP32 everywhere, the FP32 parameters are their
// own master; CUDA BF16 weights/activations, FP32 masters, gradients and moments, NF4+DQ base for
// qlora. Sets base, compute, master, grad and state bytes; keeps the rest of `s`.
void memory_set_backend(MemorySpec& s, Backend b);
// The rule-of-thumb model: weights, gradients and each optimizer state at `bytes`, no master copy
// (`--bytes 2`: everything 16-bit, as the "13B × 2 bytes" figures assume). bytes must be 2 or 4.
void memory_set_uniform_bytes(MemorySpec& s, int bytes);
// The spec of training `m` with `cfg` on rows of T tokens (trainer_seq_len) on `backend`, and what
// the trainer `t` holds, as a spec (its model, method, workspace shape, backend).
MemorySpec memory_spec(const Model& m, const TrainConfig& cfg, int T, Backend backend);
MemorySpec trainer_memory_spec(const Trainer& t);

struct MemoryEstimate {
    MemorySpec spec;
    int64_t n_params = 0, n_trainable = 0;
    // Bytes of each category; total() is what a training step holds at its peak.
    size_t weights = 0, adapters = 0, gradients = 0, optimizer = 0;
    size_t activations = 0;  // layer inputs + saved per-layer activations + the final norm's output
    size_t per_layer = 0;    // saved activations of one layer (held L times, or once with recompute)
    size_t logits = 0;       // the LM head's chunk of logits and its loss workspace
    size_t scratch = 0;      // backward buffers shared by all layers (+ the dequantized weight for NF4)
    size_t backend = 0;      // CUDA: the backend's own scratch (cuBLASLt workspace, LoRA and reduction buffers)
    size_t host = 0;         // --offload-optimizer: what the optimizer adds to host memory (not in total())
    // The formula behind each line, with its numbers (for --explain).
    std::string why_weights, why_adapters, why_gradients, why_optimizer, why_activations, why_logits, why_scratch,
        why_backend, why_host;
    size_t workspace() const { return activations + logits + scratch; }  // the trainer's Workspace
    size_t total() const { return weights + adapters + gradients + optimizer + workspace() + backend; }
    double inference() const { return weights * 1.2; }  // rule of thumb: weights + 20% (KV cache, buffers)
};
MemoryEstimate memory_estimate(const MemorySpec& s);

// Ways to bring a setup that does not fit `capacity` bytes under it, each one change of flags with
// its estimated total, in this order: --recompute; a smaller micro-batch with more accumulation
// (the same examples per step), with --recompute when the batch alone is not enough; the next
// lighter method (full → lora → qlora); --offload-optimizer (CUDA). Only the changes that fit are
// listed: empty when none does alone. With stochastic_rounding (the run has --stochastic-rounding,
// which the trainer refuses beside --offload-optimizer) the offload change says it drops it.
struct MemoryFix {
    std::string flags;
    size_t total;
};
std::vector<MemoryFix> memory_fixes(const MemorySpec& s, int grad_accum, size_t capacity,
                                    bool stochastic_rounding = false);

// Bytes the backend can still allocate: the GPU's free memory, or the host's available memory
// (MemAvailable); 0 when unknown.
size_t memory_available(const Ops& ops);
// LLaMA-65B QLoRA as the QLoRA paper ran it (r=64 on all linear layers, batch 1 × 512, recompute)
// with our CUDA dtypes; `paper` = the paper's dtypes (BF16 adapters trained in place, BF16 gradients).
MemorySpec qlora_65b_spec(bool paper);

// Bytes of one tensor of n weights in NF4: ceil(n/2) bytes of 4-bit codes plus one absmax per block
// of 64 — FP32, or with double quantization an 8-bit code, one FP32 scale per 256 codes and one
// FP32 mean offset.
size_t nf4_bytes(size_t n, bool double_quant);
// Parameters of a rank-r adapter on an in×out matrix: A [r, in] + B [out, r].
int64_t lora_params(int64_t in, int64_t out, int r);

// "26.03 GB (24.24 GiB)": decimal units (GB = 1e9 bytes) with the binary ones beside.
std::string format_bytes(double bytes);
// The memory table: one line per category, the measured bytes beside the estimate when given
// (the workspace as one measured figure: the trainer's arena holds activations, logits and scratch
// together), with --explain the formula under each line.
void print_memory_table(const MemoryEstimate& e, const MemoryUse* measured, FILE* out, bool explain = false);
