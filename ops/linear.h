// linear.h: the dense layer y = x W^T + b (PyTorch Linear layout, W is [out, in]),
// its backward, and a plain 2-D matrix product for the optimizer (Muon).
//
// Precision. `compute` says what the matrix products multiply in:
//   F32  exact f32 products (cuBLAS CUBLAS_COMPUTE_32F with the default math mode:
//        no TF32, so the golden tests can ask for 1e-4);
//   BF16 operands rounded to bf16, products accumulated in f32.
// Outputs are in the activation (x) dtype; parameter gradients are f32 and are
// ACCUMULATED (+=) into tensors the caller owns and zeroes.
// The CPU reference takes f32 tensors only and emulates BF16 compute exactly
// (operands rounded to bf16, f32 sums), so CPU and GPU bf16 runs can be compared.
#pragma once
#include "ops/dispatch.h"

namespace iflame::ops {

// x [..., in] (f32 or bf16), weight f32 [out, in] (or, on the GPU with bf16
// compute, already bf16), bias f32 [out] or nullptr.
// Returns [..., out] in x's dtype.
Tensor linear_forward(const Tensor& x, const Tensor& weight, const Tensor* bias, DType compute);

// grad_y [..., out] (f32 or bf16; same leading dims as x).
// grad_x: if non-null, set to a new tensor shaped and typed like x; with
// accumulate_grad_x, *grad_x is instead a contiguous tensor shaped and typed like
// x that grad_y W is added into (on the GPU in the product itself, beta = 1: the
// gradient x already has, without a separate add over both).
// grad_weight: f32 [out, in], += grad_y^T x.   grad_bias: f32 [out] or nullptr, += sum of grad_y rows.
void linear_backward(const Tensor& grad_y, const Tensor& x, const Tensor& weight, DType compute,
                     Tensor* grad_x, Tensor& grad_weight, Tensor* grad_bias, bool accumulate_grad_x = false);

// The FFN's proj1 and proj2 (same input, same shapes) as one product. Their
// weights [H, in] and biases [H] are packed with zero rows up to P >= H each:
// W = [W1; 0; W2; 0] [2P, in], b = [b1; 0; b2; 0] [2P]. Returns ab = x W^T + b
// [..., 2P] in x's dtype (a = proj1 x in the first P columns, b = proj2 x in the
// last P: swiglu_packed_forward's input; the padded columns are exactly 0), and
// sets packed_weight to W (in the compute dtype on the GPU), for the backward.
Tensor linear_pair_forward(const Tensor& x, const Tensor& w1, const Tensor& b1, const Tensor& w2, const Tensor& b2,
                           int64_t padded, DType compute, Tensor& packed_weight);
// grad_ab [..., 2P] (x's dtype). grad_x = grad_ab W: set to a new tensor, or with
// accumulate_grad_x added into *grad_x (as linear_backward). grad_w1 += (the first
// H columns of grad_ab)^T x, grad_w2 += (columns P .. P + H)^T x: the padded
// rows' gradients are never formed. The biases' gradients are grad_ab's column
// sums (swiglu_packed_backward gives them).
void linear_pair_backward(const Tensor& grad_ab, const Tensor& x, const Tensor& packed_weight, int64_t hidden,
                          DType compute, Tensor* grad_x, Tensor& grad_w1, Tensor& grad_w2, bool accumulate_grad_x);

// c = alpha op(a) op(b) + beta c on contiguous 2-D f32 tensors; op(t) = t^T when
// the flag is set. With beta == 0, c's old contents are ignored (may be garbage).
void gemm(const Tensor& a, bool transpose_a, const Tensor& b, bool transpose_b, Tensor& c,
          float alpha, float beta, DType compute);

namespace cpu {
Tensor linear_forward(const Tensor& x, const Tensor& weight, const Tensor* bias, DType compute);
void linear_pair_backward(const Tensor& grad_ab, const Tensor& x, const Tensor& packed_weight, int64_t hidden,
                          DType compute, Tensor* grad_x, Tensor& grad_w1, Tensor& grad_w2, bool accumulate_grad_x);
void linear_backward(const Tensor& grad_y, const Tensor& x, const Tensor& weight, DType compute,
                     Tensor* grad_x, Tensor& grad_weight, Tensor* grad_bias, bool accumulate_grad_x);
void gemm(const Tensor& a, bool transpose_a, const Tensor& b, bool transpose_b, Tensor& c,
          float alpha, float beta, DType compute);
}  // namespace cpu

namespace cuda {
Tensor linear_forward(const Tensor& x, const Tensor& weight, const Tensor* bias, DType compute);
void linear_pair_backward(const Tensor& grad_ab, const Tensor& x, const Tensor& packed_weight, int64_t hidden,
                          DType compute, Tensor* grad_x, Tensor& grad_w1, Tensor& grad_w2, bool accumulate_grad_x);
void linear_backward(const Tensor& grad_y, const Tensor& x, const Tensor& weight, DType compute,
                     Tensor* grad_x, Tensor& grad_weight, Tensor* grad_bias, bool accumulate_grad_x);
void gemm(const Tensor& a, bool transpose_a, const Tensor& b, bool transpose_b, Tensor& c,
          float alpha, float beta, DType compute);
// The general form behind the ones above (also used by Newton-Schulz): a, b, c
// row-major 2-D GPU tensors (rows of unit stride, possibly further apart than
// their length: a block of columns of a wider matrix), each f32 or bf16 independently; operands are
// converted to `compute` when they are not in it already, f32 accumulation, the
// result rounded once into c's dtype.
void gemm_mixed(const Tensor& a, bool transpose_a, const Tensor& b, bool transpose_b, Tensor& c,
                float alpha, float beta, DType compute);
#ifdef IFLAME_CUDA
// linear_forward's cuBLASLt path (a bias added in the product's epilogue, bf16
// compute) is the kernel choice lt_bias (ops/kernel_choices.h).
// How many products that path has done so far (tests: it did not fall back).
int64_t lt_bias_matmuls();
#endif
}  // namespace cuda

}  // namespace iflame::ops
