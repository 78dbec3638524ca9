// benchmark.h: ./train --bench, the training-step benchmark (no dataset needed).
#pragma once
#include "training/train_config.h"

namespace iflame {

struct TrainBenchmarkResult {
  double mean_step_s = 0, min_step_s = 0;
  double tokens_per_s = 0;
  double peak_gib = 0;      // peak memory held by tensors over the timed steps (GPU, or host on the CPU)
  double estimate_gib = 0;  // the memory model's peak for the same step (training/memory_model.h)
};

// Times config.bench_steps full steps (forward, backward, clipping, Muon + AdamW)
// of config.model at config.batch_size x config.bench_length random tokens, after
// two warm-up steps, and prints a short table unless config.quiet.
TrainBenchmarkResult run_train_benchmark(const TrainConfig& config);

// ./train --estimate-memory: the memory model for config.model at
// config.batch_size x config.bench_length, recompute none and blocks (no device).
void print_memory_estimate(const TrainConfig& config);

}  // namespace iflame
