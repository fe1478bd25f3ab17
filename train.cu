// The trainer: flags → model, tokenizer and data → the training loop with progress, evaluation
// and checkpoints. `./train` with no flags fine-tunes the default model (SmolLM2-135M-Instruct,
// fetched by `make`) with LoRA on the default task (data/default). `./train --help` lists flags.
#include <algorithm>
#include <cmath>
#include <csignal>
#include <cstdio>
#include <cstring>
#include <ctime>
#include <filesystem>
#include <map>
#include <set>
#include <string>
#include <unistd.h>

#include "data/dataset.h"
#include "data/default_task.h"
#include "model/adapter_setup.h"
#include "model/answer.h"
#include "model/export_gguf.h"
#include "model/import.h"
#include "model/lora_peft.h"
#include "model/loss_plot.h"
#include "model/memory.h"
#include "model/out_dir.h"
#include "model/trainer.h"
#include "model/util.h"
#include "tokenizer/tokenizer.h"
#include "tools/cli.h"

namespace fs = std::filesystem;

namespace {

struct Flags {
    std::string model = "models/smollm2-135m-instruct.bin", preset, tokenizer, out = "out", chat_template, method = "lora", lora_targets = "q,k,v,o,gate,up,down",
                schedule = "cosine", padding = "longest", truncation = "drop", device = "auto", optimizer = "adamw";
    float val_split = 0.0f, prompt_loss_weight = 0.0f, lr = -1.0f;
    bool resume = false, overwrite = false, check_data = false, dry_run = false, skip_bad_lines = false, epochs_given = false;
    bool eval_only = false, no_think = false;
    bool eval_samples_given = false, decay_ratio_given = false, saves_given = false, tokens_given = false;
    int log_every = 1, eval_samples = 32;
    std::string lora_shape_flag;  // the last of --lora-r/-alpha/-dropout/-targets and --use-rslora given
    // --data and --val-data, each given once or more (the files' examples in this order)
    std::vector<std::string> data = {"data/default/train.jsonl"}, val_data;
    TrainConfig tc;
    AdapterFlags adapters;  // --init-adapter, --modules-to-save, --trainable-tokens
    DataOptions data_opt;
};

void usage() {
    printf(
        "usage: ./train [flags]   (no flags: LoRA on the default model and task)\n"
        "model and data\n"
        "  --model PATH            model .bin (default models/smollm2-135m-instruct.bin), or a Hugging Face model\n"
        "                          directory or .gguf file, imported as ./convert would at each start\n"
        "  --preset NAME           random weights of a known shape instead (tiny, smollm2-135m, llama-2-7b, ...)\n"
        "  --tokenizer PATH|bytes  .tok, tokenizer.json or tokenizer.model (default: the model path with .tok);\n"
        "                          bytes: raw UTF-8 bytes as ids 0-255 (the default with --preset)\n"
        "  --data PATH             jsonl (instruction/input/output, prompt/completion, messages, ShareGPT\n"
        "                          conversations), .csv/.tsv/.parquet with those columns, or raw text; repeat it\n"
        "                          to train on several files at once, or quote a wildcard: 'data/train-*.parquet'\n"
        "  --val-data PATH | --val-split F   held-out data (default data/default/val.jsonl with the default data;\n"
        "                          --val-data repeats too: the val loss then names each file's own as well)\n"
        "  --template NAME         " CHAT_TEMPLATE_NAMES "\n"
        "                          (default: the tokenizer's)\n"
        "  --no-think              render as apply_chat_template(enable_thinking=False) (qwen3: the held-out\n"
        "                          prompts open an empty think block; smollm3: reasoning mode /no_think)\n"
        "  --max-seq-len N (512)   --padding longest|max_length   --packing   --truncation drop|truncate|error\n"
        "  --group-by-length       batches of similar lengths (transformers' group_by_length): less padding\n"
        "  --prompt-loss-weight W  weight of prompt tokens in the loss (0..1, default 0)\n"
        "  --skip-bad-lines        train without invalid lines instead of stopping (they are reported)\n"
        "  --check-data            print the data report and exit\n"
        "method\n"
        "  --method lora|qlora|full  (default lora; qlora keeps the base projections in NF4)\n"
        "  --lora-r N (8)  --lora-alpha A (16)  --lora-dropout P (0.05)  --lora-targets q,k,v,o,gate,up,down|all\n"
        "                          (PEFT's names too: q_proj,v_proj or all-linear)\n"
        "  --lora-layers 0-3,10|all  adapters on these decoder layers only (PEFT's layers_to_transform; default: all)\n"
        "  --use-rslora            scale alpha/sqrt(r) instead of alpha/r\n"
        "  --use-dora              DoRA: also train a magnitude per output row of each adapted weight\n"
        "                          (PEFT's use_dora; slower and more activation memory than LoRA)\n"
        "  --loraplus-lr-ratio R   LoRA+: train the adapters' B at lr x R (1: off; the paper suggests 16)\n"
        "  --modules-to-save embed_tokens,lm_head   also train these base tensors in full beside the adapters\n"
        "                          (PEFT's modules_to_save: new languages, continued pretraining, new tokens;\n"
        "                          a tied model's embedding is its LM head). 4 bytes more a parameter in the\n"
        "                          adapter, 16 in CPU training, 18 on the GPU: 28M parameters for SmolLM2's\n"
        "  --trainable-tokens LIST  also train these tokens' rows of the embedding and LM head (PEFT's\n"
        "                          trainable_token_indices): ids or tokens, e.g. <|im_start|>,<|im_end|>: new or\n"
        "                          untrained special tokens, dim parameters each instead of a whole table\n"
        "  --embedding-lr X        learning rate of the embedding and LM head (unsloth's embedding_learning_rate;\n"
        "                          default: --lr; a tenth of it or less is usual)\n"
        "  --init-adapter PATH     start LoRA from this adapter (.lora or a PEFT directory) instead of B = 0\n"
        "  --neftune-alpha A (0)   NEFTune: uniform noise of +-A/sqrt(seq len x dim) on the embeddings while\n"
        "                          training (transformers' neftune_noise_alpha; 5 is usual, 0: off)\n"
        "optimisation\n"
        "  --lr X (lora 2e-4, full 2e-5)  --weight-decay X (0)  --beta1 X (0.9)  --beta2 X (0.999)  --eps X (1e-8)\n"
        "  --lr-scheduler constant|linear|cosine|wsd (cosine)  --warmup-steps N | --warmup-ratio F  --min-lr-ratio F (0)\n"
        "  --decay-ratio F (0.1)   wsd (warmup-stable-decay): the share of the steps in the final cosine decay\n"
        "  --max-grad-norm X (1.0, 0 = off)  --batch-size N (8)  --grad-accum N (1)\n"
        "  --max-steps N | --epochs F (1)    --seed N (42)   --recompute (gradient checkpointing)\n"
        "  --offload-optimizer     GPU: AdamW's moments and FP32 masters in host memory, AdamW on the CPU\n"
        "                          (12 bytes less GPU memory per trainable parameter; about 6 with adamw8bit)\n"
        "  --stochastic-rounding   GPU: round the BF16 weights from the FP32 masters stochastically (unbiased)\n"
        "  --optimizer adamw|adamw8bit (adamw)  adamw8bit: bitsandbytes' 8-bit moments (2 bytes a parameter\n"
        "                          instead of 8; tensors under 4096 parameters keep FP32 moments)\n"
        "output\n"
        "  --out DIR (out)  --save-every N  --keep-last N (2, 0 = all)  --eval-every N  --log-every N (1)\n"
        "  --resume                continue the run in --out from its newest checkpoint, given its command again or\n"
        "                          alone (with at most --out DIR): then the command recorded in OUT/run.json runs\n"
        "                          (Ctrl-C or SIGTERM while training: the step in progress ends, a checkpoint is\n"
        "                          saved into --out, and --resume continues)\n"
        "  --overwrite             start over in an --out that holds an earlier run's checkpoints (deletes them)\n"
        "  --keep-best             keep the weights of the lowest validation loss in OUT/best/\n"
        "  --early-stopping N      stop after N evaluations (--eval-every) without a lower validation loss\n"
        "  --eval-samples N (32)   held-out examples answered (greedy) before and after training: exact\n"
        "                          match and per-field JSON score, with a few samples shown (0: off)\n"
        "  --dry-run               print the setup and memory table, then exit\n"
        "  --eval-only             evaluate without training: the held-out loss and --eval-samples answers of the\n"
        "                          model (with --init-adapter PATH, of that adapter); writes nothing\n"
        "  --device auto|cpu|cuda  where to train (auto: the GPU when there is one, else the CPU)\n");
}

void parse_flags(int argc, char** argv, Flags& f) {
    TrainConfig& tc = f.tc;
    tc.lora.dropout = 0.05f;
    tc.batch.batch_size = 8;
    tc.batch.max_seq_len = 512;
    tc.out_dir = "out";
    bool data_given = false;
    Args args(argc, argv, "see ./train --help");
    while (args.next()) {
        if (args.is("--help") || args.is("-h")) { usage(); exit(0); }
        else if (args.is("--model")) f.model = args.value();
        else if (args.is("--preset")) f.preset = args.value();
        else if (args.is("--tokenizer")) f.tokenizer = args.value();
        else if (args.is("--data")) {
            if (!data_given) f.data.clear();
            f.data.push_back(args.value());
            data_given = true;
        }
        else if (args.is("--val-data")) f.val_data.push_back(args.value());
        else if (args.is("--val-split")) f.val_split = (float)args.number_in(0, 1, false, true);  // 0: none
        else if (args.is("--template")) f.chat_template = args.value();
        else if (args.is("--no-think")) f.no_think = true;
        else if (args.is("--out")) tc.out_dir = args.value();
        else if (args.is("--method")) f.method = args.value();
        else if (args.is("--lora-r")) tc.lora.rank = args.integer(1), f.lora_shape_flag = "--lora-r";
        else if (args.is("--lora-alpha")) tc.lora.alpha = (float)args.number_in(0, INFINITY, true), f.lora_shape_flag = "--lora-alpha";
        else if (args.is("--lora-dropout")) tc.lora.dropout = (float)args.number_in(0, 1, false, true), f.lora_shape_flag = "--lora-dropout";
        else if (args.is("--lora-targets")) f.lora_targets = args.value(), f.lora_shape_flag = "--lora-targets";
        else if (args.is("--lora-layers")) tc.lora.layers = lora_parse_layers(args.value());
        else if (args.is("--use-rslora")) tc.lora.use_rslora = 1, f.lora_shape_flag = "--use-rslora";
        else if (args.is("--use-dora")) tc.lora.use_dora = 1;
        else if (args.is("--loraplus-lr-ratio")) tc.optim.lora_b_lr_ratio = (float)args.number_in(0, 1e4, true);
        else if (args.is("--init-adapter")) f.adapters.init_adapter = args.value();
        else if (args.is("--modules-to-save")) f.adapters.modules_to_save = args.value(), f.saves_given = true;
        else if (args.is("--trainable-tokens")) f.adapters.trainable_tokens = args.value(), f.tokens_given = true;
        else if (args.is("--embedding-lr")) tc.optim.embedding_lr = (float)args.number_in(0, INFINITY, true);
        else if (args.is("--neftune-alpha")) tc.neftune_alpha = (float)args.number_in(0, 1e4);
        else if (args.is("--lr")) f.lr = (float)args.number_in(0, INFINITY, true);
        else if (args.is("--weight-decay")) tc.optim.weight_decay = (float)args.number_in(0, INFINITY);
        else if (args.is("--beta1")) tc.optim.beta1 = (float)args.number_in(0, 1, false, true);
        else if (args.is("--beta2")) tc.optim.beta2 = (float)args.number_in(0, 1, false, true);
        else if (args.is("--eps")) tc.optim.eps = (float)args.number_in(0, 1, true);
        else if (args.is("--max-grad-norm")) tc.optim.max_grad_norm = (float)args.number_in(0, INFINITY);
        else if (args.is("--lr-scheduler")) f.schedule = args.value();
        else if (args.is("--warmup-steps")) tc.optim.warmup_steps = args.integer();
        else if (args.is("--warmup-ratio")) tc.warmup_ratio = (float)args.number_in(0, 1, false, true);
        else if (args.is("--min-lr-ratio")) tc.optim.min_lr_ratio = (float)args.number_in(0, 1);
        else if (args.is("--decay-ratio")) tc.optim.decay_ratio = (float)args.number_in(0, 1, true), f.decay_ratio_given = true;
        else if (args.is("--batch-size")) tc.batch.batch_size = args.integer(1);
        else if (args.is("--grad-accum")) tc.grad_accum = args.integer(1);
        else if (args.is("--max-steps")) tc.max_steps = args.integer();
        else if (args.is("--epochs")) tc.epochs = (float)args.number_in(0, 1e5, true), f.epochs_given = true;
        else if (args.is("--max-seq-len")) tc.batch.max_seq_len = args.integer();
        else if (args.is("--padding")) f.padding = args.value();
        else if (args.is("--packing")) tc.batch.packing = true;
        else if (args.is("--group-by-length")) tc.group_by_length = true;
        else if (args.is("--truncation")) f.truncation = args.value();
        else if (args.is("--prompt-loss-weight")) f.prompt_loss_weight = (float)args.number_in(0, 1);
        else if (args.is("--skip-bad-lines")) f.skip_bad_lines = true;
        else if (args.is("--recompute")) tc.recompute = true;
        else if (args.is("--offload-optimizer")) tc.offload_optimizer = true;
        else if (args.is("--stochastic-rounding")) tc.optim.stochastic_rounding = true;
        else if (args.is("--optimizer")) f.optimizer = args.value();
        else if (args.is("--seed")) tc.seed = (uint64_t)args.integer();
        else if (args.is("--save-every")) tc.save_every = args.integer();
        else if (args.is("--keep-last")) tc.keep_last = args.integer();
        else if (args.is("--eval-every")) tc.eval_every = args.integer();
        else if (args.is("--keep-best")) tc.keep_best = true;
        else if (args.is("--early-stopping")) tc.early_stopping = args.integer();
        else if (args.is("--log-every")) f.log_every = args.integer(1);
        else if (args.is("--eval-samples")) f.eval_samples = args.integer(), f.eval_samples_given = true;
        else if (args.is("--resume")) f.resume = true;
        else if (args.is("--overwrite")) f.overwrite = true;
        else if (args.is("--check-data")) f.check_data = true;
        else if (args.is("--dry-run")) f.dry_run = true;
        else if (args.is("--eval-only")) f.eval_only = true;
        else if (args.is("--device")) f.device = args.value();
        else args.unknown();
    }
    if (!data_given && f.val_data.empty() && f.val_split == 0.0f) f.val_data = {"data/default/val.jsonl"};
    f.data = expand_data_paths(f.data);  // --data 'shards/train-*.parquet'
    f.val_data = expand_data_paths(f.val_data);
    tc.method = parse_method(f.method);
    tc.optim.lr = f.lr > 0 ? f.lr : tc.method == Method::Full ? 2e-5f : 2e-4f;  // -1: not given
    tc.optim.schedule = parse_schedule(f.schedule);
    if (f.optimizer == "adamw8bit") tc.optim.eight_bit = true;
    else if (f.optimizer != "adamw") fail("--optimizer %s: use adamw or adamw8bit", f.optimizer.c_str());
    if (f.decay_ratio_given && tc.optim.schedule != Schedule::wsd)
        fail("--decay-ratio sets the wsd schedule's cooldown: pass --lr-scheduler wsd, or leave it out");
    tc.lora.targets = lora_parse_targets(f.lora_targets);
    if (!f.val_data.empty() && f.val_split > 0)
        fail("--val-data %s and --val-split %g both give held-out data: pass one", f.val_data[0].c_str(), f.val_split);
    if (tc.optim.warmup_steps > 0 && tc.warmup_ratio > 0)
        fail("--warmup-steps %d and --warmup-ratio %g both set the warmup: pass one", tc.optim.warmup_steps, tc.warmup_ratio);
    // (both are allowed, as transformers' Trainer allows them: runs started so must resume)
    if (f.epochs_given && tc.max_steps > 0)
        printf("note: --max-steps %d sets the run's length: --epochs %g is ignored\n", tc.max_steps, tc.epochs);
    // A note, not a refusal: full runs recorded with these flags must still --resume.
    if (!f.lora_shape_flag.empty() && tc.method == Method::Full)
        printf("note: %s shapes LoRA's adapters, which --method full does not have: it is ignored\n", f.lora_shape_flag.c_str());
    if (tc.optim.lora_b_lr_ratio != 1.0f && tc.method == Method::Full)
        fail("--loraplus-lr-ratio raises the learning rate of LoRA's B matrices: it needs --method lora or qlora");
    if (tc.lora.use_dora && tc.method == Method::Full)
        fail("--use-dora adds magnitudes to LoRA adapters: it needs --method lora or qlora");
    if (!f.adapters.init_adapter.empty() && tc.method == Method::Full)
        fail("--init-adapter %s starts LoRA from an adapter: it needs --method lora or qlora", f.adapters.init_adapter.c_str());
    if (f.saves_given) {
        if (tc.method == Method::Full)
            fail("--modules-to-save trains base tensors beside LoRA's adapters: --method full trains them all already");
        tc.lora.save_modules = lora_parse_saves(f.adapters.modules_to_save);
    }
    if (f.eval_only && (f.resume || f.overwrite || tc.keep_best || tc.early_stopping > 0))
        fail("--eval-only evaluates without training and writes nothing: leave out --resume, --overwrite, --keep-best "
             "and --early-stopping (to evaluate a checkpoint, pass --init-adapter CKPT_DIR)");
    if (f.eval_only) tc.out_dir.clear();  // nothing is saved, so nothing is locked or checked either
    tc.eval_only = f.eval_only;
    if (!tc.lora.layers.empty() && tc.method == Method::Full)
        fail("--lora-layers places LoRA's adapters: --method full trains every layer's weights themselves");
    if (f.tokens_given && tc.method == Method::Full)
        fail("--trainable-tokens trains rows of the embedding beside LoRA's adapters: --method full trains them all already");
    if (f.tokens_given && f.adapters.trainable_tokens.find_first_not_of(',') == std::string::npos)
        fail("--trainable-tokens: empty list (use token ids or tokens, e.g. <|im_start|>,<|im_end|>)");
    if (tc.optim.embedding_lr > 0 && tc.method != Method::Full && !tc.lora.save_modules && !f.tokens_given &&
        f.adapters.init_adapter.empty())
        fail("--embedding-lr is the learning rate of the embedding and LM head, which LoRA trains only with "
             "--modules-to-save embed_tokens,lm_head or --trainable-tokens (or --method full)");
    if (f.padding == "longest") tc.batch.padding = Padding::longest;
    else if (f.padding == "max_length") tc.batch.padding = Padding::max_length;
    else fail("--padding %s: use longest or max_length", f.padding.c_str());
    if (tc.batch.max_seq_len < 2) fail("--max-seq-len must be at least 2");
    if (tc.group_by_length && tc.batch.packing)
        fail("--group-by-length groups examples of similar lengths into padded batches: with --packing there is no "
             "padding to save (leave one out)");
    if (tc.group_by_length && tc.batch.padding == Padding::max_length)
        fail("--group-by-length saves padding up to each batch's longest example: with --padding max_length every "
             "batch is padded to --max-seq-len anyway (use --padding longest)");
    f.data_opt.max_seq_len = tc.batch.max_seq_len;
    f.data_opt.prompt_loss_weight = f.prompt_loss_weight;
    f.data_opt.truncation = parse_truncation(f.truncation);
    f.data_opt.skip_bad_lines = f.skip_bad_lines;
}

// Ctrl-C (SIGINT) or SIGTERM while training: the step in progress (or the evaluation) finishes, a
// checkpoint is saved and the run stops (--resume continues it). A signal more than a second after
// the first stops at once, as without the handler; one sooner is taken as the same request, since
// coreutils' timeout (and a shell's kill of a process group) delivers it to the trainer twice within
// microseconds, which must not lose the checkpoint. A signal the run was started ignoring (SIGINT
// for a script's `&` job) stays ignored. After the final save release_interrupts() restores the
// default: the rest only reads.
volatile std::sig_atomic_t g_interrupt = 0;
void on_interrupt(int sig) {
    static timespec first;  // only the handler touches it, and it never runs nested (sa_mask)
    timespec now;
    clock_gettime(CLOCK_MONOTONIC, &now);  // async-signal-safe, unlike printf or now_seconds()
    if (!g_interrupt) {
        static const char note[] = "\ninterrupted: the step in progress ends, then a checkpoint is saved (interrupt "
                                   "again, a second or more later, to stop at once)\n";
        first = now;
        g_interrupt = 1;
        ssize_t ignored = write(2, note, sizeof note - 1);
        (void)ignored;
    } else if ((now.tv_sec - first.tv_sec) + (now.tv_nsec - first.tv_nsec) * 1e-9 > 1.0) {
        std::signal(sig, SIG_DFL);
        raise(sig);  // blocked while the handler runs: the default action ends the process on return
    }
}
void catch_interrupts() {
    struct sigaction sa = {};
    sa.sa_handler = on_interrupt;
    sigemptyset(&sa.sa_mask);
    sigaddset(&sa.sa_mask, SIGINT);
    sigaddset(&sa.sa_mask, SIGTERM);
    sa.sa_flags = SA_RESTART;
    for (int sig : {SIGINT, SIGTERM}) {
        struct sigaction old;
        if (sigaction(sig, nullptr, &old) == 0 && old.sa_handler != SIG_IGN) sigaction(sig, &sa, nullptr);
    }
}
void release_interrupts() {
    for (int sig : {SIGINT, SIGTERM})
        if (std::signal(sig, SIG_DFL) == SIG_IGN) std::signal(sig, SIG_IGN);
}

// How the trained weights go to other tools (./export), for a run that started from a model file with
// its tokenizer.
void print_export_hint(const Flags& f, const Trainer& t, const std::string& ckpt) {
    const std::string tok = !f.tokenizer.empty() ? f.tokenizer : model_is_imported(f.model) ? f.model : tokenizer_beside(f.model);
    if (!f.preset.empty() || !(file_exists(tok) || model_is_imported(tok))) return;
    // Quoted where a shell would split or expand them, so that the line can be copied and run.
    const std::string from = t.cfg.method == Method::Full
                                 ? "--model " + shell_quote(ckpt + "/model.bin") + " --tokenizer " + shell_quote(tok)
                                 : "--model " + shell_quote(f.model) + " --lora " + shell_quote(ckpt + "/adapter.lora") +
                                       (f.tokenizer.empty() ? "" : " --tokenizer " + shell_quote(tok));
    const std::string tmpl = f.chat_template.empty() ? "" : " --template " + f.chat_template;  // what the data was rendered with
    // (--gguf only for a model llama.cpp runs as it is)
    const char* gguf = gguf_unsupported(t.model.cfg).empty() ? " | --gguf FILE.gguf --dtype q8_0 (llama.cpp, ollama)" : "";
    // (--peft only for an adapter PEFT can hold: adapters_print warned of one it cannot)
    const bool peft = t.cfg.method != Method::Full && peft_unexportable(t.model.cfg, t.model.lora).empty();
    printf("to use it in other tools: ./export %s%s --hf DIR (transformers)%s%s\n", from.c_str(), tmpl.c_str(), gguf,
           peft ? " | --peft DIR (PEFT adapter)" : "");
    if (t.cfg.method == Method::Qlora)
        printf("qlora: the adapter was trained on the NF4 base: --nf4 merges it into that base for --hf, --gguf and "
               "--merge (without it, into the full-precision weights, which answer slightly differently), and "
               "./generate --nf4 answers with it\n");
}

// The tokenizer the data is encoded with: the model's own, or raw bytes (ids 0..255, EOS 256) for
// a random --preset model (a vocabulary of at least 257) or with --tokenizer bytes. A model file
// without a tokenizer is an error, not raw bytes: it would train a real vocabulary on byte ids.
DataTokenizer make_data_tokenizer(const Flags& f, const ModelConfig& cfg, Tokenizer& tok) {
    if (f.tokenizer != "bytes" && (f.preset.empty() || !f.tokenizer.empty())) {
        const std::string path = tokenizer_of_model(f.model, f.tokenizer, ", or --tokenizer bytes for raw bytes");
        tok = tokenizer_load_any(path);
        if ((int)tok.vocab.size() > cfg.vocab_size)
            fail("%s: the tokenizer has %zu tokens but the model only %d", path.c_str(), tok.vocab.size(), cfg.vocab_size);
        DataTokenizer dt = data_tokenizer(tok, chat_template_choice(tok.chat_template, f.chat_template, f.no_think));
        printf("tokenizer: %s (%zu tokens, template %s)\n", path.c_str(), tok.vocab.size(), chat_template_name(dt.chat_template.kind));
        if (const std::string w = template_marker_warning(dt); !w.empty()) fprintf(stderr, "warning: %s\n", w.c_str());
        return dt;
    }
    if (cfg.vocab_size < 257) fail("raw bytes need a vocabulary of at least 257 (ids 0-255 and EOS): this model has %d; pass --tokenizer", cfg.vocab_size);
    printf("tokenizer: raw bytes (ids 0-255, EOS 256)\n");
    return raw_byte_data_tokenizer(chat_template_choice(chat_template_from_name("plain"), f.chat_template, f.no_think));
}

std::string fmt_time(double s) {
    char buf[32];
    int t = (int)s;
    if (t >= 3600) snprintf(buf, sizeof buf, "%d:%02d:%02d", t / 3600, t / 60 % 60, t % 60);
    else snprintf(buf, sizeof buf, "%02d:%02d", t / 60, t % 60);
    return buf;
}

std::string fmt_bytes(size_t b) {
    char buf[32];
    snprintf(buf, sizeof buf, b >= (1ull << 30) ? "%.2f GB" : "%.1f MB", b >= (1ull << 30) ? b / 1e9 : b / 1e6);
    return buf;
}


// Answers the first n held-out conversations greedily (all at once: one batched generation) and
// scores them against the reference answers; prints the scores and the first few answers.
struct SampleEval {
    std::vector<Record> held_out;
    const Tokenizer* tok = nullptr;
    ChatTemplate chat;
};

void sample_and_score(Trainer& t, const SampleEval& se, const char* when) {
    if (se.held_out.empty() || !se.tok) return;
    double t0 = now_seconds();
    std::vector<std::vector<int32_t>> prompts;
    for (const Record& r : se.held_out) prompts.push_back(encode_prompt(*se.tok, se.chat, record_prompt(r), r.tools));
    SampleOptions so;
    // Room for the longest reference and its end of turn (and a reasoning model's think block): a
    // cap below a reference's length would make its exact match impossible. At least 64 tokens.
    so.max_new_tokens = 64;
    size_t longest_prompt = 0;
    for (size_t i = 0; i < prompts.size(); i++) {
        longest_prompt = std::max(longest_prompt, prompts[i].size());
        if (const std::optional<std::string> ref = record_reference(se.held_out[i], se.chat.kind))
            so.max_new_tokens = std::max(so.max_new_tokens, (int)encode(*se.tok, *ref).size() + 16);
    }
    if (const int ctx = t.model.cfg.max_seq_len; ctx > 0)
        so.max_new_tokens = std::max(1, std::min(so.max_new_tokens, ctx - (int)longest_prompt));
    // Generation runs in the training workspace's memory: the workspace is released meanwhile and
    // made again after, and the prompts are answered in batches whose buffers (generate_bytes) need
    // no more than it held, so sampling does not raise the run's memory peak (unless one prompt
    // alone needs more than a whole workspace: it is still answered, alone).
    const size_t budget = trainer_release_workspace(t);
    const std::vector<std::string> answers =
        answer_prompts(t.model, *se.tok, prompts, so, (int)prompts.size(), budget, *t.ops);
    trainer_restore_workspace(t);
    TaskScore score = score_answers(se.held_out, answers, se.chat);
    printf("samples %s training (%d held-out examples, greedy, %.0fs): exact match %d/%d (%.1f%%)", when, score.n,
           now_seconds() - t0, score.exact, score.n, 100 * score.exact_rate());
    if (score.fields_total > 0) printf(", JSON fields %.1f%%", 100 * score.field_rate());  // references that are JSON
    printf("\n");
    for (size_t i = 0; i < std::min<size_t>(3, se.held_out.size()); i++)
        printf("  [%zu] %s\n      -> %s\n", i + 1, record_question(se.held_out[i]).c_str(),
               answers[i].c_str());
}

// during: an evaluation after training steps, which --keep-best and --early-stopping count (the
// one before training is the baseline they do not).
// `files`: the names of the data files the held-out examples come from (Example::file); from
// several, each one's loss follows the whole's (a mix of tasks shows which of them moves).
void eval_and_print(Trainer& t, const char* when, FILE* csv, bool during, const std::vector<std::string>& files) {
    if (t.val.empty()) return;
    std::map<int, EvalSums> per_file;
    double vl = trainer_evaluate(t, t.val, &per_file);
    std::vector<std::pair<std::string, EvalSums>> by_name;  // in order; a file given twice is one
    for (const auto& [file, sums] : per_file) {
        const std::string name = file < (int)files.size() ? files[file] : strf("file %d", file);
        auto at = std::find_if(by_name.begin(), by_name.end(), [&](const auto& n) { return n.first == name; });
        if (at == by_name.end()) at = by_name.insert(by_name.end(), {name, EvalSums{}});
        at->second.loss += sums.loss, at->second.weight += sums.weight;
    }
    std::string each;
    for (const auto& [name, sums] : by_name)
        if (by_name.size() > 1 && sums.weight > 0) each += strf("%s%s %.4f", each.empty() ? " (" : ", ", name.c_str(), sums.mean());
    printf("eval %s step %d: val loss %.4f, perplexity %.2f%s\n", when, t.step, vl, std::exp(vl), each.empty() ? "" : (each + ")").c_str());
    if (csv) fprintf(csv, "%d,,,,,,,%.6f\n", t.step, vl), fflush(csv);
    if (!during) return;
    if (trainer_note_eval(t, vl)) {
        if (t.cfg.keep_best) printf("best so far: saved %s\n", trainer_save_best(t).c_str());
    } else if (t.cfg.early_stopping > 0) {
        printf("no lower val loss than %.4f (step %d) for %d of %d evaluations%s\n", t.best_val, t.best_step,
               t.evals_since_best, t.cfg.early_stopping, trainer_should_stop(t) ? ": early stopping" : "");
    }
}

// Before anything big is allocated: when the estimate says this run needs more memory than the
// backend has free, fail with the memory table and the changes of flags that would fit, instead
// of an out-of-memory error part way in (or, on the CPU, the kernel's OOM killer).
void check_memory_fits(const TrainConfig& tc, const Trainer& t, const Ops& ops) {
    const MemorySpec spec = memory_spec(t.model, tc, trainer_seq_len(tc, t.train, t.val),
                                        ops.host ? Backend::Cpu : Backend::Cuda);
    const MemoryEstimate e = memory_estimate(spec);
    // --offload-optimizer puts AdamW's moments and a gradient copy in host memory (12 bytes per
    // trainable parameter), calloc'd and first touched by the first step: without this check a host
    // that cannot hold them passes the GPU's check, the allocations succeed (overcommit), and the
    // kernel's OOM killer ends the run at its first optimizer step, with no message.
    if (e.host > 0) {
        const size_t host_available = memory_available(cpu_ops());
        if (host_available > 0 && e.host > host_available)
            fail("--offload-optimizer keeps %s in host memory (AdamW's moments and a gradient copy), and this machine "
                 "has %s available: free host memory,%s or train without --offload-optimizer (the GPU then holds the "
                 "moments and FP32 masters: ./memory estimates any setup)",
                 format_bytes(e.host).c_str(), format_bytes(host_available).c_str(),
                 tc.optim.eight_bit ? "" : " take 8-bit moments (--optimizer adamw8bit: 2 bytes a parameter instead of 8),");
    }
    const size_t available = memory_available(ops);
    if (available == 0) return;  // unknown
    // On the CPU the weights and adapters are host memory already (loaded above): in the capacity.
    const size_t held = ops.host ? e.weights + e.adapters : 0, capacity = available + held;
    if (e.total() <= capacity) return;
    print_memory_table(e, nullptr, stdout);
    std::string fixes;
    for (const MemoryFix& x : memory_fixes(spec, tc.grad_accum, capacity, tc.optim.stochastic_rounding && !ops.host))
        fixes += strf("\n  %-40s %s", x.flags.c_str(), format_bytes(x.total).c_str());
    fail("this run needs %s by the estimate above, and %s has room for %s. %s", format_bytes(e.total()).c_str(),
         ops.host ? "this machine's memory (what is available, and the model already loaded)" : "the GPU's free memory",
         format_bytes(capacity).c_str(),
         fixes.empty() ? strf("No single change of --recompute, --batch-size, --method%s fits: combine them, or "
                              "take a smaller model (./memory estimates any setup)",
                              ops.host ? (tc.optim.eight_bit ? "" : " or --optimizer adamw8bit")
                                       : (tc.optim.eight_bit ? " or --offload-optimizer" : ", --optimizer adamw8bit or --offload-optimizer")).c_str()
                       : ("Each of these fits:" + fixes).c_str());
}

int run(int argc, char** argv) {
    std::vector<std::string> recorded = recorded_resume_args(argc, argv);  // `./train --resume` alone
    std::vector<char*> recorded_argv = {argv[0]};
    if (!recorded.empty()) {
        for (std::string& a : recorded) recorded_argv.push_back(a.data());
        argc = (int)recorded_argv.size(), argv = recorded_argv.data();
    }
    Flags f;
    parse_flags(argc, argv, f);
    if (!f.dry_run && !f.check_data) {
        if (!f.tc.out_dir.empty()) lock_out_dir(f.tc.out_dir);
        check_out_dir(f.tc.out_dir, f.resume, f.overwrite, {f.adapters.init_adapter, f.preset.empty() ? f.model : ""});
    }
    Trainer t;
    ModelConfig cfg;
    std::vector<float> params;
    double quantized_in = 0;  // --method qlora: seconds the base took to quantize
    if (!f.preset.empty()) {
        cfg = config_preset(f.preset);
        if (f.check_data) {
        } else if (f.tc.method == Method::Qlora) {  // quantized a projection at a time: never whole in FP32
            const double q0 = now_seconds();
            model_init_random_quantized(t.model, cfg, f.tc.seed);
            quantized_in = now_seconds() - q0;
        } else {
            model_init_random(cfg, params, f.tc.seed);
        }
        printf("model: random %s (%s)\n", f.preset.c_str(), cfg.describe().c_str());
    } else {
        if (!file_exists(f.model))
            fail("%s: model not found. Run `make` to fetch the default model, convert yours with ./convert, or pass --preset NAME for random weights",
                 f.model.c_str());
        // --check-data needs the model's shape (its vocabulary), not its weights
        if (f.check_data) {
            cfg = model_read_config(f.model);
        } else if (f.tc.method == Method::Qlora) {  // read into NF4 a projection at a time: never whole in FP32
            const double q0 = now_seconds();
            model_load_nf4(t.model, f.model);
            quantized_in = now_seconds() - q0;
            cfg = t.model.cfg;
        } else {
            model_load(f.model, cfg, params);
        }
        printf("model: %s (%s)\n", f.model.c_str(), cfg.describe().c_str());
    }

    if (cfg.max_seq_len > 0 && f.tc.batch.max_seq_len > cfg.max_seq_len)
        printf("note: --max-seq-len %d is longer than the model's context of %d positions: it was never trained on "
               "positions past that\n", f.tc.batch.max_seq_len, cfg.max_seq_len);
    Tokenizer tok;
    DataTokenizer dt = make_data_tokenizer(f, cfg, tok);
    if (f.check_data) {  // the held-out files too: training stops on their problems as well
        std::vector<std::string> all = f.data;
        all.insert(all.end(), f.val_data.begin(), f.val_data.end());
        check_datasets(all, dt, f.data_opt, stdout);
        return 0;
    }
    if (t.model.nf4.empty()) model_init(t.model, cfg, std::move(params));
    t.train = load_datasets(f.data, dt, f.data_opt, "data", stdout);
    if (!f.val_data.empty()) {
        t.val = load_datasets(f.val_data, dt, f.data_opt, "val data", stdout);
        for (const std::string& v : f.val_data)
            for (const std::string& d : f.data)
                if (fs::weakly_canonical(v) == fs::weakly_canonical(d))
                    printf("note: %s is training and validation data both: the validation loss and scores measure "
                           "examples the run trains on\n", v.c_str());
    } else if (f.val_split > 0) {
        split_train_val(t.train, t.val, f.val_split, f.tc.seed);
        printf("val split: %zu train, %zu val examples\n", t.train.size(), t.val.size());
    }
    const std::vector<std::string>& val_files = f.val_data.empty() ? f.data : f.val_data;  // what Example::file names
    if ((f.tc.keep_best || f.tc.early_stopping > 0) && t.val.empty())
        fail("--keep-best and --early-stopping compare validation losses: pass --val-data FILE or --val-split F");
    if (f.eval_only && t.val.empty())
        fail("--eval-only evaluates on held-out data: pass --val-data FILE or --val-split F");
    if ((f.tc.eval_every > 0 || (f.eval_samples_given && f.eval_samples > 0)) && t.val.empty())
        fail("--eval-every and --eval-samples evaluate on held-out data: pass --val-data FILE or --val-split F");
    if (f.tc.early_stopping > 0 && f.tc.eval_every <= 0)
        fail("--early-stopping %d needs evaluations during training: pass --eval-every N", f.tc.early_stopping);
    if (f.tc.keep_best && f.tc.out_dir.empty()) fail("--keep-best writes OUT/best/: pass --out DIR");
    if (f.tc.keep_best && f.tc.eval_every <= 0)
        printf("note: --keep-best without --eval-every compares only the final evaluation: OUT/best/ will be the last weights\n");

    if (f.tc.method == Method::Qlora)
        printf("qlora: base projections quantized to NF4 with double-quantized scales in %.1fs (%s for the base)\n",
               quantized_in, fmt_bytes(t.model.base_bytes()).c_str());
    adapters_setup(t, f.tc, f.adapters, tok);
    const Ops& ops = select_ops(f.device.c_str());
    printf("device: %s%s%s\n", ops.name,
           !f.tc.offload_optimizer ? "" : ops.host ? " (--offload-optimizer: nothing to offload, the CPU backend's optimizer is in host memory)"
                                                   : ", optimizer offloaded: AdamW runs on the CPU",
           !f.tc.optim.stochastic_rounding ? "" : ops.host ? " (--stochastic-rounding: nothing to round, the CPU backend's weights are FP32)"
                                                           : ", BF16 weights rounded stochastically");
    if (!f.eval_only) check_memory_fits(f.tc, t, ops);  // (what it sizes is training's)
    trainer_init(t, f.tc, ops);
    printf("method: %s, %zu trainable parameters (%.2f%% of %lld)\n", method_name(f.tc.method), t.model.num_trainable(),
           100.0 * t.model.num_trainable() / t.model.cfg.num_params(), (long long)t.model.cfg.num_params());
    adapters_print(t, f.tc, tok);
    if (f.tc.method == Method::Full && f.tc.optim.embedding_lr > 0)
        printf("embedding and LM head at lr %g (--embedding-lr), the other weights at %g\n", f.tc.optim.embedding_lr,
               f.tc.optim.lr);
    if (f.tc.neftune_alpha > 0) {
        const int L = trainer_seq_len(f.tc, t.train, t.val);
        printf("neftune: alpha %g, uniform noise of ±%.3g on the embeddings at rows of up to %d tokens (alpha/sqrt(L·%d), "
               "more in shorter batches); none when evaluating\n",
               f.tc.neftune_alpha, f.tc.neftune_alpha / std::sqrt((double)L * t.model.cfg.dim), L, t.model.cfg.dim);
    }
    if (f.tc.group_by_length)
        printf("group by length: %.1f%% of the first epoch's batch positions are padding (%.1f%% in shuffled order)\n",
               100 * epoch_padding(t, 0, true), 100 * epoch_padding(t, 0, false));
    const bool wsd = f.tc.optim.schedule == Schedule::wsd;
    const int cooldown = std::max(0, t.total_steps - lr_decay_start(t.cfg.optim, t.total_steps));
    printf("steps: %d (batch %d x accum %d, max seq %d%s), lr %g %s, warmup %d%s\n", t.total_steps,
           f.tc.batch.batch_size, f.tc.grad_accum, f.tc.batch.max_seq_len, f.tc.batch.packing ? ", packed" : "",
           f.tc.optim.lr, schedule_name(f.tc.optim.schedule), t.cfg.optim.warmup_steps,
           wsd ? strf(", cooldown over the last %d", cooldown).c_str() : "");
    if (wsd) {
        // the cooldown's first step runs at lr (progress 0, as transformers'); fewer than 2 never lowers it
        const int asked = wsd_cooldown_steps(t.cfg.optim, t.total_steps);
        if (cooldown < 2)
            printf("note: the wsd cooldown has %d step%s, so the learning rate never falls below --lr %g: raise "
                   "--decay-ratio or the run's length%s\n", cooldown, cooldown == 1 ? "" : "s", f.tc.optim.lr,
                   t.cfg.optim.warmup_steps >= t.total_steps - 1 ? ", or shorten the warmup" : "");
        else if (cooldown < asked)
            printf("note: the warmup (%d steps) overlaps the wsd cooldown of %d: it starts after the warmup, %d steps\n",
                   t.cfg.optim.warmup_steps, asked, cooldown);
    }
    if (t.cfg.optim.warmup_steps > t.total_steps)  // the warmup's last step runs at --lr (lr_at)
        printf("note: the warmup (%d steps) is longer than the run (%d steps): the learning rate never reaches --lr %g\n",
               t.cfg.optim.warmup_steps, t.total_steps, f.tc.optim.lr);
    if (f.tc.early_stopping > 0 && (int64_t)f.tc.eval_every * (f.tc.early_stopping + 1) > t.total_steps)
        printf("note: --early-stopping %d with --eval-every %d cannot stop this run of %d steps (it needs %d evaluations)\n",
               f.tc.early_stopping, f.tc.eval_every, t.total_steps, f.tc.early_stopping + 1);
    MemoryUse used = trainer_memory(t);
    if (!f.eval_only) print_memory_table(memory_estimate(trainer_memory_spec(t)), &used, stdout);
    if (f.dry_run) return 0;

    if (f.overwrite)
        if (int removed = trainer_remove_checkpoints(t.cfg.out_dir))
            printf("overwrite: removed %d checkpoint(s) of the earlier run in %s\n", removed, t.cfg.out_dir.c_str());
    if (f.resume) {
        std::string dir = find_latest_checkpoint(t.cfg.out_dir);
        if (dir.empty()) printf("resume: no checkpoint in %s, starting from scratch\n", t.cfg.out_dir.c_str());
        else {
            trainer_load_checkpoint(t, dir);
            printf("resume: %s (step %d of %d%s)\n", dir.c_str(), t.step, t.total_steps,
                   t.step >= t.total_steps ? ": the run is complete, nothing left to train" : "");
            if (trainer_should_stop(t))
                printf("resume: the run stopped early at step %d (no lower val loss than step %d's %.4f in %d evaluations)\n",
                       t.step, t.best_step, t.best_val, t.evals_since_best);
        }
    }
    FILE* csv = nullptr;
    double elapsed_base = 0;  // a resumed run's training time before its checkpoint (from log.csv)
    if (!t.cfg.out_dir.empty()) {
        std::error_code ec;
        std::filesystem::create_directories(t.cfg.out_dir, ec);
        if (ec) fail("--out %s: cannot create the directory: %s", t.cfg.out_dir.c_str(), ec.message().c_str());
        std::string path = t.cfg.out_dir + "/log.csv";
        // A resumed run keeps the log up to its checkpoint's step and drops the lines of steps the
        // killed run made after it: they are redone, so each step appears once.
        // Its elapsed_s goes on from the last kept step's, so the column is the run's training time.
        std::string kept = "step,loss,lr,grad_norm,tokens,tokens_per_s,elapsed_s,val_loss\n";
        if (t.step > 0 && file_exists(path)) {
            std::string old = read_file(path);
            for (size_t a = old.find('\n') + 1, b; a < old.size(); a = b + 1) {
                b = old.find('\n', a);
                if (b == std::string::npos) break;
                if (atoi(old.c_str() + a) > t.step) continue;
                const std::string line = old.substr(a, b - a);
                kept += line + "\n";
                const std::vector<std::string> col = split(line, ',');  // elapsed_s: empty on evaluation lines
                if (col.size() > 6 && !col[6].empty()) elapsed_base = atof(col[6].c_str());
            }
        }
        csv = fopen(path.c_str(), "w");
        if (!csv) fail("%s: cannot write the log", path.c_str());
        fputs(kept.c_str(), csv);
        save_run_command(t.cfg.out_dir, argc, argv);
    }
    SampleEval se;
    if (f.eval_samples_given && f.eval_samples > 0 && tok.vocab.empty())
        printf("note: --eval-samples answers held-out prompts with the model's tokenizer, and this run has raw bytes: "
               "none are answered\n");
    if (f.eval_samples > 0 && !tok.vocab.empty() && !t.val.empty()) {
        // The held-out conversations: the val files', or with --val-split the records of the data
        // files whose examples the split moved to val; taken from the files in turn, and a file given
        // twice read once (the split keeps identical examples on one side: its copies' records match).
        // A record is named by its index in the file, not its line: a one-line JSON array's records
        // all start on line 1, and by line every one of them was taken as held out.
        const std::vector<std::string>& paths = !f.val_data.empty() ? f.val_data : f.data;
        std::set<std::pair<int, int>> val_records;  // (file, record)
        for (const Example& e : t.val) val_records.insert({e.file, e.record});
        std::vector<std::vector<Record>> per_file;
        std::set<std::string> read;
        for (int i = 0; i < (int)paths.size(); i++) {
            if (!read.insert(paths[i]).second) continue;
            per_file.emplace_back();
            const std::vector<Record> records = parse_records(read_file(paths[i]), paths[i], is_records_path(paths[i])).records;
            for (size_t k = 0; k < records.size(); k++)
                if (!records[k].is_text() && val_records.count({i, (int)k})) per_file.back().push_back(records[k]);
        }
        for (size_t k = 0, more = 1; more && (int)se.held_out.size() < f.eval_samples; k++) {
            more = 0;
            for (const std::vector<Record>& recs : per_file)
                if (k < recs.size() && (int)se.held_out.size() < f.eval_samples) se.held_out.push_back(recs[k]), more = 1;
        }
        se.tok = &tok;
        se.chat = dt.chat_template;
    }
    if (f.eval_only) {
        eval_and_print(t, "without training at", nullptr, false, val_files);
        sample_and_score(t, se, "without");
        return 0;
    }
    if (t.step == 0) {
        eval_and_print(t, "before", csv, false, val_files);
        sample_and_score(t, se, "before");
    }
    double t0 = now_seconds(), tokens0 = t.tokens_seen;
    int step0 = t.step, saved_step = -1;
    std::string saved;  // the checkpoint of saved_step, not to be written twice
    auto save = [&] {
        if (saved_step != t.step) saved = trainer_save_checkpoint(t), saved_step = t.step;
        return saved;
    };
    catch_interrupts();
    while (t.step < t.total_steps && !trainer_should_stop(t)) {
        double ts = now_seconds();
        StepResult r = trainer_step(t);
        double now = now_seconds(), elapsed = now - t0;
        double tps = (t.tokens_seen - tokens0) / std::max(1e-9, elapsed);
        double eta = elapsed / (t.step - step0) * (t.total_steps - t.step);
        if (t.step % f.log_every == 0 || t.step == t.total_steps)
            printf("step %5d/%d | loss %.4f | lr %.2e | grad norm %.3f | %.0f tok/s | %.2fs/step | %s elapsed, ETA %s | mem %s\n",
                   t.step, t.total_steps, r.loss, r.lr, r.grad_norm, tps, now - ts, fmt_time(elapsed).c_str(),
                   fmt_time(eta).c_str(), fmt_bytes(trainer_memory(t).total()).c_str());
        fflush(stdout);
        if (csv)
            fprintf(csv, "%d,%.6f,%.6e,%.6f,%.0f,%.1f,%.2f,\n", t.step, r.loss, r.lr, r.grad_norm, r.tokens, tps,
                    elapsed_base + elapsed), fflush(csv);
        if (t.cfg.eval_every > 0 && t.step % t.cfg.eval_every == 0 && t.step < t.total_steps) eval_and_print(t, "at", csv, true, val_files);
        if (!t.cfg.out_dir.empty() && t.cfg.save_every > 0 && t.step % t.cfg.save_every == 0 && t.step < t.total_steps)
            printf("saved %s\n", save().c_str());
        if (g_interrupt && t.step < t.total_steps) {
            if (t.cfg.out_dir.empty()) fail("interrupted at step %d of %d (no --out: nothing saved)", t.step, t.total_steps);
            fail("interrupted at step %d of %d: saved %s; ./train --resume%s continues the run (the same command with "
                 "--resume does too)", t.step, t.total_steps, save().c_str(),
                 t.cfg.out_dir == "out" ? "" : (" --out " + shell_quote(t.cfg.out_dir)).c_str());
        }
    }
    // Steps ran and did not stop early (which has just evaluated); a run resumed at its end had its
    // final evaluation before that checkpoint. An interrupt during the last step skips to the save.
    if (t.step > step0 && !trainer_should_stop(t) && !g_interrupt) eval_and_print(t, "after", csv, true, val_files);
    if (!ops.host) {  // on the CPU the weights are plain host vectors, outside the allocator's count
        MemStats ms = ops.mem_stats();
        printf("peak %s memory: %s allocated at once (every category); the driver reports %s in use\n", ops.name,
               fmt_bytes(ms.peak_total).c_str(), fmt_bytes(ms.device_used).c_str());
    }
    if (!t.cfg.out_dir.empty()) {
        // A resumed run that had nothing left to train keeps its checkpoint as it is.
        // (early stopping on a --save-every step has printed its save already)
        const bool trained = t.step > step0, fresh = trained && saved_step != t.step;
        const std::string ckpt = trained ? save() : find_latest_checkpoint(t.cfg.out_dir);
        if (fresh || !trained) printf("%s %s\n", fresh ? "saved" : "checkpoint:", ckpt.c_str());
        print_export_hint(f, t, ckpt);
        if (t.cfg.keep_best && t.best_step >= 0) {
            // a run resumed with --keep-best after its best evaluation did not keep that one
            std::string best = t.cfg.out_dir + "/best", kept = file_exists(best + "/best.txt") ? read_file(best + "/best.txt") : "";
            if (kept.rfind("step " + std::to_string(t.best_step) + "\n", 0) == 0)
                printf("best evaluation: step %d, val loss %.4f: %s/ (in place of %s to use it)\n", t.best_step, t.best_val,
                       best.c_str(), ckpt.c_str());
            else
                printf("best evaluation: step %d, val loss %.4f, not kept: the run had no --keep-best then\n", t.best_step, t.best_val);
        }
    }
    release_interrupts();  // the rest only reads the weights: a signal stops it at once
    if (!g_interrupt) sample_and_score(t, se, "after");
    if (csv) {
        fclose(csv);
        write_loss_plot(t.cfg.out_dir + "/log.csv", t.cfg.out_dir + "/loss.svg");
        printf("loss curve: %s/loss.svg, log: %s/log.csv\n", t.cfg.out_dir.c_str(), t.cfg.out_dir.c_str());
    }
    return 0;
}

}  // namespace

int main(int argc, char** argv) {
    setvbuf(stdout, nullptr, _IOLBF, 0);  // progress lines appear at once, also through tee or a pipe
    return run_main([&] { return run(argc, argv); });
}
