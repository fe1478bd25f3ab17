// Internal to the emulator (tests/emu/*.cpp): what its parts share beyond emu.h.
//
// A warp-synchronous operation: each lane of the mask deposits its operands and waits; the last
// lane to arrive computes the results of all lanes (writing them through the `out` pointers, into
// the waiting lanes' stack frames) and wakes them. One operation per warp may be pending: lanes
// arriving at another one is a divergence bug.
#pragma once
#include <string>

#include "emu.h"

namespace emu {

enum class Op : uint8_t { none, syncwarp, shfl, vote, ldmatrix, mma };

struct LaneArgs {
    const void* p;  // ldmatrix: this lane's row address
    void* out;      // where this lane's result goes
    uint64_t v;     // shfl: the value; vote: the predicate
    uint32_t u[6];  // shfl: source lane / delta / mask, width; mma: a[0..3], b0, b1
};

struct Warp {
    Op op;
    unsigned mask, arrived;  // of the pending operation
    unsigned exists;         // lanes that exist (a block of 48 threads has a warp of 16)
    unsigned exited;
    int mode;  // Shfl mode, vote kind, ldmatrix .trans
    const char* file;
    int line;
    LaneArgs lane[32];
};

// Joins the calling lane to its warp's operation; returns once it is complete (`complete` has run).
void warp_op(Op op, unsigned mask, int mode, const LaneArgs& args, void (*complete)(Warp&), const char* file, int line);
const char* op_name(Op op);

// cp.async copies still pending when a thread exits land then (warp.cpp).
void cp_async_drain(Thread& t);
// Whether a cp.async lands at once (else at its wait_group): random, unless EMU_ORDER=fixed.
bool early_landing();

// emu.cpp: whether a kernel thread is running; describes addresses in the fiber stacks.
bool in_kernel();
bool describe_stack(const void* p, char* buf, size_t len);

// memory.cpp: the dynamic shared memory of a launch, fresh shared memory for a block, and after a
// kernel, a message if it wrote into the padding after a device allocation.
void smem_launch(size_t bytes, size_t block_limit);
void smem_block();
std::string check_canaries();

// memory.cpp, EMU_HOST_FAULT=1: device memory is inaccessible to the host except while a kernel,
// a cudaMemcpy/cudaMemset or a cuBLASLt call runs (each holds a DeviceAccess), so host code that
// dereferences a device pointer (which faults on the GPU) faults here too.
void device_access_begin();
void device_access_end();
struct DeviceAccess {
    DeviceAccess() { device_access_begin(); }
    ~DeviceAccess() { device_access_end(); }
    DeviceAccess(const DeviceAccess&) = delete;
    DeviceAccess& operator=(const DeviceAccess&) = delete;
};

}  // namespace emu
