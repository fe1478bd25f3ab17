// RAFT builder: oracle placement, distractor choice, the no-oracle share, reproducibility.
#include <doctest/doctest.h>

#include <string>

#include "data/raft.h"

namespace {

std::vector<RaftQuestion> questions(int n) {
    std::string jsonl;
    for (int i = 0; i < n; i++)
        jsonl += "{\"question\": \"Q" + std::to_string(i) + "?\", \"answer\": \"A" + std::to_string(i) +
                 "\", \"oracle\": " + (i % 3 == 0 ? "[\"oracle " + std::to_string(i) + "a\", \"oracle " + std::to_string(i) + "b\"]"
                                                  : "\"oracle " + std::to_string(i) + "\"") + "}\r\n";
    return raft_parse_questions(jsonl, "q.jsonl");
}

std::vector<std::string> pool(int n) {
    std::vector<std::string> p;
    for (int i = 0; i < n; i++) p.push_back("distractor " + std::to_string(i));
    p.push_back("oracle 1");  // a question's own oracle in the pool must never be its distractor
    p.push_back("distractor 0");  // duplicates collapse
    return p;
}

int count(const std::string& s, const std::string& what) {
    int n = 0;
    for (size_t at = s.find(what); at != std::string::npos; at = s.find(what, at + 1)) n++;
    return n;
}

}  // namespace

TEST_CASE("raft: oracles plus k distractors, an exact no-oracle share, reproducible by seed") {
    auto qs = questions(20);
    REQUIRE(qs.size() == 20);
    CHECK(qs[3].oracles.size() == 2);
    // an oracle listed twice is one document (it appeared twice in the context)
    CHECK(raft_parse_questions(R"({"question": "Q?", "answer": "A", "oracle": ["d", "e", "d"]})" "\n", "q.jsonl")[0].oracles ==
          std::vector<std::string>{"d", "e"});
    CHECK(qs[4].line == 5);
    RaftOptions opt;
    opt.k = 3;
    opt.p_no_oracle = 0.25;
    opt.seed = 5;
    auto items = raft_build(qs, pool(10), opt);
    REQUIRE(items.size() == 20);
    int abstained = 0;
    for (size_t i = 0; i < items.size(); i++) {
        const TaskItem& it = items[i];
        size_t n_docs = 3 + qs[i].oracles.size();
        CHECK(count(it.input, "Document ") == (int)n_docs);
        CHECK(it.input.find("Question: Q" + std::to_string(i) + "?") != std::string::npos);
        CHECK(it.instruction.find(opt.abstain) != std::string::npos);
        bool has_oracle = it.output != opt.abstain;
        abstained += !has_oracle;
        if (has_oracle) CHECK(it.output == "A" + std::to_string(i));
        for (const std::string& o : qs[i].oracles) CHECK(count(it.input, o + "\n") == (has_oracle ? 1 : 0));
        // Distractors are distinct.
        for (int d = 0; d < 10; d++) CHECK(count(it.input, "distractor " + std::to_string(d) + "\n") <= 1);
        int pool_oracle = i != 1 && count(it.input, "oracle 1\n");  // another question's oracle drawn as a distractor
        CHECK(count(it.input, "distractor ") + pool_oracle == (int)n_docs - (has_oracle ? (int)qs[i].oracles.size() : 0));
    }
    CHECK(abstained == 5);

    auto again = raft_build(qs, pool(10), opt);
    opt.seed = 6;
    auto other = raft_build(qs, pool(10), opt);
    bool same_again = true, same_other = true;
    for (size_t i = 0; i < items.size(); i++) {
        same_again &= again[i].input == items[i].input && again[i].output == items[i].output;
        same_other &= other[i].input == items[i].input;
    }
    CHECK(same_again);
    CHECK(!same_other);

    // The oracle's position varies: it is not always Document 1.
    int first = 0;
    for (size_t i = 0; i < items.size(); i++)
        if (items[i].output != opt.abstain) first += items[i].input.rfind("Document 1:\noracle", 0) == 0;
    CHECK(first < 10);
}

TEST_CASE("raft: bad questions and a pool too small fail with a clear message") {
    CHECK_THROWS_WITH(raft_parse_questions("{\"question\": \"q\", \"answer\": \"a\"}\n{\"question\": 1}\n", "q.jsonl"),
                      doctest::Contains("q.jsonl: 2 bad question lines:\n  q.jsonl:1: \"oracle\" must be"));
    CHECK_THROWS_WITH(raft_parse_questions("\n\n", "q.jsonl"), doctest::Contains("no questions"));
    RaftOptions opt;
    opt.k = 12;
    CHECK_THROWS_WITH(raft_build(questions(2), pool(10), opt), doctest::Contains("needs 12 distractors but the pool has only 11"));
    opt.k = 1;
    opt.p_no_oracle = 1.5;
    CHECK_THROWS_WITH(raft_build(questions(2), pool(10), opt), doctest::Contains("--p-no-oracle"));
    // An empty abstaining answer made every no-oracle example a line ./train refuses (empty "output").
    opt.p_no_oracle = 0.5;
    for (const char* blank : {"", " \n"}) {
        opt.abstain = blank;
        CHECK_THROWS_WITH(raft_build(questions(2), pool(10), opt), doctest::Contains("--abstain: the abstaining answer is empty"));
    }
}

// A questions table, as the pool may be one: the same questions as jsonl lines; a row named by its line.
TEST_CASE("raft: questions from a .csv or .tsv table") {
    const auto qs = raft_parse_questions("\xEF\xBB\xBFQuestion,answer,oracle,id\r\n"
                                         "\"Capital of France, please?\",Paris,\"Paris is the capital\nof France.\",7\r\n",
                                         "q.csv");
    REQUIRE(qs.size() == 1);
    CHECK(qs[0].question == "Capital of France, please?");
    CHECK(qs[0].answer == "Paris");
    CHECK(qs[0].oracles == std::vector<std::string>{"Paris is the capital\nof France."});
    CHECK(qs[0].line == 2);
    CHECK(raft_parse_questions("question\tanswer\toracle\nq\ta\td\n", "q.TSV").at(0).oracles[0] == "d");
    CHECK_THROWS_WITH(raft_parse_questions("question,answer\nq,a\n", "q.csv"),
                      doctest::Contains("q.csv:1: the header row names no 'oracle' column"));
    CHECK_THROWS_WITH(raft_parse_questions("question,answer,oracle\nq,a,d\nq2,,d\nq3,a\n", "q.csv"),
                      doctest::Contains("q.csv: 2 bad question lines:\n  q.csv:3: \"answer\" must be a non-empty string\n"
                                        "  q.csv:4: 2 fields where the header row names 3"));
}
