// libFuzzer target for encoding: any bytes, through three real tokenizers (SmolLM2's byte-level BPE
// with GPT-2 pre-tokenization, Qwen3's with Llama-3-style pre-tokenization and NFC, Gemma 3's
// SentencePiece with byte fallback), and a byte-level one whose added tokens strip white space. Never crash or hang, every id in the vocabulary, and, where the
// tokenizer promises it (tokenizer/tokenizer.h: no normalizer), decode(encode(x)) == x less the bytes
// the vocabulary has no token for (and, for SentencePiece, with U+2581 read back as a space). The first input byte picks whether special tokens' text is parsed
// as the special token. SmolLM2's tokenizer.json is read from ../shared/reference (not in the repo):
// without it that tokenizer is skipped.
#include <cstdint>
#include <cstdio>
#include <string>
#include <vector>

#include "model/util.h"
#include "tokenizer/tokenizer.h"
#include "tokenizer/unicode.h"

#define CHECK_OR_TRAP(c)                                   \
    if (!(c)) {                                            \
        fprintf(stderr, "check failed: %s (%s)\n", #c, what); \
        __builtin_trap();                                  \
    }

namespace {

struct Loaded {
    const char* name;
    Tokenizer tok;
    bool lossless;               // decode(encode(x)) gives x back (less the missing bytes)
    std::vector<uint8_t> missing;  // bytes with no token (encode drops them)
};

std::vector<Loaded> load_all() {
    std::vector<Loaded> out;
    auto add = [&](const char* name, const char* path, bool lossless) {
        if (!file_exists(path)) {
            fprintf(stderr, "fuzz_encode: %s not found: %s skipped\n", path, name);
            return;
        }
        Loaded l{name, tokenizer_load_any(path), lossless, {}};
        l.missing = tokenizer_missing_bytes(l.tok);
        out.push_back(std::move(l));
    };
    add("smollm2", "../shared/reference/smollm2-135m-instruct/tokenizer.json", true);
    add("qwen3", "tests/fixtures/tokenizer/qwen3/tokenizer.json", false);  // NFC: decode does not undo it
    add("gemma3-spm", "tests/fixtures/tokenizer/gemma3/tokenizer.model", true);
    // added tokens that take the white space beside them (lstrip/rstrip): lossless but for that space
    add("bpe-strip", "tests/fixtures/tokenizer/strip/bpe_tokenizer.json", false);
    return out;
}

// s without its White_Space characters (decoded as encode() decodes them).
std::string without_white_space(const std::string& s) {
    std::string out;
    uint32_t c;
    for (size_t i = 0, n; i < s.size(); i += n)
        if (n = utf8_decode(s, i, c); !is_whitespace(c)) out.append(s, i, n);
    return out;
}

}  // namespace

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
    static const std::vector<Loaded> tokenizers = load_all();
    if (size < 1) return 0;
    const bool parse_special = data[0] & 1;
    const std::string text((const char*)data + 1, size - 1);
    for (const Loaded& l : tokenizers) {
        const char* what = l.name;
        const std::vector<int32_t> ids = encode(l.tok, text, parse_special);
        for (int32_t id : ids) CHECK_OR_TRAP(id >= 0 && (size_t)id < l.tok.token_bytes.size());
        const std::string back = decode(l.tok, ids);
        if (!l.tok.strip.empty()) CHECK_OR_TRAP(without_white_space(back) == without_white_space(text));
        if (!l.lossless) continue;
        // SentencePiece writes spaces as U+2581 and decodes every U+2581 as a space, one typed in the
        // text too (as its own decoder and Hugging Face's do).
        std::string typed = text;
        if (l.tok.model == TokenizerModel::SentencePiece)
            for (size_t p = typed.find("\xE2\x96\x81"); p != std::string::npos; p = typed.find("\xE2\x96\x81", p + 1))
                typed.replace(p, 3, " ");
        std::string want;
        for (unsigned char c : typed) {
            bool dropped = false;
            for (uint8_t m : l.missing) dropped = dropped || m == c;
            if (!dropped) want.push_back((char)c);
        }
        CHECK_OR_TRAP(back == want);
    }
    return 0;
}
