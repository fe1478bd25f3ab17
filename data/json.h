// A small strict JSON parser (RFC 8259) for tokenizer.json, tokenizer_config.json and jsonl datasets.
// Strict means: no comments, no trailing commas, no NaN/Infinity, no leading zeros, strings must be
// valid UTF-8 with control characters escaped, \uXXXX surrogates must pair up. Errors are
// std::runtime_error("line L, column C: what was expected"), columns counted in characters, so a
// user can find the spot in an editor. A leading UTF-8 byte-order mark is skipped (RFC 8259 allows
// parsers to ignore it, and Windows editors add one).
#pragma once
#include <cstdint>
#include <string>
#include <string_view>
#include <utility>
#include <vector>

struct JsonValue {
    enum Type { Null, Bool, Number, String, Array, Object };
    Type type = Null;
    bool boolean = false;
    double number = 0;
    // For numbers: true when the value is an integer represented exactly (an integer literal that
    // fits int64, or any literal whose double value is integral and within ±2^53). Then `integer`
    // holds it. Token ids and counts must be exact, so readers check this instead of casting.
    bool exact_integer = false;
    int64_t integer = 0;
    std::string string;
    std::vector<JsonValue> array;
    std::vector<std::pair<std::string, JsonValue>> object;  // in file order

    // The member named `key` of an object (the last one if the key repeats, as Python's json does);
    // nullptr when absent or when this value is not an object.
    const JsonValue* get(std::string_view key) const;
    bool is_null() const { return type == Null; }
};

// "null", "boolean", "number", "string", "array", "object" — for messages like "expected a string, got a number".
const char* json_type_name(JsonValue::Type t);

// Parses one complete JSON text (surrounding whitespace allowed, nothing else after it).
JsonValue json_parse(std::string_view text);
// The length of the JSON value that starts `text` (leading whitespace included), text after it left
// unread: how far one value of a stream of values reaches. Throws as json_parse does.
size_t json_value_length(std::string_view text);

// `s` as a JSON string literal with quotes; control characters, '"' and '\' escaped, other bytes
// (UTF-8) copied as they are. Used by writers of jsonl/fixtures so output parses back exactly.
std::string json_quote(std::string_view s);
