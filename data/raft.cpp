#include "data/raft.h"

#include <algorithm>
#include <cmath>
#include <filesystem>
#include <numeric>
#include <stdexcept>
#include <unordered_map>
#include <unordered_set>

#include "data/csv.h"
#include "data/json.h"
#include "model/util.h"

namespace {

bool nonempty_string(const JsonValue* v) {
    return v && v->type == JsonValue::String && v->string.find_first_not_of(" \t\r\n") != std::string::npos;
}

// What is wrong with one questions line, or "" when it is a valid question.
std::string parse_question(const JsonValue& v, RaftQuestion& q) {
    if (v.type != JsonValue::Object) return "expected a JSON object {\"question\", \"answer\", \"oracle\"}";
    if (!nonempty_string(v.get("question"))) return "\"question\" must be a non-empty string";
    if (!nonempty_string(v.get("answer"))) return "\"answer\" must be a non-empty string";
    q.question = v.get("question")->string;
    q.answer = v.get("answer")->string;
    const JsonValue* o = v.get("oracle");
    if (nonempty_string(o)) q.oracles.push_back(o->string);
    else if (o && o->type == JsonValue::Array && !o->array.empty()) {
        for (const JsonValue& d : o->array) {
            if (!nonempty_string(&d)) return "\"oracle\" array entries must be non-empty strings";
            // a document listed twice is one document: in the context once, as the pool's duplicates are
            if (std::find(q.oracles.begin(), q.oracles.end(), d.string) == q.oracles.end()) q.oracles.push_back(d.string);
        }
    } else return "\"oracle\" must be a non-empty string or array of strings";
    return "";
}

}  // namespace

std::vector<RaftQuestion> raft_parse_questions(const std::string& bytes, const std::string& path) {
    std::vector<RaftQuestion> out;
    std::string errors;
    int n_errors = 0, line = 0;
    const auto add = [&](const JsonValue& v, int at_line, const std::string& bad_json) {
        RaftQuestion q;
        q.line = at_line;
        const std::string why = bad_json.empty() ? parse_question(v, q) : bad_json;
        if (why.empty()) out.push_back(std::move(q));
        else if (++n_errors <= 10) errors += "\n  " + path + ":" + std::to_string(at_line) + ": " + why;
    };
    // A .csv or .tsv table (the pool may be one): a header row naming question, answer and oracle,
    // a row a question with one oracle document
    std::string ext = std::filesystem::path(path).extension().string();
    for (char& c : ext) c = (char)std::tolower((unsigned char)c);
    if (ext == ".csv" || ext == ".tsv") {
        std::string_view text(bytes);
        if (text.substr(0, 3) == "\xEF\xBB\xBF") text.remove_prefix(3);
        const std::vector<CsvRow> rows = csv_rows(text, ext == ".csv" ? ',' : '\t', path.c_str());
        if (rows.empty()) fail("%s: no questions; expected a header row naming question, answer and oracle", path.c_str());
        std::vector<std::string> names = rows[0].fields;
        for (std::string& n : names) {
            for (char& c : n) c = (char)std::tolower((unsigned char)c);
            n.erase(0, n.find_first_not_of(' '));
            n.erase(n.find_last_not_of(' ') + 1);
        }
        for (const char* need : {"question", "answer", "oracle"})
            if (std::find(names.begin(), names.end(), need) == names.end())
                fail("%s:%d: the header row names no '%s' column: a questions table has the columns question, answer "
                     "and oracle (one document a row; jsonl's \"oracle\" may list several)", path.c_str(), rows[0].line, need);
        for (size_t i = 1; i < rows.size(); i++) {
            JsonValue v;
            v.type = JsonValue::Object;
            for (size_t k = 0; k < names.size() && k < rows[i].fields.size(); k++) {
                JsonValue cell;
                cell.type = JsonValue::String, cell.string = rows[i].fields[k];
                v.object.emplace_back(names[k], std::move(cell));
            }
            add(v, rows[i].line, rows[i].fields.size() == names.size() ? "" :
                std::to_string(rows[i].fields.size()) + " fields where the header row names " + std::to_string(names.size()));
        }
    }
    for (size_t at = 0; ext != ".csv" && ext != ".tsv" && at < bytes.size();) {
        size_t nl = bytes.find('\n', at);
        if (nl == std::string::npos) nl = bytes.size();
        std::string_view text(bytes.data() + at, nl - at);
        at = nl + 1;
        line++;
        if (!text.empty() && text.back() == '\r') text.remove_suffix(1);
        if (text.find_first_not_of(" \t\r\xEF\xBB\xBF") == std::string_view::npos) continue;
        JsonValue v;
        std::string bad_json;
        try {
            v = json_parse(text);
        } catch (const std::runtime_error& e) {
            bad_json = std::string("bad JSON: ") + e.what();
        }
        add(v, line, bad_json);
    }
    if (n_errors) fail("%s: %d bad question line%s:%s", path.c_str(), n_errors, n_errors == 1 ? "" : "s", errors.c_str());
    if (out.empty()) fail("%s: no questions; expected jsonl lines {\"question\", \"answer\", \"oracle\"}", path.c_str());
    return out;
}

std::vector<TaskItem> raft_build(const std::vector<RaftQuestion>& questions, const std::vector<std::string>& pool_in,
                                 const RaftOptions& opt) {
    if (opt.k < 0) fail("--k %d: expected a count >= 0", opt.k);
    if (!(opt.p_no_oracle >= 0.0 && opt.p_no_oracle <= 1.0)) fail("--p-no-oracle %g: expected a share in [0, 1]", opt.p_no_oracle);
    // The abstaining examples' output: empty, every one of them is a line ./train refuses ("field output is empty").
    if (opt.abstain.find_first_not_of(" \t\r\n") == std::string::npos)
        fail("--abstain: the abstaining answer is empty; the examples without the oracle need an answer to learn");
    // Distinct documents only, so two distractors never repeat one text.
    std::vector<std::string> pool;
    std::unordered_map<std::string, size_t> index;
    for (const std::string& d : pool_in)
        if (index.emplace(d, pool.size()).second) pool.push_back(d);

    Rng rng(opt.seed);
    size_t n = questions.size();
    std::vector<size_t> perm(n);
    std::iota(perm.begin(), perm.end(), 0);
    for (size_t i = n; i > 1; i--) std::swap(perm[i - 1], perm[rng.next_u64() % i]);
    std::vector<char> no_oracle(n, 0);
    size_t n_no = (size_t)std::llround(opt.p_no_oracle * n);
    for (size_t i = 0; i < n_no; i++) no_oracle[perm[i]] = 1;

    const std::string instruction =
        "Answer the question using the documents. If they do not contain the answer, reply: " + opt.abstain;
    std::vector<TaskItem> out;
    for (size_t qi = 0; qi < n; qi++) {
        const RaftQuestion& q = questions[qi];
        std::unordered_set<size_t> excluded;  // this question's oracles, then the distractors drawn
        for (const std::string& o : q.oracles)
            if (auto it = index.find(o); it != index.end()) excluded.insert(it->second);
        size_t need = opt.k + (no_oracle[qi] ? q.oracles.size() : 0);
        if (pool.size() - excluded.size() < need)
            fail("question on line %d needs %zu distractors but the pool has only %zu other documents; lower --k or "
                 "add documents", q.line, need, pool.size() - excluded.size());
        std::vector<const std::string*> docs;
        if (!no_oracle[qi])
            for (const std::string& o : q.oracles) docs.push_back(&o);
        while (need > 0) {
            size_t d = rng.next_u64() % pool.size();
            if (!excluded.insert(d).second) continue;
            docs.push_back(&pool[d]);
            need--;
        }
        for (size_t i = docs.size(); i > 1; i--) std::swap(docs[i - 1], docs[rng.next_u64() % i]);
        TaskItem item;
        item.instruction = instruction;
        for (size_t i = 0; i < docs.size(); i++) item.input += "Document " + std::to_string(i + 1) + ":\n" + *docs[i] + "\n\n";
        item.input += "Question: " + q.question;
        item.output = no_oracle[qi] ? opt.abstain : q.answer;
        out.push_back(std::move(item));
    }
    return out;
}
