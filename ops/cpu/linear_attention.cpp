// cpu/linear_attention.cpp: reference decayed linear attention (spec §2).
//
// Three ways to compute the same thing, each tested against the first:
//  - direct: the O(T^2) double sum exactly as the formula reads (the definition);
//  - recurrent: forward state S_t = e^{-s} S_{t-1} + k_t^T v_t, o_t = q_t S_t, and for
//    the backward dq_t = do_t S_t^T plus a reverse state R_t = e^{-s} R_{t+1} + q_t^T do_t
//    with dk_t = R_t v_t, dv_t = R_t^T k_t;
//  - chunked: the CUDA kernel's algorithm, in f32 like the kernel.
// All three are plain loops over f32 tensors [B, T, H, D].
#include <algorithm>
#include <cmath>
#include <vector>

#include "core/error.h"
#include "ops/linear_attention.h"

namespace iflame::ops {

std::vector<float> linear_attention_slopes(int num_heads) {
  IFLAME_CHECK(num_heads >= 1, "linear_attention_slopes: need at least one head, got ", num_heads);
  // The reference (ALiBi's get_slopes), in double as Python computes it:
  //   start = 2 ** (-(2 ** -(log2(n) - 3))); slopes = [start * start**i for i in range(n)]
  auto power_of_two_slopes = [](int n) {
    const double start = std::pow(2.0, -std::pow(2.0, -(std::log2(double(n)) - 3.0)));
    std::vector<double> s(n);
    for (int i = 0; i < n; i++) s[i] = start * std::pow(start, double(i));
    return s;
  };
  std::vector<double> slopes;
  int closest = 1;
  while (closest * 2 <= num_heads) closest *= 2;
  if (closest == num_heads) {
    slopes = power_of_two_slopes(num_heads);
  } else {  // closest power of two below, then every other slope of twice that
    slopes = power_of_two_slopes(closest);
    std::vector<double> extra = power_of_two_slopes(2 * closest);
    for (int i = 0; i < num_heads - closest; i++) slopes.push_back(extra[2 * i]);
  }
  return std::vector<float>(slopes.begin(), slopes.end());
}

namespace cpu {

namespace {
struct Dims {
  int64_t B, T, H, D;
};
Dims dims_of(const Tensor& q) { return {q.size(0), q.size(1), q.size(2), q.size(3)}; }
inline int64_t row_index(const Dims& n, int64_t b, int64_t t, int64_t h) {
  return ((b * n.T + t) * n.H + h) * n.D;
}
inline double dot(const float* a, const float* b, int64_t D) {
  double s = 0;
  for (int64_t d = 0; d < D; d++) s += double(a[d]) * double(b[d]);
  return s;
}
Tensor to_tensor(const std::vector<double>& g, const Shape& shape) {
  Tensor t = Tensor::empty(shape);
  float* p = t.data<float>();
  for (size_t i = 0; i < g.size(); i++) p[i] = static_cast<float>(g[i]);
  return t;
}
}  // namespace

// ---- direct sums (the definition) ----

Tensor linear_attention_forward(const Tensor& q, const Tensor& k, const Tensor& v,
                                const std::vector<float>& slopes) {
  const Dims n = dims_of(q);
  const float *Q = q.data<float>(), *K = k.data<float>(), *V = v.data<float>();
  std::vector<double> o(q.numel(), 0.0);
  for (int64_t b = 0; b < n.B; b++)
    for (int64_t h = 0; h < n.H; h++)
      for (int64_t t = 0; t < n.T; t++)
        for (int64_t j = 0; j <= t; j++) {
          const double w = std::exp(-double(slopes[h]) * double(t - j));
          const double qk = dot(Q + row_index(n, b, t, h), K + row_index(n, b, j, h), n.D);
          const float* vj = V + row_index(n, b, j, h);
          for (int64_t d = 0; d < n.D; d++) o[row_index(n, b, t, h) + d] += w * qk * vj[d];
        }
  return to_tensor(o, q.shape());
}

void linear_attention_backward(const Tensor& grad_o, const Tensor& q, const Tensor& k,
                               const Tensor& v, const std::vector<float>& slopes, Tensor& grad_q,
                               Tensor& grad_k, Tensor& grad_v) {
  // o_t = sum_{j<=t} w_tj (q_t . k_j) v_j, w_tj = exp(-s (t - j)), so for each pair (t, j):
  //   dq_t += w (do_t . v_j) k_j,  dk_j += w (do_t . v_j) q_t,  dv_j += w (q_t . k_j) do_t.
  const Dims n = dims_of(q);
  const float *Q = q.data<float>(), *K = k.data<float>(), *V = v.data<float>();
  const float* dO = grad_o.data<float>();
  std::vector<double> dq(q.numel(), 0.0), dk(q.numel(), 0.0), dv(q.numel(), 0.0);
  for (int64_t b = 0; b < n.B; b++)
    for (int64_t h = 0; h < n.H; h++)
      for (int64_t t = 0; t < n.T; t++)
        for (int64_t j = 0; j <= t; j++) {
          const int64_t at_t = row_index(n, b, t, h), at_j = row_index(n, b, j, h);
          const double w = std::exp(-double(slopes[h]) * double(t - j));
          const double do_v = dot(dO + at_t, V + at_j, n.D);
          const double q_k = dot(Q + at_t, K + at_j, n.D);
          for (int64_t d = 0; d < n.D; d++) {
            dq[at_t + d] += w * do_v * K[at_j + d];
            dk[at_j + d] += w * do_v * Q[at_t + d];
            dv[at_j + d] += w * q_k * dO[at_t + d];
          }
        }
  grad_q = to_tensor(dq, q.shape());
  grad_k = to_tensor(dk, k.shape());
  grad_v = to_tensor(dv, v.shape());
}

// ---- recurrence ----

Tensor linear_attention_forward_recurrent(const Tensor& q, const Tensor& k, const Tensor& v,
                                          const std::vector<float>& slopes) {
  const Dims n = dims_of(q);
  const float *Q = q.data<float>(), *K = k.data<float>(), *V = v.data<float>();
  std::vector<double> o(q.numel(), 0.0), S(n.D * n.D);
  for (int64_t b = 0; b < n.B; b++)
    for (int64_t h = 0; h < n.H; h++) {
      const double decay = std::exp(-double(slopes[h]));
      std::fill(S.begin(), S.end(), 0.0);
      for (int64_t t = 0; t < n.T; t++) {
        const int64_t at = row_index(n, b, t, h);
        for (int64_t e = 0; e < n.D; e++)  // S = decay S + k_t^T v_t
          for (int64_t d = 0; d < n.D; d++)
            S[e * n.D + d] = decay * S[e * n.D + d] + double(K[at + e]) * V[at + d];
        for (int64_t d = 0; d < n.D; d++)  // o_t = q_t S
          for (int64_t e = 0; e < n.D; e++) o[at + d] += double(Q[at + e]) * S[e * n.D + d];
      }
    }
  return to_tensor(o, q.shape());
}

void linear_attention_backward_recurrent(const Tensor& grad_o, const Tensor& q, const Tensor& k,
                                         const Tensor& v, const std::vector<float>& slopes,
                                         Tensor& grad_q, Tensor& grad_k, Tensor& grad_v) {
  const Dims n = dims_of(q);
  const float *Q = q.data<float>(), *K = k.data<float>(), *V = v.data<float>();
  const float* dO = grad_o.data<float>();
  std::vector<double> dq(q.numel(), 0.0), dk(q.numel(), 0.0), dv(q.numel(), 0.0);
  std::vector<double> S(n.D * n.D), R(n.D * n.D);
  for (int64_t b = 0; b < n.B; b++)
    for (int64_t h = 0; h < n.H; h++) {
      const double decay = std::exp(-double(slopes[h]));
      std::fill(S.begin(), S.end(), 0.0);
      for (int64_t t = 0; t < n.T; t++) {  // forward sweep: dq_t = do_t S_t^T
        const int64_t at = row_index(n, b, t, h);
        for (int64_t e = 0; e < n.D; e++)
          for (int64_t d = 0; d < n.D; d++)
            S[e * n.D + d] = decay * S[e * n.D + d] + double(K[at + e]) * V[at + d];
        for (int64_t e = 0; e < n.D; e++)
          for (int64_t d = 0; d < n.D; d++) dq[at + e] += double(dO[at + d]) * S[e * n.D + d];
      }
      std::fill(R.begin(), R.end(), 0.0);
      for (int64_t t = n.T - 1; t >= 0; t--) {  // reverse sweep: dk_t = R_t v_t, dv_t = R_t^T k_t
        const int64_t at = row_index(n, b, t, h);
        for (int64_t e = 0; e < n.D; e++)
          for (int64_t d = 0; d < n.D; d++)
            R[e * n.D + d] = decay * R[e * n.D + d] + double(Q[at + e]) * dO[at + d];
        for (int64_t e = 0; e < n.D; e++)
          for (int64_t d = 0; d < n.D; d++) {
            dk[at + e] += R[e * n.D + d] * V[at + d];
            dv[at + d] += R[e * n.D + d] * K[at + e];
          }
      }
    }
  grad_q = to_tensor(dq, q.shape());
  grad_k = to_tensor(dk, k.shape());
  grad_v = to_tensor(dv, v.shape());
}

// ---- chunked (the CUDA kernel's algorithm) ----
//
// Every pass of forward and backward is one "decayed causal product"
//   out_p = sum_{p' <= p} exp(-s (p - p')) (a_p . b_p') c_p'
// over positions p = t (forward in time) or p = T-1-t (reversed):
//   o  = product(q, k, v)            dq = product(do, v, k)
//   dk = reversed product(v, do, q)  dv = reversed product(k, q, do)
// Per chunk of positions [c0, c0 + n): the part from inside the chunk is a masked
// n x n product; the part from before it goes through the state
// M = sum_{p' < c0} exp(-s (c0 - 1 - p')) b_p'^T c_p', so
//   out_{c0+r} = exp(-s (r+1)) a_{c0+r} M + sum_{j <= r} exp(-s (r-j)) (a_{c0+r} . b_{c0+j}) c_{c0+j}
//   M <- exp(-s n) M + sum_{j < n} exp(-s (n-1-j)) b_{c0+j}^T c_{c0+j}.

namespace {
Tensor decayed_causal_product_chunked(const Tensor& a, const Tensor& b, const Tensor& c,
                                      const std::vector<float>& slopes, int chunk, bool reverse) {
  IFLAME_CHECK(chunk >= 1, "linear attention (chunked): chunk must be >= 1, got ", chunk);
  const Dims n = dims_of(a);
  const int64_t D = n.D;
  const float *A = a.data<float>(), *Bm = b.data<float>(), *C = c.data<float>();
  Tensor out = Tensor::zeros(a.shape());
  float* O = out.data<float>();
  std::vector<float> decay(chunk + 1), M(D * D), scores(chunk * chunk);
  for (int64_t bi = 0; bi < n.B; bi++)
    for (int64_t h = 0; h < n.H; h++) {
      for (int i = 0; i <= chunk; i++) decay[i] = std::exp(-slopes[h] * float(i));
      std::fill(M.begin(), M.end(), 0.0f);
      auto at = [&](int64_t p) {  // row of position p
        return row_index(n, bi, reverse ? n.T - 1 - p : p, h);
      };
      for (int64_t c0 = 0; c0 < n.T; c0 += chunk) {
        const int64_t len = std::min<int64_t>(chunk, n.T - c0);
        for (int64_t r = 0; r < len; r++)  // masked, decayed scores inside the chunk
          for (int64_t j = 0; j <= r; j++) {
            float s = 0;
            for (int64_t e = 0; e < D; e++) s += A[at(c0 + r) + e] * Bm[at(c0 + j) + e];
            scores[r * chunk + j] = s * decay[r - j];
          }
        for (int64_t r = 0; r < len; r++)
          for (int64_t d = 0; d < D; d++) {
            float inside = 0, before = 0;
            for (int64_t j = 0; j <= r; j++) inside += scores[r * chunk + j] * C[at(c0 + j) + d];
            for (int64_t e = 0; e < D; e++) before += A[at(c0 + r) + e] * M[e * D + d];
            O[at(c0 + r) + d] = inside + decay[r + 1] * before;
          }
        for (int64_t e = 0; e < D; e++)
          for (int64_t d = 0; d < D; d++) {
            float sum = 0;
            for (int64_t j = 0; j < len; j++)
              sum += decay[len - 1 - j] * Bm[at(c0 + j) + e] * C[at(c0 + j) + d];
            M[e * D + d] = decay[len] * M[e * D + d] + sum;
          }
      }
    }
  return out;
}
}  // namespace

Tensor linear_attention_forward_chunked(const Tensor& q, const Tensor& k, const Tensor& v,
                                        const std::vector<float>& slopes, int chunk) {
  return decayed_causal_product_chunked(q, k, v, slopes, chunk, false);
}

void linear_attention_backward_chunked(const Tensor& grad_o, const Tensor& q, const Tensor& k,
                                       const Tensor& v, const std::vector<float>& slopes,
                                       int chunk, Tensor& grad_q, Tensor& grad_k, Tensor& grad_v) {
  grad_q = decayed_causal_product_chunked(grad_o, v, k, slopes, chunk, false);
  grad_k = decayed_causal_product_chunked(v, grad_o, q, slopes, chunk, true);
  grad_v = decayed_causal_product_chunked(k, q, grad_o, slopes, chunk, true);
}

// ---- one decoding step ----

Tensor linear_attention_step(const Tensor& q, const Tensor& k, const Tensor& v, Tensor& state,
                             const std::vector<float>& slopes) {
  const int64_t B = q.size(0), H = q.size(1), D = q.size(2);
  const float *Q = q.data<float>(), *K = k.data<float>(), *V = v.data<float>();
  float* S = state.data<float>();
  Tensor o = Tensor::empty(q.shape());
  float* O = o.data<float>();
  for (int64_t b = 0; b < B; b++)
    for (int64_t h = 0; h < H; h++) {
      const float decay = std::exp(-slopes[h]);
      const int64_t row = (b * H + h) * D;
      float* Sbh = S + (b * H + h) * D * D;
      for (int64_t e = 0; e < D; e++)
        for (int64_t d = 0; d < D; d++)
          Sbh[e * D + d] = decay * Sbh[e * D + d] + K[row + e] * V[row + d];
      for (int64_t d = 0; d < D; d++) {
        double sum = 0;
        for (int64_t e = 0; e < D; e++) sum += double(Q[row + e]) * Sbh[e * D + d];
        O[row + d] = static_cast<float>(sum);
      }
    }
  return o;
}

}  // namespace cpu
}  // namespace iflame::ops
