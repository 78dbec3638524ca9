// random_math.h: the per-element formulas of random.h, shared by CPU and GPU.
#pragma once
#include <cmath>

#include "core/philox.h"

namespace iflame {

IFLAME_HD float random_uniform_at(uint64_t seed, uint64_t stream, uint64_t i, float lo, float hi) {
  Philox4 r = philox_draw(seed, stream, i);
  return lo + (hi - lo) * philox_unit_float(r.v[0]);
}

IFLAME_HD float random_normal_at(uint64_t seed, uint64_t stream, uint64_t i, float mean, float sd) {
  Philox4 r = philox_draw(seed, stream, i);
  float u1 = ((r.v[0] >> 8) + 1) * (1.0f / 16777216.0f);  // (0, 1]: log is finite
  float u2 = philox_unit_float(r.v[1]);
  float radius = sqrtf(-2.0f * logf(u1));
  return mean + sd * radius * cosf(6.2831853071795865f * u2);
}

}  // namespace iflame
