// cli_fixtures.h: running a program's main function in-process with its
// arguments, its exit status and what it printed; small files for the tests of
// bad input (tests/test_cli.cpp, tests/test_bad_input.cpp, tests/test_run_folder.cpp).
#pragma once
#include <fcntl.h>
#include <unistd.h>

#include <cstdio>
#include <filesystem>
#include <fstream>
#include <functional>
#include <sstream>
#include <string>
#include <vector>

#include "core/random.h"
#include "nn/checkpoint.h"
#include "nn/iflame.h"
#include "nn/state.h"

namespace iflame::test {

struct ProgramRun {
  int status = -1;
  std::string out, err;  // stdout and stderr
};

inline std::string read_text(const std::string& path) {
  std::ifstream in(path, std::ios::binary);
  std::ostringstream ss;
  ss << in.rdbuf();
  return ss.str();
}

inline void write_text(const std::string& path, const std::string& text) {
  std::ofstream(path, std::ios::binary | std::ios::trunc) << text;
}

// main_fn(argc, argv) with argv = {program, args...}; stdout and stderr go to
// files while it runs and are returned.
inline ProgramRun run_program_main(const std::function<int(int, char**)>& main_fn, const std::string& program,
                                   std::vector<std::string> args) {
  args.insert(args.begin(), program);
  std::vector<char*> argv;
  for (auto& a : args) argv.push_back(a.data());
  std::filesystem::create_directories("build");
  const std::string out_path = "build/cli_stdout.txt", err_path = "build/cli_stderr.txt";
  std::fflush(stdout);
  std::fflush(stderr);
  const int saved_out = ::dup(1), saved_err = ::dup(2);
  const int out_fd = ::open(out_path.c_str(), O_WRONLY | O_CREAT | O_TRUNC, 0644);
  const int err_fd = ::open(err_path.c_str(), O_WRONLY | O_CREAT | O_TRUNC, 0644);
  ::dup2(out_fd, 1);
  ::dup2(err_fd, 2);
  ProgramRun r;
  r.status = main_fn(static_cast<int>(argv.size()), argv.data());
  std::fflush(stdout);
  std::fflush(stderr);
  ::dup2(saved_out, 1);
  ::dup2(saved_err, 2);
  for (int fd : {saved_out, saved_err, out_fd, err_fd}) ::close(fd);
  r.out = read_text(out_path);
  r.err = read_text(err_path);
  return r;
}

// `path` as an empty folder (made, or emptied).
inline std::string fresh_dir(const std::string& path) {
  std::filesystem::remove_all(path);
  std::filesystem::create_directories(path);
  return path;
}

// 20 KB of seeded random bytes: what a user may hand over by mistake.
inline std::string random_bytes(size_t n, uint64_t seed) {
  Generator g(seed);
  std::string s(n, '\0');
  for (char& c : s) c = static_cast<char>(static_cast<int>(g.uniform() * 256.0f) & 0xff);
  return s;
}

// A native checkpoint of a freshly initialised tiny model (no optimizer state).
inline CheckpointData tiny_model_checkpoint() {
  IFlame model(IFlameConfig::preset("tiny"), Device::CPU);
  Generator gen(1);
  model.init(gen);
  CheckpointData ck;
  add_model_to_checkpoint(model, ck);
  for (auto& nt : ck.tensors) nt.second = nt.second.clone();  // independent of the model
  return ck;
}

// Replaces (or adds) a meta entry.
inline void set_meta(CheckpointData& ck, const std::string& key, const std::string& value) {
  for (auto& kv : ck.meta)
    if (kv.first == key) {
      kv.second = value;
      return;
    }
  ck.meta.push_back({key, value});
}

// Every character printable (a message never echoes raw bytes to a terminal).
inline bool printable(const std::string& s) {
  for (unsigned char c : s)
    if ((c < 0x20 && c != '\n' && c != '\t') || c == 0x7f) return false;
  return true;
}

}  // namespace iflame::test
