// test_autograd.cpp: the tape on a small composite graph, against gradients
// derived by hand, and its bookkeeping (no_grad, freeing, accumulation).
#include <cmath>

#include "autograd/functions.h"
#include "ops/elementwise.h"
#include "ops/linear.h"
#include "ops/rms_norm.h"
#include "tests/test_util.h"

using namespace iflame;
using namespace iflame::test;

namespace {
// logits = (x W1^T + b1) + x W2^T; loss = mean cross-entropy over rows whose target != -1.
struct Composite {
  int N = 5, in = 4, out = 3;
  Tensor x = random_tensor({5, 4}, 11), w1 = random_tensor({3, 4}, 12), b1 = random_tensor({3}, 13),
         w2 = random_tensor({3, 4}, 14);
  std::vector<int32_t> targets = {0, 2, -1, 1, 2};
};
}  // namespace

TEST_CASE("autograd: composite graph matches hand-derived gradients") {
  Composite c;
  Variable x(c.x, true), w1(c.w1, true), b1(c.b1, true), w2(c.w2, true);
  Tensor targets = Tensor::from_ints(c.targets, {c.N});
  Variable logits = ag::add(ag::linear(x, w1, b1, DType::F32), ag::linear(x, w2, Variable(), DType::F32));
  ag::LossAndAccuracy r = ag::cross_entropy(logits, targets, -1);
  CHECK(tape().size() == 4);  // two linears, add, cross-entropy
  tape().backward(r.loss);
  CHECK(tape().size() == 0);

  // By hand: z = x (W1 + W2)^T + b1; p = softmax(z); dz = (p - onehot) / counted.
  auto X = c.x.to_floats(), W1 = c.w1.to_floats(), B1 = c.b1.to_floats(), W2 = c.w2.to_floats();
  std::vector<double> dz(c.N * c.out, 0.0);
  double loss = 0;
  int counted = 0;
  for (int n = 0; n < c.N; n++) {
    if (c.targets[n] < 0) continue;
    counted++;
  }
  for (int n = 0; n < c.N; n++) {
    if (c.targets[n] < 0) continue;
    std::vector<double> z(c.out);
    double mx = -1e30, sum = 0;
    for (int o = 0; o < c.out; o++) {
      z[o] = B1[o];
      for (int i = 0; i < c.in; i++) z[o] += X[n * c.in + i] * (W1[o * c.in + i] + W2[o * c.in + i]);
      mx = std::max(mx, z[o]);
    }
    for (int o = 0; o < c.out; o++) sum += std::exp(z[o] - mx);
    loss += (std::log(sum) + mx - z[c.targets[n]]) / counted;
    for (int o = 0; o < c.out; o++)
      dz[n * c.out + o] = (std::exp(z[o] - mx) / sum - (o == c.targets[n] ? 1.0 : 0.0)) / counted;
  }
  CHECK(r.loss.value().item() == doctest::Approx(loss).epsilon(1e-5));
  auto gx = x.grad().to_floats(), gw1 = w1.grad().to_floats(), gb1 = b1.grad().to_floats(),
       gw2 = w2.grad().to_floats();
  for (int n = 0; n < c.N; n++)
    for (int i = 0; i < c.in; i++) {
      double want = 0;  // x feeds both products: the two paths add up
      for (int o = 0; o < c.out; o++) want += dz[n * c.out + o] * (W1[o * c.in + i] + W2[o * c.in + i]);
      CHECK(gx[n * c.in + i] == doctest::Approx(want).epsilon(1e-4));
    }
  for (int o = 0; o < c.out; o++) {
    double want_b = 0;
    for (int n = 0; n < c.N; n++) want_b += dz[n * c.out + o];
    CHECK(gb1[o] == doctest::Approx(want_b).epsilon(1e-4));
    for (int i = 0; i < c.in; i++) {
      double want = 0;
      for (int n = 0; n < c.N; n++) want += dz[n * c.out + o] * X[n * c.in + i];
      CHECK(gw1[o * c.in + i] == doctest::Approx(want).epsilon(1e-4));
      CHECK(gw2[o * c.in + i] == doctest::Approx(want).epsilon(1e-4));
    }
  }
}

TEST_CASE("autograd: parameter gradients accumulate across backward passes") {
  Composite c;
  Variable x(c.x, false), w1(c.w1, true), b1(c.b1, true);
  Tensor targets = Tensor::from_ints(c.targets, {c.N});
  tape().backward(ag::cross_entropy(ag::linear(x, w1, b1, DType::F32), targets, -1).loss);
  auto once = w1.grad().to_floats();
  tape().backward(ag::cross_entropy(ag::linear(x, w1, b1, DType::F32), targets, -1).loss);
  auto twice = w1.grad().to_floats();
  for (size_t i = 0; i < once.size(); i++) CHECK(twice[i] == doctest::Approx(2 * once[i]).epsilon(1e-6));
  w1.zero_grad();
  for (float v : w1.grad().to_floats()) CHECK(v == 0.0f);
}

TEST_CASE("autograd: no_grad records nothing; inputs without grad get none") {
  Composite c;
  Variable x(c.x, false), w1(c.w1, true), b1(c.b1, true);
  {
    NoGrad guard;
    Variable y = ag::linear(x, w1, b1, DType::F32);
    CHECK(tape().size() == 0);
    CHECK(tape().recording() == false);
  }
  CHECK(tape().recording() == true);
  Variable y = ag::linear(x, w1, b1, DType::F32);
  CHECK(tape().size() == 1);
  tape().clear();
  CHECK_FALSE(x.grad().defined());
}

TEST_CASE("autograd: intermediate gradients are freed once used") {
  Composite c;
  Variable x(c.x, true), w1(c.w1, true);
  Variable h = ag::linear(x, w1, Variable(), DType::F32);
  Variable y = ag::add(h, h);  // h used twice: its gradient is the sum of both paths
  Tensor targets = Tensor::from_ints(c.targets, {c.N});
  tape().backward(ag::cross_entropy(y, targets, -1).loss);
  CHECK_FALSE(h.grad().defined());  // taken by linear's backward step
  CHECK_FALSE(y.grad().defined());
  CHECK(x.grad().defined());        // leaves keep theirs
}

TEST_CASE("autograd: cast rounds the value and hands the gradient back in the input's dtype") {
  Variable x(Tensor::from_floats({3.14159f}, {1}), true);
  Variable y = ag::cast(x, DType::BF16);
  CHECK(y.value().dtype() == DType::BF16);
  CHECK(ag::cast(y, DType::BF16).value().raw_data() == y.value().raw_data());  // same dtype: no copy
  Variable z = ag::cast(y, DType::F32);
  CHECK(z.value().item() == round_to_bf16(3.14159f));  // 3.140625
  CHECK(z.value().item() != 3.14159f);
  tape().backward(z);
  REQUIRE(x.grad().defined());
  CHECK(x.grad().dtype() == DType::F32);
  CHECK(x.grad().item() == 1.0f);
}

TEST_CASE("autograd: a backward op adds into a gradient in place only when no one else holds it") {
  const Tensor xv = random_tensor({6, 8}, 60, -2, 2), yv = random_tensor({6, 8}, 61), wv = random_tensor({8}, 62);
  const Tensor G = random_tensor({6, 8}, 63);
  Tensor inv;
  ops::rms_norm_forward(xv, wv, 1e-5f, inv);
  Tensor gw_unused = Tensor::zeros({8});
  const Tensor gx_norm = ops::rms_norm_backward(G, xv, wv, inv, gw_unused);

  SUBCASE("shared: x's gradient is also y's (add hands both the same tensor)") {
    // b = norm(x) recorded first, so its backward runs last, when x already holds G, which y holds too.
    Variable x(xv, true), y(yv, true), w(wv, true);
    Variable b = ag::rms_norm(x, w, 1e-5f);
    Variable a = ag::add(x, y);
    Variable out = ag::add(a, b);
    tape().backward(out, G);
    CHECK(max_abs_diff(y.grad(), G) == 0.0);  // untouched by the norm's accumulation
    CHECK(max_abs_diff(x.grad(), ops::add(G, gx_norm)) == 0.0);
    CHECK(max_abs_diff(G, random_tensor({6, 8}, 63)) == 0.0);  // the caller's seed, untouched
  }
  SUBCASE("own: x's gradient is its alone, and the norm adds into it in place") {
    // x's first gradient comes from a cast-free linear; then the norm adds into it.
    Variable x(xv, true), w(wv, true), m(random_tensor({8, 8}, 64), true);
    Variable b = ag::rms_norm(x, w, 1e-5f);
    Variable a = ag::linear(x, m, Variable(), DType::F32);
    Variable out = ag::add(a, b);
    tape().backward(out, G);
    Tensor gx_linear = Tensor::zeros({6, 8}), gm = Tensor::zeros({8, 8});
    ops::linear_backward(G, xv, m.value(), DType::F32, &gx_linear, gm, nullptr);
    CHECK(max_abs_diff(x.grad(), ops::add(gx_linear, gx_norm)) == 0.0);
  }
}

TEST_CASE("autograd: add_rms_norm gives add then rms_norm's values and gradients") {
  const Tensor av = random_tensor({3, 5, 8}, 65, -2, 2), bv = random_tensor({3, 5, 8}, 66), wv = random_tensor({8}, 67);
  const Tensor G1 = random_tensor({3, 5, 8}, 68);
  auto run = [&](bool fused, Tensor grads[3]) {
    Variable a(av, true), b(bv, true), w(wv.clone(), true);
    Variable sum, normed;
    if (fused) {
      ag::AddNorm r = ag::add_rms_norm(a, b, w, 1e-5f, DType::F32);
      sum = r.sum;
      normed = r.normed;
    } else {
      sum = ag::add(a, b);
      normed = ag::rms_norm(sum, w, 1e-5f);
    }
    // Both outputs used: sum's gradient comes from out directly and through the norm.
    Variable out = ag::add(sum, normed);
    tape().backward(out, G1);
    grads[0] = a.grad();
    grads[1] = b.grad();
    grads[2] = w.grad().clone();
    return normed.value();
  };
  Tensor plain[3], fused[3];
  const Tensor y_plain = run(false, plain), y_fused = run(true, fused);
  CHECK(max_abs_diff(y_plain, y_fused) == 0.0);
  for (int i = 0; i < 3; i++) CHECK(max_abs_diff(plain[i], fused[i]) == 0.0);
}
