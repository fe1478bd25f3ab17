// SentencePiece-style BPE (LLaMA-1/2, Mistral v0.1) against Hugging Face `tokenizers` and
// SentencePiece itself, on Mistral-7B-v0.1's real vocabulary (tests/fixtures/tokenizer/spm/, made
// by gen_spm_fixtures.py: the ids of encode.txt's strings and of SentencePiece corner cases;
// tokenizer_config.json beside them is the special-token part of Mistral-7B-v0.1's).
#include <doctest/doctest.h>

#include <algorithm>
#include <cstdio>
#include <set>
#include <string_view>
#include <unistd.h>
#include <unordered_map>

#include "data/dataset.h"
#include "data/records.h"
#include "model/dequant.h"
#include "model/export_gguf.h"
#include "model/gguf.h"
#include "model/import.h"
#include "model/weights.h"
#include "test_tokenizer_util.h"
#include "test_util.h"
#include "tokenizer/tokenizer.h"

namespace {

const std::string kSpmDir = "tests/fixtures/tokenizer/spm/";

const Tokenizer& spm_model() {
    static Tokenizer t = tokenizer_load_spm(kSpmDir + "tokenizer.model");
    return t;
}

const Tokenizer& spm_json() {
    static Tokenizer t = tokenizer_load_hf(kSpmDir + "tokenizer.json");
    return t;
}

const std::vector<Fixture>& spm_fixtures() {
    static std::vector<Fixture> f = load_fixtures("tests/fixtures/tokenizer/encode_spm.txt");
    return f;
}

int check_fixtures(const Tokenizer& t, const std::string& kind) { return check_fixtures(t, spm_fixtures(), kind); }

std::string temp_dir() {
    char buf[] = "/tmp/test_spm_XXXXXX";
    REQUIRE(mkdtemp(buf) != nullptr);
    return buf;
}

}  // namespace

TEST_CASE("tokenizer spm: tokenizer.model and tokenizer.json read as transformers converts them") {
    const Tokenizer& m = spm_model();
    const Tokenizer& j = spm_json();
    for (const Tokenizer* t : {&m, &j}) {
        CHECK(t->model == TokenizerModel::SentencePiece);
        CHECK(t->space_prefix == SpacePrefix::Always);
        CHECK(t->vocab.size() == 32000);
        CHECK(t->bos_id == 1);
        CHECK(t->eos_id == 2);
        CHECK(t->add_bos);  // tokenizer.json's post-processor "<s> $A"; tokenizer.model: LlamaTokenizer's default
        CHECK(tokenizer_missing_bytes(*t).empty());  // the 256 byte-fallback tokens
    }
    CHECK(m.token_type[0] == TokenType::Unknown);
    CHECK(m.token_type[13] == TokenType::Byte);  // <0x0A>
    CHECK(j.token_type[13] == TokenType::Byte);
    // the scores become exactly transformers' 58,980 merges, in its order (ties among the runs of "▁",
    // all scored -1e9, by the longer left part)
    CHECK(m.merges.size() == 58980);
    CHECK(m.merges == j.merges);
}

TEST_CASE("tokenizer spm: identical ids to Hugging Face on every fixture, with each space prefix") {
    // "spm": Llama-2's and Mistral's tokenizer.json (Prepend normalizer); SentencePiece itself gives
    // the same ids for every string without "<s>", "</s>", "<unk>" in it (checked by the generator)
    CHECK(check_fixtures(spm_model(), "spm") == 330);
    CHECK(check_fixtures(spm_json(), "spm") == 330);
    // "spm-first": transformers' legacy = false file (Metaspace prepend_scheme "first"): no "▁" before
    // text that starts with a space, or after a special token
    Tokenizer first = spm_json();
    first.space_prefix = SpacePrefix::First;
    CHECK(check_fixtures(first, "spm-first") == 330);
}

TEST_CASE("tokenizer spm: byte fallback, decoding and continued text") {
    const Tokenizer& t = spm_json();
    // 🦙 is not in the vocabulary: its four UTF-8 bytes as <0xF0> <0x9F> <0xA6> <0x99>
    CHECK(encode(t, "\xF0\x9F\xA6\x99") == std::vector<int32_t>{28705, 3 + 0xF0, 3 + 0x9F, 3 + 0xA6, 3 + 0x99});
    CHECK(encode(t, "Hello world") == std::vector<int32_t>{22557, 1526});
    for (const Fixture& f : spm_fixtures()) {
        // decode drops the prefix encode added; the exceptions are Hugging Face's own: a "▁" in the
        // text comes back as a space, and the prefix after a special token stays
        bool special = f.text.find("<s>") != std::string::npos || f.text.find("</s>") != std::string::npos ||
                       f.text.find("<unk>") != std::string::npos;
        if (f.kind == "spm" && !special && f.text.find("\xE2\x96\x81") == std::string::npos) CHECK(decode(t, f.ids) == f.text);
    }
    CHECK(decode(t, encode(t, "<s>Hello")) == "<s> Hello");  // as Hugging Face decodes it
    // invalid UTF-8 goes byte by byte and comes back the same
    std::string bad = "a\xFF\xC3(b\x80";
    CHECK(decode(t, encode(t, bad)) == bad);
    // no "▁" before a piece that carries on from earlier text, so a chat template's pieces encode as
    // the whole text does
    CHECK(encode(t, "Hello", true, TextStart::AfterText) == std::vector<int32_t>{16230});
    CHECK(encode(t, "Hello", true, TextStart::AfterSpecial) == std::vector<int32_t>{22557});  // a new run
    std::vector<int32_t> a = encode(t, "[INST] Hi [/INST]"), b = encode(t, " Sure thing </s>", true, TextStart::AfterText);
    a.insert(a.end(), b.begin(), b.end());
    CHECK(a == encode(t, "[INST] Hi [/INST] Sure thing </s>"));
    // <unk>, like <s>, is text only when special tokens are not parsed
    CHECK(encode(t, "x<unk>") == std::vector<int32_t>{1318, 0});
    CHECK(encode(t, "x<unk>", false) == std::vector<int32_t>{1318, 28789, 2060, 28767});
    CHECK(encode_with_bos(t, "Hello") == std::vector<int32_t>{1, 22557});
    CHECK(encode_with_bos(t, "<s>Hello") == std::vector<int32_t>{1, 22557});
}

TEST_CASE("tokenizer spm: .tok, tokenizer.json and GGUF written by us read back the same") {
    const std::string dir = temp_dir();
    for (SpacePrefix prefix : {SpacePrefix::Always, SpacePrefix::First, SpacePrefix::None, SpacePrefix::UnlessSpace}) {
        CAPTURE((int)prefix);
        Tokenizer t = spm_json();
        t.space_prefix = prefix;
        tokenizer_build(t);
        tokenizer_save(t, dir + "/t.tok");
        tokenizer_save_hf(t, dir, 4096);
        for (const Tokenizer& u : {tokenizer_load(dir + "/t.tok"), tokenizer_load_hf(dir + "/tokenizer.json")}) {
            CHECK(u.model == TokenizerModel::SentencePiece);
            CHECK(u.space_prefix == prefix);
            CHECK(u.add_bos);
            CHECK(u.merges == t.merges);
            for (const Fixture& f : spm_fixtures())
                if (f.kind == "spm") CHECK(encode(u, f.text) == encode(t, f.text));
        }
    }
    // GGUF has scores, not merges, and llama.cpp's one space prefix: a tiny model with this vocabulary
    ImportedModel a = import_gguf("tests/fixtures/convert/tiny_llama.gguf");
    a.cfg.vocab_size = 32000;
    model_init_random(a.cfg, a.params, 3);
    a.tok = spm_model();
    export_gguf(dir + "/spm.gguf", a.cfg, a.params, a.tok, GGML_F16);
    GgufFile g = gguf_open(dir + "/spm.gguf");
    CHECK(g.get_string("tokenizer.ggml.model") == "llama");
    CHECK(g.get_int("tokenizer.ggml.add_space_prefix") == 1);
    CHECK(g.get_int("tokenizer.ggml.add_bos_token") == 1);
    CHECK(!g.find("tokenizer.ggml.merges"));
    ImportedModel b = import_gguf(dir + "/spm.gguf");
    CHECK(b.tok.model == TokenizerModel::SentencePiece);
    // the merges come back grouped by token (the runs of "▁" no longer tie), with the same ids
    CHECK(b.tok.merges.size() == a.tok.merges.size());
    CHECK(check_fixtures(b.tok, "spm") == 330);
    REQUIRE(system(("rm -rf " + dir).c_str()) == 0);
}

TEST_CASE("tokenizer spm: what the readers refuse, naming the file") {
    const std::string dir = temp_dir(), path = dir + "/tokenizer.model";
    std::string bytes = read_file(kSpmDir + "tokenizer.model");
    auto write = [&](const std::string& b) {
        FILE* f = fopen(path.c_str(), "wb");
        fwrite(b.data(), 1, b.size(), f);
        fclose(f);
    };
    write(bytes.substr(0, 1001));
    CHECK(error_of([&] { tokenizer_load_spm(path); }) == path + ": truncated protocol buffer: not a SentencePiece tokenizer.model?");
    write("{\"model\": {}}");
    CHECK(error_of([&] { tokenizer_load_spm(path); }).find(path + ":") == 0);
    // trainer_spec.model_type (field 3 of field 2) = 1: a Unigram model (T5, ALBERT)
    write(bytes + std::string("\x12\x02\x18\x01", 4));
    CHECK(error_of([&] { tokenizer_load_spm(path); }) == path + ": a SentencePiece Unigram model: only BPE models (LLaMA, Llama-2, Mistral) are supported");
    // normalizer_spec.remove_extra_whitespaces (field 4 of field 3) = 1
    write(bytes + std::string("\x1a\x02\x20\x01", 4));
    CHECK(error_of([&] { tokenizer_load_spm(path); }).find("with remove_extra_whitespaces: only the identity normalizer") != std::string::npos);
    // a score that is not a number (the first piece's is 0.0f: field 2, wire type 5, four zero bytes)
    size_t score = bytes.find(std::string("\x15\0\0\0\0", 5));
    REQUIRE(score != std::string::npos);
    write(bytes.substr(0, score + 1) + std::string("\0\0\xC0\x7F", 4) + bytes.substr(score + 5));
    CHECK(error_of([&] { tokenizer_load_spm(path); }) == path + ": piece 0 ('<unk>') has score nan: scores must be finite");
    // tokenizer.json: what the normalizer, pre-tokenizer and added tokens may not be
    const std::string json = read_file(kSpmDir + "tokenizer.json"), json_path = dir + "/tokenizer.json";
    auto json_error = [&](const std::vector<std::pair<std::string, std::string>>& edits) {
        std::string changed = json;
        for (const auto& [from, to] : edits) {
            size_t at = changed.find(from);
            REQUIRE(at != std::string::npos);
            changed.replace(at, from.size(), to);
        }
        FILE* f = fopen(json_path.c_str(), "wb");
        fwrite(changed.data(), 1, changed.size(), f);
        fclose(f);
        return error_of([&] { tokenizer_load_hf(json_path); });
    };
    CHECK(json_error({{"\"Prepend\"", "\"Lowercase\""}}).find(json_path + ": the normalizer is not one we implement") == 0);
    // a Metaspace without "split" splits at each "▁" (tokenizers' default)
    CHECK(json_error({{"\"normalizer\": {", "\"unused\": {"},
                      {"\"pre_tokenizer\": null", "\"pre_tokenizer\": {\"type\": \"Metaspace\", \"replacement\": \"\xE2\x96\x81\", \"prepend_scheme\": \"first\"}"}})
              .find(json_path + ": a Metaspace pre_tokenizer that splits at") == 0);
    CHECK(json_error({{"\"normalized\": false", "\"normalized\": true"}}).find(json_path + ": added_tokens[0] is \"normalized\": true") == 0);
    CHECK(spm_json().token_type[0] == TokenType::Unknown);  // model.unk_token
    REQUIRE(system(("rm -rf " + dir).c_str()) == 0);
}

TEST_CASE("tokenizer spm: chat examples tokenize as transformers tokenizes the whole conversation") {
    // The data pipeline encodes the template's pieces one by one (to mark the answers); with a
    // SentencePiece tokenizer that must give the ids of the whole rendered text, BOS first, and mark
    // exactly the answers' tokens with their "▁" and the end-of-turn marker. Also for a Metaspace
    // "first" tokenizer with ChatML tokens added, whose pieces start with text after <|im_end|>.
    Tokenizer first = spm_json();
    first.space_prefix = SpacePrefix::First;
    for (const char* special : {"<|im_start|>", "<|im_end|>"}) first.vocab.push_back(special), first.token_type.push_back(TokenType::Control);
    tokenizer_build(first);
    struct Case { const Tokenizer* tok; ChatTemplateKind kind; const char* answers[2]; };
    const Case cases[] = {
        {&spm_json(), ChatTemplateKind::Mistral, {"Paris.</s> Seoul (\uc11c\uc6b8).</s>", "hi</s>"}},
        {&spm_json(), ChatTemplateKind::Llama2, {"Paris. </s> Seoul (\uc11c\uc6b8). </s>", "hi </s>"}},
        {&first, ChatTemplateKind::ChatML, {"Paris.<|im_end|>Seoul (\uc11c\uc6b8).<|im_end|>", "hi<|im_end|>"}},
        {&spm_json(), ChatTemplateKind::Zephyr, {"Paris.</s>Seoul (\uc11c\uc6b8).</s>", "hi</s>"}},  // TinyLlama-Chat
        // Qwen3: the turn before the last query without a think block, the last with an empty one
        {&first, ChatTemplateKind::Qwen3, {"Paris.<|im_end|><think>\n\n</think>\n\nSeoul (\uc11c\uc6b8).<|im_end|>",
                                           "<think>\n\n</think>\n\nhi<|im_end|>"}},
    };
    const std::string jsonl =
        "{\"messages\": [{\"role\": \"system\", \"content\": \"Be brief.\"}, {\"role\": \"user\", \"content\": \"Capital of France?\"}, "
        "{\"role\": \"assistant\", \"content\": \"Paris.\"}, {\"role\": \"user\", \"content\": \"And Korea?\"}, "
        "{\"role\": \"assistant\", \"content\": \"Seoul (\uc11c\uc6b8).\"}]}\n"
        "{\"instruction\": \"Say hi\", \"output\": \"hi\"}\n";
    ParsedFile pf = parse_records(jsonl, "chat.jsonl", true);
    for (const Case& c : cases) {
        CAPTURE((int)c.kind);
        DataTokenizer dt = data_tokenizer(*c.tok, ChatTemplate{c.kind, ""});
        DataOptions opt;
        DataReport report;
        std::vector<Example> ex = build_examples(pf, dt, opt, report);
        REQUIRE(ex.size() == 2);
        for (size_t i = 0; i < ex.size(); i++) {
            CHECK(ex[i].tokens == encode_with_bos(*c.tok, chat_render(dt.chat_template, pf.records[i].messages, false)));
            CHECK(ex[i].tokens[0] == 1);  // one <s>: the template's own, or the one the model wants
            std::vector<int32_t> answer;
            for (size_t k = 0; k < ex[i].size(); k++)
                if (ex[i].weights[k] == 1.0f) answer.push_back(ex[i].tokens[k]);
            CHECK(decode(*c.tok, answer) == c.answers[i]);  // decode drops the leading space, as transformers' does
            bool space = c.kind == ChatTemplateKind::Mistral || c.kind == ChatTemplateKind::Llama2;  // "[/INST] Paris"
            CHECK((decode_token(*c.tok, answer[0]).front() == ' ') == space);
        }
    }
}

TEST_CASE("tokenizer spm: random text round-trips, and megabytes encode in well under seconds") {
    const Tokenizer& t = spm_json();
    // SentencePiece has no pre-tokenizer: text between special tokens is one row of symbols, so
    // 2 MB without one is a single merge over 2 million characters (the heap keeps it O(n log n))
    const char* alphabet[] = {"a", "e", "k", "t", " ", " ", "\n", "\t", "7", ".", "\xC3\xA9", "\xED\x95\x9C", "\xF0\x9F\xA6\x99", "\xE2\x80\x83"};
    Rng rng(11);
    for (int n = 0; n < 300; n++) {
        std::string s;
        for (int k = (int)(rng.next_u64() % 40); k > 0; k--) s += alphabet[rng.next_u64() % 14];
        if (decode(t, encode(t, s)) != s) CHECK(decode(t, encode(t, s)) == s);
    }
    std::string text;
    for (const Fixture& f : spm_fixtures())
        if (f.text.find('<') == std::string::npos && f.text.find("\xE2\x96\x81") == std::string::npos) text += f.text + "\n";
    while (text.size() < (2u << 20)) text += alphabet[rng.next_u64() % 14];
    double t0 = now_seconds();
    std::vector<int32_t> ids = encode(t, text);
    double dt = now_seconds() - t0;
    MESSAGE("encoded " << text.size() / 1e6 << " MB into " << ids.size() << " tokens in " << dt << " s");
    CHECK(decode(t, ids) == text);
    CHECK(dt < 10.0);
}

// spm_merges_from_scores as it was before it tried only the lengths tokens have: every split
// between characters, both halves looked up (O(length²) a token).
static std::vector<std::pair<std::string, std::string>> merges_every_split(const std::vector<std::string>& vocab,
                                                                          const std::vector<float>& scores,
                                                                          const std::vector<TokenType>& types) {
    std::unordered_map<std::string_view, int32_t> id_of;
    for (size_t i = 0; i < vocab.size(); i++) id_of.emplace(vocab[i], (int32_t)i);
    struct Cand { float score; int32_t left_chars, right_chars, merged, left, right; };
    std::vector<Cand> cands;
    for (size_t i = 0; i < vocab.size(); i++) {
        if (types[i] != TokenType::Normal && types[i] != TokenType::UserDefined) continue;
        const float score = types[i] == TokenType::UserDefined ? 0.0f : scores[i];
        std::string_view t = vocab[i];
        int32_t chars = 0, left_chars = 0;
        for (char c : t) chars += ((uint8_t)c & 0xC0) != 0x80;
        for (size_t k = 1; k < t.size(); k++) {
            if (((uint8_t)t[k] & 0xC0) == 0x80) continue;
            left_chars++;
            auto l = id_of.find(t.substr(0, k)), r = id_of.find(t.substr(k));
            if (l != id_of.end() && r != id_of.end()) cands.push_back({score, left_chars, chars - left_chars, (int32_t)i, l->second, r->second});
        }
    }
    std::sort(cands.begin(), cands.end(), [](const Cand& a, const Cand& b) {
        if (a.score != b.score) return a.score > b.score;
        if (a.left_chars != b.left_chars) return a.left_chars > b.left_chars;
        if (a.right_chars != b.right_chars) return a.right_chars > b.right_chars;
        if (a.merged != b.merged) return a.merged < b.merged;
        return a.left != b.left ? a.left < b.left : a.right < b.right;
    });
    std::vector<std::pair<std::string, std::string>> merges;
    for (const Cand& c : cands) merges.emplace_back(vocab[c.left], vocab[c.right]);
    return merges;
}

TEST_CASE("tokenizer spm: merges from scores equal every split's, and a 1 MB token costs no time") {
    // random vocabularies of multi-byte characters (and a stray continuation byte), tied scores, every type
    const char* alphabet[] = {"a", "b", "\xE2\x96\x81", "\xC3\xA9", "\x80"};
    Rng rng(5);
    for (int round = 0; round < 20; round++) {
        std::vector<std::string> vocab;
        std::vector<float> scores;
        std::vector<TokenType> types;
        std::set<std::string> seen;
        while (vocab.size() < 300) {
            std::string s;
            for (int k = 1 + (int)(rng.next_u64() % 6); k > 0; k--) s += alphabet[rng.next_u64() % 5];
            if (!seen.insert(s).second) continue;
            vocab.push_back(s);
            scores.push_back(-(float)(rng.next_u64() % 8));
            types.push_back(rng.next_u64() % 4 ? TokenType::Normal : (TokenType)(1 + rng.next_u64() % 6));
        }
        CHECK(spm_merges_from_scores(vocab, scores, types) == merges_every_split(vocab, scores, types));
    }
    CHECK(spm_merges_from_scores(spm_model().vocab, spm_scores_from_merges(spm_model()), spm_model().token_type) ==
          merges_every_split(spm_model().vocab, spm_scores_from_merges(spm_model()), spm_model().token_type));
    // A corrupt file's 1 MB token took minutes: splits at lengths no token has are skipped.
    std::string long_token;
    while (long_token.size() < (1u << 20)) long_token += "ab";
    double t0 = now_seconds();
    auto merges = spm_merges_from_scores({"a", "b", "ab", long_token}, {0, 0, -1, -2},
                                         std::vector<TokenType>(4, TokenType::Normal));
    double dt = now_seconds() - t0;
    CHECK(merges == std::vector<std::pair<std::string, std::string>>{{"a", "b"}});
    CHECK(dt < 1.0);
}
