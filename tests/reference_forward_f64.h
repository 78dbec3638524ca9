// reference_forward_f64.h: the whole iFlame forward pass of spec §2 in float64,
// plain loops, one sequence at a time: the yardstick the long-sequence tests
// measure the float32 model (CPU and GPU) and cached decoding against.
//
// It reads the float32 model's own weights (widened to double, so exactly the
// same numbers) and keeps in float32 only what the spec defines in float32: the
// RoPE frequencies and angles (angle = float32(pos) * float32(f_j), rounded to
// float32), the decay slopes, the norms' eps and the attention scale. Everything
// else (products, sums, exp, the linear attention's decayed state over the whole
// sequence) is double.
//
// With `rounding_noise` set, every op's output is multiplied by (1 + e), e
// uniform in [-u sqrt(n), u sqrt(n)], u = 2^-24 the float32 unit roundoff and n
// the length of the sum that made the value (1 for elementwise results): the
// size of the rounding a float32 implementation commits, propagated through this
// very network. The tests derive their float32 bounds from the difference of
// that run and the exact one (tests/test_long_sequences.cpp says how).
#pragma once
#include <cstdint>
#include <vector>

#include "nn/model_weights.h"

namespace iflame::test {

struct ReferenceOptions {
  bool rounding_noise = false;
  uint64_t noise_seed = 1;
  // A deliberate departure, for the test that shows the bound can fail: the
  // linear attention's per-step decay e^{-s} rounded to bf16, as a kernel that
  // kept it (or the state) in bf16 would: off by up to 2^-9 per step, which
  // compounds over the long distances the decay reaches.
  bool decay_in_bf16 = false;
};

// Logits of one token sequence: [T_padded * vocab] doubles, row t = position t,
// where the tokens are padded on the right with token 0 to a multiple of 9 as
// the model pads them. `weights` must be on the CPU. Uses OpenMP threads where
// the build has them.
std::vector<double> reference_logits_f64(const ModelWeights& weights, const std::vector<int32_t>& tokens,
                                         const ReferenceOptions& options = {});

}  // namespace iflame::test
