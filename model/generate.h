// Sampling from the model with a KV cache, several sequences at once.
#pragma once
#include <cstdint>
#include <functional>
#include <vector>

#include "model/model.h"
#include "model/util.h"

struct SampleOptions {
    int max_new_tokens = 128;
    float temperature = 0.0f;  // 0: greedy (argmax)
    int top_k = 0;             // 0: no top-k cut
    float top_p = 1.0f;        // nucleus: smallest set of tokens whose probability reaches top_p
    uint64_t seed = 0;
    // Sampling draws each sequence from its own random stream, keyed by seed and the sequence's index
    // first_seq + s (sequence 0's stream is Rng(seed)): a prompt's sampled answer is the same whatever
    // batch it shares, and the same prompt in two batches gets two draws. answer_prompts sets it to
    // the batch's first prompt.
    uint64_t first_seq = 0;
    // > 0: only ids below it are picked. A model whose embedding rows are padded past its
    // tokenizer's vocabulary (Qwen's) must never emit an id the tokenizer cannot decode.
    int vocab = 0;
};

// Samples the next token from logits[V] (modified in place) under the options, temperature > 0
// (greedy decoding picks on the backend: Ops::argmax_rows). As transformers' TopKLogitsWarper,
// top-k keeps every id whose logit equals the k-th highest.
int32_t sample_token(float* logits, int V, const SampleOptions& opt, Rng& rng);

// The seed of sequence i's random stream under `seed` (i = 0: seed itself).
uint64_t sequence_seed(uint64_t seed, uint64_t i);

// Continues every prompt until it emits one of stop_ids (not included in the result) or reaches
// max_new_tokens. Every prompt but its last token goes through the model in a prefill pass (the
// prompts packed together, whatever their lengths); then all sequences advance together, one token
// per step, so the weights are read once per step for all of them. on_token(seq, id), when given,
// sees each new token as it comes (streaming). LoRA adapters of the model are applied as in
// training. Runs on `ops` (the model must be on it: model_upload).
// LongRoPE (Phi-3): every forward takes one table, as one transformers forward of the batch does:
// the long factors once the longest sequence passes the original context; at the step where it
// does, the cache is recomputed with them (transformers' Phi-3 drops its cache there), so a prompt
// alone decodes as Phi3ForCausalLM.generate does, and one in a batch as the longest decides
// (answer_prompts batches only prompts that take the same table throughout).
// The backend memory generate() allocates for these prompts (act_size: the backend's storage
// type): the KV cache and the buffers of its passes.
size_t generate_bytes(const Model& m, const std::vector<std::vector<int32_t>>& prompts, const SampleOptions& opt,
                      size_t act_size);

std::vector<std::vector<int32_t>> generate(const Model& m, const std::vector<std::vector<int32_t>>& prompts,
                                           const SampleOptions& opt, const std::vector<int32_t>& stop_ids,
                                           const std::function<void(int, int32_t)>& on_token = nullptr,
                                           const Ops& ops = cpu_ops());
