// cuda/linear.cu: the dense layer and gemm on cuBLAS (cublasGemmEx, f32 accumulation).
//
// cuBLAS is column-major; a row-major [r, c] matrix is the column-major [c, r]
// matrix of its transpose. So row-major C = op(A) op(B) is computed as the
// column-major C^T = op(B)^T op(A)^T: swap the operands, keep the flags.
// F32 compute uses CUBLAS_COMPUTE_32F under the handle's default math mode,
// which never uses TF32 (the golden tests need exact f32 products).
// Bias: y is first filled with the bias (rounded to y's dtype), then the product
// is added (beta = 1).
// Bias gradient: ones^T grad_y as a GEMV-shaped product, deterministic.
#include <algorithm>
#include <climits>

#include "core/cuda_check.h"
#include "ops/linear.h"

namespace iflame::ops::cuda {

namespace {

cudaDataType cuda_type(DType t) {
  if (t == DType::F32) return CUDA_R_32F;
  if (t == DType::BF16) return CUDA_R_16BF;
  IFLAME_FAIL("gemm: no cuBLAS type for ", dtype_name(t));
}

int as_int(int64_t v, const char* what) {
  IFLAME_CHECK(v >= 0 && v <= INT_MAX, "gemm: ", what, " = ", v, " does not fit cuBLAS's int");
  return static_cast<int>(v);
}

__device__ __forceinline__ void store(float* p, float v) { *p = v; }
__device__ __forceinline__ void store(bf16* p, float v) { *p = float_to_bf16(v); }

// y[i, o] = b[o] for every row i: a block per row at a time, its threads across
// the row (coalesced stores, no index division: the row-major flat index with a
// modulo per element ran at a third of the memory's rate).
template <typename T>
__global__ void fill_rows_kernel(T* __restrict__ y, const float* __restrict__ b, long long rows, int out) {
  for (long long r = blockIdx.x; r < rows; r += gridDim.x) {
    T* row = y + r * out;
    for (int o = threadIdx.x; o < out; o += blockDim.x) store(row + o, b[o]);
  }
}

void fill_rows(Tensor& y, const Tensor& bias) {
  const long long out = bias.numel(), rows = y.numel() / out;
  IFLAME_CHECK(out <= INT_MAX, "linear: bias of ", out, " elements");
  const int threads = out >= 512 ? 512 : 128;
  const unsigned blocks = static_cast<unsigned>(std::min<long long>(std::max<long long>(rows, 1), 65535LL * 8));
  if (y.dtype() == DType::F32)
    fill_rows_kernel<<<blocks, threads, 0, cuda_stream()>>>(y.data<float>(), bias.data<float>(), rows, int(out));
  else
    fill_rows_kernel<<<blocks, threads, 0, cuda_stream()>>>(y.data<bf16>(), bias.data<float>(), rows, int(out));
  CUDA_CHECK_LAUNCH();
}

}  // namespace

void gemm_mixed(const Tensor& a, bool transpose_a, const Tensor& b, bool transpose_b, Tensor& c,
                float alpha, float beta, DType compute) {
  IFLAME_CHECK(a.ndim() == 2 && b.ndim() == 2 && c.ndim() == 2 && a.is_contiguous() &&
                   b.is_contiguous() && c.is_contiguous() && a.is_cuda() && b.is_cuda() && c.is_cuda(),
               "gemm: needs contiguous 2-D GPU tensors, got a ", a.describe(), ", b ", b.describe(),
               ", c ", c.describe());
  const int64_t m = c.size(0), n = c.size(1), k = transpose_a ? a.size(0) : a.size(1);
  IFLAME_CHECK((transpose_a ? a.size(1) : a.size(0)) == m && (transpose_b ? b.size(1) : b.size(0)) == k &&
                   (transpose_b ? b.size(0) : b.size(1)) == n,
               "gemm: shapes do not match: a ", a.describe(), (transpose_a ? " (T)" : ""), ", b ",
               b.describe(), (transpose_b ? " (T)" : ""), ", c ", c.describe());
  if (m == 0 || n == 0) return;
  // Operands in the compute dtype (no copy when they already are).
  const Tensor ac = a.to(compute), bc = b.to(compute);
  // cuBLAS has no (f32, f32) -> bf16 product: go through an f32 result.
  if (compute == DType::F32 && c.dtype() != DType::F32) {
    Tensor c32 = beta != 0.0f ? c.to(DType::F32) : Tensor::empty(c.shape(), DType::F32, Device::CUDA);
    gemm_mixed(ac, transpose_a, bc, transpose_b, c32, alpha, beta, compute);
    c.copy_from(c32);
    return;
  }
  const cudaDataType ct = cuda_type(compute);
  // Leading dimensions are at least 1 even for k == 0 (then cuBLAS just scales c by beta).
  auto ld = [](int64_t v, const char* what) { return as_int(std::max<int64_t>(v, 1), what); };
  CUBLAS_CHECK(cublasGemmEx(cublas_handle(), transpose_b ? CUBLAS_OP_T : CUBLAS_OP_N,
                            transpose_a ? CUBLAS_OP_T : CUBLAS_OP_N, as_int(n, "n"), as_int(m, "m"),
                            as_int(k, "k"), &alpha, bc.raw_data(), ct, ld(bc.size(1), "lda (b)"),
                            ac.raw_data(), ct, ld(ac.size(1), "ldb (a)"), &beta, c.raw_data(),
                            cuda_type(c.dtype()), ld(n, "ldc"), CUBLAS_COMPUTE_32F,
                            CUBLAS_GEMM_DEFAULT));
}

void gemm(const Tensor& a, bool transpose_a, const Tensor& b, bool transpose_b, Tensor& c,
          float alpha, float beta, DType compute) {
  gemm_mixed(a, transpose_a, b, transpose_b, c, alpha, beta, compute);
}

Tensor linear_forward(const Tensor& x, const Tensor& weight, const Tensor* bias, DType compute) {
  const int64_t in = weight.size(1), out = weight.size(0), rows = x.numel() / in;
  Shape y_shape = x.shape();
  y_shape.back() = out;
  // With f32 compute the result is formed in f32 (bias included) and rounded
  // once into x's dtype; with bf16 compute cuBLAS writes x's dtype directly.
  const DType acc = compute == DType::F32 ? DType::F32 : x.dtype();
  Tensor y = Tensor::empty(y_shape, acc, Device::CUDA);
  if (bias) fill_rows(y, *bias);
  Tensor y2 = y.view({rows, out});
  gemm_mixed(x.view({rows, in}), false, weight, true, y2, 1.0f, bias ? 1.0f : 0.0f, compute);
  return y.to(x.dtype());
}

void linear_backward(const Tensor& grad_y, const Tensor& x, const Tensor& weight, DType compute,
                     Tensor* grad_x, Tensor& grad_weight, Tensor* grad_bias) {
  const int64_t in = weight.size(1), out = weight.size(0), rows = x.numel() / in;
  // Convert each operand to the compute dtype once (no copy when it already is).
  const Tensor gy = grad_y.view({rows, out}).to(compute);
  if (grad_x) {  // grad_x = grad_y W
    *grad_x = Tensor::empty(x.shape(), x.dtype(), Device::CUDA);
    Tensor gx = grad_x->view({rows, in});
    gemm_mixed(gy, false, weight.to(compute), false, gx, 1.0f, 0.0f, compute);
  }
  // grad_weight += grad_y^T x (f32 accumulation, beta = 1)
  gemm_mixed(gy, true, x.view({rows, in}).to(compute), false, grad_weight, 1.0f, 1.0f, compute);
  if (grad_bias && rows > 0) {  // grad_bias^T += ones^T grad_y, on grad_y as given (f32 sums)
    const Tensor gy_raw = grad_y.view({rows, out});
    const Tensor ones = Tensor::full({rows, 1}, 1.0f, gy_raw.dtype(), Device::CUDA);
    Tensor gb = grad_bias->view({1, out});
    gemm_mixed(ones, true, gy_raw, false, gb, 1.0f, 1.0f, gy_raw.dtype());
  }
}

}  // namespace iflame::ops::cuda
