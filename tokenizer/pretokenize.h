// Pre-tokenizers: split text into the pieces BPE runs on, exactly as Hugging Face tokenizers does
// with the regexes below (hand-written matchers: std::regex is slow and has no \p{L}).
//   GPT2:   's|'t|'re|'ve|'m|'ll|'d| ?\p{L}+| ?\p{N}+| ?[^\s\p{L}\p{N}]+|\s+(?!\S)|\s+
//   SmolLM: every \p{N} character alone (Digits(individual_digits=true)), then GPT2 on the rest;
//           also StarCoder's and llama.cpp's "smollm"/"starcoder"/"refact" pre types
//   Llama3: (?i:'s|'t|'re|'ve|'m|'ll|'d)|[^\r\n\p{L}\p{N}]?\p{L}+|\p{N}{1,3}
//           | ?[^\s\p{L}\p{N}]+[\r\n]*|\s*[\r\n]+|\s+(?!\S)|\s+
//   Qwen2:  as Llama3 but \p{N} one at a time
// Bytes that are not valid UTF-8 count as one "other" character each, so any byte string splits.
#pragma once
#include <cstdint>
#include <string>
#include <string_view>
#include <vector>

struct JsonValue;

enum class PreTokenizerKind : int32_t { GPT2 = 0, SmolLM = 1, Llama3 = 2, Qwen2 = 3 };

// Appends the pieces of `text` (views into it; together they cover it exactly, in order) to `out`.
void pretokenize(PreTokenizerKind kind, std::string_view text, std::vector<std::string_view>& out);

const char* pre_tokenizer_name(PreTokenizerKind kind);  // "gpt2", "smollm", "llama3", "qwen2"

// From GGUF's tokenizer.ggml.pre ("gpt2", "smollm", "starcoder", "llama-bpe", "qwen2", ...); fails
// listing the supported values when the string is unknown.
PreTokenizerKind pre_tokenizer_from_gguf(const std::string& pre);
// llama.cpp's name for `kind` (what export_gguf writes; pre_tokenizer_from_gguf reads it back).
const char* pre_tokenizer_to_gguf(PreTokenizerKind kind);

// From the "pre_tokenizer" object of a Hugging Face tokenizer.json; fails describing the config
// when it is not one of the four layouts above. `path` names the file in errors.
PreTokenizerKind pre_tokenizer_from_hf(const JsonValue& pre_tokenizer, const std::string& path);
// The "pre_tokenizer" object (JSON text) that Hugging Face tokenizers runs as `kind`, and that
// pre_tokenizer_from_hf reads back as `kind`.
std::string pre_tokenizer_to_hf(PreTokenizerKind kind);
