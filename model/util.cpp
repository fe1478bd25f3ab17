#include "model/util.h"

#include <cctype>
#include <cerrno>
#include <chrono>
#include <cmath>
#include <cstdarg>
#include <cstdlib>
#include <cstring>
#include <filesystem>
#include <sys/stat.h>
#include <unistd.h>

namespace {
std::string vstrf(const char* fmt, va_list ap) {
    va_list again;
    va_copy(again, ap);
    int n = vsnprintf(nullptr, 0, fmt, again);
    va_end(again);
    std::string s(n > 0 ? n : 0, '\0');
    vsnprintf(&s[0], s.size() + 1, fmt, ap);
    return s;
}
}  // namespace

void fail(const char* fmt, ...) {
    va_list ap;
    va_start(ap, fmt);
    std::string msg = vstrf(fmt, ap);
    va_end(ap);
    throw std::runtime_error(msg);
}

bool env_switch(const char* name, const char* off, const char* on, const char* on_means) {
    const char* e = getenv(name);
    if (!e || !*e || !strcmp(e, off)) return false;
    if (!strcmp(e, on)) return true;
    fail("%s=%s: use %s (%s) or %s, or leave it unset", name, e, on, on_means, off);
}

std::string strf(const char* fmt, ...) {
    va_list ap;
    va_start(ap, fmt);
    std::string s = vstrf(fmt, ap);
    va_end(ap);
    return s;
}

bool file_exists(const std::string& path) {
    struct stat st;
    return stat(path.c_str(), &st) == 0;
}

bool same_file(const std::string& a, const std::string& b) {
    struct stat sa, sb;
    return !a.empty() && !b.empty() && stat(a.c_str(), &sa) == 0 && stat(b.c_str(), &sb) == 0 &&
           sa.st_dev == sb.st_dev && sa.st_ino == sb.st_ino;
}

std::string shell_quote(const std::string& s) {
    bool plain = !s.empty();
    for (unsigned char c : s) plain &= std::isalnum(c) || (c && std::strchr("_./+-:=,@%", c));
    if (plain) return s;
    std::string out = "'";
    for (char c : s) out += c == '\'' ? "'\\''" : std::string(1, c);
    return out + "'";
}

std::vector<std::string> split(const std::string& s, char sep) {
    std::vector<std::string> out(1);
    for (char c : s)
        if (c == sep) out.emplace_back();
        else out.back() += c;
    return out;
}

std::string read_file(const std::string& path) {
    FILE* f = fopen(path.c_str(), "rb");
    if (!f) fail("%s: cannot open: %s", path.c_str(), strerror(errno));
    std::string out;
    char buf[1 << 16];
    size_t n;
    while ((n = fread(buf, 1, sizeof buf, f)) > 0) out.append(buf, n);
    const bool err = ferror(f);
    const int why = errno;  // "Is a directory" for a folder given where a file goes
    fclose(f);
    if (err) fail("%s: read error: %s", path.c_str(), strerror(why));
    return out;
}

uint64_t checksum64_file(const std::string& path) {
    FILE* f = fopen(path.c_str(), "rb");
    if (!f) fail("%s: cannot open: %s", path.c_str(), strerror(errno));
    const uint64_t prime = 0x100000001B3ull;
    uint64_t h = 0xCBF29CE484222325ull, size = 0;
    std::vector<char> buf(1 << 20);  // a multiple of 8: every chunk but the last is whole words
    size_t n;
    while ((n = fread(buf.data(), 1, buf.size(), f)) > 0) {
        size_t i = 0;
        for (; i + 8 <= n; i += 8) {
            uint64_t w;
            memcpy(&w, buf.data() + i, 8);
            h = (h ^ w) * prime;
        }
        for (; i < n; i++) h = (h ^ (uint8_t)buf[i]) * prime;  // only the file's last chunk has a tail
        size += n;
    }
    const bool err = ferror(f);
    fclose(f);
    if (err) fail("%s: read error", path.c_str());
    return (h ^ size) ^ (h >> 32);
}

AtomicFile::AtomicFile(const std::string& path) : path_(path), tmp_(path + ".tmp") {
    f_ = fopen(tmp_.c_str(), "wb");
    if (!f_) fail("%s: cannot write: %s", path_.c_str(), strerror(errno));  // the file asked for, not its .tmp
}

AtomicFile::~AtomicFile() {
    if (f_) {
        fclose(f_);
        remove(tmp_.c_str());
    }
}

void AtomicFile::write(const void* data, size_t n) {
    if (n && fwrite(data, 1, n, f_) != n) fail("%s: write failed (disk full?): %s", tmp_.c_str(), strerror(errno));
    written_ += n;
}

void AtomicFile::pad_to(size_t alignment) {
    static const char zeros[256] = {0};
    while (written_ % alignment) write(zeros, std::min(alignment - written_ % alignment, sizeof zeros));
}

void AtomicFile::commit() {
    if (fflush(f_) != 0 || fsync(fileno(f_)) != 0) fail("%s: flush failed: %s", tmp_.c_str(), strerror(errno));
    fclose(f_);
    f_ = nullptr;
    if (rename(tmp_.c_str(), path_.c_str()) != 0) {
        const int why = errno;
        remove(tmp_.c_str());  // a complete copy nobody will use: do not leave it behind
        fail("%s: cannot write (rename from %s failed): %s", path_.c_str(), tmp_.c_str(), strerror(why));
    }
}

void write_file_atomic(const std::string& path, const std::string& bytes) {
    AtomicFile f(path);
    f.write(bytes.data(), bytes.size());
    f.commit();
}

void ByteReader::need(size_t n, const char* what) const {
    if (n > remaining())
        fail("%s: file is truncated: %s needs %zu bytes at offset %zu but only %zu remain", path.c_str(), what, n, pos,
             remaining());
}

void ByteReader::read(void* dst, size_t n, const char* what) {
    need(n, what);
    if (n) memcpy(dst, data.data() + pos, n);  // (an empty vector's data() may be null: memcpy's is no place for it)
    pos += n;
}

void ByteReader::align(size_t alignment, const char* what) {
    size_t next = (pos + alignment - 1) / alignment * alignment;
    if (next > data.size()) fail("%s: file is truncated before %s", path.c_str(), what);
    pos = next;
}

float Rng::normal() {
    // Box-Muller; u1 in (0,1] so the log is finite.
    float u1 = 1.0f - uniform(), u2 = uniform();
    return std::sqrt(-2.0f * std::log(u1)) * std::cos(6.2831853f * u2);
}

double now_seconds() {
    using namespace std::chrono;
    return duration<double>(steady_clock::now().time_since_epoch()).count();
}

// A folder given as a model (a checkpoint's, say) opens, and reads from it return nothing, which
// would be reported as a truncated file: named as a folder instead, with the file it may hold.
void check_model_not_directory(const std::string& path) {
    struct stat st;
    if (stat(path.c_str(), &st) != 0 || !S_ISDIR(st.st_mode)) return;
    const std::filesystem::path dir(path);
    const std::string bin = (dir / "model.bin").string();
    if (file_exists(bin)) fail("%s is a directory, not a file: pass %s", path.c_str(), bin.c_str());
    if (file_exists((dir / "adapter.lora").string()))
        fail("%s is a directory, not a file: it holds a LoRA adapter (adapter.lora), which needs the base model it "
             "was trained from: pass that as --model, the adapter as --lora (./train: --init-adapter)", path.c_str());
    fail("%s is a directory, not a model: pass a model file (.bin), or a Hugging Face model directory (with its "
         "config.json)", path.c_str());
}
