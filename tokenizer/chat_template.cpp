#include "tokenizer/chat_template.h"

#include "data/json.h"
#include "model/util.h"
#include "tokenizer/unicode.h"

#include <algorithm>
#include <string_view>
#include <utility>

namespace {

// Jinja's |trim is Python's str.strip(): it removes characters for which str.isspace() is true,
// which is the White_Space property plus the separators U+001C..U+001F.
bool python_isspace(uint32_t cp) { return (cp >= 0x1C && cp <= 0x1F) || is_whitespace(cp); }

// (right_only: Python's str.rstrip(), which SmolLM3's template applies.)
std::string trim(const std::string& s, bool right_only = false) {
    size_t b = 0, e = s.size();
    while (!right_only && b < e) {
        uint32_t cp;
        size_t n = utf8_decode(s, b, cp);
        if (!python_isspace(cp)) break;
        b += n;
    }
    while (e > b) {
        size_t start = e - 1;  // step back to the start of the last character
        while (start > b && ((unsigned char)s[start] & 0xC0) == 0x80) start--;
        uint32_t cp;
        if (utf8_decode(s, start, cp) != e - start || !python_isspace(cp)) break;
        e = start;
    }
    return s.substr(b, e - b);
}

// Appends text to the last piece when it has the same assistant flag, so pieces stay few.
void emit(std::vector<ChatPiece>& out, const std::string& text, bool assistant) {
    if (text.empty()) return;
    if (!out.empty() && out.back().assistant == assistant) out.back().text += text;
    else out.push_back({text, assistant});
}

// The turn layout every template shares: header, content, end-of-turn marker, separator; the
// content and marker of an assistant turn are what the model learns to produce.
void turn(std::vector<ChatPiece>& out, bool assistant, const std::string& header, const std::string& content,
          const std::string& end_of_turn, const std::string& separator) {
    emit(out, header, false);
    emit(out, content + end_of_turn, assistant);
    emit(out, separator, false);
}

// Llama-2-chat's and Mistral-Instruct's [INST] templates: an optional first system message goes
// into the first user turn, then user and assistant must alternate (their templates raise
// otherwise; Llama-2's would silently drop a later system message, which we refuse instead).
// add_generation_prompt changes nothing: the prompt already ends with [/INST].
void render_inst(ChatTemplateKind kind, const std::vector<ChatMessage>& messages, std::vector<ChatPiece>& out) {
    const bool llama2 = kind == ChatTemplateKind::Llama2;
    const char* name = llama2 ? "Llama-2's" : "Mistral's";
    size_t first = !messages.empty() && messages[0].role == "system" ? 1 : 0;
    if (!llama2) emit(out, "<s>", false);
    for (size_t i = first; i < messages.size(); i++) {
        const ChatMessage& m = messages[i];
        const char* want = (i - first) % 2 == 0 ? "user" : "assistant";
        if (m.role != want)
            fail("message %zu has role '%s' but %s chat template needs roles to alternate user/assistant, starting with "
                 "user after an optional first system message (expected '%s')", i, m.role.c_str(), name, want);
        if (m.role == "user") {
            const bool with_system = first && i == first;  // the system message joins the first user turn
            const std::string& system = messages[0].content;
            if (llama2)
                emit(out, "<s>[INST] " + trim(with_system ? "<<SYS>>\n" + system + "\n<</SYS>>\n\n" + m.content : m.content) + " [/INST]", false);
            else
                emit(out, " [INST] " + (with_system ? system + "\n\n" : "") + m.content + " [/INST]", false);
        } else {
            turn(out, m.trained, "", " " + (llama2 ? trim(m.content) : m.content), llama2 ? " </s>" : "</s>", "");
        }
    }
}

// A call id as Mistral's format needs it: 9 characters of a-z, A-Z and 0-9. A dataset's own id when
// it is one; else one made from it (FNV-1a in base 62), so that a call and the result naming it still
// agree; a call or result without one gets one made from `place`.
std::string mistral_call_id(const std::string& given, const std::string& place) {
    const auto alnum = [](char c) { return (c >= '0' && c <= '9') || (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z'); };
    if (given.size() == 9 && std::all_of(given.begin(), given.end(), alnum)) return given;
    uint64_t h = 1469598103934665603ull;
    for (char c : given.empty() ? place : given) h = (h ^ (uint8_t)c) * 1099511628211ull;
    const char* digits = "0123456789ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz";
    std::string id;
    for (int i = 0; i < 9; i++, h /= 62) id += digits[h % 62];
    return id;
}

// Mistral v0.3 as Mistral's own tokenizer (mistral-common, v3) writes a conversation for fine-tuning:
// [INST] and [/INST] control tokens without spaces but the answer's; the system message in the last
// user turn, and the tool definitions in [AVAILABLE_TOOLS] just before it; an assistant's calls as
// [TOOL_CALLS] and their JSON list, ended by </s> and learned; each tool result in [TOOL_RESULTS].
void render_mistral_v03(const std::vector<ChatMessage>& messages, const std::vector<std::string>& tools,
                        std::vector<ChatPiece>& out) {
    const size_t first = !messages.empty() && messages[0].role == "system" ? 1 : 0;
    size_t last_user = messages.size();
    for (size_t i = first; i < messages.size(); i++)
        if (messages[i].role == "user") last_user = i;
    emit(out, "<s>", false);
    std::vector<std::string> call_ids;  // the last call turn's, for the results that name none
    size_t turns = 0, results = 0;
    for (size_t i = first; i < messages.size(); i++) {
        const ChatMessage& m = messages[i];
        const std::string place = std::to_string(i);
        if (m.role == "tool") {  // its content as the JSON Python reads in it (NaN too), else as a
            std::string content;  // string; none is {}, as mistral-common's normalizer makes an empty result
            try {
                content = m.content.empty() ? "{}" : json_dumps_python(json_parse(m.content, true));
            } catch (const std::runtime_error&) {
                content = json_quote(m.content);
            }
            const std::string id = !m.tool_call_id.empty() ? mistral_call_id(m.tool_call_id, place)
                                   : results < call_ids.size() ? call_ids[results] : mistral_call_id("", "result " + place);
            results++;
            emit(out, "[TOOL_RESULTS] {\"content\": " + content + ", \"call_id\": \"" + id + "\"}[/TOOL_RESULTS]", false);
            continue;
        }
        if (m.role == "assistant" && !m.tool_calls.empty()) {
            call_ids.clear();
            results = 0;
            turn(out, m.trained, "", mistral_v03_calls_text(m, i, &call_ids), "</s>", "");
            continue;
        }
        // the other turns alternate user and assistant, as Mistral's template and validator require
        const char* want = turns++ % 2 == 0 ? "user" : "assistant";
        if (m.role != want)
            fail("message %zu has role '%s' but Mistral v0.3's chat template needs roles to alternate user/assistant "
                 "(tool calls and their results between them), starting with user after an optional first system "
                 "message (expected '%s')", i, m.role.c_str(), want);
        if (m.role == "user") {
            std::string head;
            if (i == last_user && !tools.empty()) {  // each definition as mistral-common's Tool writes it
                // (from OpenAI's form: a missing or null description is "", missing or null parameters {})
                head = "[AVAILABLE_TOOLS] [";
                for (size_t k = 0; k < tools.size(); k++) {
                    const JsonValue t = json_parse(tools[k]);
                    const JsonValue* fn = t.get("function") && t.get("function")->type == JsonValue::Object ? t.get("function") : &t;
                    const JsonValue* name = fn->get("name");
                    const JsonValue* description = fn->get("description");
                    const JsonValue* parameters = fn->get("parameters");
                    head += std::string(k ? ", " : "") + "{\"type\": \"function\", \"function\": {\"name\": " +
                            json_quote(name && name->type == JsonValue::String ? name->string : "") + ", \"description\": " +
                            json_quote(description && description->type == JsonValue::String ? description->string : "") +
                            ", \"parameters\": " + (parameters && !parameters->is_null() ? json_dumps_python(*parameters) : "{}") + "}}";
                }
                head += "][/AVAILABLE_TOOLS]";
            }
            // An empty system message: mistral-common drops it (a training conversation, a prompt with
            // tools); the template writes its "\n\n" when the last user turn ends the conversation.
            const bool with_system = first && i == last_user &&
                                     (!messages[0].content.empty() || (i + 1 == messages.size() && tools.empty()));
            emit(out, head + "[INST] " + (with_system ? messages[0].content + "\n\n" : "") + m.content + "[/INST]", false);
        } else {
            turn(out, m.trained, "", " " + trim(m.content), "</s>", "");
        }
    }
}

// Gemma 3's template: <bos>, then an optional first system message whose content (untrimmed) and a
// blank line open the first user turn, then user and assistant alternating, each turn trimmed. Its
// check lets any role but user through at an odd position (rendered as a turn of that name, which
// the model never saw): we refuse those too. A system message alone renders as <bos> only, as there.
// Content given as parts: each trimmed, one after another, as the template's loop over them does.
void render_gemma3(const std::vector<ChatMessage>& messages, std::vector<ChatPiece>& out) {
    emit(out, "<bos>", false);
    const size_t first = !messages.empty() && messages[0].role == "system" ? 1 : 0;
    std::string system;  // untrimmed; of parts, the template takes the first one's text only
    if (first && messages[0].parts) {
        const std::vector<std::string>& parts = *messages[0].parts;
        if (parts.size() != 1)
            fail("message 0 is a system message of %zu content parts but Gemma 3's chat template takes the first "
                 "part's text only: give it as one part or as a string", parts.size());
        system = parts[0];
    } else if (first) {
        system = messages[0].content;
    }
    for (size_t i = first; i < messages.size(); i++) {
        const ChatMessage& m = messages[i];
        const char* want = (i - first) % 2 == 0 ? "user" : "assistant";
        if (m.role != want)
            fail("message %zu has role '%s' but Gemma 3's chat template needs roles to alternate user/assistant, "
                 "starting with user after an optional first system message (expected '%s')", i, m.role.c_str(), want);
        const bool asst = m.role == "assistant", learned = asst && m.trained;
        const std::string prefix = first && i == first ? system + "\n\n" : "";
        std::string content;
        if (m.parts)
            for (const std::string& part : *m.parts) content += trim(part);
        else
            content = trim(m.content);
        turn(out, learned, std::string("<start_of_turn>") + (asst ? "model" : "user") + "\n" + prefix, content, "<end_of_turn>", "\n");
    }
}

// Roles past system, user and assistant (and tool, which Qwen2.5's and Qwen3's render as a
// <tool_response> block in a user turn, before this is asked): Zephyr's template drops them without
// a word, Qwen2.5's and Qwen3's drop them too, SmolLM2's writes any role as a turn. Refuse them
// rather than render what the model never saw.
void require_basic_role(size_t i, const ChatMessage& m, const char* why) {
    if (m.role != "system" && m.role != "user" && m.role != "assistant")
        fail("message %zu has role '%s' but %s", i, m.role.c_str(), why);
}

// Python's str.lstrip('\n') / rstrip('\n'), which Qwen3's template applies around its think block.
std::string strip_newlines(const std::string& s, bool left, bool right) {
    size_t b = 0, e = s.size();
    while (left && b < e && s[b] == '\n') b++;
    while (right && e > b && s[e - 1] == '\n') e--;
    return s.substr(b, e - b);
}

// Qwen3's last query: the last user message that is not a tool response pasted into a user turn
// ("<tool_response>...</tool_response>", which the template skips). Without one it is the last
// message, so no assistant turn comes after it.
size_t qwen3_last_query(const std::vector<ChatMessage>& messages) {
    auto pasted = [](const std::string& s) {
        const std::string open = "<tool_response>", close = "</tool_response>";
        return s.compare(0, open.size(), open) == 0 && s.size() >= close.size() &&
               s.compare(s.size() - close.size(), close.size(), close) == 0;
    };
    for (size_t i = messages.size(); i-- > 0;)
        if (messages[i].role == "user" && !pasted(messages[i].content)) return i;
    return messages.empty() ? 0 : messages.size() - 1;
}

// Qwen2.5's and Qwen3's system turn with tools: `system` (what precedes the block), then each tool's
// JSON on a line of the <tools> block and the instructions on calling them.
void qwen_tools_turn(std::vector<ChatPiece>& out, const std::string& system, const std::vector<std::string>& tools) {
    std::string block = "<|im_start|>system\n" + system +
                        "# Tools\n\nYou may call one or more functions to assist with the user query.\n\nYou are "
                        "provided with function signatures within <tools></tools> XML tags:\n<tools>";
    for (const std::string& tool : tools) block += "\n" + tool;
    emit(out, block + "\n</tools>\n\nFor each function call, return a json object with function name and arguments "
                      "within <tool_call></tool_call> XML tags:\n<tool_call>\n{\"name\": <function-name>, "
                      "\"arguments\": <args-json-object>}\n</tool_call><|im_end|>\n", false);
}

// A tool message: a <tool_response> block; a run of them shares one user turn.
void tool_response(std::vector<ChatPiece>& out, const std::vector<ChatMessage>& messages, size_t i) {
    const bool first = i == 0 || messages[i - 1].role != "tool", last = i + 1 == messages.size() || messages[i + 1].role != "tool";
    emit(out, std::string(first ? "<|im_start|>user" : "") + "\n<tool_response>\n" + messages[i].content +
                  "\n</tool_response>" + (last ? "<|im_end|>\n" : ""), false);
}

// A Qwen3 assistant turn. Its reasoning is reasoning_content when the message has one, else what
// the content holds before "</think>": as the template's Python splits, up to the first
// "</think>" and after the last "<think>" before it, the answer being what follows the last
// "</think>". After the last query the final turn, and any other with reasoning, gets the think
// block; elsewhere the reasoning is dropped.
void qwen3_assistant_turn(std::vector<ChatPiece>& out, const ChatMessage& m, bool after_query, bool last) {
    std::string answer = m.content, reasoning = m.reasoning_content.value_or("");
    const size_t close = answer.find("</think>");
    if (!m.reasoning_content && close != std::string::npos) {
        const std::string before = strip_newlines(answer.substr(0, close), false, true);
        const size_t open = before.rfind("<think>");
        reasoning = strip_newlines(open == std::string::npos ? before : before.substr(open + 7), true, false);
        answer = strip_newlines(answer.substr(answer.rfind("</think>") + 8), true, false);
    }
    const bool content = !answer.empty();  // the template's test for a newline before the first call
    if (after_query && (last || !reasoning.empty()))
        answer = "<think>\n" + strip_newlines(reasoning, true, true) + "\n</think>\n\n" + strip_newlines(answer, true, false);
    if (!m.tool_calls.empty()) answer += (content ? "\n" : "") + tool_calls_text(m, true);
    turn(out, m.trained, "<|im_start|>assistant\n", answer, "<|im_end|>", "\n");
}

std::string replace_all(std::string s, const std::string& from, const std::string& to) {
    for (size_t at = s.find(from); at != std::string::npos; at = s.find(from, at + to.size())) s.replace(at, from.size(), to);
    return s;
}

// SmolLM3's template (see chat_template.h): its system block, then the turns.
void render_smollm3(const std::vector<ChatMessage>& messages, bool add_generation_prompt, bool thinking,
                    const std::vector<std::string>& tools, std::vector<ChatPiece>& out) {
    const bool system_first = !messages.empty() && messages[0].role == "system";
    const std::string system = system_first ? messages[0].content : "";
    // "/no_think" wins over "/think" (which it contains), and either over enable_thinking; both are
    // taken out of the instructions
    const bool think = system.find("/no_think") == std::string::npos && (thinking || system.find("/think") != std::string::npos);
    const std::string custom = trim(replace_all(replace_all(system, "/no_think", ""), "/think", ""), true);
    std::string head = "<|im_start|>system\n";
    if (system.find("/system_override") != std::string::npos) {
        head += trim(replace_all(custom, "/system_override", ""), true) + "<|im_end|>\n";
    } else {
        head += std::string("## Metadata\n\nKnowledge Cutoff Date: June 2025\nToday Date: ") + kSmolLM3Date +
                "\nReasoning Mode: " + (think ? "/think" : "/no_think") + "\n\n## Custom Instructions\n\n";
        if (!custom.empty()) head += custom + "\n\n";
        else if (think)
            head += "You are a helpful AI assistant named SmolLM, trained by Hugging Face. Your role as an assistant involves "
                    "thoroughly exploring questions through a systematic thinking process before providing the final precise "
                    "and accurate solutions. This requires engaging in a comprehensive cycle of analysis, summarizing, "
                    "exploration, reassessment, reflection, backtracking, and iteration to develop well-considered thinking "
                    "process. Please structure your response into two main sections: Thought and Solution using the specified "
                    "format: <think> Thought section </think> Solution section. In the Thought section, detail your reasoning "
                    "process in steps. Each step should include detailed considerations such as analysing questions, "
                    "summarizing relevant findings, brainstorming new ideas, verifying the accuracy of the current steps, "
                    "refining any errors, and revisiting previous steps. In the Solution section, based on various attempts, "
                    "explorations, and reflections from the Thought section, systematically present the final solution that "
                    "you deem correct. The Solution section should be logical, accurate, and concise and detail necessary "
                    "steps needed to reach the conclusion.\n\n";
        else
            head += "You are a helpful AI assistant named SmolLM, trained by Hugging Face.\n\n";
        if (!tools.empty()) {  // the block is closed only here: without tools the template leaves it open
            head += "### Tools\n\nYou may call one or more functions to assist with the user query.\nYou are provided with "
                    "function signatures within <tools></tools> XML tags:\n\n<tools>\n";
            for (const std::string& tool : tools) head += python_repr(json_parse(tool)) + "\n";
            head += "</tools>\n\nFor each function call, return a json object with function name and arguments within "
                    "<tool_call></tool_call> XML tags:\n<tool_call>\n{\"name\": <function-name>, \"arguments\": "
                    "<args-json-object>}\n</tool_call>\n\n<|im_end|>\n";
        }
    }
    emit(out, head, false);
    const std::string assistant_head = think ? "<|im_start|>assistant\n" : "<|im_start|>assistant\n<think>\n\n</think>\n";
    for (size_t i = system_first ? 1 : 0; i < messages.size(); i++) {
        const ChatMessage& m = messages[i];
        if (m.role == "assistant") {
            const std::string content = strip_newlines(m.content, true, false);
            turn(out, m.trained, assistant_head,
                 m.tool_calls.empty() ? content : (content.empty() ? "" : content + "\n") + tool_calls_text(m, false),
                 "<|im_end|>", "\n");
        } else if (m.role == "user" || m.role == "tool") {  // a tool's result is a user turn
            turn(out, false, "<|im_start|>user\n", m.content, "<|im_end|>", "\n");
        } else {
            fail("message %zu has role '%s' but SmolLM3's chat template renders user, assistant and tool messages and "
                 "a first system message only (it drops the others)", i, m.role.c_str());
        }
    }
    if (add_generation_prompt) emit(out, assistant_head, false);
}

}  // namespace

std::string mistral_v03_calls_text(const ChatMessage& m, size_t index, std::vector<std::string>* ids) {
    if (!trim(m.content).empty())
        fail("message %zu has content beside its tool calls but Mistral v0.3's format writes calls alone: put the "
             "text in a turn of its own, or drop it", index);
    std::string calls;
    for (size_t k = 0; k < m.tool_calls.size(); k++) {
        const ToolCall& c = m.tool_calls[k];
        const std::string id = mistral_call_id(c.id, std::to_string(index) + "." + std::to_string(k));
        if (ids) ids->push_back(id);
        calls += std::string(k ? ", " : "") + "{\"name\": " + json_quote(c.name) + ", \"arguments\": " + c.arguments +
                 ", \"id\": \"" + id + "\"}";
    }
    return "[TOOL_CALLS] [" + calls + "]";
}

// Llama 3.1's call: one per message, written alone (its template drops the content beside it and
// raises on more than one call); arguments as the object, as for Qwen2.5 (see chat_template.h).
std::string llama31_call_text(const ChatMessage& m, size_t index) {
    if (m.tool_calls.size() != 1)
        fail("message %zu has %zu tool calls but Llama 3.1's chat template writes one call a message: split them into "
             "turns of one call and its result each", index, m.tool_calls.size());
    if (!trim(m.content).empty())
        fail("message %zu has content beside its tool call but Llama 3.1's chat template writes the call alone (it "
             "would drop the text): put the text in a turn of its own, or drop it", index);
    return "{\"name\": \"" + m.tool_calls[0].name + "\", \"parameters\": " + m.tool_calls[0].arguments + "}";
}

std::vector<ChatPiece> chat_render_pieces(const ChatTemplate& t, const std::vector<ChatMessage>& messages,
                                          bool add_generation_prompt, const std::vector<std::string>& tools) {
    std::vector<ChatPiece> out;
    const bool qwen3 = t.kind == ChatTemplateKind::Qwen3, qwen25 = t.kind == ChatTemplateKind::Qwen25;
    if (!chat_template_renders_tools(t.kind)) {  // a conversation with tool calling cannot be rendered
        const char* why = "the %s chat template does not render tool calling (" TOOL_CALLING_TEMPLATES
                          " if the model was trained on theirs, or drop the line";
        if (!tools.empty()) fail(("the conversation has tool definitions but " + std::string(why)).c_str(), chat_template_name(t.kind));
        for (size_t i = 0; i < messages.size(); i++)
            if (!messages[i].tool_calls.empty() || messages[i].role == "tool")
                fail(("message %zu %s but " + std::string(why)).c_str(), i,
                     messages[i].role == "tool" ? "has role 'tool'" : "has tool_calls", chat_template_name(t.kind));
    }
    for (size_t i = 0; i < messages.size(); i++)
        if (messages[i].parts && t.kind != ChatTemplateKind::Gemma3)
            fail("message %zu has its content as a list of parts, which only Gemma 3's chat template (gemma3) renders: "
                 "give the content as a string for the %s template", i, chat_template_name(t.kind));
    for (size_t i = 0; i < messages.size(); i++)
        if (messages[i].reasoning_content && (!qwen3 || messages[i].role != "assistant")) {
            if (qwen3)
                fail("message %zu has reasoning_content but role '%s': only assistant messages carry reasoning", i,
                     messages[i].role.c_str());
            fail("message %zu has reasoning_content but the %s chat template does not render reasoning (only qwen3's "
                 "does): drop the field, or write the reasoning into the content if the model should learn it",
                 i, chat_template_name(t.kind));
        }
    if (t.kind == ChatTemplateKind::MistralV03) {
        render_mistral_v03(messages, tools, out);
        return out;
    }
    if (t.kind == ChatTemplateKind::Llama2 || t.kind == ChatTemplateKind::Mistral) {
        render_inst(t.kind, messages, out);
        return out;
    }
    if (t.kind == ChatTemplateKind::SmolLM3) {
        render_smollm3(messages, add_generation_prompt, t.thinking, tools, out);
        return out;
    }
    if (t.kind == ChatTemplateKind::Gemma3) {
        render_gemma3(messages, out);
        if (add_generation_prompt) emit(out, "<start_of_turn>model\n", false);
        return out;
    }
    const size_t last_query = qwen3 ? qwen3_last_query(messages) : 0;
    const bool system_first = !messages.empty() && messages[0].role == "system";
    const bool llama31 = t.kind == ChatTemplateKind::Llama31;
    if (!tools.empty() && !llama31) {  // the tools block is the system turn, the first system message's content in it
        const std::string& system = system_first ? messages[0].content : t.default_system;
        qwen_tools_turn(out, qwen3 ? (system_first ? system + "\n\n" : "") : system + "\n\n", tools);
    } else if ((t.kind == ChatTemplateKind::ChatML || qwen25) && !system_first && !messages.empty() &&
               !t.default_system.empty()) {
        // Ahead of the first message, whatever its role: Qwen2.5's template writes it before its
        // loop, so a conversation opening with a tool's result gets it too (SmolLM2's in its loop's
        // first turn, which renders as the same text)
        turn(out, false, "<|im_start|>system\n", t.default_system, "<|im_end|>", "\n");
    }
    if (llama31 && (!messages.empty() || add_generation_prompt))  // always there, the system message's text in it
        emit(out, std::string("<|begin_of_text|><|start_header_id|>system<|end_header_id|>\n\n") +
                      (tools.empty() ? "" : "Environment: ipython\n") + "Cutting Knowledge Date: December 2023\nToday Date: " +
                      kLlama31Date + "\n\n" + (system_first ? trim(messages[0].content) : "") + "<|eot_id|>", false);
    // Llama 3.1's tools go into the first message after the system one, which must be the user's
    const size_t llama_tools_turn = llama31 && !tools.empty() ? (system_first ? 1 : 0) : messages.size();
    if (llama31 && !tools.empty() && llama_tools_turn == messages.size())
        fail("the conversation has tool definitions but no user message: Llama 3.1's chat template puts them into "
             "the first user message");
    for (size_t i = 0; i < messages.size(); i++) {
        const ChatMessage& m = messages[i];
        const bool asst = m.role == "assistant", learned = asst && m.trained;
        if (i == 0 && system_first && (!tools.empty() || llama31)) continue;  // in the tools turn, Llama 3.1's block
        if ((qwen3 || qwen25) && m.role == "tool") {
            tool_response(out, messages, i);
            continue;
        }
        if (i == llama_tools_turn) {
            if (m.role != "user")
                fail("message %zu has role '%s' but Llama 3.1's chat template puts the tool definitions into the first "
                     "message after the system one, as a user turn: start the conversation with the user's", i, m.role.c_str());
            std::string text = "Given the following functions, please respond with a JSON for a function call with its "
                               "proper arguments that best answers the given prompt.\n\nRespond in the format {\"name\": "
                               "function name, \"parameters\": dictionary of argument name and its value}.Do not use "
                               "variables.\n\n";
            for (const std::string& tool : tools) text += json_dumps_python(json_parse(tool), 4) + "\n\n";
            turn(out, false, "<|start_header_id|>user<|end_header_id|>\n\n", text + trim(m.content), "<|eot_id|>", "");
            continue;
        }
        switch (t.kind) {
        case ChatTemplateKind::ChatML:
        case ChatTemplateKind::Qwen25:
            require_basic_role(i, m, "ChatML templates are rendered with system, user and assistant turns only "
                               "(SmolLM2's would render any role as a turn of that name, which the model never saw)");
            if (asst && !m.tool_calls.empty())  // the content (when there is one), then the calls
                turn(out, learned, "<|im_start|>assistant\n",
                     (m.content.empty() ? "" : m.content + "\n") + tool_calls_text(m, false), "<|im_end|>", "\n");
            else
                turn(out, learned, "<|im_start|>" + m.role + "\n", m.content, "<|im_end|>", "\n");
            break;
        case ChatTemplateKind::Llama31:
            if (m.role == "tool") {  // its template writes a result with |tojson: a string as a quoted one
                turn(out, false, "<|start_header_id|>ipython<|end_header_id|>\n\n", json_quote(m.content), "<|eot_id|>", "");
                break;
            }
            if (!m.tool_calls.empty()) {
                turn(out, learned, "<|start_header_id|>assistant<|end_header_id|>\n\n", llama31_call_text(m, i), "<|eot_id|>", "");
                break;
            }
            [[fallthrough]];
        case ChatTemplateKind::Llama3:
            turn(out, learned, std::string(i == 0 && !llama31 ? "<|begin_of_text|>" : "") +
                 "<|start_header_id|>" + m.role + "<|end_header_id|>\n\n", trim(m.content), "<|eot_id|>", "");
            break;
        case ChatTemplateKind::Gemma: {
            // Gemma's template raises on these; say so instead of rendering something it never saw
            const char* want = i % 2 == 0 ? "user" : "assistant";
            if (m.role != want)
                fail("message %zu has role '%s' but Gemma's chat template has no system role and needs roles to "
                     "alternate user/assistant, starting with user (expected '%s')", i, m.role.c_str(), want);
            turn(out, learned, std::string(i == 0 ? "<bos>" : "") + "<start_of_turn>" + (asst ? "model" : "user") + "\n",
                 trim(m.content), "<end_of_turn>", "\n");
            break;
        }
        case ChatTemplateKind::Plain:
            turn(out, learned, "", m.content, "\n", "");
            break;
        case ChatTemplateKind::Zephyr:
        case ChatTemplateKind::Phi3:
        case ChatTemplateKind::Phi4Mini: {  // <|role|> turns: Zephyr's end with </s>, Phi's with <|end|>
            const bool zephyr = t.kind == ChatTemplateKind::Zephyr, phi3 = t.kind == ChatTemplateKind::Phi3;
            require_basic_role(i, m, zephyr ? "the Zephyr chat template has only system, user and assistant"
                                     : phi3 ? "Phi-3's chat template renders system, user and assistant turns only (it drops other roles)"
                                            : "Phi-4-mini's chat template is rendered with system, user and assistant turns only "
                                              "(it would write any role as a turn of that name, which the model never saw)");
            if (phi3 && m.role == "system" && m.content.empty()) break;  // Phi-3.5-mini's writes no empty system turn
            const std::string newline = t.kind == ChatTemplateKind::Phi4Mini ? "" : "\n";
            turn(out, learned, "<|" + m.role + "|>" + newline, m.content, zephyr ? "</s>" : "<|end|>", newline);
            break;
        }
        case ChatTemplateKind::Phi4:
            require_basic_role(i, m, "Phi-4's chat template renders system, user and assistant turns only (it drops other roles)");
            turn(out, learned, "<|im_start|>" + m.role + "<|im_sep|>", m.content, "<|im_end|>", "");
            break;
        case ChatTemplateKind::Qwen3:
            require_basic_role(i, m, "Qwen3's chat template renders system, user, assistant and tool messages only "
                               "(it drops other roles)");
            if (asst) qwen3_assistant_turn(out, m, i > last_query, i + 1 == messages.size());
            else turn(out, false, "<|im_start|>" + m.role + "\n", m.content, "<|im_end|>", "\n");
            break;
        default: fail("internal: chat template kind %d", (int)t.kind);
        }
    }
    if (add_generation_prompt) {
        switch (t.kind) {
        case ChatTemplateKind::ChatML:
        case ChatTemplateKind::Qwen25: emit(out, "<|im_start|>assistant\n", false); break;
        case ChatTemplateKind::Qwen3: emit(out, t.thinking ? "<|im_start|>assistant\n" : "<|im_start|>assistant\n<think>\n\n</think>\n\n", false); break;
        case ChatTemplateKind::Llama31:
        case ChatTemplateKind::Llama3: emit(out, "<|start_header_id|>assistant<|end_header_id|>\n\n", false); break;
        case ChatTemplateKind::Gemma: emit(out, std::string(messages.empty() ? "<bos>" : "") + "<start_of_turn>model\n", false); break;
        case ChatTemplateKind::Zephyr: emit(out, messages.empty() ? "" : "<|assistant|>\n", false); break;
        case ChatTemplateKind::Phi3: emit(out, "<|assistant|>\n", false); break;
        case ChatTemplateKind::Phi4: emit(out, "<|im_start|>assistant<|im_sep|>", false); break;
        case ChatTemplateKind::Phi4Mini: emit(out, "<|assistant|>", false); break;
        default: break;
        }
    } else if (t.kind == ChatTemplateKind::Phi3 || t.kind == ChatTemplateKind::Phi4Mini) {
        // their templates' eos_token after the last turn, not learned: Microsoft's own training code marks an
        // assistant turn's content and <|end|> as what the model generates, not the newline or this eos
        emit(out, "<|endoftext|>", false);
    }
    return out;
}

// Qwen3's template writes a string of arguments as it is; Qwen2.5's writes every value with |tojson.
std::string tool_calls_text(const ChatMessage& m, bool raw_string_arguments) {
    std::string out;
    for (size_t k = 0; k < m.tool_calls.size(); k++) {
        const ToolCall& c = m.tool_calls[k];
        out += std::string(k ? "\n" : "") + "<tool_call>\n{\"name\": \"" + c.name + "\", \"arguments\": " +
               (raw_string_arguments && c.arguments_text ? *c.arguments_text : c.arguments) + "}\n</tool_call>";
    }
    return out;
}

std::string chat_render(const ChatTemplate& t, const std::vector<ChatMessage>& messages, bool add_generation_prompt,
                        const std::vector<std::string>& tools) {
    std::string out;
    for (const ChatPiece& p : chat_render_pieces(t, messages, add_generation_prompt, tools)) out += p.text;
    return out;
}

const char* chat_template_name(ChatTemplateKind kind) {
    switch (kind) {
    case ChatTemplateKind::Plain: return "plain";
    case ChatTemplateKind::ChatML: return "chatml";
    case ChatTemplateKind::Llama3: return "llama3";
    case ChatTemplateKind::Gemma: return "gemma";
    case ChatTemplateKind::Llama2: return "llama2";
    case ChatTemplateKind::Mistral: return "mistral";
    case ChatTemplateKind::Zephyr: return "zephyr";
    case ChatTemplateKind::Qwen3: return "qwen3";
    case ChatTemplateKind::Gemma3: return "gemma3";
    case ChatTemplateKind::Qwen25: return "qwen2.5";
    case ChatTemplateKind::Llama31: return "llama3.1";
    case ChatTemplateKind::SmolLM3: return "smollm3";
    case ChatTemplateKind::MistralV03: return "mistral-v0.3";
    case ChatTemplateKind::Phi3: return "phi3";
    case ChatTemplateKind::Phi4: return "phi4";
    case ChatTemplateKind::Phi4Mini: return "phi4-mini";
    }
    return "?";
}

bool chat_template_renders_tools(ChatTemplateKind kind) {
    return kind == ChatTemplateKind::Qwen25 || kind == ChatTemplateKind::Qwen3 || kind == ChatTemplateKind::SmolLM3 ||
           kind == ChatTemplateKind::Llama31 || kind == ChatTemplateKind::MistralV03;
}

ChatTemplate chat_template_from_name(const std::string& name) {
    for (ChatTemplateKind k : {ChatTemplateKind::ChatML, ChatTemplateKind::Llama3, ChatTemplateKind::Gemma,
                               ChatTemplateKind::Gemma3, ChatTemplateKind::Llama2, ChatTemplateKind::Mistral,
                               ChatTemplateKind::Zephyr, ChatTemplateKind::Qwen3, ChatTemplateKind::Qwen25,
                               ChatTemplateKind::Llama31, ChatTemplateKind::SmolLM3, ChatTemplateKind::MistralV03,
                               ChatTemplateKind::Phi3, ChatTemplateKind::Phi4, ChatTemplateKind::Phi4Mini, ChatTemplateKind::Plain})
        if (name == chat_template_name(k))  // Qwen2.5's comes with its default system prompt
            return ChatTemplate{k, k == ChatTemplateKind::Qwen25 ? kQwen25DefaultSystem : ""};
    fail("unknown chat template '%s': valid names are " CHAT_TEMPLATE_NAMES, name.c_str());
}

ChatTemplate chat_template_choice(const ChatTemplate& own, const std::string& name, bool no_think) {
    ChatTemplate t = name.empty() ? own : chat_template_from_name(name);
    if (no_think && t.kind != ChatTemplateKind::Qwen3 && t.kind != ChatTemplateKind::SmolLM3)
        fail("--no-think: the %s chat template has no thinking switch (qwen3's and smollm3's have: enable_thinking)",
             chat_template_name(t.kind));
    t.thinking = !no_think;
    return t;
}
