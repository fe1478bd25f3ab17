#include "model/buffer.h"

#include <utility>

Buffer::Buffer(const Ops& o, size_t nbytes, Mem category) : ops(&o), bytes(nbytes) {
    if (nbytes) p = o.alloc(nbytes, category);
}

Buffer::~Buffer() {
    if (p) ops->release(p);
}

Buffer::Buffer(Buffer&& o) noexcept : ops(o.ops), p(o.p), bytes(o.bytes) {
    o.p = nullptr;
    o.bytes = 0;
}

Buffer& Buffer::operator=(Buffer&& o) noexcept {
    if (this != &o) {
        if (p) ops->release(p);
        ops = o.ops;
        p = std::exchange(o.p, nullptr);
        bytes = std::exchange(o.bytes, 0);
    }
    return *this;
}

void Buffer::zero() const {
    if (p) ops->memset0(p, bytes);
}
