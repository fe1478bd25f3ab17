#include "data/parquet.h"

#include <algorithm>
#include <cmath>
#include <cstdint>
#include <cstring>

#include "data/csv.h"
#include "data/gzip.h"
#include "model/util.h"

namespace {

// The record fields read from a file's top-level columns (see parquet.h); other columns are skipped.
const char* const kRecordColumns[] = {"instruction", "input", "output", "prompt", "completion", "text", "system",
                                      "messages", "conversations", "tools", "functions"};

// Physical types (parquet-format Type), codecs, page types and encodings used here.
enum : int { kBoolean = 0, kInt32 = 1, kInt64 = 2, kFloat = 4, kDouble = 5, kByteArray = 6 };
enum : int { kUncompressed = 0, kSnappy = 1, kGzip = 2 };
enum : int { kDataPage = 0, kDictionaryPage = 2, kDataPageV2 = 3 };
enum : int { kPlain = 0, kPlainDictionary = 2, kRle = 3, kRleDictionary = 8 };
enum : int { kRequired = 0, kOptional = 1, kRepeated = 2 };

[[noreturn]] void damaged(const char* path, const char* what) {
    fail("%s: a damaged Parquet file (%s): download or write it again", path, what);
}

// Thrift's compact protocol over [p, end): field headers (id delta and type in one byte), zigzag
// varints for integers, length-prefixed binaries, lists with their size and element type.
struct Compact {
    const uint8_t* p;
    const uint8_t* end;
    const char* path;
    uint8_t byte() {
        if (p >= end) damaged(path, "its metadata ends early");
        return *p++;
    }
    uint64_t varint() {
        uint64_t v = 0;
        for (int shift = 0; shift < 64; shift += 7) {
            const uint8_t b = byte();
            v |= (uint64_t)(b & 0x7f) << shift;
            if (!(b & 0x80)) return v;
        }
        damaged(path, "a number of more than 64 bits");
    }
    int64_t integer() {  // i16, i32 and i64 alike
        const uint64_t v = varint();
        return (int64_t)(v >> 1) ^ -(int64_t)(v & 1);
    }
    std::string binary() {
        const uint64_t n = varint();
        if (n > (uint64_t)(end - p)) damaged(path, "a string past the end of its metadata");
        std::string s((const char*)p, n);
        p += n;
        return s;
    }
    // The next field's type (0 at the struct's end), its id in `id`.
    int field(int16_t& id) {
        const uint8_t b = byte();
        if (b == 0) return 0;
        id = (b >> 4) ? (int16_t)(id + (b >> 4)) : (int16_t)integer();
        return b & 0x0f;
    }
    uint64_t list(int& element_type) {
        const uint8_t b = byte();
        uint64_t n = b >> 4;
        if (n == 15) n = varint();
        element_type = b & 0x0f;
        if (n > (uint64_t)(end - p)) damaged(path, "a list longer than its metadata");  // every element takes a byte or more
        return n;
    }
    void skip(int type, int depth = 0) {
        if (depth > 32) damaged(path, "metadata nested too deeply");
        switch (type) {
        case 1: case 2: return;          // a boolean field: its value is its type
        case 3: byte(); return;          // i8
        case 4: case 5: case 6: varint(); return;
        case 7:
            if (end - p < 8) damaged(path, "its metadata ends early");
            p += 8;
            return;
        case 8: binary(); return;
        case 9: case 10: {               // list, set: a boolean element is a byte there
            int t;
            for (uint64_t n = list(t); n--;) t == 1 || t == 2 ? (void)byte() : skip(t, depth + 1);
            return;
        }
        case 11: {                       // map
            const uint64_t n = varint();
            if (n > (uint64_t)(end - p)) damaged(path, "a map longer than its metadata");
            if (n == 0) return;
            const uint8_t kv = byte();
            for (uint64_t i = 0; i < n; i++) skip(kv >> 4, depth + 1), skip(kv & 0x0f, depth + 1);
            return;
        }
        case 12: {
            int16_t id = 0;
            for (int t; (t = field(id)) != 0;) skip(t, depth + 1);
            return;
        }
        default: damaged(path, "a metadata value of unknown type");
        }
    }
};

struct SchemaNode {
    std::string name;
    int type = -1;  // physical type; -1: a group
    int repetition = kRequired;
    int children = 0;
};
struct ColumnMeta {
    std::vector<std::string> path;
    int type = -1, codec = 0;
    int64_t num_values = 0, data_page_offset = -1, dictionary_page_offset = 0;
};
struct RowGroup {
    int64_t num_rows = 0;
    std::vector<ColumnMeta> columns;
};
struct FileMeta {
    std::vector<SchemaNode> schema;
    int64_t num_rows = 0;
    std::vector<RowGroup> row_groups;
};

// Reads a struct's fields, handing each (id, type) to `on`, which returns false to skip it.
template <class F>
void read_struct(Compact& c, F on) {
    int16_t id = 0;
    for (int t; (t = c.field(id)) != 0;)
        if (!on(id, t)) c.skip(t);
}

SchemaNode read_schema_node(Compact& c) {
    SchemaNode n;
    read_struct(c, [&](int16_t id, int t) {
        if (id == 1 && t == 5) n.type = (int)c.integer();
        else if (id == 3 && t == 5) n.repetition = (int)c.integer();
        else if (id == 4 && t == 8) n.name = c.binary();
        else if (id == 5 && t == 5) n.children = (int)c.integer();
        else return false;
        return true;
    });
    return n;
}

ColumnMeta read_column_meta(Compact& c) {
    ColumnMeta m;
    read_struct(c, [&](int16_t id, int t) {
        if (id == 1 && t == 5) m.type = (int)c.integer();
        else if (id == 3 && t == 9) {
            int et;
            for (uint64_t n = c.list(et); n--;) et == 8 ? m.path.push_back(c.binary()) : c.skip(et);
        } else if (id == 4 && t == 5) m.codec = (int)c.integer();
        else if (id == 5 && t == 6) m.num_values = c.integer();
        else if (id == 9 && t == 6) m.data_page_offset = c.integer();
        else if (id == 11 && t == 6) m.dictionary_page_offset = c.integer();
        else return false;
        return true;
    });
    return m;
}

FileMeta read_file_meta(Compact& c) {
    FileMeta f;
    read_struct(c, [&](int16_t id, int t) {
        int et;
        if (id == 2 && t == 9) {
            for (uint64_t n = c.list(et); n--;) et == 12 ? f.schema.push_back(read_schema_node(c)) : c.skip(et);
        } else if (id == 3 && t == 6) {
            f.num_rows = c.integer();
        } else if (id == 4 && t == 9) {
            for (uint64_t n = c.list(et); n--;) {
                if (et != 12) {
                    c.skip(et);
                    continue;
                }
                RowGroup g;
                read_struct(c, [&](int16_t gid, int gt) {
                    int ct;
                    if (gid == 1 && gt == 9) {
                        for (uint64_t k = c.list(ct); k--;) {
                            if (ct != 12) {
                                c.skip(ct);
                                continue;
                            }
                            ColumnMeta m;
                            read_struct(c, [&](int16_t cid, int cct) {  // ColumnChunk: its meta_data
                                if (cid != 3 || cct != 12) return false;
                                m = read_column_meta(c);
                                return true;
                            });
                            g.columns.push_back(std::move(m));
                        }
                    } else if (gid == 3 && gt == 6) {
                        g.num_rows = c.integer();
                    } else {
                        return false;
                    }
                    return true;
                });
                f.row_groups.push_back(std::move(g));
            }
        } else {
            return false;
        }
        return true;
    });
    return f;
}

struct PageHeader {
    int type = -1;
    int64_t uncompressed = 0, compressed = 0, num_values = 0;
    int encoding = kPlain;
    int64_t def_bytes = 0, rep_bytes = 0;  // a v2 page's levels, stored uncompressed before its values
    bool values_compressed = true;
};

PageHeader read_page_header(Compact& c) {
    PageHeader h;
    read_struct(c, [&](int16_t id, int t) {
        if (id == 1 && t == 5) h.type = (int)c.integer();
        else if (id == 2 && t == 5) h.uncompressed = c.integer();
        else if (id == 3 && t == 5) h.compressed = c.integer();
        else if ((id == 5 || id == 7 || id == 8) && t == 12) {  // data, dictionary, data v2 page headers
            read_struct(c, [&](int16_t sid, int st) {
                if (sid == 1 && st == 5) h.num_values = c.integer();
                else if (id != 8 && sid == 2 && st == 5) h.encoding = (int)c.integer();
                else if (id == 8 && sid == 4 && st == 5) h.encoding = (int)c.integer();
                else if (id == 8 && sid == 5 && st == 5) h.def_bytes = c.integer();
                else if (id == 8 && sid == 6 && st == 5) h.rep_bytes = c.integer();
                else if (id == 8 && sid == 7 && (st == 1 || st == 2)) h.values_compressed = st == 1;
                else return false;
                return true;
            });
        } else {
            return false;
        }
        return true;
    });
    if (h.compressed < 0 || h.uncompressed < 0 || h.num_values < 0 || h.def_bytes < 0 || h.rep_bytes < 0)
        damaged(c.path, "a page of negative size");
    return h;
}

// Snappy: the uncompressed length (a varint), then literals and back-references to what is written.
std::string snappy(const uint8_t* p, const uint8_t* end, int64_t expected, const char* path) {
    Compact c{p, end, path};
    const uint64_t n = c.varint();
    if ((int64_t)n != expected) damaged(path, "a Snappy page of another size than its header says");
    // a 3-byte copy writes at most 64 bytes: a page cannot grow more than that (and a huge size is no reason to allocate)
    if (n > (uint64_t)(end - p) * 22 + 64) damaged(path, "a Snappy page that claims more than it could hold");
    std::string out;
    out.reserve(n);
    while (c.p < end) {
        const uint8_t tag = c.byte();
        size_t len, offset = 0;
        if ((tag & 3) == 0) {  // a literal; lengths over 60 follow in 1-4 bytes
            len = tag >> 2;
            if (len >= 60) {
                const int bytes = (int)len - 59;
                len = 0;
                for (int i = 0; i < bytes; i++) len |= (size_t)c.byte() << (8 * i);
            }
            len++;
            if (len > (size_t)(end - c.p)) damaged(path, "a Snappy literal past the page's end");
            out.append((const char*)c.p, len);
            c.p += len;
        } else {
            if ((tag & 3) == 1) {
                len = 4 + ((tag >> 2) & 7);
                offset = (size_t)(tag >> 5) << 8 | c.byte();
            } else {
                len = (tag >> 2) + 1;
                const int bytes = (tag & 3) == 2 ? 2 : 4;
                for (int i = 0; i < bytes; i++) offset |= (size_t)c.byte() << (8 * i);
            }
            if (offset == 0 || offset > out.size()) damaged(path, "a Snappy copy from before the page's start");
            for (size_t i = 0; i < len; i++) out += out[out.size() - offset];  // may overlap what it writes
        }
        if (out.size() > n) damaged(path, "a Snappy page longer than its header says");
    }
    if (out.size() != n) damaged(path, "a Snappy page shorter than its header says");
    return out;
}

// A page's bytes as its column's codec stored them: Snappy, gzip (RFC 1952, data/gzip.h) or none.
std::string decompress(int codec, const uint8_t* p, const uint8_t* end, int64_t expected, const char* path) {
    if (codec == kSnappy) return snappy(p, end, expected, path);
    if (codec != kGzip) return std::string((const char*)p, end - p);
    std::string out = gunzip(std::string_view((const char*)p, end - p), path);
    if ((int64_t)out.size() != expected) damaged(path, "a gzip page of another size than its header says");
    return out;
}

// The RLE / bit-packed hybrid: runs of one repeated value, and groups of 8 values packed in
// `bits` bits each, least significant first. Reads `count` values from [p, end).
void rle_hybrid(const uint8_t* p, const uint8_t* end, int bits, size_t count, std::vector<uint32_t>& out, const char* path) {
    Compact c{p, end, path};
    const size_t width = (size_t)(bits + 7) / 8;
    while (out.size() < count) {
        const uint64_t header = c.varint();
        if (header & 1) {
            const uint64_t groups = header >> 1;
            if (groups == 0 || (bits && groups > (uint64_t)(end - c.p) / bits)) damaged(path, "a bit-packed run past its page");
            const size_t nbytes = (size_t)groups * bits;
            for (size_t i = 0; i < groups * 8 && out.size() < count; i++) {
                uint32_t v = 0;
                for (int b = 0; b < bits; b++) {
                    const size_t bit = i * bits + b;
                    v |= (uint32_t)((c.p[bit / 8] >> (bit % 8)) & 1) << b;
                }
                out.push_back(v);
            }
            c.p += nbytes;
        } else {
            const uint64_t run = header >> 1;
            if (run == 0 || width > (size_t)(end - c.p)) damaged(path, "an empty or cut run of levels or indices");
            uint32_t v = 0;
            for (size_t b = 0; b < width; b++) v |= (uint32_t)c.p[b] << (8 * b);
            c.p += width;
            out.insert(out.end(), std::min<uint64_t>(run, count - out.size()), v);
        }
    }
}

int bit_width(int max_level) {
    int bits = 0;
    while ((1 << bits) <= max_level) bits++;
    return bits;
}

// One leaf column's entries over all row groups: levels, and the defined entries' values as JSON.
struct Column {
    std::vector<uint32_t> rep, def;
    std::vector<JsonValue> values;
};

// PLAIN values of `type` from [p, end): `count` of them appended to `out`.
void plain_values(const uint8_t* p, const uint8_t* end, int type, size_t count, std::vector<JsonValue>& out, const char* path) {
    for (size_t i = 0, bit = 0; i < count; i++) {
        JsonValue v;
        if (type == kByteArray) {
            if (end - p < 4) damaged(path, "a string value past its page");
            uint32_t len;
            memcpy(&len, p, 4);
            p += 4;
            if (len > (size_t)(end - p)) damaged(path, "a string value past its page");
            v.type = JsonValue::String;
            v.string.assign((const char*)p, len);
            p += len;
        } else if (type == kBoolean) {  // bit-packed, least significant bit first
            if (bit / 8 >= (size_t)(end - p)) damaged(path, "a boolean value past its page");
            v.type = JsonValue::Bool;
            v.boolean = (p[bit / 8] >> (bit % 8)) & 1;
            bit++;
        } else if (type == kFloat || type == kDouble) {  // a weight of 0.0: datasets writes float64 for a column of floats and None
            const size_t size = type == kFloat ? 4 : 8;
            if ((size_t)(end - p) < size) damaged(path, "a number value past its page");
            double x;
            if (size == 4) {
                float y;
                memcpy(&y, p, 4);
                x = y;
            } else {
                memcpy(&x, p, 8);
            }
            p += size;
            v.type = JsonValue::Number;
            v.number = x;
            if (x == std::floor(x) && std::fabs(x) <= 9007199254740992.0) v.exact_integer = true, v.integer = (int64_t)x;
        } else {
            const size_t size = type == kInt32 ? 4 : 8;
            if ((size_t)(end - p) < size) damaged(path, "a number value past its page");
            int64_t x = 0;
            if (size == 4) {
                int32_t y;
                memcpy(&y, p, 4);
                x = y;
            } else {
                memcpy(&x, p, 8);
            }
            p += size;
            v.type = JsonValue::Number;
            v.number = (double)x;
            v.integer = x;
            v.integer_literal = v.exact_integer = true;
        }
        out.push_back(std::move(v));
    }
}

// The most rows, or entries of a column, a file of `size` bytes is taken to hold. Entries take a bit or
// more each, but for runs: a run of levels and one of dictionary indices hold any number of equal
// values (pyarrow writes 100k rows of one text in 1 KB), so a million are allowed whatever the size.
// More is damage, and no reason to allocate.
int64_t max_entries(size_t size) { return std::max<int64_t>(8 * (int64_t)size + 1024, int64_t(1) << 20); }

// `name`: the column's, as the schema gives it (a damaged chunk's own path may be missing).
Column read_column(std::string_view file, const FileMeta& meta, size_t index, const char* name, int max_rep, int max_def,
                   const char* path) {
    Column col;
    const uint8_t* base = (const uint8_t*)file.data();
    for (const RowGroup& g : meta.row_groups) {
        if (index >= g.columns.size()) damaged(path, "a row group without every column");
        const ColumnMeta& m = g.columns[index];
        if (m.codec != kUncompressed && m.codec != kSnappy && m.codec != kGzip) {
            static const char* const names[] = {"none", "Snappy", "gzip", "LZO", "Brotli", "LZ4", "zstd", "LZ4"};
            fail("%s: column %s is compressed with %s, which is not read here (Snappy, gzip and none are): convert it, e.g. "
                 "python -c \"import pyarrow.parquet as pq; pq.write_table(pq.read_table('%s'), 'out.parquet', "
                 "compression='snappy')\", or to jsonl", path, name,
                 m.codec >= 0 && m.codec < 8 ? names[m.codec] : "an unknown codec", path);
        }
        int64_t at = m.dictionary_page_offset > 0 && m.dictionary_page_offset < m.data_page_offset ? m.dictionary_page_offset
                                                                                                     : m.data_page_offset;
        if (m.num_values < 0 || m.num_values > max_entries(file.size())) damaged(path, "a column of more entries than the file could hold");
        std::vector<JsonValue> dictionary;
        for (int64_t seen = 0; seen < m.num_values;) {
            if (at < 0 || at >= (int64_t)file.size()) damaged(path, "a page outside the file");
            Compact c{base + at, base + file.size(), path};
            const PageHeader h = read_page_header(c);
            const uint8_t* page = c.p;
            if (h.compressed > base + file.size() - page) damaged(path, "a page past the file's end");
            at = (int64_t)(page - base) + h.compressed;
            if (h.type == kDictionaryPage) {
                const std::string raw = decompress(m.codec, page, page + h.compressed, h.uncompressed, path);
                dictionary.clear();
                plain_values((const uint8_t*)raw.data(), (const uint8_t*)raw.data() + raw.size(), m.type, h.num_values, dictionary, path);
                continue;
            }
            if (h.type != kDataPage && h.type != kDataPageV2) continue;  // an index page
            const bool v2 = h.type == kDataPageV2;
            if (h.num_values > m.num_values - seen) damaged(path, "a page of more entries than its column");
            std::string raw;
            const uint8_t* p;
            const uint8_t* end;
            if (v2) {  // levels uncompressed, then the values, compressed or not
                if (h.rep_bytes + h.def_bytes > h.compressed) damaged(path, "a page's levels past the page");
                raw.assign((const char*)page, h.rep_bytes + h.def_bytes);
                const uint8_t* values = page + h.rep_bytes + h.def_bytes;
                const int64_t stored = h.compressed - h.rep_bytes - h.def_bytes;
                raw += decompress(h.values_compressed ? m.codec : kUncompressed, values, values + stored,
                                  h.uncompressed - h.rep_bytes - h.def_bytes, path);
            } else {
                raw = decompress(m.codec, page, page + h.compressed, h.uncompressed, path);
            }
            p = (const uint8_t*)raw.data();
            end = p + raw.size();
            // levels: v1 prefixes each with its length in 4 bytes; v2 gives the lengths in the header
            const auto levels = [&](int max, int64_t v2_bytes, std::vector<uint32_t>& out) {
                if (max == 0) {
                    out.insert(out.end(), (size_t)h.num_values, 0);
                    return;
                }
                int64_t len = v2_bytes;
                if (!v2) {
                    if (end - p < 4) damaged(path, "a page's levels past the page");
                    uint32_t l;
                    memcpy(&l, p, 4);
                    p += 4;
                    len = l;
                }
                if (len > end - p) damaged(path, "a page's levels past the page");
                std::vector<uint32_t> got;
                rle_hybrid(p, p + len, bit_width(max), (size_t)h.num_values, got, path);
                for (uint32_t v : got)
                    if (v > (uint32_t)max) damaged(path, "a level above its column's maximum");
                out.insert(out.end(), got.begin(), got.end());
                p += len;
            };
            const size_t first = col.def.size();
            levels(max_rep, h.rep_bytes, col.rep);
            if (max_def == 0) col.def.insert(col.def.end(), (size_t)h.num_values, 0);
            else levels(max_def, h.def_bytes, col.def);
            const size_t defined = (size_t)std::count(col.def.begin() + first, col.def.end(), (uint32_t)max_def);
            if (h.encoding == kPlain) {
                plain_values(p, end, m.type, defined, col.values, path);
            } else if (h.encoding == kPlainDictionary || h.encoding == kRleDictionary) {
                if (defined && (p >= end || *p > 32)) damaged(path, "a page without its indices");
                std::vector<uint32_t> ids;
                if (defined) rle_hybrid(p + 1, end, *p, defined, ids, path);
                for (uint32_t i : ids) {
                    if (i >= dictionary.size()) damaged(path, "an index past its dictionary");
                    col.values.push_back(dictionary[i]);
                }
            } else if (h.encoding == kRle && m.type == kBoolean) {  // booleans of v2 pages: a 4-byte length, then 1-bit levels' hybrid
                if (end - p < 4) damaged(path, "a page's booleans past the page");
                uint32_t len;
                memcpy(&len, p, 4);
                p += 4;
                if (len > (size_t)(end - p)) damaged(path, "a page's booleans past the page");
                std::vector<uint32_t> bits;
                if (defined) rle_hybrid(p, p + len, 1, defined, bits, path);
                for (uint32_t b : bits) {
                    JsonValue v;
                    v.type = JsonValue::Bool;
                    v.boolean = b != 0;
                    col.values.push_back(std::move(v));
                }
            } else {
                fail("%s: column %s stores its values in encoding %d, which is not read here (PLAIN and dictionary "
                     "are): write the file with pyarrow's defaults, or convert it to jsonl", path, name, h.encoding);
            }
            seen += h.num_values;
        }
    }
    return col;
}

// A leaf of the schema: its path from the top-level column down, and each node's repetition.
struct Leaf {
    size_t column = 0;  // index among the leaves: the column chunks' order
    std::vector<std::string> path;
    std::vector<int> repetition;
    int type = -1;
};

size_t walk_schema(const std::vector<SchemaNode>& s, size_t i, Leaf prefix, std::vector<Leaf>& leaves, int depth, const char* path) {
    if (i >= s.size() || depth > 32) damaged(path, "a schema that lists fewer nodes than its groups hold");
    prefix.path.push_back(s[i].name);
    prefix.repetition.push_back(s[i].repetition);
    if (s[i].type >= 0 && s[i].children == 0) {
        prefix.column = leaves.size();
        prefix.type = s[i].type;
        leaves.push_back(prefix);
        return i + 1;
    }
    size_t next = i + 1;
    for (int k = 0; k < s[i].children; k++) next = walk_schema(s, next, prefix, leaves, depth + 1, path);
    return next;
}

// The member `key` of object `o`, added as an empty object where it has none.
JsonValue& object_member(JsonValue& o, const std::string& key) {
    for (auto& [k, v] : o.object)
        if (k == key) return v;
    o.object.emplace_back(key, JsonValue());
    o.object.back().second.type = JsonValue::Object;
    return o.object.back().second;
}

}  // namespace

bool is_parquet(std::string_view bytes) { return bytes.size() >= 4 && bytes.compare(0, 4, "PAR1") == 0; }

std::vector<JsonValue> parquet_rows(std::string_view bytes, const char* path, std::vector<std::string>* columns) {
    if (bytes.size() < 12 || !is_parquet(bytes) || bytes.compare(bytes.size() - 4, 4, "PAR1") != 0)
        damaged(path, "no PAR1 marks at both ends");
    uint32_t meta_len;
    memcpy(&meta_len, bytes.data() + bytes.size() - 8, 4);
    if (meta_len > bytes.size() - 12) damaged(path, "metadata longer than the file");
    const uint8_t* meta_at = (const uint8_t*)bytes.data() + bytes.size() - 8 - meta_len;
    Compact c{meta_at, meta_at + meta_len, path};
    const FileMeta meta = read_file_meta(c);
    if (meta.schema.empty() || meta.num_rows < 0) damaged(path, "no schema");
    std::vector<Leaf> leaves;
    for (size_t i = 1, k = 0; k < (size_t)meta.schema[0].children; k++) {
        Leaf root;
        if (columns && i < meta.schema.size()) columns->push_back(meta.schema[i].name);
        i = walk_schema(meta.schema, i, root, leaves, 0, path);
    }
    for (const RowGroup& g : meta.row_groups)
        if (g.columns.size() != leaves.size()) damaged(path, "a row group whose columns are not the schema's");
    if (meta.num_rows > max_entries(bytes.size())) damaged(path, "more rows than the file could hold");
    std::vector<JsonValue> rows((size_t)meta.num_rows);
    for (JsonValue& r : rows) r.type = JsonValue::Object;
    for (const char* name : kRecordColumns) {
        std::vector<const Leaf*> mine;
        for (const Leaf& l : leaves)
            if (table_field_name(l.path[0]) == name) mine.push_back(&l);
        if (mine.empty()) continue;
        const bool list = mine.size() > 1 || mine[0]->path.size() > 1;
        // a chat column: a list of structs (or of values); one repeated node on each leaf's path
        std::vector<JsonValue> column_rows(rows.size());
        for (const Leaf* l : mine) {
            int max_rep = 0, max_def = 0, def_at_item = -1;
            size_t repeated_at = 0;
            std::vector<int> def_at(l->path.size());  // the definition level at which each node of the path is there
            for (size_t d = 0; d < l->path.size(); d++) {
                max_def += l->repetition[d] != kRequired;
                def_at[d] = max_def;
                if (l->repetition[d] == kRepeated) max_rep++, def_at_item = max_def, repeated_at = d;
            }
            // a column of another type than text: one whose values are all null (pandas and datasets
            // write a column of None so, with the Null type on an int32) adds nothing, as a null does
            if (!list && l->type != kByteArray) {
                if (l->type == kInt32 || l->type == kInt64 || l->type == kBoolean || l->type == kFloat || l->type == kDouble) {
                    const Column col = read_column(bytes, meta, l->column, name, max_rep, max_def, path);
                    if (col.values.empty()) continue;
                }
                fail("%s: column %s holds numbers or booleans, not text: a record's fields are strings", path, name);
            }
            if (list && max_rep != 1)
                fail("%s: column %s nests %s (at %s): only a list of records of values is read (messages: [{role, content}]); "
                     "convert the file to jsonl, e.g. python -c \"import pandas as pd; pd.read_parquet('%s').to_json("
                     "'data.jsonl', orient='records', lines=True, force_ascii=False)\"", path, name,
                     max_rep ? "lists within its lists" : "records without a list", l->path.back().c_str(), path);
            if (l->type != kByteArray && l->type != kInt32 && l->type != kInt64 && l->type != kBoolean && l->type != kFloat &&
                l->type != kDouble)
                continue;
            const Column col = read_column(bytes, meta, l->column, name, max_rep, max_def, path);
            // The nodes below the list that are an item's keys (parquet-format's LogicalTypes.md): in a
            // 3-level list (messages.list.element.role) those below the repeated group's one child;
            // in a legacy 2-level list (messages.array.role) those below the repeated group itself,
            // which then has several children or is named "array" or "<list>_tuple". A leaf below
            // no key is the item itself (a list of strings); nodes between are records within the
            // item (a message's function_call: {name, arguments}), kept as such.
            size_t keys_from = repeated_at + 2;
            if (l->path.size() > repeated_at + 1) {
                bool two_level = l->path[repeated_at] == "array" || (repeated_at > 0 && l->path[repeated_at] == l->path[repeated_at - 1] + "_tuple");
                for (const Leaf* o : mine)
                    two_level |= o->path.size() > repeated_at + 1 && o->path[repeated_at + 1] != l->path[repeated_at + 1];
                if (two_level) keys_from = repeated_at + 1;
            }
            const bool scalar = keys_from >= l->path.size();
            long row = -1;
            size_t item = 0, value = 0;
            for (size_t e = 0; e < col.def.size(); e++) {
                if (col.rep[e] == 0) row++, item = 0;
                if (row < 0 || row >= (long)rows.size()) damaged(path, "a column with more rows than the file");
                const bool present = col.def[e] == (uint32_t)max_def;
                if (present && value >= col.values.size()) damaged(path, "fewer values than defined entries");
                if (!list) {
                    if (present) rows[row].object.emplace_back(name, col.values[value]);
                } else if ((int)col.def[e] >= def_at_item) {  // an item of the row's list
                    JsonValue& items = column_rows[row];
                    items.type = JsonValue::Array;
                    if (item >= items.array.size()) items.array.resize(item + 1);
                    JsonValue& it = items.array[item];
                    if (scalar) {
                        if (present) it = col.values[value];
                    } else {
                        it.type = JsonValue::Object;
                        JsonValue* o = &it;
                        for (size_t d = keys_from; d + 1 < l->path.size() && o; d++) {
                            if ((int)col.def[e] < def_at[d]) o = nullptr;  // a null record within the item: left out
                            else o = &object_member(*o, l->path[d]);
                        }
                        if (o && present) o->object.emplace_back(l->path.back(), col.values[value]);
                    }
                    item++;
                } else if (col.def[e] > 0 || l->repetition[0] == kRequired) {  // the list is there but empty
                    column_rows[row].type = JsonValue::Array;
                }
                value += present;
            }
        }
        if (list)
            for (size_t r = 0; r < rows.size(); r++)
                if (column_rows[r].type == JsonValue::Array) rows[r].object.emplace_back(name, std::move(column_rows[r]));
    }
    return rows;
}
