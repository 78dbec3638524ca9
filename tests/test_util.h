// test_util.h: helpers shared by the test suites: GPU skipping, golden-file
// paths, random tensors and error measures.
#pragma once
#include <doctest/doctest.h>

#include <cmath>
#include <cstdlib>
#include <filesystem>
#include <string>
#include <vector>

#include "core/device.h"
#include "core/error.h"
#include "core/random.h"
#include "core/tensor.h"

namespace iflame::test {

// The decorator of a test case that needs a GPU from its first line:
// TEST_CASE("..." * needs_gpu()). It puts the case in the test suite "gpu",
// which tests/main.cpp leaves out where no GPU is usable, so doctest counts it
// as skipped. A case that also checks something on the CPU stays undecorated and
// skips its GPU part with SKIP_WITHOUT_GPU().
inline doctest::test_suite needs_gpu() { return doctest::test_suite("gpu"); }

// Skips the rest of a test case, visibly, when there is no usable GPU.
#define SKIP_WITHOUT_GPU()                                                              \
  do {                                                                                  \
    if (!::iflame::cuda_available()) {                                                  \
      MESSAGE("skipped (needs a GPU): " << ::iflame::cuda_unavailable_reason());       \
      return;                                                                           \
    }                                                                                   \
  } while (0)

// Folder of the reference implementation's numbers (tests/golden/README.md):
// $IFLAME_GOLDEN when set, else the repository's tests/golden. That folder is
// found from this header's own path (absolute in a CMake build, relative to
// the repository root in a make build), then by walking up from the test
// runner's folder and from the working directory, so the runner finds it
// whether started from the repository root (make test) or a build folder (ctest).
inline std::string golden_dir() {
  namespace fs = std::filesystem;
  if (const char* env = std::getenv("IFLAME_GOLDEN")) return env;
  const fs::path beside_this_header = fs::path(__FILE__).parent_path() / "golden";
  std::vector<fs::path> candidates = {beside_this_header};
  std::error_code ec;
  const fs::path exe = fs::read_symlink("/proc/self/exe", ec);
  for (fs::path start : {ec ? fs::path() : exe.parent_path(), fs::current_path(ec)})
    for (fs::path d = start; !d.empty(); d = d.parent_path()) {
      candidates.push_back(d / "tests" / "golden");
      if (d == d.root_path()) break;
    }
  for (const fs::path& c : candidates)
    if (fs::is_regular_file(c / "tiny_meta.json", ec)) return c.string();
  return beside_this_header.string();  // missing: the tests' errors name this path
}
inline std::string golden(const std::string& name) { return golden_dir() + "/" + name; }

// Appends v's bytes (host order: little-endian here) to s: binary files built in a test.
template <typename T>
void put(std::string& s, T v) {
  s.append(reinterpret_cast<const char*>(&v), sizeof(T));
}

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

#include <algorithm>
#include <functional>

namespace iflame::test {

// Weighted sum of a tensor's values in double: the scalar "loss" sum(y * r)
// whose gradient with respect to y is r. Gradient checks use it to turn any
// op output into a scalar.
inline double weighted_sum(const Tensor& y, const Tensor& r) {
  auto a = y.to_floats(), b = r.to_floats();
  REQUIRE(a.size() == b.size());
  double s = 0;
  for (size_t i = 0; i < a.size(); i++) s += double(a[i]) * double(b[i]);
  return s;
}

// Finite-difference check of one input's gradient.
// x: a CPU f32 input that `loss` reads (it is perturbed in place and restored);
// analytic: the backward's gradient for x (same shape); loss: recomputes the
// scalar from the current x. Central differences on up to `samples` coordinates
// spread over x. Returns max |analytic - numeric| / max(max |numeric|, floor),
// which a correct backward keeps near 1e-3 with eps = 1e-2 in f32, and a wrong
// one (a missing term, a wrong factor) pushes well above 1e-2.
inline double gradcheck_error(Tensor& x, const Tensor& analytic, const std::function<double()>& loss,
                              int samples = 24, float eps = 1e-2f, double floor = 1e-3) {
  REQUIRE(x.dtype() == DType::F32);
  REQUIRE(x.device() == Device::CPU);
  REQUIRE(x.shape() == analytic.shape());
  auto a = analytic.to_floats();
  float* p = x.data<float>();
  const int64_t n = x.numel();
  double worst = 0, scale = floor;
  std::vector<std::pair<double, double>> pairs;
  for (int s = 0; s < samples && s < n; s++) {
    int64_t i = (n <= samples) ? s : (int64_t)((s * 2654435761ull + 12345) % (uint64_t)n);
    float keep = p[i];
    p[i] = keep + eps;
    double up = loss();
    p[i] = keep - eps;
    double down = loss();
    p[i] = keep;
    double numeric = (up - down) / (2.0 * eps);
    pairs.push_back({a[i], numeric});
    scale = std::max(scale, std::fabs(numeric));
  }
  for (auto& pr : pairs) worst = std::max(worst, std::fabs(pr.first - pr.second));
  return worst / scale;
}

// The message of the iflame::Error that f throws ("" when it throws none).
inline std::string error_of(const std::function<void()>& f) {
  try {
    f();
  } catch (const Error& e) {
    return e.what();
  }
  return "";
}

inline bool contains(const std::string& s, const std::string& part) { return s.find(part) != std::string::npos; }

}  // namespace iflame::test

