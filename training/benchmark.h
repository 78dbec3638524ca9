// benchmark.h: ./train --bench, the training-step benchmark, and ./train
// --bench-kernels, the attention-kernel and optimizer benchmarks (no dataset needed).
#pragma once
#include <vector>

#include "core/profiler.h"
#include "training/train_config.h"

namespace iflame {

struct TrainBenchmarkResult {
  double mean_step_s = 0, min_step_s = 0;
  double tokens_per_s = 0;
  std::vector<profiler::OpStats> profile;  // with config.profile: every op of the timed steps
  double peak_gib = 0;      // peak memory held by tensors over the timed steps (GPU, or host on the CPU)
  double estimate_gib = 0;  // the memory model's peak for the same step (training/memory_model.h)
};

// Times config.bench_steps full steps (forward, backward, clipping, Muon + AdamW)
// of config.model at config.batch_size x config.bench_length random tokens, after
// two warm-up steps, and prints a short table unless config.quiet. With
// config.profile every op of the timed steps is timed too (core/profiler.h; the
// step times then include the profiler's event records) and its table printed.
TrainBenchmarkResult run_train_benchmark(const TrainConfig& config);

struct AttentionBenchmarkResult {
  // Causal softmax attention.
  double forward_ms = 0, forward_backward_ms = 0;  // medians
  double forward_tflops = 0, backward_tflops = 0, total_tflops = 0;
  // Decayed linear attention (the model's slopes for H heads).
  double linear_forward_ms = 0, linear_forward_backward_ms = 0;  // medians
  double linear_forward_gbps = 0, linear_total_gbps = 0;
};

// ./train --bench-kernels: times the attention kernels alone on the GPU, bf16, B = 16,
// H = 16, D = 32, T = config.bench_length: the median of config.bench_steps forward
// runs and forward+backward runs, after a warm-up, of the causal softmax attention
// (ops/causal_attention.h; FLOPs counted as 4 B H (T^2 / 2) D for the forward and 2.5
// times that for the backward) and of the decayed linear attention
// (ops/linear_attention.h; it moves bytes rather than FLOPs: GB/s count each input read
// and each output written once, 4 tensors for the forward, 7 for the backward).
// Prints a short table unless config.quiet; needs a GPU.
AttentionBenchmarkResult run_attention_benchmark(const TrainConfig& config);
struct OptimizerBenchmarkResult {
  double step_ms = 0;  // MuonAdamW::step, median
  double muon_ms = 0;  // the sum of the groups' ms
  struct Group {       // Muon parameters of one shape [rows, cols] up to transposition
    int64_t rows = 0, cols = 0;
    int count = 0;
    double ms = 0;        // ops::muon_update_group over the group, median
    double no_ns_ms = 0;  // the same with 0 Newton-Schulz steps (momentum, norm, apply)
    double ns_flops = 0;  // the Newton-Schulz products' FLOPs
  };
  std::vector<Group> groups;
};

// Also ./train --bench-kernels: times the optimizer step of config.model alone on
// the GPU (random gradients), the median of config.bench_steps runs after a
// warm-up: the whole MuonAdamW::step, and each Muon group with and without its
// Newton-Schulz iteration (the difference: the batched products and their
// element-wise combinations). Prints a short table unless config.quiet; needs a GPU.
OptimizerBenchmarkResult run_optimizer_benchmark(const TrainConfig& config);

// ./train --estimate-memory: the memory model for config.model at
// config.batch_size x config.bench_length, recompute none and blocks (no device).
void print_memory_estimate(const TrainConfig& config);

}  // namespace iflame
