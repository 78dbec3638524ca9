// cpu/cross_entropy.cpp: the reference cross-entropy, plain loops; sums in double.
#include "ops/cross_entropy.h"

#include <cmath>

#include "core/error.h"

namespace iflame::ops::cpu {

CrossEntropyOutput cross_entropy_forward(const Tensor& logits, const Tensor& targets, int ignore_index) {
  const int64_t V = logits.size(-1), N = logits.numel() / V;
  CrossEntropyOutput out;
  out.lse = Tensor::empty({N}, DType::F32);
  const float* l = logits.data<float>();
  const int32_t* t = targets.data<int32_t>();
  float* lse = out.lse.data<float>();
  double loss_sum = 0, correct = 0, valid = 0;
  for (int64_t n = 0; n < N; n++) {
    const float* row = l + n * V;
    int64_t argmax = 0;
    for (int64_t v = 1; v < V; v++)
      if (row[v] > row[argmax]) argmax = v;  // strict: the first maximum wins ties
    const float row_max = row[argmax];
    double sum_exp = 0;
    for (int64_t v = 0; v < V; v++) sum_exp += std::exp(double(row[v]) - double(row_max));
    lse[n] = float(double(row_max) + std::log(sum_exp));
    if (t[n] == ignore_index) continue;
    IFLAME_CHECK(t[n] >= 0 && t[n] < V, "cpu::cross_entropy_forward: target ", t[n], " of row ", n,
                 " outside [0, ", V, ")");
    loss_sum += double(lse[n]) - double(row[t[n]]);
    correct += (argmax == t[n]) ? 1 : 0;
    valid += 1;
  }
  out.loss = Tensor::full({1}, valid > 0 ? float(loss_sum / valid) : 0.0f);
  out.accuracy = Tensor::full({1}, valid > 0 ? float(correct / valid) : 0.0f);
  out.valid_count = Tensor::full({1}, float(valid));
  return out;
}

Tensor cross_entropy_backward(const Tensor& grad_loss, const Tensor& logits, const Tensor& targets,
                              const CrossEntropyOutput& fwd, int ignore_index) {
  const int64_t V = logits.size(-1), N = logits.numel() / V;
  Tensor grad = Tensor::zeros(logits.shape(), DType::F32);
  const float* l = logits.data<float>();
  const int32_t* t = targets.data<int32_t>();
  const float* lse = fwd.lse.data<float>();
  const float valid = fwd.valid_count.data<float>()[0];
  if (valid == 0) return grad;  // every row ignored
  const float factor = grad_loss.data<float>()[0] / valid;
  float* g = grad.data<float>();
  for (int64_t n = 0; n < N; n++) {
    if (t[n] == ignore_index) continue;
    for (int64_t v = 0; v < V; v++) {
      const float softmax = std::exp(l[n * V + v] - lse[n]);
      g[n * V + v] = factor * (softmax - (v == t[n] ? 1.0f : 0.0f));
    }
  }
  return grad;
}

}  // namespace iflame::ops::cpu
