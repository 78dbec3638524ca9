// cpu/embedding.cpp: the reference embedding lookup and scatter-add, plain loops in f32.
#include "ops/embedding.h"

#include "core/error.h"

namespace iflame::ops::cpu {

Tensor embedding_forward(const Tensor& weight, const Tensor& tokens, DType out_dtype) {
  IFLAME_CHECK(out_dtype == DType::F32, "cpu::embedding_forward: f32 output only");
  const int64_t vocab = weight.size(0), d = weight.size(1), n = tokens.numel();
  Shape out_shape = tokens.shape();
  out_shape.push_back(d);
  Tensor out = Tensor::empty(out_shape, DType::F32);
  const float* w = weight.data<float>();
  const int32_t* tok = tokens.data<int32_t>();
  float* y = out.data<float>();
  for (int64_t s = 0; s < n; s++) {
    IFLAME_CHECK(tok[s] >= 0 && tok[s] < vocab, "cpu::embedding_forward: token ", tok[s], " at ", s,
                 " outside [0, ", vocab, ")");
    for (int64_t j = 0; j < d; j++) y[s * d + j] = w[tok[s] * d + j];
  }
  return out;
}

void embedding_backward(const Tensor& grad_out, const Tensor& tokens, Tensor& grad_weight) {
  const int64_t vocab = grad_weight.size(0), d = grad_weight.size(1), n = tokens.numel();
  const float* g = grad_out.data<float>();
  const int32_t* tok = tokens.data<int32_t>();
  float* gw = grad_weight.data<float>();
  for (int64_t s = 0; s < n; s++) {
    IFLAME_CHECK(tok[s] >= 0 && tok[s] < vocab, "cpu::embedding_backward: token ", tok[s], " at ", s,
                 " outside [0, ", vocab, ")");
    for (int64_t j = 0; j < d; j++) gw[tok[s] * d + j] += g[s * d + j];
  }
}

}  // namespace iflame::ops::cpu
