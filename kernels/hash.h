// Stateless hashes of (key, index), host and device code: dropout_hash decides LoRA's dropout masks,
// so that forward, recompute and backward regenerate the same mask without storing it, on either
// backend, and NEFTune's embedding noise; hash64's raw bits drive the optional stochastic rounding of the GPU's BF16 weights.
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

// LoRA dropout keeps element `index` of the tensor masked under `key` iff u >= p, u = m / 2^16 uniform
// in [0, 1) from 16 bits m of a hash. Elements 2j and 2j + 1 share dropout_hash(key, j), its high and
// low halves: a GPU lane holding two neighbours (a fragment register, a pair of outputs) hashes once.
// The hash is what dropout costs the CUDA LoRA kernels (it runs for every element of x, once per
// projection), so it is 32-bit arithmetic, ~12 instructions: the murmur3 finaliser of j·φ mixed with
// the key. splitmix64 (hash64, two 64-bit multiplies: ~30 instructions on a GPU) made a Llama-3.2-1B
// LoRA step 15% slower on an H200 with p = 0.05 than without dropout. 16 bits put p on a grid of
// 1/65536. Tested in integers, m >= ceil(p·2^16) (exact: p·2^16 is a float times a power of two).
HOST_DEVICE inline uint32_t dropout_hash(uint64_t key, uint64_t j) {
    uint32_t z = (uint32_t)j * 0x9E3779B9u ^ (uint32_t)key;
    z ^= ((uint32_t)(key >> 32) ^ (uint32_t)(j >> 32)) * 0x7FEB352Du;  // tensors past 2^33 elements
    z ^= z >> 16;
    z *= 0x85EBCA6Bu;
    z ^= z >> 13;
    z *= 0xC2B2AE35u;
    return z ^ (z >> 16);
}
// NEFTune's noise (kernels.h, embedding_noise): element i under `key` draws u uniform in [-1, 1) on a
// grid of 2^-23, the top 24 bits of the same 32-bit hash (exact in float: k·2^-23 - 1, k < 2^24).
HOST_DEVICE inline float uniform_pm1(uint64_t key, uint64_t i) {
    return (float)(dropout_hash(key, i) >> 8) * (1.0f / 8388608.0f) - 1.0f;
}
HOST_DEVICE inline uint32_t dropout_threshold(float p) { return (uint32_t)ceil((double)p * 65536.0); }
// The 16 bits of element 2j (lo) and 2j + 1 (hi) from h = dropout_hash(key, j).
HOST_DEVICE inline uint32_t dropout_bits_even(uint32_t h) { return h >> 16; }
HOST_DEVICE inline uint32_t dropout_bits_odd(uint32_t h) { return h & 0xFFFFu; }
HOST_DEVICE inline bool dropout_keep(uint64_t key, uint64_t index, uint32_t threshold) {
    const uint32_t h = dropout_hash(key, index >> 1);
    return (index & 1 ? dropout_bits_odd(h) : dropout_bits_even(h)) >= threshold;
}
// dropout_keep of elements lo and hi: one hash when they are the two halves of one (even, odd) pair.
HOST_DEVICE inline void dropout_keep2(uint64_t key, uint64_t lo, uint64_t hi, uint32_t threshold, bool& keep_lo,
                                      bool& keep_hi) {
    if (hi == lo + 1 && !(lo & 1)) {
        const uint32_t h = dropout_hash(key, lo >> 1);
        keep_lo = dropout_bits_even(h) >= threshold, keep_hi = dropout_bits_odd(h) >= threshold;
    } else {
        keep_lo = dropout_keep(key, lo, threshold), keep_hi = dropout_keep(key, hi, threshold);
    }
}
