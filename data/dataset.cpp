#include "data/dataset.h"

#include <algorithm>
#include <cmath>
#include <cstring>
#include <exception>
#include <glob.h>
#include <sys/stat.h>
#include <unordered_map>

#include "model/util.h"

uint64_t content_hash(const Example& e) {
    uint64_t h = 1469598103934665603ull;
    auto mix = [&](uint32_t x) {
        for (int k = 0; k < 4; k++) h = (h ^ ((x >> (8 * k)) & 0xFF)) * 1099511628211ull;
    };
    for (size_t i = 0; i < e.size(); i++) {
        uint32_t w;
        static_assert(sizeof w == sizeof(float), "float is 32 bits");
        std::memcpy(&w, &e.weights[i], sizeof w);
        mix((uint32_t)e.tokens[i]);
        mix(w);
    }
    return h;
}

namespace {

// How many ids of a, from index `from` on, equal b's from its start.
size_t common_prefix(const std::vector<int32_t>& a, size_t from, const std::vector<int32_t>& b) {
    size_t n = 0;
    while (from + n < a.size() && n < b.size() && a[from + n] == b[n]) n++;
    return n;
}

// f(0), ..., f(n - 1) on OpenMP's threads, for work whose items are independent (a conversation's
// formatting, a document's encoding: the bulk of loading a file). An exception cannot leave an
// OpenMP region, so the first one thrown is kept and rethrown here, as a serial loop would have.
template <typename F>
void parallel_for_each(size_t n, F f) {
    std::exception_ptr first;
#pragma omp parallel for schedule(dynamic, 16)
    for (size_t i = 0; i < n; i++) {
        try {
            f(i);
        } catch (...) {
#pragma omp critical(parallel_for_each)
            if (!first) first = std::current_exception();
        }
    }
    if (first) std::rethrow_exception(first);
}

// A conversation's ids are those of its whole rendered text, encoded at once as Hugging Face's
// apply_chat_template(tokenize=True) does: the template's pieces encoded one by one would split a
// run of whitespace that crosses from one into the next ("assistant\n" + "\n\nHello" gives Ċ Ċ Ċ
// where the whole text gives ĊĊ Ċ). A token's weight is its piece's: 1 in an assistant piece, 0 in
// the others (build_examples turns those into the prompt loss weight). Where the weight changes,
// at offset b of the text, the tokens before b are the ids that the text up to b encodes to on its
// own and shares with the whole; the rest, a token that straddles b included, go to the next piece.
// encode() splits the text at special tokens and encodes the parts between them apart, so at a
// piece boundary beside a special token no token straddles, and the ids up to it are the whole's:
// the text up to b is encoded from the last such boundary on (each turn of a chat template starts
// with one), which keeps the work linear in the conversation's length.
Example format_conversation(const Record& r, const DataTokenizer& tok) {
    Example e;
    e.line = r.line;
    const std::vector<ChatPiece> pieces = chat_render_pieces(tok.chat_template, r.messages, false, r.tools);
    std::string text;
    for (const ChatPiece& piece : pieces) text += piece.text;
    const std::string_view all(text);
    e.tokens = tok.encode(all, true, TextStart::Begin);
    e.weights.assign(e.tokens.size(), 0.0f);
    // Whether each piece starts and ends with a special token.
    std::vector<char> opens(pieces.size()), closes(pieces.size());
    for (size_t k = 0; k < pieces.size(); k++) {
        const std::vector<int32_t> ids = tok.encode(pieces[k].text, true, TextStart::AfterSpecial);
        opens[k] = !ids.empty() && tok.is_special(ids.front());
        closes[k] = !ids.empty() && tok.is_special(ids.back());
    }
    size_t clean_at = 0, clean_ids = 0;  // the last boundary beside a special token: text offset, ids before it
    size_t end = 0, from = 0;            // piece k's end in the text; the first id of its run of pieces
    for (size_t k = 0; k + 1 < pieces.size(); k++) {
        end += pieces[k].text.size();
        const bool clean = closes[k] || opens[k + 1], change = pieces[k + 1].assistant != pieces[k].assistant;
        if (!clean && !change) continue;
        const size_t at = std::min(clean_at, end);  // (white space an rstrip token took may pass `end`)
        const std::vector<int32_t> ids = tok.encode(all.substr(at, end - at), true,
                                                    at == 0 ? TextStart::Begin : TextStart::AfterSpecial);
        const size_t shared = common_prefix(e.tokens, clean_ids, ids);
        if (change) {
            const size_t to = std::max(from, clean_ids + shared);
            if (pieces[k].assistant) std::fill(e.weights.begin() + from, e.weights.begin() + to, 1.0f);
            from = to;
        }
        // (checked, not assumed) The text resumes after the white space the boundary's token takes
        // with it (Phi-3's rstrip tokens), as in the whole text's encoding.
        if (clean && shared == ids.size()) {
            clean_ids += ids.size();
            if (!ids.empty()) clean_at = tok.text_after ? tok.text_after(ids.back(), all, end) : end;
        }
    }
    if (!pieces.empty() && pieces.back().assistant) std::fill(e.weights.begin() + from, e.weights.end(), 1.0f);
    // BOS when the model wants it, unless the template wrote it (Llama-3's, Llama-2's)
    if (tok.bos >= 0 && (e.tokens.empty() || e.tokens[0] != tok.bos))
        e.tokens.insert(e.tokens.begin(), tok.bos), e.weights.insert(e.weights.begin(), 0.0f);
    if (!e.weights.empty()) e.weights[0] = 0.0f;
    return e;
}

// Raw documents, each followed by EOS, concatenated and cut into blocks of max_seq_len. Each block
// starts with the last token of the one before, so every token of the stream except the very first
// is predicted exactly once (cutting without overlap would never predict blocks' first tokens).
// A block's line is that of the document its first predicted token comes from.
void cut_documents(const std::vector<const Record*>& docs, const DataTokenizer& tok, int max_seq_len,
                   std::vector<Example>& out, DataReport& report) {
    // Documents encode independently (in parallel, see build_examples); the cutting is in order.
    std::vector<std::vector<int32_t>> encoded(docs.size());
    parallel_for_each(docs.size(), [&](size_t i) { encoded[i] = tok.encode(docs[i]->text, false, TextStart::Begin); });
    Example block;
    for (size_t i = 0; i < docs.size(); i++) {
        const Record* d = docs[i];
        std::vector<int32_t> ids = std::move(encoded[i]);
        if (tok.bos >= 0) ids.insert(ids.begin(), tok.bos);
        ids.push_back(tok.eos);
        report.document_tokens += ids.size();
        for (int32_t id : ids) {
            if (block.size() == 1) block.line = d->line;
            block.tokens.push_back(id);
            block.weights.push_back(block.tokens.size() == 1 ? 0.0f : 1.0f);
            if ((int)block.size() == max_seq_len) {
                Example next;
                next.tokens = {id};
                next.weights = {0.0f};
                out.push_back(std::move(block));
                block = std::move(next);
            }
        }
    }
    if (block.size() >= 2) out.push_back(std::move(block));
    for (Example& e : out) e.key = content_hash(e);
    report.blocks = out.size();
}

std::string join_lines(const std::vector<int>& lines, size_t max_shown) {
    std::string s;
    for (size_t i = 0; i < lines.size() && i < max_shown; i++) s += (i ? ", " : "") + std::to_string(lines[i]);
    if (lines.size() > max_shown) s += ", ... (" + std::to_string(lines.size() - max_shown) + " more)";
    return s;
}

int percentile(const std::vector<int>& sorted, double q) {
    size_t rank = (size_t)std::ceil(q * sorted.size());
    return sorted[rank == 0 ? 0 : rank - 1];
}

}  // namespace

Truncation parse_truncation(const std::string& s) {
    if (s == "drop") return Truncation::drop;
    if (s == "truncate") return Truncation::truncate;
    if (s == "error") return Truncation::error;
    fail("--truncation %s: expected drop, truncate or error", s.c_str());
}

std::vector<Example> build_examples(const ParsedFile& parsed, const DataTokenizer& tok, const DataOptions& opt,
                                    DataReport& report) {
    if (!(opt.prompt_loss_weight >= 0.0f && opt.prompt_loss_weight <= 1.0f))
        fail("--prompt-loss-weight %g: expected a value in [0, 1]", opt.prompt_loss_weight);
    if (opt.max_seq_len < 2) fail("--max-seq-len %d: expected at least 2", opt.max_seq_len);
    report.lines = parsed.lines;
    report.invalid = parsed.invalid;

    std::vector<Example> out;
    std::vector<const Record*> docs;
    std::unordered_map<uint64_t, int> first_line;  // content hash → line of its first occurrence
    std::unordered_map<uint64_t, uint64_t> kept_key;  // a kept example's content hash → its split key
    std::unordered_map<size_t, int> first_doc;     // the same for raw documents, by their text
    // Conversations are formatted in parallel, each on its own; the loop after takes them in line
    // order, so the examples, their order and the report are a serial pass's.
    const std::vector<Record>& records = parsed.records;
    std::vector<Example> formatted(records.size());
    std::vector<std::string> template_error(records.size());
    parallel_for_each(records.size(), [&](size_t i) {
        if (records[i].is_text()) return;
        try {
            formatted[i] = format_conversation(records[i], tok);
        } catch (const std::runtime_error& err) {  // a role this chat template cannot express
            template_error[i] = std::string("chat template: ") + err.what();
            return;
        }
        // The key of the example as formatted, before the prompt loss weight and any truncation, so
        // that neither --prompt-loss-weight nor --max-seq-len moves an example across the split.
        formatted[i].key = content_hash(formatted[i]);
    });
    for (size_t i = 0; i < records.size(); i++) {
        const Record& r = records[i];
        if (r.is_text()) {
            auto [it, fresh] = first_doc.emplace(std::hash<std::string>()(r.text), r.line);
            if (!fresh) report.duplicates.push_back({r.line, it->second});
            docs.push_back(&r);
            continue;
        }
        if (!template_error[i].empty()) {
            report.invalid.push_back({r.line, std::move(template_error[i])});
            continue;
        }
        Example e = std::move(formatted[i]);
        e.record = (int)i;
        report.conversations++;
        report.lengths.push_back((int)e.size());
        auto [it, fresh] = first_line.emplace(e.key, e.line);
        if (!fresh) report.duplicates.push_back({e.line, it->second});

        const bool cut = (int)e.size() > opt.max_seq_len;
        if (cut) {
            report.over_length.push_back(e.line);
            report.tokens_over += e.size() - opt.max_seq_len;
            for (size_t i = opt.max_seq_len; i < e.size(); i++) report.response_over += e.weights[i] >= 1.0f;
            if (opt.truncation != Truncation::truncate) {
                report.dropped_long++;  // with ::error check_report refuses the file
                continue;
            }
            e.tokens.resize(opt.max_seq_len);
            e.weights.resize(opt.max_seq_len);
            if (response_tokens(e) > 0) report.truncated++;
        }
        if (response_tokens(e) == 0) { report.no_response.push_back(e.line); continue; }
        // Examples that truncation made equal (to each other, or to one as short) share the first
        // one's key, so a side of the split: val never repeats a training example.
        e.key = kept_key.emplace(cut ? content_hash(e) : e.key, e.key).first->second;
        for (size_t i = 1; i < e.size(); i++)
            if (e.weights[i] == 0.0f) e.weights[i] = opt.prompt_loss_weight;
        out.push_back(std::move(e));
    }
    std::stable_sort(report.invalid.begin(), report.invalid.end(),
                     [](const LineProblem& a, const LineProblem& b) { return a.line < b.line; });
    report.documents = docs.size();
    if (!docs.empty()) {
        if (tok.eos < 0) fail("%s: raw text needs an EOS token to separate documents, and the tokenizer has none",
                              report.path.c_str());
        std::vector<Example> blocks;
        cut_documents(docs, tok, opt.max_seq_len, blocks, report);
        out.insert(out.end(), blocks.begin(), blocks.end());
    }
    report.examples = out.size();
    for (const Example& e : out)
        for (size_t i = 1; i < e.size(); i++) {
            report.supervised_tokens += e.weights[i] > 0.0f;
            report.weight_sum += e.weights[i];
        }
    return out;
}

std::vector<Example> read_dataset(const std::string& path, const DataTokenizer& tok, const DataOptions& opt,
                                  DataReport& report) {
    report = DataReport();
    report.path = path;
    struct stat st;
    if (stat(path.c_str(), &st) != 0) fail("%s: no such file; pass an existing dataset file (see data/README.md)", path.c_str());
    if (S_ISDIR(st.st_mode))
        fail("%s: is a directory; pass a dataset file (.jsonl, .csv, .parquet, or .txt for raw text), or its files with a "
             "quoted wildcard: --data '%s/*.parquet'", path.c_str(), path.c_str());
    std::string bytes = read_file(path);
    return build_examples(parse_records(bytes, path, is_records_path(path)), tok, opt, report);
}

std::vector<std::string> expand_data_paths(const std::vector<std::string>& paths) {
    std::vector<std::string> out;
    for (const std::string& p : paths) {
        if (p.find_first_of("*?[") == std::string::npos) {
            out.push_back(p);
            continue;
        }
        glob_t g{};
        const int rc = glob(p.c_str(), 0, nullptr, &g);  // sorted by name, as ls lists them
        if (rc == GLOB_NOMATCH) {
            globfree(&g);
            fail("%s: no file matches this pattern", p.c_str());
        }
        if (rc != 0) {
            globfree(&g);
            fail("%s: the pattern could not be read (glob error %d)", p.c_str(), rc);
        }
        for (size_t i = 0; i < g.gl_pathc; i++) out.push_back(g.gl_pathv[i]);
        globfree(&g);
    }
    return out;
}

void check_report(const DataReport& r, const DataOptions& opt, bool printed) {
    const char* p = r.path.c_str();
    const char* details = printed ? "the report above has the details" : "run --check-data for the details";
    if (!r.invalid.empty() && !opt.skip_bad_lines)
        fail("%s:%d: %s\n  (%zu invalid line%s of %zu; %s; fix them, or pass --skip-bad-lines to train without "
             "them)", p, r.invalid[0].line, r.invalid[0].what.c_str(), r.invalid.size(), r.invalid.size() == 1 ? "" : "s",
             r.lines, details);
    if (!r.over_length.empty() && opt.truncation == Truncation::error)
        fail("%s:%d: example longer than --max-seq-len %d (%zu examples are: lines %s); raise --max-seq-len or "
             "pass --truncation drop|truncate", p, r.over_length[0], opt.max_seq_len, r.over_length.size(),
             join_lines(r.over_length, 10).c_str());
    if (r.examples == 0)
        fail("%s: no examples left to train on (%zu lines, %zu invalid, %zu over --max-seq-len %d dropped, %zu "
             "without a response token); %s", p, r.lines, r.invalid.size(), r.dropped_long, opt.max_seq_len,
             r.no_response.size(), details);
}

std::vector<Example> load_dataset(const std::string& path, const DataTokenizer& tok, const DataOptions& opt,
                                  DataReport& report) {
    std::vector<Example> ex = read_dataset(path, tok, opt, report);
    check_report(report, opt);
    return ex;
}

std::vector<Example> load_datasets(const std::vector<std::string>& paths, const DataTokenizer& tok,
                                   const DataOptions& opt, const char* what, FILE* out) {
    std::vector<Example> all;
    size_t supervised = 0;
    for (size_t i = 0; i < paths.size(); i++) {
        DataReport report;
        std::vector<Example> ex = load_dataset(paths[i], tok, opt, report);
        fprintf(out, "%s: %s\n", what, report_summary(report).c_str());
        supervised += report.supervised_tokens;
        for (Example& e : ex) e.file = (int)i, all.push_back(std::move(e));
    }
    if (paths.size() > 1)
        fprintf(out, "%s: %zu files, %zu examples, %zu supervised tokens in all\n", what, paths.size(), all.size(), supervised);
    return all;
}

std::vector<DataReport> check_datasets(const std::vector<std::string>& paths, const DataTokenizer& tok,
                                       const DataOptions& opt, FILE* out) {
    // A file that cannot be read at all (missing, binary, the wrong kind) is named and the others are
    // still reported; then the first problem stops the check.
    std::vector<DataReport> reports(paths.size());
    std::vector<std::string> unreadable;
    for (size_t i = 0; i < paths.size(); i++) {
        if (i) fprintf(out, "\n");
        try {
            read_dataset(paths[i], tok, opt, reports[i]);
            print_report(reports[i], opt, out);
        } catch (const std::runtime_error& e) {
            fprintf(out, "not read: %s\n", e.what());
            unreadable.push_back(e.what());
        }
    }
    if (!unreadable.empty())
        fail("%s%s", unreadable[0].c_str(),
             unreadable.size() > 1 ? strf(" (and %zu more files not read, above)", unreadable.size() - 1).c_str() : "");
    for (const DataReport& r : reports) check_report(r, opt, true);
    return reports;
}

std::string report_summary(const DataReport& r) {
    std::string s = r.path + ": " + std::to_string(r.examples) + " examples";
    if (r.documents) s += " (" + std::to_string(r.blocks) + " blocks from " + std::to_string(r.documents) + " documents)";
    s += ", " + std::to_string(r.supervised_tokens) + " supervised tokens";
    if (!r.invalid.empty()) s += "; skipped " + std::to_string(r.invalid.size()) + " invalid lines";
    if (r.dropped_long)
        s += "; dropped " + std::to_string(r.dropped_long) + " longer than --max-seq-len (up to " +
             std::to_string(*std::max_element(r.lengths.begin(), r.lengths.end())) +
             " tokens: raise --max-seq-len, or --truncation truncate keeps their start)";
    if (r.truncated) s += "; truncated " + std::to_string(r.truncated);
    if (!r.no_response.empty()) s += "; dropped " + std::to_string(r.no_response.size()) + " without a response token";
    if (!r.duplicates.empty()) s += "; " + std::to_string(r.duplicates.size()) + " exact duplicates";
    return s;
}

void print_report(const DataReport& r, const DataOptions& opt, FILE* out) {
    if (r.documents == r.lines && r.conversations == 0 && r.invalid.empty())  // a text file (or jsonl of "text" lines)
        std::fprintf(out, "%s: %zu raw document%s\n", r.path.c_str(), r.documents, r.documents == 1 ? "" : "s");
    else
        std::fprintf(out, "%s: %zu lines: %zu conversations, %zu raw documents, %zu invalid\n", r.path.c_str(), r.lines,
                     r.conversations, r.documents, r.invalid.size());
    const size_t kShown = 20;
    for (size_t i = 0; i < r.invalid.size() && i < kShown; i++)
        std::fprintf(out, "  invalid  %s:%d: %s\n", r.path.c_str(), r.invalid[i].line, r.invalid[i].what.c_str());
    if (r.invalid.size() > kShown) std::fprintf(out, "  ... and %zu more invalid lines\n", r.invalid.size() - kShown);
    if (!r.duplicates.empty()) {
        std::fprintf(out, "exact duplicates: %zu\n", r.duplicates.size());
        for (size_t i = 0; i < r.duplicates.size() && i < kShown; i++)
            std::fprintf(out, "  line %d repeats line %d\n", r.duplicates[i].first, r.duplicates[i].second);
        if (r.duplicates.size() > kShown) std::fprintf(out, "  ... and %zu more\n", r.duplicates.size() - kShown);
    }
    if (!r.lengths.empty()) {
        std::vector<int> s = r.lengths;
        std::sort(s.begin(), s.end());
        double mean = 0;
        for (int n : s) mean += n;
        mean /= s.size();
        std::fprintf(out, "tokens per conversation: min %d  mean %.1f  p50 %d  p90 %d  p99 %d  max %d", s.front(),
                     mean, percentile(s, 0.5), percentile(s, 0.9), percentile(s, 0.99), s.back());
        bool marked = s.front() <= opt.max_seq_len && opt.max_seq_len <= s.back();
        std::fprintf(out, marked ? "  (| marks the bin of --max-seq-len %d)\n" : "\n", opt.max_seq_len);
        const int kBins = 10;
        int lo = s.front(), width = std::max(1, (s.back() - lo + kBins) / kBins);
        std::vector<size_t> count(kBins, 0);
        for (int n : s) count[std::min(kBins - 1, (n - lo) / width)]++;
        size_t most = *std::max_element(count.begin(), count.end());
        for (int b = 0; b < kBins && lo + b * width <= s.back(); b++) {
            int from = lo + b * width, to = from + width - 1;
            std::string bar((size_t)std::lround(40.0 * count[b] / most), '#');
            std::fprintf(out, "  %6d-%-6d %c %-40s %zu\n", from, to, from <= opt.max_seq_len && opt.max_seq_len <= to ? '|' : ' ',
                         bar.c_str(), count[b]);
        }
    }
    if (!r.over_length.empty()) {
        const char* what = opt.truncation == Truncation::drop ? "dropped" :
                           opt.truncation == Truncation::truncate ? "truncated" : "refused (--truncation error)";
        std::fprintf(out, "over --max-seq-len %d: %zu (%s); truncating would cut %zu tokens, %zu of them response "
                          "tokens; lines %s\n", opt.max_seq_len, r.over_length.size(), what, r.tokens_over,
                     r.response_over, join_lines(r.over_length, 10).c_str());
    }
    if (!r.no_response.empty())
        std::fprintf(out, "zero supervised tokens (dropped): %zu; lines %s\n", r.no_response.size(),
                     join_lines(r.no_response, 10).c_str());
    if (r.documents)
        std::fprintf(out, "raw text: %zu documents, %zu tokens with EOS, %zu blocks of up to %d\n", r.documents,
                     r.document_tokens, r.blocks, opt.max_seq_len);
    std::fprintf(out, "kept %zu examples; supervised tokens %zu (loss weight sum %.1f, prompt loss weight %g)\n",
                 r.examples, r.supervised_tokens, r.weight_sum, opt.prompt_loss_weight);
}

void split_train_val(std::vector<Example>& train, std::vector<Example>& val, double fraction, uint64_t seed) {
    if (!(fraction >= 0.0 && fraction < 1.0)) fail("--val-split %g: expected a fraction in [0, 1)", fraction);
    val.clear();
    size_t n = train.size();
    if (fraction == 0.0 || n == 0) return;
    size_t want = std::max<size_t>(1, (size_t)std::llround(fraction * n));
    // Rank examples by a seeded hash of their content: duplicates share a rank and so a side.
    std::vector<std::pair<uint64_t, size_t>> keyed(n);
    for (size_t i = 0; i < n; i++) keyed[i] = {Rng(seed ^ train[i].key).next_u64(), i};
    std::sort(keyed.begin(), keyed.end());
    std::vector<char> to_val(n, 0);
    size_t taken = 0;
    for (size_t i = 0; i < n && (taken < want || (i > 0 && keyed[i].first == keyed[i - 1].first)); i++) {
        to_val[keyed[i].second] = 1;
        taken++;
    }
    if (taken == n)
        fail("--val-split %g leaves nothing to train on (%zu examples%s)", fraction, n,
             taken > want ? ", and duplicates of an example all go to its side: the data repeats itself" : "");
    std::vector<Example> keep;
    for (size_t i = 0; i < n; i++) (to_val[i] ? val : keep).push_back(std::move(train[i]));
    train = std::move(keep);
}

DataTokenizer data_tokenizer(const Tokenizer& tok, const ChatTemplate& chat) {
    DataTokenizer dt;
    dt.encode = [&tok](std::string_view text, bool special, TextStart where) { return encode(tok, text, special, where); };
    dt.is_special = [&tok](int32_t id) { return is_special_token(tok, id); };
    dt.text_after = [&tok](int32_t id, std::string_view text, size_t at) { return text_after_token(tok, id, text, at); };
    dt.eos = tok.eos_id;
    dt.bos = tok.add_bos ? tok.bos_id : -1;
    dt.chat_template = chat;
    return dt;
}

std::string template_marker_warning(const DataTokenizer& tok) {
    if (tok.chat_template.kind == ChatTemplateKind::Plain) return "";
    for (const ChatPiece& piece : chat_render_pieces(tok.chat_template, {{"user", "x"}, {"assistant", "y"}}, false)) {
        if (!piece.assistant) continue;
        for (int32_t id : tok.encode(piece.text, true, TextStart::AfterSpecial))
            if (tok.is_special(id)) return "";
        return std::string("the ") + chat_template_name(tok.chat_template.kind) + " template's end-of-turn marker is " +
               "not a special token of this tokenizer (the answer piece \"" + piece.text + "\" has none), so the " +
               "model has no token that ends its turn (a fine-tune learns none to stop on; generation does not stop at "
               "the answer's end): use the tokenizer's own template (leave --template out) or one whose markers it has";
    }
    return "";
}

DataTokenizer raw_byte_data_tokenizer(const ChatTemplate& chat) {
    DataTokenizer dt;
    dt.encode = [](std::string_view text, bool, TextStart) {
        std::vector<int32_t> ids(text.size());
        for (size_t i = 0; i < text.size(); i++) ids[i] = (unsigned char)text[i];  // char is signed: é must not be -61
        return ids;
    };
    dt.is_special = [](int32_t id) { return id == 256; };
    dt.eos = 256;
    dt.chat_template = chat;
    return dt;
}
