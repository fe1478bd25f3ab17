// Small shared helpers: errors, file reading, atomic writes, a deterministic RNG.
// Errors are exceptions carrying a message that names the file/field and what to do; main()
// catches them and prints "error: ...". Tests check the messages.
#pragma once
#include "kernels/hash.h"
#include <cstdint>
#include <cstdio>
#include <stdexcept>
#include <string>
#include <vector>

// Throws std::runtime_error with a printf-formatted message.
[[noreturn]] void fail(const char* fmt, ...) __attribute__((format(printf, 1, 2)));
// printf into a std::string.
std::string strf(const char* fmt, ...) __attribute__((format(printf, 1, 2)));
// An either/or switch from the environment (ATTENTION_TILES): unset, empty or `off`
// is false, `on` (which means `on_means`) is true; anything else fails naming both, so that a typo
// never goes unseen.
bool env_switch(const char* name, const char* off, const char* on, const char* on_means);

// Whole file as bytes; fails with the path in the message when it cannot be read.
std::string read_file(const std::string& path);
// A 64-bit checksum of a file's bytes (FNV-1a over 8-byte words, then the tail bytes), read in
// chunks: catches a flipped bit or a truncation of a checkpoint file; not a cryptographic hash.
uint64_t checksum64_file(const std::string& path);
bool file_exists(const std::string& path);
// Whether a and b both exist and are the same file (another name, a link): an output that would
// overwrite an input.
bool same_file(const std::string& a, const std::string& b);
// Whether s ends with `suffix` (a whole string ends with itself).
inline bool ends_with(const std::string& s, const std::string& suffix) {
    return s.size() >= suffix.size() && s.compare(s.size() - suffix.size(), suffix.size(), suffix) == 0;
}
// `s` as one word for a POSIX shell, for the commands messages print: as it is when it holds only
// characters a shell leaves alone, else in single quotes (a path with a space stays one argument
// when the command is copied and pasted).
std::string shell_quote(const std::string& s);
// s cut at every `sep` (a CSV line's fields, a comma list): "a,,b" gives {"a", "", "b"}.
std::vector<std::string> split(const std::string& s, char sep);

// Writes `path` atomically: the bytes go to path.tmp, are flushed and fsync'ed, then renamed over
// `path`, so a kill at any moment leaves either the old file or the complete new one.
struct AtomicFile {
    explicit AtomicFile(const std::string& path);
    ~AtomicFile();  // removes the .tmp if commit() was never reached
    void write(const void* data, size_t n);
    template <class T> void put(const T& v) { write(&v, sizeof(T)); }
    void pad_to(size_t alignment);  // zero bytes up to the next multiple of alignment
    size_t offset() const { return written_; }
    void commit();
private:
    std::string path_, tmp_;
    FILE* f_ = nullptr;
    size_t written_ = 0;
};
// A whole file (text: JSON, configs) written through AtomicFile.
void write_file_atomic(const std::string& path, const std::string& bytes);

// Bounds-checked reader over a file's bytes: every read checks the remaining length and fails
// naming the file and what was being read ("truncated while reading X").
struct ByteReader {
    ByteReader(std::string path, std::string bytes) : path(std::move(path)), data(std::move(bytes)) {}
    std::string path, data;
    size_t pos = 0;
    void read(void* dst, size_t n, const char* what);
    void need(size_t n, const char* what) const;  // fails like read() when fewer than n bytes remain
    template <class T> T get(const char* what) { T v; read(&v, sizeof(T), what); return v; }
    void align(size_t alignment, const char* what);
    size_t remaining() const { return data.size() - pos; }
};

// splitmix64: a tiny counter-friendly RNG. Deterministic across platforms and backends, and its
// whole state is one uint64 (saved in the .state file, so a resumed run draws the same numbers).
struct Rng {
    uint64_t s;
    explicit Rng(uint64_t seed = 0) : s(seed) {}
    uint64_t next_u64() {
        uint64_t z = (s += 0x9E3779B97F4A7C15ull);
        z = (z ^ (z >> 30)) * 0xBF58476D1CE4E5B9ull;
        z = (z ^ (z >> 27)) * 0x94D049BB133111EBull;
        return z ^ (z >> 31);
    }
    float uniform() { return (float)((next_u64() >> 40) * (1.0 / 16777216.0)); }  // [0,1)
    float normal();
};

double now_seconds();

// A folder given where a model file goes (a checkpoint's, say) fails naming it as one, with the file
// it holds (model.bin, or an adapter.lora that needs its base model); anything else passes.
void check_model_not_directory(const std::string& path);
