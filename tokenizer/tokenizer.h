// Byte-level BPE tokenizer (GPT-2 family: SmolLM2, Llama-3, Qwen2). A plain struct that any loader
// fills — tokenizer.json, our .tok file, or a GGUF's tokenizer.ggml.* metadata — followed by
// tokenizer_build(), which checks the fields and builds the lookup tables encode/decode use.
//
// Encoding: special/added tokens are cut out of the text first (longest match), the pieces between
// them are pre-tokenized (tokenizer/pretokenize.h), each piece's bytes are mapped to GPT-2's
// printable characters and merged by rank. encode() never adds BOS/EOS: chat templates put them
// in the text and callers append ids themselves. Any byte string, invalid UTF-8 included,
// encodes and decodes back to the same bytes — provided the vocabulary has a token for each of its
// bytes: bytes without one are dropped, exactly as Hugging Face does (GPT-2, Llama-3 and Qwen2 have
// all 256; SmolLM2 lacks 21 control and never-valid-UTF-8 bytes, see tokenizer_missing_bytes).
#pragma once
#include <cstdint>
#include <string>
#include <string_view>
#include <unordered_map>
#include <utility>
#include <vector>

#include "tokenizer/chat_template.h"
#include "tokenizer/pretokenize.h"

// The values of GGUF's tokenizer.ggml.token_type (llama.cpp's llama_token_type).
enum class TokenType : int32_t { Normal = 1, Unknown = 2, Control = 3, UserDefined = 4, Unused = 5, Byte = 6 };

struct Tokenizer {
    // --- set by a loader ---
    // id → token in byte-level form exactly as tokenizer.json/GGUF store it ("Ġthe"); Control and
    // UserDefined tokens are plain text ("<|im_start|>").
    std::vector<std::string> vocab;
    std::vector<TokenType> token_type;  // same length as vocab
    // merge rules in rank order (rank = index): the pair of byte-level token strings to join
    std::vector<std::pair<std::string, std::string>> merges;
    PreTokenizerKind pre = PreTokenizerKind::GPT2;
    ChatTemplate chat_template;
    // tokenizer.json "ignore_merges" (Llama-3): a piece that is itself a vocab entry is one token
    // even if the merges would build it differently. llama.cpp enables it for llama-bpe.
    bool ignore_merges = false;
    // tokenizer.json "normalizer": {"type": "NFC"} (Qwen2, GPT-NeoX): text between special tokens is
    // put in Unicode normalization form C before pre-tokenization (decode does not undo it).
    bool nfc = false;
    int32_t bos_id = -1, eos_id = -1, pad_id = -1;  // -1: the model has none

    // --- built by tokenizer_build ---
    struct Merge { int32_t rank, result; };
    std::unordered_map<std::string, int32_t> token_to_id;  // byte-level string → id (Normal tokens and the rest)
    std::unordered_map<uint64_t, Merge> merge_of;          // (left id << 32 | right id) → rank and merged id
    int32_t byte_token[256];                               // id of each single byte's token, -1 if absent
    std::vector<std::string> token_bytes;                  // id → the raw bytes it stands for (decode)
    // Control/UserDefined tokens to cut out of text, bucketed by first byte, longest first
    std::vector<int32_t> special_by_byte[256];
};

// Checks the loader's fields (sizes, ids in range, merges refer to vocab entries, no duplicate
// tokens) and builds the tables. Fails with a message naming the offending entry.
void tokenizer_build(Tokenizer& tok);

// tokenizer.json (Hugging Face). Reads config.json (bos/eos/pad ids) and tokenizer_config.json
// (chat_template; bos/eos token strings) from the same directory when they exist. Without a
// template, a vocabulary with <|im_start|> and <|im_end|> gets ChatML (no default system prompt).
Tokenizer tokenizer_load_hf(const std::string& path);
// tokenizer.json and tokenizer_config.json (chat template as Jinja, special tokens by text) into an
// existing directory, for transformers' AutoTokenizer; tokenizer_load_hf reads them back as `tok`.
void tokenizer_save_hf(const Tokenizer& tok, const std::string& dir, int64_t model_max_length);
// Our binary .tok format (layout in tokenizer_io.cpp); the writer is atomic.
void tokenizer_save(const Tokenizer& tok, const std::string& path);
Tokenizer tokenizer_load(const std::string& path);
// The .tok that ./convert writes beside a model: the model's path with its extension replaced.
std::string tokenizer_beside(const std::string& model_path);
// By extension: ".json" → tokenizer_load_hf, anything else → tokenizer_load.
Tokenizer tokenizer_load_any(const std::string& path);

// parse_special = false treats Control tokens in the text as plain text (for untrusted user data);
// UserDefined tokens are always matched, as Hugging Face and llama.cpp do.
std::vector<int32_t> encode(const Tokenizer& tok, std::string_view text, bool parse_special = true);
std::string decode(const Tokenizer& tok, const std::vector<int32_t>& ids);
// The raw bytes of one token (possibly part of a UTF-8 character); fails on an id out of range.
const std::string& decode_token(const Tokenizer& tok, int32_t id);
// The bytes this vocabulary has no token for (encode drops them), so data checks can report them.
std::vector<uint8_t> tokenizer_missing_bytes(const Tokenizer& tok);
// Tokens that end a model's turn or document (<|im_end|>, <|eot_id|>, <end_of_turn>, <|endoftext|>,
// and EOS): generation stops at any of them.
std::vector<int32_t> end_of_turn_ids(const Tokenizer& tok);
// The id of a token given in byte-level form ("<|im_end|>", "Ġthe"), or -1.
int32_t token_id(const Tokenizer& tok, const std::string& token);
