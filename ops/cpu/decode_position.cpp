// cpu/decode_position.cpp: the position-counter ops as plain loops (see
// decode_position.h).
#include "ops/decode_position.h"

namespace iflame::ops::cpu {

void write_group_slot(Tensor& group, const Tensor& x, int64_t level_pos) {
  const int64_t B = group.size(0), d = group.size(2), slot = level_pos % 3;
  float* g = group.data<float>();
  const float* src = x.data<float>();
  for (int64_t b = 0; b < B; b++)
    for (int64_t j = 0; j < d; j++) g[(b * 3 + slot) * d + j] = src[b * d + j];
}

void advance_position(Tensor& position) { position.data<int32_t>()[0]++; }

}  // namespace iflame::ops::cpu
