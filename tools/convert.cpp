// ./convert: a pretrained model (GGUF file or Hugging Face directory) → our model .bin + tokenizer .tok.
//
//   ./convert SmolLM2-135M-Instruct.Q4_1.gguf -o models/smollm2-135m-instruct
//   ./convert ~/hf/Qwen2.5-0.5B-Instruct -o models/qwen2.5-0.5b --dtype bf16
//
// Quantised GGUF tensors, and the weights of bitsandbytes and FP8 checkpoints (model/import_quantized.h),
// are dequantised to FP32 (the trainer fine-tunes full-precision weights; qlora re-quantises to NF4
// itself). --dtype chooses how the .bin stores them: f32 (default, exact) or bf16.
#include <cerrno>
#include <cstdio>
#include <cstring>
#include <filesystem>
#include <string>
#include <sys/stat.h>

#include "model/import.h"
#include "model/util.h"
#include "model/weights.h"
#include "tools/cli.h"

namespace fs = std::filesystem;

// On stdout for --help, on stderr when the arguments are incomplete.
static void usage(FILE* f) {
    fprintf(f,
            "usage: ./convert INPUT -o|--out OUT [--dtype f32|bf16]\n"
            "  INPUT  a GGUF file (F32, F16, BF16, Q8_0, Q4_0, Q4_1, Q5_0, Q5_1, Q4_K, Q5_K, Q6_K tensors) or a Hugging Face model\n"
            "         directory (config.json, model.safetensors or its sharded index, tokenizer.json\n"
            "         or SentencePiece's tokenizer.model); its weights F32, F16 or BF16, or quantized by bitsandbytes\n"
            "         (4-bit NF4/FP4 as unsloth's -bnb-4bit models, 8-bit), as FP8 with block scales (-FP8 models) or by\n"
            "         llm-compressor (compressed-tensors: -FP8-dynamic, -quantized.w8a8, -quantized.w4a16 models),\n"
            "         GPTQ (-GPTQ models) or AutoAWQ (-AWQ models)\n"
            "  OUT    output path without extension: writes OUT.bin and OUT.tok\n"
            "  LLaMA-family architectures (llama, mistral, qwen2, qwen3, smollm3), Gemma 3 (gemma3, its text model) and\n"
            "  Phi-3 (phi3: Phi-3, Phi-3.5, Phi-4) with BPE tokenizers: byte-level (SmolLM2, Llama-3, Qwen2/3) or\n"
            "  SentencePiece (LLaMA-1/2, Mistral v0.1, TinyLlama, Gemma 3, Phi-3).\n");
}

// Creates every missing directory above `path`, like mkdir -p on its dirname.
static void make_parent_dirs(const std::string& path) {
    for (size_t i = path.find('/', 1); i != std::string::npos; i = path.find('/', i + 1)) {
        std::string d = path.substr(0, i);
        if (mkdir(d.c_str(), 0755) != 0 && errno != EEXIST) fail("%s: cannot create directory: %s", d.c_str(), strerror(errno));
    }
}

static int run(int argc, char** argv) {
    std::string input, out, dtype = "f32";
    for (int i = 1; i < argc; i++) {
        std::string a = argv[i];
        // --out=PATH and --dtype=bf16, as every tool takes them (tools/cli.h's Args)
        if (a.rfind("--out=", 0) == 0 || a.rfind("--dtype=", 0) == 0) {
            (a[2] == 'o' ? out : dtype) = a.substr(a.find('=') + 1);
            continue;
        }
        if ((a == "-o" || a == "--out" || a == "--dtype") && i + 1 >= argc) fail("%s needs a value", a.c_str());
        if (a == "-o" || a == "--out") out = argv[++i];
        else if (a == "--dtype") dtype = argv[++i];
        else if (a == "-h" || a == "--help") return usage(stdout), 0;
        else if (!a.empty() && a[0] == '-') fail("unknown option %s (see ./convert --help)", a.c_str());
        else if (input.empty()) input = a;
        else fail("more than one input given (%s and %s)", input.c_str(), a.c_str());
    }
    if (input.empty() || out.empty()) return usage(stderr), 2;
    if (dtype != "f32" && dtype != "bf16") fail("--dtype must be f32 or bf16, not %s", dtype.c_str());
    if (out.size() > 4 && out.compare(out.size() - 4, 4, ".bin") == 0) out.resize(out.size() - 4);
    // OUT names files, not a folder: "-o models/" would write the hidden models/.bin and models/.tok.
    // (A folder named OUT is no obstacle: OUT.bin and OUT.tok go beside it.)
    if (out.back() == '/') {
        fs::path in = fs::path(input).lexically_normal();
        if (in.filename().empty()) in = in.parent_path();  // a folder given as "dir/"
        const std::string stem = (in.extension() == ".gguf" ? in.stem() : in.filename()).string();
        const std::string dir = fs::path(out).lexically_normal().parent_path().string();
        fail("-o %s is a directory: -o takes the output path without extension, e.g. -o %s/%s (writes %s/%s.bin and "
             "%s/%s.tok)", out.c_str(), dir.c_str(), stem.c_str(), dir.c_str(), stem.c_str(), dir.c_str(), stem.c_str());
    }

    double t0 = now_seconds();
    ImportedModel m = import_model(input, false);  // read a tensor at a time by model_save
    double t1 = now_seconds();
    printf("read %s in %.1f s\n  %s\n  tokenizer: %s\n", input.c_str(), t1 - t0, m.cfg.describe().c_str(),
           tokenizer_describe(m.tok).c_str());
    if (!m.quantization.empty())
        printf("  quantized: %s, dequantized to FP32%s\n", m.quantization.c_str(),
               // our NF4 is bitsandbytes' in blocks of 64: the same codes come back (test_convert_quantized.cpp)
               m.quantization == "bitsandbytes NF4, double-quantized scales" || m.quantization == "bitsandbytes NF4"
                   ? " (--method qlora quantizes them to NF4 again: as a rule to the same codes)" : "");
    make_parent_dirs(out);
    model_save(out + ".bin", m.cfg, m.read_tensor, dtype == "f32" ? DType::F32 : DType::BF16);
    tokenizer_save(m.tok, out + ".tok");
    printf("wrote %s.bin (%s) and %s.tok in %.1f s\n", out.c_str(), dtype.c_str(), out.c_str(), now_seconds() - t1);
    return 0;
}

int main(int argc, char** argv) { return run_main([&] { return run(argc, argv); }); }
