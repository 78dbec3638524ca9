// augment.cpp: scale, renormalize, shift with clamping (spec §1 step 2).
#include "data/augment.h"

#include <algorithm>

#include "core/random_math.h"

namespace iflame {

AugmentDraw draw_augmentation(uint64_t seed, uint64_t stream, const AugmentOptions& opt) {
  AugmentDraw d;
  for (int k = 0; k < 3; k++)
    d.scale[k] = random_uniform_at(seed, stream, k, static_cast<float>(opt.scale_lo), static_cast<float>(opt.scale_hi));
  const double limit[3] = {opt.shift_xy, opt.shift_xy, opt.shift_z};
  for (int k = 0; k < 3; k++)
    d.shift[k] = random_uniform_at(seed, stream, 3 + k, static_cast<float>(-limit[k]), static_cast<float>(limit[k]));
  return d;
}

void apply_augmentation(std::vector<Vec3d>& v, const AugmentDraw& d) {
  for (Vec3d& p : v)
    for (int k = 0; k < 3; k++) p[k] *= d.scale[k];
  normalize_vertices(v);
  Vec3d lo = v[0], hi = v[0];
  for (const Vec3d& p : v)
    for (int k = 0; k < 3; k++) {
      lo[k] = std::min(lo[k], p[k]);
      hi[k] = std::max(hi[k], p[k]);
    }
  for (int k = 0; k < 3; k++) {
    // Room on each side; never negative (rounding can make the long side exceed 1 by an ulp).
    double down = std::min(0.0, -0.5 - lo[k]), up = std::max(0.0, 0.5 - hi[k]);
    double s = std::min(std::max(d.shift[k], down), up);
    for (Vec3d& p : v) p[k] += s;
  }
}

}  // namespace iflame
