// grad_norm.h: the global gradient norm over all parameter gradients, clipping
// to a maximum norm (spec §3: clip to 1.0 before each step), and a finiteness
// test used to skip a step whose gradients hold NaN or inf.
//
// norm = sqrt(sum over every gradient element of g^2)   (double accumulation)
// clip: every gradient *= min(1, max_norm / (norm + 1e-6)), computed in f32 as
// torch.nn.utils.clip_grad_norm_ does (a NaN norm makes every gradient NaN there
// too). Gradients are f32 (parameter gradients always are), all on one device.
#pragma once
#include <vector>

#include "core/tensor.h"

namespace iflame::ops {

// -> f32 [1] on the gradients' device (a CPU zero for an empty list).
Tensor global_grad_norm(const std::vector<Tensor>& grads);
// Scales the gradients in place; returns the norm before clipping (f32 [1], on the
// device; nothing waits for the GPU).
Tensor clip_grad_norm(std::vector<Tensor>& grads, float max_norm);
// True when no element is NaN or inf. Waits for the GPU (it returns a host bool).
bool all_finite(const std::vector<Tensor>& grads);

namespace cpu {
Tensor global_grad_norm(const std::vector<Tensor>& grads);
Tensor clip_grad_norm(std::vector<Tensor>& grads, float max_norm);
bool all_finite(const std::vector<Tensor>& grads);
}  // namespace cpu

namespace cuda {
// Deterministic: per-block partial sums in a fixed layout, added up by one block.
Tensor global_grad_norm(const std::vector<Tensor>& grads);
Tensor clip_grad_norm(std::vector<Tensor>& grads, float max_norm);
bool all_finite(const std::vector<Tensor>& grads);
}  // namespace cuda

}  // namespace iflame::ops
