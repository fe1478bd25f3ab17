// Sampling from a model, optionally with a LoRA adapter, streaming tokens as they come.
//   ./generate --prompt "What is the capital of France?"            (chat-formatted by the template)
//   ./generate --raw --prompt "Once upon a time"                     (plain continuation)
//   ./generate --lora out/ckpt-00000100/adapter.lora --prompt "..." --temperature 0.7 --top-p 0.9
#include <cstdio>
#include <cstdlib>
#include <string>

#include "model/generate.h"
#include "model/lora_peft.h"
#include "tokenizer/tokenizer.h"
#include "tools/cli.h"

static int run(int argc, char** argv) {
    std::string model_path = "models/smollm2-135m-instruct.bin", tok_path, lora_path, prompt, system, tmpl,
                device = "auto";
    bool raw = false;
    SampleOptions so;
    so.max_new_tokens = 256;
    Args args(argc, argv, "see ./generate --help");
    while (args.next()) {
        if (args.is("--model")) model_path = args.value();
        else if (args.is("--tokenizer")) tok_path = args.value();
        else if (args.is("--lora")) lora_path = args.value();
        else if (args.is("--prompt")) prompt = args.value();
        else if (args.is("--system")) system = args.value();
        else if (args.is("--template")) tmpl = args.value();
        else if (args.is("--raw")) raw = true;
        else if (args.is("--max-tokens")) so.max_new_tokens = args.integer();
        else if (args.is("--temperature")) so.temperature = (float)args.number();
        else if (args.is("--top-k")) so.top_k = args.integer();
        else if (args.is("--top-p")) so.top_p = (float)args.number();
        else if (args.is("--seed")) so.seed = (uint64_t)args.integer();
        else if (args.is("--device")) device = args.value();
        else if (args.is("--help") || args.is("-h")) {
            printf("usage: ./generate [--model M.bin] [--tokenizer T.tok] [--lora A.lora] --prompt TEXT [--system TEXT]\n"
                   "       [--raw] [--template chatml|llama3|gemma|gemma3|llama2|mistral|zephyr|qwen3|plain] [--max-tokens N (256)] [--temperature T (0 = greedy)]\n"
                   "       [--top-k K] [--top-p P] [--seed N] [--device auto|cpu|cuda]\n"
                   "--lora takes our .lora or a Hugging Face PEFT adapter directory (adapter_config.json +\n"
                   "adapter_model.safetensors). Without --prompt the prompt is read from stdin.\n");
            return 0;
        } else args.unknown();
    }
    if (prompt.empty()) {
        char buf[4096];
        size_t n;
        while ((n = fread(buf, 1, sizeof buf, stdin)) > 0) prompt.append(buf, n);
    }
    if (prompt.empty()) fail("no prompt: pass --prompt TEXT or give it on stdin");
    if (tok_path.empty()) tok_path = tokenizer_beside(model_path);
    Tokenizer tok = tokenizer_load_any(tok_path);
    ModelConfig cfg;
    std::vector<float> params;
    model_load(model_path, cfg, params);
    Model m;
    model_init(m, cfg, std::move(params));
    if (!lora_path.empty()) {
        LoraConfig lc;
        std::vector<float> adapters;
        lora_load_any(lora_path, cfg, lc, adapters);
        model_set_lora(m, lc, std::move(adapters));
    }
    std::string text = prompt;
    if (!raw) {
        ChatTemplate ct = tmpl.empty() ? tok.chat_template : chat_template_from_name(tmpl);
        std::vector<ChatMessage> msgs;
        if (!system.empty()) msgs.push_back({"system", system});
        msgs.push_back({"user", prompt});
        text = chat_render(ct, msgs, true);
    }
    std::vector<int32_t> ids = encode_with_bos(tok, text, !raw);
    std::vector<int32_t> stops = end_of_turn_ids(tok);
    double t0 = now_seconds(), first = 0;
    size_t n = 0;
    const Ops& ops = select_ops(device.c_str());
    model_upload(m, ops);
    // Tokens can end mid UTF-8 character: print bytes as they come, the terminal joins them. An
    // answer's first token loses the space a SentencePiece tokenizer writes before words, as
    // decode() does; a raw continuation keeps it.
    generate(m, {ids}, so, stops, [&](int, int32_t id) {
        if (!n++) first = now_seconds();
        const std::string b = n == 1 && !raw ? decode(tok, {id}) : decode_token(tok, id);
        fwrite(b.data(), 1, b.size(), stdout);
        fflush(stdout);
    }, ops);
    double dt = now_seconds() - first;
    fprintf(stderr, "\n[%zu prompt tokens, %zu generated; prefill %.2fs, %.1f tokens/s]\n", ids.size(), n,
            first - t0, n > 1 ? (n - 1) / dt : 0.0);
    return 0;
}

int main(int argc, char** argv) { return run_main([&] { return run(argc, argv); }); }
