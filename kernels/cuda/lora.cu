// The adapter path of LoRA linear layers on the GPU, for a group of G projections reading the same x
// (q, k, v; gate, up; or one); the same math as kernels/cpu/lora.cpp:
//   y_t = add_t + s · (drop_t(x) A_tᵀ) B_tᵀ,   A_t: [r, C], B_t: [OC_t, r]
// Backward with u_t = drop_t(x)A_tᵀ, du_t = s · dy_t B_t:
//   dB_t += s · dy_tᵀ u_t,   dA_t += du_tᵀ drop_t(x),   dx (+)= Σ_t drop_t'(du_t A_t)
// Every product goes through the rank-r bottleneck, so each is one memory-bound pass over an [N, C]
// or [N, OC] activation. The two through B (y_t, which the model runs before the base GEMM of the
// same output so that the compute-bound GEMM accumulates onto it; du_t and dB_t, which read dy_t)
// are cuBLASLt GEMMs (cuda::gemm). The three that touch x or dx depend on dropout:
//  - without it they are GEMMs of the group's stacked A = [A_1; ...; A_G] ([G·r, C], gathered into
//    scratch): u = x Aᵀ and dAᵀ = duᵀ x read x once for the group, dx (+)= du A writes dx once;
//  - with it each projection has its own mask on x and on du_t A_t, which a GEMM cannot fold in, so
//    they are hand-written tensor-core kernels that mask the fragments in registers (the hash of
//    kernels/hash.h: the CPU's masks, bit for bit), with no pass and no [N, C] temporary for the mask:
//      lora_down_kernel   u = [drop_1(x) A_1ᵀ | ... | drop_G(x) A_Gᵀ]   one read of x for the group
//      lora_dA_kernel     dA_t += du_tᵀ drop_t(x)                        one read of x for the group
//      lora_dx_kernel     dx (+)= Σ_t drop_t(du_t A_t)                   one write (and read) of dx
//    The scale 1/(1-p) of the kept elements multiplies the FP32 products, not x.
// Why not the kernels for both: on an H200 (2026-11-27, bench/RESULTS.md) the GEMMs ran the
// undropped products of a Llama-3.2-1B step faster (the step 102.8 ms against 107.1 ms with the
// kernels), and the kernels ran the dropped ones without the GEMM path's mask passes.
//
// The kernels' layout: the group's adapters side by side in a "stacked" column space of G·RP columns,
// projection t in columns t·RP .. t·RP + r − 1, RP = r rounded up to 16 (an mma k-step or two n-tiles),
// zeros in between. So a 16-column slice of it belongs to one projection and one dropout mask. With
// dropout du is kept in that layout ([N, G·RP], so its 16-byte chunks are aligned whatever r), without
// it packed ([N, G·r], the GEMMs' K); u, the forward's saved activation, is packed either way. The
// scratch sizes are kernels.h's (lora_du_bytes, lora_partials_bytes, lora_stacked_bytes), which the
// memory estimate counts.
#include "kernels/cuda/gemm.cuh"
#include "kernels/cuda/packed.cuh"
#include "kernels/cuda/ptx.cuh"
#include "model/util.h"

namespace {

constexpr int kMaxStack = 8;  // the widest group (LoraProj arrays of the model have at most 3)
constexpr int kNT = 128;      // 4 warps a CTA
constexpr int kB = 64;        // rows of a CTA (x's rows in down and dx, x's columns in dA): 16 a warp
constexpr int kBK = 64;       // depth of a pipeline stage (x's columns in down, x's rows in dA)
constexpr int kRC = 64;       // stacked columns a CTA computes in down and dA (8 accumulator tiles)
constexpr int kLD = 64 + 8;   // row pitch of a 64-wide shared tile: 16 bytes of padding, no bank conflicts
constexpr int kStages = 4;    // cp.async stages in down and dA: three tiles in flight while one is used
constexpr int kBC = 64;       // columns of dx a CTA writes
constexpr int kLDC = kBC + 8;
constexpr int kDxK = 64;      // stacked depth of dx's product per load: a whole group up to rank 16
constexpr int kLDK = kDxK + 8;  // 144-byte rows: ldmatrix's 8 row addresses in 8 bank groups
constexpr size_t kStreamSmem = (size_t)kStages * 2 * kB * kLD * sizeof(bf16);  // 72 KB
constexpr size_t kDxSmem = (size_t)(kB * kLDK + kDxK * kLDC) * sizeof(bf16);    // 18 KB
static_assert(kStreamSmem <= 99 * 1024, "within the shared memory every accepted GPU (sm_80+) allows a CTA");

// The group as a kernel argument (by value).
struct Group {
    const bf16* A[kMaxStack];  // A_t [r, C]
    uint64_t key[kMaxStack];   // dropout keys
    int G, r, RP;              // RP: r rounded up to 16
    uint32_t threshold;        // dropout_threshold(p), p > 0 (the kernels run only with dropout)
    float keep_scale;          // 1/(1-p)
};

Group make_group(const LoraProj<bf16>* proj, int G, int r, float p) {
    if (G > kMaxStack) fail("internal: a LoRA group of %d projections (at most %d)", G, kMaxStack);
    Group g{};
    for (int t = 0; t < G; t++) g.A[t] = proj[t].A, g.key[t] = proj[t].dropout_key;
    g.G = G, g.r = r, g.RP = lora_rp(r);
    g.threshold = p > 0.0f ? dropout_threshold(p) : 0;
    g.keep_scale = p > 0.0f ? 1.0f / (1.0f - p) : 1.0f;
    return g;
}

// True when 16-byte chunks of a row-major [*, ld] tensor from p (at column offsets that are multiples
// of 8) are 16-byte aligned: the cp.async path of load_tile.
bool vec_ok(const void* p, long long ld) { return ld % 8 == 0 && aligned16(p); }

// Fills rows < rows, columns < cols of a [ROWS][LDS] shared tile, COLS wide (the rest is not read:
// stacked columns past the group's last projection): src(i, k) is the global address of the tile's
// element (i, k), or null where the tile holds a zero (past the tensor's edge, a rank's padding).
// With vec, every 8-element chunk is 16-byte aligned and wholly inside or outside the tensor, and goes
// by cp.async; otherwise (odd widths, as in the tests) element by element through registers. `any` is
// a valid address for the zero-filling cp.async (which reads nothing).
template <int ROWS, int COLS, int LDS, class Src>
__device__ __forceinline__ void load_tile(bf16* tile, bool vec, const bf16* any, int tid, Src src, int rows = ROWS,
                                          int cols = COLS) {
    constexpr int CH = COLS / 8;
    static_assert(ROWS * CH % kNT == 0, "every thread takes the same chunks of every tile (hoistable addresses)");
    #pragma unroll
    for (int m = 0; m < ROWS * CH / kNT; m++) {
        const int i = tid + m * kNT, row = i / CH, k = (i % CH) * 8;
        if (row >= rows || k >= cols) continue;
        bf16* dst = tile + row * LDS + k;
        if (vec) {
            const bf16* p = src(row, k);
            cp_async16(dst, p ? p : any, p != nullptr);
        } else {
            for (int e = 0; e < 8; e++) {
                const bf16* p = src(row, k + e);
                dst[e] = p ? *p : __float2bfloat16(0.0f);
            }
        }
    }
}

// A thread's share of a tile that moves by a fixed stride at each pipeline stage (x's columns in
// lora_down, x's and du's rows in lora_dA), on the 16-byte path: its chunks are the same tile
// positions at every stage, chunk m at row (tid + m·kNT) / CH, column ((tid + m·kNT) % CH)·8, so
// their addresses and bounds are worked out once, not per stage. Chunk m reads src[m] + kt·step at
// stage kt while pos[m] + kt·kBK < end[m], and is zero-filled after that (end[m] = pos[m]: always);
// with end[m] < 0 it is never loaded (columns the kernel does not read).
template <int ROWS, int COLS, int LDS>
struct TileStream {
    static constexpr int CH = COLS / 8, M = ROWS * CH / kNT;
    static_assert(ROWS * CH % kNT == 0, "every thread takes the same number of chunks");
    const bf16* src[M];
    int pos[M], end[M];
    // at(row, col, src, pos, end) fills a chunk's fields for stage 0.
    template <class At>
    __device__ __forceinline__ TileStream(int tid, At&& at) {
        #pragma unroll
        for (int m = 0; m < M; m++) at((tid + m * kNT) / CH, (tid + m * kNT) % CH * 8, src[m], pos[m], end[m]);
    }
    __device__ __forceinline__ void load(bf16* tile, int kt, size_t step, const bf16* any, int tid) const {
        #pragma unroll
        for (int m = 0; m < M; m++) {
            if (end[m] < 0) continue;
            const bool in = pos[m] + kt * kBK < end[m];
            cp_async16(tile + (tid + m * kNT) / CH * LDS + (tid + m * kNT) % CH * 8, in ? src[m] + kt * step : any, in);
        }
    }
};

// dropout_keep2 of elements lo and hi (flattened indices of x) as a mask of a fragment register:
// 0xFFFF per kept BF16 half (an element of zero bits is a BF16 zero).
__device__ __forceinline__ uint32_t keep_mask(uint64_t key, uint64_t lo, uint64_t hi, uint32_t threshold) {
    bool keep_lo, keep_hi;
    dropout_keep2(key, lo, hi, threshold, keep_lo, keep_hi);
    return (keep_lo ? 0x0000FFFFu : 0u) | (keep_hi ? 0xFFFF0000u : 0u);
}

// keep_mask of a transposed fragment's register: x[r][c] and x[r + 1][c], flattened indices i and
// i + C, with C even, where lane ^ 4 holds the same rows of column c ^ 1 (lora_dA's fragments). The
// pairs (2j, 2j + 1) are then a row's columns (c, c + 1), c even, split across the two lanes, so each
// lane hashes one pair for both: the lane of the even column row r's, its partner row r + 1's, and
// they swap hashes (one hash a register instead of two). Every lane of the warp must call it.
__device__ __forceinline__ uint32_t keep_mask_rows(uint64_t key, size_t i, size_t C, uint32_t threshold,
                                                   bool even_col) {
    const uint32_t mine = dropout_hash(key, (even_col ? i : i + C) >> 1);
    const uint32_t other = __shfl_xor_sync(0xffffffffu, mine, 4);
    const uint32_t lo = even_col ? dropout_bits_even(mine) : dropout_bits_odd(other);
    const uint32_t hi = even_col ? dropout_bits_even(other) : dropout_bits_odd(mine);
    return (lo >= threshold ? 0x0000FFFFu : 0u) | (hi >= threshold ? 0xFFFF0000u : 0u);
}

// Σ_z p[z·stride], z = 0 .. parts − 1 in order: the second pass of a sum cut into parts (deterministic).
__device__ __forceinline__ float sum_parts(const float* p, int parts, size_t stride) {
    float s = 0.0f;
    for (int z = 0; z < parts; z++) s += p[z * stride];
    return s;
}

// The cp.async pipeline of lora_down and lora_dA over nk tiles, kStages − 1 in flight while one is
// used: load(kt) issues tile kt's copies into stage kt % kStages, use(kt) reads them.
template <class Load, class Use>
__device__ __forceinline__ void stream_tiles(int nk, Load&& load, Use&& use) {
    #pragma unroll
    for (int kt = 0; kt < kStages - 1; kt++) {
        if (kt < nk) load(kt);
        cp_async_commit();
    }
    for (int kt = 0; kt < nk; kt++) {
        cp_async_wait<kStages - 2>();
        __syncthreads();  // tile kt is in; every warp is done with tile kt - 1, whose stage the next load refills
        if (kt + kStages - 1 < nk) load(kt + kStages - 1);
        cp_async_commit();
        use(kt);
    }
}

// One 16-deep k-step of a warp: acc += drop_t(X)·S over the CTA's ncols stacked columns from s0, two
// n-tiles (one 16-column slice, one projection t) at a time; b_frag(np, bf) loads slice np's B
// fragments. xf is X's A fragment, elements of x; the lane's first element is x's flattened element
// i0, registers 1 and 2 start d1 and d2 further on (row-major X: d1 = 8 rows, d2 = 8 columns; X = a
// transposed tile: d1 = 8 columns, d2 = 8 rows), and mask(key, i) is the keep mask of the register
// that starts at i. Each projection masks the fragment with its key once.
template <class Mask, class BFrag>
__device__ __forceinline__ void mma_stacked(float (&acc)[kRC / 8][4], const uint32_t (&xf)[4], const Group& g, int s0,
                                            int ncols, size_t i0, size_t d1, size_t d2, Mask&& mask, BFrag&& b_frag) {
    uint32_t af[4];
    int masked_for = -1;
    #pragma unroll
    for (int np = 0; np < kRC / 16; np++) {
        if (np * 16 >= ncols) break;
        const int t = (s0 + np * 16) / g.RP;
        if (t != masked_for) {
            const uint64_t key = g.key[t];
            af[0] = xf[0] & mask(key, i0);
            af[1] = xf[1] & mask(key, i0 + d1);
            af[2] = xf[2] & mask(key, i0 + d2);
            af[3] = xf[3] & mask(key, i0 + d1 + d2);
            masked_for = t;
        }
        uint32_t bf[4];
        b_frag(np, bf);
        mma_bf16(acc[2 * np], af, bf[0], bf[1]);
        mma_bf16(acc[2 * np + 1], af, bf[2], bf[3]);
    }
}

// ---- u = [drop_1(x) A_1ᵀ | ... ], ldu = G·r ----
// A CTA takes 64 rows of x (16 a warp, the mma's A operand) and 64 stacked columns (the A_t rows as
// the B operand, read like K in Q·Kᵀ), and streams x's columns through kStages cp.async stages of
// 64. Each 16-column k-step loads x's fragment once; each projection in the CTA's columns masks it
// with its own key (4 hashes a lane: a register holds a pair) before its two n-tile pairs. Grid: x = the blocks of 64 stacked
// columns (fastest, so that the CTAs reading the same rows of x run together and share them in L2),
// y = blocks of 64 rows, z = parts of C (lora_u_parts: enough CTAs for three an SM, lora_ctas).
// With one part the CTA writes u; with several, FP32 partial sums part[z][n][t·r + j] that
// lora_u_reduce_kernel adds.
template <bool VEC>
__device__ __forceinline__ void lora_down_body(unsigned char* smem, bf16* u, float* part, const bf16* x,
                                               const Group& g, int N, int C, int part_len) {
    bf16* sx = reinterpret_cast<bf16*>(smem);  // [kStages][kB][kLD]: rows n0.., columns k0..
    bf16* sa = sx + kStages * kB * kLD;         // [kStages][kRC][kLD]: stacked rows s0.., columns k0..
    const int tid = threadIdx.x, warp = tid >> 5, lane = tid & 31, gq = lane >> 2, cq = lane & 3;
    const int s0 = blockIdx.x * kRC, n0 = blockIdx.y * kB, z = blockIdx.z;
    const int c_begin = z * part_len, c_end = min(C, c_begin + part_len), nk = (c_end - c_begin + kBK - 1) / kBK;
    const int ncols = min(kRC, g.G * g.RP - s0);  // a multiple of 16
    const TileStream<kB, kBK, kLD> x_chunks(tid, [&](int i, int k, const bf16*& p, int& pos, int& end) {
        p = x + (size_t)(n0 + i) * C + c_begin + k, pos = c_begin + k, end = n0 + i < N ? c_end : pos;
    });
    const TileStream<kRC, kBK, kLD> a_chunks(tid, [&](int i, int k, const bf16*& p, int& pos, int& end) {
        const int s = s0 + i, t = min(s / g.RP, g.G - 1), j = s % g.RP;
        p = g.A[t] + (size_t)j * C + c_begin + k, pos = c_begin + k, end = i >= ncols ? -1 : j < g.r ? c_end : pos;
    });
    auto load = [&](int kt) {
        const int st = kt % kStages, k0 = c_begin + kt * kBK;
        if constexpr (VEC) {
            x_chunks.load(sx + st * kB * kLD, kt, kBK, x, tid);
            a_chunks.load(sa + st * kRC * kLD, kt, kBK, x, tid);
        } else {
            load_tile<kB, kBK, kLD>(sx + st * kB * kLD, false, x, tid, [&](int i, int k) -> const bf16* {
                return n0 + i < N && k0 + k < c_end ? x + (size_t)(n0 + i) * C + k0 + k : nullptr;
            });
            load_tile<kRC, kBK, kLD>(sa + st * kRC * kLD, false, x, tid, [&](int i, int k) -> const bf16* {
                const int s = s0 + i, t = s / g.RP, j = s % g.RP;
                return j < g.r && k0 + k < c_end ? g.A[t] + (size_t)j * C + k0 + k : nullptr;
            }, ncols);
        }
    };
    float acc[kRC / 8][4] = {};
    // Flattened index in x of the lane's first fragment element, row gq and column 2·cq of k-step 0.
    const size_t row_base = (size_t)(n0 + warp * 16 + gq) * C + c_begin + 2 * cq;
    // A register holds x[n][c], x[n][c + 1]: elements i and i + 1 (one pair when i is even).
    auto row_pair = [&](uint64_t key, size_t i) { return keep_mask(key, i, i + 1, g.threshold); };
    stream_tiles(nk, load, [&](int kt) {
        const bf16* tx = sx + (kt % kStages) * kB * kLD + warp * 16 * kLD;
        const bf16* ta = sa + (kt % kStages) * kRC * kLD;
        #pragma unroll
        for (int kk = 0; kk < kBK / 16; kk++) {
            uint32_t xf[4];
            ldmatrix_x4(xf, tx + (lane & 15) * kLD + kk * 16 + (lane >> 4) * 8);
            mma_stacked(acc, xf, g, s0, ncols, row_base + kt * kBK + kk * 16, (size_t)8 * C, 8, row_pair,
                        [&](int np, uint32_t (&bf)[4]) {
                ldmatrix_x4(bf, ta + (np * 16 + (lane & 7) + (lane >> 4) * 8) * kLD + kk * 16 + ((lane >> 3) & 1) * 8);
            });
        }
    });
    const int ldu = g.G * g.r;
    #pragma unroll
    for (int nt = 0; nt < kRC / 8; nt++)
        #pragma unroll
        for (int e = 0; e < 4; e++) {
            const int n = n0 + warp * 16 + gq + (e >> 1) * 8, s = s0 + nt * 8 + 2 * cq + (e & 1);
            const int t = s / g.RP, j = s % g.RP;
            if (n >= N || t >= g.G || j >= g.r) continue;
            const size_t at = (size_t)n * ldu + t * g.r + j;
            if (part) part[(size_t)z * N * ldu + at] = acc[nt][e] * g.keep_scale;
            else u[at] = __float2bfloat16(acc[nt][e] * g.keep_scale);
        }
}
// vec: x and every A_t take the 16-byte path (TileStream); otherwise element by element. part: null
// with one part of C.
__global__ void __launch_bounds__(kNT) lora_down_kernel(bf16* u, float* part, const bf16* x, Group g, int N, int C,
                                                        int part_len, bool vec) {
    extern __shared__ __align__(16) unsigned char lora_smem[];
    if (vec) lora_down_body<true>(lora_smem, u, part, x, g, N, C, part_len);
    else lora_down_body<false>(lora_smem, u, part, x, g, N, C, part_len);
}

// u[i] = Σ_z part[z][i], the parts in order (deterministic).
__global__ void lora_u_reduce_kernel(bf16* u, const float* part, int parts, size_t n) {
    const size_t i = (size_t)blockIdx.x * blockDim.x + threadIdx.x;
    if (i < n) u[i] = __float2bfloat16(sum_parts(part + i, parts, n));
}

// ---- dA partials: part[z][t·r + j][c] = Σ over stripe z's rows n of du[n, t·RP + j] · drop_t(x)[n, c] ----
// The product dAᵀ = drop(x)ᵀ·du: a CTA takes 64 columns of x (16 a warp, the A operand read
// transposed from [row][column] tiles) and 64 stacked columns of du (the B operand, read transposed
// like V in P·V), and streams its stripe's rows through kStages stages of 64. Grid: x = the blocks of
// stacked columns (fastest: CTAs reading the same x run together), y = blocks of 64 columns of x,
// z = stripes. du's padding columns (j ≥ r) hold whatever the scratch held: they only reach output
// columns that are not written.
template <bool VEC>
__device__ __forceinline__ void lora_dA_body(unsigned char* smem, float* part, const bf16* x, const bf16* du,
                                             const Group& g, int N, int C, int stripe_rows) {
    bf16* sx = reinterpret_cast<bf16*>(smem);  // [kStages][kBK][kLD]: rows nb.., columns c0..
    bf16* sd = sx + kStages * kBK * kLD;        // [kStages][kBK][kLD]: rows nb.., stacked columns s0..
    const int tid = threadIdx.x, warp = tid >> 5, lane = tid & 31, gq = lane >> 2, cq = lane & 3;
    const int s0 = blockIdx.x * kRC, c0 = blockIdx.y * kB, z = blockIdx.z;
    const int r_begin = z * stripe_rows, r_end = min(N, r_begin + stripe_rows);
    const int nk = (r_end - r_begin + kBK - 1) / kBK, ldd = g.G * g.RP, ldu = g.G * g.r;
    const int ncols = min(kRC, g.G * g.RP - s0);
    const TileStream<kBK, kB, kLD> x_chunks(tid, [&](int i, int k, const bf16*& p, int& pos, int& end) {
        p = x + (size_t)(r_begin + i) * C + c0 + k, pos = r_begin + i, end = c0 + k < C ? r_end : pos;
    });
    const TileStream<kBK, kRC, kLD> du_chunks(tid, [&](int i, int k, const bf16*& p, int& pos, int& end) {
        p = du + (size_t)(r_begin + i) * ldd + s0 + k, pos = r_begin + i, end = k >= ncols ? -1 : (s0 + k) % g.RP < g.r ? r_end : pos;
    });
    auto load = [&](int kt) {
        const int st = kt % kStages, nb = r_begin + kt * kBK;
        if constexpr (VEC) {
            x_chunks.load(sx + st * kBK * kLD, kt, (size_t)kBK * C, x, tid);
            du_chunks.load(sd + st * kBK * kLD, kt, (size_t)kBK * ldd, du, tid);
        } else {
            load_tile<kBK, kB, kLD>(sx + st * kBK * kLD, false, x, tid, [&](int i, int k) -> const bf16* {
                return nb + i < r_end && c0 + k < C ? x + (size_t)(nb + i) * C + c0 + k : nullptr;
            });
            load_tile<kBK, kRC, kLD>(sd + st * kBK * kLD, false, du, tid, [&](int i, int k) -> const bf16* {
                return nb + i < r_end && (s0 + k) % g.RP < g.r ? du + (size_t)(nb + i) * ldd + s0 + k : nullptr;
            }, kBK, ncols);
        }
    };
    float acc[kRC / 8][4] = {};
    // Flattened index in x of the lane's first fragment element: row 2·cq of the k-step, column gq
    // of the warp's 16.
    const size_t col_base = (size_t)2 * cq * C + c0 + warp * 16 + gq;
    // A register holds x[n][c], x[n + 1][c]: elements i and i + C. On the 16-byte path C is even and
    // the lane's column c has gq's parity (c0 and the warp's 16 are even), so lane ^ 4 holds column
    // c ^ 1 and the two share their hashes (keep_mask_rows); otherwise each element hashes alone.
    auto column = [&](uint64_t key, size_t i) {
        return VEC ? keep_mask_rows(key, i, C, g.threshold, (gq & 1) == 0) : keep_mask(key, i, i + C, g.threshold);
    };
    stream_tiles(nk, load, [&](int kt) {
        const bf16* tx = sx + (kt % kStages) * kBK * kLD + warp * 16;
        const bf16* td = sd + (kt % kStages) * kBK * kLD;
        #pragma unroll
        for (int kk = 0; kk < kBK / 16; kk++) {
            uint32_t xf[4];
            ldmatrix_x4_trans(xf, tx + (kk * 16 + (lane & 7) + ((lane >> 4) & 1) * 8) * kLD + ((lane >> 3) & 1) * 8);
            mma_stacked(acc, xf, g, s0, ncols, col_base + (size_t)(r_begin + kt * kBK + kk * 16) * C, 8,
                        (size_t)8 * C, column, [&](int np, uint32_t (&bf)[4]) {
                ldmatrix_x4_trans(bf, td + (kk * 16 + (lane & 15)) * kLD + np * 16 + (lane >> 4) * 8);
            });
        }
    });
    float* p = part + (size_t)z * ldu * C;
    #pragma unroll
    for (int nt = 0; nt < kRC / 8; nt++)
        #pragma unroll
        for (int e = 0; e < 4; e++) {  // the accumulator is dAᵀ: row = x's column, column = stacked
            const int c = c0 + warp * 16 + gq + (e >> 1) * 8, s = s0 + nt * 8 + 2 * cq + (e & 1);
            const int t = s / g.RP, j = s % g.RP;
            if (c < C && t < g.G && j < g.r) p[(size_t)(t * g.r + j) * C + c] = acc[nt][e] * g.keep_scale;
        }
}
// vec: x and du take the 16-byte path (TileStream); otherwise element by element.
__global__ void __launch_bounds__(kNT) lora_dA_kernel(float* part, const bf16* x, const bf16* du, Group g, int N, int C,
                                                      int stripe_rows, bool vec) {
    extern __shared__ __align__(16) unsigned char lora_smem[];
    if (vec) lora_dA_body<true>(lora_smem, part, x, du, g, N, C, stripe_rows);
    else lora_dA_body<false>(lora_smem, part, x, du, g, N, C, stripe_rows);
}

// The G pointers dA_t as a kernel argument.
struct Grads {
    float* p[kMaxStack];
};

// dA_t[i] += Σ_z part[z][t·r·C + i], the stripes in order (deterministic). Grid y = t.
__global__ void lora_dA_reduce_kernel(Grads dA, const float* part, int stripes, size_t per_proj, size_t per_stripe) {
    const size_t i = (size_t)blockIdx.x * blockDim.x + threadIdx.x;
    if (i >= per_proj) return;
    dA.p[blockIdx.y][i] += sum_parts(part + blockIdx.y * per_proj + i, stripes, per_stripe);
}

// ---- dx (+)= Σ_t drop_t(du_t A_t) ----
// A CTA writes a 64 × 64 block of dx (a warp 16 rows × 64 columns: 8 accumulator tiles). It loads
// du's [64 rows][kDxK stacked columns] (the A operand) and the stacked A rows [kDxK][64] (the B
// operand, read transposed) in one round trip: the whole group at once up to rank 16 (G·RP ≤ 64),
// since a load per 16-deep k-step, each waited for, left the SM idle most of the time. Each
// projection's product is formed in FP32 on its own (prod), masked with t's key and then added to
// the sum (the masks differ, so the products cannot share an accumulator): two accumulator sets,
// which at 128 columns took 217 registers (two CTAs an SM); at 64, du's small tile is read twice as
// often and the SM holds twice the CTAs. The sum starts from the old dx,
// fetched into registers first: its load overlaps the products' loads. du's padding columns are
// zero-filled here: they meet A_t's zero rows, and an uninitialized one could be a NaN.
__global__ void __launch_bounds__(kNT) lora_dx_kernel(bf16* dx, const bf16* du, Group g, int N, int C, bool accumulate,
                                                      bool du_vec, bool a_vec, bool dx_pairs) {
    extern __shared__ __align__(16) unsigned char lora_smem[];
    bf16* sd = reinterpret_cast<bf16*>(lora_smem);  // [kB][kLDK]: du rows n0.., stacked columns sb..
    bf16* sa = sd + kB * kLDK;                       // [kDxK][kLDC]: stacked rows sb.., columns c0..
    const int tid = threadIdx.x, warp = tid >> 5, lane = tid & 31, gq = lane >> 2, cq = lane & 3;
    const int n0 = blockIdx.x * kB, c0 = blockIdx.y * kBC, ldd = g.G * g.RP;
    const int row = n0 + warp * 16 + gq;  // the lane's rows: row, row + 8
    // Element e of tile nt: row + (e >> 1) * 8, column c0 + nt * 8 + 2 * cq + (e & 1).
    auto col_of = [&](int nt, int e) { return c0 + nt * 8 + 2 * cq + (e & 1); };
    auto inside = [&](int nt, int e) { return row + (e >> 1) * 8 < N && col_of(nt, e) < C; };
    auto at = [&](int nt, int e) { return (size_t)(row + (e >> 1) * 8) * C + col_of(nt, e); };
    float sum[kBC / 8][4] = {};
    if (accumulate)
        #pragma unroll
        for (int nt = 0; nt < kBC / 8; nt++)
            #pragma unroll
            for (int h = 0; h < 2; h++) {  // the pairs (e = 2h, 2h + 1): one row, two adjacent columns
                if (dx_pairs && inside(nt, 2 * h + 1)) {
                    const float2 v = __bfloat1622float2(*reinterpret_cast<const __nv_bfloat162*>(dx + at(nt, 2 * h)));
                    sum[nt][2 * h] = v.x, sum[nt][2 * h + 1] = v.y;
                } else {
                    for (int e = 2 * h; e < 2 * h + 2; e++)
                        if (inside(nt, e)) sum[nt][e] = __bfloat162float(dx[at(nt, e)]);
                }
            }
    float prod[kBC / 8][4] = {};
    // prod += du's 16 columns kk.. of the tile times A's rows kk.. (one k-step).
    auto product = [&](int kk) {
        uint32_t af[4];
        ldmatrix_x4(af, sd + (warp * 16 + (lane & 15)) * kLDK + kk + (lane >> 4) * 8);
        #pragma unroll
        for (int np = 0; np < kBC / 16; np++) {
            uint32_t bf[4];
            ldmatrix_x4_trans(bf, sa + (kk + (lane & 15)) * kLDC + np * 16 + (lane >> 4) * 8);
            mma_bf16(prod[2 * np], af, bf[0], bf[1]);
            mma_bf16(prod[2 * np + 1], af, bf[2], bf[3]);
        }
    };
    // sum += drop_t(prod), prod = 0: projection t's product, done.
    auto add_masked = [&](int t) {
        const uint64_t key = g.key[t];
        #pragma unroll
        for (int nt = 0; nt < kBC / 8; nt++)
            #pragma unroll
            for (int h = 0; h < 2; h++) {  // the pairs (e = 2h, 2h + 1): one row, two adjacent columns
                bool keep_lo, keep_hi;
                dropout_keep2(key, at(nt, 2 * h), at(nt, 2 * h + 1), g.threshold, keep_lo, keep_hi);
                sum[nt][2 * h] += keep_lo ? prod[nt][2 * h] * g.keep_scale : 0.0f;
                sum[nt][2 * h + 1] += keep_hi ? prod[nt][2 * h + 1] * g.keep_scale : 0.0f;
                prod[nt][2 * h] = prod[nt][2 * h + 1] = 0.0f;
            }
    };
    int t_prev = 0;
    for (int sb = 0; sb < ldd; sb += kDxK) {
        const int ks = min(kDxK, ldd - sb);  // a multiple of 16
        if (sb) __syncthreads();             // every warp is done with the previous tiles
        load_tile<kB, kDxK, kLDK>(sd, du_vec, du, tid, [&](int i, int k) -> const bf16* {
            const int s = sb + k;
            return n0 + i < N && s % g.RP < g.r ? du + (size_t)(n0 + i) * ldd + s : nullptr;
        }, kB, ks);
        load_tile<kDxK, kBC, kLDC>(sa, a_vec, du, tid, [&](int i, int k) -> const bf16* {
            const int s = sb + i, t = s / g.RP, j = s % g.RP;
            return j < g.r && c0 + k < C ? g.A[t] + (size_t)j * C + c0 + k : nullptr;
        }, ks);
        cp_async_commit();
        cp_async_wait<0>();
        __syncthreads();
        for (int kk = 0; kk < ks; kk += 16) {
            const int t = (sb + kk) / g.RP;
            if (t != t_prev) add_masked(t_prev), t_prev = t;
            product(kk);
        }
    }
    add_masked(t_prev);
    #pragma unroll
    for (int nt = 0; nt < kBC / 8; nt++)
        #pragma unroll
        for (int h = 0; h < 2; h++) {  // the pairs (e = 2h, 2h + 1): one row, two adjacent columns
            const float lo = sum[nt][2 * h], hi = sum[nt][2 * h + 1];
            if (dx_pairs && inside(nt, 2 * h + 1)) {
                *reinterpret_cast<uint32_t*>(dx + at(nt, 2 * h)) = pack_bf16(lo, hi);
            } else {
                if (inside(nt, 2 * h)) dx[at(nt, 2 * h)] = __float2bfloat16(lo);
                if (inside(nt, 2 * h + 1)) dx[at(nt, 2 * h + 1)] = __float2bfloat16(hi);
            }
        }
}

void lora_down(bf16* u, const bf16* x, const Group& g, int N, int C) {
    static const bool smem_ok = [] {  // once: allow more than 48 KB of shared memory
        CUDA_CHECK(cudaFuncSetAttribute(lora_down_kernel, cudaFuncAttributeMaxDynamicSharedMemorySize, (int)kStreamSmem));
        return true;
    }();
    (void)smem_ok;
    bool vec = vec_ok(x, C);
    for (int t = 0; t < g.G; t++) vec = vec && vec_ok(g.A[t], C);
    const LoraSplit parts = lora_u_parts(N, C, g.G, g.r);
    float* part = parts.count > 1 ? (float*)cuda_scratch(Scratch::lora_partials, lora_partials_bytes(N, C, g.G, g.r))
                                  : nullptr;
    dim3 grid(ceil_div(g.G * g.RP, kRC), ceil_div(N, kB), parts.count);
    lora_down_kernel<<<grid, kNT, kStreamSmem>>>(u, part, x, g, N, C, parts.len, vec);
    CUDA_LAUNCH_CHECK();
    if (!part) return;
    const size_t n = (size_t)N * g.G * g.r;
    lora_u_reduce_kernel<<<ceil_div(n, 256), 256>>>(u, part, parts.count, n);
    CUDA_LAUNCH_CHECK();
}

// dA_t += Σ_z part[z][t·r·C + i] for the group's FP32 gradients, the parts in order.
void add_dA_parts(const LoraProj<bf16>* proj, const Group& g, const float* part, int parts, int C) {
    Grads dA{};
    for (int t = 0; t < g.G; t++) dA.p[t] = proj[t].dA;
    const size_t per_proj = (size_t)g.r * C;
    lora_dA_reduce_kernel<<<dim3(ceil_div(per_proj, 256), g.G), 256>>>(dA, part, parts, per_proj, per_proj * g.G);
    CUDA_LAUNCH_CHECK();
}

void lora_dA(const LoraProj<bf16>* proj, const Group& g, const bf16* du, const bf16* x, int N, int C) {
    static const bool smem_ok = [] {  // once: allow more than 48 KB of shared memory
        CUDA_CHECK(cudaFuncSetAttribute(lora_dA_kernel, cudaFuncAttributeMaxDynamicSharedMemorySize, (int)kStreamSmem));
        return true;
    }();
    (void)smem_ok;
    const LoraSplit st = lora_dA_stripes(N, C, g.G, g.r);
    float* part = (float*)cuda_scratch(Scratch::lora_partials, lora_partials_bytes(N, C, g.G, g.r));
    const bool vec = vec_ok(x, C) && vec_ok(du, g.G * g.RP);
    dim3 grid(ceil_div(g.G * g.RP, kRC), ceil_div(C, kB), st.count);
    lora_dA_kernel<<<grid, kNT, kStreamSmem>>>(part, x, du, g, N, C, st.len, vec);
    CUDA_LAUNCH_CHECK();
    add_dA_parts(proj, g, part, st.count, C);
}

// du_vec needs r % 8 == 0 here (lora_dA's does not): a 16-byte chunk of du must not carry padding
// columns into this product.
void lora_dx(bf16* dx, const bf16* du, const Group& g, int N, int C, bool accumulate) {
    static_assert(kDxSmem <= 48 * 1024, "lora_dx_kernel needs no shared-memory opt-in");
    bool a_vec = C % 8 == 0;
    for (int t = 0; t < g.G; t++) a_vec = a_vec && vec_ok(g.A[t], C);
    const bool dx_pairs = C % 2 == 0 && (uintptr_t)dx % 4 == 0;
    dim3 grid(ceil_div(N, kB), ceil_div(C, kBC));
    const bool du_vec = vec_ok(du, g.G * g.RP) && g.r % 8 == 0;
    lora_dx_kernel<<<grid, kNT, kDxSmem>>>(dx, du, g, N, C, accumulate, du_vec, a_vec, dx_pairs);
    CUDA_LAUNCH_CHECK();
}

// ---- without dropout: the stacked GEMMs ----
// dst[t·n + i] = A_t[i]: the group's A stacked, [G·r, C]. Grid y = t.
__global__ void stack_A_kernel(bf16* dst, Group g, size_t n) {
    const size_t i = (size_t)blockIdx.x * blockDim.x + threadIdx.x;
    if (i < n) dst[blockIdx.y * n + i] = g.A[blockIdx.y][i];
}

// A = [A_1; ...; A_G] in the lora_stacked scratch, or A_1 itself for a group of one.
const bf16* stacked_A(const Group& g, int C) {
    if (g.G == 1) return g.A[0];
    const size_t n = (size_t)g.r * C;
    bf16* a = (bf16*)cuda_scratch(Scratch::lora_stacked, lora_stacked_bytes(g.G, g.r, C));
    stack_A_kernel<<<dim3(ceil_div(n, 256), g.G), 256>>>(a, g, n);
    CUDA_LAUNCH_CHECK();
    return a;
}

// dA_t += du_tᵀ x for the group in one pass over x: the stacked product duᵀ x ([G·r, C], FP32) into
// the lora_partials scratch, added to each gradient as one part (add_dA_parts); a group of one
// accumulates straight into its gradient.
void stacked_dA(const LoraProj<bf16>* proj, const Group& g, const bf16* du, const bf16* x, int N, int C) {
    const int K = g.G * g.r;
    if (g.G == 1) return cuda::gemm(true, false, g.r, C, N, 1.0f, du, K, x, C, 1.0f, proj[0].dA, C);
    float* part = (float*)cuda_scratch(Scratch::lora_partials, lora_partials_bytes(N, C, g.G, g.r));
    cuda::gemm(true, false, K, C, N, 1.0f, du, K, x, C, 0.0f, part, C);
    add_dA_parts(proj, g, part, 1, C);
}

}  // namespace

namespace cuda {

void lora_forward(const LoraProj<bf16>* proj, int G, bf16* u, const bf16* x, int N, int C, int r, float scale,
                  float p) {
    if (N <= 0) return;
    const Group g = make_group(proj, G, r, p);
    const int ldu = G * r;
    if (g.threshold) lora_down(u, x, g, N, C);  // u = [drop_1(x) A_1ᵀ | ... ]
    else gemm(false, true, N, ldu, C, 1.0f, x, C, stacked_A(g, C), C, 0.0f, u, ldu);  // u = x Aᵀ
    for (int t = 0; t < G; t++) {  // y_t = add_t + s · u_t B_tᵀ
        const LoraProj<bf16>& a = proj[t];
        gemm(false, true, N, a.OC, r, scale, u + t * r, ldu, a.B, r, a.add ? 1.0f : 0.0f, a.y, a.OC, a.add);
    }
}

void lora_backward(const LoraProj<bf16>* proj, int G, bf16* dx, const bf16* x, const bf16* u, int N, int C, int r,
                   float scale, float p, bool accumulate) {
    if (N <= 0) return;
    const Group g = make_group(proj, G, r, p);
    // du_t at column t·RP of [N, G·RP] for the kernels, t·r of [N, G·r] for the GEMMs.
    const int ldu = G * r, pitch = g.threshold ? g.RP : r, ldd = G * pitch;
    bf16* du = (bf16*)cuda_scratch(Scratch::lora_du, lora_du_bytes(N, G, r));
    for (int t = 0; t < G; t++) {
        const LoraProj<bf16>& a = proj[t];
        gemm(true, false, a.OC, r, N, scale, a.dy, a.OC, u + t * r, ldu, 1.0f, a.dB, r);        // dB_t += s · dy_tᵀ u_t
        gemm(false, false, N, r, a.OC, scale, a.dy, a.OC, a.B, r, 0.0f, du + t * pitch, ldd);  // du_t = s · dy_t B_t
    }
    if (g.threshold) {
        lora_dA(proj, g, du, x, N, C);                 // dA_t += du_tᵀ drop_t(x)
        if (dx) lora_dx(dx, du, g, N, C, accumulate);  // dx (+)= Σ_t drop_t(du_t A_t)
        return;
    }
    stacked_dA(proj, g, du, x, N, C);  // dA_t += du_tᵀ x
    if (dx) gemm(false, false, N, C, ldd, 1.0f, du, ldd, stacked_A(g, C), C, accumulate ? 1.0f : 0.0f, dx, C);  // dx (+)= du A
}

}  // namespace cuda
