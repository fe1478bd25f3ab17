#include "model/out_dir.h"

#include <fcntl.h>
#include <sys/file.h>
#include <unistd.h>

#include <algorithm>
#include <cerrno>
#include <cstdio>
#include <cstring>
#include <filesystem>
#include <stdexcept>

#include "data/json.h"
#include "model/trainer.h"
#include "model/util.h"

namespace fs = std::filesystem;

// One run at a time in an --out: two would overwrite each other's checkpoints and log.csv. The lock
// (flock on OUT/.lock, which the kernel releases when the process ends, however it ends) is taken
// before check_out_dir, so a second run refuses instead of resuming or deleting (--overwrite) the
// first's checkpoints. The file holds the owner's pid for the message; it stays (an unlink could
// race with a run that has just opened it) and names no checkpoint, so nothing else reads it.
void lock_out_dir(const std::string& out) {
    std::error_code ec;
    fs::create_directories(out, ec);
    if (ec) fail("--out %s: cannot create the directory: %s", out.c_str(), ec.message().c_str());
    const std::string path = out + "/.lock";
    const int fd = open(path.c_str(), O_RDWR | O_CREAT | O_CLOEXEC, 0644);  // left open: the lock lasts the run
    if (fd < 0) fail("%s: cannot open the lock file: %s", path.c_str(), strerror(errno));
    if (flock(fd, LOCK_EX | LOCK_NB) != 0) {
        if (errno == ENOLCK || errno == EOPNOTSUPP || errno == ENOSYS) {  // a filesystem without locks (some NFS)
            fprintf(stderr, "warning: %s: cannot lock (%s): nothing stops a second ./train from using --out %s at "
                    "the same time\n", path.c_str(), strerror(errno), out.c_str());
            close(fd);
            return;
        }
        if (errno != EWOULDBLOCK) fail("%s: cannot lock: %s", path.c_str(), strerror(errno));
        char pid[24] = {};
        const ssize_t n = pread(fd, pid, sizeof pid - 1, 0);  // empty while the owner is about to write it
        fail("--out %s is in use by another ./train%s: wait for it, or pass another --out", out.c_str(),
             n > 0 && atoi(pid) > 0 ? strf(" (pid %d)", atoi(pid)).c_str() : "");
    }
    const std::string pid = strf("%d\n", (int)getpid());
    if (ftruncate(fd, 0) != 0 || pwrite(fd, pid.data(), pid.size(), 0) != (ssize_t)pid.size())
        fail("%s: cannot write: %s", path.c_str(), strerror(errno));
}

// A new run never mixes its checkpoints with an earlier run's (--keep-last would delete the new
// ones as the oldest steps, and --resume would pick up the old): checked before any loading.
void check_out_dir(const std::string& out, bool resume, bool overwrite, const std::vector<std::string>& inputs) {
    if (resume && overwrite) fail("--resume continues the run in --out, --overwrite deletes it: pass one");
    const std::string old = find_latest_checkpoint(out);
    if (resume || old.empty()) return;
    if (!overwrite)
        fail("%s holds an earlier run's checkpoints (the latest: %s): pass --resume to continue that run, "
             "--overwrite to delete them and start over, or another --out", out.c_str(), old.c_str());
    // --overwrite must not delete what this run starts from.
    const fs::path dir = fs::weakly_canonical(out);
    for (const std::string& input : inputs) {
        if (input.empty()) continue;
        const fs::path in = fs::weakly_canonical(input);
        if (std::mismatch(dir.begin(), dir.end(), in.begin(), in.end()).first == dir.end())
            fail("--overwrite would delete %s, which this run starts from: copy it elsewhere, or use another --out",
                 input.c_str());
    }
}

static std::string run_json(const std::string& out_dir) { return out_dir + "/run.json"; }

void save_run_command(const std::string& out_dir, int argc, char** argv) {
    std::error_code ec;
    const fs::path cwd = fs::current_path(ec);
    if (ec) fail("cannot read the working directory to record the run's command: %s", ec.message().c_str());
    std::string json = "{\"cwd\": " + json_quote(cwd.string()) + ", \"args\": [";
    bool first = true;
    for (int i = 1; i < argc; i++) {
        const std::string a = argv[i];
        if (a == "--resume" || a == "--overwrite") continue;  // one-off requests, not the run's settings
        json += (first ? "" : ", ") + json_quote(a);
        first = false;
    }
    write_file_atomic(run_json(out_dir), json + "]}\n");
}

bool load_run_command(const std::string& out_dir, RunCommand& rc) {
    const std::string path = run_json(out_dir);
    if (!file_exists(path)) return false;
    const auto bad = [&](const std::string& why) {
        fail("%s: %s: it records the run's command for --resume; pass the whole command with --resume instead, "
             "or delete the file", path.c_str(), why.c_str());
    };
    JsonValue v;
    try {
        v = json_parse(read_file(path));
    } catch (const std::runtime_error& e) {
        bad(e.what());
    }
    const JsonValue* cwd = v.get("cwd");
    const JsonValue* args = v.get("args");
    if (!cwd || cwd->type != JsonValue::String) bad("no \"cwd\" string");
    if (!args || args->type != JsonValue::Array) bad("no \"args\" array");
    rc.cwd = cwd->string;
    rc.args.clear();
    for (const JsonValue& a : args->array) {
        if (a.type != JsonValue::String) bad("an argument that is not a string");
        rc.args.push_back(a.string);
    }
    return true;
}

std::string train_command_line(const std::vector<std::string>& args) {
    std::string line = "./train";
    for (const std::string& a : args) line += " " + shell_quote(a);
    return line;
}

// The --out an argument list names ("out" when none): its last, as the flag parser takes it.
static std::string out_of(const std::vector<std::string>& args) {
    std::string out = "out";
    for (size_t i = 0; i < args.size(); i++)
        if (args[i] == "--out" && i + 1 < args.size()) out = args[++i];
        else if (args[i].rfind("--out=", 0) == 0) out = args[i].substr(6);
    return out;
}

std::vector<std::string> recorded_resume_args(int argc, char** argv) {
    const std::vector<std::string> given(argv + 1, argv + argc);
    bool resume = false;
    for (size_t i = 0; i < given.size(); i++) {
        if (given[i] == "--resume") resume = true;
        else if (given[i] == "--out" && i + 1 < given.size()) i++;
        else if (given[i].rfind("--out=", 0) != 0) return {};  // a command of its own: it stands as given
    }
    const std::string out = out_of(given);
    RunCommand rc;
    if (!resume || !load_run_command(out, rc)) return {};
    std::error_code ec;
    const std::string here = fs::absolute(out, ec).lexically_normal().string();
    const bool elsewhere = !same_file(".", rc.cwd);  // the user is not in the run's directory
    if (chdir(rc.cwd.c_str()) != 0)
        fail("%s/run.json: the run was started in %s, which cannot be entered (%s): run its command with --resume "
             "from where its paths lead: %s --resume", out.c_str(), rc.cwd.c_str(), strerror(errno),
             train_command_line(rc.args).c_str());
    // The folder moved: the run goes on where it is now. Resumed from another directory, the --out
    // is named whole too: the paths the run prints (its checkpoints, the interrupt's "./train
    // --resume --out DIR") are for the user's shell, which is not in the run's directory.
    if (elsewhere || !same_file(out_of(rc.args), here)) {
        std::vector<std::string> kept;
        for (size_t i = 0; i < rc.args.size(); i++)
            if (rc.args[i] == "--out" && i + 1 < rc.args.size()) i++;
            else if (rc.args[i].rfind("--out=", 0) != 0) kept.push_back(rc.args[i]);
        rc.args = kept;
        rc.args.insert(rc.args.end(), {"--out", here});
    }
    rc.args.push_back("--resume");
    printf("resume: the command recorded in %s/run.json: %s\n", out.c_str(), train_command_line(rc.args).c_str());
    return rc.args;
}
