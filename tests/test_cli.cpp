// The programs as a user runs them (`make test` builds them first): what ./train, ./generate,
// ./export and ./check_data do with flags and files that would otherwise lose or spoil work. Each
// case runs the binaries on the tiny random preset (a fraction of a second a run) in a scratch
// folder and checks the exit status and the words of the message.
#include <doctest/doctest.h>

#include <fcntl.h>
#include <sys/file.h>
#include <sys/wait.h>
#include <unistd.h>

#include <cmath>
#include <cstdio>
#include <cstdlib>
#include <filesystem>
#include <regex>
#include <string>

#include "model/util.h"
#include "model/weights.h"
#include "test_cli_util.h"

namespace fs = std::filesystem;

namespace {

// The default model's tokenizer (make fetches it).
const char* const kTok = "models/smollm2-135m-instruct.tok";

// A scratch folder with five training examples of the default task, removed at the end.
struct Scratch {
    fs::path dir;
    std::string data;
    Scratch() {
        char tmpl[] = "/tmp/test_cli_XXXXXX";
        REQUIRE(mkdtemp(tmpl) != nullptr);
        dir = tmpl;
        std::string lines = read_file("data/default/train.jsonl"), five;
        for (size_t at = 0, i = 0; i < 5; i++, at = lines.find('\n', at) + 1) five += lines.substr(at, lines.find('\n', at) - at + 1);
        data = (dir / "d.jsonl").string();
        write_file_atomic(data, five);
    }
    ~Scratch() { fs::remove_all(dir); }
    // ./train on the tiny preset with this data, plus `flags`.
    Run train(const std::string& flags) const {
        return run("./train --preset tiny --data " + data + " --batch-size 2 --eval-samples 0 " + flags);
    }
    std::string out(const char* name) const { return (dir / name).string(); }
    // A tiny random model with SmolLM2's vocabulary at `name` and the real tokenizer beside it.
    std::string real_vocab_model(const char* name) const {
        const std::string model = out(name);
        fs::create_directories(fs::path(model).parent_path());
        REQUIRE(run("./init_model --preset tiny --vocab 49152 -o '" + model + "'").status == 0);
        REQUIRE(run(std::string("cp ") + kTok + " '" + fs::path(model).replace_extension(".tok").string() + "'").status == 0);
        return model;
    }
};

// The cases that need the real tokenizer skip without it (offline it may be missing).
bool have_tokenizer() {
    if (file_exists(kTok)) return true;
    MESSAGE("skipped: " << kTok << " missing (make fetches the default model)");
    return false;
}

}  // namespace

TEST_CASE("cli: a new run refuses an --out with an earlier run's checkpoints; --overwrite, --resume") {
    Scratch s;
    const std::string out = " --save-every 1 --out " + s.out("o");
    REQUIRE(s.train("--max-steps 3" + out).status == 0);
    // Before: keep-last deleted this run's new checkpoints as the oldest steps.
    Run again = s.train("--max-steps 2" + out);
    CHECK(again.status == 1);
    CHECK(has(again, "holds an earlier run's checkpoints"));
    CHECK(has(again, "--overwrite"));
    CHECK(fs::exists(s.out("o/ckpt-00000003")));  // nothing was touched
    Run over = s.train("--max-steps 2 --overwrite" + out);
    CHECK(over.status == 0);
    CHECK(has(over, "removed 2 checkpoint(s)"));
    CHECK(!fs::exists(s.out("o/ckpt-00000003")));
    CHECK(fs::exists(s.out("o/ckpt-00000002")));
    Run done = s.train("--max-steps 2 --resume" + out);  // a finished run: said so, its checkpoint kept
    CHECK(done.status == 0);
    CHECK(has(done, "the run is complete, nothing left to train"));
    CHECK(has(done, ("checkpoint: " + s.out("o/ckpt-00000002")).c_str()));
    // --resume with other settings names what differs, before it looks for weights of another method.
    Run other = s.train("--max-steps 2 --resume --method full" + out);
    CHECK(other.status == 1);
    CHECK(has(other, "made with other settings (lr: 0.0002 -> 2e-05, method: lora -> full)"));
    CHECK(s.train("--max-steps 2 --resume --overwrite" + out).status == 1);
    // --overwrite never deletes what the new run starts from.
    Run from = s.train("--max-steps 4 --overwrite --init-adapter " + s.out("o/ckpt-00000002/adapter.lora") + out);
    CHECK(from.status == 1);
    CHECK(has(from, "which this run starts from"));
    CHECK(fs::exists(s.out("o/ckpt-00000002/adapter.lora")));
}

// After a kill the command line is what a user has lost: `./train --resume` alone (or with only
// --out) reruns the one recorded in OUT/run.json, from the directory it started in, also after the
// folder moved.
TEST_CASE("cli: --resume alone reruns the command recorded in OUT/run.json") {
    Scratch s;
    const std::string train = fs::absolute("train").string();
    REQUIRE(run("cd " + s.dir.string() + " && " + train + " --preset tiny --data d.jsonl --batch-size 2 --eval-samples 0 "
                "--max-steps 3 --save-every 1 --lr 1e-3 --out o").status == 0);
    CHECK(read_file(s.out("o/run.json")).find("\"--lr\", \"1e-3\"") != std::string::npos);
    fs::remove_all(s.out("o/ckpt-00000003"));  // as if killed after step 2's checkpoint
    Run here = run("cd " + s.dir.string() + " && " + train + " --resume --out o");  // in the run's directory: as recorded
    INFO(here.out);
    CHECK(has(here, "--lr 1e-3 --out o --resume"));
    CHECK(has(here, "resume: o/ckpt-00000002 (step 2 of 3)"));
    fs::remove_all(s.out("o/ckpt-00000003"));
    Run again = run("cd / && " + train + " --resume --out " + s.out("o"));  // elsewhere: d.jsonl is relative
    INFO(again.out);
    CHECK(again.status == 0);
    CHECK(has(again, "resume: the command recorded in"));
    // from / the run's "o" would be /o: the paths it prints (and an interrupt's ./train --resume --out)
    // name the folder whole
    CHECK(has(again, ("--lr 1e-3 --out " + s.out("o") + " --resume").c_str()));
    CHECK(has(again, ("resume: " + s.out("o/ckpt-00000002") + " (step 2 of 3)").c_str()));
    CHECK(fs::exists(s.out("o/ckpt-00000003/train.state")));
    fs::rename(s.out("o"), s.out("moved"));
    Run moved = run("cd " + s.dir.string() + " && " + train + " --out=moved --resume");
    INFO(moved.out);
    CHECK(moved.status == 0);
    CHECK(has(moved, ("--out " + s.out("moved") + " --resume").c_str()));
    CHECK(has(moved, "the run is complete, nothing left to train"));
    // Any other flag: the command given is the command run (here the default model, which refuses).
    CHECK(!has(run("cd " + s.dir.string() + " && " + train + " --resume --out moved --max-steps 3"), "recorded"));
    write_file_atomic(s.out("moved/run.json"), "{\"cwd\": 1}");
    Run bad = run("cd " + s.dir.string() + " && " + train + " --resume --out moved");
    CHECK(bad.status == 1);
    CHECK(has(bad, "moved/run.json: no \"cwd\" string: it records the run's command for --resume"));
}

// Held-out data from several files (a mix of tasks): each file's loss follows the whole's, in the
// order given, a file given twice counted once; from one file, the line is as it was.
TEST_CASE("cli: the val loss of several --val-data files names each file's loss") {
    Scratch s;
    const std::string doc = s.out("doc.txt");
    write_file_atomic(doc, "a held-out document of plain text, read as continued pretraining data\n");
    Run two = s.train("--max-steps 1 --out " + s.out("o") + " --val-data " + doc + " --val-data " + s.data + " --val-data " + doc);
    INFO(two.out);
    CHECK(two.status == 0);
    auto eval_line = [](const Run& r) {
        const size_t at = r.out.find("eval before step 0: val loss ");
        return at == std::string::npos ? std::string() : r.out.substr(at, r.out.find('\n', at) - at);
    };
    const std::string line = eval_line(two);
    CHECK(line.find(" (" + doc + " ") != std::string::npos);
    CHECK(line.find(", " + s.data + " ") != std::string::npos);
    CHECK(line.find(doc, line.find(s.data)) == std::string::npos);
    const std::string single = eval_line(s.train("--max-steps 1 --out " + s.out("p") + " --val-data " + s.data));
    CHECK(!single.empty());
    CHECK(single.find(" (") == std::string::npos);
}

// --trainable-tokens: the rows trained with the adapters, in its file, and an --init-adapter that
// carries them continues them: the same ids in another order are the same rows, others refused.
TEST_CASE("cli: --trainable-tokens trains token rows; --init-adapter takes them in any order, not others; --lora-layers") {
    Scratch s;
    Run first = s.train("--max-steps 2 --trainable-tokens 34,123,125 --out " + s.out("a"));
    INFO(first.out);
    REQUIRE(first.status == 0);
    CHECK(has(first, "trainable tokens: 3 tokens (embed_tokens, tied: also the LM head), their rows trained beside the "
                     "adapters (192 parameters) at lr 0.0002: 34, 123, 125"));
    const std::string from = " --max-steps 2 --init-adapter " + s.out("a/ckpt-00000002");
    Run same = s.train(from + " --trainable-tokens 123,34,125 --out " + s.out("b"));
    INFO(same.out);
    CHECK(same.status == 0);
    auto refused = [&](const std::string& flags, const char* why) {
        Run r = s.train(flags + " --out " + s.out("refused"));
        INFO(r.out);
        CHECK(r.status == 1);
        CHECK(has(r, why));
    };
    refused(from + " --trainable-tokens 34,123", "trains other rows of embed_tokens (34,123,125, where the flag asks for 34,123)");
    refused("--max-steps 2 --method full --trainable-tokens 34",
            "--trainable-tokens trains rows of the embedding beside LoRA's adapters: --method full trains them all");
    refused("--max-steps 2 --trainable-tokens 34,34", "--trainable-tokens: trainable token 34 is listed twice for embed_tokens");
    refused("--max-steps 2 --trainable-tokens 512", "trainable token 512 of embed_tokens is outside the vocabulary (0..511)");
    refused("--max-steps 2 --trainable-tokens '<|im_end|>'", "'<|im_end|>' is neither a token of the vocabulary");
    refused("--max-steps 2 --trainable-tokens 34 --modules-to-save embed_tokens",
            "trainable tokens in a table that modules_to_save trains in full already");
    refused("--max-steps 2 --lora-layers 2", "--lora-layers: layer 2 is not a layer of the model (0..1)");
    refused("--max-steps 2 --lora-layers 1-0", "--lora-layers: '1-0' runs backwards");
    refused("--max-steps 2 --lora-layers 1 --method full", "--lora-layers places LoRA's adapters");
    Run layers = s.train("--max-steps 2 --lora-layers 1 --out " + s.out("i"));
    INFO(layers.out);
    CHECK(layers.status == 0);
    CHECK(has(layers, "targets=q,k,v,o,gate,up,down layers=1 (1 of 2)"));
    Run all = s.train("--max-steps 2 --lora-layers all --out " + s.out("m"));
    CHECK(all.status == 0);
    CHECK(has(all, "targets=q,k,v,o,gate,up,down\n"));
}

// --eval-only: the held-out loss of a checkpoint's adapter without training, the same as the run that
// saved it printed at its end; nothing written (no --out, no lock); refused without held-out data.
TEST_CASE("cli: --eval-only gives a checkpoint's val loss without training and writes nothing") {
    Scratch s;
    const std::string val = " --val-data " + s.data;
    Run trained = s.train("--max-steps 2 --out " + s.out("a") + val);
    REQUIRE(trained.status == 0);
    const std::string said = "eval after step 2: val loss ";
    const size_t at = trained.out.find(said);
    REQUIRE(at != std::string::npos);
    const std::string loss = trained.out.substr(at + said.size(), 6);
    Run eval = s.train("--eval-only --init-adapter " + s.out("a/ckpt-00000002") + " --out " + s.out("b") + val);
    INFO(eval.out);
    CHECK(eval.status == 0);
    CHECK(has(eval, ("eval without training at step 0: val loss " + loss).c_str()));
    CHECK(!has(eval, "step     1/"));
    CHECK(!fs::exists(s.out("b")));
    CHECK(has(s.train("--eval-only"), "--eval-only evaluates on held-out data: pass --val-data FILE or --val-split F"));
    CHECK(has(s.train("--eval-only --resume" + val), "--eval-only evaluates without training and writes nothing"));
    CHECK(has(s.train("--eval-only --keep-best" + val), "leave out --resume, --overwrite, --keep-best and --early-stopping"));
    CHECK(!has(eval, "memory estimate"));  // (training's table: none of it is allocated)
}

// json.dump without indent writes a JSON array of records on one line, so every record starts on
// line 1: --eval-samples with --val-split, which found the held-out records by their line, took every
// record of the file (training ones included) as held out.
TEST_CASE("cli: --eval-samples with --val-split answers the split's records of a one-line JSON array, no others") {
    if (!have_tokenizer()) return;
    Scratch s;
    const std::string lines = read_file("data/default/train.jsonl");
    std::string array = "[";
    for (size_t at = 0, i = 0; i < 10; i++, at = lines.find('\n', at) + 1)
        array += (i ? ", " : "") + lines.substr(at, lines.find('\n', at) - at);
    write_file_atomic(s.out("d.json"), array + "]");
    Run r = run("./train --model " + s.real_vocab_model("m.bin") + " --data " + s.out("d.json") +
                " --val-split 0.3 --eval-samples 10 --eval-only --batch-size 2");
    INFO(r.out);
    REQUIRE(r.status == 0);
    std::smatch split, held;
    REQUIRE(std::regex_search(r.out, split, std::regex("val split: (\\d+) train, (\\d+) val examples")));
    REQUIRE(std::regex_search(r.out, held, std::regex("\\((\\d+) held-out examples")));
    CHECK(std::stoi(split[2]) > 0);
    CHECK(held[1] == split[2]);
}

TEST_CASE("cli: SIGTERM (or Ctrl-C) while training saves a checkpoint that --resume continues, also when sent twice") {
    // Twice in a moment, as coreutils' timeout delivers it (to the trainer, then to its process
    // group): the second signal used to kill the run before its checkpoint was saved. (A millisecond
    // apart, so that the first has been handled: two at once may reach the process as one.)
    for (const char* kill : {"kill -TERM $pid", "kill -TERM $pid; sleep 0.001; kill -TERM $pid"}) {
        CAPTURE(kill);
        Scratch s;
        // Bounded: were the signal lost, the run would still end (in seconds) and the test fail, not hang.
        const std::string log = s.out("log.txt"), cmd = "./train --preset tiny --data " + s.data +
                                                         " --batch-size 2 --eval-samples 0 --max-steps 20000 --out " + s.out("o");
        // Wait for a logged step (the handler is in place from the first step on), then stop it. (SIGTERM:
        // a shell starts `&` jobs with SIGINT ignored, and the trainer leaves an ignored signal ignored.)
        Run r = run("(" + cmd + " > " + log + " 2>&1 & pid=$!; for i in $(seq 600); do grep -q '^2,' " + s.out("o/log.csv") +
                    " 2>/dev/null && break; sleep 0.05; done; grep -q '^2,' " + s.out("o/log.csv") + " || echo 'no step logged in 30 s'; " +
                    kill + "; wait $pid; echo status $?)");
        INFO(r.out);
        CHECK(!has(r, "no step logged"));
        CHECK(has(r, "status 1"));  // the run's own error exit, not 143 (killed by the signal)
        const std::string text = read_file(log);
        INFO(text.substr(text.size() > 400 ? text.size() - 400 : 0));
        CHECK(text.find("./train --resume --out " + s.out("o") + " continues the run") != std::string::npos);
        size_t at = text.find("saved " + s.out("o/ckpt-"));
        REQUIRE(at != std::string::npos);
        const int step = std::stoi(text.substr(at + 6 + s.out("o/ckpt-").size(), 8));
        CHECK(step >= 2);
        CHECK(fs::exists(s.out("o/ckpt-") + strf("%08d", step) + "/train.state"));
    }
}

// Two runs into one --out at once would overwrite each other's checkpoints and log.csv: the second
// refuses while the first holds OUT/.lock (here the test holds it, as a running ./train would).
TEST_CASE("cli: a second ./train into an --out in use refuses, naming it and the first run's pid") {
    Scratch s;
    const std::string out = s.out("o");
    fs::create_directory(out);
    const int fd = open((out + "/.lock").c_str(), O_RDWR | O_CREAT, 0644);
    REQUIRE(fd >= 0);
    REQUIRE(flock(fd, LOCK_EX | LOCK_NB) == 0);
    const std::string pid = std::to_string(getpid());
    REQUIRE(write(fd, pid.data(), pid.size()) == (ssize_t)pid.size());
    Run busy = s.train("--max-steps 1 --out " + out);
    INFO(busy.out);
    CHECK(busy.status == 1);
    CHECK(has(busy, ("--out " + out + " is in use by another ./train (pid " + pid + "): wait for it, or pass another --out").c_str()));
    CHECK(!fs::exists(out + "/log.csv"));
    CHECK(s.train("--max-steps 1 --dry-run --out " + out).status == 0);  // writes nothing: no lock needed
    close(fd);  // the first run ends: its lock goes with it
    CHECK(s.train("--max-steps 1 --out " + out).status == 0);
    CHECK(atoi(read_file(out + "/.lock").c_str()) > 0);  // the run wrote its pid for the message
    // The lock file is no checkpoint: --overwrite and --resume see only the run's ckpt-1.
    Run over = s.train("--max-steps 1 --overwrite --out " + out);
    INFO(over.out);
    CHECK(over.status == 0);
    CHECK(has(over, "removed 1 checkpoint(s)"));
    CHECK(has(s.train("--max-steps 1 --resume --out " + out), "the run is complete, nothing left to train"));
}

TEST_CASE("cli: flags out of range or in conflict fail naming the flag") {
    Scratch s;
    struct Case {
        const char* flags;
        const char* says;
    };
    for (Case c : {Case{"--lora-alpha nan", "flag --lora-alpha: nan is out of range: expected a number in (0, inf)"},
                   Case{"--beta1 1", "flag --beta1: 1 is out of range: expected a number in [0, 1)"},
                   Case{"--eps 0", "flag --eps: 0 is out of range"},
                   Case{"--epochs 0", "flag --epochs: 0 is out of range"},
                   Case{"--epochs 1e9", "flag --epochs: 1e9 is out of range: expected a number in (0, 100000]"},
                   Case{"--val-split -0.1", "flag --val-split: -0.1 is out of range: expected a number in [0, 1)"},
                   Case{"--warmup-ratio 2", "flag --warmup-ratio: 2 is out of range"},
                   Case{"--min-lr-ratio 5", "flag --min-lr-ratio: 5 is out of range"},
                   Case{"--lora-r 0", "flag --lora-r: expected a whole number from 1"},
                   Case{"--decay-ratio 0.2", "--decay-ratio sets the wsd schedule's cooldown: pass --lr-scheduler wsd"},
                   Case{"--lr-scheduler wsd --decay-ratio 0", "flag --decay-ratio: 0 is out of range: expected a number in (0, 1]"},
                   Case{"--method full --loraplus-lr-ratio 16", "--loraplus-lr-ratio raises the learning rate of LoRA's B matrices"},
                   Case{"--method full --use-dora", "--use-dora adds magnitudes to LoRA adapters: it needs --method lora or qlora"},
                   Case{"--method full --modules-to-save embed_tokens", "--method full trains them all already"},
                   Case{"--modules-to-save norm", "--modules-to-save: unknown module 'norm' (use embed_tokens, lm_head"},
                   Case{"--embedding-lr 1e-5", "which LoRA trains only with --modules-to-save embed_tokens,lm_head"},
                   Case{"--packing --group-by-length", "with --packing there is no padding to save"},
                   Case{"--padding max_length --group-by-length", "every batch is padded to --max-seq-len anyway"},
                   Case{"--neftune-alpha -5", "flag --neftune-alpha: -5 is out of range: expected a number in [0, 10000]"},
                   Case{"--val-split 0.4 --val-data d.jsonl", "both give held-out data: pass one"},
                   Case{"--warmup-steps 1 --warmup-ratio 0.5", "both set the warmup: pass one"},
                   Case{"--eval-every 1", "evaluate on held-out data: pass --val-data FILE or --val-split F"}}) {
        Run r = s.train(std::string(c.flags) + " --dry-run");
        INFO(c.flags << ": " << r.out);
        CHECK(r.status == 1);
        CHECK(has(r, c.says));
    }
    Run both = s.train("--epochs 2 --max-steps 5 --dry-run");  // as transformers allows: max steps win
    INFO(both.out);
    CHECK(both.status == 0);
    CHECK(has(both, "note: --max-steps 5 sets the run's length: --epochs 2 is ignored"));
    CHECK(has(both, "steps: 5 "));
    Run full = s.train("--method full --lora-r 4 --lora-dropout 0.1 --dry-run");  // refused would break --resume of such runs
    INFO(full.out);
    CHECK(full.status == 0);
    CHECK(has(full, "note: --lora-dropout shapes LoRA's adapters, which --method full does not have: it is ignored"));
    auto succeeds = [](const Run& r, std::initializer_list<const char*> says) {
        INFO(r.out);
        CHECK(r.status == 0);
        for (const char* said : says) CHECK(has(r, said));
    };
    succeeds(s.train("--neftune-alpha 5 --dry-run"), {"neftune: alpha 5, uniform noise of "});
    succeeds(s.train("--use-dora --dry-run"), {", DoRA (a magnitude per output row)"});
    succeeds(s.train("--group-by-length --dry-run"), {"group by length: ", "% in shuffled order)"});
    // the tiny preset ties its LM head to its embedding: one tensor of 512 × 64
    succeeds(s.train("--modules-to-save lm_head --embedding-lr 2e-5 --dry-run"),
             {"modules to save: embed_tokens (tied: also the LM head) trained in full beside the adapters (32768 "
              "parameters) at lr 2e-05"});
    succeeds(run("./memory --preset llama-2-7b --method qlora --modules-to-save embed_tokens,lm_head --explain"),
             {"+ vocab·dim each saved module (embed_tokens,lm_head)"});
    // ./memory takes --use-dora after or before --method; its magnitudes, z, norms and dz are explained
    succeeds(run("./memory --use-dora --preset smollm2-135m --method lora --explain"),
             {"+ out (DoRA's magnitude)", "DoRA z ", "DoRA's row norms", "DoRA dz"});
    Run mem_full = run("./memory --preset smollm2-135m --method full --use-dora");
    CHECK(mem_full.status == 1);
    CHECK(has(mem_full, "--use-dora adds magnitudes to LoRA adapters"));
    Run wsd = s.train("--lr-scheduler wsd --decay-ratio 0.25 --max-steps 8 --dry-run");
    INFO(wsd.out);
    CHECK(has(wsd, "lr 0.0002 wsd, warmup 0, cooldown over the last 2"));
    // The warmup's last step runs at --lr (lr_at: (step + 1) / warmup): a warmup as long as the run
    // reaches it at the run's last step, only a longer one never does.
    Run whole = s.train("--warmup-steps 3 --max-steps 3 --dry-run");
    CHECK(whole.status == 0);
    CHECK(!has(whole, "never reaches --lr"));
    CHECK(has(s.train("--warmup-steps 4 --max-steps 3 --dry-run"),
              "note: the warmup (4 steps) is longer than the run (3 steps): the learning rate never reaches --lr 0.0002"));
    Run short_wsd = s.train("--lr-scheduler wsd --max-steps 4 --warmup-steps 10 --dry-run");
    CHECK(has(short_wsd, "cooldown over the last 0"));
    CHECK(has(short_wsd, "note: the wsd cooldown has 0 steps, so the learning rate never falls below --lr"));
}

// A base model whose rows for tokens the data uses were never trained (here the bytes '"' and '{' of
// the default task's JSON, zeroed): ./train names them and the flag that trains them.
TEST_CASE("cli: tokens with untrained embeddings in the data are named, with --trainable-tokens") {
    Scratch s;
    ModelConfig c = config_preset("tiny");
    std::vector<float> p;
    model_init_random(c, p, 5);
    const ModelOffsets off = model_offsets(c);
    for (int id : {'"', '{'}) std::fill_n(p.begin() + off.embed + (size_t)id * c.dim, c.dim, 0.0f);
    const std::string model = s.out("base.bin");
    model_save(model, c, p, DType::F32);
    const std::string flags = "--model " + model + " --tokenizer bytes --data " + s.data + " --batch-size 2 --eval-samples 0 --dry-run";
    Run lora = run("./train " + flags);
    INFO(lora.out);
    CHECK(lora.status == 0);
    CHECK(has(lora, "note: 2 tokens of the data have an untrained embedding or LM head row in this model"));
    CHECK(has(lora, ": 34, 123. LoRA cannot train those rows"));
    CHECK(has(lora, "pass --trainable-tokens 34,123 (their rows alone), or start from the model's chat version"));
    Run saved = run("./train " + flags + " --modules-to-save embed_tokens");
    CHECK(saved.status == 0);
    CHECK(!has(saved, "untrained embedding"));
    Run rows = run("./train " + flags + " --trainable-tokens 34,123");
    INFO(rows.out);
    CHECK(rows.status == 0);
    CHECK(!has(rows, "untrained embedding"));
    CHECK(has(rows, "trainable tokens: 2 tokens (embed_tokens, tied: also the LM head), their rows trained beside the "
                    "adapters (128 parameters) at lr 0.0002: 34, 123"));
}

TEST_CASE("cli: a model file needs its tokenizer; --merge writes one beside the merged model") {
    if (!have_tokenizer()) return;
    Scratch s;
    const std::string model = s.out("m.bin");
    REQUIRE(run("./init_model --preset tiny --vocab 49152 -o " + model).status == 0);  // SmolLM2's vocabulary
    // Without a .tok beside it a real model would be trained on byte ids: refused, naming the flag.
    Run r = run("./train --dry-run --model " + model + " --data " + s.data);
    CHECK(r.status == 1);
    CHECK(has(r, "no tokenizer beside the model"));
    CHECK(has(r, "--tokenizer bytes"));
    Run bytes = run("./train --dry-run --model " + model + " --data " + s.data + " --tokenizer bytes");
    CHECK(bytes.status == 0);
    CHECK(has(bytes, "tokenizer: raw bytes"));
    Run gen = run("./generate --model " + s.out("missing.bin") + " --prompt hi");
    CHECK(gen.status == 1);
    CHECK(has(gen, "missing.bin: cannot open model file"));
    // A tokenizer larger than the model's vocabulary (it used to crash ./generate), answers over the
    // prompts, an export over its input: refused.
    REQUIRE(run("./init_model --preset tiny -o " + s.out("small.bin")).status == 0);  // 512 embeddings
    Run big = run("./generate --model " + s.out("small.bin") + " --tokenizer " + kTok + " --prompt hi");
    CHECK(has(big, "the tokenizer has 49152 tokens but the model"));
    // ./export --merge carries the tokenizer it merged with.
    const std::string tok = s.out("m.tok");
    REQUIRE(run(std::string("cp ") + kTok + " " + tok).status == 0);
    Run trained = run("./train --model " + model + " --tokenizer " + tok + " --data " + s.data +
                      " --batch-size 2 --eval-samples 0 --max-steps 1 --out " + s.out("o"));
    INFO(trained.out);
    REQUIRE(trained.status == 0);
    // A dot in a folder's name is no extension: run.v2/merged gets run.v2/merged.tok.
    Run merge = run("./export --model " + model + " --lora " + s.out("o/ckpt-00000001/adapter.lora") + " --merge " +
                    s.out("run.v2/merged"));
    INFO(merge.out);
    CHECK(merge.status == 0);
    CHECK(read_file(s.out("run.v2/merged.tok")) == read_file(tok));
    Run over = run("./export --model " + model + " --lora " + s.out("o/ckpt-00000001/adapter.lora") + " --merge " + model);
    CHECK(over.status == 1);
    CHECK(has(over, "is also an input of this export"));
    // Nor over the base's tokenizer: m.bf16 beside m.bin would write m.tok (here with another template).
    Run over_tok = run("./export --model " + model + " --lora " + s.out("o/ckpt-00000001/adapter.lora") + " --merge " +
                       s.out("m.bf16") + " --dtype bf16 --template llama3");
    CHECK(over_tok.status == 1);
    CHECK(has(over_tok, "m.tok is also an input of this export"));
    CHECK(read_file(tok) == read_file(kTok));
    Run answers = run("./generate --model " + model + " --data " + s.data + " --out " + s.data);
    CHECK(answers.status == 1);
    CHECK(has(answers, "is the --data file"));
    // ./generate's default --max-tokens (256) on a model of a shorter context: half the context.
    Run gen_tiny = run("./generate --model " + s.out("run.v2/merged") + " --prompt hi --raw");
    INFO(gen_tiny.out);
    CHECK(gen_tiny.status == 0);
    // An empty --prompt is a prompt (the chat template makes a turn of it), not a cue to read stdin;
    // --raw has no template for --system to go into, and nothing to continue from an empty text.
    Run empty = run("./generate --model " + s.out("run.v2/merged") + " --prompt '' --max-tokens 4 < /dev/null");
    INFO(empty.out);
    CHECK(empty.status == 0);
    CHECK(!has(empty, "no prompt"));
    Run raw_sys = run("./generate --model " + s.out("run.v2/merged") + " --raw --system x --prompt hi");
    CHECK(raw_sys.status == 1);
    CHECK(has(raw_sys, "drop --system and --template"));
    Run raw_empty = run("./generate --model " + s.out("run.v2/merged") + " --raw --prompt '' < /dev/null");
    CHECK(raw_empty.status == 1);
    CHECK(has(raw_empty, "no token to continue from"));
    // As transformers reads them: special-token text in a --raw prompt is those tokens (<|im_start|>
    // user \n hi, not 7 pieces of "<|im_start|>"), and --system '' is an empty system turn, which
    // replaces the template's default system prompt (SmolLM2's: 31 tokens with it, 15 with an empty one)
    Run raw_special = run("printf '<|im_start|>user\\nhi' | ./generate --model " + s.out("run.v2/merged") + " --raw --max-tokens 1");
    CHECK(has(raw_special, "[4 prompt tokens"));
    Run empty_system = run("./generate --model " + s.out("run.v2/merged") + " --system '' --prompt hi --max-tokens 1");
    CHECK(has(empty_system, "[15 prompt tokens"));
}

TEST_CASE("cli: ./init_model's shape flags carry Gemma's scales along; ./convert -o names files, not a folder") {
    Scratch s;
    // A Gemma 3 preset with another width: embeddings scaled by sqrt(the new dim), scores by the new
    // head_dim, as transformers and llama.cpp derive them from the exported config.
    const std::string wide = s.out("g.bin"), narrow = s.out("h.bin");
    REQUIRE(run("./init_model --preset tiny-gemma3 --dim 128 -o " + wide).status == 0);
    ModelConfig c = model_read_config(wide);
    CHECK(c.embed_scale == doctest::Approx(std::sqrt(128.0)));
    CHECK(c.query_pre_attn_scalar == (float)c.head_dim);
    REQUIRE(run("./init_model --preset tiny-gemma3 --head-dim 16 -o " + narrow).status == 0);
    c = model_read_config(narrow);
    CHECK(c.embed_scale == doctest::Approx(8.0));  // dim 64 as the preset's
    CHECK(c.query_pre_attn_scalar == 16.0f);
    REQUIRE(run("./init_model --preset tiny --dim 96 -o " + narrow).status == 0);
    c = model_read_config(narrow);
    CHECK(c.embed_scale == 0.0f);  // not Gemma: no scale appears
    CHECK(c.query_pre_attn_scalar == 0.0f);
    fs::create_directory(s.dir / "models");
    Run conv = run("./convert missing.gguf -o " + s.out("models") + "/");
    CHECK(conv.status == 1);
    CHECK(has(conv, "is a directory: -o takes the output path without extension, e.g. -o "));
    CHECK(has(conv, "/models/missing (writes"));
    CHECK(fs::is_empty(s.dir / "models"));
}

TEST_CASE("cli: data files by content as well as by name; ./check_data FILE") {
    if (!have_tokenizer()) return;
    Scratch s;
    const std::string txt = s.out("records.txt"), upper = s.out("records.JSONL");
    fs::copy_file(s.data, txt);
    fs::copy_file(s.data, upper);
    Run r = run("./check_data " + txt);
    CHECK(r.status == 1);
    CHECK(has(r, "the first line is a training record (JSON), but the file is read as raw text"));
    Run ok = run("./check_data " + upper);
    INFO(ok.out);
    CHECK(ok.status == 0);
    CHECK(has(ok, "5 examples"));
    Run warn = run("./check_data " + s.data + " --template llama3");
    CHECK(has(warn, "warning: the llama3 template's end-of-turn marker is not a special token"));
    // several files: a report and a verdict each; the trainer takes them all
    Run two = run("./check_data " + s.data + " " + upper);
    INFO(two.out);
    CHECK(two.status == 0);
    CHECK(has(two, ("ok: " + upper + ": 5 examples").c_str()));
    Run one_bad = run("./check_data " + txt + " --data " + upper);  // the unreadable file first: both reported
    CHECK(one_bad.status == 1);
    CHECK(has(one_bad, "not read: "));
    CHECK(has(one_bad, "records.txt"));
    CHECK(has(one_bad, "kept 5 examples"));
    Run both = s.train("--data " + upper + " --dry-run");
    INFO(both.out);
    CHECK(both.status == 0);
    CHECK(has(both, "data: 2 files, 10 examples, "));
}

TEST_CASE("cli: --flag=value as well as --flag value; a flag that takes no value refuses one") {
    Scratch s;
    Run eq = run("./train --preset=tiny --data=" + s.data + " --batch-size=2 --eval-samples=0 --max-steps=5 --lr=1e-3 --dry-run");
    INFO(eq.out);
    CHECK(eq.status == 0);
    CHECK(has(eq, "steps: 5 (batch 2 x accum 1"));
    CHECK(has(eq, "lr 0.001 cosine"));
    Run bad = s.train("--max-steps=x --dry-run");
    CHECK(bad.status == 1);
    CHECK(has(bad, "flag --max-steps: 'x' is not a number"));
    Run range = s.train("--lora-r=0 --dry-run");
    CHECK(has(range, "flag --lora-r: expected a whole number from 1 to 2000000000, got 0"));
    Run flag = s.train("--dry-run=yes");
    CHECK(flag.status == 1);
    CHECK(has(flag, "flag --dry-run takes no value: drop '=yes'"));
    Run mem = run("./memory --preset=smollm2-135m --method=full");
    INFO(mem.out);
    CHECK(mem.status == 0);
}

TEST_CASE("cli: a directory where a model file goes is named as one, with the file it holds") {
    Scratch s;
    fs::create_directories(s.dir / "full");
    write_file_atomic(s.out("full/model.bin"), "");
    Run full = run("./generate --model " + s.out("full") + " --prompt hi");
    CHECK(full.status == 1);
    CHECK(has(full, (s.out("full") + " is a directory, not a file: pass " + s.out("full/model.bin")).c_str()));
    fs::create_directories(s.dir / "lora");
    write_file_atomic(s.out("lora/adapter.lora"), "");
    Run lora = run("./train --model " + s.out("lora") + " --data " + s.data + " --dry-run");
    CHECK(lora.status == 1);
    CHECK(has(lora, (s.out("lora") + " is a directory, not a file: it holds a LoRA adapter (adapter.lora)").c_str()));
    Run exported = run("./export --model " + s.out("lora") + " --hf " + s.out("hf"));  // (before its tokenizer is looked for)
    CHECK(exported.status == 1);
    CHECK(has(exported, (s.out("lora") + " is a directory, not a file: it holds a LoRA adapter (adapter.lora)").c_str()));
    Run empty = run("./generate --model " + s.dir.string() + " --prompt hi");
    CHECK(empty.status == 1);
    CHECK(has(empty, "is a directory, not a model: pass a model file (.bin), or a Hugging Face model directory"));
}

// Paths with a space: the printed ./export command runs as it is copied.
TEST_CASE("cli: the ./export command ./train prints quotes its paths") {
    if (!have_tokenizer()) return;
    Scratch s;
    const std::string model = s.real_vocab_model("my run/m.bin"), q = "'" + s.out("my run");
    Run trained = run("./train --model '" + model + "' --data " + s.data + " --batch-size 2 --eval-samples 0 --max-steps 1 --out '" +
                      s.out("my run/o") + "'");
    INFO(trained.out);
    REQUIRE(trained.status == 0);
    const std::string from = "--model " + q + "/m.bin' --lora " + q + "/o/ckpt-00000001/adapter.lora'";
    REQUIRE(has(trained, ("to use it in other tools: ./export " + from + " --hf DIR").c_str()));
    Run merged = run("./export " + from + " --merge " + s.out("merged.bin"));
    INFO(merged.out);
    CHECK(merged.status == 0);
    CHECK(shell_quote("a/b-1.bin") == "a/b-1.bin");
    CHECK(shell_quote("it's here") == "'it'\\''s here'");
}

TEST_CASE("cli: ./check_data finds the tokenizer as ./train does: beside --model, or raw bytes") {
    if (!have_tokenizer()) return;
    Scratch s;
    Run beside = run("./check_data --model " + s.real_vocab_model("m.bin") + " " + s.data);
    INFO(beside.out);
    CHECK(beside.status == 0);
    CHECK(run("./check_data --tokenizer bytes " + s.data).status == 0);
    Run elsewhere = run("cd " + s.dir.string() + " && " + (fs::current_path() / "check_data").string() + " " + s.data);
    CHECK(elsewhere.status == 1);
    CHECK(has(elsewhere, "models/smollm2-135m-instruct.bin: model not found (a relative path is from the current directory)"));
    CHECK(has(elsewhere, "--tokenizer bytes"));
}

// A file every line of which is bad for one cause is refused once, by that cause, and not with
// --skip-bad-lines as the way out (nothing would be left).
TEST_CASE("cli: pretty-printed JSON fails once, naming the fix; gzipped data is read; ./check_data as ./train") {
    Scratch s;
    const std::string pretty = s.out("pretty.jsonl"), gz = s.out("d.jsonl.gz");
    REQUIRE(run("jq . " + s.data + " > " + pretty).status == 0);  // as a user makes one
    for (const std::string& cmd : {"./train --preset tiny --dry-run --data " + pretty, "./check_data --tokenizer bytes " + pretty}) {
        Run r = run(cmd);
        INFO(r.out);
        CHECK(r.status == 1);
        CHECK(has(r, (pretty + ": pretty-printed JSON (one object spans several lines); a .jsonl file needs one object "
                      "per line: convert it with jq -c . " + pretty + " > data.jsonl").c_str()));
        CHECK(!has(r, "--skip-bad-lines"));
        CHECK(!has(r, "bad JSON"));
    }
    REQUIRE(run("gzip -c " + s.data + " > " + gz).status == 0);
    Run z = run("./check_data --tokenizer bytes " + gz), plain = run("./check_data --tokenizer bytes " + s.data);
    CHECK(z.status == 0);  // read as the jsonl it holds: the same report
    const auto kept = [](const std::string& out) { return out.substr(out.find("kept "), out.find('\n', out.find("kept ")) - out.find("kept ")); };
    CHECK(kept(z.out) == kept(plain.out));
    CHECK(kept(z.out).find("kept 0 ") == std::string::npos);
}

TEST_CASE("cli: ./tokenize names a config.json given as the tokenizer") {
    Scratch s;
    const std::string config = s.out("config.json");
    write_file_atomic(config, "{\"architectures\": [\"LlamaForCausalLM\"], \"model_type\": \"llama\"}");
    Run r = run("echo hi | ./tokenize --tokenizer " + config);
    CHECK(r.status == 1);
    CHECK(has(r, (config + " is not a tokenizer.json (no \"model\" section) (it looks like a model's config.json): pass "
                           "the model's tokenizer.json, tokenizer.model or .tok").c_str()));
}

// --peft as --hf treats its directory: an earlier export of its own kind is replaced, anything else
// (a model export above all) refused; --merge writes our .bin, never a .gguf.
TEST_CASE("cli: ./export --peft refuses a model export's directory; --merge refuses a .gguf name") {
    Scratch s;
    const std::string model = s.out("m.bin");
    REQUIRE(run("./init_model --preset tiny -o " + model).status == 0);
    Run trained = run("./train --model " + model + " --tokenizer bytes --data " + s.data +
                      " --batch-size 2 --eval-samples 0 --max-steps 1 --out " + s.out("o"));
    INFO(trained.out);
    REQUIRE(trained.status == 0);
    const std::string exp = "./export --model " + model + " --lora " + s.out("o/ckpt-00000001/adapter.lora");
    CHECK(run(exp + " --peft " + s.out("peft")).status == 0);
    CHECK(run(exp + " --peft " + s.out("peft")).status == 0);  // over its own earlier export, as --hf
    fs::create_directories(s.dir / "hf");
    write_file_atomic(s.out("hf/config.json"), "{}");
    Run into_hf = run(exp + " --peft " + s.out("hf"));
    CHECK(into_hf.status == 1);
    CHECK(has(into_hf, (s.out("hf") + " holds a model export (config.json): write the adapter into another directory").c_str()));
    CHECK(!fs::exists(s.dir / "hf/adapter_config.json"));
    write_file_atomic(s.out("peft/notes.txt"), "");
    Run other = run(exp + " --peft " + s.out("peft"));
    CHECK(other.status == 1);
    CHECK(has(other, "already holds notes.txt: export into a new or empty directory"));
    Run both = run(exp + " --peft " + s.out("x") + " --hf " + s.out("x/"));
    CHECK(both.status == 1);
    CHECK(has(both, "--peft and --hf name the same directory"));
    Run gguf = run(exp + " --merge " + s.out("m2.gguf"));
    CHECK(gguf.status == 1);
    CHECK(has(gguf, "writes our .bin format, not GGUF: for llama.cpp and ollama pass --gguf"));
    CHECK(!fs::exists(s.dir / "m2.gguf"));
}

// Output lost (a full disk, > /dev/full) is an error, not exit status 0.
TEST_CASE("cli: a write to a full stdout fails: ./generate --prompt and --chat, ./tokenize") {
    if (!have_tokenizer()) return;
    Scratch s;
    const std::string model = s.real_vocab_model("m.bin");
    for (const std::string& cmd : {"./generate --model " + model + " --prompt hi --max-tokens 4",
                                   "echo hi | ./generate --chat --model " + model + " --max-tokens 4",
                                   std::string("echo hi | ./tokenize --tokenizer ") + kTok}) {
        Run full = run("{ " + cmd + " > /dev/full; }");  // stderr still comes back
        INFO(cmd);
        INFO(full.out);
        CHECK(full.status == 1);
        CHECK(has(full, "error: writing to standard output failed: No space left on device"));
    }
}

TEST_CASE("cli: --resume with another --seed on a preset names the seed") {
    Scratch s;
    const std::string out = " --save-every 1 --max-steps 2 --out " + s.out("o");
    REQUIRE(s.train("--seed 1" + out).status == 0);
    Run r = s.train("--seed 2 --resume" + out);
    CHECK(r.status == 1);
    CHECK(has(r, "seed: 1 -> 2"));
    CHECK(has(r, "a --preset's random weights depend on --seed: with --preset, pass the checkpoint's --seed"));
}

// Every flag a program reads (its source's is("--x") and == "--x"), aliases included, is named in
// what --help prints on stdout: a flag only the source knows is one no user can find.
TEST_CASE("cli: --help prints on stdout every flag the program takes") {
    const std::regex flag_re("(?:is\\(|== )\"(--[a-z0-9-]+)\"");
    for (const char* p : {"train", "convert", "export", "generate", "memory", "tokenize", "check_data", "make_dataset",
                          "raft", "init_model"}) {
        const std::string prog = p, src = read_file(prog == "train" ? "train.cu" : "tools/" + prog + ".cpp");
        Run help = run("{ ./" + prog + " --help 2>/dev/null; }");  // stdout only
        INFO(prog << " --help: " << help.out);
        CHECK(help.status == 0);
        for (std::sregex_iterator it(src.begin(), src.end(), flag_re), end; it != end; ++it) {
            const std::string flag = (*it)[1];
            if (flag == "--help") continue;
            bool named = false;  // as a whole word: --lr-scheduler does not name --lr
            for (size_t at = help.out.find(flag); at != std::string::npos && !named; at = help.out.find(flag, at + 1)) {
                const char next = at + flag.size() < help.out.size() ? help.out[at + flag.size()] : ' ';
                named = !(isalnum((unsigned char)next) || next == '-');
            }
            CHECK_MESSAGE(named, prog << " takes " << flag << ", which its --help does not name");
        }
    }
}
