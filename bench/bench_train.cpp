// End-to-end training step: tokens/s, MFU and peak memory of a LoRA / QLoRA / full step on a preset
// shape with random weights and full-length random batches, on either backend. bench/peft_step.py
// runs the same step in transformers + peft (+ bitsandbytes) for the side-by-side figure.
//   build/bench/bench_train --preset llama-3.2-1b --method lora --batch 4 --seq 1024 --steps 10 [--device cuda]
//   --op-times: also the time of every op per step (bench/op_times.h)
//   --dropout P: LoRA dropout (default 0, as bench/peft_step.py; ./train's default is 0.05)
//   --optimizer adamw8bit: 8-bit AdamW moments (./train --optimizer)
//   --use-dora: DoRA's magnitudes on every adapted projection (./train --use-dora; peft_step.py --use-dora)
//   --modules-to-save embed_tokens,lm_head: those trained in full beside the adapters (./train's flag;
//     peft_step.py --modules-to-save)
//   --trainable-tokens N: the rows of tokens 0..N-1 of the embedding and LM head trained beside the
//     adapters (./train's flag with N ids; peft_step.py --trainable-tokens)
//
// MFU counts model FLOPs, not the work actually done (recompute's second forward is not credited),
// per trained token (the same formula as bench/peft_step.py):
//   linear layers: forward 2·P, backward dX 2·P, plus dW 2·P only when the weights are trained (full;
//     with --modules-to-save the LM head's dW, 2·V·C),
//     P = parameters in the matmuls (the seven projections of every layer and the LM head);
//   attention (causal, on average T/2 keys per query): forward 4·L·nh·hd·T/2, backward twice that.
// Peak BF16 dense throughput: 989 TFLOP/s for H100/H200 SXM (--peak-tflops to change).
#include <sys/resource.h>

#include <algorithm>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <numeric>
#include <string>
#include <vector>

#include "bench/op_times.h"
#include "model/memory.h"
#include "model/trainer.h"
#include "model/util.h"
#include "tools/cli.h"

namespace {

// The process's peak resident memory (Linux reports ru_maxrss in KiB): weights, buffers, OpenMP's
// threads, the binary itself; next to transformers' own max RSS on the CPU.
double max_rss_bytes() {
    rusage ru{};
    getrusage(RUSAGE_SELF, &ru);
    return ru.ru_maxrss * 1024.0;
}

double flops_per_token(const ModelConfig& c, Method method, int T, bool head_trained) {
    double P = (double)c.n_layers * ((double)c.dim * (c.q_dim() + 2 * c.kv_dim()) + (double)c.q_dim() * c.dim +
                                     3.0 * c.dim * c.ffn_dim) +
               (double)c.dim * c.vocab_size;
    double linear = (method == Method::Full ? 6.0 : 4.0) * P;
    if (head_trained && method != Method::Full) linear += 2.0 * c.dim * c.vocab_size;  // the saved LM head's dW
    double attention_fwd = 4.0 * c.n_layers * c.n_heads * c.head_dim * (T / 2.0);
    return linear + 3.0 * attention_fwd;
}

int run(int argc, char** argv) {
    std::string preset = "smollm2-135m", method_s = "lora", device = "auto";
    int batch = 4, seq = 256, steps = 3, warmup = 1, rank = 16;  // small enough for `make bench` on a CPU
    bool recompute = false, offload = false, op_times = false, eight_bit = false, dora = false;
    uint32_t saves = 0;
    int trainable_tokens = 0;
    double peak_tflops = 989.0, dropout = 0.0;
    Args args(argc, argv, "see the header of bench/bench_train.cpp");
    while (args.next()) {
        if (args.is("--preset")) preset = args.value();
        else if (args.is("--method")) method_s = args.value();
        else if (args.is("--device")) device = args.value();
        else if (args.is("--batch")) batch = args.integer();
        else if (args.is("--seq")) seq = args.integer();
        else if (args.is("--steps")) steps = args.integer();
        else if (args.is("--warmup")) warmup = args.integer();
        else if (args.is("--rank")) rank = args.integer();
        else if (args.is("--recompute")) recompute = true;
        else if (args.is("--offload-optimizer")) offload = true;
        else if (args.is("--optimizer")) eight_bit = std::string(args.value()) == "adamw8bit";
        else if (args.is("--peak-tflops")) peak_tflops = args.number();
        else if (args.is("--op-times")) op_times = true;
        else if (args.is("--dropout")) dropout = args.number();
        else if (args.is("--use-dora")) dora = true;
        else if (args.is("--modules-to-save")) saves = lora_parse_saves(args.value());
        else if (args.is("--trainable-tokens")) trainable_tokens = args.integer(1);
        else args.unknown();
    }
    const Ops& ops = op_times ? timed_ops(select_ops(device.c_str())) : select_ops(device.c_str());
    ModelConfig cfg = config_preset(preset);
    Method method = parse_method(method_s);
    double t0 = now_seconds();
    Trainer t;
    // qlora: random NF4 projections made directly, so even LLaMA-65B never exists in FP32.
    if (method == Method::Qlora) model_init_random_nf4(t.model, cfg, 1);
    else model_init_random(t.model, cfg, 1);
    TrainConfig tc;
    tc.method = method;
    tc.lora.rank = rank;
    tc.lora.alpha = 2.0f * rank;
    if (dropout < 0 || dropout >= 1) fail("--dropout must be in [0, 1)");
    tc.lora.dropout = (float)dropout;
    tc.lora.targets = lora_parse_targets("all");
    if (dora && method == Method::Full) fail("--use-dora needs --method lora or qlora");
    tc.lora.use_dora = dora;
    if (saves && method == Method::Full) fail("--modules-to-save needs --method lora or qlora");
    tc.lora.save_modules = lora_saves(cfg, saves);
    if (trainable_tokens && method == Method::Full) fail("--trainable-tokens needs --method lora or qlora");
    if (trainable_tokens > cfg.vocab_size) fail("--trainable-tokens %d: the vocabulary has %d tokens", trainable_tokens, cfg.vocab_size);
    tc.lora.tokens[LORA_TABLE_EMBED].resize(trainable_tokens);
    std::iota(tc.lora.tokens[LORA_TABLE_EMBED].begin(), tc.lora.tokens[LORA_TABLE_EMBED].end(), 0);
    if (!cfg.tied_embeddings) tc.lora.tokens[LORA_TABLE_LM_HEAD] = tc.lora.tokens[LORA_TABLE_EMBED];
    if (method != Method::Full) model_add_lora(t.model, tc.lora, tc.seed);
    tc.batch.batch_size = batch;
    tc.batch.max_seq_len = seq;
    tc.batch.padding = Padding::max_length;
    tc.recompute = recompute;
    tc.offload_optimizer = offload;
    tc.optim.eight_bit = eight_bit;
    tc.max_steps = warmup + steps;
    tc.optim.lr = 1e-5f;
    Rng rng(7);
    for (int i = 0; i < batch * (warmup + steps); i++) {
        Example e;
        for (int k = 0; k < seq; k++) {
            e.tokens.push_back((int)(rng.next_u64() % cfg.vocab_size));
            e.weights.push_back(k > 0 ? 1.0f : 0.0f);
        }
        t.train.push_back(e);
    }
    trainer_init(t, tc, ops);
    printf("%s %s on %s: batch %d x seq %d%s, setup %.1fs\n", preset.c_str(), method_name(method), ops.name, batch, seq,
           recompute ? ", recompute" : "", now_seconds() - t0);
    MemoryUse used = trainer_memory(t);
    print_memory_table(memory_estimate(trainer_memory_spec(t)), &used, stdout);
    for (int s = 0; s < warmup; s++) trainer_step(t);
    ops.synchronize();
    reset_op_times();
    std::vector<double> times;
    double loss = 0;
    for (int s = 0; s < steps; s++) {
        double ts = now_seconds();
        loss = trainer_step(t).loss;
        // The loss and the gradient norm come back to the host mid-step, but optimizer_step()'s
        // AdamW (and the BF16 copy of the adapters) is only queued: wait for it, as peft_step.py's
        // torch.cuda.synchronize() does, so that each step is timed whole and on its own.
        ops.synchronize();
        times.push_back(now_seconds() - ts);
    }
    std::sort(times.begin(), times.end());
    double med = times[times.size() / 2], tokens = (double)batch * seq;
    double tps = tokens / med, mfu = flops_per_token(cfg, method, seq, t.model.lora_layout.lm_head != SIZE_MAX) * tps / (peak_tflops * 1e12);
    MemStats ms = ops.mem_stats();
    // MFU means something against a GPU's peak only; on the CPU the model GFLOP/s stand alone.
    std::string mfu_s = ops.host ? "n/a (CPU)" : strf("%.1f%%", 100 * mfu);
    std::string extra = (offload ? " offload=1" : "") + std::string(eight_bit ? " optimizer=adamw8bit" : "") +
                        (dora ? " dora=1" : "") +
                        (saves ? " save=" + lora_saves_string(tc.lora.save_modules) : std::string()) +
                        (trainable_tokens ? strf(" tokens=%d", trainable_tokens) : std::string()) +
                        (dropout > 0 ? strf(" dropout=%g", dropout) : std::string());
    printf("RESULT ours preset=%s method=%s device=%s batch=%d seq=%d recompute=%d%s: %.1f ms/step (median of %d), "
           "%.0f tokens/s, MFU %s, peak memory %.2f GB (arena), loss %.3f, %.1f GFLOP/s of model FLOPs, "
           "max RSS of the process %.2f GB\n",
           preset.c_str(), method_name(method), ops.name, batch, seq, (int)recompute, extra.c_str(),
           1e3 * med, steps, tps, mfu_s.c_str(), ms.peak_total / 1e9, loss,
           flops_per_token(cfg, method, seq, t.model.lora_layout.lm_head != SIZE_MAX) * tps / 1e9, max_rss_bytes() / 1e9);
    if (op_times) print_op_times("step", steps, std::accumulate(times.begin(), times.end(), 0.0));
    return 0;
}

}  // namespace

int main(int argc, char** argv) { return run_main([&] { return run(argc, argv); }); }
