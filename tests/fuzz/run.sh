#!/usr/bin/env bash
# Builds and runs the libFuzzer targets (clang from Debian: apt-get install clang) for SECONDS each
# (default 120). Crashing inputs are written to tests/fuzz/crash-*; replay one with
# build/fuzz/fuzz_X FILE. Seeds: tests/fuzz/seeds/{json,jsonl,spm} (a jsonl seed starts with two option
# bytes; spm/tiny.model is written by make_spm_seed.py).
set -euo pipefail
cd "$(dirname "$0")/../.."
SECONDS_EACH=${1:-120}
mkdir -p build/fuzz
FLAGS="-std=c++17 -g -O1 -I. -fsanitize=fuzzer,address,undefined -fno-sanitize-recover=undefined"
clang++ $FLAGS tests/fuzz/fuzz_json.cpp data/json.cpp model/util.cpp -o build/fuzz/fuzz_json
TOKENIZER="data/json.cpp model/util.cpp $(ls tokenizer/*.cpp)"
clang++ $FLAGS tests/fuzz/fuzz_jsonl.cpp data/records.cpp data/dataset.cpp data/example.cpp $TOKENIZER -o build/fuzz/fuzz_jsonl
clang++ $FLAGS tests/fuzz/fuzz_spm_model.cpp $TOKENIZER -o build/fuzz/fuzz_spm_model
for t in json jsonl spm_model; do
    corpus=build/fuzz/corpus_$t
    mkdir -p "$corpus"
    cp tests/fuzz/seeds/${t%_model}/* "$corpus"/
    echo "== fuzz_$t for ${SECONDS_EACH}s"
    build/fuzz/fuzz_$t "$corpus" -max_total_time="$SECONDS_EACH" -max_len=8192 -timeout=10 -rss_limit_mb=2048 \
        -artifact_prefix=tests/fuzz/crash- -print_final_stats=1 2>&1 | tail -n 12
done
