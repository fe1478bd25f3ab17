// What ./train keeps in its --out besides the checkpoints (model/trainer.h), and the checks before
// a run writes there: the lock that keeps a second run out, and the run's command.
#pragma once
#include <string>
#include <vector>

// Takes OUT/.lock (creating OUT) for as long as the process lives, or fails naming the run that
// holds it.
void lock_out_dir(const std::string& out);
// A new run (neither resume nor overwrite) refuses an --out that holds an earlier run's
// checkpoints; --overwrite refuses to delete any of `inputs` (what the run starts from) with them.
void check_out_dir(const std::string& out, bool resume, bool overwrite, const std::vector<std::string>& inputs);

// The command of the run in an --out, kept in OUT/run.json. A resumed run must be given the run's
// own settings (the checkpoint's signature refuses others), and after a kill or a reboot the command
// line is what a user has lost: `./train --resume` alone, or with only `--out DIR`, reruns the
// recorded command from the directory it was started in.
struct RunCommand {
    std::string cwd;                // where the run started: its relative paths are relative to it
    std::vector<std::string> args;  // argv[1..], without --resume and --overwrite (a rerun adds --resume)
};

// Writes OUT/run.json (atomically) for this process's arguments.
void save_run_command(const std::string& out_dir, int argc, char** argv);
// OUT/run.json; false when there is none. A file that does not parse fails naming it.
bool load_run_command(const std::string& out_dir, RunCommand& rc);
// "./train --data 'my data.jsonl' ...": the arguments as a line a shell runs as they are.
std::string train_command_line(const std::vector<std::string>& args);

// When argv is `--resume` and at most `--out DIR` (the whole command a user retypes after a kill)
// and that --out holds run.json: moves to the recorded directory and returns the recorded arguments
// with --resume, their --out made the given one's absolute path when the folder has moved since
// (e.g. the run's --out renamed) or the user is in another directory (so that the paths the run
// prints hold where the user is). Otherwise returns nothing and argv stands.
std::vector<std::string> recorded_resume_args(int argc, char** argv);
