// The default dataset: a generated format-following task that a few minutes of LoRA visibly teaches
// a small instruct model. Each example is a short sentence about a made-up person; the answer is one
// line of compact JSON with the keys in a fixed order:
//   instruction: Extract name, year, city and job as JSON.
//   input:       Born in Oslo in 1987, Maria Lopez works as a nurse.
//   output:      {"name":"Maria Lopez","year":1987,"city":"Oslo","job":"nurse"}
// The sentences come in several phrasings with the fields in different orders, so the model has to
// find each field, not copy positions. Nothing here is copied text: names, cities and jobs are
// common words combined at random. data/default/{train,val}.jsonl are this generator's output
// (./make_dataset rewrites them; a test checks they still match), and score_answers measures exact
// match of generated answers on held-out items.
#pragma once
#include <cstdint>
#include <string>
#include <vector>

#include "data/records.h"

struct TaskItem {
    std::string instruction, input, output;
};

// `n` items with pairwise different inputs, drawn from `seed`; the same arguments always give the
// same items, and a longer list starts with the shorter one.
std::vector<TaskItem> default_task_items(uint64_t seed, int n);

// One jsonl line {"instruction": ..., "input": ..., "output": ...} without the newline.
std::string task_item_jsonl(const TaskItem& item);

// The shipped files: the first kDefaultTrainSize items of seed kDefaultTaskSeed are train.jsonl and
// the next kDefaultValSize are val.jsonl (held out: no input appears in both).
constexpr uint64_t kDefaultTaskSeed = 1;
constexpr int kDefaultTrainSize = 400, kDefaultValSize = 64;

// How well generated answers match held-out references.
struct TaskScore {
    int n = 0;                         // records scored
    int exact = 0;                     // answers equal to the reference (surrounding whitespace ignored)
    int fields = 0, fields_total = 0;  // references that are JSON objects: members the answer got right
    double exact_rate() const { return n ? (double)exact / n : 0.0; }
    double field_rate() const { return fields_total ? (double)fields / fields_total : 0.0; }
};

// Compares answers[i] with the reference of held_out[i] (record_reference: its final assistant
// turn; records without one, raw text included, are skipped), both without reasoning: only what
// follows a "</think>". Partial credit counts the reference object's members whose value the answer
// (parsed as JSON) has exactly, so progress shows before answers are fully right; for a turn of tool
// calls, each call's name and arguments (the answer's <tool_call> blocks in order, as JSON).
// chat: the template the answers were prompted with (Qwen3's writes a string of arguments as given,
// so its references do too).
TaskScore score_answers(const std::vector<Record>& held_out, const std::vector<std::string>& answers,
                        const ChatTemplate& chat = {});

