// Reading a dataset file into records, before any tokenization. Accepted inputs:
//   jsonl (one JSON object per line), each line one of
//     {"messages": [{"role": "system"|"user"|"assistant", "content": "..."}, ...]}   chat, multi-turn
//        (a message may have "reasoning_content": "..." or null; role "tool" and an assistant's
//        "tool_calls", with the line's "tools", are tool calling, which qwen2.5, qwen3, smollm3 and llama3.1 render)
//     {"conversations": [{"from": "system"|"human"|"gpt", "value": "..."}, ...]}  the same, as ShareGPT
//        stores it ("user", "assistant", "model" and "chatgpt" are read too; LLaMA-Factory's
//        "function_call" and "observation" turns are tool calls and results)
//     {"instruction": "...", "input": "..." (optional), "output": "...", "system": "..." (optional)}
//     {"prompt": "...", "completion": "..."}
//     {"text": "..."}                                        a raw document (continued pre-training)
//   CSV (.csv) and TSV (.tsv): a header row naming the fields above, then one record a row (a
//     messages, conversations or tools cell holds that field's JSON; an empty cell is no field)
//   Parquet (what the Hugging Face Hub serves): one record a row, of the columns named as the fields
//     above (a chat column a list of {role, content} or {from, value}), numbered from 1 as lines are
//   anything else (.txt, .md, ...): the whole file is one raw document.
// A message of either chat form may have "weight": 0 or 1 (OpenAI's fine-tuning format): an
// assistant turn of weight 0 is context, not learned (ChatMessage::trained).
// Other keys on a line are ignored. Lines that are empty or only whitespace are skipped.
// A UTF-8 byte-order mark at the start of the file is accepted and stripped (editors on Windows
// write one; it carries no content). CRLF line ends are accepted. A line that cannot become a
// record is reported with its line number and the reason, never dropped silently; a file that is
// missing, empty, binary or not UTF-8 fails as a whole. A jsonl-named file that is one JSON array of
// records (alpaca_data.json) is read element by element, each named by the line it starts on.
#pragma once
#include <optional>
#include <string>
#include <string_view>
#include <vector>

#include "tokenizer/chat_template.h"

struct Record {
    int line = 0;                       // 1-based line in the file
    std::vector<ChatMessage> messages;  // a conversation ending with an assistant turn (Answers::optional:
                                        // or a user turn), or empty...
    std::string text;                   // ...for a raw document
    std::vector<std::string> tools;     // a conversation's tool definitions, each's JSON as chat templates write it
    bool is_text() const { return messages.empty(); }
};

struct LineProblem {
    int line;
    std::string what;
};

struct ParsedFile {
    std::vector<Record> records;
    std::vector<LineProblem> invalid;  // lines that are not records, in line order
    size_t lines = 0;                  // non-blank lines seen
};

// A jsonl line may be at most this long: an example this big cannot fit any sequence length we
// train with, and refusing it early keeps one bad line from costing minutes of tokenization.
constexpr size_t kMaxLineBytes = 1 << 20;

// Whether `path` is read as records rather than raw text (by its extension, in any case: .jsonl,
// .json, .ndjson; .csv and .tsv, whose first row names the fields: data/csv.h; .parquet).
bool is_records_path(const std::string& path);
// Fails naming `flag` when a jsonl output is given a name the readers would take for another format
// (.csv, .tsv, .parquet, .gz: ./train would read it as a table, Parquet or gzip and refuse it).
void require_jsonl_output_name(const std::string& path, const char* flag);

// Training data must end every conversation with the assistant's answer. Prompts to answer
// (./generate --data) may leave it out: a conversation may end with the user's turn (it must have
// one), and "output" or "completion" may be absent, null or "".
enum class Answers { required, optional };

// A conversation's tool definitions ("tools": a list of objects, or a string of its JSON as
// LLaMA-Factory stores it), each as chat templates' |tojson writes it (json_dumps_python), appended
// to `tools`; false with `why` when it is not such a list.
struct JsonValue;
bool parse_tools(const JsonValue& v, std::vector<std::string>& tools, std::string& why);

// Parses a whole file's bytes; `path` names it in messages.
ParsedFile parse_records(std::string_view bytes, const std::string& path, bool jsonl,
                         Answers answers = Answers::required);

// The user turn of an instruction record: the instruction, then the input after a blank line when
// there is one (the Alpaca layout). Exposed so evaluation renders prompts exactly as training did.
std::string instruction_prompt(const std::string& instruction, const std::string& input);

// What the model is asked in a conversation: every turn before its final assistant turn (all of it
// when the conversation ends with the user's turn). Training learns that turn given this prompt;
// evaluation compares an answer to it.
std::vector<ChatMessage> record_prompt(const Record& r);
// The prompt's last user turn: what a listing of prompts shows (when the prompt ends with a tool's
// result, that result is not the question).
std::string record_question(const Record& r);
// That final assistant turn's content, the reference answer, followed by its tool calls as the
// template `kind` writes them (after a newline when it has content: tool_calls_text, Qwen3's with a
// string of arguments as given; llama3.1's call alone: llama31_call_text); none when the
// conversation has no final assistant turn.
std::optional<std::string> record_reference(const Record& r, ChatTemplateKind kind = ChatTemplateKind::ChatML);
