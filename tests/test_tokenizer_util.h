// Helpers shared by the tokenizer tests: the encode fixtures that Hugging Face `tokenizers` wrote
// (tests/fixtures/tokenizer/gen_fixtures.py, gen_spm_fixtures.py).
#pragma once
#include <doctest/doctest.h>

#include <sstream>
#include <string>
#include <vector>

#include "data/dataset.h"
#include "data/json.h"
#include "data/records.h"
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

// A conversation (one jsonl line) through the data pipeline with the tokenizer's own template: its
// rendering must be the fixture `kind`'s text (apply_chat_template's) and its tokens the fixture's
// ids. Returns the example, whose learned tokens the caller checks.
inline Example check_conversation(const Tokenizer& t, const std::vector<Fixture>& fixtures, const std::string& kind,
                                  const std::string& jsonl) {
    const Fixture* want = nullptr;
    for (const Fixture& f : fixtures)
        if (f.kind == kind) want = &f;
    REQUIRE(want);
    ParsedFile pf = parse_records(jsonl, "chat.jsonl", true);
    REQUIRE(pf.records.size() == 1);
    CHECK(chat_render(t.chat_template, pf.records[0].messages, false) == want->text);
    DataOptions opt;
    DataReport report;
    std::vector<Example> ex = build_examples(pf, data_tokenizer(t, t.chat_template), opt, report);
    REQUIRE(ex.size() == 1);
    CHECK(ex[0].tokens == want->ids);
    return ex[0];
}

// The text of the tokens of `e` that carry loss weight 1.
inline std::string learned_text(const Tokenizer& t, const Example& e) {
    std::vector<int32_t> learned;
    for (size_t k = 0; k < e.size(); k++)
        if (e.weights[k] == 1.0f) learned.push_back(e.tokens[k]);
    return decode(t, learned);
}
