// A read-only memory map of a whole file. Model files are GBs: mapping them lets the converters
// dequantise tensor by tensor straight from the page cache instead of copying the file into memory.
#pragma once
#include <cstddef>
#include <cstdint>
#include <string>

struct MappedFile {
    std::string path;
    const uint8_t* data = nullptr;
    size_t size = 0;

    explicit MappedFile(const std::string& path);  // fails naming the path when it cannot be opened
    ~MappedFile();
    MappedFile(const MappedFile&) = delete;
    MappedFile& operator=(const MappedFile&) = delete;
};

// Bounds-checked little-endian reads over mapped bytes; a read past the end fails naming the file,
// the offset and what was being read. (ByteReader does the same over an owned copy of the bytes.)
struct MapCursor {
    const MappedFile& file;
    size_t pos = 0;
    explicit MapCursor(const MappedFile& f, size_t pos = 0) : file(f), pos(pos) {}
    size_t remaining() const { return file.size - pos; }
    const uint8_t* take(size_t n, const char* what);  // pointer to the next n bytes, then skips them
    template <class T> T get(const char* what) {
        T v;
        const uint8_t* p = take(sizeof(T), what);
        __builtin_memcpy(&v, p, sizeof(T));
        return v;
    }
};
