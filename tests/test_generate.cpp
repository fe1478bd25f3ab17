// KV-cached generation must agree with the full forward: each greedy token is the argmax of the
// logits model_logits gives for the whole prefix, for several prompts decoded together, with LoRA.
#include <algorithm>
#include <numeric>
#include <set>

#include "model/answer.h"
#include "model/import.h"
#include "tests/test_util.h"

using std::vector;

// A tiny model with LoRA (or DoRA) on every target, confident enough that FP32 ordering flips no argmax.
static Model decoding_model(ModelConfig c, bool dora = false) {
    c.vocab_size = 61;
    Model m;
    vector<float> p;
    model_init_random(c, p, 3);
    for (float& x : p) x *= 5.0f;  // confident logits: no near-ties for FP32 ordering to flip
    model_init(m, c, std::move(p));
    LoraConfig lc;
    lc.targets = lora_parse_targets("all");
    lc.use_dora = dora;
    model_add_lora(m, lc, 4);
    for (size_t i = 0; i < m.adapters.size(); i++) m.adapters[i] += 0.05f * Rng(i).normal();
    return m;
}

static void check_greedy_decoding(const Model& m) {
    const ModelConfig& c = m.cfg;
    SampleOptions so;
    so.max_new_tokens = 10;
    // The prompts' lengths differ within each set. In the first, a one-token prompt has nothing to
    // prefill; in the second all three are packed into one prefill pass; in the third the prompts
    // are long enough (700+ tokens) that the prefill takes them in two passes (at most 2048 rows
    // each: sequences 0-1, then 2).
    vector<vector<int32_t>> long_prompts(3);
    for (int s = 0; s < 3; s++)
        for (int i = 0; i < 700 + 5 * s; i++) long_prompts[s].push_back((i * 7 + 3 * s + i / 13) % c.vocab_size);
    vector<vector<int32_t>> out;
    for (const vector<vector<int32_t>>& prompts :
         {vector<vector<int32_t>>{{1, 2, 3, 4, 5}, {7}, {9, 8, 7, 6, 5, 4, 3, 2, 1, 0, 11, 12}},
          vector<vector<int32_t>>{{1, 2, 3, 4, 5}, {7, 30, 2, 44}, {9, 8, 7, 6, 5, 4, 3, 2, 1, 0, 11, 12}}, long_prompts}) {
        out = generate(m, prompts, so, {});
        for (size_t s = 0; s < prompts.size(); s++) {
            REQUIRE(out[s].size() == 10);
            vector<int32_t> seq = prompts[s];
            for (int32_t next : out[s]) {
                vector<float> logits(seq.size() * c.vocab_size);
                model_logits(m, seq.data(), (int)seq.size(), logits.data());
                const float* last = logits.data() + (seq.size() - 1) * c.vocab_size;
                CHECK(next == std::max_element(last, last + c.vocab_size) - last);
                seq.push_back(next);
            }
        }
    }
}

TEST_CASE("generate: batched KV-cached greedy decoding equals argmax of the full forward, with LoRA") {
    ModelConfig bias = config_preset("tiny");
    bias.qkv_bias = 1;
    Model m = decoding_model(bias);
    check_greedy_decoding(m);
    check_greedy_decoding(decoding_model(config_preset("tiny-qwen3")));  // QK-norm before the cache
    ModelConfig nope = config_preset("tiny");  // SmolLM3's NoPE layer: its keys enter the cache unrotated
    nope.nope_interval = 2;
    check_greedy_decoding(decoding_model(nope));
    // Gemma 3: post norms, GeGLU, scaled embeddings; a window of 5 keys in five layers of six (the
    // long prompts decode far past it), with their own RoPE base
    check_greedy_decoding(decoding_model(config_preset("tiny-gemma3")));
    // DoRA: the row norms computed by the prefill's first forward of each layer, then read by every step
    check_greedy_decoding(decoding_model(bias, true));
    SampleOptions so;
    so.max_new_tokens = 10;
    const vector<vector<int32_t>> prompts = {{1, 2, 3, 4, 5}, {7, 30, 2, 44}, {9, 8, 7, 6, 5, 4, 3, 2, 1, 0, 11, 12}};
    vector<vector<int32_t>> out = generate(m, prompts, so, {});
    SUBCASE("a stop token ends a sequence without being returned") {
        vector<vector<int32_t>> stopped = generate(m, prompts, so, {out[0][3]});
        CHECK(stopped[0] == vector<int32_t>(out[0].begin(), out[0].begin() + 3));
    }
    SUBCASE("SampleOptions::vocab: ids past a tokenizer's vocabulary (padded embedding rows) are never picked") {
        int32_t largest = 0;
        for (const vector<int32_t>& o : out) largest = std::max(largest, *std::max_element(o.begin(), o.end()));
        REQUIRE(largest >= 8);  // unrestricted, the model picks higher ids
        for (float temperature : {0.0f, 1.0f}) {
            SampleOptions small = so;
            small.vocab = 8;
            small.temperature = temperature;
            for (const vector<int32_t>& o : generate(m, prompts, small, {}))
                for (int32_t id : o) CHECK(id < 8);
        }
    }
}

// generate_bytes counts what generate() allocates, to the byte: the KV cache, and buffers for the
// longest prefill pass (one pass; two passes of 2048 rows at most) or the steps' rows; with LoRA,
// QK-norm and post norms (their buffers are sized by the config).
TEST_CASE("generate_bytes is the memory generate allocates") {
    SampleOptions so;
    so.max_new_tokens = 5;
    vector<vector<int32_t>> long_prompts(3, vector<int32_t>(900, 7));
    for (const char* preset : {"tiny", "tiny-qwen3", "tiny-gemma3", "tiny+dora"}) {
        CAPTURE(preset);
        const bool dora = std::string(preset) == "tiny+dora";
        Model m = decoding_model(config_preset(dora ? "tiny" : preset), dora);
        for (const vector<vector<int32_t>>& prompts :
             {vector<vector<int32_t>>{{1}, {2}}, vector<vector<int32_t>>{{1, 2, 3, 4, 5}, {7}, {9, 8, 7}}, long_prompts}) {
            const Ops& ops = cpu_ops();
            const size_t live = ops.mem_stats().total();
            ops.reset_peak();
            generate(m, prompts, so, {});
            CHECK(ops.mem_stats().peak_total - live == generate_bytes(m, prompts, so, ops.act_size));
        }
    }
}

TEST_CASE("sample_token: top-k 1 is greedy, top-p keeps the nucleus, same seed same draw") {
    vector<float> logits = {0.0f, 3.0f, 1.0f, 2.9f};
    SampleOptions so;
    so.temperature = 1.0f;
    so.top_k = 1;
    Rng rng(1);
    for (int i = 0; i < 20; i++) {
        vector<float> l = logits;
        CHECK(sample_token(l.data(), 4, so, rng) == 1);
    }
    so.top_k = 0;
    so.top_p = 0.6f;  // tokens 1 and 3 hold ~0.47 + ~0.43 of the mass: the nucleus is {1, 3}
    int seen[4] = {0};
    for (int i = 0; i < 400; i++) {
        vector<float> l = logits;
        seen[sample_token(l.data(), 4, so, rng)]++;
    }
    CHECK(seen[0] == 0);
    CHECK(seen[2] == 0);
    CHECK(seen[1] > 100);
    CHECK(seen[3] > 100);
    Rng a(7), b(7);
    vector<float> l1 = logits, l2 = logits;
    so.top_p = 1.0f;
    CHECK(sample_token(l1.data(), 4, so, a) == sample_token(l2.data(), 4, so, b));
}

TEST_CASE("sample_token: top-k keeps the ids tied with the k-th logit (TopKLogitsWarper); a tiny temperature is greedy") {
    SampleOptions so;
    so.temperature = 1.0f;
    so.top_k = 2;
    Rng rng(3);
    int seen[5] = {0};
    for (int i = 0; i < 900; i++) {
        vector<float> l = {1.0f, 3.0f, 3.0f, 3.0f, 0.0f};
        seen[sample_token(l.data(), 5, so, rng)]++;
    }
    CHECK(seen[0] == 0);
    CHECK(seen[4] == 0);
    for (int id : {1, 2, 3}) CHECK(seen[id] > 200);  // transformers keeps all three, each a third
    so.top_k = 0;
    for (float t : {1e-39f, 1e-30f})  // 1/T overflows float for the first: it once gave NaN weights
        for (int top_k : {0, 3}) {
            so.temperature = t, so.top_k = top_k;
            vector<float> l = {1.0f, 5.0f, 2.0f, 0.0f};
            CHECK(sample_token(l.data(), 4, so, rng) == 1);
        }
}

TEST_CASE("sample_token ranks only as far as the draw goes: the draws of a whole sort, over thousands of ids") {
    // A flat distribution over 5000 ids (ties included), so that nuclei and draws reach deep into
    // the ranking (sample_token ranks 64, then 256, 1024, ... ids): every draw must be the one a
    // whole sort in double precision gives with the same random number.
    const int V = 5000;
    vector<float> logits = random_vec(V, 3, 2.0f);
    for (int i = 0; i < 50; i++) logits[i * 97] = logits[i * 89];
    for (auto [top_k, top_p] : {std::pair{0, 1.0f}, std::pair{0, 0.95f}, std::pair{0, 0.3f}, std::pair{700, 0.9f},
                                std::pair{40, 1.0f}}) {
        CAPTURE(top_k);
        CAPTURE(top_p);
        SampleOptions so;
        so.temperature = 0.8f, so.top_k = top_k, so.top_p = top_p;
        vector<int32_t> order(V);
        std::iota(order.begin(), order.end(), 0);
        std::sort(order.begin(), order.end(), [&](int a, int b) { return logits[a] > logits[b] || (logits[a] == logits[b] && a < b); });
        const int k = top_k > 0 ? top_k : V;
        vector<double> p(k);
        double sum = 0;
        for (int i = 0; i < k; i++) sum += p[i] = std::exp((double)(logits[order[i]] - logits[order[0]]) / so.temperature);
        int keep = k;
        double acc = 0;
        for (int i = 0; i < k && top_p < 1.0f; i++)
            if ((acc += p[i]) >= top_p * sum) {
                keep = i + 1;
                break;
            }
        double total = 0;
        for (int i = 0; i < keep; i++) total += p[i];
        int deep = 0, mismatches = 0;
        for (uint64_t seed = 0; seed < 300; seed++) {
            Rng a(seed), b(seed);
            double r = b.uniform() * total;
            int want = order[keep - 1], at = keep - 1;
            for (int i = 0; i < keep; i++)
                if ((r -= p[i]) <= 0) {
                    want = order[i], at = i;
                    break;
                }
            deep = std::max(deep, at);
            vector<float> l = logits;
            mismatches += sample_token(l.data(), V, so, a) != want;
        }
        CHECK(mismatches == 0);
        if (top_k == 0 && top_p > 0.9f) CHECK(deep > 256);  // the draws went past the first rankings
    }
}

// The tiny LLaMA fixture (vocabulary of 300, ChatML template) with confident logits, as above.
TEST_CASE("answer_prompts: batches answer as each prompt alone would, in order, each batch reported when done") {
    ImportedModel im = import_hf_dir("tests/fixtures/convert/tiny_llama_hf");
    for (float& x : im.params) x *= 5.0f;
    Model m;
    model_init(m, im.cfg, std::move(im.params));
    vector<vector<int32_t>> prompts;
    for (const char* q : {"the quick brown fox", "1234", "a", "hello there, how are you?", "xyz"})
        prompts.push_back(encode_prompt(im.tok, im.tok.chat_template, {{"user", q}}));
    // the prompt ends with the generation prompt: the model answers as the assistant
    const std::string rendered = decode(im.tok, prompts[0]);
    CHECK(rendered.size() > 22);
    CHECK(rendered.substr(rendered.size() - 22) == "<|im_start|>assistant\n");
    SampleOptions so;
    so.max_new_tokens = 12;
    const vector<std::string> whole = answer_prompts(m, im.tok, prompts, so, 5, 0, cpu_ops());
    vector<size_t> firsts;
    vector<std::string> reported;
    const vector<std::string> batched =
        answer_prompts(m, im.tok, prompts, so, 2, 0, cpu_ops(), [&](size_t first, const vector<std::string>& a) {
            firsts.push_back(first);
            reported.insert(reported.end(), a.begin(), a.end());
        });
    CHECK(batched == whole);
    CHECK(reported == whole);
    CHECK(firsts == vector<size_t>{0, 2, 4});
    // A memory budget forms the batches too: here, room for the first two prompts' generation.
    const size_t budget = generate_bytes(m, {prompts[0], prompts[1]}, so, cpu_ops().act_size);
    firsts.clear();
    CHECK(answer_prompts(m, im.tok, prompts, so, 5, budget, cpu_ops(), [&](size_t first, const vector<std::string>&) {
              firsts.push_back(first);
          }) == whole);
    REQUIRE(firsts.size() >= 2);
    CHECK(firsts[1] == 2);
    firsts.push_back(prompts.size());
    for (size_t b = 0; b + 1 < firsts.size(); b++) {  // each batch within the budget, or one prompt alone
        const vector<vector<int32_t>> some(prompts.begin() + firsts[b], prompts.begin() + firsts[b + 1]);
        CHECK((some.size() == 1 || generate_bytes(m, some, so, cpu_ops().act_size) <= budget));
    }
    size_t answered = 0;
    for (size_t i = 0; i < prompts.size(); i++) {
        CHECK(whole[i] == decode(im.tok, generate(m, {prompts[i]}, so, end_of_turn_ids(im.tok))[0]));
        answered += !whole[i].empty();
    }
    CHECK(answered > 0);
}

TEST_CASE("answer_prompts sampling: each prompt draws from its own stream, whatever batch it shares") {
    ImportedModel im = import_hf_dir("tests/fixtures/convert/tiny_llama_hf");
    Model m;
    model_init(m, im.cfg, std::move(im.params));
    // The same prompt five times: a batch is no longer a restart of one random stream, so that
    // prompts 0, 2 and 4 (the first of each batch of 2) got the same answer.
    const vector<vector<int32_t>> prompts(5, encode_prompt(im.tok, im.tok.chat_template, {{"user", "hello"}}));
    SampleOptions so;
    so.max_new_tokens = 12;
    so.temperature = 2.0f;
    so.seed = 11;
    const vector<std::string> whole = answer_prompts(m, im.tok, prompts, so, 5, 0, cpu_ops());
    CHECK(answer_prompts(m, im.tok, prompts, so, 2, 0, cpu_ops()) == whole);
    CHECK(answer_prompts(m, im.tok, prompts, so, 1, 0, cpu_ops()) == whole);
    CHECK(std::set<std::string>(whole.begin(), whole.end()).size() > 1);
    // Sequence 0 draws from Rng(seed): one prompt alone samples as before streams were per sequence.
    CHECK(sequence_seed(so.seed, 0) == so.seed);
    CHECK(whole[0] == decode(im.tok, generate(m, {prompts[0]}, so, end_of_turn_ids(im.tok))[0]));
}

TEST_CASE("encode_chat_prompt: the oldest exchanges go when the conversation outgrows the context") {
    const Tokenizer tok = import_hf_dir("tests/fixtures/convert/tiny_llama_hf").tok;
    const ChatTemplate& ct = tok.chat_template;
    const vector<ChatMessage> whole = {{"system", "be brief"}, {"user", "first question"}, {"assistant", "first answer"},
                                       {"user", "second question"}, {"assistant", "second answer"},
                                       {"user", "third question"}};
    vector<ChatMessage> conv = whole;
    CHECK(encode_chat_prompt(tok, ct, conv, 0, 10) == encode_prompt(tok, ct, whole));  // no limit: all kept
    CHECK(conv.size() == 6);
    // Room for the system prompt and the last two exchanges: the first exchange goes, the system stays.
    const vector<ChatMessage> kept = {whole[0], whole[3], whole[4], whole[5]};
    const int fits = (int)encode_prompt(tok, ct, kept).size() + 10;
    CHECK(encode_chat_prompt(tok, ct, conv, fits, 10) == encode_prompt(tok, ct, kept));
    CHECK(conv.size() == 4);
    CHECK(conv[1].content == "second question");
    // One token less: the second exchange goes too.
    conv = whole;
    CHECK(encode_chat_prompt(tok, ct, conv, fits - 1, 10) == encode_prompt(tok, ct, {whole[0], whole[5]}));
    // Not even the new message fits: an error naming the sizes.
    conv = whole;
    CHECK_THROWS_WITH(encode_chat_prompt(tok, ct, conv, 12, 10), doctest::Contains("more than the model's context of 12"));
    REQUIRE(conv.size() == whole.size());  // and the conversation is left whole
    for (size_t i = 0; i < whole.size(); i++) CHECK(conv[i].content == whole[i].content);
    // A tool's result keeps the exchange whose call it answers: with no room for both it does not fit
    // (as the answer to nothing), where trimming would have left [system, tool].
    const ChatTemplate qwen = chat_template_from_name("qwen3");
    const vector<ChatMessage> called = {{"system", "be brief"}, {"user", "weather?"}, {"assistant", "<tool_call>{}</tool_call>"},
                                        {"tool", "sunny"}};
    conv = called;
    const int alone = (int)encode_prompt(tok, qwen, {called[0], called[3]}).size() + 10;
    CHECK_THROWS_WITH(encode_chat_prompt(tok, qwen, conv, alone, 10), doctest::Contains("the tool result and the exchange"));
    CHECK(conv.size() == called.size());
}

// transformers' Phi3ForCausalLM.generate drops its KV cache at the step where the sequence first
// passes LongRoPE's original context and runs the whole sequence again: the keys cached with the
// short factors would meet queries rotated with the long ones. generate() recomputes its cache
// there as well, so that greedy decoding is the argmax of the full forward (what transformers
// generates, with or without its cache) on either side of the switch.
TEST_CASE("generate: a LongRoPE model's cache is recomputed with the long factors when the sequence passes the "
          "original context, as transformers' Phi-3 does") {
    ImportedModel im = import_hf_dir("tests/fixtures/phi3/tiny_phi3_hf");  // original context 16, window 6
    Model m;
    model_init(m, im.cfg, std::move(im.params));
    const vector<int32_t> ids = {260, 296, 276, 289, 283, 80, 292, 90, 293, 280, 85, 295, 274, 261, 294, 91, 290, 73, 14, 287};
    SampleOptions so;
    so.max_new_tokens = 20;
    // A 9-token prompt switches to the long factors at the 9th step (17 tokens); transformers 5.24's
    // model.generate(do_sample=False) on it (tests/fixtures/phi3/tiny_phi3_hf, FP32, eager):
    const vector<int32_t> prompt(ids.begin(), ids.begin() + 9);
    const vector<int32_t> want = {112, 280, 146, 266, 222, 283, 255, 295, 100, 211, 211, 282, 19, 282, 181, 272, 41, 132, 276, 235};
    CHECK(generate(m, {prompt}, so, {})[0] == want);
    // generate_bytes counts the rows the recompute takes (the original context of 16 here)
    const Ops& ops = cpu_ops();
    const size_t live = ops.mem_stats().total();
    ops.reset_peak();
    generate(m, {vector<int32_t>(ids.begin(), ids.begin() + 2)}, so, {});
    CHECK(ops.mem_stats().peak_total - live == generate_bytes(m, {vector<int32_t>(ids.begin(), ids.begin() + 2)}, so, ops.act_size));
    // Two prompts of that length decoded together switch at the same step; one past the original
    // context takes the long factors from its prefill on. Each is the argmax of the full forward.
    const vector<vector<int32_t>> prompts = {prompt, vector<int32_t>(ids.begin() + 11, ids.end()), ids};
    for (const vector<vector<int32_t>>& batch : {vector<vector<int32_t>>{prompts[0], prompts[1]}, vector<vector<int32_t>>{prompts[2]}}) {
        const vector<vector<int32_t>> out = generate(m, batch, so, {});
        for (size_t s = 0; s < batch.size(); s++) {
            CAPTURE(s);
            vector<int32_t> seq = batch[s];
            for (int32_t next : out[s]) {
                vector<float> logits(seq.size() * m.cfg.vocab_size);
                model_logits(m, seq.data(), (int)seq.size(), logits.data());
                const float* last = logits.data() + (seq.size() - 1) * m.cfg.vocab_size;
                CHECK(next == std::max_element(last, last + m.cfg.vocab_size) - last);
                seq.push_back(next);
            }
        }
    }
}

// A LongRoPE batch switches to the long factors when its longest sequence passes the original
// context: a prompt that stays short alone would be answered with the long factors beside one that
// passes it. answer_prompts (./generate --data, ./train --eval-samples) batches a LongRoPE model's
// prompts only where no switch can happen, so that each answer is the one the prompt gets alone.
TEST_CASE("answer_prompts: a LongRoPE model's prompts answer as each alone would, those that pass the original "
          "context included") {
    ImportedModel im = import_hf_dir("tests/fixtures/phi3/tiny_phi3_hf");  // original context 16
    Model m;
    model_init(m, im.cfg, std::move(im.params));
    const vector<int32_t> ids = {260, 296, 276, 289, 283, 80, 292, 90, 293, 280, 85, 295, 274, 261, 294, 91, 290, 73, 14, 287};
    SampleOptions so;
    so.max_new_tokens = 8;
    vector<vector<int32_t>> prompts;  // short throughout, passing 16 while answering, past 16 from the start
    for (int n : {3, 12, 20, 5, 14, 18, 4, 9})
        prompts.push_back(vector<int32_t>(ids.begin() + (n > 10 ? 0 : 7), ids.begin() + (n > 10 ? 0 : 7) + n));
    const vector<std::string> alone = answer_prompts(m, im.tok, prompts, so, 1, 0, cpu_ops());
    CHECK(answer_prompts(m, im.tok, prompts, so, 8, 0, cpu_ops()) == alone);
    CHECK(answer_prompts(m, im.tok, prompts, so, 3, 0, cpu_ops()) == alone);
}
