#include "data/records.h"

#include <algorithm>
#include <cctype>
#include <cstdio>
#include <cstring>
#include <filesystem>
#include <stdexcept>
#include <tuple>

#include "data/csv.h"
#include "data/gzip.h"
#include "data/json.h"
#include "data/parquet.h"
#include "model/util.h"

namespace {

// Offset of the first byte that breaks UTF-8 (overlongs, surrogates and code points past U+10FFFF
// included), or npos when `s` is valid.
size_t utf8_error(std::string_view s) {
    size_t i = 0, n = s.size();
    while (i < n) {
        unsigned char c = (unsigned char)s[i];
        if (c < 0x80) { i++; continue; }
        size_t len;
        unsigned char lo = 0x80, hi = 0xBF;
        if (c >= 0xC2 && c <= 0xDF) len = 2;
        else if (c >= 0xE0 && c <= 0xEF) { len = 3; if (c == 0xE0) lo = 0xA0; if (c == 0xED) hi = 0x9F; }
        else if (c >= 0xF0 && c <= 0xF4) { len = 4; if (c == 0xF0) lo = 0x90; if (c == 0xF4) hi = 0x8F; }
        else return i;
        if (i + len > n) return i;
        unsigned char c1 = (unsigned char)s[i + 1];
        if (c1 < lo || c1 > hi) return i;
        for (size_t k = 2; k < len; k++)
            if (((unsigned char)s[i + k] & 0xC0) != 0x80) return i;
        i += len;
    }
    return std::string_view::npos;
}

// What to tell about the bad byte at `at` of a line.
std::string utf8_message(std::string_view line, size_t at) {
    char buf[160];
    std::snprintf(buf, sizeof buf, "invalid UTF-8 (byte 0x%02X at byte %zu of the line): datasets must be UTF-8 text; "
                  "convert the file, e.g. iconv -f latin1 -t utf-8", (unsigned char)line[at], at + 1);
    return buf;
}

// A file read whole (a JSON array, a table, raw text) fails at its first byte that is not UTF-8,
// naming its line.
void require_utf8(std::string_view bytes, const char* p) {
    const size_t bad = utf8_error(bytes);
    if (bad == std::string_view::npos) return;
    const size_t start = bytes.rfind('\n', bad) == std::string_view::npos ? 0 : bytes.rfind('\n', bad) + 1;
    fail("%s:%zu: %s", p, (size_t)std::count(bytes.begin(), bytes.begin() + bad, '\n') + 1,
         utf8_message(bytes.substr(start), bad - start).c_str());
}

// A string member that must be present (or, with `optional`, may be absent or null).
// Returns false and sets `why` when it is missing, of another type, or empty when it must not be.
bool get_string(const JsonValue& obj, const char* key, bool optional, bool allow_empty, std::string& out, std::string& why) {
    const JsonValue* v = obj.get(key);
    if (!v || (optional && v->is_null())) {
        if (optional) return true;
        why = std::string("missing field \"") + key + "\"";
        return false;
    }
    if (v->type != JsonValue::String) {
        why = std::string("field \"") + key + "\": expected a string, got " + json_type_name(v->type);
        return false;
    }
    if (!allow_empty && v->string.find_first_not_of(" \t\r\n") == std::string::npos) {
        why = std::string("field \"") + key + "\" is empty";
        return false;
    }
    out = v->string;
    return true;
}

// Whether a tool-calling field says anything: null, [] and "" are the "none" that exporters write
// ("": LLaMA-Factory's string of tools on a line without them, as a dataset's string column holds it).
bool has_tool_data(const JsonValue* v) {
    return v && !v->is_null() && !(v->type == JsonValue::Array && v->array.empty()) &&
           !(v->type == JsonValue::String && v->string.empty());
}

// A JSON value that datasets give either as it is or as a string of its JSON text (OpenAI's
// arguments, LLaMA-Factory's "tools" and "function_call" values): the value, parsed when a string.
bool json_or_string_of_json(const JsonValue& v, const std::string& field, JsonValue& out, std::string& why) {
    if (v.type != JsonValue::String) return out = v, true;
    try {
        out = json_parse(v.string);
        return true;
    } catch (const std::runtime_error& e) {
        why = field + ": a string that is not JSON (" + e.what() + ")";
        return false;
    }
}

// A value as chat templates write it (|tojson, Python's json.dumps).
bool python_json(const JsonValue& v, const std::string& field, std::string& out, std::string& why) {
    try {
        out = json_dumps_python(v);
        return true;
    } catch (const std::runtime_error& e) {
        why = field + ": " + e.what();
        return false;
    }
}

// An assistant turn's function calls: [{"type": "function", "function": {"name", "arguments"}}, ...]
// (OpenAI's form) or [{"name", "arguments"}, ...], the arguments an object or a string of one.
bool parse_tool_calls(const JsonValue& list, const std::string& at, ChatMessage& cm, std::string& why) {
    if (list.type != JsonValue::Array) {
        why = at + ": expected an array of calls, got " + json_type_name(list.type);
        return false;
    }
    for (size_t k = 0; k < list.array.size(); k++) {
        const std::string here = at + "[" + std::to_string(k) + "]";
        const JsonValue* call = &list.array[k];
        ToolCall tc;
        if (const JsonValue* id = call->get("id"); id && id->type == JsonValue::String) tc.id = id->string;
        if (const JsonValue* fn = call->get("function"); fn && fn->type == JsonValue::Object) call = fn;
        if (call->type != JsonValue::Object || !get_string(*call, "name", false, false, tc.name, why)) {
            why = here + ": " + (call->type == JsonValue::Object ? why : "expected an object {\"name\", \"arguments\"}");
            return false;
        }
        const JsonValue* args = call->get("arguments");
        JsonValue value;
        if (!args || args->is_null()) {
            why = here + ": missing field \"arguments\" (an object; {} for none)";
            return false;
        }
        if (!json_or_string_of_json(*args, here + ".arguments", value, why)) return false;
        if (value.type != JsonValue::Object) {
            why = here + ".arguments: expected an object (or a string of one), got " + json_type_name(value.type);
            return false;
        }
        if (args->type == JsonValue::String) tc.arguments_text = args->string;
        if (!python_json(value, here + ".arguments", tc.arguments, why)) return false;
        cm.tool_calls.push_back(std::move(tc));
    }
    return true;
}

}  // namespace

bool parse_tools(const JsonValue& v, std::vector<std::string>& tools, std::string& why) {
    JsonValue list;
    if (!json_or_string_of_json(v, "field \"tools\"", list, why)) return false;
    if (list.type != JsonValue::Array) {
        why = std::string("field \"tools\": expected an array of tool definitions, got ") + json_type_name(list.type);
        return false;
    }
    for (size_t k = 0; k < list.array.size(); k++) {
        const std::string at = "tools[" + std::to_string(k) + "]";
        if (list.array[k].type != JsonValue::Object) {
            why = at + ": expected an object, got " + json_type_name(list.array[k].type);
            return false;
        }
        tools.emplace_back();
        if (!python_json(list.array[k], at, tools.back(), why)) return false;
    }
    return true;
}

namespace {

// "content": [{"type": "text", "text": "..."}, ...]: the texts as the message's parts, joined as its
// content. Images and other kinds of part are refused: there is no vision here, and a template that
// skipped them would train on a turn without what it refers to.
bool parse_parts(const JsonValue& list, ChatMessage& cm, std::string& why) {
    cm.parts.emplace();
    for (size_t k = 0; k < list.array.size(); k++) {
        const JsonValue& p = list.array[k];
        const std::string at = "content[" + std::to_string(k) + "]";
        std::string type, text;
        if (p.type != JsonValue::Object) {
            why = at + ": expected an object {\"type\": \"text\", \"text\": ...}, got " + json_type_name(p.type);
            return false;
        }
        if (!get_string(p, "type", false, false, type, why)) { why = at + ": " + why; return false; }
        if (type != "text") {
            why = at + ": a part of type \"" + type + "\": only text parts are supported";
            return false;
        }
        if (!get_string(p, "text", false, true, text, why)) { why = at + ": " + why; return false; }
        cm.content += text;
        cm.parts->push_back(std::move(text));
    }
    return true;
}

// The two ways datasets store a conversation: OpenAI's "messages" [{"role", "content"}] (TRL,
// transformers' chat templates) and ShareGPT's "conversations" [{"from", "value"}] (many datasets on the
// Hub), read into the same turns.
struct ChatLayout {
    const char* list;     // the field holding the turns
    const char* role;     // a turn's speaker
    const char* content;  // a turn's text
    bool sharegpt;        // speakers named as ShareGPT names them
};
const ChatLayout kOpenAI{"messages", "role", "content", false}, kShareGPT{"conversations", "from", "value", true};

// A ShareGPT speaker as a role: system; human or user; gpt, assistant, model or chatgpt (as Axolotl and
// Unsloth read them); LLaMA-Factory's function_call (an assistant turn of calls) and observation,
// tool or function_response (a tool's result). "" when it is none of those.
std::string sharegpt_role(const std::string& from) {
    if (from == "system") return "system";
    if (from == "human" || from == "user") return "user";
    if (from == "gpt" || from == "assistant" || from == "model" || from == "chatgpt" || from == "function_call") return "assistant";
    if (from == "observation" || from == "tool" || from == "function_response") return "tool";
    return "";
}

bool parse_messages(const JsonValue& msgs, const ChatLayout& lay, Answers answers, Record& r, std::string& why) {
    const std::string list = lay.list;
    if (msgs.type != JsonValue::Array) {
        why = "field \"" + list + "\": expected an array, got " + json_type_name(msgs.type);
        return false;
    }
    if (msgs.array.empty()) { why = "field \"" + list + "\" is empty"; return false; }
    bool any_assistant = false, any_learned = false;
    for (size_t i = 0; i < msgs.array.size(); i++) {
        const JsonValue& m = msgs.array[i];
        std::string at = list + "[" + std::to_string(i) + "]";
        if (m.type != JsonValue::Object) {
            why = at + ": expected an object {\"" + lay.role + "\", \"" + lay.content + "\"}, got " + json_type_name(m.type);
            return false;
        }
        ChatMessage cm;
        if (!get_string(m, lay.role, false, false, cm.role, why)) { why = at + ": " + why; return false; }
        std::string from;  // ShareGPT's speaker
        if (lay.sharegpt) {
            from = cm.role;
            cm.role = sharegpt_role(from);
            if (cm.role.empty()) {
                why = at + ": unknown \"from\": \"" + from + "\" (expected system, human or user, gpt or assistant, "
                      "function_call or observation)";
                return false;
            }
        } else if (cm.role == "function") {  // OpenAI's older form of a tool's result
            cm.role = "tool";
        } else if (cm.role != "system" && cm.role != "user" && cm.role != "assistant" && cm.role != "tool") {
            why = at + ": unknown role \"" + cm.role + "\" (expected system, user, assistant or tool)";
            return false;
        }
        if (cm.role == "system" && i != 0) { why = at + ": a system message may only come first"; return false; }
        if (const JsonValue* id = m.get("tool_call_id"); id && id->type == JsonValue::String && cm.role == "tool")
            cm.tool_call_id = id->string;
        // LLaMA-Factory's function_call turn: its value is the call (or a list of them) as JSON text,
        // the turn's content empty; its weight and reasoning are read below, as any assistant turn's.
        if (from == "function_call") {
            JsonValue calls;
            const JsonValue* v = m.get(lay.content);
            if (!v || !json_or_string_of_json(*v, at + ".value", calls, why)) {
                if (!v) why = at + ": missing field \"value\"";
                return false;
            }
            if (calls.type == JsonValue::Object) calls.array = {calls}, calls.type = JsonValue::Array;
            if (calls.type == JsonValue::Array && calls.array.empty()) {  // else an empty turn, learned
                why = at + ".value: no call (an empty list): a function_call turn holds one or more";
                return false;
            }
            if (!parse_tool_calls(calls, at + ".value", cm, why)) return false;
        } else {  // function calls (the content may then be empty or null)
            const JsonValue* calls = m.get("tool_calls");
            std::string field = "tool_calls";
            JsonValue one;  // OpenAI's older form of one call, "function_call": {"name", "arguments"}
            if (const JsonValue* fc = m.get("function_call"); fc && !fc->is_null()) {
                if (has_tool_data(calls)) {
                    why = at + ": both \"tool_calls\" and \"function_call\" (OpenAI's older form of one call): keep one";
                    return false;
                }
                one.type = JsonValue::Array, one.array = {*fc};
                calls = &one, field = "function_call";
            }
            if (has_tool_data(calls) && cm.role != "assistant") {
                why = at + ": " + field + " on a " + cm.role + " message: only an assistant calls tools";
                return false;
            }
            if (has_tool_data(calls) && !parse_tool_calls(*calls, at + "." + field, cm, why)) return false;
        }
        // An empty system prompt is a common way to say "none", an empty tool result a result; an
        // empty turn is a data bug, but for an assistant's that only calls tools.
        const bool may_be_empty = cm.role == "system" || cm.role == "tool" || !cm.tool_calls.empty();
        if (from == "function_call") {
            // its value, the calls, was read above: no content
        } else if (const JsonValue* c = m.get(lay.content); c && c->type == JsonValue::Array) {
            if (!parse_parts(*c, cm, why)) { why = at + ": " + why; return false; }
            if (cm.role != "system" && cm.content.find_first_not_of(" \t\r\n") == std::string::npos) {
                why = at + ": field \"" + lay.content + "\" is empty";
                return false;
            }
        } else if (!get_string(m, lay.content, !cm.tool_calls.empty(), may_be_empty, cm.content, why)) {
            why = at + ": " + why;
            return false;
        }
        // Kept apart from the content so that the template decides where it goes (Qwen3's renders
        // it, the others refuse it); null is none. "" is kept: Qwen3's template treats it as given.
        if (const JsonValue* rc = m.get("reasoning_content"); rc && !rc->is_null()) {
            std::string reasoning;
            if (!get_string(m, "reasoning_content", false, true, reasoning, why)) { why = at + ": " + why; return false; }
            cm.reasoning_content = std::move(reasoning);
        }
        // OpenAI's fine-tuning format: "weight" 0 on an assistant message keeps the turn as context
        // without learning it (a weak or outdated answer inside a good conversation), 1 learns it.
        if (const JsonValue* w = m.get("weight"); w && !w->is_null()) {
            if (w->type != JsonValue::Number || (w->number != 0 && w->number != 1)) {
                why = at + ": field \"weight\" must be 0 (the turn is context, not learned) or 1 (learned)";
                return false;
            }
            if (cm.role != "assistant" && w->number == 1) {  // 0 says what a non-assistant turn is anyway
                why = at + ": field \"weight\": 1 learns an assistant turn; a " + cm.role + " turn is context (its "
                      "tokens weigh --prompt-loss-weight, for every prompt alike): drop the field";
                return false;
            }
            cm.trained = w->number == 1;
        }
        any_assistant |= cm.role == "assistant";
        any_learned |= cm.role == "assistant" && cm.trained;
        r.messages.push_back(std::move(cm));
    }
    // Prompts to answer (Answers::optional) may end with the user's turn, but must have one: the
    // model answers a user.
    const std::string& last = r.messages.back().role;
    if (answers == Answers::optional) {
        for (const ChatMessage& m : record_prompt(r))
            if (m.role == "user") return true;
        why = "no user turn before the answer: nothing to answer";
        return false;
    }
    if (!any_assistant) { why = "no assistant turn: nothing to learn from this conversation"; return false; }
    if (!any_learned) {
        why = "every assistant turn has \"weight\": 0: nothing to learn from this conversation";
        return false;
    }
    if (last != "assistant") {
        why = "the last message is from \"" + r.messages.back().role +
              "\": nothing after the last assistant turn is learned; end with an assistant message";
        return false;
    }
    return true;
}

// One jsonl line's object → a record; false with `why` when it cannot be one.
bool parse_object(const JsonValue& v, Answers answers, Record& r, std::string& why) {
    if (v.type != JsonValue::Object) {
        why = std::string("expected a JSON object per line, got ") + json_type_name(v.type);
        return false;
    }
    // A line is one conversation: two ways of giving it would leave one unread. Fields that repeat
    // it are not that: UltraChat's and no_robots' "prompt" (the first user turn) beside "messages",
    // Alpaca's "text" (the rendered example) beside "instruction", so "prompt" counts only with
    // "completion" and "text" only alone.
    std::string found;
    int kinds = 0;
    for (const char* kind : {"messages", "conversations", "instruction", "output", "completion"})
        if (v.get(kind) && !(std::string(kind) == "output" && v.get("instruction")))
            found += std::string(kinds++ ? " and " : "") + "\"" + kind + "\"";
    if (kinds > 1) {
        why = "fields of two record formats (" + found + "): a line is one conversation, keep one of them";
        return false;
    }
    // A top-level "system" (Alpaca's, LLaMA-Factory's ShareGPT) opens the conversation.
    std::string sys;
    if (!get_string(v, "system", true, true, sys, why)) return false;
    for (const ChatLayout* lay : {&kOpenAI, &kShareGPT})
        if (const JsonValue* msgs = v.get(lay->list)) {
            // Templates (Qwen2.5's, Qwen3's) put tool definitions into the system turn. OpenAI's older
            // "functions" are the same definitions, each the "function" of a tool.
            const JsonValue* functions = v.get("functions");
            if (has_tool_data(v.get("tools")) && has_tool_data(functions)) {
                why = "both \"tools\" and \"functions\" (OpenAI's older form of tools): keep one";
                return false;
            }
            if (has_tool_data(v.get("tools")) && !parse_tools(*v.get("tools"), r.tools, why)) return false;
            if (has_tool_data(functions)) {
                // A list, or a string of its JSON as "tools" may be; each definition an object (wrapped
                // as it is, a string would become a tool whose "function" is that string)
                JsonValue tools;
                if (!json_or_string_of_json(*functions, "field \"functions\"", tools, why)) return false;
                if (tools.type != JsonValue::Array) {
                    why = std::string("field \"functions\": expected an array of function definitions, got ") +
                          json_type_name(tools.type);
                    return false;
                }
                for (size_t k = 0; k < tools.array.size(); k++) {
                    JsonValue& f = tools.array[k];
                    if (f.type != JsonValue::Object) {
                        why = "functions[" + std::to_string(k) + "]: expected an object, got " + json_type_name(f.type);
                        return false;
                    }
                    JsonValue type, tool;
                    type.type = JsonValue::String, type.string = "function";
                    tool.type = JsonValue::Object, tool.object = {{"type", type}, {"function", f}};
                    f = std::move(tool);
                }
                if (!parse_tools(tools, r.tools, why)) return false;
            }
            if (!parse_messages(*msgs, *lay, answers, r, why)) return false;
            if (sys.empty()) return true;
            if (r.messages.front().role == "system") {
                why = "a \"system\" field and a system message in \"" + std::string(lay->list) + "\": keep one";
                return false;
            }
            r.messages.insert(r.messages.begin(), ChatMessage{"system", sys});
            return true;
        }
    if (!sys.empty()) r.messages.push_back({"system", sys});
    // The answer field, unless the caller only asks for prompts: then absent, null or "" is "none".
    const bool answer_optional = answers == Answers::optional;
    if (v.get("instruction") || v.get("output")) {
        std::string ins, in, out;
        if (!get_string(v, "instruction", false, false, ins, why) || !get_string(v, "input", true, true, in, why) ||
            !get_string(v, "output", answer_optional, answer_optional, out, why))
            return false;
        r.messages.push_back({"user", instruction_prompt(ins, in)});
        if (!out.empty()) r.messages.push_back({"assistant", out});
        return true;
    }
    if (v.get("prompt") || v.get("completion")) {
        std::string p, c;
        if (!get_string(v, "prompt", false, false, p, why) || !get_string(v, "completion", answer_optional, answer_optional, c, why))
            return false;
        r.messages.push_back({"user", p});
        if (!c.empty()) r.messages.push_back({"assistant", c});
        return true;
    }
    if (v.get("text")) {
        if (!sys.empty()) {
            why = "a \"system\" field beside \"text\": raw text has no conversation to open; drop it";
            return false;
        }
        return get_string(v, "text", false, false, r.text, why);
    }
    why = "no known fields: expected \"messages\", \"conversations\", \"instruction\"+\"output\", \"prompt\"+\"completion\" "
          "or \"text\"";
    if (!v.object.empty()) {
        why += " (found";
        for (size_t i = 0; i < v.object.size() && i < 5; i++) why += (i ? ", \"" : " \"") + v.object[i].first + "\"";
        why += v.object.size() > 5 ? ", ...)" : ")";
    }
    return false;
}

// `jq .` and Python's json.dump(indent=...) spread each object over several lines, none of which is
// JSON alone: every line would be reported bad (and --skip-bad-lines would leave nothing), so the file
// is refused once, by its cause, when its first line is not JSON but a value starting there is.
void refuse_pretty_printed(std::string_view bytes, size_t first, const char* p) {
    const size_t eol = bytes.find('\n', first);
    if (eol == std::string_view::npos) return;
    try {
        json_parse(bytes.substr(first, eol - first));
        return;
    } catch (const std::runtime_error&) {  // the first line alone is not JSON: see whether more lines are
    }
    size_t len = 0;
    try {
        len = json_value_length(bytes.substr(first));
    } catch (const std::runtime_error&) {  // not JSON over several lines either: the lines are reported one by one
        return;
    }
    if (first + len > eol)
        fail("%s: pretty-printed JSON (one object spans several lines); a .jsonl file needs one object per line: "
             "convert it with jq -c . %s > data.jsonl", p, shell_quote(p).c_str());
}

// A file that is one JSON array of records (Alpaca's alpaca_data.json, many datasets' .json
// downloads), usually pretty-printed: each element is a record, named in messages by the line it
// starts on. The array as a whole must be JSON (else the file fails at the parser's line and
// column: nothing after a syntax error can be trusted); an element that is no record is reported
// as a line of jsonl is.
ParsedFile parse_record_array(std::string_view bytes, size_t first, const char* p, Answers answers) {
    require_utf8(bytes, p);
    try {
        json_parse(bytes);  // syntax first, with the parser's line and column
    } catch (const std::runtime_error& e) {
        fail("%s: a JSON array of records that is not valid JSON: %s", p, e.what());
    }
    ParsedFile out;
    size_t at = first + 1, line = 1 + std::count(bytes.begin(), bytes.begin() + first, '\n');
    auto skip = [&](std::string_view ws) {
        while (at < bytes.size() && ws.find(bytes[at]) != std::string_view::npos) line += bytes[at++] == '\n';
    };
    for (skip(" \t\r\n"); at < bytes.size() && bytes[at] != ']'; skip(" \t\r\n,")) {
        JsonValue v;
        const size_t len = json_value_length(bytes.substr(at), &v);  // the element, its leading whitespace none
        const std::string_view element = bytes.substr(at, len);
        out.lines++;
        Record r;
        r.line = (int)line;
        std::string why;
        if (element.size() > kMaxLineBytes)
            out.invalid.push_back({r.line, "the record is " + std::to_string(element.size()) + " bytes, over the limit of " +
                                               std::to_string(kMaxLineBytes) + " for one example; split or remove it"});
        else if (v.type != JsonValue::Object)  // not "per line": an element
            out.invalid.push_back({r.line, std::string("expected a record (a JSON object) as each element of the array, got ") +
                                               json_type_name(v.type)});
        else if (parse_object(v, answers, r, why)) out.records.push_back(std::move(r));
        else out.invalid.push_back({r.line, why});
        line += std::count(element.begin(), element.end(), '\n');
        at += len;
    }
    if (out.lines == 0) fail("%s: the JSON array holds no records", p);
    return out;
}

// A record from a table's row (CSV, Parquet) given as the object of its fields: a chat or tools field
// that is a string holds its JSON (a table cell cannot hold a list).
void add_table_record(ParsedFile& out, JsonValue v, int line, Answers answers) {
    std::string why;
    for (auto& [key, value] : v.object)
        if (why.empty() && value.type == JsonValue::String &&
            (key == "messages" || key == "conversations" || key == "tools" || key == "functions")) {
            try {
                value = json_parse(value.string);
            } catch (const std::runtime_error& e) {
                why = "column " + key + ": bad JSON: " + e.what();
                // pandas' to_csv writes a column of Python lists or dicts as their repr
                const size_t at = value.string.find_first_not_of(" [{");
                if (at != std::string::npos && at > 0 && value.string[at] == '\'')
                    why += " (this is Python's repr, single-quoted, which pandas' to_csv writes for a column of "
                           "lists: write each cell as JSON, e.g. df[\"" + key + "\"] = df[\"" + key +
                           "\"].map(json.dumps) before to_csv)";
            }
        }
    Record r;
    r.line = line;
    if (why.empty() && parse_object(v, answers, r, why)) out.records.push_back(std::move(r));
    else out.invalid.push_back({line, why});
}

// A CSV or TSV file: its first row names the fields, each later row is a record of them, as a
// jsonl line with those fields would be. Cells are strings; a messages, conversations, tools or
// functions cell holds that field's JSON; an empty cell is a field left out (pandas writes a
// missing value so).
ParsedFile parse_csv_records(std::string_view bytes, const char* p, char delimiter, Answers answers) {
    require_utf8(bytes, p);
    std::vector<CsvRow> rows = csv_rows(bytes, delimiter, p);
    const auto header_names = [](std::vector<std::string> names) {
        for (std::string& name : names) name = table_field_name(name);
        return names;
    };
    const auto names_a_field = [](const std::vector<std::string>& names) {
        for (const std::string& name : names)
            for (const char* f : {"instruction", "output", "prompt", "completion", "messages", "conversations", "text"})
                if (name == f) return true;
        return false;
    };
    std::vector<std::string> names = header_names(rows.at(0).fields);  // the file has a non-blank line
    // Another delimiter than the extension's: Excel writes ';' in locales whose decimal mark is a
    // comma, and a TSV may be saved as .csv. The header row is then one column holding them all.
    if (names.size() == 1 && !names_a_field(names))
        for (char other : {',', '\t', ';', '|'})
            if (const std::vector<CsvRow> h = csv_rows(rows[0].fields[0], other, p);
                other != delimiter && !h.empty() && names_a_field(header_names(h[0].fields))) {
                rows = csv_rows(bytes, other, p);
                names = header_names(rows.at(0).fields);
                break;
            }
    const CsvRow& head = rows[0];
    const char* fields_hint = "instruction, input, output; prompt, completion; messages; conversations; text";
    for (size_t k = 0; k < names.size(); k++)
        if (!names[k].empty() && std::find(names.begin(), names.begin() + k, names[k]) != names.begin() + k)
            fail("%s:%d: the header row names column '%s' twice", p, head.line, names[k].c_str());
    if (!names_a_field(names)) {
        const std::string_view first = bytes.substr(bytes.find_first_not_of(" \t\r\n"));
        if (first[0] == '{' || first[0] == '[')
            fail("%s:%d: the first line is JSON, not a header row naming the columns: jsonl under a .%s name? rename "
                 "it .jsonl", p, head.line, delimiter == ',' ? "csv" : "tsv");
        std::string seen;
        for (size_t k = 0; k < head.fields.size() && k < 8; k++)
            seen += (k ? ", '" : "'") + (head.fields[k].size() > 40 ? head.fields[k].substr(0, 40) + "..." : head.fields[k]) + "'";
        if (head.fields.size() > 8) seen += ", ...";
        fail("%s:%d: the header row names none of the fields a record has (%s): the first row must name the columns; "
             "it names %s", p, head.line, fields_hint, seen.c_str());
    }
    ParsedFile out;
    for (size_t i = 1; i < rows.size(); i++) {
        const CsvRow& row = rows[i];
        out.lines++;
        size_t bytes_in_row = 0;
        for (const std::string& f : row.fields) bytes_in_row += f.size();
        if (row.fields.size() != head.fields.size()) {
            out.invalid.push_back({row.line, std::to_string(row.fields.size()) + " fields where the header row names " +
                                                 std::to_string(head.fields.size()) + " (a field holding the delimiter, " +
                                                 "a quote or a newline must be quoted: \"...\", a quote inside as \"\")"});
            continue;
        }
        if (bytes_in_row > kMaxLineBytes) {
            out.invalid.push_back({row.line, "the row is " + std::to_string(bytes_in_row) + " bytes, over the limit of " +
                                                 std::to_string(kMaxLineBytes) + " for one example; split or remove it"});
            continue;
        }
        JsonValue v;
        v.type = JsonValue::Object;
        for (size_t k = 0; k < row.fields.size(); k++) {
            // an unnamed column (the index pandas' to_csv writes first, a spreadsheet's trailing
            // delimiter) is no field, as a column of another name is not
            if (row.fields[k].empty() || names[k].empty()) continue;
            JsonValue cell;
            cell.type = JsonValue::String;
            cell.string = row.fields[k];
            v.object.emplace_back(names[k], std::move(cell));
        }
        add_table_record(out, std::move(v), row.line, answers);
    }
    if (out.lines == 0) fail("%s: the file holds a header row and no records", p);
    return out;
}

// A Parquet file (data/parquet.h): each row a record of the columns named as its fields, named by
// its number (from 1) where a jsonl record is named by its line.
ParsedFile parse_parquet_records(std::string_view bytes, const char* p, Answers answers) {
    std::vector<std::string> columns;
    std::vector<JsonValue> rows = parquet_rows(bytes, p, &columns);
    if (rows.empty()) fail("%s: the Parquet file holds no rows", p);
    if (std::all_of(rows.begin(), rows.end(), [](const JsonValue& r) { return r.object.empty(); })) {
        std::string names;
        for (size_t i = 0; i < columns.size() && i < 12; i++) names += (i ? ", '" : "'") + columns[i] + "'";
        fail("%s: none of the Parquet file's columns is a record's field (instruction, input, output; prompt, completion; "
             "messages; conversations; text), or all are empty: its columns are %s%s", p, names.c_str(),
             columns.size() > 12 ? ", ..." : "");
    }
    ParsedFile out;
    for (size_t i = 0; i < rows.size(); i++) {
        out.lines++;
        add_table_record(out, std::move(rows[i]), (int)i + 1, answers);
    }
    return out;
}

std::string lower_extension(const std::string& path) {
    std::string ext = std::filesystem::path(path).extension().string();
    for (char& c : ext) c = (char)std::tolower((unsigned char)c);
    return ext;
}

// A data file's extension in lower case, that of the file a .gz holds ("data.jsonl.gz": ".jsonl").
std::string data_extension(const std::string& path) {
    const std::string ext = lower_extension(path);
    return ext == ".gz" ? data_extension(std::filesystem::path(path).replace_extension().string()) : ext;
}

// The delimiter of a CSV (,) or TSV (tab) file by its extension; 0 for another file.
char csv_delimiter(const std::string& path) {
    const std::string ext = data_extension(path);
    return ext == ".csv" ? ',' : ext == ".tsv" ? '\t' : 0;
}

}  // namespace

void require_jsonl_output_name(const std::string& path, const char* flag) {
    const std::string ext = lower_extension(path);
    if (ext == ".csv" || ext == ".tsv" || ext == ".parquet" || ext == ".gz")
        fail("%s %s: it is written as jsonl, which ./train would read as %s by its name: name it .jsonl", flag, path.c_str(),
             ext == ".gz" ? "gzip" : ext == ".parquet" ? "Parquet" : ext == ".csv" ? "a CSV table" : "a TSV table");
}

bool is_records_path(const std::string& path) {
    const std::string ext = data_extension(path);
    return ext == ".jsonl" || ext == ".json" || ext == ".ndjson" || ext == ".parquet" || csv_delimiter(path);
}

std::string instruction_prompt(const std::string& instruction, const std::string& input) {
    return input.empty() ? instruction : instruction + "\n\n" + input;
}

std::vector<ChatMessage> record_prompt(const Record& r) {
    const bool answered = !r.messages.empty() && r.messages.back().role == "assistant";
    return std::vector<ChatMessage>(r.messages.begin(), r.messages.end() - (answered ? 1 : 0));
}

std::string record_question(const Record& r) {
    const std::vector<ChatMessage> prompt = record_prompt(r);
    for (size_t i = prompt.size(); i-- > 0;)
        if (prompt[i].role == "user") return prompt[i].content;
    return prompt.empty() ? "" : prompt.back().content;
}

std::optional<std::string> record_reference(const Record& r, ChatTemplateKind kind) {
    if (r.messages.empty() || r.messages.back().role != "assistant") return std::nullopt;
    const ChatMessage& m = r.messages.back();
    if (m.tool_calls.empty()) return m.content;
    if (kind == ChatTemplateKind::Llama31) return llama31_call_text(m, r.messages.size() - 1);
    if (kind == ChatTemplateKind::MistralV03) return mistral_v03_calls_text(m, r.messages.size() - 1);
    return (m.content.empty() ? "" : m.content + "\n") + tool_calls_text(m, kind == ChatTemplateKind::Qwen3);
}

ParsedFile parse_records(std::string_view bytes, const std::string& path, bool jsonl, Answers answers) {
    const char* p = path.c_str();
    if (bytes.size() >= 3 && std::memcmp(bytes.data(), "\xEF\xBB\xBF", 3) == 0) bytes.remove_prefix(3);
    // UTF-16 (what Windows PowerShell's > writes) or UTF-32, by its byte-order mark
    for (const auto& [bom, name] : {std::pair<std::string_view, const char*>{{"\xFF\xFE\0\0", 4}, "UTF-32LE"},
                                    {{"\0\0\xFE\xFF", 4}, "UTF-32BE"}, {"\xFF\xFE", "UTF-16LE"}, {"\xFE\xFF", "UTF-16BE"}})
        if (bytes.substr(0, bom.size()) == bom)
            fail("%s: the file is %s text, not UTF-8: convert it, e.g. iconv -f %s -t UTF-8 %s > data%s", p, name,
                 name, shell_quote(p).c_str(), jsonl ? ".jsonl" : ".txt");
    if (is_parquet(bytes)) return parse_parquet_records(bytes, p, answers);  // whatever its name
    if (bytes.substr(0, 4) == std::string_view("PK\x03\x04", 4))  // a spreadsheet saved as a workbook
        fail("%s is a zip archive (an .xlsx or .ods workbook is one), which is not read: save the sheet as CSV "
             "(UTF-8), or unzip the archive", p);
    // data.jsonl.gz (as some datasets are downloaded): the file it holds, read by its own name's extension
    if (is_gzip(bytes)) return parse_records(gunzip(bytes, p), path, jsonl, answers);
    // Another compressed download read as it is would only show a NUL byte on some line.
    if (bytes.substr(0, 4) == std::string_view("\x28\xb5\x2f\xfd", 4))
        fail("%s is zstd-compressed: decompress it first (zstd -d %s)", p, shell_quote(p).c_str());
    size_t first = bytes.find_first_not_of(" \t\r\n");
    if (first == std::string_view::npos)
        fail("%s: the file %s; expected %s", p, bytes.empty() ? "is empty" : "holds only blank lines",
             jsonl ? "one JSON object per line (jsonl)" : "UTF-8 text");
    if (size_t nul = bytes.find('\0'); nul != std::string_view::npos) {
        int line = 1;
        for (size_t i = 0; i < nul; i++) line += bytes[i] == '\n';
        fail("%s:%d: NUL byte: this looks like a binary file, not UTF-8 text%s", p, line, jsonl ? " jsonl" : "");
    }
    if (jsonl && csv_delimiter(path)) return parse_csv_records(bytes, p, csv_delimiter(path), answers);
    if (jsonl && bytes[first] == '[') return parse_record_array(bytes, first, p, answers);
    if (jsonl && bytes[first] == '{') refuse_pretty_printed(bytes, first, p);

    ParsedFile out;
    if (!jsonl) {
        // A jsonl file under another name (data.txt, a pipe) would train on its JSON syntax: refuse
        // when the first line is an object with a record's fields.
        std::string_view head = bytes.substr(first, bytes.find('\n', first) - first);
        if (!head.empty() && head.front() == '{') {
            Record r;
            std::string why;
            bool record = false;
            try {
                record = parse_object(json_parse(head), Answers::optional, r, why);
            } catch (const std::runtime_error&) {  // not JSON: text that starts with a brace
            }
            if (record)
                fail("%s: the first line is a training record (JSON), but the file is read as raw text by its name; give it "
                     "the extension .jsonl (or .json, .ndjson) to train on its records", p);
        }
        require_utf8(bytes, p);
        Record r;
        r.line = 1;
        r.text = std::string(bytes);
        out.records.push_back(std::move(r));
        out.lines = 1;
        return out;
    }

    int line = 0;
    for (size_t at = 0; at < bytes.size();) {
        size_t nl = bytes.find('\n', at);
        if (nl == std::string_view::npos) nl = bytes.size();
        std::string_view text = bytes.substr(at, nl - at);
        at = nl + 1;
        line++;
        if (!text.empty() && text.back() == '\r') text.remove_suffix(1);
        if (text.find_first_not_of(" \t\r") == std::string_view::npos) continue;
        out.lines++;
        if (text.size() > kMaxLineBytes) {
            out.invalid.push_back({line, "the line is " + std::to_string(text.size()) + " bytes, over the limit of " +
                                             std::to_string(kMaxLineBytes) + " for one example; split or remove it"});
            continue;
        }
        if (size_t bad = utf8_error(text); bad != std::string_view::npos) {
            out.invalid.push_back({line, utf8_message(text, bad)});
            continue;
        }
        JsonValue v;
        try {
            v = json_parse(text);
        } catch (const std::runtime_error& e) {
            // json_parse counts lines inside the text it was given: always 1 here.
            std::string what = e.what();
            if (what.rfind("line 1, ", 0) == 0) what = what.substr(8);
            out.invalid.push_back({line, "bad JSON: " + what});
            continue;
        }
        Record r;
        r.line = line;
        std::string why;
        if (parse_object(v, answers, r, why)) out.records.push_back(std::move(r));
        else out.invalid.push_back({line, why});
    }
    return out;
}
