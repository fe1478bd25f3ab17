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
extern const UnicodeRange kNumericAddedRanges[];  // Rust's char::is_numeric (Unicode 17) beyond \p{N}
extern const size_t kNumericAddedRanges_count;
extern const UnicodeRange kWhiteSpaceRanges[];  // \s: the White_Space property
extern const size_t kWhiteSpaceRanges_count;

// Unicode normalization form C, generated the same way (tokenizer/unicode_nfc_tables.cpp).
struct CombiningClassRange { uint32_t lo, hi, ccc; };            // non-zero classes only
struct Decomposition { uint32_t cp, offset, length; };           // full canonical decomposition
struct Composition { uint32_t first, second, composite; };       // primary composites
extern const CombiningClassRange kCombiningClasses[];
extern const size_t kCombiningClasses_count;
extern const uint32_t kDecompositionData[];
extern const Decomposition kDecompositions[];                    // sorted by cp; Hangul is algorithmic
extern const size_t kDecompositions_count;
extern const Composition kCompositions[];                        // sorted by (first, second)
extern const size_t kCompositions_count;
extern const UnicodeRange kNfcQuickCheckRanges[];                // NFC_Quick_Check No or Maybe
extern const size_t kNfcQuickCheckRanges_count;

// Code point returned for a byte that does not start a valid UTF-8 sequence.
constexpr uint32_t kInvalidCodepoint = 0xFFFFFFFF;

// Decodes the character starting at s[i] into cp and returns its length in bytes (≥ 1). Overlong
// forms, surrogates, values above U+10FFFF and truncated sequences give kInvalidCodepoint, length 1.
size_t utf8_decode(std::string_view s, size_t i, uint32_t& cp);
// s with each maximal invalid subpart replaced by one U+FFFD, as Rust's from_utf8_lossy (which
// tokenizers' decode uses): E2 82 then 'x' gives one U+FFFD and 'x'.
std::string utf8_lossy(std::string_view s);
void utf8_append(std::string& out, uint32_t cp);

bool is_letter(uint32_t cp);
bool is_number(uint32_t cp);
// What Hugging Face tokenizers' Digits pre-tokenizer splits off: Rust's char::is_numeric, a newer
// Unicode than its regexes' \p{N} (is_number), so 13 code points more.
bool is_numeric(uint32_t cp);
bool is_whitespace(uint32_t cp);

// NFC (UAX #15: canonical decomposition, canonical ordering, canonical composition), as the NFC
// normalizer of Hugging Face tokenizers applies it. Text already in NFC (the quick check: no code
// point that is NFC_Quick_Check No or Maybe, combining marks in canonical order) comes back as it
// is without further work; bytes that are not valid UTF-8 pass through unchanged.
std::string nfc(std::string_view s);

// GPT-2's bytes_to_unicode: each byte maps to one printable character (bytes that are printable
// Latin-1 map to themselves, the rest to U+0100 + n), so byte strings can live in a text vocabulary.
// byte_to_unicode returns that character's UTF-8; unicode_to_byte returns the byte or -1.
const std::string& byte_to_unicode(uint8_t b);
int unicode_to_byte(uint32_t cp);
