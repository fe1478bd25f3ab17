#include "model/safetensors.h"

#include <map>
#include <unordered_map>

#include "data/json.h"
#include "model/dequant.h"
#include "model/util.h"

namespace {
const uint64_t kMaxHeader = 100 << 20;  // the limit Hugging Face's safetensors library enforces

size_t dtype_size(const std::string& dt) {
    static const std::unordered_map<std::string, size_t> sizes = {
        {"F64", 8}, {"F32", 4}, {"F16", 2}, {"BF16", 2}, {"I64", 8}, {"I32", 4}, {"I16", 2}, {"I8", 1},
        {"U8", 1},  {"BOOL", 1}, {"F8_E4M3", 1}, {"F8_E5M2", 1}, {"U16", 2}, {"U32", 4}, {"U64", 8}};
    auto it = sizes.find(dt);
    return it == sizes.end() ? 0 : it->second;
}

// json_parse's errors carry line and column but not the file: add it.
JsonValue parse_json_file(const std::string& path, const std::string& text) {
    try {
        return json_parse(text);
    } catch (const std::runtime_error& e) {
        fail("%s: invalid JSON: %s", path.c_str(), e.what());
    }
}

int64_t json_uint(const JsonValue* v, const std::string& path, const std::string& name, const char* field) {
    if (!v || v->type != JsonValue::Number || !v->exact_integer || v->integer < 0)
        fail("%s: tensor %s: %s must be a non-negative integer", path.c_str(), name.c_str(), field);
    return v->integer;
}
}  // namespace

const SafeTensor* SafetensorsSet::find(const std::string& name) const {
    for (const SafeTensor& t : tensors)
        if (t.name == name) return &t;
    return nullptr;
}

// The ggml type with the same element encoding as a safetensors dtype, or ~0u.
static uint32_t element_type(const std::string& dtype) {
    return dtype == "F32" ? GGML_F32 : dtype == "F16" ? GGML_F16 : dtype == "BF16" ? GGML_BF16 : ~0u;
}

void SafetensorsSet::check_readable(const SafeTensor& t) const {
    if (element_type(t.dtype) == ~0u)
        fail("%s: tensor %s has dtype %s; only F32, F16 and BF16 checkpoints are supported", t.file->path.c_str(),
             t.name.c_str(), t.dtype.c_str());
}

void SafetensorsSet::read_f32(const SafeTensor& t, float* dst) const {
    check_readable(t);
    ggml_dequantize(element_type(t.dtype), t.file->data + t.offset, dst, (size_t)t.numel);
}

void safetensors_add_file(SafetensorsSet& set, const std::string& path) {
    set.files.emplace_back(new MappedFile(path));
    const MappedFile& f = *set.files.back();
    MapCursor c(f);
    uint64_t n = c.get<uint64_t>("header length");
    if (n > kMaxHeader || n > c.remaining())
        fail("%s: not a safetensors file, or truncated (header length %llu, file size %zu)", path.c_str(),
             (unsigned long long)n, f.size);
    std::string header((const char*)c.take(n, "header"), n);
    JsonValue h = parse_json_file(path, header);
    if (h.type != JsonValue::Object) fail("%s: the safetensors header is not a JSON object", path.c_str());
    size_t data_start = c.pos, data_size = f.size - c.pos;

    for (const auto& kv : h.object) {
        const std::string& name = kv.first;
        if (name == "__metadata__") continue;
        const JsonValue& e = kv.second;
        const JsonValue *dt = e.get("dtype"), *shape = e.get("shape"), *offs = e.get("data_offsets");
        if (!dt || dt->type != JsonValue::String || !shape || shape->type != JsonValue::Array || !offs ||
            offs->type != JsonValue::Array || offs->array.size() != 2)
            fail("%s: tensor %s: header entry needs dtype, shape and data_offsets [begin, end]", path.c_str(), name.c_str());
        if (set.find(name)) fail("%s: tensor %s is also in another shard", path.c_str(), name.c_str());
        SafeTensor t;
        t.name = name;
        t.dtype = dt->string;
        t.numel = 1;
        for (const JsonValue& d : shape->array) {
            int64_t v = json_uint(&d, path, name, "a shape entry");
            if (v > ((int64_t)1 << 40) || (v && t.numel > ((int64_t)1 << 62) / v))
                fail("%s: tensor %s: shape is too large", path.c_str(), name.c_str());
            t.shape.push_back(v);
            t.numel *= v;
        }
        int64_t b = json_uint(&offs->array[0], path, name, "data_offsets"), e_ = json_uint(&offs->array[1], path, name, "data_offsets");
        if (b > e_ || (uint64_t)e_ > data_size)
            fail("%s: file is truncated or corrupt: tensor %s needs data bytes %lld..%lld but the data section has %zu",
                 path.c_str(), name.c_str(), (long long)b, (long long)e_, data_size);
        size_t es = dtype_size(t.dtype);
        if (es && (uint64_t)(e_ - b) != (uint64_t)t.numel * es)
            fail("%s: tensor %s: %lld data bytes do not match its shape (%lld values of %s)", path.c_str(), name.c_str(),
                 (long long)(e_ - b), (long long)t.numel, t.dtype.c_str());
        t.file = &f;
        t.offset = data_start + (size_t)b;
        t.nbytes = (size_t)(e_ - b);
        set.tensors.push_back(std::move(t));
    }
}

SafetensorsSet safetensors_open_dir(const std::string& dir) {
    SafetensorsSet set;
    std::string single = dir + "/model.safetensors", index = dir + "/model.safetensors.index.json";
    if (file_exists(single)) {
        safetensors_add_file(set, single);
        return set;
    }
    if (!file_exists(index))
        fail("%s: no model.safetensors or model.safetensors.index.json (only safetensors checkpoints are read, "
             "not pytorch_model.bin)", dir.c_str());
    JsonValue j = parse_json_file(index, read_file(index));
    const JsonValue* map = j.get("weight_map");
    if (!map || map->type != JsonValue::Object) fail("%s: no \"weight_map\" object", index.c_str());
    std::map<std::string, std::vector<std::string>> by_shard;  // sorted: shards load in name order
    for (const auto& kv : map->object) {
        if (kv.second.type != JsonValue::String || kv.second.string.find('/') != std::string::npos)
            fail("%s: weight_map entry for %s must be a file name in the same directory", index.c_str(), kv.first.c_str());
        by_shard[kv.second.string].push_back(kv.first);
    }
    for (const auto& s : by_shard) {
        size_t before = set.tensors.size();
        safetensors_add_file(set, dir + "/" + s.first);
        for (const std::string& name : s.second) {
            const SafeTensor* t = set.find(name);
            if (!t || (size_t)(t - set.tensors.data()) < before)
                fail("%s: the index puts tensor %s in %s, but that shard does not hold it", index.c_str(), name.c_str(),
                     s.first.c_str());
        }
    }
    return set;
}

void safetensors_write(const std::string& path, const std::vector<SafeTensorOut>& tensors, DType dtype) {
    const size_t elem = dtype == DType::BF16 ? 2 : 4;
    // The JSON header (padded with spaces to 8 bytes, as the safetensors library writes it), with
    // each tensor's byte range counted from the start of the data section.
    std::string header = "{\"__metadata__\": {\"format\": \"pt\"}";
    size_t offset = 0;
    for (const SafeTensorOut& t : tensors) {
        size_t numel = 1;
        std::string shape;
        for (int64_t d : t.shape) numel *= (size_t)d, shape += (shape.empty() ? "" : ", ") + std::to_string(d);
        header += ", " + json_quote(t.name) + ": {\"dtype\": \"" + (dtype == DType::BF16 ? "BF16" : "F32") +
                  "\", \"shape\": [" + shape + "], \"data_offsets\": [" + std::to_string(offset) + ", " +
                  std::to_string(offset + numel * elem) + "]}";
        offset += numel * elem;
    }
    header += "}";
    while (header.size() % 8) header += ' ';
    AtomicFile f(path);
    f.put((uint64_t)header.size());
    f.write(header.data(), header.size());
    std::vector<uint16_t> half;
    for (const SafeTensorOut& t : tensors) {
        size_t numel = 1;
        for (int64_t d : t.shape) numel *= (size_t)d;
        if (dtype == DType::F32) {
            f.write(t.data, numel * sizeof(float));
            continue;
        }
        half.resize(numel);
        for (size_t i = 0; i < numel; i++) half[i] = f32_to_bf16(t.data[i]);
        f.write(half.data(), numel * sizeof(uint16_t));
    }
    f.commit();
}
