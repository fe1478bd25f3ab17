// Chat templates as Jinja text: recognising a model's template (chat_template_from_jinja) and
// writing each family's own for the tools that read tokenizer_config.json and GGUF
// (chat_template_to_jinja). Rendering is tokenizer/chat_template.cpp's.
#include "tokenizer/chat_template.h"

#include "model/util.h"
#include "tokenizer/chat_template_texts.h"

#include <cstdio>
#include <cstring>
#include <stdexcept>
#include <string_view>
#include <utility>

namespace {

// `text` inside a single-quoted Jinja literal: the backslash and the quote escaped, and \r (Jinja's
// template loader would turn a raw \r\n into \n).
std::string jinja_literal_text(const std::string& text) {
    std::string lit;
    for (char c : text) lit += c == '\\' || c == '\'' ? std::string("\\") + c : c == '\r' ? std::string("\\r") : std::string(1, c);
    return lit;
}

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
// drops it anyway); whitespace next to a tag's "-" goes (Jinja strips it: {%- and {{- the text's
// before the tag, -%} and -}} the text's after it). A comment renders nothing but still splits the
// text around it (a "-" beside it or the next tag strips only its own side; transformers' trim_blocks
// drops a newline right after it): it stays as a mark, and goes only where the text on both sides of
// it is empty once stripped, as between two tags. ("A  {# c #}\n{%- if" renders "A  ", not "A".)
std::string folded(const std::string& jinja) {
    const auto space = [](char c) { return c == ' ' || c == '\t' || c == '\n' || c == '\r' || c == '\f' || c == '\v'; };
    const size_t n = jinja.size();
    std::string out;
    bool in_tag = false, skip_space = false;  // skip_space: after a tag that ends with '-'
    char quote = 0;
    size_t text_start = 0;  // where the text after the last tag or comment starts in out
    const auto strip_text = [&] {
        while (out.size() > text_start && space(out.back())) out.pop_back();
    };
    struct Comment {
        size_t at;  // where it stands in out
        bool empty_before, empty_after;
    };
    std::vector<Comment> comments;
    const auto settle = [&] {  // at a tag, a comment or the end: whether text followed the last comment
        if (!comments.empty() && comments.back().at == text_start) comments.back().empty_after = out.size() == text_start;
    };
    for (size_t i = 0; i < n; i++) {
        char c = jinja[i];
        if (c == '\r' && i + 1 < n && jinja[i + 1] == '\n') continue;
        if (!in_tag && c == '{' && i + 1 < n && jinja[i + 1] == '#') {  // a comment
            const size_t end = jinja.find("#}", i + 2);
            if (end == std::string::npos) break;  // Jinja refuses it; nothing after it renders
            if (i + 2 < n && jinja[i + 2] == '-') strip_text();
            settle();
            comments.push_back({out.size(), out.size() == text_start, false});
            text_start = out.size();
            skip_space = jinja[end - 1] == '-';
            i = end + 1;
            if (!skip_space && jinja[end - 1] != '+') {  // trim_blocks
                if (i + 1 < n && jinja[i + 1] == '\n') i++;
                else if (i + 2 < n && jinja[i + 1] == '\r' && jinja[i + 2] == '\n') i += 2;
            }
            continue;
        }
        if (!in_tag && c == '{' && i + 1 < n && (jinja[i + 1] == '{' || jinja[i + 1] == '%')) {
            in_tag = true;
            if (i + 2 < n && jinja[i + 2] == '-') strip_text();
            settle();
        } else if (in_tag && !quote && (c == '}' || c == '%') && i + 1 < n && jinja[i + 1] == '}') {
            in_tag = false;
            skip_space = jinja[i - 1] == '-';
            out += c;
            out += jinja[++i];
            text_start = out.size();
            continue;
        } else if (in_tag && quote && c == '\\' && i + 1 < n) {
            out += jinja[i + 1] == 'n' ? std::string("\n") : jinja.substr(i, 2);
            i++;
            continue;
        } else if (in_tag && (c == '\'' || c == '"') && (!quote || quote == c)) {
            quote = quote ? 0 : c;
        }
        if (!in_tag && skip_space) {
            if (space(c)) continue;
            skip_space = false;
        }
        if (c == ' ' && in_tag && !quote && !out.empty() && out.back() == ' ') continue;
        out += c;
    }
    settle();
    if (out.size() >= 3 && out.compare(out.size() - 3, 3, "%}\n") == 0) out.pop_back();
    std::string marked;
    size_t from = 0;
    for (const Comment& k : comments) {
        const size_t at = std::min(k.at, out.size());
        marked.append(out, from, at - from);
        if (!k.empty_before || !k.empty_after) marked += "{#}";
        from = at;
    }
    return marked + out.substr(from);
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
    if (jinja.find("<|im_sep|>") != std::string::npos) {  // ChatML's markers, <|im_sep|> after the role
        const std::string f = folded(jinja);
        if (f == folded(kPhi4Jinja) || f == folded(kPhi4FirstReleaseJinja)) return ChatTemplate{ChatTemplateKind::Phi4, ""};
        fail("an <|im_sep|> chat template that is not Phi-4's (microsoft/phi-4, as released or as updated; Phi-4-reasoning's "
             "think blocks are not rendered), starting '%s...': pass --template phi4 if it renders its turns as Phi-4's "
             "does, or another with --template", quoted_start(jinja).c_str());
    }
    if (jinja.find("<|im_start|>") != std::string::npos) {
        // Rendered as ChatML, a template that writes <think> blocks (Qwen3's, QwQ's, the Qwen3-2507
        // models', fine-tunes' edits of them) would lose them: only Qwen3's own text is Qwen3's.
        if (jinja.find("<think>") == std::string::npos) {
            // Qwen2.5's own text, whatever its default system prompt, renders tool calls; any other
            // ChatML template is read without them (its tool format, if any, is not Qwen2.5's).
            ChatTemplate t{ChatTemplateKind::Qwen25, chatml_default_system(jinja)};
            if (jinja.find("<tool_call>") == std::string::npos || folded(jinja) != folded(chat_template_to_jinja(t)))
                t.kind = ChatTemplateKind::ChatML;
            return t;
        }
        if (is_qwen3_jinja(jinja)) return ChatTemplate{ChatTemplateKind::Qwen3, ""};
        if (folded(jinja) == folded(kSmolLM3Jinja)) return ChatTemplate{ChatTemplateKind::SmolLM3, ""};
        // Edits of SmolLM3's (Unsloth's GGUF one drops the date and always closes the system turn)
        if (jinja.find("Reasoning Mode") != std::string::npos)
            fail("a SmolLM3-style chat template that is not SmolLM3-3B's own, starting '%s...': pass --template smollm3 "
                 "to render as SmolLM3-3B's template does (a dated system block, closed only when it lists tools), or "
                 "another with --template", quoted_start(jinja).c_str());
        fail("a ChatML chat template with <think> blocks that is neither Qwen3's (Qwen3-0.6B ... Qwen3-32B, as released "
             "or as updated) nor SmolLM3's, starting '%s...': pass --template qwen3 if it renders its turns as Qwen3's "
             "does, or --template chatml to render them without think blocks", quoted_start(jinja).c_str());
    }
    if (jinja.find("<|start_header_id|>") != std::string::npos) {
        // Llama 3.1 and later put a system block with the knowledge cutoff and a date before the turns
        if (jinja.find("Cutting Knowledge Date") != std::string::npos) return ChatTemplate{ChatTemplateKind::Llama31, ""};
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
        if (folded(jinja) == folded(kMistralV03Jinja)) return ChatTemplate{ChatTemplateKind::MistralV03, ""};
        fail("an [INST] chat template that is neither Llama-2-chat's nor Mistral-7B-Instruct-v0.2's or v0.3's (other "
             "Mistral releases place their spaces differently), starting '%s...': pass --template "
             "llama2|mistral|mistral-v0.3 to render as one of those", quoted_start(jinja).c_str());
    }
    if (jinja.find("<|end|>") != std::string::npos) {  // Microsoft's <|role|> ... <|end|> turns
        const std::string f = folded(jinja);
        if (f == folded(kPhi3Jinja)) return ChatTemplate{ChatTemplateKind::Phi3, ""};
        if (f == folded(kPhi3MiniJinja)) {
            fprintf(stderr, "note: Phi-3-mini-4k/128k-instruct's chat template: rendered as Phi-3.5-mini's, which writes no "
                    "turn for an empty system message where this one writes <|system|>\\n<|end|>\\n (give such a "
                    "message content, or leave it out)\n");
            return ChatTemplate{ChatTemplateKind::Phi3, ""};
        }
        if (f == folded(kPhi3FirstReleaseJinja) || f == folded(kPhi3MediumJinja)) {
            fprintf(stderr, "note: Phi-3's chat template as first released (Phi-3-mini-4k-instruct of April 2024, "
                    "Phi-3-medium-4k-instruct): rendered as Phi-3.5-mini's, which writes system messages as <|system|> "
                    "turns where this one drops them, ends a conversation rendered without a generation prompt with "
                    "<|endoftext|> (not learned), and writes no <s> first (the first Phi-3-mini's did)\n");
            return ChatTemplate{ChatTemplateKind::Phi3, ""};
        }
        if (f == folded(kPhi4MiniJinja)) return ChatTemplate{ChatTemplateKind::Phi4Mini, ""};
        fail("a <|end|> chat template that is none of Phi-3's (Phi-3-mini-4k/128k-instruct, Phi-3-medium-4k-instruct, "
             "Phi-3.5-mini-instruct) or Phi-4-mini-instruct's, starting '%s...': pass --template phi3 for <|role|>\\n "
             "turns ending <|end|>\\n, --template phi4-mini for them without newlines, or another with --template",
             quoted_start(jinja).c_str());
    }
    if (jinja.find("<|user|>") != std::string::npos && jinja.find("<|assistant|>") != std::string::npos) {
        // ChatGLM and others use the same markers with other turns: only Zephyr's own text
        if (folded(jinja) == folded(kZephyrJinja)) return ChatTemplate{ChatTemplateKind::Zephyr, ""};
        fail("a <|user|>/<|assistant|> chat template that is not Zephyr's (TinyLlama-1.1B-Chat-v1.0, zephyr-7b-beta), "
             "starting '%s...': pass --template zephyr if it renders the same, or another with --template",
             quoted_start(jinja).c_str());
    }
    if (jinja == kPlainJinja) return ChatTemplate{ChatTemplateKind::Plain, ""};
    fail("unrecognised chat template starting '%s...': pass --template chatml|llama3|gemma|gemma3|llama2|mistral|zephyr|qwen3|"
         "qwen2.5|llama3.1|smollm3|mistral-v0.3|phi3|phi4|phi4-mini|plain",
         quoted_start(jinja).c_str());
}

std::string chat_template_to_jinja(const ChatTemplate& t) {
    switch (t.kind) {
        case ChatTemplateKind::ChatML: {
            std::string jinja = kChatMLJinjaHead;
            if (!t.default_system.empty())
                jinja += kChatMLJinjaSystemOpen + jinja_literal_text(t.default_system) + kChatMLJinjaSystemClose;
            return jinja + kChatMLJinjaTail;
        }
        case ChatTemplateKind::Qwen25: {
            std::string jinja = kQwen25Jinja;
            const std::string mark = "@DEFAULT_SYSTEM@", lit = jinja_literal_text(t.default_system);
            for (size_t at = jinja.find(mark); at != std::string::npos; at = jinja.find(mark, at + lit.size()))
                jinja.replace(at, mark.size(), lit);
            return jinja;
        }
        case ChatTemplateKind::Llama3: return kLlama3Jinja;
        case ChatTemplateKind::Llama31: return kLlama31Jinja;
        case ChatTemplateKind::Gemma: return kGemmaJinja;
        case ChatTemplateKind::Gemma3: return kGemma3Jinja;
        case ChatTemplateKind::Llama2: return kLlama2Jinja;
        case ChatTemplateKind::Mistral: return kMistralJinja;
        case ChatTemplateKind::Zephyr: return kZephyrJinja;
        case ChatTemplateKind::Qwen3: return kQwen3Jinja;
        case ChatTemplateKind::SmolLM3: return kSmolLM3Jinja;
        case ChatTemplateKind::MistralV03: return kMistralV03Jinja;
        case ChatTemplateKind::Phi3: return kPhi3Jinja;
        case ChatTemplateKind::Phi4: return kPhi4Jinja;
        case ChatTemplateKind::Phi4Mini: return kPhi4MiniJinja;
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
