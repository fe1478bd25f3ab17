// Stateless hash of (key, index) → uniform [0,1): used for dropout masks so forward, recompute and
// backward regenerate the same mask without storing it, on either backend (host and device code);
// its raw bits drive the optional stochastic rounding of the GPU's BF16 weights.
#pragma once
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

HOST_DEVICE inline float hash_uniform(uint64_t key, uint64_t index) {
    return (float)((hash64(key, index) >> 40) * (1.0 / 16777216.0));
}
