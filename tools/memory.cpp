// Memory of a fine-tuning run, per category, from the shape and the settings (model/memory.h).
//   ./memory --preset llama-13b --method full                 26 GB of BF16 weights, + grads, AdamW, activations
//   ./memory --params 13e9 --method full --bytes 2            the rule of thumb: 78 GB of gradients + Adam states
//   ./memory --preset llama-65b --method qlora --lora-r 64 --lora-targets all --seq-len 512 --recompute
//   ./memory --model models/smollm2-135m-instruct.bin --device cpu --method lora --explain
//   ./memory --published                                      the published figures with ours beside them
#include <cmath>
#include <cstdio>
#include <numeric>
#include <string>

#include "model/memory.h"
#include "model/util.h"
#include "model/weights.h"
#include "tools/cli.h"

static const char* kUsage =
    "usage: ./memory SHAPE [options]\n"
    "shape:   --preset NAME | --model FILE.bin | --params N (e.g. 13e9: rules of thumb, no activations)\n"
    "         --dim N --layers N --heads N --kv-heads N --head-dim N --ffn N --vocab N (override or give all)\n"
    "method:  --method full|lora|qlora (full)  --optimizer adamw|adamw8bit|sgd|momentum (adamw)\n"
    "         --lora-r 8 --lora-targets q,k,v,o,gate,up,down|all (all, as ./train) --lora-layers 0-3,10 --use-dora\n"
    "         --modules-to-save embed_tokens,lm_head (trained in full beside the adapters)\n"
    "         --trainable-tokens N (N tokens' rows of the embedding and LM head trained beside the adapters)\n"
    "bytes:   --device cuda|cpu (cuda: BF16 compute, FP32 master/grads/moments, NF4+DQ for qlora; cpu: FP32)\n"
    "         --precision fp32|bf16|nf4|nf4-dq (base weights)  --bytes 2|4 (everything at that size, no master)\n"
    "         --grad-bytes N --state-bytes N --master-bytes N (0: no master copy)\n"
    "batch:   --batch-size 1 --seq-len 512 (or --max-seq-len, as ./train names it) --recompute\n"
    "         --offload-optimizer (cuda: moments, masters and a gradient copy in host memory)\n"
    "output:  --explain (the formula under each line), --published (the published figures beside ours),\n"
    "         --lora-matrix INxOUT (adapter vs full parameters of one matrix at --lora-r)\n";

// The figures people quote, each recomputed here, with why ours differs where it does.
static void print_published() {
    printf("%-58s %14s %14s\n", "published figure", "published", "ours");
    auto row = [](const char* what, const char* pub, const std::string& ours, const char* note) {
        printf("%-58s %14s %14s\n", what, pub, ours.c_str());
        if (note) printf("    %s\n", note);
    };
    auto gb = [](double b) { char s[32]; snprintf(s, sizeof s, "%.2f GB", b / 1e9); return std::string(s); };
    MemorySpec s;
    s.params = 13000000000;
    memory_set_uniform_bytes(s, 2);
    MemoryEstimate e = memory_estimate(s);
    row("13B params x 2 bytes (BF16 weights)", "26 GB", gb(e.weights), nullptr);
    row("inference of 13B: 26 GB x 1.2", "31.2 GB", gb(e.inference()), nullptr);
    row("13B full FT, Adam: gradients + 2 states at 2 bytes", "78 GB", gb(e.gradients + e.optimizer), nullptr);
    s.params = 1000000000;
    e = memory_estimate(s);
    row("1B trainable: gradients + 2 Adam states at 2 bytes", "6 GB", gb(e.gradients + e.optimizer), nullptr);
    int64_t lp = lora_params(1000, 1000, 64);
    char buf[64];
    snprintf(buf, sizeof buf, "%lld (%.1f%%)", (long long)lp, 100.0 * (1.0 - lp / 1e6));
    row("LoRA r=64 on 1000x1000: adapter params (fewer)", "128000 (87%)", buf, nullptr);
    size_t n = (size_t)64 * 256 * 4096;  // a whole number of absmax blocks: the per-tensor offset vanishes
    snprintf(buf, sizeof buf, "%.3f / %.3f", 8.0 * nf4_bytes(n, true) / n, 8.0 * nf4_bytes(n, false) / n);
    row("NF4 bits per parameter, with / without double quant", "4.127 / 4.5", buf, nullptr);
    // bitsandbytes' documentation: 8-bit optimizers take "75% less" memory than 32-bit ones
    MemorySpec a = s, a8;
    memory_set_uniform_bytes(a, 4);
    a.master_bytes = 0;
    a8 = a;
    a8.optimizer = OptimKind::AdamW8bit;
    snprintf(buf, sizeof buf, "%.1f%%", 100.0 * (1.0 - (double)memory_estimate(a8).optimizer / memory_estimate(a).optimizer));
    row("8-bit Adam states against 32-bit: less memory", "75%", buf,
        "a byte per state and an FP32 absmax per 256 (2 + 1/32 bytes for both states, not 8)");

    MemorySpec q;
    q.cfg = config_preset("llama-7b");
    q.method = Method::Qlora;
    memory_set_backend(q, Backend::Cuda);
    row("LLaMA-7B base in NF4", "~5 GB", gb(memory_estimate(q).weights).c_str(),
        "ours counts the stored weights only: projections NF4+DQ, embeddings/head/norms BF16 (bitsandbytes keeps them\n"
        "    16-bit); the published figure is a GPU footprint that also holds the CUDA context and allocator cache");
    MemoryEstimate ours = memory_estimate(qlora_65b_spec(false)), paper = memory_estimate(qlora_65b_spec(true));
    row("LLaMA-65B QLoRA r=64 all linear, b1 x 512, recompute", "< 48 GB", gb(paper.total()),
        "with the QLoRA paper's dtypes (BF16 adapters and gradients, FP32 Adam states, no master copy)");
    std::string why = strf("our design adds an FP32 master of the 800M adapter params and FP32 gradients: +4 B and +2 B\n"
                           "    per adapter param. In binary units, as GPU memory is sized, that is %.2f GiB (paper's dtypes\n"
                           "    %.2f GiB) of a 48 GiB card, before the CUDA context (~0.5 GiB)",
                           ours.total() / 1073741824.0, paper.total() / 1073741824.0);
    row("  the same with our CUDA dtypes", "< 48 GB", gb(ours.total()), why.c_str());
    MemorySpec off = qlora_65b_spec(false);
    off.offload_optimizer = true;
    MemoryEstimate offloaded = memory_estimate(off);
    row("  ours with --offload-optimizer", "< 48 GB", gb(offloaded.total()),
        strf("AdamW on the CPU: moments and a gradient copy in host memory, %s, beside the host's\n"
             "    FP32 adapters (the masters); the GPU keeps the BF16 adapters and the FP32 gradients",
             format_bytes((double)offloaded.host).c_str()).c_str());
}

static void print_lora_matrix(const std::string& dims, int r) {
    long long in = 0, out = 0;
    if (sscanf(dims.c_str(), "%lldx%lld", &in, &out) != 2 || in <= 0 || out <= 0)
        fail("--lora-matrix %s: expected INxOUT, e.g. 1000x1000", dims.c_str());
    int64_t lp = lora_params(in, out, r);
    const double change = 100.0 * (1.0 - (double)lp / (double)(in * out));  // a rank past in·out/(in+out) adds
    printf("LoRA r=%d on a %lldx%lld matrix: r*(in+out) = %lld adapter params vs %lld (%.1f%% %s)\n", r, in, out,
           (long long)lp, in * out, std::fabs(change), change >= 0 ? "fewer" : "more");
}

static int run(int argc, char** argv) {
    MemorySpec s;
    s.lora.targets = lora_parse_targets("all");  // ./train's default: all seven projections
    std::string preset, model, method = "full", optimizer = "adamw", device = "cuda", precision, lora_matrix;
    int bytes = 0, grad_bytes = -1, state_bytes = -1, master_bytes = -1, trainable_tokens = 0;
    ShapeFlags shape;
    bool explain = false, published = false;
    Args args(argc, argv, "see ./memory --help");
    while (args.next()) {
        if (args.is("--preset")) preset = args.value();
        else if (args.is("--model")) model = args.value();
        else if (args.is("--params")) {
            double p = args.number();
            if (!(p >= 1 && p <= 1e15)) fail("--params %g: expected a parameter count such as 13e9 (at most 1e15)", p);
            s.params = (int64_t)p;
        } else if (shape.parse(args)) continue;
        else if (args.is("--method")) method = args.value();
        else if (args.is("--optimizer")) optimizer = args.value();
        else if (args.is("--device")) device = args.value();
        else if (args.is("--precision")) precision = args.value();
        else if (args.is("--bytes")) bytes = args.integer();
        else if (args.is("--grad-bytes")) grad_bytes = args.integer();
        else if (args.is("--state-bytes")) state_bytes = args.integer();
        else if (args.is("--master-bytes")) master_bytes = args.integer();
        else if (args.is("--batch-size")) s.B = args.integer();
        else if (args.is("--seq-len") || args.is("--max-seq-len")) s.T = args.integer();
        else if (args.is("--recompute")) s.recompute = true;
        else if (args.is("--offload-optimizer")) s.offload_optimizer = true;
        else if (args.is("--lora-r")) s.lora.rank = args.integer();
        else if (args.is("--lora-targets")) s.lora.targets = lora_parse_targets(args.value());
        else if (args.is("--lora-layers")) s.lora.layers = lora_parse_layers(args.value());
        else if (args.is("--use-dora")) s.lora.use_dora = 1;
        else if (args.is("--modules-to-save")) s.lora.save_modules = lora_parse_saves(args.value());
        else if (args.is("--trainable-tokens")) trainable_tokens = args.integer(1);
        else if (args.is("--lora-matrix")) lora_matrix = args.value();
        else if (args.is("--explain")) explain = true;
        else if (args.is("--published")) published = true;
        else if (args.is("--help") || args.is("-h")) {
            std::string names;
            for (const std::string& n : config_preset_names()) names += " " + n;
            printf("%spresets:%s\n", kUsage, names.c_str());
            return 0;
        } else args.unknown();
    }
    if (s.lora.rank < 1) fail("--lora-r must be at least 1");
    if (published) return print_published(), 0;
    if (!lora_matrix.empty()) return print_lora_matrix(lora_matrix, s.lora.rank), 0;
    if (s.B < 1 || s.T < 1) fail("--batch-size and --seq-len must be at least 1");

    int shapes = !preset.empty() + !model.empty() + (s.params > 0);
    if (shapes > 1) fail("give one of --preset, --model and --params");
    if (!preset.empty()) s.cfg = config_preset(preset);
    if (!model.empty()) s.cfg = model_read_config(model);
    shape.apply(s.cfg);
    if (shapes == 0 && !shape.dim) fail("no model shape: pass --preset NAME, --model FILE.bin, --params N or the dims (--dim ...)");
    if (shapes == 0 && !s.cfg.max_seq_len) s.cfg.max_seq_len = s.T;

    s.method = parse_method(method);
    if (s.lora.use_dora && s.method == Method::Full) fail("--use-dora adds magnitudes to LoRA adapters: it needs --method lora or qlora");
    if (s.lora.save_modules && s.method == Method::Full)
        fail("--modules-to-save trains base tensors beside LoRA's adapters: it needs --method lora or qlora");
    if (trainable_tokens && s.method == Method::Full)
        fail("--trainable-tokens trains token rows beside LoRA's adapters: it needs --method lora or qlora");
    if (trainable_tokens && s.params > 0) fail("--trainable-tokens needs a model shape (--preset, --model or dims), not --params");
    if (!s.lora.layers.empty() && s.method == Method::Full)
        fail("--lora-layers places LoRA's adapters: it needs --method lora or qlora");
    if (!s.lora.layers.empty() && s.params == 0) lora_check_layers(s.cfg, s.lora, "--lora-layers");
    if (trainable_tokens) {  // (which ids does not change a byte: the first N, in both tables when untied)
        if (trainable_tokens > s.cfg.vocab_size)
            fail("--trainable-tokens %d: the vocabulary has %d tokens", trainable_tokens, s.cfg.vocab_size);
        s.lora.tokens[LORA_TABLE_EMBED].resize(trainable_tokens);
        std::iota(s.lora.tokens[LORA_TABLE_EMBED].begin(), s.lora.tokens[LORA_TABLE_EMBED].end(), 0);
        if (!s.cfg.tied_embeddings) s.lora.tokens[LORA_TABLE_LM_HEAD] = s.lora.tokens[LORA_TABLE_EMBED];
    }
    s.optimizer = parse_optim_kind(optimizer);
    memory_set_backend(s, parse_backend(device));
    if (bytes) memory_set_uniform_bytes(s, bytes);
    if (!precision.empty()) s.base = parse_weight_format(precision);
    if (grad_bytes >= 0) s.grad_bytes = grad_bytes;
    if (state_bytes >= 0 && s.optimizer == OptimKind::AdamW8bit)
        fail("--state-bytes sets the size of FP32/16-bit moments; adamw8bit's are a byte each with an absmax per %d", kAdam8Block);
    if (state_bytes >= 0) s.state_bytes = state_bytes;
    if (master_bytes >= 0) s.master_bytes = master_bytes;
    print_memory_table(memory_estimate(s), nullptr, stdout, explain);
    return 0;
}

int main(int argc, char** argv) { return run_main([&] { return run(argc, argv); }); }
