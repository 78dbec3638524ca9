// run_folder.cpp: claiming a run folder (fresh name or refusal, lock file) and
// tidying it for --resume.
#include "training/run_folder.h"

#include <fcntl.h>
#include <sys/file.h>
#include <sys/stat.h>
#include <unistd.h>

#include <cerrno>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <filesystem>
#include <fstream>
#include <vector>

#include "core/error.h"
#include "core/flags.h"

namespace iflame {

namespace fs = std::filesystem;

bool holds_a_run(const std::string& dir) {
  std::error_code ec;
  for (fs::directory_iterator it(dir, ec), end; !ec && it != end; it.increment(ec)) {
    const fs::path& p = it->path();
    if (p.filename() == "log.jsonl" || p.extension() == ".ckpt") return true;
  }
  return false;
}

int64_t log_row_step(const std::string& line) {
  const std::string key = "\"step\":";
  const size_t at = line.find(key);
  if (at == std::string::npos) return -1;
  char* end = nullptr;
  const long long v = std::strtoll(line.c_str() + at + key.size(), &end, 10);
  return end == line.c_str() + at + key.size() ? -1 : v;
}

namespace {

// Creates `path` and its parents; throws InputError naming the part that fails.
void make_folders(const std::string& path) {
  std::error_code ec;
  fs::create_directories(path, ec);
  IFLAME_REQUIRE(!ec && fs::is_directory(path), "cannot create run folder ", path, ": ",
                 ec ? ec.message() : std::string("a file of that name is in the way"));
}

// Locks path/.lock; returns the descriptor, or -1 when another process holds it.
int try_lock(const std::string& path) {
  const std::string lock = path + "/.lock";
  const int fd = ::open(lock.c_str(), O_RDWR | O_CREAT | O_CLOEXEC, 0644);
  IFLAME_REQUIRE(fd >= 0, "cannot create ", lock, ": ", std::strerror(errno));
  if (::flock(fd, LOCK_EX | LOCK_NB) != 0) {
    ::close(fd);
    return -1;
  }
  const std::string pid = std::to_string(::getpid()) + "\n";
  if (::ftruncate(fd, 0) == 0 && ::write(fd, pid.data(), pid.size()) < 0) {
    // the pid is only for the message another process prints; the lock holds without it
  }
  return fd;
}

std::string lock_holder(const std::string& path) {
  std::ifstream in(path + "/.lock");
  std::string pid;
  in >> pid;
  return pid.empty() ? "another process" : "process " + pid;
}

}  // namespace

RunFolder::RunFolder(const std::string& path, bool fresh_name_allowed, bool resuming) {
  for (int attempt = 1;; attempt++) {
    path_ = attempt == 1 ? path : str(path, "-", attempt);
    make_folders(path_);
    lock_fd_ = try_lock(path_);
    const bool in_use = lock_fd_ < 0;
    const bool taken = in_use || (!resuming && holds_a_run(path_));
    if (!taken) break;
    if (lock_fd_ >= 0) ::close(lock_fd_);
    lock_fd_ = -1;
    if (fresh_name_allowed && !resuming && attempt < 1000) continue;
    if (in_use)
      IFLAME_REJECT("run folder ", path_, " is in use by ", lock_holder(path_),
                    " (a ./train running now); wait for it, or choose another --name");
    throw UsageError(str("run folder ", path_, " already holds a run; continue it with --resume ", path_,
                         "/last.ckpt, or choose another --name (nothing was written)"));
  }
  renamed_ = path_ != path;
}

RunFolder::~RunFolder() {
  if (lock_fd_ >= 0) ::close(lock_fd_);  // closing releases the flock
}

RunFolder& RunFolder::operator=(RunFolder&& other) noexcept {
  if (this != &other) {
    if (lock_fd_ >= 0) ::close(lock_fd_);
    path_ = std::move(other.path_);
    renamed_ = other.renamed_;
    lock_fd_ = other.lock_fd_;
    other.lock_fd_ = -1;
  }
  return *this;
}

int64_t RunFolder::prepare_resume(int64_t step) const {
  std::error_code ec;
  for (fs::directory_iterator it(path_, ec), end; !ec && it != end; it.increment(ec))
    if (it->path().extension() == ".tmp") fs::remove(it->path(), ec);
  const std::string log = path_ + "/log.jsonl";
  if (!fs::exists(log)) return 0;
  std::vector<std::string> kept;
  int64_t dropped = 0;
  {
    std::ifstream in(log);
    IFLAME_REQUIRE(in.good(), "cannot read ", log);
    std::string line;
    while (std::getline(in, line)) {
      if (log_row_step(line) > step) dropped++;
      else kept.push_back(line);
    }
  }
  if (dropped == 0) return 0;
  const std::string tmp = log + ".tmp";
  {
    std::ofstream out(tmp, std::ios::trunc);
    for (const std::string& line : kept) out << line << "\n";
    out.flush();
    IFLAME_REQUIRE(out.good(), "cannot write ", tmp);
  }
  fs::rename(tmp, log, ec);
  IFLAME_REQUIRE(!ec, "cannot replace ", log, ": ", ec.message());
  return dropped;
}

}  // namespace iflame
