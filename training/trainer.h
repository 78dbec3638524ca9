// trainer.h: the training loop behind ./train.
//
// One Trainer owns the dataset, loader, model, optimizer and run folder. run()
// steps until the planned number of steps, a stop request (SIGINT/SIGTERM, or
// stop_at_step()), or too many consecutive non-finite steps, checkpointing on
// the way out. A stop request arriving inside a step drops that step
// (core/interrupt.h) and checkpoints the state before it. On the CPU, run()
// first estimates the longest step's time (training/step_estimate.h) and
// refuses, unless --force, a configuration whose step would take minutes. A run's state (parameters, optimizer, step, data position) is
// all in its checkpoint, so --resume continues exactly where it stopped.
//
// Data parallel (docs/distributed.md): every rank runs a Trainer with the same
// config and its own Communicator. Ranks read their share of each global batch;
// after backward the gradients are summed over ranks, each weighted by its share
// of the global batch's counted tokens (so the result is the gradient of the
// global token-mean loss); clipping and the NaN check then see identical
// gradients on every rank, so every rank takes the same decision. Only rank 0
// prints, logs and writes checkpoints.
#pragma once
#include <atomic>
#include <cstdio>
#include <memory>
#include <string>

#include "core/interrupt.h"
#include "data/dataset.h"
#include "data/loader.h"
#include "nn/checkpoint.h"
#include "nn/iflame.h"
#include "training/distributed.h"
#include "training/optimizer.h"
#include "training/step_estimate.h"
#include "training/run_folder.h"
#include "training/train_config.h"

namespace iflame {

// SIGINT and SIGTERM set g_stop_requested (core/interrupt.h): the loop checks it
// before each step, and a single process's step gives way to it between ops.
void install_stop_signal_handlers();

// Where a resumed run continues its epoch. The checkpoint's position is
// saved_batch global batches of saved_global_batch meshes (world size x batch).
// The same global batch continues at the same batch: exact when the world size is
// unchanged too, and the same meshes per step when only the split differs.
// Another global batch continues after the meshes already consumed, rounded up
// to whole batches (no mesh is seen twice in the epoch; fewer than one global
// batch of them are skipped), at most at the epoch's end.
int64_t resume_batch_in_epoch(int64_t saved_batch, int64_t saved_global_batch, int64_t global_batch,
                              int64_t batches_in_epoch);

class Trainer {
 public:
  // `comm` connects the ranks of a data-parallel run (nullptr: a single process).
  explicit Trainer(const TrainConfig& config, std::shared_ptr<Communicator> comm = nullptr);
  ~Trainer();

  // Returns the process exit code: 0 on completion or on a requested stop
  // (checkpoint saved), 1 when training had to give up. Throws iflame::Error,
  // before any step, when a CPU step is estimated to take over
  // kMaxStepSeconds and --force was not given.
  int run();

  // Stops after this many steps in total (tests use it to simulate an interrupt).
  void stop_at_step(int64_t step) { stop_at_step_ = step; }
  IFlame& model() { return *model_; }
  int64_t step() const { return step_; }
  int64_t total_steps() const { return total_steps_; }
  int64_t skipped_steps() const { return skipped_total_; }
  int64_t epoch() const { return epoch_; }
  // The CPU step-time estimate run() made (batch 0 when none was made: on a GPU, or with --force).
  const StepEstimate& step_estimate() const { return step_estimate_; }
  int64_t batch_in_epoch() const { return batch_in_epoch_; }
  std::string last_checkpoint() const { return config_.run_dir() + "/last.ckpt"; }

  struct ValidationResult {
    double loss = 0, accuracy = 0, perplexity = 0;
    int64_t tokens = 0;
  };
  ValidationResult validate();

 private:
  void save(const std::string& file_name);
  // Saves last.ckpt with the last complete state, says so, returns exit code 0.
  int stop_and_save(bool tty);
  // The longest training batch's step time on the CPU (unless --force); throws when too slow.
  void check_step_time();
  // Faces of the longest training mesh: its sequence, 9 (faces + 2) tokens, is the longest batch's length.
  int longest_training_faces() const;
  void resume_from(const CheckpointData& checkpoint, const std::string& path);
  void log_json(const std::string& line);
  Batch next_batch();
  bool is_root() const { return comm_->rank() == 0; }

  TrainConfig config_;
  std::string model_label_;  // the preset, or where the weights came from
  std::shared_ptr<Communicator> comm_;
  Device device_ = Device::CPU;
  DType matmul_ = DType::F32;
  Recompute recompute_ = Recompute::None;  // for training steps; validation records nothing
  std::unique_ptr<MeshDataset> dataset_;
  std::vector<int64_t> train_indices_, val_indices_;
  std::unique_ptr<Loader> loader_;
  std::unique_ptr<IFlame> model_;
  std::unique_ptr<MuonAdamW> optimizer_;
  int64_t step_ = 0, total_steps_ = 0, epoch_ = 0, batch_in_epoch_ = 0, batches_per_epoch_ = 0;
  int64_t skipped_total_ = 0, stop_at_step_ = -1;
  StepEstimate step_estimate_;
  std::FILE* log_ = nullptr;
  RunFolder run_folder_;  // rank 0: the claimed (locked) run folder
};

}  // namespace iflame
