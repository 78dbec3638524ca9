// decode.h: cached decoding of the iFlame hourglass (spec §4), one level-0
// position per step for B sequences in lockstep, with no tape.
//
// At level-0 position p (RoPE position = the index at each level):
//   x = norm(embed(token p));  encoder_blocks.0 at p            -> skip0[p]
//   if p % 3 == 2 (j = p / 3):  mean of the 3 level-0 encoder outputs,
//       encoder_blocks.1 at j                                    -> skip1[j]
//       if p % 9 == 8 (i = p / 9): mean of the 3 level-1 encoder outputs,
//           bottlenecke, bottleneckd at i                        -> out2[i]
//       decoder_blocks.0 at j on sw[0] * up2[j] + skip1[j]       -> out1[j]
//         with up2[j] = out2[(j - 2) / 3] for j >= 2, else 0
//   decoder_blocks.1 at p on sw[1] * up1[p] + skip0[p]
//     with up1[p] = out1[(p - 2) / 3] for p >= 2, else 0;  output_proj -> logits [B, V]
// These are the full forward's repeat3_shift2 relations: out2[(j-2)/3] is the most
// recent level-2 output at every j >= 2 (for j = 3i+2 it is computed in the same
// step), and likewise out1[(p-2)/3] is the most recent level-1 decoder output.
//
// State per block: full attention keeps K (after RoPE) and V caches
// [B, capacity of its level, H, D]; linear attention keeps its f32 state
// [B, H, D, D]. Everything lives on the model's device and every op is the
// training op (ops/), so the same code runs on the CPU and the GPU; the only new
// op is the attention step reading the cache in place (infer/cached_attention.h).
// A step queues GPU work and returns the logits on the device: it never waits.
#pragma once
#include <array>
#include <vector>

#include "nn/iflame.h"

namespace iflame::infer {

struct BlockCache {
  Tensor k, v;    // full attention: [B, capacity, H, D]
  Tensor state;   // linear attention: f32 [B, H, D, D]
};

struct DecodeState {
  const IFlame* model = nullptr;
  ForwardContext ctx;
  int64_t batch = 0;
  int64_t max_len = 0;  // level-0 positions that fit
  int64_t pos = 0;      // the next level-0 position to feed
  std::array<std::vector<BlockCache>, IFlame::kStages> caches;
  // Hourglass buffers, [B, 3, d] or [B, 1, d].
  Tensor group0, group1;  // encoder outputs of the current group of 3, levels 0 and 1
  Tensor skip0, skip1;    // encoder outputs at the current level-0 / level-1 position
  Tensor out1, out2;      // latest decoder_blocks.0 output, latest bottleneck output
  Tensor zeros;           // the up-sampled input before the first coarse output
  Tensor token_buffer;    // i32 [B, 1] on the device, for tokens handed in from the host

  // Bytes held by caches, states and buffers (what a longer max_len grows).
  size_t cache_bytes() const;
};

// The level (0, 1, 2) each stage runs at: encoder_blocks.0 .. decoder_blocks.1.
int stage_level(int stage);

// A fresh state for `batch` sequences of at most max_len tokens.
DecodeState begin(const IFlame& model, int64_t batch, int64_t max_len, ForwardContext ctx = {});

// Feeds token `pos` of every sequence (i32 [B] on the CPU or the model's device;
// tokens are trusted to lie in the vocabulary) and returns the logits predicting
// token pos + 1: f32 [B, V] on the model's device.
Tensor step(DecodeState& state, const Tensor& tokens);

// step() for every position of tokens (i32 [B, T], host): logits f32 [B, T, V] on the CPU.
Tensor full_cached_logits(const IFlame& model, const Tensor& tokens, ForwardContext ctx = {});

}  // namespace iflame::infer
