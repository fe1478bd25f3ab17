// What ./train puts on the model besides its base: LoRA's adapters, fresh (tc.lora) or from
// --init-adapter, with their saved modules and trainable tokens; and the lines that say so.
#pragma once
#include <string>

#include "model/trainer.h"
#include "tokenizer/tokenizer.h"

// The adapter flags as given (for the checks that need the tokenizer or the loaded adapter, and
// for messages).
struct AdapterFlags {
    std::string init_adapter;      // --init-adapter: a .lora file or a PEFT directory
    std::string modules_to_save;   // --modules-to-save (tc.lora.save_modules holds its bits)
    std::string trainable_tokens;  // --trainable-tokens: ids, or tokens as the vocabulary writes them
};

// Adds the adapters to t.model for LoRA and QLoRA (nothing for full fine-tuning) and settles tc.lora
// on what is trained: --init-adapter's shape replaces the flags' (a flag it cannot honour fails,
// naming it), the trainable tokens are resolved through `tok` (untied models: the embedding's and
// the LM head's rows of each; tied: the one table's).
void adapters_setup(Trainer& t, TrainConfig& tc, const AdapterFlags& a, const Tokenizer& tok);

// What LoRA trains, for the run's log: rank, alpha, targets, DoRA, LoRA+; the saved modules and the
// trainable tokens with their learning rate; and a note naming the data's tokens whose rows the base
// never trained (untrained_tokens) when nothing trains them, with the flag that would.
void adapters_print(const Trainer& t, const TrainConfig& tc, const Tokenizer& tok);
