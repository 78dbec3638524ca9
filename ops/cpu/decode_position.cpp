// cpu/decode_position.cpp: the position-counter ops as plain loops (see
// decode_position.h).
#include <algorithm>

#include "ops/decode_position.h"

namespace iflame::ops::cpu {

void write_group_slot(Tensor& group, const Tensor& x, const std::vector<int64_t>& level_pos) {
  const int64_t B = group.size(0), d = group.size(2);
  float* g = group.data<float>();
  const float* src = x.data<float>();
  for (int64_t b = 0; b < B; b++) {
    const int64_t slot = level_pos[b] % 3;
    for (int64_t j = 0; j < d; j++) g[(b * 3 + slot) * d + j] = src[b * d + j];
  }
}

void advance_position(Tensor& position) {
  int32_t* p = position.data<int32_t>();
  for (int64_t i = 0; i < position.numel(); i++) p[i]++;
}

void zero_flagged_rows(const std::vector<Tensor>& tensors, const Tensor& flags) {
  const int64_t B = flags.numel();
  const int32_t* f = flags.data<int32_t>();
  for (const Tensor& t : tensors) {
    const int64_t row = B == 0 ? 0 : t.numel() / B;
    int32_t* words = static_cast<int32_t*>(t.raw_data());
    for (int64_t b = 0; b < B; b++)
      if (f[b]) std::fill(words + b * row, words + (b + 1) * row, 0);
  }
}

}  // namespace iflame::ops::cpu
