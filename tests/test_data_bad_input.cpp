// Bad dataset input: every case gives a message naming the file (and line) and what to do, and
// nothing is dropped without being reported.
#include <doctest/doctest.h>

#include "test_data_util.h"

namespace {

const std::string kGood = R"({"instruction": "Say hi", "output": "hi"})";

// The invalid lines of a one-file dataset, as "line: what".
std::vector<std::string> problems(ScratchDir& dir, const std::string& bytes, size_t* n_examples = nullptr) {
    DataOptions opt;
    DataReport rep;
    auto ex = read_bytes(dir, "d.jsonl", bytes, opt, rep);
    if (n_examples) *n_examples = ex.size();
    std::vector<std::string> out;
    for (const LineProblem& p : rep.invalid) out.push_back(std::to_string(p.line) + ": " + p.what);
    return out;
}

std::string problem(ScratchDir& dir, const std::string& line) {
    auto p = problems(dir, kGood + "\n" + line + "\n");
    REQUIRE(p.size() == 1);
    CHECK(p[0].rfind("2: ", 0) == 0);
    return p[0].substr(3);
}

}  // namespace

TEST_CASE("whole-file problems fail at once, naming the file") {
    ScratchDir dir;
    DataOptions opt;
    DataReport rep;
    auto tok = byte_tokenizer();
    CHECK_THROWS_WITH(read_dataset(dir.path + "/nope.jsonl", tok, opt, rep), doctest::Contains("nope.jsonl: no such file"));
    CHECK_THROWS_WITH(read_dataset(dir.path, tok, opt, rep), doctest::Contains("is a directory"));
    CHECK_THROWS_WITH(read_bytes(dir, "e.jsonl", "", opt, rep), doctest::Contains("e.jsonl: the file is empty"));
    CHECK_THROWS_WITH(read_bytes(dir, "w.jsonl", " \r\n\n\t\n", opt, rep), doctest::Contains("w.jsonl: the file holds only blank lines"));
    CHECK_THROWS_WITH(read_bytes(dir, "e.txt", "", opt, rep), doctest::Contains("expected UTF-8 text"));
    CHECK_THROWS_WITH(read_bytes(dir, "b.jsonl", kGood + "\n" + kGood + "\n" + std::string("\x1f\x8b\x08\0\0\x03junk", 10), opt, rep),
                      doctest::Contains("b.jsonl:3: NUL byte: this looks like a binary file"));
    // UTF-16 (PowerShell's >) by its byte-order mark: "{" in UTF-16LE is 7B 00
    CHECK_THROWS_WITH(read_bytes(dir, "u.jsonl", std::string("\xFF\xFE{\0\"\0", 6), opt, rep),
                      doctest::Contains("u.jsonl: the file is UTF-16LE text, not UTF-8: convert it, e.g. iconv -f UTF-16LE -t UTF-8"));
    CHECK_THROWS_WITH(read_bytes(dir, "u.txt", std::string("\xFE\xFF\0h\0i", 6), opt, rep),
                      doctest::Contains("u.txt: the file is UTF-16BE text"));
    CHECK_THROWS_WITH(read_bytes(dir, "u32.jsonl", std::string("\xFF\xFE\0\0{\0\0\0", 8), opt, rep),
                      doctest::Contains("the file is UTF-32LE text"));
    CHECK_THROWS_WITH(read_bytes(dir, "a.json", "[\n" + kGood + ",\n" + kGood + "\n", opt, rep),
                      doctest::Contains("a.json: a JSON array of records that is not valid JSON: line 4, column 1"));
    CHECK_THROWS_WITH(read_bytes(dir, "e.json", " [ ]\n", opt, rep), doctest::Contains("e.json: the JSON array holds no records"));
    CHECK_THROWS_WITH(read_bytes(dir, "l.txt", "fine\nstill fine\ncaf\xE9\n", opt, rep),
                      doctest::Contains("l.txt:3: invalid UTF-8 (byte 0xE9 at byte 4 of the line)"));
    // jsonl under another name would train on its JSON syntax as raw text; upper-case extensions are jsonl.
    CHECK_THROWS_WITH(read_bytes(dir, "records.txt", kGood + "\n" + kGood + "\n", opt, rep),
                      doctest::Contains("records.txt: the first line is a training record (JSON), but the file is read as raw text"));
    CHECK(read_bytes(dir, "upper.JSONL", kGood + "\n" + kGood + "\n", opt, rep).size() == 2);
    CHECK(read_bytes(dir, "brace.txt", "{ not json } but text\nmore text\n", opt, rep).size() >= 1);  // text that starts with a brace
}

// Each of these used to be reported line by line (or as a NUL byte on line 2), with nothing that
// --skip-bad-lines could keep.
// A dataset's shards as one quoted wildcard (--data 'dir/train-*.parquet'): the files it matches in
// name order; a pattern that matches none fails naming it; a directory says how to pass its files.
TEST_CASE("--data with a wildcard stands for the files it matches") {
    ScratchDir dir;
    const std::string a2 = dir.write("train-00001-of-00002.jsonl", "{}\n"), a1 = dir.write("train-00000-of-00002.jsonl", "{}\n");
    dir.write("test-00000-of-00001.jsonl", "{}\n");
    CHECK(expand_data_paths({dir.path + "/train-*.jsonl", "x.jsonl"}) == std::vector<std::string>{a1, a2, "x.jsonl"});
    CHECK_THROWS_WITH(expand_data_paths({dir.path + "/val-*.jsonl"}), doctest::Contains("val-*.jsonl: no file matches this pattern"));
    DataOptions opt;
    DataReport rep;
    CHECK_THROWS_WITH(read_dataset(dir.path, byte_tokenizer(), opt, rep), doctest::Contains("or its files with a quoted wildcard: --data '"));
}

TEST_CASE("pretty-printed JSON and compressed files fail once, naming the cause and the fix") {
    ScratchDir dir;
    DataOptions opt;
    DataReport rep;
    // jq . writes "{" alone on the first line; Python's json.dump(indent=2) the same; both, one object or several.
    const std::string jq = "{\n  \"instruction\": \"Say hi\",\n  \"output\": \"hi\"\n}\n";
    for (const std::string& bytes : {jq, jq + jq, std::string("{\"instruction\": \"Say hi\",\n \"output\": \"hi\"}\n")})
        CHECK_THROWS_WITH(read_bytes(dir, "p.json", bytes, opt, rep),
                          doctest::Contains("p.json: pretty-printed JSON (one object spans several lines); a .jsonl file needs "
                                            "one object per line: convert it with jq -c . "));
    // A broken first line that no later line completes is still that line's problem.
    auto p = problems(dir, "{\"instruction\": \"a\"\n" + kGood + "\n");
    REQUIRE(p.size() == 1);
    CHECK(p[0].rfind("1: bad JSON", 0) == 0);
    CHECK_THROWS_WITH(read_bytes(dir, "d.jsonl.gz", std::string("\x1f\x8b\x08\0\0\x03junk", 10), opt, rep),
                      doctest::Contains("d.jsonl.gz: a damaged gzip file ("));
    CHECK_THROWS_WITH(read_bytes(dir, "d.jsonl.zst", "\x28\xb5\x2f\xfd junk", opt, rep),
                      doctest::Contains("d.jsonl.zst is zstd-compressed: decompress it first (zstd -d "));
}

TEST_CASE("a UTF-8 BOM is stripped and CRLF line ends are accepted") {
    ScratchDir dir;
    size_t n = 0;
    CHECK(problems(dir, "\xEF\xBB\xBF" + kGood + "\r\n" + kGood + "\r\n", &n).empty());
    CHECK(n == 2);
    DataOptions opt;
    DataReport rep;
    auto ex = read_bytes(dir, "crlf.jsonl", "\xEF\xBB\xBF" + kGood + "\r\n\r\n" + kGood + "\r\n", opt, rep);
    REQUIRE(ex.size() == 2);
    CHECK(ex[1].line == 3);  // the BOM and the blank line do not shift line numbers
    CHECK(toy_decode(ex[0].tokens).find('\r') == std::string::npos);
    CHECK(toy_decode(ex[0].tokens).find("\xEF\xBB\xBF") == std::string::npos);
    CHECK(rep.duplicates.size() == 1);  // CRLF and LF lines are the same example
}

TEST_CASE("bad lines: each reason, with its line number") {
    ScratchDir dir;
    CHECK(problem(dir, "{\"instruction\": \"a\", \"output\": \"b\"") == "bad JSON: column 35: unexpected end of input: expected ',' or '}' in object");
    CHECK(problem(dir, "\"just a string\"") == "expected a JSON object per line, got string");
    CHECK(problem(dir, R"({"instruction": "a"})") == "missing field \"output\"");
    CHECK(problem(dir, R"({"instruction": " ", "output": "b"})") == "field \"instruction\" is empty");
    CHECK(problem(dir, R"({"instruction": "a", "output": 42})") == "field \"output\": expected a string, got number");
    CHECK(problem(dir, R"({"instruction": "a", "input": ["x"], "output": "b"})") == "field \"input\": expected a string, got array");
    CHECK(problem(dir, R"({"prompt": "a"})") == "missing field \"completion\"");
    CHECK(problem(dir, R"({"text": null})") == "field \"text\": expected a string, got null");
    CHECK(problem(dir, R"({"question": "a", "answer": "b"})") ==
          "no known fields: expected \"messages\", \"conversations\", \"instruction\"+\"output\", \"prompt\"+\"completion\" "
          "or \"text\" (found \"question\", \"answer\")");
    CHECK(problem(dir, R"({"messages": {"role": "user"}})") == "field \"messages\": expected an array, got object");
    CHECK(problem(dir, R"({"messages": []})") == "field \"messages\" is empty");
    CHECK(problem(dir, R"({"messages": ["hi"]})") == "messages[0]: expected an object {\"role\", \"content\"}, got string");
    CHECK(problem(dir, R"({"messages": [{"role": "user", "content": "a"}, {"role": "bot", "content": "b"}]})") ==
          "messages[1]: unknown role \"bot\" (expected system, user, assistant or tool)");
    CHECK(problem(dir, R"({"messages": [{"role": "user", "content": [{"type": "text"}]}, {"role": "assistant", "content": "b"}]})") ==
          "messages[0]: content[0]: missing field \"text\"");  // a list of parts (see below), wrongly given
    CHECK(problem(dir, R"({"messages": [{"role": "user", "content": "a"}, {"role": "assistant", "content": ""}]})") ==
          "messages[1]: field \"content\" is empty");
    CHECK(problem(dir, R"({"messages": [{"role": "user", "content": "a"}]})") ==
          "no assistant turn: nothing to learn from this conversation");
    CHECK(problem(dir, R"({"messages": [{"role": "user", "content": "a"}, {"role": "assistant", "content": "b"}, {"role": "user", "content": "c"}]})")
              .rfind("the last message is from \"user\"", 0) == 0);
    CHECK(problem(dir, R"({"messages": [{"role": "user", "content": "a"}, {"role": "system", "content": "s"}, {"role": "assistant", "content": "b"}]})") ==
          "messages[1]: a system message may only come first");
    // ShareGPT's layout: the same checks, naming its fields
    CHECK(problem(dir, R"({"conversations": []})") == "field \"conversations\" is empty");
    CHECK(problem(dir, R"({"conversations": [1]})") == "conversations[0]: expected an object {\"from\", \"value\"}, got number");
    CHECK(problem(dir, R"({"conversations": [{"from": "human", "value": "a"}, {"from": "bot", "value": "b"}]})") ==
          "conversations[1]: unknown \"from\": \"bot\" (expected system, human or user, gpt or assistant, function_call or observation)");
    CHECK(problem(dir, R"({"conversations": [{"from": "human", "value": "a"}, {"from": "gpt", "value": " "}]})") ==
          "conversations[1]: field \"value\" is empty");
    CHECK(problem(dir, R"({"conversations": [{"from": "human", "value": "a"}, {"from": "gpt"}]})") ==
          "conversations[1]: missing field \"value\"");
    CHECK(problem(dir, R"({"conversations": [{"from": "human", "value": "a"}, {"from": "function_call", "value": "{}"}, {"from": "gpt", "value": "b"}]})") ==
          "conversations[1].value[0]: missing field \"name\"");
    // tool calling where the template (the toy tokenizer's ChatML) renders none: refused, naming the turn
    CHECK(problem(dir, R"({"conversations": [{"from": "human", "value": "a"}, {"from": "function_call", "value": "{\"name\": \"f\", \"arguments\": {}}"}, {"from": "gpt", "value": "b"}]})")
              .rfind("chat template: message 1 has tool_calls but the chatml chat template does not render tool calling (qwen2.5's, qwen3's, smollm3's, llama3.1's and mistral-v0.3's do)", 0) == 0);
    CHECK(problem(dir, R"({"conversations": [{"from": "human", "value": "a"}, {"from": "gpt", "value": "b"}, {"from": "human", "value": "c"}]})")
              .rfind("the last message is from \"user\"", 0) == 0);
    CHECK(problem(dir, "{\"instruction\": \"caf\xE9\", \"output\": \"b\"}").rfind("invalid UTF-8 (byte 0xE9 at byte 21 of the line)", 0) == 0);
    CHECK(problem(dir, "{\"instruction\": \"\xED\xA0\x80\", \"output\": \"b\"}").rfind("invalid UTF-8", 0) == 0);  // a surrogate
}

TEST_CASE("deeply nested JSON and a 10 MB line are reported, not a crash") {
    ScratchDir dir;
    std::string deep = "{\"instruction\": " + std::string(100000, '[') + std::string(100000, ']') + "}";
    CHECK(problem(dir, deep).find("nesting is deeper than") != std::string::npos);
    std::string huge = "{\"instruction\": \"" + std::string(10 << 20, 'x') + "\", \"output\": \"b\"}";
    std::string p = problem(dir, huge);
    CHECK(p.find("the line is 10485794 bytes, over the limit of 1048576") == 0);
}

TEST_CASE("a template that cannot express a role reports the line") {
    ScratchDir dir;
    DataTokenizer tok = byte_tokenizer();
    tok.chat_template.kind = ChatTemplateKind::Gemma;
    DataOptions opt;
    DataReport rep;
    auto ex = read_dataset(dir.write("g.jsonl", kGood + "\n" + R"({"instruction": "a", "output": "b", "system": "s"})" + "\n"),
                           tok, opt, rep);
    CHECK(ex.size() == 1);
    REQUIRE(rep.invalid.size() == 1);
    CHECK(rep.invalid[0].line == 2);
    CHECK(rep.invalid[0].what.rfind("chat template: ", 0) == 0);
}

TEST_CASE("a line of two record formats, or a system prompt given twice, is refused") {
    ScratchDir dir;
    CHECK(problem(dir, R"({"instruction": "a", "output": "b", "messages": [{"role": "user", "content": "a"}, {"role": "assistant", "content": "b"}]})") ==
          "fields of two record formats (\"messages\" and \"instruction\"): a line is one conversation, keep one of them");
    CHECK(problem(dir, R"({"output": "b", "completion": "c"})") ==
          "fields of two record formats (\"output\" and \"completion\"): a line is one conversation, keep one of them");
    CHECK(problem(dir, R"({"conversations": [{"from": "human", "value": "a"}, {"from": "gpt", "value": "b"}], "messages": [{"role": "user", "content": "a"}, {"role": "assistant", "content": "b"}]})") ==
          "fields of two record formats (\"messages\" and \"conversations\"): a line is one conversation, keep one of them");
    // Fields that repeat the conversation are no second one: UltraChat's and no_robots' "prompt"
    // beside "messages", Alpaca's rendered "text" beside "instruction" or a completion
    size_t n = 0;
    CHECK(problems(dir, R"({"prompt": "a", "prompt_id": "x", "messages": [{"role": "user", "content": "a"}, {"role": "assistant", "content": "b"}]})" "\n"
                        R"({"instruction": "a", "input": "", "output": "b", "text": "Below is an instruction... a ... b"})" "\n"
                        R"({"prompt": "a", "completion": "b", "text": "ab"})" "\n", &n).empty());
    CHECK(n == 3);
    CHECK(problem(dir, R"({"system": "s", "messages": [{"role": "system", "content": "t"}, {"role": "user", "content": "a"}, {"role": "assistant", "content": "b"}]})") ==
          "a \"system\" field and a system message in \"messages\": keep one");
    CHECK(problem(dir, R"({"system": "s", "text": "t"})") ==
          "a \"system\" field beside \"text\": raw text has no conversation to open; drop it");
    CHECK(problem(dir, R"({"system": 3, "prompt": "a", "completion": "b"})") == "field \"system\": expected a string, got number");
}

TEST_CASE("reasoning_content only where the template renders it; tool calling refused") {
    ScratchDir dir;
    const std::string reasoned = R"({"messages": [{"role": "user", "content": "a"}, {"role": "assistant", "content": "b", "reasoning_content": "r"}]})";
    // the toy tokenizer's ChatML drops reasoning: the line is refused, naming the message
    CHECK(problem(dir, reasoned) == "chat template: message 1 has reasoning_content but the chatml chat template does "
                                    "not render reasoning (only qwen3's does): drop the field, or write the reasoning "
                                    "into the content if the model should learn it");
    CHECK(problem(dir, R"({"messages": [{"role": "user", "content": "a"}, {"role": "assistant", "content": "b", "reasoning_content": 3}]})") ==
          "messages[1]: field \"reasoning_content\": expected a string, got number");
    size_t n = 0;  // null is no reasoning
    CHECK(problems(dir, R"({"messages": [{"role": "user", "content": "a"}, {"role": "assistant", "content": "b", "reasoning_content": null}]})" "\n", &n).empty());
    CHECK(n == 1);
    CHECK(problem(dir, R"({"messages": [{"role": "user", "content": "a"}, {"role": "assistant", "content": "Calling f.", "tool_calls": [{"function": {"name": "f"}}]}]})") ==
          "messages[1].tool_calls[0]: missing field \"arguments\" (an object; {} for none)");
    CHECK(problem(dir, R"({"tools": [{"type": "function"}], "messages": [{"role": "user", "content": "a"}, {"role": "assistant", "content": "b"}]})")
              .rfind("chat template: the conversation has tool definitions but the chatml chat template does not render tool calling", 0) == 0);
    CHECK(problems(dir, R"({"tools": [], "messages": [{"role": "user", "content": "a"}, {"role": "assistant", "content": "b", "tool_calls": null}]})" "\n").empty());
    // with Qwen3's template the reasoning is the think block; on a user message it is refused
    DataTokenizer tok = byte_tokenizer();
    tok.chat_template = chat_template_from_name("qwen3");
    DataOptions opt;
    DataReport rep;
    auto ex = read_dataset(dir.write("q.jsonl", reasoned + "\n" +
                                     R"({"messages": [{"role": "user", "content": "a", "reasoning_content": "r"}, {"role": "assistant", "content": "b"}]})" "\n"),
                           tok, opt, rep);
    REQUIRE(ex.size() == 1);
    CHECK(tokens_with_weight(ex[0], 1.0f) == "<think>\nr\n</think>\n\nb<|im_end|>");
    REQUIRE(rep.invalid.size() == 1);
    CHECK(rep.invalid[0].what == "chat template: message 0 has reasoning_content but role 'user': only assistant messages carry reasoning");
}

TEST_CASE("content as a list of text parts: Gemma 3's template renders it, the others refuse; images refused") {
    ScratchDir dir;
    const std::string parts = R"({"messages": [{"role": "user", "content": [{"type": "text", "text": " a "}, {"type": "text", "text": "b"}]},)"
                              R"( {"role": "assistant", "content": [{"type": "text", "text": " c "}]}]})";
    // the toy tokenizer's ChatML cannot: the line is refused, naming the message
    CHECK(problem(dir, parts) == "chat template: message 0 has its content as a list of parts, which only Gemma 3's chat "
                                 "template (gemma3) renders: give the content as a string for the chatml template");
    CHECK(problem(dir, R"({"messages": [{"role": "user", "content": [{"type": "image"}, {"type": "text", "text": "what is it?"}]}, {"role": "assistant", "content": "a"}]})") ==
          "messages[0]: content[0]: a part of type \"image\": only text parts are supported");
    CHECK(problem(dir, R"({"messages": [{"role": "user", "content": ["a"]}, {"role": "assistant", "content": "b"}]})") ==
          "messages[0]: content[0]: expected an object {\"type\": \"text\", \"text\": ...}, got string");
    CHECK(problem(dir, R"({"messages": [{"role": "user", "content": [{"type": "text", "text": " "}]}, {"role": "assistant", "content": "b"}]})") ==
          "messages[0]: field \"content\" is empty");
    DataTokenizer tok = byte_tokenizer();
    tok.chat_template = chat_template_from_name("gemma3");
    DataOptions opt;
    DataReport rep;
    auto ex = read_dataset(dir.write("g.jsonl", parts + "\n"), tok, opt, rep);
    REQUIRE(ex.size() == 1);
    CHECK(rep.invalid.empty());
    CHECK(tokens_with_weight(ex[0], 1.0f) == "c<end_of_turn>");
}

TEST_CASE("errors stop the load with file:line unless skip_bad_lines; skipping is reported") {
    ScratchDir dir;
    std::string data = kGood + "\n" + R"({"instruction": "a"})" + "\n" + kGood + "\n{oops\n";
    std::string path = dir.write("d.jsonl", data);
    DataOptions opt;
    DataReport rep;
    auto tok = byte_tokenizer();
    CHECK_THROWS_WITH(load_dataset(path, tok, opt, rep),
                      doctest::Contains("d.jsonl:2: missing field \"output\"\n  (2 invalid lines of 4; run --check-data"));
    CHECK_THROWS_WITH(load_dataset(path, tok, opt, rep), doctest::Contains("--skip-bad-lines"));
    opt.skip_bad_lines = true;
    auto ex = load_dataset(path, tok, opt, rep);
    CHECK(ex.size() == 2);
    CHECK(report_summary(rep).find("skipped 2 invalid lines") != std::string::npos);

    // Skipping every line leaves nothing: that is an error too, never an empty run.
    std::string bad = dir.write("bad.jsonl", "{oops\n{\"x\": 1}\n");
    CHECK_THROWS_WITH(load_dataset(bad, tok, opt, rep), doctest::Contains("bad.jsonl: no examples left to train on (2 lines, 2 invalid"));
}

TEST_CASE("the broken fixture (the --check-data demo) reports each of its problems") {
    DataOptions opt;
    opt.max_seq_len = 128;
    DataReport rep;
    auto ex = read_dataset("tests/fixtures/data/broken.jsonl", byte_tokenizer(), opt, rep);
    std::vector<int> bad;
    for (const LineProblem& p : rep.invalid) bad.push_back(p.line);
    CHECK(bad == std::vector<int>{3, 4, 5, 6, 7, 8, 9, 10});
    CHECK(rep.duplicates == std::vector<std::pair<int, int>>{{2, 1}});
    CHECK(rep.over_length == std::vector<int>{11});
    CHECK(ex.size() == 4);
    CHECK(ex.back().line == 14);  // after a blank line, with a CRLF end
    CHECK_THROWS_WITH(check_report(rep, opt), doctest::Contains("broken.jsonl:3: field \"output\": expected a string, got number"));
}
