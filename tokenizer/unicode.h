// Unicode helpers for the byte-level BPE: UTF-8 decoding that never fails (an invalid byte is a
// one-byte "character" of its own, so any byte string can be encoded), the character classes the
// pre-tokenizer regexes use, and GPT-2's byte ↔ printable-character map.
#pragma once
#include <cstddef>
#include <cstdint>
#include <string>
#include <string_view>

struct UnicodeRange { uint32_t lo, hi; };

// Generated from the UCD by tokenizer/gen_unicode_tables.py (sorted, non-overlapping).
extern const UnicodeRange kLetterRanges[];      // \p{L}: Lu Ll Lt Lm Lo
extern const size_t kLetterRanges_count;
extern const UnicodeRange kNumberRanges[];      // \p{N}: Nd Nl No
extern const size_t kNumberRanges_count;
extern const UnicodeRange kWhiteSpaceRanges[];  // \s: the White_Space property
extern const size_t kWhiteSpaceRanges_count;

// Code point returned for a byte that does not start a valid UTF-8 sequence.
constexpr uint32_t kInvalidCodepoint = 0xFFFFFFFF;

// Decodes the character starting at s[i] into cp and returns its length in bytes (≥ 1). Overlong
// forms, surrogates, values above U+10FFFF and truncated sequences give kInvalidCodepoint, length 1.
size_t utf8_decode(std::string_view s, size_t i, uint32_t& cp);
void utf8_append(std::string& out, uint32_t cp);

bool is_letter(uint32_t cp);
bool is_number(uint32_t cp);
bool is_whitespace(uint32_t cp);

// GPT-2's bytes_to_unicode: each byte maps to one printable character (bytes that are printable
// Latin-1 map to themselves, the rest to U+0100 + n), so byte strings can live in a text vocabulary.
// byte_to_unicode returns that character's UTF-8; unicode_to_byte returns the byte or -1.
const std::string& byte_to_unicode(uint8_t b);
int unicode_to_byte(uint32_t cp);
