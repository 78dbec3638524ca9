// launcher.cpp: fork/exec of one ./train per GPU, signal forwarding, failure
// handling (see launcher.h).
#include "training/launcher.h"

#include <signal.h>
#include <sys/wait.h>
#include <unistd.h>

#include <chrono>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <thread>

#include "core/device.h"
#include "core/error.h"
#include "training/distributed.h"

namespace iflame {

namespace {

volatile sig_atomic_t g_forward_signal = 0;
void on_launcher_signal(int sig) { g_forward_signal = sig; }

std::string describe_status(int status) {
  if (WIFEXITED(status)) return str("exited with code ", WEXITSTATUS(status));
  if (WIFSIGNALED(status)) return str("was killed by signal ", WTERMSIG(status), " (", strsignal(WTERMSIG(status)), ")");
  return "stopped";
}
int exit_code_of(int status) {
  if (WIFEXITED(status)) return WEXITSTATUS(status);
  if (WIFSIGNALED(status)) return 128 + WTERMSIG(status);
  return 1;
}

}  // namespace

std::vector<std::string> child_arguments(const std::vector<std::string>& args, int rank, int world_size,
                                         const std::string& rendezvous) {
  std::vector<std::string> out;
  for (size_t i = 0; i < args.size(); i++) {
    if (args[i] == "--gpus") {
      i++;  // and its value
      continue;
    }
    out.push_back(args[i]);
  }
  for (const char* flag : {"--rank", "--world-size", "--local-rank", "--rendezvous"})
    for (const std::string& a : out)
      IFLAME_CHECK(a != flag, "--gpus starts its own processes and sets ", flag, " for them: leave it out");
  for (auto s : {std::string("--rank"), std::to_string(rank), std::string("--world-size"), std::to_string(world_size),
                 std::string("--local-rank"), std::to_string(rank), std::string("--rendezvous"), rendezvous})
    out.push_back(s);
  return out;
}

int run_children(const std::vector<std::vector<std::string>>& commands, double grace_s, std::string* failure) {
  using Clock = std::chrono::steady_clock;
  struct sigaction sa{}, old_int{}, old_term{};
  sa.sa_handler = on_launcher_signal;
  sigemptyset(&sa.sa_mask);
  g_forward_signal = 0;
  sigaction(SIGINT, &sa, &old_int);
  sigaction(SIGTERM, &sa, &old_term);

  std::vector<pid_t> pids;
  for (const auto& cmd : commands) {
    std::vector<char*> argv;
    for (const std::string& a : cmd) argv.push_back(const_cast<char*>(a.c_str()));
    argv.push_back(nullptr);
    std::fflush(nullptr);
    pid_t pid = fork();
    if (pid == 0) {
      signal(SIGINT, SIG_DFL);
      signal(SIGTERM, SIG_DFL);
      execv(argv[0], argv.data());
      std::fprintf(stderr, "launcher: cannot run %s: %s\n", argv[0], std::strerror(errno));
      _exit(127);
    }
    if (pid < 0) {
      std::fprintf(stderr, "launcher: fork failed: %s\n", std::strerror(errno));
      for (pid_t p : pids) kill(p, SIGKILL);
      for (pid_t p : pids) waitpid(p, nullptr, 0);
      sigaction(SIGINT, &old_int, nullptr);
      sigaction(SIGTERM, &old_term, nullptr);
      IFLAME_FAIL("launcher: fork failed: ", std::strerror(errno));
    }
    pids.push_back(pid);
  }

  std::vector<bool> running(pids.size(), true);
  size_t live = pids.size();
  int result = 0;
  bool stopping = false;
  Clock::time_point kill_at{};
  while (live > 0) {
    if (g_forward_signal) {
      int sig = g_forward_signal;
      g_forward_signal = 0;
      for (size_t i = 0; i < pids.size(); i++)
        if (running[i]) kill(pids[i], sig);
    }
    bool reaped = false;
    for (size_t i = 0; i < pids.size(); i++) {
      int status = 0;
      if (!running[i] || waitpid(pids[i], &status, WNOHANG) != pids[i]) continue;
      reaped = true;
      running[i] = false;
      live--;
      bool failed = !(WIFEXITED(status) && WEXITSTATUS(status) == 0);
      if (failed && !stopping) {
        result = exit_code_of(status);
        std::string what = str("process ", i, " of ", pids.size(), " ", describe_status(status));
        if (failure) *failure = what;
        std::fprintf(stderr, "launcher: %s; stopping the others\n", what.c_str());
        stopping = true;
        kill_at = Clock::now() + std::chrono::duration_cast<Clock::duration>(std::chrono::duration<double>(grace_s));
        for (size_t j = 0; j < pids.size(); j++)
          if (running[j]) kill(pids[j], SIGTERM);
      }
    }
    if (reaped) continue;
    if (stopping && Clock::now() >= kill_at) {
      for (size_t j = 0; j < pids.size(); j++)
        if (running[j]) kill(pids[j], SIGKILL);
      kill_at = Clock::time_point::max();
    }
    std::this_thread::sleep_for(std::chrono::milliseconds(20));
  }
  sigaction(SIGINT, &old_int, nullptr);
  sigaction(SIGTERM, &old_term, nullptr);
  return result;
}

int launch_local(int argc, char** argv, int gpus) {
  IFLAME_CHECK(gpus >= 1, "--gpus needs at least 1");
  IFLAME_CHECK(nccl_built(), "--gpus ", gpus, " needs a CUDA build with NCCL (nvcc and nccl.h at build time); "
               "this build has no NCCL");
  const int visible = cuda_device_count();
  IFLAME_CHECK(visible > 0, "--gpus ", gpus, ": no GPU is usable (", cuda_unavailable_reason(), ")");
  IFLAME_CHECK(gpus <= visible, "--gpus ", gpus, ", but this machine shows ", visible, " GPU",
               visible == 1 ? "" : "s", " (CUDA_VISIBLE_DEVICES?)");
  const char* tmp_root = std::getenv("TMPDIR");
  std::string templ = str(tmp_root && *tmp_root ? tmp_root : "/tmp", "/iflame-train-XXXXXX");
  IFLAME_CHECK(mkdtemp(&templ[0]) != nullptr, "cannot make a temporary folder ", templ, ": ", std::strerror(errno));
  const std::string rendezvous = templ + "/rendezvous";

  std::vector<std::string> args(argv + 1, argv + argc);
  std::vector<std::vector<std::string>> commands;
  for (int r = 0; r < gpus; r++) {
    std::vector<std::string> cmd{"/proc/self/exe"};
    for (std::string& a : child_arguments(args, r, gpus, rendezvous)) cmd.push_back(std::move(a));
    commands.push_back(std::move(cmd));
  }
  int rc = run_children(commands);
  unlink(rendezvous.c_str());
  rmdir(templ.c_str());
  return rc;
}

}  // namespace iflame
