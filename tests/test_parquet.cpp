#include <doctest/doctest.h>

#include "data/json.h"
#include "data/parquet.h"
#include "data/records.h"
#include "model/util.h"

// Parquet files as pyarrow writes them (tests/fixtures/parquet/gen_parquet_fixtures.py: Snappy and
// uncompressed, dictionary and plain values, data pages v1 and v2, several row groups, nulls, empty
// and null lists, a null message, columns that are not a record's): the rows pyarrow reads back.
TEST_CASE("parquet: rows as pyarrow reads them") {
    const JsonValue fx = json_parse(read_file("tests/fixtures/parquet/rows.json"));
    int files = 0;
    for (const JsonValue& c : fx.array) {
        const std::string path = "tests/fixtures/parquet/" + c.get("file")->string;
        const std::vector<JsonValue> rows = parquet_rows(read_file(path), path.c_str());
        const std::vector<JsonValue>& want = c.get("rows")->array;
        REQUIRE(rows.size() == want.size());
        for (size_t i = 0; i < rows.size(); i++) {
            CAPTURE(path);
            CAPTURE(i);
            CHECK(rows[i].object.size() == want[i].object.size());
            for (const auto& [key, value] : want[i].object) {
                const JsonValue* got = rows[i].get(key);
                REQUIRE_MESSAGE(got, key);
                CHECK(json_dumps_python(*got) == json_dumps_python(value));
            }
        }
        files++;
    }
    CHECK(files == 7);
    // another codec is refused with how to convert the file
    // gzip pages as Snappy ones; another codec is refused with how to convert the file
    const std::vector<JsonValue> gz = parquet_rows(read_file("tests/fixtures/parquet/gzip.parquet"), "g.parquet"),
                                 snappy = parquet_rows(read_file("tests/fixtures/parquet/alpaca.parquet"), "a.parquet");
    REQUIRE(gz.size() == snappy.size());
    for (size_t i = 0; i < gz.size(); i++) CHECK(json_dumps_python(gz[i]) == json_dumps_python(snappy[i]));
    CHECK_THROWS_WITH(parquet_rows(read_file("tests/fixtures/parquet/zstd.parquet"), "z.parquet"),
                      doctest::Contains("z.parquet: column instruction is compressed with zstd, which is not read here"));
    // rows of one repeated text are held in fewer bytes than rows, and read, where the file was damaged
    const std::vector<JsonValue> repeated = parquet_rows(read_file("tests/fixtures/parquet/repeated_rows.parquet"), "r.parquet");
    REQUIRE(repeated.size() == 100000);
    CHECK(repeated[99999].get("text")->string == "hello world");
    // an encoding not read here is named with the column, the schema's name where the chunk has lost its own
    CHECK_THROWS_WITH(parquet_rows(read_file("tests/fixtures/parquet/delta_no_path.parquet"), "d.parquet"),
                      doctest::Contains("d.parquet: column output stores its values in encoding 7, which is not read here"));
    // a column of None only (pandas and datasets give it the Null type, on int32 values all null) is no
    // field, as a null is, where the file failed as a column of numbers
    const ParsedFile nulls = parse_records(read_file("tests/fixtures/parquet/null_column.parquet"), "n.parquet", true);
    CHECK(nulls.records.size() == 2);
    CHECK(nulls.invalid.empty());
    // a weight of float64 (datasets' type for floats and None) is read: its 0.0 keeps the turn as context,
    // where the field was dropped and the turn learned
    const ParsedFile weighted = parse_records(read_file("tests/fixtures/parquet/weight_float.parquet"), "w.parquet", true);
    REQUIRE(weighted.records.size() == 1);
    REQUIRE(weighted.records[0].messages.size() == 4);
    CHECK(!weighted.records[0].messages[1].trained);
    CHECK(weighted.records[0].messages[3].trained);
    // a boolean field in data pages v2 (RLE-encoded there) is read, where the file failed with 'encoding 3'
    CHECK(parse_records(read_file("tests/fixtures/parquet/bool_v2.parquet"), "b.parquet", true).records.size() == 2);
    // a record within an item stays one (function_call: {name, arguments}; a tool's function), where its
    // fields were put in the item beside role and content, and the call and the tool were lost
    const ParsedFile calls = parse_records(read_file("tests/fixtures/parquet/nested_struct.parquet"), "f.parquet", true);
    REQUIRE(calls.records.size() == 1);
    REQUIRE(calls.records[0].messages.size() == 2);
    REQUIRE(calls.records[0].messages[1].tool_calls.size() == 1);
    CHECK(calls.records[0].messages[1].tool_calls[0].name == "get_weather");
    REQUIRE(calls.records[0].tools.size() == 1);
    CHECK(calls.records[0].tools[0].find("\"function\": {\"name\": \"get_weather\"") != std::string::npos);
}

// A Parquet file's rows are records as jsonl lines are, named by their number; damage is named, never a crash.
TEST_CASE("parquet: records from a file's rows; damaged files fail with a message") {
    const std::string alpaca = read_file("tests/fixtures/parquet/alpaca.parquet");
    const ParsedFile pf = parse_records(alpaca, "a.parquet", true);
    CHECK(pf.lines == 7);
    REQUIRE(pf.records.size() == 6);
    CHECK(pf.records[0].messages.at(0).content == "Translate to French\n\nGood morning");
    CHECK(pf.records[0].messages.at(1).content == "Bonjour");
    CHECK(pf.records[1].messages.at(0).content == "Say hi");  // a null input is no input
    REQUIRE(pf.invalid.size() == 1);
    CHECK(pf.invalid[0].line == 6);  // the row without its output
    CHECK(is_records_path("train-00000-of-00001.parquet"));
    // column names in any case, spaces around them ignored, as a CSV header's; none a field: the columns listed
    const ParsedFile caps = parse_records(read_file("tests/fixtures/parquet/capitals.parquet"), "caps.parquet", true);
    REQUIRE(caps.records.size() == 1);
    CHECK(caps.records[0].messages.at(0).content == "Say hi");
    CHECK(caps.records[0].messages.at(1).content == "Hi!");
    CHECK_THROWS_WITH(parse_records(read_file("tests/fixtures/parquet/unrelated.parquet"), "u.parquet", true),
                      doctest::Contains("or all are empty: its columns are 'question', 'answer'"));
    // a chat file: the null and empty lists and the message without content are named
    const ParsedFile chat = parse_records(read_file("tests/fixtures/parquet/chat_v2.parquet"), "c.parquet", true);
    CHECK(chat.records.size() == 2);
    CHECK(chat.records[1].messages.size() == 4);
    CHECK(chat.invalid.size() == 4);
    // damage anywhere fails with the file's name: cut short, or bytes changed in its metadata and pages
    CHECK_THROWS_WITH(parquet_rows(alpaca.substr(0, alpaca.size() / 2), "cut.parquet"), doctest::Contains("cut.parquet: a damaged Parquet file"));
    int failed = 0, read = 0;
    for (size_t at = 4; at + 8 < alpaca.size(); at += 7) {
        std::string bad = alpaca;
        bad[at] = (char)(bad[at] ^ 0x5a);
        try {
            parquet_rows(bad, "x.parquet");
            read++;
        } catch (const std::runtime_error& e) {
            failed++;
            CHECK(std::string(e.what()).find("x.parquet: ") == 0);
        }
    }
    CHECK(failed > 0);
    CHECK(failed + read == (int)((alpaca.size() - 12) / 7) + 1);
}
