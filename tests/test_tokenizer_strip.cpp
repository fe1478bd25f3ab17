// Added tokens that take the white space beside them (tokenizer.json "lstrip" / "rstrip"): Phi-3's
// <|user|>, <|end|>, ... (rstrip, on Llama-2's SentencePiece vocabulary), and lstrip / rstrip / both on
// a byte-level one, against Hugging Face `tokenizers` (tests/fixtures/tokenizer/gen_strip_fixtures.py),
// read from tokenizer.json and kept through our .tok and tokenizer.json writers.
#include <doctest/doctest.h>

#include <unistd.h>

#include <sstream>

#include "data/dataset.h"
#include "data/json.h"
#include "data/records.h"
#include "model/dequant.h"
#include "model/export_gguf.h"
#include "model/gguf.h"
#include "model/import.h"
#include "model/weights.h"
#include "test_convert_util.h"
#include "test_tokenizer_util.h"
#include "test_util.h"
#include "tokenizer/tokenizer.h"

namespace {
const std::string kTok = "tests/fixtures/tokenizer/";

// `src`'s tokenizer.json with its added_tokens replaced by the list in `added`, read back.
Tokenizer with_added_tokens(const std::string& src, const std::string& added) {
    std::string j = read_file(src);
    const size_t at = j.find("\"added_tokens\"");
    REQUIRE(at != std::string::npos);
    const size_t open = j.find('[', at);
    int depth = 0;
    size_t close = open;
    for (; close < j.size(); close++) {
        depth += j[close] == '[' ? 1 : j[close] == ']' ? -1 : 0;
        if (depth == 0) break;
    }
    char dir[] = "/tmp/test_strip_XXXXXX";
    REQUIRE(mkdtemp(dir) != nullptr);
    const std::string path = std::string(dir) + "/tokenizer.json";
    write_file_atomic(path, j.substr(0, open) + read_file(added) + j.substr(close + 1));
    return tokenizer_load_hf(path);
}

// t written as .tok and as tokenizer.json, each read back: the fixtures' ids still.
void check_round_trips(const Tokenizer& t, const std::vector<Fixture>& f, const std::string& kind, int n) {
    char dir[] = "/tmp/test_strip_XXXXXX";
    REQUIRE(mkdtemp(dir) != nullptr);
    tokenizer_save(t, std::string(dir) + "/t.tok");
    Tokenizer a = tokenizer_load(std::string(dir) + "/t.tok");
    CHECK(a.strip == t.strip);
    CHECK(check_fixtures(a, f, kind) == n);
    tokenizer_save_hf(t, dir, 4096);
    Tokenizer b = tokenizer_load_hf(std::string(dir) + "/tokenizer.json");
    CHECK(b.strip == t.strip);
    CHECK(check_fixtures(b, f, kind) == n);
}
}  // namespace

TEST_CASE("tokenizer: Phi-3's added tokens take the white space after them (rstrip), as Hugging Face's do") {
    const std::vector<Fixture> f = load_fixtures(kTok + "encode_strip.txt");
    Tokenizer t = with_added_tokens(kTok + "spm/tokenizer.json", kTok + "strip/phi3_added_tokens.json");
    REQUIRE(t.vocab.size() == 32011);
    CHECK(t.strip[32007] == Tokenizer::kStripRight);  // <|end|>
    CHECK(t.strip[2] == Tokenizer::kStripRight);      // </s>, not special
    CHECK(t.token_type[2] == TokenType::UserDefined);
    CHECK(t.strip[32000] == 0);  // <|endoftext|>
    CHECK(check_fixtures(t, f, "phi3") == 25);
    check_round_trips(t, f, "phi3", 25);
    // A tokenizer without such tokens writes the .tok version older builds read.
    char dir[] = "/tmp/test_strip_XXXXXX";
    REQUIRE(mkdtemp(dir) != nullptr);
    const Tokenizer plain = tokenizer_load_hf(kTok + "spm/tokenizer.json");
    CHECK(plain.strip.empty());
    tokenizer_save(plain, std::string(dir) + "/p.tok");
    CHECK(read_file(std::string(dir) + "/p.tok").compare(4, 4, std::string("\1\0\0\0", 4)) == 0);
}

TEST_CASE("tokenizer: lstrip, rstrip and both on a byte-level tokenizer, Unicode white space included, never "
          "past the token before") {
    const std::vector<Fixture> f = load_fixtures(kTok + "encode_strip.txt");
    Tokenizer t = with_added_tokens("tests/fixtures/convert/tiny_llama_hf/tokenizer.json", kTok + "strip/bpe_added_tokens.json");
    CHECK(check_fixtures(t, f, "bpe-strip") == 15);
    check_round_trips(t, f, "bpe-strip", 15);
}

TEST_CASE("tokenizer: to and from GGUF, which has no key for it, the stripping goes by the model's name as in "
          "llama.cpp: a Phi-3 tokenizer's export is named Phi-3 and reads back the same") {
    const Tokenizer phi3 = with_added_tokens(kTok + "spm/tokenizer.json", kTok + "strip/phi3_added_tokens.json");
    CHECK(gguf_token_strips(phi3, "Phi 3.5 Mini Instruct").empty());  // llama.cpp's test: "phi-3" or "phi3" in it
    CHECK(gguf_token_strips(phi3, "Phi-3.5-mini-instruct") == phi3.strip);
    CHECK(gguf_token_strips(phi3, "my PHI3 tune") == phi3.strip);
    ModelConfig c = config_preset("tiny");
    c.vocab_size = (int32_t)phi3.vocab.size();
    c.fused_projections = 1;
    std::vector<float> params;
    model_init_random(c, params, 1);
    char dir[] = "/tmp/test_strip_XXXXXX";
    REQUIRE(mkdtemp(dir) != nullptr);
    const std::string path = std::string(dir) + "/tune.gguf";
    export_gguf(path, c, params, phi3, GGML_F32);
    CHECK(gguf_open(path).get_string("general.name") == "Phi-3 tune");
    const ImportedModel back = import_gguf(path);
    CHECK(back.tok.strip == phi3.strip);
    const std::string chat = "<|user|>\nHello<|end|>\n<|assistant|>\n";
    CHECK(encode(back.tok, chat) == encode(phi3, chat));
    // A Phi-3 named otherwise ("Phi 3.5 Mini Instruct", as llama.cpp's converter names it) still strips
    // as Phi-3's tokenizer does: its SentencePiece vocabulary under arch phi3 is Phi-3's.
    const std::string renamed = std::string(dir) + "/renamed.gguf";
    write_file_atomic(renamed, patched(read_file(path), "Phi-3 tune", "Phi 3 tune"));
    CHECK(import_gguf(renamed).tok.strip == phi3.strip);
}

TEST_CASE("data: Phi-3 conversations encode to transformers' ids (the white space after <|assistant|>\\n and "
          "<|user|>\\n taken by the tokens), and each answer with its <|end|> is learned") {
    Tokenizer phi3 = with_added_tokens(kTok + "spm/tokenizer.json", kTok + "strip/phi3_added_tokens.json");
    phi3.add_bos = false;  // Phi-3.5-mini's tokenizer_config.json: add_bos_token false
    const ParsedFile pf = parse_records(read_file(kTok + "strip/phi3_chat.jsonl"), "phi3_chat.jsonl", true);
    const DataTokenizer dt = data_tokenizer(phi3, ChatTemplate{ChatTemplateKind::Phi3, ""});
    DataReport report;
    const std::vector<Example> ex = build_examples(pf, dt, DataOptions{}, report);
    std::istringstream want(read_file(kTok + "strip/phi3_chat_ids.txt"));
    REQUIRE(ex.size() == 2);
    for (const Example& e : ex) {
        std::string line;
        std::getline(want, line);
        std::vector<int32_t> ids;
        std::istringstream in(line);
        for (int32_t id; in >> id;) ids.push_back(id);
        CHECK(e.tokens == ids);
        // learned: what follows each <|assistant|> (32001) up to its <|end|> (32007), that included
        bool in_answer = false;
        for (size_t k = 0; k < e.size(); k++) {
            CAPTURE(k);
            CHECK((e.weights[k] == 1.0f) == in_answer);
            if (e.tokens[k] == 32001) in_answer = true;
            if (e.tokens[k] == 32007) in_answer = false;
        }
    }
}

// llama.cpp marks </s> rstrip by its text, but only special tokens are cut out of text there: a
// vocabulary whose </s> is an ordinary token (a byte-level one) strips nothing beside it, and must
// still load (tokenizer_build refuses stripping on an ordinary token).
TEST_CASE("tokenizer: a GGUF named Phi-3 whose </s> is an ordinary token: only its special tokens strip") {
    Tokenizer t = tokenizer_load_hf("tests/fixtures/convert/tiny_llama_hf/tokenizer.json");
    int32_t normal = -1;
    for (int32_t id = 0; id < (int32_t)t.vocab.size() && normal < 0; id++)
        if (t.token_type[id] == TokenType::Normal && t.vocab[id].size() > 1) normal = id;
    REQUIRE(normal >= 0);
    t.vocab[normal] = "</s>";
    tokenizer_build(t);
    t.strip = gguf_token_strips(t, "Phi-3 byte-level tune");
    REQUIRE(t.strip.size() == t.vocab.size());
    CHECK(t.strip[normal] == 0);
    const int32_t im_end = token_id(t, "<|im_end|>");
    REQUIRE(im_end >= 0);
    CHECK(t.strip[im_end] == Tokenizer::kStripRight);
    CHECK_NOTHROW(tokenizer_build(t));
}
