// Phi-3 (Phi-3-mini, Phi-3-medium, Phi-3.5-mini, Phi-4) against transformers: tiny random models from
// tests/fixtures/phi3/gen_phi3_fixtures.py, whose fused qkv_proj and gate_up_proj import as our
// separate projections, with LongRoPE's short and long factors and its attention factor, and a
// sliding window; their logits checked against transformers' (FP32, eager attention), each part
// shown to matter by taking it out; and out again to HF and PEFT as Phi-3 has them. GGUF both ways
// against tests/fixtures/phi3/gen_phi3_gguf.py's files, converted as llama.cpp's converter does.
#include <doctest/doctest.h>

#include <cstring>

#include "model/dequant.h"
#include "model/export_gguf.h"
#include "model/export_hf.h"
#include "model/gguf.h"
#include "model/lora_peft.h"
#include "test_cli_util.h"
#include "test_convert_util.h"

namespace {
const std::string kPhi3 = "tests/fixtures/phi3/";
}  // namespace

TEST_CASE("import: a tiny Phi-3 with LongRoPE and a window: fused projections split, transformers' logits with the "
          "short factors and, past the original context, the long ones") {
    ImportedModel h = import_hf_dir(kPhi3 + "tiny_phi3_hf");
    const ModelConfig& c = h.cfg;
    CHECK(c.fused_projections == 1);
    CHECK(c.architecture("t") == "phi3");
    CHECK(c.longrope());
    CHECK(c.rope_original_max_pos == 16);
    CHECK(c.rope_short_factor[1] == 1.5f);
    CHECK(c.rope_long_factor[3] == 20.0f);
    CHECK(c.rope_short_factor[4] == 0.0f);
    CHECK(c.rope_attn_factor == (float)std::sqrt(1.0 + std::log(4.0) / std::log(16.0)));
    CHECK(c.sliding_window == 6);
    CHECK(c.head_dim == 8);
    CHECK(!c.long_rope_for(16));
    CHECK(c.long_rope_for(17));
    // q, k, v are rows 0-31, 32-47, 48-63 of qkv_proj; gate and up the halves of gate_up_proj
    SafetensorsSet st = safetensors_open_dir(kPhi3 + "tiny_phi3_hf");
    const ParamLayout L = param_layout(c);
    std::vector<float> qkv(64 * 32), gate_up(48 * 32);
    st.read_f32(*st.find("model.layers.1.self_attn.qkv_proj.weight"), qkv.data());
    st.read_f32(*st.find("model.layers.1.mlp.gate_up_proj.weight"), gate_up.data());
    CHECK(h.params[L.find("model.layers.1.self_attn.k_proj.weight")->offset + 5] == qkv[32 * 32 + 5]);
    CHECK(h.params[L.find("model.layers.1.self_attn.v_proj.weight")->offset + 33] == qkv[48 * 32 + 33]);
    CHECK(h.params[L.find("model.layers.1.mlp.up_proj.weight")->offset + 7] == gate_up[24 * 32 + 7]);

    const std::string longer = kPhi3 + "tiny_phi3_logits.json", shorter = kPhi3 + "tiny_phi3_short_logits.json";
    check_transformers_logits(h, longer, "tiny Phi-3 (24 positions: long factors)", [](Model& m) { m.cfg.sliding_window = 0; });
    check_transformers_logits(h, shorter, "tiny Phi-3 (12 positions: short factors)", [](Model& m) { m.cfg.rope_attn_factor = 1.0f; });
    check_transformers_logits(h, longer, "tiny Phi-3 (long factors)", [](Model& m) {
        std::copy_n(m.cfg.rope_short_factor, ModelConfig::kMaxRopeFactors, m.cfg.rope_long_factor);
    });
    check_transformers_logits(h, shorter, "tiny Phi-3 (short factors)", [](Model& m) {
        std::copy_n(m.cfg.rope_long_factor, ModelConfig::kMaxRopeFactors, m.cfg.rope_short_factor);
    });
}

TEST_CASE("import: Phi-3-mini-4k and Phi-4's form (no RoPE scaling, tied, older config keys): transformers' logits") {
    ImportedModel h = import_hf_dir(kPhi3 + "tiny_phi3_plain_hf");
    CHECK(h.cfg.fused_projections == 1);
    CHECK(!h.cfg.longrope());
    CHECK(h.cfg.rope_theta == 250000.0f);
    CHECK(h.cfg.tied_embeddings == 1);
    CHECK(h.cfg.sliding_window == 0);
    check_transformers_logits(h, kPhi3 + "tiny_phi3_plain_logits.json", "tiny Phi-3 (plain)",
                              [](Model& m) { m.cfg.rope_theta = 10000.0f; });
}

TEST_CASE("export: Phi-3 out to HF fuses its projections again and keeps LongRoPE and the window: it reads back as "
          "the same model") {
    for (const char* name : {"tiny_phi3_hf", "tiny_phi3_plain_hf"}) {
        CAPTURE(name);
        ImportedModel h = import_hf_dir(kPhi3 + name);
        const std::string d = temp_dir() + "/hf";
        export_hf_dir(d, h.cfg, h.params, h.tok, DType::F32);
        const std::string config = read_file(d + "/config.json");
        CHECK(contains(config, "\"model_type\": \"phi3\""));
        CHECK(contains(config, "Phi3ForCausalLM"));
        SafetensorsSet st = safetensors_open_dir(d);
        CHECK(st.find("model.layers.0.self_attn.qkv_proj.weight"));
        CHECK(st.find("model.layers.1.mlp.gate_up_proj.weight"));
        CHECK(!st.find("model.layers.0.self_attn.q_proj.weight"));
        ImportedModel b = import_hf_dir(d);
        check_same_model(h, b);
        CHECK(b.cfg.describe() == h.cfg.describe());
        CHECK(std::memcmp(&b.cfg, &h.cfg, sizeof(ModelConfig)) == 0);
    }
}

TEST_CASE("import: Phi-3 configs in the hub's keys (rope_scaling of type su or longrope, a given attention factor), "
          "and what no Phi-3 here can be, refused naming the key") {
    const std::string src = kPhi3 + "tiny_phi3_hf/";
    const std::string config = read_file(src + "config.json");
    auto replaced = [](std::string text, const std::string& from, const std::string& to) {
        const size_t at = text.find(from);
        REQUIRE(at != std::string::npos);
        return text.replace(at, from.size(), to);
    };
    auto with = [&](const std::string& from, const std::string& to) {
        const std::string d = copy_hf_dir(src, hf_tensors(src));
        write_bytes(d + "/config.json", replaced(config, from, to));
        return d;
    };
    const ModelConfig want = import_hf_dir(src).cfg;
    // Phi-3-mini-128k's config.json: rope_scaling {"type": "su", ...} (before "longrope"), rope_theta and
    // the original context beside it
    const std::string old = with("\"rope_parameters\"", "\"rope_theta\": 10000.0, \"rope_scaling\"");
    write_bytes(old + "/config.json", replaced(replaced(read_file(old + "/config.json"), "\"type\": \"longrope\"", "\"type\": \"su\""),
                                               "\"rope_type\": \"longrope\",", ""));
    CHECK(!contains(read_file(old + "/config.json"), "longrope"));
    ImportedModel o = import_hf_dir(old);
    CHECK(std::memcmp(&o.cfg, &want, sizeof(ModelConfig)) == 0);

    // A given attention factor wins over the one the contexts' ratio gives, and goes out with the model.
    ImportedModel a = import_hf_dir(with("\"long_factor\"", "\"attention_factor\": 1.5, \"long_factor\""));
    CHECK(a.cfg.rope_attn_factor == 1.5f);
    CHECK(a.cfg.attn_scale() == doctest::Approx(2.25 / std::sqrt(8.0)));
    const std::string d = temp_dir() + "/hf";
    export_hf_dir(d, a.cfg, a.params, a.tok, DType::F32);
    CHECK(contains(read_file(d + "/config.json"), "\"attention_factor\": 1.5"));
    CHECK(import_hf_dir(d).cfg.rope_attn_factor == 1.5f);

    auto error = [&](const std::string& from, const std::string& to) { return error_of([&] { import_hf_dir(with(from, to)); }); };
    CHECK(contains(error("\"partial_rotary_factor\": 1.0", "\"partial_rotary_factor\": 0.75"),
                   "partial_rotary_factor is 0.75: RoPE on part of each head (Phi-4-mini) is not supported"));
    CHECK(contains(error("\"short_factor\": [", "\"short_factor\": [2.0, "), "LongRoPE needs \"short_factor\", a list of head_dim / 2 = 4 numbers"));
    CHECK(contains(error("1.25,", "-1.0,"), "long_factor[0] must be a positive number"));
}

namespace {
// The model with the adapter: max |logit - the fixture's| on its tokens.
double logit_diff_with(const ImportedModel& base, const LoraConfig& lc, const std::vector<float>& adapters,
                       const std::string& logits_json) {
    Model m;
    model_init(m, base.cfg, base.params);
    model_set_lora(m, lc, adapters);
    std::vector<int32_t> ids;
    std::vector<float> got;
    return max_logit_diff(m, logits_json, ids, got);
}
}  // namespace

TEST_CASE("PEFT: an adapter on Phi-3's fused qkv_proj and gate_up_proj reads as one on each of their projections "
          "(PeftModel's logits), and goes out fused again at its own rank") {
    ImportedModel base = import_hf_dir(kPhi3 + "tiny_phi3_hf");
    LoraConfig lc;
    std::vector<float> adapters;
    lora_load_any(kPhi3 + "tiny_phi3_peft", base.cfg, lc, adapters);
    CHECK(lc.rank == 4);
    CHECK(lora_targets_string(lc.targets) == "q,k,v,o,gate,up,down");
    CHECK(lora_parse_targets("qkv_proj, o_proj, gate_up_proj, down_proj") == lc.targets);  // (the names Phi-3 recipes use)
    const std::string want = kPhi3 + "tiny_phi3_peft_logits.json";
    const double worst = logit_diff_with(base, lc, adapters, want);
    MESSAGE("Phi-3 PEFT adapter: max |logit - PeftModel's| " << worst);
    CHECK(worst < 1e-4);

    // Out again: q, k and v share the A they came with, so qkv_proj keeps rank 4, and the file holds
    // the same tensors as PEFT's.
    const std::string d = temp_dir() + "/peft";
    lora_export_peft(d, base.cfg, lc, adapters, PeftBase::text);
    const std::string config = read_file(d + "/adapter_config.json");
    CHECK(contains(config, "\"r\": 4,"));
    CHECK(contains(config, "[\"qkv_proj\", \"o_proj\", \"gate_up_proj\", \"down_proj\"]"));
    SafetensorsSet ours, theirs;
    safetensors_add_file(ours, d + "/adapter_model.safetensors");
    safetensors_add_file(theirs, kPhi3 + "tiny_phi3_peft/adapter_model.safetensors");
    REQUIRE(ours.tensors.size() == theirs.tensors.size());
    for (const SafeTensor& t : theirs.tensors) {
        CAPTURE(t.name);
        const SafeTensor* o = ours.find(t.name);
        REQUIRE(o);
        REQUIRE(o->shape == t.shape);
        std::vector<float> a(t.numel), b(t.numel);
        theirs.read_f32(t, a.data());
        ours.read_f32(*o, b.data());
        CHECK(a == b);
    }
}

TEST_CASE("PEFT: our Phi-3 adapters (a separate A for each projection) go out on the fused modules block-diagonal, "
          "every module at that rank, the scale kept: the same model") {
    ImportedModel base = import_hf_dir(kPhi3 + "tiny_phi3_hf");
    for (const char* targets : {"q,v,o,up,down", "q,k,v,gate,up", "k"}) {
        for (bool rslora : {false, true}) {
            CAPTURE(targets);
            CAPTURE(rslora);
            LoraConfig lc;
            lc.rank = 3;
            lc.alpha = 5.0f;
            lc.use_rslora = rslora;
            lc.targets = lora_parse_targets(targets);
            std::vector<float> adapters;
            lora_init(base.cfg, lc, adapters, 7);
            Rng rng(3);
            for (float& x : adapters) x = x == 0.0f ? 0.3f * rng.normal() : x;  // B random too
            const std::string d = temp_dir() + "/peft";
            lora_export_peft(d, base.cfg, lc, adapters, PeftBase::text);
            LoraConfig back;
            std::vector<float> read;
            lora_load_any(d, base.cfg, back, read);
            const int n = std::string(targets) == "q,k,v,gate,up" ? 3 : std::string(targets) == "k" ? 1 : 2;
            CHECK(back.rank == n * 3);
            CHECK(back.scale() == doctest::Approx(lc.scale()).epsilon(1e-6));
            // The same function: the logits with either adapter.
            Model a, b;
            model_init(a, base.cfg, base.params);
            model_init(b, base.cfg, base.params);
            model_set_lora(a, lc, adapters);
            model_set_lora(b, back, read);
            const std::vector<int32_t> ids = {5, 77, 140, 3, 299, 18, 42, 9};
            std::vector<float> la(ids.size() * 300), lb(la.size());
            model_logits(a, ids.data(), (int)ids.size(), la.data());
            model_logits(b, ids.data(), (int)ids.size(), lb.data());
            double worst = 0;
            for (size_t i = 0; i < la.size(); i++) worst = std::max(worst, (double)std::fabs(la[i] - lb[i]));
            CHECK(worst < 1e-4);
        }
    }
}

// PEFT's DoRA on qkv_proj (gate_up_proj) has one magnitude vector for the whole module: an adapter
// with DoRA on some of its projections only has no PEFT form. ./train says so when it starts, and its
// closing hint leaves --peft out; --hf still takes it merged.
TEST_CASE("PEFT: DoRA on part of Phi-3's fused modules is refused by --peft, and ./train says so before training") {
    const ModelConfig cfg = import_hf_dir(kPhi3 + "tiny_phi3_hf", false).cfg;
    LoraConfig lc;
    lc.use_dora = 1;
    for (const char* targets : {"all", "q,k,v,o", "gate,up,down", "o,down"}) {
        lc.targets = lora_parse_targets(targets);
        CHECK(peft_unexportable(cfg, lc).empty());
    }
    lc.targets = lora_parse_targets("q,v,up");
    CHECK(contains(peft_unexportable(cfg, lc), "self_attn.qkv_proj: DoRA adapts it as a whole in PEFT"));
    lc.targets = lora_parse_targets("q,k,v,gate");
    CHECK(contains(peft_unexportable(cfg, lc), "mlp.gate_up_proj: DoRA adapts it as a whole in PEFT, so its magnitudes "
                                               "need all of its projections adapted (this adapter has 1 of 2)"));
    std::vector<float> adapters;
    lora_init(cfg, lc, adapters, 7);
    const std::string d = temp_dir();
    CHECK(contains(error_of([&] { lora_export_peft(d + "/peft", cfg, lc, adapters, PeftBase::text); }), peft_unexportable(cfg, lc)));
    lc.use_dora = 0;
    CHECK(peft_unexportable(cfg, lc).empty());
    ModelConfig llama = cfg;
    llama.fused_projections = 0;
    lc.use_dora = 1;
    CHECK(peft_unexportable(llama, lc).empty());

    write_bytes(d + "/d.jsonl", "{\"prompt\": \"the cat\", \"completion\": \"sat on the mat\"}\n"
                                "{\"prompt\": \"a dog\", \"completion\": \"ran far away\"}\n");
    const std::string train = "./train --model " + kPhi3 + "tiny_phi3_hf --data " + d + "/d.jsonl --batch-size 2 "
                              "--eval-samples 0 --max-steps 1 --use-dora --out " + d + "/o";
    Run partial = run(train + " --lora-targets q,v");
    INFO(partial.out);
    REQUIRE(partial.status == 0);
    CHECK(has(partial, "warning: this adapter will not export as a PEFT adapter (./export --peft): Phi-3's self_attn.qkv_proj"));
    CHECK(has(partial, "--hf DIR (transformers)"));
    CHECK(!has(partial, "--peft DIR"));
    Run whole = run(train + " --lora-targets q,k,v --overwrite");
    INFO(whole.out);
    REQUIRE(whole.status == 0);
    CHECK(!has(whole, "will not export as a PEFT adapter"));
    CHECK(has(whole, "--peft DIR (PEFT adapter)"));
}

TEST_CASE("import: Phi-3 GGUFs as llama.cpp's converter writes them (attn_qkv, ffn_up holding gate and up, LongRoPE's "
          "factor tensors and attention factor, the window) are the HF models they came from") {
    for (const char* name : {"tiny_phi3", "tiny_phi3_plain"}) {
        CAPTURE(name);
        ImportedModel h = import_hf_dir(kPhi3 + name + "_hf"), g = import_gguf(kPhi3 + name + ".gguf");
        check_same_model(h, g);
        CHECK(std::memcmp(&g.cfg, &h.cfg, sizeof(ModelConfig)) == 0);
        Model m;
        model_init(m, g.cfg, g.params);
        std::vector<int32_t> ids;
        std::vector<float> got;
        CHECK(max_logit_diff(m, kPhi3 + name + "_logits.json", ids, got) < 1e-4);  // (transformers')
    }
    // What the factors are without both tensors: refused, naming the missing one.
    const std::string d = temp_dir() + "/m.gguf";
    write_bytes(d, patched(read_file(kPhi3 + "tiny_phi3.gguf"), "rope_factors_short.weight", "rope_factors_shorx.weight"));
    CHECK(contains(error_of([&] { import_gguf(d); }), "tensor rope_factors_short.weight is missing (LongRoPE needs both"));
}

TEST_CASE("export: Phi-3 out to GGUF is what llama.cpp's converter writes (its keys, tensor names, shapes and values) "
          "and reads back as the same model; what llama.cpp's Phi-3 cannot run is refused") {
    for (const char* name : {"tiny_phi3", "tiny_phi3_plain"}) {
        CAPTURE(name);
        ImportedModel h = import_hf_dir(kPhi3 + name + "_hf");
        const std::string path = temp_dir() + "/m.gguf";
        export_gguf(path, h.cfg, h.params, h.tok, GGML_F32);
        ImportedModel b = import_gguf(path);
        check_same_model(h, b);
        CHECK(std::memcmp(&b.cfg, &h.cfg, sizeof(ModelConfig)) == 0);

        GgufFile ours = gguf_open(path), ref = gguf_open(kPhi3 + name + ".gguf");
        CHECK(ours.get_string("general.architecture") == "phi3");
        for (const auto& [key, want] : ref.metadata) {
            if (key.compare(0, 5, "phi3.") != 0) continue;
            CAPTURE(key);
            const GgufValue* got = ours.find(key);
            REQUIRE(got);
            CHECK(got->type == want.type);
            CHECK(got->ints == want.ints);
            CHECK(got->floats == want.floats);
        }
        CHECK(ours.tensors.size() == ref.tensors.size());
        for (const GgufTensor& want : ref.tensors) {
            CAPTURE(want.name);
            const GgufTensor* got = ours.find_tensor(want.name);
            REQUIRE(got);
            CHECK(got->dims == want.dims);
            CHECK(got->type == want.type);
            std::vector<float> a(want.numel), o(want.numel);
            ref.read_f32(want, a.data());
            ours.read_f32(*got, o.data());
            CHECK(a == o);
        }
    }
    // llama.cpp's Phi-3 loads attn_output as [dim, dim] and no RoPE frequency factors but LongRoPE's.
    ModelConfig c = import_hf_dir(kPhi3 + "tiny_phi3_plain_hf").cfg;
    CHECK(gguf_unsupported(c).empty());
    c.head_dim = 16;
    const std::string path = temp_dir() + "/m.gguf";
    const std::vector<float> params(param_layout(c).total);
    CHECK(contains(error_of([&] { export_gguf(path, c, params, import_hf_dir(kPhi3 + "tiny_phi3_plain_hf").tok, GGML_F32); }),
                   "llama.cpp runs Phi-3 with heads x head_dim = dim; this model has 4 x 16 = 64 and dim 32: export --hf instead"));
    CHECK(!file_exists(path));
    c.head_dim = 8, c.rope_scale_factor = 8.0f, c.rope_low_freq_factor = 1.0f, c.rope_high_freq_factor = 4.0f;
    CHECK(contains(gguf_unsupported(c), "llama.cpp runs Phi-3 without RoPE frequency factors other than LongRoPE's"));
}

TEST_CASE("cli: ./convert's usage names Phi-3 among the architectures it reads") {
    Run usage = run("./convert --help");
    CHECK(usage.status == 0);
    CHECK(has(usage, "Phi-3 (phi3: Phi-3, Phi-3.5, Phi-4)"));
}

// PEFT adapters whose tensors this loader does not take are refused naming why: one for separate
// q/k/v or gate/up projections (as trained on unsloth's Llama-form Phi-3) on Phi-3's fused model; LoRA
// on a module that is no decoder projection; and only names with PEFT's in-memory adapter name
// (lora_A.default.weight) get the save_pretrained hint, which all three got.
TEST_CASE("PEFT: an adapter for Phi-3's projections apart, or on other modules, is refused naming what it adapts") {
    const ImportedModel base = import_hf_dir(kPhi3 + "tiny_phi3_hf", false);
    std::vector<StEntry> st;  // the fixture adapter's tensors, as F32
    SafetensorsSet set;
    safetensors_add_file(set, kPhi3 + "tiny_phi3_peft/adapter_model.safetensors");
    for (const SafeTensor& t : set.tensors) {
        std::vector<float> v(t.numel);
        set.read_f32(t, v.data());
        st.push_back({t.name, "F32", t.shape, std::string((const char*)v.data(), v.size() * 4)});
    }
    auto error_with = [&](const std::string& from, const std::string& to) {
        std::vector<StEntry> renamed = st;
        for (StEntry& e : renamed)
            if (size_t at = e.name.find(from); at != std::string::npos) e.name.replace(at, from.size(), to);
        const std::string d = temp_dir();
        write_bytes(d + "/adapter_config.json", read_file(kPhi3 + "tiny_phi3_peft/adapter_config.json"));
        write_safetensors(d + "/adapter_model.safetensors", renamed);
        LoraConfig lc;
        std::vector<float> adapters;
        return error_of([&] { lora_load_any(d, base.cfg, lc, adapters); });
    };
    const std::string apart = error_with("qkv_proj", "q_proj");
    CHECK(contains(apart, "self_attn.q_proj.lora_A.weight adapts self_attn.q_proj, which Phi-3 holds fused in "
                          "self_attn.qkv_proj"));
    CHECK(!contains(apart, "save_pretrained"));
    CHECK(contains(error_with("gate_up_proj", "up_proj"), "which Phi-3 holds fused in mlp.gate_up_proj"));
    const std::string other = error_with("mlp.down_proj", "mlp.fc1");
    CHECK(contains(other, "mlp.fc1.lora_A.weight is not a LoRA A or B of a decoder projection"));
    CHECK(!contains(other, "save_pretrained"));
    CHECK(contains(error_with("o_proj.lora_A.weight", "o_proj.lora_A.default.weight"),
                   "carries an adapter name, as PEFT names tensors in memory"));
}

// llama.cpp strips the white space after the special tokens of any model whose name says Phi-3, and
// GGUF names the model after the file: a tokenizer that strips nothing exported as phi3-....gguf would
// be tokenized otherwise there than it was trained. The export says so.
TEST_CASE("export: a GGUF whose name makes llama.cpp strip beside special tokens that this tokenizer keeps warns") {
    const std::string d = temp_dir(), model = kPhi3 + "tiny_phi3_hf";  // (its tokenizer strips nothing)
    const Run named = run("./export --model " + model + " --gguf " + d + "/phi3-tune.gguf");
    INFO(named.out);
    CHECK(named.status == 0);
    CHECK(has(named, "phi3-tune.gguf: llama.cpp strips the white space after the special tokens of a model whose name "
                     "says Phi-3, as this file's does ('phi3-tune'), but this tokenizer keeps it"));
    CHECK(gguf_open(d + "/phi3-tune.gguf").get_string("general.name") == "phi3-tune");
    const Run plain = run("./export --model " + model + " --gguf " + d + "/tune.gguf");
    CHECK(plain.status == 0);
    CHECK(!has(plain, "llama.cpp strips"));
}
