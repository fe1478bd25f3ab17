// libFuzzer target for tokenizer.json (Hugging Face) loading: any bytes must either load, and
// then encode and decode text, or throw std::runtime_error naming the file. The file lies alone in
// a per-process directory, so no config.json or tokenizer_config.json is read beside it. Never
// crash, hang, leak or allocate more than the file justifies (build with tests/fuzz/run.sh; seeds:
// seeds/tokenizer_json).
#include "tokenizer/tokenizer.h"
#include "tests/fuzz/fuzz_file.h"

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
    static const std::string path = fuzz_path("tokenizer.json");
    fuzz_write(path, data, size);
    Tokenizer tok;
    if (fuzz_reads(path, [&] { tok = tokenizer_load_hf(path); })) decode(tok, encode(tok, kFuzzText));
    return 0;
}
