// cpu/cached_attention.cpp: the reference cached attention step, plain loops
// in double like cpu/causal_attention.cpp (see cached_attention.h).
#include <algorithm>
#include <cmath>
#include <vector>

#include "core/error.h"
#include "ops/cached_attention.h"

namespace iflame::ops::cpu {

Tensor cached_attention_step(const Tensor& q, const Tensor& k_cache, const Tensor& v_cache,
                             const std::vector<int64_t>& lengths, float scale) {
  IFLAME_CHECK(q.dtype() == DType::F32 && k_cache.dtype() == DType::F32,
               "cached_attention_step: the CPU reference takes f32 only, got ", q.describe());
  const int64_t B = q.size(0), H = q.size(1), D = q.size(2), cap = k_cache.size(1);
  Tensor o = Tensor::empty(q.shape());
  const float *Q = q.data<float>(), *K = k_cache.data<float>(), *V = v_cache.data<float>();
  float* O = o.data<float>();
  std::vector<double> score(B == 0 ? 0 : *std::max_element(lengths.begin(), lengths.end())), out(D);
  for (int64_t b = 0; b < B; b++)
    for (int64_t h = 0; h < H; h++) {
      const int64_t length = lengths[b];
      const float* qi = Q + (b * H + h) * D;
      double max_score = -INFINITY;
      for (int64_t j = 0; j < length; j++) {
        const float* kj = K + ((b * cap + j) * H + h) * D;
        double s = 0;
        for (int64_t d = 0; d < D; d++) s += double(qi[d]) * double(kj[d]);
        score[j] = scale * s;
        max_score = std::fmax(max_score, score[j]);
      }
      double total = 0;
      for (int64_t d = 0; d < D; d++) out[d] = 0;
      for (int64_t j = 0; j < length; j++) {
        const double p = std::exp(score[j] - max_score);
        total += p;
        const float* vj = V + ((b * cap + j) * H + h) * D;
        for (int64_t d = 0; d < D; d++) out[d] += p * vj[d];
      }
      float* oi = O + (b * H + h) * D;
      for (int64_t d = 0; d < D; d++) oi[d] = length == 0 ? 0.0f : static_cast<float>(out[d] / total);
    }
  return o;
}

}  // namespace iflame::ops::cpu
