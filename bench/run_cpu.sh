#!/usr/bin/env bash
# Our CPU backend next to transformers + peft on the same CPU, in the same command: the LoRA step of
# a preset's shape (random weights), FP32 on both sides (ours: the FP32 CPU backend; theirs: PyTorch's
# CPU kernels, no autocast), runs alternating so that machine noise hits both alike.
#
#   bash bench/run_cpu.sh                 # smollm2-135m, batch 4 × 256, r = 16, 3 rounds
#   PRESET=tiny ROUNDS=1 bash bench/run_cpu.sh
#
# Prints every RESULT line, then the median tokens/s of each side and their ratio; then generation
# (bench_generate next to transformers' generate(): time to first token, decode tokens/s). Without
# torch, transformers and peft importable, only our side runs.
set -u
cd "$(dirname "$0")/.."
PRESET=${PRESET:-smollm2-135m} BATCH=${BATCH:-4} SEQ=${SEQ:-256} RANK=${RANK:-16} ROUNDS=${ROUNDS:-3}
STEPS=${STEPS:-3} WARMUP=${WARMUP:-1}
# The same thread count on both sides: libgomp (ours) defaults to every logical CPU, PyTorch to the
# physical cores only, which differ on an SMT machine. Both read OMP_NUM_THREADS.
export OMP_NUM_THREADS=${OMP_NUM_THREADS:-$(nproc)}
make -s build/bench/bench_train || exit 1
args="--preset $PRESET --batch $BATCH --seq $SEQ --rank $RANK --steps $STEPS --warmup $WARMUP"
have_peft=1
python3 -c "import torch, transformers, peft" 2>/dev/null || { have_peft=0; echo "transformers/peft not importable: ours only"; }
ours=() peft=()
tps() { sed -n 's/.* \([0-9.]*\) tokens\/s.*/\1/p'; }
for r in $(seq "$ROUNDS"); do
    line=$(build/bench/bench_train $args --method lora --device cpu 2>&1 | grep '^RESULT') && echo "$line" && ours+=("$(echo "$line" | tps)")
    if [ $have_peft = 1 ]; then
        line=$(python3 bench/peft_step.py $args --device cpu 2>&1 | grep '^RESULT') && echo "$line" && peft+=("$(echo "$line" | tps)")
    fi
done
median() { printf '%s\n' "$@" | sort -g | awk '{v[NR]=$1} END {if (NR) print v[int((NR+1)/2)]}'; }
mo=$(median "${ours[@]}") mp=$(median "${peft[@]:-}")
echo "median tokens/s over $ROUNDS rounds: ours ${mo:-?}, transformers+peft ${mp:-?}" \
     "$( [ -n "$mo" ] && [ -n "$mp" ] && awk -v a="$mo" -v b="$mp" 'BEGIN {printf "(ours %.2fx)", a / b}')"

# Generation: bench_generate next to transformers' generate() (KV cache, greedy, FP32), the same
# prompts' shape; each side takes medians of its own rounds (GEN_ROUNDS).
gen_args="--preset $PRESET --batch ${GEN_BATCH:-8} --prompt ${GEN_PROMPT:-128} --new ${GEN_NEW:-32} --rounds ${GEN_ROUNDS:-3}"
make -s build/bench/bench_generate || exit 1
build/bench/bench_generate $gen_args --device cpu 2>&1 | grep '^RESULT'
if [ $have_peft = 1 ]; then python3 bench/hf_generate.py $gen_args --device cpu 2>&1 | grep '^RESULT'; fi

