// The emulator's <cuda_runtime.h> (tests/emu/README.md): what kernels/cuda/*.cu use of CUDA C++ and
// of the runtime API, on top of tests/emu/include/emu.h. Kernel code compiles unchanged except for what
// tests/emu/cudapp.cpp rewrites (launches, __shared__, __launch_bounds__). Anything not provided
// here is a compile error, which is the signal to extend the emulator (faithfully) rather than guess.
#pragma once
#include <cfloat>
#include <climits>
#include <cmath>
#include <cstddef>
#include <cstdint>
#include <cstring>
#include <string>

#include "emu.h"

// ---- qualifiers ----
#define __global__
#define __device__
#define __host__
#define __forceinline__ inline
#define __noinline__ __attribute__((noinline))
#define __constant__
#define __align__(n) __attribute__((aligned(n)))
// cudapp turns both into emulator calls; one left over is a bug of cudapp, so fail to compile.
#define __shared__ __shared___not_rewritten_by_tests_emu_cudapp
#define __launch_bounds__(...) __launch_bounds___not_rewritten_by_tests_emu_cudapp

// ---- built-in variables ----
#define threadIdx (emu::cur->idx)
#define blockIdx (emu::block_idx)
#define blockDim (emu::block_dim)
#define gridDim (emu::grid_dim)
constexpr int warpSize = 32;

// ---- barriers and warp-synchronous intrinsics (macros: the call site goes into the messages) ----
#define __syncthreads() emu::block_sync(emu::Sync::threads, 0, __FILE__, __LINE__)
#define __syncthreads_count(p) emu::block_sync(emu::Sync::count, (p), __FILE__, __LINE__)
#define __syncthreads_and(p) emu::block_sync(emu::Sync::all, (p), __FILE__, __LINE__)
#define __syncthreads_or(p) emu::block_sync(emu::Sync::any, (p), __FILE__, __LINE__)
namespace emu {
struct SyncwarpAt {  // __syncwarp() and __syncwarp(mask) without the GNU comma extension
    const char* file;
    int line;
    void operator()(unsigned mask = 0xffffffffu) const { warp_sync(mask, file, line); }
};
inline int width(int w = 32) { return w; }
}  // namespace emu
#define __syncwarp(...) emu::SyncwarpAt{__FILE__, __LINE__}(__VA_ARGS__)
#define __shfl_sync(m, v, src, ...) emu::shfl_sync(emu::Shfl::idx, m, v, src, emu::width(__VA_ARGS__), __FILE__, __LINE__)
#define __shfl_up_sync(m, v, d, ...) emu::shfl_sync(emu::Shfl::up, m, v, d, emu::width(__VA_ARGS__), __FILE__, __LINE__)
#define __shfl_down_sync(m, v, d, ...) \
    emu::shfl_sync(emu::Shfl::down, m, v, d, emu::width(__VA_ARGS__), __FILE__, __LINE__)
#define __shfl_xor_sync(m, v, x, ...) emu::shfl_sync(emu::Shfl::bfly, m, v, x, emu::width(__VA_ARGS__), __FILE__, __LINE__)
#define __ballot_sync(m, p) emu::vote(0, m, p, __FILE__, __LINE__)
#define __all_sync(m, p) ((int)emu::vote(1, m, p, __FILE__, __LINE__))
#define __any_sync(m, p) ((int)emu::vote(2, m, p, __FILE__, __LINE__))

// ---- vector types (the 8- and 16-byte ones aligned as in CUDA's vector_types.h) ----
struct __align__(8) int2 { int x, y; };
struct __align__(16) int4 { int x, y, z, w; };
struct __align__(8) uint2 { unsigned x, y; };
struct __align__(16) uint4 { unsigned x, y, z, w; };
struct __align__(8) float2 { float x, y; };
struct __align__(16) float4 { float x, y, z, w; };
inline int2 make_int2(int x, int y) { return {x, y}; }
inline int4 make_int4(int x, int y, int z, int w) { return {x, y, z, w}; }
inline uint2 make_uint2(unsigned x, unsigned y) { return {x, y}; }
inline uint4 make_uint4(unsigned x, unsigned y, unsigned z, unsigned w) { return {x, y, z, w}; }
inline float2 make_float2(float x, float y) { return {x, y}; }
inline float4 make_float4(float x, float y, float z, float w) { return {x, y, z, w}; }

// ---- math ----
// The <cmath> float functions (expf, exp2f, logf, log2f, sqrtf, sincosf, fmaxf, fabsf, fmaf, ...)
// are the host's: correctly rounded or within an ulp or two, as CUDA's are (its documented bounds
// are 1-2 ulp), so they may differ from the GPU's in the last bits, as the tests allow.
// The _rn intrinsics are exactly one IEEE operation: the opaque step keeps the compiler from
// contracting it with a neighbouring add or multiply into an FMA (GCC contracts across inlining).
namespace emu {
inline float opaque(float x) {
#if defined(__x86_64__)
    asm("" : "+x"(x));
#elif defined(__aarch64__)
    asm("" : "+w"(x));
#else
    volatile float v = x;
    x = v;
#endif
    return x;
}
}  // namespace emu
inline float __fadd_rn(float a, float b) { return emu::opaque(emu::opaque(a) + emu::opaque(b)); }
inline float __fsub_rn(float a, float b) { return emu::opaque(emu::opaque(a) - emu::opaque(b)); }
inline float __fmul_rn(float a, float b) { return emu::opaque(emu::opaque(a) * emu::opaque(b)); }
inline float __fdiv_rn(float a, float b) { return emu::opaque(emu::opaque(a) / emu::opaque(b)); }
inline float __frcp_rn(float a) { return __fdiv_rn(1.0f, a); }
inline float __fsqrt_rn(float a) { return emu::opaque(std::sqrt(emu::opaque(a))); }
inline float __fmaf_rn(float a, float b, float c) { return std::fma(a, b, c); }
inline float rsqrtf(float x) { return 1.0f / std::sqrt(x); }
inline float __expf(float x) { return expf(x); }  // the fast intrinsics: here as precise as the plain ones
inline float __exp2f(float x) { return exp2f(x); }
inline float __logf(float x) { return logf(x); }
inline float __log2f(float x) { return log2f(x); }
inline float __sinf(float x) { return sinf(x); }
inline float __cosf(float x) { return cosf(x); }
inline float __powf(float x, float y) { return powf(x, y); }
inline float __fdividef(float a, float b) { return a / b; }
inline void __sincosf(float x, float* s, float* c) { sincosf(x, s, c); }
inline float __saturatef(float x) { return x > 0.0f ? (x < 1.0f ? x : 1.0f) : 0.0f; }  // NaN -> 0
inline int __float_as_int(float x) { int i; memcpy(&i, &x, 4); return i; }
inline unsigned __float_as_uint(float x) { unsigned i; memcpy(&i, &x, 4); return i; }
inline float __int_as_float(int i) { float x; memcpy(&x, &i, 4); return x; }
inline float __uint_as_float(unsigned i) { float x; memcpy(&x, &i, 4); return x; }
inline int __popc(unsigned x) { return __builtin_popcount(x); }
inline int __popcll(unsigned long long x) { return __builtin_popcountll(x); }
inline int __clz(int x) { return x ? __builtin_clz((unsigned)x) : 32; }
inline int __ffs(int x) { return __builtin_ffs(x); }
template <class T>
inline T __ldg(const T* p) { return *p; }
// CUDA's global min/max overloads for device code (mixed signedness is ambiguous here too).
inline int min(int a, int b) { return a < b ? a : b; }
inline int max(int a, int b) { return a > b ? a : b; }
inline unsigned min(unsigned a, unsigned b) { return a < b ? a : b; }
inline unsigned max(unsigned a, unsigned b) { return a > b ? a : b; }
inline long long min(long long a, long long b) { return a < b ? a : b; }
inline long long max(long long a, long long b) { return a > b ? a : b; }
inline unsigned long long min(unsigned long long a, unsigned long long b) { return a < b ? a : b; }
inline unsigned long long max(unsigned long long a, unsigned long long b) { return a > b ? a : b; }
inline float min(float a, float b) { return fminf(a, b); }
inline float max(float a, float b) { return fmaxf(a, b); }

// ---- runtime API (tests/emu/runtime.cpp): one device, compute capability 9.0, 80 GiB ----
enum cudaError {
    cudaSuccess = 0,
    cudaErrorInvalidValue = 1,
    cudaErrorMemoryAllocation = 2,
    cudaErrorInvalidConfiguration = 9,
    cudaErrorInvalidSymbol = 13,
    cudaErrorInvalidDevicePointer = 17,
    cudaErrorInvalidMemcpyDirection = 21,
    cudaErrorNoDevice = 100,
    cudaErrorInvalidDevice = 101,
};
typedef enum cudaError cudaError_t;
enum cudaMemcpyKind {
    cudaMemcpyHostToHost = 0,
    cudaMemcpyHostToDevice = 1,
    cudaMemcpyDeviceToHost = 2,
    cudaMemcpyDeviceToDevice = 3,
    cudaMemcpyDefault = 4
};
typedef struct CUstream_st* cudaStream_t;
enum cudaFuncAttribute { cudaFuncAttributeMaxDynamicSharedMemorySize = 8, cudaFuncAttributePreferredSharedMemoryCarveout = 9 };
enum cudaDeviceAttr {
    cudaDevAttrMaxThreadsPerBlock = 1,
    cudaDevAttrMaxSharedMemoryPerBlock = 8,
    cudaDevAttrWarpSize = 10,
    cudaDevAttrMultiProcessorCount = 16,
    cudaDevAttrComputeCapabilityMajor = 75,
    cudaDevAttrComputeCapabilityMinor = 76,
    cudaDevAttrMaxSharedMemoryPerBlockOptin = 97,
};
struct cudaDeviceProp {
    char name[256];
    size_t totalGlobalMem, sharedMemPerBlock, sharedMemPerBlockOptin, totalConstMem;
    int regsPerBlock, warpSize, maxThreadsPerBlock, maxThreadsDim[3], maxGridSize[3];
    int major, minor, multiProcessorCount, l2CacheSize;
};

cudaError_t cudaGetDeviceCount(int* count);
cudaError_t cudaSetDevice(int device);
cudaError_t cudaGetDevice(int* device);
cudaError_t cudaDeviceGetAttribute(int* value, cudaDeviceAttr attr, int device);
cudaError_t cudaGetDeviceProperties(cudaDeviceProp* prop, int device);
cudaError_t cudaMalloc(void** p, size_t bytes);
template <class T>
cudaError_t cudaMalloc(T** p, size_t bytes) { return cudaMalloc((void**)p, bytes); }
cudaError_t cudaFree(void* p);
cudaError_t cudaMemcpy(void* dst, const void* src, size_t bytes, cudaMemcpyKind kind);
cudaError_t cudaMemcpyAsync(void* dst, const void* src, size_t bytes, cudaMemcpyKind kind, cudaStream_t stream = 0);
cudaError_t cudaMemset(void* p, int value, size_t bytes);
cudaError_t cudaMemsetAsync(void* p, int value, size_t bytes, cudaStream_t stream = 0);
cudaError_t cudaMemGetInfo(size_t* free_bytes, size_t* total_bytes);
cudaError_t cudaDeviceSynchronize();
cudaError_t cudaStreamSynchronize(cudaStream_t stream);
cudaError_t cudaGetLastError();
cudaError_t cudaPeekAtLastError();
const char* cudaGetErrorString(cudaError_t e);
const char* cudaGetErrorName(cudaError_t e);

// __constant__ variables are ordinary globals; the copy checks that it stays inside the symbol.
template <class T>
cudaError_t cudaMemcpyToSymbol(T& symbol, const void* src, size_t bytes, size_t offset = 0,
                               cudaMemcpyKind kind = cudaMemcpyHostToDevice) {
    if (offset + bytes > sizeof(T) || (kind != cudaMemcpyHostToDevice && kind != cudaMemcpyDeviceToDevice &&
                                       kind != cudaMemcpyDefault)) {
        emu::set_last_error(cudaErrorInvalidValue);
        return cudaErrorInvalidValue;
    }
    memcpy((char*)&symbol + offset, src, bytes);
    return cudaSuccess;
}

// The emulator knows no register counts, so it answers the lower bound, one block per SM: a
// persistent grid sized by it is as small as it can be, and its blocks walk the most rows each (the
// case worth testing).
template <class F>
cudaError_t cudaOccupancyMaxActiveBlocksPerMultiprocessor(int* blocks, F*, int threads, size_t /*dynamic_smem*/) {
    if (threads <= 0 || threads > 1024) {
        emu::set_last_error(cudaErrorInvalidValue);
        return cudaErrorInvalidValue;
    }
    *blocks = 1;
    return cudaSuccess;
}

// A macro, to have the kernel's name as written: see emu::set_max_dynamic_smem. Variadic, because a
// template kernel's name can hold commas (k<HD, narrow>): `text` is all three arguments as written,
// and the name is what stands before the last two commas outside parentheses.
namespace emu {
std::string kernel_name_of_arguments(const char* text);
template <class F>
cudaError_t func_set_attribute(const char* text, F*, cudaFuncAttribute attr, int value) {
    if (attr == cudaFuncAttributeMaxDynamicSharedMemorySize) {
        if (value < 0 || (size_t)value > smem_optin_max()) {
            set_last_error(cudaErrorInvalidValue);
            return cudaErrorInvalidValue;  // over the device's opt-in maximum
        }
        set_max_dynamic_smem(kernel_name_of_arguments(text).c_str(), value);
    }
    return cudaSuccess;
}
}  // namespace emu
#define cudaFuncSetAttribute(...) emu::func_set_attribute(#__VA_ARGS__, __VA_ARGS__)
