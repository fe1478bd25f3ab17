// Importing pretrained models into our format: a GGUF file or a Hugging Face directory becomes our
// ModelConfig, the FP32 parameters in param_layout order (HF tensor names and layouts) and the tokenizer.
// Supported architectures: LLaMA (and models converted as LLaMA: Mistral, SmolLM), Qwen2, Qwen3,
// SmolLM3, Gemma 3 (text) and Phi-3 (Phi-3, Phi-3.5, Phi-4).
// Anything else, or a tensor that is missing, extra, of the wrong shape or of an unsupported type,
// fails with a message naming the file and the tensor or key.
#pragma once
#include <functional>
#include <string>
#include <vector>

#include "model/config.h"
#include "model/weights.h"
#include "tokenizer/tokenizer.h"

struct ImportedModel {
    ModelConfig cfg;
    std::vector<float> params;  // param_layout(cfg) order; empty when imported with load_params false
    Tokenizer tok;
    // A pre-quantized checkpoint's method ("bitsandbytes NF4, double-quantized scales", ...), its
    // weights dequantized on reading; "" for a full-precision one (model/import_quantized.h).
    std::string quantization;
    // Tensor i of param_layout(cfg) as FP32, from the source file, which stays mapped as long as this
    // does: ./convert writes a model a tensor at a time and never holds all of it (70B in FP32: 280 GB).
    std::function<void(size_t i, float* dst)> read_tensor;
};

// Every tensor is checked (present, shape, readable) before anything is read; with load_params the
// FP32 parameters are read into params.
ImportedModel import_gguf(const std::string& path, bool load_params = true);
// config.json, model.safetensors (or the shards of model.safetensors.index.json), tokenizer.json and
// tokenizer_config.json.
ImportedModel import_hf_dir(const std::string& dir, bool load_params = true);
// A directory is read as a Hugging Face model, a file as GGUF.
ImportedModel import_model(const std::string& path, bool load_params = true);
// params from read_tensor (what load_params does).
void import_load_params(ImportedModel& m);

// Whether `path` names a model to import rather than our .bin: a directory holding config.json (a
// Hugging Face model) or a .gguf file. Every tool's --model takes those (ModelFile, model_read_config,
// tokenizer_of_model): the model is imported once per process, without params, and kept mapped.
bool model_is_imported(const std::string& path);
const ImportedModel& model_import_cached(const std::string& path);

// llama.cpp's converter stores each q/k projection with the rows of every head permuted for its
// interleaved RoPE; this undoes it in place on a [n_head * head_dim, cols] matrix (see import.cpp),
// and permute_rope_rows does it (for export_gguf).
void unpermute_rope_rows(float* w, int n_head, int head_dim, int64_t cols);
void permute_rope_rows(float* w, int n_head, int head_dim, int64_t cols);
// Whether llama.cpp runs GGUF architecture `arch` with that interleaved RoPE (llama, smollm3: q/k
// stored permuted) rather than rotate-half (qwen2, qwen3: stored as Hugging Face has them).
bool gguf_rope_interleaved(const std::string& arch);
// llama.cpp's name of one of our (Hugging Face) tensor names ("model.layers.3.mlp.up_proj.weight" →
// "blk.3.ffn_up.weight"); "" when there is none. post_norms: the model's (Gemma 3's names differ).
std::string gguf_tensor_name(const std::string& hf, bool post_norms);

// The white space llama.cpp strips beside added tokens (Tokenizer::strip), which GGUF has no key for:
// llama.cpp sets it by the model's general.name. One with "phi-3" or "phi3" in it (any case) gets
// Phi-3's: rstrip on every special token (</s> among them), but <unk>, <s> and <|endoftext|>. Any other
// name: none.
std::vector<uint8_t> gguf_token_strips(const Tokenizer& tok, const std::string& general_name);

// The query_pre_attn_scalar llama.cpp hard-codes for a gemma3 GGUF (it has no key for it):
// dim / heads at 62 layers (Gemma-3-27B), head_dim otherwise.
float gguf_gemma3_query_scalar(const ModelConfig& c);

// Gemma's RMSNorm multiplies by (1 + w) where ours multiplies by w: every norm weight of a Gemma 3
// model is stored here with the 1 added (as llama.cpp's GGUFs store them). `delta` +1 reads a
// Hugging Face checkpoint, -1 writes one.
void gemma_norm_shift(const ModelConfig& cfg, std::vector<float>& params, float delta);
bool gemma_norm_tensor(const TensorInfo& t);  // the tensors it shifts

// Shared by the two importers: fails, naming `src` (file and tensor), when a source tensor's shape is
// not the one the layout gives `t`.
void import_check_shape(const TensorInfo& t, const std::vector<int64_t>& shape, const std::string& src);

// How both importers read Phi-3's fused tensors (stored_tensor): layout tensor t, part `part` of the
// fused tensor `source`, is its rows of the whole, which `read_whole` reads once for the consecutive
// parts (q, k, v; gate, up) and which is let go after the last (the import holds no copy of it).
struct FusedReads {
    const void* source = nullptr;  // the fused tensor held in `values`
    std::vector<float> values;
    void read(const void* source, const FusedPart& part, const TensorInfo& t,
              const std::function<void(float*)>& read_whole, float* dst);
};
