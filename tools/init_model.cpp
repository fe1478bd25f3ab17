// Writes a randomly initialised model of any shape: a preset, optionally with fields overridden.
//   ./init_model --preset tiny -o models/tiny.bin
//   ./init_model --preset llama-2-7b --layers 2 -o /tmp/7b-2layers.bin --dtype bf16
// Tests and benchmarks use these, so nothing needs a download.
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <string>

#include "model/util.h"
#include "model/weights.h"

static int run(int argc, char** argv) {
    std::string preset = "tiny", out;
    DType dtype = DType::F32;
    uint64_t seed = 42;
    ModelConfig cfg;
    struct Override { const char* flag; int32_t* field; };
    int32_t dim = 0, layers = 0, heads = 0, kv = 0, ffn = 0, vocab = 0, hd = 0;
    Override ov[] = {{"--dim", &dim}, {"--layers", &layers}, {"--heads", &heads}, {"--kv-heads", &kv},
                     {"--ffn", &ffn}, {"--vocab", &vocab}, {"--head-dim", &hd}};
    for (int i = 1; i < argc; i++) {
        std::string a = argv[i];
        auto val = [&]() -> std::string {
            if (i + 1 >= argc) fail("flag %s needs a value", a.c_str());
            return argv[++i];
        };
        bool matched = false;
        for (Override& o : ov)
            if (a == o.flag) { *o.field = atoi(val().c_str()); matched = true; }
        if (matched) continue;
        if (a == "--preset") preset = val();
        else if (a == "-o" || a == "--out") out = val();
        else if (a == "--seed") seed = strtoull(val().c_str(), nullptr, 10);
        else if (a == "--dtype") {
            std::string d = val();
            if (d == "f32") dtype = DType::F32;
            else if (d == "bf16") dtype = DType::BF16;
            else fail("--dtype %s: use f32 or bf16", d.c_str());
        } else if (a == "--help" || a == "-h") {
            std::string names;
            for (const std::string& n : config_preset_names()) names += " " + n;
            printf("usage: ./init_model --preset NAME -o OUT.bin [--seed N] [--dtype f32|bf16]\n"
                   "       [--dim N --layers N --heads N --kv-heads N --head-dim N --ffn N --vocab N]\npresets:%s\n",
                   names.c_str());
            return 0;
        } else fail("unknown flag '%s' (see ./init_model --help)", a.c_str());
    }
    if (out.empty()) fail("no output: pass -o PATH.bin");
    cfg = config_preset(preset);
    if (dim) { cfg.dim = dim; cfg.head_dim = dim / cfg.n_heads; }
    if (heads) { cfg.n_heads = heads; cfg.head_dim = cfg.dim / heads; }
    if (layers) cfg.n_layers = layers;
    if (kv) cfg.n_kv_heads = kv;
    if (hd) cfg.head_dim = hd;
    if (ffn) cfg.ffn_dim = ffn;
    if (vocab) cfg.vocab_size = vocab;
    cfg.validate("init_model");
    std::vector<float> params;
    model_init_random(cfg, params, seed);
    model_save(out, cfg, params, dtype);
    printf("wrote %s: %s\n", out.c_str(), cfg.describe().c_str());
    return 0;
}

int main(int argc, char** argv) {
    try {
        return run(argc, argv);
    } catch (const std::exception& e) {
        fprintf(stderr, "error: %s\n", e.what());
        return 1;
    }
}
