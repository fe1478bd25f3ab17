#include "model/answer.h"

#include <algorithm>

std::vector<int32_t> encode_prompt(const Tokenizer& tok, const ChatTemplate& chat, const std::vector<ChatMessage>& prompt,
                                   const std::vector<std::string>& tools) {
    return encode_with_bos(tok, chat_render(chat, prompt, true, tools));
}

std::vector<int32_t> encode_chat_prompt(const Tokenizer& tok, const ChatTemplate& chat,
                                        std::vector<ChatMessage>& conversation, int context, int max_new,
                                        const std::vector<std::string>& tools) {
    // Trimmed on a copy: when even the new turn alone does not fit, the conversation stays whole.
    std::vector<ChatMessage> kept = conversation;
    const size_t first = !kept.empty() && kept[0].role == "system" ? 1 : 0;
    for (;;) {
        std::vector<int32_t> ids = encode_prompt(tok, chat, kept, tools);
        if (context <= 0 || (int)ids.size() + max_new <= context) {
            conversation = std::move(kept);
            return ids;
        }
        if (kept.size() - first <= 1)
            fail("the message makes a prompt of %zu tokens; with %d tokens of answer that is more than the model's "
                 "context of %d: send a shorter one (or lower --max-tokens)", ids.size(), max_new, context);
        // The oldest exchange: its user turn and the assistant's answers and tool results (so that
        // the conversation still starts with a user turn, as templates expect). A new tool result
        // whose exchange went with it would answer a call no longer there: it does not fit.
        kept.erase(kept.begin() + first);
        while (kept.size() - first > 1 && (kept[first].role == "assistant" || kept[first].role == "tool"))
            kept.erase(kept.begin() + first);
        if (kept[first].role != "user")
            fail("the tool result and the exchange whose call it answers make a prompt of %zu tokens; with %d tokens of "
                 "answer that is more than the model's context of %d: send a shorter result (or lower --max-tokens)",
                 ids.size(), max_new, context);
    }
}

std::vector<std::string> answer_prompts(const Model& m, const Tokenizer& tok, const std::vector<std::vector<int32_t>>& prompts,
                                        const SampleOptions& opt, int batch, size_t max_bytes, const Ops& ops,
                                        const std::function<void(size_t, const std::vector<std::string>&)>& on_batch) {
    if (batch < 1) fail("answer_prompts: batch %d: use at least 1", batch);
    const std::vector<int32_t> stops = end_of_turn_ids(tok);
    // LongRoPE: a batch takes one RoPE table, the long one once its longest sequence passes the original
    // context (generate). Prompts share a batch only where that is what each gets alone: all short to
    // the last token (0), or all past the context from the start (1); one that passes it while
    // answering (2) goes alone.
    auto rope_phase = [&](const std::vector<int32_t>& p) {
        if (m.cfg.long_rope_for((int64_t)p.size())) return 1;
        return m.cfg.long_rope_for((int64_t)p.size() + std::max(opt.max_new_tokens - 1, 0)) ? 2 : 0;
    };
    std::vector<std::string> answers;
    for (size_t first = 0; first < prompts.size();) {
        std::vector<std::vector<int32_t>> some = {prompts[first]};
        const int phase = rope_phase(prompts[first]);
        while (first + some.size() < prompts.size() && (int)some.size() < batch && phase != 2 &&
               rope_phase(prompts[first + some.size()]) == phase) {
            some.push_back(prompts[first + some.size()]);
            if (max_bytes && generate_bytes(m, some, opt, ops.act_size) > max_bytes) {
                some.pop_back();
                break;
            }
        }
        std::vector<std::string> done;
        SampleOptions o = opt;
        o.vocab = (int)tok.vocab.size();  // padded embedding rows are never picked
        o.first_seq = opt.first_seq + first;  // each prompt its own random stream, whatever its batch
        for (const std::vector<int32_t>& ids : generate(m, some, o, stops, nullptr, ops)) done.push_back(decode(tok, ids));
        if (on_batch) on_batch(first, done);
        answers.insert(answers.end(), done.begin(), done.end());
        first += some.size();
    }
    return answers;
}
