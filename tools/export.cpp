// Trained weights out to what other tools load:
//   ./export --lora out/ckpt-00000050/adapter.lora --peft runs/peft-adapter     (Hugging Face PEFT; for
//       Gemma 3 4B and up, laid out for the image-text model they ship as: --peft-base to choose)
//   ./export --lora out/ckpt-00000050/adapter.lora --hf runs/merged-hf          (a transformers model)
//   ./export --model out/ckpt-00000050/model.bin --hf runs/full-hf              (a full fine-tune)
//   ./export --lora out/ckpt-00000050/adapter.lora --gguf merged.gguf --dtype q8_0 (llama.cpp, ollama)
//   ./export --lora out/ckpt-00000050/adapter.lora --merge models/merged.bin     (W += s·B·A; DoRA: then each row to its magnitude; our .bin)
// --model names the base (default models/smollm2-135m-instruct.bin); an adapter must match it.
// --hf and --gguf write the model (with the adapter merged in, when one is given) and its tokenizer
// (--tokenizer, default the model path with .tok) as a Hugging Face directory or a GGUF file.
#include <cstdio>
#include <filesystem>
#include <string>

#include "model/dequant.h"
#include "model/export_gguf.h"
#include "model/export_hf.h"
#include "model/lora_peft.h"
#include "model/model.h"
#include "model/weights.h"
#include "tools/cli.h"

static int run(int argc, char** argv) {
    std::string model = "models/smollm2-135m-instruct.bin", tokenizer, chat_template, lora, peft, merge, hf, gguf;
    std::string dtype = "f32", peft_base = "auto";
    bool nf4 = false;
    Args args(argc, argv, "see ./export --help");
    while (args.next()) {
        if (args.is("--model")) model = args.value();
        else if (args.is("--tokenizer")) tokenizer = args.value();
        else if (args.is("--template")) chat_template = args.value();
        else if (args.is("--lora")) lora = args.value();
        else if (args.is("--peft")) peft = args.value();
        else if (args.is("--merge")) merge = args.value();
        else if (args.is("--hf")) hf = args.value();
        else if (args.is("--gguf")) gguf = args.value();
        else if (args.is("--dtype")) dtype = args.value();
        else if (args.is("--peft-base")) peft_base = args.value();
        else if (args.is("--nf4")) nf4 = true;
        else if (args.is("--help") || args.is("-h")) {
            printf("usage: ./export [--model BASE.bin] [--lora A.lora] (--peft DIR | --merge OUT.bin | --hf DIR | --gguf OUT.gguf)\n"
                   "                [--dtype f32|bf16|f16|q8_0] [--tokenizer T.tok|tokenizer.json|tokenizer.model] [--template NAME]\n"
                   "                [--peft-base text|image-text] [--nf4]\n"
                   "  --model M    our .bin, or a Hugging Face model directory or .gguf file (imported as ./convert would)\n"
                   "  --lora A     the adapter: our .lora, or a PEFT adapter directory (adapter_config.json + .safetensors)\n"
                   "  --peft DIR   the adapter as a Hugging Face PEFT adapter (needs --lora)\n"
                   "  --peft-base text|image-text  the transformers model it is for (default: image-text for Gemma 3\n"
                   "               4B and up, the image-text Gemma3ForConditionalGeneration that AutoModelForCausalLM\n"
                   "               loads for them; text otherwise): PEFT names the layers model.layers.N in a text\n"
                   "               model and model.language_model.layers.N in Gemma 3's image-text one\n"
                   "  --merge OUT  the model with the adapter merged in, as our .bin and its .tok (needs --lora; f32 or bf16)\n"
                   "  --hf DIR     the model (with the adapter merged in, if --lora) as a Hugging Face model directory:\n"
                   "               config.json, model.safetensors, tokenizer.json, tokenizer_config.json (f32 or bf16)\n"
                   "  --gguf OUT   the same as a GGUF file for llama.cpp / ollama (f32, f16, bf16 or q8_0)\n"
                   "  --nf4        merge into the base as NF4 holds it (each projection quantized and dequantized): the\n"
                   "               model a --method qlora run trained and evaluated; without it the adapter goes into the\n"
                   "               full-precision weights, which answer slightly differently (--merge, --hf, --gguf)\n"
                   "  --template   " CHAT_TEMPLATE_NAMES ": the chat\n"
                   "               template to write (default: the tokenizer's; pass the one the model was trained with, if\n"
                   "               ./train had --template)\n");
            return 0;
        } else args.unknown();
    }
    if (peft.empty() && merge.empty() && hf.empty() && gguf.empty())
        fail("pass --peft DIR, --merge OUT.bin, --hf DIR or --gguf OUT.gguf (see ./export --help)");
    if (!chat_template.empty()) chat_template_from_name(chat_template);  // a wrong name fails now, before any work
    if (!chat_template.empty() && merge.empty() && hf.empty() && gguf.empty())
        fail("--template %s is written into --merge, --hf and --gguf outputs: a --peft adapter carries no template",
             chat_template.c_str());
    if (nf4 && merge.empty() && hf.empty() && gguf.empty())
        fail("--nf4 changes the base weights that --merge, --hf and --gguf write: a --peft adapter holds no base (for "
             "QLoRA's, load the base in 4-bit NF4 with double quantization, as bitsandbytes does)");
    if (lora.empty() && (!peft.empty() || !merge.empty())) fail("--peft and --merge need --lora A.lora (the adapter to export)");
    if (dtype != "f32" && dtype != "bf16" && dtype != "f16" && dtype != "q8_0") fail("--dtype %s: use f32, bf16, f16 or q8_0", dtype.c_str());
    if ((dtype == "f16" || dtype == "q8_0") && (!merge.empty() || !hf.empty()))
        fail("--dtype %s is for --gguf only: --merge and --hf write f32 or bf16", dtype.c_str());
    if (dtype != "f32" && merge.empty() && hf.empty() && gguf.empty())
        fail("--dtype is for --merge, --hf and --gguf: a --peft adapter is always written in f32");
    if (!merge.empty() && std::filesystem::path(merge).extension() == ".gguf")
        fail("--merge %s writes our .bin format, not GGUF: for llama.cpp and ollama pass --gguf %s", merge.c_str(), merge.c_str());
    auto dir_key = [](const std::string& d) {  // "runs/x/" and "runs/x" alike
        const std::filesystem::path p = std::filesystem::weakly_canonical(d);
        return p.has_filename() ? p : p.parent_path();
    };
    if (!peft.empty() && !hf.empty() && dir_key(peft) == dir_key(hf))
        fail("--peft and --hf name the same directory (%s): an adapter and a model need a directory each", peft.c_str());
    // Never write over an input (the base model, the adapter, the tokenizer that --merge copies beside
    // its output): the export would destroy what it reads. (`--merge base.bf16` beside base.bin would
    // write base.tok, and with --template change the base model's chat template.)
    const bool writes_model = !merge.empty() || !hf.empty() || !gguf.empty();
    const std::string tok_in = writes_model ? tokenizer_of_model(model, tokenizer) : "";  // what they carry
    std::vector<std::string> outputs = {merge, gguf}, inputs = {model, lora, tok_in};
    if (!merge.empty()) outputs.push_back(tokenizer_beside(merge));
    for (const std::string& output : outputs)
        for (const std::string& input : inputs)
            if (same_file(output, input))
                fail("%s is also an input of this export (%s): write the output elsewhere", output.c_str(), input.c_str());
    if (!gguf.empty() && std::filesystem::path(gguf).extension() != ".gguf")
        fail("--gguf %s: name the file .gguf (llama.cpp and ollama look for it)", gguf.c_str());
    // The output files' directories, as --hf and --peft create theirs.
    for (const std::string& file : {merge, gguf})
        if (file.find('/') != std::string::npos) std::filesystem::create_directories(file.substr(0, file.rfind('/')));
    const DType dt = dtype == "bf16" ? DType::BF16 : DType::F32;
    const uint32_t gguf_type = dtype == "f16" ? GGML_F16 : dtype == "q8_0" ? GGML_Q8_0 : dtype == "bf16" ? GGML_BF16 : GGML_F32;
    ModelConfig cfg = model_read_config(model);
    if (!gguf.empty() && !gguf_unsupported(cfg).empty())  // (before any other output is written)
        fail("%s: %s: export --hf instead", gguf.c_str(), gguf_unsupported(cfg).c_str());
    LoraConfig lc;
    std::vector<float> adapters;
    if (!lora.empty()) lora_load_any(lora, cfg, lc, adapters);
    if (!peft.empty()) {
        if (peft_base != "auto" && peft_base != "text" && peft_base != "image-text")
            fail("--peft-base %s: use text or image-text (or leave it out: chosen by the model)", peft_base.c_str());
        const PeftBase base = peft_base == "text"         ? PeftBase::text
                              : peft_base == "image-text" ? PeftBase::image_text
                                                          : peft_base_default(cfg);
        const int rank = lora_export_peft(peft, cfg, lc, adapters, base);
        const std::string fused = rank == lc.rank ? "" : strf(" (r=%d here: PEFT adapts Phi-3's fused qkv_proj and "
                                                              "gate_up_proj, which hold several of the projections)", lc.rank);
        printf("wrote %s/adapter_model.safetensors and adapter_config.json (r=%d, alpha=%.9g%s, targets %s%s%s%s%s), for %s\n",
               peft.c_str(), rank, lora_alpha_at_rank(lc, rank), fused.c_str(), lora_targets_string(lc.targets).c_str(),
               lc.layers.empty() ? "" : (", layers_to_transform " + lora_layers_string(lc.layers)).c_str(),
               lc.use_dora ? ", DoRA: use_dora with each lora_magnitude_vector" : "",
               !lc.save_modules      ? ""
               : cfg.tied_embeddings ? ", modules_to_save embed_tokens with ensure_weight_tying (the tied LM head)"
                                     : (", modules_to_save " + lora_saves_string(lc.save_modules)).c_str(),
               lc.has_tokens() ? (", trainable_token_indices: " + lora_tokens_string(cfg, lc)).c_str() : "",
               base == PeftBase::text ? "a text model (layers model.layers.N)"
                                      : "Gemma 3's image-text model, Gemma3ForConditionalGeneration (layers "
                                        "model.language_model.layers.N; --peft-base text for Gemma3ForCausalLM)");
    }
    if (!writes_model) return 0;
    std::vector<float> params;
    model_load(model, cfg, params);
    if (nf4) nf4_round_trip_base(cfg, params);
    if (!lora.empty()) lora_merge(cfg, lc, adapters, params);
    const std::string what = std::string(nf4 ? " (its projections as NF4 holds them)" : "") +
                             (lora.empty() ? "" : " with the adapter merged in");
    // Every output carries the tokenizer: --merge as the .tok beside it, where ./train and ./generate look.
    Tokenizer tok = tokenizer_load_any(tok_in);
    if (!chat_template.empty()) tok.chat_template = chat_template_from_name(chat_template);
    if (!merge.empty()) {
        model_save(merge, cfg, params, dt);
        tokenizer_save(tok, tokenizer_beside(merge));
        printf("wrote %s and %s: %s%s\n", merge.c_str(), tokenizer_beside(merge).c_str(), model.c_str(), what.c_str());
    }
    if (hf.empty() && gguf.empty()) return 0;
    if (!hf.empty()) {
        export_hf_dir(hf, cfg, params, tok, dt);
        printf("wrote %s: config.json, model.safetensors (%s), tokenizer.json, tokenizer_config.json: %s%s\n", hf.c_str(),
               dtype.c_str(), model.c_str(), what.c_str());
        if (peft_base_default(cfg) == PeftBase::image_text)  // Gemma 3 4B and up
            fprintf(stderr, "note: Gemma 3 of this size ships as an image-text model; %s is its language model alone "
                            "(Gemma3ForCausalLM: text in, text out), since the vision tower is not imported\n", hf.c_str());
    }
    if (!gguf.empty()) {
        export_gguf(gguf, cfg, params, tok, gguf_type);
        printf("wrote %s (%s): %s%s\n", gguf.c_str(), dtype.c_str(), model.c_str(), what.c_str());
    }
    return 0;
}

int main(int argc, char** argv) { return run_main([&] { return run(argc, argv); }); }
