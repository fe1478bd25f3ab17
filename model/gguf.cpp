#include "model/gguf.h"

#include "model/dequant.h"
#include "model/util.h"

namespace {
const uint32_t kGgufMagic = 0x46554747;  // "GGUF" read as a little-endian u32
const int kMaxDims = 4;                  // GGML_MAX_DIMS
const int kMaxArrayDepth = 16;           // arrays of arrays are skipped by recursion: bounds its depth

bool is_integer_type(uint32_t t) {
    return t <= GGUF_INT32 || t == GGUF_BOOL || t == GGUF_UINT64 || t == GGUF_INT64;
}

// Smallest encoded size of one value of type t: lets us reject an absurd array count before allocating.
size_t min_value_size(uint32_t t) {
    switch (t) {
    case GGUF_UINT8: case GGUF_INT8: case GGUF_BOOL: return 1;
    case GGUF_UINT16: case GGUF_INT16: return 2;
    case GGUF_UINT32: case GGUF_INT32: case GGUF_FLOAT32: return 4;
    case GGUF_UINT64: case GGUF_INT64: case GGUF_FLOAT64: case GGUF_STRING: return 8;
    case GGUF_ARRAY: return 12;
    default: return 0;
    }
}

std::string read_string(MapCursor& c, const char* what) {
    uint64_t n = c.get<uint64_t>(what);
    if (n > c.remaining())
        fail("%s: file is truncated: %s is a string of %llu bytes at offset %zu but only %zu remain", c.file.path.c_str(),
             what, (unsigned long long)n, c.pos, c.remaining());
    return std::string((const char*)c.take(n, what), n);
}

uint64_t read_count(MapCursor& c, uint32_t elem_type, const char* what) {
    uint64_t n = c.get<uint64_t>(what);
    if (n > c.remaining() / min_value_size(elem_type))
        fail("%s: file is truncated: %s claims %llu elements, more than the %zu remaining bytes can hold",
             c.file.path.c_str(), what, (unsigned long long)n, c.remaining());
    return n;
}

void read_scalar(MapCursor& c, uint32_t type, GgufValue& v, const char* what) {
    switch (type) {
    case GGUF_UINT8: v.ints.push_back(c.get<uint8_t>(what)); break;
    case GGUF_INT8: v.ints.push_back(c.get<int8_t>(what)); break;
    case GGUF_UINT16: v.ints.push_back(c.get<uint16_t>(what)); break;
    case GGUF_INT16: v.ints.push_back(c.get<int16_t>(what)); break;
    case GGUF_UINT32: v.ints.push_back(c.get<uint32_t>(what)); break;
    case GGUF_INT32: v.ints.push_back(c.get<int32_t>(what)); break;
    case GGUF_UINT64: v.ints.push_back((int64_t)c.get<uint64_t>(what)); break;
    case GGUF_INT64: v.ints.push_back(c.get<int64_t>(what)); break;
    case GGUF_BOOL: {
        uint8_t b = c.get<uint8_t>(what);
        if (b > 1) fail("%s: %s: invalid bool byte %u at offset %zu", c.file.path.c_str(), what, b, c.pos - 1);
        v.ints.push_back(b);
        break;
    }
    case GGUF_FLOAT32: v.floats.push_back(c.get<float>(what)); break;
    case GGUF_FLOAT64: v.floats.push_back(c.get<double>(what)); break;
    case GGUF_STRING: v.strings.push_back(read_string(c, what)); break;
    default: fail("%s: %s has unknown value type %u at offset %zu", c.file.path.c_str(), what, type, c.pos);
    }
}

// Arrays of arrays are legal GGUF but no LLaMA-family metadata uses them: they are skipped, and
// kept as an empty value of type GGUF_ARRAY so a getter that needs one names the key.
void skip_array(MapCursor& c, const char* what, int depth = 1) {
    if (depth > kMaxArrayDepth)
        fail("%s: %s has arrays nested more than %d deep at offset %zu", c.file.path.c_str(), what, kMaxArrayDepth, c.pos);
    uint32_t et = c.get<uint32_t>(what);
    if (!min_value_size(et)) fail("%s: %s has unknown element type %u", c.file.path.c_str(), what, et);
    uint64_t n = read_count(c, et, what);
    GgufValue scratch;
    for (uint64_t i = 0; i < n; i++) {
        if (et == GGUF_ARRAY) skip_array(c, what, depth + 1);
        else read_scalar(c, et, scratch, what);
        scratch = GgufValue();
    }
}

GgufValue read_value(MapCursor& c, const char* what) {
    GgufValue v;
    uint32_t type = c.get<uint32_t>(what);
    if (type != GGUF_ARRAY) {
        v.type = (GgufValueType)type;
        read_scalar(c, type, v, what);
        return v;
    }
    v.is_array = true;
    size_t start = c.pos;
    uint32_t et = c.get<uint32_t>(what);
    if (!min_value_size(et)) fail("%s: %s has unknown array element type %u", c.file.path.c_str(), what, et);
    v.type = (GgufValueType)et;
    if (et == GGUF_ARRAY) {
        c.pos = start;
        skip_array(c, what);
        return v;
    }
    uint64_t n = read_count(c, et, what);
    for (uint64_t i = 0; i < n; i++) read_scalar(c, et, v, what);
    return v;
}

const char* value_type_name(const GgufValue& v) {
    static const char* const names[] = {"uint8", "int8", "uint16", "int16", "uint32", "int32", "float32",
                                        "bool",  "string", "array", "uint64", "int64", "float64"};
    return v.type <= GGUF_FLOAT64 ? names[v.type] : "unknown";
}
}  // namespace

size_t GgufValue::count() const { return ints.size() + floats.size() + strings.size(); }

std::vector<int64_t> GgufTensor::shape() const { return std::vector<int64_t>(dims.rbegin(), dims.rend()); }

const GgufValue* GgufFile::find(const std::string& key) const {
    for (const auto& kv : metadata)
        if (kv.first == key) return &kv.second;
    return nullptr;
}

const GgufTensor* GgufFile::find_tensor(const std::string& name) const {
    for (const GgufTensor& t : tensors)
        if (t.name == name) return &t;
    return nullptr;
}

// One lookup for every getter: the key must exist, be a scalar or an array as asked, and pass `ok`.
template <class Ok>
static const GgufValue& lookup(const GgufFile& g, const std::string& key, bool array, const char* want, Ok ok) {
    const GgufValue* v = g.find(key);
    if (!v) fail("%s: metadata key %s is missing", g.path().c_str(), key.c_str());
    if (v->is_array != array || !ok(*v))
        fail("%s: metadata key %s is %s %s, expected %s", g.path().c_str(), key.c_str(), v->is_array ? "an array of" : "a",
             value_type_name(*v), want);
    return *v;
}

int64_t GgufFile::get_int(const std::string& key) const {
    return lookup(*this, key, false, "an integer", [](const GgufValue& v) { return is_integer_type(v.type); }).ints[0];
}
int64_t GgufFile::get_int(const std::string& key, int64_t fallback) const {
    return find(key) ? get_int(key) : fallback;
}

double GgufFile::get_float(const std::string& key) const {
    const GgufValue& v = lookup(*this, key, false, "a number", [](const GgufValue& v) { return v.type != GGUF_STRING; });
    return v.floats.empty() ? (double)v.ints[0] : v.floats[0];
}
double GgufFile::get_float(const std::string& key, double fallback) const {
    return find(key) ? get_float(key) : fallback;
}

std::string GgufFile::get_string(const std::string& key) const {
    return lookup(*this, key, false, "a string", [](const GgufValue& v) { return v.type == GGUF_STRING; }).strings[0];
}

const std::vector<std::string>& GgufFile::get_strings(const std::string& key) const {
    return lookup(*this, key, true, "an array of strings", [](const GgufValue& v) { return v.type == GGUF_STRING; })
        .strings;
}

const std::vector<int64_t>& GgufFile::get_ints(const std::string& key) const {
    return lookup(*this, key, true, "an array of integers", [](const GgufValue& v) { return is_integer_type(v.type); })
        .ints;
}

const std::vector<double>& GgufFile::get_floats(const std::string& key) const {
    return lookup(*this, key, true, "an array of floats", [](const GgufValue& v) { return v.type == GGUF_FLOAT32 || v.type == GGUF_FLOAT64; })
        .floats;
}

void GgufFile::check_readable(const GgufTensor& t) const {
    if (!t.nbytes)
        fail("%s: tensor %s has type %s, which cannot be dequantised (supported: %s); re-quantise the model to one of these",
             path().c_str(), t.name.c_str(), ggml_type_name(t.type), ggml_supported_types());
}

void GgufFile::read_f32(const GgufTensor& t, float* dst) const {
    check_readable(t);
    ggml_dequantize(t.type, file->data + t.offset, dst, (size_t)t.numel);
}

GgufFile gguf_open(const std::string& path) {
    GgufFile g;
    g.file.reset(new MappedFile(path));
    MapCursor c(*g.file);
    uint32_t magic = c.get<uint32_t>("magic");
    if (magic != kGgufMagic) fail("%s: not a GGUF file (bad magic 0x%08x)", path.c_str(), magic);
    g.version = c.get<uint32_t>("version");
    if (g.version != 2 && g.version != 3) {
        if (g.version > 0xFFFF) fail("%s: big-endian GGUF files are not supported", path.c_str());
        fail("%s: GGUF version %u is not supported (versions 2 and 3 are)", path.c_str(), g.version);
    }
    uint64_t n_tensors = c.get<uint64_t>("tensor count");
    uint64_t n_kv = read_count(c, GGUF_ARRAY, "metadata count");

    for (uint64_t i = 0; i < n_kv; i++) {
        std::string key = read_string(c, "metadata key");
        if (g.find(key)) fail("%s: metadata key %s appears twice", path.c_str(), key.c_str());
        GgufValue v = read_value(c, key.c_str());
        g.metadata.emplace_back(std::move(key), std::move(v));
    }
    if (g.find("general.alignment")) {
        int64_t a = lookup(g, "general.alignment", false, "a uint32",
                           [](const GgufValue& v) { return v.type == GGUF_UINT32; }).ints[0];
        if (a == 0 || (a & (a - 1))) fail("%s: general.alignment %lld is not a power of two", path.c_str(), (long long)a);
        g.alignment = (size_t)a;
    }

    if (n_tensors > c.remaining() / 24) fail("%s: file is truncated: it claims %llu tensors", path.c_str(), (unsigned long long)n_tensors);
    for (uint64_t i = 0; i < n_tensors; i++) {
        GgufTensor t;
        t.name = read_string(c, "tensor name");
        const char* nm = t.name.c_str();
        if (g.find_tensor(t.name)) fail("%s: tensor %s appears twice", path.c_str(), nm);
        uint32_t n_dims = c.get<uint32_t>(nm);
        if (n_dims < 1 || n_dims > kMaxDims) fail("%s: tensor %s has %u dimensions (1 to %d allowed)", path.c_str(), nm, n_dims, kMaxDims);
        t.numel = 1;
        for (uint32_t d = 0; d < n_dims; d++) {
            int64_t n = (int64_t)c.get<uint64_t>(nm);
            if (n < 1 || n > ((int64_t)1 << 40) || t.numel > ((int64_t)1 << 62) / n)
                fail("%s: tensor %s has an invalid dimension %lld", path.c_str(), nm, (long long)n);
            t.dims.push_back(n);
            t.numel *= n;
        }
        t.type = c.get<uint32_t>(nm);
        t.offset = (size_t)c.get<uint64_t>(nm);
        size_t be, bb;
        if (ggml_block_size(t.type, be, bb)) {
            if (t.dims[0] % (int64_t)be)
                fail("%s: tensor %s: its row of %lld values is not a whole number of %s blocks of %zu", path.c_str(), nm,
                     (long long)t.dims[0], ggml_type_name(t.type), be);
            t.nbytes = (size_t)t.numel / be * bb;
        }
        g.tensors.push_back(std::move(t));
    }

    size_t data_start = (c.pos + g.alignment - 1) / g.alignment * g.alignment;
    for (GgufTensor& t : g.tensors) {
        if (t.offset % g.alignment)
            fail("%s: tensor %s: data offset %zu is not a multiple of the alignment %zu", path.c_str(), t.name.c_str(),
                 t.offset, g.alignment);
        if (t.offset > g.file->size || data_start > g.file->size - t.offset ||
            t.nbytes > g.file->size - data_start - t.offset)
            fail("%s: file is truncated: tensor %s needs bytes %zu..%zu but the file has %zu", path.c_str(),
                 t.name.c_str(), data_start + t.offset, data_start + t.offset + t.nbytes, g.file->size);
        t.offset += data_start;
    }
    return g;
}
