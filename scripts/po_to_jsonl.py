#!/usr/bin/env python3
"""Turns PO text (msgunfmt output of Korean .mo catalogs) into Korean->English translation pairs.

Reads PO from stdin, writes one JSON object per line to stdout:
  {"instruction": "Translate to English.", "input": <Korean>, "output": <English>}
Keeps only pairs that make clean sentence-level training data: one line on each side (at most
MAX_EN / MAX_KO characters), Korean that contains Hangul (not left untranslated), the same
printf/{} placeholders on both sides, and no keyboard accelerators. Deduplication across catalogs is done by the caller
(build_ko_en.sh) so this stays a pure filter of one catalog.
"""
import json
import re
import sys

# Korean costs 2-3 byte-level BPE tokens a character in an English-centred vocabulary, so its limit
# is tighter: most pairs then fit 128 tokens with the chat template around them.
MAX_EN, MAX_KO = 120, 60
# printf conversions (positional indices dropped: a translation may reorder "%1$s %2$s") and {name}
PLACEHOLDER = re.compile(r"%(?:\d+\$)?([-+ #0]*\d*(?:\.\d+)?[hlLqjzt]*[diouxXeEfgGcsp%])|(\{[^{}]*\})")
HANGUL = re.compile(r"[\uac00-\ud7a3]")
ACCEL = re.compile(r"\((?:_|&)\w\)|_\w|&\w")
ESCAPES = {"n": "\n", "t": "\t", "r": "\r", '"': '"', "\\": "\\", "a": "\a", "b": "\b", "f": "\f", "v": "\v"}


def unquote(s):
    """A PO string literal's content (without quotes), C escapes decoded."""
    out, i = [], 0
    while i < len(s):
        c = s[i]
        if c == "\\" and i + 1 < len(s):
            n = s[i + 1]
            if n in ESCAPES:
                out.append(ESCAPES[n]); i += 2; continue
            m = re.match(r"[0-7]{1,3}", s[i + 1:])
            if m:
                out.append(chr(int(m.group(0), 8))); i += 1 + len(m.group(0)); continue
        out.append(c); i += 1
    return "".join(out)


def entries(lines):
    """Yields (msgid, msgstr) of each entry; plural entries give their first form."""
    fields, key = {}, None
    for raw in lines + [""]:
        line = raw.strip()
        if not line or line.startswith("#"):
            if fields and not line.startswith("#"):
                yield fields.get("msgid", ""), fields.get("msgstr", fields.get("msgstr[0]", ""))
                fields, key = {}, None
            continue
        m = re.match(r'^(msgctxt|msgid_plural|msgid|msgstr(?:\[\d+\])?)\s+"(.*)"$', line)
        if m:
            key = m.group(1)
            fields[key] = unquote(m.group(2))
        elif line.startswith('"') and line.endswith('"') and key:
            fields[key] += unquote(line[1:-1])


def keep(en, ko):
    if not en or not ko or en == ko or "\n" in en or "\n" in ko:
        return False
    if not (3 <= len(en) <= MAX_EN and 2 <= len(ko) <= MAX_KO):
        return False
    if not HANGUL.search(ko) or not re.search(r"[A-Za-z]{2}", en):
        return False
    if sorted(PLACEHOLDER.findall(en)) != sorted(PLACEHOLDER.findall(ko)):  # (conversion, {name}) tuples
        return False
    return not ACCEL.search(en) and not ACCEL.search(ko)


def main():
    # msgunfmt writes the catalog's own charset (older Korean catalogs use EUC-KR): decode by the
    # header's charset; a catalog that does not decode is skipped with a warning.
    data = sys.stdin.buffer.read()
    m = re.search(rb"charset=([A-Za-z0-9_-]+)", data)
    charset = m.group(1).decode() if m else "utf-8"
    try:
        text = data.decode(charset)
    except (LookupError, UnicodeDecodeError) as e:
        print(f"warning: catalog not decodable as {charset}: {e}", file=sys.stderr)
        return
    for en, ko in entries(text.splitlines()):
        en, ko = en.strip(), ko.strip()
        if keep(en, ko):
            print(json.dumps({"instruction": "Translate to English.", "input": ko, "output": en}, ensure_ascii=False))


if __name__ == "__main__":
    main()
