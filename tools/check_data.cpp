// ./check_data: the dataset validation report without loading a model (./train --check-data
// prints the same report). Exits 1 when the file has problems the options do not allow, so it can
// gate a data pipeline.
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <string>

#include "data/dataset.h"
#include "model/util.h"
#include "tokenizer/tokenizer.h"

static const char* kUsage =
    "usage: check_data --data FILE [options]\n"
    "  --tokenizer PATH          .tok or tokenizer.json (default models/smollm2-135m-instruct.tok)\n"
    "  --template NAME           chatml, llama3, gemma, plain (default: the tokenizer's)\n"
    "  --max-seq-len N           512\n"
    "  --prompt-loss-weight W    0 (in [0, 1])\n"
    "  --truncation P            drop | truncate | error (drop)\n"
    "  --skip-bad-lines          judge the file as training with --skip-bad-lines would\n";

int main(int argc, char** argv) {
    std::string data, tok_path = "models/smollm2-135m-instruct.tok", tmpl;
    DataOptions opt;
    try {
        for (int i = 1; i < argc; i++) {
            std::string a = argv[i];
            auto val = [&]() -> std::string {
                if (i + 1 >= argc) fail("%s needs a value\n%s", a.c_str(), kUsage);
                return argv[++i];
            };
            if (a == "--data") data = val();
            else if (a == "--tokenizer") tok_path = val();
            else if (a == "--template") tmpl = val();
            else if (a == "--max-seq-len") opt.max_seq_len = std::atoi(val().c_str());
            else if (a == "--prompt-loss-weight") opt.prompt_loss_weight = std::strtof(val().c_str(), nullptr);
            else if (a == "--truncation") opt.truncation = parse_truncation(val());
            else if (a == "--skip-bad-lines") opt.skip_bad_lines = true;
            else if (a == "-h" || a == "--help") { std::printf("%s", kUsage); return 0; }
            else fail("unknown flag %s\n%s", a.c_str(), kUsage);
        }
        if (data.empty()) fail("--data FILE is required\n%s", kUsage);
        if (!file_exists(tok_path)) fail("%s: tokenizer not found; pass --tokenizer PATH (.tok or tokenizer.json)", tok_path.c_str());
        Tokenizer tok = tokenizer_load_any(tok_path);
        DataTokenizer dt;
        dt.encode = [&tok](std::string_view text, bool special) { return encode(tok, text, special); };
        dt.eos = tok.eos_id;
        dt.chat_template = tmpl.empty() ? tok.chat_template : chat_template_from_name(tmpl);
        DataReport report;
        read_dataset(data, dt, opt, report);
        print_report(report, opt, stdout);
        check_report(report, opt);
        std::printf("ok: %s\n", report_summary(report).c_str());
    } catch (const std::exception& e) {
        std::fflush(stdout);
        std::fprintf(stderr, "error: %s\n", e.what());
        return 1;
    }
    return 0;
}
