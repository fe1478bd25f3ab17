// libFuzzer target for our binary .tok tokenizer reader: any bytes must either load, and then
// encode and decode text, or throw std::runtime_error naming the file. Never crash, hang, leak or
// allocate more than the file justifies (build with tests/fuzz/run.sh; seeds: seeds/tok).
#include "tokenizer/tokenizer.h"
#include "tests/fuzz/fuzz_file.h"

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
    static const std::string path = fuzz_path("model.tok");
    fuzz_write(path, data, size);
    Tokenizer tok;
    if (fuzz_reads(path, [&] { tok = tokenizer_load(path); })) decode(tok, encode(tok, kFuzzText));
    return 0;
}
