// test_util.h: helpers shared by the test suites: GPU skipping, golden-file
// paths, random tensors and error measures.
#pragma once
#include <doctest/doctest.h>

#include <cmath>
#include <cstdlib>
#include <string>
#include <vector>

#include "core/device.h"
#include "core/random.h"
#include "core/tensor.h"

namespace iflame::test {

// Skips the rest of a test case, visibly, when there is no usable GPU.
#define SKIP_WITHOUT_GPU()                                                              \
  do {                                                                                  \
    if (!::iflame::cuda_available()) {                                                  \
      MESSAGE("skipped (needs a GPU): " << ::iflame::cuda_unavailable_reason());       \
      return;                                                                           \
    }                                                                                   \
  } while (0)

// Folder of the reference implementation's numbers: $IFLAME_GOLDEN or ../shared/golden.
inline std::string golden_dir() {
  const char* env = std::getenv("IFLAME_GOLDEN");
  return env ? env : "../shared/golden";
}
inline std::string golden(const std::string& name) { return golden_dir() + "/" + name; }

inline Tensor random_tensor(const Shape& shape, uint64_t seed, float lo = -1.0f, float hi = 1.0f) {
  Tensor t = Tensor::empty(shape, DType::F32);
  Generator g(seed);
  fill_uniform(t, g, lo, hi);
  return t;
}

inline double max_abs_diff(const std::vector<float>& a, const std::vector<float>& b) {
  REQUIRE(a.size() == b.size());
  double m = 0;
  for (size_t i = 0; i < a.size(); i++) m = std::fmax(m, std::fabs(double(a[i]) - double(b[i])));
  return m;
}
inline double max_abs_diff(const Tensor& a, const Tensor& b) {
  return max_abs_diff(a.to_floats(), b.to_floats());
}

// ||a - b|| / ||b|| (b is the reference).
inline double rel_l2(const std::vector<float>& a, const std::vector<float>& b) {
  REQUIRE(a.size() == b.size());
  double num = 0, den = 0;
  for (size_t i = 0; i < a.size(); i++) {
    double d = double(a[i]) - double(b[i]);
    num += d * d;
    den += double(b[i]) * double(b[i]);
  }
  return std::sqrt(num) / std::sqrt(den > 0 ? den : 1e-30);
}
inline double rel_l2(const Tensor& a, const Tensor& b) { return rel_l2(a.to_floats(), b.to_floats()); }

}  // namespace iflame::test
