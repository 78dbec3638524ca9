// augment.h: training-time augmentation (docs/spec.md §1 step 2), drawn from
// the project's counter-based RNG so a draw depends only on (seed, stream):
// the same mesh in the same epoch gets the same augmentation whichever thread
// or rank tokenizes it.
//   scale x, y, z by independent U(0.75, 1.25); normalize again;
//   shift by dx, dy ~ U(-0.1, 0.1), dz ~ U(-0.075, 0.075), each clamped so the
//   mesh stays inside [-0.5, 0.5].
#pragma once
#include <cstdint>
#include <vector>

#include "data/tokenize.h"

namespace iflame {

struct AugmentOptions {
  double scale_lo = 0.75, scale_hi = 1.25;
  double shift_xy = 0.1, shift_z = 0.075;
};

struct AugmentDraw {
  double scale[3];
  double shift[3];  // before clamping
};

// Six uniforms: element i of draw `stream` under `seed` (philox), i = 0..5.
AugmentDraw draw_augmentation(uint64_t seed, uint64_t stream, const AugmentOptions& opt = {});

// Applies a draw to vertices that are already normalized; the result is
// normalized then shifted, and lies inside [-0.5, 0.5]^3.
void apply_augmentation(std::vector<Vec3d>& v, const AugmentDraw& d);

// The stream number of (epoch, mesh): distinct for every pair below 2^32 meshes.
inline uint64_t augmentation_stream(uint64_t epoch, uint64_t mesh_index) { return (epoch << 32) ^ mesh_index; }

}  // namespace iflame
