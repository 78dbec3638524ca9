// random.cpp: host side of the seeded fills.
#include "core/random.h"

#include "core/error.h"
#include "core/random_math.h"

namespace iflame {

float Generator::uniform() { return random_uniform_at(seed, next_stream(), 0, 0.0f, 1.0f); }

namespace {
void fill_random(Tensor& t, Generator& gen, bool normal, float a, float b) {
  IFLAME_CHECK(t.dtype() != DType::I32, "random fill of an integer tensor ", t.describe());
  IFLAME_CHECK(t.is_contiguous(), "random fill needs a contiguous tensor, got ", t.describe());
  uint64_t stream = gen.next_stream();
  if (t.is_cuda()) {
    cuda_fill_random(t, gen.seed, stream, normal, a, b);
    return;
  }
  const int64_t n = t.numel();
  for (int64_t i = 0; i < n; i++) {
    float v = normal ? random_normal_at(gen.seed, stream, i, a, b)
                     : random_uniform_at(gen.seed, stream, i, a, b);
    if (t.dtype() == DType::F32)
      t.data<float>()[i] = v;
    else
      t.data<bf16>()[i] = float_to_bf16(v);
  }
}
}  // namespace

void fill_uniform(Tensor& t, Generator& gen, float lo, float hi) { fill_random(t, gen, false, lo, hi); }
void fill_normal(Tensor& t, Generator& gen, float mean, float sd) { fill_random(t, gen, true, mean, sd); }

#ifndef IFLAME_CUDA
void cuda_fill_random(Tensor&, uint64_t, uint64_t, bool, float, float) {
  IFLAME_FAIL("built without CUDA");
}
#endif

}  // namespace iflame
