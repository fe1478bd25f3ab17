// libFuzzer target for the JSON parser: any bytes must either parse or throw std::runtime_error
// with a "line L, column C: ..." message; never crash, hang or leak (build with tests/fuzz/run.sh).
#include <cstdint>
#include <cstring>
#include <stdexcept>
#include <string_view>

#include "data/json.h"

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
    try {
        JsonValue v = json_parse(std::string_view((const char*)data, size));
        // A parsed string must quote and parse back to itself.
        if (v.type == JsonValue::String && json_parse(json_quote(v.string)).string != v.string) __builtin_trap();
    } catch (const std::runtime_error& e) {
        if (std::strncmp(e.what(), "line ", 5) != 0) __builtin_trap();
    }
    return 0;
}
