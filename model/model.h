// The LLaMA-family decoder: parameters, optional LoRA adapters, and forward/backward of a
// micro-batch through the op interface (kernels/kernels.h).
#pragma once
#include <cstdint>
#include <memory>
#include <string>
#include <vector>

#include "data/batch.h"
#include "kernels/kernels.h"
#include "model/buffer.h"
#include "model/config.h"
#include "model/lora.h"
#include "model/nf4.h"
#include "model/weights.h"

// What is trained: every weight; LoRA adapters on a frozen FP32 base; or LoRA adapters on a frozen
// NF4 base (QLoRA), dequantized one weight at a time when used.
enum class Method { Full, Lora, Qlora };
Method parse_method(const std::string& s);  // "full" | "lora" | "qlora"; fails naming the choices
const char* method_name(Method m);

// The weights as one backend's ops read them: on the CPU, pointers into the Model's own vectors; on
// CUDA, into its device copy (DeviceModel). Offsets (ModelOffsets, LoraLayout) index both alike.
struct WeightsView {
    const act* params = nullptr;    // base weights not in NF4, storage type, layout order
    const act* adapters = nullptr;  // LoRA A and B, storage type
    std::vector<NF4View> nf4;       // qlora: the quantized projections
    act* dequant = nullptr;         // qlora: the one projection dequantized at a time
    // The trainable tokens' ids of each table (LoraConfig::tokens), where the ops read them
    const int32_t* tokens[LORA_NUM_TABLES] = {nullptr, nullptr};
};

// A model on a backend that does not compute in the host's FP32 vectors (CUDA): the base and
// adapters in the storage type (BF16) for the ops, and FP32 masters of the trainable parameters,
// which the optimizer updates and then casts into the storage copy.
struct DeviceModel {
    const Ops* ops = nullptr;
    Buffer params, adapters, nf4, dequant;  // weights / adapters / weights / scratch
    Buffer token_ids;                       // the trainable tokens' ids, table after table (adapters)
    Buffer masters;                                 // FP32 trainable parameters (Mem::optimizer; training only)
    bool trained = false;                           // uploaded for training (masters here or on the host)
    WeightsView view;
};

struct Model {
    ModelConfig cfg;
    ParamLayout layout;
    ModelOffsets off;
    std::vector<float> params;  // base weights, FP32, in layout order (qlora: only those not in nf4)
    std::vector<NF4Weight> nf4; // qlora: the seven projections of every layer
    mutable std::vector<float> dequant;  // qlora: one weight dequantized at a time

    Method method = Method::Full;
    LoraConfig lora;
    LoraLayout lora_layout;
    std::vector<float> adapters;  // LoRA A and B, in lora_layout order
    // The base's own rows of the trainable tokens (LoraConfig::tokens, table after table): params
    // holds the adapters' rows in their place, as the ops read them (model_set_lora, which puts these
    // back before other adapters go in).
    std::vector<float> token_base;
    // The copy on a non-host backend (model_upload); null on the CPU. The host vectors above stay
    // the model as files see it (but for the token rows): model_download brings trained values back into them.
    std::shared_ptr<DeviceModel> device;

    bool has_adapters() const { return method != Method::Full; }
    size_t base_bytes() const;  // the frozen/trained base as stored (FP32 and NF4 parts)
    // The trainable parameters as one flat array (all weights, or the adapters) with their tensors.
    float* trainable() { return method == Method::Full ? params.data() : adapters.data(); }
    const float* trainable() const { return method == Method::Full ? params.data() : adapters.data(); }
    size_t num_trainable() const { return method == Method::Full ? params.size() : adapters.size(); }
    const std::vector<TensorInfo>& trainable_tensors() const {
        return method == Method::Full ? layout.tensors : lora_layout.tensors;
    }
};

// Copies the model to a non-host backend's memory (nothing to do for the CPU, whose ops read the
// vectors above); with `train` also the FP32 masters of the trainable parameters, unless
// `host_masters`: then the host vectors are the masters (the optimizer runs on the host and uploads
// the storage-type copy itself). Call again after the host vectors change (a loaded checkpoint):
// model_init, model_quantize_nf4 and model_set_lora / model_add_lora drop the device copy, so a
// stale one is never read.
void model_upload(Model& m, const Ops& ops, bool train = false, bool host_masters = false);
// Copies the trained FP32 masters back into the host vectors (no-op without device masters: then
// the host vectors are already the model).
void model_download(Model& m);
// What `ops` reads the weights from.
WeightsView model_weights(const Model& m, const Ops& ops);
// The trainable tokens' rows of the adapters on `ops` written into the tables the ops read (after
// every optimizer step: the forward reads the tables alone); no-op without trainable tokens.
void model_put_token_rows(Model& m, const Ops& ops);
// The optimizer's view of the trainable parameters on `ops`: FP32 masters, and the storage-type copy
// to write after each update (null when the masters are what the ops read, as on the CPU).
float* model_masters(Model& m, const Ops& ops);
act* model_compute_copy(Model& m, const Ops& ops);

// Takes ownership of the weights; method Full.
void model_init(Model& m, const ModelConfig& cfg, std::vector<float> params);
// Stores the seven projections of every layer in NF4 (double-quantized) and drops their FP32 copy;
// embeddings, norms and the LM head stay FP32, as bitsandbytes/PEFT keep them.
void model_quantize_nf4(Model& m);
// model_load + model_init + model_quantize_nf4 (the same model, bit for bit) without ever holding
// the FP32 projections: each is read from the file and quantized in turn. Host memory is the NF4
// base plus the other tensors (a 65B model: about 36 GB instead of 260 GB of FP32).
void model_load_nf4(Model& m, const std::string& path);
// FP32 parameters (param_layout order) with each projection replaced by what its NF4 weight
// dequantizes to: the base that a QLoRA run trained and measured its adapter on, for merging the
// adapter into (./export --nf4). A model made of these computes what its NF4 twin computes.
void nf4_round_trip_base(const ModelConfig& cfg, std::vector<float>& params);
// A model of the given shape with random weights (model_init_random), method Full.
void model_init_random(Model& m, const ModelConfig& cfg, uint64_t seed);
// A model whose projections are random NF4 weights made directly (nf4_weight_random), the rest as
// model_init_random: a QLoRA base of any size (LLaMA-65B) without ever holding its FP32 weights.
void model_init_random_nf4(Model& m, const ModelConfig& cfg, uint64_t seed);
// model_init_random + model_quantize_nf4 (the same model, bit for bit, as model_load_nf4 is for a
// file) with one projection in FP32 at a time: a --preset's QLoRA base in a quarter of the memory.
void model_init_random_quantized(Model& m, const ModelConfig& cfg, uint64_t seed);
// Switches to LoRA (QLoRA once quantized) with fresh adapters (A Kaiming-uniform, B zero, the saved
// modules copies of the base tensors, DoRA's magnitudes the base's row norms) or the given ones.
void model_add_lora(Model& m, const LoraConfig& lc, uint64_t seed);
// DoRA's magnitudes set to the row norms of W + s·B·A with the model's adapters (as PEFT initialises
// them: with B = 0 the base weights' norms, so training starts at the base model), W as the model
// computes with it (QLoRA: the NF4 weight dequantized).
void lora_init_magnitudes(Model& m);
void model_set_lora(Model& m, const LoraConfig& lc, std::vector<float> adapters);

// The token ids among `ids` whose embedding row, or LM head row when the head is untied, was never
// trained: a norm under 1e-3 of the median row's. Base models leave the special tokens of their chat
// versions so (Llama 3's <|eot_id|>, near 0): LoRA cannot move such a row, and a target token whose
// logit stays 0 is never generated. Sorted, each once.
std::vector<int32_t> untrained_tokens(const Model& m, const std::vector<int32_t>& ids);

// DoRA's columns in a layer (those of every projection with a magnitude; 0 without DoRA), and the
// row norms of all layers (Pass::dora_norms).
inline size_t dora_columns(const Model& m) {
    return m.has_adapters() ? dora_offset(m.cfg, m.lora, LORA_NUM_TARGETS) : 0;
}
inline size_t dora_norm_floats(const Model& m) { return (size_t)m.cfg.n_layers * dora_columns(m); }

// Saved activations of one decoder layer (see model.cpp for what each holds). Storage type, except
// rstd and lse (FP32).
struct LayerActs {
    Buffer ln1, rstd1, q, k, v, att, lse, x_mid, ln2, rstd2, gate, up, h;
    // QK-norm (Qwen3; empty otherwise): q and k as projected, before the per-head norm, and its
    // statistics, one per row and head
    Buffer q_pre, k_pre, rstd_q, rstd_k;
    // Post norms (Gemma 3; empty otherwise): the attention's and the MLP's outputs before their norms,
    // and the norms' statistics
    Buffer o, d, rstd_o, rstd_d;
    // x·Aᵀ of the adapters of each linear group (model/linear.h), [N, r per adapted projection]
    Buffer u_qkv, u_o, u_gate_up, u_down;
    // DoRA (empty otherwise): z of every projection with a magnitude, in target order (model/linear.h,
    // DoraActs)
    Buffer dora_z;
    // All of the above (memory accounting, tests).
    std::vector<const Buffer*> buffers() const {
        return {&ln1,   &rstd1, &q,     &k,     &v,      &att,    &lse,    &x_mid, &ln2,   &rstd2,   &gate, &up, &h,
                &q_pre, &k_pre, &rstd_q, &rstd_k, &o,    &d,      &rstd_o, &rstd_d, &u_qkv, &u_o, &u_gate_up, &u_down,
                &dora_z};
    }
};

// Every buffer a micro-batch of B×T needs, allocated once in the backend's memory. With recompute
// only each layer's input is kept (resid) and one LayerActs is refilled per layer in the backward.
struct Workspace {
    const Ops* ops = nullptr;
    size_t capacity = 0;  // tokens (B*T) the buffers hold; any batch up to this size fits
    int B = 0, T = 0;     // the shape of the batch in flight
    int max_B = 0, max_T = 0;  // the shape it was sized for (B·T = capacity)
    int chunk = 0;        // LM-head rows per chunk (loss_chunk)
    bool recompute = false;
    Buffer resid;                 // [(n_layers+1), B*T, dim]: each layer's input, then the final output
    std::vector<LayerActs> acts;  // n_layers, or 1 when recomputing
    Buffer final_ln, final_rstd;
    // backward scratch, shared by all layers
    Buffer dresid, dln, datt, dq, dk, dv, dh, dgate, dup, dfinal;
    Buffer dq_pre, dk_pre;  // QK-norm: the gradients of q_pre, k_pre (empty without it)
    Buffer ddora;           // DoRA: dz of a group's projections (N × dora_group_width; empty without it)
    Buffer dora_norms;      // DoRA: every layer's row norms, FP32 (Pass::dora_norms; empty without it)
    // LM head: one chunk's logits (then dlogits), gathered hidden states and their gradient; for
    // all the batch positions that carry loss weight (`rows` lists them), their losses, targets and weights
    Buffer logits, hc, dhc, nll, targets, weights, rows;
    Buffer token_dlogits;  // the chunk's dlogits of the LM head's trainable tokens [chunk, k] (empty without)
    Buffer tokens, pos, seg;      // the batch, copied to the backend
    size_t bytes() const;
};
void workspace_init(Workspace& ws, const Model& m, int B, int T, bool recompute, const Ops& ops = cpu_ops());

// Tokens the LM head processes at once: logits are never held for more than this many rows. On the
// CPU 256 rows (50 MB of FP32 logits at a 49K vocabulary) amortise packing the head's weight for the
// GEMM; the GPU needs GEMMs big enough to fill it, and 1024 rows of BF16 logits are at most
// 1024·V·2 bytes (263 MB for a 128K vocabulary).
inline int loss_chunk(bool host) { return host ? 256 : 1024; }

// One micro-batch forward and backward. Gradients of the trainable parameters accumulate into
// `grads` (num_trainable floats). grad_scale = 1 / (total loss weight of the whole accumulated
// batch). dropout_key seeds the LoRA dropout masks and NEFTune's noise, added to the embeddings when
// neftune_alpha > 0 (kernels.h, embedding_noise). Returns Σ weight·nll over the micro-batch.
double model_forward_backward(const Model& m, Workspace& ws, const Batch& batch, float* grads, float grad_scale,
                              uint64_t dropout_key, float neftune_alpha, const Ops& ops);
// Forward only, no dropout (evaluation). Returns Σ weight·nll.
double model_forward_loss(const Model& m, Workspace& ws, const Batch& batch, const Ops& ops);
// Logits of every position of one sequence: logits[T × vocab] (host FP32). For tests, fidelity checks.
void model_logits(const Model& m, const int32_t* tokens, int T, float* logits, const Ops& ops = cpu_ops());
