// One allocation in a backend's memory (host memory for the CPU, device memory for CUDA), owned:
// released when the Buffer goes. Every buffer the trainer holds is one of these, counted in a
// category of the memory table (Mem), so the measured table and the peak come from the allocator.
#pragma once
#include <cstddef>
#include <cstdint>

#include "kernels/kernels.h"

struct Buffer {
    const Ops* ops = nullptr;
    void* p = nullptr;
    size_t bytes = 0;

    Buffer() = default;
    Buffer(const Ops& o, size_t nbytes, Mem category);  // zero-filled; null when nbytes is 0
    ~Buffer();
    Buffer(Buffer&& o) noexcept;
    Buffer& operator=(Buffer&& o) noexcept;
    Buffer(const Buffer&) = delete;
    Buffer& operator=(const Buffer&) = delete;

    // The contents as the type they hold: storage-type tensors (act), FP32, int32, bytes.
    act* a() const { return (act*)p; }
    float* f() const { return (float*)p; }
    int32_t* i() const { return (int32_t*)p; }
    uint8_t* u8() const { return (uint8_t*)p; }
    void zero() const;
};

// A storage-type tensor of n elements in category c.
inline Buffer act_buffer(const Ops& ops, size_t n, Mem c) { return Buffer(ops, n * ops.act_size, c); }
