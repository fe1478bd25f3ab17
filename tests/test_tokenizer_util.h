// Helpers shared by the tokenizer tests: the encode fixtures that Hugging Face `tokenizers` wrote
// (tests/fixtures/tokenizer/gen_fixtures.py, gen_spm_fixtures.py).
#pragma once
#include <doctest/doctest.h>

#include <sstream>
#include <string>
#include <vector>

#include "data/json.h"
#include "model/util.h"
#include "tokenizer/tokenizer.h"

// One line: kind TAB json-string TAB space-separated ids.
struct Fixture {
    std::string kind, text;
    std::vector<int32_t> ids;
};

inline std::vector<Fixture> load_fixtures(const std::string& path) {
    std::vector<Fixture> out;
    std::istringstream in(read_file(path));
    std::string line;
    for (int n = 1; std::getline(in, line); n++) {
        size_t t1 = line.find('\t'), t2 = line.find('\t', t1 + 1);
        if (t1 == std::string::npos || t2 == std::string::npos) fail("%s line %d: expected kind TAB text TAB ids", path.c_str(), n);
        Fixture f{line.substr(0, t1), json_parse(line.substr(t1 + 1, t2 - t1 - 1)).string, {}};
        std::istringstream ids(line.substr(t2 + 1));
        for (int32_t id; ids >> id;) f.ids.push_back(id);
        out.push_back(std::move(f));
    }
    return out;
}

inline std::string ids_str(const std::vector<int32_t>& ids) {
    std::string s;
    for (int32_t id : ids) s += std::to_string(id) + " ";
    return s;
}

// Every fixture of `kind` encodes with `t` to Hugging Face's ids (a mismatch fails a CHECK naming the
// text and both id lists); returns how many were checked.
inline int check_fixtures(const Tokenizer& t, const std::vector<Fixture>& fixtures, const std::string& kind) {
    int n = 0;
    for (const Fixture& f : fixtures) {
        if (f.kind != kind) continue;
        n++;
        std::vector<int32_t> got = encode(t, f.text);
        if (got != f.ids) {
            INFO(kind << " text " << f.text << "\n  want " << ids_str(f.ids) << "\n  got  " << ids_str(got));
            CHECK(got == f.ids);
        }
    }
    return n;
}
