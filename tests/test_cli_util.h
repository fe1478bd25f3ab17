// What the tests that run the programs as a user does share (test_cli.cpp, test_cli_tools.cpp): a
// shell command's exit status and its output, stdout and stderr together.
#pragma once
#include <doctest/doctest.h>

#include <sys/wait.h>

#include <cstdio>
#include <string>

struct Run {
    int status;
    std::string out;  // stdout and stderr together
};

inline Run run(const std::string& cmd) {
    FILE* p = popen((cmd + " 2>&1").c_str(), "r");
    REQUIRE(p != nullptr);
    std::string out;
    char buf[4096];
    for (size_t n; (n = fread(buf, 1, sizeof buf, p)) > 0;) out.append(buf, n);
    int st = pclose(p);
    return {WIFEXITED(st) ? WEXITSTATUS(st) : -1, out};
}

inline bool has(const Run& r, const char* text) { return r.out.find(text) != std::string::npos; }
