// CSV and TSV files as rows of fields, read as Python's csv module reads them (its "excel" dialect,
// which pandas' to_csv and spreadsheets write): fields separated by the delimiter, a field that starts
// with a double quote runs to the next lone quote (delimiters, newlines and "" for one quote inside
// it), rows ended by \n, \r\n or \r outside quotes, blank rows skipped. A quote inside an unquoted
// field is text. The file's records come from these rows (data/records.cpp: the first row names the
// fields).
#pragma once
#include <string>
#include <string_view>
#include <vector>

struct CsvRow {
    int line = 0;  // the line (1-based) the row starts on
    std::vector<std::string> fields;
};

// The record field a table's column names, as its user writes it: spaces around the name
// ("instruction, output") and capitals ("Instruction") are no part of it. (CSV headers, Parquet columns.)
std::string table_field_name(std::string name);

// Every non-blank row of `bytes`. Fails naming `path` and the line of a quoted field that is never
// closed (everything after it would be read as that one field).
std::vector<CsvRow> csv_rows(std::string_view bytes, char delimiter, const char* path);
