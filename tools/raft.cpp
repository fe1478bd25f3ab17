// ./raft: builds RAFT training data (data/raft.h) as instruction jsonl that ./train reads.
//   ./raft --questions qa.jsonl --pool docs.jsonl --out raft.jsonl [--k 3] [--p-no-oracle 0.2] [--seed 1]
#include <cstdio>
#include <cstdlib>
#include <filesystem>
#include <string>

#include "data/raft.h"
#include "data/records.h"
#include "model/util.h"
#include "tools/cli.h"

static const char* kUsage =
    "usage: raft --questions FILE --pool FILE --out FILE [options]\n"
    "  --questions FILE   jsonl: {\"question\", \"answer\", \"oracle\": \"doc\" or [\"doc\", ...]}, or a .csv/.tsv\n"
    "                     with the columns question, answer, oracle (one document)\n"
    "  --pool FILE        jsonl of {\"text\": \"doc\"}, or a .csv/.tsv with a text column (distractors are drawn from it)\n"
    "  --out FILE         instruction jsonl to write (.jsonl)\n"
    "  --k N              distractors per example (3)\n"
    "  --p-no-oracle P    share of examples with only distractors and the abstaining answer (0.2)\n"
    "  --seed N           1\n"
    "  --abstain TEXT     the abstaining answer (\"The documents do not contain the answer.\")\n";

// The pool's documents; any line that is not a {"text"} document stops the build.
static std::vector<std::string> read_pool(const std::string& path) {
    ParsedFile pf = parse_records(read_file(path), path, is_records_path(path));
    if (!pf.invalid.empty())
        fail("%s:%d: %s (%zu bad lines)", path.c_str(), pf.invalid[0].line, pf.invalid[0].what.c_str(), pf.invalid.size());
    std::vector<std::string> docs;
    for (const Record& r : pf.records) {
        if (!r.is_text()) fail("%s:%d: expected a document {\"text\": ...}, got a conversation", path.c_str(), r.line);
        docs.push_back(r.text);
    }
    return docs;
}

int main(int argc, char** argv) {
    return run_main([&] {
        std::string questions, pool, out;
        RaftOptions opt;
        Args args(argc, argv, "see ./raft --help");
        while (args.next()) {
            if (args.is("--questions")) questions = args.value();
            else if (args.is("--pool")) pool = args.value();
            else if (args.is("--out")) out = args.value();
            else if (args.is("--k")) opt.k = args.integer();
            else if (args.is("--p-no-oracle")) opt.p_no_oracle = args.number();
            else if (args.is("--seed")) opt.seed = (uint64_t)args.integer();
            else if (args.is("--abstain")) opt.abstain = args.value();
            else if (args.is("-h") || args.is("--help")) { std::printf("%s", kUsage); return 0; }
            else args.unknown();
        }
        if (questions.empty() || pool.empty() || out.empty()) fail("--questions, --pool and --out are required\n%s", kUsage);
        require_jsonl_output_name(out, "--out");  // the examples are jsonl
        // AtomicFile would replace an input with the examples built from it, the questions or documents lost.
        for (const std::string* input : {&questions, &pool})
            if (same_file(out, *input))
                fail("--out %s is the %s file: the examples would replace it; write them elsewhere", out.c_str(),
                     input == &questions ? "--questions" : "--pool");
        auto qs = raft_parse_questions(read_file(questions), questions);
        auto docs = read_pool(pool);
        auto items = raft_build(qs, docs, opt);
        AtomicFile f(out);
        size_t abstain = 0;
        for (const TaskItem& it : items) {
            std::string line = task_item_jsonl(it) + "\n";
            f.write(line.data(), line.size());
            abstain += it.output == opt.abstain;
        }
        f.commit();
        std::printf("wrote %s: %zu examples (%zu without the oracle), %d distractors each, pool of %zu documents\n",
                    out.c_str(), items.size(), abstain, opt.k, docs.size());
        return 0;
    });
}
