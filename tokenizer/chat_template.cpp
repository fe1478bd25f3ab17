#include "tokenizer/chat_template.h"

#include "model/util.h"
#include "tokenizer/unicode.h"

#include <cstdio>
#include <cstring>
#include <string_view>
#include <utility>

namespace {

// Jinja's |trim is Python's str.strip(): it removes characters for which str.isspace() is true,
// which is the White_Space property plus the separators U+001C..U+001F.
bool python_isspace(uint32_t cp) { return (cp >= 0x1C && cp <= 0x1F) || is_whitespace(cp); }

std::string trim(const std::string& s) {
    size_t b = 0, e = s.size();
    while (b < e) {
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

// Roles past system, user and assistant: Zephyr's template drops them without a word, Qwen2.5's
// and Qwen3's render a tool message as a <tool_response> block inside a user turn (and drop the
// rest), SmolLM2's writes any role as a turn. We have no tool calling: refuse them rather than
// render what the model never saw.
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
    if (after_query && (last || !reasoning.empty()))
        answer = "<think>\n" + strip_newlines(reasoning, true, true) + "\n</think>\n\n" + strip_newlines(answer, true, false);
    turn(out, m.trained, "<|im_start|>assistant\n", answer, "<|im_end|>", "\n");
}

}  // namespace

std::vector<ChatPiece> chat_render_pieces(const ChatTemplate& t, const std::vector<ChatMessage>& messages,
                                          bool add_generation_prompt) {
    std::vector<ChatPiece> out;
    const bool qwen3 = t.kind == ChatTemplateKind::Qwen3;
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
    if (t.kind == ChatTemplateKind::Llama2 || t.kind == ChatTemplateKind::Mistral) {
        render_inst(t.kind, messages, out);
        return out;
    }
    if (t.kind == ChatTemplateKind::Gemma3) {
        render_gemma3(messages, out);
        if (add_generation_prompt) emit(out, "<start_of_turn>model\n", false);
        return out;
    }
    const size_t last_query = qwen3 ? qwen3_last_query(messages) : 0;
    for (size_t i = 0; i < messages.size(); i++) {
        const ChatMessage& m = messages[i];
        const bool asst = m.role == "assistant", learned = asst && m.trained;
        switch (t.kind) {
        case ChatTemplateKind::ChatML:
            require_basic_role(i, m, "ChatML templates are rendered with system, user and assistant turns only "
                               "(Qwen2.5's renders a tool message as a <tool_response> block in a user turn): tool "
                               "calling is not supported");
            if (i == 0 && m.role != "system" && !t.default_system.empty())
                turn(out, false, "<|im_start|>system\n", t.default_system, "<|im_end|>", "\n");
            turn(out, learned, "<|im_start|>" + m.role + "\n", m.content, "<|im_end|>", "\n");
            break;
        case ChatTemplateKind::Llama3:
            turn(out, learned, std::string(i == 0 ? "<|begin_of_text|>" : "") + "<|start_header_id|>" + m.role + "<|end_header_id|>\n\n",
                 trim(m.content), "<|eot_id|>", "");
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
            require_basic_role(i, m, "the Zephyr chat template has only system, user and assistant");
            turn(out, learned, "<|" + m.role + "|>\n", m.content, "</s>", "\n");
            break;
        case ChatTemplateKind::Qwen3:
            require_basic_role(i, m, "Qwen3's chat template is rendered with system, user and assistant turns only (it "
                               "renders a tool message as a <tool_response> block in a user turn and drops other "
                               "roles): tool calling is not supported");
            if (asst) qwen3_assistant_turn(out, m, i > last_query, i + 1 == messages.size());
            else turn(out, false, "<|im_start|>" + m.role + "\n", m.content, "<|im_end|>", "\n");
            break;
        default: fail("internal: chat template kind %d", (int)t.kind);
        }
    }
    if (add_generation_prompt) {
        switch (t.kind) {
        case ChatTemplateKind::ChatML:
        case ChatTemplateKind::Qwen3: emit(out, "<|im_start|>assistant\n", false); break;
        case ChatTemplateKind::Llama3: emit(out, "<|start_header_id|>assistant<|end_header_id|>\n\n", false); break;
        case ChatTemplateKind::Gemma: emit(out, std::string(messages.empty() ? "<bos>" : "") + "<start_of_turn>model\n", false); break;
        case ChatTemplateKind::Zephyr: emit(out, messages.empty() ? "" : "<|assistant|>\n", false); break;
        default: break;
        }
    }
    return out;
}

std::string chat_render(const ChatTemplate& t, const std::vector<ChatMessage>& messages, bool add_generation_prompt) {
    std::string out;
    for (const ChatPiece& p : chat_render_pieces(t, messages, add_generation_prompt)) out += p.text;
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
    }
    return "?";
}

ChatTemplate chat_template_from_name(const std::string& name) {
    for (ChatTemplateKind k : {ChatTemplateKind::ChatML, ChatTemplateKind::Llama3, ChatTemplateKind::Gemma,
                               ChatTemplateKind::Gemma3, ChatTemplateKind::Llama2, ChatTemplateKind::Mistral,
                               ChatTemplateKind::Zephyr, ChatTemplateKind::Qwen3, ChatTemplateKind::Plain})
        if (name == chat_template_name(k)) return ChatTemplate{k, ""};
    fail("unknown chat template '%s': valid names are chatml, llama3, gemma, gemma3, llama2, mistral, zephyr, qwen3, plain",
         name.c_str());
}

namespace {

// The Jinja templates chat_template_to_jinja writes: the models' own, from their tokenizer_config.json
// (SmolLM2's ChatML with its default system prompt, plain ChatML, Meta-Llama-3-8B-Instruct,
// gemma-2-2b-it, gemma-3-*, Llama-2-7b-chat-hf, Mistral-7B-Instruct-v0.2, TinyLlama-1.1B-Chat-v1.0, Qwen3;
// tests/fixtures/chat/gen_fixtures.py renders the same with transformers), and one for Plain.
// chat_template_from_jinja reads each back as the template it came from.
const char* const kChatMLJinjaHead = "{% for message in messages %}";
const char* const kChatMLJinjaSystemOpen =
    "{% if loop.first and messages[0]['role'] != 'system' %}{{ '<|im_start|>system\n";
const char* const kChatMLJinjaSystemClose = "<|im_end|>\n' }}{% endif %}";
const char* const kChatMLJinjaTail =
    "{{'<|im_start|>' + message['role'] + '\n' + message['content'] + '<|im_end|>' + '\n'}}{% endfor %}"
    "{% if add_generation_prompt %}{{ '<|im_start|>assistant\n' }}{% endif %}";
const char* const kLlama3Jinja =
    "{% set loop_messages = messages %}{% for message in loop_messages %}{% set content = '<|start_header_id|>' + "
    "message['role'] + '<|end_header_id|>\n\n'+ message['content'] | trim + '<|eot_id|>' %}{% if loop.index0 == 0 %}"
    "{% set content = bos_token + content %}{% endif %}{{ content }}{% endfor %}{% if add_generation_prompt %}"
    "{{ '<|start_header_id|>assistant<|end_header_id|>\n\n' }}{% endif %}";
const char* const kGemmaJinja =
    "{{ bos_token }}{% if messages[0]['role'] == 'system' %}{{ raise_exception('System role not supported') }}{% endif %}"
    "{% for message in messages %}{% if (message['role'] == 'user') != (loop.index0 % 2 == 0) %}{{ raise_exception("
    "'Conversation roles must alternate user/assistant/user/assistant/...') }}{% endif %}{% if (message['role'] == "
    "'assistant') %}{% set role = 'model' %}{% else %}{% set role = message['role'] %}{% endif %}{{ '<start_of_turn>' + "
    "role + '\n' + message['content'] | trim + '<end_of_turn>\n' }}{% endfor %}{% if add_generation_prompt %}"
    "{{'<start_of_turn>model\n'}}{% endif %}";
// Gemma 3's (google/gemma-3-*-it and -pt tokenizer_config.json, as transformers reads the JSON: the
// newlines inside its quoted literals are real ones there; one line here per line of the template).
const char* const kGemma3Jinja =
    "{{ bos_token }}\n"
    "{%- if messages[0]['role'] == 'system' -%}\n"
    "    {%- if messages[0]['content'] is string -%}\n"
    "        {%- set first_user_prefix = messages[0]['content'] + '\n"
    "\n"
    "' -%}\n"
    "    {%- else -%}\n"
    "        {%- set first_user_prefix = messages[0]['content'][0]['text'] + '\n"
    "\n"
    "' -%}\n"
    "    {%- endif -%}\n"
    "    {%- set loop_messages = messages[1:] -%}\n"
    "{%- else -%}\n"
    "    {%- set first_user_prefix = \"\" -%}\n"
    "    {%- set loop_messages = messages -%}\n"
    "{%- endif -%}\n"
    "{%- for message in loop_messages -%}\n"
    "    {%- if (message['role'] == 'user') != (loop.index0 % 2 == 0) -%}\n"
    "        {{ raise_exception(\"Conversation roles must alternate user/assistant/user/assistant/...\") }}\n"
    "    {%- endif -%}\n"
    "    {%- if (message['role'] == 'assistant') -%}\n"
    "        {%- set role = \"model\" -%}\n"
    "    {%- else -%}\n"
    "        {%- set role = message['role'] -%}\n"
    "    {%- endif -%}\n"
    "    {{ '<start_of_turn>' + role + '\n"
    "' + (first_user_prefix if loop.first else \"\") }}\n"
    "    {%- if message['content'] is string -%}\n"
    "        {{ message['content'] | trim }}\n"
    "    {%- elif message['content'] is iterable -%}\n"
    "        {%- for item in message['content'] -%}\n"
    "            {%- if item['type'] == 'image' -%}\n"
    "                {{ '<start_of_image>' }}\n"
    "            {%- elif item['type'] == 'text' -%}\n"
    "                {{ item['text'] | trim }}\n"
    "            {%- endif -%}\n"
    "        {%- endfor -%}\n"
    "    {%- else -%}\n"
    "        {{ raise_exception(\"Invalid content type\") }}\n"
    "    {%- endif -%}\n"
    "    {{ '<end_of_turn>\n"
    "' }}\n"
    "{%- endfor -%}\n"
    "{%- if add_generation_prompt -%}\n"
    "    {{'<start_of_turn>model\n"
    "'}}\n"
    "{%- endif -%}\n";
// Llama-2-7b-chat-hf's tokenizer_config.json
const char* const kLlama2Jinja =
    "{% if messages[0]['role'] == 'system' %}{% set loop_messages = messages[1:] %}{% set system_message "
    "= messages[0]['content'] %}{% else %}{% set loop_messages = messages %}{% set system_message = false"
    " %}{% endif %}{% for message in loop_messages %}{% if (message['role'] == 'user') != (loop.index0 % "
    "2 == 0) %}{{ raise_exception('Conversation roles must alternate user/assistant/user/assistant/...') "
    "}}{% endif %}{% if loop.index0 == 0 and system_message != false %}{% set content = '<<SYS>>\\n' + sy"
    "stem_message + '\\n<</SYS>>\\n\\n' + message['content'] %}{% else %}{% set content = message['conten"
    "t'] %}{% endif %}{% if message['role'] == 'user' %}{{ bos_token + '[INST] ' + content.strip() + ' [/"
    "INST]' }}{% elif message['role'] == 'assistant' %}{{ ' '  + content.strip() + ' ' + eos_token }}{% e"
    "ndif %}{% endfor %}";
// Mistral-7B-Instruct-v0.2's (and v0.1's, as updated) tokenizer_config.json
const char* const kMistralJinja =
    "{%- if messages[0]['role'] == 'system' %}\n    {%- set system_message = messages[0]['content'] %}\n "
    "   {%- set loop_messages = messages[1:] %}\n{%- else %}\n    {%- set loop_messages = messages %}\n{%"
    "- endif %}\n\n{{- bos_token }}\n{%- for message in loop_messages %}\n    {%- if (message['role'] == "
    "'user') != (loop.index0 % 2 == 0) %}\n        {{- raise_exception('After the optional system message"
    ", conversation roles must alternate user/assistant/user/assistant/...') }}\n    {%- endif %}\n    {%"
    "- if message['role'] == 'user' %}\n        {%- if loop.first and system_message is defined %}\n     "
    "       {{- ' [INST] ' + system_message + '\\n\\n' + message['content'] + ' [/INST]' }}\n        {%- "
    "else %}\n            {{- ' [INST] ' + message['content'] + ' [/INST]' }}\n        {%- endif %}\n    "
    "{%- elif message['role'] == 'assistant' %}\n        {{- ' ' + message['content'] + eos_token}}\n    "
    "{%- else %}\n        {{- raise_exception('Only user and assistant roles are supported, with the exce"
    "ption of an initial optional system message!') }}\n    {%- endif %}\n{%- endfor %}\n";
// TinyLlama-1.1B-Chat-v1.0's and zephyr-7b-beta's tokenizer_config.json (the newlines are real ones)
const char* const kZephyrJinja =
    "{% for message in messages %}\n{% if message['role'] == 'user' %}\n{{ '<|user|>\n' + message['conten"
    "t'] + eos_token }}\n{% elif message['role'] == 'system' %}\n{{ '<|system|>\n' + message['content'] +"
    " eos_token }}\n{% elif message['role'] == 'assistant' %}\n{{ '<|assistant|>\n'  + message['content']"
    " + eos_token }}\n{% endif %}\n{% if loop.last and add_generation_prompt %}\n{{ '<|assistant|>' }}\n{"
    "% endif %}\n{% endfor %}";
const char* const kPlainJinja = "{% for message in messages %}{{ message['content'] + '\n' }}{% endfor %}";
// Qwen3-0.6B ... Qwen3-32B's tokenizer_config.json, as Qwen updated it after release (it reads
// message.content only when it is a string); the lines are the template's own, "\n" in its quoted
// literals a Jinja escape.
const char* const kQwen3Jinja = R"jinja({%- if tools %}
    {{- '<|im_start|>system\n' }}
    {%- if messages[0].role == 'system' %}
        {{- messages[0].content + '\n\n' }}
    {%- endif %}
    {{- "# Tools\n\nYou may call one or more functions to assist with the user query.\n\nYou are provided with function signatures within <tools></tools> XML tags:\n<tools>" }}
    {%- for tool in tools %}
        {{- "\n" }}
        {{- tool | tojson }}
    {%- endfor %}
    {{- "\n</tools>\n\nFor each function call, return a json object with function name and arguments within <tool_call></tool_call> XML tags:\n<tool_call>\n{\"name\": <function-name>, \"arguments\": <args-json-object>}\n</tool_call><|im_end|>\n" }}
{%- else %}
    {%- if messages[0].role == 'system' %}
        {{- '<|im_start|>system\n' + messages[0].content + '<|im_end|>\n' }}
    {%- endif %}
{%- endif %}
{%- set ns = namespace(multi_step_tool=true, last_query_index=messages|length - 1) %}
{%- for message in messages[::-1] %}
    {%- set index = (messages|length - 1) - loop.index0 %}
    {%- if ns.multi_step_tool and message.role == "user" and message.content is string and not(message.content.startswith('<tool_response>') and message.content.endswith('</tool_response>')) %}
        {%- set ns.multi_step_tool = false %}
        {%- set ns.last_query_index = index %}
    {%- endif %}
{%- endfor %}
{%- for message in messages %}
    {%- if message.content is string %}
        {%- set content = message.content %}
    {%- else %}
        {%- set content = '' %}
    {%- endif %}
    {%- if (message.role == "user") or (message.role == "system" and not loop.first) %}
        {{- '<|im_start|>' + message.role + '\n' + content + '<|im_end|>' + '\n' }}
    {%- elif message.role == "assistant" %}
        {%- set reasoning_content = '' %}
        {%- if message.reasoning_content is string %}
            {%- set reasoning_content = message.reasoning_content %}
        {%- else %}
            {%- if '</think>' in content %}
                {%- set reasoning_content = content.split('</think>')[0].rstrip('\n').split('<think>')[-1].lstrip('\n') %}
                {%- set content = content.split('</think>')[-1].lstrip('\n') %}
            {%- endif %}
        {%- endif %}
        {%- if loop.index0 > ns.last_query_index %}
            {%- if loop.last or (not loop.last and reasoning_content) %}
                {{- '<|im_start|>' + message.role + '\n<think>\n' + reasoning_content.strip('\n') + '\n</think>\n\n' + content.lstrip('\n') }}
            {%- else %}
                {{- '<|im_start|>' + message.role + '\n' + content }}
            {%- endif %}
        {%- else %}
            {{- '<|im_start|>' + message.role + '\n' + content }}
        {%- endif %}
        {%- if message.tool_calls %}
            {%- for tool_call in message.tool_calls %}
                {%- if (loop.first and content) or (not loop.first) %}
                    {{- '\n' }}
                {%- endif %}
                {%- if tool_call.function %}
                    {%- set tool_call = tool_call.function %}
                {%- endif %}
                {{- '<tool_call>\n{"name": "' }}
                {{- tool_call.name }}
                {{- '", "arguments": ' }}
                {%- if tool_call.arguments is string %}
                    {{- tool_call.arguments }}
                {%- else %}
                    {{- tool_call.arguments | tojson }}
                {%- endif %}
                {{- '}\n</tool_call>' }}
            {%- endfor %}
        {%- endif %}
        {{- '<|im_end|>\n' }}
    {%- elif message.role == "tool" %}
        {%- if loop.first or (messages[loop.index0 - 1].role != "tool") %}
            {{- '<|im_start|>user' }}
        {%- endif %}
        {{- '\n<tool_response>\n' }}
        {{- content }}
        {{- '\n</tool_response>' }}
        {%- if loop.last or (messages[loop.index0 + 1].role != "tool") %}
            {{- '<|im_end|>\n' }}
        {%- endif %}
    {%- endif %}
{%- endfor %}
{%- if add_generation_prompt %}
    {{- '<|im_start|>assistant\n' }}
    {%- if enable_thinking is defined and enable_thinking is false %}
        {{- '<think>\n\n</think>\n\n' }}
    {%- endif %}
{%- endif %})jinja";
// The edits that turn kQwen3Jinja back into the template Qwen3 was first released with (April
// 2025; GGUF files converted then carry it): it read message.content directly. Both render our
// conversations alike; the edits spare a second 4 kB copy of nearly the same text.
const std::pair<const char*, const char*> kQwen3FirstReleaseEdits[] = {
    {"message.role == \"user\" and message.content is string and not(", "message.role == \"user\" and not("},
    {"{%- for message in messages %}\n    {%- if message.content is string %}\n        {%- set content = message.content %}\n"
     "    {%- else %}\n        {%- set content = '' %}\n    {%- endif %}\n", "{%- for message in messages %}\n"},
    {"'\\n' + content + '<|im_end|>'", "'\\n' + message.content + '<|im_end|>'"},
    {"{%- elif message.role == \"assistant\" %}\n",
     "{%- elif message.role == \"assistant\" %}\n        {%- set content = message.content %}\n"},
    {"message.reasoning_content is string", "message.reasoning_content is defined and message.reasoning_content is not none"},
    {"{%- if '</think>' in content %}", "{%- if '</think>' in message.content %}"},
    {"{%- set reasoning_content = content.split('</think>')[0].rstrip('\\n').split('<think>')[-1].lstrip('\\n') %}\n"
     "                {%- set content = content.split('</think>')[-1].lstrip('\\n') %}",
     "{%- set content = message.content.split('</think>')[-1].lstrip('\\n') %}\n"
     "                {%- set reasoning_content = message.content.split('</think>')[0].rstrip('\\n').split('<think>')[-1].lstrip('\\n') %}"},
    {"{{- content }}", "{{- message.content }}"},
};

// The default system prompt of a ChatML template: the first string literal '<|im_start|>system\n...<|im_end|>'
// in it (SmolLM2 and Qwen2 inject one when the conversation has none). The newline may be written as
// a real one or as the escape \n; a literal that closes before <|im_end|> is followed by Jinja that
// computes the text (a message's content), not a default.
std::string chatml_default_system(const std::string& jinja) {
    for (std::string_view head : {"<|im_start|>system\\n", "<|im_start|>system\n"}) {
        for (size_t at = jinja.find(head); at != std::string::npos; at = jinja.find(head, at + 1)) {
            if (at == 0 || (jinja[at - 1] != '\'' && jinja[at - 1] != '"')) continue;
            const char quote = jinja[at - 1];
            std::string out;  // the literal's text, its escapes undone
            for (size_t i = at + head.size(); i < jinja.size() && jinja[i] != quote; i++) {
                if (jinja.compare(i, 10, "<|im_end|>") == 0) return out;
                char c = jinja[i];
                if (c == '\\' && i + 1 < jinja.size()) {
                    c = jinja[++i];
                    c = c == 'n' ? '\n' : c == 't' ? '\t' : c == 'r' ? '\r' : c;
                }
                out += c;
            }
        }
    }
    return "";
}

// A template as Jinja reads it, in the ways copies of one tokenizer_config.json template differ:
// inside the string literals of its {{ }} and {% %} tags a "\n" escape is a newline, and between
// them runs of spaces are one; line ends are \n; a newline after the last block tag goes (trim_blocks
// drops it anyway).
std::string folded(const std::string& jinja) {
    std::string out;
    bool in_tag = false;
    char quote = 0;
    for (size_t i = 0; i < jinja.size(); i++) {
        char c = jinja[i];
        if (c == '\r' && i + 1 < jinja.size() && jinja[i + 1] == '\n') continue;
        if (!in_tag && c == '{' && i + 1 < jinja.size() && (jinja[i + 1] == '{' || jinja[i + 1] == '%')) in_tag = true;
        else if (in_tag && !quote && (c == '}' || c == '%') && i + 1 < jinja.size() && jinja[i + 1] == '}') in_tag = false;
        else if (in_tag && quote && c == '\\' && i + 1 < jinja.size()) {
            out += jinja[i + 1] == 'n' ? std::string("\n") : jinja.substr(i, 2);
            i++;
            continue;
        } else if (in_tag && (c == '\'' || c == '"') && (!quote || quote == c)) quote = quote ? 0 : c;
        if (c == ' ' && in_tag && !quote && !out.empty() && out.back() == ' ') continue;
        out += c;
    }
    if (out.size() >= 3 && out.compare(out.size() - 3, 3, "%}\n") == 0) out.pop_back();
    return out;
}

// The first 60 characters of a template for a message, its runs of whitespace (newlines and the
// indentation of multi-line templates) as one space.
std::string quoted_start(const std::string& jinja) {
    std::string out;
    for (size_t i = 0; i < jinja.size() && out.size() < 60; i++) {
        bool space = jinja[i] == ' ' || jinja[i] == '\n' || jinja[i] == '\t' || jinja[i] == '\r';
        if (!space) out += jinja[i];
        else if (!out.empty() && out.back() != ' ') out += ' ';
    }
    return out;
}

// Whether `jinja` is Qwen3's template, as it is now or as first released (read as copies differ,
// see folded()).
bool is_qwen3_jinja(const std::string& jinja) {
    std::string first_release = kQwen3Jinja;
    for (const auto& [now, then] : kQwen3FirstReleaseEdits) {
        const size_t at = first_release.find(now);
        if (at == std::string::npos) fail("internal: Qwen3 template edit '%s' does not apply", now);
        first_release.replace(at, strlen(now), then);
    }
    const std::string f = folded(jinja);
    return f == folded(kQwen3Jinja) || f == folded(first_release);
}

}  // namespace

ChatTemplate chat_template_from_jinja(const std::string& jinja) {
    if (jinja.find("<|im_start|>") != std::string::npos) {
        // Rendered as ChatML, a template that writes <think> blocks (Qwen3's, QwQ's, the Qwen3-2507
        // models', fine-tunes' edits of them) would lose them: only Qwen3's own text is Qwen3's.
        if (jinja.find("<think>") == std::string::npos) return ChatTemplate{ChatTemplateKind::ChatML, chatml_default_system(jinja)};
        if (is_qwen3_jinja(jinja)) return ChatTemplate{ChatTemplateKind::Qwen3, ""};
        fail("a ChatML chat template with <think> blocks that is not Qwen3's (Qwen3-0.6B ... Qwen3-32B, as released or "
             "as updated), starting '%s...': pass --template qwen3 if it renders its turns as Qwen3's does, or "
             "--template chatml to render them without think blocks", quoted_start(jinja).c_str());
    }
    if (jinja.find("<|start_header_id|>") != std::string::npos) {
        // Llama 3.1 and later put a system block with the knowledge cutoff and today's date before
        // the turns, which changes every day (strftime_now) and is not reproduced: the turns
        // themselves are Llama 3's.
        if (jinja.find("Cutting Knowledge Date") != std::string::npos)
            fprintf(stderr, "note: a Llama 3.1-or-later chat template: conversations are rendered in the Llama 3 "
                    "format, without its dated 'Cutting Knowledge Date' system block\n");
        return ChatTemplate{ChatTemplateKind::Llama3, ""};
    }
    if (jinja.find("<start_of_turn>") != std::string::npos) {
        if (folded(jinja) == folded(kGemma3Jinja)) return ChatTemplate{ChatTemplateKind::Gemma3, ""};
        // Gemma 3's way with a system message, in a text that is not Gemma 3's (Gemma 3n's with audio
        // parts, fine-tunes' "\n" instead of "\n\n"): rendered as Gemma's, the system message would be
        // refused; as Gemma 3's, maybe spaced wrongly
        if (jinja.find("first_user_prefix") != std::string::npos)
            fail("a Gemma chat template with a system prefix that is not Gemma 3's (gemma-3-*-it, as released), "
                 "starting '%s...': pass --template gemma3 if it renders its turns as Gemma 3's does, or --template "
                 "gemma for Gemma 1/2's turns (no system message)", quoted_start(jinja).c_str());
        return ChatTemplate{ChatTemplateKind::Gemma, ""};
    }
    if (jinja.find("[INST]") != std::string::npos) {
        // Llama-2's and its older transformers default (same turns, plus a late system message we refuse)
        if (jinja.find("<<SYS>>") != std::string::npos && jinja.find("bos_token + '[INST] ' + content.strip()") != std::string::npos) {
            if (jinja.find("true == true and not '<<SYS>>'") != std::string::npos)
                fprintf(stderr, "note: a Llama-2 chat template with a default system prompt: conversations without a "
                        "system message are rendered without it\n");
            return ChatTemplate{ChatTemplateKind::Llama2, ""};
        }
        if (jinja.find("' [INST] ' + system_message") != std::string::npos) return ChatTemplate{ChatTemplateKind::Mistral, ""};
        fail("an [INST] chat template that is neither Llama-2-chat's nor Mistral-7B-Instruct-v0.2's (earlier Mistral "
             "releases and v0.3 place their spaces differently), starting '%s...': pass --template llama2|mistral "
             "to render as one of those", quoted_start(jinja).c_str());
    }
    if (jinja.find("<|user|>") != std::string::npos && jinja.find("<|assistant|>") != std::string::npos) {
        // Phi-3, ChatGLM and others use the same markers with other turns: only Zephyr's own text
        if (folded(jinja) == folded(kZephyrJinja)) return ChatTemplate{ChatTemplateKind::Zephyr, ""};
        fail("a <|user|>/<|assistant|> chat template that is not Zephyr's (TinyLlama-1.1B-Chat-v1.0, zephyr-7b-beta), "
             "starting '%s...': pass --template zephyr if it renders the same, or another with --template",
             quoted_start(jinja).c_str());
    }
    if (jinja == kPlainJinja) return ChatTemplate{ChatTemplateKind::Plain, ""};
    fail("unrecognised chat template starting '%s...': pass --template chatml|llama3|gemma|gemma3|llama2|mistral|zephyr|qwen3|plain",
         quoted_start(jinja).c_str());
}

std::string chat_template_to_jinja(const ChatTemplate& t) {
    switch (t.kind) {
        case ChatTemplateKind::ChatML: {
            std::string jinja = kChatMLJinjaHead;
            if (!t.default_system.empty()) {
                // A single-quoted Jinja literal: escape the backslash and the quote, and \r (Jinja's
                // template loader would turn a raw \r\n into \n).
                std::string lit;
                for (char c : t.default_system)
                    lit += c == '\\' || c == '\'' ? std::string("\\") + c : c == '\r' ? std::string("\\r") : std::string(1, c);
                jinja += kChatMLJinjaSystemOpen + lit + kChatMLJinjaSystemClose;
            }
            return jinja + kChatMLJinjaTail;
        }
        case ChatTemplateKind::Llama3: return kLlama3Jinja;
        case ChatTemplateKind::Gemma: return kGemmaJinja;
        case ChatTemplateKind::Gemma3: return kGemma3Jinja;
        case ChatTemplateKind::Llama2: return kLlama2Jinja;
        case ChatTemplateKind::Mistral: return kMistralJinja;
        case ChatTemplateKind::Zephyr: return kZephyrJinja;
        case ChatTemplateKind::Qwen3: return kQwen3Jinja;
        case ChatTemplateKind::Plain: return kPlainJinja;
    }
    fail("chat_template_to_jinja: unknown template kind %d", (int)t.kind);
}

ChatTemplate chat_template_or_plain(const std::string& jinja, const std::string& where) {
    try {
        return chat_template_from_jinja(jinja);
    } catch (const std::runtime_error& e) {
        fprintf(stderr, "warning: %s: %s; conversations will be rendered as plain text\n", where.c_str(), e.what());
        return ChatTemplate{};
    }
}
