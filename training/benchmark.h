// benchmark.h: ./train --bench, the training-step benchmark (no dataset needed).
#pragma once
#include <vector>

#include "core/profiler.h"
#include "training/train_config.h"

namespace iflame {

struct TrainBenchmarkResult {
  double mean_step_s = 0, min_step_s = 0;
  double tokens_per_s = 0;
  double peak_gib = 0;  // peak GPU memory held by tensors (0 on the CPU)
  std::vector<profiler::OpStats> profile;  // with config.profile: every op of the timed steps
};

// Times config.bench_steps full steps (forward, backward, clipping, Muon + AdamW)
// of config.model at config.batch_size x config.bench_length random tokens, after
// two warm-up steps, and prints a short table unless config.quiet. With
// config.profile every op of the timed steps is timed too (core/profiler.h; the
// step times then include the profiler's event records) and its table printed.
TrainBenchmarkResult run_train_benchmark(const TrainConfig& config);

}  // namespace iflame
