// The memory estimator: the published figures it must reproduce (arithmetic, so exact), and on the
// CPU the estimate equal to the bytes the trainer actually holds, category by category.
#include <sys/wait.h>
#include <unistd.h>

#include <algorithm>
#include <cstring>
#include <stdexcept>

#include "model/buffer.h"
#include "model/memory.h"
#include "model/trainer.h"
#include "tests/test_util.h"

using std::vector;

// A preset trained on the CUDA backend with `method`, on B rows of T tokens.
static MemorySpec cuda_spec(const char* preset, Method method, int B = 1, int T = 512) {
    MemorySpec s;
    s.cfg = config_preset(preset);
    s.method = method;
    memory_set_backend(s, Backend::Cuda);
    s.B = B;
    s.T = T;
    return s;
}

static MemorySpec rule_of_thumb(int64_t params) {
    MemorySpec s;
    s.params = params;
    s.method = Method::Full;
    memory_set_uniform_bytes(s, 2);
    return s;
}

TEST_CASE("published: 13B x 2 bytes = 26 GB; inference x 1.2 = 31.2 GB; Adam grads + 2 states at 2 bytes = 78 GB") {
    MemoryEstimate e = memory_estimate(rule_of_thumb(13000000000));
    CHECK(e.weights == 26000000000ull);
    CHECK(e.inference() == doctest::Approx(31.2e9));
    CHECK(e.gradients == 26000000000ull);
    CHECK(e.optimizer == 52000000000ull);
    CHECK(e.gradients + e.optimizer == 78000000000ull);
    CHECK(e.activations == 0);  // no shape, no activations

    // The llama-13b shape has 13.016B parameters: 26.03 GB of BF16 weights.
    MemorySpec p;
    p.cfg = config_preset("llama-13b");
    memory_set_backend(p, Backend::Cuda);
    MemoryEstimate f = memory_estimate(p);
    CHECK(f.weights == (size_t)p.cfg.num_params() * 2);
    CHECK(f.weights / 1e9 == doctest::Approx(26.0).epsilon(0.002));
    MESSAGE("llama-13b BF16 weights: ours " << f.weights / 1e9 << " GB, published 26 GB (13B rounded)");
}

TEST_CASE("published: 1B trainable parameters -> 6 GB of gradients + Adam states at 2 bytes") {
    MemoryEstimate e = memory_estimate(rule_of_thumb(1000000000));
    CHECK(e.gradients + e.optimizer == 6000000000ull);
    // SGD keeps no state, momentum one.
    MemorySpec s = rule_of_thumb(1000000000);
    s.optimizer = OptimKind::SGD;
    CHECK(memory_estimate(s).optimizer == 0);
    s.optimizer = OptimKind::Momentum;
    CHECK(memory_estimate(s).optimizer == 2000000000ull);
}

TEST_CASE("published: LoRA r=64 on a 1000x1000 matrix stores 128,000 numbers instead of 1,000,000 (87% fewer)") {
    CHECK(lora_params(1000, 1000, 64) == 128000);
    CHECK(100.0 * (1.0 - 128000 / 1e6) == doctest::Approx(87.2));
    // The same count from the model's adapter layout: one target on a dim-1000 model.
    ModelConfig c = config_preset("tiny");
    c.dim = 1000; c.n_heads = 10; c.n_kv_heads = 10; c.head_dim = 100; c.n_layers = 1;
    LoraConfig lc;
    lc.rank = 64;
    lc.targets = lora_parse_targets("q");
    CHECK(lora_layout(c, lc).total == 128000);
}

TEST_CASE("published: NF4 with double quantization ~4.127 bits per parameter, 4.5 without") {
    size_t n = (size_t)64 * 256 * 4096;
    CHECK(8.0 * nf4_bytes(n, false) / n == 4.5);
    double dq = 8.0 * nf4_bytes(n, true) / n;
    CHECK(dq == doctest::Approx(4.127).epsilon(1e-4));
    CHECK(dq == doctest::Approx(4.0 + 8.0 / 64 + 32.0 / (64 * 256)).epsilon(1e-6));
    // Partial blocks round up: 65 weights are 33 code bytes and two absmax blocks.
    CHECK(nf4_bytes(65, false) == 33 + 2 * 4);
    CHECK(nf4_bytes(65, true) == 33 + 2 + 4 + 4);
}

TEST_CASE("published: LLaMA-7B NF4 base ~5 GB (ours: the stored weights, 3.9 GB)") {
    MemorySpec s = cuda_spec("llama-7b", Method::Qlora);
    MemoryEstimate e = memory_estimate(s);
    // The projections in NF4+DQ, the embeddings, LM head and norms in BF16.
    size_t proj = 0, other = 0;
    for (const TensorInfo& t : param_layout(s.cfg).tensors)
        (t.name.find("_proj.") != std::string::npos ? proj : other) += t.numel;
    CHECK(proj + other == (size_t)s.cfg.num_params());
    CHECK(8.0 * (e.weights - other * 2) / proj == doctest::Approx(4.127).epsilon(1e-3));
    CHECK(e.weights > 3.5e9);
    CHECK(e.weights < 5e9);
    MESSAGE("LLaMA-7B NF4 base: ours " << e.weights / 1e9
                                       << " GB (weights as stored), published ~5 GB (a GPU footprint: + CUDA context, allocator)");
    s.base = WeightFormat::NF4;
    CHECK(memory_estimate(s).weights > e.weights);  // without double quantization: 4.5 bits
}

TEST_CASE("published: LLaMA-65B QLoRA, r=64 on all linear layers, batch 1 x 512, recompute: under 48 GB") {
    MemoryEstimate ours = memory_estimate(qlora_65b_spec(false));
    CHECK(ours.n_trainable == 799539200);  // 80 layers × (4·64·(8192+8192) + 3·64·(8192+22016))
    // The QLoRA paper trains BF16 adapters in place with BF16 gradients and FP32 Adam states.
    MemorySpec s = qlora_65b_spec(true);
    MemoryEstimate paper = memory_estimate(s);
    CHECK(paper.total() < 48e9);
    CHECK(ours.total() - paper.total() == (size_t)ours.n_trainable * (4 + 2));
    MESSAGE("LLaMA-65B QLoRA: " << paper.total() / 1e9 << " GB with the paper's dtypes, " << ours.total() / 1e9
                                << " GB with our FP32 adapter masters and gradients (published: < 48 GB)");
    // Recompute is what makes it fit: without it every layer's activations stay.
    s.recompute = false;
    CHECK(memory_estimate(s).activations > paper.activations + 70 * paper.per_layer);
    // With our dtypes, --offload-optimizer moves the moments and masters (12 B per adapter
    // parameter) off the GPU; the host adds the moments and a gradient copy (12 B each) and uses
    // its own FP32 parameters as the masters.
    MemorySpec o = qlora_65b_spec(false);
    o.offload_optimizer = true;
    MemoryEstimate off = memory_estimate(o);
    CHECK(off.optimizer == 0);
    CHECK(ours.total() - off.total() == (size_t)ours.n_trainable * 12);
    CHECK(off.host == (size_t)ours.n_trainable * 12);
    CHECK(off.total() < 48e9);
    MESSAGE("LLaMA-65B QLoRA with --offload-optimizer: " << off.total() / 1e9 << " GB on the GPU, " << off.host / 1e9
                                                         << " GB in host memory");
}

TEST_CASE("estimate: flags name themselves in errors; shapes the method needs") {
    auto message = [](auto f) {
        try { f(); } catch (const std::exception& e) { return std::string(e.what()); }
        return std::string("no error");
    };
    CHECK(message([] { parse_method("qlor"); }).find("--method qlor") != std::string::npos);
    CHECK(message([] { parse_optim_kind("adagrad"); }).find("--optimizer") != std::string::npos);
    CHECK(message([] { parse_weight_format("int4"); }).find("--precision") != std::string::npos);
    CHECK(message([] { parse_backend("tpu"); }).find("--device") != std::string::npos);
    MemorySpec s = rule_of_thumb(7000000000);
    CHECK(message([&] { memory_set_uniform_bytes(s, 3); }).find("--bytes 3") != std::string::npos);
    s.method = Method::Lora;
    CHECK(message([&] { memory_estimate(s); }).find("needs a model shape") != std::string::npos);
    s.method = Method::Full;
    s.base = WeightFormat::NF4;
    CHECK(message([&] { memory_estimate(s); }).find("--method qlora") != std::string::npos);
    // Sizes whose byte counts would wrap around 64 bits (a total below its scratch line) are refused.
    MemorySpec big = qlora_65b_spec(false);
    big.B = big.T = 2000000000;
    CHECK(message([&] { memory_estimate(big); }) ==
          "--batch-size 2000000000 × --seq-len 2000000000 is 4000000000000000000 tokens a micro-batch, more than 2^31 "
          "(2147483648): ask for fewer");
    big.B = 4096, big.T = 524288;  // 2^31 exactly: estimated, each line within the total
    const MemoryEstimate e = memory_estimate(big);
    CHECK(e.total() >= e.scratch + e.activations + e.logits);
}

TEST_CASE("estimate: the table prints GB with GiB beside, measured with the error, formulas with --explain") {
    CHECK(format_bytes(26e9) == "26.00 GB (24.21 GiB)");
    char* buf = nullptr;
    size_t len = 0;
    FILE* f = open_memstream(&buf, &len);
    MemoryEstimate e = memory_estimate(rule_of_thumb(13000000000));
    MemoryUse m;
    m.weights = 25000000000ull;
    print_memory_table(e, &m, f, true);
    fclose(f);
    std::string out(buf, len);
    free(buf);
    CHECK(out.find("26.00 GB (24.21 GiB)") != std::string::npos);
    CHECK(out.find("78.00 GB") != std::string::npos);
    CHECK(out.find("+4.00%") != std::string::npos);  // (26 - 25) / 25
    CHECK(out.find("trainable 13.00B × (2 states × 2 B)") != std::string::npos);
}

// ---- estimate vs measured on the CPU ----

static vector<Example> examples(int n, int vocab) {
    Rng r(5);
    vector<Example> ex(n);
    for (Example& e : ex)
        for (int t = 0, len = 4 + (int)(r.next_u64() % 12); t < len; t++) {
            e.tokens.push_back((int)(r.next_u64() % vocab));
            e.weights.push_back(t > 0 ? 1.0f : 0.0f);
        }
    return ex;
}

// A trainer set up as ./train does, and the spec the estimator gets from the settings alone (not
// from the trainer): with padding to max_length the workspace holds batch × max_seq_len tokens.
static void check_cpu(const ModelConfig& cfg, Method method, bool recompute, const LoraConfig& lc,
                      bool eight_bit = false) {
    Trainer t;
    model_init_random(t.model, cfg, 1);
    TrainConfig tc;
    tc.method = method;
    tc.lora = lc;
    tc.optim.eight_bit = eight_bit;
    if (method == Method::Qlora) model_quantize_nf4(t.model);
    if (method != Method::Full) model_add_lora(t.model, lc, tc.seed);
    tc.batch.batch_size = 3;
    tc.batch.max_seq_len = 24;
    tc.batch.padding = Padding::max_length;
    tc.recompute = recompute;
    tc.max_steps = 1;
    t.train = examples(7, cfg.vocab_size);
    trainer_init(t, tc, cpu_ops());

    MemorySpec s;
    s.cfg = cfg;
    s.method = method;
    s.lora = lc;
    memory_set_backend(s, Backend::Cpu);
    s.B = 3;
    s.T = 24;
    s.recompute = recompute;
    s.optimizer = eight_bit ? OptimKind::AdamW8bit : OptimKind::AdamW;
    MemoryEstimate e = memory_estimate(s);
    MemoryUse m = trainer_memory(t);
    INFO(cfg.describe() << ", " << method_name(method) << (recompute ? ", recompute" : "") << (eight_bit ? ", adamw8bit" : ""));
    CHECK(e.weights == m.weights);
    CHECK(e.adapters == m.adapters);
    CHECK(e.gradients == m.gradients);
    CHECK(e.optimizer == m.optimizer);
    // qlora's one dequantized projection counts as working memory on both sides.
    if (method == Method::Qlora) CHECK(t.model.dequant.size() == (size_t)cfg.dim * std::max(cfg.q_dim(), cfg.ffn_dim));
    CHECK(e.workspace() == m.activations);
    CHECK(e.total() == m.total());
    // The trainer's own spec gives the same estimate.
    CHECK(memory_estimate(trainer_memory_spec(t)).total() == e.total());
    trainer_step(t);  // a step allocates nothing the estimate missed
    CHECK(trainer_memory(t).total() == m.total());
}

TEST_CASE("estimate equals the trainer's bytes on the CPU: full/lora/qlora x recompute on/off, GQA, bias, untied, QK-norm") {
    ModelConfig tiny = config_preset("tiny");  // GQA 4/2 heads, tied embeddings
    ModelConfig qwen = tiny;                    // q/k/v bias, untied head, no GQA
    qwen.qkv_bias = 1;
    qwen.tied_embeddings = 0;
    qwen.n_kv_heads = qwen.n_heads;
    qwen.n_layers = 3;
    LoraConfig four, all;
    four.rank = 4;
    all.rank = 8;
    all.targets = lora_parse_targets("all");
    for (const ModelConfig& c : {tiny, qwen, config_preset("tiny-qwen3"), config_preset("tiny-gemma3")})
        for (bool rc : {false, true}) {
            check_cpu(c, Method::Full, rc, four);
            check_cpu(c, Method::Lora, rc, four);
            check_cpu(c, Method::Lora, rc, all);
            check_cpu(c, Method::Qlora, rc, four);
            check_cpu(c, Method::Qlora, rc, all);
        }
    // 8-bit moments: the tensors of 4096 parameters and more in codes with their absmax values,
    // the others in FP32 (the tiny model's embedding, and at r 64 its adapters, are of the first kind)
    LoraConfig wide = all;
    wide.rank = 64;
    for (const ModelConfig& c : {tiny, config_preset("tiny-gemma3")}) {
        check_cpu(c, Method::Full, false, four, true);
        check_cpu(c, Method::Lora, false, wide, true);
        check_cpu(c, Method::Qlora, true, wide, true);
    }
}

// 8-bit Adam's bytes (Dettmers et al. 2022): a byte per state and an FP32 absmax per 256, so 2 + 1/32
// bytes a parameter instead of 8 for the two moments; for full fine-tuning of 7B on the GPU the
// optimizer state (with the FP32 master) drops from 16 to 6 bytes a parameter, tensors under 4096
// parameters (the norms) keeping FP32 moments.
TEST_CASE("published: 8-bit Adam keeps 2 bytes of state a parameter instead of 8") {
    MemorySpec s = rule_of_thumb(1000000000), states32 = s;
    s.optimizer = OptimKind::AdamW8bit;
    CHECK(memory_estimate(s).optimizer == 2 * (1000000000ull + 3906250 * 4));
    // bitsandbytes' "75% less" than 32-bit states: 1 − 2.03125/8
    memory_set_uniform_bytes(states32, 4);
    states32.master_bytes = 0;
    CHECK(1.0 - (double)memory_estimate(s).optimizer / memory_estimate(states32).optimizer == doctest::Approx(0.74609375));
    MemorySpec p;
    p.cfg = config_preset("llama-2-7b");
    memory_set_backend(p, Backend::Cuda);
    const size_t fp32 = memory_estimate(p).optimizer;
    p.optimizer = OptimKind::AdamW8bit;
    const size_t eight = memory_estimate(p).optimizer;
    const double n = (double)p.cfg.num_params();
    MESSAGE("llama-2-7b full fine-tuning, optimizer state + FP32 master: AdamW " << fp32 / 1e9 << " GB, 8-bit "
                                                                               << eight / 1e9 << " GB");
    CHECK(fp32 == (size_t)n * 12);
    CHECK(eight / n == doctest::Approx(4 + 2 + 1.0 / 32).epsilon(1e-3));  // master, 2 codes, 2 absmax per 256
}

TEST_CASE("estimate, CUDA: full fine-tuning's norm-gradient partials, a row per block of rmsnorm_backward's grid, for the hidden-size norms or QK-norm, whichever is larger") {
    // qwen3-0.6b at 32 tokens: the hidden-size norms have 32 rows of 1024, a block each; the per-head
    // q norm has 512 rows of 128, 16 to a block of the short-row kernel: 32 blocks of 128 floats.
    MemorySpec s = cuda_spec("qwen3-0.6b", Method::Full, 1, 32);
    const size_t cublas = (size_t)32 << 20, attention = 32 * 16 * 4;
    CHECK(rmsnorm_backward_blocks(32, 1024) == 32);
    CHECK(rmsnorm_backward_blocks(32 * 16, 128) == 32);
    CHECK(memory_estimate(s).backend == cublas + attention + 32 * 1024 * 4);
    // A hidden size of 64 (the heads keep 16 of 128; such rows go 32 to a block): the q norm's partials
    // are the larger, and at 512 tokens its grid reaches the 512 blocks.
    s.cfg.dim = 64;
    CHECK(memory_estimate(s).backend == cublas + attention + 32 * 128 * 4);
    s.T = 512;
    CHECK(rmsnorm_backward_blocks(512 * 16, 128) == 512);
    CHECK(memory_estimate(s).backend == cublas + 512 * 16 * 4 + 512 * 128 * 4);
    // The grid by row width: 8 rows of 256 a block (32 lanes a row), 16 of 100 or 128, 32 of 64 or
    // less, one row a block above 256.
    CHECK(rmsnorm_backward_blocks(100, 256) == 13);
    CHECK(rmsnorm_backward_blocks(100, 100) == 7);
    CHECK(rmsnorm_backward_blocks(100, 64) == 4);
    CHECK(rmsnorm_backward_blocks(100, 257) == 100);
    CHECK(rmsnorm_backward_blocks(100000, 257) == 512);
}

// The embedding backward's sort and run sums (embedding_backward_scratch_bytes) share the reduce slot
// and are its largest user at many tokens of a narrow model: smollm2-135m at 16 × 4096 tokens, 2.5 MB
// against the norms' 1.2 MB (512 blocks of 576 floats).
TEST_CASE("estimate, CUDA: full fine-tuning's reduce slot holds the embedding backward's scratch where it is the largest") {
    MemorySpec s = cuda_spec("smollm2-135m", Method::Full, 16, 4096);
    const size_t N = 16 * 4096, cublas = (size_t)32 << 20, attention = N * s.cfg.n_heads * 4;
    const size_t emb = embedding_backward_scratch_bytes(N, s.cfg.dim);
    CHECK(emb == 4 * N * 4 + 256 * (N / 256) * 4 + 2 * (N / 256) * s.cfg.dim * 4);
    CHECK(emb > (size_t)rmsnorm_backward_blocks(N, s.cfg.dim) * s.cfg.dim * 4);
    CHECK(memory_estimate(s).backend == cublas + attention + emb);
}

// The LoRA partials scratch (kernels.h) is sized per call for that call's rows, and the scratch only
// grows: with dynamic padding (or an epoch's short last batch) the rows vary from step to step, so
// the size at B·T, which the estimate counts, must be the largest any batch of up to B·T rows asks
// for, and at least what the kernels' splits use (lora_u_parts, lora_dA_stripes). With the exact
// need it was not: e.g. Llama-2-7B's q,k,v group at r = 8 and 4096 rows asked 2,359,296 bytes, at
// 2304 rows 2,433,024.
TEST_CASE("estimate, CUDA: the LoRA partials scratch at B·T is the most any batch of up to B·T rows uses") {
    struct Shape {
        int dim, q_dim, ffn;
    };
    for (Shape sh : {Shape{576, 576, 1536}, Shape{2048, 2048, 8192}, Shape{4096, 4096, 11008}, Shape{640, 1024, 2048},
                     Shape{1792, 1792, 4096}, Shape{8192, 8192, 22016}})
        for (int r : {4, 8, 12, 64})
            for (std::pair<int, int> g : {std::pair<int, int>{3, sh.dim}, {1, sh.q_dim}, {2, sh.dim}, {1, sh.ffn}}) {
                const int G = g.first, C = g.second;
                CAPTURE(C);
                CAPTURE(G);
                CAPTURE(r);
                size_t prev = 0;
                int bad_need = 0, bad_monotone = 0;
                for (long long N = 1; N <= 8192; N++) {
                    const LoraSplit u = lora_u_parts(N, C, G, r), d = lora_dA_stripes(N, C, G, r);
                    const size_t need = std::max<size_t>(u.count > 1 ? (size_t)u.count * N * G * r * 4 : 0,
                                                 (size_t)d.count * G * r * C * 4);
                    const size_t have = lora_partials_bytes(N, C, G, r);
                    bad_need += have < need;
                    bad_monotone += have < prev;
                    prev = std::max(prev, have);
                }
                CHECK(bad_need == 0);
                CHECK(bad_monotone == 0);
            }
}

// What ./train suggests when a run does not fit: each listed change fits, in the documented order,
// and only changes that fit are listed.
TEST_CASE("memory_fixes: the single changes of flags that bring a run under the capacity") {
    MemorySpec s = cuda_spec("llama-2-7b", Method::Lora, 6, 2048);
    s.lora.rank = 16;
    auto total = [](MemorySpec x) { return memory_estimate(x).total(); };
    MemorySpec r = s, b3 = s, q = s, o = s;
    r.recompute = true;
    b3.B = 3;
    q.method = Method::Qlora;
    memory_set_backend(q, Backend::Cuda);
    o.offload_optimizer = true;
    REQUIRE(total(r) < total(b3));  // 7B at 6 x 2048: recompute saves more than halving the batch
    REQUIRE(total(q) < total(s));
    REQUIRE(total(o) < total(s));

    // Room for exactly the recomputed run: only --recompute fits (halving the batch does not; qlora
    // and offloading save far less than the activations).
    vector<MemoryFix> fixes = memory_fixes(s, 2, total(r));
    REQUIRE(fixes.size() == 1);
    CHECK(fixes[0].flags == "--recompute");
    CHECK(fixes[0].total == total(r));
    // Room for batch 3 (a divisor of 6: 4 and 5 are skipped, so the examples per step stay 6 x 2):
    // both, recompute first; the accumulation doubles.
    fixes = memory_fixes(s, 2, total(b3));
    REQUIRE(fixes.size() == 2);
    CHECK(fixes[1].flags == "--batch-size 3 --grad-accum 4");
    CHECK(fixes[1].total == total(b3));
    // Room for a little less than the recomputed run: recompute needs a smaller batch as well.
    fixes = memory_fixes(s, 1, total(r) - 1);
    REQUIRE(!fixes.empty());
    CHECK(fixes[0].flags == "--recompute --batch-size 3 --grad-accum 2");
    // Room for everything but the activations' last byte: each change listed fits.
    fixes = memory_fixes(s, 1, total(s) - 1);
    vector<std::string> flags;
    for (const MemoryFix& f : fixes) {
        CHECK(f.total <= total(s) - 1);
        flags.push_back(f.flags);
    }
    CHECK(flags == vector<std::string>{"--recompute", "--batch-size 3 --grad-accum 2", "--method qlora",
                                       "--optimizer adamw8bit", "--offload-optimizer"});
    // A run with --stochastic-rounding: trainer_init refuses it beside --offload-optimizer, so the
    // change that fits is to offload without it, not to add one flag (which would only fail).
    fixes = memory_fixes(s, 1, total(o), true);
    REQUIRE(!fixes.empty());
    CHECK(fixes.back().flags == "--offload-optimizer without --stochastic-rounding");
    // Nothing fits a capacity under the weights alone.
    CHECK(memory_fixes(s, 1, memory_estimate(s).weights / 2).empty());
}

// A Buffer's release runs in its destructor (and the noexcept move): a backend release that throws
// there, as cuda_release does when cudaFree reports a sticky error after a kernel fault, must not
// end the program in std::terminate while the error that caused it is unwinding (its message, the
// one run_main prints, would be lost), nor when it is the only error. In a child process, so that
// a terminate shows as its exit status rather than ending the test run.
TEST_CASE("Buffer: a release that throws in the destructor neither terminates nor hides the error being unwound") {
    static Ops failing;
    failing = cpu_ops();
    failing.release = [](void*) { throw std::runtime_error("cudaFree: an illegal memory access was encountered"); };
    fflush(stdout);
    fflush(stderr);
    const pid_t pid = fork();
    REQUIRE(pid >= 0);
    if (pid == 0) {
        if (!freopen("/dev/null", "w", stderr)) _exit(4);  // the warnings are expected
        { Buffer quiet(failing, 64, Mem::scratch); }  // no error in flight: reported, not thrown
        try {
            Buffer b(failing, 64, Mem::activations);
            Buffer moved(failing, 64, Mem::activations);
            moved = Buffer(failing, 64, Mem::activations);  // the move releases the old block
            throw std::runtime_error("CUDA error at model.cpp: the first error");
        } catch (const std::exception& e) {
            _exit(std::string(e.what()).find("the first error") != std::string::npos ? 0 : 2);
        }
        _exit(3);
    }
    int status = 0;
    REQUIRE(waitpid(pid, &status, 0) == pid);
    CHECK(WIFEXITED(status));
    CHECK((WIFEXITED(status) ? WEXITSTATUS(status) : -1) == 0);
}
