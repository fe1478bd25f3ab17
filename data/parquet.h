// Parquet files (what the Hugging Face Hub serves datasets as: train-00000-of-00001.parquet) read as
// the rows of a dataset, for the records of data/records.cpp. Only what datasets of records need is
// decoded: the string columns named as a record's fields (instruction, input, output, prompt,
// completion, text, system, tools, functions) and the lists of structs of strings that chats are
// (messages: [{role, content}], conversations: [{from, value}]); other columns are not read.
//
// The format (parquet-format's Thrift definitions, by field id): the file ends with its metadata
// (a Thrift compact-protocol FileMetaData), its length and "PAR1". The metadata holds the schema
// (a depth-first list of nodes: groups with their children's count, and leaves with a physical
// type) and the row groups; a row group holds one column chunk per leaf, a run of pages, each a
// PageHeader and its bytes: an optional dictionary page (the distinct values, PLAIN), then data pages.
// A data page holds the entries' repetition and definition levels (RLE / bit-packed hybrid) and the
// values of the entries that are defined: PLAIN (length-prefixed bytes) or dictionary indices.
// Levels are how nesting is stored (Dremel): an entry's repetition level 0 starts a new row, and its
// definition level counts how many of the optional or repeated nodes on its path are present, so a
// chat's message list, a missing list, an empty one and a null content are told apart.
// Compression: none or Snappy (the default of pyarrow, which writes the Hub's files); another codec
// fails with how to convert the file.
#pragma once
#include <string>
#include <string_view>
#include <vector>

#include "data/json.h"

// Every row of the file as a JSON object of the columns above that it has (a null or missing value
// is left out): strings, and for a chat column a list of objects of its string fields. Fails naming
// `path` on a file that is not Parquet, is damaged, or stores those columns in a way not read here.
// A column is matched as table_field_name (data/csv.h) reads its name; `columns`, when given, gets
// the names of the file's top-level columns.
std::vector<JsonValue> parquet_rows(std::string_view bytes, const char* path, std::vector<std::string>* columns = nullptr);

// Whether `bytes` starts as a Parquet file does ("PAR1").
bool is_parquet(std::string_view bytes);
