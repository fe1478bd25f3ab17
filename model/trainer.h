// The training loop's state and one optimizer step: micro-batches with gradient accumulation,
// clipping, AdamW, the schedule, evaluation, and checkpoints that resume exactly.
#pragma once
#include <cstdint>
#include <map>
#include <string>
#include <vector>

#include "data/example.h"
#include "model/model.h"
#include "model/optimizer.h"

struct TrainConfig {
    Method method = Method::Lora;
    LoraConfig lora;
    OptimConfig optim;
    float warmup_ratio = 0.0f;   // used when optim.warmup_steps is 0: warmup = ratio × total steps
    BatchOptions batch;          // rows per micro-batch, max_seq_len, padding, packing
    int grad_accum = 1;          // micro-batches per optimizer step
    int max_steps = 0;           // 0: run `epochs` epochs
    float epochs = 1.0f;
    bool recompute = false;      // gradient checkpointing
    float neftune_alpha = 0.0f;  // NEFTune's noise on the embeddings while training (0: off)
    bool group_by_length = false;  // each epoch's order grouped by length (data/example.h; not with packing)
    // Non-host backends: AdamW runs on the host (the CPU backend's kernel) on host copies of the
    // gradients and moments, with the host model's FP32 parameters (kept in every run) as the
    // masters, and the updated parameters go back as the BF16 copy. Moves 12 bytes per trainable
    // parameter from the GPU to the host, at the cost of moving the gradients down and the
    // parameters up once per step. No effect on the CPU backend.
    bool offload_optimizer = false;
    bool eval_only = false;  // evaluation without training (./train --eval-only): no gradients, optimizer state or masters
    uint64_t seed = 42;
    std::string out_dir;         // checkpoints and the CSV log; empty: none
    int save_every = 0;          // steps between checkpoints (0: only at the end)
    int keep_last = 2;           // checkpoints kept (0: all)
    int eval_every = 0;          // steps between evaluations (0: only at the start and end)
    // Early stopping: stop after this many evaluations in a row without a new best validation loss
    // (0: off). Needs eval_every and validation data.
    int early_stopping = 0;
    bool keep_best = false;      // keep the weights of the best evaluation in out_dir/best/
    std::string signature() const;  // what must match to resume a run exactly
};

struct Trainer {
    TrainConfig cfg;
    const Ops* ops = nullptr;
    Model model;
    Workspace ws;
    AdamState opt;
    Buffer grads;                 // FP32, one per trainable parameter, in the backend's memory
    Buffer host_grads;            // offload_optimizer: their copy in host memory
    std::vector<Example> train, val;
    int step = 0, total_steps = 0;
    uint64_t epoch = 0;
    size_t cursor = 0;            // next example in this epoch's order
    std::vector<size_t> order;    // this epoch's shuffled example order (from seed and epoch)
    uint64_t data_hash = 0;       // of train and val (ids and weights): a checkpoint keeps it
    uint64_t base_hash = 0;       // a fingerprint of the weights the run started from: a checkpoint keeps it
    double tokens_seen = 0;       // non-padding tokens trained on
    // The evaluations during training (not the one before it): the lowest validation loss, its
    // step, and how many evaluations since have not beaten it. Saved in checkpoints.
    double best_val = 0;          // meaningful when best_step >= 0
    int best_step = -1;
    int evals_since_best = 0;
};

struct StepResult {
    double loss = 0, grad_norm = 0, tokens = 0;
    float lr = 0;
};

// Tokens per row the workspace is sized for: max_seq_len, or with dynamic padding the longest
// example of train and val when shorter.
int trainer_seq_len(const TrainConfig& cfg, const std::vector<Example>& train, const std::vector<Example>& val);
// The share of epoch `epoch`'s batch positions (rows × T of every micro-batch) that are padding, with
// its order grouped by length or not (whatever t.cfg.group_by_length says).
double epoch_padding(const Trainer& t, uint64_t epoch, bool grouped);
// Sets up buffers, the example order and the step count, and puts the model on the backend. The
// model (with its method set) and the data must already be in `t`.
void trainer_init(Trainer& t, const TrainConfig& cfg, const Ops& ops);
// The gradients of the last step, as host FP32 (tests, diagnostics).
std::vector<float> trainer_gradients(const Trainer& t);
// One optimizer step. Fails (naming the step and what to change) on a NaN/Inf loss or gradient.
StepResult trainer_step(Trainer& t);
// Weighted mean loss over `examples` (no dropout, no gradients). With per_file, also each data
// file's share (Example::file → its summed loss and loss weight): examples of several files are
// batched file by file, so that each file's loss is its own.
struct EvalSums {
    double loss = 0, weight = 0;  // summed token losses (times their weights) and loss weights
    double mean() const { return weight > 0 ? loss / weight : 0.0; }
};
double trainer_evaluate(Trainer& t, const std::vector<Example>& examples, std::map<int, EvalSums>* per_file = nullptr);
// The workspace is idle between steps, so generation (train.cu's sample evaluation) can have its
// memory: release frees it and returns its bytes, restore makes it again, of the same shape.
size_t trainer_release_workspace(Trainer& t);
void trainer_restore_workspace(Trainer& t);

// Bytes of each part of the training state, for the memory table.
struct MemoryUse {
    size_t weights = 0, adapters = 0, gradients = 0, optimizer = 0, activations = 0;
    size_t backend = 0;  // CUDA: the backend's own scratch now (it grows to its size in the first step)
    size_t offloaded = 0;  // offload_optimizer: host memory the optimizer adds (moments, gradient copy)
    size_t total() const { return weights + adapters + gradients + optimizer + activations + backend; }
};
MemoryUse trainer_memory(const Trainer& t);

// Records an evaluation at t.step during training; true when it is the best so far (strictly lower).
bool trainer_note_eval(Trainer& t, double val_loss);
// True once cfg.early_stopping evaluations in a row have not improved on the best, before the last
// step (a run that reached it has not stopped early).
bool trainer_should_stop(const Trainer& t);
// The trainable weights (adapter.lora or model.bin) into out_dir/best/, with best.txt (step and
// validation loss), written into best.tmp and renamed. Returns the directory.
std::string trainer_save_best(Trainer& t);

// Checkpoints live in out_dir/ckpt-NNNNNNNN/ (adapter.lora or model.bin, and train.state). A
// checkpoint is written into a .tmp directory that is renamed when complete, so a kill leaves
// either the previous checkpoint or the new one, never a half-written one. Returns its directory.
std::string trainer_save_checkpoint(Trainer& t);
// Newest complete checkpoint directory in out_dir, or "" when there is none.
std::string find_latest_checkpoint(const std::string& out_dir);
// Deletes every checkpoint in out_dir and its best/ (a run started over with --overwrite); returns
// how many checkpoints there were.
int trainer_remove_checkpoints(const std::string& out_dir);
// Restores weights/adapters, optimizer moments, step and data cursor from a checkpoint directory.
// Fails when the checkpoint was made with different settings (cfg.signature()).
void trainer_load_checkpoint(Trainer& t, const std::string& dir);
