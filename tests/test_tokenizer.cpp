#include <doctest/doctest.h>

#include "data/json.h"
#include "model/util.h"
#include "tokenizer/tokenizer.h"
#include "tokenizer/unicode.h"
#include "test_tokenizer_util.h"
#include "test_util.h"

#include <cstring>
#include <filesystem>
#include <functional>
#include <map>
#include <sstream>
#include <unistd.h>

namespace {

// SmolLM2's tokenizer.json lives outside the repo (it is not ours to commit); the fixtures were made
// from it by tests/fixtures/tokenizer/gen_fixtures.py.
std::string reference_json() {
    for (const char* p : {"../shared/reference/smollm2-135m-instruct/tokenizer.json",
                          "/work/shared/reference/smollm2-135m-instruct/tokenizer.json"})
        if (file_exists(p)) return p;
    return "";
}

const Tokenizer* reference_tokenizer() {
    static Tokenizer tok;
    static bool loaded = false;
    if (!loaded && !reference_json().empty()) tok = tokenizer_load_hf(reference_json()), loaded = true;
    return loaded ? &tok : nullptr;
}

void warn_skipped() {
    MESSAGE("SKIPPING: SmolLM2 tokenizer.json not found at ../shared/reference/smollm2-135m-instruct/ or "
            "/work/shared/reference/...: the tokenizer is NOT checked against Hugging Face");
}

// What decode(encode(text)) must give: text without the bytes the vocabulary has no token for.
std::string without_missing_bytes(const Tokenizer& t, const std::string& text) {
    std::string out;
    for (char c : text)
        if (t.byte_token[(uint8_t)c] >= 0) out += c;
    return out;
}

std::string temp_path(const char* name) { return "/tmp/" + std::to_string(getpid()) + "_" + name; }

// A tiny hand-made vocabulary (all 256 bytes plus a few merges), so the BPE and .tok code are
// tested even where the reference tokenizer is absent.
Tokenizer tiny_tokenizer() {
    Tokenizer t;
    for (int b = 0; b < 256; b++) t.vocab.push_back(byte_to_unicode((uint8_t)b));
    for (auto [a, b] : std::vector<std::pair<std::string, std::string>>{{"l", "o"}, {"lo", "w"}, {"\xC4\xA0", "low"}, {"e", "r"}}) {
        t.merges.push_back({a, b});
        t.vocab.push_back(a + b);
    }
    t.vocab.push_back("<|end|>");
    t.token_type.assign(t.vocab.size(), TokenType::Normal);
    t.token_type.back() = TokenType::Control;
    t.eos_id = (int32_t)t.vocab.size() - 1;
    tokenizer_build(t);
    return t;
}

}  // namespace

TEST_CASE("unicode: classes and the GPT-2 byte map") {
    CHECK(is_letter('a'));
    CHECK(is_letter(0xD55C));   // 한
    CHECK(is_letter(0x4E2D));   // 中
    CHECK_FALSE(is_letter(0x301));  // combining acute is Mn, not L
    CHECK(is_number(0x663));    // Arabic-Indic three (Nd)
    CHECK(is_number(0x2167));   // Roman numeral eight (Nl)
    CHECK(is_number(0xBD));     // ½ (No)
    // Unicode 16.0's classes, as Hugging Face tokenizers' regexes have them (tokenizer/gen_unicode_tables.py):
    CHECK(is_letter(0x2EBF0));  // CJK Extension I (15.1)
    CHECK(is_letter(0x31350));  // CJK Extension H (15.0)
    CHECK(is_letter(0x1C89));   // Cyrillic capital TJE (16.0)
    CHECK(is_number(0x16D70));  // Kirat Rai digit zero (16.0)
    CHECK_FALSE(is_letter(0x323B0));  // CJK Extension J (17.0): not yet a letter there
    CHECK_FALSE(is_number(0x11DE0));  // Tolong Siki digit zero (17.0): not in \p{N} there,
    CHECK(is_numeric(0x11DE0));       // but split off by the Digits pre-tokenizer (Rust's is_numeric)
    CHECK(is_numeric(0x16FF6));
    CHECK(is_numeric('7'));
    CHECK(is_numeric(0x663));
    CHECK_FALSE(is_numeric('a'));
    CHECK(is_whitespace(0x3000));
    CHECK(is_whitespace(0x85));
    CHECK_FALSE(is_whitespace(0x200B));  // zero width space is not White_Space
    CHECK_FALSE(is_whitespace(0x180E));
    CHECK_FALSE(is_whitespace(0x1F));
    CHECK(byte_to_unicode(' ') == "\xC4\xA0");  // 'Ġ'
    CHECK(byte_to_unicode('A') == "A");
    for (int b = 0; b < 256; b++) {
        uint32_t cp;
        utf8_decode(byte_to_unicode((uint8_t)b), 0, cp);
        CHECK(unicode_to_byte(cp) == b);
    }
    uint32_t cp;
    CHECK(utf8_decode("\xC0\xAF", 0, cp) == 1);  // overlong: one invalid byte
    CHECK(cp == kInvalidCodepoint);
    CHECK(utf8_decode("\xF0\x9F\x98\x80", 0, cp) == 4);
    CHECK(cp == 0x1F600);
}

TEST_CASE("pretokenize: hand-checked splits") {
    auto split = [](PreTokenizerKind k, std::string_view s) {
        std::vector<std::string_view> v;
        pretokenize(k, s, v);
        return std::vector<std::string>(v.begin(), v.end());
    };
    using V = std::vector<std::string>;
    CHECK(split(PreTokenizerKind::GPT2, "Hello  world's 42!") == V{"Hello", " ", " world", "'s", " 42", "!"});
    CHECK(split(PreTokenizerKind::SmolLM, "Hello  world's 42!") == V{"Hello", " ", " world", "'s", " ", "4", "2", "!"});
    CHECK(split(PreTokenizerKind::Llama3, "I'M 12345\n\n  x") == V{"I", "'M", " ", "123", "45", "\n\n", " ", " x"});
    CHECK(split(PreTokenizerKind::Qwen2, "a 123") == V{"a", " ", "1", "2", "3"});
    CHECK(split(PreTokenizerKind::GPT2, "\xFF\xFEok") == V{"\xFF\xFE", "ok"});  // invalid bytes are "other"
    CHECK(split(PreTokenizerKind::GPT2, "").empty());
}

TEST_CASE("pretokenize: GGUF and tokenizer.json names") {
    CHECK(pre_tokenizer_from_gguf("smollm") == PreTokenizerKind::SmolLM);
    CHECK(pre_tokenizer_from_gguf("llama-bpe") == PreTokenizerKind::Llama3);
    CHECK(pre_tokenizer_from_gguf("qwen2") == PreTokenizerKind::Qwen2);
    CHECK(pre_tokenizer_from_gguf("gpt2") == PreTokenizerKind::GPT2);
    CHECK(error_of([] { pre_tokenizer_from_gguf("deepseek-coder"); }).find("'deepseek-coder' is not supported") != std::string::npos);
    JsonValue smol = json_parse(R"({"type": "Sequence", "pretokenizers": [{"type": "Digits", "individual_digits": true},
        {"type": "ByteLevel", "add_prefix_space": false, "trim_offsets": true, "use_regex": true}]})");
    CHECK(pre_tokenizer_from_hf(smol, "t.json") == PreTokenizerKind::SmolLM);
    JsonValue prefix = json_parse(R"({"type": "ByteLevel", "add_prefix_space": true})");
    CHECK(error_of([&] { pre_tokenizer_from_hf(prefix, "t.json"); }).find("t.json: pre_tokenizer (type ByteLevel) is not one we implement") == 0);
}

TEST_CASE("tokenizer: BPE on a hand-made vocabulary") {
    Tokenizer t = tiny_tokenizer();
    int32_t low = token_id(t, "low"), sp_low = token_id(t, "\xC4\xA0low"), er = token_id(t, "er");
    CHECK(encode(t, "lower low") == std::vector<int32_t>{low, er, sp_low});
    CHECK(encode(t, "low<|end|>") == std::vector<int32_t>{low, t.eos_id});
    CHECK(encode(t, "<|end|>", false).size() == 7);  // parse_special=false: plain text
    CHECK(decode(t, encode(t, "<|end|>", false)) == "<|end|>");
    CHECK(decode(t, {low, er, sp_low, t.eos_id}) == "lower low<|end|>");
    CHECK(error_of([&] { decode(t, {(int32_t)t.vocab.size()}); }) == "token id 261 is outside the vocabulary (size 261)");
    Tokenizer bad = t;
    bad.merges.push_back({"q", "zz"});
    CHECK(error_of([&] { tokenizer_build(bad); }) == "tokenizer: merge 4 ('q' + 'zz') refers to a token that is not in the vocabulary");
    bad = t;
    bad.vocab.push_back("low");
    bad.token_type.push_back(TokenType::Normal);
    CHECK(error_of([&] { tokenizer_build(bad); }) == "tokenizer: token 261 ('low') duplicates token 257");
    bad = t;
    bad.bos_id = 999;
    CHECK(error_of([&] { tokenizer_build(bad); }) == "tokenizer: bos id 999 is outside the vocabulary (size 261)");
}

TEST_CASE("tokenizer: any byte string round-trips, invalid UTF-8 included") {
    // the tiny vocabulary has all 256 bytes, so every string must come back whole; SmolLM2's lacks
    // 21, which are dropped (as Hugging Face drops them) and everything else must come back
    Tokenizer tiny = tiny_tokenizer();
    CHECK(tokenizer_missing_bytes(tiny).empty());
    const Tokenizer* ref = reference_tokenizer();
    if (ref) CHECK(tokenizer_missing_bytes(*ref).size() == 21);
    else warn_skipped();
    Rng rng(7);
    int checked = 0;
    for (int i = 0; i < 400; i++) {
        std::string s(rng.next_u64() % 300, '\0');
        // half the strings fully random, half random over a small byte set (spaces, '<', '|', UTF-8 lead
        // and continuation bytes) that stresses the splitters and the special-token matcher
        const char pick[] = " \n\t<|>'sa1\xC3\xA9\xED\xA0\x80\xF0\x9F\xFF";
        for (char& c : s) c = i % 2 ? (char)rng.next_u64() : pick[rng.next_u64() % (sizeof pick - 1)];
        for (const Tokenizer* t : std::vector<const Tokenizer*>{&tiny, ref}) {
            if (!t) continue;
            for (PreTokenizerKind k : {PreTokenizerKind::SmolLM, PreTokenizerKind::Llama3}) {
                Tokenizer tk = *t;
                tk.pre = k;
                std::string want = without_missing_bytes(tk, s);
                CHECK(decode(tk, encode(tk, s)) == want);
                CHECK(decode(tk, encode(tk, s, false)) == want);
                checked++;
            }
        }
    }
    MESSAGE(checked << " random byte strings encoded and decoded back");
}

TEST_CASE("unicode: NFC equals Hugging Face tokenizers' on every fixture; invalid UTF-8 passes through") {
    std::istringstream in(read_file("tests/fixtures/tokenizer/nfc.txt"));
    std::string line;
    int total = 0, same = 0;
    for (int n = 1; std::getline(in, line); n++) {
        size_t tab = line.find('\t');
        REQUIRE(tab != std::string::npos);
        const std::string text = json_parse(line.substr(0, tab)).string, want = json_parse(line.substr(tab + 1)).string;
        total++;
        if (nfc(text) == want) same++;
        else if (total - same <= 5) MESSAGE("nfc.txt line " << n << ": " << json_quote(text) << " gives " << json_quote(nfc(text)));
    }
    MESSAGE(same << "/" << total << " NFC fixtures identical");
    CHECK(total > 6000);
    CHECK(same == total);
    CHECK(nfc("a\xff" "e\xcc\x81") == "a\xff\xc3\xa9");        // e + combining acute composes after a bad byte
    CHECK(nfc("e\xff\xcc\x81") == "e\xff\xcc\x81");            // a bad byte between them blocks it
    CHECK(nfc("\xcc\x81\xcc\xa3") == "\xcc\xa3\xcc\x81");      // marks reordered even with no base
}

TEST_CASE("tokenizer: identical ids to Hugging Face tokenizers on every fixture") {
    const Tokenizer* ref = reference_tokenizer();
    if (!ref) return warn_skipped();
    std::vector<Fixture> fixtures = load_fixtures("tests/fixtures/tokenizer/encode.txt");
    std::map<std::string, std::pair<PreTokenizerKind, bool>> kinds = {
        {"smollm", {PreTokenizerKind::SmolLM, false}}, {"gpt2", {PreTokenizerKind::GPT2, false}},
        {"llama3", {PreTokenizerKind::Llama3, true}}, {"qwen2", {PreTokenizerKind::Qwen2, false}},
        {"qwen2nfc", {PreTokenizerKind::Qwen2, false}}};
    CHECK(ref->pre == PreTokenizerKind::SmolLM);  // the real file's pre_tokenizer is recognised
    int total = 0, same = 0;
    std::map<std::string, int> per_kind;
    for (const Fixture& f : fixtures) {
        REQUIRE(kinds.count(f.kind));
        Tokenizer t = *ref;
        std::tie(t.pre, t.ignore_merges) = kinds[f.kind];
        t.nfc = f.kind == "qwen2nfc";  // Qwen2's NFC normalizer
        std::vector<int32_t> got = encode(t, f.text);
        total++, per_kind[f.kind]++;
        if (got == f.ids) {
            same++;
        } else if (total - same <= 5) {
            MESSAGE(f.kind << " " << json_quote(f.text) << "\n  expected " << ids_str(f.ids) << "\n  got      " << ids_str(got));
        }
        CHECK(decode(t, got) == without_missing_bytes(t, t.nfc ? nfc(f.text) : f.text));
    }
    MESSAGE(same << "/" << total << " fixture encodings identical (" << per_kind["smollm"] << " strings x " << per_kind.size() << " tokenizer configurations)");
    CHECK(per_kind["smollm"] >= 200);
    CHECK(same == total);
}

// Our .tok, and Hugging Face's tokenizer.json + tokenizer_config.json (./export --hf): each keeps every
// field and the ids. (In tokenizer.json GGUF's other token types — Unknown, Unused, Byte — are plain
// vocabulary: they play no part in byte-level BPE.)
TEST_CASE("tokenizer: .tok and tokenizer.json save/load keep every field and give identical ids") {
    const Tokenizer* ref = reference_tokenizer();
    Tokenizer tiny = tiny_tokenizer();
    tiny.chat_template = ChatTemplate{ChatTemplateKind::ChatML, "Be brief, don't \\ ramble.\nOK?"};
    tiny.ignore_merges = true;
    Tokenizer plain = tiny_tokenizer();
    plain.pre = PreTokenizerKind::Qwen2;
    plain.nfc = true;
    plain.bos_id = 0, plain.pad_id = 3;
    Tokenizer qwen3 = plain;  // the last template kind: the .tok header and tokenizer_config.json keep it
    qwen3.chat_template.kind = ChatTemplateKind::Qwen3;
    if (!ref) warn_skipped();
    const std::string gguf_path = "models/smollm2-135m-instruct.tok";  // from the packaged GGUF (`make model`)
    Tokenizer from_gguf;
    if (file_exists(gguf_path)) from_gguf = tokenizer_load(gguf_path);
    else MESSAGE("SKIPPING the GGUF tokenizer round trip: " << gguf_path << " not found (make model)");
    auto hf_types = [](std::vector<TokenType> types) {
        for (TokenType& t : types) t = t == TokenType::Control || t == TokenType::UserDefined ? t : TokenType::Normal;
        return types;
    };
    for (bool hf : {false, true})
        for (const Tokenizer* t : std::vector<const Tokenizer*>{&tiny, &plain, &qwen3, ref, from_gguf.vocab.empty() ? nullptr : &from_gguf}) {
            if (!t) continue;
            CAPTURE(hf);
            Tokenizer u;
            if (hf) {
                std::string dir = temp_path("roundtrip_hf");
                std::filesystem::create_directories(dir);
                tokenizer_save_hf(*t, dir, 2048);
                u = tokenizer_load_hf(dir + "/tokenizer.json");
                std::filesystem::remove_all(dir);
            } else {
                std::string path = temp_path("roundtrip.tok");
                tokenizer_save(*t, path);
                u = tokenizer_load(path);
                remove(path.c_str());
            }
            CHECK(u.vocab == t->vocab);
            CHECK(u.token_type == (hf ? hf_types(t->token_type) : t->token_type));
            CHECK(u.merges == t->merges);
            CHECK(u.pre == t->pre);
            CHECK(u.chat_template.kind == t->chat_template.kind);
            CHECK(u.chat_template.default_system == t->chat_template.default_system);
            CHECK(u.ignore_merges == t->ignore_merges);
            CHECK(u.nfc == t->nfc);
            CHECK(u.bos_id == t->bos_id);
            CHECK(u.eos_id == t->eos_id);
            CHECK(u.pad_id == t->pad_id);
            if (t == ref || t == &from_gguf) {
                for (const Fixture& f : load_fixtures("tests/fixtures/tokenizer/encode.txt"))
                    if (f.kind == "smollm") CHECK(encode(u, f.text) == f.ids);
                CHECK(u.bos_id == 1);  // from config.json beside tokenizer.json, or the GGUF
                CHECK(u.eos_id == 2);
                CHECK(u.chat_template.kind == ChatTemplateKind::ChatML);
            }
        }
}

TEST_CASE("tokenizer: damaged .tok files fail naming the file and the problem") {
    Tokenizer t = tiny_tokenizer();
    std::string good_path = temp_path("good.tok"), bad_path = temp_path("bad.tok");
    tokenizer_save(t, good_path);
    std::string good = read_file(good_path);
    remove(good_path.c_str());
    auto load_bytes = [&](const std::string& bytes) {
        FILE* f = fopen(bad_path.c_str(), "wb");
        fwrite(bytes.data(), 1, bytes.size(), f);
        fclose(f);
        std::string err = error_of([&] { tokenizer_load(bad_path); });
        remove(bad_path.c_str());
        return err;
    };
    CHECK(load_bytes("XTOK" + good.substr(4)) == bad_path + ": not a .tok tokenizer file (bad magic); convert a tokenizer.json "
                                                        "with ./tokenize --tokenizer tokenizer.json --save out.tok");
    std::string v3 = good;
    v3[4] = 3;
    CHECK(load_bytes(v3) == bad_path + ": .tok version 3 is not supported (this build reads versions 1 to 2)");
    CHECK(load_bytes(good.substr(0, 2)) == bad_path + ": file is truncated: magic needs 4 bytes at offset 0 but only 2 remain");
    // cut anywhere after the header: every cut is caught, by the header/length check or a read
    for (size_t cut : {size_t(20), size_t(48), good.size() / 2, good.size() - 1}) {
        std::string err = load_bytes(good.substr(0, cut));
        CHECK(err.find(bad_path + ": ") == 0);
        CHECK((err.find("truncated") != std::string::npos));
    }
    CHECK(load_bytes(good + "xx") == bad_path + ": 2 unexpected bytes after the last merge: the file is corrupt");
    std::string huge = good;
    uint32_t n = 0x7FFFFFFF;
    memcpy(&huge[8], &n, 4);  // vocab size
    CHECK(load_bytes(huge).find("header says 2147483647 tokens") != std::string::npos);
    CHECK(error_of([&] { tokenizer_load("/nonexistent/x.tok"); }).find("/nonexistent/x.tok: cannot open") == 0);
}

TEST_CASE("tokenizer: encodes megabytes in well under seconds") {
    const Tokenizer* ref = reference_tokenizer();
    if (!ref) return warn_skipped();
    std::string text;
    for (const Fixture& f : load_fixtures("tests/fixtures/tokenizer/encode.txt")) text += f.text + "\n";
    Rng rng(3);
    // 2 MB: fixture text plus random letters so that most words are new to the cache
    while (text.size() < (2u << 20)) {
        for (int k = 0; k < 6; k++) text += (char)('a' + rng.next_u64() % 26);
        text += rng.next_u64() % 8 ? " " : ".\n";
    }
    double t0 = now_seconds();
    std::vector<int32_t> ids = encode(*ref, text);
    double dt = now_seconds() - t0;
    MESSAGE("encoded " << text.size() / 1e6 << " MB into " << ids.size() << " tokens in " << dt << " s");
    CHECK(decode(*ref, ids) == without_missing_bytes(*ref, text));
    CHECK(dt < 10.0);
}

TEST_CASE("tokenizer: tokenizer.json with its side files, and what it refuses") {
    // a minimal byte-level BPE tokenizer.json: 256 byte tokens, one merge, one special token
    std::string dir = temp_path("hf");
    REQUIRE(system(("mkdir -p " + dir).c_str()) == 0);
    std::string vocab;
    for (int b = 0; b < 256; b++) vocab += json_quote(byte_to_unicode((uint8_t)b)) + ": " + std::to_string(b) + ", ";
    auto tokenizer_json = [&](const std::string& extra_model, const std::string& extra_top) {
        return "{\"added_tokens\": [{\"id\": 257, \"content\": \"<|im_start|>\", \"special\": true}], " + extra_top +
               "\"pre_tokenizer\": {\"type\": \"ByteLevel\", \"add_prefix_space\": false, \"use_regex\": true},"
               "\"model\": {\"type\": \"BPE\", " + extra_model + "\"vocab\": {" + vocab + "\"ab\": 256}, \"merges\": [[\"a\", \"b\"]]}}";
    };
    auto write = [&](const std::string& name, const std::string& text) {
        FILE* f = fopen((dir + "/" + name).c_str(), "wb");
        fwrite(text.data(), 1, text.size(), f);
        fclose(f);
    };
    std::string path = dir + "/tokenizer.json";
    write("tokenizer.json", tokenizer_json("", ""));
    write("tokenizer_config.json", "{\"eos_token\": {\"content\": \"<|im_start|>\"}, \"chat_template\": " +
                                       json_quote("{{ '<|im_start|>system\\nBe kind.<|im_end|>\\n' }}") + "}");
    Tokenizer t = tokenizer_load_hf(path);
    CHECK(t.vocab.size() == 258);
    CHECK(t.pre == PreTokenizerKind::GPT2);
    CHECK(encode(t, "abc<|im_start|>") == std::vector<int32_t>{256, 'c', 257});
    CHECK(t.eos_id == 257);  // found by its text in tokenizer_config.json
    CHECK(t.chat_template.kind == ChatTemplateKind::ChatML);
    CHECK(t.chat_template.default_system == "Be kind.");
    write("config.json", "{\"eos_token_id\": 97, \"bos_token_id\": 98}");
    t = tokenizer_load_hf(path);
    CHECK(t.eos_id == 97);  // config.json takes precedence
    CHECK(t.bos_id == 98);
    // transformers now saves the template as chat_template.jinja, and prefers it to tokenizer_config.json's
    write("chat_template.jinja", "{{ '<|im_start|>system\\nBe brief.<|im_end|>\\n' }}");
    CHECK(tokenizer_load_hf(path).chat_template.default_system == "Be brief.");
    std::remove((dir + "/chat_template.jinja").c_str());

    auto load_error = [&](const std::string& text) {
        write("tokenizer.json", text);
        return error_of([&] { tokenizer_load_hf(path); });
    };
    CHECK(load_error(tokenizer_json("", "\"normalizer\": {\"type\": \"NFKC\"}, ")) ==
          path + ": the normalizer is not NFC: only NFC (or none) is implemented for byte-level BPE tokenizers");
    write("tokenizer.json", tokenizer_json("", "\"normalizer\": {\"type\": \"Sequence\", \"normalizers\": [{\"type\": \"NFC\"}]}, "));
    CHECK(tokenizer_load_hf(path).nfc);
    // byte_fallback makes it SentencePiece-style, which has no byte-level pre-tokenizer
    CHECK(load_error(tokenizer_json("\"byte_fallback\": true, ", "")).find(path + ": the pre_tokenizer is not one we implement for a SentencePiece") == 0);
    CHECK(load_error("{\"model\": {\"type\": \"WordPiece\"}}") ==
          path + ": model.type is 'WordPiece': only BPE tokenizers (byte-level or SentencePiece-style) are supported");
    // Another JSON file of the model's folder, passed for its tokenizer.json.
    const std::string other = path + " is not a tokenizer.json (no \"model\" section)";
    const std::string pass = ": pass the model's tokenizer.json, tokenizer.model or .tok";
    CHECK(load_error("{\"architectures\": [\"LlamaForCausalLM\"], \"model_type\": \"llama\"}") ==
          other + " (it looks like a model's config.json)" + pass);
    CHECK(load_error("{\"tokenizer_class\": \"GPT2Tokenizer\"}") == other + " (it looks like a tokenizer_config.json)" + pass);
    CHECK(load_error("[1, 2]") == other + pass);
    CHECK(load_error("{\"model\": 3}") == path + ": \"model\" should be an object, not a number");
    CHECK(load_error("{\"model\": {\"type\": \"BPE\",\n \"vocab\": {]}}") == path + ": line 2, column 12: expected a string key in object");
    std::string holey = tokenizer_json("", "");
    holey.replace(holey.find("\"id\": 257"), 9, "\"id\": 300");
    CHECK(load_error(holey) == path + ": no token has id 257: ids must be contiguous from 0");
    // an id of two billion: the same message, without sizing the vocabulary for it (found by fuzzing)
    holey.replace(holey.find("\"id\": 300"), 9, "\"id\": 2000000000");
    CHECK(load_error(holey) == path + ": no token has id 257: ids must be contiguous from 0");
    std::string single = tokenizer_json("", "");
    single.replace(single.find("\"special\": true"), 15, "\"special\": true, \"single_word\": true");
    CHECK(load_error(single) == path + ": added_tokens[0] uses single_word, which we do not implement");
    REQUIRE(system(("rm -rf " + dir).c_str()) == 0);
}
