// chamfer.h: the pairwise Chamfer distance matrix between two sets of point
// clouds, the distance every mesh-generation metric here is built on
// (tools/eval_metrics.h: COV, MMD, 1-NNA).
//
// Definition (squared L2, not square-rooted, as in PolyGen/MeshGPT-style and
// PointFlow evaluations): for clouds A (P points) and B (Q points)
//
//   CD(A, B) = (1/P) sum_{a in A} min_{b in B} ||a - b||^2
//            + (1/Q) sum_{b in B} min_{a in A} ||a - b||^2
//
// a sum of two means (not their average), symmetric, and exactly 0 for
// identical clouds: every ||a - b||^2 is computed from the differences
// (dx*dx + dy*dy + dz*dz), never as |a|^2 + |b|^2 - 2 a.b, so a point against
// itself gives 0 exactly on both devices (the 1-NNA duplicate rule relies on it).
//
//   a: f32 [Na, P, 3], b: f32 [Nb, Q, 3], finite, contiguous, on one device
//   -> f32 [Na, Nb] on that device, out[i, j] = CD(a[i], b[j]).
//
// Precision: the CPU reference sums the P (and Q) minima in double; the kernel
// sums them per thread in f32 and across the block in double, so the two agree
// to a few ulps of the result (the minima themselves are the same f32 numbers).
#pragma once
#include "core/tensor.h"

namespace iflame::ops {

Tensor chamfer_matrix(const Tensor& a, const Tensor& b);
// The directed half: out[i, j] = (1/P) sum_{p in a[i]} min_{q in b[j]} ||p - q||^2
// (chamfer_matrix(a, b) = directed_chamfer(a, b) + directed_chamfer(b, a)^T).
Tensor directed_chamfer(const Tensor& a, const Tensor& b);

namespace cpu {
Tensor chamfer_matrix(const Tensor& a, const Tensor& b);
Tensor directed_chamfer(const Tensor& a, const Tensor& b);
}  // namespace cpu

namespace cuda {
// One thread block per (i, j) pair and direction; the target cloud is streamed
// through shared memory in tiles, each thread keeps the running minima of
// kQueriesPerThread query points in registers (ops/cuda/chamfer.cu).
Tensor chamfer_matrix(const Tensor& a, const Tensor& b);
Tensor directed_chamfer(const Tensor& a, const Tensor& b);
}  // namespace cuda

}  // namespace iflame::ops
