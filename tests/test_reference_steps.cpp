// Our trainer against the one users compare it with: three LoRA steps of transformers + peft +
// torch.optim.AdamW on the tiny Llama (tests/fixtures/train/gen_lora_steps.py), replayed on the CPU
// backend from the same adapter and data. Each step's loss, gradient norm and learning rate, the
// first step's adapter gradients and the adapters after the third step must agree: the loss's
// normalisation over response tokens, the LoRA scale and orientation, clipping, AdamW's bias
// correction and decoupled weight decay, the cosine schedule.
#include <doctest/doctest.h>

#include <cmath>

#include "data/json.h"
#include "model/import.h"
#include "model/lora_peft.h"
#include "model/trainer.h"
#include "model/util.h"

namespace {

const std::string kFixture = "tests/fixtures/train/tiny_llama_lora/";

std::vector<float> adapter_at(const ModelConfig& cfg, const std::string& dir, LoraConfig* lc_out = nullptr) {
    LoraConfig lc;
    std::vector<float> a;
    lora_load_any(kFixture + dir, cfg, lc, a);
    if (lc_out) *lc_out = lc;
    return a;
}

// max |a - b| / max |b|: the difference on the scale of the reference's values
double relative_max_diff(const float* a, const std::vector<float>& b) {
    double d = 0, scale = 0;
    for (size_t i = 0; i < b.size(); i++) {
        d = std::max(d, (double)std::fabs(a[i] - b[i]));
        scale = std::max(scale, (double)std::fabs(b[i]));
    }
    return d / scale;
}

}  // namespace

TEST_CASE("three LoRA steps equal transformers + peft + torch AdamW's (loss, gradients, clipping, schedule, weights)") {
    const JsonValue ref = json_parse(read_file(kFixture + "steps.json"));
    const std::vector<JsonValue>& steps = ref.get("steps")->array;
    std::vector<Example> examples;
    for (const JsonValue& e : ref.get("examples")->array) {
        Example ex;
        for (const JsonValue& id : e.get("tokens")->array) ex.tokens.push_back((int32_t)id.integer);
        for (const JsonValue& w : e.get("weights")->array) ex.weights.push_back((float)w.number);
        examples.push_back(ex);
    }
    // Every step sees both examples, as the reference's one padded batch does: in one padded batch,
    // as two micro-batches accumulated (the loss normalised over the whole step's response tokens,
    // as transformers' Trainer does since 4.46), or packed into one row (no attention across them).
    struct Variant {
        const char* name;
        int batch, accum;
        bool packing;
    };
    for (Variant v : {Variant{"one batch of 2", 2, 1, false}, Variant{"2 micro-batches of 1", 1, 2, false},
                      Variant{"packed into one row", 1, 1, true}}) {
        INFO(v.name);
        ImportedModel h = import_hf_dir("tests/fixtures/convert/tiny_llama_hf");
        Trainer t;
        model_init(t.model, h.cfg, std::move(h.params));
        LoraConfig lc;
        std::vector<float> init = adapter_at(t.model.cfg, "init", &lc);
        REQUIRE(lc.rank == 4);
        model_set_lora(t.model, lc, init);
        t.train = examples;
        TrainConfig tc;
        tc.method = Method::Lora;
        tc.lora = lc;
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

        const std::vector<float> grads = adapter_at(t.model.cfg, "grads");
        for (size_t s = 0; s < steps.size(); s++) {
            StepResult r = trainer_step(t);
            INFO("step " << s + 1);
            CHECK(r.loss == doctest::Approx(steps[s].get("loss")->number).epsilon(1e-6));
            CHECK(r.grad_norm == doctest::Approx(steps[s].get("grad_norm")->number).epsilon(1e-5));
            CHECK(r.lr == doctest::Approx(steps[s].get("lr")->number).epsilon(1e-6));
            if (s == 0) {  // the gradient of the mean loss, before clipping
                const double d = relative_max_diff(t.grads.f(), grads);
                MESSAGE(std::string(v.name) << ": step 1 adapter gradients, max |ours - torch| = " << d << " of the largest");
                CHECK(d < 1e-5);
            }
        }
        const double d = relative_max_diff(t.model.adapters.data(), adapter_at(t.model.cfg, "final"));
        MESSAGE(std::string(v.name) << ": adapters after 3 steps, max |ours - torch| = " << d << " of the largest");
        CHECK(d < 1e-5);
    }
}
