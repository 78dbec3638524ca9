// test_linalg.cpp: the dense layer, gemm, AdamW, Newton-Schulz and Muon:
// hand-computed cases and finite differences on the CPU reference, then the
// CUDA implementations against that reference on awkward sizes.
#include <cmath>
#include <utility>

#include "core/error.h"
#include "ops/elementwise.h"
#include "ops/kernel_choices.h"
#include "ops/linear.h"
#include "ops/optimizer_ops.h"
#include "tests/test_util.h"

using namespace iflame;
using namespace iflame::test;

namespace {

Tensor scaled(const Tensor& t, float s) {
  auto v = t.to_floats();
  for (float& x : v) x *= s;
  return Tensor::from_floats(v, t.shape());
}

Tensor rounded_bf16(const Tensor& t) { return t.to(DType::BF16).to(DType::F32); }

// Row-major double matrices for the test's own recomputations.
using Mat = std::vector<double>;

Mat matmul_d(const Mat& a, const Mat& b, int64_t m, int64_t k, int64_t n) {
  Mat c(m * n, 0.0);
  for (int64_t i = 0; i < m; i++)
    for (int64_t p = 0; p < k; p++)
      for (int64_t j = 0; j < n; j++) c[i * n + j] += a[i * k + p] * b[p * n + j];
  return c;
}
Mat transposed_d(const Mat& a, int64_t r, int64_t c) {
  Mat t(r * c);
  for (int64_t i = 0; i < r; i++)
    for (int64_t j = 0; j < c; j++) t[j * r + i] = a[i * c + j];
  return t;
}

// Newton-Schulz written straight from the spec, accumulating in double; with
// bf16 = true every stored intermediate is rounded to bf16 (the same places as
// the op, but a different accumulation order and precision).
std::vector<float> newton_schulz_direct(const std::vector<float>& u, int64_t rows, int64_t cols, int steps,
                                        bool bf16) {
  auto R = [bf16](double v) { return bf16 ? double(round_to_bf16(float(v))) : v; };
  const bool tr = rows > cols;
  const int64_t r = tr ? cols : rows, c = tr ? rows : cols;
  Mat X(u.begin(), u.end());
  if (tr) X = transposed_d(X, rows, cols);
  for (double& v : X) v = R(v);
  double norm = 0;
  for (double v : X) norm += v * v;
  const double denom = R(R(std::sqrt(norm)) + 1e-7);
  for (double& v : X) v = R(v / denom);
  const double a = 3.4445, b = -4.7750, cc = 2.0315;
  for (int s = 0; s < steps; s++) {
    Mat A = matmul_d(X, transposed_d(X, r, c), r, c, r);
    for (double& v : A) v = R(v);
    Mat AA = matmul_d(A, A, r, r, r);
    Mat B(r * r);
    for (int64_t i = 0; i < r * r; i++) B[i] = R(R(b * A[i]) + R(cc * R(AA[i])));
    Mat BX = matmul_d(B, X, r, r, c);
    for (int64_t i = 0; i < r * c; i++) X[i] = R(R(a * X[i]) + R(BX[i]));
  }
  if (tr) X = transposed_d(X, r, c);
  return std::vector<float>(X.begin(), X.end());
}

// Eigenvalues of a symmetric n x n matrix (cyclic Jacobi), for singular values.
std::vector<double> symmetric_eigenvalues(Mat a, int64_t n) {
  for (int sweep = 0; sweep < 50; sweep++) {
    double off = 0;
    for (int64_t p = 0; p < n; p++)
      for (int64_t q = p + 1; q < n; q++) off += a[p * n + q] * a[p * n + q];
    if (off < 1e-24) break;
    for (int64_t p = 0; p < n; p++)
      for (int64_t q = p + 1; q < n; q++) {
        const double apq = a[p * n + q];
        if (std::fabs(apq) < 1e-300) continue;
        const double theta = (a[q * n + q] - a[p * n + p]) / (2 * apq);
        const double t = (theta >= 0 ? 1.0 : -1.0) / (std::fabs(theta) + std::sqrt(theta * theta + 1));
        const double c = 1 / std::sqrt(t * t + 1), s = t * c;
        for (int64_t k = 0; k < n; k++) {  // columns p, q
          const double akp = a[k * n + p], akq = a[k * n + q];
          a[k * n + p] = c * akp - s * akq;
          a[k * n + q] = s * akp + c * akq;
        }
        for (int64_t k = 0; k < n; k++) {  // rows p, q
          const double apk = a[p * n + k], aqk = a[q * n + k];
          a[p * n + k] = c * apk - s * aqk;
          a[q * n + k] = s * apk + c * aqk;
        }
      }
  }
  std::vector<double> ev(n);
  for (int64_t i = 0; i < n; i++) ev[i] = a[i * n + i];
  return ev;
}

// Singular values of a row-major [r, c] matrix with r <= c.
std::vector<double> singular_values(const std::vector<float>& x, int64_t r, int64_t c) {
  Mat X(x.begin(), x.end());
  auto ev = symmetric_eigenvalues(matmul_d(X, transposed_d(X, r, c), r, c, r), r);
  for (double& e : ev) e = std::sqrt(std::max(e, 0.0));
  return ev;
}

}  // namespace

// ---- linear, CPU ----------------------------------------------------------------

TEST_CASE("linalg: linear forward on a hand-computed 2x3 case") {
  Tensor x = Tensor::from_floats({1, 2, 3, 4, 5, 6}, {2, 3});
  Tensor w = Tensor::from_floats({1, 0, -1, 0.5f, 1, 2}, {2, 3});
  Tensor b = Tensor::from_floats({0.5f, -1}, {2});
  // y[0] = (1 - 3 + 0.5, 0.5 + 2 + 6 - 1), y[1] = (4 - 6 + 0.5, 2 + 5 + 12 - 1)
  Tensor y = ops::linear_forward(x, w, &b, DType::F32);
  CHECK(y.shape() == Shape{2, 2});
  CHECK(y.to_floats() == std::vector<float>{-1.5f, 7.5f, -1.5f, 18.0f});
  CHECK(ops::linear_forward(x, w, nullptr, DType::F32).to_floats() ==
        std::vector<float>{-2.0f, 8.5f, -2.0f, 19.0f});
  // Leading dims are kept; these small integers are exact in bf16, so BF16 compute agrees.
  Tensor y3 = ops::linear_forward(x.view({1, 2, 3}), w, &b, DType::BF16);
  CHECK(y3.shape() == Shape{1, 2, 2});
  CHECK(y3.to_floats() == y.to_floats());
}

TEST_CASE("linalg: linear argument errors name the op and the tensor") {
  Tensor x = random_tensor({4, 3}, 1), w = random_tensor({5, 3}, 2);
  Tensor bad_b = random_tensor({4}, 3);
  CHECK_THROWS_WITH_AS(ops::linear_forward(x, random_tensor({5, 4}, 2), nullptr, DType::F32),
                       doctest::Contains("linear_forward: weight"), Error);
  CHECK_THROWS_WITH_AS(ops::linear_forward(x, w, &bad_b, DType::F32),
                       doctest::Contains("linear_forward: bias"), Error);
  CHECK_THROWS_WITH_AS(ops::linear_forward(x.to(DType::BF16), w, nullptr, DType::F32),
                       doctest::Contains("f32 only"), Error);
  CHECK_THROWS_WITH_AS(ops::linear_forward(x, w, nullptr, DType::I32), doctest::Contains("compute"), Error);
  Tensor gw = Tensor::zeros({5, 3});
  CHECK_THROWS_WITH_AS(ops::linear_backward(random_tensor({4, 6}, 4), x, w, DType::F32, nullptr, gw, nullptr),
                       doctest::Contains("linear_backward: grad_y"), Error);
  Tensor c = Tensor::zeros({4, 4});
  CHECK_THROWS_WITH_AS(ops::gemm(x, false, w, false, c, 1, 0, DType::F32), doctest::Contains("gemm"), Error);
}

TEST_CASE("linalg: linear gradients match finite differences") {
  Tensor x = random_tensor({2, 5, 7}, 10), w = random_tensor({6, 7}, 11), b = random_tensor({6}, 12);
  Tensor r = random_tensor({2, 5, 6}, 13);  // dloss/dy
  auto loss = [&] { return weighted_sum(ops::linear_forward(x, w, &b, DType::F32), r); };
  Tensor gx, gw = Tensor::zeros({6, 7}), gb = Tensor::zeros({6});
  ops::linear_backward(r, x, w, DType::F32, &gx, gw, &gb);
  CHECK(gx.shape() == x.shape());
  const double ex = gradcheck_error(x, gx, loss), ew = gradcheck_error(w, gw, loss),
               eb = gradcheck_error(b, gb, loss);
  MESSAGE("gradcheck errors: x " << ex << ", weight " << ew << ", bias " << eb);
  CHECK(ex < 1e-2);
  CHECK(ew < 1e-2);
  CHECK(eb < 1e-2);
  // A gradient 10% off must be rejected by the same check.
  CHECK(gradcheck_error(x, scaled(gx, 1.1f), loss) > 2e-2);
  CHECK(gradcheck_error(w, scaled(gw, 1.1f), loss) > 2e-2);
  CHECK(gradcheck_error(b, scaled(gb, 1.1f), loss) > 2e-2);

  // Parameter gradients accumulate: a second backward doubles them.
  ops::linear_backward(r, x, w, DType::F32, nullptr, gw, &gb);
  CHECK(max_abs_diff(gw, scaled(gw, 0.5f)) > 0);
  Tensor gw1 = Tensor::zeros({6, 7}), gb1 = Tensor::zeros({6});
  ops::linear_backward(r, x, w, DType::F32, nullptr, gw1, &gb1);
  CHECK(max_abs_diff(gw, scaled(gw1, 2.0f)) < 1e-5);
  CHECK(max_abs_diff(gb, scaled(gb1, 2.0f)) < 1e-5);
}

TEST_CASE("linalg: gemm on the CPU matches a direct loop for all transposes") {
  const int64_t m = 5, k = 7, n = 4;
  for (int ta = 0; ta < 2; ta++)
    for (int tb = 0; tb < 2; tb++) {
      CAPTURE(ta);
      CAPTURE(tb);
      Tensor a = random_tensor(ta ? Shape{k, m} : Shape{m, k}, 20 + ta);
      Tensor b = random_tensor(tb ? Shape{n, k} : Shape{k, n}, 30 + tb);
      Tensor c = random_tensor({m, n}, 40);
      auto av = a.to_floats(), bv = b.to_floats(), cv = c.to_floats();
      std::vector<float> want(m * n);
      for (int64_t i = 0; i < m; i++)
        for (int64_t j = 0; j < n; j++) {
          double s = 0;
          for (int64_t p = 0; p < k; p++)
            s += double(ta ? av[p * m + i] : av[i * k + p]) * double(tb ? bv[j * k + p] : bv[p * n + j]);
          want[i * n + j] = float(0.7 * s + 0.3 * cv[i * n + j]);
        }
      ops::gemm(a, ta, b, tb, c, 0.7f, 0.3f, DType::F32);
      CHECK(max_abs_diff(c.to_floats(), want) < 1e-5);
    }
  // beta = 0 ignores c, even NaN.
  Tensor a = random_tensor({3, 2}, 50), b = random_tensor({2, 3}, 51);
  Tensor c = Tensor::full({3, 3}, NAN);
  ops::gemm(a, false, b, false, c, 1.0f, 0.0f, DType::F32);
  for (float v : c.to_floats()) CHECK(std::isfinite(v));
}

// ---- Newton-Schulz, AdamW, Muon, CPU -------------------------------------------

TEST_CASE("linalg: Newton-Schulz brings singular values near 1 and keeps singular vectors") {
  const int64_t r = 24, c = 40;
  Tensor u = random_tensor({r, c}, 60);
  Tensor x = ops::newton_schulz_orthogonalize(u, 5, DType::F32);
  REQUIRE(x.shape() == Shape{r, c});
  // The singular values of X (square roots of the eigenvalues of X X^T) lie in
  // the band NS5 leaves them in (measured: about 0.68 .. 1.13 here); X X^T is
  // only roughly the identity.
  auto sv = singular_values(x.to_floats(), r, c);
  const double lo = *std::min_element(sv.begin(), sv.end()), hi = *std::max_element(sv.begin(), sv.end());
  MESSAGE("singular values of NS5(u) in [" << lo << ", " << hi << "]");
  CHECK(lo > 0.65);
  CHECK(hi < 1.2);
  // diag(X X^T) is a weighted mean of the squared singular values, so it lies in
  // [lo^2, hi^2], inside [0.65^2, 1.2^2] = [0.42, 1.44].
  const auto xv = x.to_floats();
  Mat X(xv.begin(), xv.end());
  Mat G = matmul_d(X, transposed_d(X, r, c), r, c, r);
  for (int64_t i = 0; i < r; i++) {
    CHECK(G[i * r + i] >= lo * lo - 1e-6);
    CHECK(G[i * r + i] <= hi * hi + 1e-6);
  }
  // X = U f(S) V^T shares u's singular vectors: X u^T = U f(S) S U^T is symmetric.
  auto uv = u.to_floats();
  Mat M = matmul_d(X, transposed_d(Mat(uv.begin(), uv.end()), r, c), r, c, r);
  double asym = 0, norm = 0;
  for (int64_t i = 0; i < r; i++)
    for (int64_t j = 0; j < r; j++) {
      asym += std::pow(M[i * r + j] - M[j * r + i], 2);
      norm += M[i * r + j] * M[i * r + j];
    }
  CHECK(std::sqrt(asym / norm) < 1e-4);
  // The op matches the spec's formula recomputed in double (f32 mode).
  CHECK(rel_l2(x.to_floats(), newton_schulz_direct(uv, r, c, 5, false)) < 1e-5);
}

TEST_CASE("linalg: Newton-Schulz of the transpose is the transpose") {
  for (DType compute : {DType::F32, DType::BF16}) {
    CAPTURE(dtype_name(compute));
    Tensor u = random_tensor({13, 30}, 61);
    Tensor x = ops::newton_schulz_orthogonalize(u, 5, compute);
    Tensor xt = ops::newton_schulz_orthogonalize(u.transpose(0, 1).contiguous(), 5, compute);
    REQUIRE(xt.shape() == Shape{30, 13});
    CHECK(max_abs_diff(xt, x.transpose(0, 1).contiguous()) < 1e-6);
  }
}

TEST_CASE("linalg: Newton-Schulz in bf16 differs from f32 a little, and rounds like PyTorch") {
  const int64_t r = 24, c = 40;
  Tensor u = random_tensor({r, c}, 62);
  Tensor x32 = ops::newton_schulz_orthogonalize(u, 5, DType::F32);
  Tensor x16 = ops::newton_schulz_orthogonalize(u, 5, DType::BF16);
  const double d = rel_l2(x16, x32);
  MESSAGE("||NS_bf16 - NS_f32|| / ||NS_f32|| = " << d);
  CHECK(d > 1e-3);  // the rounding is really there
  CHECK(d < 0.1);   // but it is still the same orthogonalisation
  // Every value of the bf16 result is a bf16 value.
  for (float v : x16.to_floats()) CHECK(v == round_to_bf16(v));
  // Against the same rounding schedule accumulated in double: equal up to a few
  // bf16 roundings flipped by the different accumulation order.
  const double dd = rel_l2(x16.to_floats(), newton_schulz_direct(u.to_floats(), r, c, 5, true));
  MESSAGE("bf16 op vs bf16 schedule in double: " << dd);
  CHECK(dd < 2e-2);
}

TEST_CASE("linalg: AdamW one step on a hand-computed scalar") {
  Tensor p = Tensor::from_floats({1.0f}, {1}), g = Tensor::from_floats({0.5f}, {1});
  Tensor m = Tensor::from_floats({0.1f}, {1}), v = Tensor::from_floats({0.04f}, {1});
  // lr 0.01, betas (0.9, 0.99), eps 1e-8, wd 0.1, t = 2:
  //   p = 1 * (1 - 0.001) = 0.999;  m = 0.9*0.1 + 0.1*0.5 = 0.14;  v = 0.99*0.04 + 0.01*0.25 = 0.0421
  //   sqrt(1 - 0.99^2) / (1 - 0.9^2) = 0.74245979;  m / (eps + sqrt v) = 0.68231822
  //   p = 0.999 - 0.01 * 0.68231822 * 0.74245979 = 0.99393406
  ops::adamw_update(p, g, m, v, 0.01f, 0.9f, 0.99f, 1e-8f, 0.1f, 2);
  CHECK(m.item() == doctest::Approx(0.14).epsilon(1e-6));
  CHECK(v.item() == doctest::Approx(0.0421).epsilon(1e-6));
  CHECK(p.item() == doctest::Approx(0.9939340616).epsilon(1e-6));
  CHECK_THROWS_AS(ops::adamw_update(p, g, m, v, 0.01f, 0.9f, 0.99f, 1e-8f, 0.1f, 0), Error);
}

TEST_CASE("linalg: Muon one step matches a direct recomputation") {
  const int64_t rows = 3, cols = 2;  // rows > cols: the transposed path
  Tensor p = random_tensor({rows, cols}, 70), g = random_tensor({rows, cols}, 71);
  Tensor mom = random_tensor({rows, cols}, 72);
  auto p0 = p.to_floats(), gv = g.to_floats(), m0 = mom.to_floats();
  const float lr = 0.02f, wd = 0.1f, mc = 0.95f;
  ops::muon_update(p, g, mom, lr, wd, mc, 5, DType::F32);
  // Direct: m = mc m + g; u = g + mc m; X = NS5(u); p = p (1 - lr wd) - lr 0.2 sqrt(max(rows, cols)) X.
  std::vector<float> m1(rows * cols), u(rows * cols);
  for (int64_t i = 0; i < rows * cols; i++) {
    m1[i] = float(double(mc) * m0[i] + gv[i]);
    u[i] = float(double(gv[i]) + double(mc) * m1[i]);
  }
  auto X = newton_schulz_direct(u, rows, cols, 5, false);
  std::vector<float> want(rows * cols);
  for (int64_t i = 0; i < rows * cols; i++)
    want[i] = float(p0[i] * (1.0 - double(lr) * wd) - double(lr) * 0.2 * std::sqrt(3.0) * X[i]);
  CHECK(max_abs_diff(mom.to_floats(), m1) < 1e-6);
  CHECK(max_abs_diff(p.to_floats(), want) < 1e-6);
  // And the update did something of the expected size: lr * 0.2 * sqrt(3) * O(1).
  CHECK(max_abs_diff(p.to_floats(), p0) > 1e-3);
}

TEST_CASE("linalg: linear_backward adds grad_x into a gradient already there (CPU: add's sum exactly)") {
  const Tensor x = random_tensor({7, 5}, 90), w = random_tensor({3, 5}, 91), gy = random_tensor({7, 3}, 92);
  const Tensor before = random_tensor({7, 5}, 93);
  for (DType compute : {DType::F32, DType::BF16}) {
    Tensor gx, gw = Tensor::zeros({3, 5}), gw_acc = Tensor::zeros({3, 5});
    ops::linear_backward(gy, x, w, compute, &gx, gw, nullptr);
    Tensor into = before.clone();
    ops::linear_backward(gy, x, w, compute, &into, gw_acc, nullptr, true);
    CHECK(max_abs_diff(into, ops::add(before, gx)) == 0.0);
    CHECK(max_abs_diff(gw_acc, gw) == 0.0);
  }
  Tensor gw = Tensor::zeros({3, 5}), wrong = Tensor::zeros({7, 4});
  CHECK_THROWS_AS(ops::linear_backward(gy, x, w, DType::F32, &wrong, gw, nullptr, true), Error);
  CHECK_THROWS_AS(ops::linear_backward(gy, x, w, DType::F32, nullptr, gw, nullptr, true), Error);
}

TEST_CASE("linalg: linear_pair (CPU) is proj1 and proj2 side by side, padded with zeros") {
  const int64_t rows = 9, in = 6, H = 5, P = 8;
  const Tensor x = random_tensor({rows, in}, 100), w1 = random_tensor({H, in}, 101), w2 = random_tensor({H, in}, 102);
  const Tensor b1 = random_tensor({H}, 103), b2 = random_tensor({H}, 104), g = random_tensor({rows, 2 * P}, 105);
  for (DType compute : {DType::F32, DType::BF16}) {
    CAPTURE(dtype_name(compute));
    Tensor packed;
    const Tensor ab = ops::linear_pair_forward(x, w1, b1, w2, b2, P, compute, packed);
    CHECK(ab.shape() == Shape{rows, 2 * P});
    CHECK(max_abs_diff(ab.slice(1, 0, H).contiguous(), ops::linear_forward(x, w1, &b1, compute)) == 0.0);
    CHECK(max_abs_diff(ab.slice(1, P, P + H).contiguous(), ops::linear_forward(x, w2, &b2, compute)) == 0.0);
    for (float v : ab.slice(1, H, P).contiguous().to_floats()) CHECK(v == 0.0f);
    for (float v : ab.slice(1, P + H, 2 * P).contiguous().to_floats()) CHECK(v == 0.0f);
    // Backward against linear_backward on each block of columns.
    Tensor gx, gw1 = Tensor::zeros({H, in}), gw2 = Tensor::zeros({H, in});
    ops::linear_pair_backward(g, x, packed, H, compute, &gx, gw1, gw2, false);
    const Tensor g1 = g.slice(1, 0, H).contiguous(), g2 = g.slice(1, P, P + H).contiguous();
    Tensor gx1, gx2, rw1 = Tensor::zeros({H, in}), rw2 = Tensor::zeros({H, in});
    ops::linear_backward(g1, x, w1, compute, &gx1, rw1, nullptr);
    ops::linear_backward(g2, x, w2, compute, &gx2, rw2, nullptr);
    CHECK(max_abs_diff(gw1, rw1) == 0.0);
    CHECK(max_abs_diff(gw2, rw2) == 0.0);
    // grad_x sums over 2P columns, the padded ones' weights zero: the two products' sum up to order.
    CHECK(rel_l2(gx, ops::add(gx1, gx2)) < (compute == DType::F32 ? 1e-6 : 1e-2));
    Tensor into = random_tensor({rows, in}, 106), before = into.clone();
    ops::linear_pair_backward(g, x, packed, H, compute, &into, gw1, gw2, true);
    CHECK(max_abs_diff(into, ops::add(before, gx)) == 0.0);
  }
  Tensor packed;
  CHECK_THROWS_AS(ops::linear_pair_forward(x, w1, b1, w2, b2, H - 1, DType::F32, packed), Error);
}

// ---- CUDA against the CPU reference ---------------------------------------------

TEST_CASE("linalg: linear CUDA matches the CPU reference (f32 and bf16 compute)" * needs_gpu()) {
  SKIP_WITHOUT_GPU();
  const int64_t in = 70, out = 1365;
  const Shape xs{3, 37, in}, ys{3, 37, out};
  const Tensor x = random_tensor(xs, 80), w = random_tensor({out, in}, 81, -0.2f, 0.2f);
  const Tensor b = random_tensor({out}, 82), gy = random_tensor(ys, 83);
  const Tensor gw0 = random_tensor({out, in}, 84), gb0 = random_tensor({out}, 85);  // to accumulate into
  struct Case {
    DType act, compute;
    double tol;
  };
  // f32 everywhere: exact f32 products, only the summation order differs.
  // Anything in bf16: the CPU reference gets bf16-rounded operands (x, W, grad_y)
  // and f32 math; the GPU differs by the rounding of its bf16 outputs (2^-9
  // relative) and the order of the f32 sums: 1e-2 relative is generous.
  for (Case cs : {Case{DType::F32, DType::F32, 1e-5}, Case{DType::F32, DType::BF16, 1e-2},
                  Case{DType::BF16, DType::BF16, 1e-2}, Case{DType::BF16, DType::F32, 1e-2}}) {
    CAPTURE(dtype_name(cs.act));
    CAPTURE(dtype_name(cs.compute));
    const bool act16 = cs.act == DType::BF16, comp16 = cs.compute == DType::BF16;
    const Tensor xr = act16 || comp16 ? rounded_bf16(x) : x;
    const Tensor gyr = act16 || comp16 ? rounded_bf16(gy) : gy;
    const Tensor wr = comp16 ? rounded_bf16(w) : w;
    Tensor y_ref = ops::linear_forward(xr, wr, &b, DType::F32);
    Tensor gx_ref, gw_ref = gw0.clone(), gb_ref = gb0.clone();
    ops::linear_backward(gyr, xr, wr, DType::F32, &gx_ref, gw_ref, &gb_ref);

    const Tensor xd = x.to(Device::CUDA).to(cs.act), gyd = gy.to(Device::CUDA).to(cs.act);
    const Tensor wd = w.to(Device::CUDA), bd = b.to(Device::CUDA);
    Tensor y = ops::linear_forward(xd, wd, &bd, cs.compute);
    CHECK(y.dtype() == cs.act);
    CHECK(y.shape() == ys);
    Tensor gx, gw = gw0.to(Device::CUDA), gb = gb0.to(Device::CUDA);
    ops::linear_backward(gyd, xd, wd, cs.compute, &gx, gw, &gb);
    CHECK(gx.dtype() == cs.act);
    CHECK(gx.shape() == xs);
    CHECK(rel_l2(y, y_ref) < cs.tol);
    CHECK(rel_l2(gx, gx_ref) < cs.tol);
    CHECK(rel_l2(gw, gw_ref) < cs.tol);
    CHECK(rel_l2(gb, gb_ref) < cs.tol);
    // Without a bias, and without grad_x / grad_bias.
    CHECK(rel_l2(ops::linear_forward(xd, wd, nullptr, cs.compute),
                 ops::linear_forward(xr, wr, nullptr, DType::F32)) < cs.tol);
    Tensor gw2 = Tensor::zeros({out, in}, DType::F32, Device::CUDA), gw2_ref = Tensor::zeros({out, in});
    ops::linear_backward(gyd, xd, wd, cs.compute, nullptr, gw2, nullptr);
    ops::linear_backward(gyr, xr, wr, DType::F32, nullptr, gw2_ref, nullptr);
    CHECK(rel_l2(gw2, gw2_ref) < cs.tol);
    // grad_x added into a gradient already there (beta = 1): the sum of the two.
    const Tensor before = random_tensor(xs, 86);
    Tensor into = before.to(Device::CUDA).to(cs.act), gw3 = Tensor::zeros({out, in}, DType::F32, Device::CUDA);
    const void* where = into.raw_data();
    ops::linear_backward(gyd, xd, wd, cs.compute, &into, gw3, nullptr, true);
    CHECK(into.raw_data() == where);
    CHECK(rel_l2(into, ops::add(act16 ? rounded_bf16(before) : before, gx_ref)) < cs.tol);
  }
}

TEST_CASE("linalg: linear bias gradient CUDA (column sums, fused with grad_y's conversion) matches the CPU" * needs_gpu()) {
  SKIP_WITHOUT_GPU();
  // out = 512 and 1368 (16-byte paths), 132 and 37 (one column per thread); rows
  // more than the GPU's blocks (several rows per block) and fewer.
  struct Size {
    int64_t rows, in, out;
  };
  for (Size sz : {Size{20011, 16, 512}, Size{3001, 24, 1368}, Size{7, 16, 132}, Size{1234, 8, 37}}) {
    const Tensor x = random_tensor({sz.rows, sz.in}, 120), w = random_tensor({sz.out, sz.in}, 121);
    const Tensor gy = random_tensor({sz.rows, sz.out}, 122), gb0 = random_tensor({sz.out}, 123);
    for (DType act : {DType::F32, DType::BF16}) {
      for (DType compute : {DType::F32, DType::BF16}) {
        if (act == DType::BF16 && compute == DType::F32) continue;
        INFO("rows " << sz.rows << ", out " << sz.out << ", " << dtype_name(act) << " grad_y, " << dtype_name(compute));
        const bool r16 = act == DType::BF16 || compute == DType::BF16;
        const Tensor gyr = act == DType::BF16 ? rounded_bf16(gy) : gy;
        // The bias gradient sums grad_y as given (not rounded by the compute dtype).
        Tensor gb_ref = gb0.clone(), gw_ref = Tensor::zeros({sz.out, sz.in}), gx_ref;
        ops::linear_backward(gyr, r16 ? rounded_bf16(x) : x, r16 ? rounded_bf16(w) : w, DType::F32, &gx_ref, gw_ref,
                             &gb_ref);
        const Tensor xd = x.to(Device::CUDA).to(act), gyd = gy.to(Device::CUDA).to(act), wd = w.to(Device::CUDA);
        Tensor gb = gb0.to(Device::CUDA), gb2 = gb0.to(Device::CUDA), gx, gx2;
        Tensor gw = Tensor::zeros({sz.out, sz.in}, DType::F32, Device::CUDA), gw2 = gw.clone();
        ops::linear_backward(gyd, xd, wd, compute, &gx, gw, &gb);
        ops::linear_backward(gyd, xd, wd, compute, &gx2, gw2, &gb2);
        CHECK(rel_l2(gb, gb_ref) < 1e-5);
        CHECK(max_abs_diff(gb, gb2) == 0.0);  // fixed order
        const double tol = r16 ? 1e-2 : 1e-5;
        CHECK(rel_l2(gx, gx_ref) < tol);  // the products saw grad_y converted in the same pass
        CHECK(rel_l2(gw, gw_ref) < tol);
      }
    }
  }
}

TEST_CASE("linalg: linear_pair CUDA matches the CPU reference (f32 and bf16)" * needs_gpu()) {
  SKIP_WITHOUT_GPU();
  // The model's FFN (512 -> 1365 padded to 1368) at few rows, and odd sizes.
  struct Size {
    int64_t rows, in, H, P;
  };
  for (Size sz : {Size{301, 512, 1365, 1368}, Size{77, 24, 37, 40}, Size{5, 48, 170, 176}}) {
    const Tensor x = random_tensor({sz.rows, sz.in}, 110), w1 = random_tensor({sz.H, sz.in}, 111, -0.2f, 0.2f);
    const Tensor w2 = random_tensor({sz.H, sz.in}, 112, -0.2f, 0.2f), b1 = random_tensor({sz.H}, 113);
    const Tensor b2 = random_tensor({sz.H}, 114), g = random_tensor({sz.rows, 2 * sz.P}, 115);
    for (DType act : {DType::F32, DType::BF16}) {
      for (DType compute : {DType::F32, DType::BF16}) {
        if (act == DType::BF16 && compute == DType::F32) continue;
        INFO("rows " << sz.rows << ", H " << sz.H << ", " << dtype_name(act) << " x, " << dtype_name(compute));
        const bool r16 = act == DType::BF16 || compute == DType::BF16;
        const Tensor xr = r16 ? rounded_bf16(x) : x, gr = r16 ? rounded_bf16(g) : g;
        const double tol = compute == DType::F32 && act == DType::F32 ? 1e-5 : 1e-2;
        Tensor packed_ref, packed;
        const Tensor ab_ref = ops::linear_pair_forward(xr, w1, b1, w2, b2, sz.P, compute, packed_ref);
        const Tensor xd = x.to(Device::CUDA).to(act);
        const Tensor ab = ops::linear_pair_forward(xd, w1.to(Device::CUDA), b1.to(Device::CUDA), w2.to(Device::CUDA),
                                                   b2.to(Device::CUDA), sz.P, compute, packed);
        CHECK(ab.dtype() == act);
        CHECK(rel_l2(ab, ab_ref) < tol);
        for (float v : ab.slice(1, sz.H, sz.P).contiguous().to_floats()) CHECK(v == 0.0f);
        Tensor gx_ref, gw1_ref = Tensor::zeros({sz.H, sz.in}), gw2_ref = gw1_ref.clone();
        ops::linear_pair_backward(gr, xr, packed_ref, sz.H, compute, &gx_ref, gw1_ref, gw2_ref, false);
        Tensor gx, gw1 = Tensor::zeros({sz.H, sz.in}, DType::F32, Device::CUDA), gw2 = gw1.clone();
        ops::linear_pair_backward(g.to(Device::CUDA).to(act), xd, packed, sz.H, compute, &gx, gw1, gw2, false);
        CHECK(gx.dtype() == act);
        CHECK(rel_l2(gx, gx_ref) < tol);
        CHECK(rel_l2(gw1, gw1_ref) < tol);
        CHECK(rel_l2(gw2, gw2_ref) < tol);
      }
    }
  }
}

TEST_CASE("linalg: linear CUDA with a bias and bf16 compute: the cuBLASLt epilogue matches the CPU and the fill" * needs_gpu()) {
  SKIP_WITHOUT_GPU();
#ifdef IFLAME_CUDA  // lt_bias_matmuls() exists in CUDA builds only
  // With bf16 compute the bias is added in the product's epilogue (cuBLASLt); the
  // fill + cublasGemmEx path (the kernel choice lt_bias off, IFLAME_LT_BIAS=0) is
  // what it replaces. The model's FFN (512 -> 1368 and back), a 132-wide layer,
  // odd sizes (ld of 48 and 37 elements), rows that are no multiple of a tile.
  struct Size {
    int64_t rows, in, out;
  };
  for (Size sz : {Size{1001, 512, 1368}, Size{77, 1368, 512}, Size{333, 512, 132}, Size{257, 48, 37},
                  Size{3, 37, 5}}) {
    for (DType act : {DType::BF16, DType::F32}) {
      CAPTURE(sz.rows);
      CAPTURE(sz.in);
      CAPTURE(sz.out);
      CAPTURE(dtype_name(act));
      const Tensor x = random_tensor({sz.rows, sz.in}, 110), w = random_tensor({sz.out, sz.in}, 111, -0.2f, 0.2f);
      const Tensor b = random_tensor({sz.out}, 112);
      const Tensor y_ref = ops::linear_forward(rounded_bf16(x), rounded_bf16(w), &b, DType::F32);
      const Tensor xd = x.to(Device::CUDA).to(act), wd = w.to(Device::CUDA), bd = b.to(Device::CUDA);
      ops::KernelChoices lt_on = ops::kernel_choices(), lt_off = lt_on;
      lt_on.lt_bias = true;
      lt_off.lt_bias = false;
      const ops::KernelChoices before = ops::set_kernel_choices(lt_on);
      const int64_t lt_before = ops::cuda::lt_bias_matmuls();
      const Tensor y_lt = ops::linear_forward(xd, wd, &bd, DType::BF16);
      // The model's bf16 shapes must not fall back (odd sizes and an f32 y may).
      if (act == DType::BF16 && sz.in % 8 == 0 && sz.out % 8 == 0)
        CHECK(ops::cuda::lt_bias_matmuls() == lt_before + 1);
      const Tensor y_lt_w16 = ops::linear_forward(xd, wd.to(DType::BF16), &bd, DType::BF16);  // decoding's weights
      ops::set_kernel_choices(lt_off);
      const Tensor y_fill = ops::linear_forward(xd, wd, &bd, DType::BF16);
      ops::set_kernel_choices(before);
      CHECK(y_lt.dtype() == act);
      CHECK(y_lt.shape() == Shape{sz.rows, sz.out});
      // As in the test above: bf16 operands on both sides, the GPU's bf16 output rounding and f32 sum order.
      CHECK(rel_l2(y_lt, y_ref) < 1e-2);
      CHECK(rel_l2(y_fill, y_ref) < 1e-2);
      CHECK(rel_l2(y_lt_w16, y_lt) < 1e-2);
      // Both add the same bias (rounded to y's dtype) to f32 products p of the same
      // operands. The fill rounds once, round(p + b). The epilogue was seen on the
      // H100 to differ from that by more than one step of y where p and b nearly
      // cancel: consistent with the product rounded to y's dtype before the bias
      // is added, round(round(p) + b), which cuBLASLt does not document either way.
      // So, per element, the two may differ by one step of p plus one of y (bf16:
      // 8 significant bits; f32: 24), besides the f32 sums' order.
      const Tensor p = ops::linear_forward(rounded_bf16(x), rounded_bf16(w), nullptr, DType::F32);
      const std::vector<float> a = y_lt.to_floats(), f = y_fill.to_floats(), pv = p.to_floats();
      const int bits = act == DType::BF16 ? 8 : 24;
      auto step_of = [bits](double v) {  // the spacing of values near |v| with `bits` significant bits
        int e = 0;
        std::frexp(std::max(std::fabs(v), 1e-30), &e);
        return std::ldexp(1.0, e - bits);
      };
      int64_t apart = 0, beyond_one_step = 0;
      for (size_t i = 0; i < a.size(); i++) {
        const double diff = std::fabs(double(a[i]) - f[i]), y_step = step_of(std::fmax(std::fabs(a[i]), std::fabs(f[i])));
        apart += diff > step_of(pv[i]) + y_step + 1e-4;  // 1e-4: the f32 sums' order, as before
        beyond_one_step += diff > y_step;
      }
      MESSAGE("cuBLASLt bias vs fill (" << dtype_name(act) << ", " << sz.rows << "x" << sz.in << "->" << sz.out
                                        << "): " << beyond_one_step << " of " << a.size() << " elements more than one step of y apart");
      CHECK(apart == 0);
    }
  }
  // No rows: an empty y, with either path.
  const Tensor w = random_tensor({37, 48}, 113).to(Device::CUDA), b = random_tensor({37}, 114).to(Device::CUDA);
  const Tensor x0 = Tensor::zeros({0, 48}, DType::BF16, Device::CUDA);
  CHECK(ops::linear_forward(x0, w, &b, DType::BF16).shape() == Shape{0, 37});
#endif
}

TEST_CASE("linalg: gemm CUDA matches the CPU reference for all transposes" * needs_gpu()) {
  SKIP_WITHOUT_GPU();
  const int64_t m = 37, k = 70, n = 53;
  for (DType compute : {DType::F32, DType::BF16})
    for (int ta = 0; ta < 2; ta++)
      for (int tb = 0; tb < 2; tb++) {
        CAPTURE(dtype_name(compute));
        CAPTURE(ta);
        CAPTURE(tb);
        Tensor a = random_tensor(ta ? Shape{k, m} : Shape{m, k}, 90 + ta);
        Tensor b = random_tensor(tb ? Shape{n, k} : Shape{k, n}, 92 + tb);
        Tensor c_ref = random_tensor({m, n}, 94);
        Tensor c = c_ref.to(Device::CUDA);
        // The CPU gemm rounds its operands to bf16 in BF16 mode too, so both
        // sides multiply the same numbers; only the f32 summation order differs.
        ops::gemm(a, ta, b, tb, c_ref, 0.7f, 0.3f, compute);
        ops::gemm(a.to(Device::CUDA), ta, b.to(Device::CUDA), tb, c, 0.7f, 0.3f, compute);
        CHECK(rel_l2(c, c_ref) < 1e-5);
      }
}

TEST_CASE("linalg: AdamW CUDA matches the CPU reference" * needs_gpu()) {
  SKIP_WITHOUT_GPU();
  const Shape s{1234};
  Tensor p = random_tensor(s, 100), m = random_tensor(s, 101, -0.1f, 0.1f), v = random_tensor(s, 102, 0, 0.01f);
  Tensor pd = p.to(Device::CUDA), md = m.to(Device::CUDA), vd = v.to(Device::CUDA);
  for (int64_t step = 1; step <= 3; step++) {
    Tensor g = random_tensor(s, 110 + step);
    ops::adamw_update(p, g, m, v, 1e-3f, 0.95f, 0.95f, 1e-8f, 0.1f, step);
    ops::adamw_update(pd, g.to(Device::CUDA), md, vd, 1e-3f, 0.95f, 0.95f, 1e-8f, 0.1f, step);
  }
  CHECK(rel_l2(pd, p) < 1e-6);
  CHECK(rel_l2(md, m) < 1e-6);
  CHECK(rel_l2(vd, v) < 1e-6);
}

TEST_CASE("linalg: Newton-Schulz and Muon CUDA match the CPU reference" * needs_gpu()) {
  SKIP_WITHOUT_GPU();
  // f32 mode: same formula, f32 products in another order: 1e-5 relative.
  // bf16 mode: the same rounding schedule, but a different f32 summation order
  // flips some bf16 roundings and the iteration amplifies them: on the CPU alone,
  // scaling u by 1.0001 moves the bf16 result by ~2% (and bf16 vs f32 is ~3%).
  // So 5e-2 relative, plus a check that the result really went through bf16.
  for (Shape shape : {Shape{96, 40}, Shape{40, 130}, Shape{1, 17}})
    for (DType compute : {DType::F32, DType::BF16}) {
      CAPTURE(shape_str(shape));
      CAPTURE(dtype_name(compute));
      const double tol = compute == DType::F32 ? 1e-5 : 5e-2;
      Tensor u = random_tensor(shape, 120);
      Tensor x_ref = ops::newton_schulz_orthogonalize(u, 5, compute);
      Tensor x = ops::newton_schulz_orthogonalize(u.to(Device::CUDA), 5, compute);
      CHECK(x.dtype() == DType::F32);
      CHECK(x.shape() == shape);
      CHECK(rel_l2(x, x_ref) < tol);
      if (compute == DType::BF16)
        for (float v : x.to_floats()) REQUIRE(v == round_to_bf16(v));

      Tensor g = random_tensor(shape, 122), mom = random_tensor(shape, 123);
      // From p = 0 the new p is the step itself, compared relatively.
      Tensor p = Tensor::zeros(shape), pd = p.to(Device::CUDA), momd = mom.to(Device::CUDA);
      ops::muon_update(p, g, mom, 1e-3f, 0.1f, 0.95f, 5, compute);
      ops::muon_update(pd, g.to(Device::CUDA), momd, 1e-3f, 0.1f, 0.95f, 5, compute);
      CHECK(rel_l2(momd, mom) < 1e-6);
      CHECK(rel_l2(pd, p) < tol);
      // From a random p (weight decay at work): equal up to f32 rounding of p
      // (values ~1) plus the step's relative tolerance.
      double step_max = 0;
      for (float v : p.to_floats()) step_max = std::max(step_max, std::fabs(double(v)));
      Tensor q = random_tensor(shape, 121), qd = q.to(Device::CUDA);
      ops::muon_update(q, g, mom, 1e-3f, 0.1f, 0.95f, 5, compute);
      ops::muon_update(qd, g.to(Device::CUDA), momd, 1e-3f, 0.1f, 0.95f, 5, compute);
      CHECK(max_abs_diff(qd, q) < 1e-6 + 3 * tol * step_max);
    }
}

namespace {
// Muon on a few parameters of one shape up to transposition, through
// muon_update_group or through muon_update one by one; returns the parameters' updates.
std::vector<std::vector<float>> muon_updates(Device device, bool grouped, DType ns) {
  const std::vector<Shape> shapes = {{24, 40}, {40, 24}, {24, 40}, {40, 24}, {40, 24}};
  std::vector<Tensor> params, grads, momenta;
  for (size_t i = 0; i < shapes.size(); i++) {
    params.push_back(random_tensor(shapes[i], 100 + i).to(device));
    grads.push_back(random_tensor(shapes[i], 200 + i).to(device));
    momenta.push_back(random_tensor(shapes[i], 300 + i, -0.1f, 0.1f).to(device));
  }
  std::vector<Tensor> before;
  for (const Tensor& p : params) before.push_back(p.clone());
  if (grouped) {
    std::vector<Tensor*> ps, ms;
    std::vector<const Tensor*> gs;
    for (size_t i = 0; i < shapes.size(); i++) {
      ps.push_back(&params[i]);
      gs.push_back(&grads[i]);
      ms.push_back(&momenta[i]);
    }
    ops::muon_update_group(ps, gs, ms, 0.02f, 0.1f, 0.95f, 5, ns);
  } else {
    for (size_t i = 0; i < shapes.size(); i++)
      ops::muon_update(params[i], grads[i], momenta[i], 0.02f, 0.1f, 0.95f, 5, ns);
  }
  std::vector<std::vector<float>> updates;
  for (size_t i = 0; i < shapes.size(); i++) {
    std::vector<float> a = params[i].to_floats(), b = before[i].to_floats(), m = momenta[i].to_floats();
    for (size_t j = 0; j < a.size(); j++) a[j] -= b[j];
    a.insert(a.end(), m.begin(), m.end());  // the momentum too
    updates.push_back(a);
  }
  return updates;
}
}  // namespace

TEST_CASE("linalg: Muon on a group of same-shape parameters equals Muon one by one (CPU)") {
  for (DType ns : {DType::F32, DType::BF16})
    CHECK(muon_updates(Device::CPU, true, ns) == muon_updates(Device::CPU, false, ns));
  Tensor a = random_tensor({24, 40}, 1), b = random_tensor({24, 41}, 2);
  std::vector<Tensor*> ps = {&a, &b};
  std::vector<const Tensor*> gs = {&a, &b};
  CHECK(contains(error_of([&] { ops::muon_update_group(ps, gs, ps, 0.02f, 0.1f, 0.95f, 5, DType::F32); }),
                 "not [24, 40] or [40, 24]"));
}

TEST_CASE("linalg: Muon on a group, batched on the GPU, equals Muon one by one" * needs_gpu()) {
  SKIP_WITHOUT_GPU();
  // f32: the batched products may sum in another order than the single ones;
  // Newton-Schulz magnifies that a little, far below 1e-4.
  const auto single = muon_updates(Device::CUDA, false, DType::F32), grouped = muon_updates(Device::CUDA, true, DType::F32);
  const auto cpu = muon_updates(Device::CPU, false, DType::F32);
  for (size_t i = 0; i < single.size(); i++) {
    CHECK(rel_l2(grouped[i], single[i]) <= 1e-4);
    CHECK(rel_l2(grouped[i], cpu[i]) <= 1e-4);
  }
  // bf16: every intermediate rounded to 8 bits, and the iteration amplifies a
  // flipped rounding (spec §3: bf16 against f32 Newton-Schulz differ by 6%);
  // two summation orders in bf16 must stay well inside that.
  const auto single_bf16 = muon_updates(Device::CUDA, false, DType::BF16);
  const auto grouped_bf16 = muon_updates(Device::CUDA, true, DType::BF16);
  for (size_t i = 0; i < single_bf16.size(); i++) CHECK(rel_l2(grouped_bf16[i], single_bf16[i]) <= 0.03);
}
