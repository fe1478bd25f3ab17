// The two codebooks of QLoRA storage, in one place for both backends: the CPU reference
// (kernels/cpu/nf4.cpp) and the CUDA kernels (kernels/cuda/nf4.cu, which copy them to __constant__
// memory) must quantize with the same values bit for bit. Plain C++, host code only.
#pragma once
#include <algorithm>
#include <array>
#include <cmath>
#include <cstdint>
#include <cstring>
#include <stdexcept>
#include <vector>

// bitsandbytes' NF4 codebook (DESIGN.md §9): quantiles of N(0,1) normalised to [-1, 1], with an
// exact zero. Sorted ascending.
inline constexpr float kNF4[16] = {-1.0f, -0.6961928009986877f, -0.5250730514526367f, -0.39491748809814453f,
                                   -0.28444138169288635f, -0.18477343022823334f, -0.09105003625154495f, 0.0f,
                                   0.07958029955625534f, 0.16093020141124725f, 0.24611230194568634f,
                                   0.33791524171829224f, 0.44070982933044434f, 0.5626170039176941f,
                                   0.7229568362236023f, 1.0f};

// bitsandbytes' create_dynamic_map(signed, max_exponent_bits=7, total_bits=8): for exponent e = 0..6,
// 2^e fraction values (midpoints of linspace(0.1, 1, 2^e + 1)) scaled by 10^(e-6), both signs; plus 0
// and 1. 254 + 2 = 256 distinct values, sorted. Dense near zero, sparse near ±1. Unsigned (the 8-bit
// optimizer's second moment, never negative): 2^(e+1) fraction values a exponent, positive only.
//
// linspace is torch.linspace in float: the first half counts up from start, the second half down
// from end. Its multiply-adds are written as explicit fma: GCC contracts `start + step * i` into one
// on FMA hardware (-march=native), so a plain expression would round differently depending on the
// compiler flags of each file including this header. The fma pins the values the Makefile build
// has always produced, on every build.
inline std::array<float, 256> dynamic_map_values(bool is_signed = true) {
    std::array<float, 256> d;
    int k = 0;
    for (int e = 0; e < 7; e++) {
        int steps = (1 << (is_signed ? e : e + 1)) + 1;
        float start = 0.1f, end = 1.0f, step = (end - start) / (float)(steps - 1);
        float b[129];
        for (int i = 0; i < steps; i++)
            b[i] = i < steps / 2 ? std::fma(step, (float)i, start) : std::fma(-step, (float)(steps - 1 - i), end);
        float scale = (float)std::pow(10.0, e - 6);
        for (int i = 0; i + 1 < steps; i++) {
            float mean = (b[i] + b[i + 1]) / 2.0f;
            d[k++] = scale * mean;
            if (is_signed) d[k++] = -scale * mean;
        }
    }
    d[k++] = 0.0f;
    d[k++] = 1.0f;
    std::sort(d.begin(), d.end());
    return d;
}

// The CPU's 8-bit encoder: code(x) is the map entry nearest x: the first entry >= x, or its lower
// neighbour when that is as near (ties go to the lower code, as bitsandbytes' comparison tree does);
// below the map code 0, above it 255, NaN 0. The 8-bit AdamW encodes two moments a parameter every
// step, where a binary search (8 unpredictable branches) cost ~15 ns a parameter, 15× the FP32
// update. So a table finds where to start: floats sharing their top 16 bits (a bucket of relative
// width 2^-7) have their first entry >= x at or after the first entry >= the bucket's smallest value,
// and no bucket holds more than two entries (the map's densest steps, near 1, are 0.7% apart; the
// constructor checks it), so two branch-free steps find it. The same answer as a search, for every
// float.
struct DynamicCoder {
    std::array<float, 256> map;
    std::array<float, 258> padded;  // map, then two +inf: the steps never read past it
    std::vector<uint16_t> start;    // per bucket (top 16 bits): the first entry >= its smallest value
    explicit DynamicCoder(bool is_signed) : map(dynamic_map_values(is_signed)), start(1 << 16) {
        std::copy(map.begin(), map.end(), padded.begin());
        padded[256] = padded[257] = INFINITY;
        auto first_at_least = [&](uint32_t bits) {
            float x;
            std::memcpy(&x, &bits, 4);
            return (size_t)(std::lower_bound(map.begin(), map.end(), x) - map.begin());
        };
        for (uint32_t b = 0; b < (1u << 16); b++) {
            const bool neg = b & 0x8000;  // a negative float is smaller the larger its low bits
            const size_t lo = first_at_least(b << 16 | (neg ? 0xFFFFu : 0u)), hi = first_at_least(b << 16 | (neg ? 0u : 0xFFFFu));
            if (hi > lo + 2 && (b & 0x7F80) != 0x7F80) throw std::logic_error("DynamicCoder: a bucket holds more than two codes");
            start[b] = (uint16_t)lo;
        }
    }
    uint8_t code(float x) const {
        if (x != x) return 0;
        uint32_t bits;
        std::memcpy(&bits, &x, 4);
        size_t hi = start[bits >> 16];
        hi += padded[hi] < x;
        hi += padded[hi] < x;
        if (hi == 0) return 0;
        if (hi == map.size()) return (uint8_t)(map.size() - 1);
        return (uint8_t)(x - map[hi - 1] <= map[hi] - x ? hi - 1 : hi);
    }
};
