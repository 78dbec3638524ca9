// eval_metrics.cpp: COV, MMD, 1-NNA, occupancy JSD and validity statistics
// (definitions in eval_metrics.h).
#include "tools/eval_metrics.h"

#include <algorithm>
#include <array>
#include <cmath>
#include <limits>
#include <set>

#include "core/error.h"
#include "ops/chamfer.h"
#include "tools/surface_sample.h"

namespace iflame {

namespace {

struct Matrix {
  int64_t rows = 0, cols = 0;
  std::vector<float> v;
  float at(int64_t i, int64_t j) const { return v[i * cols + j]; }
};

Matrix host_matrix(const Tensor& t, const char* what) {
  IFLAME_CHECK(t.defined() && t.ndim() == 2 && t.dtype() == DType::F32, "distribution_metrics: ", what,
               ": expected an f32 matrix, got ", t.defined() ? t.describe() : std::string("undefined"));
  return Matrix{t.size(0), t.size(1), t.to_floats()};
}

// Leave-one-out score of element x of one set: `same` holds its distances to
// its own set (x itself at index self), `other` to the other set.
double nna_score(const Matrix& same, int64_t self, const Matrix& other_rows, bool other_transposed) {
  // Distances to the other set: row `self` of other_rows, or column `self` when transposed.
  auto other = [&](int64_t j) { return other_transposed ? other_rows.at(j, self) : other_rows.at(self, j); };
  const int64_t n_other = other_transposed ? other_rows.rows : other_rows.cols;
  float best = std::numeric_limits<float>::infinity();
  for (int64_t j = 0; j < same.cols; j++)
    if (j != self) best = std::min(best, same.at(self, j));
  for (int64_t j = 0; j < n_other; j++)
    if (other(j) != 0.0f) best = std::min(best, other(j));  // a copy in the other set is skipped
  if (best == std::numeric_limits<float>::infinity()) return 0.5;  // no candidate left
  int64_t tied_same = 0, tied_other = 0;
  for (int64_t j = 0; j < same.cols; j++)
    if (j != self && same.at(self, j) == best) tied_same++;
  for (int64_t j = 0; j < n_other; j++)
    if (other(j) != 0.0f && other(j) == best) tied_other++;
  return double(tied_same) / double(tied_same + tied_other);
}

}  // namespace

DistributionMetrics distribution_metrics(const Tensor& d_sr_t, const Tensor& d_ss_t, const Tensor& d_rr_t) {
  const Matrix d_sr = host_matrix(d_sr_t, "d_sr"), d_ss = host_matrix(d_ss_t, "d_ss"),
               d_rr = host_matrix(d_rr_t, "d_rr");
  const int64_t S = d_sr.rows, R = d_sr.cols;
  IFLAME_CHECK(S > 0 && R > 0, "distribution_metrics: need at least one sample and one reference, got ", S,
               " and ", R);
  IFLAME_CHECK(d_ss.rows == S && d_ss.cols == S && d_rr.rows == R && d_rr.cols == R,
               "distribution_metrics: matrix shapes disagree: d_sr ", d_sr_t.describe(), ", d_ss ",
               d_ss_t.describe(), ", d_rr ", d_rr_t.describe());
  for (float x : d_sr.v) IFLAME_CHECK(std::isfinite(x) && x >= 0, "distribution_metrics: distance ", x, " in d_sr");

  DistributionMetrics m;
  m.samples = S;
  m.references = R;
  // COV: every reference at a sample's minimum distance is matched.
  std::vector<char> matched(R, 0);
  for (int64_t s = 0; s < S; s++) {
    float best = std::numeric_limits<float>::infinity();
    for (int64_t r = 0; r < R; r++) best = std::min(best, d_sr.at(s, r));
    for (int64_t r = 0; r < R; r++)
      if (d_sr.at(s, r) == best) matched[r] = 1;
  }
  m.cov = double(std::count(matched.begin(), matched.end(), 1)) / double(R);
  // MMD: mean over references of the distance to the closest sample.
  double mmd = 0;
  for (int64_t r = 0; r < R; r++) {
    float best = std::numeric_limits<float>::infinity();
    for (int64_t s = 0; s < S; s++) best = std::min(best, d_sr.at(s, r));
    mmd += best;
  }
  m.mmd = mmd / double(R);
  // 1-NNA.
  double score_s = 0, score_r = 0;
  for (int64_t s = 0; s < S; s++) score_s += nna_score(d_ss, s, d_sr, false);
  for (int64_t r = 0; r < R; r++) score_r += nna_score(d_rr, r, d_sr, true);
  m.one_nna_samples = score_s / double(S);
  m.one_nna_references = score_r / double(R);
  m.one_nna = (score_s + score_r) / double(S + R);
  for (float x : d_sr.v) m.identical_pairs += x == 0.0f;
  return m;
}

namespace {
Tensor chamfer_matrix_reporting(const Tensor& a, const Tensor& b, const std::string& name,
                                const ChamferProgress& progress) {
  const int64_t rows = a.size(0);
  if (!progress) return ops::chamfer_matrix(a, b);
  if (a.is_cuda()) {
    Tensor m = ops::chamfer_matrix(a, b);
    progress(name, rows, rows);
    return m;
  }
  Tensor out = Tensor::empty({rows, b.size(0)}, DType::F32);
  const int64_t block = std::max<int64_t>(1, (rows + 9) / 10);
  for (int64_t lo = 0; lo < rows; lo += block) {
    const int64_t hi = std::min(rows, lo + block);
    out.slice(0, lo, hi).copy_from(ops::chamfer_matrix(a.slice(0, lo, hi), b));
    progress(name, hi, rows);
  }
  return out;
}
}  // namespace

DistributionMetrics compare_point_clouds(const Tensor& samples, const Tensor& references, Device device,
                                         const ChamferProgress& progress) {
  const Tensor s = samples.to(device), r = references.to(device);
  const Tensor d_sr = chamfer_matrix_reporting(s, r, "samples x references", progress);
  const Tensor d_ss = chamfer_matrix_reporting(s, s, "samples x samples", progress);
  const Tensor d_rr = chamfer_matrix_reporting(r, r, "references x references", progress);
  return distribution_metrics(d_sr, d_ss, d_rr);
}

NoveltyMetrics novelty_metrics(const Tensor& d_sr_t, const Tensor& d_st_t, const Tensor& d_rt_t) {
  const Matrix d_sr = host_matrix(d_sr_t, "d_sr"), d_st = host_matrix(d_st_t, "d_st"),
               d_rt = host_matrix(d_rt_t, "d_rt");
  const int64_t S = d_sr.rows, R = d_sr.cols, T = d_st.cols;
  IFLAME_CHECK(S > 0 && R > 0 && T > 0, "novelty_metrics: need samples, references and training meshes, got ", S,
               ", ", R, " and ", T);
  IFLAME_CHECK(d_st.rows == S && d_rt.rows == R && d_rt.cols == T, "novelty_metrics: matrix shapes disagree: d_sr ",
               d_sr_t.describe(), ", d_st ", d_st_t.describe(), ", d_rt ", d_rt_t.describe());
  auto row_min = [](const Matrix& m, int64_t i) {
    int64_t best = 0;
    for (int64_t j = 1; j < m.cols; j++)
      if (m.at(i, j) < m.at(i, best)) best = j;
    return best;
  };
  NoveltyMetrics n;
  n.samples = S;
  n.training = T;
  std::vector<float> ref_to_train(R);
  for (int64_t r = 0; r < R; r++) {
    ref_to_train[r] = d_rt.at(r, row_min(d_rt, r));
    n.reference_to_train_mean += ref_to_train[r];
  }
  for (int64_t s = 0; s < S; s++) {
    const float to_train = d_st.at(s, row_min(d_st, s));
    n.sample_to_train_mean += to_train;
    n.copies += to_train < ref_to_train[row_min(d_sr, s)];
  }
  n.sample_to_train_mean /= double(S);
  n.reference_to_train_mean /= double(R);
  n.novelty = 1.0 - double(n.copies) / double(S);
  return n;
}

NoveltyMetrics compare_to_training(const Tensor& samples, const Tensor& references, const Tensor& training,
                                   Device device, const ChamferProgress& progress) {
  const Tensor s = samples.to(device), r = references.to(device), t = training.to(device);
  const Tensor d_sr = chamfer_matrix_reporting(s, r, "samples x references", progress);
  const Tensor d_st = chamfer_matrix_reporting(s, t, "samples x training", progress);
  const Tensor d_rt = chamfer_matrix_reporting(r, t, "references x training", progress);
  return novelty_metrics(d_sr, d_st, d_rt);
}

double occupancy_jsd(const Tensor& a, const Tensor& b, int resolution) {
  IFLAME_CHECK(resolution > 0 && resolution <= 512, "occupancy_jsd: resolution ", resolution, " out of range");
  const int64_t cells = int64_t(resolution) * resolution * resolution;
  auto distribution = [&](const Tensor& t, const char* what) {
    IFLAME_CHECK(t.defined() && t.ndim() == 3 && t.size(2) == 3 && t.dtype() == DType::F32 && !t.is_cuda(),
                 "occupancy_jsd: ", what, ": expected CPU f32 [N, P, 3], got ",
                 t.defined() ? t.describe() : std::string("undefined"));
    const Tensor c = t.contiguous();
    const float* p = c.data<float>();
    const int64_t n = c.size(0), points = c.size(1);
    std::vector<double> counts(cells, 0.0);
    std::vector<int64_t> seen(cells, -1);  // last cloud that marked a cell
    auto index = [&](float x) {
      const int i = int(std::floor((double(x) + 0.5) * resolution));
      return std::min(std::max(i, 0), resolution - 1);
    };
    for (int64_t k = 0; k < n; k++)
      for (int64_t q = 0; q < points; q++) {
        const float* pt = p + (k * points + q) * 3;
        const int64_t cell = (int64_t(index(pt[0])) * resolution + index(pt[1])) * resolution + index(pt[2]);
        if (seen[cell] != k) {
          seen[cell] = k;
          counts[cell] += 1.0;
        }
      }
    double total = 0;
    for (double x : counts) total += x;
    IFLAME_CHECK(total > 0, "occupancy_jsd: ", what, " has no points");
    for (double& x : counts) x /= total;
    return counts;
  };
  const std::vector<double> P = distribution(a, "a"), Q = distribution(b, "b");
  double jsd = 0;
  for (int64_t c = 0; c < cells; c++) {
    const double m = 0.5 * (P[c] + Q[c]);
    if (P[c] > 0) jsd += 0.5 * P[c] * std::log2(P[c] / m);
    if (Q[c] > 0) jsd += 0.5 * Q[c] * std::log2(Q[c] / m);
  }
  return std::max(0.0, jsd);
}

EvalMesh clean_for_eval(const Mesh& mesh, const std::string& path) {
  check_mesh_indices(mesh, path);
  EvalMesh e;
  e.path = path;
  e.faces_read = int64_t(mesh.faces.size());
  for (size_t i = 0; i < mesh.vertices.size(); i++)
    for (int c = 0; c < 3; c++)
      IFLAME_CHECK(std::isfinite(mesh.vertices[i][c]), path, ": vertex ", i + 1, " has a non-finite coordinate");
  std::set<std::array<std::array<float, 3>, 3>> seen;
  for (const auto& f : mesh.faces) {
    std::array<std::array<float, 3>, 3> corners = {mesh.vertices[f[0]], mesh.vertices[f[1]], mesh.vertices[f[2]]};
    if (corners[0] == corners[1] || corners[1] == corners[2] || corners[0] == corners[2]) {
      e.dropped_degenerate++;
      continue;
    }
    auto key = corners;
    std::sort(key.begin(), key.end());
    if (!seen.insert(key).second) {
      e.dropped_duplicate++;
      continue;
    }
    Triangle t;
    for (int k = 0; k < 3; k++)
      for (int c = 0; c < 3; c++) t[3 * k + c] = corners[k][c];
    e.triangles.push_back(t);
  }
  normalize_triangles(e.triangles);
  return e;
}

ValidityStats validity_stats(const std::vector<EvalMesh>& meshes, const std::vector<SampleRecord>& records) {
  IFLAME_CHECK(records.empty() || records.size() == meshes.size(), "validity_stats: ", records.size(),
               " records for ", meshes.size(), " meshes");
  ValidityStats v;
  v.meshes = int64_t(meshes.size());
  std::vector<int64_t> faces;
  for (size_t i = 0; i < meshes.size(); i++) {
    const int64_t f = int64_t(meshes[i].triangles.size());
    faces.push_back(f);
    v.with_faces += f > 0;
    v.clean_files += !meshes[i].needed_cleaning();
    v.faces_max = std::max(v.faces_max, f);
    v.faces_mean += double(f);
    if (!records.empty() && records[i].known) {
      v.status_known++;
      v.ended += records[i].ended;
      v.not_cleaned_by_sampler += !records[i].cleaned;
    }
  }
  if (!faces.empty()) {
    v.faces_mean /= double(faces.size());
    std::sort(faces.begin(), faces.end());
    const size_t n = faces.size();
    v.faces_median = n % 2 ? double(faces[n / 2]) : 0.5 * double(faces[n / 2 - 1] + faces[n / 2]);
  }
  return v;
}

}  // namespace iflame
