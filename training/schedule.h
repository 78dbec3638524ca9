// schedule.h: the learning-rate schedule of spec §3: linear warm-up over the
// first `warmup_fraction` of the steps, then a cosine from lr down to min_lr.
#pragma once
#include <cmath>
#include <cstdint>

namespace iflame {

inline float learning_rate(int64_t step, int64_t total, float lr, float min_lr, float warmup_fraction) {
  const int64_t warmup = static_cast<int64_t>(warmup_fraction * total);
  if (step < warmup) return lr * static_cast<float>(step + 1) / static_cast<float>(warmup);
  const int64_t decay = total - warmup;
  if (decay <= 1) return lr;
  double progress = static_cast<double>(step - warmup) / static_cast<double>(decay - 1);
  if (progress > 1) progress = 1;
  return static_cast<float>(min_lr + 0.5 * (lr - min_lr) * (1.0 + std::cos(M_PI * progress)));
}

}  // namespace iflame
