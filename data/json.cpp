#include "data/json.h"

#include "model/util.h"
#include "tokenizer/unicode.h"

#include <algorithm>
#include <charconv>
#include <cmath>
#include <cstdlib>
#include <cstring>
#include <stdexcept>

namespace {

// Deep nesting is never legitimate in our inputs and unbounded recursion would overflow the stack
// on a hostile file; 256 levels is far beyond any tokenizer or dataset record.
constexpr int kMaxDepth = 256;

struct Parser {
    std::string_view s;
    size_t pos = 0;
    bool python = false;  // also NaN, Infinity, -Infinity and overflowing floats, as Python's json.loads

    // Line/column are computed only when failing, so the hot path never tracks them.
    [[noreturn]] void error_at(size_t at, const char* fmt, const char* arg = "") const {
        size_t line = 1, line_start = 0;
        for (size_t i = 0; i < at && i < s.size(); i++)
            if (s[i] == '\n') line++, line_start = i + 1;
        size_t column = 1;  // characters, not bytes: UTF-8 continuation bytes do not start a column
        for (size_t i = line_start; i < at && i < s.size(); i++)
            if (((unsigned char)s[i] & 0xC0) != 0x80) column++;
        char what[256];
        snprintf(what, sizeof what, fmt, arg);
        fail("line %zu, column %zu: %s", line, column, what);
    }
    [[noreturn]] void error(const char* fmt, const char* arg = "") const { error_at(pos, fmt, arg); }

    void skip_ws() {
        while (pos < s.size() && (s[pos] == ' ' || s[pos] == '\n' || s[pos] == '\r' || s[pos] == '\t')) pos++;
    }

    // Fails with "expected X" or, at the end of the text, says the text ended too early.
    [[noreturn]] void expected(const char* what) const {
        if (pos >= s.size()) error("unexpected end of input: expected %s", what);
        error("expected %s", what);
    }

    void literal(const char* word, JsonValue& v, JsonValue::Type t, bool b) {
        size_t n = strlen(word);
        if (s.substr(pos, n) != word) expected("a value (null, true, false, a number, a string, an array or an object)");
        pos += n;
        v.type = t;
        v.boolean = b;
    }

    void value(JsonValue& v, int depth) {
        skip_ws();
        if (pos >= s.size()) expected("a value");
        switch (s[pos]) {
        case '{': return object(v, depth + 1);
        case '[': return array(v, depth + 1);
        case '"': v.type = JsonValue::String; return string(v.string);
        case 't': return literal("true", v, JsonValue::Bool, true);
        case 'f': return literal("false", v, JsonValue::Bool, false);
        case 'n': return literal("null", v, JsonValue::Null, false);
        default:
            if (python && (s.substr(pos, 3) == "NaN" || s.substr(pos, 8) == "Infinity" || s.substr(pos, 9) == "-Infinity")) {
                const bool nan = s[pos] == 'N', neg = s[pos] == '-';
                pos += nan ? 3 : neg ? 9 : 8;
                v.type = JsonValue::Number;
                v.number = nan ? std::nan("") : neg ? -HUGE_VAL : HUGE_VAL;
                return;
            }
            if (s[pos] == '-' || (s[pos] >= '0' && s[pos] <= '9')) return number(v);
            expected("a value (null, true, false, a number, a string, an array or an object)");
        }
    }

    void check_depth(int depth) const {
        if (depth > kMaxDepth) error("nesting is deeper than 256 arrays/objects");
    }

    void object(JsonValue& v, int depth) {
        check_depth(depth);
        v.type = JsonValue::Object;
        pos++;  // '{'
        skip_ws();
        if (pos < s.size() && s[pos] == '}') { pos++; return; }
        for (;;) {
            skip_ws();
            if (pos >= s.size() || s[pos] != '"') expected("a string key in object");
            v.object.emplace_back();
            string(v.object.back().first);
            skip_ws();
            if (pos >= s.size() || s[pos] != ':') expected("':' after object key");
            pos++;
            value(v.object.back().second, depth);
            skip_ws();
            if (pos < s.size() && s[pos] == ',') { pos++; continue; }
            if (pos < s.size() && s[pos] == '}') { pos++; return; }
            expected("',' or '}' in object");
        }
    }

    void array(JsonValue& v, int depth) {
        check_depth(depth);
        v.type = JsonValue::Array;
        pos++;  // '['
        skip_ws();
        if (pos < s.size() && s[pos] == ']') { pos++; return; }
        for (;;) {
            v.array.emplace_back();
            value(v.array.back(), depth);
            skip_ws();
            if (pos < s.size() && s[pos] == ',') { pos++; continue; }
            if (pos < s.size() && s[pos] == ']') { pos++; return; }
            expected("',' or ']' in array");
        }
    }

    void number(JsonValue& v) {
        size_t start = pos;
        auto digits = [&] { size_t p = pos; while (pos < s.size() && s[pos] >= '0' && s[pos] <= '9') pos++; return pos > p; };
        if (s[pos] == '-') pos++;
        if (pos < s.size() && s[pos] == '0') {
            pos++;
            if (pos < s.size() && s[pos] >= '0' && s[pos] <= '9') error("leading zeros are not allowed in numbers");
        } else if (!digits()) {
            expected("a digit after '-'");
        }
        bool integral_literal = true;
        if (pos < s.size() && s[pos] == '.') {
            pos++;
            integral_literal = false;
            if (!digits()) expected("a digit after the decimal point");
        }
        if (pos < s.size() && (s[pos] == 'e' || s[pos] == 'E')) {
            pos++;
            integral_literal = false;
            if (pos < s.size() && (s[pos] == '+' || s[pos] == '-')) pos++;
            if (!digits()) expected("a digit in the exponent");
        }
        const char* b = s.data() + start;
        const char* e = s.data() + pos;
        v.type = JsonValue::Number;
        if (std::from_chars(b, e, v.number).ec == std::errc::result_out_of_range) {
            // from_chars leaves the value untouched when out of range; strtod tells overflow (HUGE_VAL)
            // from underflow (0 or a denormal, which we accept as Python does). Infinity is not a JSON
            // value, so an overflow is refused rather than silently saturated.
            v.number = strtod(std::string(b, e).c_str(), nullptr);
            if (std::isinf(v.number) && !(python && !integral_literal)) error_at(start, "number is too large for a double");
        }
        v.integer_literal = integral_literal;
        if (integral_literal) {
            int64_t i;
            auto ri = std::from_chars(b, e, i);
            if (ri.ec == std::errc() && ri.ptr == e) v.exact_integer = true, v.integer = i;
            else v.string.assign(b, e);  // past 64 bits: Python keeps every digit, and writes them back
        } else if (v.number == std::floor(v.number) && std::fabs(v.number) <= 9007199254740992.0) {
            v.exact_integer = true, v.integer = (int64_t)v.number;
        }
    }

    unsigned hex4() {
        if (pos + 4 > s.size()) expected("4 hex digits after \\u");
        unsigned u = 0;
        for (int i = 0; i < 4; i++) {
            char c = s[pos + i];
            int d = c >= '0' && c <= '9' ? c - '0' : c >= 'a' && c <= 'f' ? c - 'a' + 10 : c >= 'A' && c <= 'F' ? c - 'A' + 10 : -1;
            if (d < 0) { pos += i; expected("4 hex digits after \\u"); }
            u = u * 16 + d;
        }
        pos += 4;
        return u;
    }

    static void put_utf8(std::string& out, unsigned cp) {
        if (cp < 0x80) out += (char)cp;
        else if (cp < 0x800) out += (char)(0xC0 | cp >> 6), out += (char)(0x80 | (cp & 0x3F));
        else if (cp < 0x10000) out += (char)(0xE0 | cp >> 12), out += (char)(0x80 | (cp >> 6 & 0x3F)), out += (char)(0x80 | (cp & 0x3F));
        else out += (char)(0xF0 | cp >> 18), out += (char)(0x80 | (cp >> 12 & 0x3F)), out += (char)(0x80 | (cp >> 6 & 0x3F)), out += (char)(0x80 | (cp & 0x3F));
    }

    // Validates one UTF-8 sequence starting at pos (a byte >= 0x80) and returns its length;
    // rejects overlong forms, surrogates and code points above U+10FFFF as RFC 3629 requires.
    size_t utf8_len() const {
        auto u = [&](size_t i) { return pos + i < s.size() ? (unsigned char)s[pos + i] : 0u; };
        unsigned c = u(0);
        size_t n;
        unsigned lo = 0x80, hi = 0xBF;  // allowed range of the second byte
        if (c >= 0xC2 && c <= 0xDF) n = 2;
        else if (c >= 0xE0 && c <= 0xEF) n = 3, lo = c == 0xE0 ? 0xA0 : 0x80, hi = c == 0xED ? 0x9F : 0xBF;
        else if (c >= 0xF0 && c <= 0xF4) n = 4, lo = c == 0xF0 ? 0x90 : 0x80, hi = c == 0xF4 ? 0x8F : 0xBF;
        else { char b[8]; snprintf(b, sizeof b, "0x%02X", c); error("invalid UTF-8: byte %s cannot start a character", b); }
        if (u(1) < lo || u(1) > hi) error("invalid UTF-8 sequence in string");
        for (size_t i = 2; i < n; i++)
            if ((u(i) & 0xC0) != 0x80) error("invalid UTF-8 sequence in string");
        return n;
    }

    void string(std::string& out) {
        pos++;  // opening quote
        for (;;) {
            // copy the longest run of plain ASCII in one append: this is the hot loop for big vocabularies
            size_t run = pos;
            while (run < s.size()) {
                unsigned char c = s[run];
                if (c == '"' || c == '\\' || c < 0x20 || c >= 0x80) break;
                run++;
            }
            out.append(s.data() + pos, run - pos);
            pos = run;
            if (pos >= s.size()) error("unexpected end of input: unterminated string");
            unsigned char c = s[pos];
            if (c == '"') { pos++; return; }
            if (c < 0x20) {
                char b[8]; snprintf(b, sizeof b, "%04X", c);
                error("control character U+%s must be escaped in a string", b);
            }
            if (c >= 0x80) {
                size_t n = utf8_len();
                out.append(s.data() + pos, n);
                pos += n;
                continue;
            }
            pos++;  // backslash
            if (pos >= s.size()) error("unexpected end of input: unterminated string");
            char e = s[pos++];
            switch (e) {
            case '"': out += '"'; break;
            case '\\': out += '\\'; break;
            case '/': out += '/'; break;
            case 'b': out += '\b'; break;
            case 'f': out += '\f'; break;
            case 'n': out += '\n'; break;
            case 'r': out += '\r'; break;
            case 't': out += '\t'; break;
            case 'u': {
                size_t at = pos - 2;
                unsigned cp = hex4();
                if (cp >= 0xDC00 && cp <= 0xDFFF) error_at(at, "unpaired low surrogate in \\u escape");
                if (cp >= 0xD800 && cp <= 0xDBFF) {
                    if (s.substr(pos, 2) != "\\u") error_at(at, "high surrogate \\u escape must be followed by a low surrogate \\uDC00..\\uDFFF");
                    pos += 2;
                    unsigned lo = hex4();
                    if (lo < 0xDC00 || lo > 0xDFFF) error_at(at, "high surrogate \\u escape must be followed by a low surrogate \\uDC00..\\uDFFF");
                    cp = 0x10000 + ((cp - 0xD800) << 10) + (lo - 0xDC00);
                }
                put_utf8(out, cp);
                break;
            }
            default:
                pos--;
                expected("an escape (\\\" \\\\ \\/ \\b \\f \\n \\r \\t \\uXXXX) after '\\'");
            }
        }
    }
};

}  // namespace

const JsonValue* JsonValue::get(std::string_view key) const {
    if (type != Object) return nullptr;
    for (size_t i = object.size(); i-- > 0;)
        if (object[i].first == key) return &object[i].second;
    return nullptr;
}

const char* json_type_name(JsonValue::Type t) {
    switch (t) {
    case JsonValue::Null: return "null";
    case JsonValue::Bool: return "boolean";
    case JsonValue::Number: return "number";
    case JsonValue::String: return "string";
    case JsonValue::Array: return "array";
    case JsonValue::Object: return "object";
    }
    return "?";
}

JsonValue json_parse(std::string_view text, bool python) {
    Parser p{text};
    p.python = python;
    if (text.substr(0, 3) == "\xEF\xBB\xBF") p.pos = 3;
    JsonValue v;
    p.value(v, 0);
    p.skip_ws();
    if (p.pos != text.size()) p.error("unexpected text after the JSON value");
    return v;
}

size_t json_value_length(std::string_view text, JsonValue* value) {
    Parser p{text};
    JsonValue v;
    p.value(value ? *value : v, 0);
    return p.pos;
}

std::string json_quote(std::string_view s) {
    std::string out;
    out.reserve(s.size() + 2);
    out += '"';
    for (unsigned char c : s) {
        switch (c) {
        case '"': out += "\\\""; break;
        case '\\': out += "\\\\"; break;
        case '\n': out += "\\n"; break;
        case '\r': out += "\\r"; break;
        case '\t': out += "\\t"; break;
        case '\b': out += "\\b"; break;
        case '\f': out += "\\f"; break;
        default:
            if (c < 0x20) {
                char b[8];
                snprintf(b, sizeof b, "\\u%04x", c);
                out += b;
            } else {
                out += (char)c;
            }
        }
    }
    out += '"';
    return out;
}

// Python's repr of a finite double: the shortest digits that read back as it (to_chars gives the
// same), in positional notation when the decimal point falls within 16 places of them (value =
// 0.DIGITS x 10^decpt with -4 < decpt <= 16), with ".0" when whole; else d.ddde+XX.
static std::string python_float_repr(double x) {
    if (x == 0) return std::signbit(x) ? "-0.0" : "0.0";
    char buf[64];
    const auto r = std::to_chars(buf, buf + sizeof buf, x, std::chars_format::scientific);
    std::string s(buf, r.ptr), sign;
    if (s[0] == '-') sign = "-", s.erase(0, 1);
    const size_t e = s.find('e');
    const int exp10 = atoi(s.c_str() + e + 1), decpt = exp10 + 1;
    std::string digits;
    for (size_t i = 0; i < e; i++)
        if (s[i] != '.') digits += s[i];
    if (decpt <= -4 || decpt > 16) {
        char ex[16];
        snprintf(ex, sizeof ex, "e%c%02d", exp10 < 0 ? '-' : '+', std::abs(exp10));
        return sign + digits.substr(0, 1) + (digits.size() > 1 ? "." + digits.substr(1) : "") + ex;
    }
    if (decpt <= 0) return sign + "0." + std::string(-decpt, '0') + digits;
    if (decpt >= (int)digits.size()) return sign + digits + std::string(decpt - digits.size(), '0') + ".0";
    return sign + digits.substr(0, decpt) + "." + digits.substr(decpt);
}

namespace {

// Python's str.isprintable() for a code point past ASCII: false for the categories Cc, Cf, Co, Zs,
// Zl and Zp (and Cs, which UTF-8 cannot hold). Unassigned code points (Cn) other than the
// noncharacters count as printable here: that would need the whole Unicode table.
bool python_isprintable(uint32_t cp) {
    static const uint32_t ranges[][2] = {
        {0x80, 0xA0}, {0xAD, 0xAD}, {0x600, 0x605}, {0x61C, 0x61C}, {0x6DD, 0x6DD}, {0x70F, 0x70F},
        {0x890, 0x891}, {0x8E2, 0x8E2}, {0x1680, 0x1680}, {0x180E, 0x180E}, {0x2000, 0x200F},
        {0x2028, 0x202F}, {0x205F, 0x2064}, {0x2066, 0x206F}, {0x3000, 0x3000}, {0xE000, 0xF8FF},
        {0xFDD0, 0xFDEF}, {0xFEFF, 0xFEFF}, {0xFFF9, 0xFFFB}, {0x110BD, 0x110BD}, {0x110CD, 0x110CD},
        {0x13430, 0x1343F}, {0x1BCA0, 0x1BCA3}, {0x1D173, 0x1D17A}, {0xE0001, 0xE0001}, {0xE0020, 0xE007F},
        {0xF0000, 0x10FFFF}};
    if ((cp & 0xFFFE) == 0xFFFE) return false;  // the noncharacters U+xxFFFE and U+xxFFFF
    for (const auto& r : ranges)
        if (cp >= r[0] && cp <= r[1]) return false;
    return true;
}

// Python's repr of a str: single quotes unless the text has one and no double quote; the quote,
// backslash, \t \n \r escaped, other unprintable characters as \xNN, \uNNNN or \UNNNNNNNN.
std::string python_str_repr(std::string_view s) {
    const char quote = s.find('\'') != std::string_view::npos && s.find('"') == std::string_view::npos ? '"' : '\'';
    std::string out(1, quote);
    for (size_t i = 0; i < s.size();) {
        uint32_t cp;
        const size_t n = utf8_decode(s, i, cp);
        char b[16] = "";
        if (cp == (uint32_t)quote || cp == '\\') snprintf(b, sizeof b, "\\%c", (char)cp);
        else if (cp == '\t' || cp == '\n' || cp == '\r') snprintf(b, sizeof b, "\\%c", cp == '\t' ? 't' : cp == '\n' ? 'n' : 'r');
        else if (cp == kInvalidCodepoint) snprintf(b, sizeof b, "\\x%02x", (unsigned char)s[i]);  // not from a JSON string
        else if (cp < 0x20 || cp == 0x7F || (cp > 0x7F && cp <= 0xFF && !python_isprintable(cp))) snprintf(b, sizeof b, "\\x%02x", cp);
        else if (cp > 0xFF && !python_isprintable(cp)) snprintf(b, sizeof b, cp <= 0xFFFF ? "\\u%04x" : "\\U%08x", cp);
        if (b[0]) out += b;
        else out.append(s.substr(i, n));
        i += n;
    }
    return out + quote;
}

// json.dumps (python_literal false) and repr (true) of what json.loads read: they differ only in
// how null, booleans and strings are spelled. indent > 0: json.dumps(indent=N), each item on a line
// of its own, indented N spaces a level, "," after it (an empty list or object stays [] or {}).
std::string python_dump(const JsonValue& v, bool python_literal, int indent = 0, int level = 0) {
    const auto str = [&](std::string_view s) { return python_literal ? python_str_repr(s) : json_quote(s); };
    switch (v.type) {
    case JsonValue::Null: return python_literal ? "None" : "null";
    case JsonValue::Bool: return v.boolean ? (python_literal ? "True" : "true") : (python_literal ? "False" : "false");
    case JsonValue::Number:
        if (std::isnan(v.number)) return python_literal ? "nan" : "NaN";
        if (std::isinf(v.number) && !v.integer_literal)
            return v.number < 0 ? (python_literal ? "-inf" : "-Infinity") : (python_literal ? "inf" : "Infinity");
        if (!v.integer_literal) return python_float_repr(v.number);
        if (v.exact_integer) return std::to_string(v.integer);
        if (!v.string.empty()) return v.string;  // the digits of an int literal past 64 bits
        throw std::runtime_error("an integer past 64 bits, which is not kept exactly");
    case JsonValue::String: return str(v.string);
    case JsonValue::Array:
    case JsonValue::Object: {
        const bool array = v.type == JsonValue::Array;
        // before an item: ", " on one line, or a newline and the indentation of the level inside
        const std::string open = indent ? "\n" + std::string((level + 1) * indent, ' ') : "";
        const std::string sep = indent ? "," + open : ", ";
        std::string out;
        size_t n = 0;
        if (array) {
            for (const JsonValue& item : v.array) out += (n++ ? sep : open) + python_dump(item, python_literal, indent, level + 1);
        } else {
            std::vector<std::string> seen;
            for (const auto& [key, value] : v.object) {
                if (std::find(seen.begin(), seen.end(), key) != seen.end()) continue;
                seen.push_back(key);
                out += (n++ ? sep : open) + str(key) + ": " + python_dump(*v.get(key), python_literal, indent, level + 1);
            }
        }
        if (n && indent) out += "\n" + std::string(level * indent, ' ');
        return (array ? "[" : "{") + out + (array ? "]" : "}");
    }
    }
    return "null";
}

}  // namespace

std::string json_dumps_python(const JsonValue& v, int indent) { return python_dump(v, false, indent); }

std::string python_repr(const JsonValue& v) { return python_dump(v, true); }
