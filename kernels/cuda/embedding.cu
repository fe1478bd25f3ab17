// Token embedding: the forward is a row gather, the backward a scatter-add into the FP32 table
// gradient (through a sort of the positions by id), both times `scale` (Gemma's sqrt(dim); 1 for the
// others); and NEFTune's training noise on the gathered rows.
#include "kernels/cuda/common.cuh"
#include "kernels/cuda/packed.cuh"

namespace cuda {

// out[n, :] = table[tokens[n], :] · scale, rounded once to BF16 (as the CPU's FP32 product then the
// storage type). One thread per 8 elements of a row, the N rows' chunks numbered one after another
// on a 1-D grid (a grid's y is at most 65,535: a batch of 16 × 4096 tokens is more).
__global__ void embedding_scaled_kernel(bf16* out, const int32_t* tokens, const bf16* table, int N, int C,
                                        float scale, bool vec) {
    const size_t chunks = (C + 7) / 8, t = (size_t)blockIdx.x * blockDim.x + threadIdx.x;
    if (t >= (size_t)N * chunks) return;
    const size_t n = t / chunks;
    const int i = 8 * (int)(t % chunks);
    float v[8];
    load8(v, table + (size_t)tokens[n] * C, i, C, vec);
    #pragma unroll
    for (int k = 0; k < 8; k++) v[k] *= scale;
    store8(out + (size_t)n * C, v, i, C, vec);
}

// scale 1: exactly gather_rows (kernels/cuda/cast.cu), a copy of raw bits.
void embedding_forward(bf16* out, const int32_t* tokens, const bf16* table, int N, int C, float scale) {
    if (scale == 1.0f) return gather_rows(out, table, tokens, N, C);
    if (N <= 0 || C <= 0) return;
    const int threads = 128;
    const bool vec = C % 8 == 0 && aligned16(out) && aligned16(table);
    embedding_scaled_kernel<<<ceil_div((size_t)N * ((C + 7) / 8), threads), threads>>>(out, tokens, table, N, C, scale,
                                                                                       vec);
    CUDA_LAUNCH_CHECK();
}

// ---- backward: dtable[tokens[n], :] += dout[n, :] · scale for n = 0..N-1 ----
//
// A token id can repeat within the batch, and the rows of a repeated id must add up without
// floating-point atomics (their order, and so the bits, would change from run to run). One thread per
// column walking all N tokens in order is deterministic, but has only C/8 independent chains (at
// C 4096, two warps an SM; 1.8 ms for 8192 tokens on an H200, 5–10× PyTorch). So:
//   1. sort the positions by token id (a stable LSD radix sort, three passes of 8 bits: ids < 2^24,
//      kMaxTokenIds): equal ids become runs of the sorted order, each run in position order;
//   2. cut the sorted order into tiles of kEmbTile positions, a run into pieces at the tile edges; a
//      warp per piece, a lane per 8 columns, sums the piece's dout rows in order (embedding_accumulate);
//   3. a run that crosses tile edges (an id more than kEmbTile times, or one that straddles an edge)
//      gets its pieces' partial sums added in tile order (embedding_combine).
// A run within one tile adds into dtable as the CPU's loop does (dtable + d_first + ... + d_last, in
// position order: the same bits at scale 1; with Gemma's scale nvcc may fuse the product into the
// add, the CPU build does not); a run across tiles is summed piece by piece, in a fixed order.
// Deterministic either way, with tiles × column slices of parallel work, and no walk over more than
// a tile's rows whatever the batch (a padding token repeated 60,000 times included: the combine then
// adds one partial a tile, 235 of them).
constexpr int kEmbTile = 256;      // positions a tile: the sort's tile and the accumulation's
constexpr int kEmbCols = 256;      // columns a block slice: 32 lanes × 8
constexpr int kScanThreads = 1024;

// Radix pass, part 1: the tile's count of each 8-bit digit, stored digit-major (hist[d·tiles + t]),
// so that the exclusive scan of the whole array gives each (digit, tile) its first output slot, in
// digit order then tile order (which makes the pass stable). Thread d counts digit d among the
// tile's 256 (no atomics: integer counts would be exact, but the emulator has none).
__global__ void radix_histogram_kernel(int* hist, const int32_t* keys, int N, int shift, int tiles) {
    __shared__ int digit[kEmbTile];
    const int i = blockIdx.x * kEmbTile + threadIdx.x;
    digit[threadIdx.x] = i < N ? (int)(((uint32_t)keys[i] >> shift) & 255) : -1;
    __syncthreads();
    int count = 0;
    for (int j = 0; j < kEmbTile; j++) count += digit[j] == (int)threadIdx.x;
    hist[threadIdx.x * tiles + blockIdx.x] = count;
}

// Part 2: exclusive prefix sum of the M = 256·tiles counts, in place, by one block: each thread sums
// a contiguous chunk, the block scans the chunk totals (warp shuffles, then the warp totals), each
// thread writes its chunk's prefixes.
__global__ void exclusive_scan_kernel(int* a, int M) {
    __shared__ int warp_total[kScanThreads / 32];
    const int per = (M + kScanThreads - 1) / kScanThreads, lo = threadIdx.x * per, hi = min(M, lo + per);
    const int lane = threadIdx.x % 32, warp = threadIdx.x / 32;
    int sum = 0;
    for (int i = lo; i < hi; i++) sum += a[i];
    int incl = sum;  // inclusive scan within the warp
    for (int o = 1; o < 32; o *= 2) {
        int v = __shfl_up_sync(0xffffffffu, incl, o);
        if (lane >= o) incl += v;
    }
    if (lane == 31) warp_total[warp] = incl;
    __syncthreads();
    int run = incl - sum;
    for (int w = 0; w < warp; w++) run += warp_total[w];
    for (int i = lo; i < hi; i++) {
        int v = a[i];
        a[i] = run;
        run += v;
    }
}

// Part 3: each key (and its value: the position, i itself on the first pass) goes to its digit's
// slot for this tile plus its rank among the tile's earlier keys of the same digit.
__global__ void radix_scatter_kernel(int32_t* keys_out, int32_t* vals_out, const int32_t* keys, const int32_t* vals,
                                     const int* offsets, int N, int shift, int tiles) {
    __shared__ int digit[kEmbTile];
    const int i = blockIdx.x * kEmbTile + threadIdx.x;
    const int32_t key = i < N ? keys[i] : 0;
    const int d = i < N ? (int)(((uint32_t)key >> shift) & 255) : -1;
    digit[threadIdx.x] = d;
    __syncthreads();
    if (i >= N) return;
    int rank = 0;
    for (int j = 0; j < (int)threadIdx.x; j++) rank += digit[j] == d;
    const int dst = offsets[d * tiles + blockIdx.x] + rank;
    keys_out[dst] = key;
    vals_out[dst] = vals ? vals[i] : i;
}

// Step 2. Block (tile, column slice); the tile's pieces start where the id changes (and at the tile's
// first position), found with ballots and numbered in order. Warp w takes pieces w, w+8, ...; its
// lane sums 8 columns of the piece's rows in position order. A piece that is a whole run (it starts
// and ends its run) starts from dtable's row and stores it back; any other piece is part of a run
// that crosses an edge of this tile and stores its sum in one of the tile's two slots: 2·tile for
// the piece that continues a run from earlier tiles (from zero), 2·tile+1 for the one that starts a
// run continuing into later tiles (from dtable's row). Only the run's first piece reads dtable.
__global__ void embedding_accumulate_kernel(float* dtable, float* slots, const bf16* dout, const int32_t* skey,
                                            const int32_t* spos, int N, int C, float scale, bool vec) {
    __shared__ int start[kEmbTile + 1], warp_heads[kEmbTile / 32], pieces;
    const int t0 = blockIdx.x * kEmbTile, len = min(kEmbTile, N - t0);
    const int j = threadIdx.x, lane = j % 32, warp = j / 32;
    const bool head = j < len && (j == 0 || skey[t0 + j] != skey[t0 + j - 1]);
    const unsigned ballot = __ballot_sync(0xffffffffu, head);
    if (lane == 0) warp_heads[warp] = __popc(ballot);
    __syncthreads();
    int before = __popc(ballot & ((1u << lane) - 1u));
    for (int w = 0; w < warp; w++) before += warp_heads[w];
    if (head) start[before] = j;
    if (j == 0) {
        int total = 0;
        for (int w = 0; w < kEmbTile / 32; w++) total += warp_heads[w];
        start[total] = len;
        pieces = total;
    }
    __syncthreads();
    const int c = blockIdx.y * kEmbCols + 8 * lane;
    if (c >= C) return;
    for (int k = warp; k < pieces; k += kEmbTile / 32) {
        const int a = t0 + start[k], b = t0 + start[k + 1], tok = skey[a];
        const bool run_start = a == 0 || skey[a - 1] != tok, run_end = b == N || skey[b] != tok;
        float* row = dtable + (size_t)tok * C;
        float acc[8];
        if (run_start) load8(acc, row, c, C, vec);
        else
            for (float& v : acc) v = 0.0f;
        #pragma unroll 4
        for (int i = a; i < b; i++) {
            float d[8];
            load8(d, dout + (size_t)spos[i] * C, c, C, vec);
            #pragma unroll
            for (int q = 0; q < 8; q++) acc[q] += d[q] * scale;
        }
        if (run_start && run_end) store8(row, acc, c, C, vec);
        else store8(slots + (size_t)(2 * blockIdx.x + (run_start ? 1 : 0)) * C, acc, c, C, vec);
    }
}

// Step 3. Block (tile, column slice) of one warp. The tile whose last piece starts a run that goes on
// into the next tile adds the later tiles' continuing pieces in tile order and stores the row.
__global__ void embedding_combine_kernel(float* dtable, const float* slots, const int32_t* skey, int N, int C,
                                         bool vec) {
    const int tile = blockIdx.x, t0 = tile * kEmbTile, last = min(N, t0 + kEmbTile) - 1, tok = skey[last];
    if (last + 1 == N || skey[last + 1] != tok) return;  // the tile's last run ends in it
    if (t0 > 0 && skey[t0 - 1] == tok) return;           // it started in an earlier tile, which combines it
    const int c = blockIdx.y * kEmbCols + 8 * threadIdx.x;
    if (c >= C) return;
    float acc[8];
    load8(acc, slots + (size_t)(2 * tile + 1) * C, c, C, vec);
    for (int t = tile + 1;; t++) {
        float part[8];
        load8(part, slots + (size_t)(2 * t) * C, c, C, vec);
        #pragma unroll
        for (int q = 0; q < 8; q++) acc[q] += part[q];
        const int end = min(N, (t + 1) * kEmbTile);
        if (end == N || skey[end] != tok) break;
    }
    store8(dtable + (size_t)tok * C, acc, c, C, vec);
}

void embedding_backward(float* dtable, const bf16* dout, const int32_t* tokens, int N, int C, float scale) {
    if (N <= 0 || C <= 0) return;
    const int tiles = (int)ceil_div(N, kEmbTile);
    const EmbeddingBackwardScratch layout = embedding_backward_scratch(N, C);
    char* base = (char*)cuda_scratch(Scratch::reduce, layout.bytes);
    int32_t *key_a = (int32_t*)base, *pos_a = (int32_t*)(base + layout.ids);
    int32_t *key_b = (int32_t*)(base + 2 * layout.ids), *pos_b = (int32_t*)(base + 3 * layout.ids);
    int* hist = (int*)(base + layout.hist);
    float* slots = (float*)(base + layout.slots);
    // Three passes: tokens -> a -> b -> a (the first takes positions 0..N-1 as its values).
    const int32_t* in_key = tokens;
    const int32_t* in_pos = nullptr;
    for (int pass = 0; pass < 3; pass++) {
        int32_t* out_key = pass == 1 ? key_b : key_a;
        int32_t* out_pos = pass == 1 ? pos_b : pos_a;
        radix_histogram_kernel<<<tiles, kEmbTile>>>(hist, in_key, N, 8 * pass, tiles);
        CUDA_LAUNCH_CHECK();
        exclusive_scan_kernel<<<1, kScanThreads>>>(hist, 256 * tiles);
        CUDA_LAUNCH_CHECK();
        radix_scatter_kernel<<<tiles, kEmbTile>>>(out_key, out_pos, in_key, in_pos, hist, N, 8 * pass, tiles);
        CUDA_LAUNCH_CHECK();
        in_key = out_key, in_pos = out_pos;
    }
    const bool vec = C % 8 == 0 && aligned16(dtable) && aligned16(dout) && aligned16(slots);
    const dim3 grid(tiles, ceil_div(C, kEmbCols));
    embedding_accumulate_kernel<<<grid, kEmbTile>>>(dtable, slots, dout, key_a, pos_a, N, C, scale, vec);
    CUDA_LAUNCH_CHECK();
    embedding_combine_kernel<<<grid, 32>>>(dtable, slots, key_a, N, C, vec);
    CUDA_LAUNCH_CHECK();
}

// ---- NEFTune: x[i] += magnitude · uniform_pm1(key, i) (kernels/hash.h), rounded once to BF16 ----
// One thread per 8 elements, memory-bound (a read and a write of the embeddings per micro-batch).
// The noise of element i is the CPU's, bit for bit; only the BF16 rounding of the sum differs.
__global__ void embedding_noise_kernel(bf16* x, size_t n, float magnitude, uint64_t key, bool vec) {
    const size_t i = 8 * ((size_t)blockIdx.x * blockDim.x + threadIdx.x);
    if (i >= n) return;
    float v[8];
    load8(v, x, i, n, vec);
    #pragma unroll
    for (int k = 0; k < 8; k++) v[k] += magnitude * uniform_pm1(key, i + k);
    store8(x, v, i, n, vec);
}

void embedding_noise(bf16* x, size_t n, float magnitude, uint64_t key) {
    if (n == 0) return;
    const int threads = 256;
    embedding_noise_kernel<<<ceil_div((n + 7) / 8, threads), threads>>>(x, n, magnitude, key, aligned16(x));
    CUDA_LAUNCH_CHECK();
}

}  // namespace cuda
