// chamfer.cpp: argument checks and device dispatch for the Chamfer distance matrix.
#include "ops/chamfer.h"

#include "core/profiler.h"
#include "ops/dispatch.h"
#include "ops/elem_checks.h"

namespace iflame::ops {

namespace {
// Both inputs f32 [N, P, 3] with P > 0, contiguous, on one device; returns it.
Device check_clouds(const Tensor& a, const Tensor& b, const char* op) {
  IFLAME_CHECK(a.defined() && b.defined(), op, ": undefined input");
  const Device dev = a.device();
  detail::check_exact(a, op, "a", DType::F32, dev);
  detail::check_exact(b, op, "b", DType::F32, dev);
  IFLAME_CHECK(a.ndim() == 3 && a.size(2) == 3, op, ": a: expected [Na, P, 3], got ", a.describe());
  IFLAME_CHECK(b.ndim() == 3 && b.size(2) == 3, op, ": b: expected [Nb, Q, 3], got ", b.describe());
  IFLAME_CHECK(a.size(1) > 0 && b.size(1) > 0, op, ": every cloud needs at least one point, got a ",
               a.describe(), ", b ", b.describe());
  IFLAME_CHECK(a.size(0) <= 65535 && b.size(0) <= 65535 && a.size(1) < (1 << 30) && b.size(1) < (1 << 30), op,
               ": at most 65535 clouds per side and 2^30 points per cloud, got a ", a.describe(), ", b ",
               b.describe());
  return dev;
}
// FLOPs: every point pair's squared distance once (3 subtractions, 3 multiplies,
// 2 adds; the minima not counted) for every pair of clouds. Bytes: reads a, b,
// writes the f32 [Na, Nb] result.
double chamfer_flops(const Tensor& a, const Tensor& b) {
  return 8.0 * a.size(0) * b.size(0) * a.size(1) * b.size(1);
}
double chamfer_bytes(const Tensor& a, const Tensor& b) { return a.nbytes() + b.nbytes() + 4.0 * a.size(0) * b.size(0); }
}  // namespace

Tensor chamfer_matrix(const Tensor& a, const Tensor& b) {
  const Device dev = check_clouds(a, b, "chamfer_matrix");
  PROFILE_OP("chamfer_matrix", chamfer_flops(a, b), chamfer_bytes(a, b), dev, DType::F32);
  if (a.size(0) == 0 || b.size(0) == 0) return Tensor::zeros({a.size(0), b.size(0)}, DType::F32, dev);
  if (dev == Device::CPU) return cpu::chamfer_matrix(a, b);
  CUDA_ONLY(return cuda::chamfer_matrix(a, b));
}

Tensor directed_chamfer(const Tensor& a, const Tensor& b) {
  const Device dev = check_clouds(a, b, "directed_chamfer");
  PROFILE_OP("directed_chamfer", chamfer_flops(a, b), chamfer_bytes(a, b), dev, DType::F32);
  if (a.size(0) == 0 || b.size(0) == 0) return Tensor::zeros({a.size(0), b.size(0)}, DType::F32, dev);
  if (dev == Device::CPU) return cpu::directed_chamfer(a, b);
  CUDA_ONLY(return cuda::directed_chamfer(a, b));
}

}  // namespace iflame::ops
