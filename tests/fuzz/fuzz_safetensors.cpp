// libFuzzer target for the safetensors reader: any bytes must either be added to a set (and then
// every tensor either reads as FP32 or fails check_readable, and as a quantized checkpoint's weight
// of each kind either reads or fails in hf_weight) or throw std::runtime_error naming the file. Never crash, hang, leak or allocate more than the file justifies (build with
// tests/fuzz/run.sh; seeds: seeds/safetensors).
#include <vector>

#include "model/import_quantized.h"
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
    // Each tensor as the weight of a bitsandbytes, fine-grained FP8, compressed-tensors, GPTQ and AWQ checkpoint
    // (its side tensors found by name in the same file).
    static const HfQuantization kinds[] = {
        {"bitsandbytes"}, {"fp8", false, "block", {4, 4}}, {"compressed-tensors", false, "channel", {1, 0}},
        {"compressed-tensors", true, "group", {1, 10}}, {"compressed-tensors", false, "tensor", {0, 0}},
        {"compressed-tensors", true, "group", {1, 20}, true, true, 4}, {"compressed-tensors", true, "channel", {1, 0}, true, false, 3},
        {"gptq", false, "", {0, 0}, false, false, 4, 32, true}, {"awq", false, "", {0, 0}, false, true, 4, 32}};
    for (const SafeTensor& t : set.tensors)
        for (HfQuantization q : kinds) {
            HfWeight w;
            if (!fuzz_reads(path, [&] { w = hf_weight(set, t, q); })) continue;
            size_t n = 1;
            for (int64_t d : w.shape) n *= (size_t)d;
            std::vector<float> v(n);
            hf_weight_read(set, w, v.data());
        }
    return 0;
}
