#include <doctest/doctest.h>

#include "data/gzip.h"
#include "data/records.h"
#include "model/util.h"

// gzip files as zlib writes them (tests/fixtures/gzip/gen_gzip_fixtures.py): stored, fixed and dynamic
// blocks, overlapping copies, a named header, two members, a header with every optional field.
TEST_CASE("gzip: what zlib compressed comes back byte for byte") {
    const std::string dir = "tests/fixtures/gzip/", plain = read_file(dir + "plain.bin");
    for (const char* name : {"level0.gz", "level1.gz", "level9.gz", "named.gz", "members.gz", "flags.gz"}) {
        CAPTURE(name);
        const std::string gz = read_file(dir + name);
        CHECK(is_gzip(gz));
        CHECK(gunzip(gz, name) == plain);
    }
    // a short text: one block of the fixed code
    const std::string hello("\x1f\x8b\x08\0\0\0\0\0\x02\x03\xcb\x48\xcd\xc9\xc9\x57\xc8\x40\x90\x8a\0\x7b\x85\x36\x73\x12\0\0\0", 29);
    CHECK(gunzip(hello, "h.gz") == "hello hello hello!");
    // damage is named: a changed byte in the data or its CRC, a cut, no header
    const std::string good = read_file(dir + "level9.gz");
    std::string bad_crc = good;
    bad_crc[bad_crc.size() - 6] ^= 1;
    CHECK_THROWS_WITH(gunzip(bad_crc, "c.gz"), doctest::Contains("c.gz: a damaged gzip file (its CRC-32 does not match its data)"));
    CHECK_THROWS_WITH(gunzip(good.substr(0, good.size() / 2), "cut.gz"), doctest::Contains("cut.gz: a damaged gzip file (it ends"));
    CHECK_THROWS_WITH(gunzip("plain text, not gzip", "t.gz"), doctest::Contains("no gzip header"));
    int failed = 0;
    for (size_t at = 10; at < good.size(); at += 5) {
        std::string bad = good;
        bad[at] = (char)(bad[at] ^ 0x24);
        try {
            gunzip(bad, "x.gz");
        } catch (const std::runtime_error& e) {
            failed++;
            CHECK(std::string(e.what()).find("x.gz: a damaged gzip file") == 0);
        }
    }
    CHECK(failed == (int)((good.size() - 10 + 4) / 5));  // the CRC catches what decoding does not
}

// A dataset downloaded as data.jsonl.gz trains as the jsonl it holds, read by the name inside.
TEST_CASE("gzip: data.jsonl.gz is read as the jsonl it holds") {
    const ParsedFile pf = parse_records(read_file("tests/fixtures/gzip/records.jsonl.gz"), "records.jsonl.gz",
                                        is_records_path("records.jsonl.gz"));
    REQUIRE(pf.records.size() == 50);
    CHECK(pf.records[49].messages.at(1).content == "49 \xF0\x9F\x8C\x8D");
    CHECK(is_records_path("train.CSV.gz"));
    CHECK_FALSE(is_records_path("notes.txt.gz"));
}
