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

StepEstimate estimate_step_time(IFlame& model, const ForwardContext& ctx, int64_t batch, int64_t length) {
  using clock = std::chrono::steady_clock;
  // START row, then coordinates (any valid tokens: the arithmetic is the same).
  Tensor tokens = Tensor::empty({1, kMicroStepLength}, DType::I32);
  int32_t* p = tokens.data<int32_t>();
  for (int64_t i = 0; i < kMicroStepLength; i++)
    p[i] = i < kTokensPerFace ? kStartToken : static_cast<int32_t>((i * 37) % kNumCoordinateTokens);
  StepEstimate e;
  e.batch = batch;
  e.length = length;
  e.micro_seconds = INFINITY;
  for (int run = 0; run < 2; run++) {  // the first also pays for first-use allocations
    auto start = clock::now();
    model.zero_grad();
    IFlame::LossOutput out = model.loss(tokens, ctx);
    tape().backward(out.loss);
    if (model.device() == Device::CUDA) cuda_synchronize();
    e.micro_seconds = std::min(e.micro_seconds, std::chrono::duration<double>(clock::now() - start).count());
  }
  model.zero_grad();
  e.flops = training_step_flops(model.config(), batch, length);
  e.seconds = e.micro_seconds * e.flops / training_step_flops(model.config(), 1, kMicroStepLength);
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
             format_seconds(e.seconds), " on ", device_label, " (", e.flops / 1e12,
             " TFLOP; a timed step of 1 x ", kMicroStepLength, " tokens took ", e.micro_seconds * 1e3,
             " ms), and nothing would be printed until it ends. Train a smaller configuration here, e.g. "
             "--model tiny --max-faces 100 --batch 4, or use a GPU (--device cuda); --force trains anyway");
}

}  // namespace iflame
