// The CUDA runtime API of the emulator (tests/emu/include/cuda_runtime.h): one device, compute
// capability 9.0, device memory from memory.cpp. Everything is synchronous. Copies and memsets
// check that their device side lies inside one allocation and their host side outside all of them.
#include <cuda_runtime.h>

#include <cstdio>
#include <string>

#include "internal.h"  // tests/emu/include

namespace emu {

namespace {
int last_error = 0;
}  // namespace

void set_last_error(int e) { last_error = e; }
int take_last_error(bool clear) {
    int e = last_error;
    if (clear) last_error = 0;
    return e;
}

}  // namespace emu

namespace {

cudaError_t error(cudaError_t e) {
    emu::set_last_error(e);
    return e;
}

// The device or host side of a copy must be wholly inside (device) or outside (host) the allocations.
bool side_ok(const char* fn, const char* which, const void* p, size_t n, bool device) {
    bool inside = emu::find_allocation(p, n) != nullptr, outside = !emu::find_allocation(p, 0);
    if (device ? inside : outside) return true;
    char where[256];
    emu::describe_address(p, where, sizeof where);
    fprintf(stderr, "emu: %s: the %s [%p, +%zu bytes) should be %s memory but is %s\n", fn, which, p, n,
            device ? "device" : "host", where);
    return false;
}

}  // namespace

cudaError_t cudaGetDeviceCount(int* count) {
    *count = 1;
    return cudaSuccess;
}
cudaError_t cudaSetDevice(int device) { return device == 0 ? cudaSuccess : error(cudaErrorInvalidDevice); }
cudaError_t cudaGetDevice(int* device) {
    *device = 0;
    return cudaSuccess;
}

cudaError_t cudaDeviceGetAttribute(int* value, cudaDeviceAttr attr, int device) {
    if (device != 0) return error(cudaErrorInvalidDevice);
    switch (attr) {
        case cudaDevAttrMaxThreadsPerBlock: *value = 1024; break;
        case cudaDevAttrMaxSharedMemoryPerBlock: *value = 48 << 10; break;
        case cudaDevAttrWarpSize: *value = 32; break;
        case cudaDevAttrMultiProcessorCount: *value = 132; break;
        case cudaDevAttrComputeCapabilityMajor: *value = 9; break;
        case cudaDevAttrComputeCapabilityMinor: *value = 0; break;
        case cudaDevAttrMaxSharedMemoryPerBlockOptin: *value = (int)emu::smem_optin_max(); break;
        default: return error(cudaErrorInvalidValue);
    }
    return cudaSuccess;
}

cudaError_t cudaGetDeviceProperties(cudaDeviceProp* p, int device) {
    if (device != 0) return error(cudaErrorInvalidDevice);
    *p = cudaDeviceProp{};
    snprintf(p->name, sizeof p->name, "CPU emulator (tests/emu) of an NVIDIA H100");
    p->totalGlobalMem = size_t(80) << 30;
    p->sharedMemPerBlock = 48 << 10;
    p->sharedMemPerBlockOptin = 227 << 10;
    p->totalConstMem = 64 << 10;
    p->regsPerBlock = 65536;
    p->warpSize = 32;
    p->maxThreadsPerBlock = 1024;
    p->maxThreadsDim[0] = p->maxThreadsDim[1] = 1024, p->maxThreadsDim[2] = 64;
    p->maxGridSize[0] = 0x7fffffff, p->maxGridSize[1] = p->maxGridSize[2] = 65535;
    p->major = 9, p->minor = 0;
    p->multiProcessorCount = 132;
    p->l2CacheSize = 50 << 20;
    return cudaSuccess;
}

cudaError_t cudaMalloc(void** p, size_t bytes) {
    *p = emu::alloc_device(bytes);
    return *p ? cudaSuccess : error(cudaErrorMemoryAllocation);
}

cudaError_t cudaFree(void* p) {
    if (!p || emu::free_device(p)) return cudaSuccess;
    fprintf(stderr, "emu: cudaFree(%p): not the start of a device allocation\n", p);
    return error(cudaErrorInvalidValue);
}

cudaError_t cudaMemcpy(void* dst, const void* src, size_t bytes, cudaMemcpyKind kind) {
    const emu::DeviceAccess access;
    if (bytes == 0) return cudaSuccess;
    const bool dst_dev = kind == cudaMemcpyHostToDevice || kind == cudaMemcpyDeviceToDevice;
    const bool src_dev = kind == cudaMemcpyDeviceToHost || kind == cudaMemcpyDeviceToDevice;
    if (kind == cudaMemcpyDefault) {  // unified addressing: each side is wholly device or wholly host memory
        auto whole = [&](const void* p) { return emu::find_allocation(p, bytes) || !emu::find_allocation(p, 0); };
        if (!whole(dst) || !whole(src)) {
            fprintf(stderr, "emu: cudaMemcpy(cudaMemcpyDefault): a side straddles the end of a device allocation\n");
            return error(cudaErrorInvalidValue);
        }
        memmove(dst, src, bytes);
        return cudaSuccess;
    }
    if (kind < cudaMemcpyHostToHost || kind > cudaMemcpyDefault) return error(cudaErrorInvalidMemcpyDirection);
    if (!side_ok("cudaMemcpy", "destination", dst, bytes, dst_dev) || !side_ok("cudaMemcpy", "source", src, bytes, src_dev))
        return error(cudaErrorInvalidValue);
    memmove(dst, src, bytes);
    return cudaSuccess;
}

cudaError_t cudaMemcpyAsync(void* dst, const void* src, size_t bytes, cudaMemcpyKind kind, cudaStream_t) {
    return cudaMemcpy(dst, src, bytes, kind);  // everything is synchronous here
}

cudaError_t cudaMemset(void* p, int value, size_t bytes) {
    const emu::DeviceAccess access;
    if (bytes == 0) return cudaSuccess;
    if (!side_ok("cudaMemset", "destination", p, bytes, true)) return error(cudaErrorInvalidValue);
    memset(p, value, bytes);
    return cudaSuccess;
}

cudaError_t cudaMemsetAsync(void* p, int value, size_t bytes, cudaStream_t) { return cudaMemset(p, value, bytes); }

cudaError_t cudaMemGetInfo(size_t* free_bytes, size_t* total_bytes) {
    *total_bytes = size_t(80) << 30;
    *free_bytes = *total_bytes - emu::device_bytes_in_use();
    return cudaSuccess;
}

// Kernels run to completion when launched, and their faults are thrown at the launch.
cudaError_t cudaDeviceSynchronize() { return (cudaError_t)emu::take_last_error(false); }
cudaError_t cudaStreamSynchronize(cudaStream_t) { return (cudaError_t)emu::take_last_error(false); }
cudaError_t cudaGetLastError() { return (cudaError_t)emu::take_last_error(true); }
cudaError_t cudaPeekAtLastError() { return (cudaError_t)emu::take_last_error(false); }

const char* cudaGetErrorName(cudaError_t e) {
    switch (e) {
        case cudaSuccess: return "cudaSuccess";
        case cudaErrorInvalidValue: return "cudaErrorInvalidValue";
        case cudaErrorMemoryAllocation: return "cudaErrorMemoryAllocation";
        case cudaErrorInvalidConfiguration: return "cudaErrorInvalidConfiguration";
        case cudaErrorInvalidSymbol: return "cudaErrorInvalidSymbol";
        case cudaErrorInvalidDevicePointer: return "cudaErrorInvalidDevicePointer";
        case cudaErrorInvalidMemcpyDirection: return "cudaErrorInvalidMemcpyDirection";
        case cudaErrorNoDevice: return "cudaErrorNoDevice";
        case cudaErrorInvalidDevice: return "cudaErrorInvalidDevice";
    }
    return "cudaErrorUnknown";
}

const char* cudaGetErrorString(cudaError_t e) {
    switch (e) {
        case cudaSuccess: return "no error";
        case cudaErrorInvalidValue: return "invalid argument";
        case cudaErrorMemoryAllocation: return "out of memory";
        case cudaErrorInvalidConfiguration: return "invalid configuration argument";
        case cudaErrorInvalidSymbol: return "invalid device symbol";
        case cudaErrorInvalidDevicePointer: return "invalid device pointer";
        case cudaErrorInvalidMemcpyDirection: return "invalid copy direction for memcpy";
        case cudaErrorNoDevice: return "no CUDA-capable device is detected";
        case cudaErrorInvalidDevice: return "invalid device ordinal";
    }
    return "unknown error";
}
