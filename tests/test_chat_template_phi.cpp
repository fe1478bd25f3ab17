// Microsoft's Phi chat templates (phi3, phi4, phi4-mini) against transformers' renders of the models'
// own Jinja texts, tests/fixtures/chat/phi.json (written by gen_phi_fixtures.py).
#include <doctest/doctest.h>

#include "data/json.h"
#include "model/util.h"
#include "tests/test_chat_util.h"
#include "tests/test_cli_util.h"
#include "tests/test_util.h"
#include "tokenizer/chat_template.h"
#include "tokenizer/tokenizer.h"

#include <unistd.h>

#include <algorithm>
#include <iterator>
#include <map>
#include <string>
#include <vector>

namespace {

const JsonValue& phi_fixtures() {
    static const JsonValue fx = json_parse(read_file("tests/fixtures/chat/phi.json"));
    return fx;
}

std::vector<ChatMessage> case_messages(const JsonValue& c) {
    std::vector<ChatMessage> msgs;
    for (const JsonValue& m : c.get("messages")->array) msgs.push_back(fixture_message(m));
    return msgs;
}

bool basic_roles(const std::vector<ChatMessage>& msgs) {
    return std::all_of(msgs.begin(), msgs.end(), [](const ChatMessage& m) {
        return m.role == "system" || m.role == "user" || m.role == "assistant";
    });
}

// A conversation the first releases' templates were made for: no system message, user and assistant
// alternating from the user's, ending with the answer (training) or with the user's turn and a
// generation prompt (a prompt).
bool plain_exchange(const std::vector<ChatMessage>& msgs, bool gen) {
    for (size_t i = 0; i < msgs.size(); i++)
        if (msgs[i].role != (i % 2 == 0 ? "user" : "assistant")) return false;
    return !msgs.empty() && msgs.back().role == (gen ? "user" : "assistant");
}

// Phi-4's first release writes the assistant's header after each user turn: the same text where the
// assistant answers each user turn but a prompt's last, and only those, and the conversation ends as a
// prompt or as training data does.
bool headers_after_users(const std::vector<ChatMessage>& msgs, bool gen) {
    for (size_t i = 0; i < msgs.size(); i++) {
        const bool after_user = i > 0 && msgs[i - 1].role == "user";
        if ((msgs[i].role == "assistant") != after_user) return false;
    }
    return !msgs.empty() && msgs.back().role == (gen ? "user" : "assistant");
}

}  // namespace

TEST_CASE("chat phi: renders exactly what transformers' apply_chat_template gives Phi-3.5's, Phi-4's and Phi-4-mini's templates") {
    const JsonValue& fx = phi_fixtures();
    int same = 0, refused = 0;
    for (const JsonValue& c : fx.get("cases")->array) {
        const std::string& name = c.get("template")->string;
        const JsonValue* jinja = fx.get("templates")->get(name);
        if (!jinja) continue;  // another release's text (next test case)
        CAPTURE(name);
        const ChatTemplate t = chat_template_from_jinja(jinja->string);
        REQUIRE(t.kind == chat_template_from_name(name).kind);
        const std::vector<ChatMessage> msgs = case_messages(c);
        const bool gen = c.get("add_generation_prompt")->boolean;
        if (!basic_roles(msgs)) {  // their templates drop such a message (Phi-4-mini's writes it as a turn)
            const size_t at = std::find_if(msgs.begin(), msgs.end(), [](const ChatMessage& m) {
                                  return m.role != "system" && m.role != "user" && m.role != "assistant";
                              }) - msgs.begin();
            const std::string err = render_error(t, msgs);
            CHECK_MESSAGE(err.find("message " + std::to_string(at) + " has role '" + msgs[at].role + "'") == 0, err);
            refused++;
            continue;
        }
        const std::string& expected = c.get("expected")->string;
        const Rendered r = render_marked(t, msgs, gen);
        CHECK_MESSAGE(r.all == expected, json_quote(r.all) << " != " << json_quote(expected));
        same += r.all == expected;
        // learned: each assistant message's content and end-of-turn marker; the eos after the last turn is not
        std::string want, want_rest;
        std::vector<ChatMessage> context = msgs;  // the first answer "weight": 0: the same text, not learned
        bool first = true;
        for (ChatMessage& m : context)
            if (m.role == "assistant") {
                want += assistant_target(t.kind, m);
                if (!first) want_rest += assistant_target(t.kind, m);
                m.trained = !first;
                first = false;
            }
        CHECK(r.learned == want);
        const Rendered r0 = render_marked(t, context, gen);
        CHECK(r0.all == expected);
        CHECK(r0.learned == want_rest);
    }
    MESSAGE(same << " Phi renders identical to transformers (" << refused << " conversations with roles the templates drop refused)");
    CHECK(same == 114);
    CHECK(refused == 12);
}

TEST_CASE("chat phi: the other releases' templates are read as the same kind, rendering alike where they agree") {
    const JsonValue& fx = phi_fixtures();
    const struct {
        const char* name;
        ChatTemplateKind kind;
    } variants[] = {{"phi3_mini", ChatTemplateKind::Phi3},
                    {"phi3_mini_first_release", ChatTemplateKind::Phi3},
                    {"phi3_medium", ChatTemplateKind::Phi3},
                    {"phi4_first_release", ChatTemplateKind::Phi4}};
    std::map<std::string, ChatTemplate> read;  // each read once: the first Phi-3 releases' print a note
    for (const auto& v : variants) {
        CAPTURE(v.name);
        read[v.name] = chat_template_from_jinja(fx.get("variants")->get(v.name)->string);
        CHECK(read[v.name].kind == v.kind);
    }
    CHECK(fx.get("variants")->object.size() == std::size(variants));
    int same = 0, differ = 0;
    for (const JsonValue& c : fx.get("cases")->array) {
        const std::string& name = c.get("template")->string;
        if (!fx.get("variants")->get(name)) continue;
        CAPTURE(name);
        const std::vector<ChatMessage> msgs = case_messages(c);
        const bool gen = c.get("add_generation_prompt")->boolean;
        if (!basic_roles(msgs)) continue;
        const std::string ours = chat_render(read.at(name), msgs, gen), &expected = c.get("expected")->string;
        CAPTURE(json_quote(expected));
        CAPTURE(json_quote(ours));
        if (name == "phi3_mini") {  // Phi-3-mini's writes an empty system message's turn, Phi-3.5-mini's does not
            const bool empty_system = !msgs.empty() && msgs[0].role == "system" && msgs[0].content.empty();
            CHECK(expected == (empty_system ? "<|system|>\n<|end|>\n" : "") + ours);
            same += !empty_system, differ += empty_system;
        } else if (name == "phi4_first_release") {
            const bool alike = headers_after_users(msgs, gen);
            if (alike) CHECK(expected == ours);
            same += alike, differ += expected != ours;
        } else {  // the first Phi-3 releases: <s> (the mini's) and no eos, on the exchanges they were made for
            const bool alike = plain_exchange(msgs, gen);
            const std::string bos = name == "phi3_mini_first_release" ? "<s>" : "";
            if (alike) CHECK(bos + ours == expected + (gen ? "" : "<|endoftext|>"));
            same += alike, differ += !alike && bos + ours != expected;
        }
    }
    MESSAGE(same << " renders of the other Phi releases' templates equal ours (up to the first releases' <s> and eos), "
                 << differ << " that differ where the releases differ");
    CHECK(same == 66);
    CHECK(differ >= 40);
}

TEST_CASE("chat phi: names, Jinja written back, recognition and refusals") {
    for (const char* name : {"phi3", "phi4", "phi4-mini"}) {
        CAPTURE(name);
        const ChatTemplate t = chat_template_from_name(name);
        CHECK(std::string(chat_template_name(t.kind)) == name);
        CHECK(t.default_system.empty());
        const std::string jinja = chat_template_to_jinja(t);
        CHECK(jinja == phi_fixtures().get("templates")->get(name)->string);  // the model's own text, byte for byte
        CHECK(chat_template_from_jinja(jinja).kind == t.kind);
        // copies that write the literals' newlines as \n escapes, with Windows line ends, are the same
        std::string escaped;
        for (char ch : jinja) escaped += ch == '\n' ? std::string("\\n") : std::string(1, ch);
        CHECK(chat_template_from_jinja(escaped + "\r\n").kind == t.kind);
        CHECK(chat_template_choice(t, "", false).kind == t.kind);
        CHECK(error_of([&] { chat_template_choice(t, "", true); }).find("--no-think: the " + std::string(name)) == 0);
    }
    // Phi-4's ChatML-like markers are not ChatML's; other <|im_sep|> and <|end|> templates are refused (plain in
    // an importer): Phi-4-reasoning's with think blocks, Phi-3-small's (another vocabulary's <|role|> turns)
    const std::string reasoning = "{% for message in messages %}{{'<|im_start|>' + message['role'] + '<|im_sep|>' + "
                                  "message['content'] + '<|im_end|>'}}{% endfor %}<think>";
    CHECK(error_of([&] { chat_template_from_jinja(reasoning); }).find("an <|im_sep|> chat template that is not Phi-4's") == 0);
    const std::string small = "{{ bos_token }}{% for message in messages %}{{'<|' + message['role'] + '|>' + '\n' + "
                              "message['content'] + '<|end|>\n' }}{% endfor %}{% if add_generation_prompt %}{{ "
                              "'<|assistant|>\n' }}{% else %}{{ eos_token }}{% endif %}";
    const std::string err = error_of([&] { chat_template_from_jinja(small); });
    CHECK(err.find("a <|end|> chat template that is none of Phi-3's") == 0);
    CHECK(err.find("pass --template phi3") != std::string::npos);
    CHECK(chat_template_or_plain(small, "phi3-small.gguf").kind == ChatTemplateKind::Plain);
    // tool calling, reasoning and content parts are refused as by the other templates without them
    const ChatTemplate phi3 = chat_template_from_name("phi3"), phi4 = chat_template_from_name("phi4");
    CHECK(render_error_tools(phi3, {{"user", "a"}}, {"{}"}).find("the conversation has tool definitions but the phi3 chat "
                                                                 "template does not render tool calling") == 0);
    ChatMessage calls{"assistant", ""};
    calls.tool_calls = {{"f", "{}"}};
    CHECK(render_error(phi4, {{"user", "a"}, calls}).find("message 1 has tool_calls but the phi4 chat template") == 0);
    CHECK(render_error(chat_template_from_name("phi4-mini"), {{"user", "a"}, {"tool", "42"}})
              .find("message 1 has role 'tool' but the phi4-mini chat template does not render tool calling") == 0);
    CHECK(render_error(phi3, {{"user", "a"}, {"assistant", "b", std::string("why")}}).find("message 1 has reasoning_content") == 0);
    // a generation prompt alone (transformers refuses an empty conversation; the templates write just it)
    CHECK(chat_render(phi3, {}, true) == "<|assistant|>\n");
    CHECK(chat_render(phi4, {}, true) == "<|im_start|>assistant<|im_sep|>");
    CHECK(chat_render(chat_template_from_name("phi4-mini"), {}, true) == "<|assistant|>");
    // generation stops at Phi's end-of-turn marker as at the others'
    Tokenizer tok;
    tok.token_to_id = {{"<|end|>", 32007}, {"<|endoftext|>", 32000}};
    tok.eos_id = 32000;
    const std::vector<int32_t> stops = end_of_turn_ids(tok);
    CHECK(std::find(stops.begin(), stops.end(), 32007) != stops.end());
    CHECK(std::find(stops.begin(), stops.end(), 32000) != stops.end());
}

// Phi-3-mini-4k/128k-instruct's template (as updated) is rendered as Phi-3.5-mini's, which drops an
// empty system message where it writes "<|system|>\n<|end|>\n": reading it says so, as reading the
// first releases' does (their differences are larger), so that data with empty system messages is
// not rendered unlike transformers without a word.
TEST_CASE("chat phi: reading Phi-3-mini's template notes the empty system turn it writes and Phi-3.5-mini's drops") {
    char dir[] = "/tmp/test_phi_XXXXXX";
    REQUIRE(mkdtemp(dir) != nullptr);
    const std::string d = dir;
    write_file_atomic(d + "/tokenizer.json", read_file("tests/fixtures/phi3/tiny_phi3_hf/tokenizer.json"));
    auto config = [&](const char* variant) {
        const std::string& jinja = variant ? phi_fixtures().get("variants")->get(variant)->string
                                           : phi_fixtures().get("templates")->get("phi3")->string;
        write_file_atomic(d + "/tokenizer_config.json", "{\"chat_template\": " + json_quote(jinja) + "}");
        return run("./tokenize --tokenizer " + d + "/tokenizer.json --save " + d + "/t.tok");
    };
    const Run mini = config("phi3_mini");
    INFO(mini.out);
    CHECK(mini.status == 0);
    CHECK(has(mini, "chat template phi3"));
    CHECK(has(mini, "note: Phi-3-mini-4k/128k-instruct's chat template: rendered as Phi-3.5-mini's, which writes no turn "
                    "for an empty system message where this one writes <|system|>\\n<|end|>\\n"));
    const Run phi35 = config(nullptr);
    CHECK(phi35.status == 0);
    CHECK(has(phi35, "chat template phi3"));
    CHECK(!has(phi35, "note:"));
}
