#include "model/adapter_setup.h"

#include <algorithm>

#include "model/lora_peft.h"
#include "model/util.h"

namespace {
// The trainable tokens the flag names, in the tables LoRA can train them in: an untied model's
// embedding and LM head alike (a new token is read and written), a tied model's one table.
void set_tokens(const Model& m, LoraConfig& lc, const std::string& list, const Tokenizer& tok) {
    const std::vector<int32_t> ids = lora_parse_tokens(list, [&](const std::string& s) { return token_id(tok, s); });
    lc.tokens[LORA_TABLE_EMBED] = ids;
    if (!m.cfg.tied_embeddings) lc.tokens[LORA_TABLE_LM_HEAD] = ids;
    lora_check_tokens(m.cfg, lc, "--trainable-tokens");
}

// A token for messages: its id, and its text when the tokenizer has one.
std::string token_name(const Tokenizer& tok, int32_t id) {
    const bool text = (size_t)id < tok.token_bytes.size();
    return strf("%d%s%s%s", id, text ? " \"" : "", text ? tok.token_bytes[id].c_str() : "", text ? "\"" : "");
}

// A base model's untrained rows among the tokens the data uses (untrained_tokens: its chat version's
// template tokens, say) that this run does not train: LoRA cannot move them, so the run says which
// flag does.
void note_untrained_tokens(const Trainer& t, const Tokenizer& tok) {
    const Model& m = t.model;
    if (m.method == Method::Full || m.lora_layout.embed != SIZE_MAX) return;  // trained anyway
    std::vector<char> seen(m.cfg.vocab_size, 0);  // each id once, not every token of the data
    for (const std::vector<Example>* set : {&t.train, &t.val})
        for (const Example& e : *set)
            for (int32_t id : e.tokens)
                if (id >= 0 && id < (int32_t)seen.size()) seen[id] = 1;
    for (const std::vector<int32_t>& ids : m.lora.tokens)
        for (int32_t id : ids) seen[id] = 0;  // (a row trained in one table only is the user's choice)
    std::vector<int32_t> used;
    for (int32_t id = 0; id < (int32_t)seen.size(); id++)
        if (seen[id]) used.push_back(id);
    const std::vector<int32_t> bad = untrained_tokens(m, used);
    if (bad.empty()) return;
    std::string names, ids;
    for (size_t i = 0; i < bad.size(); i++) {
        if (i < 6) names += (i ? ", " : "") + token_name(tok, bad[i]);
        ids += strf("%s%d", i ? "," : "", bad[i]);
    }
    printf("note: %zu token%s of the data ha%s an untrained embedding or LM head row in this model (under 1e-3 of the "
           "median row's norm): %s%s. LoRA cannot train those rows, so the model reads such a token as nothing and "
           "never writes it: pass %s, or start from the model's chat version\n",
           bad.size(), bad.size() == 1 ? "" : "s", bad.size() == 1 ? "s" : "ve", names.c_str(), bad.size() > 6 ? ", ..." : "",
           bad.size() <= 64 ? ("--trainable-tokens " + ids + " (their rows alone)").c_str()
           : m.cfg.tied_embeddings ? "--modules-to-save embed_tokens" : "--modules-to-save embed_tokens,lm_head");
}
}  // namespace

void adapters_setup(Trainer& t, TrainConfig& tc, const AdapterFlags& a, const Tokenizer& tok) {
    if (tc.method == Method::Full) return;
    if (a.init_adapter.empty()) {
        lora_check_layers(t.model.cfg, tc.lora, "--lora-layers");
        tc.lora.save_modules = lora_saves(t.model.cfg, tc.lora.save_modules);  // tied: the one tensor is both
        if (!a.trainable_tokens.empty()) set_tokens(t.model, tc.lora, a.trainable_tokens, tok);
        model_add_lora(t.model, tc.lora, tc.seed);
        return;
    }
    // The adapter fixes the shape of what is trained (rank, alpha, rsLoRA, targets, DoRA, saved
    // modules, trainable tokens); dropout is this run's. The signature takes them, so --resume finds
    // the same run.
    LoraConfig lc;
    std::vector<float> adapters;
    lora_load_any(a.init_adapter, t.model.cfg, lc, adapters);
    if (tc.lora.use_dora && !lc.use_dora)
        fail("--use-dora: --init-adapter %s is a plain LoRA adapter, without DoRA's magnitudes; continue it as LoRA "
             "(leave out --use-dora) or start a new DoRA adapter (leave out --init-adapter)", a.init_adapter.c_str());
    const uint32_t asked = lora_saves(t.model.cfg, tc.lora.save_modules);
    if ((asked & ~lc.save_modules) != 0)
        fail("--modules-to-save %s: --init-adapter %s does not train %s; continue it without --modules-to-save, or "
             "start a new adapter (leave out --init-adapter)", a.modules_to_save.c_str(), a.init_adapter.c_str(),
             lora_saves_string(asked & ~lc.save_modules).c_str());
    if (!a.trainable_tokens.empty()) {
        // The same ids in any order are the same rows (the adapter keeps its order, which its rows follow)
        LoraConfig want = lc;
        want.save_modules = 0;  // (only the lists are compared)
        set_tokens(t.model, want, a.trainable_tokens, tok);
        auto sorted = [](std::vector<int32_t> v) { return std::sort(v.begin(), v.end()), v; };
        auto ids = [](const std::vector<int32_t>& v) {
            std::string s;
            for (size_t i = 0; i < v.size() && i < 16; i++) s += strf("%s%d", i ? "," : "", v[i]);
            return v.empty() ? std::string("none") : s + (v.size() > 16 ? ",..." : "");
        };
        for (int table = 0; table < LORA_NUM_TABLES; table++)
            if (sorted(want.tokens[table]) != sorted(lc.tokens[table]))
                fail("--trainable-tokens %s: --init-adapter %s trains other rows of %s (%s, where the flag asks for %s); "
                     "continue it without --trainable-tokens, or start a new adapter (leave out --init-adapter)",
                     a.trainable_tokens.c_str(), a.init_adapter.c_str(), table == LORA_TABLE_EMBED ? "embed_tokens" : "lm_head",
                     ids(lc.tokens[table]).c_str(), ids(want.tokens[table]).c_str());
    }
    if (tc.optim.embedding_lr > 0 && !lc.save_modules && !lc.has_tokens())
        fail("--embedding-lr: --init-adapter %s trains no embedding or LM head (no modules_to_save, no trainable tokens)",
             a.init_adapter.c_str());
    lc.dropout = tc.lora.dropout;
    tc.lora = lc;
    model_set_lora(t.model, lc, std::move(adapters));
    printf("init adapter: %s (its r, alpha, targets, layers, rsLoRA scaling, DoRA, saved modules and trainable tokens "
           "replace --lora-r, --lora-alpha, --lora-targets, --lora-layers, --use-rslora, --use-dora, --modules-to-save, "
           "--trainable-tokens)\n",
           a.init_adapter.c_str());
}

void adapters_print(const Trainer& t, const TrainConfig& tc, const Tokenizer& tok) {
    const Model& m = t.model;
    if (!m.has_adapters()) return;
    printf("lora: r=%d alpha=%g (scale %g) dropout=%g targets=%s%s%s%s\n", tc.lora.rank, tc.lora.alpha, tc.lora.scale(),
           tc.lora.dropout, lora_targets_string(tc.lora.targets).c_str(),
           tc.lora.layers.empty() ? "" : strf(" layers=%s (%zu of %d)", lora_layers_string(tc.lora.layers).c_str(),
                                              tc.lora.layers.size(), m.cfg.n_layers).c_str(),
           tc.lora.use_dora ? ", DoRA (a magnitude per output row)" : "",
           tc.optim.lora_b_lr_ratio == 1.0f ? ""
               : strf(", LoRA+: B%s at lr x %g (%g)", tc.lora.use_dora ? " and DoRA's magnitudes" : "",
                      tc.optim.lora_b_lr_ratio, tc.optim.lr * tc.optim.lora_b_lr_ratio).c_str());
    if (const std::string why = peft_unexportable(m.cfg, m.lora); !why.empty())
        printf("warning: this adapter will not export as a PEFT adapter (./export --peft): %s; --hf, --merge and --gguf "
               "take it merged\n", why.c_str());
    note_untrained_tokens(t, tok);
    const float embedding_lr = tc.optim.embedding_lr > 0 ? tc.optim.embedding_lr : tc.optim.lr;
    size_t saved = 0, rows = 0;
    for (const TensorInfo& ti : m.lora_layout.tensors) {
        saved += lora_is_saved_module(ti) ? ti.numel : 0;
        rows += lora_is_token_rows(ti) ? ti.numel : 0;
    }
    if (tc.lora.save_modules)
        printf("modules to save: %s trained in full beside the adapters (%zu parameters) at lr %g\n",
               m.cfg.tied_embeddings ? "embed_tokens (tied: also the LM head)" : lora_saves_string(tc.lora.save_modules).c_str(),
               saved, embedding_lr);
    if (tc.lora.has_tokens()) {
        std::string names;
        const std::vector<int32_t>& ids = m.lora.tokens[m.lora.tokens[LORA_TABLE_EMBED].empty() ? LORA_TABLE_LM_HEAD : LORA_TABLE_EMBED];
        for (size_t i = 0; i < ids.size() && i < 8; i++) names += (i ? ", " : "") + token_name(tok, ids[i]);
        printf("trainable tokens: %s, their rows trained beside the adapters (%zu parameters) at lr %g: %s%s\n",
               lora_tokens_string(m.cfg, m.lora).c_str(), rows, embedding_lr, names.c_str(), ids.size() > 8 ? ", ..." : "");
    }
}
