// The whole model: gradient checks through every layer, LoRA identities, and the invariances the
// trainer promises (accumulation, recompute).
#include <cmath>
#include <cstring>

#include "model/model.h"
#include "model/trainer.h"
#include "tests/test_util.h"

using std::vector;

// A small model that still has everything: GQA, q/k/v bias, untied head, several layers.
static ModelConfig micro_config(bool tied = false, bool bias = true) {
    ModelConfig c;
    c.vocab_size = 37; c.dim = 16; c.n_layers = 2; c.n_heads = 4; c.n_kv_heads = 2; c.head_dim = 4;
    c.ffn_dim = 24; c.max_seq_len = 64; c.rope_theta = 10000.0f; c.norm_eps = 1e-5f;
    c.tied_embeddings = tied; c.qkv_bias = bias;
    return c;
}

// Qwen3's shape of it: QK-norm, no bias, and a head_dim that is not dim / heads.
static ModelConfig micro_qwen3_config() {
    ModelConfig c = micro_config(true, false);
    c.head_dim = 6;
    c.qk_norm = 1;
    return c;
}

// Gemma 3's: QK-norm, GeGLU, post norms, scaled embeddings, scores by query_pre_attn_scalar^-1/2, a
// window of 2 keys in layer 0 (layer 1 global) with its own RoPE base, linear RoPE scaling in layer 1.
static ModelConfig micro_gemma3_config() {
    ModelConfig c = micro_qwen3_config();
    c.mlp_act = GLU_GELU_TANH;
    c.post_norms = 1;
    c.embed_scale = 4.0f;
    c.query_pre_attn_scalar = 5.0f;
    c.sliding_window = 2;
    c.sliding_pattern = 2;
    c.rope_local_theta = 1000.0f;
    c.rope_scale_factor = 2.0f;
    return c;
}

// Two rows: row 0 packs two examples, row 1 holds one example and padding. Mixed loss weights.
static Batch micro_batch(int vocab) {
    Batch b;
    b.resize(2, 7);
    Rng r(5);
    int seg[14] = {0, 0, 0, 0, 1, 1, 1, 0, 0, 0, 0, 0, -1, -1};
    int pos[14] = {0, 1, 2, 3, 0, 1, 2, 0, 1, 2, 3, 4, 0, 0};
    float w[14] = {0, 0.1f, 1, 0, 1, 1, 0, 0, 0, 1, 1, 0, 0, 0};
    for (int i = 0; i < 14; i++) {
        b.tokens[i] = (int)(r.next_u64() % vocab);
        b.targets[i] = (int)(r.next_u64() % vocab);
        b.seg[i] = seg[i];
        b.pos[i] = pos[i];
        b.weights[i] = w[i];
    }
    return b;
}

static Model random_model(const ModelConfig& c, uint64_t seed) {
    Model m;
    vector<float> p;
    model_init_random(c, p, seed);
    for (float& x : p) x *= 4.0f;  // std 0.08 instead of 0.02: gradients large enough to check in FP32
    model_init(m, c, std::move(p));
    // QK-norm weights of 4 would scale every attention logit by 16: a softmax that saturated makes
    // the loss too curved for finite differences. Around 1, as in trained Qwen3 models.
    Rng r(seed);
    for (const LayerOffsets& l : m.off.layers)
        for (size_t o : {l.q_norm, l.k_norm})
            for (int i = 0; o != SIZE_MAX && i < c.head_dim; i++) m.params[o + i] = 1.0f + 0.1f * r.normal();
    return m;
}

// The micro batch through `m` once: the analytic gradient g of loss / total weight, and loss(m),
// that loss at the model's current weights, for the finite differences. With NEFTune's noise the
// loss is the training pass's under the same key (the same noise), not the evaluation's.
struct MicroGrad {
    Batch b;
    Workspace ws;
    double W;
    vector<float> g;
    float neftune;
    static constexpr uint64_t kKey = 99;
    explicit MicroGrad(const Model& m, float neftune_alpha = 0.0f)
        : b(micro_batch(m.cfg.vocab_size)), W(b.total_weight()), g(m.num_trainable(), 0.0f), neftune(neftune_alpha) {
        workspace_init(ws, m, b.B, b.T, false);
        model_forward_backward(m, ws, b, g.data(), (float)(1.0 / W), kKey, neftune, cpu_ops());
    }
    double loss(const Model& m) {
        if (neftune == 0.0f) return model_forward_loss(m, ws, b, cpu_ops()) / W;
        vector<float> unused(g.size(), 0.0f);
        return model_forward_backward(m, ws, b, unused.data(), (float)(1.0 / W), kKey, neftune, cpu_ops()) / W;
    }
};

// grad_check on tensor t of the weights `w` (the model's params or adapters) with gradient g over the
// same layout: the tensor's values are moved in place and restored.
static void check_tensor(Model& m, MicroGrad& mg, vector<float>& w, const TensorInfo& t, int samples, float h) {
    vector<float> x(w.begin() + t.offset, w.begin() + t.offset + t.numel);
    vector<float> ga(mg.g.begin() + t.offset, mg.g.begin() + t.offset + t.numel);
    auto loss = [&] {
        std::copy(x.begin(), x.end(), w.begin() + t.offset);
        model_put_token_rows(m, cpu_ops());  // (trainable token rows: the forward reads the tables)
        return mg.loss(m);
    };
    grad_check(t.name.c_str(), x, ga, loss, 2e-3, samples, h);
    std::copy(x.begin(), x.end(), w.begin() + t.offset);
    model_put_token_rows(m, cpu_ops());
}

TEST_CASE("whole-model gradient check: full fine-tuning, every kind of weight") {
    ModelConfig nope = micro_config(true, false);  // SmolLM3's NoPE: layer 1 of 2 without RoPE
    nope.nope_interval = 2;
    for (const ModelConfig& c : {micro_config(false, true), micro_config(true, false), micro_qwen3_config(), nope,
                                 micro_gemma3_config()}) {
        CAPTURE(c.describe());
        Model m = random_model(c, 1);
        MicroGrad mg(m);
        // Sample every tensor: norms, biases, projections, embedding (the "input" of the model), head.
        for (const TensorInfo& t : m.layout.tensors) check_tensor(m, mg, m.params, t, 6, 2e-3f);
    }
}

// The trained copies of the embedding and the LM head (modules_to_save) beside LoRA on q, v, down:
// their gradients reach the copies (the gradient vector is the adapters'); on a tied model one
// tensor gets both.
TEST_CASE("whole-model gradient check: the embedding and LM head trained beside LoRA (modules_to_save)") {
    for (const ModelConfig& c : {micro_config(false, true), micro_config(true, false), micro_gemma3_config()}) {
        CAPTURE(c.describe());
        Model m = random_model(c, 3);
        LoraConfig lc;
        lc.rank = 3;
        lc.alpha = 6;
        lc.targets = lora_parse_targets("q,v,down");
        lc.save_modules = LORA_SAVE_EMBED | LORA_SAVE_LM_HEAD;
        model_add_lora(m, lc, 3);
        for (float& a : m.adapters) a += 0.05f * Rng((uint64_t)(&a - m.adapters.data())).normal();
        MicroGrad mg(m);
        int saved = 0;
        for (const TensorInfo& t : m.lora_layout.tensors) {
            if (!lora_is_saved_module(t)) continue;
            saved++;
            // (steps of 5e-4: at 2e-3 the tied embedding's curvature alone gives 3.3e-3 at one element)
            check_tensor(m, mg, m.adapters, t, 12, 5e-4f);
        }
        CHECK(saved == (c.tied_embeddings ? 1 : 2));
    }
}

// Trainable tokens (PEFT's trainable_token_indices) beside LoRA on q, down: the gradient of each
// listed row of the embedding (tokens of the batch, one repeated, one absent) and of the LM head
// (another list on the untied model) reaches the adapters' rows; a tied model's one list gets both.
TEST_CASE("whole-model gradient check: trainable token rows of the embedding and LM head beside LoRA") {
    for (const ModelConfig& c : {micro_config(false, true), micro_config(true, false), micro_gemma3_config()}) {
        CAPTURE(c.describe());
        Model m = random_model(c, 4);
        const Batch b = micro_batch(c.vocab_size);
        int32_t absent = 0;
        while (std::count(b.tokens.begin(), b.tokens.end(), absent)) absent++;
        LoraConfig lc;
        lc.rank = 3;
        lc.alpha = 6;
        lc.targets = lora_parse_targets("q,down");
        lc.tokens[LORA_TABLE_EMBED] = {b.tokens[9], absent, b.tokens[0]};
        if (b.tokens[9] == b.tokens[0]) lc.tokens[LORA_TABLE_EMBED].pop_back();
        if (!c.tied_embeddings) lc.tokens[LORA_TABLE_LM_HEAD] = {b.targets[2], 5};
        if (!c.tied_embeddings && b.targets[2] == 5) lc.tokens[LORA_TABLE_LM_HEAD].pop_back();
        const vector<float> base = m.params;
        model_add_lora(m, lc, 3);
        CHECK(m.params == base);  // the rows start as the base's
        for (float& a : m.adapters) a += 0.05f * Rng((uint64_t)(&a - m.adapters.data())).normal();
        model_put_token_rows(m, cpu_ops());
        MicroGrad mg(m);
        int tables = 0;
        for (const TensorInfo& t : m.lora_layout.tensors) {
            if (!lora_is_token_rows(t)) continue;
            tables++;
            check_tensor(m, mg, m.adapters, t, 12, 5e-4f);
        }
        CHECK(tables == (c.tied_embeddings ? 1 : 2));
        // Other adapters put the base's rows back; the merged base computes what the adapters do.
        const vector<float> trained = m.adapters;
        const LoraConfig with = m.lora;
        vector<float> merged = base;
        lora_merge(c, with, trained, merged);
        vector<float> logits_adapted(7 * c.vocab_size), logits_merged(7 * c.vocab_size);
        model_logits(m, b.tokens.data(), 7, logits_adapted.data());
        LoraConfig plain = lc;
        plain.tokens[0].clear(), plain.tokens[1].clear();
        model_add_lora(m, plain, 3);
        CHECK(m.params == base);
        Model mm;
        model_init(mm, c, merged);
        model_logits(mm, b.tokens.data(), 7, logits_merged.data());
        for (size_t i = 0; i < logits_merged.size(); i++) CHECK(logits_merged[i] == doctest::Approx(logits_adapted[i]).epsilon(1e-4));
    }
}

// model_init makes a fresh model: an earlier model's trainable token rows (and what put them there)
// do not reach the new weights when other adapters go in.
TEST_CASE("model_init after a model with trainable token rows keeps none of them") {
    const ModelConfig c = micro_config(true, false);
    Model m = random_model(c, 1);
    LoraConfig lc;
    lc.tokens[LORA_TABLE_EMBED] = {3, 7};
    model_add_lora(m, lc, 1);
    for (float& x : m.adapters) x += 0.5f;
    model_put_token_rows(m, cpu_ops());
    vector<float> other;
    model_init_random(c, other, 2);
    model_init(m, c, other);
    CHECK(!m.has_adapters());
    CHECK(m.params == other);
    model_add_lora(m, LoraConfig{}, 1);
    CHECK(m.params == other);
}

// An untied model's LM head row and embedding row, each zeroed, are found among the ids asked about.
TEST_CASE("untrained_tokens: rows under 1e-3 of the median norm, in the embedding or the untied LM head") {
    Model m = random_model(micro_config(false, true), 1);
    const int C = m.cfg.dim;
    std::fill_n(m.params.begin() + m.off.lm_head + 7 * C, C, 0.0f);
    std::fill_n(m.params.begin() + m.off.embed + 3 * C, C, 1e-6f);
    CHECK(untrained_tokens(m, {1, 7, 30, 7, 3, 9}) == vector<int32_t>{3, 7});
    CHECK(untrained_tokens(m, {1, 30}).empty());
}

// LoRA (or DoRA) r 3 on every target, with B ≠ 0 so that dA ≠ 0: each adapter value moved by
// N(0, spread²).
static void add_random_lora(Model& m, float spread = 0.3f, bool dora = false) {
    LoraConfig lc;
    lc.rank = 3;
    lc.alpha = 6;
    lc.targets = lora_parse_targets("all");
    lc.use_dora = dora;
    model_add_lora(m, lc, 3);
    for (float& a : m.adapters) a += spread * Rng((uint64_t)(&a - m.adapters.data())).normal();
}

TEST_CASE("whole-model gradient check: LoRA A and B on every target") {
    for (const ModelConfig& c : {micro_config(), micro_qwen3_config(), micro_gemma3_config()}) {
        CAPTURE(c.describe());
        Model m = random_model(c, 2);
        add_random_lora(m);
        MicroGrad mg(m);
        grad_check("all adapters", m.adapters, mg.g, [&] { return mg.loss(m); }, 5e-3, 120, 2e-3f);
    }
}

// LoRA on some layers only (PEFT's layers_to_transform): layer 1 of 2. Its gradients check against
// finite differences, and the model computes what LoRA on every layer does with layer 0's B = 0.
TEST_CASE("whole-model gradient check: LoRA on some layers only (layers_to_transform)") {
    for (const ModelConfig& c : {micro_config(), micro_gemma3_config()}) {
        CAPTURE(c.describe());
        Model m = random_model(c, 2);
        LoraConfig lc;
        lc.rank = 3;
        lc.alpha = 6;
        lc.targets = lora_parse_targets("all");
        lc.layers = {1};
        model_add_lora(m, lc, 3);
        for (float& a : m.adapters) a += 0.3f * Rng((uint64_t)(&a - m.adapters.data())).normal();
        MicroGrad mg(m);
        grad_check("layer 1's adapters", m.adapters, mg.g, [&] { return mg.loss(m); }, 5e-3, 60, 2e-3f);
        // The same adapters inside an every-layer layout, layer 0's A random and B zero.
        Model every = m;
        LoraConfig all = lc;
        all.layers.clear();
        model_add_lora(every, all, 4);
        const LoraLayout &L = m.lora_layout, &E = every.lora_layout;
        for (int t = 0; t < LORA_NUM_TARGETS; t++) {
            int in, out;
            lora_target_shape(c, (LoraTarget)t, in, out);
            CHECK(L.A(0, t) == SIZE_MAX);
            std::copy_n(m.adapters.begin() + L.A(1, t), (size_t)lc.rank * in, every.adapters.begin() + E.A(1, t));
            std::copy_n(m.adapters.begin() + L.B(1, t), (size_t)lc.rank * out, every.adapters.begin() + E.B(1, t));
        }
        const Batch& b = mg.b;
        vector<float> some(7 * c.vocab_size), each(7 * c.vocab_size);
        model_logits(m, b.tokens.data(), 7, some.data());
        model_logits(every, b.tokens.data(), 7, each.data());
        for (size_t i = 0; i < some.size(); i++) CHECK(some[i] == doctest::Approx(each[i]).epsilon(1e-5));
    }
}

// DoRA r 3 on every target: A, B random (half add_random_lora's spread: with the magnitudes held
// to the norms the loss curves faster in them), the magnitudes at the row norms (with that B) times
// 1 + N(0, 0.2²), so that no row scale m / norm is 1.
static void add_random_dora(Model& m) {
    add_random_lora(m, 0.15f, true);
    lora_init_magnitudes(m);
    Rng r(17);
    for (const TensorInfo& t : m.lora_layout.tensors)
        for (size_t i = 0; t.shape.size() == 1 && i < t.numel; i++) m.adapters[t.offset + i] *= 1.0f + 0.2f * r.normal();
}

// Every DoRA row norm ‖W + s·B·A‖ of the model's adapters, at the magnitudes' places of the adapter layout.
static vector<float> dora_norms(const Model& m) {
    Model copy = m;
    lora_init_magnitudes(copy);
    return copy.adapters;
}

// The paper (section 4.3) and PEFT treat the norm as a constant of the step: the gradient of A and B
// is that of the loss with each row's scale m / norm held where it is. The finite differences do
// the same by moving each magnitude with its norm when A or B moves; the magnitudes themselves get
// the loss's own gradient.
TEST_CASE("whole-model gradient check: DoRA's magnitudes, and A and B with the row scales held") {
    for (const ModelConfig& c : {micro_config(), micro_qwen3_config(), micro_gemma3_config()}) {
        CAPTURE(c.describe());
        Model m = random_model(c, 2);
        add_random_dora(m);
        MicroGrad mg(m);
        vector<size_t> mags, ab;  // indices into the adapters
        for (const TensorInfo& t : m.lora_layout.tensors)
            for (size_t i = 0; i < t.numel; i++) (t.shape.size() == 1 ? mags : ab).push_back(t.offset + i);
        auto pick = [&](const vector<size_t>& at, const vector<float>& from) {
            vector<float> out;
            for (size_t i : at) out.push_back(from[i]);
            return out;
        };
        const vector<float> saved = m.adapters, norms0 = dora_norms(m);
        vector<float> x = pick(mags, m.adapters);
        grad_check("DoRA magnitudes", x, pick(mags, mg.g), [&] {
            for (size_t k = 0; k < mags.size(); k++) m.adapters[mags[k]] = x[k];
            return mg.loss(m);
        }, 5e-3, 60, 2e-3f);
        m.adapters = saved;
        x = pick(ab, m.adapters);
        grad_check("DoRA A and B", x, pick(ab, mg.g), [&] {
            for (size_t k = 0; k < ab.size(); k++) m.adapters[ab[k]] = x[k];
            const vector<float> norms = dora_norms(m);
            for (size_t i : mags) m.adapters[i] = saved[i] / norms0[i] * norms[i];
            return mg.loss(m);
        }, 5e-3, 120, 5e-4f);
        m.adapters = saved;
    }
}

// transformers adds NEFTune's noise to the embedding module's output while training: uniform on
// ±alpha/sqrt(L·dim), L the batch's row length, after Gemma's sqrt(dim) scale (its scaled embedding
// module applies the scale). The gradient is that of the loss with the step's noise held fixed.
TEST_CASE("NEFTune: the gradient of the noisy loss; noise of alpha/sqrt(T*dim) after the scale; none in evaluation") {
    for (const ModelConfig& c : {micro_config(), micro_gemma3_config()}) {
        CAPTURE(c.describe());
        Model m = random_model(c, 2);
        add_random_lora(m);
        // alpha 1: noise of ±0.094 at T 7 × dim 16, the size of these embeddings (std 0.08), as alpha 5
        // is at SmolLM2's dim 576 and 100 tokens; larger makes the loss too curved for the differences
        const float alpha = 1.0f;
        MicroGrad clean(m), noisy(m, alpha);
        grad_check("adapters under NEFTune", m.adapters, noisy.g, [&] { return noisy.loss(m); }, 5e-3, 120, 2e-3f);
        const double noisy_loss = noisy.loss(m);  // leaves the noisy embeddings in resid's row 0
        CHECK(std::fabs(noisy_loss - clean.loss(m)) > 1e-6);
        // what the layers saw: the scaled embeddings plus the noise
        const int N = noisy.b.B * noisy.b.T, C = c.dim;
        vector<float> emb((size_t)N * C);
        cpu::embedding_forward(emb.data(), noisy.b.tokens.data(), m.params.data() + m.off.embed, N, C, c.embedding_scale());
        const double bound = alpha / std::sqrt((double)noisy.b.T * C);
        double most = 0;
        for (size_t i = 0; i < emb.size(); i++) most = std::max(most, std::fabs((double)noisy.ws.resid.f()[i] - emb[i]));
        CHECK(most <= bound * (1 + 1e-5));
        CHECK(most > 0.95 * bound);
        // another key (the trainer's next micro-batch or step) draws other noise
        const vector<float> row0(noisy.ws.resid.f(), noisy.ws.resid.f() + emb.size());
        vector<float> unused(noisy.g.size(), 0.0f);
        model_forward_backward(m, noisy.ws, noisy.b, unused.data(), 1.0f, MicroGrad::kKey + 1, alpha, cpu_ops());
        size_t same = 0;
        for (size_t i = 0; i < emb.size(); i++) same += noisy.ws.resid.f()[i] == row0[i];
        CHECK(same < emb.size() / 100);
        // evaluation draws none: the noisy model evaluates as the clean one, bit for bit
        CHECK(model_forward_loss(m, noisy.ws, noisy.b, cpu_ops()) == model_forward_loss(m, clean.ws, clean.b, cpu_ops()));
    }
}

TEST_CASE("LoRA and DoRA start at the base model; merged equals unmerged (with saved modules too)") {
    for (int variant : {0, 1, 2}) {  // LoRA, DoRA, LoRA with the embedding and LM head trained
        const int dora = variant == 1;
        CAPTURE(variant);
        ModelConfig c = micro_config();
        Model m = random_model(c, 4);
        int32_t tok[6] = {1, 5, 9, 2, 30, 7};
        vector<float> base(6 * c.vocab_size), with(6 * c.vocab_size), merged(6 * c.vocab_size);
        model_logits(m, tok, 6, base.data());
        LoraConfig lc;
        lc.rank = 4;
        lc.targets = lora_parse_targets("all");
        lc.use_dora = dora;
        lc.save_modules = variant == 2 ? LORA_SAVE_EMBED | LORA_SAVE_LM_HEAD : 0;
        model_add_lora(m, lc, 5);
        model_logits(m, tok, 6, with.data());
        if (!dora) {
            CHECK(memcmp(base.data(), with.data(), base.size() * sizeof(float)) == 0);
        } else {  // every row scale is m / norm = 1 exactly; only the bias is added in another order
            double d = 0;
            for (size_t i = 0; i < base.size(); i++) d = std::max(d, (double)std::fabs(with[i] - base[i]));
            CHECK(d < 1e-5);
        }

        for (size_t i = 0; i < m.adapters.size(); i++) m.adapters[i] += 0.1f * Rng(i + 99).normal();
        model_logits(m, tok, 6, with.data());
        double moved = 0;
        for (size_t i = 0; i < base.size(); i++) moved = std::max(moved, (double)std::fabs(with[i] - base[i]));
        CHECK(moved > 1e-2);  // the adapter really changes the output...
        Model mm;
        vector<float> p = m.params;
        lora_merge(c, m.lora, m.adapters, p);
        model_init(mm, c, p);
        model_logits(mm, tok, 6, merged.data());
        double diff = 0;
        for (size_t i = 0; i < base.size(); i++) diff = std::max(diff, (double)std::fabs(with[i] - merged[i]));
        MESSAGE("merged vs unmerged logits: max abs diff " << diff);
        CHECK(diff < 1e-4);  // ...and merging it into W gives the same function
    }
}

// Random examples with prompt (weight 0) and response (weight 1) parts, of varied lengths.
static vector<Example> random_examples(int n, int vocab, uint64_t seed) {
    Rng r(seed);
    vector<Example> ex(n);
    for (int i = 0; i < n; i++) {
        int len = 4 + (int)(r.next_u64() % 9);
        for (int t = 0; t < len; t++) {
            ex[i].tokens.push_back((int)(r.next_u64() % vocab));
            ex[i].weights.push_back(t == 0 ? 0.0f : t < len / 2 ? 0.0f : 1.0f);
        }
        ex[i].line = i + 1;
    }
    return ex;
}

static Trainer make_trainer(Method method, int batch, int accum, bool recompute, bool packing, int steps = 5,
                            const ModelConfig& c = micro_config()) {
    Trainer t;
    model_init_random(t.model, c, 7);
    TrainConfig tc;
    tc.method = method;
    tc.lora.rank = 2;
    tc.lora.dropout = 0.1f;
    tc.lora.targets = lora_parse_targets("all");
    if (method == Method::Lora) model_add_lora(t.model, tc.lora, 8);
    tc.batch.batch_size = batch;
    tc.batch.max_seq_len = 16;
    tc.batch.packing = packing;
    tc.grad_accum = accum;
    tc.max_steps = steps;
    tc.optim.lr = 1e-2f;
    tc.optim.weight_decay = 0.1f;
    tc.recompute = recompute;
    t.train = random_examples(40, c.vocab_size, 9);
    trainer_init(t, tc, cpu_ops());
    return t;
}

TEST_CASE("gradient accumulation: 1x8 and 4x2 micro-batches give the same gradients, padding included") {
    for (Method method : {Method::Full, Method::Lora}) {
        Trainer a = make_trainer(method, 8, 1, false, false), b = make_trainer(method, 2, 4, false, false);
        a.cfg.lora.dropout = b.cfg.lora.dropout = 0;  // masks are keyed per micro-batch
        a.model.lora.dropout = b.model.lora.dropout = 0;
        StepResult ra = trainer_step(a), rb = trainer_step(b);
        CHECK(ra.loss == doctest::Approx(rb.loss).epsilon(1e-5));
        vector<float> ga = trainer_gradients(a), gb = trainer_gradients(b);
        double worst = 0, scale = 0;
        for (size_t i = 0; i < ga.size(); i++) {
            worst = std::max(worst, (double)std::fabs(ga[i] - gb[i]));
            scale = std::max(scale, (double)std::fabs(ga[i]));
        }
        MESSAGE("accumulation: max |grad diff| " << worst << " of max |grad| " << scale);
        CHECK(worst <= 1e-5 * std::max(1.0, scale));
    }
}

TEST_CASE("recompute on and off give bit-identical gradients and updates") {
    for (Method method : {Method::Full, Method::Lora}) {
        for (const ModelConfig& c : {micro_config(), micro_qwen3_config(), micro_gemma3_config()}) {
            CAPTURE(c.describe());
            Trainer a = make_trainer(method, 4, 2, false, true, 5, c), b = make_trainer(method, 4, 2, true, true, 5, c);
            for (int s = 0; s < 3; s++) {
                StepResult ra = trainer_step(a), rb = trainer_step(b);
                CHECK(ra.loss == rb.loss);
                CHECK(trainer_gradients(a) == trainer_gradients(b));
            }
            CHECK(memcmp(a.model.trainable(), b.model.trainable(), a.model.num_trainable() * sizeof(float)) == 0);
            CHECK(b.ws.bytes() < a.ws.bytes());
        }
    }
}

TEST_CASE("lr schedule: warmup from lr/W, then transformers' linear and cosine decay; no step at lr 0") {
    OptimConfig oc;
    oc.lr = 1.0f;
    oc.warmup_steps = 2;
    const int T = 10, W = 2;
    const double pi = 3.14159265358979;
    for (Schedule s : {Schedule::linear, Schedule::cosine, Schedule::constant}) {
        oc.schedule = s;
        CHECK(lr_at(oc, 0, T) == doctest::Approx(0.5));  // (step + 1)/W: the first step already moves
        CHECK(lr_at(oc, 1, T) == doctest::Approx(1.0));
        for (int t = W; t < T; t++) {
            // get_{linear,cosine}_schedule_with_warmup: progress (t − W)/(T − W), never 1 on a step.
            const double progress = (double)(t - W) / (T - W);
            const double want = s == Schedule::linear   ? 1.0 - progress
                                : s == Schedule::cosine ? 0.5 * (1.0 + std::cos(pi * progress))
                                                        : 1.0;
            INFO(schedule_name(s) << " step " << t);
            CHECK(lr_at(oc, t, T) == doctest::Approx(want).epsilon(1e-5));
            CHECK(lr_at(oc, t, T) > 0.0f);
        }
    }
    // The floor: every decay step between lr·min_lr_ratio and lr, the last one above the floor.
    oc.schedule = Schedule::cosine;
    oc.min_lr_ratio = 0.1f;
    CHECK(lr_at(oc, W, T) == doctest::Approx(1.0));
    CHECK(lr_at(oc, T - 1, T) > 0.1f);
    CHECK(lr_at(oc, T - 1, T) == doctest::Approx(0.1 + 0.9 * 0.5 * (1.0 + std::cos(pi * 7.0 / 8.0))));
    // A run of one step, with or without warmup, trains at lr (it used to take lr 0: no update).
    oc.warmup_steps = 0;
    CHECK(lr_at(oc, 0, 1) == 1.0f);
    oc.schedule = Schedule::linear;
    CHECK(lr_at(oc, 0, 1) == 1.0f);
    oc.warmup_steps = 1;
    CHECK(lr_at(oc, 0, 1) == 1.0f);
}

// transformers' get_wsd_schedule(num_warmup_steps=2, num_decay_steps=4, num_training_steps=12,
// min_lr_ratio=0.1) gives, after its warmup, these learning rates (LambdaLR, lr 1):
TEST_CASE("lr schedule wsd: transformers' warmup-stable-decay, the cooldown over the last steps only") {
    const double want[12] = {0, 0, 1, 1, 1, 1, 1, 1, 1, 0.868198052, 0.55, 0.231801948};
    OptimConfig oc;
    oc.lr = 1.0f;
    oc.warmup_steps = 2;
    oc.min_lr_ratio = 0.1f;
    oc.schedule = Schedule::wsd;
    oc.decay_ratio = 4.0f / 12.0f;
    for (int t = 2; t < 12; t++) {
        INFO("step " << t);
        CHECK(lr_at(oc, t, 12) == doctest::Approx(want[t]).epsilon(1e-6));
    }
    // a cooldown longer than what follows the warmup is the cosine schedule (it starts where the warmup
    // ends, where transformers' would start inside the warmup); a one-step run trains at lr
    oc.decay_ratio = 1.0f;
    OptimConfig cosine = oc;
    cosine.schedule = Schedule::cosine;
    for (int t = 0; t < 12; t++) CHECK(lr_at(oc, t, 12) == lr_at(cosine, t, 12));
    oc.warmup_steps = 0;
    oc.decay_ratio = 0.01f;
    CHECK(lr_at(oc, 0, 1) == 1.0f);
    CHECK(lr_at(oc, 98, 100) == 1.0f);
    CHECK(lr_at(oc, 99, 100) == 1.0f);  // the one decay step is its first: progress 0
}

TEST_CASE("training drives the loss down: overfitting one small batch") {
    ModelConfig c = micro_config();
    Trainer t;
    model_init_random(t.model, c, 11);
    TrainConfig tc;
    tc.method = Method::Full;
    tc.batch.batch_size = 4;
    tc.batch.max_seq_len = 16;
    tc.max_steps = 150;
    tc.optim.lr = 1e-2f;
    tc.optim.schedule = Schedule::constant;
    t.train = random_examples(4, c.vocab_size, 12);
    trainer_init(t, tc, cpu_ops());
    double first = trainer_step(t).loss, last = first;
    while (t.step < t.total_steps) last = trainer_step(t).loss;
    MESSAGE("overfit: loss " << first << " -> " << last);
    CHECK(last < 0.05);
}

TEST_CASE("packing: the packed row gives every example the same loss as running it alone") {
    ModelConfig c = micro_config();
    Model m = random_model(c, 21);
    vector<Example> ex = random_examples(3, c.vocab_size, 22);
    vector<size_t> order = {0, 1, 2};
    BatchOptions packed;
    packed.batch_size = 1;
    packed.max_seq_len = 40;
    packed.packing = true;
    Batch b;
    REQUIRE(fill_batch(ex, order, 0, packed, b) == 3);  // all three share one row
    Workspace ws;
    workspace_init(ws, m, 3, 40, false);
    double together = model_forward_loss(m, ws, b, cpu_ops()), alone = 0;
    BatchOptions single = packed;
    single.packing = false;
    for (size_t i = 0; i < ex.size(); i++) {
        REQUIRE(fill_batch(ex, order, i, single, b) == 1);
        alone += model_forward_loss(m, ws, b, cpu_ops());
    }
    MESSAGE("packed " << together << " vs one by one " << alone);
    CHECK(together == doctest::Approx(alone).epsilon(1e-5));
}

TEST_CASE("training on real text: the loss goes down") {
    // The project's own README as a small real-text corpus, tokenized as raw bytes.
    std::string text = read_file("README.md");
    ModelConfig c = config_preset("tiny");
    Trainer t;
    model_init_random(t.model, c, 31);
    for (size_t s = 0; s + 65 <= text.size() && t.train.size() < 64; s += 64) {
        Example e;
        for (size_t i = s; i < s + 65; i++) {
            e.tokens.push_back((unsigned char)text[i]);
            e.weights.push_back(i > s ? 1.0f : 0.0f);
        }
        t.train.push_back(e);
    }
    t.val.assign(t.train.end() - 8, t.train.end());
    t.train.resize(t.train.size() - 8);
    TrainConfig tc;
    tc.method = Method::Full;
    tc.batch.batch_size = 8;
    tc.batch.max_seq_len = 65;
    tc.epochs = 4;
    tc.optim.lr = 3e-3f;
    trainer_init(t, tc, cpu_ops());
    double before = trainer_evaluate(t, t.val);
    while (t.step < t.total_steps) trainer_step(t);
    double after = trainer_evaluate(t, t.val);
    MESSAGE("held-out loss on README text: " << before << " -> " << after << " in " << t.total_steps << " steps");
    CHECK(after < before - 2.0);
}
