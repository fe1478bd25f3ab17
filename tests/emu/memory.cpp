// The emulator's memory (tests/emu/include/emu.h): device allocations and shared memory, each
// followed by an inaccessible page, and the descriptions of addresses in fault messages.
//
// Device memory is host memory. An allocation starts 256-byte aligned, as cudaMalloc guarantees;
// the bytes from its end up to the next multiple of 256 hold a canary (0xFF, a NaN to whoever reads
// it), checked after every kernel, and the next page is inaccessible: a kernel writing past the end
// of a tensor is reported, and one running further off it faults at once.
// Shared memory: the dynamic shared memory of a launch, and each static __shared__ variable, ends
// exactly at an inaccessible page, and is filled with 0xFF bytes at the start of every block.
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <csignal>
#include <map>
#include <string>
#include <sys/mman.h>
#include <unistd.h>

#include "internal.h"  // tests/emu/include

namespace emu {

namespace {

size_t page_size() {
    static size_t p = (size_t)sysconf(_SC_PAGESIZE);
    return p;
}
size_t round_up(size_t x, size_t a) { return (x + a - 1) / a * a; }

// ---- device allocations ----
struct Mapping {
    Allocation a;
    void* map;  // the whole mapping, guard page included
    size_t map_bytes;
};
std::map<uintptr_t, Mapping> allocations;  // by start address
size_t in_use = 0;
constexpr size_t kTotalBytes = size_t(80) << 30;  // an 80 GiB H100
constexpr size_t kAlign = 256;

size_t slack(size_t bytes) { return round_up(bytes, kAlign) - bytes; }

const Mapping* at_or_before(const void* p) {
    auto it = allocations.upper_bound((uintptr_t)p);
    if (it == allocations.begin()) return nullptr;
    return &(--it)->second;
}

// EMU_HOST_FAULT=1: the allocations' pages are PROT_NONE while no DeviceAccess is held.
int access_depth = 0;
bool host_fault_mode() {
    static const bool on = getenv("EMU_HOST_FAULT") != nullptr;
    return on;
}
void protect(const Mapping& m, int prot) { mprotect(m.map, m.map_bytes - page_size(), prot); }
struct sigaction previous_segv;
// A fault on a closed allocation's page is host code touching device memory: said, then the fault
// goes to the handler that was there before (the test framework's, which names the test case).
void on_host_fault(int sig, siginfo_t* si, void* ctx) {
    const unsigned char* c = (const unsigned char*)si->si_addr;
    const Mapping* m = at_or_before(si->si_addr);
    if (m && c < (const unsigned char*)m->map + m->map_bytes - page_size())
        fprintf(stderr, "emu: host code accessed device memory at %p (offset %zd of the device allocation of %zu "
                "bytes at %p): it would fault on the GPU (EMU_HOST_FAULT)\n", si->si_addr, (ssize_t)(c - m->a.p),
                m->a.bytes, (const void*)m->a.p);
    sigaction(SIGSEGV, &previous_segv, nullptr);
    (void)sig, (void)ctx;  // returning re-runs the instruction: it faults again, into that handler
}
// Closes m to the host (first installing on_host_fault).
void close_to_host(const Mapping& m) {
    static const bool installed = [] {
        struct sigaction sa{};
        sa.sa_sigaction = on_host_fault;
        sa.sa_flags = SA_SIGINFO;
        return sigaction(SIGSEGV, &sa, &previous_segv) == 0;
    }();
    (void)installed;
    protect(m, PROT_NONE);
}

// ---- shared memory ----
constexpr size_t kStaticSmemMax = 48 << 10;  // static __shared__ per block
constexpr size_t kSmemOptInMax = 227 << 10;  // the largest opt-in of any GPU (sm_90)
unsigned char* dyn_guard;                    // the page after the dynamic shared memory
unsigned char* dyn_base;
size_t dyn_bytes;
size_t smem_block_limit;  // static + dynamic of one block (smem_launch)
size_t static_bytes;              // claimed by this block
std::vector<SharedSlot*> slots;   // every static __shared__ variable seen

}  // namespace

void* guarded_region(size_t bytes, size_t align, void** map, size_t* map_bytes) {
    size_t len = round_up(bytes + align, page_size());
    unsigned char* m = (unsigned char*)mmap(nullptr, len + page_size(), PROT_READ | PROT_WRITE,
                                            MAP_PRIVATE | MAP_ANONYMOUS | MAP_NORESERVE, -1, 0);
    if (m == MAP_FAILED) return nullptr;
    unsigned char* guard = m + len;  // the page after the last byte (rounded down to align)
    mprotect(guard, page_size(), PROT_NONE);
    if (map) *map = m, *map_bytes = len + page_size();
    return (void*)(((uintptr_t)guard - bytes) / align * align);
}

// ---- device memory ----
const Allocation* find_allocation(const void* p, size_t n) {
    const Mapping* m = at_or_before(p);
    if (!m) return nullptr;
    const unsigned char* c = (const unsigned char*)p;
    return c + n <= m->a.p + m->a.bytes ? &m->a : nullptr;
}

void* alloc_device(size_t bytes) {
    if (bytes > kTotalBytes - in_use) return nullptr;
    Mapping m;
    const size_t room = bytes ? bytes + slack(bytes) : kAlign;
    unsigned char* p = (unsigned char*)guarded_region(room, kAlign, &m.map, &m.map_bytes);
    if (!p) return nullptr;
    memset(p + bytes, 0xFF, room - bytes);  // the canary
    m.a = {p, bytes};
    allocations[(uintptr_t)p] = m;
    in_use += bytes;
    if (host_fault_mode() && access_depth == 0) close_to_host(m);
    return p;
}

bool free_device(void* p) {
    auto it = allocations.find((uintptr_t)p);
    if (it == allocations.end()) return false;
    in_use -= it->second.a.bytes;
    munmap(it->second.map, it->second.map_bytes);  // a later use faults (until the addresses are reused)
    allocations.erase(it);
    return true;
}

void device_access_begin() {
    if (!host_fault_mode() || access_depth++ > 0) return;
    for (const auto& kv : allocations) protect(kv.second, PROT_READ | PROT_WRITE);
}

void device_access_end() {
    if (!host_fault_mode() || --access_depth > 0) return;
    for (const auto& kv : allocations) close_to_host(kv.second);
}

size_t device_bytes_in_use() { return in_use; }

size_t smem_optin_max() {
    static const size_t kb = [] {
        const char* e = getenv("EMU_SMEM_OPTIN_KB");
        long v = e ? strtol(e, nullptr, 10) : 227;
        if (v < 48 || v > 227) {
            fprintf(stderr, "emu: EMU_SMEM_OPTIN_KB=%s is outside 48..227 (KB); using 227\n", e);
            v = 227;
        }
        return (size_t)v;
    }();
    return kb << 10;
}

std::string check_canaries() {
    for (const auto& [start, m] : allocations) {
        unsigned char* c = (unsigned char*)m.a.p + m.a.bytes;
        const size_t n = m.a.bytes ? slack(m.a.bytes) : kAlign;
        for (size_t i = 0; i < n; i++)
            if (c[i] != 0xFF) {
                char msg[256];
                snprintf(msg, sizeof msg, "wrote past the end of the device allocation of %zu bytes at %p (first at "
                         "byte %zu after the end)", m.a.bytes, (const void*)m.a.p, i);
                memset(c, 0xFF, n);  // reported once
                return msg;
            }
    }
    return "";
}

void check_global(const void* p, size_t n, const char* what) {
    if (find_allocation(p, n)) return;
    char where[256];
    describe_address(p, where, sizeof where);
    fail("%s: [%p, +%zu bytes) is not inside one device allocation: %p is %s", what, p, n, p, where);
}

void check_kernel_pointer(const void* p, const char* kernel, int index) {
    if (!p || find_allocation(p, 0)) return;
    char where[256], msg[512];
    describe_address(p, where, sizeof where);
    snprintf(msg, sizeof msg, "emu: kernel %s: argument %d is %p, which is not device memory (%s): the kernel would fault",
             kernel, index, p, where);
    throw Error(msg);
}

// ---- shared memory ----
void smem_launch(size_t bytes, size_t block_limit) {
    if (!dyn_guard)
        dyn_guard = (unsigned char*)round_up((uintptr_t)guarded_region(kSmemOptInMax, 16) + kSmemOptInMax, page_size());
    dyn_bytes = bytes;
    smem_block_limit = block_limit;
    dyn_base = dyn_guard - round_up(bytes, 16);
}

void smem_block() {
    memset(dyn_base, 0xFF, dyn_bytes);
    static_bytes = 0;
}

void* dynamic_smem_base(const char* name, size_t align) {
    if (!in_kernel()) fail("extern __shared__ %s used outside a kernel", name);
    if (align > 16) fail("extern __shared__ %s needs %zu-byte alignment; dynamic shared memory only guarantees 16", name, align);
    return dyn_base;
}

void SharedSlot::claim(size_t n, size_t align, const char* var) {
    if (!in_kernel()) fail("__shared__ %s used outside a kernel", var);
    if (!p) {
        p = (unsigned char*)guarded_region(n, align < 16 ? 16 : align);
        bytes = n;
        name = var;
        slots.push_back(this);
    }
    memset(p, 0xFF, bytes);
    serial = block_serial;
    static_bytes += bytes;
    if (static_bytes > kStaticSmemMax)
        fail("static __shared__ memory of the kernel exceeds 48 KB (%zu bytes with %s)", static_bytes, var);
    if (static_bytes + dyn_bytes > smem_block_limit)
        fail("static (%zu) + dynamic (%zu) shared memory exceeds the %zu KB per block%s: the launch would fail",
             static_bytes, dyn_bytes, smem_block_limit >> 10,
             smem_block_limit < smem_optin_max() ? " without cudaFuncAttributeMaxDynamicSharedMemorySize" : "");
}

void check_shared(const void* p, size_t n, const char* what) {
    const unsigned char* c = (const unsigned char*)p;
    if (c >= dyn_base && c + n <= dyn_base + dyn_bytes) return;
    for (const SharedSlot* s : slots)
        if (s->serial == block_serial && c >= s->p && c + n <= s->p + s->bytes) return;
    char where[256];
    describe_address(p, where, sizeof where);
    fail("%s: [%p, +%zu) is not in this block's shared memory (dynamic: %zu bytes at %p): %s", what, p, n, dyn_bytes,
         (void*)dyn_base, where);
}

// ---- where an address is ----
void describe_address(const void* p, char* buf, size_t len) {
    const unsigned char* c = (const unsigned char*)p;
    if (describe_stack(p, buf, len)) return;
    if (dyn_guard && c >= dyn_base && c < dyn_guard + page_size()) {
        if (c < dyn_base + dyn_bytes) snprintf(buf, len, "inside the dynamic shared memory (%zu bytes)", dyn_bytes);
        else snprintf(buf, len, "%zu bytes past the end of the dynamic shared memory (%zu bytes)",
                      (size_t)(c - dyn_base) - dyn_bytes, dyn_bytes);
        return;
    }
    for (const SharedSlot* s : slots) {
        const unsigned char* g = (const unsigned char*)round_up((uintptr_t)(s->p + s->bytes), page_size());
        if (c >= s->p && c < g + page_size()) {
            if (c < s->p + s->bytes) snprintf(buf, len, "inside __shared__ %s (%zu bytes)", s->name, s->bytes);
            else snprintf(buf, len, "%zu bytes past the end of __shared__ %s (%zu bytes)", (size_t)(c - s->p) - s->bytes,
                          s->name, s->bytes);
            return;
        }
    }
    const Mapping* m = at_or_before(p);
    if (m && c < m->a.p + m->a.bytes) {
        snprintf(buf, len, "offset %zu of the device allocation of %zu bytes at %p", (size_t)(c - m->a.p), m->a.bytes,
                 (const void*)m->a.p);
    } else if (m && c < (const unsigned char*)m->map + m->map_bytes) {
        snprintf(buf, len, "%zu bytes past the end of the device allocation of %zu bytes at %p",
                 (size_t)(c - m->a.p) - m->a.bytes, m->a.bytes, (const void*)m->a.p);
    } else {
        auto next = allocations.upper_bound((uintptr_t)p);
        if (next != allocations.end() && c >= (const unsigned char*)next->second.map)
            snprintf(buf, len, "%zu bytes before the device allocation of %zu bytes at %p",
                     (size_t)(next->second.a.p - c), next->second.a.bytes, (const void*)next->second.a.p);
        else
            snprintf(buf, len, "not device or shared memory (host memory, or a wild pointer)");
    }
}

}  // namespace emu
