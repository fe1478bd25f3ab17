#include "model/trainer.h"

#include <algorithm>
#include <climits>
#include <cmath>
#include <cstring>
#include <filesystem>
#include <map>
#include <sstream>

#include "data/dataset.h"
#include "kernels/hash.h"
#include "model/util.h"

namespace fs = std::filesystem;

namespace {
const uint32_t kStateMagic = 0x534d4c4c;  // "LLMS"
// 2 added the best evaluation, 3 the moments as their buffers (8-bit codes and absmax values too);
// version 1 and 2 files still load
const uint32_t kStateVersion = 3;

// Epoch e's order: a Fisher-Yates shuffle seeded by (seed, e), then with --group-by-length grouped
// by length over what a step takes. Stateless, so a resumed run rebuilds exactly the order it was in.
std::vector<size_t> epoch_order(const Trainer& t, uint64_t epoch, bool grouped) {
    std::vector<size_t> order(t.train.size());
    for (size_t i = 0; i < order.size(); i++) order[i] = i;
    Rng rng(t.cfg.seed ^ (0xA0761D6478BD642Full * (epoch + 1)));
    for (size_t i = order.size(); i > 1; i--) std::swap(order[i - 1], order[rng.next_u64() % i]);
    if (grouped) group_by_length(order, t.train, (size_t)t.cfg.batch.batch_size * t.cfg.grad_accum);
    return order;
}
std::vector<size_t> epoch_order(const Trainer& t, uint64_t epoch) { return epoch_order(t, epoch, t.cfg.group_by_length); }
void build_order(Trainer& t) { t.order = epoch_order(t, t.epoch); }

// Lays out every micro-batch of an epoch in `order`, calling f(batch, first, count) with the
// examples order[first .. first+count) it took.
template <class F>
void for_each_micro_batch(const Trainer& t, const std::vector<size_t>& order, F f) {
    Batch b;
    for (size_t c = 0; c < order.size();) {
        const size_t n = fill_batch(t.train, order, c, t.cfg.batch, b);
        f(b, c, n);
        c += n;
    }
}

// Optimizer steps in epoch `epoch`: its micro-batches (packing makes their count depend on the
// order) in groups of grad_accum, the last group taking what is left, as transformers' Trainer.
int epoch_steps(const Trainer& t, uint64_t epoch) {
    size_t micro = 0;
    for_each_micro_batch(t, epoch_order(t, epoch), [&](const Batch&, size_t, size_t) { micro++; });
    return (int)((micro + t.cfg.grad_accum - 1) / t.cfg.grad_accum);
}

}  // namespace

double epoch_padding(const Trainer& t, uint64_t epoch, bool grouped) {
    const std::vector<size_t> order = epoch_order(t, epoch, grouped);
    size_t positions = 0, used = 0;
    for_each_micro_batch(t, order, [&](const Batch& b, size_t first, size_t n) {
        for (size_t k = first; k < first + n; k++) used += t.train[order[k]].size();
        positions += (size_t)b.B * b.T;
    });
    return positions ? 1.0 - (double)used / positions : 0.0;
}

namespace {

// FNV-1a over every training and validation example (ids and loss weights), in order: what the
// data flags (--data, --val-data, --template, --prompt-loss-weight, --truncation, --max-seq-len, the
// tokenizer) made of the files, for the checkpoint to tell a resume on other data.
uint64_t data_hash(const Trainer& t) {
    uint64_t h = 1469598103934665603ull;
    for (const auto* set : {&t.train, &t.val}) {
        for (const Example& e : *set) h = (h ^ content_hash(e)) * 1099511628211ull;
        h = (h ^ 0xFF) * 1099511628211ull;  // where train ends and val begins
    }
    return h;
}

// A fingerprint of the weights a run starts from (--model's, or a preset's random ones): 4096 words
// spread over the FP32 buffer and 4096 over each NF4 weight's codes, with their sizes. It costs
// nothing at any size, and two models of one shape (a base model and its chat tune) differ in all
// of them, so a resume on another model is refused. (A full fine-tune's checkpoint replaces the
// weights after trainer_init, which takes this from the --model it was given, as the first run did.)
uint64_t base_hash(const Model& m) {
    uint64_t h = 1469598103934665603ull;
    auto sample = [&](const void* data, size_t bytes) {
        const size_t words = bytes / 4, k = std::min<size_t>(words, 4096);
        h = (h ^ bytes) * 1099511628211ull;
        for (size_t i = 0; i < k; i++) {
            uint32_t w;
            std::memcpy(&w, (const char*)data + 4 * (i * words / k), 4);
            h = (h ^ w) * 1099511628211ull;
        }
    };
    sample(m.params.data(), m.params.size() * sizeof(float));
    for (const NF4Weight& q : m.nf4) sample(q.codes.data(), q.codes.size());
    return h;
}

// The next micro-batch in data order, moving to the next epoch when this one is used up.
void next_micro_batch(Trainer& t, Batch& b) {
    if (t.cursor >= t.order.size()) {
        t.epoch++;
        t.cursor = 0;
        build_order(t);
    }
    t.cursor += fill_batch(t.train, t.order, t.cursor, t.cfg.batch, b);
}

// AdamW on the host for a non-host backend (TrainConfig::offload_optimizer).
bool offloaded(const Trainer& t) { return t.cfg.offload_optimizer && !t.ops->host; }

// The random bits of step `step`'s stochastic rounding (0: off): from (seed, step) alone, so a run
// resumed from a checkpoint can rebuild the BF16 weights the last step left.
uint64_t sr_key(const Trainer& t, int step) {
    return t.cfg.optim.stochastic_rounding && !t.ops->host ? hash64(t.cfg.seed ^ 0x5352u, (uint64_t)step) | 1 : 0;
}

}  // namespace

std::string TrainConfig::signature() const {
    char buf[512];
    snprintf(buf, sizeof buf,
             "method=%d lora_r=%d lora_alpha=%g lora_dropout=%g rslora=%d targets=%s lr=%g wd=%g betas=%g,%g eps=%g "
             "clip=%g schedule=%s warmup=%d/%g floor=%g batch=%d seq=%d padding=%d packing=%d accum=%d steps=%d "
             "epochs=%g seed=%llu%s",
             (int)method, lora.rank, lora.alpha, lora.dropout, lora.use_rslora, lora_targets_string(lora.targets).c_str(),
             optim.lr, optim.weight_decay, optim.beta1, optim.beta2, optim.eps, optim.max_grad_norm,
             schedule_name(optim.schedule), optim.warmup_steps, warmup_ratio, optim.min_lr_ratio, batch.batch_size,
             batch.max_seq_len, (int)batch.padding, (int)batch.packing, grad_accum, max_steps, epochs,
             (unsigned long long)seed, optim.stochastic_rounding ? " sr=1" : "");
    // Settings added since the first checkpoints: appended only when on, so that older checkpoints
    // still match (early stopping: where the run stops depends on both of its numbers).
    if (optim.eight_bit) snprintf(buf + strlen(buf), sizeof buf - strlen(buf), " optimizer=adamw8bit");
    if (optim.lora_b_lr_ratio != 1.0f) snprintf(buf + strlen(buf), sizeof buf - strlen(buf), " loraplus=%g", optim.lora_b_lr_ratio);
    if (optim.schedule == Schedule::wsd) snprintf(buf + strlen(buf), sizeof buf - strlen(buf), " decay=%g", optim.decay_ratio);
    if (neftune_alpha > 0) snprintf(buf + strlen(buf), sizeof buf - strlen(buf), " neftune=%g", neftune_alpha);
    if (lora.use_dora && method != Method::Full) snprintf(buf + strlen(buf), sizeof buf - strlen(buf), " dora=1");
    if (lora.save_modules && method != Method::Full)
        snprintf(buf + strlen(buf), sizeof buf - strlen(buf), " save=%s", lora_saves_string(lora.save_modules).c_str());
    if (lora.has_tokens() && method != Method::Full) {
        uint64_t h = 0;  // the ids themselves, in order, as a hash: a list can be long
        for (const std::vector<int32_t>& ids : lora.tokens)
            for (int32_t id : ids) h = hash64(h ^ (uint64_t)(uint32_t)id, ids.size());
        snprintf(buf + strlen(buf), sizeof buf - strlen(buf), " tokens=%zu+%zu:%016llx", lora.tokens[0].size(),
                 lora.tokens[1].size(), (unsigned long long)h);
    }
    if (!lora.layers.empty() && method != Method::Full)
        snprintf(buf + strlen(buf), sizeof buf - strlen(buf), " layers=%s", lora_layers_string(lora.layers).c_str());
    if (optim.embedding_lr > 0) snprintf(buf + strlen(buf), sizeof buf - strlen(buf), " embedding_lr=%g", optim.embedding_lr);
    if (group_by_length) snprintf(buf + strlen(buf), sizeof buf - strlen(buf), " group_by_length=1");
    if (early_stopping > 0) snprintf(buf + strlen(buf), sizeof buf - strlen(buf), " early_stop=%d/%d", early_stopping, eval_every);
    return buf;
}

int trainer_seq_len(const TrainConfig& cfg, const std::vector<Example>& train, const std::vector<Example>& val) {
    // With dynamic padding no batch is longer than the longest example: size the activations for
    // that, not for max_seq_len (SmolLM2's default task: 98 tokens instead of 512, 5x less memory).
    int T = cfg.batch.max_seq_len;
    if (!cfg.batch.packing && cfg.batch.padding == Padding::longest) {
        size_t longest = 2;
        for (const auto* set : {&train, &val})
            for (const Example& e : *set) longest = std::max(longest, e.size());
        T = (int)std::min<size_t>(T, longest);
    }
    return T;
}

void trainer_init(Trainer& t, const TrainConfig& cfg, const Ops& ops) {
    if (t.train.empty()) fail("no training examples");
    if (cfg.grad_accum < 1) fail("--grad-accum must be at least 1");
    if (cfg.batch.batch_size < 1) fail("--batch-size must be at least 1");
    if (cfg.optim.stochastic_rounding && cfg.offload_optimizer && !ops.host)
        fail("--stochastic-rounding rounds in the GPU's AdamW, and --offload-optimizer runs AdamW on the host (its "
             "upload rounds to nearest): use one of the two");
    if (cfg.method != t.model.method)
        fail("internal: the trainer is set up for %s but the model is %s", method_name(cfg.method), method_name(t.model.method));
    t.cfg = cfg;
    t.ops = &ops;
    t.step = 0;
    t.epoch = 0;
    t.cursor = 0;
    t.tokens_seen = 0;
    build_order(t);
    if (cfg.max_steps > 0) {
        t.total_steps = cfg.max_steps;
    } else {
        // The steps of each whole epoch (with packing each epoch lays out its own order), then the
        // fraction of the next one's.
        // (--epochs as the decimal it was typed as: the float 0.1f is 0.1000000015, whose ceil of a
        // tenth of 10 steps would be 2; the last ceil allows for double rounding too.)
        const double epochs = std::round((double)cfg.epochs * 1e6) / 1e6;
        const double whole = std::floor(epochs), part = epochs - whole;
        int64_t total = 0;
        for (uint64_t e = 0; e < (uint64_t)whole && total <= INT_MAX; e++) total += epoch_steps(t, e);
        if (part > 0) total += (int64_t)std::ceil(part * epoch_steps(t, (uint64_t)whole) - 1e-9);
        if (total > INT_MAX) fail("--epochs %g makes more than %d steps: ask for fewer epochs", cfg.epochs, INT_MAX);
        t.total_steps = std::max<int>(1, (int)total);
    }
    t.data_hash = data_hash(t);
    t.base_hash = base_hash(t.model);
    if (t.cfg.optim.warmup_steps == 0 && cfg.warmup_ratio > 0)
        t.cfg.optim.warmup_steps = (int)std::ceil(cfg.warmup_ratio * t.total_steps);
    model_upload(t.model, ops, !cfg.eval_only, offloaded(t));
    workspace_init(t.ws, t.model, cfg.batch.batch_size, trainer_seq_len(cfg, t.train, t.val), cfg.recompute, ops);
    if (cfg.eval_only) return;  // no gradients, optimizer state or FP32 masters: trainer_step is not for it
    size_t bytes = t.model.num_trainable() * sizeof(float);
    t.grads = Buffer(ops, bytes, Mem::gradients);
    const Ops& opt_ops = offloaded(t) ? cpu_ops() : ops;  // where AdamW runs and its state lives
    adam_state_init(t.opt, opt_ops, t.model.trainable_tensors(), cfg.optim.eight_bit);
    t.host_grads = offloaded(t) ? Buffer(opt_ops, bytes, Mem::gradients) : Buffer();
}

StepResult trainer_step(Trainer& t) {
    // Lay out every micro-batch of the step first: the loss is normalised by the total weight of
    // the whole accumulated batch, so each micro-batch's gradient must already know it.
    // An epoch's last step takes the micro-batches left in it, fewer than grad_accum, as transformers'
    // Trainer does: a step never mixes two epochs, nor sees an example twice.
    std::vector<Batch> micro;
    double total_weight = 0;
    StepResult r;
    while ((int)micro.size() < t.cfg.grad_accum && (micro.empty() || t.cursor < t.order.size())) {
        micro.emplace_back();
        Batch& b = micro.back();
        next_micro_batch(t, b);
        total_weight += b.total_weight();
        for (int32_t s : b.seg) r.tokens += s >= 0;
    }
    if (total_weight <= 0) fail("step %d: the batch has no supervised token (all loss weights are 0)", t.step + 1);
    t.grads.zero();
    float grad_scale = (float)(1.0 / total_weight);
    double loss = 0;
    for (size_t i = 0; i < micro.size(); i++) {
        uint64_t key = t.cfg.seed * 0x9E3779B97F4A7C15ull + (uint64_t)t.step * 1315423911ull + i;
        loss += model_forward_backward(t.model, t.ws, micro[i], t.grads.f(), grad_scale, key, t.cfg.neftune_alpha, *t.ops);
    }
    r.loss = loss / total_weight;
    r.lr = lr_at(t.cfg.optim, t.step, t.total_steps);
    double norm = grad_norm(*t.ops, t.grads.f(), t.model.num_trainable());
    if (!std::isfinite(r.loss) || !std::isfinite(norm))
        fail("step %d: the %s is %s. Lower --lr (now %g), keep --max-grad-norm on, or check the data; the weights were "
             "not updated, so a checkpoint saved before is intact",
             t.step + 1, std::isfinite(r.loss) ? "gradient norm" : "loss", std::isnan(r.loss) || std::isnan(norm) ? "NaN" : "infinite",
             t.cfg.optim.lr);
    // A diverged run need not reach NaN: once the residual stream's sum of squares overflows, RMSNorm
    // scales it by 1/sqrt(inf) = 0 (as PyTorch's does), every output is the uniform guess and nothing
    // reaches the trained weights. No live run has a gradient of exactly 0 (LoRA's B = 0 at the start
    // still gives B a gradient), so that stops the run instead of training on for nothing.
    if (norm == 0.0)
        fail("step %d: the gradient is exactly 0 (loss %.4f; a uniform guess over the vocabulary is %.4f), so no step "
             "would change the weights: the run has diverged. Lower --lr (now %g) or lengthen the warmup, and start "
             "again (or resume from a checkpoint saved before the loss went wrong). An --init-adapter whose A and B "
             "are both zero cannot learn either",
             t.step + 1, r.loss, std::log((double)t.model.cfg.vocab_size), t.cfg.optim.lr);
    if (offloaded(t)) {
        // Gradients down, AdamW on the host's FP32 parameters (the masters), the result up as the
        // storage-type copy the kernels read.
        size_t n = t.model.num_trainable();
        t.ops->to_host(t.host_grads.p, t.grads.p, n * sizeof(float));
        optimizer_step(cpu_ops(), t.model.trainable(), nullptr, t.host_grads.f(), t.model.trainable_tensors(), t.opt,
                       t.cfg.optim, r.lr, norm);
        t.ops->upload(model_compute_copy(t.model, *t.ops), t.model.trainable(), n);
        model_put_token_rows(t.model, cpu_ops());  // (the host's tables follow the host's masters)
    } else {
        optimizer_step(*t.ops, model_masters(t.model, *t.ops), model_compute_copy(t.model, *t.ops), t.grads.f(),
                       t.model.trainable_tensors(), t.opt, t.cfg.optim, r.lr, norm, sr_key(t, t.step));
    }
    model_put_token_rows(t.model, *t.ops);
    r.grad_norm = norm;
    t.step++;
    t.tokens_seen += r.tokens;
    return r;
}

double trainer_evaluate(Trainer& t, const std::vector<Example>& examples, std::map<int, EvalSums>* per_file) {
    std::map<int, std::vector<size_t>> by_file;  // each file's examples, in order
    for (size_t i = 0; i < examples.size(); i++) by_file[examples[i].file].push_back(i);
    EvalSums all;
    Batch b;
    for (const auto& [file, order] : by_file) {
        EvalSums sums;
        for (size_t c = 0; c < order.size();) {
            c += fill_batch(examples, order, c, t.cfg.batch, b);
            sums.loss += model_forward_loss(t.model, t.ws, b, *t.ops);
            sums.weight += b.total_weight();
        }
        if (per_file) (*per_file)[file] = sums;
        all.loss += sums.loss, all.weight += sums.weight;
    }
    return all.mean();
}

std::vector<float> trainer_gradients(const Trainer& t) {
    std::vector<float> g(t.model.num_trainable());
    t.ops->to_host(g.data(), t.grads.p, g.size() * sizeof(float));
    return g;
}

size_t trainer_release_workspace(Trainer& t) {
    const size_t bytes = t.ws.bytes();
    Workspace idle;  // no buffers; the shape to make again
    idle.max_B = t.ws.max_B;
    idle.max_T = t.ws.max_T;
    idle.recompute = t.ws.recompute;
    t.ws = std::move(idle);
    return bytes;
}

void trainer_restore_workspace(Trainer& t) {
    workspace_init(t.ws, t.model, t.ws.max_B, t.ws.max_T, t.ws.recompute, *t.ops);
}

MemoryUse trainer_memory(const Trainer& t) {
    MemoryUse m;
    m.gradients = t.grads.bytes;
    if (offloaded(t)) m.offloaded = t.opt.bytes() + t.host_grads.bytes;
    else m.optimizer = t.opt.bytes();
    m.activations = t.ws.bytes();
    if (const DeviceModel* d = t.model.device.get()) {
        m.weights = d->params.bytes + d->nf4.bytes;
        m.adapters = d->adapters.bytes + d->token_ids.bytes;
        m.optimizer += d->masters.bytes;  // FP32 masters are optimizer state (the ops read the BF16 copy)
        m.activations += d->dequant.bytes;
        m.backend = t.ops->mem_stats().bytes[(int)Mem::scratch] - d->dequant.bytes;
    } else {
        m.weights = t.model.base_bytes();
        m.adapters = t.model.adapters.size() * sizeof(float);
        // qlora's dequantization scratch (one projection) counts as working memory.
        m.activations += t.model.dequant.size() * sizeof(float);
    }
    return m;
}

// ---- checkpoints ----

// What must match to resume a run exactly: the settings, the examples they were made into ("data":
// a hash of every training and validation example's ids and weights) and the weights the run
// started from ("base", base_hash; checkpoints of earlier builds have none).
static std::string run_signature(const Trainer& t, bool with_base = true) {
    return t.cfg.signature() + strf(" data=%016llx", (unsigned long long)t.data_hash) +
           (with_base ? strf(" base=%016llx", (unsigned long long)t.base_hash) : std::string());
}

// The optimizer's buffers as a checkpoint holds them, in this order.
template <class State>  // AdamState, const or not
static auto moment_buffers(State& st) {
    return std::vector<decltype(&st.m)>{&st.m, &st.v, &st.m8, &st.v8, &st.absmax};
}

static void save_state(const std::string& path, const Trainer& t) {
    AtomicFile f(path);
    f.put(kStateMagic);
    f.put(kStateVersion);
    std::string sig = run_signature(t);
    f.put((uint32_t)sig.size());
    f.write(sig.data(), sig.size());
    f.put((int32_t)t.step);
    f.put((int32_t)t.total_steps);
    f.put((uint64_t)t.epoch);
    f.put((uint64_t)t.cursor);
    f.put((int32_t)t.opt.t);
    f.put(t.tokens_seen);
    f.put(t.best_val);
    f.put((int32_t)t.best_step);
    f.put((int32_t)t.evals_since_best);
    f.put((uint64_t)t.model.num_trainable());
    for (const Buffer* b : moment_buffers(t.opt)) {
        std::vector<uint8_t> bytes(b->bytes);
        if (b->bytes) b->ops->to_host(bytes.data(), b->p, b->bytes);  // the moments' own backend (host when offloaded)
        f.put((uint64_t)b->bytes);
        f.write(bytes.data(), bytes.size());
    }
    f.commit();
}

// The settings that differ between two signatures ("key=value ..."), as "key: old -> new, ...".
static std::string signature_changes(const std::string& was, const std::string& now) {
    auto fields = [](const std::string& s) {
        std::map<std::string, std::string> out;
        std::istringstream in(s);
        for (std::string kv; in >> kv;) {
            size_t eq = kv.find('=');
            out[kv.substr(0, eq)] = eq == std::string::npos ? "" : kv.substr(eq + 1);
        }
        return out;
    };
    // The signature keeps enums as numbers (what old checkpoints hold); a message names them.
    auto named = [](const std::string& key, const std::string& v) -> std::string {
        if (key == "method" && (v == "0" || v == "1" || v == "2")) return method_name((Method)std::stoi(v));
        if (key == "padding" && (v == "0" || v == "1")) return v == "0" ? "longest" : "max_length";
        if ((key == "packing" || key == "rslora") && (v == "0" || v == "1")) return v == "0" ? "off" : "on";
        // settings written only when on
        if (key == "optimizer" && v == "(none)") return "adamw";
        if (key == "loraplus" && v == "(none)") return "1 (off)";
        if (key == "neftune" && v == "(none)") return "0 (off)";
        if (key == "save" && v == "(none)") return "none";
        if (key == "embedding_lr" && v == "(none)") return "as --lr";
        if (key == "dora" || key == "group_by_length") return v == "(none)" ? "off" : "on";
        return v;
    };
    auto a = fields(was), b = fields(now);
    for (const auto& kv : b) a.emplace(kv.first, "(none)");
    std::string out;
    for (const auto& kv : a) {
        auto it = b.find(kv.first);
        const std::string& then = it == b.end() ? "(none)" : it->second;
        if (kv.second != then)
            out += (out.empty() ? "" : ", ") + kv.first + ": " + named(kv.first, kv.second) + " -> " + named(kv.first, then);
    }
    return out;
}

// Reads the state file (step, data cursor, optimizer moments) after checking that it was made with
// this run's settings; the caller loads the weights only then (a checkpoint of another --method has
// other weight files).
static void load_state(const std::string& path, Trainer& t) {
    ByteReader r(path, read_file(path));
    uint32_t magic = r.get<uint32_t>("magic");
    if (magic != kStateMagic) fail("%s: not a training state file (bad magic 0x%08x)", path.c_str(), magic);
    uint32_t version = r.get<uint32_t>("version");
    if (version < 1 || version > kStateVersion)
        fail("%s: state file version %u is not supported (this build reads 1 to %u)", path.c_str(), version, kStateVersion);
    uint32_t n = r.get<uint32_t>("settings length");
    if (n > 4096) fail("%s: corrupt settings length %u", path.c_str(), n);
    std::string sig(n, '\0');
    r.read(&sig[0], n, "settings");
    // A checkpoint from before the data field: its settings only. Those builds also let a step run on
    // into the next epoch with --grad-accum > 1, so such a run cannot go on the same way.
    const bool before_data = sig.find(" data=") == std::string::npos;
    if (before_data && t.cfg.grad_accum > 1 && sig == t.cfg.signature())
        fail("%s: this checkpoint comes from an earlier build, whose steps with --grad-accum %d ran on into the next "
             "epoch where this one ends each epoch's last step early, so resuming would not continue the same run. "
             "Start a new run from its weights (--init-adapter or --model from this checkpoint) and a new --out",
             path.c_str(), t.cfg.grad_accum);
    const bool before_base = sig.find(" base=") == std::string::npos;
    const std::string now = before_data ? t.cfg.signature() : run_signature(t, !before_base);
    if (sig != now) {
        // Training these weights on with other settings (more steps) is a new run from them.
        const std::string ckpt = fs::path(path).parent_path().string();
        const std::string from = t.cfg.method == Method::Full
                                     ? "--model " + ckpt + "/model.bin with --tokenizer (the original model's)"
                                     : "--init-adapter " + ckpt + "/adapter.lora";
        std::string changes = signature_changes(sig, now);
        if (changes.find("data: ") != std::string::npos)
            changes += "; data is what the data flags made of the files: --data, --val-data or --val-split, "
                       "--template, --prompt-loss-weight, --truncation, the tokenizer";
        // (with another --method the fingerprint changes too: a QLoRA base is sampled in its NF4 codes)
        // A --preset's random weights are drawn from --seed: another seed is another base, not another model.
        if (changes.find("base: ") != std::string::npos && changes.find("method: ") == std::string::npos)
            changes += changes.find("seed: ") != std::string::npos
                           ? "; base is a fingerprint of the weights the run started from, and a --preset's random "
                             "weights depend on --seed: with --preset, pass the checkpoint's --seed; with --model, "
                             "this checkpoint was trained on another model"
                           : "; base is a fingerprint of the weights the run started from: this checkpoint was trained "
                             "on another model (--model or --preset)";
        fail("%s: this checkpoint was made with other settings (%s), so resuming would not continue the same run.\n"
             "  checkpoint: %s\n  now:        %s\nUse the same flags, or a new --out directory to start afresh; to "
             "train these weights on with other settings, start a new run from them (%s) and a new --out",
             path.c_str(), changes.c_str(), sig.c_str(), now.c_str(), from.c_str());
    }
    t.step = r.get<int32_t>("step");
    t.total_steps = r.get<int32_t>("total steps");
    t.epoch = r.get<uint64_t>("epoch");
    t.cursor = r.get<uint64_t>("data cursor");
    t.opt.t = r.get<int32_t>("optimizer step");
    t.tokens_seen = r.get<double>("tokens seen");
    if (version >= 2) {
        t.best_val = r.get<double>("best validation loss");
        t.best_step = r.get<int32_t>("best step");
        t.evals_since_best = r.get<int32_t>("evaluations since the best");
    }
    uint64_t count = r.get<uint64_t>("moment count");
    if (count != t.model.num_trainable())
        fail("%s: holds optimizer moments for %llu parameters, the model trains %zu (mismatched shapes)", path.c_str(),
             (unsigned long long)count, t.model.num_trainable());
    if (version < 3) {  // FP32 moments, one per parameter: what --optimizer adamw holds
        if (t.opt.m.bytes != count * sizeof(float)) fail("internal: an FP32-moment checkpoint for 8-bit moments");
        for (Buffer* b : {&t.opt.m, &t.opt.v}) {
            std::vector<uint8_t> bytes(b->bytes);
            r.read(bytes.data(), bytes.size(), b == &t.opt.m ? "first moments" : "second moments");
            b->ops->to_device(b->p, bytes.data(), bytes.size());
        }
    } else {
        const char* names[] = {"first moments", "second moments", "8-bit first moments", "8-bit second moments",
                               "8-bit moments' absmax values"};
        int k = 0;
        for (Buffer* b : moment_buffers(t.opt)) {
            const uint64_t bytes = r.get<uint64_t>(names[k]);
            if (bytes != b->bytes)
                fail("%s: holds %llu bytes of %s where this run's optimizer has %zu (mismatched shapes)", path.c_str(),
                     (unsigned long long)bytes, names[k], b->bytes);
            std::vector<uint8_t> data(bytes);
            r.read(data.data(), data.size(), names[k++]);
            if (bytes) b->ops->to_device(b->p, data.data(), data.size());
        }
    }
    if (r.remaining()) fail("%s: %zu unexpected bytes at the end", path.c_str(), r.remaining());
    build_order(t);
}

static std::string weights_file(const Trainer& t) { return t.cfg.method == Method::Full ? "model.bin" : "adapter.lora"; }

static int checkpoint_step(const fs::path& p) {
    std::string name = p.filename().string();
    if (name.rfind("ckpt-", 0) != 0 || name.size() != 13) return -1;
    for (size_t i = 5; i < name.size(); i++)
        if (name[i] < '0' || name[i] > '9') return -1;
    return std::stoi(name.substr(5));
}

static std::vector<std::pair<int, std::string>> list_checkpoints(const std::string& out_dir) {
    std::vector<std::pair<int, std::string>> found;
    std::error_code ec;
    if (!fs::is_directory(out_dir, ec)) return found;
    for (const auto& e : fs::directory_iterator(out_dir, ec)) {
        int s = checkpoint_step(e.path());
        if (s >= 0 && fs::exists(e.path() / "train.state")) found.push_back({s, e.path().string()});
    }
    std::sort(found.begin(), found.end());
    return found;
}

std::string find_latest_checkpoint(const std::string& out_dir) {
    auto found = list_checkpoints(out_dir);
    return found.empty() ? "" : found.back().second;
}

int trainer_remove_checkpoints(const std::string& out_dir) {
    auto found = list_checkpoints(out_dir);
    std::error_code ec;
    for (const auto& c : found) fs::remove_all(c.second, ec);
    fs::remove_all(fs::path(out_dir) / "best", ec);
    return (int)found.size();
}

bool trainer_note_eval(Trainer& t, double val_loss) {
    if (!std::isfinite(val_loss)) fail("validation loss is %g at step %d: the weights or the data have non-finite values", val_loss, t.step);
    if (t.best_step >= 0 && !(val_loss < t.best_val)) {
        t.evals_since_best++;
        return false;
    }
    t.best_val = val_loss, t.best_step = t.step, t.evals_since_best = 0;
    return true;
}

bool trainer_should_stop(const Trainer& t) {
    return t.cfg.early_stopping > 0 && t.evals_since_best >= t.cfg.early_stopping && t.step < t.total_steps;
}

// A fresh directory `tmp` holding the trainable weights (adapter.lora or model.bin).
static void save_weights_into(Trainer& t, const fs::path& tmp) {
    std::error_code ec;
    fs::create_directories(t.cfg.out_dir, ec);
    fs::remove_all(tmp, ec);
    if (!fs::create_directory(tmp, ec)) fail("%s: cannot create checkpoint directory: %s", tmp.c_str(), ec.message().c_str());
    std::string wpath = (tmp / weights_file(t)).string();
    model_download(t.model);
    if (t.cfg.method == Method::Full) model_save(wpath, t.model.cfg, t.model.params, DType::F32);
    else lora_save(wpath, t.model.cfg, t.model.lora, t.model.adapters);
}

// Renames a complete `tmp` to `dir`, replacing it: a kill leaves the old one, or the new one
// complete (under the .tmp name if the kill came between removing the old and the rename), never half.
static void rename_into_place(const fs::path& tmp, const fs::path& dir) {
    std::error_code ec;
    fs::remove_all(dir, ec);
    fs::rename(tmp, dir, ec);
    if (ec) fail("%s: cannot rename checkpoint into place: %s", dir.c_str(), ec.message().c_str());
}

std::string trainer_save_best(Trainer& t) {
    fs::path dir = fs::path(t.cfg.out_dir) / "best", tmp = fs::path(t.cfg.out_dir) / "best.tmp";
    save_weights_into(t, tmp);
    char text[128];
    snprintf(text, sizeof text, "step %d\nval_loss %.9g\n", t.best_step, t.best_val);
    write_file_atomic((tmp / "best.txt").string(), text);
    rename_into_place(tmp, dir);
    return dir.string();
}

// checksums.txt of a checkpoint: "FILE HEX" a line for its weights and its state, written last, so
// that a resume can tell a file that changed after it was saved (a bad disk, a broken copy) from a
// good one before it parses either. Checkpoints without one (older builds) load unchecked.
static const char* const kChecksums = "checksums.txt";

static void write_checksums(const Trainer& t, const fs::path& dir) {
    std::string text;
    for (const std::string& file : {weights_file(t), std::string("train.state")})
        text += strf("%s %016llx\n", file.c_str(), (unsigned long long)checksum64_file((dir / file).string()));
    write_file_atomic((dir / kChecksums).string(), text);
}

static void verify_checksums(const fs::path& dir) {
    const fs::path list = dir / kChecksums;
    if (!fs::exists(list)) return;
    auto what_to_do = [&]() -> std::string {  // (only for a failure: it lists the other checkpoints)
        const auto found = list_checkpoints(dir.parent_path().string());
        if (!found.empty() && found.front().first < checkpoint_step(dir))
            return "delete " + dir.string() + " to resume from the checkpoint before it";
        return "no earlier checkpoint is left in " + dir.parent_path().string() + ": start the run again (--overwrite)";
    };
    std::istringstream in(read_file(list.string()));
    for (std::string file, hex; in >> file >> hex;) {
        const std::string path = (dir / file).string();
        if (!file_exists(path)) fail("%s: missing (%s lists it): %s", path.c_str(), list.c_str(), what_to_do().c_str());
        if (strf("%016llx", (unsigned long long)checksum64_file(path)) != hex)
            fail("%s: does not match its checksum in %s: the file changed after it was saved (a disk or copy "
                 "error); %s", path.c_str(), list.c_str(), what_to_do().c_str());
    }
}

std::string trainer_save_checkpoint(Trainer& t) {
    char name[32];
    snprintf(name, sizeof name, "ckpt-%08d", t.step);
    fs::path dir = fs::path(t.cfg.out_dir) / name, tmp = fs::path(t.cfg.out_dir) / (std::string(name) + ".tmp");
    // What a save cut short left (a kill, a full disk) is never read, but holds up to a whole model
    std::error_code ec;
    for (const auto& e : fs::directory_iterator(t.cfg.out_dir, ec))
        if (e.path().extension() == ".tmp" && checkpoint_step(e.path().parent_path() / e.path().stem()) >= 0)
            fs::remove_all(e.path(), ec);
    save_weights_into(t, tmp);
    save_state((tmp / "train.state").string(), t);
    write_checksums(t, tmp);
    rename_into_place(tmp, dir);
    if (t.cfg.keep_last > 0) {
        auto found = list_checkpoints(t.cfg.out_dir);
        for (size_t i = 0; i + t.cfg.keep_last < found.size(); i++) fs::remove_all(found[i].second, ec);
    }
    return dir.string();
}

void trainer_load_checkpoint(Trainer& t, const std::string& dir) {
    verify_checksums(dir);
    load_state((fs::path(dir) / "train.state").string(), t);
    std::string wpath = (fs::path(dir) / weights_file(t)).string();
    if (t.cfg.method == Method::Full) {
        ModelConfig cfg;
        std::vector<float> params;
        model_load(wpath, cfg, params);
        if (cfg.hash() != t.model.cfg.hash()) fail("%s: the checkpoint's model shape differs from the loaded model", wpath.c_str());
        t.model.params = std::move(params);
    } else {
        LoraConfig lc;
        std::vector<float> adapters;
        lora_load(wpath, t.model.cfg, lc, adapters);
        model_set_lora(t.model, lc, std::move(adapters));
    }
    model_upload(t.model, *t.ops, true, offloaded(t));
    // The upload rounded the BF16 weights to nearest; the run being resumed had them rounded
    // stochastically by its last step.
    if (uint64_t key = t.step > 0 ? sr_key(t, t.step - 1) : 0)
        round_compute_copy(*t.ops, model_masters(t.model, *t.ops), model_compute_copy(t.model, *t.ops),
                           t.model.trainable_tensors(), t.cfg.optim, key);
    model_put_token_rows(t.model, *t.ops);  // the tables as the (rounded) copy has the rows
}
