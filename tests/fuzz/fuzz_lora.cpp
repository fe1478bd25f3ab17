// libFuzzer target for the .lora adapter reader, against the tiny preset's config (an adapter for
// another base fails on its shape hash): any bytes must either load (adapters then has the layout's
// size) or throw std::runtime_error naming the file. Never crash, hang, leak or allocate more than
// the file justifies (build with tests/fuzz/run.sh; seeds: seeds/lora, tiny-preset adapters).
#include <vector>

#include "model/config.h"
#include "model/lora.h"
#include "tests/fuzz/fuzz_file.h"

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
    static const std::string path = fuzz_path("adapter.lora");
    static const ModelConfig tiny = config_preset("tiny");
    fuzz_write(path, data, size);
    LoraConfig lc;
    std::vector<float> adapters;
    if (fuzz_reads(path, [&] { lora_load(path, tiny, lc, adapters); }) && adapters.size() != lora_layout(tiny, lc).total)
        __builtin_trap();
    return 0;
}
