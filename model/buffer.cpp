#include "model/buffer.h"

#include <cstdio>
#include <exception>
#include <utility>

namespace {
// A release from a destructor (or the noexcept move) must not throw: that ends the program in
// std::terminate, and when an exception is already unwinding the stack (a CUDA error: after a
// kernel fault cudaFree returns the same sticky error for every buffer) its message, the one that
// says what went wrong, is never printed. So a failed release is reported here, and only when no
// other error is on its way to being reported.
void release_noexcept(const Ops* ops, void* p) noexcept {
    if (!p) return;
    try {
        ops->release(p);
    } catch (const std::exception& e) {
        if (std::uncaught_exceptions() == 0) fprintf(stderr, "warning: releasing a %s buffer: %s\n", ops->name, e.what());
    } catch (...) {
    }
}
}  // namespace

Buffer::Buffer(const Ops& o, size_t nbytes, Mem category) : ops(&o), bytes(nbytes) {
    if (nbytes) p = o.alloc(nbytes, category);
}

Buffer::~Buffer() { release_noexcept(ops, p); }

Buffer::Buffer(Buffer&& o) noexcept : ops(o.ops), p(o.p), bytes(o.bytes) {
    o.p = nullptr;
    o.bytes = 0;
}

Buffer& Buffer::operator=(Buffer&& o) noexcept {
    if (this != &o) {
        release_noexcept(ops, p);
        ops = o.ops;
        p = std::exchange(o.p, nullptr);
        bytes = std::exchange(o.bytes, 0);
    }
    return *this;
}

void Buffer::zero() const {
    if (p) ops->memset0(p, bytes);
}
