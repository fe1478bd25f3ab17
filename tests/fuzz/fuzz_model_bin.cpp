// libFuzzer target for the model .bin reader: any bytes must either load (params then has the
// config's size) or throw std::runtime_error naming the file. Never crash, hang, leak or allocate
// more than the file justifies (build with tests/fuzz/run.sh; seeds: seeds/model_bin, written by
// ./init_model --preset tiny in f32 and bf16).
#include <vector>

#include "model/weights.h"
#include "tests/fuzz/fuzz_file.h"

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
    static const std::string path = fuzz_path("model.bin");
    fuzz_write(path, data, size);
    ModelConfig cfg;
    std::vector<float> params;
    if (fuzz_reads(path, [&] { model_load(path, cfg, params); }) && params.size() != param_layout(cfg).total)
        __builtin_trap();
    return 0;
}
