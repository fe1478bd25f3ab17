// What is particular to SentencePiece-style BPE tokenizers (LLaMA-1, Llama-2, Mistral v0.1,
// TinyLlama): its merge rules from scores, its own tokenizer.model file, and the tokenizer.json
// pieces that say where "▁" goes. Encoding and decoding themselves are in tokenizer.cpp, shared
// with byte-level BPE.
//
// tokenizer.model is a protocol buffer (sentencepiece_model.proto's ModelProto). We read the few
// fields a BPE model needs with a minimal wire-format reader:
//   ModelProto      1: repeated SentencePiece pieces   2: TrainerSpec   3: NormalizerSpec
//   SentencePiece   1: piece (string)   2: score (float)   3: type (NORMAL 1, UNKNOWN 2, CONTROL 3,
//                   USER_DEFINED 4, UNUSED 5, BYTE 6: the values of TokenType)
//   TrainerSpec     3: model_type (UNIGRAM 1, BPE 2)   35: byte_fallback   40-43: unk, bos, eos, pad id
//   NormalizerSpec  1: name   3: add_dummy_prefix (default true)   4: remove_extra_whitespaces
//                   (default true)   5: escape_whitespaces (default true)
#include "tokenizer/tokenizer.h"

#include "data/json.h"
#include "model/util.h"

#include <algorithm>
#include <cmath>
#include <cstring>

namespace {

// Protocol buffer wire format: each field is a varint key (number << 3 | wire type) and a value:
// 0 varint, 1 eight bytes, 2 a varint length and that many bytes, 5 four bytes.
struct ProtoReader {
    const std::string& path;
    const uint8_t* p;
    const uint8_t* end;

    bool done() const { return p >= end; }
    uint64_t varint() {
        uint64_t v = 0;
        for (int shift = 0; shift < 64; shift += 7) {
            if (p >= end) fail("%s: truncated protocol buffer: not a SentencePiece tokenizer.model?", path.c_str());
            uint8_t b = *p++;
            v |= (uint64_t)(b & 0x7F) << shift;
            if (!(b & 0x80)) return v;
        }
        fail("%s: a varint longer than 10 bytes: not a SentencePiece tokenizer.model?", path.c_str());
    }
    // The next field's number and wire type.
    bool next(uint32_t& field, uint32_t& wire) {
        if (done()) return false;
        uint64_t key = varint();
        field = (uint32_t)(key >> 3), wire = (uint32_t)(key & 7);
        return true;
    }
    ProtoReader sub() {
        uint64_t n = varint();
        if (n > (uint64_t)(end - p)) fail("%s: truncated protocol buffer: not a SentencePiece tokenizer.model?", path.c_str());
        ProtoReader r{path, p, p + n};
        p += n;
        return r;
    }
    std::string string() {
        ProtoReader r = sub();
        return std::string((const char*)r.p, r.end - r.p);
    }
    float fixed32() {
        if (end - p < 4) fail("%s: truncated protocol buffer", path.c_str());
        float f;
        std::memcpy(&f, p, 4);
        p += 4;
        return f;
    }
    void skip(uint32_t wire) {
        if (wire == 0) varint();
        else if (wire == 1 && end - p >= 8) p += 8;
        else if (wire == 2) sub();
        else if (wire == 5 && end - p >= 4) p += 4;
        else fail("%s: protocol buffer wire type %u: not a SentencePiece tokenizer.model?", path.c_str(), wire);
    }
};

std::string type_of(const JsonValue* v) {
    const JsonValue* t = v ? v->get("type") : nullptr;
    return t && t->type == JsonValue::String ? t->string : "";
}

std::string string_at(const JsonValue* v, const char* key) {
    const JsonValue* s = v ? v->get(key) : nullptr;
    return s && s->type == JsonValue::String ? s->string : "";
}

}  // namespace

std::string spm_meta_to_spaces(const std::string& token) {
    std::string out;
    for (size_t i = 0; i < token.size();) {
        if (token.compare(i, 3, kSpmSpace) == 0) out += ' ', i += 3;
        else out += token[i++];
    }
    return out;
}

std::string spm_spaces_to_meta(const std::string& token) {
    std::string out;
    for (char c : token) {
        if (c == ' ') out += kSpmSpace;
        else out += c;
    }
    return out;
}

int spm_byte_token_value(const std::string& s) {
    if (s.size() != 6 || s.compare(0, 3, "<0x") != 0 || s[5] != '>') return -1;
    int v = 0;
    for (int i = 3; i < 5; i++) {
        char c = s[i];
        int d = c >= '0' && c <= '9' ? c - '0' : c >= 'A' && c <= 'F' ? c - 'A' + 10 : -1;
        if (d < 0) return -1;
        v = v * 16 + d;
    }
    return v;
}

std::vector<std::pair<std::string, std::string>> spm_merges_from_scores(const std::vector<std::string>& vocab,
                                                                        const std::vector<float>& scores,
                                                                        const std::vector<TokenType>& types) {
    if (scores.size() != vocab.size() || types.size() != vocab.size())
        fail("tokenizer: %zu scores and %zu token types for %zu tokens: they must match", scores.size(), types.size(), vocab.size());
    std::unordered_map<std::string_view, int32_t> id_of;
    std::vector<bool> has_len;  // has_len[n]: some token is n bytes long
    for (size_t i = 0; i < vocab.size(); i++) {
        id_of.emplace(vocab[i], (int32_t)i);
        if (vocab[i].size() >= has_len.size()) has_len.resize(vocab[i].size() + 1);
        has_len[vocab[i].size()] = true;
    }
    // A split at byte k needs a token of k bytes on the left and one of size - k on the right: only
    // the lengths some token has are tried, so a long token costs its length times the number of
    // distinct lengths (at most the square root of twice the vocabulary's bytes), not its length
    // squared (a corrupt file with one 1 MB token took minutes).
    std::vector<size_t> lengths;
    for (size_t n = 1; n < has_len.size(); n++)
        if (has_len[n]) lengths.push_back(n);
    struct Cand { float score; int32_t left_chars, right_chars, merged, left, right; };
    std::vector<Cand> cands;
    for (size_t i = 0; i < vocab.size(); i++) {
        // User-defined pieces count too, as transformers' converter counts every piece: Gemma's runs
        // of "▁" ("▁▁" ... 31 of them) are such pieces, cut out of the text by SentencePiece, but in
        // tokenizer.json added tokens matched on the raw text (where spaces are not yet "▁"), so
        // Hugging Face builds them from single "▁" by these merges. SentencePiece scores them 0;
        // llama.cpp's converter writes -1000 for them in a GGUF, which would rank them among the
        // ordinary pieces: 0 as in tokenizer.model.
        if (types[i] != TokenType::Normal && types[i] != TokenType::UserDefined) continue;
        const float score = types[i] == TokenType::UserDefined ? 0.0f : scores[i];
        std::string_view t = vocab[i];
        auto starts_char = [&](size_t k) { return ((uint8_t)t[k] & 0xC0) != 0x80; };
        int32_t chars = 0;
        for (size_t k = 0; k < t.size(); k++) chars += starts_char(k);
        for (size_t k : lengths) {
            if (k >= t.size()) break;
            if (!has_len[t.size() - k] || !starts_char(k)) continue;  // split between characters only
            auto l = id_of.find(t.substr(0, k));
            if (l == id_of.end()) continue;
            auto r = id_of.find(t.substr(k));
            if (r == id_of.end()) continue;
            int32_t left_chars = 0;  // the starts in t[1..k]: the left part's characters when t[0] starts one
            for (size_t j = 1; j <= k; j++) left_chars += starts_char(j);
            cands.push_back({score, left_chars, chars - left_chars, (int32_t)i, l->second, r->second});
        }
    }
    // Equal scores (LLaMA's and Mistral's runs of "▁" all score -1e9) rank the longer left part
    // first, then the longer right part, as transformers does: merging a run of spaces then grows
    // it from the left, as SentencePiece's leftmost-first does.
    std::sort(cands.begin(), cands.end(), [](const Cand& a, const Cand& b) {
        if (a.score != b.score) return a.score > b.score;
        if (a.left_chars != b.left_chars) return a.left_chars > b.left_chars;
        if (a.right_chars != b.right_chars) return a.right_chars > b.right_chars;
        if (a.merged != b.merged) return a.merged < b.merged;
        return a.left != b.left ? a.left < b.left : a.right < b.right;
    });
    std::vector<std::pair<std::string, std::string>> merges;
    merges.reserve(cands.size());
    for (const Cand& c : cands) merges.emplace_back(vocab[c.left], vocab[c.right]);
    return merges;
}

std::vector<float> spm_scores_from_merges(const Tokenizer& tok) {
    // A token's score is minus the rank of the first merge that makes it, so that "the highest
    // scoring pair first" (llama.cpp) picks what "the lowest rank first" (Hugging Face) picks.
    std::vector<float> scores(tok.vocab.size(), 0.0f);
    std::vector<bool> made(tok.vocab.size(), false);
    for (size_t r = 0; r < tok.merges.size(); r++) {
        int32_t id = token_id(tok, tok.merges[r].first + tok.merges[r].second);
        if (id >= 0 && !made[id]) scores[id] = -(float)(r + 1), made[id] = true;
    }
    return scores;
}

void spm_model_parse(const std::string& bytes, const std::string& path, Tokenizer& tok) {
    ProtoReader top{path, (const uint8_t*)bytes.data(), (const uint8_t*)bytes.data() + bytes.size()};
    std::vector<float> scores;
    int64_t model_type = 1, unk = 0, bos = 1, eos = 2, pad = -1;  // the proto's defaults
    bool byte_fallback = false, dummy_prefix = true, remove_extra_ws = true, escape_ws = true;
    std::string normalizer = "nmt_nfkc";
    uint32_t field, wire;
    auto expect = [&](uint32_t got, uint32_t want, const char* what) {
        if (got != want) fail("%s: %s has wire type %u, not %u: not a SentencePiece tokenizer.model?", path.c_str(), what, got, want);
    };
    while (top.next(field, wire)) {
        if (field == 1) {
            expect(wire, 2, "a piece");
            ProtoReader piece = top.sub();
            std::string text;
            float score = 0.0f;
            int64_t type = 1;
            while (piece.next(field, wire)) {
                if (field == 1) expect(wire, 2, "a piece's text"), text = piece.string();
                else if (field == 2) expect(wire, 5, "a piece's score"), score = piece.fixed32();
                else if (field == 3) expect(wire, 0, "a piece's type"), type = (int64_t)piece.varint();
                else piece.skip(wire);
            }
            if (type < (int64_t)TokenType::Normal || type > (int64_t)TokenType::Byte)
                fail("%s: piece %zu ('%s') has unknown type %lld", path.c_str(), tok.vocab.size(), text.c_str(), (long long)type);
            if (!std::isfinite(score))
                fail("%s: piece %zu ('%s') has score %g: scores must be finite", path.c_str(), tok.vocab.size(), text.c_str(), score);
            tok.vocab.push_back(text);
            tok.token_type.push_back((TokenType)type);
            scores.push_back(score);
        } else if (field == 2) {
            expect(wire, 2, "trainer_spec");
            ProtoReader spec = top.sub();
            while (spec.next(field, wire)) {
                // int32 ids are varints; -1 comes as a 10-byte two's complement
                if (wire == 0 && (field == 3 || field == 35 || (field >= 40 && field <= 43))) {
                    int64_t v = (int64_t)spec.varint();
                    if (field == 3) model_type = v;
                    else if (field == 35) byte_fallback = v != 0;
                    else (field == 40 ? unk : field == 41 ? bos : field == 42 ? eos : pad) = (int32_t)v;
                } else {
                    spec.skip(wire);
                }
            }
        } else if (field == 3) {
            expect(wire, 2, "normalizer_spec");
            ProtoReader spec = top.sub();
            while (spec.next(field, wire)) {
                if (field == 1 && wire == 2) normalizer = spec.string();
                else if (field >= 3 && field <= 5 && wire == 0) (field == 3 ? dummy_prefix : field == 4 ? remove_extra_ws : escape_ws) = spec.varint() != 0;
                else spec.skip(wire);
            }
        } else {
            top.skip(wire);
        }
    }
    if (tok.vocab.empty()) fail("%s: no pieces: not a SentencePiece tokenizer.model", path.c_str());
    if (model_type != 2)
        fail("%s: a SentencePiece %s model: only BPE models (LLaMA, Llama-2, Mistral) are supported", path.c_str(),
             model_type == 1 ? "Unigram" : "word/char");
    if (!byte_fallback)
        fail("%s: byte_fallback is off: characters outside the vocabulary would become <unk>, which we do not implement", path.c_str());
    if (normalizer != "identity" || remove_extra_ws || !escape_ws)
        fail("%s: normalizer '%s'%s%s: only the identity normalizer that keeps spaces as \"▁\" (LLaMA's) is implemented",
             path.c_str(), normalizer.c_str(), remove_extra_ws ? " with remove_extra_whitespaces" : "",
             escape_ws ? "" : " without escape_whitespaces");
    tok.model = TokenizerModel::SentencePiece;
    tok.space_prefix = dummy_prefix ? SpacePrefix::Always : SpacePrefix::None;
    tok.merges = spm_merges_from_scores(tok.vocab, scores, tok.token_type);
    int64_t n = (int64_t)tok.vocab.size();
    auto id = [&](int64_t v) { return v >= 0 && v < n ? (int32_t)v : -1; };
    (void)unk;  // byte fallback covers every character; <unk> stays a Unknown-type token
    tok.bos_id = id(bos), tok.eos_id = id(eos), tok.pad_id = id(pad);
    tok.add_bos = tok.bos_id >= 0;  // what transformers' LlamaTokenizer does by default
}

namespace {
// Gemma's pre-tokenizer: Split(" ", MergedWithPrevious). It runs after the normalizer has turned
// every space into "▁", so it never splits: a no-op, accepted only in exactly this form.
bool is_gemma_split(const JsonValue* pre) {
    const JsonValue* invert = pre->get("invert");
    return type_of(pre) == "Split" && string_at(pre->get("pattern"), "String") == " " &&
           string_at(pre, "behavior") == "MergedWithPrevious" && (!invert || (invert->type == JsonValue::Bool && !invert->boolean));
}
}  // namespace

SpacePrefix spm_space_prefix_from_hf(const JsonValue* normalizer, const JsonValue* pre_tokenizer, const std::string& path) {
    // Llama-2's and Mistral's files: Sequence[Prepend("▁"), Replace(" " → "▁")], no pre-tokenizer.
    // transformers with legacy = false: no normalizer, Metaspace("▁", prepend_scheme, split false).
    // A Metaspace without "split" (tokenizers < 0.19) splits at each "▁": refused.
    // Without a Prepend, a Replace alone is "None"; Gemma's files (Gemma 1-3) have that Replace with
    // the no-op pre-tokenizer Split(" ", MergedWithPrevious).
    bool have_norm = normalizer && !normalizer->is_null(), have_pre = pre_tokenizer && !pre_tokenizer->is_null();
    auto unsupported = [&](const char* what) {
        fail("%s: %s is not one we implement for a SentencePiece-style tokenizer (byte_fallback): supported are the "
             "normalizer Sequence[Prepend(\"▁\"), Replace(\" \", \"▁\")] without a pre-tokenizer (Llama-2, Mistral), "
             "the normalizer Replace(\" \", \"▁\") without a pre-tokenizer or with Split(\" \", MergedWithPrevious) "
             "(Gemma), and no normalizer with the pre-tokenizer Metaspace(\"▁\", split false); convert the model's "
             "tokenizer.model instead if it has one", path.c_str(), what);
    };
    if (have_norm && have_pre && is_gemma_split(pre_tokenizer)) {
        // only with the lone Replace: a Prepend before it would need the split to keep its meaning
        const JsonValue* pattern = normalizer->get("pattern");
        if (type_of(normalizer) != "Replace" || string_at(pattern, "String") != " " || string_at(normalizer, "content") != kSpmSpace)
            unsupported("a normalizer other than Replace(\" \", \"▁\") before the pre-tokenizer Split(\" \")");
        return SpacePrefix::None;
    }
    if (have_norm && !have_pre) {
        std::vector<const JsonValue*> steps;
        const JsonValue* seq = normalizer->get("normalizers");
        if (type_of(normalizer) == "Sequence" && seq && seq->type == JsonValue::Array)
            for (const JsonValue& s : seq->array) steps.push_back(&s);
        else
            steps.push_back(normalizer);
        bool prepend = false, replace = false;
        for (const JsonValue* s : steps) {
            const JsonValue* pattern = s->get("pattern");
            if (type_of(s) == "Prepend" && string_at(s, "prepend") == kSpmSpace && !replace && !prepend) prepend = true;
            else if (type_of(s) == "Replace" && string_at(pattern, "String") == " " && string_at(s, "content") == kSpmSpace) replace = true;
            else unsupported("the normalizer");
        }
        if (!replace) unsupported("the normalizer");
        return prepend ? SpacePrefix::Always : SpacePrefix::None;
    }
    if (have_norm || !have_pre) unsupported(have_norm ? "a normalizer together with a pre-tokenizer" : "the lack of a normalizer and a pre-tokenizer");
    const JsonValue* split = pre_tokenizer->get("split");
    if (type_of(pre_tokenizer) != "Metaspace" || string_at(pre_tokenizer, "replacement") != kSpmSpace)
        unsupported("the pre_tokenizer");
    if (!split || split->type != JsonValue::Bool || split->boolean)
        unsupported("a Metaspace pre_tokenizer that splits at \"▁\" (split true, the default when absent)");
    std::string scheme = string_at(pre_tokenizer, "prepend_scheme");
    if (scheme.empty()) {  // add_prefix_space instead (tokenizers < 0.15; such files have no "split")
        const JsonValue* add = pre_tokenizer->get("add_prefix_space");
        scheme = add && !add->boolean ? "never" : "always";
    }
    if (scheme == "first") return SpacePrefix::First;
    if (scheme == "always") return SpacePrefix::UnlessSpace;
    if (scheme == "never") return SpacePrefix::None;
    unsupported("the pre_tokenizer's prepend_scheme");
    return SpacePrefix::None;
}

SpmHfJson spm_hf_json(SpacePrefix prefix) {
    const std::string sp = kSpmSpace;
    const std::string replace = "{\"type\": \"Replace\", \"pattern\": {\"String\": \" \"}, \"content\": \"" + sp + "\"}";
    const std::string decode = "{\"type\": \"Sequence\", \"decoders\": [{\"type\": \"Replace\", \"pattern\": {\"String\": \"" + sp +
                               "\"}, \"content\": \" \"}, {\"type\": \"ByteFallback\"}, {\"type\": \"Fuse\"}" +
                               (prefix == SpacePrefix::None ? "" : ", {\"type\": \"Strip\", \"content\": \" \", \"start\": 1, \"stop\": 0}") +
                               "]}";
    switch (prefix) {
        case SpacePrefix::Always:
            return {"{\"type\": \"Sequence\", \"normalizers\": [{\"type\": \"Prepend\", \"prepend\": \"" + sp + "\"}, " + replace + "]}",
                    "null", decode};
        // Gemma's form, as transformers writes it: the split never splits (no spaces are left)
        case SpacePrefix::None:
            return {replace, "{\"type\": \"Split\", \"pattern\": {\"String\": \" \"}, \"behavior\": \"MergedWithPrevious\", \"invert\": false}", decode};
        case SpacePrefix::First:
        case SpacePrefix::UnlessSpace:
            return {"null",
                    "{\"type\": \"Metaspace\", \"replacement\": \"" + sp + "\", \"prepend_scheme\": \"" +
                        (prefix == SpacePrefix::First ? "first" : "always") + "\", \"split\": false}",
                    decode};
    }
    fail("internal: unknown space prefix %d", (int)prefix);
}
