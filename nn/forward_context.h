// forward_context.h: what a forward (the training model's, or cached
// decoding's) needs to know besides its input: the precisions, the padding of
// the feed-forward's width, and what a recorded forward keeps for backward.
// Plain data with no tape, so infer/ reads it without autograd/.
#pragma once
#include "core/dtype.h"

namespace iflame {

// What a recorded (training) forward keeps for backward. None: every function's
// saved tensors. Blocks: only each transformer block's input; the block's
// forward runs again during backward (autograd/recompute.h), about a third
// more compute for a fraction of the memory (training/memory_model.h). Ffn:
// only the feed-forward's input, not its three hidden-width tensors (the
// largest part of a block's); the feed-forward runs again during backward, its
// products about a fifth more compute, attention never twice. Ffn may be
// limited to the K longest blocks (ForwardContext::ffn_recompute_blocks,
// `--recompute ffn:K`): a step between none and ffn in memory and in time.
enum class Recompute { None, Blocks, Ffn };

// What every forward needs to know besides its input.
struct ForwardContext {
  DType matmul = DType::F32;  // F32, or BF16 operands with f32 accumulation
  // Inside each block: F32, or BF16 (GPU only, with BF16 products): the norm
  // outputs, q/k/v, attention, and the feed-forward's hidden tensors are bf16
  // (half the bytes and the saved memory; the attention kernels' bf16 path),
  // while the residual stream between blocks stays f32.
  DType activations = DType::F32;
  // The feed-forward's hidden width is padded with zero rows/columns of the
  // weights to a multiple of this (1: no padding). The function is the same;
  // on the GPU an odd width (1365) sends cuBLAS to its unaligned kernels at a
  // fraction of the aligned rate (spec §6), so training pads to 8 there.
  int ffn_align = 1;
  Recompute recompute = Recompute::None;  // only matters while the tape records
  // With Recompute::Ffn: how many blocks rebuild their feed-forward, the
  // longest first (IFlame::ffn_recompute_rank); -1: all of them.
  int ffn_recompute_blocks = -1;
};

}  // namespace iflame
