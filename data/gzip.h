// gzip (RFC 1952) and the DEFLATE it holds (RFC 1951), decompressed without zlib: a dataset
// downloaded as data.jsonl.gz trains as it is, and Parquet pages compressed with GZIP are read.
//
// A gzip file is one or more members, each a header (magic 1f 8b, method 8 = deflate, flags for an
// extra field, a file name, a comment and a header CRC), the deflate stream, then the CRC-32 and the
// length (mod 2^32) of what it holds. A deflate stream is a run of blocks: stored (bytes as they
// are), or Huffman-coded with the fixed code tables or with tables sent at the block's start
// (themselves Huffman-coded); a symbol is a literal byte, the block's end, or a length that with the
// distance symbol after it copies from the last 32 KB written.
#pragma once
#include <string>
#include <string_view>

// Whether `bytes` starts as a gzip file does.
bool is_gzip(std::string_view bytes);

// The bytes every member of the gzip file `bytes` holds, one after another. Fails naming `path` on
// a file that is not gzip, is cut short or damaged (its CRC-32 or length does not match).
std::string gunzip(std::string_view bytes, const char* path);
