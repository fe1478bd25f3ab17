// libFuzzer target for the gzip/deflate reader: any bytes must either decompress or throw
// std::runtime_error naming the file; never crash, hang or read past the input (build with
// tests/fuzz/run.sh; seeds: the files of tests/fixtures/gzip).
#include <cstdint>
#include <cstring>
#include <stdexcept>
#include <string_view>

#include "data/gzip.h"

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
    try {
        gunzip(std::string_view((const char*)data, size), "fuzz.gz");
    } catch (const std::runtime_error& e) {
        if (std::strncmp(e.what(), "fuzz.gz: ", 9) != 0) __builtin_trap();
    }
    return 0;
}
