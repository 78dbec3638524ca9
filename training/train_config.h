// train_config.h: everything ./train can be told, its defaults, and --help.
#pragma once
#include <cstdint>
#include <string>
#include <vector>

#include "core/dtype.h"
#include "nn/config.h"
#include "nn/layers.h"

namespace iflame {

struct TrainConfig {
  std::string dataset;               // positional: DATASET.npy
  std::string model = "shapenet";    // shapenet | small | tiny
  int batch_size = 8;
  float lr = 1e-3f;
  float min_lr = 1.28e-6f;
  float weight_decay = 0.1f;
  float warmup_fraction = 0.1f;
  float grad_clip = 1.0f;
  int64_t steps = 0;                 // 0: derived from epochs
  int epochs = 1;
  std::string muon_ns;               // Newton-Schulz precision: f32 | bf16 (the reference's); empty: the default
  std::string precision;             // bf16 | bf16-matmul | f32 ("" = bf16 on the GPU, f32 on the CPU)
  std::string device;                // cuda | cpu ("" = cuda if available)
  std::string recompute;             // none | blocks ("" = blocks for the published width on the GPU)
  int val_interval = 500;            // steps between validations (0: only at the end)
  int val_batches = 20;              // batches per validation (0: the whole split)
  int ckpt_interval = 1000;          // steps between checkpoints
  int log_interval = 10;             // steps between log lines
  int render_samples = -1;           // at each validation, sample this many meshes into a PNG (-1: 4 on a GPU, 0 on the CPU)
  float val_fraction = 0.05f;        // held out when the dataset records no validation split
  std::string out_dir = "runs";
  std::string name;                  // run name ("" = the dataset's stem and the model)
  std::string resume;                // native checkpoint to continue
  std::string init_from;             // published .pth (or native) weights to start from
  uint64_t seed = 0;
  int max_faces = 800;
  int bucket_window = 0;             // > 0: length bucketing over this many batches
  int loader_threads = 4;
  bool augment = true;
  int max_bad_steps = 5;             // consecutive non-finite steps before giving up
  double time_limit_s = 0;           // > 0: checkpoint and stop after this much wall time
  bool quiet = false;
  bool force = false;                // train without the CPU step-time estimate (which may refuse)
  bool bench = false;                // time training steps on random tokens, no dataset
  int bench_length = 6921;           // --bench sequence length (the published 769 rows)
  int bench_steps = 10;              // --bench timed steps (after 2 warm-up steps)
  bool bench_kernels = false;        // time the causal attention kernels alone (GPU, bf16)
  bool profile = false;              // --bench: also time every op (core/profiler.h) and print the table
  bool estimate_memory = false;      // print the memory model for --model/--batch/--bench-length, exit

  Device resolved_device() const;    // --device, or cuda when a GPU is usable
  DType resolved_matmul(Device d) const;  // --precision, or bf16 on the GPU and f32 on the CPU
  // Products, activations and FFN padding per --precision and device (recompute is set apart).
  ForwardContext forward_context(Device d) const;
  // --muon-ns, or by default bf16 where products are bf16 on the GPU (the
  // reference's choice, and tensor cores) and f32 elsewhere.
  DType muon_ns_dtype(Device d) const;
  Recompute resolved_recompute(Device d, const IFlameConfig& model) const;  // --recompute, or the default

  // Data parallel (docs/distributed.md). --batch is per process: the global batch
  // is world size x batch.
  int gpus = 0;                      // > 1: ./train starts this many processes itself
  int rank = -1, world_size = 0;     // set by hand or by --gpus; else from mpirun/srun
  int local_rank = -1;               // GPU index on this machine (-1: rank modulo GPUs)
  std::string rendezvous;            // FILE or HOST:PORT where the ranks meet
  double rendezvous_timeout_s = 300;
  int bucket_mb = 64;                // gradient bucket size for the all-reduce

  std::string run_dir() const;
};

// Parses argv (throws iflame::Error naming the bad flag). Sets `help` for --help.
TrainConfig parse_train_args(int argc, char** argv, bool& help);
std::string train_usage();

}  // namespace iflame
