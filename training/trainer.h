// trainer.h: the training loop behind ./train.
//
// One Trainer owns the dataset, loader, model, optimizer and run folder. run()
// steps until the planned number of steps, a stop request (SIGINT/SIGTERM or
// request_stop()), or too many consecutive non-finite steps, checkpointing on
// the way out. A run's state (parameters, optimizer, step, data position) is
// all in its checkpoint, so --resume continues exactly where it stopped.
#pragma once
#include <atomic>
#include <cstdio>
#include <memory>
#include <string>

#include "data/dataset.h"
#include "data/loader.h"
#include "nn/iflame.h"
#include "training/optimizer.h"
#include "training/train_config.h"

namespace iflame {

// Set by the signal handler that main() installs; the loop checks it each step.
extern std::atomic<bool> g_stop_requested;
void install_stop_signal_handlers();

class Trainer {
 public:
  explicit Trainer(const TrainConfig& config);
  ~Trainer();

  // Returns the process exit code: 0 on completion or on a requested stop
  // (checkpoint saved), 1 when training had to give up.
  int run();

  // Stops after this many steps in total (tests use it to simulate an interrupt).
  void stop_at_step(int64_t step) { stop_at_step_ = step; }
  IFlame& model() { return *model_; }
  int64_t step() const { return step_; }
  int64_t total_steps() const { return total_steps_; }
  int64_t skipped_steps() const { return skipped_total_; }
  std::string last_checkpoint() const { return config_.run_dir() + "/last.ckpt"; }

  struct ValidationResult {
    double loss = 0, accuracy = 0, perplexity = 0;
    int64_t tokens = 0;
  };
  ValidationResult validate();

 private:
  void save(const std::string& file_name);
  void resume_from(const std::string& path);
  void log_json(const std::string& line);
  Batch next_batch();

  TrainConfig config_;
  Device device_ = Device::CPU;
  DType matmul_ = DType::F32;
  std::unique_ptr<MeshDataset> dataset_;
  std::vector<int64_t> train_indices_, val_indices_;
  std::unique_ptr<Loader> loader_;
  std::unique_ptr<IFlame> model_;
  std::unique_ptr<MuonAdamW> optimizer_;
  int64_t step_ = 0, total_steps_ = 0, epoch_ = 0, batch_in_epoch_ = 0, batches_per_epoch_ = 0;
  int64_t skipped_total_ = 0, stop_at_step_ = -1;
  std::FILE* log_ = nullptr;
};

}  // namespace iflame
