// benchmark.cpp: timing of whole training steps on random tokens.
#include "training/benchmark.h"

#include <algorithm>
#include <chrono>
#include <cstdio>

#include "core/allocator.h"
#include "core/device.h"
#include "core/error.h"
#include "core/philox.h"
#include "core/random.h"
#include "nn/iflame.h"
#include "ops/grad_norm.h"
#include "training/memory_model.h"
#include "training/optimizer.h"

namespace iflame {

namespace {
// START row, then coordinate tokens: the shape of a real batch without padding.
Tensor random_batch(int64_t B, int64_t T, uint64_t seed) {
  Tensor t = Tensor::empty({B, T}, DType::I32);
  int32_t* p = t.data<int32_t>();
  for (int64_t i = 0; i < B * T; i++) {
    int64_t pos = i % T;
    p[i] = pos < kTokensPerFace ? kStartToken
                                : static_cast<int32_t>(philox_draw(seed, 0, static_cast<uint64_t>(i)).v[0] %
                                                       kNumCoordinateTokens);
  }
  return t;
}
}  // namespace

TrainBenchmarkResult run_train_benchmark(const TrainConfig& config) {
  const Device device = config.resolved_device();
  const DType matmul = config.resolved_matmul(device);
  IFlame model(IFlameConfig::preset(config.model), device);
  const Recompute recompute = config.resolved_recompute(device, model.config());
  Generator gen(config.seed);
  model.init(gen);
  MuonAdamW optimizer(model.parameters(), OptimizerConfig{});
  const int64_t B = config.batch_size, T = config.bench_length;
  const Tensor tokens = random_batch(B, T, config.seed);
  ForwardContext ctx{matmul, recompute};

  auto one_step = [&]() {
    model.zero_grad();
    IFlame::LossOutput out = model.loss(tokens, ctx);
    tape().backward(out.loss);
    std::vector<Tensor> grads;
    for (auto& kv : model.parameters().items())
      if (kv.second.grad().defined()) grads.push_back(kv.second.grad());
    ops::clip_grad_norm(grads, config.grad_clip);
    optimizer.step(config.lr);
  };

  for (int i = 0; i < 2; i++) one_step();  // warm-up: allocator cache, cuBLAS heuristics
  cuda_synchronize();
  if (device == Device::CUDA) reset_peak_device_memory();
  else reset_peak_host_memory();
  std::vector<double> times;
  for (int i = 0; i < config.bench_steps; i++) {
    auto t0 = std::chrono::steady_clock::now();
    one_step();
    cuda_synchronize();
    times.push_back(std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count());
  }
  TrainBenchmarkResult r;
  for (double t : times) r.mean_step_s += t / times.size();
  r.min_step_s = *std::min_element(times.begin(), times.end());
  r.tokens_per_s = B * T / r.mean_step_s;
  r.peak_gib = (device == Device::CUDA ? device_memory_stats() : host_memory_stats()).peak_in_use / double(1ull << 30);
  // The model stores activations in f32 whatever --precision says (bf16 is for matrix products).
  const MemoryEstimate estimate = estimate_training_memory(model.config(), B, T, DType::F32, recompute);
  r.estimate_gib = estimate.total() / double(1ull << 30);
  if (!config.quiet) {
    std::printf("device      %s\n", device == Device::CUDA ? cuda_device_description().c_str() : "cpu");
    std::printf("model       %s (%s), %s matrix products, Muon + AdamW, recompute %s\n", config.model.c_str(),
                model.config().describe().c_str(), matmul == DType::BF16 ? "bf16" : "f32", recompute_name(recompute));
    std::printf("batch       %lld x %lld tokens, %d timed steps after 2 warm-up steps\n",
                static_cast<long long>(B), static_cast<long long>(T), config.bench_steps);
    std::printf("step        %.4f s mean, %.4f s best\n", r.mean_step_s, r.min_step_s);
    std::printf("throughput  %.1fk tokens/s\n", r.tokens_per_s / 1e3);
    if (config.model == "shapenet" && T == 6921)  // spec §6's count for this configuration
      std::printf("model work  %.1f TFLOP/s (274 MFLOP per token, spec §6)\n", 274e6 * r.tokens_per_s / 1e12);
    std::printf("peak memory %.2f GiB held by tensors (%s, measured over the timed steps)\n", r.peak_gib,
                device == Device::CUDA ? "GPU" : "host");
    std::printf("memory model (an estimate, training/memory_model.h):\n%s",
                describe_memory({{str("recompute ", recompute_name(recompute)), estimate}}, "            ").c_str());
  }
  return r;
}

void print_memory_estimate(const TrainConfig& config) {
  const IFlameConfig model = IFlameConfig::preset(config.model);
  const int64_t B = config.batch_size, T = config.bench_length;
  std::printf("model %s (%s), batch %lld x %lld tokens, f32 activations: an estimate (training/memory_model.h)\n",
              config.model.c_str(), model.describe().c_str(), static_cast<long long>(B), static_cast<long long>(T));
  std::printf("%s", describe_memory({{"none", estimate_training_memory(model, B, T, DType::F32, Recompute::None)},
                                     {"blocks", estimate_training_memory(model, B, T, DType::F32, Recompute::Blocks)}})
                        .c_str());
}

}  // namespace iflame
