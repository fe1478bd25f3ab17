// The model's answers to conversations, as ./train's sample evaluation and ./generate --data ask for
// them: each conversation rendered by the chat template with the generation prompt (as training
// renders the prompt part of an example), answered until the model ends its turn, and decoded.
#pragma once
#include <functional>
#include <string>
#include <vector>

#include "model/generate.h"
#include "tokenizer/tokenizer.h"

// The token ids of a conversation's prompt: rendered with the generation prompt (and the
// conversation's tool definitions, where it has them), BOS first where the tokenizer has one.
std::vector<int32_t> encode_prompt(const Tokenizer& tok, const ChatTemplate& chat, const std::vector<ChatMessage>& prompt,
                                   const std::vector<std::string>& tools = {});

// A chat's next prompt: the conversation (ending with the user's new turn) encoded as by
// encode_prompt, after dropping its oldest exchanges from `conversation` (a system prompt stays)
// until the prompt and max_new more tokens fit `context` positions (0: no limit). Fails, naming
// the sizes, when the new turn alone does not fit.
std::vector<int32_t> encode_chat_prompt(const Tokenizer& tok, const ChatTemplate& chat,
                                        std::vector<ChatMessage>& conversation, int context, int max_new,
                                        const std::vector<std::string>& tools = {});

// Answers every prompt (token ids from encode_prompt), in consecutive batches of at most `batch`
// prompts that need at most max_bytes of backend memory to generate (generate_bytes; 0: no limit;
// a prompt that alone needs more is answered alone). Each batch is one generate() call. With
// LongRoPE, a batch holds only prompts that take the same RoPE table throughout (a prompt whose
// answer may pass the original context is answered alone): each answer is the prompt's alone.
// on_batch(first, answers), when given, sees each batch's answers as soon as they are done (first:
// the index of its first prompt), so that a caller can write them out before the next batch
// starts. Returns all answers, in the prompts' order.
std::vector<std::string> answer_prompts(const Model& m, const Tokenizer& tok, const std::vector<std::vector<int32_t>>& prompts,
                                        const SampleOptions& opt, int batch, size_t max_bytes, const Ops& ops,
                                        const std::function<void(size_t first, const std::vector<std::string>& answers)>&
                                            on_batch = nullptr);
