#!/usr/bin/env bash
# What nvcc made of every CUDA kernel, without a GPU: machine instructions (sm_90), registers, spills
# and stack, each next to the figures recorded in bench/kernel_sizes.txt.
#
#   bash bench/kernel_sizes.sh            # the table; rows that changed are marked
#   bash bench/kernel_sizes.sh --update   # the same, then record this build's figures as the reference
#   (make kernel-sizes runs the first)
#
# Why: most sessions have no GPU, and a kernel's speed can be lost in a change that keeps every test
# green. The instruction count is a cheap proxy that needs no GPU: when the hd-128 attention forward
# went from 2,376 to 2,848 instructions (nvcc had duplicated its softmax around a shuffle), it ran
# 5-7% slower on an H200, and nobody saw it until a GPU session. A row marked here is a question to
# answer (read the SASS: cuobjdump -sass, or a GPU session's A/B), not a verdict: more instructions
# can be faster, e.g. a loop unrolled on purpose.
#
# How: each kernels/cuda/*.cu compiled alone to an sm_90 cubin with nvcc's flags from the Makefile;
# the code size of a kernel is its .text section (16 bytes an instruction on sm_90); registers, spill
# stores and stack frame come from ptxas -v. Kernels are named by their demangled name without the
# parameter list (templates keep their arguments). The figures depend on the nvcc version (printed).
set -eu
cd "$(dirname "$0")/.."
REF=bench/kernel_sizes.txt
case "${1:-}" in
    "" | --update) ;;
    *) echo "kernel_sizes: unknown argument '$1' (the only one is --update: record this build's figures in $REF)"; exit 2 ;;
esac
command -v nvcc >/dev/null || { echo "kernel_sizes: nvcc not found (the CUDA toolkit is needed, not a GPU)"; exit 1; }
tmp=$(mktemp -d)
trap 'rm -rf "$tmp"' EXIT

# One row per kernel: name, instructions, registers, spill stores (bytes), stack frame (bytes).
for cu in kernels/cuda/*.cu; do
    base=$(basename "$cu" .cu)
    nvcc -O3 -std=c++17 -arch=sm_90 -cubin -Xptxas -v -Xcompiler -iquote. -I. -o "$tmp/$base.cubin" "$cu" \
        2>"$tmp/$base.ptxas" || { cat "$tmp/$base.ptxas"; exit 1; }
    # ptxas -v: "Compiling entry function 'NAME'", then "N bytes stack frame, N bytes spill stores",
    # then "Used N registers".
    awk -v file="$base" '
        /Compiling entry function/ { match($0, /\x27[^\x27]+\x27/); fn = substr($0, RSTART + 1, RLENGTH - 2) }
        /bytes stack frame/ && fn != "" { stack[fn] = $1; spill[fn] = $5 }
        /Used [0-9]+ registers/ && fn != "" { match($0, /Used [0-9]+ registers/); split(substr($0, RSTART, RLENGTH), w, " ");
                                              regs[fn] = w[2]; order[++n] = fn; fn = "" }
        END { for (i = 1; i <= n; i++) { f = order[i]; print file, f, regs[f], spill[f], stack[f] } }
    ' "$tmp/$base.ptxas" >"$tmp/$base.props"
    LC_ALL=C readelf -SW "$tmp/$base.cubin" 2>/dev/null | awk '$2 ~ /^\.text\./ { print substr($2, 7), $6 }' |
        while read -r name hex; do echo "$name $((16#$hex / 16))"; done >"$tmp/$base.sizes"
    awk 'NR == FNR { size[$1] = $2; next } { print $1, $2, ($2 in size ? size[$2] : "?"), $3, $4, $5 }' \
        "$tmp/$base.sizes" "$tmp/$base.props"
done >"$tmp/rows"

# Demangled names without the parameter list and the anonymous namespace's file hash.
cut -d' ' -f2 "$tmp/rows" | c++filt | sed -e 's/(anonymous namespace):://' -e 's/^void //' -e 's/(.*$//' >"$tmp/names"
paste -d' ' "$tmp/rows" "$tmp/names" |
    awk '{ name = $7; for (i = 8; i <= NF; i++) name = name " " $i; printf "%s|%s|%s|%s|%s\n", $1 "/" name, $3, $4, $5, $6 }' |
    sort >"$tmp/now"

echo "nvcc $(nvcc --version | sed -n 's/.*release \([0-9.]*\).*/\1/p'), sm_90; reference: $REF ($(head -1 "$REF" 2>/dev/null | sed 's/^# //'))"
printf '%-64s %7s %7s %6s %6s %6s  %s\n' "file/kernel" "instr" "ref" "change" "regs" "spill" "note"
awk -F'|' -v ref="$REF" '
    BEGIN { while ((getline line < ref) > 0) { if (line ~ /^#/) continue; split(line, f, "|"); r_ins[f[1]] = f[2]; r_reg[f[1]] = f[3] } }
    {
        k = $1; ins = $2; note = ""; change = "-"
        if (k in r_ins) {
            change = sprintf("%+.1f%%", 100 * (ins - r_ins[k]) / r_ins[k])
            if (ins > r_ins[k] * 1.03) note = "grew"
            else if (ins < r_ins[k] * 0.97) note = "shrank"
            if ($3 != r_reg[k]) note = note (note ? ", " : "") "registers " r_reg[k] " -> " $3
        } else note = "new"
        if ($4 > 0) note = note (note ? ", " : "") "SPILLS " $4 " B"
        if ($5 > 0) note = note (note ? ", " : "") "stack frame " $5 " B"
        printf "%-64s %7s %7s %6s %6s %6s  %s\n", substr(k, 1, 64), ins, (k in r_ins ? r_ins[k] : "-"), change, $3, $4, note
        seen[k] = 1
    }
    END { for (k in r_ins) if (!(k in seen)) printf "%-64s %7s %7s %6s %6s %6s  %s\n", substr(k, 1, 64), "-", r_ins[k], "-", "-", "-", "gone" }
' "$tmp/now"

if [ "${1:-}" = --update ]; then
    { echo "# $(git rev-parse --short HEAD 2>/dev/null)$(git diff --quiet 2>/dev/null || echo '+changes'), nvcc $(nvcc --version | sed -n 's/.*release \([0-9.]*\).*/\1/p'), sm_90"
      echo "# file/kernel|instructions|registers|spill store bytes|stack frame bytes"
      cat "$tmp/now"; } >"$REF"
    echo "recorded in $REF"
fi
