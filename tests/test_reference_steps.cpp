// Our trainer against the one users compare it with: three training steps of transformers (+ peft)
// + torch.optim.AdamW on the tiny Llama (tests/fixtures/train/gen_train_steps.py), replayed on the
// CPU backend from the same weights and data. Each step's loss, gradient norm and learning rate,
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

// An adapter directory of the fixture (PEFT's layout), as our flat adapter vector.
std::vector<float> adapter_at(const ModelConfig& cfg, const std::string& dir, LoraConfig* lc_out = nullptr) {
    LoraConfig lc;
    std::vector<float> a;
    lora_load_any(kFixtures + "tiny_llama_lora/" + dir, cfg, lc, a);
    if (lc_out) *lc_out = lc;
    return a;
}

// A safetensors file of every model tensor under its Hugging Face name, in our parameter layout.
std::vector<float> params_at(const ModelConfig& cfg, const std::string& file) {
    SafetensorsSet st;
    safetensors_add_file(st, kFixtures + "tiny_llama_full/" + file);
    const ParamLayout layout = param_layout(cfg);
    std::vector<float> p(layout.total);
    for (const TensorInfo& t : layout.tensors) {
        const SafeTensor* s = st.find(t.name);
        REQUIRE_MESSAGE(s, t.name);
        REQUIRE(s->numel == (int64_t)t.numel);
        st.read_f32(*s, p.data() + t.offset);
    }
    return p;
}

// Replays the fixture's steps in `dir` with the trainer `setup` made (the model and method set, the
// examples in), in three layouts of the same two examples: one padded batch as the reference's, two
// micro-batches accumulated (the loss normalised over the whole step's response tokens, as
// transformers' Trainer does since 4.46), and packed into one row (no attention across them).
void replay(const std::string& dir, const std::function<void(Trainer&, TrainConfig&)>& setup,
            const std::vector<float>& first_grads, const std::vector<float>& trained,
            const std::function<const float*(const Trainer&)>& weights) {
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
            CHECK(r.loss == doctest::Approx(steps[s].get("loss")->number).epsilon(1e-6));
            CHECK(r.grad_norm == doctest::Approx(steps[s].get("grad_norm")->number).epsilon(1e-5));
            CHECK(r.lr == doctest::Approx(steps[s].get("lr")->number).epsilon(1e-6));
            if (s == 0) {  // the gradient of the mean loss, before clipping
                const double d = relative_max_diff(t.grads.f(), t.model.num_trainable(), first_grads);
                MESSAGE(dir << ", " << std::string(v.name) << ": step 1 gradients, max |ours - torch| = " << d << " of the largest");
                CHECK(d < 1e-5);
            }
        }
        // Adam divides by the gradients' running RMS, so where a weight's gradients nearly cancel over
        // the steps, rounding differences grow (full fine-tuning: 7e-6 of the largest weight, 1.4e-5
        // absolute against updates of 1e-2). A mistake moves far more: weight decay lost on the
        // embedding alone gives 1.9e-4.
        const double d = relative_max_diff(weights(t), t.model.num_trainable(), trained);
        MESSAGE(dir << ", " << std::string(v.name) << ": weights after 3 steps, max |ours - torch| = " << d << " of the largest");
        CHECK(d < 3e-5);
    }
}

}  // namespace

TEST_CASE("three LoRA steps equal transformers + peft + torch AdamW's (loss, gradients, clipping, schedule, weights)") {
    const ModelConfig cfg = import_hf_dir("tests/fixtures/convert/tiny_llama_hf").cfg;
    auto setup = [](Trainer& t, TrainConfig& tc) {
        ImportedModel h = import_hf_dir("tests/fixtures/convert/tiny_llama_hf");
        model_init(t.model, h.cfg, std::move(h.params));
        std::vector<float> init = adapter_at(t.model.cfg, "init", &tc.lora);
        REQUIRE(tc.lora.rank == 4);
        model_set_lora(t.model, tc.lora, init);
        tc.method = Method::Lora;
    };
    replay("tiny_llama_lora", setup, adapter_at(cfg, "grads"), adapter_at(cfg, "final"),
           [](const Trainer& t) { return t.model.adapters.data(); });
}

TEST_CASE("three full fine-tuning steps equal transformers + torch AdamW's (every weight, embedding and norms included)") {
    const ModelConfig cfg = import_hf_dir("tests/fixtures/convert/tiny_llama_hf").cfg;
    auto setup = [](Trainer& t, TrainConfig& tc) {
        ImportedModel h = import_hf_dir("tests/fixtures/convert/tiny_llama_hf");
        model_init(t.model, h.cfg, std::move(h.params));
        tc.method = Method::Full;
    };
    replay("tiny_llama_full", setup, params_at(cfg, "grads.safetensors"), params_at(cfg, "final.safetensors"),
           [](const Trainer& t) { return t.model.params.data(); });
}
