// Helpers of the converter tests (test_convert.cpp, test_convert_gemma3.cpp): temporary files, patched
// fixtures, safetensors written by hand, and the checks that two imports are one model and that a
// model gives the logits transformers wrote for it.
#pragma once
#include <doctest/doctest.h>

#include <algorithm>
#include <cmath>
#include <cstdlib>
#include <functional>
#include <string>
#include <vector>
#include <unistd.h>

#include "data/json.h"
#include "model/import.h"
#include "model/model.h"
#include "model/safetensors.h"
#include "model/util.h"
#include "test_util.h"

inline const std::string kDir = "tests/fixtures/convert/";

// A fresh directory under /tmp for files a test writes.
inline std::string temp_dir() {
    char buf[] = "/tmp/test_convert_XXXXXX";
    REQUIRE(mkdtemp(buf) != nullptr);
    return buf;
}

inline void write_bytes(const std::string& path, const std::string& bytes) {
    FILE* f = fopen(path.c_str(), "wb");
    REQUIRE(f);
    fwrite(bytes.data(), 1, bytes.size(), f);
    fclose(f);
}

// Replaces the first occurrence of `from` at or after `start` (both the same length: offsets stay valid).
inline std::string patched(std::string bytes, const std::string& from, const std::string& to, size_t start = 0) {
    REQUIRE(from.size() == to.size());
    size_t at = bytes.find(from, start);
    REQUIRE(at != std::string::npos);
    bytes.replace(at, from.size(), to);
    return bytes;
}


// A safetensors file from (name, dtype, shape, raw bytes) entries, written the way the Python library does.
struct StEntry {
    std::string name, dtype;
    std::vector<int64_t> shape;
    std::string bytes;
};
inline void write_safetensors(const std::string& path, const std::vector<StEntry>& entries) {
    std::string header = "{\"__metadata__\":{\"format\":\"pt\"}", data;
    for (const StEntry& e : entries) {
        header += "," + json_quote(e.name) + ":{\"dtype\":\"" + e.dtype + "\",\"shape\":[";
        for (size_t i = 0; i < e.shape.size(); i++) header += (i ? "," : "") + std::to_string(e.shape[i]);
        header += "],\"data_offsets\":[" + std::to_string(data.size()) + "," + std::to_string(data.size() + e.bytes.size()) + "]}";
        data += e.bytes;
    }
    header += "}";
    uint64_t n = header.size();
    write_bytes(path, std::string((const char*)&n, 8) + header + data);
}

// Every tensor of an HF fixture directory as F32 entries (their order kept).
inline std::vector<StEntry> hf_tensors(const std::string& dir) {
    SafetensorsSet set = safetensors_open_dir(dir);
    std::vector<StEntry> out;
    for (const SafeTensor& t : set.tensors) {
        std::vector<float> v(t.numel);
        set.read_f32(t, v.data());
        out.push_back({t.name, "F32", t.shape, std::string((const char*)v.data(), v.size() * 4)});
    }
    return out;
}

inline std::string copy_hf_dir(const std::string& src, const std::vector<StEntry>& tensors) {
    std::string d = temp_dir();
    for (const char* f : {"config.json", "tokenizer.json", "tokenizer_config.json"}) write_bytes(d + "/" + f, read_file(src + f));
    write_safetensors(d + "/model.safetensors", tensors);
    return d;
}

// `h` gives the logits transformers wrote in `fixture` (within 1e-4), and logits far from them once
// `drop_feature` has taken an architectural feature out of the model: the fixture tests that feature.
inline void check_transformers_logits(const ImportedModel& h, const std::string& fixture, const char* what,
                               const std::function<void(Model&)>& drop_feature) {
    Model m;
    model_init(m, h.cfg, h.params);
    std::vector<int32_t> ids;
    std::vector<float> got;
    const double worst = max_logit_diff(m, fixture, ids, got);
    MESSAGE(std::string(what) << ": max |logit - transformers'| " << worst << " over " << ids.size() << " positions");
    CHECK(worst < 1e-4);
    drop_feature(m);
    std::vector<float> without(got.size());
    model_logits(m, ids.data(), (int)ids.size(), without.data());
    double shift = 0;
    for (size_t i = 0; i < got.size(); i++) shift = std::max(shift, (double)std::fabs(without[i] - got[i]));
    CHECK(shift > 100 * worst);
}

inline void check_same_model(const ImportedModel& a, const ImportedModel& b) {
    CHECK(a.cfg.hash() == b.cfg.hash());
    CHECK(a.cfg.rope_theta == b.cfg.rope_theta);
    CHECK(a.cfg.norm_eps == b.cfg.norm_eps);
    CHECK(a.cfg.max_seq_len == b.cfg.max_seq_len);
    REQUIRE(a.params.size() == b.params.size());
    size_t differ = 0;
    for (size_t i = 0; i < a.params.size(); i++) differ += a.params[i] != b.params[i];
    CHECK(differ == 0);
    CHECK(a.tok.vocab == b.tok.vocab);
    CHECK(a.tok.token_type == b.tok.token_type);
    CHECK(a.tok.merges == b.tok.merges);
    CHECK(a.tok.pre == b.tok.pre);
    CHECK(a.tok.bos_id == b.tok.bos_id);
    CHECK(a.tok.eos_id == b.tok.eos_id);
    CHECK(a.tok.pad_id == b.tok.pad_id);
    CHECK(a.tok.chat_template.kind == b.tok.chat_template.kind);
}
