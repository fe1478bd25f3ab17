// libFuzzer target for the GGUF reader and importer: any bytes must either open (and then every
// readable tensor dequantises) or throw std::runtime_error naming the file; then import_gguf must
// either import the model or fail the same way. Never crash, hang, leak or allocate more than the
// file justifies (build with tests/fuzz/run.sh; seeds: seeds/gguf, the tiny GGUFs of
// tests/fixtures/convert).
#include <vector>

#include "model/gguf.h"
#include "model/import.h"
#include "tests/fuzz/fuzz_file.h"

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
    static const std::string path = fuzz_path("model.gguf");
    fuzz_write(path, data, size);
    GgufFile g;
    if (!fuzz_reads(path, [&] { g = gguf_open(path); })) return 0;
    for (const GgufTensor& t : g.tensors) {
        if (!fuzz_reads(path, [&] { g.check_readable(t); })) continue;
        std::vector<float> v((size_t)t.numel);
        if (!fuzz_reads(path, [&] { g.read_f32(t, v.data()); })) return 0;
    }
    fuzz_reads(path, [&] { import_gguf(path); });
    return 0;
}
