#include "model/import.h"

#include <algorithm>
#include <cctype>
#include <cstdio>
#include <cstring>
#include <filesystem>
#include <map>
#include <sys/stat.h>

#include "model/util.h"
#include "model/weights.h"

ImportedModel import_model(const std::string& path, bool load_params) {
    struct stat st;
    if (stat(path.c_str(), &st) != 0) fail("%s: no such file or directory", path.c_str());
    return S_ISDIR(st.st_mode) ? import_hf_dir(path, load_params) : import_gguf(path, load_params);
}

bool model_is_imported(const std::string& path) {
    struct stat st;
    if (stat(path.c_str(), &st) != 0) return false;
    if (S_ISDIR(st.st_mode)) return file_exists(path + "/config.json");
    std::string ext = std::filesystem::path(path).extension().string();
    for (char& ch : ext) ch = (char)tolower((unsigned char)ch);
    return ext == ".gguf";
}

const ImportedModel& model_import_cached(const std::string& path) {
    static std::map<std::string, ImportedModel> imported;  // one process, one import of each model
    auto it = imported.find(path);
    if (it != imported.end()) return it->second;
    const double t0 = now_seconds();
    ImportedModel m = import_model(path, false);
    fprintf(stderr, "note: %s is imported as the model (%s%s; read in %.1f s): `./convert %s -o OUT` writes it as a "
            ".bin once\n", path.c_str(), std::filesystem::is_directory(path) ? "a Hugging Face model" : "GGUF",
            m.quantization.empty() ? "" : (", " + m.quantization + ", dequantized").c_str(), now_seconds() - t0, path.c_str());
    return imported.emplace(path, std::move(m)).first->second;
}

void import_load_params(ImportedModel& m) {
    const ParamLayout L = param_layout(m.cfg);
    m.params.assign(L.total, 0.0f);
    for (size_t i = 0; i < L.tensors.size(); i++) m.read_tensor(i, m.params.data() + L.tensors[i].offset);
}

// llama.cpp's convert_hf_to_gguf.py (LlamaModel.permute) writes
//     W_gguf = W_hf.reshape(n_head, 2, head_dim / 2, cols).swapaxes(1, 2).reshape(rows, cols)
// Hugging Face's rotate-half RoPE rotates the pair of rows (i, i + head_dim/2) of each head; llama.cpp's
// interleaved RoPE rotates rows (2i, 2i + 1). So within head h, HF row j * head_dim/2 + i (j = 0 or 1)
// sits at GGUF row 2i + j, and we move every row back.
// Row 2i + j of a head in llama.cpp's order is row j·half + i in Hugging Face's (j = 0, 1).
static void move_rope_rows(float* w, int n_head, int head_dim, int64_t cols, bool to_hf) {
    const int half = head_dim / 2;
    std::vector<float> head((size_t)head_dim * cols);
    for (int h = 0; h < n_head; h++) {
        float* base = w + (size_t)h * head_dim * cols;
        memcpy(head.data(), base, head.size() * sizeof(float));
        for (int i = 0; i < half; i++)
            for (int j = 0; j < 2; j++) {
                const size_t hf = (size_t)(j * half + i) * cols, gg = (size_t)(2 * i + j) * cols;
                memcpy(base + (to_hf ? hf : gg), head.data() + (to_hf ? gg : hf), cols * sizeof(float));
            }
    }
}

void unpermute_rope_rows(float* w, int n_head, int head_dim, int64_t cols) { move_rope_rows(w, n_head, head_dim, cols, true); }
void permute_rope_rows(float* w, int n_head, int head_dim, int64_t cols) { move_rope_rows(w, n_head, head_dim, cols, false); }

bool gguf_rope_interleaved(const std::string& arch) { return arch == "llama" || arch == "smollm3"; }

float gguf_gemma3_query_scalar(const ModelConfig& c) {
    return c.n_layers == 62 && c.n_heads > 0 ? (float)(c.dim / c.n_heads) : (float)c.head_dim;
}

bool gemma_norm_tensor(const TensorInfo& t) { return ends_with(t.name, "norm.weight"); }

void gemma_norm_shift(const ModelConfig& cfg, std::vector<float>& params, float delta) {
    for (const TensorInfo& t : param_layout(cfg).tensors)
        if (gemma_norm_tensor(t))
            for (size_t i = 0; i < t.numel; i++) params[t.offset + i] += delta;
}

static std::string shape_str(const std::vector<int64_t>& s) {
    std::string out = "[";
    for (size_t i = 0; i < s.size(); i++) out += (i ? ", " : "") + std::to_string(s[i]);
    return out + "]";
}

void import_check_shape(const TensorInfo& t, const std::vector<int64_t>& shape, const std::string& src) {
    if (shape != t.shape)
        fail("%s has shape %s, but the model's config needs %s for %s", src.c_str(), shape_str(shape).c_str(),
             shape_str(t.shape).c_str(), t.name.c_str());
}

void FusedReads::read(const void* src, const FusedPart& part, const TensorInfo& t,
                      const std::function<void(float*)>& read_whole, float* dst) {
    const size_t cols = t.shape[1];
    if (source != src) {
        values.resize((size_t)part.total * cols);
        read_whole(values.data());
        source = src;
    }
    std::copy_n(values.begin() + part.row0 * cols, t.numel, dst);
    if (part.index + 1 == part.count) *this = {};
}
