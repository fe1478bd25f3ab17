// CPU benchmark: tokens/s of one LoRA training step (forward + backward + AdamW) at the
// smollm2-135m shape, seq 256, batch 4, random weights; plus the GEMM's GFLOP/s on the shapes that
// dominate it, next to a naive loop as the reference measured in the same run.
//   make bench            or   build/bench/bench_cpu [--steps N (0: the GEMM table only)] [--preset NAME] [--seq T] [--batch B]
#include <cstdio>
#include <string>

#include "kernels/cpu/gemm.h"
#include "model/trainer.h"
#include "model/util.h"
#include "tools/cli.h"

static double time_gemm(int M, int N, int K, bool naive) {
    std::vector<float> A((size_t)M * K, 0.5f), B((size_t)N * K, 0.25f), C((size_t)M * N);
    double t0 = now_seconds();
    if (naive) {
        // The loop a first version would write: y = x Wᵀ, one dot product per output.
        #pragma omp parallel for
        for (int i = 0; i < M; i++)
            for (int j = 0; j < N; j++) {
                float s = 0;
                for (int k = 0; k < K; k++) s += A[(size_t)i * K + k] * B[(size_t)j * K + k];
                C[(size_t)i * N + j] = s;
            }
    } else {
        cpu::gemm(false, true, M, N, K, 1.0f, A.data(), K, B.data(), K, 0.0f, C.data(), N);
    }
    return now_seconds() - t0;
}

static int run(int argc, char** argv) {
    std::string preset = "smollm2-135m";
    int steps = 3, T = 256, B = 4;
    Args args(argc, argv, "usage: build/bench/bench_cpu [--steps N (3; 0: the GEMM table only)] [--preset NAME] "
                          "[--seq T] [--batch B]");
    while (args.next()) {
        if (args.is("--steps")) steps = args.integer(0);
        else if (args.is("--preset")) preset = args.value();
        else if (args.is("--seq")) T = args.integer(2);
        else if (args.is("--batch")) B = args.integer(1);
        else args.unknown();
    }
    printf("GEMM y = x Wᵀ (M tokens × K in → N out), GFLOP/s\n");
    int shapes[][3] = {{1024, 576, 576}, {1024, 1536, 576}, {1024, 576, 1536}, {128, 49152, 576}};
    for (auto& s : shapes) {
        int M = s[0], N = s[1], K = s[2];
        double flop = 2.0 * M * N * K;
        time_gemm(M, N, K, false);  // warm up (packing buffers, threads)
        double tg = time_gemm(M, N, K, false), tn = time_gemm(M, N, K, true);
        printf("  %5d x %5d x %5d   packed %7.1f   naive %7.1f   (%.1fx)\n", M, N, K, flop / tg / 1e9, flop / tn / 1e9, tn / tg);
    }

    if (steps == 0) return 0;
    ModelConfig cfg = config_preset(preset);
    Trainer t;
    model_init_random(t.model, cfg, 1);
    TrainConfig tc;
    tc.method = Method::Lora;
    tc.lora.rank = 8;
    tc.lora.targets = lora_parse_targets("q,k,v,o,gate,up,down");
    model_add_lora(t.model, tc.lora, 1);
    tc.batch.batch_size = B;
    tc.batch.max_seq_len = T;
    tc.max_steps = steps + 1;
    Rng r(1);
    for (int i = 0; i < B * (steps + 1); i++) {
        Example e;
        for (int k = 0; k < T; k++) {
            e.tokens.push_back((int)(r.next_u64() % cfg.vocab_size));
            e.weights.push_back(k ? 1.0f : 0.0f);
        }
        t.train.push_back(e);
    }
    trainer_init(t, tc, cpu_ops());
    printf("LoRA step, %s (%s), r=8 on all 7 projections, batch %d x seq %d\n", preset.c_str(), cfg.describe().c_str(), B, T);
    trainer_step(t);  // warm up
    double t0 = now_seconds();
    for (int s = 0; s < steps; s++) trainer_step(t);
    double dt = (now_seconds() - t0) / steps;
    // Forward 2N + backward dX 2N FLOP per token (frozen base: no weight gradients); attention not counted.
    double flop = 4.0 * cfg.num_params() * B * T;
    printf("  %.2f s/step, %.0f tokens/s, ~%.1f GFLOP/s (matmul FLOP only)\n", dt, B * T / dt, flop / dt / 1e9);
    return 0;
}

int main(int argc, char** argv) { return run_main([&] { return run(argc, argv); }); }
