// The warp-level operations on top of emu.cpp's warp_op: the shuffle and vote intrinsics and
// __syncwarp (CUDA C++ Programming Guide, "Warp Shuffle Functions", "Warp Vote Functions"), and the
// PTX instructions of the tensor-core kernels (attention, LoRA: the wrappers in
// kernels/cuda/ptx.cuh call these under #ifdef CUDA_EMULATOR), emulated from the PTX
// ISA's definitions:
//   cp.async.cg.shared.global [dst], [src], 16, src_size; cp.async.commit_group; cp.async.wait_group N
//   ldmatrix.sync.aligned.m8n8.x4{.trans}.shared.b16
//   mma.sync.aligned.m16n8k16.row.col.f32.bf16.bf16.f32
// Each also checks what the hardware requires: shared or global address spaces, 16-byte alignment,
// every lane of the warp taking part (.sync.aligned).
#include <cstring>

#include "internal.h"  // tests/emu/include

namespace emu {

// ---- shuffles, votes, __syncwarp ----
namespace {
void complete_shfl(Warp& w) {
    for (int l = 0; l < 32; l++) {
        if (!(w.mask >> l & 1)) continue;
        const int width = (int)w.lane[l].u[1], arg = (int)w.lane[l].u[0], seg = l & ~(width - 1);
        int src = l;
        switch ((Shfl)w.mode) {
            case Shfl::idx: src = seg + (arg & (width - 1)); break;
            case Shfl::up: src = (l & (width - 1)) >= arg ? l - arg : l; break;
            case Shfl::down: src = (l & (width - 1)) + arg < width ? l + arg : l; break;
            case Shfl::bfly: src = (l ^ arg) < seg + width ? l ^ arg : l; break;
        }
        if (!(w.mask >> src & 1))
            fail("__shfl_*_sync at %s:%d: lane %d reads lane %d, which is not in the mask 0x%08x (undefined result)",
                 w.file, w.line, l, src, w.mask);
        *(uint64_t*)w.lane[l].out = w.lane[src].v;
    }
}
void complete_vote(Warp& w) {
    unsigned ballot = 0;
    for (int l = 0; l < 32; l++)
        if ((w.mask >> l & 1) && w.lane[l].v) ballot |= 1u << l;
    unsigned r = w.mode == 0 ? ballot : w.mode == 1 ? ballot == w.mask : ballot != 0;
    for (int l = 0; l < 32; l++)
        if (w.mask >> l & 1) *(unsigned*)w.lane[l].out = r;
}
}  // namespace

uint64_t shfl(Shfl mode, unsigned mask, uint64_t v, int arg, int width, const char* file, int line) {
    if (width < 1 || width > 32 || (width & (width - 1)))
        fail("__shfl_*_sync at %s:%d with width %d (must be a power of 2 up to 32)", file, line, width);
    uint64_t r;
    LaneArgs a{};
    a.v = v, a.out = &r, a.u[0] = (uint32_t)arg, a.u[1] = (uint32_t)width;
    warp_op(Op::shfl, mask, (int)mode, a, complete_shfl, file, line);
    return r;
}

unsigned vote(int kind, unsigned mask, int pred, const char* file, int line) {
    unsigned r;
    LaneArgs a{};
    a.v = pred != 0, a.out = &r;
    warp_op(Op::vote, mask, kind, a, complete_vote, file, line);
    return r;
}

void warp_sync(unsigned mask, const char* file, int line) { warp_op(Op::syncwarp, mask, 0, LaneArgs{}, nullptr, file, line); }

// ---- PTX ----
namespace {

void land(const Copy& c) {
    memcpy(c.dst, c.src, c.src_size);  // src_size 0: nothing is read
    memset((char*)c.dst + c.src_size, 0, 16 - c.src_size);
}

// Register r of a fragment holds two BF16, the lower column in the low half.
float bf16_lo(uint32_t r) { uint32_t u = r << 16; float f; memcpy(&f, &u, 4); return f; }
float bf16_hi(uint32_t r) { uint32_t u = r & 0xffff0000u; float f; memcpy(&f, &u, 4); return f; }

// Lanes 8i..8i+7 gave the row addresses of matrix i (16 bytes each). Without .trans, register i of
// lane l gets row l/4 of matrix i, elements 2(l%4) and 2(l%4)+1; with .trans, the matrix is read
// transposed: elements [2(l%4)][l/4] and [2(l%4)+1][l/4].
void complete_ldmatrix(Warp& w) {
    for (int l = 0; l < 32; l++) {
        uint32_t* r = (uint32_t*)w.lane[l].out;
        for (int i = 0; i < 4; i++) {
            uint16_t lo, hi;
            if (!w.mode) {
                const uint16_t* row = (const uint16_t*)w.lane[8 * i + l / 4].p;
                lo = row[2 * (l % 4)], hi = row[2 * (l % 4) + 1];
            } else {
                lo = ((const uint16_t*)w.lane[8 * i + 2 * (l % 4)].p)[l / 4];
                hi = ((const uint16_t*)w.lane[8 * i + 2 * (l % 4) + 1].p)[l / 4];
            }
            r[i] = (uint32_t)lo | (uint32_t)hi << 16;
        }
    }
}

// D = A·B + C for the warp's 16x8x16 tile. With g = lane/4, c = lane%4 (PTX ISA, "Matrix Fragments
// for mma.m16n8k16 with floating point type"):
//   A: a0 = A[g][2c..2c+1], a1 = A[g+8][2c..], a2 = A[g][2c+8..], a3 = A[g+8][2c+8..]
//   B: b0 = B[2c..2c+1][g], b1 = B[2c+8..2c+9][g]
//   C, D: d0, d1 = D[g][2c..2c+1], d2, d3 = D[g+8][2c..2c+1]
// The products of BF16 are exact in FP32; the sum runs in FP32 in k order.
void complete_mma(Warp& w) {
    float A[16][16], B[16][8], C[16][8];
    for (int l = 0; l < 32; l++) {
        const int g = l / 4, c = l % 4;
        const uint32_t* u = w.lane[l].u;
        const float* d = (const float*)w.lane[l].out;
        A[g][2 * c] = bf16_lo(u[0]), A[g][2 * c + 1] = bf16_hi(u[0]);
        A[g + 8][2 * c] = bf16_lo(u[1]), A[g + 8][2 * c + 1] = bf16_hi(u[1]);
        A[g][2 * c + 8] = bf16_lo(u[2]), A[g][2 * c + 9] = bf16_hi(u[2]);
        A[g + 8][2 * c + 8] = bf16_lo(u[3]), A[g + 8][2 * c + 9] = bf16_hi(u[3]);
        B[2 * c][g] = bf16_lo(u[4]), B[2 * c + 1][g] = bf16_hi(u[4]);
        B[2 * c + 8][g] = bf16_lo(u[5]), B[2 * c + 9][g] = bf16_hi(u[5]);
        C[g][2 * c] = d[0], C[g][2 * c + 1] = d[1], C[g + 8][2 * c] = d[2], C[g + 8][2 * c + 1] = d[3];
    }
    for (int l = 0; l < 32; l++) {
        const int g = l / 4, c = l % 4;
        float* d = (float*)w.lane[l].out;
        for (int i = 0; i < 4; i++) {
            const int row = g + 8 * (i / 2), col = 2 * c + i % 2;
            float s = C[row][col];
            for (int k = 0; k < 16; k++) s += A[row][k] * B[k][col];
            d[i] = s;
        }
    }
}

}  // namespace

void cp_async16(void* dst, const void* src, int src_size) {
    if (!cur) fail("cp.async outside a kernel");
    check_shared(dst, 16, "cp.async destination");
    if ((uintptr_t)dst % 16 || (uintptr_t)src % 16)
        fail("cp.async with a misaligned address (dst %p, src %p): 16-byte copies need 16-byte alignment", dst, src);
    if (src_size < 0 || src_size > 16) fail("cp.async with src-size %d (0..16)", src_size);
    // The source must be a valid global address even when nothing is read from it.
    check_global(src, (size_t)src_size, "cp.async source");
    // The copy lands at some point between now and the wait_group that covers it: either extreme,
    // by the scheduler's random generator (reading it before the wait, or overwriting a buffer
    // other threads still read, then shows).
    if (early_landing()) land({dst, src, src_size});
    else cur->open.push_back({dst, src, src_size});
}

void cp_async_commit() {
    if (!cur) fail("cp.async.commit_group outside a kernel");
    cur->groups.push_back(std::move(cur->open));
    cur->open.clear();
}

void cp_async_wait(int n) {
    if (!cur) fail("cp.async.wait_group outside a kernel");
    while ((int)cur->groups.size() > n) {
        for (const Copy& c : cur->groups.front()) land(c);
        cur->groups.pop_front();
    }
}

void cp_async_drain(Thread& t) {
    for (const auto& g : t.groups)
        for (const Copy& c : g) land(c);
    for (const Copy& c : t.open) land(c);
    t.groups.clear();
    t.open.clear();
}

void ldmatrix_x4(uint32_t (&r)[4], const void* row, bool trans) {
    if (!cur) fail("ldmatrix outside a kernel");
    check_shared(row, 16, trans ? "ldmatrix.trans row address" : "ldmatrix row address");
    if ((uintptr_t)row % 16) fail("ldmatrix row address %p is not 16-byte aligned", row);
    LaneArgs a{};
    a.p = row, a.out = r;
    warp_op(Op::ldmatrix, ~0u, trans, a, complete_ldmatrix, __FILE__, __LINE__);
}

void mma_m16n8k16_bf16(float (&d)[4], const uint32_t (&a)[4], uint32_t b0, uint32_t b1) {
    if (!cur) fail("mma outside a kernel");
    LaneArgs x{};
    x.out = d;
    for (int i = 0; i < 4; i++) x.u[i] = a[i];
    x.u[4] = b0, x.u[5] = b1;
    warp_op(Op::mma, ~0u, 0, x, complete_mma, __FILE__, __LINE__);
}

}  // namespace emu
