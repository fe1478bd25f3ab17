// How much GEMM time the cuBLASLt heuristic's first choice leaves on the table, on the GEMMs of one
// LoRA training step (rank r, batch × seq tokens, no recompute) of a preset: for every distinct
// GEMM of the step (the base projections forward and backward dX, the LM head in chunks of 1024
// rows, the thin LoRA products), the heuristic's candidates are each timed on the GPU
// (Ops::gemm_candidates). Prints, per GEMM, how often the step runs it, candidate 0's time (the
// heuristic's first choice), the best candidate's, the best of those that compute candidate 0's
// bits, and the step's GEMM total four ways, the fourth with the best of the candidates in candidate
// 0's order (its split-K count and reduction scheme). A choice by timing that changed no number
// (an exact resume needs that) would rest on those computing candidate 0's bits; the bench checks
// it on every candidate of the step ("RESULT gemm_algos rule ... N of them with other bits"). It
// held for every GEMM of a Llama-3.2-1B step on an H200 and failed at small FP32-output shapes
// (kernels/cuda/matmul.cu, same_order), so gemm() keeps candidate 0.
//
//   build/bench/bench_gemm_algos [--preset llama-3.2-1b] [--batch 4] [--seq 2048] [--rank 16]
//                                [--candidates 8] [--peak-tflops 989] [--all]
// --all: also one line per candidate of every GEMM ("CANDIDATE <gemm> | M N K | per step | #i | µs |
// same/differs | config"): the data to judge any rule for choosing among the candidates offline.
//
// Without a GPU it prints "no GPU: <why>" and exits 0 (`make bench` passes anywhere).
#include <cstdio>
#include <string>
#include <vector>

#include "kernels/kernels.h"
#include "model/config.h"
#include "model/model.h"
#include "model/util.h"
#include "tools/cli.h"

namespace {

struct StepGemm {
    std::string what;
    bool transA, transB;
    int M, N, K;
    bool fp32_out;
    float beta;
    int per_step;                // launches of this shape in one step
    int lda = 0, ldb = 0, ldc = 0;  // leading dimensions; 0: contiguous (K or M, N or K, N)
};

// The GEMMs of one LoRA step on every projection, as model/model.cpp, model/linear.cpp and
// kernels/cuda/{matmul,lora}.cu issue them without dropout (row-major C[M,N] = op(A)[M,K]·op(B)[K,N]).
// The projections that read the same x form a group whose adapters share u = x·[A_1; ...; A_G]ᵀ,
// one stacked dA and one dx = du·[A_1; ...; A_G]; the adapter writes each y first and the base GEMM
// adds to it; in the backward the adapter's dx comes first (beta 0) and the base dx's add to it.
std::vector<StepGemm> step_gemms(const ModelConfig& c, int tokens, int r) {
    const int L = c.n_layers, C = c.dim, Q = c.q_dim(), KV = c.kv_dim(), F = c.ffn_dim, V = c.vocab_size;
    struct Member {
        const char* name;
        int out, count;  // count: projections of this shape in the group
    };
    struct Group {
        const char* name;
        int in;
        bool residual;  // y = residual + ...: the adapter's y GEMM reads its output (beta 1)
        std::vector<Member> members;
    };
    const std::vector<Group> groups = {{"q,k,v", C, false, {{"q", Q, 1}, {"k,v", KV, 2}}},
                                       {"o", Q, true, {{"o", C, 1}}},
                                       {"gate,up", C, false, {{"gate,up", F, 2}}},
                                       {"down", F, true, {{"down", C, 1}}}};
    std::vector<StepGemm> g;
    for (const Group& gr : groups) {
        const std::string gn = gr.name;
        int G = 0;
        for (const Member& m : gr.members) G += m.count;
        g.push_back({gn + " lora u = x·Aᵀ", false, true, tokens, G * r, gr.in, false, 0.0f, L});
        for (const Member& m : gr.members) {
            const std::string n = m.name;
            const int k = L * m.count;
            // u_t and du_t are column slices of the group's [tokens, G·r] u and du.
            g.push_back({n + " lora y = s·u·Bᵀ", false, true, tokens, m.out, r, false, gr.residual ? 1.0f : 0.0f, k,
                         G * r, r, m.out});
            g.push_back({n + " fwd y += x·Wᵀ", false, true, tokens, m.out, gr.in, false, 1.0f, k});
            g.push_back({n + " lora dB += dyᵀ·u", true, false, m.out, r, tokens, true, 1.0f, k, m.out, G * r, r});
            g.push_back({n + " lora du = dy·B", false, false, tokens, r, m.out, false, 0.0f, k, m.out, r, G * r});
            g.push_back({n + " bwd dx += dy·W", false, false, tokens, gr.in, m.out, false, 1.0f, k});
        }
        if (G == 1) g.push_back({gn + " lora dA += duᵀ·x", true, false, r, gr.in, tokens, true, 1.0f, L});
        else g.push_back({gn + " lora dA = duᵀ·x (stacked)", true, false, G * r, gr.in, tokens, true, 0.0f, L});
        g.push_back({gn + " lora dx = du·A", false, false, tokens, gr.in, G * r, false, 0.0f, L});
    }
    const int chunk = loss_chunk(false), chunks = (tokens + chunk - 1) / chunk;
    g.push_back({"lm head logits", false, true, chunk, V, C, false, 0.0f, chunks});
    g.push_back({"lm head dx", false, false, chunk, C, V, false, 0.0f, chunks});
    return g;
}

int run(int argc, char** argv) {
    std::string preset = "llama-3.2-1b";
    int batch = 4, seq = 2048, rank = 16, candidates = 8;
    double peak_tflops = 989.0;
    bool all = false;
    Args args(argc, argv, "see the header of bench/bench_gemm_algos.cpp");
    while (args.next()) {
        if (args.is("--preset")) preset = args.value();
        else if (args.is("--batch")) batch = args.integer();
        else if (args.is("--seq")) seq = args.integer();
        else if (args.is("--rank")) rank = args.integer();
        else if (args.is("--candidates")) candidates = args.integer();
        else if (args.is("--peak-tflops")) peak_tflops = args.number();
        else if (args.is("--all")) all = true;
        else args.unknown();
    }
    const char* why = nullptr;
    const Ops* cuda = cuda_ops(&why);
    if (!cuda || !cuda->gemm_candidates) {
        printf("no GPU: %s\n", why ? why : "this backend has no GEMM candidates to time");
        return 0;
    }
    const ModelConfig cfg = config_preset(preset);
    printf("GEMMs of one LoRA step: %s, %d x %d tokens, r = %d; up to %d candidates of the cuBLASLt heuristic each, "
           "timed (µs per call, median of 5 batches of ~1 ms); %% of peak against %.0f TFLOP/s\n\n",
           preset.c_str(), batch, seq, rank, candidates, peak_tflops);
    printf("| GEMM | M x N x K | per step | candidates | same bits | same order | #0 µs | #0 TFLOP/s | best | best µs | "
           "best TFLOP/s | gain | best same-bits | its gain |\n");
    printf("|---|---|---|---|---|---|---|---|---|---|---|---|---|---|\n");
    double total_first = 0, total_best = 0, total_same = 0, total_order = 0;
    int order_not_bits = 0, order_total = 0;  // the structural rule against the bit comparison
    std::vector<GemmCandidate> cand(candidates);
    std::vector<std::string> configs;  // #0 and the best of each GEMM where they differ: what the heuristic misses
    for (const StepGemm& g : step_gemms(cfg, batch * seq, rank)) {
        const int lda = g.lda ? g.lda : g.transA ? g.M : g.K, ldb = g.ldb ? g.ldb : g.transB ? g.K : g.N;
        const int ldc = g.ldc ? g.ldc : g.N;
        int n = cuda->gemm_candidates(g.transA, g.transB, g.M, g.N, g.K, lda, ldb, ldc, g.fp32_out, g.beta, cand.data(),
                                      candidates);
        if (n == 0) {
            printf("| %s | %d x %d x %d | %d | 0 | - | - | - | - | - | - | - | - | - | - |\n", g.what.c_str(), g.M, g.N,
                   g.K, g.per_step);
            continue;
        }
        int best = 0, best_same = 0, best_order = 0, same = 0, order = 0;
        for (int i = 0; i < n; i++) {
            same += cand[i].same_bits;
            order += cand[i].same_order;
            order_not_bits += cand[i].same_order && !cand[i].same_bits;
            if (cand[i].us < cand[best].us) best = i;
            if (cand[i].same_bits && cand[i].us < cand[best_same].us) best_same = i;
            if (cand[i].same_order && cand[i].us < cand[best_order].us) best_order = i;
        }
        order_total += order;
        const double flop = 2.0 * g.M * g.N * g.K, us0 = cand[0].us, usb = cand[best].us, uss = cand[best_same].us;
        printf("| %s | %d x %d x %d | %d | %d | %d | %d | %.1f | %.0f | #%d | %.1f | %.0f | %.1f%% | #%d | %.1f%% |\n",
               g.what.c_str(), g.M, g.N, g.K, g.per_step, n, same, order, us0, flop / us0 / 1e6, best, usb,
               flop / usb / 1e6, 100.0 * (us0 - usb) / us0, best_same, 100.0 * (us0 - uss) / us0);
        total_first += g.per_step * us0;
        total_best += g.per_step * usb;
        total_same += g.per_step * uss;
        total_order += g.per_step * cand[best_order].us;
        for (int i = 0; all && i < n; i++)
            configs.push_back(strf("CANDIDATE %s | %d %d %d | %d | #%d | %.2f | %s | %s", g.what.c_str(), g.M, g.N, g.K,
                                   g.per_step, i, cand[i].us, cand[i].same_bits ? "same" : "differs", cand[i].config));
        if (best != 0 && !all)
            configs.push_back(strf("%s (%d x %d x %d): #0 %s; #%d %s", g.what.c_str(), g.M, g.N, g.K, cand[0].config, best,
                                   cand[best].config));
    }
    if (!configs.empty()) printf(all ? "\nEvery candidate:\n" : "\nWhere a later candidate was faster, what the two are:\n");
    for (const std::string& c : configs) printf("  %s\n", c.c_str());
    auto less = [&](double t) { return total_first > 0 ? 100.0 * (total_first - t) / total_first : 0.0; };
    printf("\nRESULT gemm_algos preset=%s: the step's GEMMs take %.2f ms with the heuristic's first choice, %.2f ms with "
           "the best candidate of each (%.1f%% less), %.2f ms with the best of those that give the first's bits (%.1f%% "
           "less), %.2f ms with the best of those in the first's order (%.1f%% less)\n",
           preset.c_str(), total_first / 1e3, total_best / 1e3, less(total_best), total_same / 1e3, less(total_same),
           total_order / 1e3, less(total_order));
    printf("RESULT gemm_algos rule preset=%s: %d candidates in the first one's order, %d of them with other bits\n",
           preset.c_str(), order_total, order_not_bits);
    return 0;
}

}  // namespace

int main(int argc, char** argv) { return run_main([&] { return run(argc, argv); }); }
