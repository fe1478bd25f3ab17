#!/usr/bin/env python3
"""PyTorch reference for bench/bench_cuda_kernels.cpp: the same ops on the same shapes, in BF16 on
the same GPU, printed as the same table (op, shape, us, GB/s, TFLOP/s, % of peak) so the two read
side by side.

    python3 bench/torch_kernels.py [--filter SUBSTR] [--compare OURS.txt] [--peak-bw GB/s] [--peak-tflops TF]

--compare reads the table that build/bench/bench_cuda_kernels printed and adds a joined table
(ours vs torch, time ratio) after this one.

What each row runs (PyTorch's own kernels, eager mode, no torch.compile):
  attn fwd / bwd   F.scaled_dot_product_attention, causal, FLASH_ATTENTION backend forced, GQA via
                   enable_gqa=True (if the backend refuses it, K/V are expanded first, outside the
                   timing, and a note says so); bwd = torch.autograd.grad of the output alone
  matmul           torch.matmul in BF16 (fwd y = x Wᵀ; bwd dX = dy W; dX+dW adds dW = dyᵀ x in BF16,
                   where ours accumulates dW in FP32)
  rmsnorm          F.rms_norm (weight frozen: no dW), bwd = autograd of it
  rope             the HF rotate-half formula in eager: q·cos + rotate_half(q)·sin; bwd = its autograd
  swiglu, geglu    F.silu(g) * u, F.gelu(g, approximate="tanh") * u; bwd = its autograd
  embedding fwd    F.embedding
  embedding bwd    dtable.index_add_(0, tokens, dout.float()): FP32 accumulation into the table (atomics)
  embedding noise  NEFTune as transformers' hook adds it: x + torch.zeros_like(x).uniform_(-m, m)
  crossentropy     F.cross_entropy(logits.float(), reduction='none') forward + its backward to the
                   BF16 logits (the HF loss path), per-row weights / n as the incoming gradient
  argmax           torch.argmax(logits, dim=-1) on BF16 logits (greedy decoding's pick)
  nf4 dequant dq   bitsandbytes.functional.dequantize_4bit, NF4, blocks of 64, double quantization
                   (compress_statistics=True, as QLoRA stores weights)
  adamw            torch.optim.AdamW(fused=True) over 100M FP32 params + the BF16 copy of the weights
  adamw8bit        bitsandbytes.optim.AdamW8bit (blockwise 8-bit moments) over the same, + the BF16 copy
  cast f32->bf16   dst.copy_(src)
  sum_squares      torch.linalg.vector_norm(g).item() (includes the wait for the result, as ours)
  lora fwd / bwd   the adapter path as BF16 matmuls: y += s·(x Aᵀ) Bᵀ; bwd du = s·dy B, dB = s·dyᵀu, dA = duᵀx, dx += du A;
                   with dropout (p0.05) as peft: drop(x) written and kept, dx += mask·(du A)/(1-p)
  dora norm/fwd/bwd PEFT's DoRA: torch.linalg.norm(W + s·(B A), dim=1); y += (m/norm)·z; its backward
                   dz = (m/norm)·dy, dm = Σ dy·z / norm (eager elementwise ops)

Counting: GB/s uses the byte count of OUR op for the same row (bench_cuda_kernels.cpp), so both
GB/s columns are "the same work / time" and their ratio is the time ratio. Attention FLOPs:
FlashAttention convention, causal fwd 4·B·nh·T²·hd/2, bwd 2.5x fwd. Matmul: 2·N·C·OC per product.

Timing: two warm-up calls, then 5 samples of `reps` back-to-back calls between two CUDA events
(reps chosen so a sample lasts about 20 ms); the figure is the median sample / reps.
"""
import argparse
import contextlib
import math
import sys
import time

import torch
import torch.nn.functional as F

ARGS = None
NOTES = []


def gpu_peaks(name):
    """(bytes/s, FLOP/s dense BF16) of the GPU from its name; H100 SXM when unknown."""
    n = name.upper()
    if "H200" in n:
        return 4.8e12, 989e12
    if "H100" in n and "PCIE" in n:
        return 2.0e12, 756e12
    if "H100" in n:
        return 3.35e12, 989e12
    if "A100" in n:
        return 2.039e12, 312e12
    NOTES.append(f"unknown GPU '{name}': % of peak against H100 SXM figures")
    return 3.35e12, 989e12


class Timer:
    """Median seconds per call of fn (method in the module docstring). On the CPU (--cpu-smoke) it
    uses the wall clock: only to check that the script runs."""

    def __init__(self, device, sample_s):
        self.cuda = device.type == "cuda"
        self.sample_s = sample_s

    def sync(self):
        if self.cuda:
            torch.cuda.synchronize()

    def _sample(self, fn, reps):
        if self.cuda:
            a, b = torch.cuda.Event(enable_timing=True), torch.cuda.Event(enable_timing=True)
            a.record()
            for _ in range(reps):
                fn()
            b.record()
            b.synchronize()
            return a.elapsed_time(b) / 1e3 / reps
        t0 = time.perf_counter()
        for _ in range(reps):
            fn()
        return (time.perf_counter() - t0) / reps

    def __call__(self, fn):
        fn()
        self.sync()
        one = max(self._sample(fn, 1), 1e-7)
        reps = int(min(1000, max(1, self.sample_s / one)))
        samples = sorted(self._sample(fn, reps) for _ in range(5))
        return samples[len(samples) // 2]


def print_header():
    print("| %-18s | %-32s | %10s | %8s | %8s | %6s |" % ("op", "shape", "us", "GB/s", "TFLOP/s", "%peak"))
    print("|--------------------|----------------------------------|------------|----------|----------|--------|")


def print_row(op, shape, sec, nbytes=0.0, flops=0.0):
    gbs = tfs = pct = "-"
    if nbytes > 0:
        gbs = "%.0f" % (nbytes / sec / 1e9)
        pct = "%.1f%%" % (100 * nbytes / sec / ARGS.peak_bw)
    if flops > 0:
        tfs = "%.1f" % (flops / sec / 1e12)
        pct = "%.1f%%" % (100 * flops / sec / ARGS.peak_flops)
    print("| %-18s | %-32s | %10.1f | %8s | %8s | %6s |" % (op, shape, sec * 1e6, gbs, tfs, pct), flush=True)


def run_case(op, shape, setup):
    """setup() returns (fn, bytes, flops); errors print a row and the script goes on."""
    if ARGS.filter and not any(f in f"{op} {shape}" for f in ARGS.filter.split(",")):
        return
    try:
        fn, nbytes, flops = setup()
        print_row(op, shape, TIMER(fn), nbytes, flops)
        del fn  # the case's tensors go with it, before empty_cache below
    except Exception as e:  # noqa: BLE001 - a failing reference must not stop the others
        msg = str(e).strip().splitlines()[0] if str(e).strip() else type(e).__name__
        print("| %-18s | %-32s | error: %s" % (op, shape, msg[:200]), flush=True)
    finally:
        if DEV.type == "cuda":
            torch.cuda.empty_cache()


def rand(*shape, scale=1.0, offset=0.0, dtype=torch.bfloat16, grad=False):
    t = (torch.rand(*shape, device=DEV, dtype=torch.float32) * 2 - 1) * scale + offset
    return t.to(dtype).requires_grad_(grad)


# ---- the cases (same order, names and shape strings as bench_cuda_kernels.cpp) ----

def bench_attention():
    from torch.nn.attention import SDPBackend, sdpa_kernel

    for hd, nh, nkv in ((64, 32, 32), (64, 32, 8), (128, 16, 16), (128, 32, 8), (256, 8, 4)):
        for T in (2048 // S, 4096 // S):
            B = 16384 // S // T
            shape = f"B{B} T{T} h{nh}/{nkv} d{hd}"
            fwd_flops = 4.0 * B * nh * T * T * hd / 2

            def make(grad):
                # Our layout [B*T, heads, hd] seen as (B, heads, T, hd): the strided view HF uses too.
                q = rand(B, T, nh, hd, grad=grad).transpose(1, 2)
                k = rand(B, T, nkv, hd, grad=grad).transpose(1, 2)
                v = rand(B, T, nkv, hd, grad=grad).transpose(1, 2)
                gqa = nkv != nh

                def attn(q, k, v):
                    with sdpa_kernel(SDPBackend.FLASH_ATTENTION):
                        return F.scaled_dot_product_attention(q, k, v, is_causal=True, enable_gqa=gqa)

                try:
                    attn(q, k, v)
                except Exception as e:  # noqa: BLE001
                    if not gqa:
                        raise
                    NOTES.append(f"attn {shape}: flash refused enable_gqa ({str(e).splitlines()[0][:80]}); "
                                 "K/V expanded to all heads before the call (not timed)")
                    k = k.repeat_interleave(nh // nkv, dim=1).detach().requires_grad_(grad)
                    v = v.repeat_interleave(nh // nkv, dim=1).detach().requires_grad_(grad)
                    gqa = False
                return q, k, v, attn

            def fwd():
                q, k, v, attn = make(False)
                return (lambda: attn(q, k, v)), 0, fwd_flops

            def bwd():
                q, k, v, attn = make(True)
                out = attn(q, k, v)
                dout = torch.randn_like(out)
                return (lambda: torch.autograd.grad(out, (q, k, v), dout, retain_graph=True)), 0, 2.5 * fwd_flops

            run_case("attn fwd", shape, fwd)
            run_case("attn bwd", shape, bwd)


def bench_matmul():
    for N, C, OC, what in ((4096, 4096, 4096, "q,k,v,o"), (4096, 4096, 11008, "gate,up"),
                           (4096, 11008, 4096, "down"), (4096, 4096, 32000, "lm head 7b"),
                           (1024, 2048, 128256, "lm head 1b")):
        N, C, OC = N // S, C // S, OC // S
        shape = f"{N}x{C}x{OC} {what}"
        flops = 2.0 * N * C * OC

        def setup(kind):
            x, w = rand(N, C), rand(OC, C, scale=0.02)
            y, dx = rand(N, OC), torch.empty(N, C, device=DEV, dtype=torch.bfloat16)
            dw = torch.empty(OC, C, device=DEV, dtype=torch.bfloat16)
            if kind == 0:
                return (lambda: torch.matmul(x, w.t(), out=y)), 0, flops
            if kind == 1:
                return (lambda: torch.matmul(y, w, out=dx)), 0, flops

            def both():
                torch.matmul(y, w, out=dx)
                torch.matmul(y.t(), x, out=dw)
            return both, 0, 2 * flops

        run_case("matmul fwd", shape, lambda: setup(0))
        run_case("matmul bwd dX", shape, lambda: setup(1))
        run_case("matmul bwd dX+dW", shape, lambda: setup(2))


def bench_rmsnorm():
    # The shapes of bench_cuda_kernels: 8192 tokens at five widths, then the QK-norm rows of Gemma 3
    # (32768 rows of 256) and Qwen3 (131072 of 128).
    for n, C in ((8192, 8192), (8192, 4096), (8192, 2048), (8192, 1152), (8192, 576), (32768, 256), (131072, 128)):
        N = n // S
        shape = f"N{N} C{C}"
        nc = N * C

        def fwd():
            x, w = rand(N, C), rand(C, scale=0.1, offset=1.0)
            return (lambda: F.rms_norm(x, (C,), w, 1e-5)), nc * 2 + nc * 2 + C * 2 + N * 4, 0

        def bwd():
            x, w, dy = rand(N, C, grad=True), rand(C, scale=0.1, offset=1.0), rand(N, C)
            y = F.rms_norm(x, (C,), w, 1e-5)
            return (lambda: torch.autograd.grad(y, x, dy, retain_graph=True)), nc * 4 + nc * 4 + C * 2 + N * 4, 0

        run_case("rmsnorm fwd", shape, fwd)
        run_case("rmsnorm bwd", shape, bwd)


def rotate_half(x):
    x1, x2 = x[..., : x.shape[-1] // 2], x[..., x.shape[-1] // 2:]
    return torch.cat((-x2, x1), dim=-1)


def bench_rope():
    N, T = 8192 // S, 2048 // S
    B = N // T
    for hd in (128, 64):
        nh = 32
        shape = f"N{N} h{nh} d{hd}"
        nbytes = N * nh * hd * 2 * 2 + N * 4

        def tables():
            # cos/sin as HF's LlamaRotaryEmbedding makes them once per forward: (B, 1, T, hd), BF16.
            inv = 1.0 / (10000.0 ** (torch.arange(0, hd, 2, device=DEV, dtype=torch.float32) / hd))
            ang = torch.arange(T, device=DEV, dtype=torch.float32)[:, None] * inv[None, :]
            emb = torch.cat((ang, ang), dim=-1)
            return (emb.cos().to(torch.bfloat16)[None, None].expand(B, 1, T, hd),
                    emb.sin().to(torch.bfloat16)[None, None].expand(B, 1, T, hd))

        def fwd():
            cos, sin = tables()
            q = rand(B, T, nh, hd).transpose(1, 2)
            return (lambda: q * cos + rotate_half(q) * sin), nbytes, 0

        def bwd():
            cos, sin = tables()
            q = rand(B, T, nh, hd, grad=True)
            qt = q.transpose(1, 2)
            out = qt * cos + rotate_half(qt) * sin
            dout = torch.randn_like(out)
            return (lambda: torch.autograd.grad(out, q, dout, retain_graph=True)), nbytes, 0

        run_case("rope fwd", shape, fwd)
        run_case("rope bwd", shape, bwd)


def bench_glu():
    N = 8192 // S
    silu = F.silu
    gelu = lambda g: F.gelu(g, approximate="tanh")
    for Fd, name, act in ((11008, "swiglu", silu), (8192, "swiglu", silu), (6912, "geglu", gelu)):
        shape = f"N{N} F{Fd}"
        n = N * Fd

        def fwd(act=act):
            g, u = rand(N, Fd, scale=3.0), rand(N, Fd)
            return (lambda: act(g) * u), n * 2 * 3, 0

        def bwd(act=act):
            g, u, dh = rand(N, Fd, scale=3.0, grad=True), rand(N, Fd, grad=True), rand(N, Fd)
            h = act(g) * u
            return (lambda: torch.autograd.grad(h, (g, u), dh, retain_graph=True)), n * 2 * 5, 0

        run_case(f"{name} fwd", shape, fwd)
        run_case(f"{name} bwd", shape, bwd)


def bench_embedding():
    N = 8192 // S
    for V, C in ((32000, 4096), (128256, 2048)):
        V = V // S

        def setup():
            table = rand(V, C, scale=0.02)
            tok = torch.randint(0, V, (N,), device=DEV, dtype=torch.int32)
            return (lambda: F.embedding(tok, table)), N * C * 2 * 2 + N * 4, 0

        run_case("embedding fwd", f"N{N} V{V} C{C}", setup)

        run_case("embedding bwd", f"N{N} V{V} C{C}", embedding_bwd_setup(N, V, C, False))

        def noise_setup():
            x = rand(N, C, scale=0.02)
            m = 5.0 / (2048 * C) ** 0.5
            # transformers' neftune_post_forward_hook: output + zeros_like(output).uniform_(-m, m)
            return (lambda: x + torch.zeros_like(x).uniform_(-m, m)), N * C * 2 * 2, 0

        run_case("embedding noise", f"N{N} C{C}", noise_setup)
    # A padded batch, 16 x 4096 tokens of which 3 in 4 are the padding id 0.
    N, V = 65536 // S, 128256 // S
    run_case("embedding bwd", f"N{N} V{V} C2048 pad3/4", embedding_bwd_setup(N, V, 2048, True))


def embedding_bwd_setup(N, V, C, padded):
    def setup():
        dtable = torch.zeros(V, C, device=DEV, dtype=torch.float32)
        dout = rand(N, C, scale=0.02)
        tok = torch.randint(0, V, (N,), device=DEV, dtype=torch.int64)
        if padded:
            tok[torch.arange(N, device=DEV) % 4 != 0] = 0
        return (lambda: dtable.index_add_(0, tok, dout.float())), N * C * (2 + 4 * 2) + N * 4, 0

    return setup


def bench_crossentropy():
    for V in (49152 // S, 128256 // S):
        for n in (128, 512, 1024):
            def setup():
                logits = rand(n, V, scale=4.0, grad=True)
                tgt = torch.randint(0, V, (n,), device=DEV)
                w = torch.rand(n, device=DEV) / n

                def step():
                    nll = F.cross_entropy(logits.float(), tgt, reduction="none")
                    return torch.autograd.grad(nll, logits, w)
                return step, n * V * 2 * 2 + n * 12, 0

            run_case("crossentropy", f"n{n} V{V}", setup)


def bench_argmax():
    for V in (49152 // S, 128256 // S):
        for n in (1, 16):
            def setup():
                logits = rand(n, V, scale=4.0)
                return (lambda: torch.argmax(logits, dim=-1)), n * V * 2 + n * 4, 0

            run_case("argmax", f"S{n} V{V}", setup)


def bench_nf4():
    try:
        import bitsandbytes.functional as bnbf
    except Exception as e:  # noqa: BLE001
        print(f"| nf4 dequant        | bitsandbytes not available ({type(e).__name__}: {str(e)[:100]})", flush=True)
        return
    for R, C in ((4096, 11008), (8192 // S, 22016 // S)):
        n = R * C
        nb = (n + 63) // 64
        nb2 = (nb + 255) // 256
        shape = f"{R}x{C}"

        def setup():
            w = torch.randn(R, C, device=DEV, dtype=torch.bfloat16) * 0.02
            qw, state = bnbf.quantize_4bit(w, blocksize=64, compress_statistics=True, quant_type="nf4")
            out = torch.empty_like(w)
            nbytes = n / 2 + nb + nb2 * 4 + n * 2
            try:
                bnbf.dequantize_4bit(qw, state, out=out)  # into a preallocated output, as ours
                return (lambda: bnbf.dequantize_4bit(qw, state, out=out)), nbytes, 0
            except Exception:  # noqa: BLE001 - a backend without the out= variant
                NOTES.append(f"nf4 dequant {shape}: dequantize_4bit without out= (allocates its output)")
                return (lambda: bnbf.dequantize_4bit(qw, state)), nbytes, 0

        run_case("nf4 dequant dq", shape, setup)


def bench_optimizer_and_casts():
    n = 100_000_000 // S

    def adamw():
        p = torch.nn.Parameter(rand(n, scale=0.02, dtype=torch.float32))
        p.grad = rand(n, scale=0.001, dtype=torch.float32)
        pc = torch.empty(n, device=DEV, dtype=torch.bfloat16)
        opt = torch.optim.AdamW([p], lr=1e-4, betas=(0.9, 0.999), eps=1e-8, weight_decay=0.01,
                                fused=DEV.type == "cuda")

        def step():
            opt.step()
            pc.copy_(p.detach())
        return step, n * (4 * 4 + 4 * 3 + 2), 0

    run_case("adamw", "n100M" if S == 1 else f"n{n}", adamw)

    def adamw8bit():
        import bitsandbytes as bnb
        p = torch.nn.Parameter(rand(n, scale=0.02, dtype=torch.float32))
        p.grad = rand(n, scale=0.001, dtype=torch.float32)
        pc = torch.empty(n, device=DEV, dtype=torch.bfloat16)
        opt = bnb.optim.AdamW8bit([p], lr=1e-4, betas=(0.9, 0.999), eps=1e-8, weight_decay=0.01)

        def step():
            opt.step()
            pc.copy_(p.detach())
        return step, n * (4 * 2 + 2 + 4 + 2 + 2) + (n + 255) // 256 * 16, 0

    try:
        run_case("adamw8bit", "n100M" if S == 1 else f"n{n}", adamw8bit)
    except Exception as e:  # bitsandbytes carried as a wheel; absent, the row says so
        print(f"| adamw8bit          | bitsandbytes not available ({type(e).__name__}: {str(e)[:100]})", flush=True)

    nc = (64 << 20) // S

    def cast():
        src = rand(nc, dtype=torch.float32)
        dst = torch.empty(nc, device=DEV, dtype=torch.bfloat16)
        return (lambda: dst.copy_(src)), nc * 6, 0

    run_case("cast f32->bf16", "n64M" if S == 1 else f"n{nc}", cast)

    def sumsq():
        g = rand(n, scale=0.001, dtype=torch.float32)
        return (lambda: torch.linalg.vector_norm(g).item()), n * 4, 0

    run_case("sum_squares", "n100M" if S == 1 else f"n{n}", sumsq)


def bench_lora():
    N, C, OC, r, s = 8192 // S, 4096, 4096, 16, 2.0

    # With dropout as peft runs it: nn.Dropout writes drop(x) (kept for the backward, where dA reads
    # it) and its backward multiplies du·A by the saved mask.
    def fwd(p):
        def make():
            x, A, B, y = rand(N, C), rand(r, C, scale=0.02), rand(OC, r, scale=0.02), rand(N, OC)
            u = torch.empty(N, r, device=DEV, dtype=torch.bfloat16)

            def step():
                xd = torch.nn.functional.dropout(x, p) if p > 0 else x
                torch.matmul(xd, A.t(), out=u)
                y.addmm_(u, B.t(), alpha=s)
            return step, N * C * 2 + N * OC * 4 + N * r * 2 + r * (C + OC) * 2, 0
        return make

    def bwd(p):
        def make():
            x, A, B, dy, u = rand(N, C), rand(r, C, scale=0.02), rand(OC, r, scale=0.02), rand(N, OC), rand(N, r)
            dx = torch.zeros(N, C, device=DEV, dtype=torch.bfloat16)
            keep = torch.rand(N, C, device=DEV) >= p
            xd = x * keep / (1 - p)

            def step():
                du = torch.matmul(dy, B) * s
                dB = torch.matmul(dy.t(), u) * s
                dA = torch.matmul(du.t(), xd if p > 0 else x)
                if p > 0:
                    # What peft's autograd runs: nn.Dropout's backward is one native_dropout_backward
                    # (mask · scale in one pass), then the sum into dx; not a separate mul and div.
                    dx.add_(torch.ops.aten.native_dropout_backward(torch.matmul(du, A), keep, 1.0 / (1 - p)))
                else:
                    dx.addmm_(du, A)
                return dA, dB
            return step, N * OC * 2 + N * C * 2 + N * r * 2 + N * C * 4 + r * (C + OC) * 10, 0
        return make

    for p in (0.0, 0.05):
        shape = f"N{N} {C}x{OC} r{r}" + (f" p{p:g}" if p > 0 else "")
        run_case("lora fwd", shape, fwd(p))
        run_case("lora bwd", shape, bwd(p))


def bench_dora():
    # PEFT's DoRA on a 7B projection: get_weight_norm's torch.linalg.norm(W + s·(B A), dim=1) (B A
    # materialized), and the rescale of the projection's output and its autograd backward as eager
    # elementwise ops: y = add + (m / norm)·z; dz = (m / norm)·dy, dm = Σ_n dy·z / norm.
    N, C, OC, r, s = 8192 // S, 4096, 4096, 16, 2.0

    def norm():
        W, A, B = rand(OC, C, scale=0.02), rand(r, C, scale=0.02), rand(OC, r, scale=0.02)
        return (lambda: torch.linalg.norm(W + s * (B @ A), dim=1)), OC * C * 2 + r * C * 2 + OC * r * 2 + OC * 4, \
            2.0 * OC * C * r

    def fwd():
        z, y, m = rand(N, OC), rand(N, OC), rand(OC, scale=0.1) + 1
        n = torch.rand(OC, device=DEV) + 0.5
        return (lambda: y.add_((m / n) * z)), N * OC * 2 * 3, 0

    def bwd():
        dy, z, m = rand(N, OC), rand(N, OC), rand(OC, scale=0.1) + 1
        n = torch.rand(OC, device=DEV) + 0.5

        def step():
            dz = (m / n) * dy
            dm = (dy.float() * z.float()).sum(0) / n
            return dz, dm
        return step, N * OC * 2 * 3, 0

    run_case("dora norm", f"{C}x{OC} r{r}", norm)
    run_case("dora fwd", f"N{N} {C}x{OC} r{r}", fwd)
    run_case("dora bwd", f"N{N} {C}x{OC} r{r}", bwd)


# ---- --compare: join with bench_cuda_kernels' table ----

def parse_table(lines):
    """{(op, shape): (us, figure, unit)} from table rows '| op | shape | us | GB/s | TFLOP/s | %peak |'.
    The first row of each (op, shape) wins (run_gpu.sh's AB_OLD appends the previous build's table
    after ours, its ops tagged "old ...", so they never stand in for a row of ours)."""
    rows = {}
    for line in lines:
        cells = [c.strip() for c in line.strip().strip("|").split("|")]
        if len(cells) < 6 or cells[0] in ("op", "") or cells[0].startswith("---"):
            continue
        try:
            us = float(cells[2])
        except ValueError:
            continue
        fig, unit = (cells[4], "TFLOP/s") if cells[4] != "-" else (cells[3], "GB/s")
        rows.setdefault((cells[0], cells[1]), (us, fig, unit))
    return rows


def compare(ours_path, torch_lines):
    try:
        with open(ours_path) as f:
            ours = parse_table(f)
    except OSError as e:
        print(f"\n--compare: cannot read {ours_path}: {e}")
        return
    theirs = parse_table(torch_lines)
    print(f"\nours ({ours_path}) vs PyTorch, same GPU; speedup = torch time / our time\n")
    print("| %-18s | %-32s | %10s | %10s | %9s | %9s | %7s | %-7s |"
          % ("op", "shape", "ours us", "torch us", "ours", "torch", "speedup", "unit"))
    print("|--------------------|----------------------------------|------------|------------|"
          "-----------|-----------|---------|---------|")
    keys = list(ours) + [k for k in theirs if k not in ours]
    for k in keys:
        o, t = ours.get(k), theirs.get(k)
        unit = (o or t)[2]
        print("| %-18s | %-32s | %10s | %10s | %9s | %9s | %7s | %-7s |" % (
            k[0], k[1], "%.1f" % o[0] if o else "-", "%.1f" % t[0] if t else "-",
            o[1] if o else "-", t[1] if t else "-", "%.2fx" % (t[0] / o[0]) if o and t else "-", unit))


class Tee:
    """Keeps a copy of what is printed, for --compare."""

    def __init__(self, out):
        self.out, self.lines = out, []

    def write(self, s):
        self.lines.extend(s.splitlines())
        return self.out.write(s)

    def flush(self):
        self.out.flush()


def main():
    global ARGS, DEV, TIMER, S
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--filter", default="", help="only rows whose 'op shape' contains this (or one of these, comma-separated)")
    ap.add_argument("--compare", default="", help="bench_cuda_kernels output to join with this table")
    ap.add_argument("--peak-bw", type=float, default=0, help="GB/s for %% of peak (default: from the GPU name)")
    ap.add_argument("--peak-tflops", type=float, default=0, help="dense BF16 TFLOP/s (default: from the GPU name)")
    ap.add_argument("--sample-ms", type=float, default=20)
    ap.add_argument("--cpu-smoke", action="store_true",
                    help="no GPU: run every case on the CPU at 1/16 of the sizes (checks the script, not a benchmark)")
    ARGS = ap.parse_args()
    if torch.cuda.is_available() and not ARGS.cpu_smoke:
        DEV, S = torch.device("cuda"), 1
        name = torch.cuda.get_device_name()
    elif ARGS.cpu_smoke:
        DEV, S, name = torch.device("cpu"), 16, "cpu"
    else:
        print("no GPU: torch.cuda.is_available() is False (use --cpu-smoke to check the script on the CPU)")
        return 0
    bw, fl = gpu_peaks(name)
    ARGS.peak_bw = ARGS.peak_bw * 1e9 if ARGS.peak_bw else bw
    ARGS.peak_flops = ARGS.peak_tflops * 1e12 if ARGS.peak_tflops else fl
    TIMER = Timer(DEV, ARGS.sample_ms / 1e3)
    torch.manual_seed(0)
    tee = Tee(sys.stdout)
    with contextlib.redirect_stdout(tee):
        print(f"PyTorch {torch.__version__} on {name}, BF16, median of 5 samples of ~{ARGS.sample_ms:.0f} ms each")
        print("GB/s: our op's byte count / time; attention: causal fwd 4·B·nh·T²·hd/2 FLOP, bwd 2.5x fwd;\n"
              "matmul: 2·N·C·OC per product. %% of peak: %.0f GB/s, %.0f TFLOP/s dense BF16\n"
              % (ARGS.peak_bw / 1e9, ARGS.peak_flops / 1e12))
        print_header()
        bench_attention()
        bench_matmul()
        bench_rmsnorm()
        bench_rope()
        bench_glu()
        bench_embedding()
        bench_crossentropy()
        bench_argmax()
        bench_nf4()
        bench_optimizer_and_casts()
        bench_lora()
        bench_dora()
        if DEV.type == "cuda":
            print("\ntorch memory: peak allocated %.1f MB, peak reserved %.1f MB"
                  % (torch.cuda.max_memory_allocated() / 1e6, torch.cuda.max_memory_reserved() / 1e6))
        for note in NOTES:
            print("note:", note)
    if ARGS.compare:
        compare(ARGS.compare, tee.lines)
    return 0


if __name__ == "__main__":
    sys.exit(main())
