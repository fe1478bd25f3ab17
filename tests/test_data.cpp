// Data readers: formatting and loss masks, EOS supervision, raw text blocks, the length policy,
// duplicates, the report, and the train/val split.
#include <doctest/doctest.h>

#include <numeric>
#include <omp.h>
#include <stdexcept>

#include "data/default_task.h"
#include "test_data_util.h"

namespace {

const char* kInstr = R"({"instruction": "Capital of France?", "output": "Paris"})";

Example one_example(const std::string& line, float prompt_loss_weight) {
    ScratchDir dir;
    DataOptions opt;
    opt.prompt_loss_weight = prompt_loss_weight;
    DataReport rep;
    auto ex = read_bytes(dir, "d.jsonl", line + "\n", opt, rep);
    REQUIRE(rep.invalid.empty());
    REQUIRE(ex.size() == 1);
    return ex[0];
}

// What print_report writes.
std::string report_text(const DataReport& rep, const DataOptions& opt) {
    char* buf = nullptr;
    size_t len = 0;
    FILE* f = open_memstream(&buf, &len);
    print_report(rep, opt, f);
    std::fclose(f);
    std::string text(buf, len);
    std::free(buf);
    return text;
}

}  // namespace

TEST_CASE("instruction line: response and its end-of-turn weigh 1, the prompt 0") {
    Example e = one_example(kInstr, 0.0f);
    CHECK(toy_decode(e.tokens) == "<|im_start|>user\nCapital of France?<|im_end|>\n<|im_start|>assistant\nParis<|im_end|>\n");
    CHECK(tokens_with_weight(e, 1.0f) == "Paris<|im_end|>");
    CHECK(e.weights[0] == 0.0f);
    CHECK(response_tokens(e) == 6);
    CHECK(e.line == 1);
}

TEST_CASE("prompt loss weight 0.1 and 1") {
    Example a = one_example(kInstr, 0.1f);
    CHECK(a.weights[0] == 0.0f);
    CHECK(tokens_with_weight(a, 1.0f) == "Paris<|im_end|>");
    size_t n_prompt = a.size() - 1 - 6;
    CHECK(std::count(a.weights.begin(), a.weights.end(), 0.1f) == (long)n_prompt);
    Example b = one_example(kInstr, 1.0f);
    CHECK(b.weights[0] == 0.0f);
    CHECK(std::count(b.weights.begin(), b.weights.end(), 1.0f) == (long)b.size() - 1);

    ScratchDir dir;
    DataOptions opt;
    opt.prompt_loss_weight = 1.5f;
    DataReport rep;
    CHECK_THROWS_WITH(read_bytes(dir, "d.jsonl", std::string(kInstr) + "\n", opt, rep), doctest::Contains("[0, 1]"));
}

TEST_CASE("the batch supervises the end-of-turn token: the model learns to stop") {
    Example e = one_example(kInstr, 0.0f);
    std::vector<Example> ex = {e};
    Batch b;
    BatchOptions o;
    fill_batch(ex, {0}, 0, o, b);
    int eot = -1;
    for (int t = 0; t < b.T; t++)
        if (b.targets[t] == kImEnd && b.weights[t] == 1.0f) eot = t;
    REQUIRE(eot > 0);
    CHECK(b.tokens[eot] == 's');  // "...Paris" → <|im_end|>
    CHECK(b.total_weight() == 6.0);
}

TEST_CASE("input, system, prompt/completion and multi-turn chat (OpenAI messages and ShareGPT conversations)") {
    Example a = one_example(R"({"instruction": "Translate", "input": "hallo", "output": "hello", "system": "Be brief"})", 0);
    CHECK(toy_decode(a.tokens) == "<|im_start|>system\nBe brief<|im_end|>\n<|im_start|>user\nTranslate\n\nhallo<|im_end|>\n"
                                  "<|im_start|>assistant\nhello<|im_end|>\n");
    CHECK(tokens_with_weight(a, 1.0f) == "hello<|im_end|>");

    Example b = one_example(R"({"prompt": "2+2=", "completion": "4"})", 0);
    CHECK(tokens_with_weight(b, 1.0f) == "4<|im_end|>");

    Example c = one_example(R"({"messages": [{"role": "system", "content": ""}, {"role": "user", "content": "hi"},)"
                            R"( {"role": "assistant", "content": "hey"}, {"role": "user", "content": "bye"},)"
                            R"( {"role": "assistant", "content": "ciao", "extra": 1}]})", 0);
    CHECK(tokens_with_weight(c, 1.0f) == "hey<|im_end|>ciao<|im_end|>");
    CHECK(toy_decode(c.tokens).find("bye") != std::string::npos);

    // The same conversation as ShareGPT stores it: the same tokens and weights.
    Example d = one_example(R"({"conversations": [{"from": "system", "value": ""}, {"from": "human", "value": "hi"},)"
                            R"( {"from": "gpt", "value": "hey"}, {"from": "user", "value": "bye"},)"
                            R"( {"from": "assistant", "value": "ciao", "weight": 1}], "source": "x"})", 0);
    CHECK(d.tokens == c.tokens);
    CHECK(d.weights == c.weights);

    // A top-level "system" (LLaMA-Factory's ShareGPT, prompt/completion) opens the conversation.
    const std::string with_system = "<|im_start|>system\nBe brief<|im_end|>\n<|im_start|>user\nhi<|im_end|>\n"
                                    "<|im_start|>assistant\nhey<|im_end|>\n";
    for (const char* line : {R"({"system": "Be brief", "conversations": [{"from": "human", "value": "hi"}, {"from": "gpt", "value": "hey"}]})",
                             R"({"messages": [{"role": "user", "content": "hi"}, {"role": "assistant", "content": "hey"}], "system": "Be brief"})",
                             R"({"system": "Be brief", "prompt": "hi", "completion": "hey"})"}) {
        Example e = one_example(line, 0);
        CHECK_MESSAGE(toy_decode(e.tokens) == with_system, line);
        CHECK(tokens_with_weight(e, 1.0f) == "hey<|im_end|>");
    }
}

// OpenAI's fine-tuning format: an assistant message with "weight": 0 stays in the conversation as
// context and is not learned; its tokens weigh what the prompt's do.
TEST_CASE("a message's \"weight\": 0 keeps an assistant turn as context, not learned (OpenAI messages and ShareGPT)") {
    const std::string turns = R"({"role": "user", "content": "hi"}, {"role": "assistant", "content": "hey", "weight": 0},)"
                              R"( {"role": "user", "content": "bye", "weight": 0}, {"role": "assistant", "content": "ciao", "weight": 1})";
    Example plain = one_example(R"({"messages": [{"role": "user", "content": "hi"}, {"role": "assistant", "content": "hey"},)"
                                R"( {"role": "user", "content": "bye"}, {"role": "assistant", "content": "ciao"}]})", 0);
    Example e = one_example(R"({"messages": [)" + turns + "]}", 0);
    CHECK(e.tokens == plain.tokens);
    CHECK(tokens_with_weight(plain, 1.0f) == "hey<|im_end|>ciao<|im_end|>");
    CHECK(tokens_with_weight(e, 1.0f) == "ciao<|im_end|>");
    Example p = one_example(R"({"messages": [)" + turns + "]}", 0.1f);  // the unlearned turn weighs as the prompt
    CHECK(tokens_with_weight(p, 1.0f) == "ciao<|im_end|>");
    CHECK(tokens_with_weight(p, 0.1f).find("hey<|im_end|>") != std::string::npos);
    Example g = one_example(R"({"conversations": [{"from": "human", "value": "hi"}, {"from": "gpt", "value": "hey", "weight": 0},)"
                            R"( {"from": "human", "value": "bye"}, {"from": "gpt", "value": "ciao"}]})", 0);
    CHECK(g.tokens == e.tokens);
    CHECK(g.weights == e.weights);

    ScratchDir dir;
    DataOptions opt;
    DataReport rep;
    const std::string bad = R"({"messages": [{"role": "user", "content": "hi"}, {"role": "assistant", "content": "a", "weight": 0.5}]})" "\n"
                            R"({"messages": [{"role": "user", "content": "hi", "weight": 1}, {"role": "assistant", "content": "a"}]})" "\n"
                            R"({"messages": [{"role": "user", "content": "hi"}, {"role": "assistant", "content": "a", "weight": 0}]})" "\n"
                            R"({"messages": [{"role": "user", "content": "hi"}, {"role": "assistant", "content": "a", "weight": "1"}]})" "\n";
    CHECK(read_bytes(dir, "w.jsonl", std::string(kInstr) + "\n" + bad, opt, rep).size() == 1);
    REQUIRE(rep.invalid.size() == 4);
    CHECK(rep.invalid[0].what == "messages[1]: field \"weight\" must be 0 (the turn is context, not learned) or 1 (learned)");
    CHECK(rep.invalid[1].what.find("messages[0]: field \"weight\": 1 learns an assistant turn; a user turn is context") == 0);
    CHECK(rep.invalid[2].what == "every assistant turn has \"weight\": 0: nothing to learn from this conversation");
    CHECK(rep.invalid[3].what == rep.invalid[0].what);  // a string "1" is no number
}

// Alpaca's alpaca_data.json and many datasets' .json downloads are one pretty-printed JSON array of
// records: read element by element, each named by the line it starts on, as jsonl's lines are.
TEST_CASE("a JSON array of records (alpaca_data.json) reads as jsonl does, elements named by their line") {
    const std::string jsonl = std::string(kInstr) + "\n" + R"({"prompt": "2+2=", "completion": "4"})" "\n";
    const std::string array = "[\n    {\n        \"instruction\": \"Capital of France?\",\n        \"input\": \"\",\n"
                              "        \"output\": \"Paris\"\n    },\n    {\"output\": \"x\"},\n"
                              "    {\"prompt\": \"2+2=\", \"completion\": \"4\"}\n]";
    ScratchDir dir;
    DataOptions opt;
    DataReport a, b;
    const std::vector<Example> from_jsonl = read_bytes(dir, "d.jsonl", jsonl, opt, a);
    const std::vector<Example> from_array = read_bytes(dir, "d.json", array, opt, b);
    REQUIRE(from_array.size() == 2);
    for (size_t i = 0; i < 2; i++) {
        CHECK(from_array[i].tokens == from_jsonl[i].tokens);
        CHECK(from_array[i].weights == from_jsonl[i].weights);
    }
    CHECK(from_array[0].line == 2);
    CHECK(from_array[1].line == 8);
    REQUIRE(b.invalid.size() == 1);
    CHECK(b.invalid[0].line == 7);  // {"output": "x"}: no instruction
    CHECK(b.invalid[0].what == "missing field \"instruction\"");
    CHECK(b.lines == 3);
    // An element that is no object (an array of arrays, of strings) is named as an element, not a line
    DataReport c;
    CHECK(read_bytes(dir, "n.json", "[[" + std::string(kInstr) + "], \"x\"]", opt, c).empty());
    REQUIRE(c.invalid.size() == 2);
    CHECK(c.invalid[0].what == "expected a record (a JSON object) as each element of the array, got array");
    CHECK(c.invalid[1].what == "expected a record (a JSON object) as each element of the array, got string");
}

TEST_CASE("raw bytes (a model without a tokenizer): UTF-8 bytes are ids 0..255, EOS 256") {
    ScratchDir dir;
    DataOptions opt;
    opt.max_seq_len = 16;
    DataReport rep;
    // The bytes of é (0xC3 0xA9) and → (0xE2 0x86 0x92) above 127: once a signed char, they were
    // negative ids that failed the batch ("target id -30 is outside the vocabulary").
    auto ex = read_dataset(dir.write("t.txt", "caf\xc3\xa9 \xe2\x86\x92 x\n"), raw_byte_data_tokenizer(ChatTemplate{}), opt, rep);
    REQUIRE(ex.size() == 1);
    CHECK(ex[0].tokens == std::vector<int32_t>{'c', 'a', 'f', 0xC3, 0xA9, ' ', 0xE2, 0x86, 0x92, ' ', 'x', '\n', 256});
    CHECK(report_text(rep, opt).rfind(dir.path + "/t.txt: 1 raw document\n", 0) == 0);  // not "1 lines"
}

TEST_CASE("raw text: documents joined with EOS and cut into blocks, every token supervised") {
    ScratchDir dir;
    DataOptions opt;
    opt.max_seq_len = 4;
    DataReport rep;
    auto ex = read_bytes(dir, "d.jsonl", "{\"text\": \"abcde\"}\n{\"text\": \"xy\"}\n", opt, rep);
    CHECK(rep.duplicates.empty());
    // "abcde<eos>xy<eos>" = 9 tokens → blocks of 4 that overlap by one token, so each token but the
    // first is predicted exactly once.
    REQUIRE(ex.size() == 3);
    CHECK(toy_decode(ex[0].tokens) == "abcd");
    CHECK(toy_decode(ex[1].tokens) == "de<eos>x");
    CHECK(toy_decode(ex[2].tokens) == "xy<eos>");
    CHECK(ex[1].line == 1);
    CHECK(ex[2].line == 2);
    CHECK(ex[1].weights == std::vector<float>{0, 1, 1, 1});
    CHECK(rep.documents == 2);
    CHECK(rep.document_tokens == 9);
    read_bytes(dir, "d.jsonl", "{\"text\": \"abcde\"}\n{\"text\": \"xy\"}\n{\"text\": \"abcde\"}\n", opt, rep);
    CHECK(rep.duplicates == std::vector<std::pair<int, int>>{{3, 1}});

    // A .txt file is one document; its text is not parsed for special tokens.
    auto t = read_bytes(dir, "d.txt", "ab<|im_end|>", opt, rep);
    CHECK(toy_decode(t[0].tokens) == "ab<|");
    CHECK(std::find(t[2].tokens.begin(), t[2].tokens.end(), kImEnd) == t[2].tokens.end());
    CHECK(t.back().tokens.back() == kEos);

    DataTokenizer no_eos = byte_tokenizer();
    no_eos.eos = -1;
    CHECK_THROWS_WITH(read_dataset(dir.write("e.txt", "abc"), no_eos, opt, rep), doctest::Contains("EOS"));
}

TEST_CASE("length policy: drop (default), truncate, error; never cut away every response token") {
    ScratchDir dir;
    // Prompt-heavy line 2: its response starts at token 49; line 3 is short.
    std::string data = std::string(kInstr) + "\n" + R"({"instruction": ")" + std::string(30, 'q') +
                       R"(", "output": "long answer here"})" + "\n" + R"({"instruction": "x", "output": "y"})" + "\n";
    DataOptions opt;
    opt.max_seq_len = 56;
    DataReport rep;
    auto ex = read_bytes(dir, "d.jsonl", data, opt, rep);
    CHECK(ex.size() == 2);  // line 2 dropped
    CHECK(rep.over_length == std::vector<int>{2});
    CHECK(rep.dropped_long == 1);
    CHECK(rep.lengths == std::vector<int>{44, 67, 23});
    CHECK(rep.tokens_over == 67 - 56);
    CHECK(rep.response_over > 0);
    CHECK_NOTHROW(check_report(rep, opt));

    opt.truncation = Truncation::truncate;
    ex = read_bytes(dir, "d.jsonl", data, opt, rep);
    REQUIRE(ex.size() == 3);
    CHECK(ex[1].size() == 56);
    CHECK(rep.truncated == 1);
    CHECK(tokens_with_weight(ex[1], 1.0f) == "long an");

    // Cut before the response starts: the example is dropped and listed, not kept without a response.
    opt.max_seq_len = 48;
    ex = read_bytes(dir, "d.jsonl", data, opt, rep);
    CHECK(ex.size() == 2);
    CHECK(rep.truncated == 0);
    CHECK(rep.no_response == std::vector<int>{2});
    for (const Example& e : ex) CHECK(response_tokens(e) > 0);

    opt.truncation = Truncation::error;
    ex = read_bytes(dir, "d.jsonl", data, opt, rep);
    CHECK_THROWS_WITH(check_report(rep, opt), doctest::Contains("d.jsonl:2: example longer than --max-seq-len 48"));

    CHECK(parse_truncation("truncate") == Truncation::truncate);
    CHECK_THROWS_WITH(parse_truncation("cut"), doctest::Contains("drop, truncate or error"));
}

TEST_CASE("a prompt loss weight of 1 still tells the response apart: an answer cut away entirely drops the example") {
    ScratchDir dir;
    // Line 2's prompt alone is longer than --max-seq-len: truncated, it would keep no answer token.
    std::string data = std::string(kInstr) + "\n" + R"({"instruction": ")" + std::string(60, 'q') +
                       R"(", "output": "a"})" + "\n";
    DataOptions opt;
    opt.max_seq_len = 48;
    opt.truncation = Truncation::truncate;
    for (float w : {0.0f, 0.99f, 1.0f}) {
        INFO("prompt loss weight " << w);
        opt.prompt_loss_weight = w;
        DataReport rep;
        auto ex = read_bytes(dir, "d.jsonl", data, opt, rep);
        REQUIRE(ex.size() == 1);
        CHECK(rep.no_response == std::vector<int>{2});
        CHECK(rep.truncated == 0);
        CHECK(rep.response_over == 2);  // "a<|im_end|>"
        CHECK(ex[0].weights[1] == w);     // the prompt's tokens weigh w, line 1's answer 1
        CHECK(std::count(ex[0].weights.begin(), ex[0].weights.end(), 1.0f) == (w == 1.0f ? (long)ex[0].size() - 1 : 6));
    }
}

TEST_CASE("the split does not move with --prompt-loss-weight or --max-seq-len") {
    ScratchDir dir;
    std::string data;  // answers of up to 36 bytes: --max-seq-len 30 cuts most of them, keeping their start
    for (int i = 0; i < 60; i++)
        data += R"({"instruction": "q)" + std::to_string(i) + R"(", "output": "a)" + std::to_string(i) +
                std::string(i % 7 * 5, 'y') + "\"}\n";
    auto val_lines = [&](float w, int max_len) {
        DataOptions opt;
        opt.prompt_loss_weight = w;
        opt.max_seq_len = max_len;
        opt.truncation = Truncation::truncate;
        DataReport rep;
        std::vector<Example> train = read_bytes(dir, "d.jsonl", data, opt, rep), val;
        REQUIRE(train.size() == 60);
        if (max_len < 512) CHECK(rep.truncated >= 40);
        split_train_val(train, val, 0.2, 42);
        std::vector<int> lines;
        for (const Example& e : val) lines.push_back(e.line);
        return lines;
    };
    const std::vector<int> base = val_lines(0.0f, 512);
    CHECK(base.size() == 12);
    CHECK(val_lines(0.5f, 512) == base);
    CHECK(val_lines(1.0f, 512) == base);
    CHECK(val_lines(0.0f, 30) == base);  // most answers cut
}

TEST_CASE("the split: examples that truncation makes equal land on one side") {
    ScratchDir dir;
    std::string data;  // 40 answers that differ only past --max-seq-len
    for (int i = 0; i < 40; i++) data += R"({"instruction": "q", "output": ")" + std::string(20, 'a') + std::to_string(i) + "\"}\n";
    DataOptions opt;
    opt.max_seq_len = 30;
    opt.truncation = Truncation::truncate;
    DataReport rep;
    std::vector<Example> train = read_bytes(dir, "d.jsonl", data, opt, rep), val;
    REQUIRE(train.size() == 40);
    CHECK(rep.truncated == 40);
    // One group: the split cannot take 20% of it without taking all of it.
    CHECK_THROWS_WITH(split_train_val(train, val, 0.2, 42), doctest::Contains("leaves nothing to train on (40 examples, and duplicates of an example all go to its side"));
}

TEST_CASE("chat: the ids are the whole rendered text's even where whitespace runs across a piece boundary") {
    // A toy tokenizer that, like byte-level BPE, takes "\n\n" as one token (id 300) where it can:
    // the answer "\n\nHello" after "assistant\n" gives \n\n \n H... for the whole text, where the
    // pieces encoded one by one would give \n \n\n H...
    DataTokenizer tok = byte_tokenizer();
    const auto bytes = tok.encode;
    tok.encode = [bytes](std::string_view s, bool special, TextStart where) {
        std::vector<int32_t> in = bytes(s, special, where), out;
        for (size_t i = 0; i < in.size(); i++)
            if (in[i] == '\n' && i + 1 < in.size() && in[i + 1] == '\n') out.push_back(300), i++;
            else out.push_back(in[i]);
        return out;
    };
    tok.is_special = [](int32_t id) { return id == kImStart || id == kImEnd || id == kEos; };  // 300 is text
    const std::string line = R"({"messages": [{"role": "user", "content": "Q"}, {"role": "assistant", "content": "\n\nHello"}]})";
    ParsedFile pf = parse_records(line + "\n", "c.jsonl", true);
    DataOptions opt;
    DataReport rep;
    std::vector<Example> ex = build_examples(pf, tok, opt, rep);
    REQUIRE(ex.size() == 1);
    const std::string text = chat_render(tok.chat_template, pf.records[0].messages, false);
    CHECK(text == "<|im_start|>user\nQ<|im_end|>\n<|im_start|>assistant\n\n\nHello<|im_end|>\n");
    CHECK(ex[0].tokens == tok.encode(text, true, TextStart::Begin));
    // The token that straddles the boundary ("\n" of the prompt, "\n" of the answer) is learned with the answer.
    std::vector<int32_t> learned;
    for (size_t i = 0; i < ex[0].size(); i++)
        if (ex[0].weights[i] == 1.0f) learned.push_back(ex[0].tokens[i]);
    CHECK(learned == std::vector<int32_t>{300, '\n', 'H', 'e', 'l', 'l', 'o', kImEnd});
    CHECK(ex[0].weights[ex[0].size() - 10] == 0.0f);  // "assistant"'s last letter
}

TEST_CASE("exact duplicates are reported with the line they repeat") {
    ScratchDir dir;
    std::string data = std::string(kInstr) + "\n" + R"({"prompt": "a", "completion": "b"})" + "\n\n" + kInstr + "\r\n";
    DataOptions opt;
    DataReport rep;
    auto ex = read_bytes(dir, "d.jsonl", data, opt, rep);
    CHECK(ex.size() == 3);  // reported, not removed
    REQUIRE(rep.duplicates.size() == 1);
    CHECK(rep.duplicates[0] == std::make_pair(4, 1));
    CHECK(rep.lines == 3);
}

TEST_CASE("formatting runs on every thread and gives a serial pass's examples, order and report") {
    // 600 lines of every kind: conversations of many lengths, template errors, bad JSON, duplicates
    std::string data;
    for (int i = 0; i < 600; i++) {
        if (i % 13 == 5) data += R"({"messages": [{"role": "user", "content": "a"}, {"role": "assistant", "content": "b", "reasoning_content": "r"}]})";
        else if (i % 17 == 3) data += "{bad json";
        else if (i % 11 == 7) data += R"({"prompt": "p7", "completion": "c"})";
        else data += R"({"prompt": ")" + std::string(i % 90 + 1, 'p') + R"(", "completion": ")" + std::to_string(i) + "\"}";
        data += "\n";
    }
    const ParsedFile parsed = parse_records(data, "d.jsonl", true);
    DataOptions opt;
    opt.max_seq_len = 100;
    auto run = [&](int threads, DataReport& rep) {
        const int was = omp_get_max_threads();
        omp_set_num_threads(threads);
        auto ex = build_examples(parsed, byte_tokenizer(), opt, rep);
        omp_set_num_threads(was);
        return ex;
    };
    DataReport serial, parallel;
    const std::vector<Example> a = run(1, serial), b = run(4, parallel);
    REQUIRE(a.size() == b.size());
    CHECK(a.size() > 400);
    for (size_t i = 0; i < a.size(); i++) {
        CHECK(a[i].tokens == b[i].tokens);
        CHECK(a[i].weights == b[i].weights);
        CHECK(a[i].line == b[i].line);
        CHECK(a[i].key == b[i].key);
    }
    REQUIRE(serial.invalid.size() == parallel.invalid.size());
    CHECK(serial.invalid.size() == 46 + 33);  // 46 template errors (i % 13 == 5), 33 bad JSON lines
    for (size_t i = 0; i < serial.invalid.size(); i++) {
        CHECK(serial.invalid[i].line == parallel.invalid[i].line);
        CHECK(serial.invalid[i].what == parallel.invalid[i].what);
    }
    CHECK(serial.duplicates == parallel.duplicates);
    CHECK(serial.lengths == parallel.lengths);
    CHECK(serial.over_length == parallel.over_length);
    CHECK(serial.supervised_tokens == parallel.supervised_tokens);

    SUBCASE("an error the tokenizer throws comes out of the parallel loop, as a serial loop's would") {
        DataTokenizer tok = byte_tokenizer();
        tok.encode = [](std::string_view s, bool, TextStart) -> std::vector<int32_t> {
            if (s.find("p7") != std::string_view::npos) throw std::logic_error("tokenizer broke on p7");
            return std::vector<int32_t>(s.size(), 'x');
        };
        DataReport rep;
        CHECK_THROWS_WITH_AS(build_examples(parsed, tok, opt, rep), "tokenizer broke on p7", std::logic_error);
    }
}

TEST_CASE("the report: counts, length stats, histogram, supervised tokens") {
    ScratchDir dir;
    std::string data;
    for (int i = 0; i < 30; i++) data += R"({"prompt": ")" + std::string(i + 1, 'p') + R"(", "completion": "c"})" "\n";
    data += "{bad json\n";
    DataOptions opt;
    opt.max_seq_len = 48;
    opt.skip_bad_lines = true;
    DataReport rep;
    auto ex = load_dataset(dir.write("d.jsonl", data), byte_tokenizer(), opt, rep);
    CHECK(ex.size() == 26);
    CHECK(rep.supervised_tokens == 52);  // "c<|im_end|>" in each
    CHECK(rep.weight_sum == 52.0);
    const std::string text = report_text(rep, opt);
    CHECK(text.find("31 lines: 30 conversations, 0 raw documents, 1 invalid") != std::string::npos);
    CHECK(text.find("d.jsonl:31: bad JSON: column 2") != std::string::npos);
    CHECK(text.find("min 23  mean 37.5  p50 37  p90 49  p99 52  max 52") != std::string::npos);
    CHECK(text.find("over --max-seq-len 48: 4 (dropped)") != std::string::npos);
    CHECK(text.find("#") != std::string::npos);
    CHECK(report_summary(rep).find("skipped 1 invalid lines") != std::string::npos);
    CHECK(report_summary(rep).find("dropped 4 longer than --max-seq-len (up to 52 tokens: raise --max-seq-len, or "
                                   "--truncation truncate keeps their start)") != std::string::npos);
}

// --data A --data B: each file keeps its own format, report and errors; the examples follow the
// files' order, each knowing its file; a file given twice counts twice (upsampling).
TEST_CASE("several data files: concatenated in order, each judged and reported on its own") {
    ScratchDir dir;
    const std::string a = dir.write("a.jsonl", R"({"instruction": "i1", "output": "o1"})" "\n"
                                               R"({"instruction": "i2", "output": "o2"})" "\n");
    const std::string b = dir.write("b.jsonl", R"({"messages": [{"role": "user", "content": "u"}, )"
                                               R"({"role": "assistant", "content": "m"}]})" "\n");
    const std::string bad = dir.write("bad.jsonl", R"({"messages": [{"role": "user", "content": "u"}]})" "\n");
    DataOptions opt;
    FILE* out = tmpfile();
    std::vector<Example> ex = load_datasets({a, b, a}, byte_tokenizer(), opt, "data", out);
    REQUIRE(ex.size() == 5);
    CHECK(ex[0].file == 0);
    CHECK(ex[1].file == 0);
    CHECK(ex[2].file == 1);
    CHECK(ex[3].file == 2);
    CHECK(ex[2].line == 1);
    CHECK(tokens_with_weight(ex[2], 1.0f) == "m<|im_end|>");
    CHECK(ex[3].tokens == ex[0].tokens);
    rewind(out);
    std::string printed(4096, '\0');
    printed.resize(fread(&printed[0], 1, printed.size(), out));
    fclose(out);
    CHECK(printed.find("data: " + b + ": 1 examples") != std::string::npos);
    CHECK(printed.find("data: 3 files, 5 examples, ") != std::string::npos);
    // a bad line in the second file names that file
    FILE* sink = tmpfile();
    CHECK_THROWS_WITH(load_datasets({a, bad}, byte_tokenizer(), opt, "data", sink), doctest::Contains("bad.jsonl:1: "));
    CHECK_THROWS_WITH(check_datasets({a, bad}, byte_tokenizer(), opt, sink), doctest::Contains("bad.jsonl:1: "));
    fclose(sink);
}

TEST_CASE("split: deterministic by seed, duplicates on one side, order kept") {
    std::vector<Example> all;
    for (int i = 0; i < 100; i++) {
        Example e;
        e.line = i + 1;
        int v = i < 90 ? i : i - 90;  // lines 91..100 repeat lines 1..10
        e.tokens = {1, v};
        e.weights = {0, 1};
        e.key = 1000 + v;  // as build_examples keys them: equal content, equal key
        all.push_back(e);
    }
    auto run = [&](uint64_t seed, std::vector<Example>& tr, std::vector<Example>& va) {
        tr = all;
        split_train_val(tr, va, 0.1, seed);
    };
    std::vector<Example> t1, v1, t2, v2, t3, v3;
    run(7, t1, v1);
    run(7, t2, v2);
    run(8, t3, v3);
    CHECK(t1.size() + v1.size() == 100);
    CHECK(v1.size() >= 10);
    CHECK(v1.size() <= 12);
    auto lines = [](const std::vector<Example>& v) {
        std::vector<int> l;
        for (auto& e : v) l.push_back(e.line);
        return l;
    };
    CHECK(lines(v1) == lines(v2));
    CHECK(lines(v1) != lines(v3));
    std::vector<int> train_lines = lines(t1);
    CHECK(std::is_sorted(train_lines.begin(), train_lines.end()));
    for (const Example& v : v1)
        for (const Example& t : t1) CHECK(v.tokens != t.tokens);

    std::vector<Example> small = {all[0]}, val;
    CHECK_THROWS_WITH(split_train_val(small, val, 0.5, 1), doctest::Contains("nothing to train on"));
    CHECK_THROWS_WITH(split_train_val(small, val, 1.0, 1), doctest::Contains("[0, 1)"));
    split_train_val(small, val, 0.0, 1);
    CHECK(small.size() == 1);
    CHECK(val.empty());
}

TEST_CASE("the shipped default dataset is the generator's output") {
    auto items = default_task_items(kDefaultTaskSeed, kDefaultTrainSize + kDefaultValSize);
    std::string train, val;
    for (int i = 0; i < (int)items.size(); i++) (i < kDefaultTrainSize ? train : val) += task_item_jsonl(items[i]) + "\n";
    CHECK(read_file("data/default/train.jsonl") == train);
    CHECK(read_file("data/default/val.jsonl") == val);
    CHECK(items[0].output.rfind("{\"name\":\"", 0) == 0);
}

TEST_CASE("prompts to answer (Answers::optional): the answer field may be left out, and is the reference when given") {
    const std::string jsonl =
        "{\"instruction\": \"Name a colour.\"}\n"
        "{\"instruction\": \"Add.\", \"input\": \"2+2\", \"output\": null}\n"
        "{\"prompt\": \"Hi\"}\n"
        "{\"messages\": [{\"role\": \"system\", \"content\": \"Be brief.\"}, {\"role\": \"user\", \"content\": \"Why?\"}]}\n"
        "{\"conversations\": [{\"from\": \"human\", \"value\": \"A\"}, {\"from\": \"gpt\", \"value\": \"B\"}, "
        "{\"from\": \"human\", \"value\": \"C\"}]}\n"
        "{\"instruction\": \"Say yes.\", \"output\": \"yes\"}\n"
        "{\"prompt\": \"Hello\", \"completion\": \"\"}\n"
        "{\"messages\": [{\"role\": \"system\", \"content\": \"Be brief.\"}]}\n"
        "{\"messages\": [{\"role\": \"assistant\", \"content\": \"Hi.\"}]}\n"
        "{\"messages\": [{\"role\": \"system\", \"content\": \"S\"}, {\"role\": \"assistant\", \"content\": \"A\"}]}\n";
    ParsedFile pf = parse_records(jsonl, "p.jsonl", true, Answers::optional);
    REQUIRE(pf.records.size() == 7);
    REQUIRE(pf.invalid.size() == 3);  // no user turn to answer: a system prompt alone, an answer alone
    for (int i = 0; i < 3; i++) {
        CHECK(pf.invalid[i].line == 8 + i);
        CHECK(pf.invalid[i].what.find("nothing to answer") != std::string::npos);
    }
    for (int i : {0, 1, 2, 3, 4, 6}) CHECK_FALSE(record_reference(pf.records[i]));  // "" is no answer too
    CHECK(record_prompt(pf.records[0]).size() == 1);
    CHECK(record_prompt(pf.records[1])[0].content == "Add.\n\n2+2");
    CHECK(record_prompt(pf.records[3]).size() == 2);  // the system prompt and the question
    std::vector<ChatMessage> multi = record_prompt(pf.records[4]);  // the whole conversation so far
    REQUIRE(multi.size() == 3);
    CHECK(multi[2].content == "C");
    REQUIRE(record_reference(pf.records[5]));
    CHECK(*record_reference(pf.records[5]) == "yes");
    CHECK(record_prompt(pf.records[5]).size() == 1);
    // Training data still needs every answer: the lines without one are refused there.
    ParsedFile train = parse_records(jsonl, "p.jsonl", true);
    CHECK(train.records.size() == 3);  // "Say yes." and the two lines that learn an answer without a question
    CHECK(train.invalid.size() == 7);
}

TEST_CASE("score_answers: exact match and per-field credit against each record's reference") {
    auto items = default_task_items(kDefaultTaskSeed, 4);
    std::string jsonl;
    for (const TaskItem& it : items) jsonl += task_item_jsonl(it) + "\n";
    ParsedFile pf = parse_records(jsonl, "val.jsonl", true);
    REQUIRE(pf.records.size() == 4);
    std::vector<std::string> given;
    for (int i = 0; i < 4; i++) {
        std::vector<ChatMessage> prompt = record_prompt(pf.records[i]);
        REQUIRE(prompt.size() == 1);  // the user turn only: the reference is not shown
        CHECK(prompt[0].content == instruction_prompt(items[i].instruction, items[i].input));
        REQUIRE(record_reference(pf.records[i]));
        CHECK(*record_reference(pf.records[i]) == items[i].output);
        const std::string& ref = items[i].output;
        given.push_back(i == 0   ? ref + "\n"                                                                // exact (whitespace ignored)
                        : i == 1 ? ref.substr(0, ref.find(",\"year\"")) + ",\"year\":1,\"city\":\"x\",\"job\":\"y\"}"  // name only
                        : i == 2 ? "Sure! " + ref                                                             // not JSON: no credit
                                 : "{\"job\":" + ref.substr(ref.rfind(':') + 1));                             // job only
    }
    TaskScore s = score_answers(pf.records, given);
    CHECK(s.n == 4);
    CHECK(s.exact == 1);
    CHECK(s.fields_total == 16);
    CHECK(s.fields == 4 + 1 + 0 + 1);
    CHECK(s.exact_rate() == 0.25);
    std::vector<std::string> answers = {items[0].output, "", "{}", items[3].output};
    TaskScore t = score_answers(pf.records, answers);
    CHECK(t.exact == 2);
    CHECK(t.fields == 8);
    // a reasoning model's answer (Qwen3 writes a think block, maybe empty, first) is scored without it
    answers = {"<think>\n\n</think>\n\n" + items[0].output, "<think>\nThe year is...\n</think>\n\n{}", "", ""};
    t = score_answers(pf.records, answers);
    CHECK(t.exact == 1);
    CHECK(t.fields == 4);
    answers.pop_back();
    CHECK_THROWS_WITH(score_answers(pf.records, answers), doctest::Contains("3 answers for 4"));
    // a prompt without a reference (read with Answers::optional) is not scored
    ParsedFile open = parse_records("{\"instruction\": \"Say hi.\"}\n" + task_item_jsonl(items[0]) + "\n", "p.jsonl",
                                    true, Answers::optional);
    REQUIRE(open.records.size() == 2);
    CHECK_FALSE(record_reference(open.records[0]));
    t = score_answers(open.records, {"hi", items[0].output});
    CHECK(t.n == 1);
    CHECK(t.exact == 1);
}

// A held-out turn of tool calls: its reference is the calls as the templates write them, and each
// call's name and arguments earn a field, compared as JSON (spacing and key order aside).
TEST_CASE("score_answers: a turn of tool calls is scored call by call, name and arguments as JSON") {
    const std::string line = R"({"messages": [{"role": "user", "content": "Weather in Seoul and Paris?"}, {"role": "assistant", "content": "",)"
                             R"( "tool_calls": [{"function": {"name": "get_weather", "arguments": "{\"city\":\"Seoul\",\"days\":2}"}},)"
                             R"( {"name": "get_weather", "arguments": {"city": "Paris"}}]}]})";
    const ParsedFile pf = parse_records(line + "\n", "t.jsonl", true);
    REQUIRE(pf.records.size() == 1);
    const std::string ref = "<tool_call>\n{\"name\": \"get_weather\", \"arguments\": {\"city\": \"Seoul\", \"days\": 2}}\n</tool_call>\n"
                            "<tool_call>\n{\"name\": \"get_weather\", \"arguments\": {\"city\": \"Paris\"}}\n</tool_call>";
    CHECK(record_reference(pf.records[0]) == ref);
    TaskScore exact = score_answers(pf.records, {"<think>\n\n</think>\n\n" + ref});
    CHECK(exact.exact == 1);
    CHECK(exact.fields == 4);
    CHECK(exact.fields_total == 4);
    // the same calls spaced otherwise: not exact, every field; a wrong city: its arguments lost; one call: half
    TaskScore spaced = score_answers(pf.records, {"<tool_call>{\"arguments\":{\"days\":2,\"city\":\"Seoul\"},\"name\":\"get_weather\"}</tool_call>"
                                                  "<tool_call>{\"name\":\"get_weather\",\"arguments\":{\"city\":\"Paris\"}}</tool_call>"});
    CHECK(spaced.exact == 0);
    CHECK(spaced.fields == 4);
    CHECK(score_answers(pf.records, {"<tool_call>{\"name\":\"get_weather\",\"arguments\":{\"city\":\"Tokyo\",\"days\":2}}</tool_call>"}).fields == 1);
    CHECK(score_answers(pf.records, {"It is sunny."}).fields == 0);
    // prompted with Qwen3's template, which writes a string of arguments as given, the reference does too
    const std::string raw = "<tool_call>\n{\"name\": \"get_weather\", \"arguments\": {\"city\":\"Seoul\",\"days\":2}}\n</tool_call>\n" +
                            ref.substr(ref.find("</tool_call>\n") + 13);
    CHECK(record_reference(pf.records[0], ChatTemplateKind::Qwen3) == raw);
    CHECK(score_answers(pf.records, {raw}, chat_template_from_name("qwen3")).exact == 1);
    CHECK(score_answers(pf.records, {raw}).exact == 0);
    // Llama 3.1's template writes one call alone, {"name", "parameters"}: the reference and the answer so
    const ParsedFile one = parse_records(R"({"messages": [{"role": "user", "content": "Seoul?"}, {"role": "assistant", )"
                                         R"("tool_calls": [{"name": "get_weather", "arguments": {"city": "Seoul"}}]}]})" "\n",
                                         "l.jsonl", true);
    const ChatTemplate l31 = chat_template_from_name("llama3.1");
    CHECK(record_reference(one.records[0], ChatTemplateKind::Llama31) == R"({"name": "get_weather", "parameters": {"city": "Seoul"}})");
    TaskScore llama = score_answers(one.records, {R"({"parameters": {"city": "Seoul"}, "name": "get_weather"})"}, l31);
    CHECK(llama.fields == 2);
    CHECK(llama.fields_total == 2);
    CHECK(score_answers(one.records, {R"({"name": "get_weather", "parameters": {"city": "Tokyo"}})"}, l31).fields == 1);
    CHECK_THROWS_WITH(record_reference(pf.records[0], ChatTemplateKind::Llama31), doctest::Contains("has 2 tool calls"));
    // Mistral v0.3's [TOOL_CALLS] list: its ids are not scored, and a decoded answer may have lost the control token
    const ChatTemplate v03 = chat_template_from_name("mistral-v0.3");
    const std::string mref = *record_reference(pf.records[0], ChatTemplateKind::MistralV03);
    CHECK(mref.rfind("[TOOL_CALLS] [{\"name\": \"get_weather\", \"arguments\": {\"city\": \"Seoul\", \"days\": 2}, \"id\": \"", 0) == 0);
    TaskScore mistral = score_answers(pf.records, {R"( [{"name": "get_weather", "arguments": {"days": 2, "city": "Seoul"}, "id": "x"},)"
                                                   R"( {"name": "get_weather", "arguments": {"city": "Lyon"}}])"}, v03);
    CHECK(mistral.fields == 3);
    CHECK(mistral.fields_total == 4);
    // Each template's calls in its own form only: Llama's whole answer {"name", "parameters"}, the others'
    // <tool_call> blocks. An answer in the other form is no call, and a Llama call whose arguments
    // hold "<tool_call>" is still the one call (it was read as a block that is not JSON: 0 fields of 2)
    const std::string qwen_form = "<tool_call>\n{\"name\": \"get_weather\", \"arguments\": {\"city\": \"Seoul\"}}\n</tool_call>";
    CHECK(score_answers(one.records, {qwen_form}, l31).fields == 0);
    CHECK(score_answers(one.records, {R"({"name": "get_weather", "parameters": {"city": "Seoul"}})"},
                        chat_template_from_name("qwen2.5")).fields == 0);
    CHECK(score_answers(one.records, {qwen_form}, chat_template_from_name("qwen2.5")).fields == 2);
    const ParsedFile tagged = parse_records(R"({"messages": [{"role": "user", "content": "Wrap?"}, {"role": "assistant", )"
                                            R"("tool_calls": [{"name": "wrap", "arguments": {"tag": "<tool_call>"}}]}]})" "\n",
                                            "l.jsonl", true);
    TaskScore wrapped = score_answers(tagged.records, {R"({"name": "wrap", "parameters": {"tag": "<tool_call>"}})"}, l31);
    CHECK(wrapped.exact == 1);
    CHECK(wrapped.fields == 2);
    CHECK(wrapped.fields_total == 2);
}

TEST_CASE("Qwen3 chat: the think block is learned with the answer; the ids are the whole conversation's") {
    // An earlier turn before the last query keeps only its answer; the last gets the think block,
    // from reasoning_content or from the content's own <think>...</think>. Everything the model
    // writes after "<|im_start|>assistant\n" weighs 1, the rest 0.
    const std::string line =
        R"({"messages": [{"role": "system", "content": "Be brief."}, {"role": "user", "content": "2+2?"},)"
        R"( {"role": "assistant", "content": "<think>add</think>4"}, {"role": "user", "content": "\ub2e4\uc74c 3+3? \ud83d\ude00"},)"
        R"( {"role": "assistant", "content": "6 \u2705", "reasoning_content": "add again"}]})";
    ParsedFile pf = parse_records(line + "\n", "q.jsonl", true);
    REQUIRE(pf.records.size() == 1);
    DataTokenizer tok = byte_tokenizer();
    tok.chat_template = chat_template_from_name("qwen3");
    DataOptions opt;
    DataReport rep;
    std::vector<Example> ex = build_examples(pf, tok, opt, rep);
    REQUIRE(ex.size() == 1);
    const std::string text = chat_render(tok.chat_template, pf.records[0].messages, false);
    CHECK(text == "<|im_start|>system\nBe brief.<|im_end|>\n<|im_start|>user\n2+2?<|im_end|>\n<|im_start|>assistant\n"
                  "4<|im_end|>\n<|im_start|>user\n\xEB\x8B\xA4\xEC\x9D\x8C 3+3? \xF0\x9F\x98\x80<|im_end|>\n"
                  "<|im_start|>assistant\n<think>\nadd again\n</think>\n\n6 \xE2\x9C\x85<|im_end|>\n");
    CHECK(ex[0].tokens == tok.encode(text, true, TextStart::Begin));  // the whole rendered text's ids
    CHECK(tokens_with_weight(ex[0], 1.0f) == "4<|im_end|><think>\nadd again\n</think>\n\n6 \xE2\x9C\x85<|im_end|>");
    size_t weighted = 0;
    for (float w : ex[0].weights) {
        CHECK((w == 0.0f || w == 1.0f));
        weighted += w == 1.0f;
    }
    CHECK(weighted == response_tokens(ex[0]));
    CHECK(toy_decode(ex[0].tokens) == text);
}
