// Helpers shared by the data tests: a toy tokenizer (one id per byte, ChatML's markers as special
// ids) and scratch files.
#pragma once
#include <cstdio>
#include <string>
#include <unistd.h>

#include "data/dataset.h"
#include "model/util.h"

constexpr int32_t kImStart = 256, kImEnd = 257, kEos = 258;

// Bytes are ids 0..255; with parse_special, "<|im_start|>" and "<|im_end|>" become 256 and 257.
inline DataTokenizer byte_tokenizer() {
    DataTokenizer t;
    t.encode = [](std::string_view s, bool parse_special, TextStart) {
        std::vector<int32_t> ids;
        for (size_t i = 0; i < s.size();) {
            if (parse_special && s.compare(i, 12, "<|im_start|>") == 0) { ids.push_back(kImStart); i += 12; }
            else if (parse_special && s.compare(i, 10, "<|im_end|>") == 0) { ids.push_back(kImEnd); i += 10; }
            else ids.push_back((unsigned char)s[i++]);
        }
        return ids;
    };
    t.is_special = [](int32_t id) { return id >= 256; };
    t.eos = kEos;
    t.chat_template.kind = ChatTemplateKind::ChatML;
    return t;
}

// The inverse of byte_tokenizer, for readable assertions.
inline std::string toy_decode(const std::vector<int32_t>& ids) {
    std::string s;
    for (int32_t id : ids) s += id == kImStart ? "<|im_start|>" : id == kImEnd ? "<|im_end|>" : id == kEos ? "<eos>" : std::string(1, (char)id);
    return s;
}

// The tokens of `e` whose weight is `w`, decoded.
inline std::string tokens_with_weight(const Example& e, float w) {
    std::vector<int32_t> ids;
    for (size_t i = 0; i < e.size(); i++)
        if (e.weights[i] == w) ids.push_back(e.tokens[i]);
    return toy_decode(ids);
}

// A scratch directory removed with its files at the end of a test.
struct ScratchDir {
    std::string path;
    std::vector<std::string> files;
    ScratchDir() {
        char tmpl[] = "/tmp/test_data_XXXXXX";
        if (!mkdtemp(tmpl)) fail("mkdtemp failed");
        path = tmpl;
    }
    ~ScratchDir() {
        for (const std::string& f : files) unlink(f.c_str());
        rmdir(path.c_str());
    }
    std::string write(const std::string& name, const std::string& bytes) {
        std::string p = path + "/" + name;
        files.push_back(p);
        FILE* f = std::fopen(p.c_str(), "wb");
        if (!f) fail("cannot write %s", p.c_str());
        std::fwrite(bytes.data(), 1, bytes.size(), f);
        std::fclose(f);
        return p;
    }
};

// Reads `bytes` as a file called `name` with the toy tokenizer.
inline std::vector<Example> read_bytes(ScratchDir& dir, const std::string& name, const std::string& bytes,
                                       const DataOptions& opt, DataReport& report) {
    return read_dataset(dir.write(name, bytes), byte_tokenizer(), opt, report);
}
