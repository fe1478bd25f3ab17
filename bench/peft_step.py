#!/usr/bin/env python3
"""End-to-end reference: one LoRA (or QLoRA) training step in transformers + peft (+ bitsandbytes),
on a model of a preset's shape with random weights, on the GPU. The figures to put next to our
trainer's (build/bench/bench_train) on the same GPU, in the same command (bench/run_gpu.sh).

    python3 bench/peft_step.py --preset llama-3.2-1b [--batch 4] [--seq 2048] [--steps 10] [--warmup 3]
                               [--qlora] [--use-dora] [--recompute] [--attn sdpa|eager|flash_attention_2] [--rank 16]

The step, as the HF Trainer with bf16=True runs it:
  - LlamaForCausalLM from a LlamaConfig of the preset's shape (Qwen3/SmolLM3ForCausalLM for theirs), random
    init (normal, std 0.02), BF16.
  - peft LoRA r=16, alpha=32, dropout 0, on q,k,v,o,gate,up,down; the adapters are FP32 (peft's
    default autocast_adapter_dtype=True) and the forward runs under torch.autocast(bfloat16).
  - --qlora: the seven projections of every layer become bitsandbytes Linear4bit (NF4, blocks of 64,
    double quantization, BF16 compute), as BitsAndBytesConfig(load_in_4bit, nf4, double quant,
    bnb_4bit_compute_dtype=bf16) would load them; embeddings, norms and the LM head stay BF16.
    (We quantize the random model in place instead of save + from_pretrained: same modules, no disk.)
  - --use-dora: LoraConfig(use_dora=True), PEFT's DoRA (bench_train --use-dora).
  - --modules-to-save embed_tokens,lm_head: those trained in full beside the adapters (bench_train's flag).
  - --trainable-tokens N: trainable_token_indices of tokens 0..N-1, in the embedding and (untied) the LM
    head (bench_train's flag).
  - --recompute: gradient_checkpointing_enable(use_reentrant=False).
  - loss: model(input_ids, labels=input_ids) (HF's shifted cross-entropy, logits upcast to FP32),
    backward, clip_grad_norm_(1.0), torch.optim.AdamW(fused=True) on the adapters, zero_grad.
  - random token batches of --batch x --seq, a new one each step.
Timing, as bench_train does it: --warmup steps, then --steps steps each timed on the wall clock up
to torch.cuda.synchronize(); the figure is the median step. tokens/s = batch·seq / median step time.
Peak memory: torch.cuda.max_memory_allocated (and _reserved) over the warm-up and timed steps, the
weights included; the counter is reset after the model is built.

MFU = model FLOPs per token × tokens/s / peak dense BF16 FLOP/s of the GPU (989e12 for H100/H200 SXM;
--peak-tflops overrides). Model FLOPs per token: train_flops_per_token() below, the formula of
flops_per_token() in bench/bench_train.cpp, so the two MFU figures compare.

Output: the settings, then one line that starts with RESULT, in bench_train's format:
  RESULT peft preset=llama-3.2-1b method=lora device=cuda batch=4 seq=2048 recompute=0: 812.3 ms/step
         (median of 10), 10085 tokens/s, MFU 38.1%, peak memory 21.40 GB (max allocated; 24.10 reserved), loss 11.93
(or "RESULT peft ... skipped: <why>" when it cannot run: no GPU, no bitsandbytes for --qlora).
"""
import argparse
import sys
import time

# The presets' shapes, as in model/config.cpp (vocab, dim, layers, heads, kv heads, ffn, rope theta,
# rms eps, tied embeddings; the llama3 RoPE scaling factor of Llama 3.1/3.2, whose ramp is 1 to 4 of 8192;
# Qwen3: head_dim 128 whatever dim/heads is, and QK-norm, so Qwen3ForCausalLM; SmolLM3: no RoPE in every
# 4th layer, SmolLM3ForCausalLM; Gemma 3: head_dim 256, QK-norm, GeGLU, post norms, a 512-key window
# in five layers of six, Gemma3ForCausalLM).
PRESETS = {
    "tiny": dict(vocab=512, dim=64, layers=2, heads=4, kv=2, ffn=160, theta=10000.0, eps=1e-5, tied=True),
    "smollm2-135m": dict(vocab=49152, dim=576, layers=30, heads=9, kv=3, ffn=1536, theta=100000.0, eps=1e-5, tied=True),
    "smollm2-360m": dict(vocab=49152, dim=960, layers=32, heads=15, kv=5, ffn=2560, theta=100000.0, eps=1e-5, tied=True),
    "llama-3.2-1b": dict(vocab=128256, dim=2048, layers=16, heads=32, kv=8, ffn=8192, theta=500000.0, eps=1e-5, tied=True,
                         llama3=32.0),
    "llama-3.1-8b": dict(vocab=128256, dim=4096, layers=32, heads=32, kv=8, ffn=14336, theta=500000.0, eps=1e-5, tied=False,
                         llama3=8.0),
    "llama-2-7b": dict(vocab=32000, dim=4096, layers=32, heads=32, kv=32, ffn=11008, theta=10000.0, eps=1e-5, tied=False),
    "llama-2-13b": dict(vocab=32000, dim=5120, layers=40, heads=40, kv=40, ffn=13824, theta=10000.0, eps=1e-5, tied=False),
    "smollm3-3b": dict(vocab=128256, dim=2048, layers=36, heads=16, kv=4, ffn=11008, theta=5e6, eps=1e-6, tied=True,
                       smollm3=True),
    "qwen3-0.6b": dict(vocab=151936, dim=1024, layers=28, heads=16, kv=8, ffn=3072, theta=1e6, eps=1e-6, tied=True,
                       head_dim=128, qwen3=True),
    "qwen3-1.7b": dict(vocab=151936, dim=2048, layers=28, heads=16, kv=8, ffn=6144, theta=1e6, eps=1e-6, tied=True,
                       head_dim=128, qwen3=True),
    "qwen3-4b": dict(vocab=151936, dim=2560, layers=36, heads=32, kv=8, ffn=9728, theta=1e6, eps=1e-6, tied=True,
                     head_dim=128, qwen3=True),
    "qwen3-8b": dict(vocab=151936, dim=4096, layers=36, heads=32, kv=8, ffn=12288, theta=1e6, eps=1e-6, tied=False,
                     head_dim=128, qwen3=True),
    "gemma3-270m": dict(vocab=262144, dim=640, layers=18, heads=4, kv=1, ffn=2048, theta=1e6, eps=1e-6, tied=True,
                        head_dim=256, gemma3=True),
    "gemma3-1b": dict(vocab=262144, dim=1152, layers=26, heads=4, kv=1, ffn=6912, theta=1e6, eps=1e-6, tied=True,
                      head_dim=256, gemma3=True),
}

LORA_TARGETS = ["q_proj", "k_proj", "v_proj", "o_proj", "gate_proj", "up_proj", "down_proj"]


def train_flops_per_token(vocab, dim, layers, heads, kv, ffn, seq, hd, full=False, head_trained=False):
    """Model FLOPs of one training step (forward + backward) per token; the same formula as
    flops_per_token() in bench/bench_train.cpp. With C = dim, hd the head dim, q = heads·hd,
    kv = kv_heads·hd, F = ffn, V = vocab, L = layers, T = sequence length:

      P    = L·(C·q + 2·C·kv + q·C + 3·C·F) + V·C
             the weights that take part in a matmul: the seven projections of every layer and the
             LM head (counted whether or not it is tied to the embedding); the embedding lookup and
             the norms are not matmuls and count 0.
      attn = 3 · 4·L·q·T/2 = 6·L·q·T
             causal attention: QKᵀ and PV cost 2·q·(T/2) each per token in the forward (on average
             T/2 keys per query), the backward twice the forward.
      LoRA and QLoRA (frozen base):  4·P + attn
             2 FLOP per weight in the forward, 2 in the backward for dX, none for dW (frozen).
      full fine-tuning:              6·P + attn
      LoRA with the LM head among modules_to_save (head_trained): + 2·V·C, its dW

    Not counted: the LoRA adapters' own matmuls (6·r·(in+out) per adapted matrix: ~4% of the total
    for smollm2-135m at r=16, ~1.5% for llama-3.2-1b), recomputation (gradient checkpointing: MFU
    counts model FLOPs, not hardware FLOPs), NF4 dequantization, norms, activations, softmax, the
    optimizer.
    """
    q, kvd = heads * hd, kv * hd
    P = layers * (dim * q + 2 * dim * kvd + q * dim + 3 * dim * ffn) + vocab * dim
    attn = 3 * 4 * layers * q * seq / 2
    return (6 if full else 4) * P + attn + (2 * vocab * dim if head_trained and not full else 0)


def gpu_peak_flops(name):
    """Dense BF16 FLOP/s of the GPU, from its name (H100 SXM when unknown)."""
    n = name.upper()
    if "H100" in n and "PCIE" in n:
        return 756e12
    if "H100" in n or "H200" in n:
        return 989e12
    if "A100" in n:
        return 312e12
    print(f"note: unknown GPU '{name}': MFU against 989 TFLOP/s (H100 SXM); use --peak-tflops", flush=True)
    return 989e12


def quantize_nf4_in_place(model, torch):
    """Replaces the seven projections of every decoder layer by bitsandbytes Linear4bit holding the
    same weights in NF4 (blocks of 64, double quantization, BF16 compute), as transformers does when
    loading with BitsAndBytesConfig(load_in_4bit=True, bnb_4bit_quant_type='nf4',
    bnb_4bit_use_double_quant=True, bnb_4bit_compute_dtype=torch.bfloat16)."""
    import bitsandbytes as bnb

    dev = next(model.parameters()).device
    for layer in model.model.layers:
        for parent in (layer.self_attn, layer.mlp):
            for name in LORA_TARGETS:
                lin = getattr(parent, name, None)
                if lin is None:
                    continue
                q = bnb.nn.Linear4bit(lin.in_features, lin.out_features, bias=lin.bias is not None,
                                      compute_dtype=torch.bfloat16, compress_statistics=True, quant_type="nf4",
                                      device="meta")
                q.weight = bnb.nn.Params4bit(lin.weight.data, requires_grad=False, compress_statistics=True,
                                             quant_type="nf4", blocksize=64)
                if lin.bias is not None:
                    q.bias = torch.nn.Parameter(lin.bias.data, requires_grad=False)
                setattr(parent, name, q.to(dev))  # .to() on a not-yet-quantized Params4bit quantizes it
                del lin
    # What peft reads to wrap Linear4bit layers with its bitsandbytes LoRA layers.
    model.is_loaded_in_4bit = True


def hf_model_config(preset, seq, attn, use_cache):
    """The transformers model class and config of a preset's shape (random init is the caller's)."""
    from transformers import (Gemma3ForCausalLM, Gemma3TextConfig, LlamaConfig, LlamaForCausalLM, Qwen3Config,
                              Qwen3ForCausalLM, SmolLM3Config, SmolLM3ForCausalLM)

    p = PRESETS[preset]
    hd = p.get("head_dim", p["dim"] // p["heads"])
    Config, Model = ((Qwen3Config, Qwen3ForCausalLM) if p.get("qwen3") else
                     (Gemma3TextConfig, Gemma3ForCausalLM) if p.get("gemma3") else
                     (SmolLM3Config, SmolLM3ForCausalLM) if p.get("smollm3") else (LlamaConfig, LlamaForCausalLM))
    extra = ({} if p.get("qwen3") else dict(sliding_window=512, query_pre_attn_scalar=hd) if p.get("gemma3") else
             dict(mlp_bias=False, no_rope_layer_interval=4) if p.get("smollm3") else dict(mlp_bias=False))
    cfg = Config(vocab_size=p["vocab"], hidden_size=p["dim"], intermediate_size=p["ffn"],
                 num_hidden_layers=p["layers"], num_attention_heads=p["heads"], num_key_value_heads=p["kv"],
                 head_dim=hd, max_position_embeddings=max(seq, 131072 if "llama3" in p else 2048), rope_theta=p["theta"],
                 rms_norm_eps=p["eps"], tie_word_embeddings=p["tied"], attention_bias=False, **extra,
                 attn_implementation=attn, use_cache=use_cache,
                 rope_scaling=None if "llama3" not in p else {
                     "rope_type": "llama3", "factor": p["llama3"], "low_freq_factor": 1.0, "high_freq_factor": 4.0,
                     "original_max_position_embeddings": 8192})
    return Model, cfg


def main():
    ap = argparse.ArgumentParser(description="transformers + peft LoRA/QLoRA training step benchmark")
    ap.add_argument("--preset", default="smollm2-135m", choices=sorted(PRESETS))
    ap.add_argument("--batch", type=int, default=4)
    ap.add_argument("--seq", type=int, default=2048)
    ap.add_argument("--steps", type=int, default=10, help="timed steps")
    ap.add_argument("--warmup", type=int, default=3, help="untimed steps first")
    ap.add_argument("--rank", type=int, default=16)
    ap.add_argument("--alpha", type=float, default=None,
                    help="lora_alpha (default 2·rank: bench_train's alpha, 32 at r=16)")
    ap.add_argument("--dropout", type=float, default=0.0, help="lora_dropout (bench_train's --dropout)")
    ap.add_argument("--qlora", action="store_true", help="NF4 base weights through bitsandbytes")
    ap.add_argument("--use-dora", action="store_true", help="LoraConfig(use_dora=True) (bench_train's --use-dora)")
    ap.add_argument("--modules-to-save", default="",
                    help="embed_tokens,lm_head: LoraConfig(modules_to_save=..., ensure_weight_tying on a tied "
                         "preset) (bench_train's --modules-to-save)")
    ap.add_argument("--trainable-tokens", type=int, default=0,
                    help="N: LoraConfig(trainable_token_indices=tokens 0..N-1, by module name on an untied preset) "
                         "(bench_train's --trainable-tokens)")
    ap.add_argument("--recompute", action="store_true", help="gradient checkpointing")
    ap.add_argument("--attn", default="sdpa", help="transformers attn_implementation (sdpa, eager, flash_attention_2)")
    ap.add_argument("--peak-tflops", type=float, default=0, help="dense BF16 peak for MFU (default: from the GPU name)")
    ap.add_argument("--device", default="cuda", choices=["cuda", "cpu"],
                    help="cpu: FP32 on the CPU, no autocast, next to bench_train --device cpu (our FP32 CPU backend)")
    args = ap.parse_args()
    args.steps = max(1, args.steps)
    if args.alpha is None:
        args.alpha = 2.0 * args.rank  # bench_train sets alpha = 2·rank; a fixed 32 differed at any other rank

    import torch

    method = "qlora" if args.qlora else "lora"
    def tag(device):
        return (f"peft preset={args.preset} method={method} device={device} batch={args.batch} seq={args.seq} "
                f"recompute={int(args.recompute)}" + (f" dropout={args.dropout:g}" if args.dropout > 0 else "") +
                (" dora=1" if args.use_dora else "") +
                (f" save={args.modules_to_save}" if args.modules_to_save else "") +
                (f" tokens={args.trainable_tokens}" if args.trainable_tokens else "") +
                (f" attn={args.attn}" if args.attn != "sdpa" else ""))
    if args.device == "cpu":
        dev, gpu = torch.device("cpu"), f"cpu ({torch.get_num_threads()} threads)"
    elif torch.cuda.is_available():
        dev = torch.device("cuda")
        gpu = torch.cuda.get_device_name()
    else:
        print(f"RESULT {tag('none')} skipped: no GPU (torch.cuda.is_available() is False)")
        return 0
    if args.qlora:
        try:
            import bitsandbytes  # noqa: F401
        except Exception as e:  # noqa: BLE001
            print(f"RESULT {tag(dev.type)} skipped: bitsandbytes not available ({type(e).__name__}: {e})")
            return 0

    import peft
    import transformers
    from peft import LoraConfig, get_peft_model

    p = PRESETS[args.preset]
    hd = p.get("head_dim", p["dim"] // p["heads"])
    Model, cfg = hf_model_config(args.preset, args.seq, args.attn, use_cache=False)
    print(f"transformers {transformers.__version__}, peft {peft.__version__}, torch {torch.__version__} on {gpu}")
    print(f"{args.preset}: dim {p['dim']}, {p['layers']} layers, {p['heads']}/{p['kv']} heads of {hd}, "
          f"ffn {p['ffn']}, vocab {p['vocab']}{', tied' if p['tied'] else ''}; {method} r={args.rank} "
          f"alpha={args.alpha:g} on {','.join(t.split('_')[0] for t in LORA_TARGETS)}; attn={args.attn}; "
          f"recompute {'on' if args.recompute else 'off'}; batch {args.batch} x seq {args.seq}", flush=True)

    if p.get("gemma3") and args.attn in ("sdpa", "eager"):
        # transformers gives SDPA/eager an explicit (1, 1, T, T) sliding-window mask in 5 layers of 6
        # (and repeats K/V to every head there): no flash kernel, the full causal T²/2 scores computed,
        # where bench_train's attention visits only the 512-key band. Not the same attention work.
        print(f"note: {args.preset} with attn={args.attn}: the sliding-window layers run full causal attention "
              f"under a materialized mask (bench_train skips the blocks outside the window); "
              f"--attn flex_attention or flash_attention_2 compares the same work", flush=True)
    torch.manual_seed(0)
    t_setup = time.perf_counter()
    # BF16 on the GPU (what bf16=True training holds); FP32 on the CPU, like our CPU backend.
    torch.set_default_dtype(torch.bfloat16 if dev.type == "cuda" else torch.float32)
    with torch.device(dev):
        model = Model(cfg)  # random init, directly on the device
    torch.set_default_dtype(torch.float32)
    n_params = sum(t.numel() for t in model.parameters())
    if args.qlora:
        quantize_nf4_in_place(model, torch)
    if args.recompute:
        model.gradient_checkpointing_enable(gradient_checkpointing_kwargs={"use_reentrant": False})
    lcfg = LoraConfig(r=args.rank, lora_alpha=args.alpha, lora_dropout=args.dropout, target_modules=LORA_TARGETS,
                      bias="none", task_type="CAUSAL_LM", use_dora=args.use_dora,
                      modules_to_save=args.modules_to_save.split(",") if args.modules_to_save else None,
                      ensure_weight_tying=bool(args.modules_to_save) and p["tied"],
                      trainable_token_indices=None if not args.trainable_tokens else list(range(args.trainable_tokens))
                      if p["tied"] else {"embed_tokens": list(range(args.trainable_tokens)),
                                         "lm_head": list(range(args.trainable_tokens))})
    model = get_peft_model(model, lcfg)
    model.train()
    trainable = [t for t in model.parameters() if t.requires_grad]
    n_trainable = sum(t.numel() for t in trainable)
    opt = torch.optim.AdamW(trainable, lr=1e-4, betas=(0.9, 0.999), eps=1e-8, weight_decay=0.0,
                            fused=dev.type == "cuda")
    if dev.type == "cuda":
        torch.cuda.synchronize()
        torch.cuda.empty_cache()
        weights_gb = torch.cuda.memory_allocated() / 1e9
        torch.cuda.reset_peak_memory_stats()
    else:
        weights_gb = 0.0
    print(f"setup {time.perf_counter() - t_setup:.1f} s: {n_params / 1e6:.1f}M base params, "
          f"{n_trainable / 1e6:.2f}M trainable (adapter dtype {trainable[0].dtype}), "
          f"{weights_gb:.2f} GB allocated before the first step", flush=True)

    def step():
        ids = torch.randint(0, p["vocab"], (args.batch, args.seq), device=dev)
        with torch.autocast(device_type=dev.type, dtype=torch.bfloat16, enabled=dev.type == "cuda"):
            loss = model(input_ids=ids, labels=ids).loss
        loss.backward()
        torch.nn.utils.clip_grad_norm_(trainable, 1.0)
        opt.step()
        opt.zero_grad(set_to_none=True)
        return loss

    def sync():
        if dev.type == "cuda":
            torch.cuda.synchronize()

    for i in range(args.warmup):
        loss = step()
        print(f"warm-up step {i + 1}: loss {loss.item():.4f}", flush=True)
    sync()
    times = []
    for _ in range(args.steps):
        t0 = time.perf_counter()
        loss = step()
        sync()
        times.append(time.perf_counter() - t0)
    times.sort()
    med = times[len(times) // 2]

    tps = args.batch * args.seq / med
    head_trained = bool(args.modules_to_save) and (p["tied"] or "lm_head" in args.modules_to_save)
    fpt = train_flops_per_token(p["vocab"], p["dim"], p["layers"], p["heads"], p["kv"], p["ffn"], args.seq, hd,
                                head_trained=head_trained)
    peak = args.peak_tflops * 1e12 if args.peak_tflops else gpu_peak_flops(gpu) if dev.type == "cuda" else float("inf")
    mfu = 100.0 * fpt * tps / peak
    if dev.type == "cuda":
        alloc, reserved = torch.cuda.max_memory_allocated() / 1e9, torch.cuda.max_memory_reserved() / 1e9
        peak_what = f"max allocated; {reserved:.2f} reserved"
    else:
        import resource
        alloc, peak_what = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024 / 1e9, "max RSS of the process"
    if dev.type == "cuda":
        print(f"MFU: (4·P + 6·L·q·T) = {fpt:.4g} FLOP/token × tokens/s / {peak / 1e12:.0f} TFLOP/s "
              f"(frozen base: forward 2P + backward dX 2P; causal attention; recompute not counted)")
    mfu_s = f"{mfu:.1f}%" if dev.type == "cuda" else "n/a (CPU)"
    print(f"RESULT {tag(dev.type)}: {1e3 * med:.1f} ms/step (median of {args.steps}), {tps:.0f} tokens/s, MFU {mfu_s}, "
          f"peak memory {alloc:.2f} GB ({peak_what}), loss {loss.item():.3f}, "
          f"{fpt * tps / 1e9:.1f} GFLOP/s of model FLOPs", flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
