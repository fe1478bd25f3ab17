#include "tokenizer/tokenizer.h"

#include "model/util.h"
#include "tokenizer/unicode.h"

#include <algorithm>
#include <cstdio>
#include <deque>
#include <queue>

namespace {

uint64_t pair_key(int32_t a, int32_t b) { return (uint64_t)(uint32_t)a << 32 | (uint32_t)b; }

// Cut out of text whole. <unk> too: Hugging Face makes it an added token, llama.cpp a special one.
bool is_special(TokenType t) { return t == TokenType::Control || t == TokenType::UserDefined || t == TokenType::Unknown; }

// The raw bytes a byte-level token string stands for. A character outside GPT-2's byte map (only
// in hand-made vocabularies) is kept as its own UTF-8 so nothing is lost.
std::string byte_level_to_bytes(const std::string& s) {
    std::string out;
    for (size_t i = 0; i < s.size();) {
        uint32_t cp;
        size_t n = utf8_decode(s, i, cp);
        int b = cp == kInvalidCodepoint ? -1 : unicode_to_byte(cp);
        if (b >= 0) out += (char)b;
        else out.append(s, i, n);
        i += n;
    }
    return out;
}

std::string replace_all(const std::string& s, const std::string& from, const std::string& to) {
    std::string out;
    for (size_t i = 0; i < s.size();) {
        if (s.compare(i, from.size(), from) == 0) out += to, i += from.size();
        else out += s[i++];
    }
    return out;
}

// Byte-pair merging of a row of symbols (token ids) in place, lowest rank first and leftmost among
// equal ranks (as Hugging Face's BPE does), in O(n log n) with a heap over a linked list of symbols
// so that a pathological run (a megabyte of spaces) does not go quadratic.
void bpe_merge(const Tokenizer& tok, std::vector<int32_t>& ids) {
    struct Sym { int32_t id; int32_t prev, next; };
    struct Cand {
        int32_t rank, left, left_id, right_id;
        bool operator>(const Cand& o) const { return rank != o.rank ? rank > o.rank : left > o.left; }
    };
    std::vector<Sym> sym(ids.size());
    for (size_t i = 0; i < ids.size(); i++) sym[i] = {ids[i], (int32_t)i - 1, (int32_t)i + 1};
    if (!sym.empty()) sym.back().next = -1;
    std::priority_queue<Cand, std::vector<Cand>, std::greater<Cand>> heap;
    auto push = [&](int32_t left) {
        if (left < 0 || sym[left].next < 0) return;
        auto it = tok.merge_of.find(pair_key(sym[left].id, sym[sym[left].next].id));
        if (it != tok.merge_of.end()) heap.push({it->second.rank, left, sym[left].id, sym[sym[left].next].id});
    };
    for (int32_t i = 0; i + 1 < (int32_t)sym.size(); i++) push(i);
    while (!heap.empty()) {
        Cand c = heap.top();
        heap.pop();
        // stale if either side has changed since the candidate was queued; a position's id only
        // ever grows into longer tokens, so comparing ids is enough
        Sym& l = sym[c.left];
        if (l.id != c.left_id || l.next < 0 || sym[l.next].id != c.right_id) continue;
        int32_t r = l.next;
        l.id = tok.merge_of.at(pair_key(c.left_id, c.right_id)).result;
        l.next = sym[r].next;
        if (l.next >= 0) sym[l.next].prev = c.left;
        sym[r].id = -1;
        push(l.prev);
        push(c.left);
    }
    ids.clear();
    for (int32_t i = sym.empty() ? -1 : 0; i >= 0; i = sym[i].next) ids.push_back(sym[i].id);
}

// One byte-level piece: a symbol per byte. A byte without a token is skipped and its neighbours
// may merge across it, as in Hugging Face's BPE without unk_token (SmolLM2's vocabulary lacks 21
// control/non-UTF-8 bytes).
void bpe_bytes(const Tokenizer& tok, std::string_view piece, std::vector<int32_t>& out) {
    std::vector<int32_t> ids;
    ids.reserve(piece.size());
    for (char b : piece)
        if (tok.byte_token[(uint8_t)b] >= 0) ids.push_back(tok.byte_token[(uint8_t)b]);
    bpe_merge(tok, ids);
    out.insert(out.end(), ids.begin(), ids.end());
}

// Encodes byte-level text that contains no special tokens. Pieces repeat a lot in real text, so a
// per-call cache (thread-safe, unlike a shared one) skips most merging.
void encode_byte_level(const Tokenizer& tok, std::string_view text, std::vector<int32_t>& out,
                     std::unordered_map<std::string_view, std::vector<int32_t>>& cache) {
    std::vector<std::string_view> pieces;
    pretokenize(tok.pre, text, pieces);
    std::string mapped;
    for (std::string_view p : pieces) {
        auto it = cache.find(p);
        if (it == cache.end()) {
            std::vector<int32_t> ids;
            int32_t whole = -1;
            if (tok.ignore_merges) {
                mapped.clear();
                for (char b : p) mapped += byte_to_unicode((uint8_t)b);
                auto w = tok.token_to_id.find(mapped);
                if (w != tok.token_to_id.end()) whole = w->second;
            }
            if (whole >= 0) ids.push_back(whole);
            else bpe_bytes(tok, p, ids);
            it = cache.emplace(p, std::move(ids)).first;
        }
        out.insert(out.end(), it->second.begin(), it->second.end());
    }
}

// Encodes one SentencePiece run (text between special tokens). The whole run is one row of symbols:
// SentencePiece does not pre-tokenize, and its vocabulary has no token with "▁" inside a word, so
// merges stop at spaces by themselves. at_start: the run begins the whole text; continued: it carries
// on from ordinary text encoded earlier, so it gets no space prefix.
void encode_sentencepiece(const Tokenizer& tok, std::string_view text, bool at_start, bool continued, std::vector<int32_t>& out) {
    if (text.empty()) return;
    std::string s;
    for (char c : text)
        if (c == ' ') s += kSpmSpace;
        else s += c;
    bool starts_with_space = s.compare(0, 3, kSpmSpace) == 0;  // a space or a "▁" in the text
    if (!continued && (tok.space_prefix == SpacePrefix::Always || (tok.space_prefix == SpacePrefix::UnlessSpace && !starts_with_space) ||
                       (tok.space_prefix == SpacePrefix::First && at_start && !starts_with_space)))
        s.insert(0, kSpmSpace);
    std::vector<int32_t> ids;
    ids.reserve(s.size());
    std::string ch;  // one character, reused: the lookup wants a std::string
    for (size_t i = 0; i < s.size();) {
        uint32_t cp;
        size_t n = utf8_decode(s, i, cp);
        auto it = cp == kInvalidCodepoint ? tok.token_to_id.end() : tok.token_to_id.find(ch.assign(s, i, n));
        if (it != tok.token_to_id.end()) ids.push_back(it->second);
        else  // byte fallback: the character's UTF-8 bytes as <0xXX> tokens (an invalid byte: itself)
            for (size_t k = i; k < i + n; k++)
                if (tok.byte_token[(uint8_t)s[k]] >= 0) ids.push_back(tok.byte_token[(uint8_t)s[k]]);
        i += n;
    }
    bpe_merge(tok, ids);
    out.insert(out.end(), ids.begin(), ids.end());
}

// The end of the run of white space starting at text[i] (Unicode's White_Space, as Rust's
// char::is_whitespace, what Hugging Face strips beside an lstrip/rstrip token).
size_t white_space_end(std::string_view text, size_t i) {
    uint32_t c;
    for (size_t n; i < text.size() && (n = utf8_decode(text, i, c)) && is_whitespace(c);) i += n;
    return i;
}

// The start of the run of white space ending at text[i], not before `floor`: the characters are
// decoded forwards from floor (UTF-8 reads in that direction), the run starting after the last one
// that is not white space.
size_t white_space_start(std::string_view text, size_t floor, size_t i) {
    size_t start = floor;
    uint32_t c;
    for (size_t at = floor, n; at < i; at += n)
        if (n = utf8_decode(text, at, c); !is_whitespace(c)) start = at + n;
    return std::min(start, i);
}

// The longest special token starting at text[i] (its id), or -1.
int32_t match_special(const Tokenizer& tok, std::string_view text, size_t i, bool parse_special) {
    for (int32_t id : tok.special_by_byte[(uint8_t)text[i]]) {
        if (!parse_special && tok.token_type[id] != TokenType::UserDefined) continue;
        const std::string& s = tok.vocab[id];  // as written, "▁" included (Gemma's "▁▁": not two spaces)
        if (text.compare(i, s.size(), s) == 0) return id;
    }
    return -1;
}

}  // namespace

void tokenizer_build(Tokenizer& tok) {
    size_t n = tok.vocab.size();
    if (n == 0) fail("tokenizer: the vocabulary is empty");
    if (n > (size_t)INT32_MAX) fail("tokenizer: vocabulary of %zu tokens is too large", n);
    if (tok.token_type.size() != n)
        fail("tokenizer: %zu token types for %zu vocabulary entries: they must match", tok.token_type.size(), n);
    for (int32_t* id : {&tok.bos_id, &tok.eos_id, &tok.pad_id})
        if (*id < -1 || *id >= (int64_t)n) {
            const char* what = id == &tok.bos_id ? "bos" : id == &tok.eos_id ? "eos" : "pad";
            fail("tokenizer: %s id %d is outside the vocabulary (size %zu)", what, *id, n);
        }
    if (tok.model != TokenizerModel::ByteLevel && tok.model != TokenizerModel::SentencePiece)
        fail("tokenizer: unknown tokenizer model %d", (int)tok.model);
    if (tok.space_prefix != SpacePrefix::None && tok.model != TokenizerModel::SentencePiece)
        fail("tokenizer: a space prefix is for SentencePiece tokenizers only");
    tok.token_to_id.clear();
    tok.token_to_id.reserve(n);
    tok.token_bytes.assign(n, "");
    std::fill(std::begin(tok.byte_token), std::end(tok.byte_token), -1);
    for (auto& v : tok.special_by_byte) v.clear();
    for (size_t id = 0; id < n; id++) {
        const std::string& s = tok.vocab[id];
        if (s.empty()) fail("tokenizer: token %zu is empty", id);
        if (!tok.token_to_id.emplace(s, (int32_t)id).second)
            fail("tokenizer: token %zu ('%s') duplicates token %d", id, s.c_str(), tok.token_to_id[s]);
        if (is_special(tok.token_type[id])) {
            // Hugging Face's decoder turns the "▁" of an added token into a space too (Gemma's "▁▁")
            tok.token_bytes[id] = tok.model == TokenizerModel::SentencePiece ? replace_all(s, kSpmSpace, " ") : s;
            tok.special_by_byte[(uint8_t)s[0]].push_back((int32_t)id);
        } else if (tok.model == TokenizerModel::ByteLevel) {
            tok.token_bytes[id] = byte_level_to_bytes(s);
        } else if (int b = spm_byte_token_value(s); b >= 0) {  // Hugging Face's ByteFallback: by text alone
            tok.token_bytes[id] = std::string(1, (char)b);
            tok.byte_token[b] = (int32_t)id;
        } else {
            tok.token_bytes[id] = replace_all(s, kSpmSpace, " ");
        }
    }
    for (int b = 0; b < 256 && tok.model == TokenizerModel::ByteLevel; b++) {
        auto it = tok.token_to_id.find(byte_to_unicode((uint8_t)b));
        if (it != tok.token_to_id.end()) tok.byte_token[b] = it->second;
    }
    if (!tok.strip.empty() && tok.strip.size() != n)
        fail("tokenizer: %zu strip flags for %zu vocabulary entries: they must match", tok.strip.size(), n);
    for (size_t id = 0; id < tok.strip.size(); id++)
        if (tok.strip[id] > 3 || (tok.strip[id] && !is_special(tok.token_type[id])))
            fail("tokenizer: token %zu ('%s') strips white space but is no added token", id, tok.vocab[id].c_str());
    for (auto& v : tok.special_by_byte)
        std::stable_sort(v.begin(), v.end(), [&](int32_t a, int32_t b) { return tok.vocab[a].size() > tok.vocab[b].size(); });
    tok.merge_of.clear();
    tok.merge_of.reserve(tok.merges.size());
    for (size_t r = 0; r < tok.merges.size(); r++) {
        const auto& [a, b] = tok.merges[r];
        auto ia = tok.token_to_id.find(a), ib = tok.token_to_id.find(b), ic = tok.token_to_id.find(a + b);
        if (ia == tok.token_to_id.end() || ib == tok.token_to_id.end() || ic == tok.token_to_id.end())
            fail("tokenizer: merge %zu ('%s' + '%s') refers to a token that is not in the vocabulary", r, a.c_str(), b.c_str());
        // a repeated pair keeps its first (lowest) rank, as in Hugging Face
        tok.merge_of.emplace(pair_key(ia->second, ib->second), Tokenizer::Merge{(int32_t)r, ic->second});
    }
}

std::vector<int32_t> encode(const Tokenizer& tok, std::string_view text, bool parse_special, TextStart where) {
    std::vector<int32_t> out;
    std::unordered_map<std::string_view, std::vector<int32_t>> cache;
    // The NFC normalizer (tok.nfc) runs on the text between special tokens, which are matched on the
    // raw text, as Hugging Face does for added tokens that are not "normalized". The cache's keys
    // point into the normalized copies, so these live as long as it does.
    std::deque<std::string> normalized;
    auto ordinary = [&](size_t start, size_t end) {
        std::string_view part = text.substr(start, end - start);
        if (tok.nfc) {
            std::string n = nfc(part);
            if (n != part) normalized.push_back(std::move(n)), part = normalized.back();
        }
        if (tok.model == TokenizerModel::SentencePiece)
            encode_sentencepiece(tok, part, start == 0 && where == TextStart::Begin, start == 0 && where == TextStart::AfterText, out);
        else encode_byte_level(tok, part, out, cache);
    };
    size_t start = 0;
    for (size_t i = 0; i < text.size(); i++) {
        if (tok.special_by_byte[(uint8_t)text[i]].empty()) continue;
        int32_t id = match_special(tok, text, i, parse_special);
        if (id < 0) continue;
        const uint8_t strip = tok.strip.empty() ? 0 : tok.strip[id];
        // lstrip: the white space before it (back to the last cut) goes; rstrip: the white space after it
        ordinary(start, strip & Tokenizer::kStripLeft ? white_space_start(text, start, i) : i);
        out.push_back(id);
        i += tok.vocab[id].size();
        if (strip & Tokenizer::kStripRight) i = white_space_end(text, i);
        start = i--;
    }
    ordinary(start, text.size());
    return out;
}

std::vector<int32_t> encode_with_bos(const Tokenizer& tok, std::string_view text, bool parse_special) {
    std::vector<int32_t> ids = encode(tok, text, parse_special);
    if (tok.add_bos && tok.bos_id >= 0 && (ids.empty() || ids[0] != tok.bos_id)) ids.insert(ids.begin(), tok.bos_id);
    return ids;
}

const std::string& decode_token(const Tokenizer& tok, int32_t id) {
    if (id < 0 || (size_t)id >= tok.token_bytes.size())
        fail("token id %d is outside the vocabulary (size %zu)", id, tok.token_bytes.size());
    return tok.token_bytes[id];
}

std::string decode(const Tokenizer& tok, const std::vector<int32_t>& ids) {
    std::string out;
    for (int32_t id : ids) out += decode_token(tok, id);
    // the space prefix encoding added (Hugging Face's Strip decoder, SentencePiece's own decode)
    if (tok.model == TokenizerModel::SentencePiece && tok.space_prefix != SpacePrefix::None && !out.empty() && out[0] == ' ')
        out.erase(0, 1);
    return out;
}

std::string tokenizer_describe(const Tokenizer& tok) {
    static const char* const prefix[] = {"none", "always", "first", "unless a space"};
    std::string kind = tok.model == TokenizerModel::SentencePiece
                           ? std::string("SentencePiece BPE (space prefix ") + prefix[(int)tok.space_prefix] + ")"
                           : std::string("byte-level BPE (pre-tokenizer ") + pre_tokenizer_name(tok.pre) + (tok.nfc ? ", NFC" : "") + ")";
    char buf[256];
    snprintf(buf, sizeof buf, "%zu tokens, %zu merges, %s, chat template %s, bos %d%s, eos %d, pad %d", tok.vocab.size(),
             tok.merges.size(), kind.c_str(), chat_template_name(tok.chat_template.kind), tok.bos_id,
             tok.add_bos ? " (added)" : "", tok.eos_id, tok.pad_id);
    return buf;
}

bool is_special_token(const Tokenizer& tok, int32_t id) {
    return id >= 0 && (size_t)id < tok.token_type.size() && is_special(tok.token_type[id]);
}

int32_t token_id(const Tokenizer& tok, const std::string& token) {
    auto it = tok.token_to_id.find(token);
    return it == tok.token_to_id.end() ? -1 : it->second;
}

std::vector<uint8_t> tokenizer_missing_bytes(const Tokenizer& tok) {
    std::vector<uint8_t> out;
    for (int b = 0; b < 256; b++)
        if (tok.byte_token[b] < 0) out.push_back((uint8_t)b);
    return out;
}

size_t text_after_token(const Tokenizer& tok, int32_t id, std::string_view text, size_t at) {
    const bool strips = id >= 0 && (size_t)id < tok.strip.size() && (tok.strip[id] & Tokenizer::kStripRight);
    return strips ? white_space_end(text, at) : at;
}

std::vector<int32_t> end_of_turn_ids(const Tokenizer& tok) {
    std::vector<int32_t> ids;
    for (const char* s : {"<|im_end|>", "<|eot_id|>", "<end_of_turn>", "<|end|>", "<|endoftext|>"})
        if (token_id(tok, s) >= 0) ids.push_back(token_id(tok, s));
    if (tok.eos_id >= 0 && std::find(ids.begin(), ids.end(), tok.eos_id) == ids.end()) ids.push_back(tok.eos_id);
    return ids;
}
