#!/usr/bin/env python3
"""Writes tokenizer/unicode_tables.cpp: the code point ranges of the character classes the
pre-tokenizer regexes use (\\p{L}, \\p{N}, \\s), and tokenizer/unicode_nfc_tables.cpp: the data of
Unicode normalization form C (the NFC normalizer of Qwen2-style tokenizers: canonical combining
classes, full canonical decompositions, primary composites, the code points the quick check cannot
pass), from the Unicode Character Database as shipped in Python's unicodedata module. Run from the repo root:
python3 tokenizer/gen_unicode_tables.py

Hugging Face tokenizers runs these regexes with Oniguruma; its \\p{L} is categories Lu Ll Lt Lm Lo,
\\p{N} is Nd Nl No, and \\s is the White_Space property. unicodedata has no White_Space, so that
list is written out below from PropList.txt (unchanged since Unicode 6.3, when U+180E left it).
The tests compare whole encodings against tokenizers' output, which would catch a mismatch."""
import sys
import unicodedata

WHITE_SPACE = [(0x09, 0x0D), (0x20, 0x20), (0x85, 0x85), (0xA0, 0xA0), (0x1680, 0x1680), (0x2000, 0x200A),
               (0x2028, 0x2029), (0x202F, 0x202F), (0x205F, 0x205F), (0x3000, 0x3000)]


def ranges(pred):
    out, start = [], None
    for cp in range(0x110000 + 1):
        inside = cp <= 0x10FFFF and pred(cp)
        if inside and start is None:
            start = cp
        elif not inside and start is not None:
            out.append((start, cp - 1))
            start = None
    return out


def emit(name, rs, f):
    f.write(f"const UnicodeRange {name}[] = {{\n")
    for i in range(0, len(rs), 6):
        f.write("    " + " ".join(f"{{0x{a:X}, 0x{b:X}}}," for a, b in rs[i:i + 6]) + "\n")
    f.write("};\n")
    f.write(f"const size_t {name}_count = {len(rs)};\n\n")


HANGUL = range(0xAC00, 0xD7A4)  # syllables: decomposed and composed algorithmically, not from tables


def nfc_tables(f):
    """Canonical combining classes as (lo, hi, ccc) ranges; each decomposable code point's full
    canonical decomposition (its NFD); each primary composite as (first, second) -> composite (a
    two-character canonical decomposition that NFC keeps, i.e. not a composition exclusion); and the
    code points whose presence sends a string through the full algorithm (NFC_Quick_Check No: NFC
    changes them; Maybe: they may combine with what precedes them)."""
    ccc_ranges, start = [], None
    for cp in range(0x110001):
        c = unicodedata.combining(chr(cp)) if cp <= 0x10FFFF else 0
        if start is not None and (c != start[1] or cp != prev + 1):
            ccc_ranges.append((start[0], prev, start[1]))
            start = None
        if c and start is None:
            start = (cp, c)
        prev = cp
    decomp, comps, qc_no, seconds = [], [], set(), set()
    for cp in range(0x110000):
        if cp in HANGUL or 0xD800 <= cp <= 0xDFFF:
            continue
        ch = chr(cp)
        d = unicodedata.decomposition(ch)
        if not d or d.startswith("<"):
            continue
        nfd = unicodedata.normalize("NFD", ch)
        decomp.append((cp, [ord(x) for x in nfd]))
        if unicodedata.normalize("NFC", ch) != ch:
            qc_no.add(cp)
        direct = [int(x, 16) for x in d.split()]
        if len(direct) == 2 and unicodedata.normalize("NFC", ch) == ch:
            comps.append((direct[0], direct[1], cp))
            seconds.add(direct[1])
    maybe = seconds | set(range(0x1161, 0x1176)) | set(range(0x11A8, 0x11C3))  # + Hangul V and T jamo
    quick = sorted(qc_no | maybe)
    qc_ranges = []
    for cp in quick:
        if qc_ranges and qc_ranges[-1][1] == cp - 1:
            qc_ranges[-1][1] = cp
        else:
            qc_ranges.append([cp, cp])
    f.write("const CombiningClassRange kCombiningClasses[] = {\n")
    for i in range(0, len(ccc_ranges), 7):
        f.write("    " + " ".join(f"{{0x{a:X}, 0x{b:X}, {c}}}," for a, b, c in ccc_ranges[i:i + 7]) + "\n")
    f.write(f"}};\nconst size_t kCombiningClasses_count = {len(ccc_ranges)};\n\n")
    data, entries = [], []
    for cp, seq in decomp:
        entries.append((cp, len(data), len(seq)))
        data.extend(seq)
    f.write("const uint32_t kDecompositionData[] = {\n")
    for i in range(0, len(data), 16):
        f.write("    " + " ".join(f"0x{x:X}," for x in data[i:i + 16]) + "\n")
    f.write("};\nconst Decomposition kDecompositions[] = {\n")
    for i in range(0, len(entries), 7):
        f.write("    " + " ".join(f"{{0x{a:X}, {b}, {c}}}," for a, b, c in entries[i:i + 7]) + "\n")
    f.write(f"}};\nconst size_t kDecompositions_count = {len(entries)};\n\n")
    comps.sort()
    f.write("const Composition kCompositions[] = {\n")
    for i in range(0, len(comps), 5):
        f.write("    " + " ".join(f"{{0x{a:X}, 0x{b:X}, 0x{c:X}}}," for a, b, c in comps[i:i + 5]) + "\n")
    f.write(f"}};\nconst size_t kCompositions_count = {len(comps)};\n\n")
    emit("kNfcQuickCheckRanges", [tuple(r) for r in qc_ranges], f)
    return len(ccc_ranges), len(entries), len(comps), len(qc_ranges)


def main():
    letter = ranges(lambda cp: unicodedata.category(chr(cp)) in ("Lu", "Ll", "Lt", "Lm", "Lo"))
    number = ranges(lambda cp: unicodedata.category(chr(cp)) in ("Nd", "Nl", "No"))
    path = "tokenizer/unicode_tables.cpp"
    with open(path, "w") as f:
        f.write(f"// Generated by tokenizer/gen_unicode_tables.py from Unicode {unicodedata.unidata_version}; do not edit.\n")
        f.write('#include "tokenizer/unicode.h"\n\n')
        emit("kLetterRanges", letter, f)
        emit("kNumberRanges", number, f)
        emit("kWhiteSpaceRanges", WHITE_SPACE, f)
    with open("tokenizer/unicode_nfc_tables.cpp", "w") as f:
        f.write(f"// Generated by tokenizer/gen_unicode_tables.py from Unicode {unicodedata.unidata_version}; do not edit.\n")
        f.write('#include "tokenizer/unicode.h"\n\n')
        counts = nfc_tables(f)
    print(f"{path} and unicode_nfc_tables.cpp: {len(letter)} letter, {len(number)} number, {len(WHITE_SPACE)} white-space ranges; NFC: "
          "{} combining-class ranges, {} decompositions, {} compositions, {} quick-check ranges".format(*counts),
          file=sys.stderr)


if __name__ == "__main__":
    main()
