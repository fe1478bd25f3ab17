#include <doctest/doctest.h>

#include "data/json.h"
#include "model/util.h"

#include <string>

namespace {
// The message json_parse throws for `text`, or "" when it parses.
std::string parse_error(const std::string& text) {
    try {
        json_parse(text);
    } catch (const std::runtime_error& e) {
        return e.what();
    }
    return "";
}
}  // namespace

TEST_CASE("json: scalars, nesting and member order") {
    JsonValue v = json_parse(" {\"b\": [1, -2.5, 3e2, true, false, null], \"a\": {\"x\": \"y\"}, \"e\": []}\n");
    REQUIRE(v.type == JsonValue::Object);
    REQUIRE(v.object.size() == 3);
    CHECK(v.object[0].first == "b");  // file order kept, not sorted
    CHECK(v.object[1].first == "a");
    const JsonValue* b = v.get("b");
    REQUIRE(b);
    REQUIRE(b->array.size() == 6);
    CHECK(b->array[0].number == 1);
    CHECK(b->array[1].number == -2.5);
    CHECK(b->array[2].number == 300);
    CHECK(b->array[3].type == JsonValue::Bool);
    CHECK(b->array[3].boolean);
    CHECK_FALSE(b->array[4].boolean);
    CHECK(b->array[5].is_null());
    CHECK(v.get("a")->get("x")->string == "y");
    CHECK(v.get("e")->type == JsonValue::Array);
    CHECK(v.get("e")->array.empty());
    CHECK(v.get("missing") == nullptr);
    CHECK(b->get("x") == nullptr);  // not an object
    CHECK(json_parse("\"top\"").string == "top");
    CHECK(json_parse("0").number == 0);
    CHECK(json_parse("\xEF\xBB\xBF{}").type == JsonValue::Object);  // BOM skipped
}

TEST_CASE("json: integer exactness") {
    JsonValue big = json_parse("9007199254740993");  // 2^53 + 1: not representable as a double
    CHECK(big.exact_integer);
    CHECK(big.integer == 9007199254740993LL);
    CHECK(json_parse("-42").integer == -42);
    CHECK(json_parse("1.5e3").exact_integer);
    CHECK(json_parse("1.5e3").integer == 1500);
    CHECK_FALSE(json_parse("1.5").exact_integer);
    CHECK_FALSE(json_parse("1e300").exact_integer);
    CHECK_FALSE(json_parse("99999999999999999999").exact_integer);  // beyond int64
    CHECK(json_parse("99999999999999999999").number == doctest::Approx(1e20));
    CHECK(json_parse("1e-400").number == 0);  // underflow rounds to zero as in Python
    CHECK(json_parse("-0").number == 0);
}

TEST_CASE("json: string escapes and UTF-8") {
    CHECK(json_parse(R"("a\"b\\c\/d\b\f\n\r\t")").string == "a\"b\\c/d\b\f\n\r\t");
    CHECK(json_parse(R"("\u0041\u00e9\u20AC")").string == "A\xC3\xA9\xE2\x82\xAC");
    CHECK(json_parse(R"("\ud83d\ude00")").string == "\xF0\x9F\x98\x80");  // surrogate pair → U+1F600
    CHECK(json_parse(R"("\u0000")").string == std::string("\0", 1));
    CHECK(json_parse("\"한국어 \xF0\x9F\x98\x80\"").string == "한국어 \xF0\x9F\x98\x80");
    // what json_quote writes parses back to the same bytes, control characters included
    std::string all;
    for (int c = 1; c < 128; c++) all += (char)c;
    all += "é한😀";
    CHECK(json_parse(json_quote(all)).string == all);
}

// Chat templates write tool definitions and arguments with transformers' |tojson, Python's
// json.dumps(ensure_ascii=False): the pairs are what Python writes for json.loads of each text
// (tests/fixtures/chat/gen_tool_fixtures.py's values among them).
TEST_CASE("json: json_dumps_python writes what Python's json.dumps writes") {
    const std::pair<const char*, const char*> cases[] = {
        {R"(1.5)", R"(1.5)"},
        {R"(1e-05)", R"(1e-05)"},
        {R"(1E16)", R"(1e+16)"},
        {R"(1e15)", R"(1000000000000000.0)"},
        {R"(0.1)", R"(0.1)"},
        {R"(100.0)", R"(100.0)"},
        {R"(-0.0001)", R"(-0.0001)"},
        {R"(42)", R"(42)"},
        {R"(-0)", R"(0)"},
        {R"(-0.0)", R"(-0.0)"},
        {R"(0)", R"(0)"},
        {R"(123456789.123456789)", R"(123456789.12345679)"},
        {R"(1.7976931348623157e308)", R"(1.7976931348623157e+308)"},
        {R"(5e-324)", R"(5e-324)"},
        {R"(2.5e-5)", R"(2.5e-05)"},
        {R"(0.00012345)", R"(0.00012345)"},
        {R"(1234567890123456.7)", R"(1234567890123456.8)"},
        {R"(12345678901234567.0)", R"(1.2345678901234568e+16)"},
        {R"(3e0)", R"(3.0)"},
        {R"(-7)", R"(-7)"},
        {R"(9007199254740993)", R"(9007199254740993)"},
        {R"(true)", R"(true)"},
        {R"(null)", R"(null)"},
        {R"("a\u0001\b\f\u001f\u007f\/é")", "\"a\\u0001\\b\\f\\u001f\x7f/é\""},
        {R"({"b":1,"a":{"c":[1,2.0,{}],"d":[]},"b":2})", R"({"b": 2, "a": {"c": [1, 2.0, {}], "d": []}})"},
        {R"([])", R"([])"},
        {R"({})", R"({})"},
        {R"([1,[2,[3]]])", R"([1, [2, [3]]])"},
        {R"(1e22)", R"(1e+22)"},
        {R"(1e21)", R"(1e+21)"},
        {R"(1e-7)", R"(1e-07)"},
        {R"(123e-20)", R"(1.23e-18)"},
    };
    for (const auto& [text, python] : cases) CHECK_MESSAGE(json_dumps_python(json_parse(text)) == python, text);
    // an int past 64 bits (a 20-digit id in a call's arguments, a schema's uint64 "maximum") is a
    // Python int: its digits as they are, where they were refused
    CHECK(json_dumps_python(json_parse("123456789012345678901234567890")) == "123456789012345678901234567890");
    CHECK(json_dumps_python(json_parse("[-9223372036854775809, 18446744073709551615]")) == "[-9223372036854775809, 18446744073709551615]");
    JsonValue big;  // a number built without its digits
    big.type = JsonValue::Number, big.number = 1e30, big.integer_literal = true;
    CHECK_THROWS_WITH(json_dumps_python(big), doctest::Contains("past 64 bits"));
    // json.dumps(indent=4) (Llama 3.1's tools): an item a line, "," after it, empty ones kept as [] and {}
    CHECK(json_dumps_python(json_parse(R"({"a": [], "b": {}, "c": [1, {"d": null, "e": "é"}]})"), 4) ==
          "{\n    \"a\": [],\n    \"b\": {},\n    \"c\": [\n        1,\n        {\n            \"d\": null,\n"
          "            \"e\": \"é\"\n        }\n    ]\n}");
    // Python's repr of the same values (SmolLM3's tools): None/True/False, repr's quotes and escapes
    CHECK(python_repr(json_parse(R"({"it's": [true, false, null, 1.0, "a\"b", "x\u00a0\u200b\n\\"], "q": "it's \"q\""})")) ==
          R"({"it's": [True, False, None, 1.0, 'a"b', 'x\xa0\u200b\n\\'], 'q': 'it\'s "q"'})");
}

TEST_CASE("json: errors give line, column and what was expected") {
    CHECK(parse_error("{\n  \"a\": 1,\n  \"b\": 2 \"c\"\n}") == "line 3, column 10: expected ',' or '}' in object");
    CHECK(parse_error("[1, 2") == "line 1, column 6: unexpected end of input: expected ',' or ']' in array");
    CHECK(parse_error("[1, 2,]") == "line 1, column 7: expected a value (null, true, false, a number, a string, an array or an object)");
    CHECK(parse_error("{\"a\" 1}") == "line 1, column 6: expected ':' after object key");
    CHECK(parse_error("{a: 1}") == "line 1, column 2: expected a string key in object");
    CHECK(parse_error("{\"a\": 1,}") == "line 1, column 9: expected a string key in object");
    CHECK(parse_error("") == "line 1, column 1: unexpected end of input: expected a value");
    CHECK(parse_error("01") == "line 1, column 2: leading zeros are not allowed in numbers");
    CHECK(parse_error("-") == "line 1, column 2: unexpected end of input: expected a digit after '-'");
    CHECK(parse_error("1.") == "line 1, column 3: unexpected end of input: expected a digit after the decimal point");
    CHECK(parse_error("1e+") == "line 1, column 4: unexpected end of input: expected a digit in the exponent");
    CHECK(parse_error("1e999") == "line 1, column 1: number is too large for a double");
    CHECK(parse_error("NaN").find("expected a value") != std::string::npos);
    CHECK(parse_error("tru") .find("expected a value") != std::string::npos);
    CHECK(parse_error("{} x") == "line 1, column 4: unexpected text after the JSON value");
    CHECK(parse_error("\"ab") == "line 1, column 4: unexpected end of input: unterminated string");
    CHECK(parse_error("\"a\nb\"") == "line 1, column 3: control character U+000A must be escaped in a string");
    CHECK(parse_error(R"("\x")") == "line 1, column 3: expected an escape (\\\" \\\\ \\/ \\b \\f \\n \\r \\t \\uXXXX) after '\\'");
    CHECK(parse_error(R"("\u12G4")") == "line 1, column 6: expected 4 hex digits after \\u");
    CHECK(parse_error(R"("\ud83d")") == "line 1, column 2: high surrogate \\u escape must be followed by a low surrogate \\uDC00..\\uDFFF");
    CHECK(parse_error(R"("\ud83d\u0041")").find("must be followed by a low surrogate") != std::string::npos);
    CHECK(parse_error(R"("x\ude00")") == "line 1, column 3: unpaired low surrogate in \\u escape");
    // columns count characters: the error after "한국" is at column 4, not at byte 8
    CHECK(parse_error("\"한국\xFF\"") == "line 1, column 4: invalid UTF-8: byte 0xFF cannot start a character");
    CHECK(parse_error("\"\xC0\xAF\"").find("invalid UTF-8") != std::string::npos);      // overlong '/'
    CHECK(parse_error("\"\xED\xA0\x80\"").find("invalid UTF-8") != std::string::npos);  // encoded surrogate
    CHECK(parse_error("\"\xF4\x90\x80\x80\"").find("invalid UTF-8") != std::string::npos);  // above U+10FFFF
    CHECK(parse_error("\"\xE2\x82\"").find("invalid UTF-8") != std::string::npos);      // truncated sequence
}

TEST_CASE("json: nesting depth limit") {
    CHECK(parse_error(std::string(256, '[') + std::string(256, ']')) == "");
    CHECK(parse_error(std::string(257, '[') + std::string(257, ']')) == "line 1, column 257: nesting is deeper than 256 arrays/objects");
    CHECK(parse_error(std::string(100000, '[')).find("nesting is deeper") != std::string::npos);  // no stack overflow
}

TEST_CASE("json: parses a tokenizer-sized document quickly") {
    // ~3.5 MB shaped like tokenizer.json's vocab and merges: the real file must load in well under a second
    std::string text = "{\"vocab\": {";
    for (int i = 0; i < 100000; i++) text += (i ? ",\n" : "") + json_quote("tok\xC4\xA0" + std::to_string(i)) + ": " + std::to_string(i);
    text += "}, \"merges\": [";
    for (int i = 0; i < 100000; i++) text += (i ? ",\n" : "") + json_quote("a" + std::to_string(i) + " b");
    text += "]}";
    double t0 = now_seconds();
    JsonValue v = json_parse(text);
    double dt = now_seconds() - t0;
    CHECK(v.get("vocab")->object.size() == 100000);
    CHECK(v.get("vocab")->object[99999].second.integer == 99999);
    CHECK(v.get("merges")->array.size() == 100000);
    CHECK(dt < 0.5);
}

TEST_CASE("json: Python's reading of NaN and Infinity, written back as json.dumps does") {
    CHECK_THROWS(json_parse("NaN"));
    CHECK_THROWS(json_parse("[1E400]"));
    CHECK(json_dumps_python(json_parse("[NaN, Infinity, -Infinity, 1E400, -1e999, 3]", true)) ==
          "[NaN, Infinity, -Infinity, Infinity, -Infinity, 3]");
    CHECK(python_repr(json_parse("{\"x\": NaN, \"y\": -Infinity}", true)) == "{'x': nan, 'y': -inf}");
    CHECK_THROWS(json_parse("nan", true));
    CHECK_THROWS(json_parse("-NaN", true));
}
