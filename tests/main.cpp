// The test runner's main: doctest runs every TEST_CASE in tests/*.cpp, then we print the plain
// closing line "N passed, N failed" that CI reads (doctest's own summary has another format).
#define DOCTEST_CONFIG_IMPLEMENT
#include <doctest/doctest.h>
#include <cstdio>

#include "kernels/kernels.h"

namespace {
int g_passed = 0, g_failed = 0;

struct CountListener : doctest::IReporter {
    CountListener(const doctest::ContextOptions&) {}
    void test_run_end(const doctest::TestRunStats& s) override {
        g_failed = (int)s.numTestCasesFailed;
        g_passed = (int)s.numTestCasesPassingFilters - g_failed;
    }
    void report_query(const doctest::QueryData&) override {}
    void test_run_start() override {}
    void test_case_start(const doctest::TestCaseData&) override {}
    void test_case_reenter(const doctest::TestCaseData&) override {}
    void test_case_end(const doctest::CurrentTestCaseStats&) override {}
    void test_case_exception(const doctest::TestCaseException&) override {}
    void subcase_start(const doctest::SubcaseSignature&) override {}
    void subcase_end() override {}
    void log_assert(const doctest::AssertData&) override {}
    void log_message(const doctest::MessageData&) override {}
    void test_case_skipped(const doctest::TestCaseData&) override {}
};
}  // namespace

REGISTER_LISTENER("counts", 1, CountListener);

int main(int argc, char** argv) {
    doctest::Context ctx(argc, argv);
    // The CUDA-vs-CPU tests (TEST_SUITE "cuda") need a GPU: without one they are skipped, saying why.
    const char* why = nullptr;
    if (!cuda_ops(&why)) {
        ctx.addFilter("test-suite-exclude", "cuda");
        std::printf("note: CUDA tests skipped: %s\n", why ? why : "no CUDA backend");
    }
    int rc = ctx.run();
    if (ctx.shouldExit()) return rc;
    std::printf("%d passed, %d failed\n", g_passed, g_failed);
    return rc;
}
