// What every command-line program shares: one way to read flags and their values, and one way to
// report an error ("error: <what>", exit status 1). A flag's value that is missing or not a number
// fails naming the flag, instead of atoi's silent 0 or reading past argv.
#pragma once
#include <cerrno>
#include <cmath>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <new>
#include <string>

#include "kernels/kernels.h"
#include "model/config.h"
#include "model/util.h"

struct Args {
    Args(int argc, char** argv, const char* help_hint) : argc_(argc), argv_(argv), hint_(help_hint) {}

    // Moves to the next argument; false when there is none left. A flag may carry its value after
    // '=' (--data=FILE, as GNU tools and argparse take it); a flag that takes no value refuses one,
    // which is known once the caller has moved on without reading it.
    bool next() {
        if (inline_value_)
            fail("flag %s takes no value: drop '=%s' (%s)", flag_.c_str(), value_.c_str(), hint_);
        if (++i_ >= argc_) return false;
        flag_ = argv_[i_];
        const size_t eq = flag_.find('=');
        inline_value_ = flag_.rfind("--", 0) == 0 && eq != std::string::npos;
        if (inline_value_) value_ = flag_.substr(eq + 1), flag_.resize(eq);
        return true;
    }
    bool is(const char* name) const { return flag_ == name; }
    const std::string& flag() const { return flag_; }

    std::string value() {
        if (inline_value_) inline_value_ = false;
        else if (i_ + 1 >= argc_) fail("flag %s needs a value (%s)", flag_.c_str(), hint_);
        else value_ = argv_[++i_];
        return value_;
    }
    double number() {
        std::string v = value();
        char* end;
        double d = strtod(v.c_str(), &end);
        if (v.empty() || *end) fail("flag %s: '%s' is not a number", flag_.c_str(), v.c_str());
        return d;
    }
    // A number in [lo, hi], or with an open end where lo_open / hi_open ("(0, inf)": positive and
    // finite): a NaN, an infinity or a value outside fails naming the flag and the range.
    double number_in(double lo, double hi, bool lo_open = false, bool hi_open = false) {
        double d = number();
        bool ok = std::isfinite(d) && (lo_open ? d > lo : d >= lo) && (hi_open ? d < hi : d <= hi);
        if (!ok)
            fail("flag %s: %s is out of range: expected a number in %c%g, %g%c", flag_.c_str(), value_.c_str(),
                 lo_open ? '(' : '[', lo, hi, hi_open || std::isinf(hi) ? ')' : ']');
        return d;
    }
    int integer(int lo = 0) {
        double d = number();
        if (d != std::floor(d) || d < lo || d > 2e9)
            fail("flag %s: expected a whole number from %d to 2000000000, got %s", flag_.c_str(), lo, value_.c_str());
        return (int)d;
    }
    [[noreturn]] void unknown() const { fail("unknown flag '%s' (%s)", flag_.c_str(), hint_); }

private:
    int argc_;
    char** argv_;
    const char* hint_;
    int i_ = 0;
    std::string flag_, value_;   // value_: the current flag's, once read (or given after '=')
    bool inline_value_ = false;  // the current flag came as --flag=value and value() has not read it
};

// --dim --layers --heads --kv-heads --head-dim --ffn --vocab: a shape given field by field, over a
// preset's or from scratch (./init_model, ./memory).
struct ShapeFlags {
    int32_t dim = 0, layers = 0, heads = 0, kv_heads = 0, head_dim = 0, ffn = 0, vocab = 0;
    // Takes the current flag when it is one of these. At least 1: 0 is "not given" here, so a 0 would
    // silently keep the preset's value (--layers 0 writing a 2-layer model).
    bool parse(Args& a) {
        int32_t* field = a.is("--dim") ? &dim : a.is("--layers") ? &layers : a.is("--heads") ? &heads
                       : a.is("--kv-heads") ? &kv_heads : a.is("--head-dim") ? &head_dim : a.is("--ffn") ? &ffn
                       : a.is("--vocab") ? &vocab : nullptr;
        if (field) *field = a.integer(1);
        return field != nullptr;
    }
    bool any() const { return dim || layers || heads || kv_heads || head_dim || ffn || vocab; }
    // head_dim follows dim/heads unless given; without --kv-heads a model given from scratch has no GQA.
    // Gemma's scales follow the shape they came from, as the importers and transformers derive them
    // (embed_scale = sqrt(dim); query_pre_attn_scalar = head_dim, or dim / heads as Gemma-3-27B's),
    // so that an export describes the model that was trained.
    void apply(ModelConfig& c) const {
        const ModelConfig old = c;
        bool scratch = c.n_heads == 0;
        if (dim) { c.dim = dim; if (c.n_heads) c.head_dim = dim / c.n_heads; }
        if (heads) { c.n_heads = heads; c.head_dim = c.dim / heads; }
        if (layers) c.n_layers = layers;
        if (kv_heads) c.n_kv_heads = kv_heads;
        else if (scratch && heads) c.n_kv_heads = heads;
        if (head_dim) c.head_dim = head_dim;
        if (ffn) c.ffn_dim = ffn;
        if (vocab) c.vocab_size = vocab;
        if (old.embed_scale != 0.0f) c.embed_scale = (float)std::sqrt((double)c.dim);
        if (old.query_pre_attn_scalar == 0.0f) return;
        if (old.query_pre_attn_scalar == (float)old.head_dim) c.query_pre_attn_scalar = (float)c.head_dim;
        else if (old.n_heads && old.query_pre_attn_scalar == (float)(old.dim / old.n_heads))
            c.query_pre_attn_scalar = (float)(c.dim / c.n_heads);
    }
};

// Fails when what was written to `f` has not all arrived (a full disk, > /dev/full): the program
// would otherwise exit 0 with its output lost. `name` is the output in the message.
inline void check_written(FILE* f, const char* name) {
    const bool flushed = fflush(f) == 0;
    const int err = errno;
    if (!flushed || ferror(f)) fail("writing to %s failed: %s", name, flushed ? "an earlier write was lost" : strerror(err));
}

// main() of every program: runs `body`, turning an exception into "error: ..." and exit status 1;
// output to stdout that was lost is such an error.
template <class F>
int run_main(F body) {
    try {
        const int status = body();
        check_written(stdout, "standard output");
        return status;
    } catch (const std::bad_alloc&) {
        fflush(stdout);
        fprintf(stderr, "error: out of memory. %s\n", out_of_memory_advice(false));
        return 1;
    } catch (const std::exception& e) {
        fflush(stdout);
        fprintf(stderr, "error: %s\n", e.what());
        return 1;
    }
}
