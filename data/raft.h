// RAFT (retrieval-augmented fine-tuning) examples: each question is shown with a context of
// documents, its oracle document(s) mixed with k distractors drawn from a pool, in random order,
// and the model learns to answer from the context. A share of questions (p_no_oracle) get only
// distractors and the abstaining answer, so the model learns to say when the context does not
// hold the answer instead of inventing one. Deterministic for a seed.
//
// Questions: jsonl lines {"question": "...", "answer": "...", "oracle": "doc" | ["doc", ...]}.
// Pool: jsonl lines {"text": "..."} (the reader of data/records.h), or a text file holding one
// document. Output: instruction jsonl (instruction, input = documents + question, output).
#pragma once
#include <cstdint>
#include <string>
#include <vector>

#include "data/default_task.h"

struct RaftQuestion {
    int line = 0;
    std::string question, answer;
    std::vector<std::string> oracles;
};

struct RaftOptions {
    int k = 3;                 // distractors per example
    double p_no_oracle = 0.2;  // share of examples whose context holds no oracle
    uint64_t seed = 1;
    std::string abstain = "The documents do not contain the answer.";
};

// Parses the questions file; fails listing the first bad lines (file:line: what).
std::vector<RaftQuestion> raft_parse_questions(const std::string& bytes, const std::string& path);

// One example per question, in question order. Exactly round(p_no_oracle * n) examples, chosen
// by the seed, have no oracle and the abstaining answer; their context has as many documents as
// the others would. Distractors are distinct pool documents that are none of the question's
// oracles. Fails when the pool cannot supply enough distractors for a question.
std::vector<TaskItem> raft_build(const std::vector<RaftQuestion>& questions, const std::vector<std::string>& pool,
                                 const RaftOptions& opt);
