// eval_metrics.h: how close a set of generated shapes is to a reference set,
// and how sound the generated meshes are.
//
// Shapes are compared as point clouds (tools/surface_sample.h) through the
// Chamfer distance CD of ops/chamfer.h (squared L2, sum of the two directed
// means). With S the generated clouds and R the references:
//
//   COV   = |{r in R : r is a nearest reference of some s in S}| / |R|.
//           Each s matches every reference at its minimum distance (exact ties
//           all count; with distinct distances that is the usual argmin).
//   MMD   = (1/|R|) sum_{r in R} min_{s in S} CD(s, r).
//   1-NNA = leave-one-out 1-nearest-neighbour accuracy over the union S + R:
//           each x is classified by the label (S or R) of its nearest other
//           element. Two rules make it well defined:
//             - copies: an element of the *other* set at distance exactly 0 is
//               the same shape as x (the set compared with itself, a reference
//               reproduced bit for bit), not a neighbour: it is skipped. Equal
//               shapes inside one set are still neighbours, so mode collapse
//               still shows. (Clouds are a function of the mesh, and the
//               distance of identical clouds is exactly 0 on both devices.)
//             - ties: when several candidates share the minimum distance, x
//               scores the fraction of them that carry its own label.
//           An x with no candidate left scores 1/2. 1-NNA is the mean score
//           over all |S| + |R| elements: 1/2 when the sets are indistinguishable
//           (a set against itself gives exactly 1/2), 1 when they are apart.
//   JSD   = Jensen-Shannon divergence (log base 2, so in [0, 1]) between the
//           voxel-occupancy distributions of the two sets: a res^3 grid over
//           [-0.5, 0.5]^3 (points outside go to the nearest boundary cell);
//           each cloud adds 1 to every cell it has a point in; the counts of a
//           set are normalized to sum 1. (As in PointFlow's evaluation.)
//
// Novelty, against the training set T of the dataset whose held-out split
// is R: a sample s is a copy of training data when
//   min_t CD(s, t) < min_t CD(r*, t),  r* = the reference nearest to s
//   (the lowest index among ties),
// i.e. s sits closer to a training mesh than the real held-out shape it
// resembles most does. Novelty = 1 - (copies / |S|).
#pragma once
#include <cstdint>
#include <functional>
#include <string>
#include <vector>

#include "core/tensor.h"
#include "data/dataset.h"
#include "data/mesh.h"

namespace iflame {

struct DistributionMetrics {
  int64_t samples = 0, references = 0;
  double cov = 0, mmd = 0;
  double one_nna = 0, one_nna_samples = 0, one_nna_references = 0;  // mean scores over S + R, S, R
  int64_t identical_pairs = 0;  // (s, r) pairs at distance exactly 0 (skipped by 1-NNA)
};

// d_sr: f32 [S, R], d_ss: f32 [S, S], d_rr: f32 [R, R] Chamfer matrices (any device).
// S and R must be > 0.
DistributionMetrics distribution_metrics(const Tensor& d_sr, const Tensor& d_ss, const Tensor& d_rr);

// Called as a Chamfer matrix fills: its name ("samples x references",
// "samples x samples", "references x references"), rows done, rows in all.
using ChamferProgress = std::function<void(const std::string& matrix, int64_t rows_done, int64_t rows)>;

// Computes the three matrices with ops::chamfer_matrix on `device` and the
// metrics. samples, references: f32 [S, P, 3] and [R, P', 3] on the CPU.
// With `progress`, the CPU computes each matrix in about ten blocks of rows
// (each entry is computed on its own, so the numbers are the same) and reports
// after each; the GPU, in one call, reports once per matrix.
DistributionMetrics compare_point_clouds(const Tensor& samples, const Tensor& references, Device device,
                                         const ChamferProgress& progress = nullptr);

struct NoveltyMetrics {
  int64_t samples = 0, training = 0, copies = 0;
  double novelty = 0;
  double sample_to_train_mean = 0;     // mean over samples of min_t CD(s, t)
  double reference_to_train_mean = 0;  // mean over references of min_t CD(r, t)
};
// d_sr: f32 [S, R], d_st: f32 [S, T], d_rt: f32 [R, T] Chamfer matrices (any
// device); S, R and T must be > 0.
NoveltyMetrics novelty_metrics(const Tensor& d_sr, const Tensor& d_st, const Tensor& d_rt);
// The three matrices on `device` and the novelty; clouds f32 [N, P, 3] on the CPU.
NoveltyMetrics compare_to_training(const Tensor& samples, const Tensor& references, const Tensor& training,
                                   Device device, const ChamferProgress& progress = nullptr);

// Occupancy JSD between two sets of clouds (f32 [N, P, 3] on the CPU).
double occupancy_jsd(const Tensor& a, const Tensor& b, int resolution = 28);

// A mesh file read for evaluation: its triangles after the evaluator's
// cleaning (faces with two corners at the same position dropped, then faces
// whose corner set repeats an earlier face's), normalized (normalize_triangles).
struct EvalMesh {
  std::string path;
  std::vector<Triangle> triangles;
  int64_t faces_read = 0;
  int64_t dropped_degenerate = 0, dropped_duplicate = 0;
  bool needed_cleaning() const { return dropped_degenerate + dropped_duplicate > 0; }
};
EvalMesh clean_for_eval(const Mesh& mesh, const std::string& path);

// What ./sample said about a file (its samples.jsonl, see infer/sample_cli.cpp).
struct SampleRecord {
  bool known = false;
  bool ended = false;    // the sequence closed with END
  bool cleaned = false;  // ./sample dropped something before writing
};

struct ValidityStats {
  int64_t meshes = 0;
  int64_t with_faces = 0;            // >= 1 face after the evaluator's cleaning
  int64_t clean_files = 0;           // files the evaluator did not need to clean
  int64_t status_known = 0;          // files with a ./sample record
  int64_t ended = 0;                 // of those, closed with END
  int64_t not_cleaned_by_sampler = 0;  // of those, nothing dropped by ./sample
  double faces_mean = 0, faces_median = 0;
  int64_t faces_max = 0;             // faces after cleaning, over all meshes
};
// records[i] belongs to meshes[i] (records may be empty: nothing known).
ValidityStats validity_stats(const std::vector<EvalMesh>& meshes, const std::vector<SampleRecord>& records);

}  // namespace iflame
