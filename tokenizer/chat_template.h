// Chat templates: render a conversation to the exact text Hugging Face's apply_chat_template gives
// for the model's Jinja template, without a Jinja engine. We support the families LLaMA-style
// models ship with and detect which one a Jinja template string is:
//   ChatML  <|im_start|>role\ncontent<|im_end|>\n         (SmolLM2, Qwen2; optional default
//           system; only system, user and assistant turns)
//   Qwen25  Qwen2.5's ChatML (its default system prompt) with its tool calling: tool definitions
//           as JSON lines in a <tools> block of the system turn, an assistant's calls after its
//           content as <tool_call>\n{"name": ..., "arguments": ...}\n</tool_call>, and tool
//           messages as <tool_response> blocks, a run of them in one user turn. Its template writes
//           arguments given as a string of JSON as a quoted string (OpenAI's datasets give them so,
//           Qwen2.5 was trained on objects): we write the object the string holds.
//   Llama3  <|begin_of_text|><|start_header_id|>role<|end_header_id|>\n\ncontent<|eot_id|>
//           (Llama-3-Instruct's template: content is trimmed)
//   Llama31 Llama 3's turns after a system block that is always there (Llama 3.1, 3.2, 3.3):
//           <|begin_of_text|><|start_header_id|>system<|end_header_id|>\n\nCutting Knowledge Date:
//           December 2023\nToday Date: 26 Jul 2024\n\n<system message, trimmed><|eot_id|>, then the
//           other messages' turns. With tools: "Environment: ipython\n" opens the block, and the tool
//           definitions (json.dumps(indent=4) each) go with instructions into the first user turn;
//           an assistant's call is the turn alone, {"name": "NAME", "parameters": ARGUMENTS} (one a
//           message, no text beside it: the template would raise or drop it, we refuse), a tool's
//           result an ipython turn holding its text as a JSON string (the template's |tojson).
//   Gemma   <bos><start_of_turn>user\ncontent<end_of_turn>\n, assistant renamed "model", content
//           trimmed, no system role, roles must alternate user/assistant
//   Gemma3  Gemma's turns with Gemma 3's system message: <bos> first, a first system message's content
//           (as it is) + "\n\n" starts the first user turn's content (trimmed, as all turns are);
//           after it, roles must alternate user/assistant (Gemma 3 and 3n, gemma_3 models 270M ... 27B)
//   Llama2  <s>[INST] <<SYS>>\nsystem\n<</SYS>>\n\nuser [/INST] assistant </s><s>[INST] ...
//           (Llama-2-chat's template: contents trimmed, the system message joins the first user one)
//   Mistral <s> [INST] system\n\nuser [/INST] assistant</s> [INST] ...   (Mistral-7B-Instruct
//           v0.1/v0.2's template: contents as they are)
//   MistralV03 <s>[INST] user[/INST] assistant</s>[INST] system\n\nuser[/INST] assistant</s>
//           (Mistral-7B-Instruct-v0.3, its v3 tokenizer's [INST] control tokens: contents as they are,
//           an answer trimmed). The system message goes into the last user turn, as Mistral's own
//           tokenizer (mistral-common) puts it for fine-tuning and its template for a prompt; the
//           template writes it only where that turn is the conversation's last message, i.e. it drops
//           it from a conversation that ends with the answer, which would train without it. Tool
//           calling as mistral-common writes it: the definitions in [AVAILABLE_TOOLS] [...] before that
//           last user turn, an assistant's calls as [TOOL_CALLS] [{"name", "arguments", "id"}]</s>
//           (learned), each result as [TOOL_RESULTS] {"content", "call_id"}[/TOOL_RESULTS]; its ids are
//           9 letters and digits, made from a dataset's own ids where they are not.
//           Both need roles to alternate user/assistant after an optional first system message.
//   Zephyr  <|system|>\nsystem</s>\n<|user|>\nuser</s>\n<|assistant|>\nassistant</s>\n
//           (TinyLlama-1.1B-Chat-v1.0 and zephyr-7b-beta; the markers are plain text)
//   Qwen3   ChatML whose assistant turns after the last user query carry a think block
//           <|im_start|>assistant\n<think>\nreasoning\n</think>\n\nanswer<|im_end|>\n: always the
//           last message's (empty without reasoning), an earlier one's when it has reasoning; before
//           that query a turn is the answer alone (Qwen3-0.6B ... 32B, its template as transformers
//           renders it by default, i.e. thinking enabled; the generation prompt is
//           <|im_start|>assistant\n). Reasoning is an assistant message's reasoning_content, or
//           else the content's text up to "</think>" (after any "<think>"), the answer what follows
//           the last "</think>". A user message that is a pasted "<tool_response>...</tool_response>"
//           is not a query. Tools as Qwen2.5's (a string of arguments written as it is).
//           The think block belongs to the assistant piece with the answer: at inference the prompt
//           ends at <|im_start|>assistant\n, so the model must learn to write the block itself
//           (an empty one, where the data has no reasoning) before answering.
//   SmolLM3 ChatML after SmolLM3's system block, which is always there and is closed only when it
//           lists tools: <|im_start|>system\n## Metadata\n\nKnowledge Cutoff Date: June 2025\nToday
//           Date: 08 July 2025\nReasoning Mode: /think\n\n## Custom Instructions\n\n<the system
//           message, or a default>\n\n then the turns. "/no_think" in the system message (taken out of
//           it, as "/think" is) turns reasoning off: each assistant turn and the generation prompt then
//           open with an empty "<think>\n\n</think>\n", which is the prompt's, not learned (the model
//           is given it). "/system_override" in it: the system turn is its text alone. Tool results
//           are user turns; tool definitions are listed with Python's repr in a "### Tools" section
//           (the template's xml_tools, which is what a line's "tools" are given as). The template
//           drops an assistant's tool_calls: we write them into its content after the text, as
//           Qwen2.5's <tool_call> blocks, the form its tools section asks the model to answer in, so
//           that a call is learned rather than lost. The template dates the block with the day it
//           renders; we write SmolLM3's release day (kSmolLM3Date) so that the text stays the same
//           from day to day.
//   Phi3    <|system|>\nsystem<|end|>\n<|user|>\nuser<|end|>\n<|assistant|>\nassistant<|end|>\n, and after the
//           last turn, when no generation prompt follows, the eos token <|endoftext|> (Phi-3.5-mini-instruct's
//           template: an empty system message writes no turn). The eos is the prompt's, not learned: the model
//           ends its turn with <|end|>. Phi-3-mini-4k/128k-instruct's template is read as Phi3 too (it writes an
//           empty system message as an empty turn), and so, with a note, are the first releases' (Phi-3-mini of
//           April 2024 with <s> first, Phi-3-medium-4k-instruct): they drop system messages and write no eos,
//           and otherwise render prompts and training conversations alike.
//   Phi4    <|im_start|>system<|im_sep|>system<|im_end|><|im_start|>user<|im_sep|>user<|im_end|>
//           <|im_start|>assistant<|im_sep|>assistant<|im_end|>, no newlines (microsoft/phi-4's template as
//           updated; as first released it wrote the assistant's header after each user turn, which
//           renders prompts and training conversations the same, and is read as Phi4 too)
//   Phi4Mini Phi-3's markers without newlines: <|system|>system<|end|><|user|>user<|end|><|assistant|>
//           assistant<|end|>, then <|endoftext|> (not learned, as Phi3's) when no generation prompt follows
//           (Phi-4-mini-instruct; its tool definitions, a system message's "tools" string, are not rendered)
//           Phi3, Phi4 and Phi4Mini render system, user and assistant messages only (their templates drop
//           other roles, Phi-4-mini's writes them as turns the model never saw): others are refused.
//   Plain   contents one after another, each followed by "\n"; no markers (base models)
#pragma once
#include <cstdint>
#include <optional>
#include <string>
#include <vector>

enum class ChatTemplateKind : int32_t {
    Plain = 0, ChatML = 1, Llama3 = 2, Gemma = 3, Llama2 = 4, Mistral = 5, Zephyr = 6, Qwen3 = 7, Gemma3 = 8, Qwen25 = 9,
    Llama31 = 10, SmolLM3 = 11, MistralV03 = 12, Phi3 = 13, Phi4 = 14, Phi4Mini = 15
};
constexpr ChatTemplateKind kLastChatTemplateKind = ChatTemplateKind::Phi4Mini;
// The names --template takes, for the programs' --help (chat_template_from_name lists them on a miss).
#define CHAT_TEMPLATE_NAMES \
    "chatml, llama3, llama3.1, gemma, gemma3, llama2, mistral, mistral-v0.3, zephyr, qwen3, qwen2.5, smollm3, phi3, " \
    "phi4, phi4-mini, plain"

// The date Llama31's system block carries: the 3.1 template's own default. (3.2's writes the day it
// renders, so a fixed one keeps the rendered data, and a resumed run's, the same from day to day.)
inline constexpr char kLlama31Date[] = "26 Jul 2024";
// The date SmolLM3's system block carries (its template's strftime_now("%d %B %Y"), the day of
// rendering): the model's release day, fixed for the same reason.
inline constexpr char kSmolLM3Date[] = "08 July 2025";

// Qwen2.5's default system prompt (--template qwen2.5), which its template injects without one.
inline constexpr char kQwen25DefaultSystem[] = "You are Qwen, created by Alibaba Cloud. You are a helpful assistant.";

struct ChatTemplate {
    ChatTemplateKind kind = ChatTemplateKind::Plain;
    // ChatML and Qwen25 only: the system message a template injects when the conversation has none
    // (SmolLM2: "You are a helpful AI assistant named SmolLM, trained by Hugging Face"); empty = none.
    std::string default_system;
    // Qwen3 and SmolLM3: false renders as their templates do given enable_thinking=False (./train and
    // ./generate --no-think): Qwen3's generation prompt opens an empty think block, SmolLM3's reasoning
    // mode is /no_think unless the system message says /think. A rendering option, not saved.
    bool thinking = true;
};

// One function call of an assistant message, as the templates write it:
// <tool_call>\n{"name": "NAME", "arguments": ARGUMENTS}\n</tool_call>
struct ToolCall {
    std::string name;
    // The arguments' JSON as Python's json.dumps writes it (the templates' |tojson; a dataset's
    // arguments given as a string of JSON, OpenAI's form, are parsed and written so)...
    std::string arguments;
    // ...and that string as given, which Qwen3's template writes as it is.
    std::optional<std::string> arguments_text = std::nullopt;
    // The call's id ("id" of an OpenAI call; "" when none), which Mistral v0.3's format writes.
    std::string id = "";
};

struct ChatMessage {
    std::string role;  // "system", "user", "assistant" or "tool" (a tool's result: the templates that render tools)
    std::string content;
    // An assistant message's chain of thought kept apart from its answer (the "reasoning_content"
    // of a dataset line, as OpenAI-style APIs return it). Only Qwen3's template renders it; the
    // others refuse a message that has one rather than drop it. "" is a field that is there and
    // empty, which Qwen3's template treats differently from none (it then leaves the content whole).
    // (The initializer keeps {role, content} a complete initializer for -Wmissing-field-initializers.)
    std::optional<std::string> reasoning_content = std::nullopt;
    // The content as a list of text parts ("content": [{"type": "text", "text": "..."}, ...], the form
    // multimodal chat APIs use), when a dataset line gave it so; `content` then holds the parts joined.
    // Only Gemma 3's template renders parts (each trimmed, one after another; a system message's first
    // part only); the others refuse a message that has them.
    std::optional<std::vector<std::string>> parts = std::nullopt;
    // Whether an assistant message is learned: false for a dataset message with "weight": 0 (OpenAI's
    // fine-tuning format), whose turn is then rendered as context, weighed as the prompt is.
    bool trained = true;
    // An assistant message's function calls (qwen2.5, qwen3 and smollm3 render them after its content,
    // llama3.1 one alone, mistral-v0.3 all alone).
    std::vector<ToolCall> tool_calls = {};
    // A tool message's "tool_call_id": the id of the call it answers ("" when none).
    std::string tool_call_id = "";
};

// A run of rendered text. assistant = true marks a learned (ChatMessage::trained) assistant message's
// content together with its end-of-turn marker ("...<|im_end|>"; Qwen3: with its think block): the tokens a fine-tune learns
// to produce. Concatenating all pieces' text gives exactly chat_render's output. Where a template
// puts a space between the prompt and the answer ("[/INST] answer"), the space belongs to the
// answer's piece: a SentencePiece tokenizer writes it as the "▁" of the answer's first token.
struct ChatPiece {
    std::string text;
    bool assistant;
};

// Fails (naming the message index) on a role, reasoning_content, content parts or tool calls the
// template cannot express. `tools`: the conversation's tool definitions, each's JSON as |tojson
// writes it (json_dumps_python), which qwen2.5, qwen3 and smollm3 put into the system turn, llama3.1
// into the first user turn.
std::vector<ChatPiece> chat_render_pieces(const ChatTemplate& t, const std::vector<ChatMessage>& messages,
                                          bool add_generation_prompt, const std::vector<std::string>& tools = {});
std::string chat_render(const ChatTemplate& t, const std::vector<ChatMessage>& messages, bool add_generation_prompt,
                        const std::vector<std::string>& tools = {});
// An assistant message's calls as the templates write them after its content, one
// <tool_call>\n{"name": ..., "arguments": ...}\n</tool_call> block after another, separated by
// newlines; with raw_string_arguments a string of arguments as it was given (Qwen3's way).
std::string tool_calls_text(const ChatMessage& m, bool raw_string_arguments);

// For a --template flag: one of CHAT_TEMPLATE_NAMES; fails listing them otherwise.
ChatTemplate chat_template_from_name(const std::string& name);
// What a program renders with: --template NAME, else the tokenizer's own `own`; --no-think (thinking
// false) only for the templates that have the switch (qwen3, smollm3), failing otherwise.
ChatTemplate chat_template_choice(const ChatTemplate& own, const std::string& name, bool no_think);
const char* chat_template_name(ChatTemplateKind kind);
// Whether a template renders tool definitions, calls and results (qwen2.5, qwen3, smollm3, llama3.1,
// mistral-v0.3), and the words that name them in messages.
bool chat_template_renders_tools(ChatTemplateKind kind);
#define TOOL_CALLING_TEMPLATES \
    "qwen2.5's, qwen3's, smollm3's, llama3.1's and mistral-v0.3's do): pass --template " \
    "qwen2.5|qwen3|smollm3|llama3.1|mistral-v0.3"
// An assistant message's one call as Llama 3.1's template writes it: {"name": ..., "parameters": ...};
// fails, naming message `index`, on more than one call or on text beside it.
std::string llama31_call_text(const ChatMessage& m, size_t index);
// An assistant message's calls as Mistral v0.3's format writes them: [TOOL_CALLS] [{"name", "arguments",
// "id"}, ...] (ids of 9 letters and digits: a dataset's own, or made from it or from the call's place);
// the ids appended to `ids`. Fails, naming message `index`, on text beside the calls.
std::string mistral_v03_calls_text(const ChatMessage& m, size_t index, std::vector<std::string>* ids = nullptr);

// Recognises a Jinja chat template (from tokenizer_config.json or GGUF tokenizer.chat_template) by
// its markers, taking a ChatML default system prompt from it. Fails, quoting the template's start,
// when it is none of the families above: pass --template to choose one.
ChatTemplate chat_template_from_jinja(const std::string& jinja);
// The Jinja text of a template (the model family's own, see chat_template.cpp), for tokenizer_config.json:
// transformers' apply_chat_template renders it as chat_render does, and chat_template_from_jinja
// reads it back as `t`.
std::string chat_template_to_jinja(const ChatTemplate& t);
// For importers: chat_template_from_jinja, or, for a template it does not recognise, Plain with a
// warning naming `where` (a model converts whatever its template; ./train --template picks another).
ChatTemplate chat_template_or_plain(const std::string& jinja, const std::string& where);
