// Writes a randomly initialised model of any shape: a preset, optionally with fields overridden.
//   ./init_model --preset tiny -o models/tiny.bin
//   ./init_model --preset llama-2-7b --layers 2 -o /tmp/7b-2layers.bin --dtype bf16
// Tests and benchmarks use these, so nothing needs a download.
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <filesystem>
#include <string>

#include "model/util.h"
#include "model/weights.h"
#include "tools/cli.h"

static int run(int argc, char** argv) {
    std::string preset = "tiny", out;
    DType dtype = DType::F32;
    uint64_t seed = 42;
    ShapeFlags shape;
    Args args(argc, argv, "see ./init_model --help");
    while (args.next()) {
        if (args.is("--preset")) preset = args.value();
        else if (args.is("-o") || args.is("--out")) out = args.value();
        else if (args.is("--seed")) seed = (uint64_t)args.integer();
        else if (shape.parse(args)) continue;
        else if (args.is("--dtype")) {
            std::string d = args.value();
            if (d == "f32") dtype = DType::F32;
            else if (d == "bf16") dtype = DType::BF16;
            else fail("--dtype %s: use f32 or bf16", d.c_str());
        } else if (args.is("--help") || args.is("-h")) {
            std::string names;
            for (const std::string& n : config_preset_names()) names += " " + n;
            printf("usage: ./init_model --preset NAME -o|--out OUT.bin [--seed N] [--dtype f32|bf16]\n"
                   "       [--dim N --layers N --heads N --kv-heads N --head-dim N --ffn N --vocab N]\npresets:%s\n",
                   names.c_str());
            return 0;
        } else args.unknown();
    }
    if (out.empty()) fail("no output: pass -o PATH.bin");
    // -o names the file: a folder got "cannot write (rename from DIR/.tmp failed): Not a directory"
    if (out.back() == '/' || std::filesystem::is_directory(out)) {
        std::string dir = out;
        while (dir.size() > 1 && dir.back() == '/') dir.pop_back();
        fail("-o %s is a directory: -o takes the model file's path, e.g. -o %s/%s.bin", out.c_str(), dir.c_str(), preset.c_str());
    }
    ModelConfig cfg = config_preset(preset);
    shape.apply(cfg);
    cfg.validate("init_model");
    // The output's folder, as ./convert, ./export and ./make_dataset create theirs
    if (const std::filesystem::path dir = std::filesystem::path(out).parent_path(); !dir.empty())
        std::filesystem::create_directories(dir);
    std::vector<float> params;
    model_init_random(cfg, params, seed);
    model_save(out, cfg, params, dtype);
    printf("wrote %s: %s\n", out.c_str(), cfg.describe().c_str());
    return 0;
}

int main(int argc, char** argv) { return run_main([&] { return run(argc, argv); }); }
