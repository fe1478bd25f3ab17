#include <doctest/doctest.h>

#include "data/json.h"
#include "data/records.h"
#include "model/util.h"
#include "data/dataset.h"
#include "tokenizer/chat_template.h"
#include "tokenizer/tokenizer.h"
#include "tests/test_chat_util.h"

#include <algorithm>
#include <map>
#include <optional>

namespace {

// A JSON value as one jsonl line (its own compact text).
std::string json_quote_line(const JsonValue& v) { return json_dumps_python(v) + "\n"; }

// Whether we refuse a conversation that transformers renders: Llama-2's template silently drops a
// system or tool message after the first turn, Zephyr's any role but system, user and assistant;
// ChatML's and Qwen3's render other roles (Qwen2.5's and Qwen3's tool messages as <tool_response>
// blocks, which we render too), which we refuse; Gemma 3's renders any role but user (a late
// system message, a tool message) as a turn of that name where an assistant turn goes, which we
// refuse. Returns the index of the message to name.
std::optional<size_t> refused_message(ChatTemplateKind k, const std::vector<ChatMessage>& msgs) {
    for (size_t i = 0; i < msgs.size(); i++) {
        const std::string& role = msgs[i].role;
        // Gemma 3's takes a system message's first part and drops the rest
        if (k == ChatTemplateKind::Gemma3 && i == 0 && role == "system" && msgs[0].parts && msgs[0].parts->size() > 1) return 0;
        if (role == "user" || role == "assistant") continue;
        if (role == "system" && ((k != ChatTemplateKind::Llama2 && k != ChatTemplateKind::Gemma3) || i == 0)) continue;
        if (role == "tool" && (k == ChatTemplateKind::Qwen25 || k == ChatTemplateKind::Qwen3)) continue;
        // Gemma 3's lets any role but user through where an assistant turn goes, as a turn of that name
        if (k == ChatTemplateKind::Llama2 || k == ChatTemplateKind::Zephyr || k == ChatTemplateKind::ChatML ||
            k == ChatTemplateKind::Qwen25 || k == ChatTemplateKind::Qwen3 || k == ChatTemplateKind::Gemma3)
            return i;
    }
    return std::nullopt;
}


}  // namespace

TEST_CASE("chat: renders exactly what transformers' apply_chat_template gives") {
    JsonValue fx = json_parse(read_file("tests/fixtures/chat/render.json"));
    // detection from the real Jinja templates, default system prompts included
    std::map<std::string, ChatTemplate> templates;
    for (const auto& [name, jinja] : fx.get("templates")->object) templates[name] = chat_template_from_jinja(jinja.string);
    CHECK(templates["smollm2"].kind == ChatTemplateKind::ChatML);
    CHECK(templates["smollm2"].default_system == "You are a helpful AI assistant named SmolLM, trained by Hugging Face");
    CHECK(templates["qwen2"].default_system == "You are a helpful assistant.");
    CHECK(templates["chatml"].kind == ChatTemplateKind::ChatML);
    CHECK(templates["chatml"].default_system.empty());
    CHECK(templates["llama3"].kind == ChatTemplateKind::Llama3);
    CHECK(templates["gemma"].kind == ChatTemplateKind::Gemma);
    CHECK(templates["gemma3"].kind == ChatTemplateKind::Gemma3);
    CHECK(templates["llama2"].kind == ChatTemplateKind::Llama2);
    CHECK(templates["mistral"].kind == ChatTemplateKind::Mistral);
    CHECK(templates["zephyr"].kind == ChatTemplateKind::Zephyr);
    CHECK(templates["qwen3"].kind == ChatTemplateKind::Qwen3);
    // Qwen2.5's is ChatML with its default system prompt (its tools block aside); Qwen2's is not Qwen3's
    CHECK(templates["qwen2.5"].kind == ChatTemplateKind::Qwen25);  // the ChatML that renders tool calls
    CHECK(templates["qwen2.5"].default_system == "You are Qwen, created by Alibaba Cloud. You are a helpful assistant.");
    CHECK(templates["qwen2"].kind == ChatTemplateKind::ChatML);

    int same = 0, total = 0, refused = 0, qwen3 = 0, gemma3 = 0;
    for (const JsonValue& c : fx.get("cases")->array) {
        const ChatTemplate& t = templates.at(c.get("template")->string);
        std::vector<ChatMessage> msgs;
        std::string want_assistant;
        for (const JsonValue& m : c.get("messages")->array) {
            msgs.push_back(fixture_message(m));
            if (msgs.back().role == "assistant") want_assistant += assistant_target(t.kind, msgs.back());
        }
        if (const JsonValue* parts = c.get("assistant_parts"))
            for (const JsonValue& part : parts->array) want_assistant += part.string;
        bool gen = c.get("add_generation_prompt")->boolean;
        if (std::optional<size_t> at = refused_message(t.kind, msgs)) {
            const std::string err = render_error(t, msgs);
            const std::string why = msgs[*at].parts ? " is a system message of " : " has role '" + msgs[*at].role + "'";
            CHECK_MESSAGE(err.find("message " + std::to_string(*at) + why) == 0, err);
            refused++;
            continue;
        }
        qwen3 += t.kind == ChatTemplateKind::Qwen3;
        gemma3 += t.kind == ChatTemplateKind::Gemma3;
        const std::string& expected = c.get("expected")->string;
        std::string all, assistant;
        for (const ChatPiece& p : chat_render_pieces(t, msgs, gen)) {
            all += p.text;
            if (p.assistant) assistant += p.text;
        }
        total++;
        same += all == expected;
        CHECK_MESSAGE(all == expected, c.get("template")->string << ": " << json_quote(all) << " != " << json_quote(expected));
        CHECK(chat_render(t, msgs, gen) == expected);
        CHECK(assistant == want_assistant);  // exactly the assistant contents + end-of-turn markers are marked
        // "weight": 0 on a message (ChatMessage::trained): the same text, that turn no longer marked.
        std::vector<ChatMessage> context = msgs;
        std::string want_rest;
        bool first = true;
        for (ChatMessage& m : context)
            if (m.role == "assistant") {
                m.trained = !first;
                if (!first) want_rest += assistant_target(t.kind, m);
                first = false;
            }
        std::string all0, assistant0;
        for (const ChatPiece& p : chat_render_pieces(t, context, gen)) {
            all0 += p.text;
            if (p.assistant) assistant0 += p.text;
        }
        CHECK(all0 == expected);
        if (t.kind != ChatTemplateKind::Qwen3) CHECK(assistant0 == want_rest);  // (Qwen3's targets are listed whole)
        else if (std::count_if(msgs.begin(), msgs.end(), [](const ChatMessage& m) { return m.role == "assistant"; }) == 1)
            CHECK(assistant0.empty());
    }
    MESSAGE(same << "/" << total << " chat renders identical to transformers, " << qwen3 << " of them Qwen3's, " << gemma3
                 << " Gemma 3's (" << refused
                 << " conversations refused: messages Llama-2's or Zephyr's template would drop, roles other than tool that"
                    " ChatML's and Qwen3's render, Gemma 3's as turns of their own)");
    CHECK(total >= 360);
    CHECK(qwen3 >= 70);
    CHECK(gemma3 >= 40);
    // every conversation transformers' template raises on, we refuse too
    int errors = 0;
    for (const JsonValue& c : fx.get("errors")->array) {
        if (!templates.count(c.get("template")->string)) continue;  // an older release's template (variants)
        std::vector<ChatMessage> msgs;
        for (const JsonValue& m : c.get("messages")->array) msgs.push_back(fixture_message(m));
        CAPTURE(c.get("error")->string);
        CHECK(!render_error(templates.at(c.get("template")->string), msgs).empty());
        errors++;
    }
    CHECK(errors >= 20);
}

// Tool calling as Qwen2.5's and Qwen3's templates render it (tests/fixtures/chat/gen_tool_fixtures.py):
// each case a dataset line read by the data reader, rendered as transformers renders it, and every
// assistant turn from its header to its <|im_end|> learned (its content, its calls, the marker).
TEST_CASE("chat: tool definitions, calls and results render as transformers renders Qwen2.5's, Qwen3's and Llama 3.2's") {
    JsonValue templates = *json_parse(read_file("tests/fixtures/chat/render.json")).get("templates");
    templates.object.push_back({"llama3.1", *json_parse(read_file("tests/fixtures/chat/llama31.json")).get("template")});
    const JsonValue fx = json_parse(read_file("tests/fixtures/chat/tools.json"));
    int n = 0, llama = 0;
    for (const JsonValue& c : fx.get("cases")->array) {
        const std::string& name = c.get("template")->string;
        const ChatTemplate t = chat_template_from_jinja(templates.get(name)->string);
        CHECK(t.kind == chat_template_from_name(name).kind);
        llama += t.kind == ChatTemplateKind::Llama31;
        const bool gen = c.get("add_generation_prompt")->boolean;
        // a prompt to answer may end with a tool's result; training data ends with the answer
        const ParsedFile pf = parse_records(json_quote_line(*c.get("line")), "tools.jsonl", true,
                                            gen ? Answers::optional : Answers::required);
        REQUIRE_MESSAGE(pf.invalid.empty(), (pf.invalid.empty() ? "" : pf.invalid[0].what));
        const Record& r = pf.records.at(0);
        const std::string& expected = c.get("expected")->string;
        const auto [all, learned] = render_marked(t, r.messages, gen, r.tools);
        std::string want;
        CHECK_MESSAGE(all == expected, c.get("template")->string << ": " << json_quote(all) << " != " << json_quote(expected));
        const bool l31 = t.kind == ChatTemplateKind::Llama31;
        const std::string head = l31 ? "<|start_header_id|>assistant<|end_header_id|>\n\n" : "<|im_start|>assistant\n",
                          end = l31 ? "<|eot_id|>" : "<|im_end|>";
        for (size_t at = expected.find(head); at != std::string::npos; at = expected.find(head, at + 1))
            if (const size_t close = expected.find(end, at); close != std::string::npos)
                want += expected.substr(at + head.size(), close + end.size() - at - head.size());
        CHECK(learned == want);
        n++;
    }
    CHECK(n == 28);
    CHECK(llama == 8);
    // Llama 3.1's writes one call a turn, alone: more, or text beside it, are refused
    const ChatTemplate l31 = chat_template_from_name("llama3.1");
    ChatMessage two{"assistant", ""}, with_text{"assistant", "Checking."};
    two.tool_calls = {{"f", "{}"}, {"g", "{}"}};
    with_text.tool_calls = {{"f", "{}"}};
    CHECK(render_error(l31, {{"user", "a"}, two}).find("message 1 has 2 tool calls but Llama 3.1's chat template writes one") == 0);
    CHECK(render_error(l31, {{"user", "a"}, with_text}).find("message 1 has content beside its tool call") == 0);
    CHECK(render_error_tools(l31, {{"system", "s"}}, {"{}"}).find("the conversation has tool definitions but no user message") == 0);
    CHECK(render_error_tools(l31, {{"assistant", "a"}}, {"{}"}).find("message 0 has role 'assistant' but Llama 3.1's") == 0);
    // Qwen2.5's template writes a string of arguments as a quoted string; we write the object it holds
    const ChatTemplate q25 = chat_template_from_name("qwen2.5");
    const std::string as_object = R"({"messages": [{"role": "user", "content": "a"}, {"role": "assistant", "content": "", "tool_calls": [{"function": {"name": "f", "arguments": {"x": 1.0}}}]}]})";
    const std::string as_string = R"({"messages": [{"role": "user", "content": "a"}, {"role": "assistant", "tool_calls": [{"function": {"name": "f", "arguments": "{\"x\":1.0}"}}]}]})";
    const Record ro = parse_records(as_object, "o.jsonl", true).records.at(0), rs = parse_records(as_string, "s.jsonl", true).records.at(0);
    CHECK(chat_render(q25, rs.messages, false) == chat_render(q25, ro.messages, false));
    CHECK(chat_render(q25, rs.messages, false).find("<tool_call>\n{\"name\": \"f\", \"arguments\": {\"x\": 1.0}}\n</tool_call><|im_end|>") != std::string::npos);
    CHECK(chat_render(chat_template_from_name("qwen3"), rs.messages, false).find("\"arguments\": {\"x\":1.0}}") != std::string::npos);
    // A conversation opening with a tool's result: Qwen2.5's template injects its default system turn
    // before it (its system block comes before the loop over messages), as transformers renders it.
    const std::vector<ChatMessage> tool_first = {{"tool", "r"}, {"user", "q"}, {"assistant", "a"}};
    CHECK(chat_render(q25, tool_first, false) ==
          "<|im_start|>system\nYou are Qwen, created by Alibaba Cloud. You are a helpful assistant.<|im_end|>\n"
          "<|im_start|>user\n<tool_response>\nr\n</tool_response><|im_end|>\n<|im_start|>user\nq<|im_end|>\n"
          "<|im_start|>assistant\na<|im_end|>\n");
    // templates without tool calling refuse a conversation with tool definitions
    CHECK(render_error_tools(chat_template_from_name("llama3"), ro.messages, {"{}"}).find(
              "the conversation has tool definitions but the llama3 chat template does not render tool calling") == 0);
}

// The dataset forms of tool calling: OpenAI's messages, and LLaMA-Factory's ShareGPT (function_call and
// observation turns, "tools" as a string of JSON) read as the same conversation; bad fields named.
TEST_CASE("chat: tool calling in OpenAI's and LLaMA-Factory's dataset forms; bad tool fields are named") {
    const std::string openai = R"({"tools": [{"name": "f", "parameters": {}}], "messages": [{"role": "user", "content": "q"},)"
                               R"( {"role": "assistant", "content": null, "tool_calls": [{"type": "function", "function": {"name": "f", "arguments": {"a": 1}}}]},)"
                               R"( {"role": "tool", "content": "r"}, {"role": "assistant", "content": "done"}]})";
    const std::string sharegpt = R"({"tools": "[{\"name\": \"f\", \"parameters\": {}}]", "conversations": [{"from": "human", "value": "q"},)"
                                 R"( {"from": "function_call", "value": "{\"name\": \"f\", \"arguments\": {\"a\": 1}}"},)"
                                 R"( {"from": "observation", "value": "r"}, {"from": "gpt", "value": "done"}]})";
    const ParsedFile a = parse_records(openai + "\n", "a.jsonl", true), b = parse_records(sharegpt + "\n", "b.jsonl", true);
    REQUIRE(a.invalid.empty());
    REQUIRE(b.invalid.empty());
    for (const char* name : {"qwen2.5", "qwen3"}) {
        const ChatTemplate t = chat_template_from_name(name);
        CHECK(chat_render(t, a.records[0].messages, false, a.records[0].tools) ==
              chat_render(t, b.records[0].messages, false, b.records[0].tools));
    }
    CHECK(a.records[0].tools == std::vector<std::string>{R"({"name": "f", "parameters": {}})"});
    CHECK(record_question(a.records[0]) == "q");  // the prompt ends with the tool's result, not the question
    // OpenAI's older function calling: "functions", an assistant's "function_call", "role": "function"
    const std::string legacy = R"({"functions": [{"name": "f", "parameters": {}}], "messages": [{"role": "user", "content": "q"},)"
                               R"( {"role": "assistant", "content": null, "function_call": {"name": "f", "arguments": "{\"a\": 1}"}},)"
                               R"( {"role": "function", "name": "f", "content": "r"}, {"role": "assistant", "content": "done"}]})";
    const ParsedFile c = parse_records(legacy + "\n", "c.jsonl", true);
    REQUIRE(c.invalid.empty());
    const ChatTemplate q25 = chat_template_from_name("qwen2.5");
    const std::string modern = R"({"tools": [{"type": "function", "function": {"name": "f", "parameters": {}}}], "messages": [{"role": "user", "content": "q"},)"
                               R"( {"role": "assistant", "tool_calls": [{"name": "f", "arguments": {"a": 1}}]},)"
                               R"( {"role": "tool", "content": "r"}, {"role": "assistant", "content": "done"}]})";
    const ParsedFile d = parse_records(modern + "\n", "d.jsonl", true);
    REQUIRE(d.invalid.empty());
    CHECK(chat_render(q25, c.records[0].messages, false, c.records[0].tools) == chat_render(q25, d.records[0].messages, false, d.records[0].tools));
    // "functions" as a string of their JSON (as "tools" may be) are the same tools; a definition that
    // is no object is refused, not wrapped into a tool whose "function" is a string
    std::string quoted = legacy;
    const std::string list = R"([{"name": "f", "parameters": {}}])";
    quoted.replace(quoted.find(list), list.size(), R"("[{\"name\": \"f\", \"parameters\": {}}]")");
    const ParsedFile cs = parse_records(quoted + "\n", "cs.jsonl", true);
    REQUIRE(cs.invalid.empty());
    CHECK(cs.records[0].tools == d.records[0].tools);
    const auto problem = [](const std::string& line) {
        const ParsedFile pf = parse_records(line + "\n", "p.jsonl", true);
        return pf.invalid.empty() ? std::string() : pf.invalid[0].what;
    };
    const std::string user = R"({"role": "user", "content": "q"}, )";
    CHECK(problem(R"({"messages": [{"role": "user", "content": "q", "tool_calls": [{"name": "f", "arguments": {}}]}, {"role": "assistant", "content": "a"}]})") ==
          "messages[0]: tool_calls on a user message: only an assistant calls tools");
    CHECK(problem(R"({"messages": [)" + user + R"({"role": "assistant", "tool_calls": [{"name": "f"}]}]})") ==
          "messages[1].tool_calls[0]: missing field \"arguments\" (an object; {} for none)");
    CHECK(problem(R"({"messages": [)" + user + R"({"role": "assistant", "tool_calls": [{"name": "f", "arguments": "[1]"}]}]})") ==
          "messages[1].tool_calls[0].arguments: expected an object (or a string of one), got array");
    CHECK(problem(R"({"messages": [)" + user + R"({"role": "assistant", "tool_calls": [{"name": "f", "arguments": "{x"}]}]})").find(
              "messages[1].tool_calls[0].arguments: a string that is not JSON (line 1, column 2") == 0);
    CHECK(problem(R"({"messages": [)" + user + R"({"role": "assistant", "tool_calls": [{"arguments": {}}]}]})") ==
          "messages[1].tool_calls[0]: missing field \"name\"");
    CHECK(problem(R"({"tools": {"name": "f"}, "messages": [)" + user + R"({"role": "assistant", "content": "a"}]})") ==
          "field \"tools\": expected an array of tool definitions, got object");
    CHECK(problem(R"({"messages": [)" + user + R"({"role": "assistant", "content": ""}]})") == "messages[1]: field \"content\" is empty");
    CHECK(problem(R"({"messages": [)" + user + R"({"role": "ipython", "content": "x"}, {"role": "assistant", "content": "a"}]})") ==
          "messages[1]: unknown role \"ipython\" (expected system, user, assistant or tool)");
    CHECK(problem(R"({"messages": [)" + user + R"({"role": "assistant", "tool_calls": [{"name": "f", "arguments": {}}], "function_call": {"name": "f", "arguments": {}}}]})") ==
          "messages[1]: both \"tool_calls\" and \"function_call\" (OpenAI's older form of one call): keep one");
    CHECK(problem(R"({"tools": [{"name": "f"}], "functions": [{"name": "f"}], "messages": [)" + user + R"({"role": "assistant", "content": "a"}]})") ==
          "both \"tools\" and \"functions\" (OpenAI's older form of tools): keep one");
    CHECK(problem(R"({"functions": ["f"], "messages": [)" + user + R"({"role": "assistant", "content": "a"}]})") ==
          "functions[0]: expected an object, got string");
    CHECK(problem(R"({"functions": {"name": "f"}, "messages": [)" + user + R"({"role": "assistant", "content": "a"}]})") ==
          "field \"functions\": expected an array of function definitions, got object");
    // LLaMA-Factory's "tools" of a line without tools: "" (a string column's empty value) is none, as "[]" is
    CHECK(problem(R"({"tools": "", "conversations": [{"from": "human", "value": "q"}, {"from": "gpt", "value": "a"}]})").empty());
    // A function_call turn is an assistant turn like another: its "weight" counts (0: context), and
    // a value of no call at all would be an empty turn learned.
    const auto sharegpt_call = [](const std::string& call) {
        return R"({"conversations": [{"from": "human", "value": "q"}, )" + call +
               R"(, {"from": "observation", "value": "r"}, {"from": "gpt", "value": "done"}]})";
    };
    const ParsedFile w0 = parse_records(sharegpt_call(R"({"from": "function_call", "value": "{\"name\": \"f\", \"arguments\": {}}", "weight": 0})") + "\n", "w.jsonl", true);
    REQUIRE(w0.invalid.empty());
    CHECK(!w0.records[0].messages[1].trained);
    CHECK(problem(sharegpt_call(R"({"from": "function_call", "value": "{\"name\": \"f\", \"arguments\": {}}", "weight": 2})")) ==
          "conversations[1]: field \"weight\" must be 0 (the turn is context, not learned) or 1 (learned)");
    CHECK(problem(sharegpt_call(R"({"from": "function_call", "value": "[]"})")) ==
          "conversations[1].value: no call (an empty list): a function_call turn holds one or more");
}

// Llama 3.1-3.3's dated system block (tests/fixtures/chat/gen_llama31_fixtures.py: Llama 3.2's own
// template rendered by transformers with the date we write): identical text, the assistant turns
// alone learned, and the template recognised and written back byte for byte.
TEST_CASE("chat: Llama 3.1+ renders its dated system block as transformers renders Llama 3.2's template") {
    const JsonValue fx = json_parse(read_file("tests/fixtures/chat/llama31.json"));
    const std::string& jinja = fx.get("template")->string;
    const ChatTemplate t = chat_template_from_jinja(jinja);
    CHECK(t.kind == ChatTemplateKind::Llama31);
    CHECK(chat_template_to_jinja(t) == jinja);
    CHECK(chat_template_from_name("llama3.1").kind == ChatTemplateKind::Llama31);
    int n = 0;
    for (const JsonValue& c : fx.get("cases")->array) {
        std::vector<ChatMessage> msgs;
        std::string want;
        for (const JsonValue& m : c.get("messages")->array) {
            msgs.push_back({m.get("role")->string, m.get("content")->string});
            if (msgs.back().role == "assistant") want += assistant_target(t.kind, msgs.back());
        }
        const auto [all, learned] = render_marked(t, msgs, c.get("add_generation_prompt")->boolean);
        CHECK_MESSAGE(all == c.get("expected")->string, json_quote(all));
        CHECK(learned == want);
        n++;
    }
    CHECK(n == 10);
}

// SmolLM3's template (tests/fixtures/chat/gen_smollm3_fixtures.py: rendered by transformers with the
// date we write): its system block in each of its forms (default instructions with reasoning on and
// off, /think and /no_think taken out, /system_override, the block left open without tools), tool
// definitions as Python's repr, tool results as user turns, calls written into the content; the
// assistant turns alone learned; the template recognised and written back byte for byte.
TEST_CASE("chat: SmolLM3 renders as transformers renders its template") {
    const JsonValue fx = json_parse(read_file("tests/fixtures/chat/smollm3.json"));
    const std::string& jinja = fx.get("template")->string;
    const ChatTemplate t = chat_template_from_jinja(jinja);
    CHECK(t.kind == ChatTemplateKind::SmolLM3);
    CHECK(chat_template_to_jinja(t) == jinja);
    CHECK(chat_template_from_name("smollm3").kind == ChatTemplateKind::SmolLM3);
    CHECK(fx.get("date")->string == kSmolLM3Date);
    int n = 0;
    for (const JsonValue& c : fx.get("cases")->array) {
        const bool gen = c.get("add_generation_prompt")->boolean;
        const ParsedFile pf = parse_records(json_quote_line(*c.get("line")), "smollm3.jsonl", true,
                                            gen ? Answers::optional : Answers::required);
        REQUIRE_MESSAGE(pf.invalid.empty(), (pf.invalid.empty() ? "" : pf.invalid[0].what));
        const Record& r = pf.records.at(0);
        const auto [all, learned] = render_marked(t, r.messages, gen, r.tools);
        CHECK_MESSAGE(all == c.get("expected")->string, json_quote(all) << " != " << json_quote(c.get("expected")->string));
        CHECK(learned == c.get("learned")->string);
        n++;
    }
    CHECK(n == 24);
    // Copies differ in the whitespace Jinja strips (next to a tag's "-") and in comments: still SmolLM3's.
    // Unsloth's GGUF edit (no date, the block always closed) renders differently: refused, naming --template smollm3.
    std::string reindented;
    for (char ch : jinja) reindented += ch == '\n' ? std::string("\n    ") : std::string(1, ch);
    CHECK(chat_template_from_jinja("{#- a comment #}\n" + reindented).kind == ChatTemplateKind::SmolLM3);
    // but a comment is not nothing to Jinja: the "{%-" after it strips the text between them only, and
    // the newline right after it goes (transformers' trim_blocks). transformers renders this copy's
    // system block followed by "  " (the spaces between the comments), and this Zephyr copy without
    // the newline after each turn ("<|user|>\nHi</s><|assistant|>\nYo</s>"): neither is recognised.
    std::string spaced = jinja;
    spaced.insert(spaced.find("{# ───── main loop"), "{# a comment #}  ");
    CHECK_THROWS_WITH(chat_template_from_jinja(spaced), doctest::Contains("a SmolLM3-style chat template that is not"));
    std::string zephyr = chat_template_to_jinja(chat_template_from_name("zephyr"));
    for (size_t at = 0; (at = zephyr.find("eos_token }}\n", at)) != std::string::npos; at += 20) zephyr.insert(at + 12, "{# c #}");
    CHECK(zephyr.find("eos_token }}{# c #}\n{% elif") != std::string::npos);
    CHECK_THROWS_WITH(chat_template_from_jinja(zephyr), doctest::Contains("chat template that is not Zephyr's"));
    // where the text on both sides of it is stripped anyway it changes nothing
    std::string between = jinja;
    between.insert(between.find("{%- if add_generation_prompt"), "{#- a -#}  \n  {# b #}\n");
    CHECK(chat_template_from_jinja(between).kind == ChatTemplateKind::SmolLM3);
    std::string unsloth = jinja;
    unsloth.erase(unsloth.find("{%- set today"), unsloth.find("{{- \"Reasoning Mode") - unsloth.find("{%- set today"));
    std::string err;
    try {
        chat_template_from_jinja(unsloth);
    } catch (const std::runtime_error& e) {
        err = e.what();
    }
    CHECK(err.find("a SmolLM3-style chat template that is not SmolLM3-3B's own") == 0);
    CHECK(err.find("pass --template smollm3") != std::string::npos);
    // roles the template drops are refused; a weight-0 assistant turn is context
    CHECK(render_error(t, {{"user", "a"}, {"system", "late"}, {"assistant", "b"}}).find("message 1 has role 'system' but SmolLM3's") == 0);
    ChatMessage context{"assistant", "old"};
    context.trained = false;
    CHECK(render_marked(t, {{"system", "/no_think"}, {"user", "a"}, context, {"user", "b"}, {"assistant", "\nnew"}}, false).learned ==
          "new<|im_end|>");
}

// Mistral-7B-Instruct-v0.3 (tests/fixtures/chat/gen_mistral_v03_fixtures.py): prompts and training
// conversations rendered as transformers renders its template, and training conversations tokenized
// with its v3 SentencePiece model as Mistral's own tokenizer (mistral-common) encodes them for
// fine-tuning, the system message in the last user turn; the answers alone learned.
TEST_CASE("chat: --no-think renders Qwen3 and SmolLM3 as transformers does with enable_thinking=False") {
    int n = 0;
    const JsonValue fx = json_parse(read_file("tests/fixtures/chat/no_think.json"));
    for (const JsonValue& c : fx.get("cases")->array) {
        const bool gen = c.get("add_generation_prompt")->boolean;
        ChatTemplate t = chat_template_from_name(c.get("template")->string);
        t.thinking = false;
        const ParsedFile pf = parse_records(json_quote_line(*c.get("line")), "no_think.jsonl", true,
                                            gen ? Answers::optional : Answers::required);
        REQUIRE(pf.invalid.empty());
        const std::string all = render_marked(t, pf.records.at(0).messages, gen).all;
        CHECK_MESSAGE(all == c.get("expected")->string, json_quote(all) << " != " << json_quote(c.get("expected")->string));
        n++;
    }
    CHECK(n == 16);
}

TEST_CASE("chat: Mistral v0.3 renders as its template does and tokenizes as mistral-common does") {
    const JsonValue fx = json_parse(read_file("tests/fixtures/chat/mistral_v03.json"));
    const std::string& jinja = fx.get("template")->string;
    const ChatTemplate t = chat_template_from_jinja(jinja);
    CHECK(t.kind == ChatTemplateKind::MistralV03);
    CHECK(chat_template_to_jinja(t) == jinja);
    CHECK(chat_template_from_name("mistral-v0.3").kind == ChatTemplateKind::MistralV03);
    const auto messages = [](const JsonValue& c) {
        std::vector<ChatMessage> msgs;
        for (const JsonValue& m : c.get("messages")->array) msgs.push_back({m.get("role")->string, m.get("content")->string});
        return msgs;
    };
    int renders = 0;
    for (const JsonValue& c : fx.get("render")->array) {
        const Rendered r = render_marked(t, messages(c), c.get("add_generation_prompt")->boolean);
        CHECK_MESSAGE(r.all == c.get("expected")->string, json_quote(r.all));
        renders++;
    }
    CHECK(renders == 18);
    // The v3 tokenizer as its tokenizer.json has it (transformers' legacy = false): "▁" before the
    // text's first run only, so the text after [INST] is not given a second one
    Tokenizer v3 = tokenizer_load_spm("tests/fixtures/tokenizer/mistral_v3/tokenizer.model");
    v3.space_prefix = SpacePrefix::First;
    const DataTokenizer dt = data_tokenizer(v3, t);
    // the token ids, and the learned tokens: each answer or call turn, what follows [/INST] (id 4) or
    // the last [/TOOL_RESULTS] (9) up to its </s> (2)
    const auto check_ids = [&](const ParsedFile& pf, const JsonValue& ids) {
        DataReport rep;
        const std::vector<Example> ex = build_examples(pf, dt, DataOptions{}, rep);
        REQUIRE(ex.size() == 1);
        std::vector<int32_t> want;
        for (const JsonValue& id : ids.array) want.push_back((int32_t)id.integer);
        CHECK(ex[0].tokens == want);
        std::vector<float> answer(want.size(), 0.0f);
        for (size_t i = 1, in_answer = 0; i < want.size(); i++) {
            if ((want[i - 1] == 4 || want[i - 1] == 9) && want[i] != 8) in_answer = 1;
            answer[i] = in_answer ? 1.0f : 0.0f;
            if (want[i] == 2) in_answer = 0;
        }
        CHECK(ex[0].weights == answer);
    };
    int encodings = 0;
    for (const JsonValue& c : fx.get("ids")->array) {
        ParsedFile pf;
        pf.records.push_back(Record{});
        pf.records[0].messages = messages(c);
        check_ids(pf, *c.get("ids"));
        encodings++;
    }
    CHECK(encodings == 7);
    // tool calling, from dataset lines in OpenAI's form
    int with_tools = 0;
    for (const JsonValue& c : fx.get("tools")->array) {
        const ParsedFile pf = parse_records(json_quote_line(*c.get("line")), "tools.jsonl", true);
        REQUIRE(pf.invalid.empty());
        check_ids(pf, *c.get("ids"));
        with_tools++;
    }
    CHECK(with_tools == 6);
    // a prompt with tools (./generate) is what mistral-common encodes to serve it: an empty system
    // message dropped, where the template (without tools) writes its "\n\n"
    const std::string convert = "{\"type\": \"function\", \"function\": {\"name\": \"convert\", \"parameters\": {}}}";
    CHECK(chat_render(t, {{"system", ""}, {"user", "a"}}, true, {convert}) ==
          "<s>[AVAILABLE_TOOLS] [{\"type\": \"function\", \"function\": {\"name\": \"convert\", \"description\": \"\", "
          "\"parameters\": {}}}][/AVAILABLE_TOOLS][INST] a[/INST]");
    // ids that are not Mistral's 9 letters and digits (OpenAI's call_...) are made into such, the same
    // for a call and the result naming it; a result that names none answers its turn's calls in order
    ChatMessage calls{"assistant", ""};
    calls.tool_calls = {{"get_weather", "{}"}};
    calls.tool_calls[0].id = "call_8f3a2b";
    ChatMessage named{"tool", "1"}, unnamed{"tool", "2"};
    named.tool_call_id = "call_8f3a2b";
    const std::string text =
        chat_render(t, {{"user", "a"}, calls, named, {"assistant", "x"}, {"user", "b"}, calls, unnamed, {"assistant", "c"}}, false);
    const size_t id_at = text.find("\"id\": \"") + 7;
    const std::string id = text.substr(id_at, 9);
    CHECK(std::all_of(id.begin(), id.end(), [](char ch) { return isalnum((unsigned char)ch); }));
    CHECK(text.substr(id_at + 9, 1) == "\"");
    CHECK(text.find("{\"content\": 1, \"call_id\": \"" + id + "\"}") != std::string::npos);
    CHECK(text.find("{\"content\": 2, \"call_id\": \"" + id + "\"}") != std::string::npos);
    ChatMessage both = calls;
    both.content = "Checking.";
    CHECK(render_error(t, {{"user", "a"}, both}).find("message 1 has content beside its tool calls") == 0);
    // the template's alternation is required (after an optional first system message)
    CHECK(render_error(t, {{"user", "a"}, {"user", "b"}}).find("message 1 has role 'user' but Mistral v0.3's chat template") == 0);
}

TEST_CASE("chat: pieces mark assistant turns for the label mask") {
    ChatTemplate smol{ChatTemplateKind::ChatML, "Be nice."};
    auto pieces = chat_render_pieces(smol, {{"user", "Hi"}, {"assistant", "Hello!"}, {"user", "Bye"}, {"assistant", "Bye!"}}, false);
    REQUIRE(pieces.size() == 5);
    CHECK(pieces[0].text == "<|im_start|>system\nBe nice.<|im_end|>\n<|im_start|>user\nHi<|im_end|>\n<|im_start|>assistant\n");
    CHECK_FALSE(pieces[0].assistant);
    CHECK(pieces[1].text == "Hello!<|im_end|>");
    CHECK(pieces[1].assistant);
    CHECK(pieces[2].text == "\n<|im_start|>user\nBye<|im_end|>\n<|im_start|>assistant\n");
    CHECK(pieces[3].text == "Bye!<|im_end|>");
    CHECK(pieces[4].text == "\n");
}

TEST_CASE("chat: Qwen3 pieces: the think block is learned with the answer") {
    ChatTemplate q = chat_template_from_name("qwen3");
    std::vector<ChatMessage> msgs = {{"system", "Be brief."}, {"user", "2+2?"}, {"assistant", "<think>add</think>4"},
                                     {"user", "3+3?"}, {"assistant", "6"}};
    auto pieces = chat_render_pieces(q, msgs, false);
    REQUIRE(pieces.size() == 5);
    CHECK(pieces[0].text == "<|im_start|>system\nBe brief.<|im_end|>\n<|im_start|>user\n2+2?<|im_end|>\n<|im_start|>assistant\n");
    CHECK(pieces[1].text == "4<|im_end|>");  // before the last query: the reasoning is dropped
    CHECK(pieces[1].assistant);
    CHECK(pieces[2].text == "\n<|im_start|>user\n3+3?<|im_end|>\n<|im_start|>assistant\n");
    CHECK_FALSE(pieces[2].assistant);
    CHECK(pieces[3].text == "<think>\n\n</think>\n\n6<|im_end|>");  // the final turn: an empty block, learned
    CHECK(pieces[3].assistant);
    CHECK(pieces[4].text == "\n");
    // the generation prompt ends where the model starts writing its think block
    msgs.pop_back();
    CHECK(chat_render(q, msgs, true).substr(chat_render(q, msgs, false).size()) == "<|im_start|>assistant\n");
    msgs.push_back({"assistant", "6", std::string("\nsix\n")});
    CHECK(chat_render_pieces(q, msgs, false)[3].text == "<think>\nsix\n</think>\n\n6<|im_end|>");
}

TEST_CASE("chat: Gemma 3 pieces: the system message opens the first user turn; the model's turns are learned") {
    ChatTemplate g = chat_template_from_name("gemma3");
    CHECK(g.kind == ChatTemplateKind::Gemma3);
    CHECK(std::string(chat_template_name(ChatTemplateKind::Gemma3)) == "gemma3");
    std::vector<ChatMessage> msgs = {{"system", " Be brief. "}, {"user", " 2+2? "}, {"assistant", "4\n"}, {"user", "3+3?"},
                                     {"assistant", "6"}};
    auto pieces = chat_render_pieces(g, msgs, false);
    REQUIRE(pieces.size() == 5);
    CHECK(pieces[0].text == "<bos><start_of_turn>user\n Be brief. \n\n2+2?<end_of_turn>\n<start_of_turn>model\n");
    CHECK_FALSE(pieces[0].assistant);
    CHECK(pieces[1].text == "4<end_of_turn>");
    CHECK(pieces[1].assistant);
    CHECK(pieces[2].text == "\n<start_of_turn>user\n3+3?<end_of_turn>\n<start_of_turn>model\n");
    CHECK(pieces[3].text == "6<end_of_turn>");
    CHECK(pieces[3].assistant);
    CHECK(pieces[4].text == "\n");
    msgs.pop_back();
    CHECK(chat_render(g, msgs, true).substr(chat_render(g, msgs, false).size()) == "<start_of_turn>model\n");
    // a system message alone renders as <bos> only, as the template's loop has nothing to put it in
    CHECK(chat_render(g, {{"system", "S"}}, false) == "<bos>");
    CHECK(chat_render(g, {}, true) == "<bos><start_of_turn>model\n");
    // Gemma 1/2's template still has no system role; Gemma 3's refuses what its check raises on, and the
    // roles it would render as turns of their own, naming the message
    CHECK(render_error(chat_template_from_name("gemma"), {{"system", "x"}, {"user", "y"}}).find("message 0 has role 'system'") == 0);
    CHECK(render_error(g, {{"system", "x"}, {"assistant", "y"}}) ==
          "message 1 has role 'assistant' but Gemma 3's chat template needs roles to alternate user/assistant, starting "
          "with user after an optional first system message (expected 'user')");
    CHECK(render_error(g, {{"user", "x"}, {"system", "y"}}).find("message 1 has role 'system'") == 0);
    CHECK(render_error(g, {{"system", "s"}, {"user", "x"}, {"assistant", "y"}, {"tool", "z"}}).find("message 3 has role 'tool'") == 0);
    CHECK(render_error(g, {{"user", "a"}, {"assistant", "b", std::string("why")}}).find("message 1 has reasoning_content") == 0);
    // content parts: Gemma 3's alone renders them, each trimmed
    ChatMessage parts{"user", " a b", std::nullopt, std::vector<std::string>{" a", " b"}};
    CHECK(chat_render(g, {parts, {"assistant", "c"}}, false) == "<bos><start_of_turn>user\nab<end_of_turn>\n<start_of_turn>model\nc<end_of_turn>\n");
    CHECK(render_error(chat_template_from_name("gemma"), {parts, {"assistant", "c"}}) ==
          "message 0 has its content as a list of parts, which only Gemma 3's chat template (gemma3) renders: give the "
          "content as a string for the gemma template");
    ChatMessage system_parts{"system", "s1s2", std::nullopt, std::vector<std::string>{"s1", "s2"}};
    CHECK(render_error(g, {system_parts, {"user", "u"}}).find("message 0 is a system message of 2 content parts") == 0);
    // a template with Gemma 3's system prefix that is not its text is refused, saying what to pass
    std::string jinja = chat_template_to_jinja(g), err;
    CHECK(chat_template_from_jinja(jinja).kind == ChatTemplateKind::Gemma3);
    std::string crlf;  // a copy with Windows line ends is the same template
    for (char c : jinja) crlf += c == '\n' ? std::string("\r\n") : std::string(1, c);
    CHECK(chat_template_from_jinja(crlf).kind == ChatTemplateKind::Gemma3);
    std::string one_newline = jinja;
    for (size_t at; (at = one_newline.find("'\n\n'")) != std::string::npos;) one_newline.replace(at, 4, "'\n'");
    try {
        chat_template_from_jinja(one_newline);
    } catch (const std::runtime_error& e) {
        err = e.what();
    }
    CHECK(err.find("a Gemma chat template with a system prefix that is not Gemma 3's") == 0);
    CHECK(err.find("pass --template gemma3 if it renders its turns as Gemma 3's does") != std::string::npos);
    CHECK(chat_template_or_plain(one_newline, "x.gguf").kind == ChatTemplateKind::Plain);
}

TEST_CASE("chat: plain template") {
    ChatTemplate plain = chat_template_from_name("plain");
    auto pieces = chat_render_pieces(plain, {{"system", "Context."}, {"user", "Q?"}, {"assistant", "A."}}, true);
    REQUIRE(pieces.size() == 2);
    CHECK(pieces[0].text == "Context.\nQ?\n");
    CHECK(pieces[1].text == "A.\n");
    CHECK(pieces[1].assistant);
}

TEST_CASE("chat: names, detection and refusals") {
    CHECK(chat_template_from_name("chatml").kind == ChatTemplateKind::ChatML);
    CHECK(chat_template_from_name("llama3").kind == ChatTemplateKind::Llama3);
    CHECK(chat_template_from_name("gemma").kind == ChatTemplateKind::Gemma);
    CHECK(chat_template_from_name("qwen3").kind == ChatTemplateKind::Qwen3);
    CHECK(std::string(chat_template_name(ChatTemplateKind::Gemma)) == "gemma");
    CHECK(std::string(chat_template_name(ChatTemplateKind::Qwen3)) == "qwen3");
    std::string err;
    try {
        chat_template_from_name("alpaca");
    } catch (const std::runtime_error& e) {
        err = e.what();
    }
    CHECK(err == "unknown chat template 'alpaca': valid names are chatml, llama3, llama3.1, gemma, gemma3, llama2, mistral, "
          "mistral-v0.3, zephyr, qwen3, qwen2.5, smollm3, phi3, phi4, phi4-mini, plain");
    try {
        chat_template_from_jinja("{% for m in messages %}[INST] {{ m['content'] }} [/INST]{% endfor %}");
    } catch (const std::runtime_error& e) {
        err = e.what();
    }
    CHECK(err.find("an [INST] chat template that is neither Llama-2-chat's nor Mistral-7B-Instruct-v0.2's or v0.3's") == 0);
    CHECK(err.find("pass --template llama2|mistral|mistral-v0.3") != std::string::npos);
    try {
        chat_template_from_jinja("{{ messages[0]['content'] }}");
    } catch (const std::runtime_error& e) {
        err = e.what();
    }
    CHECK(err == "unrecognised chat template starting '{{ messages[0]['content'] }}...': pass --template chatml|llama3|gemma|"
                 "gemma3|llama2|mistral|zephyr|qwen3|qwen2.5|llama3.1|smollm3|mistral-v0.3|phi3|phi4|phi4-mini|plain");
    // the older releases' templates: Llama-2's transformers default is Llama-2's, Qwen3's first
    // release Qwen3's, Mistral v0.3's its own; the other Mistral ones and Qwen3-Thinking-2507's (a <think> template that
    // would lose its blocks as ChatML) are refused
    JsonValue fx = json_parse(read_file("tests/fixtures/chat/render.json"));
    for (const auto& [name, jinja] : fx.get("variants")->object) {
        CAPTURE(name);
        if (name.rfind("llama2", 0) == 0) CHECK(chat_template_from_jinja(jinja.string).kind == ChatTemplateKind::Llama2);
        else if (name == "qwen3_first_release") CHECK(chat_template_from_jinja(jinja.string).kind == ChatTemplateKind::Qwen3);
        else if (name == "mistral_v03") CHECK(chat_template_from_jinja(jinja.string).kind == ChatTemplateKind::MistralV03);
        else CHECK(chat_template_or_plain(jinja.string, "x").kind == ChatTemplateKind::Plain);
    }
    try {
        chat_template_from_jinja(fx.get("variants")->get("qwen3_thinking_2507")->string);
    } catch (const std::runtime_error& e) {
        err = e.what();
    }
    CHECK(err.find("a ChatML chat template with <think> blocks that is neither Qwen3's") == 0);
    CHECK(err.find("pass --template qwen3 if it renders its turns as Qwen3's does, or --template chatml") != std::string::npos);
    // Qwen3's template as some copies write it (CRLF, a final newline) is still Qwen3's
    std::string crlf_qwen3;
    for (char c : chat_template_to_jinja(chat_template_from_name("qwen3")) + "\n") crlf_qwen3 += c == '\n' ? std::string("\r\n") : std::string(1, c);
    CHECK(chat_template_from_jinja(crlf_qwen3).kind == ChatTemplateKind::Qwen3);
    // Llama 3.1+ (dated system block): Llama31; an unknown template in an importer: plain.
    CHECK(chat_template_from_jinja("{{- \"Cutting Knowledge Date: December 2023\\n\" }}<|start_header_id|>").kind ==
          ChatTemplateKind::Llama31);
    CHECK(chat_template_or_plain("[INST] {{ m }} [/INST]", "x.gguf").kind == ChatTemplateKind::Plain);
    // Zephyr's template as some copies write it (\n escapes, one space) is Zephyr's
    std::string zephyr = chat_template_to_jinja(chat_template_from_name("zephyr"));
    for (size_t at; (at = zephyr.find("|>\n'")) != std::string::npos;) zephyr.replace(at, 4, "|>\\n'");
    zephyr.replace(zephyr.find("'  +"), 4, "' +");
    CHECK(chat_template_from_jinja(zephyr).kind == ChatTemplateKind::Zephyr);
    std::string crlf;  // Windows line ends and a final newline render the same
    for (char c : chat_template_to_jinja(chat_template_from_name("zephyr")) + "\n") crlf += c == '\n' ? std::string("\r\n") : std::string(1, c);
    CHECK(chat_template_from_jinja(crlf).kind == ChatTemplateKind::Zephyr);
    // but newlines written as \n escapes between the tags are text Jinja prints as it is: not Zephyr's
    std::string escaped;
    for (char c : chat_template_to_jinja(chat_template_from_name("zephyr"))) escaped += c == '\n' ? std::string("\\n") : std::string(1, c);
    CHECK(chat_template_or_plain(escaped, "x").kind == ChatTemplateKind::Plain);
    CHECK(chat_template_or_plain("{% for message in messages %}{{'<|' + message['role'] + '|>' + '\n' + message['content'] + "
                                 "'<|end|>\n' }}{% endfor %}{{ '<|assistant|>\n' }}<|user|>", "phi3.gguf").kind == ChatTemplateKind::Plain);
    ChatTemplate gemma = chat_template_from_name("gemma");
    CHECK(render_error(gemma, {{"system", "x"}, {"user", "y"}}).find("message 0 has role 'system'") == 0);
    CHECK(render_error(gemma, {{"user", "a"}, {"user", "b"}}).find("message 1 has role 'user'") == 0);
    CHECK(render_error(gemma, {{"user", "a"}, {"assistant", "b"}}) == "");
    // tool messages where no tool calling is rendered, and reasoning where it cannot be, are refused naming the message
    ChatTemplate qwen3 = chat_template_from_name("qwen3"), chatml = chat_template_from_name("chatml");
    CHECK(render_error(qwen3, {{"user", "a"}, {"tool", "42"}, {"assistant", "b"}}) == "");
    CHECK(render_error(chatml, {{"user", "a"}, {"tool", "42"}}) ==
          "message 1 has role 'tool' but the chatml chat template does not render tool calling (qwen2.5's, qwen3's, "
          "smollm3's, llama3.1's and mistral-v0.3's do): pass --template qwen2.5|qwen3|smollm3|llama3.1|mistral-v0.3 if "
          "the model was trained on theirs, or drop the line");
    ChatMessage calls{"assistant", ""};
    calls.tool_calls = {{"f", "{}"}};
    CHECK(render_error(chatml, {{"user", "a"}, calls}).find("message 1 has tool_calls but the chatml chat template") == 0);
    CHECK(render_error(qwen3, {{"user", "a"}, {"function", "x"}}).find("message 1 has role 'function' but Qwen3's") == 0);
    const std::vector<ChatMessage> reasoned = {{"user", "a"}, {"assistant", "b", std::string("why")}};
    CHECK(render_error(qwen3, reasoned) == "");
    CHECK(render_error(chatml, reasoned) == "message 1 has reasoning_content but the chatml chat template does not render "
                                            "reasoning (only qwen3's does): drop the field, or write the reasoning into "
                                            "the content if the model should learn it");
    CHECK(render_error(qwen3, {{"user", "a", std::string("why")}, {"assistant", "b"}}) ==
          "message 0 has reasoning_content but role 'user': only assistant messages carry reasoning");
    CHECK(render_error(chat_template_from_name("llama2"), reasoned).find("message 1 has reasoning_content") == 0);
}

TEST_CASE("chat: the Jinja written for tokenizer_config.json is each family's own template, read back as the same") {
    JsonValue fx = json_parse(read_file("tests/fixtures/chat/render.json"));
    for (const auto& [name, jinja] : fx.get("templates")->object) {
        CAPTURE(name);
        const ChatTemplate t = chat_template_from_jinja(jinja.string);
        CHECK(chat_template_to_jinja(t) == jinja.string);  // byte for byte (Qwen2.5's with its tools block)
    }
    // Qwen2.5's text with another default system prompt is still Qwen2.5's, with that prompt
    ChatTemplate other{ChatTemplateKind::Qwen25, "Be a 'careful' coder.\nAlways."};
    const ChatTemplate back25 = chat_template_from_jinja(chat_template_to_jinja(other));
    CHECK(back25.kind == ChatTemplateKind::Qwen25);
    CHECK(back25.default_system == other.default_system);
    ChatTemplate quoted{ChatTemplateKind::ChatML, "Don't say \"hi\" \\ or {braces}.\r\nTwo lines."};
    ChatTemplate back = chat_template_from_jinja(chat_template_to_jinja(quoted));
    CHECK(back.kind == ChatTemplateKind::ChatML);
    CHECK(back.default_system == quoted.default_system);
    CHECK(chat_template_to_jinja(quoted).find('\r') == std::string::npos);  // escaped: Jinja's loader would drop it
    CHECK(chat_template_from_jinja(chat_template_to_jinja(ChatTemplate{})).kind == ChatTemplateKind::Plain);
}
