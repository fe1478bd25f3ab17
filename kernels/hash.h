// Stateless hash of (key, index) → uniform [0,1): used for dropout masks so forward, recompute and
// backward regenerate the same mask without storing it, on either backend (host and device code).
#pragma once
#include <cstdint>

#if defined(__CUDACC__)
#define HOST_DEVICE __host__ __device__
#else
#define HOST_DEVICE
#endif

HOST_DEVICE inline float hash_uniform(uint64_t key, uint64_t index) {
    uint64_t z = key ^ (index * 0x9E3779B97F4A7C15ull);
    z = (z ^ (z >> 30)) * 0xBF58476D1CE4E5B9ull;
    z = (z ^ (z >> 27)) * 0x94D049BB133111EBull;
    z ^= z >> 31;
    return (float)((z >> 40) * (1.0 / 16777216.0));
}
