#include <doctest/doctest.h>

#include "data/csv.h"
#include "data/json.h"
#include "data/records.h"
#include "model/util.h"

// CSV and TSV rows as Python's csv module reads them (tests/fixtures/csv/gen_csv_fixtures.py: quotes
// doubled inside quotes, delimiters and newlines inside quotes, a quote inside an unquoted field,
// text after a closing quote, CRLF and lone CR row ends, blank lines, UTF-8, no final newline).
TEST_CASE("csv: rows as Python's csv module reads them") {
    const JsonValue fx = json_parse(read_file("tests/fixtures/csv/rows.json"));
    int files = 0;
    for (const JsonValue& c : fx.array) {
        const std::string& name = c.get("file")->string;
        const std::vector<CsvRow> rows = csv_rows(read_file("tests/fixtures/csv/" + name), name.back() == 'v' && name[name.size() - 3] == 't' ? '\t' : ',', name.c_str());
        const std::vector<JsonValue>& want = c.get("rows")->array;
        REQUIRE(rows.size() == want.size());
        for (size_t i = 0; i < rows.size(); i++) {
            std::vector<std::string> fields;
            for (const JsonValue& f : want[i].array) fields.push_back(f.string);
            CHECK_MESSAGE(rows[i].fields == fields, name << " row " << i);
        }
        files++;
    }
    CHECK(files == 2);
    // each row named by the line it starts on: a quoted newline makes a row two lines long (3-4, 6-7);
    // the blank line 5 is skipped; a lone \r ends a row as \n does
    std::vector<int> lines;
    for (const CsvRow& r : csv_rows(read_file("tests/fixtures/csv/tricky.csv"), ',', "tricky.csv")) lines.push_back(r.line);
    CHECK(lines == std::vector<int>{1, 2, 3, 6, 8, 9, 10, 11, 12, 13});
    CHECK_THROWS_WITH(csv_rows("a,b\n1,\"open\n2,3\n", ',', "d.csv"),
                      doctest::Contains("d.csv:2: a quoted field that is never closed"));
}

// A CSV's rows are the records a jsonl file with the same fields holds; what is wrong is named by line.
TEST_CASE("csv: records from a header row and its columns, as jsonl's") {
    const std::string csv = "instruction,input,output,system\n"
                            "\"Translate, please\",\"Good \"\"morning\"\"\",Bonjour,\n"
                            "Say hi,,\"Hi!\nHello!\",Be brief.\n";
    const std::string jsonl = R"({"instruction": "Translate, please", "input": "Good \"morning\"", "output": "Bonjour"})" "\n"
                              R"({"instruction": "Say hi", "output": "Hi!\nHello!", "system": "Be brief."})" "\n";
    const ParsedFile c = parse_records(csv, "d.csv", true), j = parse_records(jsonl, "d.jsonl", true);
    REQUIRE(c.records.size() == 2);
    REQUIRE(c.invalid.empty());
    for (size_t i = 0; i < 2; i++) {
        REQUIRE(c.records[i].messages.size() == j.records[i].messages.size());
        for (size_t k = 0; k < c.records[i].messages.size(); k++) {
            CHECK(c.records[i].messages[k].role == j.records[i].messages[k].role);
            CHECK(c.records[i].messages[k].content == j.records[i].messages[k].content);
        }
    }
    CHECK(c.records[0].line == 2);
    CHECK(c.records[1].line == 3);
    CHECK(is_records_path("data/train.CSV"));
    CHECK(is_records_path("x.tsv"));
    CHECK_FALSE(is_records_path("notes.txt"));
    // chat rows: a messages cell holds the JSON list; TSV; a raw-text column
    const ParsedFile chat = parse_records("messages\tweight\n"
                                          R"([{"role": "user", "content": "a"}, {"role": "assistant", "content": "b"}])" "\t1\n",
                                          "c.tsv", true);
    REQUIRE(chat.records.size() == 1);
    CHECK(chat.records[0].messages.at(1).content == "b");
    CHECK(parse_records("text\n\"A document, with a comma.\"\n", "t.csv", true).records.at(0).text == "A document, with a comma.");
    // a row with another number of fields, a cell that is not JSON, a record without its answer: named by line
    const ParsedFile bad = parse_records("prompt,completion\nq,a\nq2\n\"q3, \"\"x\"\"\",\nmessages\n", "b.csv", true);
    REQUIRE(bad.invalid.size() == 3);
    CHECK(bad.invalid[0].line == 3);
    CHECK(bad.invalid[0].what.find("1 fields where the header row names 2") == 0);
    CHECK(bad.invalid[1].line == 4);
    const ParsedFile badjson = parse_records("messages,x\n[{\"role\": \"user\"],1\n", "m.csv", true);
    REQUIRE(badjson.invalid.size() == 1);
    CHECK(badjson.invalid[0].what.find("column messages: bad JSON: ") == 0);
    // the header row: named columns, once each, at least one a record's field
    CHECK_THROWS_WITH(parse_records("question,answer\nq,a\n", "h.csv", true),
                      doctest::Contains("h.csv:1: the header row names none of the fields a record has"));
    CHECK_THROWS_WITH(parse_records("prompt,prompt\nq,a\n", "h.csv", true), doctest::Contains("names column 'prompt' twice"));
    CHECK_THROWS_WITH(parse_records("prompt,completion\n", "h.csv", true), doctest::Contains("a header row and no records"));
    // a workbook saved as .xlsx/.ods is a zip: named, with what to do
    CHECK_THROWS_WITH(parse_records(std::string("PK\x03\x04\x14\0", 6), "data.xlsx", false),
                      doctest::Contains("data.xlsx is a zip archive (an .xlsx or .ods workbook is one)"));
}

// What pandas' to_csv and spreadsheets write: its index as an unnamed first column, a trailing
// delimiter, headers with spaces or capitals, ';' (Excel where the decimal mark is a comma), a tab
// in a .csv; jsonl under a .csv name is named as that, as is a column of Python lists.
TEST_CASE("csv: files as pandas and spreadsheets write them") {
    const auto answer = [](const std::string& text, const char* path) {
        const ParsedFile f = parse_records(text, path, true);
        REQUIRE(f.invalid.empty());
        REQUIRE(f.records.size() == 1);
        const Record& r = f.records[0];
        return r.messages.at(0).content + "|" + r.messages.at(1).content;
    };
    CHECK(answer(",instruction,input,output\n0,Add,2 and 3,5\n", "pandas.csv") == "Add\n\n2 and 3|5");
    CHECK(answer("prompt,completion,\nq,a,\n", "excel.csv") == "q|a");
    CHECK(answer("Instruction, Input, Output\nq,,a\n", "sheet.csv") == "q|a");
    CHECK(answer("\xEF\xBB\xBFprompt;completion\r\n\"q; r\";\"a,b\"\r\n", "excel_de.csv") == "q; r|a,b");
    CHECK(answer("prompt\tcompletion\nq,1\ta\n", "tabs.csv") == "q,1|a");
    CHECK(answer("prompt,completion\nq\ta,b\n", "commas.tsv") == "q\ta|b");
    CHECK_THROWS_WITH(parse_records("output,Output\nq,a\n", "h.csv", true), doctest::Contains("names column 'output' twice"));
    CHECK_THROWS_WITH(parse_records("question,answer\nq,a\n", "h.csv", true), doctest::Contains("it names 'question', 'answer'"));
    CHECK_THROWS_WITH(parse_records("{\"prompt\": \"q\", \"completion\": \"a\"}\n", "j.csv", true),
                      doctest::Contains("j.csv:1: the first line is JSON, not a header row naming the columns: jsonl under a .csv name?"));
    // a column of Python lists, as pandas writes it
    const ParsedFile repr = parse_records("messages\n\"[{'role': 'user', 'content': 'hi'}, {'role': 'assistant', 'content': 'yo'}]\"\n",
                                          "m.csv", true);
    REQUIRE(repr.invalid.size() == 1);
    CHECK(repr.invalid[0].what.find("this is Python's repr") != std::string::npos);
    CHECK(repr.invalid[0].what.find("df[\"messages\"].map(json.dumps)") != std::string::npos);
}
