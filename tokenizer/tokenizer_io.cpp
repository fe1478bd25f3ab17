// Tokenizers from and to Hugging Face tokenizer.json, and from/to our .tok file.
//
// .tok layout (little-endian):
//   char[4] "BTOK", u32 version (1; 2 when some added token strips white space: the oldest that holds it)
//   u32 vocab_size, u32 n_merges, i32 pre_tokenizer, i32 chat_template_kind, i32 bos, eos, pad,
//   u32 flags (bit 0: ignore_merges, bit 1: NFC normalizer, bit 2: SentencePiece model, bits 3-4:
//   its SpacePrefix, bit 5: add_bos), u32 len + bytes: the ChatML default system prompt
//   vocab_size × (i32 token_type, u32 len, bytes)          token strings as the vocabulary stores them;
//                                                          version 2: the type's bits 8-9 are the
//                                                          token's Tokenizer::strip bits
//   n_merges × (u32 len, bytes, u32 len, bytes)            in rank order
// and nothing after. Strings are length-prefixed, so any byte may appear in them.
#include "tokenizer/tokenizer.h"

#include "data/json.h"
#include "model/import.h"
#include "model/util.h"

#include <algorithm>
#include <cstdio>
#include <filesystem>
#include <cstring>

namespace {

constexpr char kMagic[4] = {'B', 'T', 'O', 'K'};
constexpr uint32_t kVersion = 2;

std::string dir_of(const std::string& path) {
    size_t slash = path.rfind('/');
    return slash == std::string::npos ? "." : path.substr(0, slash);
}

JsonValue parse_file(const std::string& path) {
    std::string text = read_file(path);
    try {
        return json_parse(text);
    } catch (const std::runtime_error& e) {
        fail("%s: %s", path.c_str(), e.what());
    }
}

// "an object", "a number": for messages
std::string a_type(JsonValue::Type t) {
    std::string name = json_type_name(t);
    return (name[0] == 'a' || name[0] == 'o' ? "an " : "a ") + name;
}

// obj[key] of the given type; `where` names obj in messages ("" for the top level, "model", ...).
const JsonValue& member(const JsonValue& obj, const char* key, JsonValue::Type type, const std::string& path, const std::string& where) {
    std::string field = where.empty() ? key : where + "." + key;
    const JsonValue* v = obj.get(key);
    if (!v) fail("%s: \"%s\" is missing", path.c_str(), field.c_str());
    if (v->type != type)
        fail("%s: \"%s\" should be %s, not %s", path.c_str(), field.c_str(), a_type(type).c_str(), a_type(v->type).c_str());
    return *v;
}

int32_t token_id_value(const JsonValue& v, const std::string& path, const char* what) {
    if (v.type != JsonValue::Number || !v.exact_integer || v.integer < 0 || v.integer > INT32_MAX)
        fail("%s: %s must be a non-negative integer id", path.c_str(), what);
    return (int32_t)v.integer;
}

// A merge is "a b" in older files and ["a", "b"] in newer ones.
std::pair<std::string, std::string> merge_value(const JsonValue& m, size_t rank, const std::string& path) {
    if (m.type == JsonValue::String) {
        size_t sp = m.string.find(' ');
        if (sp == std::string::npos || m.string.find(' ', sp + 1) != std::string::npos)
            fail("%s: model.merges[%zu] '%s' should be two tokens separated by one space", path.c_str(), rank, m.string.c_str());
        return {m.string.substr(0, sp), m.string.substr(sp + 1)};
    }
    if (m.type == JsonValue::Array && m.array.size() == 2 && m.array[0].type == JsonValue::String &&
        m.array[1].type == JsonValue::String)
        return {m.array[0].string, m.array[1].string};
    fail("%s: model.merges[%zu] should be \"a b\" or [\"a\", \"b\"]", path.c_str(), rank);
}

// tokenizer_config.json writes special tokens as "text" or {"content": "text", ...}.
std::string token_text(const JsonValue* v) {
    if (!v) return "";
    if (v->type == JsonValue::String) return v->string;
    const JsonValue* c = v->get("content");
    return c && c->type == JsonValue::String ? c->string : "";
}

// The id of the token with this text, before tokenizer_build has made the lookup table; -1 if none.
int32_t vocab_index(const Tokenizer& tok, const std::string& text) {
    for (size_t i = 0; !text.empty() && i < tok.vocab.size(); i++)
        if (tok.vocab[i] == text) return (int32_t)i;
    return -1;
}

// The token a post-processor puts before every sequence (Llama-2's and Llama-3's TemplateProcessing
// "<s> $A"), alone or inside a Sequence: the model wants it as BOS. "" when there is none.
std::string post_processor_bos(const JsonValue* p) {
    if (!p || p->type != JsonValue::Object) return "";
    const JsonValue* type = p->get("type");
    if (!type || type->type != JsonValue::String) return "";
    if (type->string == "Sequence") {
        const JsonValue* seq = p->get("processors");
        if (seq && seq->type == JsonValue::Array)
            for (const JsonValue& q : seq->array) {
                std::string bos = post_processor_bos(&q);
                if (!bos.empty()) return bos;
            }
        return "";
    }
    const JsonValue* single = p->get("single");
    if (type->string != "TemplateProcessing" || !single || single->type != JsonValue::Array || single->array.empty()) return "";
    const JsonValue* special = single->array[0].get("SpecialToken");
    const JsonValue* id = special ? special->get("id") : nullptr;
    return id && id->type == JsonValue::String ? id->string : "";
}

// Reads the model's bos/eos/pad ids from config.json, and the chat template and add_bos_token from
// tokenizer_config.json, when these sit beside tokenizer.json (or tokenizer.model).
void load_hf_side_files(Tokenizer& tok, const std::string& dir) {
    std::string cfg_path = dir + "/config.json", tcfg_path = dir + "/tokenizer_config.json";
    if (file_exists(cfg_path)) {
        JsonValue cfg = parse_file(cfg_path);
        auto id = [&](const char* key, int32_t& dst) {
            const JsonValue* v = cfg.get(key);
            if (v && v->type == JsonValue::Number) dst = token_id_value(*v, cfg_path, key);
        };
        id("bos_token_id", tok.bos_id);
        id("eos_token_id", tok.eos_id);
        id("pad_token_id", tok.pad_id);
    }
    bool have_template = false;
    if (file_exists(tcfg_path)) {
        JsonValue tcfg = parse_file(tcfg_path);
        auto id_of = [&](const char* key, int32_t& dst) {
            if (dst < 0) dst = vocab_index(tok, token_text(tcfg.get(key)));
        };
        const JsonValue* add_bos = tcfg.get("add_bos_token");
        if (add_bos && add_bos->type == JsonValue::Bool) tok.add_bos = add_bos->boolean;
        id_of("bos_token", tok.bos_id);
        id_of("eos_token", tok.eos_id);
        id_of("pad_token", tok.pad_id);
        const JsonValue* t = tcfg.get("chat_template");
        if (t && t->type == JsonValue::Array)  // several named templates: use "default"
            for (const JsonValue& named : t->array)
                if (named.get("name") && named.get("name")->string == "default") t = named.get("template");
        if (t && t->type == JsonValue::String) {
            tok.chat_template = chat_template_or_plain(t->string, tcfg_path);
            have_template = true;
        }
    }
    // Newer transformers save the template as chat_template.jinja beside tokenizer_config.json (and
    // no longer inside it), and prefers that file when it loads a directory.
    const std::string jinja_path = dir + "/chat_template.jinja";
    if (file_exists(jinja_path)) {
        tok.chat_template = chat_template_or_plain(read_file(jinja_path), jinja_path);
        have_template = true;
    }
    bool chatml_tokens = false;
    for (size_t i = 0; i < tok.vocab.size() && !chatml_tokens; i++) chatml_tokens = tok.vocab[i] == "<|im_start|>";
    if (!have_template && chatml_tokens) tok.chat_template.kind = ChatTemplateKind::ChatML;
}

// tokenizer_build, with the file named in its errors.
void build_naming(Tokenizer& tok, const std::string& path) {
    try {
        tokenizer_build(tok);
    } catch (const std::runtime_error& e) {
        fail("%s: %s", path.c_str(), e.what());
    }
}

// A Hugging Face tokenizer file's side files, then the tables.
void finish_hf(Tokenizer& tok, const std::string& path) {
    load_hf_side_files(tok, dir_of(path));
    build_naming(tok, path);
}

// A JSON file without a tokenizer's "model" section: most often the model's config.json or
// tokenizer_config.json passed for its tokenizer.json, which the message names.
void refuse_other_json(const JsonValue& j, const std::string& path) {
    if (j.get("model")) return;
    const char* looks = j.get("architectures") || j.get("model_type") ? " (it looks like a model's config.json)"
                        : j.get("tokenizer_class") || j.get("chat_template") ? " (it looks like a tokenizer_config.json)"
                                                                             : "";
    fail("%s is not a tokenizer.json (no \"model\" section)%s: pass the model's tokenizer.json, tokenizer.model or .tok",
         path.c_str(), looks);
}

}  // namespace

Tokenizer tokenizer_load_hf(const std::string& path) {
    JsonValue j = parse_file(path);
    refuse_other_json(j, path);
    Tokenizer tok;
    const JsonValue& model = member(j, "model", JsonValue::Object, path, "");
    const JsonValue& type = member(model, "type", JsonValue::String, path, "model");
    if (type.string != "BPE")
        fail("%s: model.type is '%s': only BPE tokenizers (byte-level or SentencePiece-style) are supported", path.c_str(), type.string.c_str());
    // byte_fallback marks SentencePiece's BPE (Llama-2, Mistral): its normalizer and pre-tokenizer
    // only say where "▁" goes. Byte-level BPE: no normalizer, or NFC (Qwen2; also inside a
    // one-element Sequence).
    const JsonValue* bf = model.get("byte_fallback");
    if (bf && bf->boolean) tok.model = TokenizerModel::SentencePiece;
    const JsonValue* norm = j.get("normalizer");
    if (tok.model == TokenizerModel::SentencePiece) {
        tok.space_prefix = spm_space_prefix_from_hf(norm, j.get("pre_tokenizer"), path);
    } else if (norm && !norm->is_null()) {
        const JsonValue* seq = norm->get("normalizers");
        const JsonValue* one = seq && seq->type == JsonValue::Array && seq->array.size() == 1 ? &seq->array[0] : norm;
        const JsonValue* type = one->get("type");
        if (!type || type->type != JsonValue::String || type->string != "NFC")
            fail("%s: the normalizer is not NFC: only NFC (or none) is implemented for byte-level BPE tokenizers", path.c_str());
        tok.nfc = true;
    }
    // Unset is null, or (Qwen2/3's files) an empty prefix/suffix, which changes nothing.
    for (const char* key : {"continuing_subword_prefix", "end_of_word_suffix", "dropout"}) {
        const JsonValue* v = model.get(key);
        if (v && !v->is_null() && !(v->type == JsonValue::String && v->string.empty()))
            fail("%s: model.%s is set, which we do not implement", path.c_str(), key);
    }
    const JsonValue* im = model.get("ignore_merges");
    tok.ignore_merges = im && im->boolean;
    if (tok.model == TokenizerModel::ByteLevel) tok.pre = pre_tokenizer_from_hf(member(j, "pre_tokenizer", JsonValue::Object, path, ""), path);

    const JsonValue& vocab = member(model, "vocab", JsonValue::Object, path, "model");
    // Ids are contiguous from 0, so none reaches the number of entries listed: such an id is not
    // stored (a tiny file must not size the vocabulary for two billion tokens), and the check after
    // the loops names the first id missing below it, as it would have.
    const JsonValue* added_list = j.get("added_tokens");
    const size_t n_entries = vocab.object.size() + (added_list && added_list->type == JsonValue::Array ? added_list->array.size() : 0);
    bool beyond = false;
    std::vector<bool> seen;
    auto place = [&](int32_t id, const std::string& text, TokenType t) {
        if ((size_t)id >= n_entries) {
            beyond = true;
            return;
        }
        if ((size_t)id >= tok.vocab.size()) tok.vocab.resize(id + 1), tok.token_type.resize(id + 1, TokenType::Normal), seen.resize(id + 1);
        if (seen[id] && tok.vocab[id] != text)
            fail("%s: id %d is given to both '%s' and '%s'", path.c_str(), id, tok.vocab[id].c_str(), text.c_str());
        tok.vocab[id] = text, tok.token_type[id] = t, seen[id] = true;
    };
    for (const auto& [text, id] : vocab.object) place(token_id_value(id, path, ("model.vocab['" + text + "']").c_str()), text, TokenType::Normal);
    if (tok.model == TokenizerModel::SentencePiece)  // the byte fallback's <0x00>..<0xFF>, as GGUF types them
        for (size_t id = 0; id < tok.vocab.size(); id++)
            if (spm_byte_token_value(tok.vocab[id]) >= 0) tok.token_type[id] = TokenType::Byte;
    std::vector<std::pair<int32_t, uint8_t>> strips;  // (id, Tokenizer::strip bits) of the added tokens that strip
    if (j.get("added_tokens")) {
        const JsonValue& added = member(j, "added_tokens", JsonValue::Array, path, "");
        for (size_t i = 0; i < added.array.size(); i++) {
            const JsonValue& a = added.array[i];
            std::string where = "added_tokens[" + std::to_string(i) + "]";
            const JsonValue* single = a.get("single_word");
            if (single && single->boolean) fail("%s: %s uses single_word, which we do not implement", path.c_str(), where.c_str());
            const JsonValue *l = a.get("lstrip"), *r = a.get("rstrip");
            const uint8_t strip = (l && l->boolean ? Tokenizer::kStripLeft : 0) | (r && r->boolean ? Tokenizer::kStripRight : 0);
            // matched in the normalized text ("▁<|im_start|>"): only a normalizer makes that differ
            const JsonValue* normalized = a.get("normalized");
            if (normalized && normalized->boolean && tok.model == TokenizerModel::SentencePiece)
                fail("%s: %s is \"normalized\": true (matched after the \"▁\" normalizer), which we do not implement for "
                     "SentencePiece-style tokenizers: set it to false", path.c_str(), where.c_str());
            const JsonValue* special = a.get("special");
            const int32_t id = token_id_value(member(a, "id", JsonValue::Number, path, where), path, (where + ".id").c_str());
            place(id, member(a, "content", JsonValue::String, path, where).string,
                  special && special->boolean ? TokenType::Control : TokenType::UserDefined);
            if (strip) strips.push_back({id, strip});
        }
    }
    for (size_t id = 0; id <= seen.size(); id++)
        if (id < seen.size() ? !seen[id] : beyond) fail("%s: no token has id %zu: ids must be contiguous from 0", path.c_str(), id);
    if (!strips.empty()) tok.strip.assign(tok.vocab.size(), 0);
    for (const auto& [id, bits] : strips) tok.strip[id] = bits;
    const JsonValue* unk = model.get("unk_token");  // Unknown, as SentencePiece and GGUF type it
    if (int32_t id = unk && unk->type == JsonValue::String ? vocab_index(tok, unk->string) : -1; id >= 0)
        tok.token_type[id] = TokenType::Unknown;

    const JsonValue& merges = member(model, "merges", JsonValue::Array, path, "model");
    tok.merges.reserve(merges.array.size());
    for (size_t r = 0; r < merges.array.size(); r++) tok.merges.push_back(merge_value(merges.array[r], r, path));

    // BOS: the post-processor's first token; config.json and tokenizer_config.json may say otherwise
    if (int32_t bos = vocab_index(tok, post_processor_bos(j.get("post_processor"))); bos >= 0) tok.bos_id = bos, tok.add_bos = true;
    finish_hf(tok, path);
    return tok;
}

Tokenizer tokenizer_load_spm(const std::string& path) {
    Tokenizer tok;
    spm_model_parse(read_file(path), path, tok);
    finish_hf(tok, path);
    return tok;
}

void tokenizer_save(const Tokenizer& tok, const std::string& path) {
    AtomicFile f(path);
    auto put_str = [&](const std::string& s) {
        f.put<uint32_t>((uint32_t)s.size());
        f.write(s.data(), s.size());
    };
    f.write(kMagic, 4);
    const bool strips = std::any_of(tok.strip.begin(), tok.strip.end(), [](uint8_t b) { return b != 0; });
    f.put<uint32_t>(strips ? 2 : 1);
    f.put<uint32_t>((uint32_t)tok.vocab.size());
    f.put<uint32_t>((uint32_t)tok.merges.size());
    f.put<int32_t>((int32_t)tok.pre);
    f.put<int32_t>((int32_t)tok.chat_template.kind);
    f.put<int32_t>(tok.bos_id);
    f.put<int32_t>(tok.eos_id);
    f.put<int32_t>(tok.pad_id);
    f.put<uint32_t>((tok.ignore_merges ? 1u : 0u) | (tok.nfc ? 2u : 0u) |
                    (tok.model == TokenizerModel::SentencePiece ? 4u : 0u) | (uint32_t)tok.space_prefix << 3 |
                    (tok.add_bos ? 32u : 0u));
    put_str(tok.chat_template.default_system);
    for (size_t i = 0; i < tok.vocab.size(); i++) {
        f.put<int32_t>((int32_t)tok.token_type[i] | (strips ? (int32_t)tok.strip[i] << 8 : 0));
        put_str(tok.vocab[i]);
    }
    for (const auto& [a, b] : tok.merges) put_str(a), put_str(b);
    f.commit();
}

Tokenizer tokenizer_load(const std::string& path) {
    ByteReader r(path, read_file(path));
    char magic[4];
    r.read(magic, 4, "magic");
    if (memcmp(magic, kMagic, 4) != 0) fail("%s: not a .tok tokenizer file (bad magic); convert a tokenizer.json with ./tokenize --tokenizer tokenizer.json --save out.tok", path.c_str());
    uint32_t version = r.get<uint32_t>("version");
    if (version < 1 || version > kVersion)
        fail("%s: .tok version %u is not supported (this build reads versions 1 to %u)", path.c_str(), version, kVersion);
    uint32_t n_vocab = r.get<uint32_t>("vocab size"), n_merges = r.get<uint32_t>("merge count");
    Tokenizer tok;
    int32_t pre = r.get<int32_t>("pre-tokenizer kind"), chat = r.get<int32_t>("chat template kind");
    if (pre < 0 || pre > (int32_t)PreTokenizerKind::Qwen2) fail("%s: unknown pre-tokenizer kind %d", path.c_str(), pre);
    if (chat < 0 || chat > (int32_t)kLastChatTemplateKind) fail("%s: unknown chat template kind %d", path.c_str(), chat);
    tok.pre = (PreTokenizerKind)pre;
    tok.chat_template.kind = (ChatTemplateKind)chat;
    tok.bos_id = r.get<int32_t>("bos id");
    tok.eos_id = r.get<int32_t>("eos id");
    tok.pad_id = r.get<int32_t>("pad id");
    const uint32_t flags = r.get<uint32_t>("flags");
    if (flags > 63) fail("%s: unknown tokenizer flags 0x%x: the file was written by a newer build", path.c_str(), flags);
    tok.ignore_merges = flags & 1;
    tok.nfc = flags & 2;
    tok.model = flags & 4 ? TokenizerModel::SentencePiece : TokenizerModel::ByteLevel;
    tok.space_prefix = (SpacePrefix)(flags >> 3 & 3);
    tok.add_bos = flags & 32;
    auto get_str = [&](const char* what) {
        uint32_t n = r.get<uint32_t>(what);
        if (n > r.remaining())
            fail("%s: file is truncated: %s needs %u bytes at offset %zu but only %zu remain", path.c_str(), what, n,
                 r.pos, r.remaining());
        std::string s(n, '\0');
        r.read(s.data(), n, what);
        return s;
    };
    tok.chat_template.default_system = get_str("default system prompt");
    // each token takes at least 8 bytes and each merge 8: check before allocating, so a corrupt
    // count fails with a clear message instead of a huge allocation
    if ((uint64_t)n_vocab * 8 + (uint64_t)n_merges * 8 > r.remaining())
        fail("%s: header says %u tokens and %u merges but only %zu bytes follow: the file is truncated or corrupt",
             path.c_str(), n_vocab, n_merges, r.remaining());
    tok.vocab.resize(n_vocab);
    tok.token_type.resize(n_vocab);
    if (version >= 2) tok.strip.assign(n_vocab, 0);
    for (uint32_t i = 0; i < n_vocab; i++) {
        int32_t t = r.get<int32_t>("token type");
        if (version >= 2) tok.strip[i] = (uint8_t)(t >> 8 & 3), t &= ~(3 << 8);
        if (t < (int32_t)TokenType::Normal || t > (int32_t)TokenType::Byte) fail("%s: token %u has unknown type %d", path.c_str(), i, t);
        tok.token_type[i] = (TokenType)t;
        tok.vocab[i] = get_str("token text");
    }
    tok.merges.resize(n_merges);
    for (auto& [a, b] : tok.merges) a = get_str("merge"), b = get_str("merge");
    if (r.remaining() != 0) fail("%s: %zu unexpected bytes after the last merge: the file is corrupt", path.c_str(), r.remaining());
    build_naming(tok, path);
    return tok;
}

void tokenizer_save_hf(const Tokenizer& tok, const std::string& dir, int64_t model_max_length) {
    // tokenizer.json: every token in model.vocab (by id), the special ones also as added tokens
    // (special = not UserDefined), merges in rank order; NFC or no normalizer (SentencePiece:
    // what puts "▁" where encode() does), and a post-processor that adds BOS when the model wants it
    // (encode() adds none: chat templates put it in the text, and apply_chat_template adds none).
    std::string added, vocab, merges;
    for (size_t id = 0; id < tok.vocab.size(); id++) {
        const std::string q = json_quote(tok.vocab[id]);
        vocab += (id ? ",\n      " : "") + q + ": " + std::to_string(id);
        TokenType t = tok.token_type[id];
        if (!is_special_token(tok, (int32_t)id)) continue;
        const uint8_t strip = tok.strip.empty() ? 0 : tok.strip[id];
        added += std::string(added.empty() ? "\n    " : ",\n    ") + "{\"id\": " + std::to_string(id) + ", \"content\": " + q +
                 ", \"single_word\": false, \"lstrip\": " + (strip & Tokenizer::kStripLeft ? "true" : "false") +
                 ", \"rstrip\": " + (strip & Tokenizer::kStripRight ? "true" : "false") + ", \"normalized\": false, \"special\": " +
                 (t == TokenType::UserDefined ? "false" : "true") + "}";
    }
    for (size_t r = 0; r < tok.merges.size(); r++)
        merges += (r ? ",\n      [" : "[") + json_quote(tok.merges[r].first) + ", " + json_quote(tok.merges[r].second) + "]";
    const bool spm = tok.model == TokenizerModel::SentencePiece;
    SpmHfJson j = spm ? spm_hf_json(tok.space_prefix)
                      : SpmHfJson{tok.nfc ? "{\"type\": \"NFC\"}" : "null", pre_tokenizer_to_hf(tok.pre),
                                  "{\"type\": \"ByteLevel\", \"add_prefix_space\": true, \"trim_offsets\": true, \"use_regex\": true}"};
    std::string unk = "null", post = "null";
    for (size_t id = 0; id < tok.vocab.size() && unk == "null"; id++)
        if (tok.token_type[id] == TokenType::Unknown) unk = json_quote(tok.vocab[id]);
    if (tok.add_bos && tok.bos_id >= 0) {
        const std::string bos = json_quote(tok.vocab[tok.bos_id]);
        auto special = [&](int type_id) { return "{\"SpecialToken\": {\"id\": " + bos + ", \"type_id\": " + std::to_string(type_id) + "}}"; };
        auto seq = [](const char* id, int type_id) { return std::string("{\"Sequence\": {\"id\": \"") + id + "\", \"type_id\": " + std::to_string(type_id) + "}}"; };
        post = "{\"type\": \"TemplateProcessing\", \"single\": [" + special(0) + ", " + seq("A", 0) + "], \"pair\": [" + special(0) +
               ", " + seq("A", 0) + ", " + special(1) + ", " + seq("B", 1) + "], \"special_tokens\": {" + bos + ": {\"id\": " + bos +
               ", \"ids\": [" + std::to_string(tok.bos_id) + "], \"tokens\": [" + bos + "]}}}";
    }
    write_file_atomic(dir + "/tokenizer.json",
                      "{\n  \"version\": \"1.0\",\n  \"truncation\": null,\n  \"padding\": null,\n  \"added_tokens\": [" + added +
                          "\n  ],\n  \"normalizer\": " + j.normalizer + ",\n  \"pre_tokenizer\": " + j.pre_tokenizer +
                          ",\n  \"post_processor\": " + post + ",\n  \"decoder\": " + j.decoder +
                          ",\n  \"model\": {\n    \"type\": \"BPE\",\n    \"dropout\": null,\n"
                          "    \"unk_token\": " + unk + ",\n    \"continuing_subword_prefix\": null,\n    \"end_of_word_suffix\": null,\n"
                          "    \"fuse_unk\": " + (spm ? "true" : "false") + ",\n    \"byte_fallback\": " + (spm ? "true" : "false") +
                          ",\n    \"ignore_merges\": " + (tok.ignore_merges ? "true" : "false") + ",\n    \"vocab\": {\n      " + vocab +
                          "\n    },\n    \"merges\": [\n      " + merges + "\n    ]\n  }\n}\n");
    // tokenizer_config.json: the special tokens by text and the chat template as Jinja.
    auto token = [&](int32_t id) { return id < 0 ? std::string("null") : json_quote(tok.vocab[id]); };
    write_file_atomic(dir + "/tokenizer_config.json",
                      "{\n  \"tokenizer_class\": \"PreTrainedTokenizerFast\",\n  \"add_bos_token\": " + std::string(tok.add_bos ? "true" : "false") + ",\n"
                      "  \"add_eos_token\": false,\n  \"add_prefix_space\": false,\n  \"bos_token\": " + token(tok.bos_id) +
                          ",\n  \"eos_token\": " + token(tok.eos_id) + ",\n  \"pad_token\": " + token(tok.pad_id) +
                          ",\n  \"unk_token\": " + unk + ",\n  \"clean_up_tokenization_spaces\": false,\n  \"model_max_length\": " +
                          std::to_string(model_max_length) + ",\n  \"chat_template\": " +
                          json_quote(chat_template_to_jinja(tok.chat_template)) + "\n}\n");
}

void tokenizer_fit_rows(Tokenizer& tok, size_t rows, const std::string& where, const std::string& rows_what) {
    if (tok.vocab.size() <= rows) return;
    std::vector<bool> in_merge(tok.vocab.size(), false);
    for (const auto& [a, b] : tok.merges)
        for (const std::string* s : {&a, &b})
            if (int32_t id = token_id(tok, *s); id >= 0) in_merge[id] = true;
    std::string dropped;
    for (size_t id = rows; id < tok.vocab.size(); id++) {
        const bool referred = (int32_t)id == tok.bos_id || (int32_t)id == tok.eos_id || (int32_t)id == tok.pad_id;
        if (!is_special_token(tok, (int32_t)id) || referred || in_merge[id])
            fail("%s: the tokenizer has %zu tokens but %s %zu: token %zu ('%s') is past the model's embedding rows",
                 where.c_str(), tok.vocab.size(), rows_what.c_str(), rows, id, tok.vocab[id].c_str());
        // the note names the first few and the last (Gemma 3 drops 145 unused tokens)
        const size_t n = id - rows, last = tok.vocab.size() - 1 - rows;
        if (n < 3 || n == last) dropped += (n == 0 ? "" : n == last && n > 3 ? ", ..., " : ", ") + tok.vocab[id];
    }
    for (const auto& [a, b] : tok.merges)  // a merge that makes a dropped token
        if (int32_t id = token_id(tok, a + b); id >= (int32_t)rows)
            fail("%s: token %d ('%s') is past the model's %zu embedding rows but merges make it", where.c_str(), id,
                 tok.vocab[id].c_str(), rows);
    fprintf(stderr, "note: %s: the tokenizer's last %zu token(s) (%s) are past the model's %zu embedding rows: dropped\n",
            where.c_str(), tok.vocab.size() - rows, dropped.c_str(), rows);
    tok.vocab.resize(rows);
    tok.token_type.resize(rows);
    if (!tok.strip.empty()) tok.strip.resize(rows);
    build_naming(tok, where);
}

std::string tokenizer_beside(const std::string& model_path) {
    // The file name's extension only: a dot in a folder's name (runs/v1.2/model) is not one.
    return std::filesystem::path(model_path).replace_extension(".tok").string();
}

std::string tokenizer_of_model(const std::string& model_path, const std::string& flag, const char* also) {
    if (!flag.empty()) return flag;
    if (model_is_imported(model_path)) return model_path;  // a Hugging Face directory's or a GGUF's own
    check_model_not_directory(model_path);  // (a checkpoint's folder: named with the file it holds)
    const std::string beside = tokenizer_beside(model_path);
    if (!file_exists(beside))
        fail("%s: no tokenizer beside the model (looked for %s): pass --tokenizer PATH, the model's own (.tok, "
             "tokenizer.json or tokenizer.model)%s", model_path.c_str(), beside.c_str(), also);
    return beside;
}

Tokenizer tokenizer_load_any(const std::string& path) {
    if (model_is_imported(path)) return model_import_cached(path).tok;
    return ends_with(path, ".json") ? tokenizer_load_hf(path) : ends_with(path, ".model") ? tokenizer_load_spm(path) : tokenizer_load(path);
}
