// The whole model on the CUDA backend against the CPU oracle: logits, a training step's loss and
// every trainable gradient (LoRA, QLoRA, full), and the trainer's promises on the GPU (recompute
// equals no recompute, resume is bit-exact). Skipped without a GPU (tests/main.cpp).
//
// Both backends get the same weights: every weight and adapter is rounded to BF16 first, so the
// CPU computes in FP32 from exactly the values the GPU stores, and the differences measured are
// those of BF16 activations and kernels, not of the inputs.
#include <algorithm>
#include <cmath>
#include <cstring>
#include <filesystem>

#include "model/generate.h"
#include "model/memory.h"
#include "model/trainer.h"
#include "tests/test_util.h"

using std::vector;
namespace fs = std::filesystem;

namespace {

// BF16 activations through two layers and a loss: per-tensor relative L2 error of gradients and
// logits. A BF16 rounding is 2^-9 relative; each layer adds a few, and the backward compounds the
// forward's: 3e-2 leaves room for that while a wrong index or a dropped term gives errors near 1.
const double kRelL2 = 3e-2;
// The loss is a mean over ~100 tokens of FP32 log-sum-exps over BF16 logits; on the CUDA emulator
// it differs from the CPU's by ~4e-5 relative, the gradients by at most 1.4e-2 (RESULTS.md).
const double kLossRel = 1e-3;

float bf16_round(float x) { return bf16_to_f32(f32_to_bf16(x)); }
void round_bf16(vector<float>& v) {
    for (float& x : v) x = bf16_round(x);
}

const Ops& gpu() { return *cuda_ops(); }

// The architectures the GPU tests run: LLaMA's shape with q/k/v bias; Qwen3's (QK-norm, no bias,
// dim not heads · head_dim); Gemma 3's (that, with GeGLU, post norms, scaled embeddings, scores by
// query_pre_attn_scalar^-1/2, a 7-key window with its own RoPE base in layer 0, linear RoPE scaling).
// kTiedLlama: LLaMA's with the LM head tied to the embedding (SmolLM2, Llama 3.2).
enum Variant { kLlama = 0, kQwen3 = 1, kGemma3 = 2, kTiedLlama = 3 };
const char* variant_name(int v) { return v == kQwen3 ? " qk-norm" : v == kGemma3 ? " gemma3" : v == kTiedLlama ? " tied" : ""; }

// hd 64 exercises the tensor-core attention; GQA 4/2, untied head, vocabulary not a multiple of any tile.
ModelConfig gpu_config(int head_dim = 64, int variant = kLlama) {
    ModelConfig c;
    c.vocab_size = 301; c.dim = 4 * head_dim; c.n_layers = 2; c.n_heads = 4; c.n_kv_heads = 2; c.head_dim = head_dim;
    c.ffn_dim = 3 * head_dim + 8; c.max_seq_len = 128; c.rope_theta = 10000.0f; c.norm_eps = 1e-5f;
    c.tied_embeddings = variant == kTiedLlama; c.qkv_bias = 1;
    if (variant == kQwen3 || variant == kGemma3) c.qkv_bias = 0, c.qk_norm = 1, c.dim = 3 * head_dim + 16;
    if (variant == kGemma3) {
        c.mlp_act = GLU_GELU_TANH, c.post_norms = 1, c.embed_scale = std::sqrt((float)c.dim);
        c.query_pre_attn_scalar = (float)(head_dim + 16), c.sliding_window = 7, c.sliding_pattern = 2;
        c.rope_local_theta = 1000.0f, c.rope_scale_factor = 2.0f;
    }
    return c;
}

vector<Example> gpu_examples(int n, int vocab, uint64_t seed) {
    Rng r(seed);
    vector<Example> ex(n);
    for (Example& e : ex) {
        int len = 9 + (int)(r.next_u64() % 40);
        for (int t = 0; t < len; t++) {
            e.tokens.push_back((int)(r.next_u64() % vocab));
            e.weights.push_back(t > len / 3 ? 1.0f : 0.0f);
        }
    }
    return ex;
}

// A trainer on `ops` whose model, data and settings depend only on the arguments.
void setup(Trainer& t, const Ops& ops, Method method, int head_dim, bool recompute, const std::string& out = "",
           bool offload = false, bool stochastic_rounding = false, const char* targets = "all", float dropout = 0.1f,
           int n_examples = 5, Padding padding = Padding::longest, int variant = kLlama, int rank = 8, int batch = 3,
           bool eight_bit = false, bool dora = false, uint32_t saves = 0, bool tokens = false, bool some_layers = false) {
    ModelConfig c = gpu_config(head_dim, variant);
    model_init_random(t.model, c, 7);
    round_bf16(t.model.params);
    TrainConfig tc;
    tc.method = method;
    tc.lora.rank = rank;
    tc.lora.targets = lora_parse_targets(targets);
    tc.lora.dropout = dropout;
    tc.lora.use_dora = dora;
    tc.lora.save_modules = saves;
    if (some_layers) tc.lora.layers = {1};  // layers_to_transform: the second of two
    if (tokens) {  // trainable tokens: five rows of each table (a tied model's one), in no order
        tc.lora.tokens[LORA_TABLE_EMBED] = {3, 250, 17, 96, 200};
        if (!c.tied_embeddings) tc.lora.tokens[LORA_TABLE_LM_HEAD] = {250, 8, 17, 299, 40};
    }
    if (method == Method::Qlora) model_quantize_nf4(t.model);
    if (method != Method::Full) {
        model_add_lora(t.model, tc.lora, 3);
        // B ≠ 0, so every adapter path carries signal (dA ≠ 0); DoRA's magnitudes move off the norms.
        for (size_t i = 0; i < t.model.adapters.size(); i++) t.model.adapters[i] += 0.02f * Rng(i + 11).normal();
        round_bf16(t.model.adapters);
        model_put_token_rows(t.model, cpu_ops());  // the tables follow the moved token rows
    }
    tc.batch.batch_size = batch;
    tc.batch.max_seq_len = 64;
    tc.batch.packing = true;  // segment masks and restarting positions
    tc.batch.padding = padding;
    tc.grad_accum = 2;
    tc.max_steps = 10;
    tc.optim.lr = 2e-3f;
    tc.optim.warmup_steps = 2;
    tc.optim.weight_decay = 0.01f;
    tc.recompute = recompute;
    tc.offload_optimizer = offload;
    tc.optim.stochastic_rounding = stochastic_rounding;
    tc.optim.eight_bit = eight_bit;
    tc.out_dir = out;
    tc.keep_last = 1;
    t.train = gpu_examples(17, c.vocab_size, n_examples);
    trainer_init(t, tc, ops);
}

// Relative L2 error of `got` against `want` over [off, off+n).
double rel_l2(const vector<float>& got, const vector<float>& want, size_t off, size_t n) {
    double d = 0, w = 0;
    for (size_t i = off; i < off + n; i++) {
        d += ((double)got[i] - want[i]) * ((double)got[i] - want[i]);
        w += (double)want[i] * want[i];
    }
    return std::sqrt(d / std::max(w, 1e-30));
}

// Every trainable tensor's gradient, CUDA vs CPU, after one step on each.
// Dropout 0 takes the adapters of each linear group (q, k, v; gate, up) together (stacked on CUDA).
void compare_step(Method method, int head_dim, float dropout = 0.1f, int variant = kLlama, float neftune_alpha = 0.0f,
                  bool dora = false, uint32_t saves = 0, bool tokens = false, bool some_layers = false) {
    Trainer c, g;
    setup(c, cpu_ops(), method, head_dim, false, "", false, false, "all", dropout, 5, Padding::longest, variant, 8, 3,
          false, dora, saves, tokens, some_layers);
    setup(g, gpu(), method, head_dim, false, "", false, false, "all", dropout, 5, Padding::longest, variant, 8, 3,
          false, dora, saves, tokens, some_layers);
    c.cfg.neftune_alpha = g.cfg.neftune_alpha = neftune_alpha;
    StepResult rc = trainer_step(c), rg = trainer_step(g);
    MESSAGE(std::string(method_name(method)) << " hd " << head_dim << " dropout " << dropout << std::string(variant_name(variant)) << ": loss cpu " << rc.loss << " cuda " << rg.loss << ", grad norm cpu "
                                << rc.grad_norm << " cuda " << rg.grad_norm);
    CHECK(std::fabs(rg.loss - rc.loss) <= kLossRel * std::fabs(rc.loss));
    vector<float> gc = trainer_gradients(c), gg = trainer_gradients(g);
    double worst = 0;
    std::string worst_name;
    int bad = 0;
    for (const TensorInfo& t : c.model.trainable_tensors()) {
        double e = rel_l2(gg, gc, t.offset, t.numel);
        if (e > worst) worst = e, worst_name = t.name;
        if (e > kRelL2 && bad++ < 8) MESSAGE("gradient of " << t.name << ": relative L2 error " << e);
    }
    MESSAGE(std::string(method_name(method)) << " hd " << head_dim << ": worst gradient error " << worst << " (" << worst_name << ")");
    CHECK(bad == 0);
    CHECK(rel_l2(gg, gc, 0, gc.size()) <= kRelL2);
    if (!tokens) return;
    // After the update the GPU's tables hold the token rows of its BF16 copy of the adapters, bit for bit.
    const Model& m = g.model;
    for (int t = 0; t < LORA_NUM_TABLES; t++)
        for (size_t i = 0; i < m.lora.tokens[t].size(); i++) {
            vector<float> row(m.cfg.dim), adapter_row(m.cfg.dim);
            const size_t table = t == LORA_TABLE_EMBED ? m.off.embed : m.off.lm_head;
            gpu().download(row.data(), gpu().at(m.device->params.a(), table + (size_t)m.lora.tokens[t][i] * m.cfg.dim), m.cfg.dim);
            gpu().download(adapter_row.data(), gpu().at(m.device->adapters.a(), m.lora_layout.tokens[t] + i * m.cfg.dim), m.cfg.dim);
            CHECK(row == adapter_row);
        }
}

vector<float> masters(Trainer& t) {
    model_download(t.model);
    return t.model.has_adapters() ? t.model.adapters : t.model.params;
}

// No workspace buffer is read before it is written: every activation and gradient buffer is filled
// with 0xFF bytes (NaN in FP32 and in BF16) before each step, and the losses and gradients must
// equal, bit for bit, those of a clean trainer. The first projection into a gradient overwrites it
// instead of adding to a zeroed buffer (model.cpp), and which projection comes first depends on
// the adapted targets: "k,up" and "down,o" adapt a later member of a group and not the first, and
// with dropout the adapter's dx goes through the dropout kernel's overwrite. A buffer read before it
// is written turns the step into NaN; zero-filled buffers, as allocated, would hide it (the CPU
// oracle would read the same stale zeros).
void poison(const Buffer& b) {
    if (!b.p || !b.bytes) return;
    vector<unsigned char> nan_bytes(b.bytes, 0xFF);
    b.ops->to_device(b.p, nan_bytes.data(), b.bytes);
}
void poison_workspace(const Workspace& ws) {
    for (const Buffer* b : {&ws.resid, &ws.final_ln, &ws.dresid, &ws.dln, &ws.datt, &ws.dq, &ws.dk, &ws.dv, &ws.dh,
                            &ws.dgate, &ws.dup, &ws.dfinal, &ws.dq_pre, &ws.dk_pre, &ws.logits, &ws.hc, &ws.dhc,
                            &ws.token_dlogits})
        poison(*b);
    for (const LayerActs& a : ws.acts)
        for (const Buffer* b : a.buffers()) poison(*b);
}
void check_poisoned_workspace(const Ops& ops, int head_dim, int variant) {
    struct Case {
        Method method;
        const char* targets;
        float dropout;
    };
    const Case cases[] = {{Method::Full, "all", 0.0f},
                          {Method::Lora, "k,up", 0.1f},
                          {Method::Lora, "down,o", 0.0f},
                          {Method::Lora, "q,v,gate,up", 0.0f},  // groups of 2, stacked on CUDA
                          {Method::Qlora, "q,v,gate", 0.1f}};
    for (const Case& c : cases)
        for (bool recompute : {false, true}) {
            CAPTURE(method_name(c.method));
            CAPTURE(c.targets);
            CAPTURE(c.dropout);
            CAPTURE(recompute);
            CAPTURE(variant);
            Trainer poisoned, clean;
            setup(poisoned, ops, c.method, head_dim, recompute, "", false, false, c.targets, c.dropout, 5, Padding::longest,
                  variant);
            setup(clean, ops, c.method, head_dim, false, "", false, false, c.targets, c.dropout, 5, Padding::longest, variant);
            for (int step = 0; step < 2; step++) {
                poison_workspace(poisoned.ws);
                double lp = trainer_step(poisoned).loss, lc = trainer_step(clean).loss;
                CHECK(std::isfinite(lp));
                CHECK(lp == lc);
                CHECK(trainer_gradients(poisoned) == trainer_gradients(clean));
            }
        }
}

}  // namespace

// The same promise on the CPU oracle (here, beside its CUDA twin below, for the shared helpers).
TEST_CASE("model: no workspace buffer is read before it is written (poisoned with NaN: the same bits), CPU") {
    for (int variant : {kLlama, kQwen3, kGemma3}) check_poisoned_workspace(cpu_ops(), 16, variant);
}

TEST_SUITE("cuda") {

TEST_CASE("cuda model: no workspace buffer is read before it is written (poisoned with NaN: the same bits)") {
    for (int variant : {kLlama, kQwen3, kGemma3}) check_poisoned_workspace(gpu(), 64, variant);
}

TEST_CASE("cuda model: logits of a sequence match the CPU (hd 64 and hd 16, GQA, bias, untied; Qwen3's QK-norm; "
          "Gemma 3 at hd 64 and 256)") {
    struct Case { int hd, variant; };
    for (Case k : {Case{64, kLlama}, Case{16, kLlama}, Case{64, kQwen3}, Case{64, kGemma3}, Case{256, kGemma3}}) {
        const int hd = k.hd;
        Model m;
        model_init_random(m, gpu_config(hd, k.variant), 2);
        round_bf16(m.params);
        vector<int32_t> tok;
        for (int i = 0; i < 77; i++) tok.push_back((i * 37 + 5) % m.cfg.vocab_size);
        vector<float> want(tok.size() * m.cfg.vocab_size), got(want.size());
        model_logits(m, tok.data(), (int)tok.size(), want.data());
        model_upload(m, gpu());
        model_logits(m, tok.data(), (int)tok.size(), got.data(), gpu());
        double e = rel_l2(got, want, 0, want.size());
        MESSAGE("hd " << hd << std::string(variant_name(k.variant)) << ": logits relative L2 error " << e);
        CHECK(e <= kRelL2);
    }
}

TEST_CASE("cuda model: a LoRA step's loss and every adapter gradient match the CPU (hd 64, 128, 16)") {
    compare_step(Method::Lora, 64);
    compare_step(Method::Lora, 128);  // the hd-128 attention tilings (32 queries per warp in the forward)
    compare_step(Method::Lora, 16);
    compare_step(Method::Lora, 64, 0.0f);  // the stacked groups
}

// NEFTune's noise is drawn element by element from the same hash on both backends: the CUDA step sees
// the CPU's noisy embeddings (one BF16 rounding apart), after Gemma's scale too.
TEST_CASE("cuda model: a LoRA step with NEFTune's noise matches the CPU (LLaMA, Gemma 3)") {
    compare_step(Method::Lora, 64, 0.1f, kLlama, 5.0f);
    compare_step(Method::Lora, 64, 0.1f, kGemma3, 5.0f);
}

TEST_CASE("cuda model: a QLoRA step (NF4 base dequantized on the GPU) matches the CPU") {
    compare_step(Method::Qlora, 64);
    compare_step(Method::Qlora, 64, 0.0f);  // the stacked groups beside the dequantized weights
}

// DoRA: the magnitudes' gradients and A's and B's through the rescaled z, on LLaMA (q, k, v with
// a bias), QLoRA (the norms of the dequantized weights) and Gemma 3 (the post norms after o and down).
TEST_CASE("cuda model: a DoRA step matches the CPU (LoRA with dropout and without, QLoRA, Gemma 3)") {
    compare_step(Method::Lora, 64, 0.1f, kLlama, 0.0f, true);
    compare_step(Method::Lora, 64, 0.0f, kLlama, 0.0f, true);
    compare_step(Method::Qlora, 64, 0.0f, kLlama, 0.0f, true);
    compare_step(Method::Lora, 64, 0.1f, kGemma3, 0.0f, true);
}

TEST_CASE("cuda model: a full fine-tuning step's gradients match the CPU") { compare_step(Method::Full, 64); }

// modules_to_save: the embedding's gradient (the sorted embedding backward) and the LM head's (its
// weight-gradient GEMM) into the adapters' gradients: untied both, a tied model's one tensor (both
// gradients into one slot), the embedding alone, the LM head alone.
TEST_CASE("cuda model: a LoRA step with the embedding and LM head trained (modules_to_save) matches the CPU") {
    compare_step(Method::Lora, 64, 0.1f, kLlama, 0.0f, false, LORA_SAVE_EMBED | LORA_SAVE_LM_HEAD);
    compare_step(Method::Lora, 64, 0.0f, kTiedLlama, 0.0f, false, LORA_SAVE_EMBED);
    compare_step(Method::Qlora, 64, 0.0f, kGemma3, 0.0f, false, LORA_SAVE_EMBED);
    compare_step(Method::Lora, 64, 0.0f, kQwen3, 0.0f, true, LORA_SAVE_LM_HEAD);
}

// Trainable tokens: the embedding's rows (the batch positions of the tokens gathered, then the
// embedding backward into k slots) and the LM head's (k columns of dlogits, then a small GEMM), two
// lists on an untied model, one on a tied one (both gradients into one slot); beside a saved LM head.
TEST_CASE("cuda model: a LoRA step with trainable token rows (trainable_token_indices) matches the CPU") {
    compare_step(Method::Lora, 64, 0.1f, kLlama, 0.0f, false, 0, true);
    compare_step(Method::Lora, 64, 0.0f, kTiedLlama, 0.0f, false, 0, true);
    compare_step(Method::Qlora, 64, 0.0f, kGemma3, 0.0f, false, 0, true);
}

// layers_to_transform: adapters on the second layer of two, the first's projections plain GEMMs (with
// dropout, and DoRA on QLoRA's dequantized weights).
TEST_CASE("cuda model: a LoRA step on some layers only matches the CPU") {
    compare_step(Method::Lora, 64, 0.1f, kLlama, 0.0f, false, 0, false, true);
    compare_step(Method::Qlora, 64, 0.0f, kGemma3, 0.0f, true, 0, false, true);
}

TEST_CASE("cuda model: Qwen3's QK-norm: LoRA, QLoRA and full steps match the CPU (hd 128 and 64)") {
    compare_step(Method::Lora, 128, 0.1f, kQwen3);
    compare_step(Method::Qlora, 64, 0.0f, kQwen3);
    compare_step(Method::Full, 64, 0.0f, kQwen3);  // the norm weights' own gradients
}

TEST_CASE("cuda model: Gemma 3: LoRA, QLoRA and full steps match the CPU (hd 64, 128; 256 on the FP32 attention)") {
    compare_step(Method::Lora, 128, 0.1f, kGemma3);
    compare_step(Method::Qlora, 64, 0.0f, kGemma3);
    compare_step(Method::Full, 64, 0.0f, kGemma3);  // the post norms' and the embedding's gradients
    compare_step(Method::Lora, 256, 0.0f, kGemma3);  // Gemma 3's own head dim
}

TEST_CASE("cuda model: recompute on and off give bit-identical gradients and updates") {
    struct Run {
        Method method;
        float dropout;  // 0: LoRA's stacked groups
        bool dora;
    };
    for (Run r : {Run{Method::Lora, 0.1f, false}, Run{Method::Lora, 0.0f, false}, Run{Method::Full, 0.1f, false},
                  Run{Method::Lora, 0.1f, true}}) {
        Trainer a, b;
        setup(a, gpu(), r.method, 64, false, "", false, false, "all", r.dropout, 5, Padding::longest, kLlama, 8, 3,
              false, r.dora);
        setup(b, gpu(), r.method, 64, true, "", false, false, "all", r.dropout, 5, Padding::longest, kLlama, 8, 3,
              false, r.dora);
        for (int s = 0; s < 3; s++) {
            CHECK(trainer_step(a).loss == trainer_step(b).loss);
            CHECK(trainer_gradients(a) == trainer_gradients(b));
        }
        CHECK(masters(a) == masters(b));
        CHECK(trainer_memory(b).activations < trainer_memory(a).activations);
    }
}

// With --stochastic-rounding too: its random bits come from (seed, step), so the resumed run draws
// the same ones; and they change the run (the losses part from the round-to-nearest run's).
// And full fine-tuning with 8-bit moments (the embedding and projections in codes, the norms in FP32).
TEST_CASE("cuda model: 10 steps equal 4 steps + checkpoint + resume 6 steps, bit for bit") {
    struct Run {
        Method method;
        bool sr;
        float dropout;  // 0: LoRA's stacked groups
        bool eight_bit;
    };
    vector<double> nearest_lora;
    for (Run r : {Run{Method::Lora, false, 0.1f, false}, Run{Method::Qlora, false, 0.0f, false},
                  Run{Method::Lora, true, 0.1f, false}, Run{Method::Full, false, 0.0f, true}}) {
        std::string dir = temp_dir(std::string("cuda-") + method_name(r.method) + (r.sr ? "_sr" : "") + (r.eight_bit ? "_8bit" : ""));
        auto make = [&](Trainer& t, const std::string& out) {
            setup(t, gpu(), r.method, 64, false, out, false, r.sr, "all", r.dropout, 5, Padding::longest, kLlama, 8, 3,
                  r.eight_bit);
        };
        Trainer full;
        make(full, dir + "/a");
        vector<double> losses;
        while (full.step < full.total_steps) losses.push_back(trainer_step(full).loss);
        {
            Trainer first;
            make(first, dir + "/b");
            for (int s = 0; s < 4; s++) CHECK(trainer_step(first).loss == losses[s]);
            trainer_save_checkpoint(first);
        }
        Trainer second;
        make(second, dir + "/b");
        trainer_load_checkpoint(second, find_latest_checkpoint(dir + "/b"));
        REQUIRE(second.step == 4);
        for (int s = 4; s < 10; s++) CHECK(trainer_step(second).loss == losses[s]);
        CHECK(masters(full) == masters(second));
        if (r.method == Method::Lora && !r.sr) nearest_lora = losses;
        if (r.sr) {
            CHECK(losses[0] == nearest_lora[0]);  // the first step's forward precedes any rounding
            CHECK(losses.back() != nearest_lora.back());
        }
    }
}

// The rounding's random bits change from step to step (and from one run of tensors to the next):
// with a fixed key a slowly moving weight would be rounded the same way every step, the bias that
// stochastic rounding is there to remove. lr 0 keeps the masters, set off the BF16 grid, fixed.
TEST_CASE("cuda model: --stochastic-rounding draws new bits every step") {
    Trainer t;
    setup(t, gpu(), Method::Lora, 64, false, "", false, true);
    t.cfg.optim.lr = 0.0f;
    const size_t n = t.model.num_trainable();
    vector<float> m = masters(t);
    for (size_t i = 0; i < n; i++) m[i] *= 1.0f + 1e-3f * (float)((int)(i % 7) - 3);
    gpu().to_device(model_masters(t.model, gpu()), m.data(), n * sizeof(float));
    auto compute_copy = [&] {
        vector<float> c(n);
        gpu().download(c.data(), model_compute_copy(t.model, gpu()), n);
        return c;
    };
    trainer_step(t);
    const vector<float> a = compute_copy();
    trainer_step(t);
    const vector<float> b = compute_copy();
    CHECK(masters(t) == m);
    size_t differ = 0;
    for (size_t i = 0; i < n; i++) differ += a[i] != b[i];
    MESSAGE("BF16 weights rounded differently in two steps: " << differ << " of " << n);
    CHECK(differ > n / 10);
}

TEST_CASE("cuda model: --offload-optimizer runs AdamW on the host, as on the GPU, and resumes bit for bit") {
    std::string dir = temp_dir("cuda-offload");
    Trainer on_gpu, offloaded, both;
    // The host's AdamW uploads its result rounded to nearest: no stochastic rounding there.
    CHECK_THROWS_WITH(setup(both, gpu(), Method::Lora, 64, false, "", true, true),
                      doctest::Contains("--stochastic-rounding rounds in the GPU's AdamW"));
    setup(on_gpu, gpu(), Method::Lora, 64, false);
    setup(offloaded, gpu(), Method::Lora, 64, false, dir + "/a", true);
    // The same kernels up to the update; the two AdamW kernels differ only where a compiler fuses a
    // multiply-add (about an ulp), which can flip a BF16 rounding of the compute copy now and then.
    for (int s = 0; s < 3; s++) {
        double a = trainer_step(on_gpu).loss, b = trainer_step(offloaded).loss;
        if (s == 0) CHECK(a == b);
        CHECK(std::fabs(a - b) <= 1e-4 * std::fabs(a));
    }
    vector<float> ma = masters(on_gpu), mb = masters(offloaded);
    double e = rel_l2(mb, ma, 0, ma.size());
    MESSAGE("offloaded AdamW vs the GPU's after 3 steps: masters relative L2 " << e);
    CHECK(e <= 1e-5);

    // No optimizer state on the GPU; 12 bytes per trainable parameter on the host, as estimated.
    MemoryUse used = trainer_memory(offloaded);
    MemoryEstimate est = memory_estimate(trainer_memory_spec(offloaded));
    CHECK(used.optimizer == 0);
    CHECK(est.optimizer == 0);
    CHECK(used.offloaded == 12 * offloaded.model.num_trainable());
    CHECK(est.host == used.offloaded);
    CHECK(used.total() + 12 * offloaded.model.num_trainable() == trainer_memory(on_gpu).total());

    // Checkpoint at step 3, resume, run to 10: the same as 10 straight steps.
    vector<double> losses;
    {
        Trainer straight;
        setup(straight, gpu(), Method::Lora, 64, false, dir + "/b", true);
        while (straight.step < straight.total_steps) losses.push_back(trainer_step(straight).loss);
        mb = masters(straight);
    }
    trainer_save_checkpoint(offloaded);
    Trainer resumed;
    setup(resumed, gpu(), Method::Lora, 64, false, dir + "/a", true);
    trainer_load_checkpoint(resumed, find_latest_checkpoint(dir + "/a"));
    REQUIRE(resumed.step == 3);
    for (int s = 3; s < 10; s++) CHECK(trainer_step(resumed).loss == losses[s]);
    CHECK(masters(resumed) == mb);
}

// The backend's own scratch (cuBLASLt workspace, attention's D, the LoRA scratch, reductions), grown
// by a step and an evaluation from nothing, is what the estimator says, to the byte; with and
// without LoRA dropout (without it the groups' A and dA are stacked, and with it evaluation still
// stacks A), and for QLoRA on a subset and full fine-tuning.
TEST_CASE("cuda model: the backend's scratch after a step and an evaluation equals the estimate") {
    struct Run {
        Method method;
        const char* targets;
        float dropout;
    };
    for (Run r : {Run{Method::Lora, "all", 0.0f}, Run{Method::Lora, "all", 0.1f}, Run{Method::Qlora, "q,v,up", 0.0f},
                  Run{Method::Full, "all", 0.0f}}) {
        CAPTURE(method_name(r.method));
        CAPTURE(r.targets);
        CAPTURE(r.dropout);
        gpu().release_scratch();  // earlier cases grew the slots to their own sizes
        Trainer t;
        // Enough examples that every micro-batch is B full rows of T = max_seq_len tokens: the shape
        // the estimate is for.
        setup(t, gpu(), r.method, 64, false, "", false, false, r.targets, r.dropout, 60, Padding::max_length);
        trainer_step(t);
        t.val = gpu_examples(23, t.model.cfg.vocab_size, 4);
        (void)trainer_evaluate(t, t.val);
        CHECK(trainer_memory(t).backend == memory_estimate(trainer_memory_spec(t)).backend);
    }
}

// Every category of the estimate against what the trainer holds on the GPU after a step and an
// evaluation: the weights (NF4 parts as uploaded), adapters, gradients, optimizer state (FP32
// masters, or nothing with --offload-optimizer), the workspace and the backend's scratch; for
// QLoRA, recompute, offloading, QK-norm, Gemma 3's post norms, batch 1 and a rank that is not a
// multiple of 16.
TEST_CASE("cuda model: every category of the estimate equals the trainer's bytes (qlora, recompute, offload, QK-norm, post norms, batch 1, rank 12, 8-bit moments, DoRA, saved modules, trainable tokens, some layers)") {
    struct Run {
        Method method;
        const char* targets;
        float dropout;
        bool recompute, offload;
        int variant, rank, batch;
        bool eight_bit, dora;
        uint32_t saves = 0;
        bool tokens = false, some_layers = false;
    };
    for (Run r : {Run{Method::Qlora, "all", 0.1f, false, false, kLlama, 8, 3, false, false},
                  Run{Method::Qlora, "q,v,up", 0.0f, true, false, kQwen3, 12, 1, false, false},
                  Run{Method::Lora, "all", 0.1f, true, true, kGemma3, 12, 2, false, false},
                  Run{Method::Full, "all", 0.0f, false, false, kQwen3, 8, 1, false, false},
                  Run{Method::Full, "all", 0.0f, true, true, kGemma3, 8, 2, false, false},
                  Run{Method::Full, "all", 0.0f, false, false, kLlama, 8, 2, true, false},
                  Run{Method::Lora, "all", 0.1f, false, true, kQwen3, 64, 1, true, false},
                  Run{Method::Qlora, "q,v,gate,up", 0.1f, true, false, kLlama, 8, 2, false, true},
                  Run{Method::Lora, "q,v", 0.1f, false, false, kLlama, 8, 3, false, false, LORA_SAVE_EMBED | LORA_SAVE_LM_HEAD},
                  Run{Method::Lora, "all", 0.0f, false, false, kTiedLlama, 8, 2, false, false, LORA_SAVE_LM_HEAD},
                  Run{Method::Qlora, "all", 0.0f, true, true, kGemma3, 8, 2, true, false, LORA_SAVE_EMBED},
                  Run{Method::Lora, "q,v", 0.1f, false, false, kLlama, 8, 3, false, false, 0, true},
                  Run{Method::Qlora, "all", 0.0f, true, true, kTiedLlama, 8, 2, true, false, 0, true},
                  Run{Method::Lora, "all", 0.1f, true, false, kQwen3, 8, 2, false, true, 0, false, true}}) {
        CAPTURE(method_name(r.method));
        CAPTURE(r.targets);
        CAPTURE(r.variant);
        CAPTURE(r.rank);
        CAPTURE(r.batch);
        CAPTURE(r.recompute);
        CAPTURE(r.offload);
        CAPTURE(r.eight_bit);
        CAPTURE(r.dora);
        gpu().release_scratch();
        Trainer t;
        setup(t, gpu(), r.method, 64, r.recompute, "", r.offload, false, r.targets, r.dropout, 60, Padding::max_length,
              r.variant, r.rank, r.batch, r.eight_bit, r.dora, r.saves, r.tokens, r.some_layers);
        trainer_step(t);
        t.val = gpu_examples(7, t.model.cfg.vocab_size, 4);
        (void)trainer_evaluate(t, t.val);
        const MemoryUse used = trainer_memory(t);
        const MemoryEstimate est = memory_estimate(trainer_memory_spec(t));
        CHECK(used.weights == est.weights);
        CHECK(used.adapters == est.adapters);
        CHECK(used.gradients == est.gradients);
        CHECK(used.optimizer == est.optimizer);
        CHECK(used.activations == est.workspace());
        // The embedding backward of trainable token rows runs over the batch positions holding one of
        // the tokens, and its scratch grows to the most a batch has had: the estimate's bound is all N.
        if (r.tokens) CHECK(used.backend <= est.backend);
        else CHECK(used.backend == est.backend);
        CHECK(used.offloaded == est.host);
    }
}

TEST_CASE("cuda model: greedy decoding with the KV cache equals the argmax of the full forward") {
    for (int variant : {kLlama, kQwen3, kGemma3}) {  // Gemma 3: 11 positions, past its window of 7
        CAPTURE(variant);
        Model m;
        model_init_random(m, gpu_config(64, variant), 9);
        round_bf16(m.params);
        model_upload(m, gpu());
        vector<int32_t> prompt = {5, 17, 99, 3, 250};
        SampleOptions so;
        so.max_new_tokens = 6;
        vector<int32_t> out = generate(m, {prompt}, so, {}, nullptr, gpu())[0];
        REQUIRE(out.size() == 6);
        // Each generated token must be the argmax of the full-sequence logits at its position (both on the GPU).
        vector<int32_t> seq = prompt;
        seq.insert(seq.end(), out.begin(), out.end());
        vector<float> logits(seq.size() * m.cfg.vocab_size);
        model_logits(m, seq.data(), (int)seq.size(), logits.data(), gpu());
        int agree = 0;
        for (size_t i = 0; i < out.size(); i++) {
            const float* row = logits.data() + (prompt.size() - 1 + i) * m.cfg.vocab_size;
            agree += (int)(std::max_element(row, row + m.cfg.vocab_size) - row) == out[i];
        }
        MESSAGE("decode vs full forward argmax: " << agree << "/" << out.size());
        CHECK(agree >= (int)out.size() - 1);  // a near-tie may flip under BF16 between the two attention kernels
    }
}

// Trainable token rows through a checkpoint on the GPU: their rows go into the tables after every
// update (with stochastic rounding, the rounded copy's; with the optimizer offloaded, from the host's
// masters through the upload), and a resume puts them back, so 4 steps + checkpoint + resume equal the
// straight run bit for bit, with accumulated micro-batches. Then the device tables hold the BF16
// copy's rows and, after model_download, the host's tables the FP32 masters'.
TEST_CASE("cuda model: trainable token rows resume bit for bit (stochastic rounding, offload, QLoRA tied and Gemma 3)") {
    struct Run {
        Method method;
        bool sr, offload;
        int variant;
    };
    int index = 0;
    for (Run r : {Run{Method::Lora, true, false, kLlama}, Run{Method::Lora, false, true, kLlama},
                  Run{Method::Qlora, false, false, kTiedLlama}, Run{Method::Qlora, true, false, kGemma3}}) {
        CAPTURE(index);
        const std::string dir = temp_dir("cuda-tokens-resume-" + std::to_string(index++));
        auto make = [&](Trainer& t, const std::string& out) {
            setup(t, gpu(), r.method, 64, false, out, r.offload, r.sr, "all", 0.1f, 5, Padding::longest, r.variant, 8, 3,
                  false, false, 0, true);
        };
        Trainer straight;
        make(straight, dir + "/a");
        vector<double> losses;
        while (straight.step < straight.total_steps) losses.push_back(trainer_step(straight).loss);
        {
            Trainer first;
            make(first, dir + "/b");
            for (int s = 0; s < 4; s++) CHECK(trainer_step(first).loss == losses[s]);
            trainer_save_checkpoint(first);
            trainer_step(first);  // lost with the "kill"
        }
        Trainer resumed;
        make(resumed, dir + "/b");
        trainer_load_checkpoint(resumed, find_latest_checkpoint(dir + "/b"));
        REQUIRE(resumed.step == 4);
        for (int s = 4; s < (int)losses.size(); s++) CHECK(trainer_step(resumed).loss == losses[s]);
        CHECK(masters(straight) == masters(resumed));
        const Model& m = resumed.model;
        for (int t = 0; t < LORA_NUM_TABLES; t++)
            for (size_t i = 0; i < m.lora.tokens[t].size(); i++) {
                const size_t table = (t == LORA_TABLE_EMBED ? m.off.embed : m.off.lm_head) + (size_t)m.lora.tokens[t][i] * m.cfg.dim;
                const size_t rows = m.lora_layout.tokens[t] + i * m.cfg.dim;
                vector<float> row(m.cfg.dim), adapter_row(m.cfg.dim);
                gpu().download(row.data(), gpu().at(m.device->params.a(), table), m.cfg.dim);
                gpu().download(adapter_row.data(), gpu().at(m.device->adapters.a(), rows), m.cfg.dim);
                CHECK(row == adapter_row);
                CHECK(std::equal(m.adapters.begin() + rows, m.adapters.begin() + rows + m.cfg.dim, m.params.begin() + table));
            }
    }
}

}  // TEST_SUITE
