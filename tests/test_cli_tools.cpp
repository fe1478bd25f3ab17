// The smaller programs (./generate's flags, ./raft, ./init_model, ./memory) run as a user runs them:
// flags that would be silently ignored and outputs that would destroy an input. Like test_cli.cpp,
// each case runs the binaries that `make test` builds, in a scratch folder.
#include <doctest/doctest.h>

#include <sys/wait.h>
#include <unistd.h>

#include <cstdio>
#include <filesystem>
#include <string>

#include "model/util.h"
#include "test_cli_util.h"

namespace fs = std::filesystem;

namespace {

struct Scratch {
    fs::path dir;
    Scratch() {
        char tmpl[] = "/tmp/test_cli_tools_XXXXXX";
        REQUIRE(mkdtemp(tmpl) != nullptr);
        dir = tmpl;
    }
    ~Scratch() { fs::remove_all(dir); }
    std::string out(const char* name) const { return (dir / name).string(); }
};

}  // namespace

// --out, --batch and --limit shape a --data run; with --prompt the answer went to stdout, the file
// named by --out was never written, and the run exited 0.
TEST_CASE("cli tools: ./generate refuses --out, --batch and --limit without --data") {
    Scratch s;
    const std::string model = s.out("tiny.bin");
    REQUIRE(run("./init_model --preset tiny -o " + model).status == 0);
    for (const char* flags : {"--out answer.txt", "--batch 4", "--limit 2"}) {
        Run r = run("./generate --model " + model + " --prompt hi --max-tokens 2 " + flags);
        INFO(std::string(flags) << ": " << r.out);
        CHECK(r.status == 1);
        CHECK(has(r, (std::string(flags).substr(0, std::string(flags).find(' ')) + " is for --data FILE").c_str()));
    }
    Run chat = run("echo hi | ./generate --model " + model + " --chat --out answer.txt");
    CHECK(chat.status == 1);
    CHECK(has(chat, "--out is for --data FILE"));
    // answers are jsonl: a .csv or .parquet name is refused before any work, as ./raft's --out is
    const std::string prompts = s.out("p.jsonl");
    write_file_atomic(prompts, "{\"prompt\": \"hi\"}\n");
    Run csv = run("./generate --model " + model + " --data " + prompts + " --out " + s.out("a.parquet"));
    CHECK(csv.status == 1);
    CHECK(has(csv, ": it is written as jsonl, which ./train would read as Parquet by its name: name it .jsonl"));
}

// ./raft writes --out atomically after reading its inputs, so an --out naming one of them replaced
// the questions or the pool with the examples, exit 0.
TEST_CASE("cli tools: ./raft refuses an --out that is one of its inputs") {
    Scratch s;
    const std::string qa = s.out("qa.jsonl"), pool = s.out("pool.jsonl");
    const std::string questions = "{\"question\": \"q\", \"answer\": \"a\", \"oracle\": \"d1\"}\n";
    const std::string docs = "{\"text\": \"d1\"}\n{\"text\": \"d2\"}\n{\"text\": \"d3\"}\n";
    write_file_atomic(qa, questions);
    write_file_atomic(pool, docs);
    for (const std::string& out : {qa, pool}) {
        Run r = run("./raft --questions " + qa + " --pool " + pool + " --k 1 --out " + out);
        INFO(r.out);
        CHECK(r.status == 1);
        CHECK(has(r, out == qa ? "is the --questions file" : "is the --pool file"));
    }
    CHECK(read_file(qa) == questions);
    CHECK(read_file(pool) == docs);
    Run ok = run("./raft --questions " + qa + " --pool " + pool + " --k 1 --out " + s.out("raft.jsonl"));
    INFO(ok.out);
    CHECK(ok.status == 0);
    // jsonl under a .csv name: ./train would read the examples as a table and refuse them
    Run csv = run("./raft --questions " + qa + " --pool " + pool + " --k 1 --out " + s.out("raft.csv"));
    CHECK(csv.status == 1);
    CHECK(has(csv, ("--out " + s.out("raft.csv") + ": it is written as jsonl, which ./train would read as a CSV table by its name").c_str()));
    CHECK_FALSE(std::filesystem::exists(s.out("raft.csv")));
}

// 0 meant "not given" inside the shape flags, so --layers 0 wrote (or estimated) the preset's shape.
TEST_CASE("cli tools: ./init_model and ./memory refuse a shape flag of 0") {
    Scratch s;
    for (const char* flag : {"--layers", "--dim", "--heads", "--kv-heads", "--head-dim", "--ffn", "--vocab"}) {
        Run init = run("./init_model --preset tiny " + std::string(flag) + " 0 -o " + s.out("z.bin"));
        INFO(std::string(flag) << ": " << init.out);
        CHECK(init.status == 1);
        CHECK(has(init, (std::string("flag ") + flag + ": expected a whole number from 1").c_str()));
        CHECK(!file_exists(s.out("z.bin")));
        Run mem = run("./memory --preset tiny " + std::string(flag) + " 0");
        CHECK(mem.status == 1);
        CHECK(has(mem, (std::string("flag ") + flag + ": expected a whole number from 1").c_str()));
    }
}

// ./convert, ./export and ./make_dataset create their output's folder; ./init_model failed with
// "cannot write: No such file or directory".
TEST_CASE("cli tools: ./init_model creates the output's folder; -o naming a folder is refused as one") {
    Scratch s;
    Run r = run("./init_model --preset tiny -o " + s.out("models/new/tiny.bin"));
    INFO(r.out);
    CHECK(r.status == 0);
    CHECK(file_exists(s.out("models/new/tiny.bin")));
    for (const std::string& dir : {s.out("models"), s.out("models/")}) {  // a folder names no file
        Run folder = run("./init_model --preset tiny -o " + dir);
        INFO(folder.out);
        CHECK(folder.status == 1);
        CHECK(has(folder, ("-o " + dir + " is a directory: -o takes the model file's path").c_str()));
    }
}

// --tools: the definitions go into the system turn of the templates that render tool calling (the
// prompt grows by them), /tool answers a call in --chat; elsewhere they are refused, naming why.
TEST_CASE("cli tools: ./generate --tools puts definitions in the prompt; /tool in --chat; refused where none render") {
    Scratch s;
    const std::string model = s.out("q3.bin"), tools = s.out("tools.json"), fx = "tests/fixtures/tokenizer/qwen3/";
    REQUIRE(run("./init_model --preset tiny-qwen3 --vocab 151936 -o " + model).status == 0);
    REQUIRE(run("cp " + fx + "tokenizer.json " + fx + "tokenizer_config.json " + s.dir.string()).status == 0);
    write_file_atomic(tools, R"([{"type": "function", "function": {"name": "get_weather", "parameters": {}}}])");
    const std::string gen = "./generate --model " + model + " --tokenizer " + s.out("tokenizer.json") + " --max-tokens 2 ";
    auto prompt_tokens = [](const Run& r, size_t from = 0) {  // "[N prompt tokens, ..." after `from`
        const size_t end = r.out.find(" prompt tokens", from);
        const size_t at = end == std::string::npos ? end : r.out.rfind('[', end);
        return at == std::string::npos ? -1 : atoi(r.out.c_str() + at + 1);
    };
    Run plain = run(gen + "--prompt Weather?"), with = run(gen + "--prompt Weather? --tools " + tools);
    INFO(plain.out << with.out);
    REQUIRE(plain.status == 0);
    REQUIRE(with.status == 0);
    CHECK(prompt_tokens(with) > prompt_tokens(plain) + 20);
    Run chat = run("printf 'hi\\n/tool 3 degrees\\n' | " + gen + "--chat --tools " + tools);
    INFO(chat.out);
    CHECK(chat.status == 0);
    const size_t second = chat.out.find("prompt tokens") + 1;
    CHECK(prompt_tokens(chat, second) > prompt_tokens(chat) + 10);  // the answer and the <tool_response> turn
    CHECK(has(run(gen + "--prompt hi --template chatml --tools " + tools),
              "--tools: the chatml chat template does not render tool definitions (qwen2.5's, qwen3's, smollm3's, llama3.1's and mistral-v0.3's do)"));
    CHECK(has(run(gen + "--prompt hi --raw --tools " + tools), "--raw renders no template to put them in"));
    // definitions that fill the context refuse the chat at once, not every message after
    std::string many = "[";
    for (int k = 0; k < 60; k++) many += std::string(k ? ", " : "") + R"({"name": "tool_number_)" + std::to_string(k) + R"(", "parameters": {}})";
    write_file_atomic(tools, many + "]");
    CHECK(has(run("echo hi | " + gen + "--chat --tools " + tools), "--tools: a prompt of "));
    write_file_atomic(tools, R"({"name": "f"})");
    CHECK(has(run(gen + "--prompt hi --tools " + tools), "field \"tools\": expected an array of tool definitions, got object"));
}

// --show: an example as the model sees it, the learned tokens between [[ and ]] (a tool-calling
// conversation with Qwen3's template: the calls and the final answer learned, the tool's result not).
TEST_CASE("cli tools: ./check_data --show prints examples with the learned tokens marked") {
    Scratch s;
    const std::string data = s.out("tools.jsonl");
    write_file_atomic(data, R"({"messages": [{"role": "user", "content": "Weather?"}, {"role": "assistant", "tool_calls": [{"name": "w", "arguments": {}}]},)"
                            R"( {"role": "tool", "content": "sunny"}, {"role": "assistant", "content": "Sunny."}]})" "\n");
    Run r = run("./check_data " + data + " --tokenizer tests/fixtures/tokenizer/qwen3/tokenizer.json --show 3");
    INFO(r.out);
    CHECK(r.status == 0);
    CHECK(has(r, "the first 1 examples, learned tokens [[between double brackets]]"));
    CHECK(has(r, "<|im_start|>assistant\n[[<tool_call>\n{\"name\": \"w\", \"arguments\": {}}\n</tool_call><|im_end|>]]\n"));
    CHECK(has(r, "<tool_response>\nsunny\n</tool_response><|im_end|>\n"));
    CHECK(has(r, "Sunny.<|im_end|>]]"));
    CHECK(!has(r, "[[<tool_response>"));
}

// Edges the user audit reported: each said something wrong or nothing at all.
TEST_CASE("cli tools: ./memory's more-than-full LoRA, ./make_dataset --out a file, ./tokenize bytes, /exit with spaces") {
    Scratch s;
    CHECK(has(run("./memory --lora-matrix 10x10 --lora-r 8"), "= 160 adapter params vs 100 (60.0% more)"));  // was "-60.0% fewer"
    const std::string file = s.out("file");
    write_file_atomic(file, "x");
    Run md = run("./make_dataset --out " + file);  // was a raw filesystem_error
    CHECK(md.status == 1);
    CHECK(has(md, ("--out " + file + ": cannot make the directory").c_str()));
    CHECK(has(run("./tokenize --tokenizer bytes < /dev/null"), "--tokenizer bytes is ./train's raw-byte encoding"));
    CHECK(has(run("./train --log-every 0"), "flag --log-every: expected a whole number from 1"));  // was taken as 1
    const std::string model = s.out("tiny.bin");  // with the repository's Qwen3 tokenizer, as the --tools case
    REQUIRE(run("./init_model --preset tiny-qwen3 --vocab 151936 -o " + model).status == 0);
    Run chat = run("printf 'hi\\n /exit \\nhello\\n' | ./generate --model " + model +
                   " --tokenizer tests/fixtures/tokenizer/qwen3/tokenizer.json --chat --max-tokens 2");
    INFO(chat.out);
    CHECK(chat.status == 0);
    size_t answers = 0;  // one per message answered: "/exit " ends the chat before "hello"
    for (size_t at = chat.out.find("prompt tokens"); at != std::string::npos; at = chat.out.find("prompt tokens", at + 1)) answers++;
    CHECK(answers == 1);
    CHECK(has(run("./generate --model " + model + " --tokenizer tests/fixtures/tokenizer/qwen3/tokenizer.json --template gemma "
                  "--system hi --prompt x"), "--system: message 0 has role 'system' but Gemma's chat template has no system role"));
}

// ./generate --data writes each line's reference beside its answer: one that the template cannot write
// (Llama 3.1's writes one call a turn) stopped the run after answering the lines before it, its
// message naming neither the file nor the line. Now refused before answering anything, naming both.
TEST_CASE("cli tools: ./generate --data refuses a reference the template cannot write before answering") {
    const char* tok = "models/smollm2-135m-instruct.tok";
    if (!file_exists(tok)) {
        MESSAGE("skipped: " << tok << " missing (make fetches the default model)");
        return;
    }
    Scratch s;
    const std::string model = s.out("m.bin"), data = s.out("d.jsonl");
    REQUIRE(run("./init_model --preset tiny --vocab 49152 -o " + model).status == 0);  // the tokenizer's vocabulary
    write_file_atomic(data, "{\"messages\": [{\"role\": \"user\", \"content\": \"q\"}, {\"role\": \"assistant\", \"content\": \"a\"}]}\n"
                            "{\"messages\": [{\"role\": \"user\", \"content\": \"q\"}, {\"role\": \"assistant\", \"content\": \"\", "
                            "\"tool_calls\": [{\"name\": \"f\", \"arguments\": {}}, {\"name\": \"g\", \"arguments\": {}}]}]}\n");
    Run r = run("./generate --model " + model + " --tokenizer " + tok + " --template llama3.1 --data " + data +
                " --max-tokens 2 --batch 1");
    INFO(r.out);
    CHECK(r.status == 1);
    CHECK(has(r, (data + ":2: message 1 has 2 tool calls but Llama 3.1's chat template writes one call").c_str()));
    CHECK(!has(r, "answered"));
}

// Every tool takes a Hugging Face directory or a GGUF file as --model, imported on the way in: the
// same run as from the .bin ./convert writes of it.
TEST_CASE("cli tools: --model takes a Hugging Face directory or a GGUF file as ./convert's .bin") {
    Scratch s;
    const std::string hf = "tests/fixtures/convert/tiny_llama_hf", gguf = "tests/fixtures/convert/tiny_qwen3.gguf";
    const std::string bin = s.out("llama"), qwen = s.out("qwen3");
    REQUIRE(run("./convert " + hf + " -o " + bin).status == 0);
    REQUIRE(run("./convert " + gguf + " -o " + qwen).status == 0);
    const std::string data = s.out("d.jsonl");
    std::string lines;
    for (int i = 0; i < 8; i++) lines += "{\"prompt\": \"the quick brown fox " + std::to_string(i) + "\", \"completion\": \" hello world\"}\n";
    write_file_atomic(data, lines);
    auto train = [&](const std::string& model, const char* out) {
        return run("./train --model " + model + " --data " + data + " --val-split 0.25 --max-steps 2 --batch-size 2 "
                   "--eval-samples 1 --lora-dropout 0 --out " + s.out(out));
    };
    auto losses = [](const Run& r) {  // the step and val-loss figures, without the timings
        std::string k;
        for (size_t at = 0; (at = r.out.find("loss ", at)) != std::string::npos; at += 5) k += r.out.substr(at, 11) + ";";
        return k;
    };
    const Run from_dir = train(hf, "a"), from_bin = train(bin + ".bin", "b");
    INFO(from_dir.out);
    REQUIRE(from_dir.status == 0);
    REQUIRE(from_bin.status == 0);
    CHECK(has(from_dir, ("note: " + hf + " is imported as the model (a Hugging Face model; read in").c_str()));
    CHECK(has(from_dir, ("tokenizer: " + hf + " (300 tokens, template chatml)").c_str()));
    CHECK(!losses(from_dir).empty());
    CHECK(losses(from_dir) == losses(from_bin));
    CHECK(has(from_dir, ("./export --model " + hf + " --lora ").c_str()));  // the hint names the directory
    const std::string lora = s.out("a") + "/ckpt-00000002/adapter.lora";
    const Run g_dir = run("./generate --model " + hf + " --lora " + lora + " --prompt hi --max-tokens 4");
    const Run g_bin = run("./generate --model " + bin + ".bin --lora " + lora + " --prompt hi --max-tokens 4");
    CHECK(g_dir.status == 0);
    CHECK(g_dir.out.substr(g_dir.out.find('\n') + 1, 4) == g_bin.out.substr(0, 4));  // after the note: the same answer
    const Run q_gguf = run("./generate --model " + gguf + " --prompt hi --max-tokens 4 --nf4");
    const Run q_bin = run("./generate --model " + qwen + ".bin --prompt hi --max-tokens 4 --nf4");
    INFO(q_gguf.out);
    CHECK(q_gguf.status == 0);
    CHECK(q_gguf.out.substr(q_gguf.out.find('\n') + 1, 4) == q_bin.out.substr(0, 4));
    CHECK(run("./export --model " + hf + " --lora " + lora + " --merge " + s.out("m.bin")).status == 0);
    CHECK(run("./export --model " + bin + ".bin --lora " + lora + " --merge " + s.out("n.bin")).status == 0);
    CHECK(read_file(s.out("m.bin")) == read_file(s.out("n.bin")));
}

// --no-think, transformers' enable_thinking=False: SmolLM3's reasoning mode in the data ./train reads,
// Qwen3's generation prompt; refused for a template without the switch.
TEST_CASE("cli tools: --no-think renders SmolLM3's /no_think mode and is refused where a template has no switch") {
    Scratch s;
    const std::string data = s.out("c.jsonl");
    write_file_atomic(data, "{\"messages\": [{\"role\": \"user\", \"content\": \"Hi\"}, {\"role\": \"assistant\", \"content\": \"Hello\"}]}\n");
    const Run off = run("./check_data " + data + " --template smollm3 --no-think --show 1");
    const Run on = run("./check_data " + data + " --template smollm3 --show 1");
    INFO(off.out);
    CHECK(off.status == 0);
    CHECK(has(off, "Reasoning Mode: /no_think"));
    CHECK(has(off, "<|im_start|>assistant\n<think>\n\n</think>\n[[Hello<|im_end|>]]"));
    CHECK(has(on, "Reasoning Mode: /think"));
    const Run chatml = run("./generate --prompt hi --no-think");
    CHECK(chatml.status == 1);
    CHECK(has(chatml, "--no-think: the chatml chat template has no thinking switch"));
    const Run train = run("./train --no-think --dry-run --out " + s.out("o"));
    CHECK(train.status == 1);
    CHECK(has(train, "--no-think: the chatml chat template has no thinking switch"));
}
