// memory_model.h: what one training step holds in memory, estimated from the
// shapes alone (no device needed), for choosing --batch and --recompute.
//
// The saved-activation count is not a rule of thumb: it follows, function by
// function, what autograd/functions.cpp keeps for backward when the iFlame
// forward (nn/iflame.cpp, nn/layers.cpp) runs, and the CPU test
// `train: the memory model's saved bytes match what the tape holds` checks it
// against the bytes the tape actually holds after a forward. Per transformer
// block over R = B x L rows (L: the block's level length, T, T/3 or T/9), with
// a bytes per activation element and f32 statistics:
// (With bf16 block activations, x and h below stay f32: 4 R 2 d of each block
// is f32 and the rest is bf16; outside the blocks everything is f32.)
//   linear-attention block  a R (9 d + 3 ffn) + 12 R
//     x (norm1), norm1 out (q/k/v projections), q, k after RoPE and v (linear
//     attention), its output (attn.rms_norm) and the norm's output (out_proj),
//     h = x + attn (norm2), norm2 out (proj1/proj2), proj1 and proj2 outputs
//     (SwiGLU) and SwiGLU's output (proj3); three f32 inverse RMS rows
//   full-attention block    a R (8 d + 3 ffn) + 8 R + 4 R H
//     the same without the output norm; two inverse RMS rows and the
//     log-sum-exp [B, H, L] of softmax attention (its output o is both what
//     the attention saves and out_proj's input)
//   with --recompute blocks, each block keeps only its input x: a R d
//   with --recompute ffn, the 3 ffn terms go (the feed-forward keeps only its
//   input, norm2's output, which the d terms count already)
// Outside the blocks (either mode): the token ids, the embedding output and
// the norm's inverse RMS, the two up-sampled tensors that skip_scale_add saves
// (T/3 and T rows), decoder_blocks.1's output (output_proj), the logits, the
// targets and the per-row log-sum-exp of the cross-entropy.
//
// The peak of a step adds to the saved activations:
//   recompute  blocks: the largest block's saved tensors, rebuilt while
//              that block runs backward: a level-0 linear-attention block;
//              ffn: a level-0 feed-forward's three hidden tensors, a R 3 ffn;
//   transient  gradients in flight inside a block's backward, at their largest
//              around SwiGLU: the gradient of the block's output, beside the
//              two [R, ffn] gradients SwiGLU's backward makes (the [R, ffn]
//              one it consumes replaces SwiGLU's freed output): a R (d + 2 ffn)
//              at level 0.
// Not counted: temporaries inside single ops (bf16 operand copies of matrix
// products, cuBLAS workspace, Newton-Schulz buffers: each well under one
// [R, ffn] tensor), the caching allocator's rounding, and the CUDA context.
#pragma once
#include <string>
#include <utility>
#include <vector>

#include "core/dtype.h"
#include "nn/config.h"
#include "nn/layers.h"

namespace iflame {

struct MemoryEstimate {
  int64_t parameters = 0;       // scalars
  double parameter_bytes = 0;   // f32 weights
  double gradient_bytes = 0;    // f32 gradient buffers, one per parameter
  double optimizer_bytes = 0;   // Muon momentum (one f32 per weight), AdamW moments (two f32)
  double saved_bytes = 0;       // activations the tape holds when the forward ends
  double recompute_bytes = 0;   // blocks: the largest block's saved tensors, rebuilt in its backward
  double transient_bytes = 0;   // gradients in flight inside a block's backward
  double total() const {
    return parameter_bytes + gradient_bytes + optimizer_bytes + saved_bytes + recompute_bytes + transient_bytes;
  }
};

// batch sequences of `length` tokens (padded to a multiple of 9 as the model
// does), with ctx's block activations (bf16: every tensor inside a block except
// its input x and h = x + attn, which are the f32 residual stream, as is
// everything outside the blocks), FFN padding and recompute mode.
MemoryEstimate estimate_training_memory(const IFlameConfig& config, int64_t batch, int64_t length,
                                        const ForwardContext& ctx);
// The same with f32 products' defaults: activations and recompute as given, no FFN padding.
MemoryEstimate estimate_training_memory(const IFlameConfig& config, int64_t batch, int64_t length,
                                        DType activations, Recompute recompute);

// A table in GiB (MiB when every total is below 1 GiB): one row per term and a total, one column per estimate
// (headed by its label), each line starting with `indent`.
std::string describe_memory(const std::vector<std::pair<std::string, MemoryEstimate>>& columns,
                            const std::string& indent = "  ");

}  // namespace iflame
