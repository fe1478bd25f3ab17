// ./check_data: the dataset validation report without loading a model (./train --check-data
// prints the same report). Exits 1 when the file has problems the options do not allow, so it can
// gate a data pipeline.
#include <algorithm>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <string>

#include "data/dataset.h"
#include "model/util.h"
#include "tools/cli.h"
#include "tokenizer/tokenizer.h"

static const char* kUsage =
    "usage: check_data [--data] FILE [[--data] FILE ...] [options]   (several files: a report each)\n"
    "  --model PATH              the model whose tokenizer (the .tok beside it) encodes the data, as ./train\n"
    "                            finds it (default models/smollm2-135m-instruct.bin)\n"
    "  --tokenizer PATH          .tok, tokenizer.json or tokenizer.model instead, or bytes (./train's raw bytes)\n"
    "  --template NAME           " CHAT_TEMPLATE_NAMES "\n"
    "                            (default: the tokenizer's)\n"
    "  --no-think                render as apply_chat_template(enable_thinking=False), as ./train --no-think\n"
    "  --max-seq-len N           512\n"
    "  --prompt-loss-weight W    0 (in [0, 1])\n"
    "  --truncation P            drop | truncate | error (drop)\n"
    "  --skip-bad-lines          judge the file as training with --skip-bad-lines would\n"
    "  --show N                  then print each file's first N examples as the model sees them, the tokens\n"
    "                            it learns (the answers and their end of turn) [[between double brackets]]\n";

// An example's text as its tokens spell it, each run of learned tokens (weight 1: a response and its
// end of turn, whatever --prompt-loss-weight gives the rest) between [[ and ]]: what the chat
// template made of a line and what the loss sees, for checking a template or a dataset by eye.
static void show_example(const Example& e, const Tokenizer& tok, int n) {
    size_t learned = 0;
    std::string text;
    bool in = false;
    for (size_t i = 0; i < e.tokens.size(); i++) {
        const bool now = e.weights[i] >= 1.0f;
        learned += now;
        if (now != in) text += now ? "[[" : "]]", in = now;
        // raw bytes (no tokenizer): the ids are the bytes, and 256 is EOS
        text += !tok.vocab.empty() ? decode_token(tok, e.tokens[i]) : e.tokens[i] < 256 ? std::string(1, (char)e.tokens[i]) : "<eos>";
    }
    if (in) text += "]]";
    std::printf("\nexample %d (line %d: %zu tokens, %zu learned):\n%s\n", n, e.line, e.tokens.size(), learned, text.c_str());
}

int main(int argc, char** argv) {
    return run_main([&] {
        std::vector<std::string> data;
        std::string model = "models/smollm2-135m-instruct.bin", tok_path, tmpl;
        bool no_think = false;
        DataOptions opt;
        int show = 0;
        Args args(argc, argv, "see ./check_data --help");
        while (args.next()) {
            if (args.is("--data")) data.push_back(args.value());
            else if (args.is("--model")) model = args.value();
            else if (args.is("--tokenizer")) tok_path = args.value();
            else if (args.is("--template")) tmpl = args.value();
            else if (args.is("--no-think")) no_think = true;
            else if (args.is("--max-seq-len")) opt.max_seq_len = args.integer(2);
            else if (args.is("--prompt-loss-weight")) opt.prompt_loss_weight = (float)args.number_in(0, 1);
            else if (args.is("--truncation")) opt.truncation = parse_truncation(args.value());
            else if (args.is("--skip-bad-lines")) opt.skip_bad_lines = true;
            else if (args.is("--show")) show = args.integer();
            else if (args.is("-h") || args.is("--help")) { std::printf("%s", kUsage); return 0; }
            else if (args.flag()[0] != '-') data.push_back(args.flag());  // ./check_data FILE ...
            else args.unknown();
        }
        if (data.empty()) fail("--data FILE is required\n%s", kUsage);
        data = expand_data_paths(data);  // a quoted wildcard: 'shards/train-*.parquet'
        // The tokenizer as ./train chooses it (make_data_tokenizer), so that the report is of the run's data.
        Tokenizer tok;
        DataTokenizer dt;
        if (tok_path == "bytes") {
            dt = raw_byte_data_tokenizer(chat_template_choice(chat_template_from_name("plain"), tmpl, no_think));
        } else {
            if (tok_path.empty() && !file_exists(model))
                fail("%s: model not found (a relative path is from the current directory), so no tokenizer beside it: "
                     "pass --model PATH or --tokenizer PATH (.tok, tokenizer.json or tokenizer.model), or --tokenizer bytes "
                     "for raw bytes", model.c_str());
            const std::string path = tokenizer_of_model(model, tok_path, ", or --tokenizer bytes for raw bytes");
            if (!file_exists(path)) fail("%s: tokenizer not found; pass --tokenizer PATH (.tok, tokenizer.json or tokenizer.model)", path.c_str());
            tok = tokenizer_load_any(path);
            dt = data_tokenizer(tok, chat_template_choice(tok.chat_template, tmpl, no_think));
            if (const std::string w = template_marker_warning(dt); !w.empty()) std::fprintf(stderr, "warning: %s\n", w.c_str());
        }
        for (const DataReport& r : check_datasets(data, dt, opt, stdout)) std::printf("ok: %s\n", report_summary(r).c_str());
        for (const std::string& path : data) {
            if (show == 0) break;
            DataReport rep;
            const std::vector<Example> ex = read_dataset(path, dt, opt, rep);
            std::printf("\n%s: the first %zu examples, learned tokens [[between double brackets]]:\n", path.c_str(),
                        std::min(ex.size(), (size_t)show));
            for (size_t i = 0; i < ex.size() && (int)i < show; i++) show_example(ex[i], tok, (int)i + 1);
        }
        return 0;
    });
}
