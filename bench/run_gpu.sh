#!/usr/bin/env bash
# The whole GPU session in one time-boxed script: environment, build, every test (the CUDA suite
# included), the kernel benchmarks next to PyTorch, and the end-to-end LoRA/QLoRA steps next to
# transformers + peft (+ bitsandbytes), all on the same GPU in the same command.
#
#   On the dev machine, once before the session (no GPU needed; fetches nothing onto the GPU machine):
#     bash bench/run_gpu.sh --prepare     # fills .gpu_carry/ (doctest header, bitsandbytes), git-ignored
#   On the GPU machine (the device tool's run, with carry [".gpu_carry"], timeout_s ~560):
#     bash bench/run_gpu.sh
#
# Every step prints a header line "=== name", runs under `timeout`, and goes on when it fails; the
# whole script stops starting new steps when BUDGET_S (default 480 s) is spent. Outputs go to $OUT
# (./gpu_out when OUT is unset), at most 8 files (what the device tool brings back):
#   summary.txt       environment, each step's exit status and seconds, the end-to-end comparison table
#   build.txt         make output
#   tests.txt         ./test_runner output
#   kernels_ours.txt  build/bench/bench_cuda_kernels
#   kernels_torch.txt bench/torch_kernels.py, then the joined ours-vs-torch table
#   kernels_narrow.txt the attention kernels again with the narrow tiling forced (ATTENTION_TILES=narrow)
#   e2e.txt           every end-to-end run (build/bench/bench_train and peft_step.py), RESULT lines included
#   generate.txt      generation: build/bench/bench_generate next to transformers' generate() (hf_generate.py)
#   profile.txt       Nsight Compute (PROFILE=1, PROFILE_STEP=...), the GEMM candidates (GEMM_ALGOS=1)
# Knobs (environment):
#   BUDGET_S; E2E_PRESETS ("smollm2-135m llama-3.2-1b"), E2E_METHODS ("lora qlora"), E2E_DORA (1: with --use-dora),
#   E2E_SAVE (--modules-to-save on both sides, e.g. embed_tokens,lm_head), E2E_TOKENS (N: --trainable-tokens
#   N on both sides), E2E_BATCH (4),
#   E2E_SEQ (2048), E2E_STEPS (6), E2E_WARMUP (2), E2E_DROPOUT (LoRA dropout on both sides; unset: 0);
#   E2E_ATTN (peft_step.py's --attn; unset: sdpa, which runs Gemma 3's sliding-window layers as full
#   causal attention under a materialized mask: flex_attention or flash_attention_2 do the band only);
#   GEN_PRESETS ("llama-3.2-1b"), GEN_BATCH (16), GEN_PROMPT (512), GEN_NEW (64);
#   SKIP_BUILD=1, SKIP_TESTS=1, SKIP_KERNELS=1, SKIP_MEMORY=1, SKIP_SCALE=1, SKIP_TRAIN=1 (no ./train
#   run), SKIP_GENERATE=1, SKIP_PEFT=1 (our end-to-end steps only): leave those steps out; SKIP_TORCH=1
#   (no PyTorch kernel table), SKIP_NARROW=1 (no narrow-tiling kernel table), KERNELS_FILTER=attn
#   (those kernel rows only, ours, PyTorch's and the previous build's; several: lora,nf4);
#   SCALE_OFFLOAD=1 (the 65B QLoRA step again with --offload-optimizer); SANITIZE=1 (compute-sanitizer
#   racecheck and synccheck on the attention tests);
#   PROFILE=1 (Nsight Compute on the attention kernels, hd 64, 128 and 256: profile.txt);
#   PROFILE_OPS="case;case" (Nsight Compute on the bench_cuda_kernels cases matching each: profile.txt);
#   PROFILE_STEP=<preset> (every kernel of a training step timed, summed by kernel: profile.txt);
#   GEMM_ALGOS=1 (every GEMM of a LoRA step, each cuBLASLt candidate timed and compared bit for bit
#   with the first: profile.txt);
#   AB_OLD=1 (the previous build, benchmarked in the same run: its kernel table appended to
#   kernels_ours.txt, its step of each preset and method to e2e.txt as "RESULT before", right after
#   ours, its generation to generate.txt as "RESULT before"; AB_OLD=kernels: the kernel table only).
#   The previous build is .gpu_carry/old/: `AB_REF=main bash bench/run_gpu.sh --prepare` builds it
#   from any git ref (or copy bench_cuda_kernels, bench_train and bench_generate there by hand).
set -u
cd "$(dirname "$0")/.."
CARRY=${CARRY_DIR:-.gpu_carry}

# ---- --prepare: on the dev machine, collect what the GPU machine cannot fetch ----
if [ "${1:-}" = "--prepare" ]; then
    mkdir -p "$CARRY/doctest"
    if [ -f /usr/include/doctest/doctest.h ]; then
        cp /usr/include/doctest/doctest.h "$CARRY/doctest/"
    else
        echo "warning: /usr/include/doctest/doctest.h missing here (make deps installs it); tests will not build there"
    fi
    # bitsandbytes for the NF4 reference and the QLoRA step: the wheel unpacked into $CARRY/site,
    # keeping only the CUDA 13 libraries (the GPU image's torch is built for CUDA 13): ~4 MB
    # instead of the wheel's 43 MB, within the device tool's 64 MiB for what travels.
    tmp=$(mktemp -d)
    if python3 -m pip download -q --no-deps --only-binary=:all: --python-version 3.12 --implementation cp \
        --platform manylinux_2_24_x86_64 --platform manylinux_2_28_x86_64 --platform manylinux_2_17_x86_64 \
        --platform manylinux2014_x86_64 -d "$tmp" "bitsandbytes==${BNB_VERSION:-0.50.2}"; then
        rm -rf "$CARRY/site" && mkdir -p "$CARRY/site"
        python3 -m zipfile -e "$tmp"/bitsandbytes-*.whl "$CARRY/site"
        find "$CARRY/site/bitsandbytes" -name 'libbitsandbytes_*.so' ! -name 'libbitsandbytes_cuda13*' \
            ! -name 'libbitsandbytes_cpu.so' -delete
    else
        echo "warning: could not download bitsandbytes: the NF4 reference and the peft QLoRA step will be skipped"
    fi
    rm -rf "$tmp"
    # The SmolLM2 tokenizer (../shared does not travel) for the ./train run on the GPU.
    tok=../shared/reference/smollm2-135m-instruct/tokenizer.json
    if [ -f "$tok" ]; then cp "$tok" "$CARRY/tokenizer.json"; else echo "warning: $tok missing: no ./train run on the GPU"; fi
    # Prebuilt binaries, so the GPU machine's minutes go to running rather than compiling: the
    # working tree (not just HEAD) built in a copy under /tmp with portable host flags (x86-64-v3
    # instead of -march=native, whose AVX-512 the GPU machine's CPU may lack). The GPU side uses them
    # only when they start there (glibc, libstdc++ and cuBLASLt must match), else it builds.
    # The copy keeps its build/ (incremental) but loses every other file first, so a source deleted
    # or renamed here is not compiled there through the Makefile's wildcards; tar keeps the files'
    # times, so unchanged sources do not rebuild. Without nvcc the binaries would lack the CUDA
    # backend (and skip every CUDA test there), so then the GPU machine builds instead.
    src=${PREBUILD_DIR:-/tmp/llm_gpu_prebuild}
    bins=(train test_runner build/bench/bench_cuda_kernels build/bench/bench_train build/bench/bench_memory
        build/bench/bench_gemm_algos build/bench/bench_generate)
    mkdir -p "$src" && find "$src" -mindepth 1 -maxdepth 1 ! -name build -exec rm -rf {} +
    git ls-files -co --exclude-standard | grep -v "^$CARRY/" | tar -cf - -T - | tar -xf - -C "$src"
    rm -f "$CARRY/bin.tar.xz"
    if ! command -v nvcc >/dev/null; then
        echo "warning: no nvcc here: no prebuilt binaries (the GPU machine will build)"
        rm -rf "$CARRY/bin"
    elif (cd "$src" && CXXFLAGS="-O3 -march=x86-64-v3" make -j"$(nproc)" "${bins[@]}" >build.log 2>&1); then
        rm -rf "$CARRY/bin" && mkdir -p "$CARRY/bin"
        for b in "${bins[@]}"; do cp "$src/$b" "$CARRY/bin/"; done
        { git rev-parse --short HEAD; git status --short; } >"$CARRY/bin/SOURCE"
        # Seven binaries of ~6 MB each, nearly all the same CUDA fatbin: one xz stream with a 64 MB
        # window stores it once (47 MB -> 3 MB), leaving room in what travels for the test fixtures.
        tar -C "$CARRY" -cf - bin | xz -9 -T1 >"$CARRY/bin.tar.xz" && rm -rf "$CARRY/bin"
    else
        echo "warning: the prebuild failed (see $src/build.log): the GPU machine will build"
        rm -rf "$CARRY/bin"
    fi
    # AB_REF=<git ref>: that commit's kernel and step benchmarks, built the same way, as the "previous
    # build" of AB_OLD (an A/B of two commits, e.g. a branch against main, in one GPU call).
    if [ -n "${AB_REF:-}" ] && command -v nvcc >/dev/null; then
        old_src=${PREBUILD_DIR:-/tmp/llm_gpu_prebuild}_ab
        old_bins=(build/bench/bench_cuda_kernels build/bench/bench_train build/bench/bench_generate)
        mkdir -p "$old_src" && find "$old_src" -mindepth 1 -maxdepth 1 ! -name build -exec rm -rf {} +
        # git archive gives every file the commit's time, older than objects built from another ref
        # (make would keep those): the build folder is kept only for the same commit.
        old_rev=$(git rev-parse -q --verify "$AB_REF^{commit}")
        [ "$(cat "$old_src/build/.source" 2>/dev/null)" = "$old_rev" ] || rm -rf "$old_src/build"
        if [ -n "$old_rev" ] && git archive "$old_rev" | tar -xf - -C "$old_src" &&
            (cd "$old_src" && CXXFLAGS="-O3 -march=x86-64-v3" make -j"$(nproc)" "${old_bins[@]}" >build.log 2>&1); then
            echo "$old_rev" >"$old_src/build/.source"
            rm -rf "$CARRY/old" && mkdir -p "$CARRY/old"
            for b in "${old_bins[@]}"; do cp "$old_src/$b" "$CARRY/old/"; done
            git rev-parse --short "$AB_REF" >"$CARRY/old/SOURCE"
            tar -C "$CARRY" -cf - old | xz -9 -T1 >"$CARRY/old.tar.xz" && rm -rf "$CARRY/old"
        else
            echo "warning: AB_REF=$AB_REF did not build (see $old_src/build.log): no previous build to compare"
            rm -rf "$CARRY/old" "$CARRY/old.tar.xz"
        fi
    fi
    # Keep it out of git (it is carried explicitly); only when the folder is inside this repo.
    case "$CARRY" in /*) ;; *)
        if [ -d .git ] && ! grep -qx "/$CARRY/" .git/info/exclude 2>/dev/null; then
            mkdir -p .git/info && echo "/$CARRY/" >>.git/info/exclude
        fi ;;
    esac
    du -sh "$CARRY"
    ls -l "$CARRY"
    exit 0
fi

OUT=${OUT:-./gpu_out}
mkdir -p "$OUT"
OUT=$(cd "$OUT" && pwd)
SUMMARY=$OUT/summary.txt
BUDGET_S=${BUDGET_S:-480}
DEADLINE=$((SECONDS + BUDGET_S))
export PYTHONUNBUFFERED=1

# step NAME CAP_S LOG CMD...: runs CMD under timeout (CAP_S, or what is left of the budget),
# appending its output to LOG and its exit status to the summary. Never fails.
step() {
    local name=$1 cap=$2 log=$3
    shift 3
    local left=$((DEADLINE - SECONDS))
    if ((left < 15)); then
        echo "=== $name: skipped, budget spent (${left}s left of ${BUDGET_S}s)" | tee -a "$log" "$SUMMARY"
        return 0
    fi
    local t=$((cap < left ? cap : left))
    echo "=== $name (timeout ${t}s, ${left}s of budget left)" | tee -a "$log"
    local t0=$SECONDS
    timeout -k 10 "$t" "$@" 2>&1 | tee -a "$log"
    local rc=${PIPESTATUS[0]}
    local what="rc=$rc"
    ((rc == 124 || rc == 137)) && what="TIMED OUT after ${t}s"
    echo "=== $name: $what ($((SECONDS - t0))s)" | tee -a "$log" "$SUMMARY"
    return 0
}

# ---- environment ----
{
    echo "=== environment ($(date -u '+%Y-%m-%d %H:%M:%S UTC'))"
    nvidia-smi -L
    nvidia-smi --query-gpu=name,driver_version,memory.total,clocks.max.sm,clocks.max.mem --format=csv
    nvcc --version | tail -2
    git rev-parse --short HEAD 2>/dev/null && git status --short 2>/dev/null | head -20
} 2>&1 | tee "$SUMMARY"

# Peaks for the "% of peak" columns, from the GPU's name (dense BF16; HBM bandwidth).
GPU_NAME=$(nvidia-smi --query-gpu=name --format=csv,noheader 2>/dev/null | head -1)
case "$GPU_NAME" in
    *H200*) PEAK_BW=4800 PEAK_TF=989 ;;
    *H100*PCIe*) PEAK_BW=2000 PEAK_TF=756 ;;
    *A100*) PEAK_BW=2039 PEAK_TF=312 ;;
    *) PEAK_BW=3350 PEAK_TF=989 ;;  # H100 SXM
esac
echo "peaks used: ${PEAK_BW} GB/s, ${PEAK_TF} TFLOP/s dense BF16 ($GPU_NAME)" | tee -a "$SUMMARY"

# What the GPU machine cannot fetch, from .gpu_carry (bash bench/run_gpu.sh --prepare).
if [ ! -f /usr/include/doctest/doctest.h ] && [ -f "$CARRY/doctest/doctest.h" ]; then
    mkdir -p /usr/include/doctest && cp "$CARRY/doctest/doctest.h" /usr/include/doctest/ &&
        echo "doctest: installed from $CARRY" | tee -a "$SUMMARY"
fi
if [ -d "$CARRY/site/bitsandbytes" ]; then
    export PYTHONPATH=$(cd "$CARRY/site" && pwd)${PYTHONPATH:+:$PYTHONPATH}
fi
# One Python start (importing torch takes seconds): versions, and whether bitsandbytes imports.
PY_ENV=$(python3 -c '
import torch
print("torch", torch.__version__, "cuda", torch.version.cuda, "gpu", torch.cuda.is_available())
try:
    import bitsandbytes as b
    print("bitsandbytes", b.__version__)
except Exception as e:
    print("bitsandbytes not available: %s: %s" % (type(e).__name__, e))
' 2>/dev/null)
echo "$PY_ENV" | tee -a "$SUMMARY"
if grep -q '^bitsandbytes [0-9]' <<<"$PY_ENV"; then HAVE_BNB=1; else
    HAVE_BNB=0
    echo "(so: no NF4 reference, no peft QLoRA step)" | tee -a "$SUMMARY"
fi

# ---- build: the prebuilt binaries from .gpu_carry/bin when they start here, else make ----
# (packed by --prepare: bin.tar.xz, and old.tar.xz for AB_OLD).
for packed in bin old; do
    [ -f "$CARRY/$packed.tar.xz" ] && rm -rf "${CARRY:?}/$packed" && tar -C "$CARRY" -xJf "$CARRY/$packed.tar.xz"
done
if [ "${SKIP_BUILD:-0}" != 1 ] && [ -x "$CARRY/bin/test_runner" ]; then
    if "$CARRY/bin/test_runner" -ltc >/dev/null 2>"$OUT/build.txt"; then
        mkdir -p build/bench
        for b in train test_runner; do cp "$CARRY/bin/$b" .; done
        for b in bench_cuda_kernels bench_train bench_memory bench_gemm_algos bench_generate; do
            [ -f "$CARRY/bin/$b" ] && cp "$CARRY/bin/$b" build/bench/
        done
        echo "build: prebuilt binaries from $CARRY/bin (source: $(head -1 "$CARRY/bin/SOURCE"), $(($(wc -l <"$CARRY/bin/SOURCE") - 1)) files changed)" | tee -a "$SUMMARY"
        SKIP_BUILD=1
    else
        echo "build: the prebuilt test_runner does not start here ($(head -c 300 "$OUT/build.txt")); building" | tee -a "$SUMMARY"
    fi
fi
if [ "${SKIP_BUILD:-0}" != 1 ]; then
    # The binaries by name, not `all`: `all` also fetches the default model, whose pip download
    # would wait on timeouts on the GPU machine (no network).
    bins=(train test_runner)
    for f in tools/*.cpp; do bins+=("$(basename "$f" .cpp)"); done
    step "build: make -j16 train tools test_runner" 300 "$OUT/build.txt" make -j16 "${bins[@]}"
    benches=()
    for f in bench/*.cpp; do benches+=("build/bench/$(basename "$f" .cpp)"); done
    step "build: bench binaries" 120 "$OUT/build.txt" make -j16 -k "${benches[@]}"
fi

# ---- tests (all suites; the CUDA one runs because there is a GPU) ----
if [ "${SKIP_TESTS:-0}" != 1 ]; then
    if [ -x ./test_runner ]; then
        step "tests: ./test_runner -sf=*test_cuda* (the CUDA suite; CI runs the CPU ones)" 150 "$OUT/tests.txt" ./test_runner -sf="*test_cuda*"
    else
        echo "=== tests: ./test_runner missing (build failed?)" | tee -a "$OUT/tests.txt" "$SUMMARY"
    fi
    # The narrow attention tiling (for 99 KB GPUs, sm_86/89) on this GPU, forced.
    if [ -x ./test_runner ]; then
        step "tests: attention with ATTENTION_TILES=narrow" 60 "$OUT/tests.txt" \
            env ATTENTION_TILES=narrow ./test_runner -tc='*attention*'
    fi
    # Opt-in: what the emulator cannot see (real cp.async timing, shared-memory races between warps).
    if [ "${SANITIZE:-0}" = 1 ] && [ -x ./test_runner ] && command -v compute-sanitizer >/dev/null; then
        for tool in racecheck synccheck; do
            step "tests: compute-sanitizer --tool $tool (attention)" 150 "$OUT/tests.txt" \
                compute-sanitizer --tool "$tool" --error-exitcode 1 ./test_runner -tc='*attention*'
        done
    fi
fi

# ---- profile (opt-in): Nsight Compute on the flash kernels of one attention backward case per hd ----
# The bwd case runs the forward once for its out/lse, so the first three "flash" launches are the
# forward, dQ and dK/dV kernels. Clocks left as they are (--clock-control none).
if [ "${PROFILE:-0}" = 1 ] && [ -x build/bench/bench_cuda_kernels ] && command -v ncu >/dev/null; then
    for shape in "B8 T2048 h32/8 d64" "B4 T4096 h32/8 d128" "B4 T4096 h8/4 d256"; do
        step "profile: ncu attn bwd $shape" 120 "$OUT/profile.txt" ncu --clock-control none -k regex:flash \
            --launch-count 3 --section SpeedOfLight --section ComputeWorkloadAnalysis --section MemoryWorkloadAnalysis \
            --section WarpStateStats --section Occupancy --section LaunchStats --section SchedulerStats \
            --section InstructionStats build/bench/bench_cuda_kernels --filter "attn bwd $shape" --sample-ms 1
    done
fi
# PROFILE_OPS="case;case...": the same sections on the first three launches of the kernels named like
# the case's first word, in the bench_cuda_kernels cases whose "op shape" contains `case` (e.g.
# "rmsnorm fwd N8192 C4096;crossentropy n1024 V128256"): what holds a memory-bound kernel below its
# target (memory throughput, stalls, occupancy).
if [ -n "${PROFILE_OPS:-}" ] && [ -x build/bench/bench_cuda_kernels ] && command -v ncu >/dev/null; then
    IFS=';' read -ra profile_cases <<<"$PROFILE_OPS"
    for c in "${profile_cases[@]}"; do
        step "profile: ncu $c" 120 "$OUT/profile.txt" ncu --clock-control none -k "regex:${c%% *}" --launch-count 3 \
            --section SpeedOfLight \
            --section MemoryWorkloadAnalysis --section WarpStateStats --section Occupancy --section LaunchStats \
            --section SchedulerStats build/bench/bench_cuda_kernels --filter "$c" --sample-ms 1
    done
fi

# ---- profile (opt-in): where one training step's time goes, kernel by kernel ----
# PROFILE_STEP=<preset> [PROFILE_METHOD=lora]: Nsight Compute times every kernel of one warm-up and one
# timed bench_train step (gpu__time_duration only: one pass, no replay; clocks and caches as they
# are), and bench/step_profile.py sums them by kernel name and grid (a GEMM's grid tells its shape).
if [ -n "${PROFILE_STEP:-}" ] && [ -x build/bench/bench_train ] && command -v ncu >/dev/null; then
    step "profile: ncu one ${PROFILE_METHOD:-lora} step of $PROFILE_STEP" 150 "$OUT/profile.txt" bash -c "
        ncu --clock-control none --cache-control none --metrics gpu__time_duration.sum --csv \
            --log-file /tmp/step_profile.csv build/bench/bench_train --preset $PROFILE_STEP --batch ${E2E_BATCH:-4} \
            --seq ${E2E_SEQ:-2048} --steps 1 --warmup 1 --rank 16 --method ${PROFILE_METHOD:-lora} --device cuda &&
        python3 bench/step_profile.py /tmp/step_profile.csv"
fi

# ---- kernels: ours, then PyTorch on the same shapes (with the joined table) ----
# KERNELS_FILTER=attn: only the rows whose op or shape contains it (ours and the previous build's);
# several, comma-separated (KERNELS_FILTER=lora,nf4): each binary runs once per substring, since a
# previous build's --filter takes one.
KFILTERS=("")
[ -n "${KERNELS_FILTER:-}" ] && IFS=, read -r -a KFILTERS <<< "$KERNELS_FILTER"
KFILTER=()
[ -n "${KERNELS_FILTER:-}" ] && KFILTER=(--filter "$KERNELS_FILTER")  # torch_kernels.py takes the list
if [ "${SKIP_KERNELS:-0}" = 1 ]; then
    :
elif [ -x build/bench/bench_cuda_kernels ]; then
    for kf in "${KFILTERS[@]}"; do
        step "kernels: bench_cuda_kernels ${kf}" 120 "$OUT/kernels_ours.txt" \
            build/bench/bench_cuda_kernels --peak-bw "$PEAK_BW" --peak-tflops "$PEAK_TF" ${kf:+--filter "$kf"}
    done
    # The narrow attention tiling (what sm_86/89 GPUs run at hd 128), forced, for its speed here.
    [ "${SKIP_NARROW:-0}" = 1 ] || step "kernels: attention with ATTENTION_TILES=narrow" 60 "$OUT/kernels_narrow.txt" \
        env ATTENTION_TILES=narrow build/bench/bench_cuda_kernels --filter attn --peak-bw "$PEAK_BW" \
        --peak-tflops "$PEAK_TF"
else
    echo "=== kernels: build/bench/bench_cuda_kernels missing" | tee -a "$OUT/kernels_ours.txt" "$SUMMARY"
fi
# GEMM_ALGOS=1: the cuBLASLt heuristic's candidates for every GEMM of a LoRA step, timed
# (bench/bench_gemm_algos.cpp): what choosing among them would save, per preset of E2E_PRESETS.
if [ "${GEMM_ALGOS:-0}" = 1 ] && [ -x build/bench/bench_gemm_algos ]; then
    for preset in ${E2E_PRESETS:-smollm2-135m llama-3.2-1b}; do
        step "profile: bench_gemm_algos $preset" 150 "$OUT/profile.txt" build/bench/bench_gemm_algos --preset "$preset" \
            --batch "${E2E_BATCH:-4}" --seq "${E2E_SEQ:-2048}" --peak-tflops "$PEAK_TF"
    done
fi
# A/B in one run: the previous build's kernel table (the device and its state are the same).
# Its rows are tagged "old <op>", so that no join or reader can take them for ours.
if [ "${AB_OLD:-0}" != 0 ] && [ "${SKIP_KERNELS:-0}" != 1 ] && [ -x "$CARRY/old/bench_cuda_kernels" ]; then
    for kf in "${KFILTERS[@]}"; do
        step "kernels: the previous build, $(head -1 "$CARRY/old/SOURCE" 2>/dev/null) ${kf}" 60 "$OUT/kernels_ours.txt" \
            bash -c "set -o pipefail; '$CARRY/old/bench_cuda_kernels' --peak-bw $PEAK_BW --peak-tflops $PEAK_TF ${kf:+--filter '$kf'} |
                sed 's/^| \([a-z]\)/| old \1/'"
    done
fi
[ "${SKIP_KERNELS:-0}" = 1 ] || [ "${SKIP_TORCH:-0}" = 1 ] || step "kernels: torch_kernels.py" 150 "$OUT/kernels_torch.txt" \
    python3 bench/torch_kernels.py --peak-bw "$PEAK_BW" --peak-tflops "$PEAK_TF" --compare "$OUT/kernels_ours.txt" \
    ${KFILTER[@]+"${KFILTER[@]}"}

# ---- end to end: our trainer's step, then transformers + peft, same shape, same GPU ----
# LoRA for every preset first, then QLoRA, so a spent budget cuts QLoRA first.
# Our side: build/bench/bench_train (bench_train_gpu if one exists), flags as bench_train takes them.
TRAIN_BENCH=build/bench/bench_train
[ -x build/bench/bench_train_gpu ] && TRAIN_BENCH=build/bench/bench_train_gpu
B=${E2E_BATCH:-4} T=${E2E_SEQ:-2048} N=${E2E_STEPS:-6} W=${E2E_WARMUP:-2}
for method in ${E2E_METHODS:-lora qlora}; do
    for preset in ${E2E_PRESETS:-smollm2-135m llama-3.2-1b}; do
        # LoRA r=16 (bench_train: alpha = 2r = 32, dropout E2E_DROPOUT, all seven projections), as peft_step.py.
        # (--dropout only when asked: a previous build from before the flag, AB_OLD=1, would refuse it.)
        flags=(--preset "$preset" --batch "$B" --seq "$T" --steps "$N" --warmup "$W" --rank 16 --peak-tflops "$PEAK_TF")
        [ -n "${E2E_DROPOUT:-}" ] && flags+=(--dropout "$E2E_DROPOUT")
        [ "${E2E_DORA:-0}" = 1 ] && flags+=(--use-dora)  # DoRA on both sides (peft_step.py: use_dora=True)
        [ -n "${E2E_SAVE:-}" ] && flags+=(--modules-to-save "$E2E_SAVE")  # peft_step.py: modules_to_save
        [ -n "${E2E_TOKENS:-}" ] && flags+=(--trainable-tokens "$E2E_TOKENS")  # peft_step.py: trainable_token_indices
        if [ -x "$TRAIN_BENCH" ]; then
            step "e2e ours: $preset $method" 150 "$OUT/e2e.txt" \
                "$TRAIN_BENCH" "${flags[@]}" --method "$method" --device cuda
        else
            echo "=== e2e ours: $preset $method: $TRAIN_BENCH missing" | tee -a "$OUT/e2e.txt" "$SUMMARY"
        fi
        # The previous build's step (AB_OLD=1), as "RESULT before", right after ours: the pair runs
        # back to back (the same GPU state), and QLoRA's pair too.
        if [ "${AB_OLD:-0}" = 1 ] && [ -x "$CARRY/old/bench_train" ]; then
            step "e2e before: $preset $method" 150 "$OUT/e2e.txt" bash -c "set -o pipefail; '$CARRY/old/bench_train' \
                ${flags[*]} --method $method --device cuda | sed 's/^RESULT ours/RESULT before/'"
        fi
        [ "${SKIP_PEFT:-0}" = 1 ] && continue
        if [ "$method" = qlora ] && [ "$HAVE_BNB" = 0 ]; then
            echo "=== e2e peft: $preset qlora: skipped, bitsandbytes not available" | tee -a "$OUT/e2e.txt" "$SUMMARY"
            continue
        fi
        peft_flags=("${flags[@]}")
        [ "$method" = qlora ] && peft_flags+=(--qlora)
        [ -n "${E2E_ATTN:-}" ] && peft_flags+=(--attn "$E2E_ATTN")
        step "e2e peft: $preset $method" 150 "$OUT/e2e.txt" python3 bench/peft_step.py "${peft_flags[@]}"
    done
done

# ---- generation: bench_generate next to transformers' generate(), BF16 on both (SKIP_GENERATE=1 leaves it out) ----
if [ "${SKIP_GENERATE:-0}" != 1 ]; then
    for preset in ${GEN_PRESETS:-llama-3.2-1b}; do
        gflags=(--preset "$preset" --batch "${GEN_BATCH:-16}" --prompt "${GEN_PROMPT:-512}" --new "${GEN_NEW:-64}" --rounds 3)
        if [ -x build/bench/bench_generate ]; then
            step "generate ours: $preset" 90 "$OUT/generate.txt" build/bench/bench_generate "${gflags[@]}" --device cuda
        fi
        if [ "${AB_OLD:-0}" = 1 ] && [ -x "$CARRY/old/bench_generate" ]; then
            step "generate before: $preset" 90 "$OUT/generate.txt" bash -c "set -o pipefail; '$CARRY/old/bench_generate' \
                ${gflags[*]} --device cuda | sed 's/^RESULT ours/RESULT before/'"
        fi
        step "generate transformers: $preset" 120 "$OUT/generate.txt" python3 bench/hf_generate.py "${gflags[@]}" --device cuda
    done
fi

# ---- the trainer itself on the GPU (SKIP_TRAIN=1 leaves it out) ----
# ./train end to end with random smollm2-135m weights, the real tokenizer and the default data: the
# data pipeline, evaluation, sampling and checkpoints on the CUDA backend. 20 steps with a checkpoint
# at 10; then a second run resumes from a copy of that checkpoint, and its step-20 line of log.csv
# must equal the straight run's (the resume is exact).
if [ "${SKIP_TRAIN:-0}" != 1 ] && [ -x ./train ] && [ -f "$CARRY/tokenizer.json" ]; then
    tflags=(--preset smollm2-135m --tokenizer "$CARRY/tokenizer.json" --max-steps 20 --save-every 10 --eval-samples 4
        --device cuda)
    rm -rf /tmp/gpu_train /tmp/gpu_resume
    step "train: ./train --device cuda, 20 steps" 90 "$OUT/e2e.txt" ./train "${tflags[@]}" --out /tmp/gpu_train
    if [ -d /tmp/gpu_train/ckpt-00000010 ]; then
        mkdir -p /tmp/gpu_resume && cp -r /tmp/gpu_train/ckpt-00000010 /tmp/gpu_resume/
        step "train: --resume from step 10" 90 "$OUT/e2e.txt" ./train "${tflags[@]}" --out /tmp/gpu_resume --resume
        {
            # log.csv: step,loss,lr,grad_norm,...,val_loss; the key is step 20's training line
            # (step, loss, lr, grad norm) and the final evaluation's val_loss.
            key() { awk -F, '$1 == 20 && $2 != "" {print $1, $2, $3, $4} END {print "val_loss", $8}' "$1" 2>/dev/null; }
            echo "straight: $(key /tmp/gpu_train/log.csv | tr '\n' ' ')"
            echo "resumed:  $(key /tmp/gpu_resume/log.csv | tr '\n' ' ')"
            if grep -q '^20,[0-9]' /tmp/gpu_train/log.csv 2>/dev/null &&
                [ "$(key /tmp/gpu_train/log.csv)" = "$(key /tmp/gpu_resume/log.csv)" ]; then
                echo "train: resume exact (step 20's loss, lr, grad norm and the final val_loss equal)"
            else
                echo "train: RESUME DIFFERS"
            fi
        } 2>&1 | tee -a "$OUT/e2e.txt" "$SUMMARY"
    fi
fi

# ---- memory (issue 6): estimate vs measured on the GPU, then the QLoRA paper's 65B figure ----
if [ "${SKIP_MEMORY:-0}" != 1 ] && [ -x build/bench/bench_memory ]; then
    step "memory: bench_memory --device cuda" 120 "$OUT/e2e.txt" \
        build/bench/bench_memory --device cuda --shapes tiny,smollm2-135m --steps 1 --offload 1
fi
if [ "${SKIP_SCALE:-0}" != 1 ] && [ -x "$TRAIN_BENCH" ]; then
    # Full fine-tuning of a shape that fits (issue 6), first because it is quick: its memory table (estimate vs the arenas) and peak.
    step "scale: llama-3.2-1b full b4x1024 recompute" 120 "$OUT/e2e.txt" \
        "$TRAIN_BENCH" --preset llama-3.2-1b --method full --batch 4 --seq 1024 --recompute --steps 2 \
        --warmup 1 --peak-tflops "$PEAK_TF" --device cuda
    # LLaMA-65B, random NF4 base, r=64 on all linear layers, batch 1 x 512, recompute (QLoRA §4: < 48 GB).
    step "scale: llama-65b qlora r=64 b1x512 recompute" 200 "$OUT/e2e.txt" \
        "$TRAIN_BENCH" --preset llama-65b --method qlora --rank 64 --batch 1 --seq 512 --recompute --steps 2 \
        --warmup 1 --peak-tflops "$PEAK_TF" --device cuda
    # The same with AdamW on the host (estimate: 40.70 GB on the GPU instead of 50.30). Opt-in: a
    # second 65B setup costs as much time as the first.
    if [ "${SCALE_OFFLOAD:-0}" = 1 ]; then
        step "scale: llama-65b qlora r=64 b1x512 recompute --offload-optimizer" 200 "$OUT/e2e.txt" \
            "$TRAIN_BENCH" --preset llama-65b --method qlora --rank 64 --batch 1 --seq 512 --recompute --steps 2 \
            --warmup 1 --peak-tflops "$PEAK_TF" --device cuda --offload-optimizer
    fi
fi

# ---- the end-to-end table: one row per (preset, method, recompute), ours next to peft ----
{
    echo
    echo "=== end to end ($GPU_NAME; batch $B x seq $T, $N timed steps after $W warm-up; peft attn ${E2E_ATTN:-sdpa}; ratio = ours / peft tokens/s)"
    grep '^RESULT' "$OUT/e2e.txt" 2>/dev/null
    python3 - "$OUT/e2e.txt" <<'EOF'
# RESULT lines of bench_train and peft_step.py (the same format):
#   RESULT ours preset=P method=M device=D batch=B seq=T recompute=R: X ms/step (median of N), Y tokens/s,
#   MFU Z%, peak memory G GB (...), loss L
import re, sys
pat = re.compile(r"^RESULT (\w+) (.*?): ([\d.]+) ms/step .*?([\d.]+) tokens/s, MFU ([\d.]+)%, peak memory ([\d.]+) GB")
rows = {}
try:
    lines = open(sys.argv[1]).read().splitlines()
except OSError:
    lines = []
for line in lines:
    m = pat.match(line)
    if not m:
        continue
    kv = dict(w.split("=", 1) for w in m.group(2).split() if "=" in w)
    method = (kv.get("method", "") + ("+offload" if kv.get("offload", "0") == "1" else "") +
              ("+dora" if kv.get("dora", "0") == "1" else "") +
              (" dropout " + kv["dropout"] if "dropout" in kv else ""))
    key = (kv.get("preset"), method, kv.get("recompute", "0"), kv.get("batch"), kv.get("seq"))
    rows.setdefault(key, {})[m.group(1)] = dict(ms=m.group(3), tps=m.group(4), mfu=m.group(5) + "%", mem=m.group(6))
print()
print("| preset | method | recompute | batch x seq | ours tok/s | peft tok/s | ratio | ours MFU | peft MFU | ours peak GB | peft peak GB |")
print("|---|---|---|---|---|---|---|---|---|---|---|")
for (preset, method, rc, b, t), r in rows.items():
    o, p = r.get("ours", {}), r.get("peft", {})
    ratio = "%.2fx" % (float(o["tps"]) / float(p["tps"])) if o.get("tps") and p.get("tps") and float(p["tps"]) else "-"
    print(f"| {preset} | {method} | {rc} | {b} x {t} | {o.get('tps', '-')} | {p.get('tps', '-')} | {ratio} | "
          f"{o.get('mfu', '-')} | {p.get('mfu', '-')} | {o.get('mem', '-')} | {p.get('mem', '-')} |")
EOF
    echo
    echo "=== generation (time to first token, decode tokens/s)"
    grep '^RESULT' "$OUT/generate.txt" 2>/dev/null
    echo
    echo "total ${SECONDS}s of ${BUDGET_S}s budget; files in $OUT: $(ls "$OUT" | tr '\n' ' ')"
} 2>&1 | tee -a "$SUMMARY"
exit 0
