// Our trainer against the one users compare it with: three training steps of transformers (+ peft)
// + torch.optim.AdamW on the tiny Llama, Gemma 3 and Qwen3 (tests/fixtures/train/gen_train_steps.py),
// replayed on the CPU backend from the same weights and data. Each step's loss, gradient norm and learning rate,
// the first step's gradients and the trained weights after the third step must agree: the loss's
// normalisation over response tokens, the LoRA scale and orientation, every weight's gradient in
// full fine-tuning (embedding and norms included), clipping, AdamW's bias correction and decoupled
// weight decay (not on norms), the cosine schedule.
#include <doctest/doctest.h>

#include <cmath>
#include <functional>

#include "data/json.h"
#include "model/import.h"
#include "model/lora_peft.h"
#include "model/safetensors.h"
#include "model/trainer.h"
#include "model/util.h"

namespace {

const std::string kFixtures = "tests/fixtures/train/";

// max |a - b| / max |b|: the difference on the scale of the reference's values
double relative_max_diff(const float* a, size_t n, const std::vector<float>& b) {
    REQUIRE(n == b.size());
    double d = 0, scale = 0;
    for (size_t i = 0; i < b.size(); i++) {
        d = std::max(d, (double)std::fabs(a[i] - b[i]));
        scale = std::max(scale, (double)std::fabs(b[i]));
    }
    return d / scale;
}

const char* const kModels[] = {"tiny_llama", "tiny_gemma3", "tiny_qwen3"};

ImportedModel source(const std::string& model) { return import_hf_dir("tests/fixtures/convert/" + model + "_hf"); }

// An adapter directory of the fixture (PEFT's layout), as our flat adapter vector.
std::vector<float> adapter_at(const ModelConfig& cfg, const std::string& dir, LoraConfig* lc_out = nullptr) {
    LoraConfig lc;
    std::vector<float> a;
    lora_load_any(kFixtures + dir, cfg, lc, a);
    if (lc_out) *lc_out = lc;
    return a;
}

// A safetensors file of every model tensor under its Hugging Face name, in our parameter layout.
// `weights`: Gemma's norm weights as we store them, with the 1 of its (1 + w) added (not gradients).
std::vector<float> params_at(const ModelConfig& cfg, const std::string& file, bool weights) {
    SafetensorsSet st;
    safetensors_add_file(st, kFixtures + file);
    const ParamLayout layout = param_layout(cfg);
    std::vector<float> p(layout.total);
    for (const TensorInfo& t : layout.tensors) {
        const SafeTensor* s = st.find(t.name);
        REQUIRE_MESSAGE(s, t.name);
        REQUIRE(s->numel == (int64_t)t.numel);
        st.read_f32(*s, p.data() + t.offset);
    }
    if (weights && cfg.architecture(file) == "gemma3") gemma_norm_shift(cfg, p, 1.0f);
    return p;
}

// Replays the fixture's steps in `dir` with the trainer `setup` made (the model and method set, the
// examples in), in three layouts of the same two examples: one padded batch as the reference's, two
// micro-batches accumulated (the loss normalised over the whole step's response tokens, as
// transformers' Trainer does since 4.46), and packed into one row (no attention across them).
void replay(const std::string& dir, const std::function<void(Trainer&, TrainConfig&)>& setup,
            const std::vector<float>& first_grads, const std::vector<float>& trained,
            const std::function<const float*(const Trainer&)>& weights, double weights_tolerance,
            double loss_tolerance = 1e-6) {
    const JsonValue ref = json_parse(read_file(kFixtures + dir + "/steps.json"));
    const std::vector<JsonValue>& steps = ref.get("steps")->array;
    struct Variant {
        const char* name;
        int batch, accum;
        bool packing;
    };
    for (Variant v : {Variant{"one batch of 2", 2, 1, false}, Variant{"2 micro-batches of 1", 1, 2, false},
                      Variant{"packed into one row", 1, 1, true}}) {
        INFO(v.name);
        Trainer t;
        TrainConfig tc;
        setup(t, tc);
        for (const JsonValue& e : ref.get("examples")->array) {
            Example ex;
            for (const JsonValue& id : e.get("tokens")->array) ex.tokens.push_back((int32_t)id.integer);
            for (const JsonValue& w : e.get("weights")->array) ex.weights.push_back((float)w.number);
            t.train.push_back(ex);
        }
        tc.batch.batch_size = v.batch;
        tc.grad_accum = v.accum;
        tc.batch.packing = v.packing;
        tc.batch.max_seq_len = 32;
        tc.max_steps = (int)steps.size();
        tc.optim.lr = (float)ref.get("lr")->number;
        tc.optim.weight_decay = (float)ref.get("weight_decay")->number;
        tc.optim.max_grad_norm = (float)ref.get("max_grad_norm")->number;
        tc.optim.schedule = Schedule::cosine;
        trainer_init(t, tc, cpu_ops());
        for (size_t s = 0; s < steps.size(); s++) {
            StepResult r = trainer_step(t);
            INFO("step " << s + 1);
            CHECK(r.loss == doctest::Approx(steps[s].get("loss")->number).epsilon(loss_tolerance));
            CHECK(r.grad_norm == doctest::Approx(steps[s].get("grad_norm")->number).epsilon(5e-5));  // Gemma 3 LoRA: 1.4e-5
            CHECK(r.lr == doctest::Approx(steps[s].get("lr")->number).epsilon(1e-6));
            if (s == 0) {  // the gradient of the mean loss, before clipping
                const double d = relative_max_diff(t.grads.f(), t.model.num_trainable(), first_grads);
                MESSAGE(dir << ", " << std::string(v.name) << ": step 1 gradients, max |ours - torch| = " << d << " of the largest");
                CHECK(d < weights_tolerance);
            }
        }
        // Adam divides each gradient by its running RMS, so a weight whose gradients are near
        // AdamW's eps (1e-8), or cancel over the steps, moves by an amount that rounding decides. The
        // tiny Gemma 3's adapters are such (gradients down to 2e-8): in torch alone, noise of 2e-7 of
        // the largest gradient moves them by 2.8e-5 as a whole (||diff|| / ||w||), where the Llama's
        // move by 2.0e-6; ours differ from torch's by 4e-5 to 6e-5 (Gemma 3 LoRA) and by at most
        // 6e-7 (the rest). The weights are compared as a whole, where those few weigh little and a
        // mistake, which moves them all, weighs fully: no weight decay on the adapters gives 2.0e-4
        // in every model (LoRA's tolerance: 1e-4), none on the embedding 9e-5 to 1.3e-4 in full
        // fine-tuning (its tolerance: 1e-5).
        double diff2 = 0, ref2 = 0, worst = 0;
        const float* w = weights(t);
        REQUIRE(t.model.num_trainable() == trained.size());
        for (size_t i = 0; i < trained.size(); i++) {
            diff2 += ((double)w[i] - trained[i]) * ((double)w[i] - trained[i]);
            ref2 += (double)trained[i] * trained[i];
            worst = std::max(worst, (double)std::fabs(w[i] - trained[i]));
        }
        const double d = std::sqrt(diff2 / ref2);
        MESSAGE(dir << ", " << std::string(v.name) << ": weights after 3 steps, ||ours - torch|| / ||torch|| = " << d
                    << " (the largest difference " << worst << ")");
        CHECK(d < weights_tolerance);
        // Trainable token rows are a few rows beside the adapters, which would hide them in the whole:
        // compared on their own too.
        for (const TensorInfo& ti : t.model.trainable_tensors()) {
            if (!lora_is_token_rows(ti)) continue;
            const std::vector<float> ours(w + ti.offset, w + ti.offset + ti.numel),
                torch(trained.begin() + ti.offset, trained.begin() + ti.offset + ti.numel);
            const double rows = relative_max_diff(ours.data(), ours.size(), torch);
            MESSAGE(dir << ", " << std::string(v.name) << ": " << ti.name << " after 3 steps, max |ours - torch| = " << rows
                        << " of the largest");
            CHECK(rows < weights_tolerance);
        }
    }
}

// The LoRA fixture `dir` (PEFT adapter directories init/, grads/, final/, r 4) on `model`, replayed
// with B at lr × lora_b_lr_ratio.
void replay_lora(const std::string& model, const std::string& dir, float lora_b_lr_ratio, double loss_tolerance = 1e-6) {
    const ModelConfig cfg = source(model).cfg;
    auto setup = [&](Trainer& t, TrainConfig& tc) {
        ImportedModel h = source(model);
        model_init(t.model, h.cfg, std::move(h.params));
        std::vector<float> init = adapter_at(t.model.cfg, dir + "/init", &tc.lora);
        REQUIRE(tc.lora.rank == 4);
        model_set_lora(t.model, tc.lora, init);
        tc.method = Method::Lora;
        tc.optim.lora_b_lr_ratio = lora_b_lr_ratio;
    };
    replay(dir, setup, adapter_at(cfg, dir + "/grads"), adapter_at(cfg, dir + "/final"),
           [](const Trainer& t) { return t.model.adapters.data(); }, 1e-4, loss_tolerance);
}

}  // namespace

TEST_CASE("three LoRA steps equal transformers + peft + torch AdamW's (loss, gradients, clipping, schedule, weights)") {
    for (const std::string model : kModels) replay_lora(model, model + "_lora", 1.0f);
}

// LoRA+ as PEFT builds it (create_loraplus_optimizer): B in a parameter group at lr × 16.
TEST_CASE("three LoRA+ steps equal PEFT's create_loraplus_optimizer's (B at lr x 16)") {
    replay_lora("tiny_llama", "tiny_llama_loraplus", 16.0f);
}

// DoRA as PEFT trains it (use_dora, dropout 0): A, B and the magnitudes, the row norms held constant
// in the backward; the magnitudes start 10% off the norms and B ≠ 0, so no row scale is 1.
TEST_CASE("three DoRA steps equal PEFT's use_dora (A, B and the magnitudes)") {
    LoraConfig lc;
    adapter_at(source("tiny_llama").cfg, "tiny_llama_dora/init", &lc);
    CHECK(lc.use_dora == 1);
    replay_lora("tiny_llama", "tiny_llama_dora", 1.0f);
}

// modules_to_save as PEFT trains them: the embedding and the LM head as copies of the base beside the
// adapters, decayed as weights; on the tied Gemma 3 one tensor for both (ensure_weight_tying), whose
// gradient sums the embedding's and the LM head's.
TEST_CASE("three LoRA steps with the embedding and LM head trained equal PEFT's modules_to_save") {
    for (const std::string model : {"tiny_llama", "tiny_gemma3"}) {
        INFO(model);
        LoraConfig lc;
        adapter_at(source(model).cfg, model + "_save/init", &lc);
        CHECK(lc.save_modules == (LORA_SAVE_EMBED | LORA_SAVE_LM_HEAD));
        const LoraLayout L = lora_layout(source(model).cfg, lc);
        CHECK((L.embed == L.lm_head) == (model == "tiny_gemma3"));
        // (Gemma 3's adapters, whose gradients are near AdamW's eps, move the loss of step 2 by 1.3e-6
        // when packed; the Llama's stay within 1e-6)
        replay_lora(model, model + "_save", 1.0f, model == "tiny_gemma3" ? 2e-6 : 1e-6);
    }
}

// trainable_token_indices as PEFT trains them: five tokens' rows (three of the examples', two absent)
// of the Llama's embedding and LM head, each its own tensor, and of the tied Gemma 3's one table,
// whose rows get the embedding's and the LM head's gradients; decayed as weights.
TEST_CASE("three LoRA steps with trainable token rows equal PEFT's trainable_token_indices") {
    for (const std::string model : {"tiny_llama", "tiny_gemma3"}) {
        INFO(model);
        LoraConfig lc;
        const ModelConfig cfg = source(model).cfg;
        adapter_at(cfg, model + "_tokens/init", &lc);
        CHECK(lc.tokens[LORA_TABLE_EMBED].size() == 5);
        CHECK(lc.tokens[LORA_TABLE_LM_HEAD].size() == (cfg.tied_embeddings ? 0u : 5u));
        replay_lora(model, model + "_tokens", 1.0f, model == "tiny_gemma3" ? 2e-6 : 1e-6);
    }
}

// layers_to_transform as PEFT trains it: adapters on the Llama's layer 1 of 2 and Gemma 3's 1 and 4 of 6.
TEST_CASE("three LoRA steps on some layers only equal PEFT's layers_to_transform") {
    for (const std::string model : {"tiny_llama", "tiny_gemma3"}) {
        INFO(model);
        LoraConfig lc;
        adapter_at(source(model).cfg, model + "_layers/init", &lc);
        CHECK(lc.layers == (model == "tiny_llama" ? std::vector<int32_t>{1} : std::vector<int32_t>{1, 4}));
        replay_lora(model, model + "_layers", 1.0f, model == "tiny_gemma3" ? 2e-6 : 1e-6);
    }
}

TEST_CASE("three full fine-tuning steps equal transformers + torch AdamW's (every weight, embedding and norms included)") {
    for (const std::string model : kModels) {
        const ModelConfig cfg = source(model).cfg;
        auto setup = [&](Trainer& t, TrainConfig& tc) {
            ImportedModel h = source(model);
            model_init(t.model, h.cfg, std::move(h.params));
            tc.method = Method::Full;
        };
        replay(model + "_full", setup, params_at(cfg, model + "_full/grads.safetensors", false),
               params_at(cfg, model + "_full/final.safetensors", true), [](const Trainer& t) { return t.model.params.data(); },
               1e-5);
    }
}
