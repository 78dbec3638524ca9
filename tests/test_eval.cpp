// test_eval.cpp: the evaluation: Chamfer distance matrix (hand-computed values,
// identities, CUDA against the CPU reference), surface sampling, COV / MMD /
// 1-NNA / JSD on sets with known answers, validity figures, and ./evaluate.
#include <doctest/doctest.h>

#include <chrono>
#include <cmath>
#include <cstdio>
#include <filesystem>
#include <fstream>
#include <string>
#include <vector>

#include "data/dataset.h"
#include "data/json.h"
#include "data/mesh.h"
#include "infer/sample_cli.h"
#include "ops/chamfer.h"
#include "tests/test_util.h"
#include "tools/eval_metrics.h"
#include "tools/evaluate_cli.h"
#include "tools/surface_sample.h"

using namespace iflame;
using namespace iflame::test;

namespace {

// A box of sides (w, h, d) centred at the origin: 8 vertices, 12 triangles.
Mesh box_mesh(float w, float h, float d) {
  Mesh m;
  for (int i = 0; i < 8; i++)
    m.vertices.push_back({(i & 1 ? 0.5f : -0.5f) * w, (i & 2 ? 0.5f : -0.5f) * h, (i & 4 ? 0.5f : -0.5f) * d});
  const int quads[6][4] = {{0, 1, 3, 2}, {4, 6, 7, 5}, {0, 4, 5, 1}, {2, 3, 7, 6}, {0, 2, 6, 4}, {1, 5, 7, 3}};
  for (const auto& q : quads) {
    m.faces.push_back({q[0], q[1], q[2]});
    m.faces.push_back({q[0], q[2], q[3]});
  }
  return m;
}

// A corner tetrahedron with legs (a, b, c) along the axes.
Mesh tetra_mesh(float a, float b, float c) {
  Mesh m;
  m.vertices = {{0, 0, 0}, {a, 0, 0}, {0, b, 0}, {0, 0, c}};
  m.faces = {{0, 2, 1}, {0, 1, 3}, {0, 3, 2}, {1, 2, 3}};
  return m;
}

// n shapes of random proportions in [0.3, 1] (seeded).
std::vector<std::vector<Triangle>> random_shapes(int n, bool boxes, uint64_t seed) {
  Generator g(seed);
  std::vector<std::vector<Triangle>> out;
  for (int i = 0; i < n; i++) {
    const float a = 0.3f + 0.7f * g.uniform(), b = 0.3f + 0.7f * g.uniform(), c = 0.3f + 0.7f * g.uniform();
    out.push_back(clean_for_eval(boxes ? box_mesh(a, b, c) : tetra_mesh(a, b, c), "shape").triangles);
  }
  return out;
}

Tensor clouds(const std::vector<std::vector<float>>& points, int P) {
  std::vector<float> flat;
  for (const auto& c : points) flat.insert(flat.end(), c.begin(), c.end());
  return Tensor::from_floats(flat, {int64_t(points.size()), P, 3});
}

int run_evaluate(std::vector<std::string> args) {
  args.insert(args.begin(), "evaluate");
  std::vector<char*> argv;
  for (auto& a : args) argv.push_back(a.data());
  return evaluate_main(static_cast<int>(argv.size()), argv.data());
}

int run_sample(std::vector<std::string> args) {
  args.insert(args.begin(), "sample");
  std::vector<char*> argv;
  for (auto& a : args) argv.push_back(a.data());
  return infer::sample_main(static_cast<int>(argv.size()), argv.data());
}

void write_text(const std::string& path, const std::string& text) {
  std::ofstream f(path);
  f << text;
}

}  // namespace

// ------------------------------------------------------------------ Chamfer

TEST_CASE("eval: Chamfer distance by hand on 1, 2 and 3 points") {
  // A = {(0,0,0), (1,0,0)}, B = {(0,0,0), (0,2,0), (1,1,0)}.
  // A -> B: minima 0 and 1 (to (0,0,0) or (1,1,0)): mean 0.5.
  // B -> A: minima 0, 4 ((0,2,0) to (0,0,0)), 1 ((1,1,0) to (1,0,0)): mean 5/3.
  const Tensor a = clouds({{0, 0, 0, 1, 0, 0}}, 2);
  const Tensor b = clouds({{0, 0, 0, 0, 2, 0, 1, 1, 0}}, 3);
  CHECK(ops::chamfer_matrix(a, b).item() == doctest::Approx(0.5 + 5.0 / 3.0).epsilon(1e-6));
  CHECK(ops::chamfer_matrix(b, a).item() == doctest::Approx(0.5 + 5.0 / 3.0).epsilon(1e-6));
  CHECK(ops::directed_chamfer(a, b).item() == doctest::Approx(0.5).epsilon(1e-6));
  CHECK(ops::directed_chamfer(b, a).item() == doctest::Approx(5.0 / 3.0).epsilon(1e-6));
  // One point each: both directions are the squared distance: 2 * (1 + 4 + 9).
  const Tensor p = clouds({{0, 0, 0}}, 1), q = clouds({{1, 2, 3}}, 1);
  CHECK(ops::chamfer_matrix(p, q).item() == doctest::Approx(28.0));
  // Matrix layout: out[i, j] = CD(a_i, b_j).
  const Tensor two = clouds({{0, 0, 0}, {1, 2, 3}}, 1);
  CHECK(ops::chamfer_matrix(two, p).to_floats() == std::vector<float>{0.0f, 28.0f});
  CHECK(ops::chamfer_matrix(p, two).to_floats() == std::vector<float>{0.0f, 28.0f});
}

TEST_CASE("eval: Chamfer of identical clouds is 0 and the matrix is symmetric") {
  const Tensor x = random_tensor({6, 37, 3}, 11, -0.5f, 0.5f);
  const Tensor y = random_tensor({4, 53, 3}, 12, -0.5f, 0.5f);
  const std::vector<float> xx = ops::chamfer_matrix(x, x).to_floats();
  for (int i = 0; i < 6; i++)
    for (int j = 0; j < 6; j++) {
      if (i == j) CHECK(xx[i * 6 + j] == 0.0f);
      else CHECK(xx[i * 6 + j] > 0.0f);
      CHECK(xx[i * 6 + j] == xx[j * 6 + i]);
    }
  const std::vector<float> xy = ops::chamfer_matrix(x, y).to_floats(), yx = ops::chamfer_matrix(y, x).to_floats();
  for (int i = 0; i < 6; i++)
    for (int j = 0; j < 4; j++) CHECK(xy[i * 4 + j] == yx[j * 6 + i]);
  // A permutation of the points does not change the distance.
  std::vector<float> pts = x.to_floats(), perm = pts;
  for (int k = 0; k < 37; k++)
    for (int c = 0; c < 3; c++) perm[(36 - k) * 3 + c] = pts[k * 3 + c];
  CHECK(ops::chamfer_matrix(Tensor::from_floats(perm, {6, 37, 3}), x).to_floats()[0] == 0.0f);
  // Bad shapes are named.
  CHECK_THROWS_WITH(ops::chamfer_matrix(Tensor::zeros({2, 5, 2}), x), doctest::Contains("[Na, P, 3]"));
  CHECK_THROWS(ops::chamfer_matrix(Tensor::zeros({2, 0, 3}), x));
  CHECK(ops::chamfer_matrix(Tensor::zeros({0, 5, 3}), x).shape() == Shape{0, 6});
}

TEST_CASE("eval: CUDA Chamfer matrix equals the CPU reference on awkward sizes" * needs_gpu()) {
  SKIP_WITHOUT_GPU();
  struct Case {
    int64_t na, p, nb, q;
  };
  // 2049 query points: two query chunks (2048 per pass); 1030 targets: two shared tiles (1024).
  for (const Case c : {Case{7, 2049, 5, 1030}, Case{1, 1, 3, 2}, Case{3, 300, 1, 1}, Case{13, 257, 11, 2048}}) {
    CAPTURE(c.na);
    CAPTURE(c.p);
    CAPTURE(c.nb);
    CAPTURE(c.q);
    const Tensor a = random_tensor({c.na, c.p, 3}, 21 + c.p, -0.5f, 0.5f);
    const Tensor b = random_tensor({c.nb, c.q, 3}, 22 + c.q, -0.5f, 0.5f);
    const Tensor ga = a.to(Device::CUDA), gb = b.to(Device::CUDA);
    CHECK(rel_l2(ops::chamfer_matrix(ga, gb), ops::cpu::chamfer_matrix(a, b)) < 1e-5);
    CHECK(rel_l2(ops::directed_chamfer(ga, gb), ops::directed_chamfer(a, b)) < 1e-5);
    CHECK(rel_l2(ops::directed_chamfer(gb, ga), ops::directed_chamfer(b, a)) < 1e-5);
    // Identical clouds give exactly 0 on the GPU too (the 1-NNA copy rule needs it).
    const std::vector<float> self = ops::chamfer_matrix(ga, ga).to_floats();
    for (int64_t i = 0; i < c.na; i++) CHECK(self[i * c.na + i] == 0.0f);
  }
  // Speed: 256 x 256 clouds of 2,048 points (both directions), figure for docs/perf.md.
  {
    const Tensor big = random_tensor({256, 2048, 3}, 5, -0.5f, 0.5f).to(Device::CUDA);
    (void)ops::chamfer_matrix(big.slice(0, 0, 2), big.slice(0, 0, 2)).to_floats();  // warm-up
    const auto t0 = std::chrono::steady_clock::now();
    const std::vector<float> d = ops::chamfer_matrix(big, big).to_floats();
    const double s = std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count();
    MESSAGE("chamfer_matrix 256 x 256 clouds of 2048 points: " << s << " s on " << cuda_device_description());
    CHECK(d[0] == 0.0f);
    CHECK(s < 10.0);
  }
  // The metrics do not depend on the device.
  const Tensor s = sample_point_clouds(random_shapes(9, true, 3), 333, 1);
  const Tensor r = sample_point_clouds(random_shapes(7, false, 4), 333, 1);
  const DistributionMetrics cpu = compare_point_clouds(s, r, Device::CPU);
  const DistributionMetrics gpu = compare_point_clouds(s, r, Device::CUDA);
  CHECK(gpu.cov == cpu.cov);
  CHECK(gpu.one_nna == cpu.one_nna);
  CHECK(gpu.mmd == doctest::Approx(cpu.mmd).epsilon(1e-5));
}

// ------------------------------------------------------------------ sampling

TEST_CASE("eval: surface sampling is area-weighted, on the surface and seeded") {
  // Two triangles in the plane z = 0: area 1.5 (x < 0) and 0.5 (x > 0), plus a zero-area one.
  const std::vector<float> tris = {-1, 0, 0, 0, 0, 0, -1, 3, 0,   //
                                   1, 0, 0, 2, 0, 0, 1, 1, 0,     //
                                   5, 5, 5, 6, 6, 6, 7, 7, 7};
  const int P = 4096;
  std::vector<float> pts(3 * P), again(3 * P), other(3 * P);
  sample_surface(tris.data(), 3, P, 7, 99, pts.data());
  sample_surface(tris.data(), 3, P, 7, 99, again.data());
  sample_surface(tris.data(), 3, P, 8, 99, other.data());
  CHECK(pts == again);
  CHECK(pts != other);
  int left = 0;
  for (int i = 0; i < P; i++) {
    const float x = pts[3 * i], y = pts[3 * i + 1], z = pts[3 * i + 2];
    REQUIRE(z == 0.0f);  // never on the degenerate triangle
    if (x <= 0) {
      left++;
      CHECK(x >= -1.0f - 1e-6f);
      CHECK(y >= -1e-6f);
      CHECK(y <= -3.0f * x + 1e-5f);  // inside (-1,0) (0,0) (-1,3)
    } else {
      CHECK(x >= 1.0f - 1e-6f);
      CHECK(y >= -1e-6f);
      CHECK(y <= 2.0f - x + 1e-5f);  // inside (1,0) (2,0) (1,1)
    }
  }
  CHECK(double(left) / P == doctest::Approx(0.75).epsilon(0.04));  // 3 sigma ~ 0.02
  // Only degenerate triangles: still points (on them), no failure.
  sample_surface(tris.data() + 18, 1, 8, 7, 99, pts.data());
  CHECK(pts[0] >= 5.0f);
  // Clouds depend on the mesh, not on its position in the list.
  const auto shapes = random_shapes(3, true, 5);
  const std::vector<float> c1 = sample_point_clouds({shapes[0], shapes[1]}, 64, 3).to_floats();
  const std::vector<float> c2 = sample_point_clouds({shapes[2], shapes[1]}, 64, 3).to_floats();
  CHECK(std::vector<float>(c1.begin() + 192, c1.end()) == std::vector<float>(c2.begin() + 192, c2.end()));
}

// ------------------------------------------------------------------ metrics

TEST_CASE("eval: a set against itself gives COV 1, MMD 0, 1-NNA 0.5 and JSD 0") {
  const Tensor s = sample_point_clouds(random_shapes(12, true, 1), 512, 0);
  const DistributionMetrics m = compare_point_clouds(s, s, Device::CPU);
  CHECK(m.cov == 1.0);
  CHECK(m.mmd == 0.0);
  CHECK(m.one_nna == 0.5);  // exactly: every tie is one copy in each set
  CHECK(m.one_nna_samples == 0.5);
  CHECK(m.identical_pairs == 12);
  CHECK(occupancy_jsd(s, s) == 0.0);
  // Two independent draws of the same kind of shape are close to chance.
  const Tensor s2 = sample_point_clouds(random_shapes(24, true, 2), 512, 0);
  const Tensor r2 = sample_point_clouds(random_shapes(24, true, 3), 512, 0);
  const DistributionMetrics same_kind = compare_point_clouds(s2, r2, Device::CPU);
  MESSAGE("boxes vs other boxes: COV " << same_kind.cov << ", MMD " << same_kind.mmd << ", 1-NNA "
                                       << same_kind.one_nna << ", JSD " << occupancy_jsd(s2, r2));
  CHECK(same_kind.one_nna < 0.75);
  CHECK(same_kind.cov > 0.4);
}

TEST_CASE("eval: boxes against tetrahedra give 1-NNA near 1, and results repeat for a seed") {
  const auto boxes = random_shapes(16, true, 1), tetras = random_shapes(16, false, 2);
  const Tensor s = sample_point_clouds(boxes, 512, 0), r = sample_point_clouds(tetras, 512, 0);
  const DistributionMetrics m = compare_point_clouds(s, r, Device::CPU);
  const Tensor s2 = sample_point_clouds(random_shapes(16, true, 5), 512, 0);
  const DistributionMetrics near = compare_point_clouds(s2, s, Device::CPU);
  const double jsd = occupancy_jsd(s, r);
  MESSAGE("boxes vs tetrahedra: COV " << m.cov << ", MMD " << m.mmd << ", 1-NNA " << m.one_nna << ", JSD " << jsd
                                      << "; boxes vs boxes MMD " << near.mmd);
  CHECK(m.one_nna >= 0.95);
  CHECK(m.mmd > 3 * near.mmd);
  CHECK(jsd > occupancy_jsd(s2, s));
  // Same seed: the same numbers; another seed: other clouds, close metrics.
  const DistributionMetrics again =
      compare_point_clouds(sample_point_clouds(boxes, 512, 0), sample_point_clouds(tetras, 512, 0), Device::CPU);
  CHECK(again.cov == m.cov);
  CHECK(again.mmd == m.mmd);
  CHECK(again.one_nna == m.one_nna);
  const Tensor s9 = sample_point_clouds(boxes, 512, 9);
  CHECK(s9.to_floats() != s.to_floats());
  CHECK(compare_point_clouds(s9, sample_point_clouds(tetras, 512, 9), Device::CPU).one_nna >= 0.95);
}

TEST_CASE("eval: COV, MMD and 1-NNA on hand-made distance matrices (ties and copies)") {
  // Samples s0, s1; references r0, r1, r2.
  const Tensor d_sr = Tensor::from_floats({1, 2, 1,   //
                                           4, 3, 5}, {2, 3});
  const Tensor d_ss = Tensor::from_floats({0, 2,  //
                                           2, 0}, {2, 2});
  const Tensor d_rr = Tensor::from_floats({0, 6, 6,  //
                                           6, 0, 6,  //
                                           6, 6, 0}, {3, 3});
  const DistributionMetrics m = distribution_metrics(d_sr, d_ss, d_rr);
  CHECK(m.cov == doctest::Approx(1.0));  // s0 ties r0 and r2 (both count), s1 -> r1
  CHECK(m.mmd == doctest::Approx((1.0 + 2.0 + 1.0) / 3.0));
  // s0: nearest r0, r2 at 1 -> 0; s1: s0 at 2 vs r1 at 3 -> 1;
  // r0: s0 at 1 -> 0; r1: s0 at 2 -> 0; r2: s0 at 1 -> 0.
  CHECK(m.one_nna_samples == doctest::Approx(0.5));
  CHECK(m.one_nna_references == doctest::Approx(0.0));
  CHECK(m.one_nna == doctest::Approx(1.0 / 5.0));
  // A tie between the own set and the other set scores 1/2; a copy (distance 0)
  // in the other set is skipped; a copy in the own set is a neighbour.
  const Tensor d_sr2 = Tensor::from_floats({0, 2}, {1, 2});
  const Tensor d_ss2 = Tensor::from_floats({0}, {1, 1});
  const Tensor d_rr2 = Tensor::from_floats({0, 2, 2, 0}, {2, 2});
  const DistributionMetrics t = distribution_metrics(d_sr2, d_ss2, d_rr2);
  // s0: r0 is a copy (skipped), r1 at 2 -> 0. r0: s0 skipped, r1 at 2 -> 1. r1: s0 at 2, r0 at 2 -> 1/2.
  CHECK(t.one_nna == doctest::Approx((0.0 + 1.0 + 0.5) / 3.0));
  CHECK(t.identical_pairs == 1);
  CHECK(t.cov == doctest::Approx(0.5));
  CHECK_THROWS(distribution_metrics(d_sr2, d_ss, d_rr2));
}

TEST_CASE("eval: novelty on hand-made distance matrices (copies of training meshes, ties)") {
  // Samples s0..s2; references r0, r1; training t0..t2.
  const Tensor d_sr = Tensor::from_floats({1, 5,   // s0 -> r0
                                           4, 2,   // s1 -> r1
                                           3, 3},  // s2: tie, the lowest index r0
                                          {3, 2});
  const Tensor d_rt = Tensor::from_floats({2, 6, 7,   // r0 is 2 from training
                                           9, 8, 4},  // r1 is 4
                                          {2, 3});
  const Tensor d_st = Tensor::from_floats({5, 1, 9,   // s0: 1 < 2 (r0's): a copy
                                           4, 6, 7,   // s1: 4, not < 4 (r1's): not a copy
                                           3, 3, 3},  // s2: 3 against r0's 2: not a copy
                                          {3, 3});
  const NoveltyMetrics n = novelty_metrics(d_sr, d_st, d_rt);
  CHECK(n.samples == 3);
  CHECK(n.training == 3);
  CHECK(n.copies == 1);
  CHECK(n.novelty == doctest::Approx(2.0 / 3.0));
  CHECK(n.sample_to_train_mean == doctest::Approx((1.0 + 4.0 + 3.0) / 3.0));
  CHECK(n.reference_to_train_mean == doctest::Approx(3.0));
  // With s2 nearer r1 (4 from training) its 3 makes it a copy.
  const Tensor d_sr_r1 = Tensor::from_floats({1, 5, 4, 2, 3, 2.5f}, {3, 2});
  CHECK(novelty_metrics(d_sr_r1, d_st, d_rt).copies == 2);
  CHECK_THROWS(novelty_metrics(d_sr, d_rt, d_rt));  // d_st of the wrong shape
}

TEST_CASE("eval: occupancy JSD is 0 for equal occupancy and 1 for disjoint") {
  // Cloud a: all points in the corner cell; cloud b: the opposite corner.
  const Tensor a = clouds({{-0.49f, -0.49f, -0.49f, -0.48f, -0.49f, -0.49f}}, 2);
  const Tensor b = clouds({{0.49f, 0.49f, 0.49f, 0.5f, 0.5f, 0.5f}}, 2);  // 0.5 goes to the last cell
  CHECK(occupancy_jsd(a, a) == 0.0);
  CHECK(occupancy_jsd(a, b) == doctest::Approx(1.0));
  // Half overlap: P = (1/2, 1/2, 0), Q = (1/2, 0, 1/2): JSD = 1/2.
  const Tensor c = clouds({{-0.49f, -0.49f, -0.49f, 0.0f, 0.0f, 0.0f}}, 2);
  const Tensor d = clouds({{-0.49f, -0.49f, -0.49f, 0.3f, 0.3f, 0.3f}}, 2);
  CHECK(occupancy_jsd(c, d) == doctest::Approx(0.5));
  // Occupancy counts a cell once per cloud, however many points it has.
  const Tensor e = clouds({{-0.49f, -0.49f, -0.49f, -0.49f, -0.49f, -0.49f, 0.0f, 0.0f, 0.0f}}, 3);
  const Tensor f = clouds({{-0.49f, -0.49f, -0.49f, 0.0f, 0.0f, 0.0f, 0.0f, 0.0f, 0.0f}}, 3);
  CHECK(occupancy_jsd(e, f) == 0.0);
}

// ------------------------------------------------------------------ validity

TEST_CASE("eval: cleaning and validity figures") {
  Mesh m = box_mesh(1, 2, 3);
  m.faces.push_back({0, 0, 1});  // degenerate (repeated index)
  m.vertices.push_back(m.vertices[3]);
  m.faces.push_back({8, 3, 1});  // degenerate (vertex 8 is at vertex 3's position)
  m.faces.push_back({3, 1, 0});  // the first face (0, 1, 3) again, other order
  const EvalMesh e = clean_for_eval(m, "m.obj");
  CHECK(e.faces_read == 15);
  CHECK(e.triangles.size() == 12);
  CHECK(e.dropped_duplicate == 1);
  CHECK(e.dropped_degenerate == 2);
  CHECK(e.needed_cleaning());
  // Normalized: largest side 1, centred.
  float lo = 1e9f, hi = -1e9f;
  for (const Triangle& t : e.triangles)
    for (int k = 2; k < 9; k += 3) lo = std::min(lo, t[k]), hi = std::max(hi, t[k]);
  CHECK(lo == doctest::Approx(-0.5));
  CHECK(hi == doctest::Approx(0.5));

  const EvalMesh clean = clean_for_eval(tetra_mesh(1, 1, 1), "t.obj");
  CHECK_FALSE(clean.needed_cleaning());
  Mesh flat;
  flat.vertices = {{0, 0, 0}, {1, 0, 0}};
  flat.faces = {{0, 1, 1}};
  const EvalMesh empty = clean_for_eval(flat, "e.obj");
  CHECK(empty.triangles.empty());

  const std::vector<EvalMesh> meshes = {e, clean, empty, clean};
  ValidityStats v = validity_stats(meshes, {});
  CHECK(v.meshes == 4);
  CHECK(v.with_faces == 3);
  CHECK(v.clean_files == 2);  // e and the flat one needed cleaning
  CHECK(v.status_known == 0);
  CHECK(v.faces_mean == doctest::Approx((12 + 4 + 0 + 4) / 4.0));
  CHECK(v.faces_median == doctest::Approx(4.0));
  CHECK(v.faces_max == 12);
  SampleRecord closed{true, true, false}, open{true, false, true};
  v = validity_stats(meshes, {closed, open, SampleRecord{}, closed});
  CHECK(v.status_known == 3);
  CHECK(v.ended == 2);
  CHECK(v.not_cleaned_by_sampler == 2);
  // A bad index or a NaN names the file.
  Mesh bad = tetra_mesh(1, 1, 1);
  bad.faces.push_back({0, 1, 9});
  CHECK_THROWS_WITH(clean_for_eval(bad, "bad.obj"), doctest::Contains("bad.obj"));
  Mesh nan = tetra_mesh(1, 1, 1);
  nan.vertices[1][0] = NAN;
  CHECK_THROWS_WITH(clean_for_eval(nan, "nan.obj"), doctest::Contains("nan.obj"));
}

// ------------------------------------------------------------------ ./evaluate

TEST_CASE("eval: ./evaluate on folders and on a dataset split, JSON report, errors") {
  namespace fs = std::filesystem;
  const std::string root = "build/test_eval";
  fs::remove_all(root);
  fs::create_directories(root + "/gen");
  fs::create_directories(root + "/ref");
  Generator g(4);
  std::vector<DatasetEntry> entries;
  for (int i = 0; i < 6; i++) {
    const Mesh box = box_mesh(0.3f + 0.7f * g.uniform(), 0.3f + 0.7f * g.uniform(), 1.0f);
    char name[32];
    std::snprintf(name, sizeof name, "/m%02d.%s", i, i % 2 ? "ply" : "obj");
    write_mesh(root + "/gen" + name, box);
    write_mesh(root + "/ref" + name, box);
    DatasetEntry d;
    d.name = name + 1;
    d.split = i < 4 ? "val" : "train";
    d.triangles = normalized_triangles(box);
    entries.push_back(d);
  }
  // The float layout keeps the boxes bit for bit, so a reference and its copy
  // sample the same points (the 16-bit layout moves vertices by ~1e-5, enough
  // to change which triangle a sample lands on).
  write_dataset(root + "/ds.npy", entries, 800, "", DatasetLayout::Triangles32);

  // The same meshes on both sides: COV 1, MMD 0, 1-NNA 1/2.
  REQUIRE(run_evaluate({root + "/gen", "--reference-folder", root + "/ref", "--device", "cpu", "--points", "256",
                        "--json", root + "/report.json"}) == 0);
  JsonValue j = read_json_file(root + "/report.json");
  CHECK(j.find("cov")->number == 1.0);
  CHECK(j.find("mmd")->number == 0.0);
  CHECK(j.find("one_nna")->number == 0.5);
  CHECK(j.find("validity")->find("with_faces")->number == 1.0);
  CHECK(j.find("validity")->find("no_cleaning")->kind == JsonValue::Kind::Null);  // no ./sample record
  CHECK(j.find("validity")->find("faces_max")->number == 12);

  // Against the val split (4 meshes) of the dataset, with a ./sample record file.
  write_text(root + "/gen/samples.jsonl",
             "{\"file\": \"m00.obj\", \"faces\": 12, \"status\": \"complete\", \"ended\": true, \"dropped_incomplete\": 0,"
             " \"dropped_invalid\": 0, \"dropped_degenerate\": 0, \"dropped_duplicate\": 0}\n"
             "{\"file\": \"m01.ply\", \"faces\": 12, \"status\": \"cleaned\", \"ended\": false, \"dropped_incomplete\": 3,"
             " \"dropped_invalid\": 0, \"dropped_degenerate\": 0, \"dropped_duplicate\": 0}\n");
  REQUIRE(run_evaluate({root + "/gen", "--dataset", root + "/ds.npy", "--device", "cpu", "--points", "200",
                        "--max-meshes", "5", "--json", root + "/report2.json"}) == 0);
  j = read_json_file(root + "/report2.json");
  CHECK(j.find("reference")->find("meshes")->number == 4);
  CHECK(j.find("generated")->find("files")->number == 5);
  CHECK(j.find("cov")->number == 1.0);
  CHECK(j.find("validity")->find("status_known")->number == 2);
  // Of the 2 files with a record, m00 closed and m01 did not; the other 3 are unknown, not closed.
  CHECK(j.find("validity")->find("closed_with_end")->number == doctest::Approx(0.5));
  CHECK(j.find("validity")->find("status_unknown")->number == 3);
  CHECK(j.find("validity")->find("no_cleaning")->number == doctest::Approx(0.5));
  REQUIRE(run_evaluate({root + "/gen", "--dataset", root + "/ds.npy", "--reference-split", "all", "--device", "cpu",
                        "--points", "64", "--json", root + "/report3.json"}) == 0);
  CHECK(read_json_file(root + "/report3.json").find("reference")->find("meshes")->number == 6);

  // Novelty against the 2 training meshes: the train split itself is all
  // copies (0 from training, its nearest val mesh is not); the val split is
  // its own nearest reference, so none of it is a copy.
  REQUIRE(run_evaluate({"--generated-split", "train", "--dataset", root + "/ds.npy", "--novelty", "--device", "cpu",
                        "--points", "64", "--json", root + "/novel_train.json"}) == 0);
  j = read_json_file(root + "/novel_train.json");
  CHECK(j.find("novelty")->number == 0.0);
  CHECK(j.find("train_copies")->number == 2);
  CHECK(j.find("training_meshes")->number == 2);
  CHECK(j.find("sample_to_train_mean")->number == 0.0);
  CHECK(j.find("reference_to_train_mean")->number > 0.0);
  REQUIRE(run_evaluate({"--generated-split", "val", "--dataset", root + "/ds.npy", "--novelty", "--device", "cpu",
                        "--points", "64", "--json", root + "/novel_val.json"}) == 0);
  j = read_json_file(root + "/novel_val.json");
  CHECK(j.find("novelty")->number == 1.0);
  CHECK(j.find("train_copies")->number == 0);
  CHECK(read_json_file(root + "/report3.json").find("novelty") == nullptr);  // only with --novelty
  CHECK(run_evaluate({root + "/gen", "--reference-folder", root + "/ref", "--novelty"}) == 2);
  CHECK(run_evaluate({root + "/gen", "--dataset", root + "/ds.npy", "--reference-split", "all", "--novelty"}) == 2);

  // Errors: exit 1 for bad files and missing inputs, 2 for bad flags.
  CHECK(run_evaluate({root + "/missing", "--reference-folder", root + "/ref"}) == 1);
  CHECK(run_evaluate({root + "/gen", "--dataset", root + "/missing.npy"}) == 1);
  write_text(root + "/ref/zz_broken.obj", "v 0 0 0\nv 1 0 0\nf 1 2 7\n");
  CHECK(run_evaluate({root + "/gen", "--reference-folder", root + "/ref", "--device", "cpu", "--points", "8"}) == 1);
  CHECK(run_evaluate({root + "/gen", "--points", "0"}) == 2);
  CHECK(run_evaluate({root + "/gen", "--reference-split", "test"}) == 2);
  CHECK(run_evaluate({root + "/gen", "--bogus"}) == 2);
  CHECK(run_evaluate({}) == 2);
  CHECK(run_evaluate({"--help"}) == 0);
}

TEST_CASE("eval: ./sample output (samples.jsonl) feeds ./evaluate") {
  const std::string out = "build/test_eval_samples";
  std::filesystem::remove_all(out);
  REQUIRE(run_sample({"--ckpt", golden("tiny_checkpoint.pth"), "-n", "3", "--max-faces", "10", "--seed", "2",
                      "--out", out, "--device", "cpu"}) == 0);
  REQUIRE(std::filesystem::exists(out + "/samples.jsonl"));
  const int rc = run_evaluate({out, "--reference-folder", golden("meshes"), "--device", "cpu", "--points", "128",
                               "--json", out + "/report.json"});
  if (rc == 1) {
    // The tiny model may leave every sample empty; then ./evaluate says so and fails.
    MESSAGE("no generated mesh with faces from the tiny model");
    return;
  }
  REQUIRE(rc == 0);
  const JsonValue j = read_json_file(out + "/report.json");
  CHECK(j.find("validity")->find("status_known")->number == 3);
  CHECK(j.find("reference")->find("meshes")->number == 5);
}
