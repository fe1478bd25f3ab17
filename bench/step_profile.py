#!/usr/bin/env python3
"""Where one training step's GPU time goes, kernel by kernel (bench/run_gpu.sh PROFILE_STEP=<preset>).

Reads the CSV that `ncu --metrics gpu__time_duration.sum --csv --log-file F bench_train ... --warmup 1
--steps 1` writes: one row per kernel launch, in launch order. Each step ends with the optimizer's
adamw_kernel, so the timed step is every launch after the first adamw_kernel up to and including the
second (setup and the warm-up step are left out). Prints the kernels of that step summed by name and
grid (cuBLASLt's GEMM kernels differ by shape through their grid), longest first, with each one's
share of the step, then the sums by kind (GEMM, attention, the rest).

    python3 bench/step_profile.py /tmp/step_profile.csv
"""
import csv
import re
import sys
from collections import defaultdict

UNIT_NS = {"nsecond": 1.0, "ns": 1.0, "usecond": 1e3, "us": 1e3, "msecond": 1e6, "ms": 1e6, "second": 1e9, "s": 1e9}


def read_launches(path):
    lines = open(path, errors="replace").read().splitlines()
    start = next((i for i, l in enumerate(lines) if l.startswith('"ID"')), None)
    if start is None:
        sys.exit(f"{path}: no CSV header (\"ID\",...) found: did ncu run?")
    launches = []
    for row in csv.DictReader(lines[start:]):
        if row.get("Metric Name") != "gpu__time_duration.sum":
            continue
        value = float(row["Metric Value"].replace(",", ""))
        launches.append((row["Kernel Name"], row.get("Grid Size", ""), value * UNIT_NS.get(row["Metric Unit"], 1.0)))
    return launches


def kind(name):
    if re.search(r"gemm|xmma|cutlass|sm90_|sm80_|ampere|hopper", name, re.I):
        return "GEMM (cuBLASLt)"
    if re.search(r"flash|attention|bwd_D", name, re.I):
        return "attention"
    if "adamw" in name or "sum_squares" in name:
        return "optimizer"
    return "other kernels"


def main():
    launches = read_launches(sys.argv[1])
    ends = [i for i, (name, _, _) in enumerate(launches) if "adamw_kernel" in name]
    if len(ends) >= 2:
        step = launches[ends[0] + 1 : ends[1] + 1]
        what = "the timed step (launches after the warm-up's adamw_kernel, up to the next one)"
    else:
        step = launches
        what = "every launch (fewer than two adamw_kernel launches: setup and warm-up included)"
    total = sum(t for _, _, t in step)
    groups = defaultdict(lambda: [0, 0.0])
    kinds = defaultdict(float)
    for name, grid, t in step:
        short = re.sub(r"\(.*", "", name)[:90]
        groups[(short, grid)][0] += 1
        groups[(short, grid)][1] += t
        kinds[kind(name)] += t
    print(f"{what}: {len(step)} kernel launches, {total / 1e6:.2f} ms of kernel time")
    print()
    print("| kind | ms | share |")
    print("|---|---|---|")
    for k, t in sorted(kinds.items(), key=lambda kv: -kv[1]):
        print(f"| {k} | {t / 1e6:.2f} | {100 * t / total:.1f}% |")
    print()
    print("| kernel | grid | launches | ms | share |")
    print("|---|---|---|---|---|")
    for (name, grid), (n, t) in sorted(groups.items(), key=lambda kv: -kv[1][1]):
        if t < 0.002 * total:
            continue
        print(f"| {name} | {grid} | {n} | {t / 1e6:.3f} | {100 * t / total:.1f}% |")


if __name__ == "__main__":
    main()
