// step_estimate.cpp: the FLOP count of a training step and the timed micro-step.
#include "training/step_estimate.h"

#include <algorithm>
#include <chrono>
#include <cmath>

#include "autograd/tape.h"
#include "core/device.h"
#include "core/error.h"
#include "core/tokens.h"

namespace iflame {

double training_step_flops(const IFlameConfig& config, int64_t batch, int64_t length) {
  const int64_t T = (length + kTokensPerFace - 1) / kTokensPerFace * kTokensPerFace;
  const double d = config.dim, ffn = config.hidden(), head_dim = config.head_dim();
  // Level lengths of the six stages (nn/iflame.h): T, T/3, T/9, T/9, T/3, T.
  const int64_t level_length[6] = {T, T / 3, T / 9, T / 9, T / 3, T};
  double forward = 2.0 * batch * T * d * config.vocab;  // output_proj
  int block_number = 0;
  for (int s = 0; s < 6; s++) {
    const double L = static_cast<double>(level_length[s]), rows = batch * L;
    for (int i = 0; i < config.blocks_per_stage; i++) {
      block_number++;
      forward += rows * (4 * 2 * d * d + 3 * 2 * d * ffn);  // projections, feed-forward
      if (block_number % config.full_attention_every == 0)
        forward += 2.0 * 2.0 * batch * d * (L * (L + 1) / 2);  // Q K^T and P V over the causal pairs
      else
        forward += 2.0 * 2.0 * rows * d * head_dim;  // state update and read-out per position
    }
  }
  return 3 * forward;  // the backward computes two products for each of the forward's
}

namespace {
// Seconds of one forward + backward of `rows` sequences of kMicroStepLength tokens.
double time_micro_step(IFlame& model, const ForwardContext& ctx, int64_t rows) {
  // START row, then coordinates (any valid tokens: the arithmetic is the same).
  Tensor tokens = Tensor::empty({rows, kMicroStepLength}, DType::I32);
  int32_t* p = tokens.data<int32_t>();
  for (int64_t i = 0; i < tokens.numel(); i++) {
    const int64_t t = i % kMicroStepLength;
    p[i] = t < kTokensPerFace ? kStartToken : static_cast<int32_t>((i * 37) % kNumCoordinateTokens);
  }
  const auto start = std::chrono::steady_clock::now();
  model.zero_grad();
  IFlame::LossOutput out = model.loss(tokens, ctx);
  tape().backward(out.loss);
  if (model.device() == Device::CUDA) cuda_synchronize();
  return std::chrono::duration<double>(std::chrono::steady_clock::now() - start).count();
}
}  // namespace

StepEstimate estimate_step_time(IFlame& model, const ForwardContext& ctx, int64_t batch, int64_t length) {
  StepEstimate e;
  e.batch = batch;
  e.length = length;
  // Batch 1 before and after the larger batch (the first run also pays for first uses).
  const double first = time_micro_step(model, ctx, 1);
  e.micro_batch_seconds = time_micro_step(model, ctx, kMicroBatch);
  e.micro_seconds = std::min(first, time_micro_step(model, ctx, 1));
  model.zero_grad();
  const IFlameConfig& config = model.config();
  const double small = training_step_flops(config, 1, kMicroStepLength);
  const double large = training_step_flops(config, kMicroBatch, kMicroStepLength);
  // Cost per FLOP from the difference; where timing noise hides it, a tenth of
  // the larger micro-step's average cost per FLOP, so the arithmetic never
  // comes out free.
  const double per_flop =
      std::max((e.micro_batch_seconds - e.micro_seconds) / (large - small), 0.1 * e.micro_batch_seconds / large);
  e.seconds_per_tflop = per_flop * 1e12;
  e.fixed_seconds = std::max(0.0, e.micro_seconds - per_flop * small);
  e.flops = training_step_flops(config, batch, length);
  e.seconds = e.fixed_seconds + per_flop * e.flops;
  return e;
}

namespace {
std::string format_seconds(double s) {
  if (s < 120) return str(static_cast<long>(std::ceil(s)), " s");
  if (s < 7200) return str(static_cast<long>(std::round(s / 60)), " min");
  return str(std::round(s / 360) / 10, " h");
}
}  // namespace

std::string step_too_slow_message(const StepEstimate& e, const std::string& device_label) {
  return str("one training step of ", e.batch, " x ", e.length, " tokens would take about ",
             format_seconds(e.seconds), " on ", device_label, " (", std::round(e.flops / 1e10) / 100,
             " TFLOP at ", std::round(e.seconds_per_tflop), " s per TFLOP, timed on steps of 1 and ", kMicroBatch,
             " x ", kMicroStepLength, " tokens), and nothing would be printed until it ends. Train a smaller "
             "configuration here, e.g. --model tiny --max-faces 100 --batch 4, or use a GPU (--device cuda); "
             "--force trains without estimating");
}

}  // namespace iflame
