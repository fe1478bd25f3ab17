#!/usr/bin/env python3
"""Generation reference: time to first token and decode tokens/s of transformers' model.generate (its KV
cache, greedy) on a model of a preset's shape with random weights, next to build/bench/bench_generate
on the same machine (bench/run_cpu.sh).

    python3 bench/hf_generate.py --preset smollm2-135m [--batch 8] [--prompt 128] [--new 32] [--rounds 3]
                                 [--device cpu|cuda]

The same work as bench_generate: --batch random prompts of --prompt tokens (no padding), every sequence
generating exactly --new tokens (min_new_tokens = max_new_tokens: no stop), FP32 on the CPU, BF16 on the
GPU, attention through SDPA. The same timing: generate() of 1 new token (time to first token), then of
--new; decode tokens/s = batch·(new − 1) / (t_new − t_first); medians of --rounds after one untimed round.

Output: one line that starts with RESULT, in bench_generate's format.
"""
import argparse
import os
import sys
import time

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from peft_step import PRESETS, hf_model_config  # noqa: E402


def main():
    ap = argparse.ArgumentParser(description="transformers generate() benchmark")
    ap.add_argument("--preset", default="smollm2-135m", choices=sorted(PRESETS))
    ap.add_argument("--batch", type=int, default=8)
    ap.add_argument("--prompt", type=int, default=128)
    ap.add_argument("--new", type=int, default=32)
    ap.add_argument("--rounds", type=int, default=3)
    ap.add_argument("--device", default="cpu", choices=["cpu", "cuda"])
    args = ap.parse_args()
    if args.batch < 1 or args.prompt < 1 or args.new < 2 or args.rounds < 1:
        sys.exit("--batch, --prompt and --rounds must be at least 1, --new at least 2")

    import torch
    import transformers

    tag = f"transformers preset={args.preset} device={args.device} batch={args.batch} prompt={args.prompt} new={args.new}"
    if args.device == "cuda" and not torch.cuda.is_available():
        print(f"RESULT {tag} skipped: no GPU (torch.cuda.is_available() is False)")
        return 0
    dev = torch.device(args.device)
    Model, cfg = hf_model_config(args.preset, args.prompt + args.new, "sdpa", use_cache=True)
    torch.manual_seed(0)
    torch.set_default_dtype(torch.bfloat16 if dev.type == "cuda" else torch.float32)
    with torch.device(dev):
        model = Model(cfg)
    torch.set_default_dtype(torch.float32)
    model.eval()
    where = torch.cuda.get_device_name() if dev.type == "cuda" else f"cpu ({torch.get_num_threads()} threads)"
    print(f"transformers {transformers.__version__}, torch {torch.__version__} on {where}", flush=True)
    ids = torch.randint(0, PRESETS[args.preset]["vocab"], (args.batch, args.prompt), device=dev)
    mask = torch.ones_like(ids)

    def timed(n):
        if dev.type == "cuda":
            torch.cuda.synchronize()
        t0 = time.perf_counter()
        with torch.inference_mode():
            out = model.generate(input_ids=ids, attention_mask=mask, max_new_tokens=n, min_new_tokens=n,
                                 do_sample=False, pad_token_id=0)
        if dev.type == "cuda":
            torch.cuda.synchronize()
        assert out.shape[1] == args.prompt + n
        return time.perf_counter() - t0

    timed(args.new)  # warm-up
    t_first, t_all = [], []
    for _ in range(args.rounds):
        t_first.append(timed(1))
        t_all.append(timed(args.new))
    med = lambda v: sorted(v)[len(v) // 2]  # noqa: E731
    ttft = med(t_first)
    decode = args.batch * (args.new - 1) / (med(t_all) - ttft)
    print(f"RESULT {tag}: time to first token {1e3 * ttft:.1f} ms, decode {decode:.1f} tokens/s (median of {args.rounds})")
    return 0


if __name__ == "__main__":
    sys.exit(main())
