// surface_sample.cpp: area-weighted surface sampling with Philox draws, mesh
// fingerprints and normalization for the evaluation.
#include "tools/surface_sample.h"

#include <algorithm>
#include <cmath>
#include <cstring>

#include "core/error.h"
#include "core/philox.h"

namespace iflame {

namespace {
double triangle_area(const float* t) {
  const double ax = t[3] - t[0], ay = t[4] - t[1], az = t[5] - t[2];
  const double bx = t[6] - t[0], by = t[7] - t[1], bz = t[8] - t[2];
  const double cx = ay * bz - az * by, cy = az * bx - ax * bz, cz = ax * by - ay * bx;
  return 0.5 * std::sqrt(cx * cx + cy * cy + cz * cz);
}
}  // namespace

void sample_surface(const float* triangles, int64_t faces, int points, uint64_t seed, uint64_t stream,
                    float* out) {
  IFLAME_CHECK(faces > 0, "sample_surface: a mesh without faces has no surface to sample");
  // cumulative[k] = area of triangles 0 .. k-1.
  std::vector<double> cumulative(faces + 1, 0.0);
  for (int64_t f = 0; f < faces; f++) cumulative[f + 1] = cumulative[f] + triangle_area(triangles + 9 * f);
  const double total = cumulative[faces];
  const bool by_area = total > 0 && std::isfinite(total);
  for (int i = 0; i < points; i++) {
    const Philox4 r = philox_draw(seed, stream, uint64_t(i));
    const double u = double((uint64_t(r.v[0]) << 21) | (r.v[1] >> 11)) * (1.0 / 9007199254740992.0);  // 2^-53
    int64_t f;
    if (by_area) {
      // First k with cumulative[k + 1] > u * total: triangle k covers [cumulative[k], cumulative[k + 1]).
      f = int64_t(std::upper_bound(cumulative.begin() + 1, cumulative.end(), u * total) - cumulative.begin()) - 1;
      f = std::min(f, faces - 1);
    } else {
      f = std::min(int64_t(u * double(faces)), faces - 1);
    }
    const float* t = triangles + 9 * f;
    const float s = std::sqrt(philox_unit_float(r.v[2])), r2 = philox_unit_float(r.v[3]);
    const float wa = 1.0f - s, wb = s * (1.0f - r2), wc = s * r2;
    for (int c = 0; c < 3; c++) out[3 * i + c] = wa * t[c] + wb * t[3 + c] + wc * t[6 + c];
  }
}

uint64_t triangles_fingerprint(const float* triangles, int64_t faces) {
  uint64_t h = 1469598103934665603ull;
  const unsigned char* p = reinterpret_cast<const unsigned char*>(triangles);
  for (int64_t i = 0; i < faces * 9 * int64_t(sizeof(float)); i++) {
    h ^= p[i];
    h *= 1099511628211ull;
  }
  return h;
}

void normalize_triangles(std::vector<Triangle>& triangles) {
  if (triangles.empty()) return;
  double lo[3], hi[3];
  for (int c = 0; c < 3; c++) lo[c] = hi[c] = triangles[0][c];
  for (const Triangle& t : triangles)
    for (int k = 0; k < 9; k++) {
      lo[k % 3] = std::min(lo[k % 3], double(t[k]));
      hi[k % 3] = std::max(hi[k % 3], double(t[k]));
    }
  const double side = std::max({hi[0] - lo[0], hi[1] - lo[1], hi[2] - lo[2]});
  const double scale = side > 0 ? 1.0 / side : 1.0;
  for (Triangle& t : triangles)
    for (int k = 0; k < 9; k++) t[k] = float((t[k] - 0.5 * (lo[k % 3] + hi[k % 3])) * scale);
}

Tensor sample_point_clouds(const std::vector<std::vector<Triangle>>& meshes, int points, uint64_t seed) {
  IFLAME_CHECK(points > 0, "sample_point_clouds: points must be positive, got ", points);
  const int64_t n = int64_t(meshes.size());
  for (int64_t m = 0; m < n; m++)
    IFLAME_CHECK(!meshes[m].empty(), "sample_point_clouds: mesh ", m, " has no faces");
  Tensor out = Tensor::empty({n, points, 3}, DType::F32);
  float* po = out.data<float>();
#pragma omp parallel for schedule(dynamic)
  for (int64_t m = 0; m < n; m++) {
    const float* tris = meshes[m][0].data();
    const int64_t faces = int64_t(meshes[m].size());
    sample_surface(tris, faces, points, seed, triangles_fingerprint(tris, faces), po + m * int64_t(points) * 3);
  }
  return out;
}

}  // namespace iflame
