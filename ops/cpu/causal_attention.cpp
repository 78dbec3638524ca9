// cpu/causal_attention.cpp: the reference causal softmax attention, plain loops in
// double over f32 tensors. Forward: for each query, the softmax of its scaled scores
// over the keys it sees, then the weighted sum of values. Backward: rebuild the
// probabilities P from lse, then (with dP = dO V^T and Dvec_i = dO_i . O_i)
//   dV_j = sum_i P_ij dO_i,  dS_ij = P_ij (dP_ij - Dvec_i),
//   dQ_i = scale sum_j dS_ij K_j,  dK_j = scale sum_i dS_ij Q_i.
#include <cmath>
#include <vector>

#include "ops/causal_attention.h"

namespace iflame::ops::cpu {

namespace {
struct Dims {
  int64_t B, Tq, Tk, H, D;
};
Dims dims_of(const Tensor& q, const Tensor& k) {
  return {q.size(0), q.size(1), k.size(1), q.size(2), q.size(3)};
}
// Element (b, t, h, 0) of a contiguous [B, T, H, D] tensor.
inline int64_t row_index(int64_t b, int64_t t, int64_t h, int64_t T, int64_t H, int64_t D) {
  return ((b * T + t) * H + h) * D;
}
inline double dot(const float* a, const float* b, int64_t D) {
  double s = 0;
  for (int64_t d = 0; d < D; d++) s += double(a[d]) * double(b[d]);
  return s;
}
}  // namespace

Tensor causal_attention_forward(const Tensor& q, const Tensor& k, const Tensor& v, float scale,
                                Tensor* lse) {
  const Dims n = dims_of(q, k);
  const int64_t offset = n.Tk - n.Tq;  // query i sees keys 0 .. i + offset
  Tensor o = Tensor::zeros(q.shape());
  Tensor lse_out = Tensor::zeros({n.B, n.H, n.Tq});
  const float *Q = q.data<float>(), *K = k.data<float>(), *V = v.data<float>();
  float *O = o.data<float>(), *L = lse_out.data<float>();
  std::vector<double> score(n.Tk), out(n.D);
#pragma omp parallel for collapse(2) firstprivate(score, out) if (n.B * n.H * n.Tq * n.Tk > 100000)
  for (int64_t b = 0; b < n.B; b++)
    for (int64_t h = 0; h < n.H; h++)
      for (int64_t i = 0; i < n.Tq; i++) {
        const float* qi = Q + row_index(b, i, h, n.Tq, n.H, n.D);
        const int64_t last = i + offset;
        double max_score = -INFINITY;
        for (int64_t j = 0; j <= last; j++) {
          score[j] = scale * dot(qi, K + row_index(b, j, h, n.Tk, n.H, n.D), n.D);
          max_score = std::fmax(max_score, score[j]);
        }
        double total = 0;
        for (int64_t d = 0; d < n.D; d++) out[d] = 0;
        for (int64_t j = 0; j <= last; j++) {
          double p = std::exp(score[j] - max_score);
          total += p;
          const float* vj = V + row_index(b, j, h, n.Tk, n.H, n.D);
          for (int64_t d = 0; d < n.D; d++) out[d] += p * vj[d];
        }
        float* oi = O + row_index(b, i, h, n.Tq, n.H, n.D);
        for (int64_t d = 0; d < n.D; d++) oi[d] = static_cast<float>(out[d] / total);
        L[(b * n.H + h) * n.Tq + i] = static_cast<float>(max_score + std::log(total));
      }
  if (lse) *lse = lse_out;
  return o;
}

void causal_attention_backward(const Tensor& grad_o, const Tensor& q, const Tensor& k,
                               const Tensor& v, const Tensor& o, const Tensor& lse, float scale,
                               Tensor& grad_q, Tensor& grad_k, Tensor& grad_v) {
  const Dims n = dims_of(q, k);
  const int64_t offset = n.Tk - n.Tq;
  const float *Q = q.data<float>(), *K = k.data<float>(), *V = v.data<float>();
  const float *O = o.data<float>(), *dO = grad_o.data<float>(), *L = lse.data<float>();
  // Accumulate in double, round once at the end.
  std::vector<double> dq(q.numel(), 0.0), dk(k.numel(), 0.0), dv(v.numel(), 0.0);
  // (b, h) pairs write disjoint rows, so they can run in parallel.
#pragma omp parallel for collapse(2) if (n.B * n.H * n.Tq * n.Tk > 100000)
  for (int64_t b = 0; b < n.B; b++)
    for (int64_t h = 0; h < n.H; h++)
      for (int64_t i = 0; i < n.Tq; i++) {
        const int64_t qi_at = row_index(b, i, h, n.Tq, n.H, n.D);
        const float *qi = Q + qi_at, *doi = dO + qi_at;
        const double lse_i = L[(b * n.H + h) * n.Tq + i];
        const double dvec_i = dot(doi, O + qi_at, n.D);
        for (int64_t j = 0; j <= i + offset; j++) {
          const int64_t kj_at = row_index(b, j, h, n.Tk, n.H, n.D);
          const float *kj = K + kj_at, *vj = V + kj_at;
          const double p = std::exp(scale * dot(qi, kj, n.D) - lse_i);
          const double dp = dot(doi, vj, n.D);
          const double ds = p * (dp - dvec_i);
          for (int64_t d = 0; d < n.D; d++) {
            dv[kj_at + d] += p * doi[d];
            dq[qi_at + d] += scale * ds * kj[d];
            dk[kj_at + d] += scale * ds * qi[d];
          }
        }
      }
  auto to_tensor = [](const std::vector<double>& g, const Shape& shape) {
    Tensor t = Tensor::empty(shape);
    float* p = t.data<float>();
    for (size_t i = 0; i < g.size(); i++) p[i] = static_cast<float>(g[i]);
    return t;
  };
  grad_q = to_tensor(dq, q.shape());
  grad_k = to_tensor(dk, k.shape());
  grad_v = to_tensor(dv, v.shape());
}

}  // namespace iflame::ops::cpu
