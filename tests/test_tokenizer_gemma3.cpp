// Gemma 3's tokenizer (tests/fixtures/tokenizer/gemma3/: 262,144 SentencePiece pieces, byte fallback, no
// space prefix, 6,415 added tokens, Gemma 3's chat template) against Hugging Face `tokenizers`, on
// encode.txt's strings and Gemma text (gen_gemma3_fixtures.py), read from tokenizer.json (gzipped in the
// fixture), from tokenizer.model, and through the files we write for it: .tok, tokenizer.json and GGUF.
#include <doctest/doctest.h>

#include <algorithm>
#include <cstdlib>
#include <unistd.h>

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
const std::string kGemma3Dir = "tests/fixtures/tokenizer/gemma3/";
const std::string kMeta = "\xE2\x96\x81";  // "▁"

std::string temp_dir() {
    char buf[] = "/tmp/test_gemma3_XXXXXX";
    REQUIRE(mkdtemp(buf) != nullptr);
    return buf;
}

// tokenizer.json.gz unpacked, with tokenizer_config.json beside it, in a directory removed at exit.
struct JsonDir {
    std::string dir = temp_dir();
    JsonDir() {
        REQUIRE(system(("gzip -dc " + kGemma3Dir + "tokenizer.json.gz > " + dir + "/tokenizer.json && cp " + kGemma3Dir +
                        "tokenizer_config.json " + dir + "/").c_str()) == 0);
    }
    ~JsonDir() { (void)!system(("rm -rf " + dir).c_str()); }
};

const std::string& json_dir() {
    static JsonDir d;
    return d.dir;
}
const Tokenizer& gemma3_json() {
    static Tokenizer t = tokenizer_load_hf(json_dir() + "/tokenizer.json");
    return t;
}
const Tokenizer& gemma3_model() {
    static Tokenizer t = tokenizer_load_spm(kGemma3Dir + "tokenizer.model");
    return t;
}
const std::vector<Fixture>& gemma3_fixtures() {
    static std::vector<Fixture> f = load_fixtures("tests/fixtures/tokenizer/encode_gemma3.txt");
    return f;
}

// The fixtures that a tokenizer without <image_soft_token> (the 262,144 tokens of tokenizer.model, of a
// GGUF, of a text model's embedding) encodes as Hugging Face does: all but the one that names it.
int check_text_fixtures(const Tokenizer& t) {
    int n = 0;
    for (const Fixture& f : gemma3_fixtures()) {
        if (f.kind != "gemma3" || f.text.find("<image_soft_token>") != std::string::npos) continue;
        n++;
        std::vector<int32_t> got = encode(t, f.text);
        if (got != f.ids) {
            INFO("text " << json_quote(f.text) << "\n  want " << ids_str(f.ids) << "\n  got  " << ids_str(got));
            CHECK(got == f.ids);
        }
    }
    return n;
}
}  // namespace

TEST_CASE("tokenizer gemma3: tokenizer.json and tokenizer_config.json read as transformers reads them") {
    const Tokenizer& t = gemma3_json();
    CHECK(t.model == TokenizerModel::SentencePiece);
    CHECK(t.space_prefix == SpacePrefix::None);  // Replace(" " -> "▁") and the no-op Split(" "): no prefix
    CHECK(t.vocab.size() == 262145);             // <image_soft_token> added after the 262,144 pieces
    CHECK(t.merges.size() == 514906);
    CHECK(t.bos_id == 2);
    CHECK(t.eos_id == 1);
    CHECK(t.pad_id == 0);
    CHECK(t.add_bos);
    CHECK(token_id(t, "<start_of_turn>") == 105);
    CHECK(token_id(t, "<end_of_turn>") == 106);
    CHECK(token_id(t, "<image_soft_token>") == 262144);
    CHECK(token_id(t, kMeta + kMeta) == 138);  // a user-defined run of "▁": an added token, matched as written
    CHECK(t.token_type[138] == TokenType::UserDefined);
    CHECK(t.token_type[3] == TokenType::Unknown);
    CHECK(tokenizer_missing_bytes(t).empty());
    CHECK(t.chat_template.kind == ChatTemplateKind::Gemma3);
    std::vector<int32_t> stops = end_of_turn_ids(t);
    CHECK(std::find(stops.begin(), stops.end(), 106) != stops.end());
    CHECK(std::find(stops.begin(), stops.end(), 1) != stops.end());
}

TEST_CASE("tokenizer gemma3: identical ids to Hugging Face tokenizers on every fixture; decoding gives the text") {
    const Tokenizer& t = gemma3_json();
    CHECK(check_fixtures(t, gemma3_fixtures(), "gemma3") == 318);
    int decoded = 0;
    for (const Fixture& f : gemma3_fixtures()) {
        if (f.kind != "gemma3" || f.text.find(kMeta) != std::string::npos) continue;  // a "▁" comes back as a space
        CHECK(decode(t, f.ids) == f.text);
        decoded++;
    }
    CHECK(decoded == 314);
    // spaces: "▁▁" is built from two "▁" by merges (the added token "▁▁" matches only a written "▁▁"),
    // which grow a run from the left as SentencePiece cuts out its longest run: 31 + 11 for 42 spaces
    CHECK(encode(t, "a  b") == std::vector<int32_t>{236746, 138, 236763});
    CHECK(decode(t, {138}) == "  ");
    CHECK(encode(t, std::string(42, ' ') + "x") == std::vector<int32_t>{167, 147, 236781});
    CHECK(encode(t, "a" + kMeta + kMeta + "b") == std::vector<int32_t>{236746, 138, 236763});
    // BOS: the model wants it before everything (add_bos_token); <bos> written in text is that token
    CHECK(encode_with_bos(t, "Hi") == std::vector<int32_t>{2, 10979});
    CHECK(encode_with_bos(t, "<bos>Hi") == std::vector<int32_t>{2, 10979});
    // special tokens (<bos>, <start_of_turn>) are text when special tokens are not parsed; the other added
    // tokens (<start_of_image>, the HTML tags) never are
    CHECK(encode(t, "<bos>", false) != std::vector<int32_t>{2});
    CHECK(encode(t, "<start_of_turn>", false) != std::vector<int32_t>{105});
    CHECK(encode(t, "<start_of_image></div>", false) == std::vector<int32_t>{255999, 235});
}

TEST_CASE("tokenizer gemma3: tokenizer.model reads as transformers converts it") {
    const Tokenizer& m = gemma3_model();
    CHECK(m.model == TokenizerModel::SentencePiece);
    CHECK(m.space_prefix == SpacePrefix::None);  // add_dummy_prefix false
    CHECK(m.vocab.size() == 262144);
    CHECK(m.bos_id == 2);
    CHECK(m.eos_id == 1);
    CHECK(m.add_bos);
    CHECK(m.chat_template.kind == ChatTemplateKind::Gemma3);  // tokenizer_config.json beside it
    CHECK(m.token_type[105] == TokenType::UserDefined);  // <start_of_turn>: a user-defined piece there
    // the scores give transformers' merges: the ordinary pieces' and the user-defined runs' (scored 0)
    CHECK(m.merges.size() == gemma3_json().merges.size());
    CHECK(m.merges == gemma3_json().merges);
    CHECK(check_text_fixtures(m) == 317);
}

TEST_CASE("tokenizer gemma3: .tok, tokenizer.json and GGUF written by us give the same ids") {
    const std::string dir = temp_dir();
    tokenizer_save(gemma3_json(), dir + "/t.tok");
    tokenizer_save_hf(gemma3_json(), dir, 32768);
    for (const std::string& path : {dir + "/t.tok", dir + "/tokenizer.json"}) {
        CAPTURE(path);
        Tokenizer u = tokenizer_load_any(path);
        CHECK(u.space_prefix == SpacePrefix::None);
        CHECK(u.add_bos);
        CHECK(u.vocab.size() == 262145);
        CHECK(u.merges == gemma3_json().merges);
        CHECK(u.chat_template.kind == ChatTemplateKind::Gemma3);
        CHECK(check_fixtures(u, gemma3_fixtures(), "gemma3") == 318);
    }
    // what we write is Gemma's form: the Replace normalizer, the Split pre-tokenizer, no Strip decoder
    const std::string json = read_file(dir + "/tokenizer.json");
    CHECK(json.find("\"normalizer\": {\"type\": \"Replace\", \"pattern\": {\"String\": \" \"}, \"content\": \"" + kMeta + "\"}") !=
          std::string::npos);
    CHECK(json.find("\"pre_tokenizer\": {\"type\": \"Split\", \"pattern\": {\"String\": \" \"}, \"behavior\": \"MergedWithPrevious\", "
                    "\"invert\": false}") != std::string::npos);
    CHECK(json.find("\"type\": \"Strip\"") == std::string::npos);

    // GGUF: a text model has 262,144 embedding rows, so <image_soft_token> is dropped on import (as
    // llama.cpp's converter drops it); a tiny model with this vocabulary
    Tokenizer fitted = gemma3_json();
    tokenizer_fit_rows(fitted, 262144, "gemma3", "the model's vocab_size is");
    CHECK(fitted.vocab.size() == 262144);
    // trailing added tokens go (the unused ones too), an ordinary piece past the rows does not
    Tokenizer unused_dropped = gemma3_json();
    tokenizer_fit_rows(unused_dropped, 262000, "gemma3", "the model's vocab_size is");
    CHECK(unused_dropped.vocab.size() == 262000);
    CHECK(error_of([&] {
              Tokenizer t = gemma3_json();
              tokenizer_fit_rows(t, 255000, "gemma3", "the model's vocab_size is");
          }).find("gemma3: the tokenizer has 262145 tokens but the model's vocab_size is 255000: token 255000 ('") == 0);
    ImportedModel a = import_gguf("tests/fixtures/convert/tiny_llama.gguf");
    a.cfg.vocab_size = 262144;
    model_init_random(a.cfg, a.params, 3);
    a.tok = fitted;
    export_gguf(dir + "/g.gguf", a.cfg, a.params, a.tok, GGML_F16);
    {
        GgufFile g = gguf_open(dir + "/g.gguf");
        CHECK(g.get_string("tokenizer.ggml.model") == "llama");
        CHECK(g.get_int("tokenizer.ggml.add_space_prefix") == 0);
        CHECK(g.get_int("tokenizer.ggml.add_bos_token") == 1);
        CHECK(g.get_strings("tokenizer.ggml.tokens")[138] == "  ");  // as llama.cpp's converter writes a user-defined "▁▁"
        CHECK(g.get_ints("tokenizer.ggml.token_type")[138] == (int)TokenType::UserDefined);
        CHECK(g.get_string("tokenizer.chat_template") == chat_template_to_jinja(ChatTemplate{ChatTemplateKind::Gemma3, ""}));
    }
    ImportedModel b = import_gguf(dir + "/g.gguf");
    CHECK(b.tok.space_prefix == SpacePrefix::None);
    CHECK(b.tok.vocab[138] == kMeta + kMeta);
    CHECK(b.tok.chat_template.kind == ChatTemplateKind::Gemma3);
    CHECK(check_text_fixtures(b.tok) == 317);
    REQUIRE(system(("rm -rf " + dir).c_str()) == 0);
}

TEST_CASE("tokenizer gemma3: only Gemma's pre-tokenizer is accepted beside the Replace normalizer") {
    const std::string dir = temp_dir(), path = dir + "/tokenizer.json";
    const std::string json = read_file("tests/fixtures/tokenizer/spm/tokenizer.json");  // Mistral's: Prepend + Replace
    auto error_with = [&](const std::vector<std::pair<std::string, std::string>>& edits) {
        std::string changed = json;
        for (const auto& [from, to] : edits) {
            size_t at = changed.find(from);
            REQUIRE(at != std::string::npos);
            changed.replace(at, from.size(), to);
        }
        FILE* f = fopen(path.c_str(), "wb");
        fwrite(changed.data(), 1, changed.size(), f);
        fclose(f);
        return error_of([&] { tokenizer_load_hf(path); });
    };
    const std::string split = "\"pre_tokenizer\": {\"type\": \"Split\", \"pattern\": {\"String\": \" \"}, \"behavior\": \"MergedWithPrevious\", \"invert\": false}";
    // Prepend + Replace with the split: a space prefix Gemma's form does not have
    CHECK(error_with({{"\"pre_tokenizer\": null", split}})
              .find(path + ": a normalizer other than Replace(\" \", \"" + kMeta + "\") before the pre-tokenizer Split(\" \") is not one we implement") == 0);
    // Replace alone with the split: Gemma's form, no prefix
    const size_t seq = json.find("\"normalizer\": {");
    const size_t end = json.find("\"pre_tokenizer\"");
    REQUIRE(seq != std::string::npos);
    REQUIRE(end != std::string::npos);
    const std::string old_norm = json.substr(seq, end - seq);
    const std::string replace = "\"normalizer\": {\"type\": \"Replace\", \"pattern\": {\"String\": \" \"}, \"content\": \"" + kMeta + "\"},\n  ";
    CHECK(error_with({{old_norm, replace}, {"\"pre_tokenizer\": null", split}}) == "");
    // any other split is refused, naming the file and what is supported
    const std::string isolated = error_with({{old_norm, replace}, {"\"pre_tokenizer\": null", split.substr(0, split.find("Merged")) + "Isolated\", \"invert\": false}"}});
    CHECK(isolated.find(path + ": a normalizer together with a pre-tokenizer is not one we implement") == 0);
    CHECK(isolated.find("Split(\" \", MergedWithPrevious) (Gemma)") != std::string::npos);
    REQUIRE(system(("rm -rf " + dir).c_str()) == 0);
}

TEST_CASE("tokenizer gemma3: a conversation trains on transformers' ids, the model's turns and <end_of_turn> learned") {
    const Tokenizer& t = gemma3_json();
    const std::string jsonl =
        R"({"messages": [{"role": "system", "content": "Answer in one line. "}, {"role": "user", "content": " Capital of Korea?\n"},)"
        R"( {"role": "assistant", "content": "Seoul.  "},)"
        R"( {"role": "user", "content": "\uadf8\ub7fc \uc77c\ubcf8\uc740? \ud83d\ude00"}, {"role": "assistant", "content": "Tokyo (\u6771\u4eac)."}]})"
        "\n";
    const Example e = check_conversation(t, gemma3_fixtures(), "gemma3-chat", jsonl);
    CHECK(e.tokens[0] == 2);  // <bos> once: the template's, which is also the model's BOS
    CHECK(learned_text(t, e) == "Seoul.<end_of_turn>Tokyo (\xE6\x9D\xB1\xE4\xBA\xAC).<end_of_turn>");
}
