// run_folder.h: the folder a training run writes (log.jsonl, checkpoints),
// claimed so that no run is overwritten or mixed with another:
//
// - a new run (no --resume) never writes into a folder that already holds a
//   run (a log.jsonl or a .ckpt file): with an explicit --name it refuses,
//   naming the folder and the --resume line that continues it; with the default
//   name it takes the first free <name>-2, <name>-3, ... and says so;
// - a lock (flock on RUN/.lock, released by the kernel when the process ends,
//   however it ends) keeps a second live ./train out of the folder;
// - --resume truncates log.jsonl to the rows of the checkpoint's step and
//   before, and removes the *.tmp files a killed save left behind.
#pragma once
#include <cstdint>
#include <string>

namespace iflame {

class RunFolder {
 public:
  RunFolder() = default;
  // Claims the folder `path` (creating it), or path-2, path-3, ... when
  // `fresh_name_allowed` and it holds a run; `resuming` accepts a folder that
  // holds a run. Throws UsageError when the folder holds a run it may not take,
  // and InputError when another process holds its lock.
  RunFolder(const std::string& path, bool fresh_name_allowed, bool resuming);
  ~RunFolder();
  RunFolder(const RunFolder&) = delete;
  RunFolder& operator=(const RunFolder&) = delete;
  RunFolder(RunFolder&& other) noexcept { *this = std::move(other); }
  RunFolder& operator=(RunFolder&& other) noexcept;

  const std::string& path() const { return path_; }
  bool renamed() const { return renamed_; }  // a fresh name was taken

  // For --resume from `step`: drops log.jsonl rows of later steps and stale
  // *.tmp files. Returns how many log rows were dropped.
  int64_t prepare_resume(int64_t step) const;

 private:
  std::string path_;
  bool renamed_ = false;
  int lock_fd_ = -1;
};

// True when `dir` holds a run: a log.jsonl or a .ckpt file.
bool holds_a_run(const std::string& dir);
// The step of a log.jsonl row ({"step": N, ...}), or -1 when it has none.
int64_t log_row_step(const std::string& line);

}  // namespace iflame
