// cpu/linear.cpp: reference dense layer and gemm as plain loops (f32).
// The one matrix loop is i-k-j over row-major operands (the inner loop runs
// along contiguous rows of b and c, so it vectorises) with OpenMP on the rows.
// BF16 compute is emulated exactly as the GPU runs it: operands rounded to
// bf16, products summed in f32; so CPU and GPU bf16 results can be compared.
#include <vector>

#include "ops/linear.h"

namespace iflame::ops::cpu {

namespace {

// Row-major copy of op(t) (t 2-D contiguous f32), rounded to bf16 if asked.
std::vector<float> op_copy(const Tensor& t, bool transpose, bool round_bf16) {
  const int64_t r = t.size(0), c = t.size(1);
  const float* p = t.data<float>();
  std::vector<float> out(static_cast<size_t>(r * c));
  for (int64_t i = 0; i < r; i++)
    for (int64_t j = 0; j < c; j++) {
      float v = p[i * c + j];
      if (round_bf16) v = round_to_bf16(v);
      if (transpose) out[j * r + i] = v;
      else out[i * c + j] = v;
    }
  return out;
}

// c[m, n] = alpha a[m, k] b[k, n] + beta c (all row-major). beta == 0 ignores c.
void matmul(const float* a, const float* b, float* c, int64_t m, int64_t k, int64_t n, float alpha,
            float beta) {
// Threads only pay off with many rows: a parallel region over the 1-4 rows of a
// decoding step costs more than the work (30-100x on a busy machine).
#pragma omp parallel for schedule(static) if (m >= 16 && m * k * n > 262144)
  for (int64_t i = 0; i < m; i++) {
    std::vector<float> acc(static_cast<size_t>(n), 0.0f);
    const float* arow = a + i * k;
    for (int64_t p = 0; p < k; p++) {
      const float av = arow[p];
      const float* brow = b + p * n;
      for (int64_t j = 0; j < n; j++) acc[j] += av * brow[j];
    }
    float* crow = c + i * n;
    for (int64_t j = 0; j < n; j++)
      crow[j] = beta == 0.0f ? alpha * acc[j] : alpha * acc[j] + beta * crow[j];
  }
}

// grad_x = the product, or (accumulate) grad_x += it, as add(grad_x, product) sums.
void hand_over_grad_x(const Tensor& product, Tensor* grad_x, bool accumulate) {
  if (!accumulate) {
    *grad_x = product;
    return;
  }
  float* acc = grad_x->data<float>();
  const float* p = product.data<float>();
  for (int64_t i = 0; i < product.numel(); i++) acc[i] = acc[i] + p[i];
}

}  // namespace

void gemm(const Tensor& a, bool transpose_a, const Tensor& b, bool transpose_b, Tensor& c,
          float alpha, float beta, DType compute) {
  const bool r = compute == DType::BF16;
  const int64_t m = c.size(0), n = c.size(1), k = transpose_a ? a.size(0) : a.size(1);
  const bool copy_a = transpose_a || r, copy_b = transpose_b || r;
  std::vector<float> ac, bc;
  if (copy_a) ac = op_copy(a, transpose_a, r);
  if (copy_b) bc = op_copy(b, transpose_b, r);
  matmul(copy_a ? ac.data() : a.data<float>(), copy_b ? bc.data() : b.data<float>(), c.data<float>(),
         m, k, n, alpha, beta);
}

Tensor linear_forward(const Tensor& x, const Tensor& weight, const Tensor* bias, DType compute) {
  const int64_t in = weight.size(1), out = weight.size(0), rows = x.numel() / in;
  Shape y_shape = x.shape();
  y_shape.back() = out;
  Tensor y = Tensor::empty(y_shape, DType::F32);
  if (bias) {  // start from the bias in every row, then add x W^T
    float* py = y.data<float>();
    const float* pb = bias->data<float>();
    for (int64_t i = 0; i < rows; i++)
      for (int64_t o = 0; o < out; o++) py[i * out + o] = pb[o];
  }
  Tensor y2 = y.view({rows, out});
  gemm(x.view({rows, in}), false, weight, true, y2, 1.0f, bias ? 1.0f : 0.0f, compute);
  return y;
}

void linear_backward(const Tensor& grad_y, const Tensor& x, const Tensor& weight, DType compute,
                     Tensor* grad_x, Tensor& grad_weight, Tensor* grad_bias, bool accumulate_grad_x) {
  const int64_t in = weight.size(1), out = weight.size(0), rows = x.numel() / in;
  const Tensor gy = grad_y.view({rows, out});
  if (grad_x) {  // grad_x = grad_y W
    Tensor product = Tensor::empty(x.shape(), DType::F32);
    Tensor gx = product.view({rows, in});
    gemm(gy, false, weight, false, gx, 1.0f, 0.0f, compute);
    hand_over_grad_x(product, grad_x, accumulate_grad_x);
  }
  // grad_weight += grad_y^T x
  gemm(gy, true, x.view({rows, in}), false, grad_weight, 1.0f, 1.0f, compute);
  if (grad_bias) {  // grad_bias += sum over rows of grad_y (in double, then once into f32)
    std::vector<double> sum(static_cast<size_t>(out), 0.0);
    const float* p = gy.data<float>();
    for (int64_t i = 0; i < rows; i++)
      for (int64_t o = 0; o < out; o++) sum[o] += p[i * out + o];
    float* gb = grad_bias->data<float>();
    for (int64_t o = 0; o < out; o++) gb[o] += static_cast<float>(sum[o]);
  }
}

void linear_pair_backward(const Tensor& grad_ab, const Tensor& x, const Tensor& packed_weight, int64_t hidden,
                          DType compute, Tensor* grad_x, Tensor& grad_w1, Tensor& grad_w2, bool accumulate_grad_x) {
  const int64_t in = x.size(-1), rows = x.numel() / in, padded = packed_weight.size(0) / 2;
  const Tensor g = grad_ab.view({rows, 2 * padded}), x2 = x.view({rows, in});
  if (grad_x) {  // grad_x = grad_ab W, as linear_backward forms it
    Tensor product = Tensor::empty(x.shape(), DType::F32);
    Tensor p2 = product.view({rows, in});
    gemm(g, false, packed_weight, false, p2, 1.0f, 0.0f, compute);
    hand_over_grad_x(product, grad_x, accumulate_grad_x);
  }
  // Each weight's gradient from its own block of columns (copied contiguous here).
  gemm(g.slice(1, 0, hidden).contiguous(), true, x2, false, grad_w1, 1.0f, 1.0f, compute);
  gemm(g.slice(1, padded, padded + hidden).contiguous(), true, x2, false, grad_w2, 1.0f, 1.0f, compute);
}

}  // namespace iflame::ops::cpu
