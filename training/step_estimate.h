// step_estimate.h: how long one training step will take on this device, known
// before the first one runs.
//
// ./train times forward + backward of the model on short sequences ("micro-
// steps") at batch 1 and at batch kMicroBatch. A step's time is modelled as a
// fixed cost (the same number of ops whatever their size: dispatch, threads
// meeting at each op's end, which dominates a small step and grows with the
// machine's load) plus a cost per FLOP (training_step_flops()); the two micro-
// steps have the same ops and different arithmetic, so they give both. A step
// that would take more than kMaxStepSeconds is refused (unless --force): on
// the CPU the README's GPU configurations take many minutes per step and would
// otherwise print nothing for that long.
#pragma once
#include <cstdint>
#include <string>

#include "nn/config.h"
#include "nn/iflame.h"
#include "nn/layers.h"

namespace iflame {

constexpr double kMaxStepSeconds = 60;
constexpr int64_t kMicroStepLength = 36;  // 4 faces: 36, 12 and 4 positions at the three levels
constexpr int64_t kMicroBatch = 4;        // the second micro-step's batch

// FLOPs of one training step (forward and backward, about three forwards) of
// `batch` sequences of `length` tokens (padded to a multiple of 9): the matrix
// products of every block (q, k, v, out projections; the three feed-forward
// products) at its level's length, the attention itself (causal softmax over
// the kept pairs, decayed linear attention per position), and the output
// projection. Element-wise work is left out.
double training_step_flops(const IFlameConfig& config, int64_t batch, int64_t length);

struct StepEstimate {
  int64_t batch = 0, length = 0;  // the step estimated
  double micro_seconds = 0;       // the micro-step at 1 x kMicroStepLength (the faster of two runs)
  double micro_batch_seconds = 0; // the micro-step at kMicroBatch x kMicroStepLength
  double fixed_seconds = 0;       // the fitted fixed cost of a step
  double seconds_per_tflop = 0;   // the fitted cost of its arithmetic
  double seconds = 0;             // the estimate for batch x length
  double flops = 0;               // training_step_flops(batch, length)
};

// Times the micro-steps (gradients are zeroed afterwards; the weights are not
// touched) and extrapolates to batch x length.
StepEstimate estimate_step_time(IFlame& model, const ForwardContext& ctx, int64_t batch, int64_t length);

// The refusal: the estimate, what it was for, and what to do instead.
std::string step_too_slow_message(const StepEstimate& e, const std::string& device_label);

}  // namespace iflame
