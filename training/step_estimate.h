// step_estimate.h: how long one training step will take on this device, known
// before the first one runs.
//
// ./train times one forward + backward of the model at batch 1 and a short
// length (a "micro-step"; the faster of two runs) and scales that time by the
// ratio of the two steps' arithmetic, training_step_flops(). A step that would
// take more than kMaxStepSeconds is refused (unless --force): on the CPU the
// README's GPU configurations take many minutes per step and would otherwise
// print nothing for that long. The estimate errs on the slow side: a short
// step's time carries more fixed cost per FLOP than a long one's.
#pragma once
#include <cstdint>
#include <string>

#include "nn/config.h"
#include "nn/iflame.h"
#include "nn/layers.h"

namespace iflame {

constexpr double kMaxStepSeconds = 60;
constexpr int64_t kMicroStepLength = 36;  // 4 faces: 36, 12 and 4 positions at the three levels

// FLOPs of one training step (forward and backward, about three forwards) of
// `batch` sequences of `length` tokens (padded to a multiple of 9): the matrix
// products of every block (q, k, v, out projections; the three feed-forward
// products) at its level's length, the attention itself (causal softmax over
// the kept pairs, decayed linear attention per position), and the output
// projection. Element-wise work is left out.
double training_step_flops(const IFlameConfig& config, int64_t batch, int64_t length);

struct StepEstimate {
  int64_t batch = 0, length = 0;  // the step estimated
  double micro_seconds = 0;       // the timed micro-step at 1 x kMicroStepLength
  double seconds = 0;             // the estimate for batch x length
  double flops = 0;               // training_step_flops(batch, length)
};

// Times the micro-step (gradients are zeroed afterwards; the weights are not
// touched) and scales it to batch x length.
StepEstimate estimate_step_time(IFlame& model, const ForwardContext& ctx, int64_t batch, int64_t length);

// The refusal: the estimate, what it was for, and what to do instead.
std::string step_too_slow_message(const StepEstimate& e, const std::string& device_label);

}  // namespace iflame
