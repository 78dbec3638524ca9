// random.h: seeded random fills for initialisation, augmentation and tests.
// A Generator is (seed, number of draws so far); every fill takes the next draw
// number, and element i of a fill depends only on (seed, draw, i). So the same
// seed gives the same tensor on the CPU and the GPU (uniform: bit for bit;
// normal: Box-Muller through logf/cosf, equal to a few ulps).
#pragma once
#include <cstdint>

#include "core/tensor.h"

namespace iflame {

struct Generator {
  explicit Generator(uint64_t seed = 0) : seed(seed) {}
  uint64_t seed;
  uint64_t draws = 0;  // saved in checkpoints so a resumed run continues the stream
  uint64_t next_stream() { return draws++; }
  // One uniform float in [0, 1) on the host (uses one draw).
  float uniform();
};

// Fill an f32 or bf16 tensor (contiguous) with U(lo, hi) or N(mean, std).
void fill_uniform(Tensor& t, Generator& gen, float lo, float hi);
void fill_normal(Tensor& t, Generator& gen, float mean, float stdev);

// Implementation detail shared with random.cu.
void cuda_fill_random(Tensor& t, uint64_t seed, uint64_t stream, bool normal, float a, float b);

}  // namespace iflame
