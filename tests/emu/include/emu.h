// A CPU emulator for the CUDA backend: it runs the real kernel sources (kernels/cuda/*.cu) compiled
// by g++, so that the "cuda" test suite checks them on machines without a GPU (make test-emu).
// Overview in tests/emu/README.md. This header is the emulator's core; the CUDA API shims next to
// it (cuda_runtime.h, cuda_bf16.h, cublasLt.h) are built on it.
//
// Execution model. One kernel launch runs its blocks one after another on the calling thread; the
// threads of a block are fibers (tests/emu/emu.cpp: own stack each, switched in user space), so
// every CUDA thread runs its own copy of the kernel code, as on the GPU. A thread runs until it
// reaches a __syncthreads or a warp-synchronous operation (shuffle, __syncwarp, ldmatrix, mma),
// where it waits for the block or its warp and the scheduler switches to the next thread. The
// order in which warps (and the lanes of a warp) run between two barriers, and the order of the
// blocks, are shuffled by a fixed-seed random generator: deterministic, but a missing barrier shows
// as a wrong or non-deterministic result. The checks that a GPU would make (or that would be
// undefined behaviour there) stop the kernel with a message naming the kernel, block and thread;
// the launch then throws emu::Error, which fails the test case and lets the next one run.
#pragma once
#include <cstddef>
#include <cstdint>
#include <deque>
#include <stdexcept>
#include <tuple>
#include <type_traits>
#include <utility>
#include <vector>

// threadIdx / blockIdx (uint3) and blockDim / gridDim (dim3), as in CUDA's vector_types.h.
struct uint3 {
    unsigned x, y, z;
};
struct dim3 {
    unsigned x, y, z;
    constexpr dim3(unsigned x_ = 1, unsigned y_ = 1, unsigned z_ = 1) : x(x_), y(y_), z(z_) {}
    constexpr dim3(uint3 v) : x(v.x), y(v.y), z(v.z) {}
    constexpr operator uint3() const { return {x, y, z}; }
};

namespace emu {

// What a failed check throws out of the launch (or out of a host-side API call that the real
// library would have rejected or crashed on).
struct Error : std::runtime_error {
    using std::runtime_error::runtime_error;
};

// Stops the running kernel: the message is prefixed with the kernel, block and thread. Outside a
// kernel it throws emu::Error at once.
[[noreturn]] void fail(const char* fmt, ...) __attribute__((format(printf, 1, 2)));

// ---- the running thread ----
struct Copy {  // one pending cp.async: 16 bytes, or 16 zero bytes when src_size is 0
    void* dst;
    const void* src;
    int src_size;
};
struct Thread {
    uint3 idx;  // threadIdx
    int lin;    // x + y·blockDim.x + z·blockDim.x·blockDim.y: the lane is lin % 32, the warp lin / 32
    enum State : uint8_t { runnable, at_barrier, at_warp_op, done } state;
    void* sp;          // saved stack pointer while switched out
    const char* file;  // where it waits (barrier or warp operation)
    int line;
    std::vector<Copy> open;                // cp.async issued since the last commit
    std::deque<std::vector<Copy>> groups;  // committed and not yet waited for, oldest first
};
extern Thread* cur;  // the thread running now (null between kernels)
extern uint3 block_idx;
extern dim3 block_dim, grid_dim;

// ---- launch ----
struct Config {
    dim3 grid, block;
    size_t smem;  // dynamic shared memory in bytes
};
inline Config config(dim3 grid, dim3 block, size_t smem = 0, const void* /*stream*/ = nullptr) {
    return {grid, block, smem};
}

using Body = void (*)(void*);
// Runs body(ctx) as every thread of every block. A configuration the driver would refuse runs
// nothing and sets the error that cudaGetLastError returns; a kernel failing a check throws Error.
void run(const char* kernel, const char* file, int line, const Config& c, Body body, void* ctx);
// A pointer argument must be null or point into (or one past) a device allocation.
void check_kernel_pointer(const void* p, const char* kernel, int index);

// `kernel<<<grid, block, smem>>>(args...)` is rewritten by tests/emu/cudapp.cpp into
// `emu::launch("kernel", __FILE__, __LINE__, emu::config(grid, block, smem),
//              [&](auto&... a) { kernel(a...); }, args...)`.
// The arguments are evaluated once and copied, as the CUDA runtime copies kernel parameters; the
// call in the lambda deduces template arguments as a CUDA launch does.
template <class F, class... A>
void launch(const char* kernel, const char* file, int line, Config c, F fn, A&&... args) {
    using Params = std::tuple<std::decay_t<A>...>;
    Params params(std::forward<A>(args)...);
    int index = 0;
    auto check = [&](const auto& p) {
        using P = std::decay_t<decltype(p)>;
        if constexpr (std::is_pointer_v<P> && !std::is_function_v<std::remove_pointer_t<P>>)
            check_kernel_pointer((const void*)p, kernel, index);
        index++;
    };
    std::apply([&](const auto&... p) { (check(p), ...); }, params);
    struct Ctx {
        F* fn;
        Params* params;
    } ctx{&fn, &params};
    run(kernel, file, line, c, [](void* v) { std::apply(*((Ctx*)v)->fn, *((Ctx*)v)->params); }, &ctx);
}

// __launch_bounds__(max_threads, ...): cudapp moves it to the top of the kernel body as this call.
// A launch with more threads per block than the bound fails on the GPU.
void launch_bounds(int max_threads, int min_blocks = 0, int max_cluster = 0);

// The most shared memory a block may opt into: 227 KB as on sm_90 (H100), or EMU_SMEM_OPTIN_KB
// (99 emulates sm_86/sm_89: RTX 30/40, A10, L4, L40).
size_t smem_optin_max();

// The opt-in to more than 48 KB of dynamic shared memory, by kernel name as written in the source
// (cudaFuncSetAttribute is a macro that passes the name; instantiations of a template share it).
void set_max_dynamic_smem(const char* kernel, int bytes);

// ---- shared memory ----
// Dynamic shared memory (`extern __shared__ T name[];` becomes `T* name = emu::dynamic_smem<T>(...)`):
// the launch's bytes end exactly at an inaccessible page, so reading or writing past the end
// faults and is reported. Filled with 0xFF bytes (NaN) at the start of every block.
void* dynamic_smem_base(const char* name, size_t align);
template <class T>
T* dynamic_smem(const char* name, size_t align = alignof(T)) {
    return static_cast<T*>(dynamic_smem_base(name, align < alignof(T) ? alignof(T) : align));
}
// Static shared memory (`__shared__ T name[N];` becomes `static emu::SharedSlot emu_smem_name;
// auto& name = emu_smem_name.get<T[N]>("name", align);`): one guarded region per declaration
// (per template instantiation), given to each block afresh (0xFF-filled).
extern uint64_t block_serial;  // increments for every block run
struct SharedSlot {
    unsigned char* p = nullptr;
    size_t bytes = 0;
    uint64_t serial = 0;  // block_serial when last claimed
    const char* name = nullptr;
    template <class T>
    T& get(const char* var, size_t align = alignof(T)) {
        if (serial != block_serial) claim(sizeof(T), align < alignof(T) ? alignof(T) : align, var);
        return *reinterpret_cast<T*>(p);
    }
    void claim(size_t bytes, size_t align, const char* var);
};
// Fails unless [p, p + n) lies in this block's shared memory.
void check_shared(const void* p, size_t n, const char* what);
// Fails unless [p, p + n) lies in one device allocation.
void check_global(const void* p, size_t n, const char* what);

// ---- barriers and warp-synchronous operations (file and line say which one, for messages) ----
enum class Sync { threads, count, all, any };
int block_sync(Sync kind, int pred, const char* file, int line);
void warp_sync(unsigned mask, const char* file, int line);
enum class Shfl { idx, up, down, bfly };
uint64_t shfl(Shfl mode, unsigned mask, uint64_t v, int arg, int width, const char* file, int line);
unsigned vote(int kind, unsigned mask, int pred, const char* file, int line);  // 0 ballot, 1 all, 2 any
template <class T>
T shfl_sync(Shfl mode, unsigned mask, T v, int arg, int width, const char* file, int line) {
    static_assert(sizeof(T) <= 8 && std::is_trivially_copyable_v<T>, "__shfl_*_sync of a type over 8 bytes");
    uint64_t x = 0;
    __builtin_memcpy(&x, &v, sizeof(T));
    x = shfl(mode, mask, x, arg, width, file, line);
    T r;
    __builtin_memcpy(&r, &x, sizeof(T));
    return r;
}

// ---- emulated PTX (kernels/cuda/ptx.cuh, under #ifdef CUDA_EMULATOR; tests/emu/warp.cpp) ----
// cp.async.cg.shared.global [dst], [src], 16, src_size: lands in shared memory at issue or at the
// thread's cp.async.wait_group that covers it (the two extremes the PTX ISA allows), chosen at random.
void cp_async16(void* dst, const void* src, int src_size);
void cp_async_commit();
void cp_async_wait(int n);  // cp.async.wait_group n
// ldmatrix.sync.aligned.m8n8.x4{.trans}.shared.b16 and mma.sync.aligned.m16n8k16.row.col.f32.bf16.bf16.f32.
void ldmatrix_x4(uint32_t (&r)[4], const void* row, bool trans);
void mma_m16n8k16_bf16(float (&d)[4], const uint32_t (&a)[4], uint32_t b0, uint32_t b1);

// ---- device memory (tests/emu/memory.cpp) ----
struct Allocation {
    const unsigned char* p;
    size_t bytes;
};
// The allocation holding [p, p + n) (n = 0: p may be one past the end), or null.
const Allocation* find_allocation(const void* p, size_t n);
// Describes where an address is (which allocation, shared variable, stack; or unknown).
void describe_address(const void* p, char* buf, size_t len);
void* alloc_device(size_t bytes);
bool free_device(void* p);
size_t device_bytes_in_use();
// bytes at an align-aligned address, followed (after less than align bytes) by an inaccessible page;
// *map, *map_bytes: the whole mapping, for munmap.
void* guarded_region(size_t bytes, size_t align, void** map = nullptr, size_t* map_bytes = nullptr);
void set_last_error(int cuda_error);
int take_last_error(bool clear);

}  // namespace emu
