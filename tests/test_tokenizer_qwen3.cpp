// Qwen3's real tokenizer (tests/fixtures/tokenizer/qwen3/: 151643 byte-level BPE tokens + 26 added,
// the Qwen2 pre-tokenizer regex, NFC) against Hugging Face `tokenizers`, on encode.txt's strings and
// on Qwen3 text with its special tokens written in it (gen_qwen3_fixtures.py), and through the
// files we write for it: .tok, tokenizer.json and GGUF.
#include <doctest/doctest.h>

#include <algorithm>
#include <cstdlib>
#include <unistd.h>

#include "model/dequant.h"
#include "model/export_gguf.h"
#include "data/dataset.h"
#include "data/records.h"
#include "model/import.h"
#include "test_tokenizer_util.h"
#include "tokenizer/tokenizer.h"

namespace {
const std::string kQwen3Dir = "tests/fixtures/tokenizer/qwen3/";

const Tokenizer& qwen3() {
    static Tokenizer t = tokenizer_load_hf(kQwen3Dir + "tokenizer.json");
    return t;
}
const std::vector<Fixture>& qwen3_fixtures() {
    static std::vector<Fixture> f = load_fixtures("tests/fixtures/tokenizer/encode_qwen3.txt");
    return f;
}
}  // namespace

TEST_CASE("tokenizer qwen3: the real tokenizer.json and tokenizer_config.json read as transformers reads them") {
    const Tokenizer& t = qwen3();
    CHECK(t.model == TokenizerModel::ByteLevel);
    CHECK(t.pre == PreTokenizerKind::Qwen2);
    CHECK(t.nfc);
    CHECK(t.vocab.size() == 151669);
    CHECK(!t.add_bos);  // Qwen has no BOS
    CHECK(t.eos_id == 151645);  // <|im_end|>
    CHECK(t.pad_id == 151643);  // <|endoftext|>
    CHECK(token_id(t, "<think>") == 151667);
    CHECK(token_id(t, "</tool_call>") == 151658);
    CHECK(is_special_token(t, 151645));
    // end_of_turn_ids: what generation stops at
    std::vector<int32_t> stops = end_of_turn_ids(t);
    CHECK(std::find(stops.begin(), stops.end(), 151645) != stops.end());
}

TEST_CASE("tokenizer qwen3: identical ids to Hugging Face tokenizers on every fixture; decoding gives the NFC text") {
    CHECK(check_fixtures(qwen3(), qwen3_fixtures(), "qwen3") == 287);
    int decoded = 0;
    for (const Fixture& f : qwen3_fixtures())
        decoded += decode(qwen3(), f.ids) == decode(qwen3(), encode(qwen3(), f.text));
    CHECK(decoded == 288);  // and the conversation
    // NFC: a decomposed é is the composed one's token
    CHECK(encode(qwen3(), "e\xcc\x81") == encode(qwen3(), "\xc3\xa9"));
}

TEST_CASE("tokenizer qwen3: .tok, tokenizer.json and GGUF written by us give the same ids") {
    char buf[] = "/tmp/test_qwen3_XXXXXX";
    REQUIRE(mkdtemp(buf) != nullptr);
    const std::string dir = buf;
    tokenizer_save(qwen3(), dir + "/t.tok");
    tokenizer_save_hf(qwen3(), dir, 40960);
    // GGUF carries the tokenizer inside a model: a tiny one with Qwen3's vocabulary
    ImportedModel a = import_gguf("tests/fixtures/convert/tiny_qwen3.gguf");
    a.cfg.vocab_size = (int32_t)qwen3().vocab.size();
    model_init_random(a.cfg, a.params, 3);
    a.tok = qwen3();
    export_gguf(dir + "/q.gguf", a.cfg, a.params, a.tok, GGML_F16);
    for (const std::string& path : {dir + "/t.tok", dir + "/tokenizer.json", dir + "/q.gguf"}) {
        CAPTURE(path);
        Tokenizer u = path.size() > 5 && path.compare(path.size() - 5, 5, ".gguf") == 0 ? import_gguf(path).tok
                                                                                      : tokenizer_load_any(path);
        CHECK(u.nfc);
        CHECK(u.pre == PreTokenizerKind::Qwen2);
        CHECK(u.eos_id == qwen3().eos_id);
        CHECK(!u.add_bos);
        CHECK(check_fixtures(u, qwen3_fixtures(), "qwen3") == 287);
    }
    REQUIRE(system(("rm -rf " + dir).c_str()) == 0);
}

TEST_CASE("tokenizer qwen3: its own chat template is recognised; a conversation trains on transformers' ids") {
    const Tokenizer& t = qwen3();
    CHECK(t.chat_template.kind == ChatTemplateKind::Qwen3);
    // The conversation of gen_qwen3_fixtures.py: the earlier answer loses its think block, the last
    // gets an empty one, as apply_chat_template renders it ("qwen3-chat": that text and its ids).
    const std::string jsonl =
        R"({"messages": [{"role": "system", "content": "Answer in one line."}, {"role": "user", "content": "Capital of Korea?"},)"
        R"( {"role": "assistant", "content": "<think>\nEasy.\n</think>\n\nSeoul."},)"
        R"( {"role": "user", "content": "\uadf8\ub7fc \uc77c\ubcf8\uc740? \ud83d\ude00"}, {"role": "assistant", "content": "Tokyo (\u6771\u4eac)."}]})"
        "\n";
    const Example e = check_conversation(t, qwen3_fixtures(), "qwen3-chat", jsonl);
    CHECK(learned_text(t, e) == "Seoul.<|im_end|><think>\n\n</think>\n\nTokyo (\xE6\x9D\xB1\xE4\xBA\xAC).<|im_end|>");
}
