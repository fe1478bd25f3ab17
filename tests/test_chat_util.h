// Helpers shared by the chat template tests (test_chat_template.cpp, test_chat_template_phi.cpp).
#pragma once
#include <stdexcept>
#include <string>
#include <vector>

#include "data/json.h"
#include "tokenizer/chat_template.h"

// The error message of rendering a conversation ("" when it renders).
inline std::string render_error_tools(const ChatTemplate& t, const std::vector<ChatMessage>& msgs,
                                      const std::vector<std::string>& tools) {
    try {
        chat_render(t, msgs, false, tools);
    } catch (const std::runtime_error& e) {
        return e.what();
    }
    return "";
}
inline std::string render_error(const ChatTemplate& t, const std::vector<ChatMessage>& msgs) {
    return render_error_tools(t, msgs, {});
}

// A rendered conversation, and the text of its pieces marked as learned.
struct Rendered {
    std::string all, learned;
};
inline Rendered render_marked(const ChatTemplate& t, const std::vector<ChatMessage>& msgs, bool gen,
                              const std::vector<std::string>& tools = {}) {
    Rendered r;
    for (const ChatPiece& p : chat_render_pieces(t, msgs, gen, tools)) {
        r.all += p.text;
        if (p.assistant) r.learned += p.text;
    }
    return r;
}

// A fixture's message: role, content and, where the case has one, reasoning_content (null is none).
// Content given as a list of text parts becomes the message's parts (and, joined, its content).
inline ChatMessage fixture_message(const JsonValue& m) {
    const JsonValue* content = m.get("content");
    ChatMessage msg{m.get("role")->string, content->type == JsonValue::String ? content->string : ""};
    if (content->type == JsonValue::Array) {
        msg.parts.emplace();
        for (const JsonValue& part : content->array) msg.parts->push_back(part.get("text")->string), msg.content += msg.parts->back();
    }
    const JsonValue* r = m.get("reasoning_content");
    if (r && !r->is_null()) msg.reasoning_content = r->string;
    return msg;
}

// Python's str.strip(), for the whitespace the fixtures use (U+001F and U+00A0 included)
inline std::string python_strip(std::string s) {
    for (bool again = true; again;) {
        again = false;
        for (std::string ws : {" ", "\t", "\n", "\r", "\x1c", "\x1f", "\xC2\xA0", "\xE3\x80\x80"}) {
            if (s.rfind(ws, 0) == 0) s.erase(0, ws.size()), again = true;
            if (s.size() >= ws.size() && s.compare(s.size() - ws.size(), ws.size(), ws) == 0) s.resize(s.size() - ws.size()), again = true;
        }
    }
    return s;
}

// The text an assistant turn contributes to the loss: its content (trimmed where the template
// trims; of parts, each trimmed) and the end-of-turn marker. (Qwen3's cases list theirs, as its
// template marks them.)
inline std::string assistant_target(ChatTemplateKind k, const ChatMessage& m) {
    const std::string& content = m.content;
    auto trimmed = [&] {
        if (!m.parts) return python_strip(content);
        std::string s;
        for (const std::string& part : *m.parts) s += python_strip(part);
        return s;
    };
    switch (k) {
    case ChatTemplateKind::ChatML:
    case ChatTemplateKind::Qwen25: return content + "<|im_end|>";
    case ChatTemplateKind::Llama3:
    case ChatTemplateKind::Llama31: return trimmed() + "<|eot_id|>";
    case ChatTemplateKind::Gemma:
    case ChatTemplateKind::Gemma3: return trimmed() + "<end_of_turn>";
    case ChatTemplateKind::Plain: return content + "\n";
    // the space before the answer is the answer's: SentencePiece writes it as the "▁" of its first token
    case ChatTemplateKind::Llama2: return " " + trimmed() + " </s>";
    case ChatTemplateKind::Mistral: return " " + content + "</s>";
    case ChatTemplateKind::MistralV03: return " " + trimmed() + "</s>";
    case ChatTemplateKind::Zephyr: return content + "</s>";
    case ChatTemplateKind::Phi3:
    case ChatTemplateKind::Phi4Mini: return content + "<|end|>";
    case ChatTemplateKind::Phi4: return content + "<|im_end|>";
    case ChatTemplateKind::Qwen3:
    case ChatTemplateKind::SmolLM3: break;  // their cases list what is learned
    }
    return "";
}
