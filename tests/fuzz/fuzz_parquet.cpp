// libFuzzer target for the Parquet reader: any bytes must either give rows or throw
// std::runtime_error naming the file; never crash, hang, leak or allocate without bound (build with
// tests/fuzz/run.sh; seeds: the files of tests/fixtures/parquet).
#include <cstdint>
#include <cstring>
#include <stdexcept>
#include <string_view>

#include "data/parquet.h"
#include "data/records.h"

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
    const std::string_view bytes((const char*)data, size);
    try {
        parquet_rows(bytes, "fuzz.parquet");
        parse_records(bytes, "fuzz.parquet", true);
    } catch (const std::runtime_error& e) {
        if (std::strncmp(e.what(), "fuzz.parquet", 12) != 0) __builtin_trap();
    }
    return 0;
}
