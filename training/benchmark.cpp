// benchmark.cpp: timing of whole training steps on random tokens, of the
// attention kernels (causal softmax and decayed linear) alone, and of the
// optimizer step alone.
#include "training/benchmark.h"

#include <algorithm>
#include <chrono>
#include <cmath>
#include <cstdio>
#include <functional>
#include <vector>

#include "core/allocator.h"
#include "core/device.h"
#include "core/error.h"
#include "core/gpu_capability.h"
#include "core/philox.h"
#include "core/random.h"
#include "nn/iflame.h"
#include "ops/causal_attention.h"
#include "ops/grad_norm.h"
#include "ops/kernel_choices.h"
#include "ops/linear_attention.h"
#include "training/memory_model.h"
#include "training/optimizer.h"
#include "training/step_estimate.h"

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

// The median of `runs` timed calls of f (wall clock around a synchronized GPU),
// after one warm-up call, in ms.
double median_ms(int runs, const std::function<void()>& f) {
  f();
  cuda_synchronize();
  std::vector<double> ms;
  for (int i = 0; i < std::max(runs, 1); i++) {
    auto t0 = std::chrono::steady_clock::now();
    f();
    cuda_synchronize();
    ms.push_back(std::chrono::duration<double, std::milli>(std::chrono::steady_clock::now() - t0).count());
  }
  std::sort(ms.begin(), ms.end());
  return ms[ms.size() / 2];
}
}  // namespace

TrainBenchmarkResult run_train_benchmark(const TrainConfig& config) {
  const Device device = config.resolved_device();
  const DType matmul = config.resolved_matmul(device);
  IFlame model(IFlameConfig::preset(config.model), device);
  const Recompute recompute = config.resolved_recompute(device, model.config());
  Generator gen(config.seed);
  model.init(gen);
  OptimizerConfig oc;
  oc.ns_dtype = config.muon_ns_dtype(device);
  MuonAdamW optimizer(model.parameters(), oc);
  const int64_t B = config.batch_size, T = config.bench_length;
  const Tensor tokens = random_batch(B, T, config.seed);
  ForwardContext ctx = config.forward_context(device);
  ctx.recompute = recompute;

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

  // Profiling is on for the warm-up too, so the event pool has grown before the
  // timed steps; what the warm-up recorded is dropped.
  if (config.profile) profiler::set_enabled(true);
  for (int i = 0; i < 2; i++) one_step();  // warm-up: allocator cache, cuBLAS heuristics
  cuda_synchronize();
  if (config.profile) profiler::reset();
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
  if (config.profile) {
    r.profile = profiler::collect();
    profiler::set_enabled(false);
    profiler::reset();
  }
  for (double t : times) r.mean_step_s += t / times.size();
  r.min_step_s = *std::min_element(times.begin(), times.end());
  r.tokens_per_s = B * T / r.mean_step_s;
  r.peak_gib = (device == Device::CUDA ? device_memory_stats() : host_memory_stats()).peak_in_use / double(1ull << 30);
  // The model stores activations in f32 whatever --precision says (bf16 is for matrix products).
  const MemoryEstimate estimate = estimate_training_memory(model.config(), B, T, ctx);
  r.estimate_gib = estimate.total() / double(1ull << 30);
  if (!config.quiet) {
    std::printf("device      %s\n", device == Device::CUDA ? cuda_device_description().c_str() : "cpu");
    std::printf("kernels     %s (ops/kernel_choices.h)\n", ops::describe_kernel_choices().c_str());
    if (device == Device::CUDA) std::printf("gpu paths   %s\n", gpu_paths_description().c_str());
    std::printf("model       %s (%s), %s matrix products, %s block activations, Muon (Newton-Schulz in %s) + AdamW, "
                "recompute %s\n",
                config.model.c_str(), model.config().describe().c_str(), matmul == DType::BF16 ? "bf16" : "f32",
                ctx.activations == DType::BF16 ? "bf16" : "f32", oc.ns_dtype == DType::BF16 ? "bf16" : "f32",
                recompute_label(recompute, ctx.ffn_recompute_blocks).c_str());
    std::printf("batch       %lld x %lld tokens, %d timed steps after 2 warm-up steps\n",
                static_cast<long long>(B), static_cast<long long>(T), config.bench_steps);
    std::printf("step        %.4f s mean, %.4f s best\n", r.mean_step_s, r.min_step_s);
    std::printf("throughput  %.1fk tokens/s\n", r.tokens_per_s / 1e3);
    if (config.model == "shapenet" && T == 6921) {  // spec §6's count for this configuration
      std::printf("model work  %.1f TFLOP/s (274 MFLOP per token, spec §6)\n", 274e6 * r.tokens_per_s / 1e12);
    } else {  // other lengths (36,018 for 4,000 faces): this project's count of a step, no recompute
      const double per_token = training_step_flops(model.config(), B, T) / double(B * T);
      std::printf("model work  %.1f TFLOP/s (%.0f MFLOP per token at this length, training_step_flops)\n",
                  per_token * r.tokens_per_s / 1e12, per_token / 1e6);
    }
    std::printf("peak memory %.2f GiB held by tensors (%s, measured over the timed steps)\n", r.peak_gib,
                device == Device::CUDA ? "GPU" : "host");
    std::printf("memory model (an estimate, training/memory_model.h):\n%s",
                describe_memory({{str("recompute ", recompute_label(recompute, ctx.ffn_recompute_blocks)), estimate}}, "            ").c_str());
    if (config.profile) {
      double op_ms = 0, step_ms = 0;
      for (const profiler::OpStats& row : r.profile) op_ms += row.ms;
      for (double t : times) step_ms += 1e3 * t;
      std::printf("\nprofile of the %d timed steps (forward, backward, clipping, optimizer):\n"
                  "ops %.1f ms of %.1f ms of step time (%.0f%%; the rest is outside any op: host work, allocation,\n"
                  "gaps between ops)%s\n",
                  config.bench_steps, op_ms, step_ms, step_ms > 0 ? 100 * op_ms / step_ms : 0.0,
                  device == Device::CUDA ? "" : "; CPU wall times, compared with H100 floors");
      std::fputs(profiler::format_table(r.profile).c_str(), stdout);
    }
  }
  return r;
}

AttentionBenchmarkResult run_attention_benchmark(const TrainConfig& config) {
  IFLAME_CHECK(cuda_available(), "--bench-kernels needs a GPU: ", cuda_unavailable_reason());
  const int64_t B = 16, H = 16, D = 32, T = config.bench_length;
  const float scale = 1.0f / std::sqrt(float(D));
  Generator gen(config.seed);
  auto make = [&]() {
    Tensor t = Tensor::empty({B, T, H, D}, DType::BF16, Device::CUDA);
    fill_uniform(t, gen, -1, 1);
    return t;
  };
  const Tensor q = make(), k = make(), v = make(), g = make();
  auto median = [&](const std::function<void()>& f) { return median_ms(config.bench_steps, f); };
  AttentionBenchmarkResult r;
  r.forward_ms = median([&] {
    Tensor lse;
    ops::causal_attention_forward(q, k, v, scale, &lse);
  });
  r.forward_backward_ms = median([&] {
    Tensor lse, dq, dk, dv;
    Tensor o = ops::causal_attention_forward(q, k, v, scale, &lse);
    ops::causal_attention_backward(g, q, k, v, o, lse, scale, dq, dk, dv);
  });
  const std::vector<float> slopes = ops::linear_attention_slopes(static_cast<int>(H));
  r.linear_forward_ms = median([&] { ops::linear_attention_forward(q, k, v, slopes); });
  r.linear_forward_backward_ms = median([&] {
    Tensor dq, dk, dv;
    Tensor o = ops::linear_attention_forward(q, k, v, slopes);
    ops::linear_attention_backward(g, q, k, v, slopes, dq, dk, dv);
  });
  const double forward_flop = 4.0 * B * H * (double(T) * T / 2) * D;
  const double backward_ms = r.forward_backward_ms - r.forward_ms;
  r.forward_tflops = forward_flop / (r.forward_ms * 1e-3) / 1e12;
  r.backward_tflops = backward_ms > 0 ? 2.5 * forward_flop / (backward_ms * 1e-3) / 1e12 : 0;
  r.total_tflops = 3.5 * forward_flop / (r.forward_backward_ms * 1e-3) / 1e12;
  const double tensor_bytes = static_cast<double>(q.nbytes());
  const double linear_backward_ms = r.linear_forward_backward_ms - r.linear_forward_ms;
  r.linear_forward_gbps = 4 * tensor_bytes / (r.linear_forward_ms * 1e-3) / 1e9;
  r.linear_total_gbps = 11 * tensor_bytes / (r.linear_forward_backward_ms * 1e-3) / 1e9;
  if (!config.quiet) {
    std::printf("device      %s\n", cuda_device_description().c_str());
    std::printf("kernels     %s (ops/kernel_choices.h)\n", ops::describe_kernel_choices().c_str());
    std::printf("gpu paths   %s\n", gpu_paths_description().c_str());
    std::printf("attention   causal softmax, bf16, B=%lld H=%lld T=%lld D=%lld, median of %d runs\n",
                static_cast<long long>(B), static_cast<long long>(H), static_cast<long long>(T),
                static_cast<long long>(D), config.bench_steps);
    std::printf("forward     %8.3f ms  %6.1f TFLOP/s\n", r.forward_ms, r.forward_tflops);
    std::printf("backward    %8.3f ms  %6.1f TFLOP/s (forward+backward minus forward)\n", backward_ms,
                r.backward_tflops);
    std::printf("fwd+bwd     %8.3f ms  %6.1f TFLOP/s\n", r.forward_backward_ms, r.total_tflops);
    std::printf("attention   decayed linear, bf16, same shapes, the model's %lld slopes (GB/s: each tensor "
                "read or written once)\n",
                static_cast<long long>(H));
    std::printf("forward     %8.3f ms  %6.0f GB/s\n", r.linear_forward_ms, r.linear_forward_gbps);
    std::printf("backward    %8.3f ms  %6.0f GB/s (forward+backward minus forward)\n", linear_backward_ms,
                linear_backward_ms > 0 ? 7 * tensor_bytes / (linear_backward_ms * 1e-3) / 1e9 : 0.0);
    std::printf("fwd+bwd     %8.3f ms  %6.0f GB/s\n", r.linear_forward_backward_ms, r.linear_total_gbps);
  }
  return r;
}

OptimizerBenchmarkResult run_optimizer_benchmark(const TrainConfig& config) {
  IFLAME_CHECK(cuda_available(), "--bench-kernels needs a GPU: ", cuda_unavailable_reason());
  IFlame model(IFlameConfig::preset(config.model), Device::CUDA);
  Generator gen(config.seed);
  model.init(gen);
  // Gradients of about the size training sees (after clipping at 1.0 over ~1e8 scalars).
  for (auto& kv : model.parameters().items()) fill_uniform(kv.second.grad_buffer(), gen, -1e-4f, 1e-4f);
  OptimizerConfig oc;
  oc.ns_dtype = config.muon_ns_dtype(Device::CUDA);
  MuonAdamW optimizer(model.parameters(), oc);
  const float lr = 1e-6f;  // small: the parameters barely move over the timed runs
  auto median = [&](const std::function<void()>& f) { return median_ms(config.bench_steps, f); };

  OptimizerBenchmarkResult r;
  r.step_ms = median([&] { optimizer.step(lr); });
  for (auto& kv : optimizer.muon_groups()) {
    const int64_t rows = kv.first.first, cols = kv.first.second;
    const std::vector<MuonAdamW::Slot*>& members = kv.second;
    OptimizerBenchmarkResult::Group g;
    g.rows = rows;
    g.cols = cols;
    g.count = static_cast<int>(members.size());
    g.ms = median([&] { optimizer.muon_group_step(members, lr, oc.ns_steps); });
    g.no_ns_ms = median([&] { optimizer.muon_group_step(members, lr, 0); });
    // Per Newton-Schulz step: X X^T (2 r^2 c), A A (2 r^3), B X (2 r^2 c) FLOPs.
    g.ns_flops = double(g.count) * oc.ns_steps * (4.0 * rows * rows * cols + 2.0 * rows * rows * rows);
    r.muon_ms += g.ms;
    r.groups.push_back(g);
  }
  if (!config.quiet) {
    int muon = 0, adamw = 0;
    for (const MuonAdamW::Slot& s : optimizer.slots()) (s.muon ? muon : adamw)++;
    std::printf("optimizer   %s: Muon (Newton-Schulz %d steps in %s) on %d matrices + AdamW on %d tensors, "
                "median of %d runs\n",
                config.model.c_str(), oc.ns_steps, oc.ns_dtype == DType::BF16 ? "bf16" : "f32", muon, adamw,
                config.bench_steps);
    std::printf("step        %8.3f ms (MuonAdamW::step; Muon groups %.3f ms, the rest AdamW)\n", r.step_ms,
                r.muon_ms);
    for (const OptimizerBenchmarkResult::Group& g : r.groups) {
      const double ns_ms = g.ms - g.no_ns_ms;
      std::printf("muon %4lldx%-5lld x%-3d %7.3f ms; without Newton-Schulz %7.3f ms; Newton-Schulz %7.3f ms, "
                  "%6.1f TFLOP/s\n",
                  static_cast<long long>(g.rows), static_cast<long long>(g.cols), g.count, g.ms, g.no_ns_ms, ns_ms,
                  ns_ms > 0 ? g.ns_flops / (ns_ms * 1e-3) / 1e12 : 0.0);
    }
  }
  return r;
}

void print_memory_estimate(const TrainConfig& config) {
  const IFlameConfig model = IFlameConfig::preset(config.model);
  const int64_t B = config.batch_size, T = config.bench_length;
  // As ./train would run it on a GPU with this --precision.
  ForwardContext ctx = config.forward_context(Device::CUDA);
  std::printf("model %s (%s), batch %lld x %lld tokens, on a GPU: %s block activations, FFN padded to a multiple "
              "of %d: an estimate (training/memory_model.h)\n",
              config.model.c_str(), model.describe().c_str(), static_cast<long long>(B), static_cast<long long>(T),
              ctx.activations == DType::BF16 ? "bf16" : "f32", ctx.ffn_align);
  std::vector<std::pair<std::string, MemoryEstimate>> columns;
  for (Recompute r : {Recompute::None, Recompute::Ffn, Recompute::Blocks}) {
    ctx.recompute = r;
    columns.push_back({recompute_label(r, ctx.ffn_recompute_blocks), estimate_training_memory(model, B, T, ctx)});
  }
  std::printf("%s", describe_memory(columns).c_str());
}

}  // namespace iflame
