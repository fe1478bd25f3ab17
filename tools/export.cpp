// Trained adapters out to what other tools load:
//   ./export --lora out/ckpt-00000050/adapter.lora --peft runs/peft-adapter     (Hugging Face PEFT)
//   ./export --lora out/ckpt-00000050/adapter.lora --merge models/merged.bin     (W += s·B·A, our .bin)
// --model names the base (default models/smollm2-135m-instruct.bin); the adapter must match it.
#include <cstdio>
#include <string>

#include "model/lora_peft.h"
#include "model/weights.h"
#include "tools/cli.h"

static int run(int argc, char** argv) {
    std::string model = "models/smollm2-135m-instruct.bin", lora, peft, merge;
    std::string dtype = "f32";
    Args args(argc, argv, "see ./export --help");
    while (args.next()) {
        if (args.is("--model")) model = args.value();
        else if (args.is("--lora")) lora = args.value();
        else if (args.is("--peft")) peft = args.value();
        else if (args.is("--merge")) merge = args.value();
        else if (args.is("--dtype")) dtype = args.value();
        else if (args.is("--help") || args.is("-h")) {
            printf("usage: ./export --lora A.lora [--model BASE.bin] (--peft DIR | --merge OUT.bin [--dtype f32|bf16])\n");
            return 0;
        } else args.unknown();
    }
    if (lora.empty() || (peft.empty() && merge.empty())) fail("pass --lora A.lora and --peft DIR or --merge OUT.bin (see ./export --help)");
    if (dtype != "f32" && dtype != "bf16") fail("--dtype %s: use f32 or bf16", dtype.c_str());
    ModelConfig cfg = model_read_config(model);
    LoraConfig lc;
    std::vector<float> adapters;
    lora_load(lora, cfg, lc, adapters);
    if (!peft.empty()) {
        lora_export_peft(peft, cfg, lc, adapters);
        printf("wrote %s/adapter_model.safetensors and adapter_config.json (r=%d, alpha=%g, targets %s)\n", peft.c_str(),
               lc.rank, lc.alpha, lora_targets_string(lc.targets).c_str());
    }
    if (!merge.empty()) {
        std::vector<float> params;
        model_load(model, cfg, params);
        lora_merge(cfg, lc, adapters, params);
        model_save(merge, cfg, params, dtype == "f32" ? DType::F32 : DType::BF16);
        printf("wrote %s: %s with the adapter merged in\n", merge.c_str(), model.c_str());
    }
    return 0;
}

int main(int argc, char** argv) { return run_main([&] { return run(argc, argv); }); }
