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
const char* const kInstruction = "Extract the person as JSON with keys name, year, city, job.";

template <size_t N> const char* pick(Rng& rng, const char* const (&list)[N]) { return list[rng.next_u64() % N]; }

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
    default: return "In " + year + ", " + name + " was born in " + city + "; today the " + job + " still lives there.";
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
        it.output = "{\"name\": " + json_quote(name) + ", \"year\": " + year + ", \"city\": " + json_quote(city) +
                    ", \"job\": " + json_quote(job) + "}";
        items.push_back(std::move(it));
    }
    return items;
}

std::string task_item_jsonl(const TaskItem& item) {
    return "{\"instruction\": " + json_quote(item.instruction) + ", \"input\": " + json_quote(item.input) +
           ", \"output\": " + json_quote(item.output) + "}";
}
