// libFuzzer target for the safetensors reader: any bytes must either be added to a set (and then
// every tensor either reads as FP32 or fails check_readable) or throw std::runtime_error naming the
// file. Never crash, hang, leak or allocate more than the file justifies (build with
// tests/fuzz/run.sh; seeds: seeds/safetensors).
#include <vector>

#include "model/safetensors.h"
#include "tests/fuzz/fuzz_file.h"

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
    static const std::string path = fuzz_path("model.safetensors");
    fuzz_write(path, data, size);
    SafetensorsSet set;
    if (!fuzz_reads(path, [&] { safetensors_add_file(set, path); })) return 0;
    for (const SafeTensor& t : set.tensors) {
        if (!fuzz_reads(path, [&] { set.check_readable(t); })) continue;
        std::vector<float> v((size_t)t.numel);
        set.read_f32(t, v.data());
    }
    return 0;
}
