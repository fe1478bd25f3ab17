#!/usr/bin/env bash
# Builds and runs the libFuzzer targets (clang from Debian: apt-get install clang) for SECONDS each
# (default 120): tests/fuzz/run.sh [SECONDS [TARGET...]], TARGET one of json jsonl spm_model gguf
# safetensors model_bin tok lora tokenizer_json encode parquet gzip (default: all). Crashing inputs are written to
# tests/fuzz/crash-*; replay one with build/fuzz/fuzz_X FILE. Seeds: tests/fuzz/seeds/<target>
# (a jsonl seed starts with two option bytes; spm/tiny.model is written by make_spm_seed.py,
# gguf/mini.gguf and safetensors/mini.safetensors by make_gguf_safetensors_seeds.py), and for the
# model readers also the tiny models of tests/fixtures/convert.
set -euo pipefail
cd "$(dirname "$0")/../.."
SECONDS_EACH=${1:-120}
shift || true
TARGETS=${*:-json jsonl spm_model gguf safetensors model_bin tok lora tokenizer_json encode parquet gzip}
mkdir -p build/fuzz/obj
# -iquote, not -I: the repository root holds the ./memory tool, which -I. would take for <memory>.
FLAGS="-std=c++17 -g -O1 -iquote . -fsanitize=fuzzer,address,undefined -fno-sanitize-recover=undefined"
# The library, instrumented, once for every target.
LIB_SRC="$(ls model/*.cpp kernels/cpu/*.cpp tokenizer/*.cpp data/*.cpp) kernels/cuda_absent.cpp"
for s in $LIB_SRC; do echo "$s"; done | xargs -P "$(nproc)" -I{} sh -c \
    'o=build/fuzz/obj/$(echo {} | tr / _ | sed "s/\.cpp\$/.o/"); clang++ '"$FLAGS"' -c {} -o "$o"'
for t in $TARGETS; do clang++ $FLAGS tests/fuzz/fuzz_$t.cpp build/fuzz/obj/*.o -o build/fuzz/fuzz_$t; done

F=tests/fixtures/convert
extra_seeds() {
    case $1 in
    gguf) ls $F/*.gguf ;;
    safetensors) ls $F/tiny_llama_sharded/*.safetensors $F/tiny_qwen2_hf/model.safetensors $F/tiny_gemma3_mm_peft/*.safetensors ;;
    tokenizer_json) ls $F/tiny_llama_hf/tokenizer.json tests/fixtures/tokenizer/strip/bpe_tokenizer.json ;;
    parquet) ls tests/fixtures/parquet/*.parquet ;;
    gzip) ls tests/fixtures/gzip/*.gz ;;
    esac
}
for t in $TARGETS; do
    corpus=build/fuzz/corpus_$t
    mkdir -p "$corpus"
    [ -d tests/fuzz/seeds/${t%_model} ] && cp tests/fuzz/seeds/${t%_model}/* "$corpus"/
    for s in $(extra_seeds $t); do cp "$s" "$corpus/fixture_$(echo "$s" | tr / _)"; done
    echo "== fuzz_$t for ${SECONDS_EACH}s"
    # Model files are larger than the text inputs: up to 128 KB for them (256 KB for adapters: a
    # saved embedding of the tiny preset is 128 KB alone).
    max_len=8192
    case $t in gguf|safetensors|model_bin|tok|tokenizer_json|gzip) max_len=131072 ;; lora) max_len=262144 ;; esac
    build/fuzz/fuzz_$t "$corpus" -max_total_time="$SECONDS_EACH" -max_len=$max_len -timeout=10 -rss_limit_mb=2048 \
        -malloc_limit_mb=1024 -artifact_prefix=tests/fuzz/crash- -print_final_stats=1 2>&1 | tail -n 12
done
