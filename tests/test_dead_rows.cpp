// test_dead_rows.cpp: cached attention with per-row liveness flags
// (ops/cached_attention.h's `live`, which decoding passes as DecodeState::row_live).
//
// CPU: a dead row reads nothing (its cache rows are NaN here) and gives zeros;
// live rows give exactly the bits of the call without flags; flags of the wrong
// dtype or shape are refused with a message naming the problem.
// GPU (skipped without one): the CUDA step with dead rows against the CPU, f32
// and bf16, at lengths 1 .. 700, with and without the split over blocks; its
// live rows equal its own call without flags bit for bit.
#include <doctest/doctest.h>

#include <cmath>
#include <limits>
#include <string>
#include <vector>

#include "ops/cached_attention.h"
#include "tests/test_util.h"

using namespace iflame;
using namespace iflame::test;

namespace {

// k with every cache row of the rows flagged dead set to NaN: a dead row that
// read any of them would give NaN.
Tensor poison_dead_rows(const Tensor& cache, const std::vector<int32_t>& live) {
  std::vector<float> v = cache.to_floats();
  const size_t per_row = v.size() / live.size();
  for (size_t b = 0; b < live.size(); b++)
    if (!live[b])
      for (size_t i = 0; i < per_row; i++) v[b * per_row + i] = std::numeric_limits<float>::quiet_NaN();
  return Tensor::from_floats(v, cache.shape());
}

// Row b of a [B, H, D] output as floats.
std::vector<float> row_of(const Tensor& o, int64_t b) { return o.slice(0, b, b + 1).contiguous().to_floats(); }

std::string flags_text(const std::vector<int32_t>& flags) {
  std::string s;
  for (int32_t f : flags) s += char('0' + f);
  return s;
}

bool all_zero(const std::vector<float>& v) {
  for (float x : v)
    if (x != 0.0f) return false;  // NaN too
  return true;
}

}  // namespace

TEST_CASE("attn: cached attention with live flags: dead rows give zeros, live rows the call without flags exactly") {
  const int64_t B = 5, H = 2, D = 8, capacity = 30;
  const Tensor q = random_tensor({B, H, D}, 61, -2.0f, 2.0f);
  const Tensor k = random_tensor({B, capacity, H, D}, 62), v = random_tensor({B, capacity, H, D}, 63);
  const Tensor position = Tensor::from_ints({0, 29, 7, 15, 3}, {B});
  for (const std::vector<int32_t>& flags :
       {std::vector<int32_t>{1, 0, 1, 0, 1}, std::vector<int32_t>{0, 1, 1, 1, 0}, std::vector<int32_t>{0, 0, 0, 0, 0},
        std::vector<int32_t>{1, 1, 1, 1, 1}}) {
    for (int64_t div : {1, 3}) {
      CAPTURE(div);
      CAPTURE(flags_text(flags));
      const Tensor live = Tensor::from_ints(flags, {B});
      const Tensor all = ops::cached_attention_at(q, k, v, position, div, 0.3f);
      const Tensor some = ops::cached_attention_at(q, poison_dead_rows(k, flags), poison_dead_rows(v, flags),
                                                   position, div, 0.3f, -1, live);
      for (int64_t b = 0; b < B; b++) {
        CAPTURE(b);
        CHECK_FALSE(all_zero(row_of(all, b)));  // so zeros below come from the flag
        if (flags[b]) {
          CHECK(row_of(some, b) == row_of(all, b));
        } else {
          CHECK(all_zero(row_of(some, b)));
        }
      }
    }
  }
}

TEST_CASE("attn: cached attention refuses live flags of the wrong dtype or shape, naming the problem") {
  const int64_t B = 3, H = 2, D = 8, capacity = 6;
  const Tensor q = random_tensor({B, H, D}, 64);
  const Tensor k = random_tensor({B, capacity, H, D}, 65), v = random_tensor({B, capacity, H, D}, 66);
  const Tensor position = Tensor::from_ints({1, 2, 3}, {B});
  auto error_with = [&](const Tensor& live) {
    return error_of([&] { ops::cached_attention_at(q, k, v, position, 1, 0.5f, -1, live); });
  };
  CHECK(contains(error_with(Tensor::full({B}, 1.0f)), "cached_attention_at: live must be i32"));
  CHECK(contains(error_with(Tensor::from_ints({1, 1}, {2})), "cached_attention_at: live must be a contiguous [3]"));
  CHECK(contains(error_with(Tensor::from_ints({1, 1, 1, 1}, {4})), "one flag per row of q"));
  CHECK(contains(error_with(Tensor::from_ints({1, 1, 1}, {3, 1})), "live must be a contiguous [3]"));
  CHECK(error_with(Tensor::from_ints({1, 0, 1}, {B})).empty());  // the right flags pass
}

TEST_CASE("attn: GPU cached attention with dead rows equals the CPU, f32 and bf16, split or not" * needs_gpu()) {
  SKIP_WITHOUT_GPU();
  const int64_t B = 5, H = 4, D = 32;
  const Tensor position = Tensor::from_ints({0, 699, 350, 127, 44}, {B});  // lengths 1 .. 700
  const Tensor q = random_tensor({B, H, D}, 67, -3.0f, 3.0f);
  // 700 rows: one block per head; 2100: several (choose_splits keeps ~512 rows a split), merged by a second kernel.
  for (int64_t capacity : {700, 2100}) {
    const Tensor k = random_tensor({B, capacity, H, D}, 68), v = random_tensor({B, capacity, H, D}, 69);
    for (const std::vector<int32_t>& flags :
         {std::vector<int32_t>{1, 0, 1, 1, 0}, std::vector<int32_t>{0, 1, 0, 0, 1},
          std::vector<int32_t>{0, 0, 0, 0, 0}}) {
      CAPTURE(capacity);
      CAPTURE(flags_text(flags));
      const Tensor live = Tensor::from_ints(flags, {B});
      const Tensor kp = poison_dead_rows(k, flags), vp = poison_dead_rows(v, flags);
      for (DType dtype : {DType::F32, DType::BF16}) {
        CAPTURE(dtype_name(dtype));
        // The CPU reference on the values the GPU holds (bf16-rounded for bf16).
        auto on_gpu = [&](const Tensor& t) { return t.to(Device::CUDA).to(dtype); };
        auto held = [&](const Tensor& t) { return on_gpu(t).to(DType::F32).to(Device::CPU); };
        const Tensor expected = ops::cached_attention_at(held(q), held(kp), held(vp), position, 1, 0.2f, -1, live);
        const Tensor gpu_live = ops::cached_attention_at(on_gpu(q), on_gpu(kp), on_gpu(vp), position.to(Device::CUDA),
                                                         1, 0.2f, -1, live.to(Device::CUDA));
        const Tensor gpu_all = ops::cached_attention_at(on_gpu(q), on_gpu(k), on_gpu(v), position.to(Device::CUDA),
                                                        1, 0.2f);
        const Tensor got = gpu_live.to(DType::F32).to(Device::CPU), without = gpu_all.to(DType::F32).to(Device::CPU);
        // f32: the kernel's f32 sums against the reference's doubles; bf16: the
        // output rounded to bf16 once more (|o| < 1: half an ulp is 2^-9).
        const double tolerance = dtype == DType::F32 ? 1e-5 : 1.0 / 256;
        for (int64_t b = 0; b < B; b++) {
          CAPTURE(b);
          if (flags[b]) {
            CHECK(max_abs_diff(row_of(got, b), row_of(expected, b)) <= tolerance);
            CHECK(row_of(got, b) == row_of(without, b));  // bit for bit what the step gave without flags
          } else {
            CHECK(all_zero(row_of(got, b)));
            CHECK(all_zero(row_of(expected, b)));
          }
        }
      }
    }
  }
}
