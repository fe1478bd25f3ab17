// A dataset file → tokenized Examples, with the validation report that --check-data prints and
// the same checks the trainer runs before training. Also the deterministic train/val split.
//
// Formatting: each conversation (data/records.h) is rendered by the chat template into pieces;
// tokens of assistant pieces (the response and the end-of-turn that closes it) get weight 1, all
// other tokens the prompt loss weight. Raw documents are tokenized without special tokens, each
// followed by EOS, concatenated and cut into blocks of max_seq_len tokens (the last one shorter),
// every token weight 1.
//
// Length policy for conversations longer than max_seq_len: Truncation::drop (the default) leaves
// them out, ::truncate keeps their first max_seq_len tokens, ::error refuses the file. A truncation
// that would leave no response token drops the example instead, and every drop is counted in the
// report: the dataset never shrinks silently.
#pragma once
#include <cstdint>
#include <cstdio>
#include <functional>
#include <string>
#include <string_view>
#include <utility>
#include <vector>

#include "data/example.h"
#include "data/records.h"
#include "tokenizer/tokenizer.h"

enum class Truncation { drop, truncate, error };
// "drop" | "truncate" | "error"; fails naming the accepted values.
Truncation parse_truncation(const std::string& s);

// What the data pipeline needs from a tokenizer (an interface, so tests can use a toy one).
struct DataTokenizer {
    // parse_special: special-token text such as "<|im_end|>" becomes its id (for template output);
    // false for raw documents, whose text is only text. where: what comes before the text (a
    // template piece after others), see encode().
    std::function<std::vector<int32_t>(std::string_view text, bool parse_special, TextStart where)> encode;
    std::function<bool(int32_t id)> is_special;  // a special token's id ("<|im_end|>", "</s>")
    // Where text resumes after special token `id` ending at text[at] (text_after_token: past the white
    // space an rstrip token takes, Phi-3's <|assistant|>\n).
    std::function<size_t(int32_t id, std::string_view text, size_t at)> text_after;
    int32_t eos = -1;  // closes each raw document; needed only when a file has raw text
    int32_t bos = -1;  // opens each example and raw document when the model wants BOS (Tokenizer::add_bos)
    ChatTemplate chat_template;
};


// The model's tokenizer as the data pipeline uses it, rendering conversations with `chat`.
DataTokenizer data_tokenizer(const Tokenizer& tok, const ChatTemplate& chat);
// "" when the template's end-of-turn marker is a special token of the tokenizer (or the template has
// none: plain); else a warning to print: the marker would be split into ordinary tokens (Llama 3's
// <|eot_id|> under SmolLM2's tokenizer), so a fine-tune would not learn one token to stop on, and
// ./generate, which stops at such a token, would not stop at the turn's end.
std::string template_marker_warning(const DataTokenizer& tok);
// For a model without a tokenizer (a random test model with a vocabulary of at least 257): each
// byte of UTF-8 text is its own id 0..255, EOS is 256, and no text is special.
DataTokenizer raw_byte_data_tokenizer(const ChatTemplate& chat);

struct DataOptions {
    int max_seq_len = 512;
    float prompt_loss_weight = 0.0f;  // in [0, 1]
    Truncation truncation = Truncation::drop;
    bool skip_bad_lines = false;      // train without invalid lines (they are still reported)
};

struct DataReport {
    std::string path;
    size_t lines = 0;                              // non-blank lines (1 for a text file)
    size_t conversations = 0, documents = 0;       // valid records of each kind
    std::vector<LineProblem> invalid;              // lines that are not records
    std::vector<std::pair<int, int>> duplicates;   // (line, earlier line with identical content)
    std::vector<int> lengths;                      // tokens of each conversation, before the length policy
    std::vector<int> over_length;                  // lines of conversations over max_seq_len
    size_t tokens_over = 0, response_over = 0;     // tokens (response tokens) past max_seq_len in them
    std::vector<int> no_response;                  // lines left without a response token: dropped
    size_t dropped_long = 0, truncated = 0;        // what the length policy did
    size_t document_tokens = 0, blocks = 0;        // raw text: tokens incl. EOS, and blocks cut
    size_t examples = 0;                           // examples kept
    size_t supervised_tokens = 0;                  // tokens with weight > 0 in the kept examples
    double weight_sum = 0;                         // their summed loss weight
};

// Reads and formats one file, filling `report` with everything found. Fails only for problems of
// the whole file (missing, empty, binary, not UTF-8 text, a JSON array, raw text without EOS);
// per-line problems go into the report for check_report to judge.
std::vector<Example> read_dataset(const std::string& path, const DataTokenizer& tok, const DataOptions& opt,
                                  DataReport& report);

// Fails with "file:line: what ... what to do" when the report holds what the options do not
// allow: invalid lines without skip_bad_lines, over-long examples with Truncation::error, or no
// examples at all.
// `printed`: the caller has printed the report (print_report), so an error points at it.
void check_report(const DataReport& report, const DataOptions& opt, bool printed = false);

// The part of read_dataset after the file is parsed (for callers that hold the bytes, e.g. fuzzing).
std::vector<Example> build_examples(const ParsedFile& parsed, const DataTokenizer& tok, const DataOptions& opt,
                                    DataReport& report);

// read_dataset + check_report: what the trainer calls.
std::vector<Example> load_dataset(const std::string& path, const DataTokenizer& tok, const DataOptions& opt,
                                  DataReport& report);

// Several files as one dataset (--data A --data B ...): each is read, reported and judged on its own,
// so a problem names its file; the examples come in the order of `paths`, each with Example::file
// set to its file's index. One summary line per file goes to `out`, and a total when there are
// several. A file given twice is read twice: its examples count double.
std::vector<Example> load_datasets(const std::vector<std::string>& paths, const DataTokenizer& tok,
                                   const DataOptions& opt, const char* what, FILE* out);
// The files --data names: a path with a wildcard (*, ? or [...], quoted so that the shell leaves it:
// --data 'data/train-*.parquet', a Hub dataset's shards) stands for the files it matches, in name
// order; it fails naming the pattern when none does. Other paths are kept as they are.
std::vector<std::string> expand_data_paths(const std::vector<std::string>& paths);
// --check-data over several files: every file's report printed, then each judged (check_report).
std::vector<DataReport> check_datasets(const std::vector<std::string>& paths, const DataTokenizer& tok, const DataOptions& opt, FILE* out);

// The human-readable validation report (--check-data), and the one-line summary the trainer prints.
void print_report(const DataReport& report, const DataOptions& opt, FILE* out);
std::string report_summary(const DataReport& report);

// Moves a deterministic share of `train` into `val`: round(fraction * n) examples (at least one;
// a few more when the last group chosen holds duplicates), chosen by `seed`. Identical examples
// always land on the same side, so val never repeats train.
// Both keep their original relative order. Fails when fraction is outside [0, 1) or nothing would
// be left to train on.
void split_train_val(std::vector<Example>& train, std::vector<Example>& val, double fraction, uint64_t seed);

// FNV-1a over an example's token ids and weights: finds exact duplicates, keys the split, and (over
// all of them) tells a checkpoint's data from another's. Equal hashes are taken as equal content (a
// false match among n examples has odds ~n²/2^65), which spares keeping a second copy of every example.
uint64_t content_hash(const Example& e);
