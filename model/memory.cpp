#include "model/memory.h"

#include <algorithm>

#include "model/model.h"
#include "model/trainer.h"
#include "model/util.h"
#include "model/weights.h"

OptimKind parse_optim_kind(const std::string& s) {
    if (s == "adamw" || s == "adam") return OptimKind::AdamW;
    if (s == "adamw8bit") return OptimKind::AdamW8bit;
    if (s == "sgd") return OptimKind::SGD;
    if (s == "momentum") return OptimKind::Momentum;
    fail("--optimizer %s: use adamw, adamw8bit, sgd or momentum", s.c_str());
}

WeightFormat parse_weight_format(const std::string& s) {
    if (s == "fp32") return WeightFormat::FP32;
    if (s == "bf16") return WeightFormat::BF16;
    if (s == "nf4") return WeightFormat::NF4;
    if (s == "nf4-dq") return WeightFormat::NF4_DQ;
    fail("--precision %s: use fp32, bf16, nf4 or nf4-dq", s.c_str());
}

Backend parse_backend(const std::string& s) {
    if (s == "cpu") return Backend::Cpu;
    if (s == "cuda") return Backend::Cuda;
    fail("--device %s: use cpu or cuda", s.c_str());
}

const char* optim_kind_name(OptimKind o) {
    const char* names[] = {"AdamW", "SGD", "momentum", "AdamW 8-bit"};
    return names[(int)o];
}
const char* weight_format_name(WeightFormat w) {
    const char* names[] = {"FP32", "BF16", "NF4", "NF4+DQ"};
    return names[(int)w];
}
int optim_states(OptimKind o) { return o == OptimKind::AdamW || o == OptimKind::AdamW8bit ? 2 : o == OptimKind::Momentum ? 1 : 0; }

void memory_set_backend(MemorySpec& s, Backend b) {
    s.backend = b;
    bool quant = s.method == Method::Qlora;
    if (b == Backend::Cpu) {
        s.base = quant ? WeightFormat::NF4_DQ : WeightFormat::FP32;
        s.compute_bytes = 4;
        s.master_bytes = 0;  // the FP32 parameters are updated in place
    } else {
        s.base = quant ? WeightFormat::NF4_DQ : WeightFormat::BF16;
        s.compute_bytes = 2;
        s.master_bytes = 4;
    }
    s.grad_bytes = 4;
    s.state_bytes = 4;
}

void memory_set_uniform_bytes(MemorySpec& s, int bytes) {
    if (bytes != 2 && bytes != 4) fail("--bytes %d: use 2 (16-bit) or 4 (FP32)", bytes);
    if (s.method == Method::Qlora) fail("--bytes: qlora keeps its base in NF4; use --precision to change it");
    s.base = bytes == 2 ? WeightFormat::BF16 : WeightFormat::FP32;
    s.compute_bytes = s.grad_bytes = s.state_bytes = bytes;
    s.master_bytes = 0;
}

MemorySpec qlora_65b_spec(bool paper) {
    MemorySpec s;
    s.cfg = config_preset("llama-65b");
    s.method = Method::Qlora;
    memory_set_backend(s, Backend::Cuda);
    s.lora.rank = 64;
    s.lora.targets = lora_parse_targets("all");
    s.B = 1;
    s.T = 512;
    s.recompute = true;
    if (paper) {
        s.master_bytes = 0;
        s.grad_bytes = 2;
    }
    return s;
}

MemorySpec memory_spec(const Model& m, const TrainConfig& cfg, int T, Backend backend) {
    MemorySpec s;
    s.cfg = m.cfg;
    s.method = m.method;
    s.optimizer = cfg.optim.eight_bit ? OptimKind::AdamW8bit : OptimKind::AdamW;
    s.lora = m.lora;
    memory_set_backend(s, backend);
    s.B = cfg.batch.batch_size;
    s.T = T;
    s.recompute = cfg.recompute;
    s.offload_optimizer = cfg.offload_optimizer && backend == Backend::Cuda;
    return s;
}

MemorySpec trainer_memory_spec(const Trainer& t) {
    return memory_spec(t.model, t.cfg, t.ws.max_T, t.ops && !t.ops->host ? Backend::Cuda : Backend::Cpu);
}

std::vector<MemoryFix> memory_fixes(const MemorySpec& s, int grad_accum, size_t capacity, bool stochastic_rounding) {
    std::vector<MemoryFix> fixes;
    // Lists the change when its estimate fits; says whether it did.
    auto try_fix = [&](const MemorySpec& x, std::string flags) {
        const size_t total = memory_estimate(x).total();
        if (total <= capacity) fixes.push_back({std::move(flags), total});
        return total <= capacity;
    };
    auto batch_flags = [&](int b) { return strf("--batch-size %d --grad-accum %d", b, grad_accum * (s.B / b)); };
    // The largest micro-batch under B that divides B (more accumulation keeps the examples per
    // step) and fits, listed with `prefix`; false when none does.
    auto try_smaller_batch = [&](MemorySpec x, const std::string& prefix) {
        for (int b = s.B - 1; b >= 1; b--) {
            if (s.B % b) continue;
            x.B = b;
            if (try_fix(x, prefix + batch_flags(b))) return true;
        }
        return false;
    };
    MemorySpec r = s;
    r.recompute = true;
    const bool recompute_fits = !s.recompute && try_fix(r, "--recompute");
    if (!try_smaller_batch(s, "") && !s.recompute && !recompute_fits) try_smaller_batch(r, "--recompute ");
    if (s.method != Method::Qlora && s.params == 0) {
        MemorySpec q = s;  // full → lora (the adapters' defaults), lora → qlora
        q.method = s.method == Method::Full ? Method::Lora : Method::Qlora;
        memory_set_backend(q, s.backend);
        try_fix(q, s.method == Method::Full ? "--method lora" : "--method qlora");
    }
    if (s.optimizer == OptimKind::AdamW) {
        MemorySpec e = s;
        e.optimizer = OptimKind::AdamW8bit;
        try_fix(e, "--optimizer adamw8bit");
    }
    if (s.backend == Backend::Cuda && !s.offload_optimizer) {
        MemorySpec o = s;
        o.offload_optimizer = true;
        // The host's AdamW rounds to nearest: trainer_init refuses --stochastic-rounding beside it.
        try_fix(o, stochastic_rounding ? "--offload-optimizer without --stochastic-rounding" : "--offload-optimizer");
    }
    return fixes;
}

size_t memory_available(const Ops& ops) {
    if (!ops.host) {
        const MemStats st = ops.mem_stats();
        return st.device_total - st.device_used;
    }
    // The kernel's estimate of what can be allocated without swapping (page cache it can drop
    // included); unknown (0) where there is no /proc/meminfo.
    FILE* f = fopen("/proc/meminfo", "r");
    if (!f) return 0;
    char line[256];
    size_t kb = 0;
    while (fgets(line, sizeof line, f))
        if (sscanf(line, "MemAvailable: %zu kB", &kb) == 1) break;
    fclose(f);
    return kb * 1024;
}

size_t nf4_bytes(size_t n, bool double_quant) {
    size_t blocks = (n + 63) / 64;
    size_t codes = (n + 1) / 2;
    if (!double_quant) return codes + blocks * 4;
    return codes + blocks + (blocks + 255) / 256 * 4 + 4;
}

int64_t lora_params(int64_t in, int64_t out, int r) { return (int64_t)r * (in + out); }

std::string format_bytes(double b) {
    const char* dec[] = {"B", "kB", "MB", "GB", "TB"};
    const char* bin[] = {"B", "KiB", "MiB", "GiB", "TiB"};
    int i = 0, j = 0;
    double d = b, k = b;
    while (d >= 1000 && i < 4) d /= 1000, i++;
    while (k >= 1024 && j < 4) k /= 1024, j++;
    char buf[64];
    snprintf(buf, sizeof buf, "%.2f %s (%.2f %s)", d, dec[i], k, bin[j]);
    return buf;
}

namespace {

// A count the way people say it: 13.02B, 160.0M, 128.0K.
std::string human_count(double n) {
    if (n >= 1e9) return strf("%.2fB", n / 1e9);
    if (n >= 1e6) return strf("%.1fM", n / 1e6);
    if (n >= 1e3) return strf("%.1fK", n / 1e3);
    return strf("%.0f", n);
}

size_t format_bytes_per(WeightFormat w) { return w == WeightFormat::FP32 ? 4 : 2; }
bool is_nf4(WeightFormat w) { return w == WeightFormat::NF4 || w == WeightFormat::NF4_DQ; }

// The seven projections are what QLoRA quantizes (bitsandbytes' Linear4bit); embeddings, the LM
// head and norms stay at the compute precision.
bool quantized_tensor(const TensorInfo& t) {
    const std::string suffix = "_proj.weight";
    return t.name.size() > suffix.size() && t.name.compare(t.name.size() - suffix.size(), suffix.size(), suffix) == 0;
}

// One NF4 weight as model_upload (model/device.cpp) lays it out on the GPU: its codes, absmax codes
// and scales, each part starting 16-byte aligned in the one NF4 buffer; the mean offset stays on the
// host (a kernel argument).
size_t nf4_device_bytes(size_t n) {
    auto align16 = [](size_t b) { return (b + 15) & ~(size_t)15; };
    const size_t blocks = (n + 63) / 64;
    return align16((n + 1) / 2) + align16(blocks) + align16((blocks + 255) / 256 * 4);
}

void estimate_weights(const MemorySpec& s, MemoryEstimate& e) {
    if (!is_nf4(s.base)) {
        size_t b = format_bytes_per(s.base);
        e.weights = (size_t)e.n_params * b;
        e.why_weights = strf("%s params × %zu B (%s)", human_count(e.n_params).c_str(), b, weight_format_name(s.base));
        return;
    }
    bool dq = s.base == WeightFormat::NF4_DQ;
    size_t nq = 0, nq_bytes = 0, rest = 0;
    for (const TensorInfo& t : param_layout(s.cfg).tensors) {
        // On CUDA (double quantization, what qlora stores) the bytes of the device buffer.
        if (quantized_tensor(t))
            nq += t.numel, nq_bytes += s.backend == Backend::Cuda && dq ? nf4_device_bytes(t.numel) : nf4_bytes(t.numel, dq);
        else rest += t.numel;
    }
    e.weights = nq_bytes + rest * s.compute_bytes;
    e.why_weights = strf("%s projection weights × %.3f bits (%s: 4-bit codes + %s) + %s others × %d B",
                         human_count(nq).c_str(), 8.0 * nq_bytes / nq, weight_format_name(s.base),
                         dq ? "an 8-bit absmax per 64 + an FP32 scale per 256 absmax" : "an FP32 absmax per 64",
                         human_count(rest).c_str(), s.compute_bytes);
}

// The CUDA backend's own growable buffers (kernels/cuda/: cuda_scratch), at the size the first
// training step grows them to. The constants mirror the kernels' (named there).
void estimate_cuda_scratch(const MemorySpec& s, MemoryEstimate& e) {
    const ModelConfig& c = s.cfg;
    size_t N = (size_t)s.B * s.T;
    size_t cublas = (size_t)32 << 20;                 // matmul.cu kWorkspaceBytes
    size_t attention = attention_backward_scratch_bytes(s.B, s.T, c.n_heads);
    size_t lora = 0;
    if (s.method != Method::Full) {
        // The groups of adapted projections (kLinearGroups), G of them reading rows of width C: q, k,
        // v and gate, up read dim-wide rows, o the attention's q_dim, down the MLP's ffn_dim. lora_du
        // holds du of a group, lora_partials the partial sums of u or dA, lora_stacked the group's A
        // for the products without dropout (evaluation's too) (kernels.h): each the largest over the groups.
        const int r = s.lora.rank;
        size_t du = 0, partials = 0, stacked = 0;
        for (const std::vector<LoraTarget>& group : kLinearGroups) {
            int G = 0, C, out;
            for (LoraTarget t : group) G += s.lora.has(t);
            lora_target_shape(c, group[0], C, out);
            if (G) {
                du = std::max(du, lora_du_bytes(N, G, r));
                if (s.lora.dropout > 0.0f || G > 1)  // without dropout only a stacked dA uses them
                    partials = std::max(partials, lora_partials_bytes(N, C, G, r));
                stacked = std::max(stacked, lora_stacked_bytes(G, r, C));
            }
        }
        lora = du + partials + stacked;
    }
    // reduce: the largest of sum_squares' partials (one double per 2048 gradients, at most 1024), in
    // full fine-tuning rmsnorm's weight-gradient partials (a row of width floats per block of its
    // grid: N rows of C, and with QK-norm N·H rows of head_dim), and when the embedding is trained
    // (full fine-tuning, LoRA's saved modules or its trainable tokens: then over the batch positions
    // holding one, all N at most) the embedding backward's sort and run sums, and with
    // DoRA the magnitude gradients' stripe sums.
    size_t sum_squares = std::min<size_t>(((size_t)e.n_trainable + 2047) / 2048, 1024) * 8;
    size_t norms = (size_t)rmsnorm_backward_blocks(N, c.dim) * c.dim * 4;
    if (c.qk_norm) norms = std::max(norms, (size_t)rmsnorm_backward_blocks(N * c.n_heads, c.head_dim) * c.head_dim * 4);
    const bool embedding = s.method == Method::Full || (lora_saves(c, s.lora.save_modules) & LORA_SAVE_EMBED) ||
                           !s.lora.tokens[LORA_TABLE_EMBED].empty();
    size_t reduce = std::max(sum_squares, s.method == Method::Full ? norms : 0);
    if (embedding) reduce = std::max(reduce, embedding_backward_scratch_bytes(N, c.dim));
    for (int t = 0; t < LORA_NUM_TARGETS && s.method != Method::Full && s.lora.use_dora; t++) {
        int in, out;  // DoRA's magnitude gradients: the column sums of each stripe of rows
        lora_target_shape(c, (LoraTarget)t, in, out);
        if (s.lora.has((LoraTarget)t)) reduce = std::max(reduce, dora_backward_scratch_bytes(N, out));
    }
    e.backend = cublas + attention + lora + reduce;
    e.why_backend = strf("cuBLASLt workspace 32 MiB + attention D N·H·4 = %s + LoRA du N·G·RP·2 + partials of u "
                         "or dA + stacked A = %s + reductions %s",
                         format_bytes(attention).c_str(), format_bytes(lora).c_str(),
                         format_bytes(reduce).c_str());
}

// Activations, mirroring workspace_init (model.cpp) buffer by buffer, with N = B·T tokens:
//   kept for the backward: every layer's input (L+1)·N·C (the last is the final output), the final
//   norm's output N·C and rstd N, and per layer ln1, x_mid, ln2 (3C), q, att (2Q), k, v (2KV),
//   gate, up, h (3F), x·Aᵀ of each adapter (r per target) + FP32 statistics rstd1, rstd2, lse (2+H);
//   with QK-norm (Qwen3) also q and k before their norm (Q+KV) and its statistics per head (H+Hkv);
//   with post norms (Gemma 3) the attention's and the MLP's outputs before them (2C) and their rstd (2).
//   With recompute only one layer's set exists, refilled from its kept input in the backward.
// No T×T term: attention is flash-style, it keeps only the log-sum-exp per head and row.
void estimate_activations(const MemorySpec& s, MemoryEstimate& e) {
    if (s.params > 0) {
        e.why_activations = e.why_logits = e.why_scratch = "need a shape (--preset, --model or dims), not --params";
        return;
    }
    const ModelConfig& c = s.cfg;
    size_t N = (size_t)s.B * s.T, C = c.dim, Q = c.q_dim(), KV = c.kv_dim(), F = c.ffn_dim, H = c.n_heads, L = c.n_layers;
    size_t cb = s.compute_bytes, fb = 4;  // statistics (rstd, lse, nll) and row indices stay 4 bytes
    int adapted = 0;
    if (s.method != Method::Full)
        for (int t = 0; t < LORA_NUM_TARGETS; t++) adapted += s.lora.has((LoraTarget)t);
    size_t r = s.method == Method::Full ? 0 : s.lora.rank;
    // QK-norm: q and k before the norm, and the norm's statistics per row and head.
    const size_t qk = c.qk_norm ? 1 : 0, QK = qk * (Q + KV), QKH = qk * (H + c.n_kv_heads);
    const size_t post = c.post_norms ? 1 : 0;
    // DoRA: each projection with a magnitude keeps z [N, out] per layer; the row norms [out] of every
    // layer's (FP32) are computed once a pass.
    const size_t dora = s.method == Method::Full ? 0 : dora_offset(c, s.lora, LORA_NUM_TARGETS);
    e.per_layer = N * (((3 + 2 * post) * C + 2 * Q + 2 * KV + QK + 3 * F + r * adapted + dora) * cb +
                       (2 + 2 * post + H + QKH) * fb);
    size_t copies = s.recompute ? 1 : L;
    const std::string qk_terms = qk ? "+Q+KV" : "", qk_stats = qk ? "+H+Hkv" : "";
    const std::string c_terms = post ? "5C" : "3C", stat_terms = post ? "4" : "2";
    const std::string dora_terms = dora ? strf("+DoRA z %zu", dora) : "",
                      dora_norms = dora ? strf(" + DoRA's row norms L·%zu·4", dora) : "";
    e.activations = (L + 1) * N * C * cb + copies * e.per_layer + N * C * cb + N * fb + 3 * N * fb + L * dora * fb;
    e.why_activations =
        strf("layer inputs (L+1)·N·C·%zu = %s + %zu × per layer N·((%s+2Q+2KV%s+3F+r·%d%s)·%zu + (%s+H%s)·4) = %zu × %s "
             "(%s) + final norm N·C·%zu + N·4 + the batch's tokens, positions, segments 3·N·4%s; N = %d×%d",
             cb, format_bytes((L + 1) * N * C * cb).c_str(), copies, c_terms.c_str(), qk_terms.c_str(), adapted,
             dora_terms.c_str(), cb, stat_terms.c_str(), qk_stats.c_str(),
             copies, format_bytes(e.per_layer).c_str(),
             s.recompute ? "recompute: one layer's set, refilled in the backward" : "no recompute: every layer's set",
             cb, dora_norms.c_str(), s.B, s.T);
    // The LM head runs loss_chunk() rows at a time: their logits (then dlogits, in place), hidden
    // states and their gradient; and for all the rows that carry loss weight at once: the list of
    // them, their targets, weights and nll.
    size_t V = c.vocab_size, K = loss_chunk(s.backend == Backend::Cpu);
    const size_t head_tokens = s.method == Method::Full ? 0 : lora_table_tokens(c, s.lora, LORA_TABLE_LM_HEAD).size();
    e.logits = K * V * cb + 2 * K * C * cb + K * head_tokens * cb + 4 * N * fb;
    e.why_logits = strf("chunk of %zu rows: logits %zu·V·%zu + hidden and its gradient 2·%zu·C·%zu%s + rows, targets, "
                        "weights, nll 4·N·4", K, K, cb, K, cb,
                        head_tokens ? strf(" + the trainable tokens' dlogits %zu·%zu·%zu", K, head_tokens, cb).c_str() : "");
    // Backward buffers reused by every layer: dresid, dln, dfinal (3C), datt, dq (2Q), dk, dv (2KV),
    // dh, dgate, dup (3F), with QK-norm the gradients of q and k before it (Q+KV). An NF4 base is
    // dequantized one projection at a time into one buffer (its absmax values decoded on the way).
    // DoRA: dz of the widest group of projections with magnitudes.
    const size_t dz = s.method == Method::Full ? 0 : dora_group_width(c, s.lora);
    e.scratch = N * (3 * C + 2 * Q + 2 * KV + QK + 3 * F + dz) * cb;
    e.why_scratch = strf("backward N·(3C+2Q+2KV%s+3F%s)·%zu", qk_terms.c_str(), dz ? strf("+DoRA dz %zu", dz).c_str() : "", cb);
    if (is_nf4(s.base)) {
        size_t biggest = std::max({C * Q, C * KV, C * F});
        size_t dq = biggest * cb;
        e.scratch += dq;
        e.why_scratch += strf(" + one dequantized projection max(C·Q, C·KV, C·F)·%zu = %s", cb, format_bytes(dq).c_str());
    }
    if (s.backend == Backend::Cuda) estimate_cuda_scratch(s, e);
}

}  // namespace

MemoryEstimate memory_estimate(const MemorySpec& s) {
    MemoryEstimate e;
    e.spec = s;
    bool adapters = s.method != Method::Full;
    if (s.params > 0) {
        if (adapters) fail("--method %s needs a model shape (--preset, --model or dims) to place adapters, not --params", method_name(s.method));
        e.n_params = s.params;
    } else {
        s.cfg.validate("memory");
        e.n_params = s.cfg.num_params();
    }
    // Past 2^31 tokens a micro-batch's byte counts wrap around 64 bits (a total below its parts), and
    // no step's buffers could index them anyway.
    if ((int64_t)s.B * s.T > (int64_t)1 << 31)
        fail("--batch-size %d × --seq-len %d is %lld tokens a micro-batch, more than 2^31 (2147483648): ask for fewer",
             s.B, s.T, (long long)s.B * s.T);
    if (s.method == Method::Full && is_nf4(s.base))
        fail("--precision %s: full fine-tuning updates every weight, which cannot stay NF4 (use --method qlora)",
             weight_format_name(s.base));
    if (s.method == Method::Qlora && !is_nf4(s.base))
        fail("--method qlora keeps the base in NF4: --precision must be nf4 or nf4-dq");
    if (s.method == Method::Lora && is_nf4(s.base)) fail("--precision nf4 with LoRA is qlora: pass --method qlora");
    estimate_weights(s, e);

    if (adapters) {
        e.n_trainable = (int64_t)lora_layout(s.cfg, s.lora).total;
        // (the trainable tokens' ids beside them, on the GPU: 4 B each)
        const size_t ids = s.lora.tokens[LORA_TABLE_EMBED].size() + s.lora.tokens[LORA_TABLE_LM_HEAD].size();
        e.adapters = (size_t)e.n_trainable * s.compute_bytes + (s.backend == Backend::Cuda ? ids * 4 : 0);
        e.why_adapters = strf("r·(in+out)%s per adapted matrix, r = %d on %s × %d layers%s%s = %s params × %d B%s",
                              s.lora.use_dora ? " + out (DoRA's magnitude)" : "", s.lora.rank,
                              lora_targets_string(s.lora.targets).c_str(),
                              s.lora.layers.empty() ? s.cfg.n_layers : (int)s.lora.layers.size(),
                              !s.lora.save_modules ? ""
                              : s.cfg.tied_embeddings ? " + vocab·dim (the saved embedding, tied to the LM head)"
                              : (" + vocab·dim each saved module (" + lora_saves_string(s.lora.save_modules) + ")").c_str(),
                              !s.lora.has_tokens() ? "" : (" + dim per trainable token row (" + lora_tokens_string(s.cfg, s.lora) + ")").c_str(),
                              human_count(e.n_trainable).c_str(), s.compute_bytes,
                              s.backend == Backend::Cuda && ids ? strf(" + their ids %zu·4 B", ids).c_str() : "");
    } else {
        e.n_trainable = e.n_params;
        e.why_adapters = "none (full fine-tuning trains the weights themselves)";
    }
    size_t T = e.n_trainable;
    e.gradients = T * s.grad_bytes;
    e.why_gradients = strf("trainable %s × %d B", human_count(T).c_str(), s.grad_bytes);
    int k = optim_states(s.optimizer);
    // The moments' bytes and how they come about. 8-bit AdamW: a byte per moment and an FP32 absmax
    // per 256 in each tensor of 4096 parameters or more, FP32 moments in the smaller ones (without a
    // shape, --params: every parameter in 8 bits).
    size_t states = T * k * s.state_bytes;
    std::string why_states = strf("%d state%s × %d B", k, k == 1 ? "" : "s", s.state_bytes);
    if (s.optimizer == OptimKind::AdamW8bit) {
        if (s.params > 0) {
            states = 2 * (T + (T + kAdam8Block - 1) / kAdam8Block * 4);
        } else {
            const std::vector<TensorInfo> tensors = adapters ? lora_layout(s.cfg, s.lora).tensors : param_layout(s.cfg).tensors;
            states = adam_state_bytes(tensors, true);
        }
        why_states = s.params > 0 ? strf("2 states × (1 B + 4 B per %d)", kAdam8Block)
                                  : strf("2 states × (1 B + 4 B per %d), FP32 in tensors under %zu", kAdam8Block, kAdam8MinSize);
    }
    if (s.offload_optimizer && s.backend == Backend::Cuda) {
        // The host runs AdamW: its moments and a copy of the gradients live in host memory, and the
        // host model's FP32 parameters (there in every run) are the masters; the GPU keeps only the
        // BF16 copy.
        e.host = states + T * 4;
        e.why_host = strf("trainable %s × (%s + 4 B gradient copy) added to host memory; the host "
                          "model's FP32 parameters are the masters",
                          human_count(T).c_str(), why_states.c_str());
        e.why_optimizer = "none on the GPU: offloaded to host memory (--offload-optimizer), see the host line";
    } else {
        e.optimizer = states + T * s.master_bytes;
        e.why_optimizer = strf("trainable %s × (%s%s) (%s)", human_count(T).c_str(), why_states.c_str(),
                               s.master_bytes ? strf(" + %d B master copy", s.master_bytes).c_str() : "",
                               optim_kind_name(s.optimizer));
    }
    estimate_activations(s, e);
    return e;
}

void print_memory_table(const MemoryEstimate& e, const MemoryUse* measured, FILE* out, bool explain) {
    const MemorySpec& s = e.spec;
    fprintf(out, "memory estimate: %s, %s, %s base", method_name(s.method), optim_kind_name(s.optimizer),
            weight_format_name(s.base));
    if (s.params > 0) fprintf(out, ", %s params\n", human_count(e.n_params).c_str());
    else fprintf(out, ", %s on %s, batch %d × %d tokens%s\n", human_count(e.n_params).c_str(),
                 s.backend == Backend::Cpu ? "CPU" : "CUDA", s.B, s.T, s.recompute ? ", recompute" : "");
    auto line = [&](const char* name, double est, const size_t* meas, const std::string& why) {
        fprintf(out, "  %-22s %28s", name, format_bytes(est).c_str());
        if (meas) fprintf(out, "   measured %28s  %+6.2f%%", format_bytes(*meas).c_str(),
                          *meas ? 100.0 * (est - (double)*meas) / (double)*meas : 0.0);
        fprintf(out, "\n");
        if (explain && !why.empty()) fprintf(out, "  %-22s   = %s\n", "", why.c_str());
    };
    const MemoryUse* m = measured;
    line("weights", e.weights, m ? &m->weights : nullptr, e.why_weights);
    line("adapters", e.adapters, m ? &m->adapters : nullptr, e.why_adapters);
    line("gradients", e.gradients, m ? &m->gradients : nullptr, e.why_gradients);
    line("optimizer state", e.optimizer, m ? &m->optimizer : nullptr, e.why_optimizer);
    line("activations", e.activations, nullptr, e.why_activations);
    line("logits/loss", e.logits, nullptr, e.why_logits);
    line("scratch", e.scratch, nullptr, e.why_scratch);
    if (m) line("workspace (act+lg+scr)", e.workspace(), &m->activations, "");
    if (s.backend == Backend::Cuda) line("CUDA scratch", e.backend, m ? &m->backend : nullptr, e.why_backend);
    size_t mt = m ? m->total() : 0;
    line("total", e.total(), m ? &mt : nullptr, "");
    if (e.host) line("host (offloaded)", e.host, m ? &m->offloaded : nullptr, e.why_host + " (not in the total)");
    line("gradients + optimizer", e.gradients + e.optimizer, nullptr, "");
    line("inference (weights×1.2)", e.inference(), nullptr, "");
}
