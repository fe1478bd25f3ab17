// Stateless hash of (key, index): it decides dropout masks, so that forward, recompute and backward
// regenerate the same mask without storing it, on either backend (host and device code); its raw
// bits drive the optional stochastic rounding of the GPU's BF16 weights.
#pragma once
#include <cmath>
#include <cstdint>

#if defined(__CUDACC__)
#define HOST_DEVICE __host__ __device__
#else
#define HOST_DEVICE
#endif

// 64 well-mixed bits of (key, index) (the splitmix64 finaliser).
HOST_DEVICE inline uint64_t hash64(uint64_t key, uint64_t index) {
    uint64_t z = key ^ (index * 0x9E3779B97F4A7C15ull);
    z = (z ^ (z >> 30)) * 0xBF58476D1CE4E5B9ull;
    z = (z ^ (z >> 27)) * 0x94D049BB133111EBull;
    return z ^ (z >> 31);
}

// LoRA dropout keeps element `index` of the tensor masked under `key` iff u >= p, u = m / 2^24 uniform
// in [0, 1) from 24 bits m of a hash. Elements 2j and 2j + 1 share the hash of (key, j), bits 40..63
// and 16..39: a GPU lane holding two neighbours (a fragment register, a pair of outputs) hashes once,
// and the hash (two 64-bit multiplies, ~25 instructions) is what dropout costs the CUDA LoRA kernels.
// Tested in integers, m >= ceil(p·2^24) (exact: p·2^24 is a float times a power of two), so no
// 64-bit integer becomes a float: AVX2 has no instruction for that, and the CPU's mask loop then
// stays scalar (1.8 against 0.7 ns an element on 2 cores).
HOST_DEVICE inline uint32_t dropout_threshold(float p) { return (uint32_t)ceil((double)p * 16777216.0); }
// The 24 bits of element 2j (lo) and 2j + 1 (hi) from h = hash64(key, j).
HOST_DEVICE inline uint32_t dropout_bits_even(uint64_t h) { return (uint32_t)(h >> 40); }
HOST_DEVICE inline uint32_t dropout_bits_odd(uint64_t h) { return (uint32_t)(h >> 16) & 0xFFFFFFu; }
HOST_DEVICE inline bool dropout_keep(uint64_t key, uint64_t index, uint32_t threshold) {
    const uint64_t h = hash64(key, index >> 1);
    return (index & 1 ? dropout_bits_odd(h) : dropout_bits_even(h)) >= threshold;
}
// dropout_keep of elements lo and hi: one hash when they are the two halves of one (even, odd) pair.
HOST_DEVICE inline void dropout_keep2(uint64_t key, uint64_t lo, uint64_t hi, uint32_t threshold, bool& keep_lo,
                                      bool& keep_hi) {
    if (hi == lo + 1 && !(lo & 1)) {
        const uint64_t h = hash64(key, lo >> 1);
        keep_lo = dropout_bits_even(h) >= threshold, keep_hi = dropout_bits_odd(h) >= threshold;
    } else {
        keep_lo = dropout_keep(key, lo, threshold), keep_hi = dropout_keep(key, hi, threshold);
    }
}
