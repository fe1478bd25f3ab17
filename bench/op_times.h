// Where a step's time goes, op by op, on either backend: timed_ops() returns a copy of a backend's
// Ops table whose every compute op adds its wall time to a table; print_op_times() prints it, the
// largest first. On the GPU each op is bracketed by synchronize(), so its time includes its launch
// and the step no longer overlaps launches with work: the shares are what to read, not the total.
// (Nsight Compute's per-kernel times are the GPU's finer view: PROFILE_STEP in bench/run_gpu.sh.)
// Used by bench_train --op-times and bench_generate --op-times.
#pragma once
#include <algorithm>
#include <cstdio>
#include <map>
#include <string>
#include <utility>
#include <vector>

#include "kernels/kernels.h"
#include "model/util.h"

namespace op_times {

struct State {
    Ops inner;  // the backend being timed
    std::map<std::string, std::pair<double, long>> seconds_calls;
};
inline State& state() {
    static State s;
    return s;
}

// Times one call from construction to destruction, the backend's pending work finished at both ends.
struct Timer {
    const char* name;
    double t0;
    explicit Timer(const char* op) : name(op) {
        state().inner.synchronize();
        t0 = now_seconds();
    }
    ~Timer() {
        state().inner.synchronize();
        auto& e = state().seconds_calls[name];
        e.first += now_seconds() - t0;
        e.second++;
    }
};

}  // namespace op_times

// A timed copy of `inner` (one at a time: the wrappers reach it through a global, as function
// pointers cannot carry it).
inline const Ops& timed_ops(const Ops& inner) {
    static Ops timed;
    op_times::state().inner = timed = inner;
#define OP_TIMED(name)                                \
    timed.name = [](auto... a) {                      \
        op_times::Timer timer(#name);                 \
        return op_times::state().inner.name(a...);    \
    }
    OP_TIMED(matmul_forward);
    OP_TIMED(matmul_backward);
    OP_TIMED(embedding_forward);
    OP_TIMED(embedding_backward);
    OP_TIMED(embedding_noise);
    OP_TIMED(rmsnorm_forward);
    OP_TIMED(rmsnorm_backward);
    OP_TIMED(rope_forward);
    OP_TIMED(rope_backward);
    OP_TIMED(attention_forward);
    OP_TIMED(attention_backward);
    OP_TIMED(attention_decode);
    OP_TIMED(glu_forward);
    OP_TIMED(glu_backward);
    OP_TIMED(lora_forward);
    OP_TIMED(lora_backward);
    OP_TIMED(dora_norm);
    OP_TIMED(dora_forward);
    OP_TIMED(dora_backward);
    OP_TIMED(crossentropy_forward_backward);
    OP_TIMED(nf4_dequantize);
    OP_TIMED(adamw_update);
    OP_TIMED(adamw8bit_update);
    OP_TIMED(sum_squares);
    OP_TIMED(gather_rows);
    OP_TIMED(scatter_rows);
    OP_TIMED(copy);
#undef OP_TIMED
    return timed;
}

inline void reset_op_times() { op_times::state().seconds_calls.clear(); }

// The table per `per` (e.g. per step: per = the steps timed), next to `total` seconds (the same span).
inline void print_op_times(const char* per_name, double per, double total) {
    std::vector<std::pair<std::pair<double, long>, std::string>> rows;  // (seconds, calls), name
    double sum = 0;
    for (auto& [name, e] : op_times::state().seconds_calls) rows.push_back({e, name}), sum += e.first;
    std::sort(rows.rbegin(), rows.rend());
    printf("time per %s, op by op (%s):\n", per_name, op_times::state().inner.name);
    for (auto& [e, name] : rows)
        printf("  %-32s %9.2f ms  %5.1f%%  %6.0f calls\n", name.c_str(), 1e3 * e.first / per, 100 * e.first / total,
               e.second / per);
    printf("  %-32s %9.2f ms  %5.1f%%\n", "(outside the ops)", 1e3 * (total - sum) / per,
           100 * (total - sum) / total);
}
