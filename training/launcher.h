// launcher.h: `./train --gpus N` on one machine: the program starts N copies of
// itself, one per GPU, and waits for them.
//
// Child r runs the same command line without `--gpus N`, plus
//   --rank r --world-size N --local-rank r --rendezvous <tmpdir>/rendezvous
// (a fresh temporary folder, removed afterwards). SIGINT and SIGTERM reaching the
// launcher are passed on to every child (each saves a checkpoint and stops). When
// a child fails (non-zero exit or killed by a signal), the others get SIGTERM,
// then SIGKILL after a grace period (a rank blocked in a collective on a dead peer
// never sees its stop flag), and the launcher exits with the failed child's code.
#pragma once
#include <string>
#include <vector>

namespace iflame {

// The arguments (without argv[0]) of child `rank`.
std::vector<std::string> child_arguments(const std::vector<std::string>& args, int rank, int world_size,
                                         const std::string& rendezvous);

// Starts one process per command (argv-style; commands[i][0] is the program),
// forwards SIGINT/SIGTERM, stops the others when one fails. Returns 0 when all
// succeed, else the first failure's exit code (128 + signal when it was killed).
// `failure` (optional) receives a sentence naming the failed process.
int run_children(const std::vector<std::vector<std::string>>& commands, double grace_s = 20.0,
                 std::string* failure = nullptr);

// The whole of --gpus N: builds the children's command lines from argv and runs
// them with /proc/self/exe. Returns the exit code for main().
int launch_local(int argc, char** argv, int gpus);

}  // namespace iflame
