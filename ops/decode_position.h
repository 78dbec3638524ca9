// decode_position.h: the position counter of cached decoding, kept in device
// memory so that no kernel argument of a decoding step depends on the position
// (infer/decode.h captures each phase of a step once as a CUDA graph and
// replays it). The ops that read it: rope's qkv_rope_step (ops/rope.h),
// cached_attention_at (ops/cached_attention.h) and write_group_slot below.
//
// `position` is an i32 tensor on the other tensors' device holding the level-0
// position p of the step: [1], one position for every row, or [B], one per row
// (continuous batching: a row that starts a new sample starts over at 0 while
// the others go on); a block at level L works at position p / div with div =
// 3^L (1, 3 or 9).
#pragma once
#include <vector>

#include "core/tensor.h"

namespace iflame::ops {

// Checks that position is an i32 [1] or [batch] tensor on `device` and div is 1, 3 or 9.
void check_decode_position(const char* op, const Tensor& position, int64_t div, Device device, int64_t batch);
// Each of the `batch` rows' p / div, read to the host (the CPU paths; a checked position).
std::vector<int64_t> level_positions(const char* op, const Tensor& position, int64_t div, int64_t batch);
// How far apart the kernels read row b's position: 0 for a shared [1] counter, 1 for [B].
inline int position_stride(const Tensor& position) { return position.numel() == 1 ? 0 : 1; }

// group [B, 3, d] (f32): row b's slot (p_b / div) % 3 becomes x's row b ([B, 1, d],
// f32): the slot of the current group of three that the hourglass's average pool reads.
void write_group_slot(Tensor& group, const Tensor& x, const Tensor& position, int64_t div);

// position += 1 for every entry (on the device, queued).
void advance_position(Tensor& position);

// Starting rows of a decoding state over (continuous batching, infer/decode.h):
// for every row b with flags[b] != 0, row b of each tensor (contiguous, [B, ...],
// 4-byte elements: f32 or i32) becomes 0; the other rows are left alone. One
// launch on the GPU whatever the number of tensors (at most kMaxZeroedTensors),
// with no host read of the flags, so a CUDA graph can replay it.
constexpr int kMaxZeroedTensors = 64;
void zero_flagged_rows(const std::vector<Tensor>& tensors, const Tensor& flags);

namespace cpu {
void write_group_slot(Tensor& group, const Tensor& x, const std::vector<int64_t>& level_pos);
void advance_position(Tensor& position);
void zero_flagged_rows(const std::vector<Tensor>& tensors, const Tensor& flags);
}  // namespace cpu

namespace cuda {
void write_group_slot(Tensor& group, const Tensor& x, const Tensor& position, int64_t div);
void advance_position(Tensor& position);
void zero_flagged_rows(const std::vector<Tensor>& tensors, const Tensor& flags);
}  // namespace cuda

}  // namespace iflame::ops
