// Generation with a KV cache: time to first token and decode tokens/s of a batch of sequences, on a
// preset's shape with random weights, greedy, every sequence generating exactly --new tokens (no
// stop token). bench/hf_generate.py runs the same in transformers (model.generate with its KV
// cache) for the side-by-side figure (bench/run_cpu.sh).
//   build/bench/bench_generate --preset smollm2-135m --batch 8 --prompt 128 --new 32 [--device cuda]
//   --op-times: then the time of every op in one generation of 1 token and one of --new (bench/op_times.h)
//
// Timing, the same on both sides: a generation of 1 new token (the prefill and the first step: time
// to first token), then one of --new tokens; decode tokens/s = batch·(new − 1) / (t_new − t_first).
// Each is the median of --rounds, after one untimed round.
#include <algorithm>
#include <cstdio>
#include <string>
#include <vector>

#include "bench/op_times.h"
#include "model/generate.h"
#include "model/util.h"
#include "tools/cli.h"

namespace {

double median(std::vector<double> v) {
    std::sort(v.begin(), v.end());
    return v[v.size() / 2];
}

int run(int argc, char** argv) {
    std::string preset = "smollm2-135m", device = "auto";
    int batch = 8, prompt = 128, new_tokens = 32, rounds = 3;  // small enough for `make bench` on a CPU
    bool op_times = false;
    Args args(argc, argv, "see the header of bench/bench_generate.cpp");
    while (args.next()) {
        if (args.is("--preset")) preset = args.value();
        else if (args.is("--device")) device = args.value();
        else if (args.is("--batch")) batch = args.integer();
        else if (args.is("--prompt")) prompt = args.integer();
        else if (args.is("--new")) new_tokens = args.integer();
        else if (args.is("--rounds")) rounds = args.integer();
        else if (args.is("--op-times")) op_times = true;
        else args.unknown();
    }
    if (batch < 1 || prompt < 1 || new_tokens < 2 || rounds < 1)
        fail("--batch, --prompt and --rounds must be at least 1, --new at least 2");
    const Ops& ops = op_times ? timed_ops(select_ops(device.c_str())) : select_ops(device.c_str());
    const ModelConfig cfg = config_preset(preset);
    Model m;
    model_init_random(m, cfg, 1);
    model_upload(m, ops);
    Rng rng(7);
    std::vector<std::vector<int32_t>> prompts(batch);
    for (auto& p : prompts)
        for (int k = 0; k < prompt; k++) p.push_back((int32_t)(rng.next_u64() % cfg.vocab_size));
    SampleOptions first, all;
    first.max_new_tokens = 1;
    all.max_new_tokens = new_tokens;
    auto timed = [&](const SampleOptions& so) {
        const double t0 = now_seconds();
        generate(m, prompts, so, {}, nullptr, ops);  // the logits come to the host each step: finished
        return now_seconds() - t0;
    };
    timed(all);  // warm-up: first-touch of the buffers, cuBLASLt's algorithm choice
    std::vector<double> t_first, t_all;
    for (int r = 0; r < rounds; r++) {
        t_first.push_back(timed(first));
        t_all.push_back(timed(all));
    }
    const double ttft = median(t_first), decode = (double)batch * (new_tokens - 1) / (median(t_all) - ttft);
    printf("RESULT ours preset=%s device=%s batch=%d prompt=%d new=%d: time to first token %.1f ms, decode %.1f "
           "tokens/s (median of %d), peak memory %.2f GB (arena)\n",
           preset.c_str(), ops.name, batch, prompt, new_tokens, 1e3 * ttft, decode, rounds,
           ops.mem_stats().peak_total / 1e9);
    if (op_times) {
        reset_op_times();
        print_op_times("prefill and first token", 1, timed(first));
        reset_op_times();
        print_op_times(strf("generation of %d tokens", new_tokens).c_str(), 1, timed(all));
    }
    return 0;
}

}  // namespace

int main(int argc, char** argv) { return run_main([&] { return run(argc, argv); }); }
