// Shared by the libFuzzer targets whose readers take a path: the input is written to a file in a
// per-process directory under /tmp (so two fuzzing jobs never share one), and an error must be a
// std::runtime_error whose message names that file; anything else traps, which libFuzzer reports.
#pragma once
#include <cstdint>
#include <cstdio>
#include <cstdlib>
#include <stdexcept>
#include <string>
#include <sys/stat.h>
#include <unistd.h>
#include <vector>

// /tmp/llmc-fuzz-PID/NAME, the directory made once; both are removed when the process exits normally.
inline std::string fuzz_path(const char* name) {
    static std::vector<std::string> made;
    static const std::string dir = [] {
        std::string d = "/tmp/llmc-fuzz-" + std::to_string(getpid());
        mkdir(d.c_str(), 0700);
        atexit([] {
            for (const std::string& p : made) unlink(p.c_str());
            rmdir(("/tmp/llmc-fuzz-" + std::to_string(getpid())).c_str());
        });
        return d;
    }();
    made.push_back(dir + "/" + name);
    return made.back();
}

// Writes the fuzz input to `path` (whole, or the process aborts: that is the harness failing).
inline void fuzz_write(const std::string& path, const uint8_t* data, size_t size) {
    FILE* f = fopen(path.c_str(), "wb");
    if (!f || (size && fwrite(data, 1, size, f) != size) || fclose(f) != 0) {
        perror(path.c_str());
        abort();
    }
}

// Runs read() on the file at `path`: true when it succeeds, false when it throws std::runtime_error
// naming that file (a reader's error must say which file is bad); anything else traps.
template <class F>
bool fuzz_reads(const std::string& path, F&& read) {
    try {
        read();
        return true;
    } catch (const std::runtime_error& e) {
        if (std::string(e.what()).find(path) == std::string::npos) {
            fprintf(stderr, "error message does not name %s: %s\n", path.c_str(), e.what());
            __builtin_trap();
        }
        return false;
    }
}

// Text that every tokenizer that loads must encode and decode: double spaces, a special token's
// text, a 4-byte character, a newline and a byte that is not UTF-8.
inline const char* const kFuzzText = "Hello  world <s>\xF0\x9F\xA6\x99\n\xFF";
