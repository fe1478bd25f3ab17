#!/usr/bin/env bash
# Builds a Korean→English translation SFT set (instruction jsonl) from the Korean gettext catalogs
# Debian installs under /usr/share/locale/ko/LC_MESSAGES: real human translations of program
# messages. Each .mo file is decompiled with msgunfmt (package gettext), filtered to clean
# single-line pairs by scripts/po_to_jsonl.py, then deduplicated (one line per distinct Korean
# input, the first catalog in name order wins) and split deterministically into train and val.
#
#   scripts/build_ko_en.sh [OUT_DIR] [--install]     (default OUT_DIR: out/ko_en)
# --install first apt-get installs a few packages that ship Korean catalogs (root only).
# Output: OUT_DIR/train.jsonl, OUT_DIR/val.jsonl (~5%). The data is generated, never committed.
set -euo pipefail
cd "$(dirname "$0")/.."
OUT=out/ko_en
INSTALL=0
for a in "$@"; do
    case "$a" in
        --install) INSTALL=1 ;;
        -*) echo "usage: $0 [OUT_DIR] [--install]" >&2; exit 2 ;;
        *) OUT="$a" ;;
    esac
done
LOCALE_DIR=/usr/share/locale/ko/LC_MESSAGES

if [ "$INSTALL" = 1 ]; then
    [ "$(id -u)" = 0 ] || { echo "error: --install needs root (apt-get)" >&2; exit 1; }
    apt-get update -qq
    # Packages whose Korean catalogs are large and general (GUI toolkits, core utilities, codes).
    apt-get install -y -qq gettext iso-codes coreutils tar sed diffutils findutils gawk wget gnupg \
        libgtk-3-common libglib2.0-data xkb-data >/dev/null
    # Debian's docker-style images drop translations via dpkg path-exclude; say so when none arrive.
fi
command -v msgunfmt >/dev/null || { echo "error: msgunfmt not found: apt-get install gettext" >&2; exit 1; }
ls "$LOCALE_DIR"/*.mo >/dev/null 2>&1 || {
    echo "error: no Korean catalogs in $LOCALE_DIR (is /usr/share/locale excluded in /etc/dpkg/dpkg.cfg.d?)" >&2; exit 1; }

mkdir -p "$OUT"
TMP=$(mktemp -d)
trap 'rm -rf "$TMP"' EXIT
n_files=0
for mo in $(ls "$LOCALE_DIR"/*.mo | LC_ALL=C sort); do
    # A catalog that msgunfmt cannot read is reported and skipped, not fatal.
    if msgunfmt "$mo" > "$TMP/po" 2> "$TMP/err"; then
        python3 scripts/po_to_jsonl.py < "$TMP/po" >> "$TMP/pairs.jsonl"
        n_files=$((n_files + 1))
    else
        echo "warning: skipped $mo: $(head -1 "$TMP/err")" >&2
    fi
done

# Deduplicate by Korean input (first wins), then a stable hash split: the same pair always lands
# on the same side whatever else the catalogs contain.
python3 - "$TMP/pairs.jsonl" "$OUT" <<'PY'
import hashlib, json, sys
src, out = sys.argv[1], sys.argv[2]
seen, train, val, n_in = set(), [], [], 0
for line in open(src, encoding="utf-8"):
    n_in += 1
    ex = json.loads(line)
    if ex["input"] in seen:
        continue
    seen.add(ex["input"])
    h = int(hashlib.sha1(ex["input"].encode()).hexdigest()[:8], 16)
    (val if h % 20 == 0 else train).append(line)
for name, rows in (("train", train), ("val", val)):
    with open(f"{out}/{name}.jsonl", "w", encoding="utf-8") as f:
        f.writelines(rows)
print(f"{n_in} pairs kept by the filter, {len(seen)} distinct: {out}/train.jsonl {len(train)}, {out}/val.jsonl {len(val)}")
PY
echo "from $n_files catalogs in $LOCALE_DIR"
