// test_elem_ops.cpp: the element-wise, norm, resampling, loss and gradient-norm
// ops: hand-computed cases and finite-difference gradient checks of the CPU
// references, then CUDA against CPU in f32 and bf16 on awkward sizes.
//
// Tolerances for the GPU comparisons (both relative: ||got - ref|| / ||ref|| and
// max |got - ref| / max |ref|): 1e-5 in f32 (only rounding order, fma and libm
// ulps differ); 1e-2 in bf16, where the CPU reference gets the same
// bf16-rounded inputs and the difference is the bf16 rounding of the output
// (at most 2^-9 relative per element).
#include <cmath>
#include <cstdlib>
#include <functional>
#include <string>

#include "core/error.h"
#include "ops/cross_entropy.h"
#include "ops/elementwise.h"
#include "ops/embedding.h"
#include "ops/grad_norm.h"
#include "ops/kernel_choices.h"
#include "ops/resample.h"
#include "ops/rms_norm.h"
#include "ops/rope.h"
#include "ops/swiglu.h"
#include "tests/test_util.h"

using namespace iflame;
using namespace iflame::test;

namespace {

constexpr double kGradTol = 1e-2;  // gradcheck_error bound for a correct backward
constexpr double kF32Tol = 1e-5;
constexpr double kBf16Tol = 1e-2;

Tensor random_ints(const Shape& shape, uint64_t seed, int lo, int hi) {  // uniform in [lo, hi)
  std::vector<int32_t> v;
  for (float f : random_tensor(shape, seed, 0.0f, 1.0f).to_floats())
    v.push_back(std::min(hi - 1, lo + static_cast<int>(f * float(hi - lo))));
  return Tensor::from_ints(v, shape);
}

Tensor times(const Tensor& t, float s) {  // CPU f32 copy scaled: a deliberately wrong gradient
  std::vector<float> v = t.to_floats();
  for (float& x : v) x *= s;
  return Tensor::from_floats(v, t.shape());
}

std::vector<float> floats(const Tensor& t) { return t.to_floats(); }

// The value a CPU reference should see for a GPU input stored in `dtype`.
Tensor as_stored(const Tensor& t, DType dtype) { return dtype == DType::F32 ? t : t.to(DType::BF16).to(DType::F32); }
Tensor to_gpu(const Tensor& t, DType dtype) { return t.to(dtype).to(Device::CUDA); }
double tolerance(DType dtype) { return dtype == DType::F32 ? kF32Tol : kBf16Tol; }

// GPU result against the CPU reference, both relative measures.
void check_close(const Tensor& got, const Tensor& ref, double tol, const std::string& what) {
  INFO(what);
  REQUIRE(got.shape() == ref.shape());
  const std::vector<float> g = got.to_floats(), r = ref.to_floats();
  double ref_max = 0;
  for (float v : r) ref_max = std::max(ref_max, double(std::fabs(v)));
  const double l2 = rel_l2(g, r), worst = max_abs_diff(g, r) / std::max(ref_max, 1e-30);
  INFO("rel_l2 = " << l2 << ", max abs diff / max |ref| = " << worst << ", tolerance " << tol);
  CHECK(l2 <= tol);
  CHECK(worst <= tol);
}

}  // namespace

// ---------------------------------------------------------------- embedding

TEST_CASE("elem: embedding forward picks rows, backward scatter-adds into grad_weight") {
  Tensor w = Tensor::from_floats({0, 1, 2, 3, 4, 5}, {3, 2});
  Tensor tok = Tensor::from_ints({2, 0, 2}, {3});
  CHECK(floats(ops::embedding_forward(w, tok, DType::F32)) == std::vector<float>{4, 5, 0, 1, 4, 5});
  CHECK(ops::embedding_forward(w, Tensor::from_ints({1, 2, 0, 1}, {2, 2}), DType::F32).shape() == Shape{2, 2, 2});
  Tensor gw = Tensor::full({3, 2}, 1.0f);
  ops::embedding_backward(Tensor::from_floats({1, 2, 3, 4, 5, 6}, {3, 2}), tok, gw);
  CHECK(floats(gw) == std::vector<float>{1 + 3, 1 + 4, 1, 1, 1 + 1 + 5, 1 + 2 + 6});
}

TEST_CASE("elem: embedding rejects out-of-range tokens, naming the token and its position") {
  Tensor w = random_tensor({5, 3}, 1);
  std::string msg = error_of([&] { ops::embedding_forward(w, Tensor::from_ints({0, 4, 7, 1}, {2, 2}), DType::F32); });
  CHECK(contains(msg, "token 7"));
  CHECK(contains(msg, "position 2"));
  Tensor gw = Tensor::zeros({5, 3});
  msg = error_of([&] { ops::embedding_backward(Tensor::zeros({2, 3}), Tensor::from_ints({-1, 0}, {2}), gw); });
  CHECK(contains(msg, "token -1"));
  CHECK(contains(error_of([&] { ops::embedding_forward(w, Tensor::from_ints({0}, {1}), DType::BF16); }), "f32"));
}

TEST_CASE("elem: embedding gradient matches finite differences") {
  Tensor w = random_tensor({5, 4}, 2);
  Tensor tok = random_ints({3, 7}, 3, 0, 5);
  Tensor r = random_tensor({3, 7, 4}, 4);
  auto loss = [&] { return weighted_sum(ops::embedding_forward(w, tok, DType::F32), r); };
  Tensor gw = Tensor::zeros({5, 4});
  ops::embedding_backward(r, tok, gw);
  CHECK(gradcheck_error(w, gw, loss) < kGradTol);
  CHECK(gradcheck_error(w, times(gw, 1.1f), loss) > kGradTol);  // a wrong gradient is caught
}

TEST_CASE("elem: embedding CUDA matches CPU (shared-table and atomic backward paths)" * needs_gpu()) {
  SKIP_WITHOUT_GPU();
  struct Case { int64_t V, d; Shape tokens; };
  // V = 132, d = 136: the model's vocabulary, two column slices + a partial one;
  // 9000 tokens: three token chunks; V = 500: too big for the shared table.
  for (Case c : {Case{132, 136, {3, 37}}, Case{132, 40, {2, 4500}}, Case{500, 70, {9, 13}}, Case{7, 5, {37}}}) {
    for (DType dt : {DType::F32, DType::BF16}) {
      INFO("V = " << c.V << ", d = " << c.d << ", tokens " << shape_str(c.tokens) << ", " << dtype_name(dt));
      Tensor w = random_tensor({c.V, c.d}, 10);
      Tensor tok = random_ints(c.tokens, 11, 0, int(c.V));
      Tensor ref = ops::embedding_forward(w, tok, DType::F32);
      Tensor got = ops::embedding_forward(w.to(Device::CUDA), tok.to(Device::CUDA), dt);
      CHECK(got.dtype() == dt);
      CHECK(floats(got) == floats(as_stored(ref, dt)));  // a copy: exact
      Shape g_shape = c.tokens;
      g_shape.push_back(c.d);
      Tensor g = as_stored(random_tensor(g_shape, 12), dt);
      Tensor gw_init = random_tensor({c.V, c.d}, 13);
      Tensor gw_ref = gw_init.clone();
      ops::embedding_backward(g, tok, gw_ref);
      Tensor gw_got = gw_init.to(Device::CUDA);
      ops::embedding_backward(to_gpu(g, dt), tok.to(Device::CUDA), gw_got);
      check_close(gw_got, gw_ref, kF32Tol, "grad_weight");  // f32 sums of the same values
    }
  }
}

// ---------------------------------------------------------------- rms_norm

TEST_CASE("elem: rms_norm of a hand-computed row") {
  Tensor inv;
  Tensor y = ops::rms_norm_forward(Tensor::from_floats({3, 4}, {1, 2}), Tensor::from_floats({1, 2}, {2}), 0.0f, inv);
  const float s = 1.0f / std::sqrt(12.5f);  // mean of squares (9 + 16) / 2
  CHECK(y.to_floats()[0] == doctest::Approx(3 * s).epsilon(1e-6));
  CHECK(y.to_floats()[1] == doctest::Approx(2 * 4 * s).epsilon(1e-6));
  CHECK(inv.shape() == Shape{1});
  CHECK(inv.item() == doctest::Approx(s).epsilon(1e-6));
  Tensor y3 = ops::rms_norm_forward(random_tensor({2, 3, 5}, 1), Tensor::full({5}, 1.0f), 1e-5f, inv);
  CHECK(y3.shape() == Shape{2, 3, 5});
  CHECK(inv.shape() == Shape{6});
}

TEST_CASE("elem: rms_norm gradients match finite differences") {
  Tensor x = random_tensor({5, 7}, 20, -2, 2);
  Tensor w = random_tensor({7}, 21, 0.5f, 1.5f);
  Tensor r = random_tensor({5, 7}, 22);
  auto loss = [&] {
    Tensor inv;
    return weighted_sum(ops::rms_norm_forward(x, w, 1e-5f, inv), r);
  };
  Tensor inv;
  ops::rms_norm_forward(x, w, 1e-5f, inv);
  Tensor gw = Tensor::zeros({7});
  Tensor gx = ops::rms_norm_backward(r, x, w, inv, gw);
  CHECK(gradcheck_error(x, gx, loss) < kGradTol);
  CHECK(gradcheck_error(w, gw, loss) < kGradTol);
  CHECK(gradcheck_error(x, times(gx, 1.1f), loss) > kGradTol);
  CHECK(gradcheck_error(w, times(gw, 1.1f), loss) > kGradTol);
  Tensor gw2 = Tensor::full({7}, 1.0f);  // accumulates
  ops::rms_norm_backward(r, x, w, inv, gw2);
  std::vector<float> a = floats(gw), b = floats(gw2);
  for (size_t i = 0; i < a.size(); i++) CHECK(b[i] == doctest::Approx(a[i] + 1.0f).epsilon(1e-6));
}

TEST_CASE("elem: rms_norm CUDA matches CPU" * needs_gpu()) {
  SKIP_WITHOUT_GPU();
  // 37 and 351 rows: not multiples of the 8 rows a block takes; 9000 rows of d = 8
  // (idle lanes, grid-stride loop in the backward).
  for (Shape shape : {Shape{37, 136}, Shape{3, 117, 70}, Shape{9000, 8}, Shape{5, 512}}) {
    for (DType dt : {DType::F32, DType::BF16}) {
      INFO(shape_str(shape) << ", " << dtype_name(dt));
      const int64_t d = shape.back();
      Tensor x = as_stored(random_tensor(shape, 30, -2, 2), dt);
      Tensor w = random_tensor({d}, 31, 0.5f, 1.5f);
      Tensor g = as_stored(random_tensor(shape, 32), dt);
      Tensor inv_ref, inv_got;
      Tensor y_ref = ops::rms_norm_forward(x, w, 1e-5f, inv_ref);
      Tensor y_got = ops::rms_norm_forward(to_gpu(x, dt), w.to(Device::CUDA), 1e-5f, inv_got);
      CHECK(y_got.dtype() == dt);
      check_close(y_got, y_ref, tolerance(dt), "y");
      check_close(inv_got, inv_ref, kF32Tol, "inv_rms");
      Tensor gw_init = random_tensor({d}, 33);
      Tensor gw_ref = gw_init.clone(), gw_got = gw_init.to(Device::CUDA);
      Tensor gx_ref = ops::rms_norm_backward(g, x, w, inv_ref, gw_ref);
      Tensor gx_got = ops::rms_norm_backward(to_gpu(g, dt), to_gpu(x, dt), w.to(Device::CUDA), inv_got, gw_got);
      check_close(gx_got, gx_ref, tolerance(dt), "grad_x");
      check_close(gw_got, gw_ref, dt == DType::F32 ? kF32Tol : 1e-4, "grad_weight");
    }
  }
}

TEST_CASE("elem: rms_norm with an output dtype of its own (CUDA) equals the norm then the cast" * needs_gpu()) {
  SKIP_WITHOUT_GPU();
  // The block's norms: f32 residual in, bf16 out; the gradient arrives in bf16
  // (or f32) and grad_x leaves in f32. The fused kernels must give exactly what
  // the separate norm and cast give, and be near the CPU reference.
  for (Shape shape : {Shape{37, 136}, Shape{3, 117, 70}, Shape{9000, 8}, Shape{5, 512}, Shape{2, 7, 1100}}) {
    INFO(shape_str(shape));
    const int64_t d = shape.back();
    const Tensor x = random_tensor(shape, 34, -2, 2), w = random_tensor({d}, 35, 0.5f, 1.5f);
    const Tensor xg = x.to(Device::CUDA), wg = w.to(Device::CUDA);
    Tensor inv_fused, inv_plain, inv_ref;
    const Tensor y_fused = ops::rms_norm_forward(xg, wg, 1e-5f, inv_fused, DType::BF16);
    const Tensor y_plain = ops::rms_norm_forward(xg, wg, 1e-5f, inv_plain).to(DType::BF16);
    CHECK(y_fused.dtype() == DType::BF16);
    CHECK(y_fused.shape() == shape);
    CHECK(max_abs_diff(y_fused, y_plain) == 0.0);
    CHECK(max_abs_diff(inv_fused, inv_plain) == 0.0);
    const Tensor y_ref = ops::rms_norm_forward(x, w, 1e-5f, inv_ref);
    check_close(y_fused, y_ref, tolerance(DType::BF16), "y");
    // f32 out through the same entry: the plain kernel.
    Tensor inv32;
    CHECK(max_abs_diff(ops::rms_norm_forward(xg, wg, 1e-5f, inv32, DType::F32),
                       ops::rms_norm_forward(xg, wg, 1e-5f, inv_plain)) == 0.0);
    for (DType gdt : {DType::BF16, DType::F32}) {
      INFO("grad_y " << dtype_name(gdt));
      const Tensor g = random_tensor(shape, 36).to(Device::CUDA).to(gdt);
      Tensor gw_fused = Tensor::zeros({d}, DType::F32, Device::CUDA), gw_plain = gw_fused.clone();
      const Tensor gx_fused = ops::rms_norm_backward(g, xg, wg, inv_fused, gw_fused);
      const Tensor gx_plain = ops::rms_norm_backward(g.to(DType::F32), xg, wg, inv_fused, gw_plain);
      CHECK(gx_fused.dtype() == DType::F32);
      CHECK(max_abs_diff(gx_fused, gx_plain) == 0.0);
      // grad_weight is summed with float atomics: equal up to their order.
      check_close(gw_fused, gw_plain, kF32Tol, "grad_weight");
      Tensor gw_ref = Tensor::zeros({d});
      const Tensor gx_ref = ops::rms_norm_backward(g.to(DType::F32).to(Device::CPU), x, w, inv_ref, gw_ref);
      check_close(gx_fused, gx_ref, kF32Tol, "grad_x vs CPU");
    }
  }
}

TEST_CASE("elem: rms_norm backward adds into a gradient already there (CPU: bit for bit add's sum)") {
  const Tensor x = random_tensor({9, 13}, 40, -2, 2), w = random_tensor({13}, 41, 0.5f, 1.5f);
  const Tensor g = random_tensor({9, 13}, 42), before = random_tensor({9, 13}, 43);
  Tensor inv;
  ops::rms_norm_forward(x, w, 1e-5f, inv);
  Tensor gw_plain = Tensor::zeros({13}), gw_acc = Tensor::zeros({13});
  const Tensor gx = ops::rms_norm_backward(g, x, w, inv, gw_plain);
  Tensor into = before.clone();
  const Tensor out = ops::rms_norm_backward(g, x, w, inv, gw_acc, &into);
  CHECK(out.raw_data() == into.raw_data());  // in place
  CHECK(max_abs_diff(into, ops::add(before, gx)) == 0.0);
  CHECK(max_abs_diff(gw_acc, gw_plain) == 0.0);
  Tensor wrong_shape = Tensor::zeros({9, 12});
  CHECK_THROWS_AS(ops::rms_norm_backward(g, x, w, inv, gw_acc, &wrong_shape), Error);
}

TEST_CASE("elem: add_rms_norm (CPU) is add then rms_norm") {
  const Tensor a = random_tensor({4, 6, 10}, 44, -2, 2), b = random_tensor({4, 6, 10}, 45, -1, 1);
  const Tensor w = random_tensor({10}, 46, 0.5f, 1.5f);
  Tensor sum, inv, inv_ref;
  const Tensor y = ops::add_rms_norm_forward(a, b, w, 1e-5f, sum, inv, DType::F32);
  const Tensor sum_ref = ops::add(a, b);
  CHECK(max_abs_diff(sum, sum_ref) == 0.0);
  CHECK(max_abs_diff(y, ops::rms_norm_forward(sum_ref, w, 1e-5f, inv_ref)) == 0.0);
  CHECK(max_abs_diff(inv, inv_ref) == 0.0);
  Tensor s2, i2;
  CHECK_THROWS_AS(ops::add_rms_norm_forward(a, random_tensor({4, 6, 9}, 47), w, 1e-5f, s2, i2, DType::F32), Error);
}

TEST_CASE("elem: add_rms_norm and the accumulating rms_norm backward (CUDA) equal the separate ops" * needs_gpu()) {
  SKIP_WITHOUT_GPU();
  // The residual stream's shapes (f32 residual + bf16 or f32 branch, bf16 or f32
  // norm), odd row counts and every register width (d <= 128, <= 512, <= 1024).
  for (Shape shape : {Shape{37, 136}, Shape{3, 117, 70}, Shape{9000, 8}, Shape{5, 512}, Shape{2, 7, 1000}}) {
    const int64_t d = shape.back();
    for (DType branch : {DType::BF16, DType::F32}) {
      for (DType out : {DType::BF16, DType::F32}) {
        INFO(shape_str(shape) << ", branch " << dtype_name(branch) << ", out " << dtype_name(out));
        const Tensor a = random_tensor(shape, 50, -2, 2).to(Device::CUDA);
        const Tensor b = random_tensor(shape, 51, -1, 1).to(Device::CUDA).to(branch);
        const Tensor w = random_tensor({d}, 52, 0.5f, 1.5f).to(Device::CUDA);
        Tensor sum, inv, inv_ref;
        const Tensor y = ops::add_rms_norm_forward(a, b, w, 1e-5f, sum, inv, out);
        const Tensor sum_ref = ops::add(a, b);
        const Tensor y_ref = ops::rms_norm_forward(sum_ref, w, 1e-5f, inv_ref, out);
        CHECK(y.dtype() == out);
        CHECK(sum.dtype() == DType::F32);
        CHECK(max_abs_diff(sum, sum_ref) == 0.0);
        CHECK(max_abs_diff(y, y_ref) == 0.0);
        CHECK(max_abs_diff(inv, inv_ref) == 0.0);
      }
    }
    // A bf16 residual (the linear attention's inner norm has bf16 x): the sum is rounded before the norm.
    {
      INFO(shape_str(shape) << ", bf16 residual");
      const Tensor a = random_tensor(shape, 53, -2, 2).to(Device::CUDA).to(DType::BF16);
      const Tensor b = random_tensor(shape, 54, -1, 1).to(Device::CUDA).to(DType::BF16);
      const Tensor w = random_tensor({d}, 55, 0.5f, 1.5f).to(Device::CUDA);
      Tensor sum, inv, inv_ref;
      const Tensor y = ops::add_rms_norm_forward(a, b, w, 1e-5f, sum, inv, DType::BF16);
      const Tensor sum_ref = ops::add(a, b);
      CHECK(sum.dtype() == DType::BF16);
      CHECK(max_abs_diff(sum, sum_ref) == 0.0);
      CHECK(max_abs_diff(y, ops::rms_norm_forward(sum_ref, w, 1e-5f, inv_ref, DType::BF16)) == 0.0);
    }
    // Backward into a gradient already there: f32 x bit for bit add()'s sum; bf16 x
    // skips one rounding of grad_x, so within a bf16 rounding of the sum.
    for (DType xdt : {DType::F32, DType::BF16}) {
      for (DType gdt : {DType::BF16, DType::F32}) {
        INFO(shape_str(shape) << ", x " << dtype_name(xdt) << ", grad_y " << dtype_name(gdt));
        const Tensor x = random_tensor(shape, 56, -2, 2).to(Device::CUDA).to(xdt);
        const Tensor w = random_tensor({d}, 57, 0.5f, 1.5f).to(Device::CUDA);
        const Tensor g = random_tensor(shape, 58).to(Device::CUDA).to(gdt);
        const Tensor before = random_tensor(shape, 59).to(Device::CUDA).to(xdt);
        Tensor inv;
        ops::rms_norm_forward(x, w, 1e-5f, inv);
        Tensor gw_plain = Tensor::zeros({d}, DType::F32, Device::CUDA), gw_acc = gw_plain.clone();
        const Tensor gx = ops::rms_norm_backward(g, x, w, inv, gw_plain);
        Tensor into = before.clone();
        const Tensor got = ops::rms_norm_backward(g, x, w, inv, gw_acc, &into);
        CHECK(got.raw_data() == into.raw_data());
        const Tensor want = ops::add(before, gx);
        if (xdt == DType::F32)
          CHECK(max_abs_diff(into, want) == 0.0);
        else
          check_close(into, want, kBf16Tol, "accumulated grad_x (bf16)");
        check_close(gw_acc, gw_plain, kF32Tol, "grad_weight");
        // and the CPU reference of the sum
        Tensor inv_cpu, gw_cpu = Tensor::zeros({d});
        const Tensor x_cpu = x.to(DType::F32).to(Device::CPU);
        ops::rms_norm_forward(x_cpu, w.to(Device::CPU), 1e-5f, inv_cpu);
        Tensor into_cpu = before.to(DType::F32).to(Device::CPU);
        ops::rms_norm_backward(g.to(DType::F32).to(Device::CPU), x_cpu, w.to(Device::CPU), inv_cpu, gw_cpu, &into_cpu);
        check_close(into, into_cpu, tolerance(xdt), "accumulated grad_x vs CPU");
      }
    }
  }
}

TEST_CASE("elem: rms_norm refuses a bf16 output on the CPU") {
  Tensor inv;
  CHECK_THROWS_AS(ops::rms_norm_forward(random_tensor({2, 4}, 1), Tensor::full({4}, 1.0f), 1e-5f, inv, DType::BF16),
                  Error);
}

// ---------------------------------------------------------------- swiglu

TEST_CASE("elem: swiglu of hand-computed values") {
  Tensor y = ops::swiglu_forward(Tensor::from_floats({0, 1, -1}, {3}), Tensor::from_floats({5, 2, 3}, {3}));
  CHECK(y.to_floats()[0] == 0.0f);
  CHECK(y.to_floats()[1] == doctest::Approx(2.0 / (1.0 + std::exp(-1.0))).epsilon(1e-6));
  CHECK(y.to_floats()[2] == doctest::Approx(-3.0 / (1.0 + std::exp(1.0))).epsilon(1e-6));
}

TEST_CASE("elem: swiglu gradients match finite differences") {
  Tensor a = random_tensor({4, 9}, 40, -3, 3), b = random_tensor({4, 9}, 41, -3, 3), r = random_tensor({4, 9}, 42);
  auto loss = [&] { return weighted_sum(ops::swiglu_forward(a, b), r); };
  Tensor ga, gb;
  ops::swiglu_backward(r, a, b, ga, gb);
  CHECK(gradcheck_error(a, ga, loss) < kGradTol);
  CHECK(gradcheck_error(b, gb, loss) < kGradTol);
  CHECK(gradcheck_error(a, times(ga, 1.1f), loss) > kGradTol);
}

TEST_CASE("elem: swiglu CUDA matches CPU" * needs_gpu()) {
  SKIP_WITHOUT_GPU();
  for (Shape shape : {Shape{37, 70}, Shape{9 * 13, 1365}, Shape{1}}) {
    for (DType dt : {DType::F32, DType::BF16}) {
      INFO(shape_str(shape) << ", " << dtype_name(dt));
      Tensor a = as_stored(random_tensor(shape, 50, -8, 8), dt), b = as_stored(random_tensor(shape, 51, -3, 3), dt);
      Tensor g = as_stored(random_tensor(shape, 52), dt);
      Tensor y_got = ops::swiglu_forward(to_gpu(a, dt), to_gpu(b, dt));
      CHECK(y_got.dtype() == dt);
      check_close(y_got, ops::swiglu_forward(a, b), tolerance(dt), "y");
      Tensor ga_ref, gb_ref, ga_got, gb_got;
      ops::swiglu_backward(g, a, b, ga_ref, gb_ref);
      ops::swiglu_backward(to_gpu(g, dt), to_gpu(a, dt), to_gpu(b, dt), ga_got, gb_got);
      check_close(ga_got, ga_ref, tolerance(dt), "grad_a");
      check_close(gb_got, gb_ref, tolerance(dt), "grad_b");
    }
  }
}

// ---------------------------------------------------------------- rope

TEST_CASE("elem: swiglu_packed (CPU) is swiglu on the two halves, its bias sums the column sums") {
  const int64_t rows = 11, P = 9;
  const Tensor ab = random_tensor({rows, 2 * P}, 70, -3, 3), g = random_tensor({rows, P}, 71);
  const Tensor a = ab.slice(1, 0, P).contiguous(), b = ab.slice(1, P, 2 * P).contiguous();
  CHECK(max_abs_diff(ops::swiglu_packed_forward(ab), ops::swiglu_forward(a, b)) == 0.0);
  Tensor ga, gb;
  ops::swiglu_backward(g, a, b, ga, gb);
  Tensor bias = random_tensor({2 * P}, 72);
  const std::vector<float> bias0 = bias.to_floats();
  const Tensor gab = ops::swiglu_packed_backward(g, ab, &bias);
  CHECK(max_abs_diff(gab.slice(1, 0, P).contiguous(), ga) == 0.0);
  CHECK(max_abs_diff(gab.slice(1, P, 2 * P).contiguous(), gb) == 0.0);
  const std::vector<float> v = gab.to_floats(), got = bias.to_floats();
  for (int64_t c = 0; c < 2 * P; c++) {
    double sum = 0;
    for (int64_t r = 0; r < rows; r++) sum += v[r * 2 * P + c];
    CHECK(got[c] == doctest::Approx(bias0[c] + sum).epsilon(1e-6));
  }
  CHECK(max_abs_diff(ops::swiglu_packed_backward(g, ab, nullptr), gab) == 0.0);
  Tensor wrong_bias = Tensor::zeros({P});
  CHECK_THROWS_AS(ops::swiglu_packed_backward(g, ab, &wrong_bias), Error);
  CHECK_THROWS_AS(ops::swiglu_packed_forward(random_tensor({3, 5}, 73)), Error);  // odd width
}

TEST_CASE("elem: swiglu_packed CUDA matches CPU, bias sums repeatable" * needs_gpu()) {
  SKIP_WITHOUT_GPU();
  // P = 1368 and 176 (16-byte path), P = 13 (one column per thread), P = 2000
  // (threads loop over column groups); 1 row, odd counts, more rows than blocks.
  struct Size {
    int64_t rows, P;
  };
  for (Size sz : {Size{1, 1368}, Size{37, 176}, Size{3001, 13}, Size{20011, 1368}, Size{129, 2000}}) {
    for (DType dt : {DType::BF16, DType::F32}) {
      INFO("rows " << sz.rows << ", P " << sz.P << ", " << dtype_name(dt));
      const Tensor ab = as_stored(random_tensor({sz.rows, 2 * sz.P}, 74, -3, 3), dt);
      const Tensor g = as_stored(random_tensor({sz.rows, sz.P}, 75), dt);
      const Tensor y = ops::swiglu_packed_forward(to_gpu(ab, dt));
      CHECK(y.dtype() == dt);
      check_close(y, ops::swiglu_packed_forward(ab), tolerance(dt), "y");
      const Tensor bias0 = random_tensor({2 * sz.P}, 76);
      Tensor bias_ref = bias0.clone(), bias_got = bias0.to(Device::CUDA), bias_again = bias0.to(Device::CUDA);
      const Tensor gab_ref = ops::swiglu_packed_backward(g, ab, &bias_ref);
      const Tensor gab = ops::swiglu_packed_backward(to_gpu(g, dt), to_gpu(ab, dt), &bias_got);
      check_close(gab, gab_ref, tolerance(dt), "grad_ab");
      check_close(bias_got, bias_ref, tolerance(dt), "bias gradient");
      const Tensor gab2 = ops::swiglu_packed_backward(to_gpu(g, dt), to_gpu(ab, dt), &bias_again);
      CHECK(max_abs_diff(gab2, gab) == 0.0);
      CHECK(max_abs_diff(bias_again, bias_got) == 0.0);  // fixed order: bit for bit
      // The sums are those of grad_ab as stored: in f64 on the host, within f32 rounding.
      const std::vector<float> v = gab.to_floats(), b0 = bias0.to_floats(), got = bias_got.to_floats();
      double worst = 0, scale = 0;
      for (int64_t c = 0; c < 2 * sz.P; c++) {
        double sum = b0[c];
        for (int64_t r = 0; r < sz.rows; r++) sum += v[r * 2 * sz.P + c];
        worst = std::max(worst, std::fabs(sum - got[c]));
        scale = std::max(scale, std::fabs(sum));
      }
      CHECK(worst <= 1e-5 * std::max(1.0, scale));
    }
  }
}

TEST_CASE("elem: rope frequencies are (1/1024)^(j/(D/4-1)) then zeros") {
  std::vector<float> f = ops::rope_frequencies(32);
  REQUIRE(f.size() == 16);
  CHECK(f[0] == 1.0f);
  CHECK(f[7] == 1.0f / 1024);
  for (int j = 0; j < 8; j++) CHECK(f[j] == doctest::Approx(std::pow(1024.0, -j / 7.0)).epsilon(1e-7));
  for (int j = 8; j < 16; j++) CHECK(f[j] == 0.0f);
  CHECK_THROWS_AS(ops::rope_frequencies(30), Error);
}

TEST_CASE("elem: rope is the identity at position 0 and on the zero-frequency half") {
  Tensor x = random_tensor({2, 1, 3, 16}, 60);
  CHECK(floats(ops::rope_forward(x, 0)) == floats(x));
  // D = 8: frequencies [1, 1/1024, 0, 0]; at position 1 pair 0 turns by 1 radian.
  std::vector<float> v(8, 0.0f);
  v[0] = 1.0f;  // x1[0] = 1, x2[0] = 0
  v[2] = 0.5f;  // zero frequency: unchanged
  v[7] = -2.0f;
  std::vector<float> y = floats(ops::rope_forward(Tensor::from_floats(v, {1, 1, 1, 8}), 1));
  CHECK(y[0] == std::cos(1.0f));
  CHECK(y[4] == -std::sin(1.0f));
  CHECK(y[2] == 0.5f);
  CHECK(y[7] == -2.0f);
  CHECK(y[3] == 0.0f);
  // Token t of a sequence at pos_offset p sits at position t + p.
  Tensor seq = random_tensor({1, 4, 2, 8}, 61);
  std::vector<float> whole = floats(ops::rope_forward(seq, 5));
  std::vector<float> last = floats(ops::rope_forward(seq.slice(1, 3, 4).contiguous(), 8));
  CHECK(std::vector<float>(whole.end() - 16, whole.end()) == last);
}

TEST_CASE("elem: rope gradient matches finite differences and undoes the rotation") {
  Tensor x = random_tensor({2, 5, 3, 8}, 62), r = random_tensor({2, 5, 3, 8}, 63);
  auto loss = [&] { return weighted_sum(ops::rope_forward(x, 3), r); };
  Tensor gx = ops::rope_backward(r, 3);
  CHECK(gradcheck_error(x, gx, loss) < kGradTol);
  CHECK(gradcheck_error(x, times(gx, 1.1f), loss) > kGradTol);
  CHECK(max_abs_diff(ops::rope_backward(ops::rope_forward(x, 6900), 6900), x) < 1e-5);
}

TEST_CASE("elem: rope CUDA matches CPU, also at large positions" * needs_gpu()) {
  SKIP_WITHOUT_GPU();
  struct Case { Shape shape; int64_t offset; };
  for (Case c : {Case{{2, 37, 3, 32}, 0}, Case{{2, 37, 3, 32}, 6900}, Case{{1, 9 * 13, 16, 32}, 6800},
                 Case{{3, 5, 2, 8}, 11}, Case{{1, 7, 5, 64}, 100}}) {
    for (DType dt : {DType::F32, DType::BF16}) {
      INFO(shape_str(c.shape) << " at offset " << c.offset << ", " << dtype_name(dt));
      Tensor x = as_stored(random_tensor(c.shape, 70), dt), g = as_stored(random_tensor(c.shape, 71), dt);
      Tensor y_got = ops::rope_forward(to_gpu(x, dt), c.offset);
      CHECK(y_got.dtype() == dt);
      check_close(y_got, ops::rope_forward(x, c.offset), tolerance(dt), "y");
      check_close(ops::rope_backward(to_gpu(g, dt), c.offset), ops::rope_backward(g, c.offset), tolerance(dt),
                  "grad_x");
    }
  }
}

// ---------------------------------------------------------------- resample

TEST_CASE("elem: avg_pool3 and repeat3_shift2 on hand-computed sequences") {
  Tensor x = Tensor::from_floats({1, 2, 3, 4, 5}, {1, 5, 1});
  Tensor pooled = ops::avg_pool3_forward(x);
  CHECK(pooled.shape() == Shape{1, 2, 1});
  CHECK(floats(pooled) == std::vector<float>{2, 4.5f});  // the last group has 2 elements
  CHECK(floats(ops::avg_pool3_backward(Tensor::from_floats({3, 4}, {1, 2, 1}), 5)) ==
        std::vector<float>{1, 1, 1, 2, 2});
  Tensor s = Tensor::from_floats({1, 2, 3}, {1, 3, 1});
  CHECK(floats(ops::repeat3_shift2_forward(s, 9)) == std::vector<float>{0, 0, 1, 1, 1, 2, 2, 2, 3});
  CHECK(floats(ops::repeat3_shift2_forward(s, 12)) == std::vector<float>{0, 0, 1, 1, 1, 2, 2, 2, 3, 3, 3, 0});
  CHECK(floats(ops::repeat3_shift2_forward(s, 5)) == std::vector<float>{0, 0, 1, 1, 1});
  Tensor g = Tensor::from_floats({1, 2, 3, 4, 5, 6, 7, 8, 9}, {1, 9, 1});
  CHECK(floats(ops::repeat3_shift2_backward(g, 3)) == std::vector<float>{3 + 4 + 5, 6 + 7 + 8, 9});
  CHECK(floats(ops::repeat3_shift2_backward(g, 4)) == std::vector<float>{12, 21, 9, 0});
  CHECK_THROWS_AS(ops::avg_pool3_backward(Tensor::zeros({1, 3, 1}), 5), Error);
}

TEST_CASE("elem: avg_pool3 and repeat3_shift2 gradients match finite differences") {
  Tensor x = random_tensor({2, 7, 3}, 80), r = random_tensor({2, 3, 3}, 81);
  auto pool_loss = [&] { return weighted_sum(ops::avg_pool3_forward(x), r); };
  Tensor gx = ops::avg_pool3_backward(r, 7);
  CHECK(gradcheck_error(x, gx, pool_loss) < kGradTol);
  CHECK(gradcheck_error(x, times(gx, 1.1f), pool_loss) > kGradTol);
  for (int64_t T_out : {10, 16}) {  // truncated / zero-filled
    INFO("T_out = " << T_out);
    Tensor s = random_tensor({2, 4, 3}, 82), rr = random_tensor({2, T_out, 3}, 83);
    auto rep_loss = [&] { return weighted_sum(ops::repeat3_shift2_forward(s, T_out), rr); };
    Tensor gs = ops::repeat3_shift2_backward(rr, 4);
    CHECK(gradcheck_error(s, gs, rep_loss) < kGradTol);
    CHECK(gradcheck_error(s, times(gs, 1.1f), rep_loss) > kGradTol);
  }
}

TEST_CASE("elem: avg_pool3 and repeat3_shift2 CUDA match CPU" * needs_gpu()) {
  SKIP_WITHOUT_GPU();
  for (DType dt : {DType::F32, DType::BF16}) {
    for (int64_t T : {37, 9 * 13}) {
      INFO("T = " << T << ", " << dtype_name(dt));
      const int64_t S = (T + 2) / 3;
      Tensor x = as_stored(random_tensor({2, T, 70}, 90), dt);
      Tensor gp = as_stored(random_tensor({2, S, 70}, 91), dt);
      check_close(ops::avg_pool3_forward(to_gpu(x, dt)), ops::avg_pool3_forward(x), tolerance(dt), "pool y");
      check_close(ops::avg_pool3_backward(to_gpu(gp, dt), T), ops::avg_pool3_backward(gp, T), tolerance(dt),
                  "pool grad_x");
      for (int64_t T_out : {T, T + 8}) {  // 3S + 2 > T: truncated; T + 8: zero-filled end
        Tensor gr = as_stored(random_tensor({2, T_out, 70}, 92), dt);
        Tensor s_in = as_stored(random_tensor({2, S, 70}, 93), dt);
        Tensor y_got = ops::repeat3_shift2_forward(to_gpu(s_in, dt), T_out);
        CHECK(y_got.dtype() == dt);
        CHECK(floats(y_got) == floats(ops::repeat3_shift2_forward(s_in, T_out)));  // a copy: exact
        check_close(ops::repeat3_shift2_backward(to_gpu(gr, dt), S), ops::repeat3_shift2_backward(gr, S),
                    tolerance(dt), "repeat grad_x");
      }
    }
  }
}

// ---------------------------------------------------------------- elementwise

TEST_CASE("elem: add, add_inplace, scale and skip_scale_add on hand-computed values") {
  Tensor a = Tensor::from_floats({1, 2, 3}, {3}), b = Tensor::from_floats({10, 20, 30}, {3});
  CHECK(floats(ops::add(a, b)) == std::vector<float>{11, 22, 33});
  ops::add_inplace(a, b);
  CHECK(floats(a) == std::vector<float>{11, 22, 33});
  CHECK(floats(ops::scale(b, 0.5f)) == std::vector<float>{5, 10, 15});
  Tensor w = Tensor::from_floats({2, -1}, {2});
  CHECK(floats(ops::skip_scale_add_forward(b, w, 1, a)) == std::vector<float>{1, 2, 3});
  Tensor gx, gw = Tensor::from_floats({0.5f, 0.25f}, {2});
  ops::skip_scale_add_backward(Tensor::from_floats({1, 1, 2}, {3}), b, w, 0, gx, gw);
  CHECK(floats(gx) == std::vector<float>{2, 2, 4});
  CHECK(floats(gw) == std::vector<float>{0.5f + 10 + 20 + 60, 0.25f});
  CHECK_THROWS_AS(ops::skip_scale_add_forward(b, w, 2, a), Error);
  CHECK_THROWS_AS(ops::add(a, Tensor::zeros({4})), Error);
}

TEST_CASE("elem: skip_scale_add and scale gradients match finite differences") {
  Tensor x = random_tensor({3, 5, 4}, 100), skip = random_tensor({3, 5, 4}, 101), r = random_tensor({3, 5, 4}, 102);
  Tensor w = Tensor::from_floats({0.7f, 1.3f}, {2});
  auto loss = [&] { return weighted_sum(ops::skip_scale_add_forward(x, w, 1, skip), r); };
  Tensor gx, gw = Tensor::zeros({2});
  ops::skip_scale_add_backward(r, x, w, 1, gx, gw);
  CHECK(gradcheck_error(x, gx, loss) < kGradTol);
  CHECK(gradcheck_error(w, gw, loss) < kGradTol);
  CHECK(gradcheck_error(skip, r, loss) < kGradTol);  // the skip's gradient is grad_y itself
  CHECK(gradcheck_error(w, times(gw, 1.1f), loss) > kGradTol);
  CHECK(gradcheck_error(x, times(gx, 1.1f), loss) > kGradTol);
  auto scale_loss = [&] { return weighted_sum(ops::scale(x, -0.3f), r); };
  CHECK(gradcheck_error(x, ops::scale(r, -0.3f), scale_loss) < kGradTol);
  CHECK(gradcheck_error(x, ops::scale(r, 0.3f), scale_loss) > kGradTol);
}

TEST_CASE("elem: element-wise ops CUDA match CPU, mixed dtypes included" * needs_gpu()) {
  SKIP_WITHOUT_GPU();
  const Shape shape{2, 37, 70};
  Tensor a = random_tensor(shape, 110), b = random_tensor(shape, 111), g = random_tensor(shape, 112);
  Tensor w = Tensor::from_floats({0.8f, -1.7f}, {2});
  for (DType da : {DType::F32, DType::BF16}) {
    for (DType db : {DType::F32, DType::BF16}) {
      INFO(dtype_name(da) << " with " << dtype_name(db));
      Tensor ar = as_stored(a, da), br = as_stored(b, db);
      Tensor sum = ops::add(to_gpu(ar, da), to_gpu(br, db));
      CHECK(sum.dtype() == da);
      check_close(sum, ops::add(ar, br), tolerance(da), "add");
      Tensor acc = to_gpu(ar, da), acc_ref = ar.clone();
      ops::add_inplace(acc, to_gpu(br, db));
      ops::add_inplace(acc_ref, br);
      CHECK(acc.dtype() == da);
      check_close(acc, acc_ref, tolerance(da), "add_inplace");
      Tensor wg = w.to(Device::CUDA);
      check_close(ops::skip_scale_add_forward(to_gpu(ar, da), wg, 1, to_gpu(br, db)),
                  ops::skip_scale_add_forward(ar, w, 1, br), tolerance(da), "skip_scale_add y");
      Tensor gr = as_stored(g, db);  // grad_y in the second dtype
      Tensor gx_ref, gx_got, gw_ref = Tensor::from_floats({0.5f, 0.25f}, {2});
      Tensor gw_got = gw_ref.to(Device::CUDA);
      ops::skip_scale_add_backward(gr, ar, w, 1, gx_ref, gw_ref);
      ops::skip_scale_add_backward(to_gpu(gr, db), to_gpu(ar, da), wg, 1, gx_got, gw_got);
      CHECK(gx_got.dtype() == da);
      check_close(gx_got, gx_ref, tolerance(da), "skip_scale_add grad_x");
      check_close(gw_got, gw_ref, 1e-5, "skip_scale_add grad_weights");
    }
    check_close(ops::scale(to_gpu(as_stored(a, da), da), 0.37f), ops::scale(as_stored(a, da), 0.37f), tolerance(da),
                "scale");
  }
  // A large tensor: many blocks each add their partial sum into grad_weights[0].
  Tensor big_x = random_tensor({3000, 136}, 113), big_g = random_tensor({3000, 136}, 114);
  Tensor gx_ref, gx_got, gw_ref = Tensor::zeros({2}), gw_got = Tensor::zeros({2}, DType::F32, Device::CUDA);
  ops::skip_scale_add_backward(big_g, big_x, w, 0, gx_ref, gw_ref);
  ops::skip_scale_add_backward(big_g.to(Device::CUDA), big_x.to(Device::CUDA), w.to(Device::CUDA), 0, gx_got, gw_got);
  check_close(gw_got, gw_ref, 1e-5, "large grad_weights");
  Tensor gw_again = Tensor::zeros({2}, DType::F32, Device::CUDA);
  ops::skip_scale_add_backward(big_g.to(Device::CUDA), big_x.to(Device::CUDA), w.to(Device::CUDA), 0, gx_got,
                               gw_again);
  CHECK(floats(gw_again) == floats(gw_got));  // fixed-order sum: repeatable
}

// ---------------------------------------------------------------- cross_entropy

TEST_CASE("elem: cross_entropy of uniform logits is ln V; ties go to the first maximum") {
  auto out = ops::cross_entropy_forward(Tensor::zeros({2, 7}), Tensor::from_ints({0, 3}, {2}), -100);
  CHECK(out.loss.item() == doctest::Approx(std::log(7.0)).epsilon(1e-6));
  CHECK(out.accuracy.item() == 0.5f);  // argmax of an all-equal row is column 0
  CHECK(out.valid_count.item() == 2.0f);
  CHECK(out.lse.to_floats()[1] == doctest::Approx(std::log(7.0)).epsilon(1e-6));
  Tensor tied = Tensor::from_floats({1, 3, 3, 0, 5, 2, 5, 5}, {2, 4});
  CHECK(ops::cross_entropy_forward(tied, Tensor::from_ints({1, 2}, {2}), -100).accuracy.item() == 0.5f);
  CHECK(ops::cross_entropy_forward(tied, Tensor::from_ints({2, 2}, {2}), -100).accuracy.item() == 0.0f);
  // Ignored rows count for nothing.
  auto ign = ops::cross_entropy_forward(tied, Tensor::from_ints({1, 3}, {2}), 3);
  CHECK(ign.valid_count.item() == 1.0f);
  CHECK(ign.accuracy.item() == 1.0f);
  const double lse0 = std::log(std::exp(1.0) + 2 * std::exp(3.0) + 1.0);
  CHECK(ign.loss.item() == doctest::Approx(lse0 - 3.0).epsilon(1e-6));
  // All ignored: zeros, and a zero gradient.
  Tensor tgt = Tensor::from_ints({3, 3}, {2});
  auto none = ops::cross_entropy_forward(tied, tgt, 3);
  CHECK(none.loss.item() == 0.0f);
  CHECK(none.accuracy.item() == 0.0f);
  CHECK(none.valid_count.item() == 0.0f);
  CHECK(floats(ops::cross_entropy_backward(Tensor::full({1}, 1.0f), tied, tgt, none, 3)) == std::vector<float>(8, 0));
  std::string msg = error_of([&] { ops::cross_entropy_forward(tied, Tensor::from_ints({1, 4}, {2}), 3); });
  CHECK(contains(msg, "target 4"));
  CHECK(contains(msg, "row 1"));
}

TEST_CASE("elem: cross_entropy gradient matches finite differences") {
  Tensor logits = random_tensor({6, 5}, 120, -2, 2);
  Tensor targets = Tensor::from_ints({0, 4, 3, 2, 3, 1}, {6});  // 3 plays PAD
  const float grad_loss = 0.7f;
  auto loss = [&] { return grad_loss * double(ops::cross_entropy_forward(logits, targets, 3).loss.item()); };
  auto fwd = ops::cross_entropy_forward(logits, targets, 3);
  Tensor g = ops::cross_entropy_backward(Tensor::full({1}, grad_loss), logits, targets, fwd, 3);
  std::vector<float> gv = floats(g);
  for (int v = 0; v < 5; v++) CHECK(gv[2 * 5 + v] == 0.0f);  // ignored row
  CHECK(gradcheck_error(logits, g, loss, 30) < kGradTol);
  CHECK(gradcheck_error(logits, times(g, 1.1f), loss, 30) > kGradTol);
}

TEST_CASE("elem: cross_entropy CUDA matches CPU" * needs_gpu()) {
  SKIP_WITHOUT_GPU();
  struct Case { int64_t N, V; bool integer_logits; };
  // V = 132: the model; V = 7: fewer columns than lanes; V = 1000: many per lane;
  // integer logits: many ties for the argmax.
  for (Case c : {Case{9 * 13, 132, false}, Case{37, 7, false}, Case{41, 1000, false}, Case{300, 132, true}}) {
    for (DType dt : {DType::F32, DType::BF16}) {
      INFO("N = " << c.N << ", V = " << c.V << (c.integer_logits ? ", integer logits" : "") << ", "
                  << dtype_name(dt));
      Tensor logits = random_tensor({c.N, c.V}, 130, -4, 4);
      if (c.integer_logits) {
        std::vector<float> v = floats(logits);
        for (float& x : v) x = std::floor(x / 2);
        logits = Tensor::from_floats(v, {c.N, c.V});
      }
      logits = as_stored(logits, dt);
      const int ignore = int(c.V) - 3;
      Tensor targets = random_ints({c.N}, 131, 0, int(c.V));
      auto ref = ops::cross_entropy_forward(logits, targets, ignore);
      Tensor logits_gpu = to_gpu(logits, dt), targets_gpu = targets.to(Device::CUDA);
      auto got = ops::cross_entropy_forward(logits_gpu, targets_gpu, ignore);
      check_close(got.loss, ref.loss, kF32Tol, "loss");
      check_close(got.lse, ref.lse, kF32Tol, "lse");
      CHECK(got.accuracy.item() == ref.accuracy.item());
      CHECK(got.valid_count.item() == ref.valid_count.item());
      Tensor grad_loss = Tensor::full({1}, 0.37f);
      Tensor g_ref = ops::cross_entropy_backward(grad_loss, logits, targets, ref, ignore);
      Tensor g_got =
          ops::cross_entropy_backward(grad_loss.to(Device::CUDA), logits_gpu, targets_gpu, got, ignore);
      CHECK(g_got.dtype() == dt);
      check_close(g_got, g_ref, tolerance(dt), "grad_logits");
    }
  }
  // Every row ignored.
  Tensor logits = random_tensor({5, 132}, 132).to(Device::CUDA);
  Tensor targets = Tensor::full({5}, 129.0f, DType::I32).to(Device::CUDA);
  auto none = ops::cross_entropy_forward(logits, targets, 129);
  CHECK(none.loss.item() == 0.0f);
  CHECK(none.valid_count.item() == 0.0f);
  Tensor g = ops::cross_entropy_backward(Tensor::full({1}, 1.0f, DType::F32, Device::CUDA), logits, targets, none, 129);
  CHECK(floats(g) == std::vector<float>(5 * 132, 0.0f));
}

// ---------------------------------------------------------------- grad_norm

TEST_CASE("elem: global_grad_norm, clip_grad_norm and all_finite on hand-computed values") {
  std::vector<Tensor> grads{Tensor::from_floats({3}, {1}), Tensor::from_floats({0, 4}, {2})};
  CHECK(ops::global_grad_norm(grads).item() == 5.0f);
  Tensor norm = ops::clip_grad_norm(grads, 10.0f);  // below the limit: unchanged
  CHECK(norm.item() == 5.0f);
  CHECK(floats(grads[1]) == std::vector<float>{0, 4});
  norm = ops::clip_grad_norm(grads, 1.0f);
  CHECK(norm.item() == 5.0f);
  const float coef = 1.0f / (5.0f + 1e-6f);  // as torch.nn.utils.clip_grad_norm_ computes it, in f32
  CHECK(floats(grads[0]) == std::vector<float>{3 * coef});
  CHECK(floats(grads[1]) == std::vector<float>{0, 4 * coef});
  CHECK(ops::all_finite(grads));
  grads.push_back(Tensor::from_floats({1, NAN}, {2}));
  CHECK_FALSE(ops::all_finite(grads));
  grads.back() = Tensor::from_floats({-INFINITY}, {1});
  CHECK_FALSE(ops::all_finite(grads));
  CHECK(ops::global_grad_norm({}).item() == 0.0f);
  CHECK_THROWS_AS(ops::global_grad_norm({Tensor::zeros({2}), Tensor::zeros({2}, DType::BF16)}), Error);
}

TEST_CASE("elem: gradient norm and clipping CUDA match CPU over many tensors" * needs_gpu()) {
  SKIP_WITHOUT_GPU();
  // 70 tensors (two launches of at most 64), sizes from 1 to ~120k.
  std::vector<Tensor> cpu_grads, gpu_grads;
  for (int i = 0; i < 70; i++) {
    const int64_t n = (i % 7 == 0) ? 9 * 13 * 70 + i : (i % 3 == 0 ? 136 * 70 : 1 + 37 * i);
    cpu_grads.push_back(random_tensor({n}, 140 + i));
    gpu_grads.push_back(cpu_grads.back().to(Device::CUDA));
  }
  Tensor norm_ref = ops::global_grad_norm(cpu_grads), norm_got = ops::global_grad_norm(gpu_grads);
  check_close(norm_got, norm_ref, 1e-6, "norm");
  CHECK(ops::global_grad_norm(gpu_grads).item() == norm_got.item());  // deterministic
  ops::clip_grad_norm(gpu_grads, 1e9f);
  for (size_t i = 0; i < gpu_grads.size(); i++) CHECK(floats(gpu_grads[i]) == floats(cpu_grads[i]));
  const float max_norm = 0.25f * norm_ref.item();
  Tensor clip_ref = ops::clip_grad_norm(cpu_grads, max_norm), clip_got = ops::clip_grad_norm(gpu_grads, max_norm);
  check_close(clip_got, clip_ref, 1e-6, "norm returned by clip");
  for (size_t i = 0; i < gpu_grads.size(); i++) check_close(gpu_grads[i], cpu_grads[i], 1e-6, str("clipped grad ", i));
  CHECK(ops::all_finite(gpu_grads));
  std::vector<float> v = floats(cpu_grads[66]);
  v[v.size() / 2] = INFINITY;
  gpu_grads[66] = Tensor::from_floats(v, cpu_grads[66].shape()).to(Device::CUDA);
  CHECK_FALSE(ops::all_finite(gpu_grads));
}

TEST_CASE("elem: the kernel choices are set from code or read from the environment, and described") {
  const ops::KernelChoices before = ops::kernel_choices();
  ops::KernelChoices c;
  c.flash_attention = false;
  c.pdl = false;
  CHECK(ops::set_kernel_choices(c).lt_bias == before.lt_bias);
  CHECK(ops::describe_kernel_choices() == "flash_attention=off linear_attention_mma=on lt_bias=on pdl=off");
  // Only "0" turns a choice off; an unset variable leaves it on.
  const char* names[4] = {"IFLAME_FLASH_ATTENTION", "IFLAME_LINEAR_ATTENTION_MMA", "IFLAME_LT_BIAS", "IFLAME_PDL"};
  std::string saved[4];
  bool was_set[4];
  for (int i = 0; i < 4; i++) {
    const char* v = std::getenv(names[i]);
    was_set[i] = v != nullptr;
    saved[i] = v ? v : "";
  }
  unsetenv("IFLAME_FLASH_ATTENTION");
  setenv("IFLAME_LINEAR_ATTENTION_MMA", "1", 1);
  setenv("IFLAME_LT_BIAS", "0", 1);
  setenv("IFLAME_PDL", "off", 1);
  ops::read_kernel_choices_from_environment();
  const ops::KernelChoices read = ops::kernel_choices();
  CHECK(read.flash_attention);
  CHECK(read.linear_attention_mma);
  CHECK_FALSE(read.lt_bias);
  CHECK(read.pdl);
  for (int i = 0; i < 4; i++) {
    if (was_set[i])
      setenv(names[i], saved[i].c_str(), 1);
    else
      unsetenv(names[i]);
  }
  CHECK(ops::set_kernel_choices(before).pdl);  // hands back what was read
  CHECK(ops::kernel_choices().lt_bias == before.lt_bias);
}
