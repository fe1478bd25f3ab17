// libFuzzer target for the dataset reader: bytes → records → examples → packed batches, with a
// byte-level toy tokenizer. Whole-file problems may throw std::runtime_error; everything else must
// hold the pipeline's invariants: each non-blank line becomes a record or a reported problem, every
// kept example fits max_seq_len and has a response token, and batches lay them out consistently.
#include <cstdint>
#include <stdexcept>
#include <string_view>

#include "tests/test_data_util.h"

#define CHECK_OR_TRAP(c) \
    if (!(c)) __builtin_trap()

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
    if (size < 2) return 0;
    // The first two bytes pick the options, the rest is the file.
    DataOptions opt;
    opt.max_seq_len = 2 + data[0] % 120;
    opt.truncation = (Truncation)(data[1] % 3);
    opt.prompt_loss_weight = (data[1] >> 2) % 3 * 0.5f;
    bool jsonl = data[1] & 0x80;
    std::string_view bytes((const char*)data + 2, size - 2);
    DataTokenizer tok = byte_tokenizer();
    // the toy tokenizer's ChatML, or a template that renders tool calling or a system block of its own
    const char* const templates[] = {"chatml", "qwen2.5", "qwen3", "llama3.1", "smollm3", "mistral-v0.3"};
    tok.chat_template = chat_template_from_name(templates[((data[1] >> 4) & 7) % 6]);
    DataReport rep;
    std::vector<Example> ex;
    try {
        // the first option byte's top bit reads the records as CSV
        ParsedFile pf = parse_records(bytes, data[0] & 0x80 ? "fuzz.csv" : "fuzz", jsonl);
        ex = build_examples(pf, tok, opt, rep);
    } catch (const std::runtime_error&) {
        return 0;
    }
    CHECK_OR_TRAP(rep.conversations + rep.documents + rep.invalid.size() == rep.lines);
    CHECK_OR_TRAP(rep.examples == ex.size());
    for (const Example& e : ex) {
        CHECK_OR_TRAP(e.size() >= 2 && (int)e.size() <= opt.max_seq_len);
        CHECK_OR_TRAP(e.weights.size() == e.size() && e.weights[0] == 0.0f);
        CHECK_OR_TRAP(response_tokens(e) > 0);
    }
    if (ex.empty()) return 0;
    std::vector<size_t> order(ex.size());
    for (size_t i = 0; i < order.size(); i++) order[i] = order.size() - 1 - i;
    BatchOptions bo;
    bo.batch_size = 3;
    bo.max_seq_len = opt.max_seq_len;
    bo.packing = data[0] & 1;
    double weight = 0, batched = 0;
    for (const Example& e : ex)
        for (size_t i = 1; i < e.size(); i++) weight += e.weights[i];
    Batch b;
    for (size_t at = 0; at < order.size();) {
        size_t took = fill_batch(ex, order, at, bo, b);
        CHECK_OR_TRAP(took >= 1 && b.B >= 1 && b.T <= opt.max_seq_len);
        batched += b.total_weight();
        at += took;
    }
    CHECK_OR_TRAP(std::abs(weight - batched) <= 1e-3 * (1 + weight));
    return 0;
}
