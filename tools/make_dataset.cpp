// Writes the default dataset (data/default_task.h): train.jsonl and val.jsonl under --out
// (default data/default). The output is a pure function of the generator, so rerunning it leaves
// the committed files unchanged unless the generator changed.
#include <cstdio>
#include <cstring>
#include <filesystem>
#include <string>

#include "data/default_task.h"
#include "tools/cli.h"
#include "model/util.h"

static void write_jsonl(const std::string& path, const std::vector<TaskItem>& items, size_t from, size_t to) {
    AtomicFile f(path);
    for (size_t i = from; i < to; i++) {
        std::string line = task_item_jsonl(items[i]) + "\n";
        f.write(line.data(), line.size());
    }
    f.commit();
    std::printf("wrote %s: %zu examples\n", path.c_str(), to - from);
}

int main(int argc, char** argv) {
    return run_main([&] {
        std::string out = "data/default";
        Args args(argc, argv, "usage: ./make_dataset [--out DIR], writes DIR/train.jsonl and DIR/val.jsonl");
        while (args.next()) {
            if (args.is("--out")) out = args.value();
            else if (args.is("--help") || args.is("-h")) {
                printf("usage: ./make_dataset [--out DIR (data/default)]: writes DIR/train.jsonl and DIR/val.jsonl, the "
                       "default task's generated examples\n");
                return 0;
            } else args.unknown();
        }
        std::error_code ec;  // made as ./convert and ./export make theirs
        std::filesystem::create_directories(out, ec);
        if (ec || !std::filesystem::is_directory(out))
            fail("--out %s: cannot make the directory (%s): --out names the folder for train.jsonl and val.jsonl",
                 out.c_str(), ec ? ec.message().c_str() : "a file has that name");
        auto items = default_task_items(kDefaultTaskSeed, kDefaultTrainSize + kDefaultValSize);
        write_jsonl(out + "/train.jsonl", items, 0, kDefaultTrainSize);
        write_jsonl(out + "/val.jsonl", items, kDefaultTrainSize, items.size());
        return 0;
    });
}
