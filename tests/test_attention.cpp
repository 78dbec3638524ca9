// test_attention.cpp: causal softmax attention and decayed linear attention.
// CPU: gradients against finite differences, the decoding forms against the
// training forms, the alternative CPU algorithms against the definitions, small
// hand-computed cases. GPU: kernels against the CPU references in f32 and bf16 at
// awkward sizes, decoding steps, a long sequence, and the speed target.
#include <chrono>
#include <cmath>
#include <string>

#include "core/device.h"
#include "core/error.h"
#include "ops/causal_attention.h"
#include "ops/linear_attention.h"
#include "tests/test_util.h"

using namespace iflame;
using namespace iflame::test;

namespace {

// A copy with every value multiplied by `factor` (a deliberately wrong gradient).
Tensor scaled(const Tensor& t, float factor) {
  std::vector<float> v = t.to_floats();
  for (float& x : v) x *= factor;
  return Tensor::from_floats(v, t.shape());
}

// What storing in bf16 does to an f32 tensor (values stay f32, on the CPU).
Tensor bf16_rounded(const Tensor& t) { return t.to(DType::BF16).to(DType::F32); }

// max |a - ref| / max |ref|: the worst element error on the reference's scale.
double rel_max(const Tensor& a, const Tensor& ref) {
  std::vector<float> r = ref.to_floats();
  double m = 1e-30;
  for (float x : r) m = std::fmax(m, std::fabs(x));
  return max_abs_diff(a.to_floats(), r) / m;
}

// Rows [t0, t1) along the time axis (dim 1) as a contiguous tensor.
Tensor rows(const Tensor& t, int64_t t0, int64_t t1) { return t.slice(1, t0, t1).contiguous(); }

bool throws_naming(const std::function<void()>& f, const std::string& name) {
  try {
    f();
  } catch (const Error& e) {
    if (std::string(e.what()).find(name) != std::string::npos) return true;
    MESSAGE("message does not name '" << name << "': " << std::string(e.what()));
    return false;
  }
  return false;
}

}  // namespace

// ----------------------------------------------------------------------------------------------
// Causal softmax attention, CPU
// ----------------------------------------------------------------------------------------------

TEST_CASE("attn: causal attention hand-computed tiny case") {
  // T = 2, D = 1, scale 1: query 0 sees key 0 only; query 1 sees scores (2*0.5, 2*1) = (1, 2).
  Tensor q = Tensor::from_floats({1, 2}, {1, 2, 1, 1});
  Tensor k = Tensor::from_floats({0.5f, 1}, {1, 2, 1, 1});
  Tensor v = Tensor::from_floats({3, 5}, {1, 2, 1, 1});
  Tensor lse;
  Tensor o = ops::causal_attention_forward(q, k, v, 1.0f, &lse);
  const double e = std::exp(1.0);
  std::vector<float> got = o.to_floats(), got_lse = lse.to_floats();
  CHECK(got[0] == doctest::Approx(3.0));
  CHECK(got[1] == doctest::Approx((3 + 5 * e) / (1 + e)));
  CHECK(got_lse[0] == doctest::Approx(0.5));
  CHECK(got_lse[1] == doctest::Approx(std::log(e + e * e)));
}

TEST_CASE("attn: causal attention gradients match finite differences") {
  const int64_t B = 2, T = 11, H = 2, D = 8;
  const float scale = 1.0f / std::sqrt(float(D));
  Tensor q = random_tensor({B, T, H, D}, 11), k = random_tensor({B, T, H, D}, 12);
  Tensor v = random_tensor({B, T, H, D}, 13), r = random_tensor({B, T, H, D}, 14);
  Tensor lse, dq, dk, dv;
  Tensor o = ops::causal_attention_forward(q, k, v, scale, &lse);
  ops::causal_attention_backward(r, q, k, v, o, lse, scale, dq, dk, dv);
  auto loss = [&] { return weighted_sum(ops::causal_attention_forward(q, k, v, scale, nullptr), r); };
  CHECK(gradcheck_error(q, dq, loss) < 1e-2);
  CHECK(gradcheck_error(k, dk, loss) < 1e-2);
  CHECK(gradcheck_error(v, dv, loss) < 1e-2);
  // The check has teeth: a gradient 10% off is rejected.
  CHECK(gradcheck_error(k, scaled(dk, 1.1f), loss) > 1e-2);
  CHECK(gradcheck_error(q, scaled(dq, 1.1f), loss) > 1e-2);
}

TEST_CASE("attn: causal attention gradients with fewer queries than keys") {
  const int64_t B = 2, Tq = 5, Tk = 11, H = 2, D = 8;
  const float scale = 0.4f;
  Tensor q = random_tensor({B, Tq, H, D}, 21), k = random_tensor({B, Tk, H, D}, 22);
  Tensor v = random_tensor({B, Tk, H, D}, 23), r = random_tensor({B, Tq, H, D}, 24);
  Tensor lse, dq, dk, dv;
  Tensor o = ops::causal_attention_forward(q, k, v, scale, &lse);
  ops::causal_attention_backward(r, q, k, v, o, lse, scale, dq, dk, dv);
  auto loss = [&] { return weighted_sum(ops::causal_attention_forward(q, k, v, scale, nullptr), r); };
  CHECK(gradcheck_error(q, dq, loss) < 1e-2);
  CHECK(gradcheck_error(k, dk, loss, 40) < 1e-2);
  CHECK(gradcheck_error(v, dv, loss, 40) < 1e-2);
}

TEST_CASE("attn: causal attention with fewer queries equals the last rows of the full one") {
  const int64_t B = 2, T = 13, H = 3, D = 5, Tq = 4;
  const float scale = 0.7f;
  Tensor q = random_tensor({B, T, H, D}, 31), k = random_tensor({B, T, H, D}, 32);
  Tensor v = random_tensor({B, T, H, D}, 33), r_last = random_tensor({B, Tq, H, D}, 34);
  Tensor lse_full, lse_last;
  Tensor o_full = ops::causal_attention_forward(q, k, v, scale, &lse_full);
  Tensor q_last = rows(q, T - Tq, T);
  Tensor o_last = ops::causal_attention_forward(q_last, k, v, scale, &lse_last);
  CHECK(max_abs_diff(o_last, rows(o_full, T - Tq, T)) < 1e-6);
  CHECK(max_abs_diff(lse_last, lse_full.slice(2, T - Tq, T).contiguous()) < 1e-6);

  // One decoding step (Tq = 1) is the last row.
  Tensor o_one = ops::causal_attention_forward(rows(q, T - 1, T), k, v, scale, nullptr);
  CHECK(max_abs_diff(o_one, rows(o_full, T - 1, T)) < 1e-6);

  // Backward: the same as the full backward with zero output gradient on the earlier rows.
  Tensor r_full = Tensor::zeros({B, T, H, D});
  r_full.slice(1, T - Tq, T).copy_from(r_last);
  Tensor dq_full, dk_full, dv_full, dq, dk, dv;
  ops::causal_attention_backward(r_full, q, k, v, o_full, lse_full, scale, dq_full, dk_full, dv_full);
  ops::causal_attention_backward(r_last, q_last, k, v, o_last, lse_last, scale, dq, dk, dv);
  CHECK(max_abs_diff(dq, rows(dq_full, T - Tq, T)) < 1e-6);
  CHECK(max_abs_diff(dk, dk_full) < 1e-6);
  CHECK(max_abs_diff(dv, dv_full) < 1e-6);
}

TEST_CASE("attn: causal attention rejects bad arguments, naming the op") {
  Tensor q = random_tensor({1, 4, 2, 8}, 1), k = random_tensor({1, 4, 2, 8}, 2);
  Tensor k_short = random_tensor({1, 3, 2, 8}, 3), k_heads = random_tensor({1, 4, 3, 8}, 4);
  const char* fwd = "causal_attention_forward";
  CHECK(throws_naming([&] { ops::causal_attention_forward(q, k_short, k_short, 1, nullptr); }, fwd));
  CHECK(throws_naming([&] { ops::causal_attention_forward(q, k_heads, k_heads, 1, nullptr); }, fwd));
  CHECK(throws_naming([&] { ops::causal_attention_forward(q, k, k_heads, 1, nullptr); }, fwd));
  CHECK(throws_naming([&] { ops::causal_attention_forward(q.view({1, 4, 16}), k, k, 1, nullptr); }, fwd));
  CHECK(throws_naming([&] { ops::causal_attention_forward(q.to(DType::BF16), k.to(DType::BF16),
                                                          k.to(DType::BF16), 1, nullptr); },
                      "CPU reference takes f32"));
  CHECK(throws_naming([&] { ops::causal_attention_forward(q.transpose(1, 2), k, k, 1, nullptr); }, fwd));
  Tensor lse, dq, dk, dv;
  Tensor o = ops::causal_attention_forward(q, k, k, 1, &lse);
  CHECK(throws_naming([&] { ops::causal_attention_backward(o, q, k, k, o, lse.view({1, 4, 2}), 1,
                                                           dq, dk, dv); },
                      "causal_attention_backward: lse"));
}

// ----------------------------------------------------------------------------------------------
// Decayed linear attention, CPU
// ----------------------------------------------------------------------------------------------

TEST_CASE("attn: linear attention slopes follow the reference's ALiBi rule") {
  std::vector<float> s16 = ops::linear_attention_slopes(16);
  REQUIRE(s16.size() == 16);
  for (int h = 0; h < 16; h++) CHECK(s16[h] == float(std::pow(2.0, -0.5 * (h + 1))));
  CHECK(s16[0] == doctest::Approx(0.70710678));
  CHECK(ops::linear_attention_slopes(2) == std::vector<float>{0.0625f, 0.00390625f});
  CHECK(ops::linear_attention_slopes(8) ==
        std::vector<float>{0.5f, 0.25f, 0.125f, 0.0625f, 0.03125f, 0.015625f, 0.0078125f, 0.00390625f});
  // Not a power of two: the 4-head slopes, then the 8-head slopes 0 and 2.
  CHECK(ops::linear_attention_slopes(6) ==
        std::vector<float>{0.25f, 0.0625f, 0.015625f, 0.00390625f, 0.5f, 0.125f});
}

TEST_CASE("attn: linear attention hand-computed tiny case") {
  // T = 2, D = 1, exp(-s) = 1/2, q = (2, 3), k = (1, -1), v = (4, 5):
  //   o_0 = 2*1*4 = 8,  o_1 = 0.5*3*1*4 + 3*(-1)*5 = -9.
  // With grad_o = (1, 1): dq = (k0 v0, 0.5 k0 v0 + k1 v1) = (4, -3),
  //   dk = (q0 v0 + 0.5 q1 v0, q1 v1) = (14, 15), dv = (q0 k0 + 0.5 q1 k0, q1 k1) = (3.5, -3).
  Tensor q = Tensor::from_floats({2, 3}, {1, 2, 1, 1});
  Tensor k = Tensor::from_floats({1, -1}, {1, 2, 1, 1});
  Tensor v = Tensor::from_floats({4, 5}, {1, 2, 1, 1});
  Tensor g = Tensor::from_floats({1, 1}, {1, 2, 1, 1});
  const std::vector<float> slopes{float(std::log(2.0))};
  auto near = [](const Tensor& t, std::vector<float> want) {
    std::vector<float> got = t.to_floats();
    REQUIRE(got.size() == want.size());
    for (size_t i = 0; i < got.size(); i++) CHECK(got[i] == doctest::Approx(want[i]).epsilon(1e-6));
  };
  near(ops::linear_attention_forward(q, k, v, slopes), {8, -9});
  near(ops::cpu::linear_attention_forward_recurrent(q, k, v, slopes), {8, -9});
  near(ops::cpu::linear_attention_forward_chunked(q, k, v, slopes, 1), {8, -9});
  Tensor dq, dk, dv;
  ops::linear_attention_backward(g, q, k, v, slopes, dq, dk, dv);
  near(dq, {4, -3});
  near(dk, {14, 15});
  near(dv, {3.5f, -3});
  ops::cpu::linear_attention_backward_chunked(g, q, k, v, slopes, 1, dq, dk, dv);
  near(dq, {4, -3});
  near(dk, {14, 15});
  near(dv, {3.5f, -3});
}

TEST_CASE("attn: linear attention gradients match finite differences") {
  const int64_t B = 2, T = 11, H = 2, D = 8;
  const std::vector<float> slopes{0.3f, 1.1f};
  Tensor q = random_tensor({B, T, H, D}, 41), k = random_tensor({B, T, H, D}, 42);
  Tensor v = random_tensor({B, T, H, D}, 43), r = random_tensor({B, T, H, D}, 44);
  Tensor dq, dk, dv;
  ops::linear_attention_backward(r, q, k, v, slopes, dq, dk, dv);
  auto loss = [&] { return weighted_sum(ops::linear_attention_forward(q, k, v, slopes), r); };
  CHECK(gradcheck_error(q, dq, loss) < 1e-2);
  CHECK(gradcheck_error(k, dk, loss) < 1e-2);
  CHECK(gradcheck_error(v, dv, loss) < 1e-2);
  CHECK(gradcheck_error(v, scaled(dv, 1.1f), loss) > 1e-2);
  CHECK(gradcheck_error(k, scaled(dk, 1.1f), loss) > 1e-2);
}

TEST_CASE("attn: linear attention recurrent and chunked forms equal the direct sum") {
  struct Case {
    int64_t B, T, H, D;
    int chunk;
    std::vector<float> slopes;
  };
  const std::vector<Case> cases = {
      {2, 37, 3, 8, 1, {0.05f, 0.5f, 2.0f}},
      {2, 37, 3, 8, 5, {0.05f, 0.5f, 2.0f}},
      {1, 37, 3, 8, 64, {0.05f, 0.5f, 2.0f}},           // one partial chunk
      {1, 117, 2, 32, 64, ops::linear_attention_slopes(2)},  // the GPU's chunk and head dim
      {1, 130, 1, 4, 64, {0.0f}},                       // no decay at all, three chunks
  };
  for (const Case& c : cases) {
    CAPTURE(c.T);
    CAPTURE(c.chunk);
    const Shape shape{c.B, c.T, c.H, c.D};
    Tensor q = random_tensor(shape, 51), k = random_tensor(shape, 52);
    Tensor v = random_tensor(shape, 53), g = random_tensor(shape, 54);
    Tensor o = ops::cpu::linear_attention_forward(q, k, v, c.slopes);
    CHECK(rel_max(ops::cpu::linear_attention_forward_recurrent(q, k, v, c.slopes), o) < 1e-6);
    CHECK(rel_max(ops::cpu::linear_attention_forward_chunked(q, k, v, c.slopes, c.chunk), o) < 1e-5);
    Tensor dq, dk, dv, dq2, dk2, dv2;
    ops::cpu::linear_attention_backward(g, q, k, v, c.slopes, dq, dk, dv);
    ops::cpu::linear_attention_backward_recurrent(g, q, k, v, c.slopes, dq2, dk2, dv2);
    CHECK(rel_max(dq2, dq) < 1e-6);
    CHECK(rel_max(dk2, dk) < 1e-6);
    CHECK(rel_max(dv2, dv) < 1e-6);
    ops::cpu::linear_attention_backward_chunked(g, q, k, v, c.slopes, c.chunk, dq2, dk2, dv2);
    CHECK(rel_max(dq2, dq) < 1e-5);
    CHECK(rel_max(dk2, dk) < 1e-5);
    CHECK(rel_max(dv2, dv) < 1e-5);
  }
}

TEST_CASE("attn: linear attention step token by token equals the parallel forward") {
  const int64_t B = 2, T = 9, H = 3, D = 8;
  const std::vector<float> slopes{0.1f, 0.7f, 0.02f};
  Tensor q = random_tensor({B, T, H, D}, 61), k = random_tensor({B, T, H, D}, 62);
  Tensor v = random_tensor({B, T, H, D}, 63);
  Tensor o = ops::linear_attention_forward(q, k, v, slopes);
  Tensor state = Tensor::zeros({B, H, D, D});
  for (int64_t t = 0; t < T; t++) {
    CAPTURE(t);
    Tensor o_t = ops::linear_attention_step(q.select(1, t).contiguous(), k.select(1, t).contiguous(),
                                            v.select(1, t).contiguous(), state, slopes);
    CHECK(max_abs_diff(o_t, o.select(1, t).contiguous()) < 1e-5);
  }
}

TEST_CASE("attn: linear attention rejects bad arguments, naming the op") {
  Tensor q = random_tensor({1, 4, 2, 8}, 1);
  const std::vector<float> slopes{0.5f, 0.25f};
  CHECK(throws_naming([&] { ops::linear_attention_forward(q, q, q, {0.5f}); }, "linear_attention_forward"));
  CHECK(throws_naming([&] { ops::linear_attention_forward(q, q, q, {0.5f, NAN}); }, "slope 1"));
  CHECK(throws_naming([&] { ops::linear_attention_forward(q, q.view({1, 4, 1, 16}), q, slopes); },
                      "linear_attention_forward: k"));
  Tensor dq, dk, dv;
  CHECK(throws_naming([&] { ops::linear_attention_backward(q.slice(1, 0, 2).contiguous(), q, q, q,
                                                           slopes, dq, dk, dv); },
                      "linear_attention_backward: grad_o"));
  Tensor x = random_tensor({1, 2, 8}, 2);
  Tensor bad_state = Tensor::zeros({1, 2, 8, 4});
  CHECK(throws_naming([&] { ops::linear_attention_step(x, x, x, bad_state, slopes); },
                      "linear_attention_step: state"));
}

// ----------------------------------------------------------------------------------------------
// GPU against the CPU references
// ----------------------------------------------------------------------------------------------

namespace {

struct AttentionSize {
  int64_t B, Tq, Tk, H;
};
// Awkward sizes: not multiples of the tiles (64, 128), B*H not a power of two,
// one case shorter than a tile, decoding-style queries (Tq < Tk, Tq = 1).
const std::vector<AttentionSize> kGpuSizes = {
    {1, 37, 37, 3}, {3, 117, 117, 1}, {2, 119, 119, 5}, {1, 300, 300, 3},
    {2, 5, 119, 3}, {3, 1, 130, 2},   {1, 129, 200, 3},
};
constexpr int64_t kD = 32;

Tensor gpu(const Tensor& t, DType dtype) { return t.to(dtype).to(Device::CUDA); }

// GPU causal attention in `dtype` against the CPU reference on the same (rounded) inputs.
// f32: the kernels differ from the double reference only by f32 accumulation order:
//   a few 1e-6 relative; we allow 1e-4 on the worst element.
// bf16: the inputs are rounded for both sides, and the backward is given the GPU's own
//   o and lse, so the remaining difference is f32 accumulation plus the final rounding of
//   each output to bf16 (relative 2^-9 = 0.2% per element): about 3e-3 in rel_l2; we
//   allow 2e-2 (rel_l2) so only a real indexing or masking error fails.
void check_causal_gpu(const AttentionSize& n, DType dtype, uint64_t seed) {
  CAPTURE(n.B);
  CAPTURE(n.Tq);
  CAPTURE(n.Tk);
  CAPTURE(n.H);
  CAPTURE(dtype_name(dtype));
  const float scale = 1.0f / std::sqrt(float(kD));
  // Inputs roughly as in the model (post-RMSNorm projections): scores of order a few.
  Tensor q = random_tensor({n.B, n.Tq, n.H, kD}, seed, -2, 2);
  Tensor k = random_tensor({n.B, n.Tk, n.H, kD}, seed + 1, -2, 2);
  Tensor v = random_tensor({n.B, n.Tk, n.H, kD}, seed + 2);
  Tensor g = random_tensor({n.B, n.Tq, n.H, kD}, seed + 3);
  if (dtype == DType::BF16) {
    q = bf16_rounded(q), k = bf16_rounded(k), v = bf16_rounded(v), g = bf16_rounded(g);
  }
  Tensor lse_gpu, lse_cpu;
  Tensor o_gpu = ops::causal_attention_forward(gpu(q, dtype), gpu(k, dtype), gpu(v, dtype), scale, &lse_gpu);
  Tensor o_cpu = ops::causal_attention_forward(q, k, v, scale, &lse_cpu);
  REQUIRE(o_gpu.dtype() == dtype);
  REQUIRE(o_gpu.is_cuda());
  REQUIRE(lse_gpu.dtype() == DType::F32);
  CHECK(max_abs_diff(lse_gpu, lse_cpu) < 1e-4);

  Tensor dq_g, dk_g, dv_g, dq_c, dk_c, dv_c;
  ops::causal_attention_backward(gpu(g, dtype), gpu(q, dtype), gpu(k, dtype), gpu(v, dtype), o_gpu,
                                 lse_gpu, scale, dq_g, dk_g, dv_g);
  REQUIRE(dq_g.dtype() == dtype);
  if (dtype == DType::F32) {
    CHECK(rel_max(o_gpu, o_cpu) < 1e-4);
    ops::causal_attention_backward(g, q, k, v, o_cpu, lse_cpu, scale, dq_c, dk_c, dv_c);
    CHECK(rel_max(dq_g, dq_c) < 1e-4);
    CHECK(rel_max(dk_g, dk_c) < 1e-4);
    CHECK(rel_max(dv_g, dv_c) < 1e-4);
  } else {
    CHECK(rel_l2(o_gpu, o_cpu) < 2e-2);
    Tensor o_used = o_gpu.to(Device::CPU).to(DType::F32), lse_used = lse_gpu.to(Device::CPU);
    ops::causal_attention_backward(g, q, k, v, o_used, lse_used, scale, dq_c, dk_c, dv_c);
    CHECK(rel_l2(dq_g, dq_c) < 2e-2);
    CHECK(rel_l2(dk_g, dk_c) < 2e-2);
    CHECK(rel_l2(dv_g, dv_c) < 2e-2);
  }
}

struct LinearSize {
  int64_t B, T, H;
  std::vector<float> slopes;
};
// T around the 64-position chunk (63, 64, 65), several chunks with a partial last one,
// B*H not a power of two, strong and weak decay, and the model's slopes.
const std::vector<LinearSize> kLinearSizes = {
    {1, 37, 3, {0.05f, 0.5f, 2.0f}},
    {3, 117, 1, {0.01f}},
    {2, 119, 5, {0.9f, 0.2f, 0.0f, 0.03f, 0.004f}},
    {1, 63, 2, ops::linear_attention_slopes(2)},
    {1, 64, 2, ops::linear_attention_slopes(2)},
    {2, 65, 3, ops::linear_attention_slopes(3)},
    {1, 300, 16, ops::linear_attention_slopes(16)},
};

// Tolerances as for check_causal_gpu; the chunked kernel sums in a different order
// (through the carried state) than the direct double sum.
void check_linear_gpu(const LinearSize& n, DType dtype, uint64_t seed) {
  CAPTURE(n.B);
  CAPTURE(n.T);
  CAPTURE(n.H);
  CAPTURE(dtype_name(dtype));
  const Shape shape{n.B, n.T, n.H, kD};
  Tensor q = random_tensor(shape, seed), k = random_tensor(shape, seed + 1);
  Tensor v = random_tensor(shape, seed + 2), g = random_tensor(shape, seed + 3);
  if (dtype == DType::BF16) {
    q = bf16_rounded(q), k = bf16_rounded(k), v = bf16_rounded(v), g = bf16_rounded(g);
  }
  Tensor o_gpu = ops::linear_attention_forward(gpu(q, dtype), gpu(k, dtype), gpu(v, dtype), n.slopes);
  Tensor o_cpu = ops::linear_attention_forward(q, k, v, n.slopes);
  REQUIRE(o_gpu.dtype() == dtype);
  Tensor dq_g, dk_g, dv_g, dq_c, dk_c, dv_c;
  ops::linear_attention_backward(gpu(g, dtype), gpu(q, dtype), gpu(k, dtype), gpu(v, dtype), n.slopes,
                                 dq_g, dk_g, dv_g);
  ops::linear_attention_backward(g, q, k, v, n.slopes, dq_c, dk_c, dv_c);
  REQUIRE(dk_g.dtype() == dtype);
  if (dtype == DType::F32) {
    CHECK(rel_max(o_gpu, o_cpu) < 1e-4);
    CHECK(rel_max(dq_g, dq_c) < 1e-4);
    CHECK(rel_max(dk_g, dk_c) < 1e-4);
    CHECK(rel_max(dv_g, dv_c) < 1e-4);
  } else {
    CHECK(rel_l2(o_gpu, o_cpu) < 2e-2);
    CHECK(rel_l2(dq_g, dq_c) < 2e-2);
    CHECK(rel_l2(dk_g, dk_c) < 2e-2);
    CHECK(rel_l2(dv_g, dv_c) < 2e-2);
  }
}

}  // namespace

TEST_CASE("attn: GPU causal attention matches the CPU reference (f32)") {
  SKIP_WITHOUT_GPU();
  uint64_t seed = 100;
  for (const AttentionSize& n : kGpuSizes) check_causal_gpu(n, DType::F32, seed += 10);
}

TEST_CASE("attn: GPU causal attention matches the CPU reference (bf16)") {
  SKIP_WITHOUT_GPU();
  uint64_t seed = 200;
  for (const AttentionSize& n : kGpuSizes) check_causal_gpu(n, DType::BF16, seed += 10);
}

TEST_CASE("attn: GPU causal attention refuses a head dim other than 32") {
  SKIP_WITHOUT_GPU();
  Tensor q = random_tensor({1, 4, 2, 16}, 1).to(Device::CUDA);
  CHECK(throws_naming([&] { ops::causal_attention_forward(q, q, q, 1, nullptr); }, "head dim 32"));
}

TEST_CASE("attn: GPU linear attention matches the CPU reference (f32)") {
  SKIP_WITHOUT_GPU();
  uint64_t seed = 300;
  for (const LinearSize& n : kLinearSizes) check_linear_gpu(n, DType::F32, seed += 10);
}

TEST_CASE("attn: GPU linear attention matches the CPU reference (bf16)") {
  SKIP_WITHOUT_GPU();
  uint64_t seed = 400;
  for (const LinearSize& n : kLinearSizes) check_linear_gpu(n, DType::BF16, seed += 10);
}

TEST_CASE("attn: GPU linear attention steps match the CPU steps and the GPU forward") {
  SKIP_WITHOUT_GPU();
  const int64_t B = 3, T = 21, H = 5;
  const std::vector<float> slopes{0.9f, 0.2f, 0.0f, 0.03f, 0.7071f};
  for (DType dtype : {DType::F32, DType::BF16}) {
    CAPTURE(dtype_name(dtype));
    Tensor q = bf16_rounded(random_tensor({B, T, H, kD}, 501));
    Tensor k = bf16_rounded(random_tensor({B, T, H, kD}, 502));
    Tensor v = bf16_rounded(random_tensor({B, T, H, kD}, 503));
    Tensor o_parallel = ops::linear_attention_forward(gpu(q, dtype), gpu(k, dtype), gpu(v, dtype), slopes);
    Tensor state_gpu = Tensor::zeros({B, H, kD, kD}, DType::F32, Device::CUDA);
    Tensor state_cpu = Tensor::zeros({B, H, kD, kD});
    for (int64_t t = 0; t < T; t++) {
      CAPTURE(t);
      Tensor qt = q.select(1, t).contiguous(), kt = k.select(1, t).contiguous();
      Tensor vt = v.select(1, t).contiguous();
      Tensor o_gpu = ops::linear_attention_step(gpu(qt, dtype), gpu(kt, dtype), gpu(vt, dtype), state_gpu, slopes);
      Tensor o_cpu = ops::linear_attention_step(qt, kt, vt, state_cpu, slopes);
      REQUIRE(o_gpu.dtype() == dtype);
      const double tol = dtype == DType::F32 ? 1e-5 : 1e-2;  // bf16: the output's own rounding
      CHECK(rel_max(o_gpu, o_cpu) < tol);
      CHECK(rel_max(o_gpu, o_parallel.select(1, t).contiguous()) < tol);
    }
    CHECK(rel_max(state_gpu, state_cpu) < 1e-5);  // the state is f32 either way
  }
}

TEST_CASE("attn: GPU attention on a long sequence (T = 2307)") {
  SKIP_WITHOUT_GPU();
  const int64_t B = 2, T = 2307, H = 4, m = 64;
  const float scale = 1.0f / std::sqrt(float(kD));
  Tensor q = random_tensor({B, T, H, kD}, 601, -2, 2), k = random_tensor({B, T, H, kD}, 602, -2, 2);
  Tensor v = random_tensor({B, T, H, kD}, 603), g = random_tensor({B, T, H, kD}, 604);
  Tensor qg = gpu(q, DType::F32), kg = gpu(k, DType::F32), vg = gpu(v, DType::F32), gg = gpu(g, DType::F32);

  SUBCASE("causal: row windows against the CPU, with the queries as the last rows of a shorter cache") {
    Tensor lse_g, dq_g, dk_g, dv_g;
    Tensor o_g = ops::causal_attention_forward(qg, kg, vg, scale, &lse_g);
    ops::causal_attention_backward(gg, qg, kg, vg, o_g, lse_g, scale, dq_g, dk_g, dv_g);
    Tensor o_all = o_g.to(Device::CPU), lse_all = lse_g.to(Device::CPU);
    for (int64_t end : {m, int64_t(1000), T}) {
      CAPTURE(end);
      // Queries [end - m, end) see keys [0, end): the CPU with Tq = m, Tk = end.
      Tensor q_w = rows(q, end - m, end), k_w = rows(k, 0, end), v_w = rows(v, 0, end);
      Tensor lse_c;
      Tensor o_c = ops::causal_attention_forward(q_w, k_w, v_w, scale, &lse_c);
      CHECK(rel_max(rows(o_all, end - m, end), o_c) < 1e-4);
      CHECK(max_abs_diff(lse_all.slice(2, end - m, end).contiguous(), lse_c) < 1e-4);
      // dq of these rows depends only on them; with end == T the last m keys are seen
      // by these queries only, so their dk, dv are complete too.
      Tensor dq_c, dk_c, dv_c;
      ops::causal_attention_backward(rows(g, end - m, end), q_w, k_w, v_w, o_c, lse_c, scale, dq_c,
                                     dk_c, dv_c);
      CHECK(rel_max(rows(dq_g, end - m, end), dq_c) < 1e-4);
      if (end == T) {
        CHECK(rel_max(rows(dk_g, T - m, T), rows(dk_c, T - m, T)) < 1e-4);
        CHECK(rel_max(rows(dv_g, T - m, T), rows(dv_c, T - m, T)) < 1e-4);
      }
    }
    // Whole-tensor identities: each row of P sums to 1, so sum_j dv_j = sum_i do_i, and
    // sum_j dS_ij = 0, so sum_j dk_j = 0 (per batch and head).
    std::vector<float> dv = dv_g.to_floats(), dk = dk_g.to_floats(), gv = g.to_floats();
    double worst_v = 0, worst_k = 0, size_k = 0;
    for (int64_t b = 0; b < B; b++)
      for (int64_t h = 0; h < H; h++)
        for (int64_t d = 0; d < kD; d++) {
          double sum_dv = 0, sum_g = 0, sum_dk = 0;
          for (int64_t t = 0; t < T; t++) {
            const int64_t at = ((b * T + t) * H + h) * kD + d;
            sum_dv += dv[at], sum_g += gv[at], sum_dk += dk[at];
            size_k = std::fmax(size_k, std::fabs(dk[at]));
          }
          worst_v = std::fmax(worst_v, std::fabs(sum_dv - sum_g));
          worst_k = std::fmax(worst_k, std::fabs(sum_dk));
        }
    CHECK(worst_v < 1e-2);
    CHECK(worst_k < 1e-3 * size_k * std::sqrt(double(T)));
  }

  SUBCASE("linear: against the CPU recurrence") {
    const std::vector<float> slopes = ops::linear_attention_slopes(H);
    Tensor o_g = ops::linear_attention_forward(qg, kg, vg, slopes);
    CHECK(rel_max(o_g, ops::cpu::linear_attention_forward_recurrent(q, k, v, slopes)) < 1e-4);
    Tensor dq_g, dk_g, dv_g, dq_c, dk_c, dv_c;
    ops::linear_attention_backward(gg, qg, kg, vg, slopes, dq_g, dk_g, dv_g);
    ops::cpu::linear_attention_backward_recurrent(g, q, k, v, slopes, dq_c, dk_c, dv_c);
    CHECK(rel_max(dq_g, dq_c) < 1e-4);
    CHECK(rel_max(dk_g, dk_c) < 1e-4);
    CHECK(rel_max(dv_g, dv_c) < 1e-4);
  }
}

TEST_CASE("attn: GPU speed at the published length (T = 6921, B*H = 256, bf16)") {
  SKIP_WITHOUT_GPU();
  const int64_t B = 16, T = 6921, H = 16;
  const float scale = 1.0f / std::sqrt(float(kD));
  auto make = [&](uint64_t seed) {
    Tensor t = Tensor::empty({B, T, H, kD}, DType::BF16, Device::CUDA);
    Generator gen(seed);
    fill_uniform(t, gen, -1, 1);
    return t;
  };
  Tensor q = make(701), k = make(702), v = make(703), g = make(704);
  const std::vector<float> slopes = ops::linear_attention_slopes(H);
  auto seconds = [](const std::function<void()>& f) {
    f();  // warm-up (allocator, first launch)
    cuda_synchronize();
    auto t0 = std::chrono::steady_clock::now();
    f();
    cuda_synchronize();
    return std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count();
  };
  const double causal = seconds([&] {
    Tensor lse, dq, dk, dv;
    Tensor o = ops::causal_attention_forward(q, k, v, scale, &lse);
    ops::causal_attention_backward(g, q, k, v, o, lse, scale, dq, dk, dv);
  });
  const double linear = seconds([&] {
    Tensor dq, dk, dv;
    Tensor o = ops::linear_attention_forward(q, k, v, slopes);
    ops::linear_attention_backward(g, q, k, v, slopes, dq, dk, dv);
  });
  MESSAGE("causal attention fwd+bwd " << causal * 1e3 << " ms, linear attention fwd+bwd "
                                      << linear * 1e3 << " ms (" << cuda_device_description() << ")");
  CHECK(causal < 1.0);
  CHECK(linear < 1.0);
}
