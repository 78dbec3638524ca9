// surface_sample.h: from triangle meshes to the point clouds the evaluation
// compares (tools/eval_metrics.h).
//
// Area-weighted uniform sampling: point i of a cloud takes one Philox draw
// philox_draw(seed, stream, i) (core/philox.h), four 32-bit words:
//   words 0, 1 -> u in [0, 1) with 53 bits, picks the triangle whose slice of
//                 the cumulative area (double) holds u * total area, so a
//                 triangle is chosen with probability area / total (a zero-area
//                 triangle never is);
//   words 2, 3 -> r1, r2 in [0, 1) (24 bits each), the point
//                 (1 - sqrt r1) A + sqrt r1 (1 - r2) B + sqrt r1 r2 C,
//                 uniform over the triangle.
// When every triangle has zero area (all corners collinear), triangles are
// picked uniformly instead. The result depends only on (triangles, seed,
// stream), not on threads or the machine.
//
// The stream of a mesh is triangles_fingerprint(): a hash of its triangles'
// bytes, so identical meshes get identical clouds wherever they appear (a set
// compared with itself gives Chamfer distances of exactly 0, see eval_metrics.h).
#pragma once
#include <cstdint>
#include <vector>

#include "core/tensor.h"
#include "data/dataset.h"  // Triangle

namespace iflame {

// `points` points on the surface of `faces` triangles (x0 y0 z0 x1 ... z2 each),
// written to out[0 .. 3 * points). faces must be > 0.
void sample_surface(const float* triangles, int64_t faces, int points, uint64_t seed, uint64_t stream,
                    float* out);

// FNV-1a (64 bit) over the triangles' float bytes.
uint64_t triangles_fingerprint(const float* triangles, int64_t faces);

// Translates so the triangles' bounding-box centre is at the origin and scales
// so its largest side is 1 (spec §1 step 1, over the triangle corners only).
void normalize_triangles(std::vector<Triangle>& triangles);

// A set of clouds of equal size, f32 [count, points, 3] on the CPU.
// Mesh m gets sample_surface(mesh m, points, seed, triangles_fingerprint(mesh m)).
// Meshes are sampled in parallel (OpenMP); every mesh needs at least one face.
Tensor sample_point_clouds(const std::vector<std::vector<Triangle>>& meshes, int points, uint64_t seed);

}  // namespace iflame
