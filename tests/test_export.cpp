// Adapters out and in: the PEFT safetensors file reads back (with our own reader) with PEFT's names,
// for a text model or Gemma 3's image-text one, shapes and exactly our values; adapters PEFT wrote
// (on a text model, and on Gemma 3's image-text model) give PeftModel's logits here; what our PEFT
// reader refuses.
#include <algorithm>
#include <cmath>
#include <filesystem>

#include "data/json.h"
#include "model/import.h"
#include "model/lora_peft.h"
#include "model/model.h"
#include "model/safetensors.h"
#include "tests/test_util.h"

TEST_CASE("export: PEFT adapter_model.safetensors holds every A and B under PEFT's names, text or image-text") {
    ModelConfig c = config_preset("tiny");
    LoraConfig lc;
    lc.rank = 4;
    lc.alpha = 8;
    lc.targets = lora_parse_targets("q,v,down");
    // PEFT's and axolotl's names for the same: module names, spaced as a copied list, all-linear
    CHECK(lora_parse_targets("q_proj, v_proj, down_proj") == lc.targets);
    CHECK(lora_parse_targets("all-linear") == lora_parse_targets("all"));
    std::vector<float> a;
    lora_init(c, lc, a, 1);
    for (size_t i = 0; i < a.size(); i++) a[i] += 0.01f * (float)(i % 7);  // B ≠ 0 too
    for (PeftBase base : {PeftBase::text, PeftBase::image_text}) {
        const bool text = base == PeftBase::text;
        CAPTURE(text);
        std::string dir = (std::filesystem::temp_directory_path() / "llmtrain-test-peft").string();
        std::filesystem::remove_all(dir);
        lora_export_peft(dir, c, lc, a, base);

        SafetensorsSet st;
        safetensors_add_file(st, dir + "/adapter_model.safetensors");
        CHECK(st.tensors.size() == (size_t)c.n_layers * 3 * 2);
        LoraLayout L = lora_layout(c, lc);
        const char* names[] = {"self_attn.q_proj", "self_attn.v_proj", "mlp.down_proj"};
        LoraTarget targets[] = {LORA_Q, LORA_V, LORA_DOWN};
        for (int l = 0; l < c.n_layers; l++)
            for (int k = 0; k < 3; k++) {
                std::string name = std::string(text ? "base_model.model.model.layers." : "base_model.model.model.language_model.layers.") +
                                   std::to_string(l) + "." + names[k];
                int in, out;
                lora_target_shape(c, targets[k], in, out);
                const SafeTensor* A = st.find(name + ".lora_A.weight");
                const SafeTensor* B = st.find(name + ".lora_B.weight");
                REQUIRE(A);
                REQUIRE(B);
                CHECK(A->shape == std::vector<int64_t>{lc.rank, in});
                CHECK(B->shape == std::vector<int64_t>{out, lc.rank});
                std::vector<float> va(A->numel), vb(B->numel);
                st.read_f32(*A, va.data());
                st.read_f32(*B, vb.data());
                CHECK(std::equal(va.begin(), va.end(), a.begin() + L.A(l, targets[k])));
                CHECK(std::equal(vb.begin(), vb.end(), a.begin() + L.B(l, targets[k])));
            }
        // A list of names for a text model; for the image-text one a pattern that PEFT matches against
        // whole module paths, so that the vision tower's q/k/v_proj get no adapter.
        const JsonValue cfg = json_parse(read_file(dir + "/adapter_config.json"));
        const JsonValue* tm = cfg.get("target_modules");
        REQUIRE(tm);
        if (text) {
            REQUIRE(tm->type == JsonValue::Array);
            REQUIRE(tm->array.size() == 3);
            CHECK(tm->array[0].string == "q_proj");
            CHECK(tm->array[1].string == "v_proj");
            CHECK(tm->array[2].string == "down_proj");
        } else {
            REQUIRE(tm->type == JsonValue::String);
            CHECK(tm->string == ".*\\.language_model\\.layers\\.\\d+\\..*\\.(q_proj|v_proj|down_proj)");
        }
        CHECK(cfg.get("r")->number == 4);
        CHECK(cfg.get("lora_alpha")->number == 8);

        // and back in: the same configuration and values
        LoraConfig back;
        std::vector<float> b;
        lora_load_any(dir, c, back, b);
        CHECK(back.rank == 4);
        CHECK(back.alpha == 8.0f);
        CHECK(back.targets == lc.targets);
        CHECK(b == a);
    }
    // Which model an adapter is for, by default: Gemma 3 4B and up exist only as image-text models.
    CHECK(peft_base_default(config_preset("gemma3-4b")) == PeftBase::image_text);
    CHECK(peft_base_default(config_preset("gemma3-27b")) == PeftBase::image_text);
    CHECK(peft_base_default(config_preset("gemma3-1b")) == PeftBase::text);
    CHECK(peft_base_default(config_preset("llama-3.1-8b")) == PeftBase::text);
}

namespace {
const std::string kConvert = "tests/fixtures/convert/";

// A copy of the PEFT fixture whose adapter_config.json has `key` set to `value` (raw JSON).
std::string peft_with(const std::string& key, const std::string& value) {
    const std::filesystem::path d = std::filesystem::temp_directory_path() / "llmtrain-test-peft-bad";
    std::filesystem::remove_all(d);
    std::filesystem::create_directories(d);
    std::filesystem::copy(kConvert + "tiny_qwen3_peft/adapter_model.safetensors", d / "adapter_model.safetensors");
    std::string cfg = read_file(kConvert + "tiny_qwen3_peft/adapter_config.json");
    const std::string k = "\"" + key + "\": ";
    size_t at = cfg.find(k);
    REQUIRE(at != std::string::npos);
    size_t end = cfg.find_first_of(",\n", at + k.size());
    cfg = cfg.substr(0, at + k.size()) + value + cfg.substr(end);
    write_file_atomic((d / "adapter_config.json").string(), cfg);
    return d.string();
}

// The model with (lora) or without the adapter: max |logit - PeftModel's| on the fixture's tokens.
double peft_logit_diff(const ImportedModel& base, const LoraConfig* lc, const std::vector<float>& adapters,
                       const std::string& logits_json) {
    Model m;
    model_init(m, base.cfg, base.params);
    if (lc) model_set_lora(m, *lc, adapters);
    std::vector<int32_t> ids;
    std::vector<float> got;
    return max_logit_diff(m, logits_json, ids, got);
}
}  // namespace

// PEFT's own DoRA adapter (tests/fixtures/train/tiny_llama_dora/final, saved by save_pretrained):
// read, written again in PEFT's layout, read back to the same values; its magnitudes are its
// lora_magnitude_vector tensors, one per output row.
TEST_CASE("import/export: a DoRA adapter's magnitudes (use_dora, lora_magnitude_vector) round-trip through PEFT's layout") {
    const std::string src = "tests/fixtures/train/tiny_llama_dora/final";
    ImportedModel base = import_hf_dir(kConvert + "tiny_llama_hf");
    LoraConfig lc;
    std::vector<float> a;
    lora_load_any(src, base.cfg, lc, a);
    CHECK(lc.use_dora == 1);
    CHECK(lora_targets_string(lc.targets) == "q,k,v,o,gate,up,down");
    SafetensorsSet peft;
    safetensors_add_file(peft, src + "/adapter_model.safetensors");
    const SafeTensor* m = peft.find("base_model.model.model.layers.1.mlp.gate_proj.lora_magnitude_vector");
    REQUIRE(m);
    std::vector<float> want(m->numel);
    peft.read_f32(*m, want.data());
    const LoraLayout L = lora_layout(base.cfg, lc);
    CHECK(std::equal(want.begin(), want.end(), a.begin() + L.M(1, LORA_GATE)));
    CHECK((int64_t)want.size() == base.cfg.ffn_dim);

    const std::string dir = (std::filesystem::temp_directory_path() / "llmtrain-test-peft-dora").string();
    std::filesystem::remove_all(dir);
    lora_export_peft(dir, base.cfg, lc, a, PeftBase::text);
    CHECK(json_parse(read_file(dir + "/adapter_config.json")).get("use_dora")->boolean);
    SafetensorsSet ours;
    safetensors_add_file(ours, dir + "/adapter_model.safetensors");
    CHECK(ours.tensors.size() == peft.tensors.size());
    LoraConfig back;
    std::vector<float> b;
    lora_load_any(dir, base.cfg, back, b);
    CHECK(back.use_dora == 1);
    CHECK(b == a);

    // use_dora: false beside magnitudes in the file is refused, naming the tensor
    std::filesystem::copy(src + "/adapter_model.safetensors", dir + "/adapter_model.safetensors",
                          std::filesystem::copy_options::overwrite_existing);
    std::string cfg = read_file(dir + "/adapter_config.json");
    cfg.replace(cfg.find("\"use_dora\": true"), 16, "\"use_dora\": false");
    write_file_atomic(dir + "/adapter_config.json", cfg);
    CHECK(contains(error_of([&] { lora_load_any(dir, base.cfg, back, b); }),
                   "lora_magnitude_vector is a DoRA magnitude, but " + dir + "/adapter_config.json does not set \"use_dora\": true"));
}

// The names of a safetensors file's tensors, sorted.
static std::vector<std::string> tensor_names(const SafetensorsSet& st) {
    std::vector<std::string> names;
    for (const SafeTensor& t : st.tensors) names.push_back(t.name);
    std::sort(names.begin(), names.end());
    return names;
}

// PEFT's own adapters with modules_to_save (tests/fixtures/train/*_save/final, saved by save_pretrained):
// the untied Llama's embedding and LM head, the tied Gemma 3's one tensor (ensure_weight_tying, saved
// under both names). Read, written again, read back to the same values under PEFT's names; a tied
// model's tensors trained apart are refused.
TEST_CASE("import/export: saved modules (modules_to_save: embed_tokens, lm_head) round-trip through PEFT's layout") {
    for (const std::string model : {"tiny_llama", "tiny_gemma3"}) {
        CAPTURE(model);
        const std::string src = "tests/fixtures/train/" + model + "_save/final";
        const ImportedModel base = import_hf_dir(kConvert + model + "_hf");
        const bool tied = base.cfg.tied_embeddings;
        LoraConfig lc;
        std::vector<float> a;
        lora_load_any(src, base.cfg, lc, a);
        CHECK(lc.save_modules == (LORA_SAVE_EMBED | LORA_SAVE_LM_HEAD));
        const LoraLayout L = lora_layout(base.cfg, lc);
        CHECK((L.embed == L.lm_head) == tied);
        SafetensorsSet peft;
        safetensors_add_file(peft, src + "/adapter_model.safetensors");
        const size_t n = (size_t)base.cfg.vocab_size * base.cfg.dim;
        for (const char* name : {"base_model.model.model.embed_tokens.weight", "base_model.model.lm_head.weight"}) {
            const SafeTensor* t = peft.find(name);
            REQUIRE(t);
            std::vector<float> want(n);
            peft.read_f32(*t, want.data());
            const size_t at = std::string(name).find("lm_head") != std::string::npos ? L.lm_head : L.embed;
            CHECK(std::equal(want.begin(), want.end(), a.begin() + at));
        }
        const std::string dir = (std::filesystem::temp_directory_path() / "llmtrain-test-peft-save").string();
        std::filesystem::remove_all(dir);
        lora_export_peft(dir, base.cfg, lc, a, PeftBase::text);
        const JsonValue cfg = json_parse(read_file(dir + "/adapter_config.json"));
        std::vector<std::string> listed;
        for (const JsonValue& v : cfg.get("modules_to_save")->array) listed.push_back(v.string);
        CHECK(listed == (tied ? std::vector<std::string>{"embed_tokens"} : std::vector<std::string>{"embed_tokens", "lm_head"}));
        CHECK(cfg.get("ensure_weight_tying")->boolean == tied);
        SafetensorsSet ours;
        safetensors_add_file(ours, dir + "/adapter_model.safetensors");
        CHECK(tensor_names(ours) == tensor_names(peft));
        LoraConfig back;
        std::vector<float> b;
        lora_load_any(dir, base.cfg, back, b);
        CHECK(back.save_modules == lc.save_modules);
        CHECK(b == a);
        // modules_to_save null beside the saved tensors: PEFT's save_embedding_layers (after a vocabulary
        // resize), whose tensors PEFT loads into the model; read here as saved modules too
        const std::string listed_json = tied ? "[\"embed_tokens\"]" : "[\"embed_tokens\", \"lm_head\"]";
        std::string text = read_file(dir + "/adapter_config.json");
        auto set_config = [&](const std::string& from, const std::string& to) {
            REQUIRE(text.find(from) != std::string::npos);
            text.replace(text.find(from), from.size(), to);
            write_file_atomic(dir + "/adapter_config.json", text);
        };
        set_config("\"modules_to_save\": " + listed_json, "\"modules_to_save\": null");
        CHECK(error_of([&] { lora_load_any(dir, base.cfg, back, b); }).empty());
        CHECK(back.save_modules == lc.save_modules);
        CHECK(b == a);
        set_config("\"modules_to_save\": null", "\"modules_to_save\": " + listed_json);
        if (!tied) continue;
        // A tied model's tensors trained apart: PEFT without ensure_weight_tying (the LM head stays the
        // base's), or two saved tensors that differ.
        set_config("\"ensure_weight_tying\": true", "\"ensure_weight_tying\": false");
        CHECK(contains(error_of([&] { lora_load_any(dir, base.cfg, back, b); }),
                       "but PEFT trained the embedding apart from the other (\"ensure_weight_tying\" is not set)"));
        // both named without the tying: both copies (equal) must be there
        set_config("[\"embed_tokens\"]", "[\"embed_tokens\", \"lm_head\"]");
        CHECK(error_of([&] { lora_load_any(dir, base.cfg, back, b); }).empty());

        lora_export_peft(dir, base.cfg, lc, a, PeftBase::text);
        std::vector<std::vector<float>> values(ours.tensors.size());
        std::vector<SafeTensorOut> tensors;
        for (size_t i = 0; i < ours.tensors.size(); i++) {
            const SafeTensor& t = ours.tensors[i];
            values[i].resize(t.numel);
            ours.read_f32(t, values[i].data());
            if (t.name == "base_model.model.lm_head.weight") values[i][0] += 1.0f;
            tensors.push_back({t.name, t.shape, values[i].data()});
        }
        safetensors_write(dir + "/adapter_model.safetensors", tensors, DType::F32);
        CHECK(contains(error_of([&] { lora_load_any(dir, base.cfg, back, b); }),
                       "the base model ties its LM head to its embedding, but the adapter's trained embedding and LM head differ"));
    }
}

// PEFT's own adapters with trainable_token_indices (tests/fixtures/train/*_tokens/final): the untied
// Llama's rows of the embedding and of the LM head (by module name), the tied Gemma 3's one list.
// Read, written again under PEFT's names and form, read back to the same values; what a model here
// cannot hold is refused, naming the key or tensor.
TEST_CASE("import/export: trainable token rows (trainable_token_indices) round-trip through PEFT's layout") {
    for (const std::string model : {"tiny_llama", "tiny_gemma3"}) {
        CAPTURE(model);
        const std::string src = "tests/fixtures/train/" + model + "_tokens/final";
        const ImportedModel base = import_hf_dir(kConvert + model + "_hf");
        const bool tied = base.cfg.tied_embeddings;
        LoraConfig lc;
        std::vector<float> a;
        lora_load_any(src, base.cfg, lc, a);
        const std::vector<int32_t> ids = {129, 299, 154, 5, 140};  // (gen_train_steps.py's TOKENS)
        CHECK(lc.tokens[LORA_TABLE_EMBED] == ids);
        CHECK(lc.tokens[LORA_TABLE_LM_HEAD] == (tied ? std::vector<int32_t>{} : ids));
        const LoraLayout L = lora_layout(base.cfg, lc);
        SafetensorsSet peft;
        safetensors_add_file(peft, src + "/adapter_model.safetensors");
        for (int t = 0; t < (tied ? 1 : 2); t++) {
            const SafeTensor* rows = peft.find(t == 0 ? "base_model.model.model.embed_tokens.token_adapter.trainable_tokens_delta"
                                                      : "base_model.model.lm_head.token_adapter.trainable_tokens_delta");
            REQUIRE(rows);
            std::vector<float> want(rows->numel);
            peft.read_f32(*rows, want.data());
            CHECK(std::equal(want.begin(), want.end(), a.begin() + L.tokens[t]));
        }
        const std::string dir = (std::filesystem::temp_directory_path() / "llmtrain-test-peft-tokens").string();
        std::filesystem::remove_all(dir);
        lora_export_peft(dir, base.cfg, lc, a, PeftBase::text);
        const JsonValue cfg = json_parse(read_file(dir + "/adapter_config.json"));
        const JsonValue* listed = cfg.get("trainable_token_indices");
        REQUIRE(listed);
        CHECK(listed->type == (tied ? JsonValue::Array : JsonValue::Object));
        SafetensorsSet ours;
        safetensors_add_file(ours, dir + "/adapter_model.safetensors");
        CHECK(tensor_names(ours) == tensor_names(peft));
        LoraConfig back;
        std::vector<float> b;
        lora_load_any(dir, base.cfg, back, b);
        CHECK(back.tokens[0] == lc.tokens[0]);
        CHECK(back.tokens[1] == lc.tokens[1]);
        CHECK(b == a);

        std::string text = read_file(dir + "/adapter_config.json");
        const std::string good = text;
        auto err_with = [&](const std::string& from, const std::string& to) {
            text = good;
            REQUIRE(text.find(from) != std::string::npos);
            text.replace(text.find(from), from.size(), to);
            write_file_atomic(dir + "/adapter_config.json", text);
            return error_of([&] { lora_load_any(dir, base.cfg, back, b); });
        };
        const std::string list = "[129, 299, 154, 5, 140]";
        CHECK(contains(err_with(list, "[129, 300, 154, 5, 140]"),
                       "\"trainable_token_indices\"" + std::string(tied ? "" : "[\"embed_tokens\"]") +
                           " holds 300, not a token id of the base model's vocabulary (0..299)"));
        CHECK(contains(err_with(list, "[129, 129, 154, 5, 140]"), "trainable token 129 is listed twice for embed_tokens"));
        CHECK(contains(err_with(list, "[129, 299, 154, 5]"), "has shape [5, 16], but the model's config needs [4, 16]"));
        if (tied) {
            // the LM head's rows alone (PEFT leaves the tied embedding as it was), or other ids than the embedding's
            CHECK(contains(err_with("\"trainable_token_indices\": " + list, "\"trainable_token_indices\": {\"lm_head\": " + list + "}"),
                           "but trainable tokens are listed for the LM head alone, whose rows would then differ"));
            CHECK(contains(err_with("\"trainable_token_indices\": " + list,
                                    "\"trainable_token_indices\": {\"embed_tokens\": " + list + ", \"model.lm_head\": [5]}"),
                           "the trainable tokens of the two differ (the LM head's: 1, the embedding's: 5)"));
            // both listed alike: the one table
            CHECK(err_with("\"trainable_token_indices\": " + list,
                           "\"trainable_token_indices\": {\"embed_tokens\": " + list + ", \"lm_head\": " + list + "}").empty());
        } else {
            CHECK(contains(err_with("\"lm_head\"", "\"model.norm\""),
                           "\"trainable_token_indices\" names 'model.norm': only embed_tokens and lm_head"));
            // rows in the file for a table the config does not list
            CHECK(contains(err_with(", \"lm_head\": " + list, ""),
                           "holds trained token rows, but \"trainable_token_indices\" in " + dir +
                               "/adapter_config.json lists no tokens for lm_head"));
        }
        // listed rows the file lacks
        text = good;
        write_file_atomic(dir + "/adapter_config.json", text);
        std::vector<std::vector<float>> values;
        std::vector<SafeTensorOut> kept;
        for (const SafeTensor& t : ours.tensors) {
            if (t.name.find("token_adapter") != std::string::npos) continue;
            values.emplace_back(t.numel);
            ours.read_f32(t, values.back().data());
        }
        size_t i = 0;
        for (const SafeTensor& t : ours.tensors)
            if (t.name.find("token_adapter") == std::string::npos) kept.push_back({t.name, t.shape, values[i++].data()});
        safetensors_write(dir + "/adapter_model.safetensors", kept, DType::F32);
        CHECK(contains(error_of([&] { lora_load_any(dir, base.cfg, back, b); }),
                       "embed_tokens.token_adapter.trainable_tokens_delta is missing (\"trainable_token_indices\" in"));
    }
}

// PEFT's own adapter on some layers (tests/fixtures/train/tiny_llama_layers/final: layers_to_transform
// [1] of 2): read, written back with the same names and list, and for the image-text model with the
// layers in the regular expression; tensors of a layer the list leaves out are refused, and tensors
// covering some layers without a list are read as those layers.
TEST_CASE("import/export: adapters on some layers (layers_to_transform) round-trip through PEFT's layout") {
    const std::string src = "tests/fixtures/train/tiny_llama_layers/final";
    const ImportedModel base = import_hf_dir(kConvert + "tiny_llama_hf");
    LoraConfig lc;
    std::vector<float> a;
    lora_load_any(src, base.cfg, lc, a);
    CHECK(lc.layers == std::vector<int32_t>{1});
    LoraConfig every = lc;
    every.layers.clear();
    CHECK(a.size() * 2 == lora_layout(base.cfg, every).total);
    const std::string dir = (std::filesystem::temp_directory_path() / "llmtrain-test-peft-layers").string();
    std::filesystem::remove_all(dir);
    lora_export_peft(dir, base.cfg, lc, a, PeftBase::text);
    const JsonValue cfg = json_parse(read_file(dir + "/adapter_config.json"));
    REQUIRE(cfg.get("layers_to_transform")->type == JsonValue::Array);
    CHECK(cfg.get("layers_to_transform")->array.size() == 1);
    SafetensorsSet ours, peft;
    safetensors_add_file(ours, dir + "/adapter_model.safetensors");
    safetensors_add_file(peft, src + "/adapter_model.safetensors");
    CHECK(tensor_names(ours) == tensor_names(peft));
    LoraConfig back;
    std::vector<float> b;
    lora_load_any(dir, base.cfg, back, b);
    CHECK(back.layers == lc.layers);
    CHECK(b == a);
    // the image-text form: the layers go into the regular expression (PEFT ignores the list beside one)
    const std::string mm = dir + "-mm";
    std::filesystem::remove_all(mm);
    lora_export_peft(mm, base.cfg, lc, a, PeftBase::image_text);
    const JsonValue mcfg = json_parse(read_file(mm + "/adapter_config.json"));
    CHECK(mcfg.get("layers_to_transform")->is_null());
    CHECK(contains(mcfg.get("target_modules")->string, ".*\\.language_model\\.layers\\.(?:1)\\..*\\.("));
    lora_load_any(mm, base.cfg, back, b);
    CHECK(back.layers == lc.layers);
    CHECK(b == a);
    // a list that leaves out the layer the tensors are for; no list: the tensors' layers
    std::string text = read_file(dir + "/adapter_config.json");
    const std::string from = text.substr(text.find("\"layers_to_transform\""), text.find('\n', text.find("\"layers_to_transform\"")) -
                                                                               text.find("\"layers_to_transform\""));
    auto with = [&](const std::string& to) {
        std::string t = text;
        t.replace(t.find(from), from.size(), to);
        write_file_atomic(dir + "/adapter_config.json", t);
        return error_of([&] { lora_load_any(dir, base.cfg, back, b); });
    };
    CHECK(contains(with("\"layers_to_transform\": [0],"), "holds adapters of layer 1, which \"layers_to_transform\" in"));
    CHECK(contains(with("\"layers_to_transform\": 2,"), "\"layers_to_transform\" holds 2, not a layer of the base model (0..1)"));
    CHECK(with("\"layers_to_transform\": 1,").empty());
    CHECK(back.layers == lc.layers);
    CHECK(with("\"layers_to_transform\": null,").empty());
    CHECK(back.layers == lc.layers);
    CHECK(contains(with("\"layers_to_transform\": [0, 1],"), "tensor base_model.model.model.layers.0.self_attn.q_proj.lora_A.weight is missing"));
}

TEST_CASE("import: a PEFT adapter (BF16, rsLoRA, q/v/gate/down) gives PeftModel's logits; what is refused") {
    ImportedModel base = import_hf_dir(kConvert + "tiny_qwen3_hf");
    LoraConfig lc;
    std::vector<float> adapters;
    lora_load_any(kConvert + "tiny_qwen3_peft", base.cfg, lc, adapters);
    CHECK(lc.rank == 4);
    CHECK(lc.use_rslora == 1);
    CHECK(lc.scale() == 4.0f);  // 8 / sqrt(4)
    CHECK(lora_targets_string(lc.targets) == "q,v,gate,down");
    const double worst = peft_logit_diff(base, &lc, adapters, kConvert + "tiny_qwen3_peft_logits.json");
    MESSAGE("PEFT adapter: max |logit - PeftModel's| " << worst);
    CHECK(worst < 1e-4);

    auto err = [&](const std::string& dir) {
        return error_of([&] { lora_load_any(dir, base.cfg, lc, adapters); });
    };
    // use_dora with no magnitudes in the file
    CHECK(contains(err(peft_with("use_dora", "true")),
                   "lora_magnitude_vector is missing (every adapted layer needs the same adapted projections, and with use_dora each its magnitude)"));
    // modules_to_save: a tensor it names that the file lacks; on this tied model, the LM head alone
    // without ensure_weight_tying (PEFT would keep the embedding the base's)
    CHECK(contains(err(peft_with("modules_to_save", "[\"embed_tokens\", \"lm_head\"]")),
                   "tensor base_model.model.model.embed_tokens.weight is missing (\"modules_to_save\" in"));
    CHECK(contains(err(peft_with("modules_to_save", "[\"lm_head\"]")), "but PEFT trained the LM head apart from the other"));
    CHECK(contains(err(peft_with("modules_to_save", "[\"model.norm\"]")),
                   "\"modules_to_save\" names 'model.norm': only embed_tokens and lm_head can be trained"));
    // PiSSA and its kind rewrite the base when PEFT loads them: refused rather than added to the plain base
    CHECK(contains(err(peft_with("init_lora_weights", "\"pissa_niter_4\"")),
                   "\"init_lora_weights\" is 'pissa_niter_4': PEFT changes the base weights"));
    CHECK(contains(err(peft_with("init_lora_weights", "\"OLoRA\"")), "\"init_lora_weights\" is 'OLoRA': PEFT changes"));
    CHECK(err(peft_with("init_lora_weights", "\"mica\"")).empty());  // A·B as plain LoRA, base untouched
    CHECK(contains(err(peft_with("kasa_config", "{\"x\": 1}")), "\"kasa_config\" is set"));
    CHECK(contains(err(peft_with("bias", "\"all\"")), "\"bias\" is 'all'"));
    CHECK(contains(err(peft_with("peft_type", "\"IA3\"")), "peft_type is 'IA3': only LoRA adapters can be read"));
    CHECK(contains(err(peft_with("r", "8")), "has shape [4, 16], but the model's config needs [8, 16]"));
    // another base model: the shapes do not fit
    ImportedModel llama = import_hf_dir(kConvert + "tiny_llama_hf");
    CHECK(contains(error_of([&] { lora_load_any(kConvert + "tiny_qwen3_peft", llama.cfg, lc, adapters); }),
                   "but the model's config needs"));
    CHECK(contains(err(kConvert + "tiny_qwen3_hf"), "holds neither a PEFT adapter (adapter_config.json) nor an adapter.lora"));
}

// Gemma 3 4B and up are image-text models (Gemma3ForConditionalGeneration): PEFT names their decoder
// layers model.language_model.layers.N, and a list of target modules adapts the vision tower too.
TEST_CASE("import: a PEFT adapter of Gemma 3's image-text model gives PeftModel's logits on text") {
    ImportedModel base = import_hf_dir(kConvert + "tiny_gemma3_hf");
    LoraConfig lc;
    std::vector<float> adapters;
    lora_load_any(kConvert + "tiny_gemma3_mm_peft", base.cfg, lc, adapters);  // 6 vision tensors left out, with a note
    CHECK(lc.rank == 4);
    CHECK(lc.scale() == 4.0f);  // 16 / 4
    CHECK(lora_targets_string(lc.targets) == "q,k,v,o,up");
    const std::string logits = kConvert + "tiny_gemma3_mm_peft_logits.json";
    const double worst = peft_logit_diff(base, &lc, adapters, logits);
    MESSAGE("Gemma 3 image-text PEFT adapter: max |logit - PeftModel's| " << worst);
    CHECK(worst < 1e-4);
    // The adapter moves the logits by far more than that: B is random.
    CHECK(peft_logit_diff(base, nullptr, adapters, logits) > 1e-2);
}

// PEFT's save_embedding_layers (its default after a vocabulary resize) writes the wrappers' own tensors
// beside each saved table X.weight: X.modules_to_save.weight (the same values) and X.original_module.weight
// (the base's). Read as PeftModel reads them (tests/fixtures/convert/gen_peft_saved_tables.py), where
// they were refused as "not a LoRA A or B ..., nor a saved embedding or LM head".
TEST_CASE("import: a PEFT adapter saved with save_embedding_layers (modules_to_save) gives PeftModel's logits") {
    ImportedModel base = import_hf_dir(kConvert + "tiny_llama_hf");
    const std::string src = kConvert + "tiny_llama_peft_tables";
    LoraConfig lc;
    std::vector<float> adapters;
    lora_load_any(src, base.cfg, lc, adapters);
    CHECK(lc.save_modules == (LORA_SAVE_EMBED | LORA_SAVE_LM_HEAD));
    CHECK(lora_targets_string(lc.targets) == "q,v");
    const std::string logits = kConvert + "tiny_llama_peft_tables_logits.json";
    const double worst = peft_logit_diff(base, &lc, adapters, logits);
    MESSAGE("PEFT adapter with save_embedding_layers: max |logit - PeftModel's| " << worst);
    CHECK(worst < 1e-4);
    CHECK(peft_logit_diff(base, nullptr, adapters, logits) > 1e-2);

    // The file again with one tensor changed (or added): what is refused, named.
    SafetensorsSet st;
    safetensors_add_file(st, src + "/adapter_model.safetensors");
    auto rewritten = [&](const std::string& changed, const std::string& added) {
        const std::filesystem::path d = std::filesystem::temp_directory_path() / "llmtrain-test-peft-tables";
        std::filesystem::remove_all(d);
        std::filesystem::create_directories(d);
        std::filesystem::copy(src + "/adapter_config.json", d / "adapter_config.json");
        std::vector<std::vector<float>> values(st.tensors.size() + 1);
        std::vector<SafeTensorOut> out;
        for (size_t i = 0; i < st.tensors.size(); i++) {
            const SafeTensor& t = st.tensors[i];
            values[i].resize(t.numel);
            st.read_f32(t, values[i].data());
            if (t.name == changed) values[i][7] += 0.5f;
            out.push_back({t.name, t.shape, values[i].data()});
            if (t.name == "base_model.model.model.embed_tokens.weight" && !added.empty())
                out.push_back({added, t.shape, values[i].data()});
        }
        safetensors_write((d / "adapter_model.safetensors").string(), out, DType::F32);
        return error_of([&] { lora_load_any(d.string(), base.cfg, lc, adapters); });
    };
    CHECK(rewritten("", "").empty());
    CHECK(contains(rewritten("base_model.model.lm_head.modules_to_save.weight", ""),
                   "tensors base_model.model.lm_head.modules_to_save.weight and base_model.model.lm_head.weight, both "
                   "the trained base_model.model.lm_head.weight, differ"));
    CHECK(rewritten("base_model.model.lm_head.original_module.weight", "").empty());  // the base's: not the adapter's
    // beside trainable token rows, the whole (resized) table: refused, saying how to save the rows alone
    CHECK(contains(rewritten("", "base_model.model.model.embed_tokens.token_adapter.base_layer.weight"),
                   "save it again with save_embedding_layers=False"));
    // a base model without the resized vocabulary the tables have
    ModelConfig smaller = base.cfg;
    smaller.vocab_size = 296;
    CHECK(contains(error_of([&] { lora_load_any(src, smaller, lc, adapters); }),
                   "tensor base_model.model.model.embed_tokens.weight has 300 rows, the base model 296 tokens: the "
                   "adapter was trained on a model whose vocabulary was resized"));
}

// --lora / --init-adapter given a checkpoint of ./train (ckpt-N/ holds adapter.lora) read it; a
// folder with neither kind of adapter, or a PEFT folder without its config, is named once.
TEST_CASE("import: a directory is a PEFT adapter or a checkpoint's adapter.lora, else named plainly") {
    const ModelConfig c = config_preset("tiny");
    LoraConfig lc;
    std::vector<float> a;
    lora_init(c, lc, a, 3);
    const std::filesystem::path dir = temp_dir("ckpt-dir");
    LoraConfig back;
    std::vector<float> b;
    CHECK(error_of([&] { lora_load_any(dir.string(), c, back, b); }) ==
          dir.string() + " holds neither a PEFT adapter (adapter_config.json) nor an adapter.lora");
    lora_save((dir / "adapter.lora").string(), c, lc, a);
    lora_load_any(dir.string() + "/", c, back, b);
    CHECK(b == a);
    CHECK(back.rank == lc.rank);
    // An unreadable adapter_config.json (here a folder) is named once, not as "PATH: PATH: ..."
    std::filesystem::create_directory(dir / "adapter_config.json");
    const std::string err = error_of([&] { lora_load_any(dir.string(), c, back, b); });
    CHECK(contains(err, (dir / "adapter_config.json").string()));
    CHECK(err.find("adapter_config.json: " + dir.string()) == std::string::npos);
    std::filesystem::remove_all(dir);
}

// --lora given what ./train wrote but no adapter: a run's --out (whose checkpoints hold the adapters)
// and a full fine-tune's checkpoint (model.bin) are named as such, with what to pass instead.
TEST_CASE("import: --lora of a run's folder names its newest checkpoint; of a full fine-tune's, its model.bin") {
    const ModelConfig c = config_preset("tiny");
    LoraConfig lc, back;
    std::vector<float> a, b;
    lora_init(c, lc, a, 3);
    const std::filesystem::path run = temp_dir("run-dir");
    for (const char* step : {"ckpt-00000002", "ckpt-00000010"}) {
        std::filesystem::create_directories(run / step);
        lora_save((run / step / "adapter.lora").string(), c, lc, a);
    }
    CHECK(error_of([&] { lora_load_any(run.string(), c, back, b); }) ==
          run.string() + " holds neither a PEFT adapter (adapter_config.json) nor an adapter.lora: it is a training "
                         "run's output; pass one of its checkpoints, the newest " + (run / "ckpt-00000010").string());
    const std::filesystem::path full = run / "ckpt-00000020";
    std::filesystem::create_directories(full);
    write_file_atomic((full / "model.bin").string(), "");
    CHECK(contains(error_of([&] { lora_load_any(full.string(), c, back, b); }),
                   "it holds model.bin, the weights of a full fine-tune (--method full), not an adapter; pass --model " +
                       (full / "model.bin").string() + " instead of --lora"));
    std::filesystem::remove_all(run);
}
