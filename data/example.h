// One training example as token ids with a loss weight per token, and the batch builder that lays
// examples out as a Batch (dynamic padding or packing). The readers (data/dataset.h) make Examples.
#pragma once
#include <cstddef>
#include <cstdint>
#include <vector>

#include "data/batch.h"

struct Example {
    std::vector<int32_t> tokens;
    // weights[i] is the loss weight of predicting tokens[i] from tokens[0..i-1]: 1 for response
    // tokens and the end-of-turn/EOS that closes each response, the prompt loss weight for prompt
    // tokens. weights[0] is always 0 (nothing predicts the first token).
    std::vector<float> weights;
    int line = 0;  // 1-based line of the source file it came from (raw text: where its block starts)
    int file = 0;  // which of several data files (--data A --data B: 0, 1, ...)
    // A conversation's index among its file's records (ParsedFile::records), -1 for raw text: what
    // names the record, as its line may not (a one-line JSON array's records all start on line 1).
    int record = -1;
    // The split's key: a hash of the example's ids and response marks as formatted (raw text: of the
    // block), equal for duplicates and unchanged by the prompt loss weight and by truncation.
    uint64_t key = 0;

    size_t size() const { return tokens.size(); }
};

// Tokens that still teach the response: weight 1. build_examples asks it before the prompt tokens
// get the prompt loss weight (while they weigh 0), so a prompt loss weight of 1 counts none of them.
size_t response_tokens(const Example& e);

enum class Padding { longest, max_length };

struct BatchOptions {
    int batch_size = 8;     // rows
    int max_seq_len = 512;  // the longest a row may be; T itself with Padding::max_length
    Padding padding = Padding::longest;
    bool packing = false;   // several examples per row, each its own segment
};

// Lays out examples order[start], order[start+1], ... into `b` and returns how many it took.
// Without packing each row holds one example; with packing a row takes examples while they fit
// (greedy, in order, so the caller's cursor simply advances by the return value). An example of n
// tokens fills n positions: inputs tokens[0..n-1], targets tokens[1..n-1] with weights[1..n-1],
// and its last position predicts nothing (weight 0). Position ids restart at 0 for each example
// and its segment id is its index in the row; padding has weight 0 and segment -1. b.B is the
// number of rows used (fewer than batch_size only at the end of `order`); b.T is the longest row
// (Padding::longest) or max_seq_len. Every example must be 2..max_seq_len tokens (the length
// policy guarantees it); otherwise this fails naming the example's line.
size_t fill_batch(const std::vector<Example>& examples, const std::vector<size_t>& order, size_t start,
                  const BatchOptions& opt, Batch& b);

// transformers' group_by_length (LengthGroupedSampler, get_length_grouped_indices) on a shuffled
// order: cut into mega-batches of `group` × min(n / (4·group), 50) (at least one group), each sorted
// longest first (stably), and the longest example of all swapped to the very front, so that
// consecutive examples have similar lengths (less padding in each batch, Padding::longest) and the
// largest batch runs first (an out-of-memory shows at once). `group` is what one optimizer step
// takes: rows per micro-batch × micro-batches per step, as the Trainer passes it.
void group_by_length(std::vector<size_t>& order, const std::vector<Example>& examples, size_t group);
