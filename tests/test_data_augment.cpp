// test_data_augment.cpp: augmentation draws (ranges, moments, determinism) and
// what they do to a mesh (bounds, shift distribution, tokens change with the seed).
#include <cmath>

#include "data/augment.h"
#include "tests/test_util.h"

using namespace iflame;

namespace {
std::vector<Vec3d> box_vertices(double sx, double sy, double sz) {
  std::vector<Vec3d> v;
  for (int i = 0; i < 8; i++) v.push_back({(i & 4) ? sx / 2 : -sx / 2, (i & 2) ? sy / 2 : -sy / 2, (i & 1) ? sz / 2 : -sz / 2});
  normalize_vertices(v);
  return v;
}
}  // namespace

TEST_CASE("data: augmentation draws are in range, uniform and repeatable") {
  const int n = 4000;
  double mean[6] = {0}, lo[6], hi[6];
  for (int k = 0; k < 6; k++) lo[k] = 1e9, hi[k] = -1e9;
  for (int s = 0; s < n; s++) {
    AugmentDraw d = draw_augmentation(11, s);
    double x[6] = {d.scale[0], d.scale[1], d.scale[2], d.shift[0], d.shift[1], d.shift[2]};
    for (int k = 0; k < 6; k++) {
      mean[k] += x[k] / n;
      lo[k] = std::min(lo[k], x[k]);
      hi[k] = std::max(hi[k], x[k]);
    }
  }
  for (int k = 0; k < 3; k++) {
    CHECK(lo[k] >= 0.75);
    CHECK(hi[k] < 1.25);
    CHECK(lo[k] < 0.76);  // the whole range is used
    CHECK(hi[k] > 1.24);
    CHECK(std::fabs(mean[k] - 1.0) < 0.01);  // sd of the mean: 0.29 * 0.5 / sqrt(4000) = 0.0023
  }
  for (int k = 3; k < 6; k++) {
    double lim = k == 5 ? 0.075 : 0.1;
    CHECK(lo[k] >= -lim);
    CHECK(hi[k] < lim);
    CHECK(hi[k] - lo[k] > 1.98 * lim);
    CHECK(std::fabs(mean[k]) < 0.1 * lim);  // sd of the mean: lim / sqrt(3 * 4000) = 0.009 lim
  }
  AugmentDraw a = draw_augmentation(5, 77), b = draw_augmentation(5, 77), c = draw_augmentation(6, 77);
  CHECK(a.scale[0] == b.scale[0]);
  CHECK(a.shift[2] == b.shift[2]);
  CHECK(a.scale[0] != c.scale[0]);
  CHECK(augmentation_stream(1, 5) != augmentation_stream(0, 5));
}

TEST_CASE("data: augmented meshes stay inside the unit cube, the long side stays 1") {
  const int n = 2000;
  double zsum = 0, zsq = 0, zmax = 0;
  for (int s = 0; s < n; s++) {
    std::vector<Vec3d> v = box_vertices(0.6, 1.0, 0.4);
    apply_augmentation(v, draw_augmentation(3, s));
    Vec3d lo = v[0], hi = v[0];
    for (const Vec3d& p : v)
      for (int k = 0; k < 3; k++) {
        lo[k] = std::min(lo[k], p[k]);
        hi[k] = std::max(hi[k], p[k]);
      }
    double side = 0;
    for (int k = 0; k < 3; k++) {
      CHECK(lo[k] >= -0.5 - 1e-12);
      CHECK(hi[k] <= 0.5 + 1e-12);
      side = std::max(side, hi[k] - lo[k]);
    }
    CHECK(side == doctest::Approx(1.0).epsilon(1e-12));
    // z is never the long side here (0.4 * 1.25 / (1 * 0.75) < 1) and has room for the whole shift.
    double zc = (lo[2] + hi[2]) / 2;
    zsum += zc;
    zsq += zc * zc;
    zmax = std::max(zmax, std::fabs(zc));
  }
  CHECK(std::fabs(zsum / n) < 0.005);
  CHECK(std::sqrt(zsq / n) == doctest::Approx(0.075 / std::sqrt(3.0)).epsilon(0.05));  // U(-a, a): sd a/sqrt(3)
  CHECK(zmax < 0.075);
  CHECK(zmax > 0.07);
}

TEST_CASE("data: augmentation changes tokens with the seed and repeats with it") {
  Mesh m;
  m.vertices = {{0.1f, 0.2f, 0.3f}, {0.9f, -0.4f, 0.05f}, {-0.3f, 0.7f, -0.6f}, {0.2f, -0.1f, 0.8f}};
  m.faces = {{0, 1, 2}, {0, 3, 1}, {1, 3, 2}, {0, 2, 3}};
  auto tokens = [&](uint64_t seed) {
    std::vector<Vec3d> v = normalized_vertices(m);
    apply_augmentation(v, draw_augmentation(seed, augmentation_stream(0, 0)));
    return emit_tokens(quantize_canonical(v, m.faces));
  };
  CHECK(tokens(1) == tokens(1));
  CHECK(tokens(1) != tokens(2));
  CHECK(tokens(1) != tokenize_mesh(m));
  CHECK(tokens(1).size() == tokenize_mesh(m).size());
}
