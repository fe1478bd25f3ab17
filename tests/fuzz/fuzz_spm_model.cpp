// libFuzzer target for SentencePiece's tokenizer.model reader: any bytes must either load or throw
// std::runtime_error naming the file; a model that loads must encode and decode text. Never crash,
// hang or leak (build with tests/fuzz/run.sh; seed: seeds/spm/tiny.model from make_spm_seed.py).
#include <cstdint>
#include <stdexcept>
#include <string>

#include "tokenizer/tokenizer.h"

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
    Tokenizer tok;
    try {
        spm_model_parse(std::string((const char*)data, size), "fuzz.model", tok);
        tokenizer_build(tok);
    } catch (const std::runtime_error& e) {
        if (std::string(e.what()).rfind("fuzz.model: ", 0) != 0 && std::string(e.what()).rfind("tokenizer: ", 0) != 0) __builtin_trap();
        return 0;
    }
    std::vector<int32_t> ids = encode(tok, "Hello  world <s>\xF0\x9F\xA6\x99\n\xFF");
    decode(tok, ids);
    return 0;
}
