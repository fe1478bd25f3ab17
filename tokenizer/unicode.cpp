#include "tokenizer/unicode.h"

#include <array>

namespace {

bool in_ranges(const UnicodeRange* r, size_t n, uint32_t cp) {
    size_t lo = 0, hi = n;  // binary search for the first range with hi >= cp
    while (lo < hi) {
        size_t mid = (lo + hi) / 2;
        if (r[mid].hi < cp) lo = mid + 1;
        else hi = mid;
    }
    return lo < n && r[lo].lo <= cp;
}

// The 188 bytes GPT-2 keeps as themselves: '!'..'~', '¡'..'¬', '®'..'ÿ'.
bool byte_is_printable(int b) { return (b >= 0x21 && b <= 0x7E) || (b >= 0xA1 && b <= 0xAC) || (b >= 0xAE && b <= 0xFF); }

struct ByteMap {
    std::array<std::string, 256> to_unicode;
    std::array<int16_t, 324> from_unicode;  // every mapped code point is < 0x100 + 68
    ByteMap() {
        from_unicode.fill(-1);
        int next = 0;
        for (int b = 0; b < 256; b++) {
            uint32_t cp = byte_is_printable(b) ? (uint32_t)b : 0x100 + next++;
            utf8_append(to_unicode[b], cp);
            from_unicode[cp] = (int16_t)b;
        }
    }
};

const ByteMap& byte_map() {
    static const ByteMap m;
    return m;
}

}  // namespace

namespace {
// The character at s[i]: its length, or for an invalid one (cp = kInvalidCodepoint) the length of
// its maximal subpart, the bytes that start a valid character before one breaks it (Unicode's term;
// what Rust's from_utf8_lossy replaces by one U+FFFD).
size_t decode_at(std::string_view s, size_t i, uint32_t& cp) {
    auto u = [&](size_t k) { return i + k < s.size() ? (unsigned char)s[i + k] : 0u; };
    unsigned c = u(0);
    cp = kInvalidCodepoint;
    if (c < 0x80) { cp = c; return 1; }
    size_t n;
    unsigned lo = 0x80, hi = 0xBF;  // allowed range of the second byte (excludes overlongs and surrogates)
    if (c >= 0xC2 && c <= 0xDF) n = 2;
    else if (c >= 0xE0 && c <= 0xEF) n = 3, lo = c == 0xE0 ? 0xA0 : 0x80, hi = c == 0xED ? 0x9F : 0xBF;
    else if (c >= 0xF0 && c <= 0xF4) n = 4, lo = c == 0xF0 ? 0x90 : 0x80, hi = c == 0xF4 ? 0x8F : 0xBF;
    else return 1;
    if (u(1) < lo || u(1) > hi) return 1;
    uint32_t v = c & (0x7F >> n);
    for (size_t k = 1; k < n; k++) {
        if ((u(k) & 0xC0) != 0x80) return k;
        v = v << 6 | (u(k) & 0x3F);
    }
    cp = v;
    return n;
}
}  // namespace

size_t utf8_decode(std::string_view s, size_t i, uint32_t& cp) {
    const size_t n = decode_at(s, i, cp);
    return cp == kInvalidCodepoint ? 1 : n;
}

std::string utf8_lossy(std::string_view s) {
    std::string out;
    out.reserve(s.size());
    for (size_t i = 0; i < s.size();) {
        uint32_t cp;
        const size_t n = decode_at(s, i, cp);
        if (cp == kInvalidCodepoint) out += "\xEF\xBF\xBD";
        else out.append(s, i, n);
        i += n;
    }
    return out;
}

void utf8_append(std::string& out, uint32_t cp) {
    if (cp < 0x80) {
        out += (char)cp;
    } else if (cp < 0x800) {
        out += (char)(0xC0 | cp >> 6);
        out += (char)(0x80 | (cp & 0x3F));
    } else if (cp < 0x10000) {
        out += (char)(0xE0 | cp >> 12);
        out += (char)(0x80 | (cp >> 6 & 0x3F));
        out += (char)(0x80 | (cp & 0x3F));
    } else {
        out += (char)(0xF0 | cp >> 18);
        out += (char)(0x80 | (cp >> 12 & 0x3F));
        out += (char)(0x80 | (cp >> 6 & 0x3F));
        out += (char)(0x80 | (cp & 0x3F));
    }
}

// ASCII is the bulk of most text: answer it without the binary search.
bool is_letter(uint32_t cp) {
    if (cp < 0x80) return (cp | 0x20) >= 'a' && (cp | 0x20) <= 'z';
    return in_ranges(kLetterRanges, kLetterRanges_count, cp);
}

bool is_number(uint32_t cp) {
    if (cp < 0x80) return cp >= '0' && cp <= '9';
    return in_ranges(kNumberRanges, kNumberRanges_count, cp);
}

bool is_numeric(uint32_t cp) { return is_number(cp) || in_ranges(kNumericAddedRanges, kNumericAddedRanges_count, cp); }

bool is_whitespace(uint32_t cp) { return in_ranges(kWhiteSpaceRanges, kWhiteSpaceRanges_count, cp); }

const std::string& byte_to_unicode(uint8_t b) { return byte_map().to_unicode[b]; }

int unicode_to_byte(uint32_t cp) { return cp < 324 ? byte_map().from_unicode[cp] : -1; }
