// One micro-batch as the model consumes it. Produced by the data pipeline (padding or packing),
// consumed by model forward/backward. Row-major: position t of row b is index b*T + t.
#pragma once
#include <cstddef>
#include <cstdint>
#include <vector>

struct Batch {
    int B = 0, T = 0;
    std::vector<int32_t> tokens;   // input token ids
    std::vector<int32_t> targets;  // the id to predict at each position (the next token of the same
                                   // example); any valid id where weight is 0
    std::vector<float> weights;    // loss weight of each position: 0 for padding/ignored, the prompt
                                   // loss weight for prompt tokens, 1 for response tokens (and EOS)
    std::vector<int32_t> pos;      // RoPE position ids: restart at 0 for each packed example
    std::vector<int32_t> seg;      // segment ids: a query attends only to keys of the same segment
                                   // (and not later ones). Packed examples get 0,1,2,..; padding -1

    void resize(int b, int t) {
        B = b; T = t;
        size_t n = (size_t)b * t;
        tokens.assign(n, 0); targets.assign(n, 0); weights.assign(n, 0.0f); pos.assign(n, 0); seg.assign(n, -1);
    }
    double total_weight() const {
        double s = 0;
        for (float w : weights) s += w;
        return s;
    }
};
