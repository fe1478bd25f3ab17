#include "data/default_task.h"

#include <set>

#include "data/json.h"
#include "model/util.h"

namespace {

const char* const kFirst[] = {"Maria", "James", "Aiko", "Omar", "Lena", "Pedro", "Sofia", "Ivan", "Grace", "Kofi",
                              "Nadia", "Tomas", "Elena", "Ravi", "Hana", "Lucas", "Amara", "Felix", "Yuki", "Daniel",
                              "Ines", "Mateo", "Clara", "Samir", "Julia", "Arjun", "Mina", "Victor", "Leila", "Oscar"};
const char* const kLast[] = {"Lopez", "Smith", "Tanaka", "Haddad", "Berg", "Costa", "Rossi", "Petrov", "Kim", "Mensah",
                             "Novak", "Silva", "Weber", "Patel", "Sato", "Moreau", "Okafor", "Keller", "Ito", "Fischer",
                             "Garcia", "Larsen", "Dubois", "Nair", "Horvat", "Brown", "Park", "Ortiz", "Jansen", "Ali"};
const char* const kCity[] = {"Oslo", "Lyon", "Osaka", "Cairo", "Lima", "Porto", "Turin", "Kyiv", "Seoul", "Accra",
                             "Prague", "Recife", "Bremen", "Pune", "Kyoto", "Nantes", "Lagos", "Basel", "Sapporo",
                             "Leeds", "Seville", "Bergen", "Quito", "Kochi", "Zagreb", "Boston", "Busan", "Cusco",
                             "Utrecht", "Tunis"};
const char* const kJob[] = {"nurse", "teacher", "baker", "pilot", "engineer", "farmer", "painter", "lawyer", "chef",
                            "architect", "dentist", "editor", "plumber", "pharmacist", "librarian", "carpenter",
                            "surgeon", "journalist", "electrician", "astronomer", "musician", "tailor", "geologist",
                            "photographer", "accountant", "mechanic", "biologist", "translator", "firefighter",
                            "optician"};
const char* const kInstruction = "Extract name, year, city and job as JSON.";

template <size_t N> const char* pick(Rng& rng, const char* const (&list)[N]) { return list[rng.next_u64() % N]; }

std::string trim(const std::string& s) {
    size_t a = s.find_first_not_of(" \t\r\n"), b = s.find_last_not_of(" \t\r\n");
    return a == std::string::npos ? "" : s.substr(a, b - a + 1);
}

bool json_equal(const JsonValue& a, const JsonValue& b) {
    if (a.type != b.type) return false;
    switch (a.type) {
    case JsonValue::Null: return true;
    case JsonValue::Bool: return a.boolean == b.boolean;
    case JsonValue::Number: return a.number == b.number;
    case JsonValue::String: return a.string == b.string;
    case JsonValue::Array:
        if (a.array.size() != b.array.size()) return false;
        for (size_t i = 0; i < a.array.size(); i++)
            if (!json_equal(a.array[i], b.array[i])) return false;
        return true;
    case JsonValue::Object:
        if (a.object.size() != b.object.size()) return false;
        for (const auto& [key, v] : a.object) {
            const JsonValue* w = b.get(key);
            if (!w || !json_equal(v, *w)) return false;
        }
        return true;
    }
    return false;
}

// An answer's JSON object, or Null when it is not one.
JsonValue parse_object_or_null(const std::string& s) {
    try {
        JsonValue v = json_parse(s);
        if (v.type == JsonValue::Object) return v;
    } catch (const std::runtime_error&) {
    }
    return JsonValue();
}

std::string with_article(const std::string& job) {
    return (std::string("aeiou").find(job[0]) != std::string::npos ? "an " : "a ") + job;
}

// The phrasings put the fields in different orders and wrap them differently.
std::string sentence(int form, const std::string& name, const std::string& year, const std::string& city,
                     const std::string& job) {
    switch (form) {
    case 0: return name + " was born in " + year + " in " + city + " and works as " + with_article(job) + ".";
    case 1: return "Born in " + city + " in " + year + ", " + name + " works as " + with_article(job) + ".";
    case 2: return name + ", " + with_article(job) + " from " + city + ", was born in " + year + ".";
    case 3: return "The " + job + " " + name + " was born in " + city + " in " + year + ".";
    case 4: return name + " (born " + year + ") is " + with_article(job) + " living in " + city + ".";
    default: return "In " + year + ", " + name + " was born in " + city + ", where the " + job + " still lives.";
    }
}

}  // namespace

std::vector<TaskItem> default_task_items(uint64_t seed, int n) {
    Rng rng(seed);
    std::vector<TaskItem> items;
    std::set<std::string> seen;
    while ((int)items.size() < n) {
        std::string name = std::string(pick(rng, kFirst)) + " " + pick(rng, kLast);
        std::string year = std::to_string(1940 + rng.next_u64() % 66);
        std::string city = pick(rng, kCity), job = pick(rng, kJob);
        TaskItem it;
        it.instruction = kInstruction;
        it.input = sentence((int)(rng.next_u64() % 6), name, year, city, job);
        if (!seen.insert(it.input).second) continue;
        it.output = "{\"name\":" + json_quote(name) + ",\"year\":" + year + ",\"city\":" + json_quote(city) +
                    ",\"job\":" + json_quote(job) + "}";
        items.push_back(std::move(it));
    }
    return items;
}

std::string task_item_jsonl(const TaskItem& item) {
    return "{\"instruction\": " + json_quote(item.instruction) + ", \"input\": " + json_quote(item.input) +
           ", \"output\": " + json_quote(item.output) + "}";
}

namespace {

// The answer part of a turn that may start with reasoning: what follows the last "</think>", as
// Qwen3's template splits a turn. A Qwen3 model writes its think block (empty or not) before every
// answer, and a reference may carry one; neither is part of what is scored.
std::string answer_part(const std::string& turn) {
    const size_t end = turn.rfind("</think>");
    return trim(end == std::string::npos ? turn : turn.substr(end + 8));
}

// The calls in a text as {"name", "arguments"} objects, in order (null for a block that is not one),
// in the form the template asks for: Llama 3.1's one call, the whole text {"name": ..., "parameters":
// ...}; Mistral v0.3's [TOOL_CALLS] list; the others' <tool_call> blocks, each a JSON object. An answer in the other form is no call
// (a model prompted with one template that answers in the other's form would not be parsed by that
// template's tool parser), and a Llama call whose arguments hold the text "<tool_call>" is one call.
std::vector<JsonValue> tool_call_objects(const std::string& text, ChatTemplateKind kind) {
    std::vector<JsonValue> calls;
    if (kind == ChatTemplateKind::MistralV03) {  // [TOOL_CALLS] (a control token, kept or not) and a JSON list
        std::string list = trim(text);
        if (list.rfind("[TOOL_CALLS]", 0) == 0) list = list.substr(12);
        JsonValue v;
        try {
            v = json_parse(list);
        } catch (const std::runtime_error&) {
        }
        if (v.type == JsonValue::Array)
            for (const JsonValue& call : v.array) calls.push_back(call.type == JsonValue::Object ? call : JsonValue{});
        return calls;
    }
    if (kind == ChatTemplateKind::Llama31) {
        if (JsonValue call = parse_object_or_null(text); call.get("name") && call.get("parameters")) {
            for (auto& [key, value] : call.object)
                if (key == "parameters") key = "arguments";
            calls.push_back(call);
        }
        return calls;
    }
    const std::string open = "<tool_call>", close = "</tool_call>";
    for (size_t at = text.find(open); at != std::string::npos; at = text.find(open, at + open.size())) {
        const size_t end = text.find(close, at);
        calls.push_back(parse_object_or_null(text.substr(at + open.size(), end == std::string::npos ? end : end - at - open.size())));
    }
    return calls;
}

}  // namespace

TaskScore score_answers(const std::vector<Record>& held_out, const std::vector<std::string>& answers,
                        const ChatTemplate& chat) {
    if (answers.size() != held_out.size())
        fail("score_answers: %zu answers for %zu held-out records", answers.size(), held_out.size());
    TaskScore score;
    for (size_t i = 0; i < held_out.size(); i++) {
        const std::optional<std::string> ref_turn = record_reference(held_out[i], chat.kind);
        if (!ref_turn) continue;
        std::string reference = answer_part(*ref_turn), answer = answer_part(answers[i]);
        score.n++;
        score.exact += answer == reference;
        // A turn of tool calls: each call's name and arguments are two fields, compared as JSON (so
        // that spacing and key order do not count), the answer's calls taken in order.
        if (!held_out[i].messages.back().tool_calls.empty()) {
            const std::vector<JsonValue> want = tool_call_objects(reference, chat.kind), got = tool_call_objects(answer, chat.kind);
            for (size_t k = 0; k < want.size(); k++)
                for (const char* key : {"name", "arguments"}) {
                    score.fields_total++;
                    const JsonValue* w = want[k].get(key);
                    const JsonValue* g = k < got.size() ? got[k].get(key) : nullptr;
                    score.fields += w && g && json_equal(*w, *g);
                }
            continue;
        }
        JsonValue ref = parse_object_or_null(reference);
        if (ref.is_null()) continue;
        JsonValue got = parse_object_or_null(answer);
        for (const auto& [key, v] : ref.object) {
            score.fields_total++;
            const JsonValue* w = got.get(key);
            score.fields += w && json_equal(v, *w);
        }
    }
    return score;
}
