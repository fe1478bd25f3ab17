// Files: exact resume from a checkpoint, and every reader refusing a bad file with a message that
// names the file and the problem.
#include <climits>
#include <cstring>
#include <filesystem>

#include "model/generate.h"
#include "model/trainer.h"
#include "tests/test_util.h"

using std::vector;
namespace fs = std::filesystem;


static ModelConfig tiny() {
    ModelConfig c = config_preset("tiny");
    c.n_layers = 2;
    c.dim = 32; c.head_dim = 8; c.ffn_dim = 48; c.vocab_size = 300;
    return c;
}

static vector<Example> examples(int n) {
    Rng r(3);
    vector<Example> ex(n);
    for (Example& e : ex) {
        int len = 5 + (int)(r.next_u64() % 20);
        for (int t = 0; t < len; t++) {
            e.tokens.push_back((int)(r.next_u64() % 300));
            e.weights.push_back(t > len / 3 ? 1.0f : 0.0f);
        }
    }
    return ex;
}

// A fresh trainer: same model, data and settings every time.
static void setup(Trainer& t, Method method, const std::string& out, float neftune_alpha = 0.0f, bool eight_bit = false,
                  bool dora = false, bool grouped = false, uint32_t saves = 0, bool tokens = false) {
    model_init_random(t.model, tiny(), 1);
    TrainConfig tc;
    tc.method = method;
    tc.lora.rank = 4;
    tc.lora.dropout = 0.1f;  // exercises the dropout keys across the resume
    tc.lora.use_dora = dora;
    tc.lora.save_modules = lora_saves(t.model.cfg, saves);
    tc.optim.embedding_lr = saves ? 1e-3f : 0.0f;
    if (tokens) tc.lora.tokens[LORA_TABLE_EMBED] = {3, 299, 7, 11};  // (the tiny model is tied: one list)
    if (method == Method::Lora) model_add_lora(t.model, tc.lora, tc.seed);
    tc.batch.batch_size = 3;
    tc.batch.max_seq_len = 32;
    tc.grad_accum = 2;
    tc.max_steps = 10;
    tc.optim.lr = 5e-3f;
    tc.optim.warmup_steps = 2;
    tc.optim.weight_decay = 0.01f;
    tc.out_dir = out;
    tc.keep_last = 1;
    tc.neftune_alpha = neftune_alpha;
    tc.optim.eight_bit = eight_bit;
    tc.group_by_length = grouped;
    t.train = examples(13);  // not a multiple of the batch: the run crosses epoch boundaries
    trainer_init(t, tc, cpu_ops());
}

// Full fine-tuning with 8-bit moments: the tiny model's embedding (9600 parameters) in codes, the
// rest in FP32, both through the checkpoint.
TEST_CASE("resume: 10 steps equal 4 steps + kill + resume 6 steps, bit for bit (LoRA with and without NEFTune, full, 8-bit moments, DoRA, grouped by length, saved modules, token rows)") {
    struct Case { Method method; float neftune; bool eight_bit; const char* name; bool dora, grouped; uint32_t saves = 0; bool tokens = false; };
    for (Case k : {Case{Method::Lora, 0.0f, false, "resume-lora", false, false},
                   Case{Method::Full, 0.0f, false, "resume-full", false, false},
                   Case{Method::Lora, 5.0f, false, "resume-neftune", false, false},
                   Case{Method::Full, 0.0f, true, "resume-adamw8bit", false, false},
                   Case{Method::Lora, 0.0f, false, "resume-dora", true, false},
                   Case{Method::Lora, 0.0f, false, "resume-grouped", false, true},
                   Case{Method::Lora, 0.0f, false, "resume-saved", false, false, LORA_SAVE_EMBED},
                   Case{Method::Lora, 0.0f, false, "resume-tokens", false, false, 0, true}}) {
        const Method method = k.method;
        CAPTURE(k.name);
        std::string dir = temp_dir(k.name);
        Trainer full;
        setup(full, method, dir + "/a", k.neftune, k.eight_bit, k.dora, k.grouped, k.saves, k.tokens);
        vector<double> losses;
        while (full.step < full.total_steps) losses.push_back(trainer_step(full).loss);

        {
            Trainer first;
            setup(first, method, dir + "/b", k.neftune, k.eight_bit, k.dora, k.grouped, k.saves, k.tokens);
            for (int s = 0; s < 4; s++) CHECK(trainer_step(first).loss == losses[s]);
            trainer_save_checkpoint(first);
            trainer_step(first);  // progress after the checkpoint is lost with the "kill"
        }
        Trainer second;
        setup(second, method, dir + "/b", k.neftune, k.eight_bit, k.dora, k.grouped, k.saves, k.tokens);
        std::string ckpt = find_latest_checkpoint(dir + "/b");
        REQUIRE(ckpt == dir + "/b/ckpt-00000004");
        trainer_load_checkpoint(second, ckpt);
        CHECK(second.step == 4);
        for (int s = 4; s < 10; s++) CHECK(trainer_step(second).loss == losses[s]);
        CHECK(memcmp(full.model.trainable(), second.model.trainable(), full.model.num_trainable() * sizeof(float)) == 0);
        CHECK(full.model.params == second.model.params);  // (with token rows: the tables as trained)
        CHECK(full.opt.v.bytes == second.opt.v.bytes);
        CHECK(memcmp(full.opt.v.p, second.opt.v.p, full.opt.v.bytes) == 0);
        CHECK(full.opt.eight_bit() == k.eight_bit);
        CHECK(full.opt.m8.bytes == (k.eight_bit ? 9600u : 0u));
        CHECK(memcmp(full.opt.m8.p, second.opt.m8.p, full.opt.m8.bytes) == 0);
        CHECK(memcmp(full.opt.absmax.p, second.opt.absmax.p, full.opt.absmax.bytes) == 0);
        CHECK(second.model.lora.use_dora == k.dora);
        CHECK((second.model.lora_layout.embed != SIZE_MAX) == (k.saves != 0));
        CHECK(second.model.lora.has_tokens() == k.tokens);
        if (k.grouped) CHECK(epoch_padding(full, 0, true) < epoch_padding(full, 0, false));
    }
}

// ./train's sample evaluation generates between steps in the workspace's memory (train.cu): the
// workspace is released, answers are generated within its bytes, and it is made again. Training
// then goes on exactly as without the pause, and the memory peak stays what the steps hold.
TEST_CASE("generating in the released workspace between steps: same training, no higher memory peak") {
    std::string dir = temp_dir("sample-pause");
    Trainer plain, paused;
    setup(plain, Method::Lora, dir + "/a");
    setup(paused, Method::Lora, dir + "/b");
    for (int s = 0; s < 3; s++) CHECK(trainer_step(paused).loss == trainer_step(plain).loss);
    const Ops& ops = cpu_ops();
    const size_t held = ops.mem_stats().total(), ws = paused.ws.bytes();
    ops.reset_peak();
    CHECK(trainer_release_workspace(paused) == ws);
    CHECK(ops.mem_stats().total() == held - ws);
    SampleOptions so;
    so.max_new_tokens = 8;
    const std::vector<std::vector<int32_t>> prompts = {{5, 6, 7}, {8, 9}, {10, 11, 12, 13}};
    REQUIRE(generate_bytes(paused.model, prompts, so, ops.act_size) <= ws);
    CHECK(generate(paused.model, prompts, so, {}).size() == 3);
    trainer_restore_workspace(paused);
    CHECK(paused.ws.bytes() == ws);
    CHECK(ops.mem_stats().peak_total <= held);
    while (plain.step < plain.total_steps) CHECK(trainer_step(paused).loss == trainer_step(plain).loss);
}

TEST_CASE("checkpoints: keep-last prunes, a half-written .tmp directory is never picked") {
    std::string dir = temp_dir("prune");
    Trainer t;
    setup(t, Method::Lora, dir);
    for (int s = 0; s < 3; s++) {
        trainer_step(t);
        trainer_save_checkpoint(t);
    }
    fs::create_directories(dir + "/ckpt-00000009.tmp");  // a save killed midway
    fs::create_directories(dir + "/best.tmp");           // may be a complete best: see trainer_save_best
    CHECK(find_latest_checkpoint(dir) == dir + "/ckpt-00000003");
    CHECK(!fs::exists(dir + "/ckpt-00000002"));  // keep_last = 1
    CHECK(find_latest_checkpoint(dir + "/nothing-here") == "");
    trainer_step(t);
    trainer_save_checkpoint(t);  // the next save clears what the killed one left
    CHECK(!fs::exists(dir + "/ckpt-00000009.tmp"));
    CHECK(fs::exists(dir + "/best.tmp"));
    CHECK(find_latest_checkpoint(dir) == dir + "/ckpt-00000004");
}

TEST_CASE("early stopping and the best evaluation: counted, kept, and carried by checkpoints") {
    std::string dir = temp_dir("best");
    Trainer t;
    setup(t, Method::Lora, dir);
    const std::string plain = t.cfg.signature();
    t.cfg.early_stopping = 2, t.cfg.eval_every = 2;
    CHECK(t.cfg.signature() == plain + " early_stop=2/2");  // off: the signature older checkpoints have
    // evaluations at steps 2, 4, 6, 8: 5.0, then 4.0 (best), then two that do not beat it (a tie does not)
    const double losses[] = {5.0, 4.0, 4.0, 4.5};
    const bool best[] = {true, true, false, false};
    std::vector<float> at_best;
    for (int k = 0; k < 4; k++) {
        trainer_step(t);
        t.step = 2 * (k + 1);
        CHECK(!trainer_should_stop(t));
        CHECK(trainer_note_eval(t, losses[k]) == best[k]);
        if (best[k]) {
            trainer_save_best(t);
            at_best.assign(t.model.trainable(), t.model.trainable() + t.model.num_trainable());
        }
    }
    CHECK(t.best_step == 4);
    CHECK(t.best_val == 4.0);
    CHECK(t.evals_since_best == 2);
    CHECK(trainer_should_stop(t));
    // out_dir/best holds the weights of step 4, not the last ones
    LoraConfig lc;
    vector<float> kept;
    lora_load(dir + "/best/adapter.lora", t.model.cfg, lc, kept);
    CHECK(kept == at_best);
    CHECK(read_file(dir + "/best/best.txt") == "step 4\nval_loss 4\n");
    CHECK(!fs::exists(dir + "/best.tmp"));
    // a resumed run knows it has stopped
    trainer_save_checkpoint(t);
    Trainer r;
    setup(r, Method::Lora, dir);
    r.cfg.early_stopping = 2, r.cfg.eval_every = 2;
    trainer_load_checkpoint(r, find_latest_checkpoint(dir));
    CHECK(r.best_step == 4);
    CHECK(r.best_val == 4.0);
    CHECK(trainer_should_stop(r));
}

TEST_CASE("a version-1 train.state (before the best evaluation was kept) still resumes") {
    std::string dir = temp_dir("state-v1");
    Trainer a;
    setup(a, Method::Lora, dir);
    trainer_step(a);
    a.best_step = 7;  // what version 1 does not have: must come back as "none"
    const std::string ckpt = trainer_save_checkpoint(a), path = ckpt + "/train.state";
    // version 2 = version 1 + (f64 best loss, i32 best step, i32 evaluations since) after "tokens seen";
    // version 3 writes each moment buffer's byte count before it (m, v, and three empty 8-bit ones)
    std::string bytes = read_file(path);
    uint32_t sig_len;
    memcpy(&sig_len, bytes.data() + 8, 4);
    size_t best_at = 12 + sig_len + 4 + 4 + 8 + 8 + 4 + 8;
    bytes.erase(best_at, 16);
    uint64_t m_bytes;
    memcpy(&m_bytes, bytes.data() + best_at + 8, 8);  // after the moment count
    bytes.erase(best_at + 8, 8);                      // m's byte count
    bytes.erase(best_at + 8 + m_bytes, 8);            // v's
    bytes.erase(bytes.size() - 24);                   // the empty 8-bit buffers' counts
    const uint32_t v1 = 1;
    memcpy(&bytes[4], &v1, 4);
    fs::remove(ckpt + "/checksums.txt");  // version-1 checkpoints had none
    FILE* f = fopen(path.c_str(), "wb");
    fwrite(bytes.data(), 1, bytes.size(), f);
    fclose(f);
    Trainer b;
    setup(b, Method::Lora, dir);
    trainer_load_checkpoint(b, ckpt);
    CHECK(b.step == 1);
    CHECK(b.best_step == -1);
    CHECK(b.evals_since_best == 0);
    CHECK(trainer_step(b).loss == trainer_step(a).loss);  // and it continues the same run
}

// Rewrites a checkpoint's settings string without `field` and what follows it, as the builds
// before that field wrote it.
static void drop_signature_from(const std::string& ckpt, const char* field) {
    const std::string path = ckpt + "/train.state";
    std::string bytes = read_file(path);
    uint32_t sig_len;
    memcpy(&sig_len, bytes.data() + 8, 4);
    const std::string sig = bytes.substr(12, sig_len);
    const size_t at = sig.find(field);
    REQUIRE(at != std::string::npos);
    bytes.erase(12 + at, sig_len - at);
    const uint32_t old_len = (uint32_t)at;
    memcpy(&bytes[8], &old_len, 4);
    fs::remove(ckpt + "/checksums.txt");
    FILE* f = fopen(path.c_str(), "wb");
    fwrite(bytes.data(), 1, bytes.size(), f);
    fclose(f);
}

TEST_CASE("a checkpoint from before the base fingerprint resumes") {
    std::string dir = temp_dir("state-nobase");
    Trainer a;
    setup(a, Method::Lora, dir);
    trainer_step(a);
    const std::string ckpt = trainer_save_checkpoint(a);
    drop_signature_from(ckpt, " base=");
    Trainer b;
    setup(b, Method::Lora, dir);
    trainer_load_checkpoint(b, ckpt);
    CHECK(b.step == 1);
    CHECK(trainer_step(b).loss == trainer_step(a).loss);
}

TEST_CASE("a checkpoint from before the data hash resumes, but not with --grad-accum > 1 (steps then crossed epochs)") {
    for (int accum : {1, 2}) {
        std::string dir = temp_dir("state-nodata");
        Trainer a;
        setup(a, Method::Lora, dir);
        a.cfg.grad_accum = accum;
        trainer_step(a);
        const std::string ckpt = trainer_save_checkpoint(a);
        drop_signature_from(ckpt, " data=");
        Trainer b;
        setup(b, Method::Lora, dir);
        b.cfg.grad_accum = accum;
        INFO("grad_accum " << accum);
        if (accum == 1) {
            CHECK_NOTHROW(trainer_load_checkpoint(b, ckpt));
            CHECK(b.step == 1);
        } else {
            CHECK_THROWS_WITH(trainer_load_checkpoint(b, ckpt), doctest::Contains("comes from an earlier build"));
        }
    }
}

TEST_CASE("resume refuses a checkpoint made with other settings") {
    std::string dir = temp_dir("mismatch");
    Trainer a;
    setup(a, Method::Lora, dir);
    trainer_step(a);
    std::string ckpt = trainer_save_checkpoint(a);
    Trainer b;
    setup(b, Method::Lora, dir);
    b.cfg.optim.lr = 1.0f;
    CHECK_THROWS_WITH(trainer_load_checkpoint(b, ckpt), doctest::Contains("other settings"));
    b.cfg.optim.lr = a.cfg.optim.lr;
    b.cfg.batch.padding = Padding::max_length;  // enums are named in the message
    CHECK_THROWS_WITH(trainer_load_checkpoint(b, ckpt), doctest::Contains("(padding: longest -> max_length)"));
    b.cfg.batch.padding = a.cfg.batch.padding;
    b.cfg.neftune_alpha = 5.0f;  // another noise, another run (its key is only in runs that have it)
    CHECK_THROWS_WITH(trainer_load_checkpoint(b, ckpt), doctest::Contains("(neftune: 0 (off) -> 5)"));
    b.cfg.neftune_alpha = 0.0f;
    b.cfg.optim.eight_bit = true;
    CHECK_THROWS_WITH(trainer_load_checkpoint(b, ckpt), doctest::Contains("(optimizer: adamw -> adamw8bit)"));
    b.cfg.optim.eight_bit = false;
    b.cfg.optim.lora_b_lr_ratio = 16.0f;
    CHECK_THROWS_WITH(trainer_load_checkpoint(b, ckpt), doctest::Contains("(loraplus: 1 (off) -> 16)"));
    b.cfg.optim.lora_b_lr_ratio = 1.0f;
    b.cfg.optim.schedule = Schedule::wsd;  // its cooldown's length is part of the schedule
    CHECK_THROWS_WITH(trainer_load_checkpoint(b, ckpt), doctest::Contains("decay: (none) -> 0.1, schedule: cosine -> wsd"));
    b.cfg.optim.schedule = a.cfg.optim.schedule;
    b.cfg.optim.embedding_lr = 1e-4f;
    CHECK_THROWS_WITH(trainer_load_checkpoint(b, ckpt), doctest::Contains("(embedding_lr: as --lr -> 0.0001)"));
    b.cfg.optim.embedding_lr = 0.0f;
    b.cfg.lora.save_modules = LORA_SAVE_EMBED | LORA_SAVE_LM_HEAD;
    CHECK_THROWS_WITH(trainer_load_checkpoint(b, ckpt), doctest::Contains("(save: none -> embed_tokens,lm_head)"));
    b.cfg.lora.save_modules = 0;
    // Other data with the same flags (another file, prompt loss weight, template, truncation): the
    // examples differ, and so does the checkpoint's data hash.
    for (int change = 0; change < 2; change++) {
        Trainer c;
        model_init_random(c.model, tiny(), 1);
        c.train = examples(13);
        if (change == 0) c.train[5].weights[1] = 0.5f;  // a prompt token weighs something now
        else c.val = examples(2);                       // held-out data where there was none
        TrainConfig tc = a.cfg;
        model_add_lora(c.model, tc.lora, tc.seed);
        trainer_init(c, tc, cpu_ops());
        CHECK_THROWS_WITH(trainer_load_checkpoint(c, ckpt), doctest::Contains("data: "));
        CHECK_THROWS_WITH(trainer_load_checkpoint(c, ckpt), doctest::Contains("--prompt-loss-weight"));
    }
    // The same settings and data on another model of the same shape (a base model and its chat tune)
    Trainer other;
    model_init_random(other.model, tiny(), 2);
    other.train = a.train;
    other.val = a.val;
    model_add_lora(other.model, a.cfg.lora, a.cfg.seed);
    trainer_init(other, a.cfg, cpu_ops());
    CHECK_THROWS_WITH(trainer_load_checkpoint(other, ckpt), doctest::Contains("base: "));
    CHECK_THROWS_WITH(trainer_load_checkpoint(other, ckpt), doctest::Contains("trained on another model"));
    // The same preset drawn from another --seed: the seed is named as the cause, not another model.
    Trainer reseeded;
    TrainConfig rc = a.cfg;
    rc.seed = a.cfg.seed + 1;
    model_init_random(reseeded.model, tiny(), rc.seed);
    reseeded.train = a.train;
    reseeded.val = a.val;
    model_add_lora(reseeded.model, rc.lora, rc.seed);
    trainer_init(reseeded, rc, cpu_ops());
    const std::string seeded = error_of([&] { trainer_load_checkpoint(reseeded, ckpt); });
    CHECK(seeded.find("a --preset's random weights depend on --seed: with --preset, pass the checkpoint's --seed; "
                      "with --model, this checkpoint was trained on another model") != std::string::npos);
    // The same model as QLoRA: its fingerprint samples the NF4 codes, so it changes too; the message
    // names the method, not another model
    Trainer quantized;
    model_init_random(quantized.model, tiny(), 1);
    model_quantize_nf4(quantized.model);
    quantized.train = a.train;
    quantized.val = a.val;
    model_add_lora(quantized.model, a.cfg.lora, a.cfg.seed);
    TrainConfig qc = a.cfg;
    qc.method = Method::Qlora;
    trainer_init(quantized, qc, cpu_ops());
    CHECK_THROWS_WITH(trainer_load_checkpoint(quantized, ckpt), doctest::Contains("method: lora -> qlora"));
    const std::string why = error_of([&] { trainer_load_checkpoint(quantized, ckpt); });
    CHECK(why.find("trained on another model") == std::string::npos);
    Trainer same;
    setup(same, Method::Lora, dir);
    CHECK_NOTHROW(trainer_load_checkpoint(same, ckpt));
}

// A LoRA trainer over n examples (batch 1) that takes `epochs` epochs in steps of grad_accum micro-batches.
static void setup_epochs(Trainer& t, int n, float epochs, int grad_accum) {
    model_init_random(t.model, tiny(), 1);
    TrainConfig tc;
    tc.method = Method::Lora;
    tc.lora.rank = 4;
    model_add_lora(t.model, tc.lora, tc.seed);
    tc.batch.batch_size = 1;
    tc.grad_accum = grad_accum;
    tc.epochs = epochs;
    t.train = examples(n);
    trainer_init(t, tc, cpu_ops());
}

TEST_CASE("epochs with gradient accumulation: an epoch's last step takes what is left of it, no example twice") {
    Trainer t;
    setup_epochs(t, 4, 2.0f, 3);  // 4 micro-batches an epoch: steps of 3 and 1
    CHECK(t.total_steps == 4);
    double epoch_tokens = 0;
    for (const Example& e : t.train) epoch_tokens += (double)e.size();
    StepResult s1 = trainer_step(t), s2 = trainer_step(t);
    CHECK(s1.tokens + s2.tokens == epoch_tokens);
    CHECK(t.epoch == 0);
    StepResult s3 = trainer_step(t), s4 = trainer_step(t);
    CHECK(s3.tokens + s4.tokens == epoch_tokens);
    CHECK(t.epoch == 1);
    Trainer h;
    setup_epochs(h, 4, 1.5f, 3);  // one epoch and half the steps of the next, rounded up
    CHECK(h.total_steps == 3);
    // Fractional epochs as typed: 0.1 of 10 steps is 1 step (the float 0.1f is a little more).
    for (auto [epochs, steps] : std::vector<std::pair<float, int>>{{0.1f, 1}, {0.3f, 3}, {1.1f, 11}, {2.2f, 22}, {0.05f, 1}}) {
        Trainer f;
        setup_epochs(f, 10, epochs, 1);
        INFO("--epochs " << epochs);
        CHECK(f.total_steps == steps);
    }
}

TEST_CASE("resume refuses a checkpoint file that changed after it was saved (checksums.txt)") {
    std::string dir = temp_dir("checksums");
    Trainer a;
    setup(a, Method::Lora, dir);
    trainer_step(a);
    const std::string ckpt = trainer_save_checkpoint(a);
    for (const char* file : {"adapter.lora", "train.state"}) {
        const std::string path = ckpt + "/" + file, good = read_file(path);
        std::string bad = good;
        bad[bad.size() / 2] ^= 0x10;  // one flipped bit, in the data: the format's own checks pass it
        write_file_atomic(path, bad);
        Trainer b;
        setup(b, Method::Lora, dir);
        INFO(file);
        CHECK_THROWS_WITH(trainer_load_checkpoint(b, ckpt), doctest::Contains((path + ": does not match its checksum").c_str()));
        // the only checkpoint: there is none before it to go back to
        CHECK_THROWS_WITH(trainer_load_checkpoint(b, ckpt), doctest::Contains("no earlier checkpoint is left"));
        write_file_atomic(path, good);
    }
    Trainer c;
    setup(c, Method::Lora, dir);
    trainer_load_checkpoint(c, ckpt);  // intact again: loads
    CHECK(c.step == 1);
    c.cfg.keep_last = 0;  // with one before it, the message says to go back to that
    trainer_step(c);
    const std::string second = trainer_save_checkpoint(c);
    write_file_atomic(second + "/train.state", "x");
    CHECK_THROWS_WITH(trainer_load_checkpoint(c, second),
                      doctest::Contains(("delete " + second + " to resume from the checkpoint before it").c_str()));
}

// Writes `bytes` to a file and expects `load` to fail with a message containing the path and `what`.
static void expect_rejected(const std::string& path, const std::string& bytes, const std::function<void()>& load,
                            const char* what) {
    FILE* f = fopen(path.c_str(), "wb");
    fwrite(bytes.data(), 1, bytes.size(), f);
    fclose(f);
    try {
        load();
        FAIL("no error for " << what);
    } catch (const std::runtime_error& e) {
        std::string msg = e.what();
        INFO(msg);
        CHECK(msg.find(path) != std::string::npos);
        CHECK(msg.find(what) != std::string::npos);
    }
}

TEST_CASE("readers reject truncated files, wrong magic, wrong version, mismatched shapes") {
    std::string dir = temp_dir("readers");
    ModelConfig c = tiny();
    vector<float> p;
    model_init_random(c, p, 2);

    SUBCASE("model .bin") {
        std::string good = dir + "/good.bin", bad = dir + "/bad.bin";
        model_save(good, c, p, DType::BF16);
        std::string bytes = read_file(good);
        ModelConfig c2;
        vector<float> p2;
        auto load = [&] { model_load(bad, c2, p2); };
        model_load(good, c2, p2);  // the good one loads, and BF16 is within rounding
        CHECK(std::fabs(p2[100] - p[100]) <= std::fabs(p[100]) * 1e-2f);
        expect_rejected(bad, bytes.substr(0, bytes.size() / 2), load, "truncated");
        expect_rejected(bad, "XXXX" + bytes.substr(4), load, "bad magic");
        std::string v = bytes;
        v[4] = 9;
        expect_rejected(bad, v, load, "version 9");
        std::string s = bytes;
        int32_t more_layers = c.n_layers + 1;
        memcpy(&s[8 + offsetof(ModelConfig, n_layers)], &more_layers, 4);  // header says 3 layers, data holds 2
        expect_rejected(bad, s, load, "tensors");
        expect_rejected(bad, bytes + "junk", load, "unexpected bytes");
        expect_rejected(bad, "", load, "truncated");
        // Corrupt sizes fail before anything is allocated or built for them (found by fuzzing):
        auto with = [&](std::initializer_list<std::pair<size_t, int32_t>> fields) {
            std::string b = bytes;
            for (auto [offset, v] : fields) memcpy(&b[8 + offset], &v, 4);
            return b;
        };
        // 200 million layers: on the tensor count, not after building a layout of 2 billion tensors
        expect_rejected(bad, with({{offsetof(ModelConfig, n_layers), 200000000}}), load, "tensors but its config");
        // a vocabulary of 16 million: naming the first tensor the file cannot hold, before allocating 2 GB
        expect_rejected(bad, with({{offsetof(ModelConfig, vocab_size), 16000000}}), load, "model.embed_tokens.weight needs");
        // a billion: more token ids than the kernels take (kMaxTokenIds)
        expect_rejected(bad, with({{offsetof(ModelConfig, vocab_size), 1000000000}}), load, "token ids the kernels support");
        // n_heads * head_dim and the parameter count past their integer types
        expect_rejected(bad, with({{offsetof(ModelConfig, n_heads), 1 << 28}}), load, "times head_dim");
        expect_rejected(bad, with({{offsetof(ModelConfig, dim), INT32_MAX}, {offsetof(ModelConfig, ffn_dim), INT32_MAX}}), load,
                        "parameters, more than");
    }
    SUBCASE("adapter .lora") {
        LoraConfig lc;
        vector<float> a, a2;
        lora_init(c, lc, a, 1);
        std::string good = dir + "/good.lora", bad = dir + "/bad.lora";
        lora_save(good, c, lc, a);
        std::string bytes = read_file(good);
        LoraConfig lc2;
        auto load = [&] { lora_load(bad, c, lc2, a2); };
        expect_rejected(bad, bytes.substr(0, bytes.size() - 7), load, "truncated");
        expect_rejected(bad, "ABCD" + bytes.substr(4), load, "bad magic");
        std::string v = bytes;
        v[4] = 7;
        expect_rejected(bad, v, load, "version 7");
        ModelConfig other = c;
        other.dim = 64;
        lora_save(good, other, lc, vector<float>(lora_layout(other, lc).total));
        expect_rejected(bad, read_file(good), load, "another base model");
        // rank 65536 on every target, its adapter count to match, no weights: truncated, before sizing
        // a 240 MB buffer for them
        LoraConfig big = lc;
        big.rank = 65536;
        big.targets = lora_parse_targets("all");
        uint64_t n = lora_layout(c, big).total;
        const size_t scalars = sizeof(LoraScalars), no_tokens = 8, no_layers = 4;  // counts of 0
        std::string header = bytes.substr(0, 8) + std::string((const char*)static_cast<LoraScalars*>(&big), scalars) +
                             bytes.substr(8 + scalars, 12 + no_tokens + no_layers) + std::string((const char*)&n, 8);
        expect_rejected(bad, header, load, "truncated");
        // A file of an older version from a version-5 file without trainable tokens or chosen layers:
        // its LoraScalars cut to `config` bytes, no token counts before version 4, no layer count before 5.
        auto older = [&](const std::string& v5, uint32_t version, size_t config) {
            return v5.substr(0, 4) + std::string((const char*)&version, 4) + v5.substr(8, config) +
                   v5.substr(8 + scalars, 12) + (version >= 4 ? v5.substr(8 + scalars + 12, no_tokens) : "") +
                   v5.substr(8 + scalars + 12 + no_tokens + no_layers);
        };
        // A version-1 file (before DoRA: its LoraConfig without use_dora) still loads.
        LoraConfig rs = lc;
        rs.use_rslora = 1;
        lora_save(good, c, rs, a);
        bytes = read_file(good);
        const size_t v1_config = 5 * 4;  // rank, alpha, dropout, use_rslora, targets
        write_file_atomic(bad, older(bytes, 1, v1_config));
        load();
        CHECK(lc2.rank == rs.rank);
        CHECK(lc2.alpha == rs.alpha);
        CHECK(lc2.use_rslora == 1);
        CHECK(lc2.targets == rs.targets);
        CHECK(lc2.use_dora == 0);
        CHECK(a2 == a);
        // A version-2 file (DoRA, before the saved modules: its LoraConfig without save_modules) too.
        LoraConfig dora = lc;
        dora.use_dora = 1;
        vector<float> da(lora_layout(c, dora).total, 0.5f);
        lora_save(good, c, dora, da);
        bytes = read_file(good);
        write_file_atomic(bad, older(bytes, 2, v1_config + 4));
        load();
        CHECK(lc2.use_dora == 1);
        CHECK(lc2.save_modules == 0);
        CHECK(a2 == da);
        // A version-3 file (before trainable tokens: no token counts) too, and a version-4 file (before
        // the adapted layers: no layer count).
        for (uint32_t version : {3u, 4u}) {
            write_file_atomic(bad, older(bytes, version, scalars));
            load();
            CHECK(lc2.use_dora == 1);
            CHECK(!lc2.has_tokens());
            CHECK(lc2.layers.empty());
            CHECK(a2 == da);
        }
        // Version 5's adapted layers: read back; past the model's layers, out of order: refused.
        LoraConfig some = lc;
        some.layers = {1};
        vector<float> sa(lora_layout(c, some).total, 0.75f);
        CHECK(sa.size() * 2 == lora_layout(c, lc).total);  // one of the two layers
        lora_save(good, c, some, sa);
        const std::string with_layers = read_file(good);
        write_file_atomic(bad, with_layers);
        load();
        CHECK(lc2.layers == vector<int32_t>{1});
        CHECK(a2 == sa);
        const size_t layers_at = 8 + scalars + 12 + no_tokens;  // the count, then the ids
        std::string beyond = with_layers;
        const int32_t two = 2;
        beyond.replace(layers_at + 4, 4, std::string((const char*)&two, 4));
        expect_rejected(bad, beyond, load, "layer 2 is not a layer of the model (0..1)");
        std::string many_layers = with_layers;
        const uint32_t three = 3;
        many_layers.replace(layers_at, 4, std::string((const char*)&three, 4));
        expect_rejected(bad, many_layers, load, "corrupt LoRA config (3 adapted layers of 2)");
        // Version 4's token lists: read back; an id past the vocabulary, a tied model's list for its
        // LM head, a count past the vocabulary: refused.
        LoraConfig tk = lc;
        tk.tokens[LORA_TABLE_EMBED] = {5, 299, 0};
        vector<float> ta(lora_layout(c, tk).total, 0.25f);
        lora_save(good, c, tk, ta);
        bytes = read_file(good);
        write_file_atomic(bad, bytes);
        load();
        CHECK(lc2.tokens[LORA_TABLE_EMBED] == tk.tokens[LORA_TABLE_EMBED]);
        CHECK(lc2.tokens[LORA_TABLE_LM_HEAD].empty());
        CHECK(a2 == ta);
        const size_t ids_at = 8 + scalars + 12 + 4;
        std::string past = bytes;
        const int32_t outside = 300;
        past.replace(ids_at + 4, 4, std::string((const char*)&outside, 4));
        expect_rejected(bad, past, load, "trainable token 300 of embed_tokens is outside the vocabulary");
        std::string head = bytes.substr(0, ids_at - 4) + std::string(4, '\0') + bytes.substr(ids_at - 4, 4) +
                           bytes.substr(ids_at, 12) + bytes.substr(ids_at + 16);
        expect_rejected(bad, head, load, "ties its LM head to its embedding, but trainable tokens are listed for the LM head alone");
        std::string many = bytes;
        const uint32_t huge = 1u << 30;
        many.replace(ids_at - 4, 4, std::string((const char*)&huge, 4));
        expect_rejected(bad, many, load, "corrupt LoRA config (1073741824 trainable tokens of embed_tokens)");
        const uint32_t six = 6;
        write_file_atomic(bad, bytes.substr(0, 4) + std::string((const char*)&six, 4) + bytes.substr(8));
        CHECK(contains(error_of(load), "adapter file version 6 is not supported (this build reads 1 to 5)"));
    }
    SUBCASE("training state") {
        std::string out = dir + "/state";
        Trainer t;
        setup(t, Method::Lora, out);
        trainer_step(t);
        std::string ckpt = trainer_save_checkpoint(t);
        std::string state = ckpt + "/train.state", bytes = read_file(state);
        fs::remove(ckpt + "/checksums.txt");  // the state reader's own checks (older checkpoints have no checksums)
        auto load = [&] { trainer_load_checkpoint(t, ckpt); };
        expect_rejected(state, bytes.substr(0, bytes.size() - 100), load, "truncated");
        expect_rejected(state, "LLMX" + bytes.substr(4), load, "bad magic");
        std::string v = bytes;
        v[4] = 4;
        expect_rejected(state, v, load, "version 4");
    }
}

TEST_CASE("a NaN loss stops the step with a message, before any weight changes") {
    std::string dir = temp_dir("nan");
    Trainer t;
    setup(t, Method::Lora, dir);
    trainer_step(t);
    std::vector<float> before(t.model.trainable(), t.model.trainable() + t.model.num_trainable());
    t.model.params[t.model.off.final_norm] = NAN;
    CHECK_THROWS_WITH(trainer_step(t), doctest::Contains("step 2: the loss is NaN"));
    CHECK(memcmp(before.data(), t.model.trainable(), before.size() * sizeof(float)) == 0);
    CHECK(t.step == 1);
}

TEST_CASE("a diverged run that never reaches NaN (the residual stream's squares overflow) stops with a message") {
    std::string dir = temp_dir("diverged");
    Trainer t;
    setup(t, Method::Lora, dir);
    trainer_step(t);
    // every RMSNorm sees a sum of squares of inf and scales by 0: the logits are 0, the gradient is 0
    const ModelConfig& c = t.model.cfg;
    std::fill_n(t.model.params.begin() + t.model.off.embed, (size_t)c.vocab_size * c.dim, 1e20f);
    CHECK_THROWS_WITH(trainer_step(t), doctest::Contains("step 2: the gradient is exactly 0"));
    CHECK(t.step == 1);
}
