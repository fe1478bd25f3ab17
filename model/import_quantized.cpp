// Pre-quantized Hugging Face checkpoints (bitsandbytes 4-bit and 8-bit, FP8 with block scales) read
// back to FP32: the formats are described in import_quantized.h.
#include "model/import_quantized.h"

#include <algorithm>
#include <cmath>
#include <cstring>

#include "model/util.h"

namespace {
int64_t ceil_div(int64_t a, int64_t b) { return (a + b - 1) / b; }

// A side tensor's count of values, and that they can be read as FP32 (checked before anything is read).
void expect_values(const SafetensorsSet& st, const SafeTensor& t, int64_t numel) {
    if (t.numel != numel)
        fail("%s: tensor %s has %lld values where %lld are expected (a damaged or unknown quantization layout)",
             t.file->path.c_str(), t.name.c_str(), (long long)t.numel, (long long)numel);
    st.check_readable(t);
}

// A side tensor's values as FP32, checking their count.
std::vector<float> read_values(const SafetensorsSet& st, const SafeTensor& t, int64_t numel) {
    expect_values(st, t, numel);
    std::vector<float> v((size_t)numel);
    st.read_f32(t, v.data());
    return v;
}

int64_t state_int(const JsonValue& s, const char* key, const SafeTensor& t) {
    const JsonValue* v = s.get(key);
    if (!v || v->type != JsonValue::Number || !v->exact_integer || v->integer <= 0)
        fail("%s: tensor %s: \"%s\" must be a positive integer", t.file->path.c_str(), t.name.c_str(), key);
    return v->integer;
}

// bitsandbytes 4-bit: the JSON quant state, and every side tensor's size against it.
void bnb4_weight(const SafetensorsSet& st, HfWeight& w, const SafeTensor& state, HfQuantization& q) {
    const SafeTensor& t = *w.data;
    // The state and the other side tensors may sit in another shard than the weight (a checkpoint
    // split between them): each is read from, and named with, its own file.
    const char *file = t.file->path.c_str(), *sfile = state.file->path.c_str();
    if (state.dtype != "U8") fail("%s: tensor %s must be U8 (JSON bytes)", sfile, state.name.c_str());
    JsonValue s;
    try {
        s = json_parse(std::string((const char*)state.file->data + state.offset, state.nbytes));
    } catch (const std::runtime_error& e) {
        fail("%s: tensor %s is not the JSON of a bitsandbytes quant state: %s", sfile, state.name.c_str(), e.what());
    }
    const JsonValue* type = s.get("quant_type");
    w.quant_type = ends_with(state.name, "nf4") ? "nf4" : "fp4";
    if (!type || type->type != JsonValue::String || type->string != w.quant_type)
        fail("%s: tensor %s: \"quant_type\" must be \"%s\", as its name says", sfile, state.name.c_str(), w.quant_type.c_str());
    const JsonValue* shape = s.get("shape");
    if (!shape || shape->type != JsonValue::Array || shape->array.size() != 2)
        fail("%s: tensor %s: \"shape\" must be the weight's [out, in]", sfile, state.name.c_str());
    w.shape.clear();
    int64_t n = 1;
    for (const JsonValue& d : shape->array) {
        if (d.type != JsonValue::Number || !d.exact_integer || d.integer <= 0 || d.integer > ((int64_t)1 << 31))
            fail("%s: tensor %s: \"shape\" must be the weight's [out, in]", sfile, state.name.c_str());
        w.shape.push_back(d.integer);
        n *= d.integer;
    }
    // The packed codes may sit in a tensor of any dtype (bnb_4bit_quant_storage): only the bytes count.
    if ((int64_t)t.nbytes < ceil_div(n, 2) || (int64_t)t.nbytes > ceil_div(n, 2) + 16)
        fail("%s: tensor %s holds %zu bytes: a %lld x %lld weight in 4 bits takes %lld", file, t.name.c_str(), t.nbytes,
             (long long)w.shape[0], (long long)w.shape[1], (long long)ceil_div(n, 2));
    w.blocksize = state_int(s, "blocksize", state);
    const int64_t blocks = ceil_div(n, w.blocksize);
    auto side = [&](const char* suffix, bool required) {
        const SafeTensor* p = st.find(t.name + suffix);
        if (!p && required) fail("%s: tensor %s has a 4-bit quant state but no %s%s beside it", file, t.name.c_str(), t.name.c_str(), suffix);
        if (p) w.parts.push_back(p);
        return p;
    };
    w.quant_map = side(".quant_map", true);
    w.absmax = side(".absmax", true);
    w.nested_absmax = side(".nested_absmax", false);
    w.nested_quant_map = side(".nested_quant_map", w.nested_absmax != nullptr);
    expect_values(st, *w.quant_map, 16);
    if (w.nested_absmax) {
        w.nested_blocksize = state_int(s, "nested_blocksize", state);
        const JsonValue* off = s.get("nested_offset");
        if (!off || off->type != JsonValue::Number)
            fail("%s: tensor %s: \"nested_offset\" must be a number", sfile, state.name.c_str());
        w.nested_offset = (float)off->number;  // Python wrote the FP32 offset's exact value
        if (w.absmax->dtype != "U8" || w.absmax->numel != blocks)
            fail("%s: tensor %s must hold %lld U8 codes, one per block of %lld", w.absmax->file->path.c_str(), w.absmax->name.c_str(),
                 (long long)blocks, (long long)w.blocksize);
        expect_values(st, *w.nested_quant_map, 256);
        expect_values(st, *w.nested_absmax, ceil_div(blocks, w.nested_blocksize));
    } else {
        if (w.absmax->dtype == "U8")  // 8-bit codes of a double quantization whose other half is gone
            fail("%s: tensor %s holds 8-bit codes (double quantization) but %s.nested_absmax and %s.nested_quant_map "
                 "are missing beside it", file, w.absmax->name.c_str(), t.name.c_str(), t.name.c_str());
        expect_values(st, *w.absmax, blocks);
    }
    const std::string kind = std::string(w.quant_type == "nf4" ? "NF4" : "FP4") +
                             (w.blocksize != 64 ? " in blocks of " + std::to_string(w.blocksize) : "") +
                             (w.nested_absmax ? ", double-quantized scales" : "");
    if (q.bnb_kind.empty()) q.bnb_kind = kind;
    else if (q.bnb_kind.find(kind) == std::string::npos) q.bnb_kind += "; " + kind;
}

void bnb8_weight(const SafetensorsSet& st, HfWeight& w, const SafeTensor& scb, HfQuantization& q) {
    const SafeTensor& t = *w.data;
    const char* file = t.file->path.c_str();
    if (t.dtype != "I8" || t.shape.size() != 2)
        fail("%s: tensor %s has an 8-bit scale (%s) beside it but is %s, not an I8 matrix", file, t.name.c_str(),
             scb.name.c_str(), t.dtype.c_str());
    w.scale = &scb;
    w.parts.push_back(&scb);
    expect_values(st, scb, t.shape[0]);
    const std::string module = t.name.substr(0, t.name.size() - 7);
    if (const SafeTensor* format = st.find(module + ".weight_format")) {
        w.parts.push_back(format);
        if (format->dtype != "U8" || format->numel != 1 || *(const uint8_t*)(format->file->data + format->offset) != 0)
            fail("%s: tensor %s is not 0: only the row-major layout of bitsandbytes' 8-bit weights is read (save the "
                 "model again with a current bitsandbytes)", file, format->name.c_str());
    }
    if (q.bnb_kind.empty()) q.bnb_kind = "8-bit";
    else if (q.bnb_kind.find("8-bit") == std::string::npos) q.bnb_kind += "; 8-bit";
}

// The scales of w (shape and block set): a [ceil(out/b0), ceil(in/b1)] grid, which with one column may be
// stored as [out], and with one scale as [] or [1].
void scale_grid(const SafetensorsSet& st, HfWeight& w, const SafeTensor& scale, const HfQuantization& q) {
    const int64_t rows = ceil_div(w.shape[0], w.block[0]), cols = ceil_div(w.shape[1], w.block[1]);
    const std::vector<int64_t>& s = scale.shape;
    const bool fits = (s.size() == 2 && s[0] == rows && s[1] == cols) || (s.size() == 1 && s[0] == rows && cols == 1) ||
                      (s.size() <= 1 && scale.numel == 1 && rows == 1 && cols == 1);
    if (!fits)
        fail("%s: tensor %s must be [%lld, %lld]: one scale per %lld x %lld block of %s (%s)", scale.file->path.c_str(),
             scale.name.c_str(), (long long)rows, (long long)cols, (long long)w.block[0], (long long)w.block[1],
             w.data->name.c_str(), q.describe().c_str());
    st.check_readable(scale);
    w.scale = &scale;
}

// An 8-bit weight (FP8 E4M3 or INT8) times a scale per block of q.block (the whole weight, a row, a
// group of a row or a 2-D block), the scales a [ceil(out/b0), ceil(in/b1)] grid (a grid of one scale
// per tensor or row may be stored as [] / [1] or [out]).
void scaled_weight(const SafetensorsSet& st, HfWeight& w, const SafeTensor& scale, HfQuantization& q) {
    const SafeTensor& t = *w.data;
    const char* file = t.file->path.c_str();
    const std::string want = q.int8 ? "I8" : "F8_E4M3";
    if (t.dtype != want || t.shape.size() != 2 || t.numel == 0)
        fail("%s: tensor %s has a scale (%s) beside it but is %s, not an %s matrix", file, t.name.c_str(),
             scale.name.c_str(), t.dtype.c_str(), want.c_str());
    // AutoFP8's checkpoints (quant_method fp8 without weight_block_size) keep one scale per tensor
    const bool per_tensor = q.fp8_default_block && scale.numel == 1 && scale.shape.size() <= 1;
    if (per_tensor) q.strategy = "tensor";
    w.block[0] = q.block[0] && !per_tensor ? q.block[0] : t.shape[0];  // 0: the whole dimension
    w.block[1] = q.block[1] && !per_tensor ? q.block[1] : t.shape[1];
    scale_grid(st, w, scale, q);
    w.parts.push_back(&scale);
}

// A positive integer of a JSON object, or `fallback` when absent or null (-1: required).
int64_t config_int(const JsonValue* o, const char* key, int64_t fallback, const std::string& path, const char* where) {
    const JsonValue* v = o ? o->get(key) : nullptr;
    if ((!v || v->is_null()) && fallback >= 0) return fallback;
    if (!v || v->type != JsonValue::Number || !v->exact_integer || v->integer <= 0)
        fail("%s: quantization_config%s.%s must be a positive integer", path.c_str(), where, key);
    return v->integer;
}

// [rows, columns] of a block (weight_block_size, block_structure).
void config_block(const JsonValue* b, int64_t block[2], const std::string& path, const char* key) {
    if (!b || b->type != JsonValue::Array || b->array.size() != 2)
        fail("%s: quantization_config: %s must be [rows, columns]", path.c_str(), key);
    for (int i = 0; i < 2; i++) {
        const JsonValue& v = b->array[i];
        if (v.type != JsonValue::Number || !v.exact_integer || v.integer <= 0)
            fail("%s: quantization_config: %s must be two positive integers", path.c_str(), key);
        block[i] = v.integer;
    }
}

// compressed-tensors (llm-compressor's checkpoints, RedHatAI's "-FP8-dynamic" and "-quantized.w8a8"
// models): the weights' scheme of its config groups, which must be one symmetric 8-bit scheme.
void compressed_tensors_scheme(const JsonValue& qc, HfQuantization& q, const std::string& path) {
    const JsonValue* format = qc.get("format");
    const std::string f = format && format->type == JsonValue::String ? format->string : "";
    if (f == "dense") {  // stored unquantized
        q.method.clear();
        return;
    }
    if (f != "float-quantized" && f != "int-quantized" && f != "naive-quantized" && f != "pack-quantized")
        fail("%s: quantization_config.format is '%s': of compressed-tensors checkpoints ./convert reads float-quantized, "
             "int-quantized, naive-quantized and pack-quantized ones, not sparse or FP4 ones. Convert the model's "
             "unquantized BF16/FP16 safetensors (or a GGUF) instead", path.c_str(), f.empty() ? "missing" : f.c_str());
    q.packed = f == "pack-quantized";
    const JsonValue* groups = qc.get("config_groups");
    if (!groups || groups->type != JsonValue::Object || groups->object.empty())
        fail("%s: quantization_config.config_groups must list the quantization schemes", path.c_str());
    std::string scheme;
    for (const auto& g : groups->object) {
        const JsonValue* wt = g.second.get("weights");
        const std::string where = ".config_groups." + g.first + ".weights";
        if (!wt || wt->type != JsonValue::Object) fail("%s: quantization_config%s must be an object", path.c_str(), where.c_str());
        const JsonValue *type = wt->get("type"), *strategy = wt->get("strategy"), *sym = wt->get("symmetric");
        const int64_t bits = config_int(wt, "num_bits", -1, path, where.c_str());
        if (!type || type->type != JsonValue::String || !strategy || strategy->type != JsonValue::String ||
            (q.packed ? type->string != "int" || bits > 8 : (type->string != "float" && type->string != "int") || bits != 8))
            fail("%s: quantization_config%s: read are 8-bit float or int weights, and packed ones of 1 to 8 bits "
                 "(num_bits, type float|int, a strategy)", path.c_str(), where.c_str());
        const bool asymmetric = sym && sym->type == JsonValue::Bool && !sym->boolean;
        if (asymmetric && !q.packed)
            fail("%s: quantization_config%s.symmetric is false: weights with zero points are read packed only",
                 path.c_str(), where.c_str());
        const std::string st = strategy->string;
        int64_t block[2] = {0, 0};
        if (st == "channel") block[0] = 1;
        else if (st == "group") block[0] = 1, block[1] = config_int(wt, "group_size", -1, path, where.c_str());
        else if (st == "block") config_block(wt->get("block_structure"), block, path, (where + ".block_structure").c_str());
        else if (st != "tensor")
            fail("%s: quantization_config%s.strategy is '%s': tensor, channel, group and block are read", path.c_str(),
                 where.c_str(), st.c_str());
        if (q.packed && st == "block") fail("%s: quantization_config%s: packed weights in 2-D blocks are not read", path.c_str(), where.c_str());
        const std::string this_scheme = type->string + std::to_string(bits) + (asymmetric ? "/asymmetric/" : "/") + st + "/" +
                                        std::to_string(block[0]) + "x" + std::to_string(block[1]);
        if (!scheme.empty() && scheme != this_scheme)
            fail("%s: quantization_config.config_groups weigh layers by different schemes (%s and %s): not read",
                 path.c_str(), scheme.c_str(), this_scheme.c_str());
        scheme = this_scheme;
        q.int8 = type->string == "int";
        q.bits = (int)bits;
        q.zero_points = asymmetric;
        q.strategy = st;
        q.block[0] = block[0];
        q.block[1] = block[1];
    }
}

// compressed-tensors pack-quantized: the weight's shape from MODULE.weight_shape, the packed words' and
// the scales' sizes against it, and the packed zero points of an asymmetric scheme.
void packed_weight(const SafetensorsSet& st, HfWeight& w, const std::string& weight, const HfQuantization& q) {
    const SafeTensor& t = *w.data;
    const char* file = t.file->path.c_str();
    auto side = [&](const std::string& name) {
        const SafeTensor* p = st.find(name);
        if (!p) fail("%s: tensor %s is packed but %s is missing beside it", file, t.name.c_str(), name.c_str());
        w.parts.push_back(p);
        return p;
    };
    const SafeTensor* shape = side(weight + "_shape");
    if ((shape->dtype != "I64" && shape->dtype != "I32") || shape->numel != 2)
        fail("%s: tensor %s must hold the weight's [out, in] as 2 integers", file, shape->name.c_str());
    const uint8_t* p = shape->file->data + shape->offset;
    w.shape.clear();
    for (int i = 0; i < 2; i++) {
        int64_t v = 0;
        if (shape->dtype == "I64") memcpy(&v, p + 8 * i, 8);
        else v = (int32_t)(p[4 * i] | p[4 * i + 1] << 8 | p[4 * i + 2] << 16 | (uint32_t)p[4 * i + 3] << 24);
        if (v <= 0 || v > ((int64_t)1 << 31)) fail("%s: tensor %s must hold the weight's [out, in] as 2 positive integers", file, shape->name.c_str());
        w.shape.push_back(v);
    }
    w.bits = q.bits;
    const int64_t rows = w.shape[0], cols = w.shape[1], words = ceil_div(cols * w.bits, 32);
    if (t.dtype != "I32" || t.shape.size() != 2 || t.shape[0] != rows || t.shape[1] != words)
        fail("%s: tensor %s must be I32 [%lld, %lld]: %lld x %lld values of %d bits packed into 32-bit words", file,
             t.name.c_str(), (long long)rows, (long long)words, (long long)rows, (long long)cols, w.bits);
    w.block[0] = q.block[0] ? q.block[0] : rows;
    w.block[1] = q.block[1] ? q.block[1] : cols;
    const int64_t groups = ceil_div(cols, w.block[1]);
    scale_grid(st, w, *side(weight + "_scale"), q);
    if (q.zero_points) {
        w.zero_point = side(weight + "_zero_point");
        const SafeTensor& z = *w.zero_point;
        if (z.dtype != "I32" || z.shape.size() != 2 || z.shape[0] != ceil_div(rows * w.bits, 32) || z.shape[1] != groups)
            fail("%s: tensor %s must be I32 [%lld, %lld]: each group's zero points of %d bits packed down the rows", file,
                 z.name.c_str(), (long long)ceil_div(rows * w.bits, 32), (long long)groups, w.bits);
    }
}

// GPTQ and AWQ: the weight's shape from the packed words and the scales, each side tensor's size.
void gptq_awq_weight(const SafetensorsSet& st, HfWeight& w, const std::string& module, const HfQuantization& q) {
    const SafeTensor& t = *w.data;
    const char* file = t.file->path.c_str();
    auto side = [&](const char* name, bool required) {
        const SafeTensor* p = st.find(module + "." + name);
        if (!p && required) fail("%s: tensor %s is packed but %s.%s is missing beside it", file, t.name.c_str(), module.c_str(), name);
        if (p) w.parts.push_back(p);
        return p;
    };
    w.scale = side("scales", true);
    w.zero_point = side("qzeros", q.method == "gptq" || q.zero_points);
    w.g_idx = q.method == "gptq" ? side("g_idx", false) : nullptr;
    // AutoGPTQ saves a bias for every layer, zeros where the model has none: those are not a part of it
    if (const SafeTensor* bias = st.find(module + ".bias")) {
        std::vector<float> b((size_t)bias->numel);
        st.check_readable(*bias);
        st.read_f32(*bias, b.data());
        if (std::all_of(b.begin(), b.end(), [](float x) { return x == 0.0f; })) w.parts.push_back(bias);
    }
    w.bits = q.bits;
    w.gptq_v1 = q.gptq_v1;
    const int per_word = 32 / q.bits;
    if (t.dtype != "I32" || t.shape.size() != 2 || w.scale->shape.size() != 2)
        fail("%s: tensor %s must be an I32 matrix of packed values, beside a [groups, out] %s", file, t.name.c_str(),
             w.scale->name.c_str());
    const int64_t in = q.method == "gptq" ? t.shape[0] * per_word : t.shape[0];
    const int64_t out = q.method == "gptq" ? t.shape[1] : t.shape[1] * per_word;
    w.shape = {out, in};
    w.group_size = q.group_size < 0 ? in : q.group_size;
    const int64_t groups = ceil_div(in, w.group_size);
    if (w.scale->shape[0] != groups || w.scale->shape[1] != out)
        fail("%s: tensor %s must be [%lld, %lld]: a scale per group of %lld inputs and output", file, w.scale->name.c_str(),
             (long long)groups, (long long)out, (long long)w.group_size);
    st.check_readable(*w.scale);
    if (w.zero_point) {
        const SafeTensor& z = *w.zero_point;
        if (z.dtype != "I32" || z.shape.size() != 2 || z.shape[0] != groups || z.shape[1] * per_word != out)
            fail("%s: tensor %s must be I32 [%lld, %lld]: the zero points of each group, packed along the outputs", file,
                 z.name.c_str(), (long long)groups, (long long)(out / per_word));
    }
    if (w.g_idx) {
        const SafeTensor& g = *w.g_idx;
        if (g.dtype != "I32" || g.numel != in) fail("%s: tensor %s must hold %lld I32 groups, one per input", file, g.name.c_str(), (long long)in);
        const int32_t* gi = (const int32_t*)(g.file->data + g.offset);
        for (int64_t i = 0; i < in; i++)
            if (gi[i] < 0 || gi[i] >= groups)
                fail("%s: tensor %s: input %lld is in group %d, not one of the %lld", file, g.name.c_str(), (long long)i, gi[i],
                     (long long)groups);
    }
}

// Value i of a run of `bits`-bit values packed densely into little-endian 32-bit words (value i at bit i·bits).
uint32_t packed_value(const uint8_t* words, int64_t i, int bits) {
    const int64_t bit = i * bits;
    uint64_t two = 0;  // the word holding the value's first bit and the next one, for a value across the boundary
    memcpy(&two, words + (bit / 32) * 4, (bit % 32) + bits > 32 ? 8 : 4);
    return (uint32_t)(two >> (bit % 32)) & ((1u << bits) - 1);
}
}  // namespace

std::string HfQuantization::describe() const {
    if (method == "bitsandbytes") return "bitsandbytes " + (bnb_kind.empty() ? std::string("(no quantized weights)") : bnb_kind);
    if (method == "gptq" || method == "awq")
        return (method == "gptq" ? "GPTQ INT" : "AWQ INT") + std::to_string(bits) + " with a scale" +
               (method == "gptq" || zero_points ? " and zero point" : "") + " per " +
               (group_size < 0 ? std::string("column") : std::to_string(group_size) + " inputs");
    const std::string values = (method == "fp8" ? "" : method + " ") + (int8 ? "INT" + std::to_string(bits) : "FP8 E4M3") +
                               (packed ? " packed" : "") + (zero_points ? " with zero points," : "");
    if (strategy == "tensor") return values + " with a scale per tensor";
    if (strategy == "channel") return values + " with a scale per row";
    if (strategy == "group") return values + " with a scale per " + std::to_string(block[1]) + " values of a row";
    return values + " with a scale per " + std::to_string(block[0]) + " x " + std::to_string(block[1]) + " block";
}

HfQuantization hf_quantization(const JsonValue& config, const std::string& path) {
    HfQuantization q;
    const JsonValue* qc = config.get("quantization_config");
    if (!qc || qc->is_null()) return q;
    if (qc->type != JsonValue::Object) fail("%s: quantization_config must be an object", path.c_str());
    q.present = true;
    const JsonValue* m = qc->get("quant_method");
    q.method = m && m->type == JsonValue::String ? m->string : "";
    if (q.method.empty() && (qc->get("load_in_4bit") || qc->get("load_in_8bit"))) q.method = "bitsandbytes";  // older configs
    if (q.method == "fp8") {  // transformers' FineGrainedFP8Config
        const JsonValue* fmt = qc->get("fmt");
        if (fmt && fmt->type == JsonValue::String && fmt->string != "e4m3")
            fail("%s: quantization_config.fmt is '%s': only FP8 E4M3 weights are read", path.c_str(), fmt->string.c_str());
        // weight_block_size: null is one scale per tensor (FineGrainedFP8Config's weight_block_size=None);
        // absent, its default 128 x 128, or AutoFP8's scale per tensor (scaled_weight tells them apart)
        const JsonValue* b = qc->get("weight_block_size");
        q.strategy = b && b->is_null() ? "tensor" : "block";
        q.fp8_default_block = !b;
        if (!b) q.block[0] = q.block[1] = 128;
        else if (!b->is_null()) config_block(b, q.block, path, "weight_block_size");
    } else if (q.method == "compressed-tensors") {
        compressed_tensors_scheme(*qc, q, path);
    } else if (q.method == "gptq" || q.method == "awq") {
        q.bits = (int)config_int(qc, q.method == "gptq" ? "bits" : "bits", 4, path, "");
        if (q.method == "gptq" ? q.bits != 2 && q.bits != 4 && q.bits != 8 : q.bits != 4)
            fail("%s: quantization_config.bits is %d: %s checkpoints of %s bits are read", path.c_str(), q.bits,
                 q.method.c_str(), q.method == "gptq" ? "2, 4 or 8" : "4");
        const JsonValue* g = qc->get("group_size");
        q.group_size = g && g->type == JsonValue::Number && g->number == -1 ? -1 : config_int(qc, "group_size", 128, path, "");
        auto text = [&](const char* key) {
            const JsonValue* v = qc->get(key);
            return v && v->type == JsonValue::String ? v->string : std::string();
        };
        if (q.method == "gptq") {
            const std::string format = !text("checkpoint_format").empty() ? text("checkpoint_format") : text("format");
            if (!format.empty() && format != "gptq" && format != "gptq_v2")
                fail("%s: quantization_config.checkpoint_format is '%s': GPTQ's gptq and gptq_v2 layouts are read, not "
                     "Marlin's or BitBLAS' repacked ones", path.c_str(), format.c_str());
            q.gptq_v1 = format != "gptq_v2";
        } else {
            const std::string version = text("version");
            if (!version.empty() && version != "gemm" && version != "GEMM")
                fail("%s: quantization_config.version is '%s': AutoAWQ's GEMM layout is read, not its GEMV, Marlin or "
                     "ExLlama ones", path.c_str(), version.c_str());
            const JsonValue* zp = qc->get("zero_point");
            q.zero_points = !zp || zp->type != JsonValue::Bool || zp->boolean;
        }
    } else if (q.method != "bitsandbytes") {
        fail("%s: quantization_config.quant_method is '%s': ./convert reads bitsandbytes (4-bit NF4/FP4, 8-bit), fp8, "
             "compressed-tensors, GPTQ and AWQ checkpoints only. Convert the model's unquantized BF16/FP16 safetensors (or a GGUF) instead",
             path.c_str(), q.method.empty() ? "missing" : q.method.c_str());
    }
    return q;
}

HfWeight hf_weight(const SafetensorsSet& st, const SafeTensor& t, HfQuantization& q) {
    HfWeight w;
    w.data = &t;
    w.shape = t.shape;
    const SafeTensor* state = st.find(t.name + ".quant_state.bitsandbytes__nf4");
    if (!state) state = st.find(t.name + ".quant_state.bitsandbytes__fp4");
    const std::string module = ends_with(t.name, ".weight") ? t.name.substr(0, t.name.size() - 7) : "";
    const SafeTensor* scb = module.empty() ? nullptr : st.find(module + ".SCB");
    // FP8's is W_scale_inv, compressed-tensors' MODULE.weight_scale (both multiply)
    const SafeTensor* scale = st.find(t.name + (q.method == "fp8" ? "_scale_inv" : "_scale"));
    if (!scale && q.method == "fp8") scale = st.find(t.name + "_scale");  // AutoFP8's (neuralmagic's first -FP8 models)
    if ((q.method == "gptq" || q.method == "awq") && ends_with(t.name, ".qweight")) {
        w.kind = q.method == "gptq" ? HfWeight::Gptq : HfWeight::Awq;
        gptq_awq_weight(st, w, t.name.substr(0, t.name.size() - 8), q);
    } else if (q.packed && ends_with(t.name, ".weight_packed")) {
        w.kind = HfWeight::Packed;
        packed_weight(st, w, t.name.substr(0, t.name.size() - 7), q);
    } else if (state) {
        w.kind = HfWeight::Bnb4;
        w.parts.push_back(state);
        bnb4_weight(st, w, *state, q);
    } else if (scb) {
        w.kind = HfWeight::Bnb8;
        bnb8_weight(st, w, *scb, q);
    } else if (scale && (q.method == "fp8" || q.method == "compressed-tensors")) {
        w.kind = HfWeight::Scaled;
        scaled_weight(st, w, *scale, q);
        for (const char* refused : {"_zero_point", "_g_idx"})
            if (st.find(t.name + refused))
                fail("%s: tensor %s%s: weights with zero points or a group order are not read", t.file->path.c_str(),
                     t.name.c_str(), refused);
    } else if (!q.method.empty() && (t.dtype == "U8" || t.dtype == "I8" || t.dtype == "F8_E4M3")) {
        fail("%s: tensor %s is %s without the side tensors that dequantize it (a %s checkpoint's quant_state, SCB, "
             "weight_scale_inv or weight_scale): a damaged or unknown quantization layout", t.file->path.c_str(), t.name.c_str(),
             t.dtype.c_str(), q.method.c_str());
    } else {
        st.check_readable(t);
    }
    return w;
}

bool hf_activation_scale(const std::string& name) {
    for (const char* suffix : {".input_scale", ".output_scale", ".activation_scale", ".k_scale", ".v_scale", ".q_scale", ".kv_scale"})
        if (ends_with(name, suffix)) return true;
    return false;
}

float f8e4m3_to_f32(uint8_t v) {
    const int exp = (v >> 3) & 15, man = v & 7;
    float mag;
    if (exp == 15 && man == 7) mag = NAN;
    else if (exp == 0) mag = std::ldexp((float)man, -9);  // subnormal: man/8 · 2^-6
    else mag = std::ldexp((float)(8 + man), exp - 10);    // (1 + man/8) · 2^(exp-7)
    return v & 0x80 ? -mag : mag;
}

void hf_weight_read(const SafetensorsSet& st, const HfWeight& w, float* dst) {
    if (w.kind == HfWeight::Plain) return st.read_f32(*w.data, dst);
    const int64_t rows = w.shape[0], cols = w.shape[1], n = rows * cols;
    const uint8_t* src = w.data->file->data + w.data->offset;
    if (w.kind == HfWeight::Bnb8) {
        // bitsandbytes' int8_vectorwise_dequant: (W8 · SCB) · (1/127 as FP32), two roundings
        const std::vector<float> scb = read_values(st, *w.scale, rows);
        const float inv127 = 7.874015718698502e-3f;
#pragma omp parallel for schedule(static)
        for (int64_t r = 0; r < rows; r++)
            for (int64_t c = 0; c < cols; c++) dst[r * cols + c] = (float)(int8_t)src[r * cols + c] * scb[r] * inv127;
        return;
    }
    if (w.kind == HfWeight::Gptq || w.kind == HfWeight::Awq) {
        const bool gptq = w.kind == HfWeight::Gptq;
        const std::vector<float> scale = read_values(st, *w.scale, w.scale->numel);
        const int per_word = 32 / w.bits;
        const uint32_t mask = (1u << w.bits) - 1;
        static const int kAwqNibble[8] = {0, 4, 1, 5, 2, 6, 3, 7};  // AutoAWQ's order of 8 outputs in a word
        // Output o's field in a row of words packed along the outputs (qzeros; AWQ's qweight too)
        auto field = [&](const uint32_t* row, int64_t o) {
            const int pos = gptq ? (int)(o % per_word) : kAwqNibble[o % 8];
            return (row[o / per_word] >> (pos * w.bits)) & mask;
        };
        const int64_t groups = w.scale->shape[0], zwords = rows / per_word;
        std::vector<float> zero((size_t)(groups * rows), (float)(1 << (w.bits - 1)));  // no qzeros (AWQ zero_point false): 2^(b-1)
        if (w.zero_point) {
            const uint32_t* z = (const uint32_t*)(w.zero_point->file->data + w.zero_point->offset);
            // GPTQ v1 keeps each zero point minus one; GPTQModel adds one back in every field of the word at
            // once (a carry, where a field stored -1, runs into the next), and so do we
            uint32_t one = 0;
            for (int f = 0; f < per_word && gptq && w.gptq_v1; f++) one |= 1u << (f * w.bits);
            std::vector<uint32_t> row((size_t)zwords);
            for (int64_t g = 0; g < groups; g++) {
                for (int64_t k = 0; k < zwords; k++) row[k] = z[g * zwords + k] + one;
                for (int64_t o = 0; o < rows; o++) zero[g * rows + o] = (float)field(row.data(), o);
            }
        }
        const int32_t* g_idx = w.g_idx ? (const int32_t*)(w.g_idx->file->data + w.g_idx->offset) : nullptr;
        const uint32_t* q = (const uint32_t*)src;
        const int64_t words = w.data->shape[1];  // gptq: outputs; awq: out / 8
#pragma omp parallel for schedule(static)
        for (int64_t o = 0; o < rows; o++)
            for (int64_t i = 0; i < cols; i++) {
                const uint32_t v = gptq ? (q[(i / per_word) * words + o] >> ((i % per_word) * w.bits)) & mask : field(q + i * words, o);
                const int64_t g = g_idx ? g_idx[i] : i / w.group_size;
                dst[o * cols + i] = ((float)v - zero[g * rows + o]) * scale[g * rows + o];
            }
        return;
    }
    if (w.kind == HfWeight::Packed) {
        // (q - z) · scale, q and z stored as unsigned q + 2^(bits-1); a zero point z of row r and group g is
        // value r of column g's run of words (packed down the rows: column g's words are strided by groups)
        const std::vector<float> scale = read_values(st, *w.scale, w.scale->numel);
        const int64_t groups = ceil_div(cols, w.block[1]), words = w.data->shape[1], offset = 1 << (w.bits - 1);
        const int64_t zwords = w.zero_point ? w.zero_point->shape[0] : 0;
        std::vector<uint8_t> zcol((size_t)(zwords * 4));  // one column of zero-point words, made contiguous
        std::vector<float> zero((size_t)(w.zero_point ? rows * groups : 0));
        for (int64_t g = 0; g < groups && w.zero_point; g++) {
            const uint8_t* z = w.zero_point->file->data + w.zero_point->offset;
            for (int64_t k = 0; k < zwords; k++) memcpy(zcol.data() + 4 * k, z + (k * groups + g) * 4, 4);
            for (int64_t r = 0; r < rows; r++) zero[r * groups + g] = (float)((int64_t)packed_value(zcol.data(), r, w.bits) - offset);
        }
#pragma omp parallel for schedule(static)
        for (int64_t r = 0; r < rows; r++) {
            const uint8_t* row = src + r * words * 4;
            for (int64_t c = 0; c < cols; c++) {
                const int64_t g = c / w.block[1];
                const float z = w.zero_point ? zero[r * groups + g] : 0.0f;
                dst[r * cols + c] = ((float)((int64_t)packed_value(row, c, w.bits) - offset) - z) *
                                    scale[(r / w.block[0]) * groups + g];
            }
        }
        return;
    }
    if (w.kind == HfWeight::Scaled) {
        const std::vector<float> scale = read_values(st, *w.scale, w.scale->numel);
        const int64_t scale_cols = ceil_div(cols, w.block[1]);
        const bool int8 = w.data->dtype == "I8";
#pragma omp parallel for schedule(static)
        for (int64_t r = 0; r < rows; r++)
            for (int64_t c = 0; c < cols; c++) {
                const uint8_t v = src[r * cols + c];
                dst[r * cols + c] = (int8 ? (float)(int8_t)v : f8e4m3_to_f32(v)) * scale[(r / w.block[0]) * scale_cols + c / w.block[1]];
            }
        return;
    }
    // bitsandbytes 4-bit: each block's absmax (decoded from 8 bits with double quantization), then each
    // code's value times it, the even element in the byte's high nibble.
    const std::vector<float> map = read_values(st, *w.quant_map, 16);
    const int64_t blocks = ceil_div(n, w.blocksize);
    std::vector<float> absmax;
    if (w.nested_absmax) {
        const std::vector<float> nested_map = read_values(st, *w.nested_quant_map, 256);
        const std::vector<float> nested = read_values(st, *w.nested_absmax, w.nested_absmax->numel);
        const uint8_t* codes = w.absmax->file->data + w.absmax->offset;
        absmax.resize((size_t)blocks);
        for (int64_t b = 0; b < blocks; b++) {
            volatile float scaled = nested_map[codes[b]] * nested[b / w.nested_blocksize];  // two roundings, as bitsandbytes
            absmax[b] = scaled + w.nested_offset;
        }
    } else {
        absmax = read_values(st, *w.absmax, blocks);
    }
#pragma omp parallel for schedule(static)
    for (int64_t b = 0; b < blocks; b++) {
        const int64_t end = std::min(n, (b + 1) * w.blocksize);
        for (int64_t i = b * w.blocksize; i < end; i++) {
            const uint8_t byte = src[i >> 1];
            dst[i] = map[i & 1 ? byte & 15 : byte >> 4] * absmax[b];
        }
    }
}
