// Trained weights out to what other tools load:
//   ./export --lora out/ckpt-00000050/adapter.lora --peft runs/peft-adapter     (Hugging Face PEFT)
//   ./export --lora out/ckpt-00000050/adapter.lora --hf runs/merged-hf          (a transformers model)
//   ./export --model out/ckpt-00000050/model.bin --hf runs/full-hf              (a full fine-tune)
//   ./export --lora out/ckpt-00000050/adapter.lora --merge models/merged.bin     (W += s·B·A, our .bin)
// --model names the base (default models/smollm2-135m-instruct.bin); an adapter must match it.
// --hf writes the model (with the adapter merged in, when one is given) and its tokenizer (--tokenizer,
// default the model path with .tok) as a Hugging Face directory.
#include <cstdio>
#include <string>

#include "model/export_hf.h"
#include "model/lora_peft.h"
#include "model/weights.h"
#include "tools/cli.h"

static int run(int argc, char** argv) {
    std::string model = "models/smollm2-135m-instruct.bin", tokenizer, lora, peft, merge, hf;
    std::string dtype = "f32";
    Args args(argc, argv, "see ./export --help");
    while (args.next()) {
        if (args.is("--model")) model = args.value();
        else if (args.is("--tokenizer")) tokenizer = args.value();
        else if (args.is("--lora")) lora = args.value();
        else if (args.is("--peft")) peft = args.value();
        else if (args.is("--merge")) merge = args.value();
        else if (args.is("--hf")) hf = args.value();
        else if (args.is("--dtype")) dtype = args.value();
        else if (args.is("--help") || args.is("-h")) {
            printf("usage: ./export [--model BASE.bin] [--lora A.lora] (--peft DIR | --merge OUT.bin | --hf DIR)\n"
                   "                [--dtype f32|bf16] [--tokenizer T.tok|tokenizer.json]\n"
                   "  --peft DIR   the adapter as a Hugging Face PEFT adapter (needs --lora)\n"
                   "  --merge OUT  the model with the adapter merged in, as our .bin (needs --lora)\n"
                   "  --hf DIR     the model (with the adapter merged in, if --lora) as a Hugging Face model directory:\n"
                   "               config.json, model.safetensors, tokenizer.json, tokenizer_config.json\n");
            return 0;
        } else args.unknown();
    }
    if (peft.empty() && merge.empty() && hf.empty()) fail("pass --peft DIR, --merge OUT.bin or --hf DIR (see ./export --help)");
    if (lora.empty() && (!peft.empty() || !merge.empty())) fail("--peft and --merge need --lora A.lora (the adapter to export)");
    if (dtype != "f32" && dtype != "bf16") fail("--dtype %s: use f32 or bf16", dtype.c_str());
    const DType dt = dtype == "f32" ? DType::F32 : DType::BF16;
    ModelConfig cfg = model_read_config(model);
    LoraConfig lc;
    std::vector<float> adapters;
    if (!lora.empty()) lora_load(lora, cfg, lc, adapters);
    if (!peft.empty()) {
        lora_export_peft(peft, cfg, lc, adapters);
        printf("wrote %s/adapter_model.safetensors and adapter_config.json (r=%d, alpha=%g, targets %s)\n", peft.c_str(),
               lc.rank, lc.alpha, lora_targets_string(lc.targets).c_str());
    }
    if (merge.empty() && hf.empty()) return 0;
    std::vector<float> params;
    model_load(model, cfg, params);
    if (!lora.empty()) lora_merge(cfg, lc, adapters, params);
    const char* what = lora.empty() ? "" : " with the adapter merged in";
    if (!merge.empty()) {
        model_save(merge, cfg, params, dt);
        printf("wrote %s: %s%s\n", merge.c_str(), model.c_str(), what);
    }
    if (!hf.empty()) {
        if (tokenizer.empty()) tokenizer = model.substr(0, model.rfind('.')) + ".tok";
        export_hf_dir(hf, cfg, params, tokenizer_load_any(tokenizer), dt);
        printf("wrote %s: config.json, model.safetensors (%s), tokenizer.json, tokenizer_config.json: %s%s\n", hf.c_str(),
               dtype.c_str(), model.c_str(), what);
    }
    return 0;
}

int main(int argc, char** argv) { return run_main([&] { return run(argc, argv); }); }
