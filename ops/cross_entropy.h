// cross_entropy.h: the training loss (spec §3): softmax cross-entropy of logit
// rows against integer targets, rows whose target is ignore_index (PAD) left out,
// plus the argmax accuracy reported alongside it.
//
// Per row n with target t != ignore_index:  lse_n = log sum_v exp(logits[n, v]),
//   loss_n = lse_n - logits[n, t];  correct_n = (first argmax of the row == t).
// loss = sum loss_n / valid_count (0 when no row counts), accuracy likewise.
// Backward: grad_logits[n, v] = grad_loss * (softmax[n, v] - [v == t]) / valid_count,
// zero rows where the target is ignored.
// All four outputs stay on the logits' device (no host sync).
#pragma once
#include "core/tensor.h"

namespace iflame::ops {

struct CrossEntropyOutput {
  Tensor loss;         // f32 [1]: mean over non-ignored rows (0 if none)
  Tensor accuracy;     // f32 [1]: share of non-ignored rows whose argmax (first max on ties) is the target
  Tensor lse;          // f32 [N]: log-sum-exp of each row, saved for the backward
  Tensor valid_count;  // f32 [1]: number of non-ignored rows
};

// logits [N, V] (or [..., V] with targets [...]), f32 or bf16; targets i32.
// Non-ignored targets outside [0, V) are an error on the CPU; the CUDA path
// assumes they were validated on the host (such a row gets loss NaN there).
CrossEntropyOutput cross_entropy_forward(const Tensor& logits, const Tensor& targets, int ignore_index);
// grad_loss: f32 [1] on the logits' device. Returns grad_logits like logits.
Tensor cross_entropy_backward(const Tensor& grad_loss, const Tensor& logits, const Tensor& targets,
                              const CrossEntropyOutput& fwd, int ignore_index);

namespace cpu {
CrossEntropyOutput cross_entropy_forward(const Tensor& logits, const Tensor& targets, int ignore_index);
Tensor cross_entropy_backward(const Tensor& grad_loss, const Tensor& logits, const Tensor& targets,
                              const CrossEntropyOutput& fwd, int ignore_index);
}  // namespace cpu

namespace cuda {
CrossEntropyOutput cross_entropy_forward(const Tensor& logits, const Tensor& targets, int ignore_index);
Tensor cross_entropy_backward(const Tensor& grad_loss, const Tensor& logits, const Tensor& targets,
                              const CrossEntropyOutput& fwd, int ignore_index);
}  // namespace cuda

}  // namespace iflame::ops
