// GGUF (llama.cpp's model file), versions 2 and 3: metadata key/values, tensor infos, tensor data.
//
// Layout: "GGUF", u32 version, u64 tensor count, u64 metadata count; metadata entries (string key,
// u32 value type, value); tensor infos (string name, u32 n_dims, u64 dims[n_dims] innermost first,
// u32 ggml type, u64 offset from the data section); padding to `general.alignment` (default 32);
// the data section. Strings are u64 length + bytes; arrays are u32 element type, u64 count, elements.
#pragma once
#include <cstdint>
#include <memory>
#include <string>
#include <vector>

#include "model/mapped_file.h"

enum GgufValueType : uint32_t {
    GGUF_UINT8 = 0, GGUF_INT8 = 1, GGUF_UINT16 = 2, GGUF_INT16 = 3, GGUF_UINT32 = 4, GGUF_INT32 = 5,
    GGUF_FLOAT32 = 6, GGUF_BOOL = 7, GGUF_STRING = 8, GGUF_ARRAY = 9, GGUF_UINT64 = 10, GGUF_INT64 = 11,
    GGUF_FLOAT64 = 12,
};

// One metadata value. A scalar is an array of one element with is_array false. Integers and bools
// land in `ints` (a UINT64 above INT64_MAX keeps its bit pattern), floats in `floats`, strings in `strings`.
struct GgufValue {
    GgufValueType type = GGUF_UINT8;  // the scalar type, or the element type of an array
    bool is_array = false;
    std::vector<int64_t> ints;
    std::vector<double> floats;
    std::vector<std::string> strings;
    size_t count() const;
};

struct GgufTensor {
    std::string name;
    std::vector<int64_t> dims;  // GGUF order: dims[0] is the innermost (contiguous) one
    uint32_t type = 0;          // ggml type
    size_t offset = 0;          // absolute byte offset in the file
    size_t nbytes = 0;          // 0 when the type is one we cannot read
    int64_t numel = 0;
    std::vector<int64_t> shape() const;  // outermost first, as PyTorch writes it: [out, in] for a linear
};

struct GgufFile {
    std::unique_ptr<MappedFile> file;
    uint32_t version = 0;
    size_t alignment = 32;
    std::vector<std::pair<std::string, GgufValue>> metadata;  // in file order
    std::vector<GgufTensor> tensors;                          // in file order

    const std::string& path() const { return file->path; }
    const GgufValue* find(const std::string& key) const;  // nullptr when absent
    const GgufTensor* find_tensor(const std::string& name) const;

    // Typed getters fail naming the file and key when the key is absent or has another type.
    int64_t get_int(const std::string& key) const;
    int64_t get_int(const std::string& key, int64_t fallback) const;
    double get_float(const std::string& key) const;  // accepts integer values too
    double get_float(const std::string& key, double fallback) const;
    std::string get_string(const std::string& key) const;
    const std::vector<std::string>& get_strings(const std::string& key) const;  // an array of strings
    const std::vector<int64_t>& get_ints(const std::string& key) const;        // an array of integers
    const std::vector<double>& get_floats(const std::string& key) const;       // an array of floats

    // Fails naming the tensor when its type cannot be dequantised.
    void check_readable(const GgufTensor& t) const;
    // The tensor's values as FP32 (dst holds numel floats).
    void read_f32(const GgufTensor& t, float* dst) const;
};

// Parses the header, metadata and tensor infos and checks every tensor lies inside the file.
GgufFile gguf_open(const std::string& path);
