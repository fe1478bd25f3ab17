// Sampling from a model, optionally with a LoRA adapter: one prompt, its tokens streamed as they
// come, or every line of a dataset answered in batches, scored against its references.
//   ./generate --prompt "What is the capital of France?"            (chat-formatted by the template)
//   ./generate --raw --prompt "Once upon a time"                     (plain continuation)
//   ./generate --lora out/ckpt-00000100/adapter.lora --prompt "..." --temperature 0.7 --top-p 0.9
//   ./generate --lora out/ckpt-00000050/adapter.lora --data test.jsonl --out answers.jsonl
//   ./generate --chat --system "You are terse."                   (a conversation on stdin)
#include <unistd.h>

#include <cerrno>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <iostream>
#include <optional>
#include <stdexcept>
#include <string>

#include "data/dataset.h"
#include "data/default_task.h"
#include "data/json.h"
#include "model/answer.h"
#include "model/lora_peft.h"
#include "tokenizer/tokenizer.h"
#include "tokenizer/unicode.h"
#include "tools/cli.h"

namespace {

struct DataRun {
    std::string data, out;
    int batch = 16, limit = 0;
    std::string file_flag;  // --out, --batch or --limit when given (the last): they only shape a --data run
};

// `s` as valid UTF-8 for JSON readers: without a character cut short at its end (--max-tokens can
// stop inside one), and each invalid sequence elsewhere (byte-level tokens can come in any order)
// replaced by one U+FFFD, as tokenizers' decode (from_utf8_lossy) does.
std::string whole_utf8(std::string s) {
    size_t lead = s.size();
    while (lead > 0 && s.size() - lead < 4 && ((uint8_t)s[lead - 1] & 0xC0) == 0x80) lead--;  // continuation bytes
    if (lead > 0) {
        const uint8_t c = (uint8_t)s[lead - 1];
        const size_t need = c >= 0xF0 ? 4 : c >= 0xE0 ? 3 : c >= 0xC0 ? 2 : 1;
        if (s.size() - (lead - 1) < need) s.resize(lead - 1);
    }
    return utf8_lossy(s);
}

// --data: every conversation of the file answered (its final assistant turn, when it has one, is
// the reference, not shown to the model), written as one jsonl line each as its batch finishes, so
// a stopped run keeps what it answered; then the scores against the references.
void answer_file(const Model& m, const Tokenizer& tok, const ChatTemplate& chat, const SampleOptions& so,
                 const DataRun& run, const Ops& ops) {
    const char* p = run.data.c_str();
    if (!is_records_path(run.data))
        fail("--data %s: expected a .jsonl (or .csv, .tsv, .parquet) file of prompts (instruction, prompt, messages or conversations)", p);
    ParsedFile pf = parse_records(read_file(run.data), run.data, true, Answers::optional);
    if (!pf.invalid.empty()) {
        for (size_t i = 0; i < pf.invalid.size() && i < 10; i++)
            fprintf(stderr, "%s:%d: %s\n", p, pf.invalid[i].line, pf.invalid[i].what.c_str());
        fail("%s: %zu invalid line%s of %zu%s; fix or remove them", p, pf.invalid.size(),
             pf.invalid.size() == 1 ? "" : "s", pf.lines, pf.invalid.size() > 10 ? " (the first 10 above)" : " (above)");
    }
    std::vector<Record> records;
    for (const Record& r : pf.records) {
        if (r.is_text()) fail("%s:%d: a \"text\" line is a document, not a prompt: --data answers conversations", p, r.line);
        if (run.limit > 0 && (int)records.size() == run.limit) break;
        records.push_back(r);
    }
    std::vector<std::vector<int32_t>> prompts;
    for (const Record& r : records) {
        // The prompt, and the reference written beside its answer, as the template writes them: one it
        // cannot write (Llama 3.1's two calls in a turn) is refused here, naming the line, not after
        // answering the batches before it
        try {
            prompts.push_back(encode_prompt(tok, chat, record_prompt(r), r.tools));
            record_reference(r, chat.kind);
        } catch (const std::runtime_error& e) {
            fail("%s:%d: %s", p, r.line, e.what());
        }
        const int ctx = m.cfg.max_seq_len, need = (int)prompts.back().size() + so.max_new_tokens;
        if (ctx > 0 && need > ctx)
            fail("%s:%d: the prompt is %zu tokens, and with --max-tokens %d that is %d positions, more than the model's "
                 "context of %d: shorten the prompt or lower --max-tokens", p, r.line, prompts.back().size(),
                 so.max_new_tokens, need, ctx);
    }
    FILE* out = run.out.empty() ? stdout : fopen(run.out.c_str(), "w");
    if (!out) fail("--out %s: cannot write the file: %s", run.out.c_str(), strerror(errno));
    const double t0 = now_seconds();
    std::vector<std::string> answers = answer_prompts(m, tok, prompts, so, run.batch, 0, ops,
                                                      [&](size_t first, const std::vector<std::string>& done) {
        for (size_t i = 0; i < done.size(); i++) {
            const Record& r = records[first + i];
            const std::optional<std::string> ref = record_reference(r, chat.kind);
            fprintf(out, "{\"line\": %d, \"prompt\": %s, \"answer\": %s%s%s}\n", r.line,
                    json_quote(record_question(r)).c_str(), json_quote(whole_utf8(done[i])).c_str(),
                    ref ? ", \"reference\": " : "", ref ? json_quote(*ref).c_str() : "");
        }
        check_written(out, run.out.empty() ? "standard output" : run.out.c_str());
        fprintf(stderr, "[%zu/%zu answered, %.1fs]\n", first + done.size(), records.size(), now_seconds() - t0);
    });
    if (out != stdout && fclose(out) != 0) fail("--out %s: writing failed (disk full?)", run.out.c_str());
    TaskScore score = score_answers(records, answers, chat);
    fprintf(stderr, "%zu prompts answered in %.1fs", records.size(), now_seconds() - t0);
    if (score.n > 0) {
        fprintf(stderr, "; against the %d references: exact match %d/%d (%.1f%%)", score.n, score.exact, score.n,
                100 * score.exact_rate());
        if (score.fields_total > 0) fprintf(stderr, ", JSON fields %.1f%%", 100 * score.field_rate());
    }
    fprintf(stderr, "\n");
}

// Generates from `ids`, printing the tokens as they come; returns them. Tokens can end mid UTF-8
// character: bytes are printed as they come, the terminal joins them. An answer's first token
// loses the space a SentencePiece tokenizer writes before words, as decode() does; a raw
// continuation keeps it.
std::vector<int32_t> stream_answer(const Model& m, const Tokenizer& tok, const std::vector<int32_t>& ids,
                                   const SampleOptions& so, bool answer, const Ops& ops) {
    double t0 = now_seconds(), first = 0;
    size_t n = 0;
    SampleOptions o = so;
    o.vocab = (int)tok.vocab.size();  // padded embedding rows are never picked
    std::vector<int32_t> out = generate(m, {ids}, o, end_of_turn_ids(tok), [&](int, int32_t id) {
        if (!n++) first = now_seconds();
        const std::string b = n == 1 && answer ? decode(tok, {id}) : decode_token(tok, id);
        fwrite(b.data(), 1, b.size(), stdout);
        check_written(stdout, "standard output");  // else a lost answer would run to --max-tokens
    }, ops)[0];
    if (n == 0) fprintf(stderr, "\n[%zu prompt tokens, nothing generated: the first token ended the turn]\n", ids.size());
    else
        fprintf(stderr, "\n[%zu prompt tokens, %zu generated; prefill %.2fs, %.1f tokens/s]\n", ids.size(), n, first - t0,
                n > 1 ? (n - 1) / (now_seconds() - first) : 0.0);
    return out;
}

// --chat: a conversation on stdin, one user message per line, each answer streamed and kept in the
// conversation; its oldest exchanges are dropped when it outgrows the model's context.
void chat(const Model& m, const Tokenizer& tok, const ChatTemplate& ct, const std::optional<std::string>& system,
          const std::vector<std::string>& tools, const SampleOptions& so, const Ops& ops) {
    std::vector<ChatMessage> conversation;
    if (system) conversation.push_back({"system", *system});
    if ((system || !tools.empty()) && m.cfg.max_seq_len > 0) {  // else every message would be refused as too long
        std::vector<ChatMessage> fixed = conversation;
        fixed.push_back({"user", ""});
        const size_t n = encode_prompt(tok, ct, fixed, tools).size();
        const char* what = system && !tools.empty() ? "--system and --tools" : system ? "--system" : "--tools";
        if ((int)n + so.max_new_tokens > m.cfg.max_seq_len)
            fail("%s: a prompt of %zu tokens before any message; with --max-tokens %d that is more than the model's "
                 "context of %d: shorten what %s gives or lower --max-tokens", what, n, so.max_new_tokens,
                 m.cfg.max_seq_len, what);
    }
    const bool tty = isatty(0);
    if (tty) fprintf(stderr, "one message per line; /reset starts over, /exit or Ctrl-D ends%s\n",
                     tools.empty() ? "" : "; /tool TEXT answers the model's tool call with TEXT");
    std::string line;
    for (int turn = 0;; turn++) {
        if (tty) fprintf(stderr, "> ");
        if (!std::getline(std::cin, line)) break;
        if (!line.empty() && line.back() == '\r') line.pop_back();
        if (line.find_first_not_of(" \t") == std::string::npos) continue;
        // a command with spaces around it (typed, or pasted) is still the command
        const std::string command = line.substr(line.find_first_not_of(" \t"), line.find_last_not_of(" \t") + 1 -
                                                                                 line.find_first_not_of(" \t"));
        if (command == "/exit") break;
        if (command == "/reset") {
            conversation.resize(system ? 1 : 0);
            continue;
        }
        // A tool's result (the model's <tool_call> is in its answer, kept as the template writes it)
        if (!tools.empty() && line.rfind("/tool ", 0) == 0) conversation.push_back({"tool", line.substr(6)});
        else conversation.push_back({"user", line});
        const size_t before = conversation.size();
        std::vector<int32_t> ids;
        try {
            ids = encode_chat_prompt(tok, ct, conversation, m.cfg.max_seq_len, so.max_new_tokens, tools);
        } catch (const std::runtime_error& e) {  // this message does not fit: the chat goes on without it
            fprintf(stderr, "%s\n", e.what());
            conversation.pop_back();
            continue;
        }
        if (conversation.size() < before)
            fprintf(stderr, "[%zu earlier messages dropped: the conversation outgrew the context of %d tokens]\n",
                    before - conversation.size(), m.cfg.max_seq_len);
        SampleOptions turn_so = so;
        turn_so.seed = so.seed + turn;  // another draw each turn when sampling
        conversation.push_back({"assistant", decode(tok, stream_answer(m, tok, ids, turn_so, true, ops))});
        fputs("\n", stdout);  // the next answer on a line of its own
    }
}

}  // namespace

static int run(int argc, char** argv) {
    std::string model_path = "models/smollm2-135m-instruct.bin", tok_path, lora_path, prompt, tmpl, device = "auto", tools_path;
    std::optional<std::string> system;  // given, even empty: an empty system turn replaces the template's default
    bool raw = false, chatting = false, max_tokens_given = false, prompt_given = false, nf4 = false, no_think = false;
    DataRun data_run;
    SampleOptions so;
    so.max_new_tokens = 256;
    Args args(argc, argv, "see ./generate --help");
    while (args.next()) {
        if (args.is("--model")) model_path = args.value();
        else if (args.is("--tokenizer")) tok_path = args.value();
        else if (args.is("--lora")) lora_path = args.value();
        else if (args.is("--prompt")) prompt = args.value(), prompt_given = true;
        else if (args.is("--system")) system = args.value();
        else if (args.is("--template")) tmpl = args.value();
        else if (args.is("--tools")) tools_path = args.value();
        else if (args.is("--raw")) raw = true;
        else if (args.is("--no-think")) no_think = true;
        else if (args.is("--chat")) chatting = true;
        else if (args.is("--max-tokens")) so.max_new_tokens = args.integer(1), max_tokens_given = true;
        else if (args.is("--temperature")) so.temperature = (float)args.number_in(0, INFINITY);
        else if (args.is("--top-k")) so.top_k = args.integer();
        else if (args.is("--top-p")) so.top_p = (float)args.number_in(0, 1, true);
        else if (args.is("--seed")) so.seed = (uint64_t)args.integer();
        else if (args.is("--device")) device = args.value();
        else if (args.is("--nf4")) nf4 = true;
        else if (args.is("--data")) data_run.data = args.value();
        else if (args.is("--out")) data_run.out = args.value(), data_run.file_flag = "--out";
        else if (args.is("--batch")) data_run.batch = args.integer(1), data_run.file_flag = "--batch";
        else if (args.is("--limit")) data_run.limit = args.integer(), data_run.file_flag = "--limit";
        else if (args.is("--help") || args.is("-h")) {
            printf("usage: ./generate [--model M.bin] [--tokenizer T.tok] [--lora A.lora] --prompt TEXT [--system TEXT]\n"
                   "       [--raw] [--template NAME] [--max-tokens N (256)] [--temperature T (0 = greedy)]\n"
                   "       [--top-k K] [--top-p P] [--seed N (0: the same draws each run)] [--device auto|cpu|cuda] [--nf4]\n"
                   "       ./generate [...] --data FILE.jsonl|.csv|.tsv|.parquet [--out ANSWERS.jsonl] [--batch N (16)] [--limit N]\n"
                   "       ./generate [...] --chat [--system TEXT] [--tools TOOLS.json]\n"
                   "--model takes our .bin, or a Hugging Face model directory or .gguf file (imported as ./convert would).\n"
                   "--lora takes our .lora or a Hugging Face PEFT adapter directory (adapter_config.json +\n"
                   "adapter_model.safetensors). Without --prompt the prompt is read from stdin.\n"
                   "--raw continues the prompt as it is, without the chat template; special-token text in it\n"
                   "(<|im_start|>) is read as those tokens, as transformers' tokenizer reads it. --system \"\"\n"
                   "is an empty system turn, which replaces the template's default system prompt.\n"
                   "--template NAME: " CHAT_TEMPLATE_NAMES " (default: the tokenizer's).\n"
                   "--no-think renders as apply_chat_template(enable_thinking=False): Qwen3's prompt opens an empty\n"
                   "think block, SmolLM3's reasoning mode is /no_think (qwen3 and smollm3 only).\n"
                   "--nf4 holds the base projections in NF4, as ./train --method qlora does: the model a QLoRA\n"
                   "adapter was trained and evaluated on (and a quarter of the weights' memory).\n"
                   "--data answers every line of a jsonl file, or row of a .csv/.tsv/.parquet, in the training formats\n"
                   "(instruction/input, prompt, messages or conversations; the answer field may be left out): N prompts at a time,\n"
                   "greedy unless --temperature. Each answer is written as it is done, one line\n"
                   "{\"line\", \"prompt\", \"answer\", \"reference\"} (to stdout without --out); a line's\n"
                   "final assistant turn or output is its reference, and exact match and JSON-field scores\n"
                   "against the references are printed at the end.\n"
                   "--chat holds a conversation: one user message per line on stdin, each answer streamed and\n"
                   "kept; the oldest exchanges are dropped when it outgrows the model's context. /reset starts\n"
                   "over, /exit or end of input ends.\n"
                   "--tools TOOLS.json gives --prompt and --chat tool definitions (a JSON list, as a training\n"
                   "line's \"tools\"), which the qwen2.5, qwen3, smollm3 and llama3.1 templates render; in --chat,\n"
                   "/tool TEXT sends TEXT as the result of the model's call. --data lines carry their own.\n");
            return 0;
        } else args.unknown();
    }
    if (!data_run.data.empty() && (prompt_given || system || raw || chatting))
        fail("--data answers the conversations of a file: --prompt, --system, --raw and --chat are for one prompt");
    // Else `--prompt X --out answer.txt` would print the answer and leave the file unwritten, exit 0.
    if (data_run.data.empty() && !data_run.file_flag.empty())
        fail("%s is for --data FILE (answering a file of prompts): with --prompt or --chat the answer goes to "
             "standard output (redirect it: > FILE)", data_run.file_flag.c_str());
    if (chatting && (prompt_given || raw)) fail("--chat reads the user's messages from stdin: drop --prompt and --raw");
    if (!data_run.out.empty()) require_jsonl_output_name(data_run.out, "--out");  // the answers are jsonl
    if (!tools_path.empty() && (!data_run.data.empty() || raw))
        fail("--tools gives --prompt and --chat tool definitions: %s", raw ? "--raw renders no template to put them in"
                                                                          : "--data lines carry their own (\"tools\")");
    if (raw && (system || !tmpl.empty()))
        fail("--raw continues the text as it is, without the chat template: drop --system and --template");
    if (data_run.data.empty() && !chatting && !prompt_given) {
        char buf[4096];
        size_t n;
        while ((n = fread(buf, 1, sizeof buf, stdin)) > 0) prompt.append(buf, n);
        if (!prompt.empty() && prompt.back() == '\n') prompt.pop_back();  // echo's newline: as --prompt gives it
        if (!prompt.empty() && prompt.back() == '\r') prompt.pop_back();
    }
    if (data_run.data.empty() && !chatting && prompt.empty() && !prompt_given)
        fail("no prompt: pass --prompt TEXT or give it on stdin, or --data FILE");
    ModelConfig cfg = model_read_config(model_path);  // the model first: a missing one is named as such
    if (so.temperature == 0.0f && (so.top_k > 0 || so.top_p < 1.0f))
        fprintf(stderr, "note: --top-k and --top-p shape sampling, which needs --temperature T > 0: decoding greedily\n");
    if (cfg.max_seq_len > 0 && so.max_new_tokens >= cfg.max_seq_len) {
        if (max_tokens_given)
            fail("--max-tokens %d: the model's context is %d positions, the prompt's included: ask for fewer",
                 so.max_new_tokens, cfg.max_seq_len);
        so.max_new_tokens = cfg.max_seq_len / 2;  // the default 256 on a short-context model: half its context
    }
    if (tok_path == "bytes") fail("--tokenizer bytes is ./train's raw-byte encoding: ./generate needs a tokenizer file");
    const std::string tok_file = tokenizer_of_model(model_path, tok_path);
    Tokenizer tok = tokenizer_load_any(tok_file);
    if ((int)tok.vocab.size() > cfg.vocab_size)
        fail("%s: the tokenizer has %zu tokens but the model %s only %d embeddings: pass the model's own tokenizer",
             tok_file.c_str(), tok.vocab.size(), model_path.c_str(), cfg.vocab_size);
    if (same_file(data_run.out, data_run.data))
        fail("--out %s is the --data file: the answers would replace the prompts; write them elsewhere",
             data_run.out.c_str());
    Model m;
    if (nf4) {
        model_load_nf4(m, model_path);
    } else {
        std::vector<float> params;
        model_load(model_path, cfg, params);
        model_init(m, cfg, std::move(params));
    }
    if (!lora_path.empty()) {
        LoraConfig lc;
        std::vector<float> adapters;
        lora_load_any(lora_path, cfg, lc, adapters);
        model_set_lora(m, lc, std::move(adapters));
    }
    const ChatTemplate ct = chat_template_choice(tok.chat_template, tmpl, no_think);
    std::vector<std::string> tools;
    if (!tools_path.empty()) {
        std::string why;
        JsonValue list;
        try {
            list = json_parse(read_file(tools_path));
        } catch (const std::runtime_error& e) {
            fail("--tools %s: %s", tools_path.c_str(), e.what());
        }
        if (!parse_tools(list, tools, why)) fail("--tools %s: %s", tools_path.c_str(), why.c_str());
        if (!chat_template_renders_tools(ct.kind))
            fail("--tools: the %s chat template does not render tool definitions (" TOOL_CALLING_TEMPLATES
                 " if the model was trained on theirs", chat_template_name(ct.kind));
    }
    if (const std::string w = template_marker_warning(data_tokenizer(tok, ct)); !w.empty()) fprintf(stderr, "warning: %s\n", w.c_str());
    const Ops& ops = select_ops(device.c_str());
    model_upload(m, ops);
    if (!data_run.data.empty()) {
        answer_file(m, tok, ct, so, data_run, ops);
        return 0;
    }
    if (system && !raw) {  // a template without a system role (gemma) says so about the flag, not "message 0"
        try {
            (void)chat_render(ct, {{"system", *system}, {"user", "x"}}, true, tools);
        } catch (const std::runtime_error& e) {
            fail("--system: %s", e.what());
        }
    }
    if (chatting) {
        chat(m, tok, ct, system, tools, so, ops);
        return 0;
    }
    std::string text = prompt;
    if (!raw) {
        std::vector<ChatMessage> msgs;
        if (system) msgs.push_back({"system", *system});
        msgs.push_back({"user", prompt});
        text = chat_render(ct, msgs, true, tools);
    }
    // Special-token text in a --raw prompt (a template written by hand) is those tokens, as
    // transformers' tokenizer reads it
    const std::vector<int32_t> ids = encode_with_bos(tok, text, true);
    if (ids.empty()) fail("--raw with an empty prompt: there is no token to continue from (this tokenizer adds no BOS)");
    if (cfg.max_seq_len > 0 && (int)ids.size() + so.max_new_tokens > cfg.max_seq_len)
        fail("the prompt is %zu tokens, and with --max-tokens %d that is %zu positions, more than the model's context "
             "of %d: shorten the prompt or lower --max-tokens", ids.size(), so.max_new_tokens,
             ids.size() + so.max_new_tokens, cfg.max_seq_len);
    stream_answer(m, tok, ids, so, !raw, ops);
    return 0;
}

int main(int argc, char** argv) { return run_main([&] { return run(argc, argv); }); }
