#include "tokenizer/pretokenize.h"

#include "data/json.h"
#include "model/util.h"
#include "tokenizer/unicode.h"

namespace {

// The classes the regexes distinguish. Every character is exactly one of them, so
// [^\s\p{L}\p{N}] is simply Other.
enum Cls : uint8_t { Letter, Number, Space, Other };

struct Char {
    uint32_t off;  // byte offset in the text
    uint32_t cp;
    Cls cls;
};

Cls classify(uint32_t cp) {
    if (cp == kInvalidCodepoint) return Other;
    if (is_letter(cp)) return Letter;
    if (is_number(cp)) return Number;
    if (is_whitespace(cp)) return Space;
    return Other;
}

void decode(std::string_view text, std::vector<Char>& cs) {
    cs.clear();
    for (size_t i = 0; i < text.size();) {
        uint32_t cp;
        size_t n = utf8_decode(text, i, cp);
        cs.push_back({(uint32_t)i, cp, classify(cp)});
        i += n;
    }
}

bool is_crlf(uint32_t cp) { return cp == '\r' || cp == '\n'; }

// Length in characters of a contraction ('s 't 're 've 'm 'll 'd) at i, or 0. Llama-3 and Qwen2
// match it case-insensitively; Oniguruma's case folding also maps U+017F LATIN SMALL LETTER LONG S
// to 's' (and U+212A KELVIN SIGN to 'k', which no contraction uses).
size_t contraction(const std::vector<Char>& c, size_t i, bool ignore_case) {
    if (c[i].cp != '\'' || i + 1 >= c.size()) return 0;
    auto at = [&](size_t k) -> uint32_t {
        if (i + k >= c.size()) return 0;
        uint32_t cp = c[i + k].cp;
        if (!ignore_case) return cp;
        if (cp == 0x17F) return 's';
        return cp >= 'A' && cp <= 'Z' ? cp + 32 : cp;
    };
    uint32_t a = at(1);
    if (a == 's' || a == 't' || a == 'm' || a == 'd') return 2;
    uint32_t b = at(2);
    if ((a == 'r' && b == 'e') || (a == 'v' && b == 'e') || (a == 'l' && b == 'l')) return 3;
    return 0;
}

size_t run_of(const std::vector<Char>& c, size_t j, Cls cls) {
    while (j < c.size() && c[j].cls == cls) j++;
    return j;
}

// The whitespace alternatives shared by both regex families: \s+(?!\S)|\s+ — a run of spaces
// followed by a non-space gives up its last character, which then prefixes the next word.
size_t trailing_space_run(const std::vector<Char>& c, size_t i) {
    size_t j = run_of(c, i, Space);
    if (j == c.size() || j - i == 1) return j;
    return j - 1;
}

// End (exclusive, in characters) of the GPT-2 regex match starting at i.
size_t match_gpt2(const std::vector<Char>& c, size_t i) {
    if (size_t k = contraction(c, i, false)) return i + k;
    // " ?\p{L}+", " ?\p{N}+", " ?[^\s\p{L}\p{N}]+": an optional U+0020 then a run of one class
    size_t j = i + (c[i].cp == ' ' && i + 1 < c.size() && c[i + 1].cls != Space);
    if (c[j].cls != Space) return run_of(c, j, c[j].cls);
    return trailing_space_run(c, i);
}

// End of the Llama-3 (max_digits 3) or Qwen2 (max_digits 1) regex match starting at i.
size_t match_llama3(const std::vector<Char>& c, size_t i, size_t max_digits) {
    size_t n = c.size();
    if (size_t k = contraction(c, i, true)) return i + k;
    // [^\r\n\p{L}\p{N}]?\p{L}+
    if (c[i].cls == Letter) return run_of(c, i, Letter);
    if (c[i].cls != Number && !is_crlf(c[i].cp) && i + 1 < n && c[i + 1].cls == Letter) return run_of(c, i + 1, Letter);
    // \p{N}{1,max_digits}
    if (c[i].cls == Number) {
        size_t j = i;
        while (j < n && j - i < max_digits && c[j].cls == Number) j++;
        return j;
    }
    // " ?[^\s\p{L}\p{N}]+[\r\n]*"
    size_t j = i + (c[i].cp == ' ' && i + 1 < n && c[i + 1].cls == Other);
    if (c[j].cls == Other) {
        j = run_of(c, j, Other);
        while (j < n && is_crlf(c[j].cp)) j++;
        return j;
    }
    // \s*[\r\n]+ : the whitespace run up to and including its last CR/LF
    size_t end = run_of(c, i, Space);
    for (size_t p = end; p > i; p--)
        if (is_crlf(c[p - 1].cp)) return p;
    return trailing_space_run(c, i);
}

void split_regex(PreTokenizerKind kind, std::string_view text, std::vector<Char>& cs, std::vector<std::string_view>& out) {
    decode(text, cs);
    for (size_t i = 0; i < cs.size();) {
        size_t j = kind == PreTokenizerKind::Llama3 ? match_llama3(cs, i, 3)
                 : kind == PreTokenizerKind::Qwen2  ? match_llama3(cs, i, 1)
                                                    : match_gpt2(cs, i);
        size_t b = cs[i].off, e = j < cs.size() ? cs[j].off : text.size();
        out.push_back(text.substr(b, e - b));
        i = j;
    }
}

}  // namespace

void pretokenize(PreTokenizerKind kind, std::string_view text, std::vector<std::string_view>& out) {
    std::vector<Char> cs;
    if (kind != PreTokenizerKind::SmolLM) return split_regex(kind, text, cs, out);
    // Digits(individual_digits=true) first: each numeric character (is_numeric: Rust's, as the
    // Digits pre-tokenizer asks) becomes its own piece and the GPT-2 regex runs separately on the
    // text between them (so " 42" gives " ", "4", "2").
    size_t start = 0;
    for (size_t i = 0; i < text.size();) {
        uint32_t cp;
        size_t n = utf8_decode(text, i, cp);
        if (cp != kInvalidCodepoint && is_numeric(cp)) {
            if (i > start) split_regex(PreTokenizerKind::GPT2, text.substr(start, i - start), cs, out);
            out.push_back(text.substr(i, n));
            start = i + n;
        }
        i += n;
    }
    if (start < text.size()) split_regex(PreTokenizerKind::GPT2, text.substr(start), cs, out);
}

const char* pre_tokenizer_name(PreTokenizerKind kind) {
    switch (kind) {
    case PreTokenizerKind::GPT2: return "gpt2";
    case PreTokenizerKind::SmolLM: return "smollm";
    case PreTokenizerKind::Llama3: return "llama3";
    case PreTokenizerKind::Qwen2: return "qwen2";
    }
    return "?";
}

PreTokenizerKind pre_tokenizer_from_gguf(const std::string& pre) {
    if (pre == "gpt2" || pre == "gpt-2") return PreTokenizerKind::GPT2;
    // llama.cpp gives these the same two regexes: \p{N} alone, then GPT-2's
    if (pre == "smollm" || pre == "starcoder" || pre == "refact" || pre == "codeshell") return PreTokenizerKind::SmolLM;
    if (pre == "llama-bpe" || pre == "llama3" || pre == "llama-v3") return PreTokenizerKind::Llama3;
    if (pre == "qwen2") return PreTokenizerKind::Qwen2;
    fail("tokenizer.ggml.pre '%s' is not supported: supported are gpt2, smollm, starcoder, refact, codeshell, "
         "llama-bpe, qwen2", pre.c_str());
}

const char* pre_tokenizer_to_gguf(PreTokenizerKind kind) {
    switch (kind) {
    case PreTokenizerKind::GPT2: return "gpt-2";
    case PreTokenizerKind::SmolLM: return "smollm";
    case PreTokenizerKind::Llama3: return "llama-bpe";
    case PreTokenizerKind::Qwen2: return "qwen2";
    }
    return "gpt-2";
}

namespace {

const char* kLlama3Regex =
    "(?i:'s|'t|'re|'ve|'m|'ll|'d)|[^\\r\\n\\p{L}\\p{N}]?\\p{L}+|\\p{N}{1,3}| ?[^\\s\\p{L}\\p{N}]+[\\r\\n]*|\\s*[\\r\\n]+|\\s+(?!\\S)|\\s+";
const char* kQwen2Regex =
    "(?i:'s|'t|'re|'ve|'m|'ll|'d)|[^\\r\\n\\p{L}\\p{N}]?\\p{L}+|\\p{N}| ?[^\\s\\p{L}\\p{N}]+[\\r\\n]*|\\s*[\\r\\n]+|\\s+(?!\\S)|\\s+";

bool flag(const JsonValue& v, const char* key, bool dflt) {
    const JsonValue* f = v.get(key);
    return f && f->type == JsonValue::Bool ? f->boolean : dflt;
}

std::string type_of(const JsonValue& v) {
    const JsonValue* t = v.get("type");
    return t && t->type == JsonValue::String ? t->string : "?";
}

// ByteLevel without a prefix space: the only byte-level mapping we implement. `regex` says whether
// it must also split with GPT-2's regex.
bool is_byte_level(const JsonValue& v, bool regex) {
    return type_of(v) == "ByteLevel" && !flag(v, "add_prefix_space", false) && flag(v, "use_regex", true) == regex;
}

}  // namespace

PreTokenizerKind pre_tokenizer_from_hf(const JsonValue& p, const std::string& path) {
    if (is_byte_level(p, true)) return PreTokenizerKind::GPT2;
    const JsonValue* seq = p.get("pretokenizers");
    if (type_of(p) == "Sequence" && seq && seq->array.size() == 2) {
        const JsonValue& a = seq->array[0];
        const JsonValue& b = seq->array[1];
        if (type_of(a) == "Digits" && flag(a, "individual_digits", false) && is_byte_level(b, true))
            return PreTokenizerKind::SmolLM;
        const JsonValue* pat = a.get("pattern");
        const JsonValue* re = pat ? pat->get("Regex") : nullptr;
        const JsonValue* behavior = a.get("behavior");
        if (type_of(a) == "Split" && re && behavior && behavior->string == "Isolated" && !flag(a, "invert", false) &&
            is_byte_level(b, false)) {
            if (re->string == kLlama3Regex) return PreTokenizerKind::Llama3;
            if (re->string == kQwen2Regex) return PreTokenizerKind::Qwen2;
        }
    }
    fail("%s: pre_tokenizer (type %s) is not one we implement: supported are ByteLevel (GPT-2), "
         "Sequence[Digits(individual_digits), ByteLevel] (SmolLM/StarCoder) and Sequence[Split(Llama-3 or Qwen2 regex), "
         "ByteLevel(use_regex=false)]", path.c_str(), type_of(p).c_str());
}

std::string pre_tokenizer_to_hf(PreTokenizerKind kind) {
    auto byte_level = [](bool regex) {
        return std::string("{\"type\": \"ByteLevel\", \"add_prefix_space\": false, \"trim_offsets\": true, \"use_regex\": ") +
               (regex ? "true" : "false") + "}";
    };
    switch (kind) {
        case PreTokenizerKind::GPT2: return byte_level(true);
        case PreTokenizerKind::SmolLM:
            return "{\"type\": \"Sequence\", \"pretokenizers\": [{\"type\": \"Digits\", \"individual_digits\": true}, " +
                   byte_level(true) + "]}";
        case PreTokenizerKind::Llama3:
        case PreTokenizerKind::Qwen2:
            return "{\"type\": \"Sequence\", \"pretokenizers\": [{\"type\": \"Split\", \"pattern\": {\"Regex\": " +
                   json_quote(kind == PreTokenizerKind::Llama3 ? kLlama3Regex : kQwen2Regex) +
                   "}, \"behavior\": \"Isolated\", \"invert\": false}, " + byte_level(false) + "]}";
    }
    fail("pre_tokenizer_to_hf: unknown kind %d", (int)kind);
}
