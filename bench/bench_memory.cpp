// Memory: the estimator (model/memory.h) against what a real trainer holds, over a matrix of
// methods × recompute on/off × 2 shapes with random weights. Two measured figures per run: the
// trainer's buffers (trainer_memory, exact by construction of each arena) and the growth of the
// process's resident memory over setup (+ --steps training steps): what the OS actually gave us, so
// allocations the accounting forgot would show there. Every buffer is allocated (and zeroed) at
// setup, so steps add nothing; they are off by default because a step of the larger shape takes
// a minute on two cores. The first run's resident growth also holds one-time allocations
// (OpenMP's threads, lookup tables): a few MB, visible only on the tiny shape.
//   make bench        or   build/bench/bench_memory [--shapes tiny,smollm2-135m] [--steps 1]
// --device cuda runs the same matrix on the GPU (BF16, NF4 for qlora): there the trainer's buffers
// are device allocations, and the second measured figure is the arena's peak over setup + steps
// (every device allocation, the backend's scratch included) beside the driver's bytes in use
// (cudaMemGetInfo: adds the CUDA context and cuBLAS' own memory).
//   build/bench/bench_memory --device cuda --shapes smollm2-135m,llama-3.2-1b --steps 1
// --offload 1 adds lora and qlora rows with --offload-optimizer (method "lora/o", "qlora/o"): their
// GPU figures leave out what went to host memory, which a line under the table compares instead.
#include <malloc.h>
#include <unistd.h>

#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <sstream>
#include <string>

#include "model/memory.h"
#include "model/trainer.h"
#include "model/util.h"
#include "tools/cli.h"

// Resident set size now, from /proc/self/statm (pages).
static double rss_bytes() {
    FILE* f = fopen("/proc/self/statm", "r");
    if (!f) return 0;
    long size = 0, resident = 0;
    if (fscanf(f, "%ld %ld", &size, &resident) != 2) resident = 0;
    fclose(f);
    return (double)resident * sysconf(_SC_PAGESIZE);
}

struct Run {
    const char* shape;
    int B, T;
};

static void run_one(const Ops& ops, const Run& r, Method method, bool recompute, int steps, bool offload,
                    std::string& notes) {
    ModelConfig cfg = config_preset(r.shape);
    malloc_trim(0);  // hand back what earlier runs freed, so their pages do not hide this run's
    ops.release_scratch();  // each run's peak holds only its own scratch
    ops.reset_peak();
    double rss0 = rss_bytes();
    {
        Trainer t;
        model_init_random(t.model, cfg, 1);
        TrainConfig tc;
        tc.method = method;
        tc.lora.rank = 16;
        tc.lora.targets = lora_parse_targets("all");
        if (method == Method::Qlora) model_quantize_nf4(t.model);
        if (method != Method::Full) model_add_lora(t.model, tc.lora, tc.seed);
        tc.batch.batch_size = r.B;
        tc.batch.max_seq_len = r.T;
        tc.batch.padding = Padding::max_length;
        tc.recompute = recompute;
        tc.offload_optimizer = offload;
        tc.max_steps = steps;
        Rng rng(7);
        for (int i = 0; i < 2 * r.B; i++) {
            Example e;
            for (int k = 0; k < r.T; k++) {
                e.tokens.push_back((int)(rng.next_u64() % cfg.vocab_size));
                e.weights.push_back(k > 0 ? 1.0f : 0.0f);
            }
            t.train.push_back(e);
        }
        trainer_init(t, tc, ops);
        for (int s = 0; s < steps; s++) trainer_step(t);
        // CPU: what the OS gave the process; CUDA: the most the arenas held at once.
        double grown = ops.host ? rss_bytes() - rss0 : (double)ops.mem_stats().peak_total;

        // The estimate from the settings alone, not from the trainer's buffers.
        MemorySpec spec;
        spec.cfg = cfg;
        spec.method = method;
        spec.lora = tc.lora;
        memory_set_backend(spec, ops.host ? Backend::Cpu : Backend::Cuda);
        spec.B = r.B;
        spec.T = r.T;
        spec.recompute = recompute;
        spec.offload_optimizer = offload && !ops.host;
        MemoryEstimate e = memory_estimate(spec);
        MemoryUse m = trainer_memory(t);
        auto err = [](double est, double meas) { return meas > 0 ? 100.0 * (est - meas) / meas : 0.0; };
        std::string meth = std::string(method_name(method)) + (offload ? "/o" : "");
        if (e.host || m.offloaded)
            notes += strf("%s %s %s: host memory of the offloaded optimizer: estimate %.1f MB, trainer %.1f MB (%+.3f%%)\n",
                          r.shape, meth.c_str(), recompute ? "on" : "off", e.host / 1e6, m.offloaded / 1e6,
                          err(e.host, m.offloaded));
        printf("| %-12s | %-7s | %-3s | %10.1f | %10.1f | %+7.3f%% | %9.1f | %10.1f | %+7.2f%% |", r.shape,
               meth.c_str(), recompute ? "on" : "off", e.total() / 1e6, m.total() / 1e6,
               err(e.total(), m.total()), e.workspace() / 1e6, grown / 1e6, err(e.total(), grown));
        if (!ops.host) printf(" %10.1f |", ops.mem_stats().device_used / 1e6);
        printf("\n");
    }
}

static int run(int argc, char** argv) {
    std::string shapes = "tiny,smollm2-135m", device = "cpu";
    int steps = 0;
    bool offload = false;
    for (int i = 1; i < argc; i += 2) {
        if (i + 1 < argc && !strcmp(argv[i], "--shapes")) shapes = argv[i + 1];
        else if (i + 1 < argc && !strcmp(argv[i], "--offload")) {
            if (strcmp(argv[i + 1], "0") && strcmp(argv[i + 1], "1")) fail("--offload %s: use 0 or 1", argv[i + 1]);
            offload = argv[i + 1][0] == '1';
        }
        else if (i + 1 < argc && !strcmp(argv[i], "--steps")) steps = atoi(argv[i + 1]);
        else if (i + 1 < argc && !strcmp(argv[i], "--device")) device = argv[i + 1];
        else {
            fprintf(stderr, "error: unknown flag '%s' (use --shapes A,B --steps N --device cpu|cuda --offload 0|1, each with a value)\n", argv[i]);
            return 1;
        }
    }
    const Ops& ops = select_ops(device.c_str());
    bool cpu = ops.host;
    printf("memory, %s: estimate vs trainer buffers vs %s over setup + %d step%s\n"
           "(MB = 1e6 bytes; lora: r=16 on all seven projections)\n\n",
           cpu ? "CPU backend (FP32)" : "CUDA backend (BF16, NF4 base for qlora)",
           cpu ? "resident-memory growth" : "the arenas' peak", steps, steps == 1 ? "" : "s");
    printf("| %-12s | %-7s | %-3s | %10s | %10s | %8s | %9s | %10s | %8s |%s\n", "shape", "meth", "rc", "estimate",
           "buffers", "error", "workspace", cpu ? "RSS grown" : "arena peak", cpu ? "vs RSS" : "vs peak",
           cpu ? "" : " driver use |");
    printf("|--------------|---------|-----|------------|------------|----------|-----------|------------|----------|%s\n",
           cpu ? "" : "------------|");
    std::stringstream ss(shapes);
    std::string name, notes;
    while (std::getline(ss, name, ',')) {
        // Sized so one step of the larger shape takes seconds on two cores.
        Run r{nullptr, name == "tiny" ? 4 : 2, name == "tiny" ? 64 : 128};
        r.shape = name.c_str();
        for (Method m : {Method::Full, Method::Lora, Method::Qlora})
            for (bool rc : {false, true}) run_one(ops, r, m, rc, steps, false, notes);
        if (offload && !cpu)
            for (Method m : {Method::Lora, Method::Qlora})
                for (bool rc : {false, true}) run_one(ops, r, m, rc, steps, true, notes);
    }
    if (!notes.empty()) printf("\n%s", notes.c_str());
    return 0;
}

int main(int argc, char** argv) { return run_main([&] { return run(argc, argv); }); }
