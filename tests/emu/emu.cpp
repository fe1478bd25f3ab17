// The emulator's core (tests/emu/include/emu.h): fibers, the block scheduler, __syncthreads, the
// generic warp-synchronous operation (the shuffles, votes, ldmatrix and mma on it: warp.cpp),
// and the reporting of faults inside kernels. Memory is in memory.cpp.
#include <algorithm>
#include <csetjmp>
#include <csignal>
#include <cstdarg>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <chrono>
#include <map>
#include <random>
#include <string>
#include <sys/mman.h>
#include <unistd.h>

#include "internal.h"  // tests/emu/include

#if !defined(__x86_64__) || defined(EMU_UCONTEXT)
#include <ucontext.h>
#endif

namespace emu {

Thread* cur = nullptr;
uint3 block_idx;
dim3 block_dim, grid_dim;
uint64_t block_serial = 0;

namespace {

// ---- limits of the emulated GPU (H100: compute capability 9.0) ----
constexpr int kMaxThreads = 1024;
constexpr size_t kDynamicSmemDefault = 48 << 10;  // dynamic shared memory without the opt-in
constexpr size_t kStackBytes = 128 << 10;         // per fiber, plus a guard page below it

size_t page_size() {
    static size_t p = (size_t)sysconf(_SC_PAGESIZE);
    return p;
}

// ---- the launch being run, and the block's threads ----
struct Launch {
    const char *kernel, *file;
    int line;
    Body body;
    void* ctx;
    size_t smem;
} L;
std::vector<Thread> threads;
std::vector<Warp> warps;
int alive, at_barrier;
Sync bar_kind;
const char* bar_file;
int bar_line, bar_acc, bar_result;
int launch_bound;   // from emu::launch_bounds, checked once per block
std::string error;  // set by fail() inside a kernel; the launch throws it
thread_local bool in_fiber = false;
sigjmp_buf fault_jmp;
std::mt19937_64 rng;
bool shuffled = true;  // EMU_ORDER=fixed: warps, lanes and blocks in index order

// EMU_STATS=1: per kernel, at exit: launches, blocks, thread switches, seconds.
struct Stats {
    long launches = 0, blocks = 0, switches = 0;
    double seconds = 0;
};
std::map<std::string, Stats> stats;
bool want_stats = false;
long switches = 0;
void print_stats() {
    fprintf(stderr, "emu stats: %-40s %9s %9s %12s %9s\n", "kernel", "launches", "blocks", "switches", "seconds");
    for (const auto& [name, st] : stats)
        fprintf(stderr, "emu stats: %-40s %9ld %9ld %12ld %9.3f\n", name.c_str(), st.launches, st.blocks, st.switches,
                st.seconds);
}

// ---- fibers ----
// A switch saves the callee-saved registers of the System V ABI on the old stack, stores the stack
// pointer, and restores the same from the new one: far cheaper than swapcontext (no signal mask).
// The SSE and x87 control words (also callee-saved) are not switched: nothing here changes them.
void* sched_sp;
unsigned char* stacks;  // kMaxThreads × (guard page + kStackBytes)

extern "C" void emu_fiber_main();

#if defined(__x86_64__) && !defined(EMU_UCONTEXT)  // EMU_UCONTEXT: test the fallback
extern "C" void emu_switch(void** save_sp, void* next_sp);
asm(R"(
    .text
    .globl emu_switch
    .type emu_switch, @function
emu_switch:
    pushq %rbp
    pushq %rbx
    pushq %r12
    pushq %r13
    pushq %r14
    pushq %r15
    movq %rsp, (%rdi)
    movq %rsi, %rsp
    popq %r15
    popq %r14
    popq %r13
    popq %r12
    popq %rbx
    popq %rbp
    ret
    .size emu_switch, .-emu_switch
    .type emu_fiber_start, @function
emu_fiber_start:
    call emu_fiber_main@PLT
    ud2
    .size emu_fiber_start, .-emu_fiber_start
)");
extern "C" void emu_fiber_start();

// The top of thread t's stack. Staggered by t·448 bytes modulo 4 KB: with every top at the same
// offset in its page, the hot stack frames of all threads would compete for the same L1 cache set.
unsigned char* stack_top(int t) { return stacks + (size_t)(t + 1) * (kStackBytes + page_size()) - (t * 448) % 4096; }

// The stack of a fiber that has not run yet: what emu_switch pops, returning into emu_fiber_start
// with the stack 16-byte aligned (so that its call gives emu_fiber_main the ABI's alignment).
void* new_fiber(int t) {
    uint64_t* sp = (uint64_t*)stack_top(t) - 9;
    for (int i = 0; i < 6; i++) sp[i] = 0;  // r15 r14 r13 r12 rbx rbp
    sp[6] = (uint64_t)&emu_fiber_start;     // then rsp = sp + 7, 16-byte aligned
    sp[7] = sp[8] = 0;
    return sp;
}
void switch_to(void** save, void* next) { emu_switch(save, next); }
#else
// Portable fallback: ucontext (slower, a signal-mask system call per switch). sp points at a ucontext.
std::vector<ucontext_t> contexts;
ucontext_t sched_ctx;
void* new_fiber(int t) {
    if (contexts.size() < (size_t)kMaxThreads) contexts.resize(kMaxThreads);
    ucontext_t& c = contexts[t];
    getcontext(&c);
    c.uc_stack.ss_sp = stacks + (size_t)t * (kStackBytes + page_size()) + page_size();
    c.uc_stack.ss_size = kStackBytes;
    c.uc_link = nullptr;
    makecontext(&c, emu_fiber_main, 0);
    return &c;
}
void switch_to(void** save, void* next) {
    ucontext_t* from = save == &sched_sp ? &sched_ctx : (ucontext_t*)*save;
    if (save == &sched_sp) *save = &sched_ctx;
    swapcontext(from, (ucontext_t*)next);
}
#endif

// ---- scheduling ----
// A scheduling round runs the runnable threads in `queue` order, each until it waits or exits. A
// thread that stops switches straight to the next one (no detour through the scheduler), and the
// last one back to the scheduler, which then starts the next round or releases a barrier.
// To give races a chance to show, each round some warps sit out (they fall behind the others by a
// warp-synchronous step) and some are greedy: when one of their warp operations completes, the
// warp's lanes go to the front of the queue, so the warp runs ahead to its next __syncthreads.
std::vector<int> queue, front;  // front: run before the rest of queue (a stack)
size_t queue_pos;
std::vector<uint8_t> greedy;  // per warp, this round

Thread* next_runnable() {
    while (!front.empty()) {
        Thread& t = threads[front.back()];
        front.pop_back();
        if (t.state == Thread::runnable) return &t;
    }
    while (queue_pos < queue.size()) {
        Thread& t = threads[queue[queue_pos++]];
        if (t.state == Thread::runnable) return &t;
    }
    return nullptr;
}

// From the scheduler: runs this round's threads. False if none could run.
bool run_round() {
    Thread* t = next_runnable();
    if (!t) return false;
    switches++;
    cur = t;
    in_fiber = true;
    switch_to(&sched_sp, t->sp);
    in_fiber = false;
    cur = nullptr;
    return true;
}

// From a thread that waits or has exited; returns when it is resumed (cur is then this thread).
void yield() {
    Thread* me = cur;
    Thread* next = error.empty() ? next_runnable() : nullptr;
    if (!next) return switch_to(&me->sp, sched_sp);
    switches++;
    cur = next;
    switch_to(&me->sp, next->sp);
}

// "emu: kernel K (launched at file:line), block (..), thread (..) [warp w lane l]: ", as far as known.
std::string context() {
    if (!L.kernel) return "emu: ";
    char buf[512];
    int n = snprintf(buf, sizeof buf, "emu: kernel %s (launched at %s:%d), block (%u,%u,%u) of (%u,%u,%u)", L.kernel,
                     L.file, L.line, block_idx.x, block_idx.y, block_idx.z, grid_dim.x, grid_dim.y, grid_dim.z);
    if (cur)
        snprintf(buf + n, sizeof buf - n, ", thread (%u,%u,%u) of (%u,%u,%u) [warp %d lane %d]", cur->idx.x, cur->idx.y,
                 cur->idx.z, block_dim.x, block_dim.y, block_dim.z, cur->lin / 32, cur->lin % 32);
    return std::string(buf) + ": ";
}

// ---- faults ----
void on_fault(int sig, siginfo_t* si, void*) {
    char where[256];
    describe_address(si->si_addr, where, sizeof where);
    char msg[512];
    if (sig == SIGSEGV && si->si_code == SI_KERNEL)  // #GP: no address; on x86 typically an aligned vector move
        snprintf(msg, sizeof msg, "general protection fault (a misaligned 16-byte vector access?)");
    else
        snprintf(msg, sizeof msg, "%s at address %p: %s", sig == SIGBUS ? "bus error" : "invalid memory access",
                 si->si_addr, where);
    if (in_fiber) {
        error = context() + msg;
        siglongjmp(fault_jmp, 1);
    }
    fprintf(stderr, "emu: %s, outside the kernel's threads\n", msg);
    signal(sig, SIG_DFL);  // the instruction faults again, now with the default action
}

void setup_once() {
    static bool done = false;
    if (done) return;
    done = true;
    size_t slot = kStackBytes + page_size();
    stacks = (unsigned char*)mmap(nullptr, slot * kMaxThreads, PROT_READ | PROT_WRITE,
                                  MAP_PRIVATE | MAP_ANONYMOUS | MAP_NORESERVE, -1, 0);
    if (stacks == MAP_FAILED) throw Error("emu: cannot reserve the fiber stacks");
    for (int t = 0; t < kMaxThreads; t++) mprotect(stacks + t * slot, page_size(), PROT_NONE);
    const char* seed = getenv("EMU_SEED");
    rng.seed(seed ? strtoull(seed, nullptr, 0) : 1);
    want_stats = getenv("EMU_STATS") != nullptr;
    if (want_stats) atexit(print_stats);
    const char* order = getenv("EMU_ORDER");
    shuffled = !(order && strcmp(order, "fixed") == 0);
}

// While a kernel runs, SIGSEGV and SIGBUS go to on_fault, on an alternate stack (the faulting
// thread's stack may be the one that overflowed); the host's handlers (the test framework's) are
// put back after it.
struct FaultHandlers {
    struct sigaction old_segv, old_bus;
    stack_t old_stack;
    FaultHandlers() {
        static std::vector<unsigned char> alt(1 << 16);
        stack_t ss{};
        ss.ss_sp = alt.data();
        ss.ss_size = alt.size();
        sigaltstack(&ss, &old_stack);
        struct sigaction sa{};
        sa.sa_sigaction = on_fault;
        sa.sa_flags = SA_SIGINFO | SA_ONSTACK | SA_NODEFER;
        sigaction(SIGSEGV, &sa, &old_segv);
        sigaction(SIGBUS, &sa, &old_bus);
    }
    ~FaultHandlers() {
        sigaction(SIGSEGV, &old_segv, nullptr);
        sigaction(SIGBUS, &old_bus, nullptr);
        sigaltstack(&old_stack, nullptr);
    }
};

std::string lanes(unsigned m) {
    std::string s;
    for (int l = 0; l < 32; l++)
        if (m >> l & 1) s += (s.empty() ? "" : ",") + std::to_string(l);
    return s.empty() ? "none" : s;
}

// ---- running a block ----
// Nothing is runnable: either every live thread waits at the block barrier (release it) or the
// block can never finish (report why).
void stalled(int n) {
    for (const Warp& w : warps) {
        if (w.op == Op::none) continue;
        unsigned missing = w.mask & ~w.arrived;
        std::string where;
        for (int l = 0; l < 32; l++) {
            if (!(missing >> l & 1)) continue;
            const Thread& t = threads[(&w - warps.data()) * 32 + l];
            char b[160];
            snprintf(b, sizeof b, "; lane %d %s", l,
                     t.state == Thread::done ? "has exited" : t.state == Thread::at_barrier ? "waits at a __syncthreads" : "?");
            where += b;
            if (t.state == Thread::at_barrier) where += std::string(" at ") + t.file + ":" + std::to_string(t.line);
        }
        fail("deadlock: warp %d waits at %s (%s:%d, mask 0x%08x) for lanes that never arrive%s", (int)(&w - warps.data()),
             op_name(w.op), w.file, w.line, w.mask, where.c_str());
    }
    if (at_barrier != alive) fail("deadlock: %d threads runnable but none ran (emulator bug)", alive - at_barrier);
    if (alive < n) {
        int t = 0;
        while (threads[t].state != Thread::done) t++;
        fail("__syncthreads at %s:%d is not reached by the %d thread(s) that exited (e.g. thread (%u,%u,%u)): "
             "a barrier in divergent code (undefined behaviour; it hangs or corrupts on the GPU)",
             bar_file, bar_line, n - alive, threads[t].idx.x, threads[t].idx.y, threads[t].idx.z);
    }
    bar_result = bar_kind == Sync::count ? bar_acc : bar_kind == Sync::all ? bar_acc == n : bar_acc > 0;
    for (Thread& t : threads)
        if (t.state == Thread::at_barrier) t.state = Thread::runnable;
    at_barrier = 0;
    bar_acc = 0;
}

void run_block() {
    block_serial++;
    const int n = (int)(block_dim.x * block_dim.y * block_dim.z), nw = (n + 31) / 32;
    threads.resize(n);
    for (int i = 0; i < n; i++) {
        Thread& t = threads[i];
        t.idx = {i % block_dim.x, i / block_dim.x % block_dim.y, i / (block_dim.x * block_dim.y)};
        t.lin = i;
        t.state = Thread::runnable;
        t.sp = new_fiber(i);
        t.file = nullptr;
        t.open.clear();
        t.groups.clear();
    }
    warps.assign(nw, Warp{});
    for (int w = 0; w < nw; w++) warps[w].exists = n - 32 * w >= 32 ? ~0u : (1u << (n - 32 * w)) - 1;
    smem_block();
    alive = n;
    at_barrier = bar_acc = 0;
    launch_bound = 0;
    std::vector<int> order(nw);
    for (int w = 0; w < nw; w++) order[w] = w;
    greedy.assign(nw, 0);
    for (;;) {
        // This round's order: the warps shuffled, the lanes of each up or down; 1 warp in 8 sits
        // out, 1 in 4 is greedy.
        if (shuffled) std::shuffle(order.begin(), order.end(), rng);
        queue.clear();
        front.clear();
        for (int w : order) {
            const uint64_t r = shuffled ? rng() : 0;
            greedy[w] = (r >> 8) % 4 == 0;
            if (r % 8 == 7) continue;
            const bool down = r >> 4 & 1;
            for (int i = 0; i < 32; i++)
                if (int t = w * 32 + (down ? 31 - i : i); t < n) queue.push_back(t);
        }
        queue_pos = 0;
        bool ran = run_round();
        if (!error.empty()) return;
        if (ran) continue;
        if (alive == 0) return;
        bool runnable = false;  // all of them may have sat out
        for (const Thread& t : threads) runnable |= t.state == Thread::runnable;
        if (!runnable) stalled(n);
    }
}

void run_grid() {
    std::vector<uint64_t> order((size_t)grid_dim.x * grid_dim.y * grid_dim.z);
    for (size_t b = 0; b < order.size(); b++) order[b] = b;
    if (shuffled) std::shuffle(order.begin(), order.end(), rng);
    for (uint64_t b : order) {
        block_idx = {(unsigned)(b % grid_dim.x), (unsigned)(b / grid_dim.x % grid_dim.y),
                     (unsigned)(b / ((uint64_t)grid_dim.x * grid_dim.y))};
        run_block();
        if (!error.empty()) return;
    }
}

struct KernelAttr {
    std::string name;
    int max_dynamic_smem;
};
std::vector<KernelAttr> attrs;

std::string normalized(const char* s) {  // "&k < T >" -> "k<T>"
    std::string r;
    for (; *s; s++)
        if (*s != ' ' && *s != '\t' && *s != '\n' && !(r.empty() && *s == '&')) r += *s;
    return r;
}

}  // namespace

extern "C" void emu_fiber_main() {
    L.body(L.ctx);
    Thread& t = *cur;
    cp_async_drain(t);
    Warp& w = warps[t.lin / 32];
    unsigned bit = 1u << (t.lin % 32);
    if (w.op != Op::none && (w.mask & bit))
        fail("exits while lanes %s of its warp wait for it at %s (%s:%d, mask 0x%08x)", lanes(w.arrived).c_str(),
             op_name(w.op), w.file, w.line, w.mask);
    w.exited |= bit;
    t.state = Thread::done;
    alive--;
    yield();
    abort();  // never resumed
}

void fail(const char* fmt, ...) {
    char msg[1024];
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(msg, sizeof msg, fmt, ap);
    va_end(ap);
    if (in_fiber) {  // stop the kernel: the scheduler sees the error and the launch throws it
        error = context() + msg;
        cur->state = Thread::done;
        switch_to(&cur->sp, sched_sp);
        abort();
    }
    throw Error(context() + msg);  // host code, or the scheduler (a deadlock)
}

void run(const char* kernel, const char* file, int line, const Config& c, Body body, void* ctx) {
    setup_once();
    if (in_fiber) fail("launches kernel %s: device-side launches are not emulated", kernel);
    const dim3 g = c.grid, b = c.block;
    const size_t threads_per_block = (size_t)b.x * b.y * b.z;
    std::string why;
    if (!g.x || !g.y || !g.z || !b.x || !b.y || !b.z) why = "a zero grid or block dimension";
    else if (g.x > 0x7fffffffu || g.y > 65535 || g.z > 65535) why = "grid dimensions over (2^31-1, 65535, 65535)";
    else if (b.x > 1024 || b.y > 1024 || b.z > 64 || threads_per_block > (size_t)kMaxThreads) why = "more than 1024 threads per block";
    int smem_limit = (int)kDynamicSmemDefault;
    std::string name = normalized(kernel);
    for (const KernelAttr& a : attrs)
        if (a.name == name && a.max_dynamic_smem > smem_limit) smem_limit = a.max_dynamic_smem;
    if (why.empty() && c.smem > (size_t)smem_limit)
        why = "dynamic shared memory of " + std::to_string(c.smem) + " bytes is over the limit of " +
              std::to_string(smem_limit) + " (more than 48 KB needs cudaFuncSetAttribute(" + name +
              ", cudaFuncAttributeMaxDynamicSharedMemorySize, bytes) first)";
    if (!why.empty()) {  // the driver refuses the launch: nothing runs, cudaGetLastError says so
        fprintf(stderr, "emu: launch of %s at %s:%d refused: %s (grid (%u,%u,%u), block (%u,%u,%u))\n", kernel, file, line,
                why.c_str(), g.x, g.y, g.z, b.x, b.y, b.z);
        set_last_error(c.smem > (size_t)smem_limit ? 1 /* cudaErrorInvalidValue */ : 9 /* InvalidConfiguration */);
        return;
    }
    L = {kernel, file, line, body, ctx, c.smem};
    grid_dim = g;
    block_dim = b;
    // Without the opt-in a block's static and dynamic shared memory together fit 48 KB; with it, the
    // GPU's per-block maximum.
    smem_launch(c.smem, smem_limit > (int)kDynamicSmemDefault ? smem_optin_max() : kDynamicSmemDefault);
    error.clear();
    const DeviceAccess access;
    FaultHandlers handlers;
    const long switches0 = switches;
    const auto t0 = std::chrono::steady_clock::now();
    std::string thrown;
    if (sigsetjmp(fault_jmp, 1) == 0) {  // a fault in a kernel thread comes back here (on_fault)
        try {
            run_grid();
        } catch (const Error& e) {  // from the scheduler: a deadlock
            thrown = e.what();
        }
    }
    in_fiber = false;
    cur = nullptr;
    L.kernel = nullptr;
    if (want_stats) {
        Stats& st = stats[kernel];
        st.launches++;
        st.blocks += (long)g.x * g.y * g.z;
        st.switches += switches - switches0;
        st.seconds += std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count();
    }
    if (!thrown.empty()) throw Error(thrown);
    if (!error.empty()) throw Error(error);
    std::string canary = check_canaries();
    if (!canary.empty()) throw Error("emu: kernel " + std::string(kernel) + " (launched at " + file + ":" +
                                     std::to_string(line) + ") " + canary);
}

void launch_bounds(int max_threads, int, int) {
    if (launch_bound) return;  // checked by the first thread of the block
    launch_bound = max_threads;
    if ((int)(block_dim.x * block_dim.y * block_dim.z) > max_threads)
        fail("launched with %u threads per block, over its __launch_bounds__(%d): the launch fails on the GPU "
             "(too many resources requested)",
             block_dim.x * block_dim.y * block_dim.z, max_threads);
}

std::string kernel_name_of_arguments(const char* text) {
    std::string s = text;
    int depth = 0, commas = 0;
    for (size_t i = s.size(); i-- > 0;) {
        if (s[i] == ')') depth++;
        else if (s[i] == '(') depth--;
        else if (s[i] == ',' && depth == 0 && ++commas == 2) return s.substr(0, i);
    }
    return s;
}

void set_max_dynamic_smem(const char* kernel, int bytes) {
    std::string name = normalized(kernel);
    for (KernelAttr& a : attrs)
        if (a.name == name) {  // instantiations of one template share the name: keep the largest
            a.max_dynamic_smem = std::max(a.max_dynamic_smem, bytes);
            return;
        }
    attrs.push_back({name, bytes});
}

// ---- barriers ----
int block_sync(Sync kind, int pred, const char* file, int line) {
    if (!in_fiber) fail("__syncthreads outside a kernel");
    static const char* names[] = {"__syncthreads", "__syncthreads_count", "__syncthreads_and", "__syncthreads_or"};
    if (at_barrier == 0) {
        bar_kind = kind, bar_file = file, bar_line = line;
    } else if (kind != bar_kind || line != bar_line || (file != bar_file && strcmp(file, bar_file) != 0)) {
        fail("reaches %s at %s:%d while other threads wait at %s at %s:%d: divergent barriers", names[(int)kind], file,
             line, names[(int)bar_kind], bar_file, bar_line);
    }
    const Warp& w = warps[cur->lin / 32];  // lanes waiting at a warp operation for this thread would never finish
    if (w.op != Op::none && (w.mask >> (cur->lin % 32) & 1))
        fail("reaches %s at %s:%d while lanes %s of its warp wait for it at %s (%s:%d)", names[(int)kind], file, line,
                 lanes(w.arrived).c_str(), op_name(w.op), w.file, w.line);
    cur->state = Thread::at_barrier;
    cur->file = file, cur->line = line;
    at_barrier++;
    bar_acc += pred != 0;
    yield();
    return bar_result;
}

// ---- warp-synchronous operations ----
const char* op_name(Op op) {
    static const char* names[] = {"(none)", "__syncwarp", "__shfl_*_sync", "__ballot/__all/__any_sync", "ldmatrix", "mma"};
    return names[(int)op];
}

void warp_op(Op op, unsigned mask, int mode, const LaneArgs& args, void (*complete)(Warp&), const char* file, int line) {
    if (!in_fiber) fail("%s outside a kernel", op_name(op));
    Thread& t = *cur;
    const int lane = t.lin % 32;
    const unsigned bit = 1u << lane;
    Warp& w = warps[t.lin / 32];
    if (!(mask & bit)) fail("%s at %s:%d with mask 0x%08x, which leaves out the calling lane", op_name(op), file, line, mask);
    if (mask & ~w.exists)
        fail("%s at %s:%d with mask 0x%08x names lanes %s, which do not exist (the block has %d threads)", op_name(op),
             file, line, mask, lanes(mask & ~w.exists).c_str(), (int)threads.size());
    if (mask & w.exited)
        fail("%s at %s:%d with mask 0x%08x: lanes %s have already exited", op_name(op), file, line, mask,
             lanes(mask & w.exited).c_str());
    if (w.op == Op::none) {
        w.op = op, w.mask = mask, w.mode = mode, w.file = file, w.line = line, w.arrived = 0;
    } else if (w.op != op || w.mask != mask || w.mode != mode ||
               (op != Op::syncwarp && (line != w.line || (file != w.file && strcmp(file, w.file) != 0)))) {
        fail("reaches %s at %s:%d (mask 0x%08x) while lanes %s of its warp wait at %s at %s:%d (mask 0x%08x): "
             "divergent warp-synchronous code",
             op_name(op), file, line, mask, lanes(w.arrived).c_str(), op_name(w.op), w.file, w.line, w.mask);
    }
    w.lane[lane] = args;
    w.arrived |= bit;
    if (w.arrived != mask) {
        t.state = Thread::at_warp_op;
        t.file = file, t.line = line;
        yield();
        return;
    }
    if (complete) complete(w);  // the last lane: compute everyone's results, wake them
    const int base = t.lin / 32 * 32;
    for (int l = 31; l >= 0; l--)
        if ((mask >> l & 1) && l != lane) {
            threads[base + l].state = Thread::runnable;
            if (greedy[t.lin / 32]) front.push_back(base + l);
        }
    w.op = Op::none;
}


bool early_landing() { return shuffled && (rng() & 1); }

bool in_kernel() { return in_fiber; }

bool describe_stack(const void* p, char* buf, size_t len) {
    const unsigned char* c = (const unsigned char*)p;
    const size_t slot = kStackBytes + page_size();
    if (!stacks || c < stacks || c >= stacks + slot * kMaxThreads) return false;
    const bool guard = (size_t)(c - stacks) % slot < page_size();
    snprintf(buf, len, "%s of emulated thread %zu%s", guard ? "the guard page below the stack" : "the stack",
             (size_t)(c - stacks) / slot, guard ? " (stack overflow: more than 128 KB of locals)" : "");
    return true;
}

}  // namespace emu
