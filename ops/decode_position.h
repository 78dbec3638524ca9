// decode_position.h: the position counter of cached decoding, kept in device
// memory so that no kernel argument of a decoding step depends on the position
// (infer/decode.h captures each phase of a step once as a CUDA graph and
// replays it). The ops that read it: rope's qkv_rope_step (ops/rope.h),
// cached_attention_at (ops/cached_attention.h) and write_group_slot below.
//
// `position` is an i32 [1] tensor on the other tensors' device holding the
// level-0 position p of the step; a block at level L works at position p / div
// with div = 3^L (1, 3 or 9).
#pragma once
#include "core/tensor.h"

namespace iflame::ops {

// Checks that position is an i32 [1] tensor on `device` and div is 1, 3 or 9.
void check_decode_position(const char* op, const Tensor& position, int64_t div, Device device);
// p / div, read to the host (the CPU paths; a checked position).
int64_t level_position(const char* op, const Tensor& position, int64_t div);

// group [B, 3, d] (f32): its row (p / div) % 3 becomes x ([B, 1, d], f32): the
// slot of the current group of three that the hourglass's average pool reads.
void write_group_slot(Tensor& group, const Tensor& x, const Tensor& position, int64_t div);

// position += 1 (on the device, queued).
void advance_position(Tensor& position);

namespace cpu {
void write_group_slot(Tensor& group, const Tensor& x, int64_t level_pos);
void advance_position(Tensor& position);
}  // namespace cpu

namespace cuda {
void write_group_slot(Tensor& group, const Tensor& x, const Tensor& position, int64_t div);
void advance_position(Tensor& position);
}  // namespace cuda

}  // namespace iflame::ops
