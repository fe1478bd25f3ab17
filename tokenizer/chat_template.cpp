#include "tokenizer/chat_template.h"

#include "model/util.h"
#include "tokenizer/unicode.h"

#include <string_view>

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

}  // namespace

std::vector<ChatPiece> chat_render_pieces(const ChatTemplate& t, const std::vector<ChatMessage>& messages,
                                          bool add_generation_prompt) {
    std::vector<ChatPiece> out;
    for (size_t i = 0; i < messages.size(); i++) {
        const ChatMessage& m = messages[i];
        bool asst = m.role == "assistant";
        switch (t.kind) {
        case ChatTemplateKind::ChatML:
            if (i == 0 && m.role != "system" && !t.default_system.empty())
                turn(out, false, "<|im_start|>system\n", t.default_system, "<|im_end|>", "\n");
            turn(out, asst, "<|im_start|>" + m.role + "\n", m.content, "<|im_end|>", "\n");
            break;
        case ChatTemplateKind::Llama3:
            turn(out, asst, std::string(i == 0 ? "<|begin_of_text|>" : "") + "<|start_header_id|>" + m.role + "<|end_header_id|>\n\n",
                 trim(m.content), "<|eot_id|>", "");
            break;
        case ChatTemplateKind::Gemma: {
            // Gemma's template raises on these; say so instead of rendering something it never saw
            const char* want = i % 2 == 0 ? "user" : "assistant";
            if (m.role != want)
                fail("message %zu has role '%s' but Gemma's chat template has no system role and needs roles to "
                     "alternate user/assistant, starting with user (expected '%s')", i, m.role.c_str(), want);
            turn(out, asst, std::string(i == 0 ? "<bos>" : "") + "<start_of_turn>" + (asst ? "model" : "user") + "\n",
                 trim(m.content), "<end_of_turn>", "\n");
            break;
        }
        case ChatTemplateKind::Plain:
            turn(out, asst, "", m.content, "\n", "");
            break;
        }
    }
    if (add_generation_prompt) {
        switch (t.kind) {
        case ChatTemplateKind::ChatML: emit(out, "<|im_start|>assistant\n", false); break;
        case ChatTemplateKind::Llama3: emit(out, "<|start_header_id|>assistant<|end_header_id|>\n\n", false); break;
        case ChatTemplateKind::Gemma: emit(out, std::string(messages.empty() ? "<bos>" : "") + "<start_of_turn>model\n", false); break;
        case ChatTemplateKind::Plain: break;
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
    }
    return "?";
}

ChatTemplate chat_template_from_name(const std::string& name) {
    for (ChatTemplateKind k : {ChatTemplateKind::ChatML, ChatTemplateKind::Llama3, ChatTemplateKind::Gemma, ChatTemplateKind::Plain})
        if (name == chat_template_name(k)) return ChatTemplate{k, ""};
    fail("unknown chat template '%s': valid names are chatml, llama3, gemma, plain", name.c_str());
}

namespace {

// The default system prompt of a ChatML template: the first literal '<|im_start|>system\n...<|im_end|>'
// in it (SmolLM2 and Qwen2 inject one when the conversation has none). The newline may be
// written as a real one or as the escape \n inside a Jinja string literal.
std::string chatml_default_system(const std::string& jinja) {
    for (std::string_view head : {"<|im_start|>system\\n", "<|im_start|>system\n"}) {
        for (size_t at = jinja.find(head); at != std::string::npos; at = jinja.find(head, at + 1)) {
            size_t b = at + head.size(), e = jinja.find("<|im_end|>", b);
            if (e == std::string::npos) continue;
            std::string lit = jinja.substr(b, e - b);
            // Jinja syntax in between means the system text is computed (a message's content), not a literal
            if (lit.find_first_of("'\"{}") != std::string::npos) continue;
            std::string out;  // undo the escapes a Jinja string literal may contain
            for (size_t i = 0; i < lit.size(); i++) {
                if (lit[i] == '\\' && i + 1 < lit.size()) {
                    char c = lit[++i];
                    out += c == 'n' ? '\n' : c == 't' ? '\t' : c;
                } else {
                    out += lit[i];
                }
            }
            return out;
        }
    }
    return "";
}

}  // namespace

ChatTemplate chat_template_from_jinja(const std::string& jinja) {
    if (jinja.find("<|im_start|>") != std::string::npos) return ChatTemplate{ChatTemplateKind::ChatML, chatml_default_system(jinja)};
    if (jinja.find("<|start_header_id|>") != std::string::npos) {
        // Llama-3.1 and later add a system header with knowledge-cutoff and today's date that we
        // do not reproduce; refuse rather than render something the model was not trained on
        if (jinja.find("Cutting Knowledge Date") != std::string::npos)
            fail("this is a Llama-3.1-or-later chat template (dated system header), which is not implemented; "
                 "pass --template llama3 to use the Llama-3 format");
        return ChatTemplate{ChatTemplateKind::Llama3, ""};
    }
    if (jinja.find("<start_of_turn>") != std::string::npos) return ChatTemplate{ChatTemplateKind::Gemma, ""};
    fail("unrecognised chat template starting '%.60s...': pass --template chatml|llama3|gemma|plain", jinja.c_str());
}
