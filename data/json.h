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
    // The literal had no fraction or exponent ("3", not "3.0" or "3e0"): Python reads it as an int,
    // the others as a float, and writes them back so (json_dumps_python).
    bool integer_literal = false;
    std::string string;  // a string's text; an integer literal's digits when they are past 64 bits
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
// python: also what Python's json.loads reads past the standard, NaN, Infinity, -Infinity and a float
// too large for a double (infinity); json_dumps_python writes them back as json.dumps does.
JsonValue json_parse(std::string_view text, bool python = false);
// The length of the JSON value that starts `text` (leading whitespace included), text after it left
// unread: how far one value of a stream of values reaches, and with `value` the value itself (one
// parse for both). Throws as json_parse does.
size_t json_value_length(std::string_view text, JsonValue* value = nullptr);

// `s` as a JSON string literal with quotes; control characters, '"' and '\' escaped, other bytes
// (UTF-8) copied as they are, exactly as Python's json.dumps(s, ensure_ascii=False) writes it. Used
// by writers of jsonl/fixtures so output parses back exactly.
std::string json_quote(std::string_view s);
// `v` as Python's json.dumps(v, ensure_ascii=False) writes what json.loads read from it: ", " and
// ": " between items, keys in their order (a repeated key once, at its first place with its last
// value, as a dict keeps it), an int literal's digits, a float as Python's repr ("1e-05", "100.0",
// "1e+16"; an int literal past 64 bits as its digits, as Python's int keeps them). Chat templates
// write tool definitions and call arguments so (transformers' |tojson).
// Throws std::runtime_error on an integer Number whose digits are not kept (one not read by json_parse).
// indent > 0: as json.dumps(v, indent=indent) writes it (|tojson(indent=4), Llama 3.1's tools), each
// item on its own line.
std::string json_dumps_python(const JsonValue& v, int indent = 0);
// `v` as Python's str() (repr) writes what json.loads read from it: as json_dumps_python but None,
// True and False, and strings as repr quotes and escapes them ('it\'s', "it's", '\xa0', '\u200b';
// printable non-ASCII as it is). SmolLM3's template writes its tool definitions so (|string).
std::string python_repr(const JsonValue& v);
