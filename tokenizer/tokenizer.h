// BPE tokenizers of the two kinds LLaMA-family models ship (TokenizerModel): GPT-2's byte-level
// BPE (SmolLM2, Llama-3, Qwen2) and SentencePiece's BPE (LLaMA-1, Llama-2, Mistral v0.1,
// TinyLlama). A plain struct that any loader fills — tokenizer.json, SentencePiece's
// tokenizer.model, our .tok file, or a GGUF's tokenizer.ggml.* metadata — followed by
// tokenizer_build(), which checks the fields and builds the lookup tables encode/decode use.
//
// Encoding: special/added tokens are cut out of the text first (longest match). Each run of text
// between them becomes a row of symbols that are merged by rank (lowest first, leftmost among
// equals), the same merge loop for both kinds:
//   ByteLevel      the run is pre-tokenized (tokenizer/pretokenize.h) and each piece's bytes are
//                  mapped to GPT-2's printable characters, one symbol per byte;
//   SentencePiece  no pre-tokenization: spaces become "▁", a "▁" may be prepended (SpacePrefix),
//                  and each Unicode character is one symbol, or, when the vocabulary has no token
//                  for it, its UTF-8 bytes' <0xXX> tokens ("byte fallback").
// encode() never adds BOS/EOS: chat templates put them in the text and callers add ids themselves
// (Tokenizer::add_bos). Any byte string, invalid UTF-8 included, encodes and decodes back to the
// same bytes — provided the vocabulary has a token for each of its bytes: bytes without one are
// dropped, exactly as Hugging Face does (GPT-2, Llama-3, Qwen2 and SentencePiece models with byte
// fallback have all 256; SmolLM2 lacks 21 control and never-valid-UTF-8 bytes, see
// tokenizer_missing_bytes), and except that SentencePiece decodes every "▁" (U+2581) as a space,
// one that was in the text too (its spaces are written that way; Hugging Face's decoders do the same).
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

enum class TokenizerModel : int32_t { ByteLevel = 0, SentencePiece = 1 };

// Where a SentencePiece tokenizer prepends "▁" to a run of text (a run: text between special tokens;
// an empty run gets nothing):
//   None         never (tokenizer.json Metaspace prepend_scheme "never")
//   Always       every run, even one that starts with a space: SentencePiece's add_dummy_prefix,
//                llama.cpp's add_space_prefix, the Prepend normalizer of Llama-2's and Mistral's
//                tokenizer.json
//   First        only the run at the very start of the text, unless it starts with a space
//                (Metaspace "first", what transformers writes for Llama with legacy = false)
//   UnlessSpace  every run that does not start with a space (Metaspace "always")
// Decoding drops one leading space from the text unless the mode is None.
enum class SpacePrefix : int32_t { None = 0, Always = 1, First = 2, UnlessSpace = 3 };
inline constexpr char kSpmSpace[] = "\xE2\x96\x81";  // U+2581 "▁", SentencePiece's visible space

struct Tokenizer {
    // --- set by a loader ---
    TokenizerModel model = TokenizerModel::ByteLevel;
    SpacePrefix space_prefix = SpacePrefix::None;  // SentencePiece only
    // id → token exactly as tokenizer.json/GGUF store it: byte-level form ("Ġthe") or SentencePiece's
    // ("▁the", bytes as "<0x0A>"); special tokens (Control, UserDefined, Unknown) are plain text ("<|im_start|>").
    std::vector<std::string> vocab;
    std::vector<TokenType> token_type;  // same length as vocab
    // merge rules in rank order (rank = index): the pair of token strings to join. SentencePiece's own
    // files (and GGUF) give scores instead: spm_merges_from_scores turns them into this list.
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
    // The model expects BOS before every sequence (tokenizer_config.json add_bos_token, GGUF
    // tokenizer.ggml.add_bos_token): the data pipeline and ./generate put it in front of text that
    // does not already start with it.
    bool add_bos = false;
    // tokenizer.json's added tokens with "lstrip" / "rstrip" (Phi-3's <|user|>, <|end|>, ...): when one
    // is cut out of text, the whitespace before (kStripLeft) or after it (kStripRight) goes with it,
    // encoded as nothing. Bits per token id; empty: no token strips.
    static constexpr uint8_t kStripLeft = 1, kStripRight = 2;
    std::vector<uint8_t> strip;

    // --- built by tokenizer_build ---
    struct Merge { int32_t rank, result; };
    std::unordered_map<std::string, int32_t> token_to_id;  // byte-level string → id (Normal tokens and the rest)
    std::unordered_map<uint64_t, Merge> merge_of;          // (left id << 32 | right id) → rank and merged id
    int32_t byte_token[256];                               // id of each byte's token ("Ġ", "<0x0A>"), -1 if absent
    std::vector<std::string> token_bytes;                  // id → the raw bytes it stands for (decode)
    // special tokens to cut out of text, bucketed by first byte, longest first
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
// A tokenizer with more tokens than the model has embedding rows: Gemma 3's tokenizer.json adds
// <image_soft_token> (id 262144) for its vision models, which the text models' 262,144 rows lack.
// Trailing special tokens that nothing else refers to (not BOS/EOS/pad, in no merge) are dropped
// with a note, as llama.cpp's converter drops them; any other surplus fails, naming `where` and
// `rows_what` ("the model's vocab_size is", "token_embd.weight has ... rows").
void tokenizer_fit_rows(Tokenizer& tok, size_t rows, const std::string& where, const std::string& rows_what);
// The .tok that ./convert writes beside a model: the model's path with its file name's extension
// replaced (or added).
std::string tokenizer_beside(const std::string& model_path);
// The tokenizer a model is used with: `flag` (--tokenizer) when given, else the .tok beside the
// model; with neither, fails naming the model and what to pass (`also`: a program's other choice).
std::string tokenizer_of_model(const std::string& model_path, const std::string& flag, const char* also = "");
// By extension: ".json" → tokenizer_load_hf, ".model" → tokenizer_load_spm, anything else → tokenizer_load.
Tokenizer tokenizer_load_any(const std::string& path);

// SentencePiece tokenizer.model (LLaMA-1/2, Mistral), with tokenizer_config.json beside it when
// there is one (chat template, add_bos_token).
Tokenizer tokenizer_load_spm(const std::string& path);

// --- SentencePiece particulars (tokenizer/sentencepiece.cpp), for the loaders and writers ---
struct JsonValue;
// SentencePiece's scores (tokenizer.model, GGUF tokenizer.ggml.scores) as merge rules, the way
// transformers converts them to tokenizer.json: every split of a Normal token into two tokens is a
// merge, ranked by the token's score, highest first (then by id). Merging by these ranks is
// SentencePiece's own rule: join the adjacent pair whose result scores highest.
std::vector<std::pair<std::string, std::string>> spm_merges_from_scores(const std::vector<std::string>& vocab,
                                                                        const std::vector<float>& scores,
                                                                        const std::vector<TokenType>& types);
// The other way, for GGUF: scores that rank merged tokens as tok.merges does.
std::vector<float> spm_scores_from_merges(const Tokenizer& tok);
// A user-defined piece as llama.cpp's converter writes it into a GGUF (its "▁" as spaces: Gemma's
// "▁▁" as "  ") and back as tokenizer.model and tokenizer.json have it.
std::string spm_meta_to_spaces(const std::string& token);
std::string spm_spaces_to_meta(const std::string& token);
// The byte of a byte-fallback token ("<0x0A>" → 10), or -1 for any other text.
int spm_byte_token_value(const std::string& token);
// Fills tok's fields (not the side files, not tokenizer_build) from a tokenizer.model's bytes; path
// names the file in errors.
void spm_model_parse(const std::string& bytes, const std::string& path, Tokenizer& tok);
// tokenizer.json's normalizer and pre_tokenizer (either may be null) → where "▁" is prepended.
SpacePrefix spm_space_prefix_from_hf(const JsonValue* normalizer, const JsonValue* pre_tokenizer, const std::string& path);
// And back: the normalizer, pre_tokenizer and decoder JSON of a tokenizer.json with that prefix.
struct SpmHfJson { std::string normalizer, pre_tokenizer, decoder; };
SpmHfJson spm_hf_json(SpacePrefix prefix);

// Where a text encoded on its own sits in a longer one: at its start, after a special token, or
// after ordinary text. A SentencePiece space prefix depends on it; byte-level BPE ignores it.
enum class TextStart { Begin, AfterSpecial, AfterText };

// parse_special = false treats Control and Unknown tokens in the text ("<|im_start|>", "<unk>") as
// plain text (for untrusted user data); UserDefined tokens are always matched, as Hugging Face and
// llama.cpp do.
std::vector<int32_t> encode(const Tokenizer& tok, std::string_view text, bool parse_special = true,
                            TextStart where = TextStart::Begin);
// encode() with BOS in front when the model wants it (add_bos) and the text did not start with it:
// a prompt as Hugging Face's tokenizer(text) gives it.
std::vector<int32_t> encode_with_bos(const Tokenizer& tok, std::string_view text, bool parse_special = true);
// Drops one leading space for a SentencePiece tokenizer with a space prefix, as its decoders do.
std::string decode(const Tokenizer& tok, const std::vector<int32_t>& ids);
// The raw bytes of one token (possibly part of a UTF-8 character; "▁" as a space); fails on an id
// out of range.
const std::string& decode_token(const Tokenizer& tok, int32_t id);
// The bytes this vocabulary has no token for (encode drops them), so data checks can report them.
std::vector<uint8_t> tokenizer_missing_bytes(const Tokenizer& tok);
// Where text resumes after special token `id`, which ends at text[at]: past the white space the token
// takes with it when it strips right (Tokenizer::strip), else at.
size_t text_after_token(const Tokenizer& tok, int32_t id, std::string_view text, size_t at);
// Tokens that end a model's turn or document (<|im_end|>, <|eot_id|>, <end_of_turn>, Phi-3's <|end|>,
// <|endoftext|>, and EOS): generation stops at any of them.
std::vector<int32_t> end_of_turn_ids(const Tokenizer& tok);
// One line for logs: "32000 tokens, 58980 merges, SentencePiece BPE (space prefix always), chat
// template mistral, bos 1 (added), eos 2, pad -1".
std::string tokenizer_describe(const Tokenizer& tok);
// Special tokens (Control, UserDefined, Unknown): cut out of text whole, never merged into.
bool is_special_token(const Tokenizer& tok, int32_t id);
// The id of a token given as the vocabulary stores it ("<|im_end|>", "Ġthe", "▁the"), or -1.
int32_t token_id(const Tokenizer& tok, const std::string& token);
