#include "data/csv.h"

#include "model/util.h"

std::string table_field_name(std::string name) {
    const size_t a = name.find_first_not_of(' '), b = name.find_last_not_of(' ');
    name = a == std::string::npos ? "" : name.substr(a, b - a + 1);
    for (char& c : name) c = (char)std::tolower((unsigned char)c);
    return name;
}

std::vector<CsvRow> csv_rows(std::string_view bytes, char delimiter, const char* path) {
    std::vector<CsvRow> rows;
    CsvRow row;
    std::string field;
    int line = 1;
    // where we are in a field: at its start, in an unquoted one, inside quotes, or just after a
    // quote inside quotes (the field's end, or the first of a doubled "")
    enum { Start, Unquoted, Quoted, QuoteInQuoted } state = Start;
    int quote_line = 0;  // where the open quoted field began
    bool quoted = false;  // whether the row has a quoted field (then one empty field is not a blank line)
    const auto end_field = [&] {
        row.fields.push_back(std::move(field));
        field.clear();
        state = Start;
    };
    const auto end_row = [&] {
        // a row of one empty unquoted field is a blank line (Python's reader gives [], DictReader skips it)
        if (!(row.fields.size() == 1 && row.fields[0].empty() && !quoted)) rows.push_back(std::move(row));
        row = CsvRow{};
        quoted = false;
    };
    for (size_t i = 0; i < bytes.size(); i++) {
        const char c = bytes[i];
        const bool newline = c == '\n' || c == '\r';
        const bool crlf = c == '\r' && i + 1 < bytes.size() && bytes[i + 1] == '\n';
        if (row.fields.empty() && field.empty() && state == Start) row.line = line;
        if (state == Quoted) {
            if (c == '"') state = QuoteInQuoted;
            else field += c;
        } else if (state == QuoteInQuoted && c == '"') {
            field += '"';
            state = Quoted;
        } else if (c == delimiter) {
            end_field();
        } else if (newline) {
            end_field();
            end_row();
        } else if (state == Start && c == '"') {
            state = Quoted;
            quote_line = line;
            quoted = true;
        } else {
            field += c;  // after a closing quote, text goes on unquoted (Python's non-strict reader)
            state = Unquoted;
        }
        if (newline && state != Quoted && crlf) i++;  // the row's \r\n is one end
        if (c == '\n' || (newline && crlf && state != Quoted) || (c == '\r' && !crlf)) line++;
    }
    if (state == Quoted)
        fail("%s:%d: a quoted field that is never closed (a \" opens it and no lone \" ends it): everything after "
             "it would be one field; close it, or write a quote inside a quoted field as \"\"", path, quote_line);
    if (state != Start || !row.fields.empty()) {
        end_field();
        end_row();
    }
    return rows;
}
