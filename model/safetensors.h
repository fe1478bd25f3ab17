// safetensors (Hugging Face): u64 header length N, N bytes of JSON
//   {"name": {"dtype": "BF16", "shape": [out, in], "data_offsets": [begin, end]}, ..., "__metadata__": {...}}
// then the data section; offsets are relative to its start, tensors are row-major.
// A checkpoint is one model.safetensors or several shards listed by model.safetensors.index.json.
#pragma once
#include <cstdint>
#include <memory>
#include <string>
#include <vector>

#include "model/mapped_file.h"
#include "model/weights.h"

struct SafeTensor {
    std::string name;
    std::string dtype;  // "F32", "F16", "BF16" are read; others fail when read
    std::vector<int64_t> shape;
    int64_t numel = 0;
    const MappedFile* file = nullptr;
    size_t offset = 0;  // absolute byte offset in `file`
    size_t nbytes = 0;
};

struct SafetensorsSet {
    std::vector<std::unique_ptr<MappedFile>> files;
    std::vector<SafeTensor> tensors;
    const SafeTensor* find(const std::string& name) const;  // nullptr when absent
    // Fails naming the tensor unless its dtype is F32, F16 or BF16.
    void check_readable(const SafeTensor& t) const;
    // The tensor's values as FP32 (dst holds numel floats).
    void read_f32(const SafeTensor& t, float* dst) const;
};

// Adds one .safetensors file's tensors to the set; fails naming the file and tensor on a bad header,
// an offset outside the file, a size that does not match the shape, or a name already in the set.
void safetensors_add_file(SafetensorsSet& set, const std::string& path);
// A Hugging Face model directory: model.safetensors, or every shard model.safetensors.index.json names
// (each tensor must be in the shard the index says).
SafetensorsSet safetensors_open_dir(const std::string& dir);

// One tensor to write: its name, shape and numel FP32 values (converted to the file's dtype).
struct SafeTensorOut {
    std::string name;
    std::vector<int64_t> shape;
    const float* data;
};
// Writes one .safetensors file atomically (a .tmp renamed into place): the header lists the tensors in
// the given order, each stored as F32 or BF16 (round to nearest even), back to back.
void safetensors_write(const std::string& path, const std::vector<SafeTensorOut>& tensors, DType dtype);
