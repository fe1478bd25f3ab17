// CUDA kernel benchmark: every op of the CUDA backend, called through Ops on realistic shapes, timed
// and turned into achieved GB/s (memory-bound ops) or TFLOP/s (attention, matmul) and a % of the
// stated peak. bench/torch_kernels.py prints the same rows (same op names, same shape strings, same
// byte and FLOP counts) for PyTorch on the same GPU, so the two tables read side by side; its
// --compare flag joins them.
//   build/bench/bench_cuda_kernels [--filter SUBSTR] [--peak-bw GB/s] [--peak-tflops TF] [--sample-ms MS]
// Without a GPU (cuda_ops() is null) it prints "no GPU: <why>" and exits 0, so `make bench` passes anywhere.
//
// How a case is timed: two warm-up calls (lazy initialisation: cuBLAS handles, scratch buffers that
// grow on first use), then 5 samples, each `reps` back-to-back calls bracketed by ops.synchronize()
// and a host steady clock; reps is chosen so a sample lasts about --sample-ms (default 20 ms). The
// figure is the median sample divided by reps. Calls are queued asynchronously, so for kernels
// shorter than a launch (~5 us) the time is the launch rate, not the kernel.
//
// What the figures count:
// - GB/s = the bytes the op must read + write (each tensor once, in its storage type: BF16 act
//   tensors 2 bytes, FP32 tensors 4, codes 1/2) / time. Every row says its formula in `bytes_*`
//   below. Accumulating outputs (+=) are read and written.
// - Attention TFLOP/s, FlashAttention paper convention: causal forward = 4·B·nh·T²·hd / 2 (the two
//   T×T matmuls QKᵀ and PV at 2 FLOP per multiply-add, half of the square masked); backward = 2.5 × that
//   (five matmuls instead of two, recomputing QKᵀ included). With a sliding window of w keys, the
//   band's T·w − w²/2 pairs stand for T²/2.
// - Matmul TFLOP/s: 2·N·C·OC per product; forward one product, backward dX one, dX+dW two.
// - % of peak against --peak-bw (default 3350 GB/s, H100 SXM HBM3) or --peak-tflops (default 989,
//   H100 SXM dense BF16); run_gpu.sh passes the H200's 4800 GB/s when it sees one.
#include <algorithm>
#include <chrono>
#include <cmath>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <exception>
#include <functional>
#include <memory>
#include <string>
#include <utility>
#include <vector>

#include "kernels/kernels.h"
#include "model/config.h"
#include "model/util.h"

namespace {

double g_peak_bw = 3350e9;      // bytes/s
double g_peak_flops = 989e12;   // FLOP/s
double g_sample_s = 0.020;
std::string g_filter;

double now() {
    return std::chrono::duration<double>(std::chrono::steady_clock::now().time_since_epoch()).count();
}

// Median time of one call of f, in seconds (see the header for the method).
double time_op(const Ops& ops, const std::function<void()>& f) {
    f();
    ops.synchronize();
    double t0 = now();
    f();
    ops.synchronize();
    double one = std::max(now() - t0, 1e-7);
    int reps = (int)std::min(1000.0, std::max(1.0, g_sample_s / one));
    std::vector<double> samples;
    for (int s = 0; s < 5; s++) {
        ops.synchronize();
        double a = now();
        for (int i = 0; i < reps; i++) f();
        ops.synchronize();
        samples.push_back((now() - a) / reps);
    }
    std::sort(samples.begin(), samples.end());
    return samples[samples.size() / 2];
}

void print_header() {
    printf("| %-18s | %-32s | %10s | %8s | %8s | %6s |\n", "op", "shape", "us", "GB/s", "TFLOP/s", "%peak");
    printf("|--------------------|----------------------------------|------------|----------|----------|--------|\n");
}

// One table row. bytes > 0: a memory-bound op (GB/s, % of peak bandwidth); flops > 0: TFLOP/s, % of
// peak compute. The same format as torch_kernels.py.
void print_row(const char* op, const std::string& shape, double sec, double bytes, double flops) {
    char gbs[32] = "-", tfs[32] = "-", pct[32] = "-";
    if (bytes > 0) {
        snprintf(gbs, sizeof gbs, "%.0f", bytes / sec / 1e9);
        snprintf(pct, sizeof pct, "%.1f%%", 100.0 * bytes / sec / g_peak_bw);
    }
    if (flops > 0) {
        snprintf(tfs, sizeof tfs, "%.1f", flops / sec / 1e12);
        snprintf(pct, sizeof pct, "%.1f%%", 100.0 * flops / sec / g_peak_flops);
    }
    printf("| %-18s | %-32s | %10.1f | %8s | %8s | %6s |\n", op, shape.c_str(), sec * 1e6, gbs, tfs, pct);
    fflush(stdout);
}

void print_error(const char* op, const std::string& shape, const char* what) {
    printf("| %-18s | %-32s | error: %s\n", op, shape.c_str(), what);
    fflush(stdout);
}

// Device buffers with random contents for one case; all released when the case ends.
struct Buffers {
    const Ops& ops;
    std::vector<void*> live;
    uint64_t seed = 0x1234567;
    explicit Buffers(const Ops& o) : ops(o) {}
    ~Buffers() {
        for (void* p : live) ops.release(p);
    }
    uint64_t next_u64() {  // splitmix64
        uint64_t z = (seed += 0x9E3779B97F4A7C15ull);
        z = (z ^ (z >> 30)) * 0xBF58476D1CE4E5B9ull;
        z = (z ^ (z >> 27)) * 0x94D049BB133111EBull;
        return z ^ (z >> 31);
    }
    float next_uniform() { return (float)((next_u64() >> 40) * (2.0 / 16777216.0) - 1.0); }  // [-1, 1)
    void* zeros(size_t bytes) {
        void* p = ops.alloc(bytes, Mem::scratch);
        live.push_back(p);
        return p;
    }
    // Uniform in [offset - scale, offset + scale). Filled from a host chunk of at most 4M values
    // that repeats along the buffer: random enough for timing, and quick to make for 100M elements.
    std::vector<float> chunk(size_t n, float scale, float offset) {
        std::vector<float> h(std::min<size_t>(n, (size_t)1 << 22));
        for (float& x : h) x = offset + scale * next_uniform();
        return h;
    }
    act* act_rand(size_t n, float scale = 1.0f, float offset = 0.0f) {
        act* p = (act*)zeros(n * ops.act_size);
        std::vector<float> h = chunk(n, scale, offset);
        for (size_t i = 0; i < n; i += h.size()) ops.upload(ops.at(p, i), h.data(), std::min(h.size(), n - i));
        return p;
    }
    act* act_zeros(size_t n) { return (act*)zeros(n * ops.act_size); }
    float* f32_rand(size_t n, float scale = 1.0f, float offset = 0.0f) {
        float* p = (float*)zeros(n * 4);
        std::vector<float> h = chunk(n, scale, offset);
        for (size_t i = 0; i < n; i += h.size())
            ops.to_device(p + i, h.data(), std::min(h.size(), n - i) * 4);
        return p;
    }
    float* f32_zeros(size_t n) { return (float*)zeros(n * 4); }
    template <class T> T* ints(size_t n, uint64_t mod) {  // uniform in [0, mod)
        return ints(ints_host<T>(n, mod));
    }
    template <class T> std::vector<T> ints_host(size_t n, uint64_t mod) {
        std::vector<T> h(n);
        for (T& x : h) x = (T)(next_u64() % mod);
        return h;
    }
    template <class T> T* ints(const std::vector<T>& h) {
        T* p = (T*)zeros(h.size() * sizeof(T));
        ops.to_device(p, h.data(), h.size() * sizeof(T));
        return p;
    }
};

// Runs one case unless --filter excludes it: `setup` allocates and returns the call to time plus
// its byte and FLOP counts. Errors (an op not implemented yet, out of memory) print a row and the
// benchmark goes on with the next case.
struct Case {
    std::function<void()> call;
    double bytes = 0, flops = 0;
};
void run_case(const Ops& ops, const char* op, const std::string& shape, const std::function<Case(Buffers&)>& setup) {
    std::string key = std::string(op) + " " + shape;
    if (!g_filter.empty() && key.find(g_filter) == std::string::npos) return;
    try {
        Buffers buf(ops);
        Case c = setup(buf);
        if (!c.call) {
            print_error(op, shape, "not implemented (null in Ops)");
            return;
        }
        double t = time_op(ops, c.call);
        print_row(op, shape, t, c.bytes, c.flops);
    } catch (const std::exception& e) {
        print_error(op, shape, e.what());
    }
}

// ---- the cases ----

void bench_attention(const Ops& ops) {
    // 16384 tokens per call (B = 16384/T), as in the FlashAttention benchmarks; MHA at dim 2048
    // (32 heads of 64, 16 heads of 128) and GQA with 8 KV heads (llama-3.2-1b: 32/8 of 64;
    // llama-3.1-8b: 32/8 of 128) and Gemma 3's head dim 256 (gemma-3-4b: 8/4). All rows one segment
    // (seg = 0): plain causal. Then sliding windows (Gemma 3's local layers; w512 in the shape): their
    // FLOPs count the band of T·w − w²/2 query-key pairs instead of T²/2, so their TFLOP/s compare
    // with the causal rows', and their time shows what the window saves.
    auto attention = [&](int T, int nh, int nkv, int hd, int window) {
        int B = 16384 / T;
        std::string shape = strf("B%d T%d h%d/%d d%d", B, T, nh, nkv, hd) + (window ? strf(" w%d", window) : "");
        double pairs = window ? (double)T * window - (double)window * window / 2 : (double)T * T / 2;
        double fwd_flops = 4.0 * B * nh * pairs * hd;
        float scale = 1.0f / std::sqrt((float)hd);
        size_t nq = (size_t)B * T * nh * hd, nk = (size_t)B * T * nkv * hd;
        run_case(ops, "attn fwd", shape, [&](Buffers& b) {
            act *q = b.act_rand(nq), *k = b.act_rand(nk), *v = b.act_rand(nk), *out = b.act_zeros(nq);
            float* lse = b.f32_zeros((size_t)B * T * nh);
            int32_t* seg = (int32_t*)b.zeros((size_t)B * T * 4);
            Case c;
            if (ops.attention_forward)
                c.call = [=, &ops] { ops.attention_forward(out, lse, q, k, v, seg, B, T, nh, nkv, hd, scale, window); };
            c.flops = fwd_flops;
            return c;
        });
        run_case(ops, "attn bwd", shape, [&](Buffers& b) {
            act *q = b.act_rand(nq), *k = b.act_rand(nk), *v = b.act_rand(nk), *out = b.act_zeros(nq);
            act *dout = b.act_rand(nq), *dq = b.act_zeros(nq), *dk = b.act_zeros(nk), *dv = b.act_zeros(nk);
            float* lse = b.f32_zeros((size_t)B * T * nh);
            int32_t* seg = (int32_t*)b.zeros((size_t)B * T * 4);
            Case c;
            if (ops.attention_forward && ops.attention_backward) {
                // out and lse for the backward
                ops.attention_forward(out, lse, q, k, v, seg, B, T, nh, nkv, hd, scale, window);
                c.call = [=, &ops] {
                    ops.attention_backward(dq, dk, dv, dout, out, lse, q, k, v, seg, B, T, nh, nkv, hd, scale, window);
                };
            }
            c.flops = 2.5 * fwd_flops;
            return c;
        });
    };
    struct Shape { int hd, nh, nkv; };
    const Shape shapes[] = {{64, 32, 32}, {64, 32, 8}, {128, 16, 16}, {128, 32, 8}, {256, 8, 4}};
    for (const Shape& s : shapes)
        for (int T : {2048, 4096}) attention(T, s.nh, s.nkv, s.hd, 0);
    attention(4096, 32, 8, 128, 512);
    attention(4096, 8, 4, 256, 512);
}

void bench_matmul(const Ops& ops) {
    // y[N,OC] = x[N,C] · W[OC,C]ᵀ. 4096³, then the llama-2-7b layer shapes at N = 4096 tokens
    // (q/k/v/o are the 4096³ row), the llama-2-7b LM head and a 1024-row chunk of llama-3.2-1b's.
    // Backward dX alone is the LoRA case (frozen base weights); dX+dW is full fine-tuning (dW FP32 +=).
    struct Shape { int N, C, OC; const char* what; };
    const Shape shapes[] = {{4096, 4096, 4096, "q,k,v,o"},   {4096, 4096, 11008, "gate,up"},
                            {4096, 11008, 4096, "down"},      {4096, 4096, 32000, "lm head 7b"},
                            {1024, 2048, 128256, "lm head 1b"}};
    for (const Shape& s : shapes) {
        int N = s.N, C = s.C, OC = s.OC;
        std::string shape = strf("%dx%dx%d %s", N, C, OC, s.what);
        double flops = 2.0 * N * C * OC;
        auto setup = [&](Buffers& b, int kind) {
            act *x = b.act_rand((size_t)N * C), *w = b.act_rand((size_t)OC * C, 0.02f);
            act *y = b.act_rand((size_t)N * OC), *dx = b.act_zeros((size_t)N * C);
            float* dw = kind == 2 ? b.f32_zeros((size_t)OC * C) : nullptr;
            Case c;
            if (kind == 0 && ops.matmul_forward)
                c.call = [=, &ops] { ops.matmul_forward(y, x, w, nullptr, N, C, OC, nullptr); };
            if (kind > 0 && ops.matmul_backward)
                c.call = [=, &ops] { ops.matmul_backward(dx, dw, nullptr, y, x, w, N, C, OC, true); };
            c.flops = (kind == 2 ? 2 : 1) * flops;
            return c;
        };
        run_case(ops, "matmul fwd", shape, [&](Buffers& b) { return setup(b, 0); });
        run_case(ops, "matmul bwd dX", shape, [&](Buffers& b) { return setup(b, 1); });
        run_case(ops, "matmul bwd dX+dW", shape, [&](Buffers& b) { return setup(b, 2); });
    }
}

void bench_rmsnorm(const Ops& ops) {
    // N = 8192 tokens (batch 4 × seq 2048) at the widths of llama-65b/70b, llama-2-7b, llama-3.2-1b,
    // gemma3-1b and smollm2-135m; then the per-head QK norms of Gemma 3 1B (4 heads of 256: rows of
    // 256, four a token) and Qwen3 (16 heads of 128), where rows are short and many.
    // The backward passes dw = null (frozen norm weights: the LoRA/QLoRA case).
    const std::pair<int, int> shapes[] = {{8192, 8192}, {8192, 4096}, {8192, 2048}, {8192, 1152},
                                          {8192, 576},  {32768, 256}, {131072, 128}};
    for (auto [N, C] : shapes) {
        std::string shape = strf("N%d C%d", N, C);
        double nc = (double)N * C;
        run_case(ops, "rmsnorm fwd", shape, [&](Buffers& b) {
            act *x = b.act_rand((size_t)N * C), *w = b.act_rand(C, 0.1f, 1.0f), *out = b.act_zeros((size_t)N * C);
            float* rstd = b.f32_zeros(N);
            Case c;
            if (ops.rmsnorm_forward) c.call = [=, &ops] { ops.rmsnorm_forward(out, rstd, x, w, N, C, 1e-5f, nullptr); };
            c.bytes = nc * 2 + nc * 2 + C * 2 + N * 4;  // read x, write out, read w, write rstd
            return c;
        });
        run_case(ops, "rmsnorm bwd", shape, [&](Buffers& b) {
            act *x = b.act_rand((size_t)N * C), *w = b.act_rand(C, 0.1f, 1.0f), *dout = b.act_rand((size_t)N * C);
            act* dx = b.act_zeros((size_t)N * C);
            float* rstd = b.f32_rand(N, 0.1f, 1.0f);
            Case c;
            if (ops.rmsnorm_backward) c.call = [=, &ops] { ops.rmsnorm_backward(dx, nullptr, dout, x, w, rstd, N, C); };
            c.bytes = nc * 2 * 2 + nc * 2 * 2 + C * 2 + N * 4;  // read dout, x; dx += (read + write); w; rstd
            return c;
        });
    }
}

void bench_rope(const Ops& ops) {
    // In place on q[N, nh, hd], N = 8192 tokens: llama-2-7b (32 heads of 128), llama-3.2-1b (32 of 64).
    const int N = 8192;
    for (int hd : {128, 64}) {
        int nh = 32;
        std::string shape = strf("N%d h%d d%d", N, nh, hd);
        double bytes = (double)N * nh * hd * 2 * 2 + N * 4.0;  // read + write x, read pos
        for (int bwd = 0; bwd < 2; bwd++)
            run_case(ops, bwd ? "rope bwd" : "rope fwd", shape, [&](Buffers& b) {
                act* x = b.act_rand((size_t)N * nh * hd);
                std::vector<int32_t> pos(N);
                for (int i = 0; i < N; i++) pos[i] = i % 2048;
                int32_t* dpos = (int32_t*)b.zeros(N * 4);
                ops.to_device(dpos, pos.data(), N * 4);
                Case c;
                auto fn = bwd ? ops.rope_backward : ops.rope_forward;
                const std::vector<float> f = rope_inv_freq(10000.0f, hd);
                if (fn) c.call = [=] { fn(x, dpos, N, nh, hd, f.data()); };
                c.bytes = bytes;
                return c;
            });
    }
}

void bench_glu(const Ops& ops) {
    // h = act(gate)·up over N = 8192 tokens × ffn: SiLU ("swiglu") at llama-2-7b (11008) and
    // llama-3.2-1b (8192), GELU-tanh ("geglu") at gemma3-1b (6912).
    const int N = 8192;
    struct Shape { int F, act; };
    for (Shape s : {Shape{11008, GLU_SILU}, Shape{8192, GLU_SILU}, Shape{6912, GLU_GELU_TANH}}) {
        const int F = s.F, act_kind = s.act;
        std::string shape = strf("N%d F%d", N, F), name = act_kind == GLU_SILU ? "swiglu" : "geglu";
        size_t n = (size_t)N * F;
        run_case(ops, (name + " fwd").c_str(), shape, [&](Buffers& b) {
            act *g = b.act_rand(n, 3.0f), *u = b.act_rand(n), *h = b.act_zeros(n);
            Case c;
            if (ops.glu_forward) c.call = [=, &ops] { ops.glu_forward(h, g, u, n, act_kind); };
            c.bytes = n * 2.0 * 3;  // read gate, up; write h
            return c;
        });
        run_case(ops, (name + " bwd").c_str(), shape, [&](Buffers& b) {
            act *g = b.act_rand(n, 3.0f), *u = b.act_rand(n), *dh = b.act_rand(n);
            act *dg = b.act_zeros(n), *du = b.act_zeros(n);
            Case c;
            if (ops.glu_backward) c.call = [=, &ops] { ops.glu_backward(dg, du, dh, g, u, n, act_kind); };
            c.bytes = n * 2.0 * 5;  // read dh, gate, up; write dgate, dup
            return c;
        });
    }
}

void embedding_backward_case(const Ops& ops, const std::string& shape, int N, int V, int C, bool padded) {
    run_case(ops, "embedding bwd", shape, [&](Buffers& b) {
        act* dout = b.act_rand((size_t)N * C, 0.02f);
        float* dtable = b.f32_zeros((size_t)V * C);
        std::vector<int32_t> ids = b.ints_host<int32_t>(N, V);
        if (padded)
            for (int n = 0; n < N; n++)
                if (n % 4) ids[n] = 0;
        int32_t* tok = b.ints(ids);
        Case c;
        if (ops.embedding_backward) c.call = [=, &ops] { ops.embedding_backward(dtable, dout, tok, N, C, 1.0f); };
        c.bytes = (double)N * C * (2 + 4 * 2) + N * 4.0;  // read dout, read and write N FP32 rows, read tokens
        return c;
    });
}

void bench_embedding(const Ops& ops) {
    // Gather N = 8192 rows: llama-2-7b (32000 × 4096), llama-3.2-1b (128256 × 2048).
    const int N = 8192;
    struct Shape { int V, C; };
    for (Shape s : {Shape{32000, 4096}, Shape{128256, 2048}}) {
        int V = s.V, C = s.C;
        run_case(ops, "embedding fwd", strf("N%d V%d C%d", N, V, C), [&](Buffers& b) {
            act *table = b.act_rand((size_t)V * C, 0.02f), *out = b.act_zeros((size_t)N * C);
            int32_t* tok = b.ints<int32_t>(N, V);
            Case c;
            if (ops.embedding_forward) c.call = [=, &ops] { ops.embedding_forward(out, tok, table, N, C, 1.0f); };
            c.bytes = (double)N * C * 2 * 2 + N * 4.0;  // read the N rows, write out, read tokens
            return c;
        });
        // The backward (full fine-tuning only: LoRA freezes the table): dtable[tok[n]] += dout[n] in
        // FP32, deterministic (a sort of the positions by id, then each id's rows summed in order).
        embedding_backward_case(ops, strf("N%d V%d C%d", N, V, C), N, V, C, false);
        // NEFTune's noise on the gathered rows, in place (--neftune-alpha; magnitude 5/sqrt(2048·C)).
        run_case(ops, "embedding noise", strf("N%d C%d", N, C), [&](Buffers& b) {
            act* x = b.act_rand((size_t)N * C, 0.02f);
            const size_t n = (size_t)N * C;
            const float magnitude = 5.0f / std::sqrt(2048.0f * C);
            Case c;
            if (ops.embedding_noise) c.call = [=, &ops] { ops.embedding_noise(x, n, magnitude, 42); };
            c.bytes = n * 2.0 * 2;  // read and write x
            return c;
        });
    }
    // A padded batch, 16 × 4096 tokens of which 3 in 4 are the padding id 0: the longest runs the
    // sort meets (49,152 rows of one id).
    embedding_backward_case(ops, "N65536 V128256 C2048 pad3/4", 65536, 128256, 2048, true);
}

void bench_crossentropy(const Ops& ops) {
    // Fused forward + backward on a chunk of n rows of logits: reads the logits once, overwrites them
    // with dloss/dlogits (grad_scale = 1/n). Vocabularies of smollm2 (49152) and llama-3 (128256).
    for (int V : {49152, 128256})
        for (int n : {128, 512, 1024}) {
            run_case(ops, "crossentropy", strf("n%d V%d", n, V), [&](Buffers& b) {
                act* logits = b.act_rand((size_t)n * V, 4.0f);
                int32_t* tgt = b.ints<int32_t>(n, V);
                float* w = b.f32_rand(n, 0.0f, 1.0f);
                float* nll = b.f32_zeros(n);
                Case c;
                if (ops.crossentropy_forward_backward)
                    c.call = [=, &ops] { ops.crossentropy_forward_backward(logits, nll, tgt, w, n, V, 1.0f / n); };
                c.bytes = (double)n * V * 2 * 2 + n * 12.0;  // read + write logits; targets, weights, nll
                return c;
            });
        }
}

void bench_argmax(const Ops& ops) {
    // Greedy decoding's pick over a batch of S sequences' logits (one step of ./generate): reads
    // the logits once, writes S ids.
    for (int V : {49152, 128256})
        for (int S : {1, 16}) {
            run_case(ops, "argmax", strf("S%d V%d", S, V), [&](Buffers& b) {
                act* logits = b.act_rand((size_t)S * V, 4.0f);
                int32_t* idx = b.ints<int32_t>(S, V);
                Case c;
                if (ops.argmax_rows) c.call = [=, &ops] { ops.argmax_rows(idx, logits, S, V, V); };
                c.bytes = (double)S * V * 2 + S * 4.0;
                return c;
            });
        }
}

void bench_nf4(const Ops& ops) {
    // Dequantize a whole NF4 weight to BF16 as QLoRA stores it (double quantization: the absmax are
    // 8-bit codes in blocks of 256 plus an offset, decoded on the way): an MLP matrix of llama-2-7b
    // (4096 × 11008) and of llama-65b (8192 × 22016). Bytes: codes n/2, absmax codes n/64, their
    // scales n/64/256·4, output n·2.
    struct Shape { int R, C; };
    for (Shape s : {Shape{4096, 11008}, Shape{8192, 22016}}) {
        size_t n = (size_t)s.R * s.C, nb = (n + 63) / 64, nb2 = (nb + 255) / 256;
        run_case(ops, "nf4 dequant dq", strf("%dx%d", s.R, s.C), [&](Buffers& b) {
            uint8_t* codes = b.ints<uint8_t>((n + 1) / 2, 256);
            uint8_t* q8 = b.ints<uint8_t>(nb, 256);
            float* qscale = b.f32_rand(nb2, 0.001f, 0.002f);
            act* w = b.act_zeros(n);
            Case c;
            if (ops.nf4_dequantize) c.call = [=, &ops] { ops.nf4_dequantize(w, codes, q8, qscale, 0.02f, n); };
            c.bytes = n / 2.0 + nb + nb2 * 4.0 + n * 2.0;
            return c;
        });
    }
}

void bench_optimizer_and_casts(const Ops& ops) {
    const size_t n = 100000000;  // 100M parameters
    run_case(ops, "adamw", "n100M", [&](Buffers& b) {
        float *p = b.f32_rand(n, 0.02f), *g = b.f32_rand(n, 0.001f), *m = b.f32_zeros(n), *v = b.f32_zeros(n);
        act* pc = b.act_zeros(n);
        Case c;
        // The step count grows call after call, as in training (bias correction changes).
        auto t = std::make_shared<int>(0);
        if (ops.adamw_update)
            c.call = [=, &ops] { ops.adamw_update(p, pc, g, m, v, n, 1e-4f, 0.9f, 0.999f, 1e-8f, 0.01f, 1.0f, ++*t, 0); };
        c.bytes = n * (4.0 * 4 + 4.0 * 3 + 2.0);  // read p, g, m, v; write p, m, v (FP32) and p (BF16)
        return c;
    });
    // --optimizer adamw8bit: the moments as 8-bit codes with an absmax per 256 (one tensor of 100M)
    run_case(ops, "adamw8bit", "n100M", [&](Buffers& b) {
        float *p = b.f32_rand(n, 0.02f), *g = b.f32_rand(n, 0.001f);
        const size_t blocks = (n + kAdam8Block - 1) / kAdam8Block;
        float *am = b.f32_zeros(blocks), *av = b.f32_zeros(blocks);
        uint8_t *m = (uint8_t*)b.zeros(n), *v = (uint8_t*)b.zeros(n);
        act* pc = b.act_zeros(n);
        Case c;
        auto t = std::make_shared<int>(0);
        if (ops.adamw8bit_update)
            c.call = [=, &ops] {
                ops.adamw8bit_update(p, pc, g, m, v, am, av, n, 1e-4f, 0.9f, 0.999f, 1e-8f, 0.01f, 1.0f, ++*t, 0);
            };
        c.bytes = n * (4.0 * 2 + 1.0 * 2 + 4.0 + 1.0 * 2 + 2.0) + blocks * 16.0;  // read p, g, m, v; write p, m, v, p (BF16); absmax
        return c;
    });
    const size_t nc = 64 << 20;  // 64M elements
    run_case(ops, "cast f32->bf16", "n64M", [&](Buffers& b) {
        float* src = b.f32_rand(nc);
        act* dst = b.act_zeros(nc);
        Case c;
        if (ops.cast) c.call = [=, &ops] { ops.cast(dst, src, nc); };
        c.bytes = nc * 6.0;  // read FP32, write BF16
        return c;
    });
    run_case(ops, "sum_squares", "n100M", [&](Buffers& b) {
        float* g = b.f32_rand(n, 0.001f);
        Case c;
        // Returns a double to the host: each call includes its device-to-host copy and wait.
        if (ops.sum_squares) c.call = [=, &ops] { (void)ops.sum_squares(g, n); };
        c.bytes = n * 4.0;
        return c;
    });
}

void bench_lora(const Ops& ops) {
    // The adapter path of a group of G 4096 → 4096 projections reading the same x (G = 3: q, k, v of
    // a 7B layer), r = 16, N = 8192 tokens, without dropout and with ./train's default 0.05.
    // Memory-bound: x is read once, each y read and written (+=), each dy read, dx written once and
    // read (+=); A, B, u are small. The bytes are the same with dropout (its masks are hashed, not read).
    const int N = 8192, C = 4096, OC = 4096, r = 16;
    for (float p : {0.0f, 0.05f})
    for (int G : {1, 3}) {
        std::string shape = strf("N%d %dx%d r%d", N, C, OC, r) + (G > 1 ? strf(" x%d", G) : "") +
                            (p > 0 ? strf(" p%g", p) : "");
        run_case(ops, "lora fwd", shape, [&](Buffers& b) {
            act* x = b.act_rand((size_t)N * C);
            act* u = b.act_zeros((size_t)N * G * r);
            std::vector<LoraProj<act>> proj(G);
            for (LoraProj<act>& p : proj) {
                act* y = b.act_rand((size_t)N * OC);
                p = {b.act_rand((size_t)r * C, 0.02f), b.act_rand((size_t)OC * r, 0.02f), OC, 1, y, y, nullptr, nullptr,
                     nullptr};
            }
            Case c;
            if (ops.lora_forward) c.call = [=, &ops] { ops.lora_forward(proj.data(), G, u, x, N, C, r, 2.0f, p); };
            c.bytes = (double)N * C * 2 + G * ((double)N * OC * 2 * 2 + (double)N * r * 2 + (double)r * (C + OC) * 2);
            return c;
        });
        run_case(ops, "lora bwd", shape, [&](Buffers& b) {
            act *x = b.act_rand((size_t)N * C), *u = b.act_rand((size_t)N * G * r), *dx = b.act_zeros((size_t)N * C);
            std::vector<LoraProj<act>> proj(G);
            for (LoraProj<act>& p : proj)
                p = {b.act_rand((size_t)r * C, 0.02f), b.act_rand((size_t)OC * r, 0.02f), OC, 1, nullptr, nullptr,
                     b.act_rand((size_t)N * OC), b.f32_zeros((size_t)r * C), b.f32_zeros((size_t)OC * r)};
            Case c;
            if (ops.lora_backward)
                c.call = [=, &ops] { ops.lora_backward(proj.data(), G, dx, x, u, N, C, r, 2.0f, p, true); };
            // read each dy, x and u once; dx += (read + write); A, B read; dA, dB (FP32 +=) read + write
            c.bytes = G * ((double)N * OC * 2 + (double)N * r * 2 + (double)r * (C + OC) * (2 + 8)) +
                      (double)N * C * 2 + (double)N * C * 2 * 2;
            return c;
        });
    }
}

void bench_dora(const Ops& ops) {
    // DoRA's ops at a 7B projection (4096 → 4096, r 16) over N = 8192 tokens. The norms read W
    // (OC·C) and A (r·C, from cache) and do OC·C·r multiply-adds; the rescale and its backward are
    // memory-bound passes over [N, OC].
    const int N = 8192, C = 4096, OC = 4096, r = 16;
    const std::string shape = strf("N%d %dx%d r%d", N, C, OC, r);
    run_case(ops, "dora norm", strf("%dx%d r%d", C, OC, r), [&](Buffers& b) {
        act *w = b.act_rand((size_t)OC * C, 0.02f), *A = b.act_rand((size_t)r * C, 0.02f), *B = b.act_rand((size_t)OC * r, 0.02f);
        float* norm = b.f32_zeros(OC);
        Case c;
        if (ops.dora_norm) c.call = [=, &ops] { ops.dora_norm(norm, w, A, B, OC, C, r, 2.0f); };
        c.bytes = (double)OC * C * 2 + (double)r * C * 2 + (double)OC * r * 2 + OC * 4.0;
        c.flops = 2.0 * OC * C * r;
        return c;
    });
    const size_t n = (size_t)N * OC;
    run_case(ops, "dora fwd", shape, [&](Buffers& b) {
        act *z = b.act_rand(n), *m = b.act_rand(OC, 0.1f, 1.0f), *y = b.act_rand(n);
        float* norm = b.f32_rand(OC, 0.1f, 1.0f);
        Case c;
        if (ops.dora_forward) c.call = [=, &ops] { ops.dora_forward(y, z, m, norm, nullptr, y, N, OC); };
        c.bytes = n * 2.0 * 3;  // read z and the residual (add), write y
        return c;
    });
    run_case(ops, "dora bwd", shape, [&](Buffers& b) {
        act *dy = b.act_rand(n), *z = b.act_rand(n), *dz = b.act_zeros(n), *m = b.act_rand(OC, 0.1f, 1.0f);
        float *norm = b.f32_rand(OC, 0.1f, 1.0f), *dm = b.f32_zeros(OC);
        Case c;
        if (ops.dora_backward) c.call = [=, &ops] { ops.dora_backward(dz, dm, dy, z, m, norm, N, OC); };
        c.bytes = n * 2.0 * 3;  // read dy, z; write dz
        return c;
    });
}

}  // namespace

int main(int argc, char** argv) {
    for (int i = 1; i < argc; i++) {
        auto val = [&](const char* flag) -> const char* {
            if (i + 1 >= argc) {
                fprintf(stderr, "error: %s needs a value\n", flag);
                exit(1);
            }
            return argv[++i];
        };
        if (!strcmp(argv[i], "--filter")) g_filter = val("--filter");
        else if (!strcmp(argv[i], "--peak-bw")) g_peak_bw = atof(val("--peak-bw")) * 1e9;
        else if (!strcmp(argv[i], "--peak-tflops")) g_peak_flops = atof(val("--peak-tflops")) * 1e12;
        else if (!strcmp(argv[i], "--sample-ms")) g_sample_s = atof(val("--sample-ms")) / 1e3;
        else {
            fprintf(stderr,
                    "error: unknown flag '%s' (use --filter SUBSTR, --peak-bw GB/s, --peak-tflops TF, --sample-ms MS)\n",
                    argv[i]);
            return 1;
        }
    }
    const char* why = nullptr;
    const Ops* cuda = cuda_ops(&why);
    if (!cuda) {
        printf("no GPU: %s\n", why ? why : "cuda_ops() returned null");
        return 0;
    }
    const Ops& ops = *cuda;
    printf("CUDA kernels through Ops (%s, %zu-byte storage), median of 5 samples of ~%.0f ms each\n", ops.name,
           ops.act_size, g_sample_s * 1e3);
    printf("GB/s: bytes the op must read + write / time; attention: causal fwd 4·B·nh·T²·hd/2 FLOP, bwd 2.5x fwd;\n"
           "matmul: 2·N·C·OC per product. %% of peak: %.0f GB/s, %.0f TFLOP/s dense BF16\n\n",
           g_peak_bw / 1e9, g_peak_flops / 1e12);
    print_header();
    bench_attention(ops);
    bench_matmul(ops);
    bench_rmsnorm(ops);
    bench_rope(ops);
    bench_glu(ops);
    bench_embedding(ops);
    bench_crossentropy(ops);
    bench_argmax(ops);
    bench_nf4(ops);
    bench_optimizer_and_casts(ops);
    bench_lora(ops);
    bench_dora(ops);

    MemStats m = ops.mem_stats();
    printf("\nbackend memory: peak %.1f MB all categories together (", m.peak_total / 1e6);
    for (int c = 0; c < (int)Mem::count; c++)
        printf("%s%s %.1f", c ? ", " : "", mem_name((Mem)c), m.peak[c] / 1e6);
    printf(" MB peak each); live now %.1f MB\n", m.total() / 1e6);
    return 0;
}
