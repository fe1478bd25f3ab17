// Helpers shared by the tests: random tensors and a finite-difference gradient checker.
#pragma once
#include <doctest/doctest.h>

#include <cmath>
#include <cstdio>
#include <filesystem>
#include <functional>
#include <stdexcept>
#include <string>
#include <vector>

#include "data/json.h"
#include "model/model.h"
#include "model/util.h"

// The error message of f(), or "" when it does not throw.
template <class F> std::string error_of(F f) {
    try {
        f();
    } catch (const std::runtime_error& e) {
        return e.what();
    }
    return "";
}

// A fresh, empty directory /tmp/llmtrain-test-NAME for the files a test writes.
inline std::string temp_dir(const std::string& name) {
    const std::filesystem::path p = std::filesystem::temp_directory_path() / ("llmtrain-test-" + name);
    std::filesystem::remove_all(p);
    std::filesystem::create_directories(p);
    return p.string();
}

inline bool contains(const std::string& s, const std::string& part) { return s.find(part) != std::string::npos; }

inline std::vector<float> random_vec(size_t n, uint64_t seed, float scale = 1.0f) {
    Rng r(seed);
    std::vector<float> v(n);
    for (float& x : v) x = scale * r.normal();
    return v;
}

// Σ out·R in double: a scalar "loss" whose gradient w.r.t. out is R, so an op's backward called with
// dout = R must give d(loss)/d(input).
inline double dot_loss(const std::vector<float>& out, const std::vector<float>& R) {
    double s = 0;
    for (size_t i = 0; i < out.size(); i++) s += (double)out[i] * R[i];
    return s;
}

// Compares analytic[i] with the central difference (loss(x+h) − loss(x−h)) / 2h on up to `samples`
// indices spread over x. Passes when |num − ana| <= tol · max(1, |num|); returns the worst ratio
// |num − ana| / max(1, |num|) so tests can report the tolerance achieved.
inline double grad_check(const char* what, std::vector<float>& x, const std::vector<float>& analytic,
                         const std::function<double()>& loss, double tol, int samples = 40, float h = 1e-3f) {
    REQUIRE(x.size() == analytic.size());
    double worst = 0;
    size_t stride = x.size() > (size_t)samples ? x.size() / samples : 1;
    for (size_t i = (stride > 1 ? stride / 2 : 0); i < x.size(); i += stride) {
        float saved = x[i];
        x[i] = saved + h;
        double lp = loss();
        x[i] = saved - h;
        double lm = loss();
        x[i] = saved;
        double num = (lp - lm) / (2.0 * h);
        double err = std::fabs(num - analytic[i]) / std::max(1.0, std::fabs(num));
        worst = std::max(worst, err);
        if (err > tol) {
            INFO(std::string(what) << "[" << i << "]: numeric " << num << " vs analytic " << analytic[i]);
            CHECK(err <= tol);
        }
    }
    MESSAGE(std::string(what) << ": worst gradient error " << worst << " (tolerance " << tol << ")");
    return worst;
}

// The largest |logit| difference between `m` on a fixture's token ids and the fixture's logits
// ({"ids": [...], "logits": [[...], ...]}, written by a Python reference such as transformers);
// `got` receives ours.
inline double max_logit_diff(const Model& m, const std::string& fixture_json, std::vector<int32_t>& ids,
                             std::vector<float>& got) {
    JsonValue want = json_parse(read_file(fixture_json));
    ids.clear();
    for (const JsonValue& v : want.get("ids")->array) ids.push_back((int32_t)v.number);
    const int V = m.cfg.vocab_size;
    got.assign(ids.size() * V, 0.0f);
    model_logits(m, ids.data(), (int)ids.size(), got.data());
    double worst = 0;
    for (size_t t = 0; t < ids.size(); t++)
        for (int v = 0; v < V; v++) worst = std::max(worst, std::fabs(got[t * V + v] - want.get("logits")->array[t].array[v].number));
    return worst;
}
