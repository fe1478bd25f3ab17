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
    try {
        GgufFile g = gguf_open(path);
        for (const GgufTensor& t : g.tensors) {
            try {
                g.check_readable(t);
            } catch (const std::runtime_error& e) {
                fuzz_check_error(e, path);
                continue;
            }
            std::vector<float> v((size_t)t.numel);
            g.read_f32(t, v.data());
        }
    } catch (const std::runtime_error& e) {
        fuzz_check_error(e, path);
        return 0;
    }
    try {
        ImportedModel m = import_gguf(path);
    } catch (const std::runtime_error& e) {
        fuzz_check_error(e, path);
    }
    return 0;
}
