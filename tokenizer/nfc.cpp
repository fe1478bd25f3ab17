// Unicode normalization form C (UAX #15) over UTF-8, with the tables gen_unicode_tables.py derives
// from the UCD. Three steps on a decomposed copy of the text:
//   1. decompose every character fully and canonically (tables; Hangul syllables by arithmetic),
//   2. put each run of combining marks (non-zero combining class) in stable order of class,
//   3. compose: from left to right, a character joins the last starter (class 0) when they form a
//      primary composite and nothing between them blocks it (a mark of class 0 or of a class >= its
//      own).
// Most text is already NFC, which the quick check finds in one pass over the code points.
#include <algorithm>
#include <vector>

#include "tokenizer/unicode.h"

namespace {

// Hangul syllables: S = SBase + (L·VCount + V)·TCount + T (Unicode §3.12).
constexpr uint32_t SBase = 0xAC00, LBase = 0x1100, VBase = 0x1161, TBase = 0x11A7;
constexpr uint32_t LCount = 19, VCount = 21, TCount = 28, SCount = LCount * VCount * TCount;

// An invalid UTF-8 byte travels through the steps as this value plus the byte: class 0, no
// decomposition, no composition.
constexpr uint32_t kRawByte = 0x110000;

uint32_t ccc(uint32_t cp) {
    const CombiningClassRange* end = kCombiningClasses + kCombiningClasses_count;
    const CombiningClassRange* r =
        std::upper_bound(kCombiningClasses, end, cp, [](uint32_t v, const CombiningClassRange& x) { return v < x.lo; });
    return r != kCombiningClasses && cp <= (r - 1)->hi ? (r - 1)->ccc : 0;
}

bool quick_check_no_or_maybe(uint32_t cp) {
    const UnicodeRange* end = kNfcQuickCheckRanges + kNfcQuickCheckRanges_count;
    const UnicodeRange* r =
        std::upper_bound(kNfcQuickCheckRanges, end, cp, [](uint32_t v, const UnicodeRange& x) { return v < x.lo; });
    return r != kNfcQuickCheckRanges && cp <= (r - 1)->hi;
}

void decompose(uint32_t cp, std::vector<uint32_t>& out) {
    if (cp >= SBase && cp < SBase + SCount) {
        const uint32_t s = cp - SBase;
        out.push_back(LBase + s / (VCount * TCount));
        out.push_back(VBase + s % (VCount * TCount) / TCount);
        if (s % TCount) out.push_back(TBase + s % TCount);
        return;
    }
    const Decomposition* end = kDecompositions + kDecompositions_count;
    const Decomposition* d = std::lower_bound(kDecompositions, end, cp, [](const Decomposition& x, uint32_t v) { return x.cp < v; });
    if (d != end && d->cp == cp) out.insert(out.end(), kDecompositionData + d->offset, kDecompositionData + d->offset + d->length);
    else out.push_back(cp);
}

// The primary composite of a pair, or 0.
uint32_t compose(uint32_t a, uint32_t b) {
    if (a >= LBase && a < LBase + LCount && b >= VBase && b < VBase + VCount)
        return SBase + ((a - LBase) * VCount + (b - VBase)) * TCount;
    if (a >= SBase && a < SBase + SCount && (a - SBase) % TCount == 0 && b > TBase && b < TBase + TCount)
        return a + (b - TBase);
    const Composition* end = kCompositions + kCompositions_count;
    const Composition* c = std::lower_bound(kCompositions, end, std::make_pair(a, b), [](const Composition& x, const std::pair<uint32_t, uint32_t>& v) {
        return x.first < v.first || (x.first == v.first && x.second < v.second);
    });
    return c != end && c->first == a && c->second == b ? c->composite : 0;
}

}  // namespace

std::string nfc(std::string_view s) {
    // Quick check: every code point NFC_Quick_Check Yes and the marks in canonical order.
    bool quick = true;
    uint32_t last = 0;
    for (size_t i = 0; i < s.size() && quick;) {
        if ((uint8_t)s[i] < 0x80) {  // ASCII: class 0, Yes
            last = 0, i++;
            continue;
        }
        uint32_t cp;
        i += utf8_decode(s, i, cp);
        const uint32_t c = cp == kInvalidCodepoint ? 0 : ccc(cp);
        quick = (cp == kInvalidCodepoint || !quick_check_no_or_maybe(cp)) && (c == 0 || last <= c);
        last = c;
    }
    if (quick) return std::string(s);

    std::vector<uint32_t> d;
    d.reserve(s.size());
    for (size_t i = 0; i < s.size();) {
        uint32_t cp;
        const size_t n = utf8_decode(s, i, cp);
        if (cp == kInvalidCodepoint) d.push_back(kRawByte + (uint8_t)s[i]);
        else decompose(cp, d);
        i += n;
    }
    auto cls = [](uint32_t cp) { return cp >= kRawByte ? 0u : ccc(cp); };
    for (size_t i = 0; i < d.size();) {  // canonical ordering of each run of marks (a stable sort)
        if (cls(d[i]) == 0) {
            i++;
            continue;
        }
        size_t j = i;
        while (j < d.size() && cls(d[j]) != 0) j++;
        std::stable_sort(d.begin() + i, d.begin() + j, [&](uint32_t a, uint32_t b) { return cls(a) < cls(b); });
        i = j;
    }
    std::vector<uint32_t> out;
    out.reserve(d.size());
    long starter = -1;    // index in `out` of the last starter
    uint32_t last_cc = 0; // class of the last character after that starter (0: none yet, or a starter)
    for (uint32_t cp : d) {
        const uint32_t cc = cls(cp);
        if (starter >= 0 && cp < kRawByte) {
            const bool adjacent = (size_t)starter + 1 == out.size();
            if (adjacent || (last_cc != 0 && last_cc < cc)) {
                if (uint32_t c = compose(out[starter], cp)) {
                    out[starter] = c;
                    continue;
                }
            }
        }
        if (cc == 0) starter = cp < kRawByte ? (long)out.size() : -1, last_cc = 0;
        else last_cc = cc;
        out.push_back(cp);
    }
    std::string r;
    r.reserve(s.size());
    for (uint32_t cp : out) {
        if (cp >= kRawByte) r += (char)(cp - kRawByte);
        else utf8_append(r, cp);
    }
    return r;
}
