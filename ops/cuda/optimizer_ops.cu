// cuda/optimizer_ops.cu: AdamW, Newton-Schulz and Muon on the GPU.
// The per-element formulas live in ops/optimizer_ops.h (shared with the CPU
// reference); the products of Newton-Schulz go through cuda::gemm_mixed.
// In BF16 mode X, A, A A, B and B X are bf16 tensors: cuBLAS accumulates each
// product in f32 and rounds it once into bf16, and the elementwise steps round
// each piece, as PyTorch does. The Frobenius norm is a fixed-shape two-pass
// reduction in double, so the result does not depend on scheduling; nothing
// here waits for the GPU.
#include <utility>

#include "core/cuda_check.h"
#include "ops/linear.h"
#include "ops/optimizer_ops.h"

namespace iflame::ops::cuda {

namespace {

constexpr int kThreads = 256;
constexpr int kNormBlocks = 256;  // fixed, so the sum's order never changes

// What storing a float into T does to it.
__device__ __forceinline__ float rnd(float v, float*) { return v; }
__device__ __forceinline__ float rnd(float v, bf16*) { return round_to_bf16(v); }
__device__ __forceinline__ float load(const float* p, long long i) { return p[i]; }
__device__ __forceinline__ float load(const bf16* p, long long i) { return bf16_to_float(p[i]); }
__device__ __forceinline__ void store(float* p, long long i, float v) { p[i] = v; }
__device__ __forceinline__ void store(bf16* p, long long i, float v) { p[i] = float_to_bf16(v); }

#define GRID_STRIDE(i, n)                                                           \
  for (long long i = blockIdx.x * (long long)blockDim.x + threadIdx.x; i < (n); \
       i += (long long)gridDim.x * blockDim.x)

__global__ void adamw_kernel(float* p, const float* g, float* m, float* v, AdamWScalars s, long long n) {
  GRID_STRIDE(i, n) adamw_element(p[i], g[i], m[i], v[i], s);
}

__global__ void muon_momentum_kernel(float* u, float* m, const float* g, float coef, long long n) {
  GRID_STRIDE(i, n) u[i] = muon_momentum_element(m[i], g[i], coef);
}

__global__ void muon_apply_kernel(float* p, const float* x, float decay, float step_size, long long n) {
  GRID_STRIDE(i, n) muon_apply_element(p[i], x[i], decay, step_size);
}

// The block's threads' values summed in a fixed tree order; thread 0 gets the total.
__device__ __forceinline__ double block_tree_sum(double s) {
  __shared__ double sh[kThreads];
  sh[threadIdx.x] = s;
  __syncthreads();
  for (int w = kThreads / 2; w > 0; w >>= 1) {
    if (threadIdx.x < w) sh[threadIdx.x] += sh[threadIdx.x + w];
    __syncthreads();
  }
  return sh[0];
}

// Pass 1: partial[b] = sum of squares (in double) of T-rounded x over block b's share.
template <typename T>
__global__ void sumsq_partial_kernel(const float* x, double* partial, long long n) {
  double s = 0;
  GRID_STRIDE(i, n) {
    const float v = rnd(x[i], (T*)nullptr);
    s += double(v) * double(v);
  }
  s = block_tree_sum(s);
  if (threadIdx.x == 0) partial[blockIdx.x] = s;
}

// Pass 2 (one block of kThreads): partial[0] = the sum of the kNormBlocks partials.
__device__ __forceinline__ void sumsq_final_body(double* partial) {
  double s = 0;
  for (int i = threadIdx.x; i < kNormBlocks; i += kThreads) s += partial[i];
  s = block_tree_sum(s);
  if (threadIdx.x == 0) partial[0] = s;
}
__global__ void sumsq_final_kernel(double* partial) { sumsq_final_body(partial); }

// X = T(x) / T(T(||T(x)||) + eps), stored in T.
template <typename T>
__global__ void normalize_kernel(T* out, const float* x, const double* sumsq, long long n) {
  const float norm = rnd(float(sqrt(*sumsq)), (T*)nullptr);
  const float denom = rnd(norm + kNewtonSchulzEps, (T*)nullptr);
  GRID_STRIDE(i, n) store(out, i, rnd(rnd(x[i], (T*)nullptr) / denom, (T*)nullptr));
}

// out = s1 p + s2 q, each piece stored in T.
template <typename T>
__global__ void combine_kernel(T* out, float s1, const T* p, float s2, const T* q, long long n) {
  GRID_STRIDE(i, n) {
    const float a = rnd(s1 * load(p, i), (T*)nullptr), b = rnd(s2 * load(q, i), (T*)nullptr);
    store(out, i, a + b);
  }
}

template <typename T>
void combine(Tensor& out, float s1, const Tensor& p, float s2, const Tensor& q) {
  const long long n = out.numel();
  combine_kernel<T><<<blocks_for(n, kThreads), kThreads, 0, cuda_stream()>>>(
      out.data<T>(), s1, p.data<T>(), s2, q.data<T>(), n);
  CUDA_CHECK_LAUNCH();
}

// The iteration with intermediates stored in T (float or bf16); x is the f32 [r, c] start.
template <typename T>
Tensor newton_schulz(const Tensor& x, int steps, DType compute) {
  const int64_t r = x.size(0), c = x.size(1);
  const long long n = x.numel();
  Tensor partial = Tensor::empty({kNormBlocks * 2}, DType::F32, Device::CUDA);  // kNormBlocks doubles
  double* pp = static_cast<double*>(partial.raw_data());
  Tensor X = Tensor::empty({r, c}, compute, Device::CUDA);
  sumsq_partial_kernel<T><<<kNormBlocks, kThreads, 0, cuda_stream()>>>(x.data<float>(), pp, n);
  CUDA_CHECK_LAUNCH();
  sumsq_final_kernel<<<1, kThreads, 0, cuda_stream()>>>(pp);
  CUDA_CHECK_LAUNCH();
  normalize_kernel<T><<<blocks_for(n, kThreads), kThreads, 0, cuda_stream()>>>(X.data<T>(), x.data<float>(),
                                                                               pp, n);
  CUDA_CHECK_LAUNCH();

  Tensor A = Tensor::empty({r, r}, compute, Device::CUDA), AA = Tensor::empty({r, r}, compute, Device::CUDA);
  Tensor B = Tensor::empty({r, r}, compute, Device::CUDA);
  Tensor BX = Tensor::empty({r, c}, compute, Device::CUDA), Xn = Tensor::empty({r, c}, compute, Device::CUDA);
  for (int it = 0; it < steps; it++) {
    gemm_mixed(X, false, X, true, A, 1.0f, 0.0f, compute);  // A = X X^T
    gemm_mixed(A, false, A, false, AA, 1.0f, 0.0f, compute);  // A A
    combine<T>(B, kNewtonSchulzB, A, kNewtonSchulzC, AA);  // B = b A + c A A
    gemm_mixed(B, false, X, false, BX, 1.0f, 0.0f, compute);  // B X
    combine<T>(Xn, kNewtonSchulzA, X, 1.0f, BX);  // X = a X + B X
    std::swap(X, Xn);
  }
  return X;
}

}  // namespace

void adamw_update(Tensor& param, const Tensor& grad, Tensor& moment1, Tensor& moment2, float lr,
                  float beta1, float beta2, float eps, float weight_decay, int64_t step) {
  const long long n = param.numel();
  if (n == 0) return;
  adamw_kernel<<<blocks_for(n, kThreads), kThreads, 0, cuda_stream()>>>(
      param.data<float>(), grad.data<float>(), moment1.data<float>(), moment2.data<float>(),
      adamw_scalars(lr, beta1, beta2, eps, weight_decay, step), n);
  CUDA_CHECK_LAUNCH();
}

Tensor newton_schulz_orthogonalize(const Tensor& u, int steps, DType compute) {
  const bool tr = u.size(0) > u.size(1);  // work on the wide orientation
  const Tensor x = tr ? u.transpose(0, 1).contiguous() : u;
  if (x.numel() == 0) return Tensor::zeros(u.shape(), DType::F32, Device::CUDA);
  const Tensor X = compute == DType::BF16 ? newton_schulz<bf16>(x, steps, compute)
                                          : newton_schulz<float>(x, steps, compute);
  Tensor out = Tensor::empty(u.shape(), DType::F32, Device::CUDA);
  out.copy_from(tr ? X.transpose(0, 1) : X);  // transposes back and converts to f32
  return out;
}

void muon_update(Tensor& param, const Tensor& grad, Tensor& momentum, float lr, float weight_decay,
                 float momentum_coef, int ns_steps, DType ns_compute) {
  const long long n = param.numel();
  if (n == 0) return;
  Tensor u = Tensor::empty(param.shape(), DType::F32, Device::CUDA);
  muon_momentum_kernel<<<blocks_for(n, kThreads), kThreads, 0, cuda_stream()>>>(
      u.data<float>(), momentum.data<float>(), grad.data<float>(), momentum_coef, n);
  CUDA_CHECK_LAUNCH();
  const Tensor X = newton_schulz_orthogonalize(u, ns_steps, ns_compute);
  muon_apply_kernel<<<blocks_for(n, kThreads), kThreads, 0, cuda_stream()>>>(
      param.data<float>(), X.data<float>(), decoupled_decay(lr, weight_decay),
      muon_step_size(lr, param.size(0), param.size(1)), n);
  CUDA_CHECK_LAUNCH();
}

// ---- Muon for a group of same-shape parameters (muon_update_group) ----------

namespace {

// Every member's tensors; `transposed`: the parameter is [c, r], so element
// (i, j) of its wide [r, c] orientation sits at j * r + i.
struct MuonGroupTable {
  float* p[kMuonGroupMax];
  const float* g[kMuonGroupMax];
  float* m[kMuonGroupMax];
  int transposed[kMuonGroupMax];
};

// The group's element-wise kernels run over 32 x 32 tiles of each member's wide
// [r, c] orientation: block (x, y, n) covers rows 32y.. and columns 32x.. of
// member n, with 32 x 8 threads. A transposed member's tile goes through shared
// memory, so that both its own [c, r] layout and the wide layout are read and
// written along their rows (a direct mapping would touch one element per
// 32-byte sector on one side).
constexpr int kTile = 32, kTileRows = 8;
dim3 tile_grid(int count, int r, int c) { return dim3((c + kTile - 1) / kTile, (r + kTile - 1) / kTile, count); }
const dim3 kTileBlock(kTile, kTileRows);

// U[n] = the Nesterov direction of member n in its wide orientation; momentum updated.
__global__ void group_momentum_kernel(MuonGroupTable t, float* U, int r, int c, float coef) {
  __shared__ float tile[kTile][kTile + 1];
  const int n = blockIdx.z, i0 = blockIdx.y * kTile, j0 = blockIdx.x * kTile;
  float* u = U + (long long)n * r * c;
  float* m = t.m[n];
  const float* g = t.g[n];
  if (!t.transposed[n]) {
    for (int di = threadIdx.y; di < kTile; di += kTileRows) {
      const int i = i0 + di, j = j0 + threadIdx.x;
      if (i < r && j < c) {
        const long long k = (long long)i * c + j;
        u[k] = muon_momentum_element(m[k], g[k], coef);
      }
    }
    return;
  }
  // Member layout [c, r]: wide element (i, j) sits at j * r + i; read along i.
  for (int dj = threadIdx.y; dj < kTile; dj += kTileRows) {
    const int i = i0 + threadIdx.x, j = j0 + dj;
    if (i < r && j < c) {
      const long long k = (long long)j * r + i;
      tile[dj][threadIdx.x] = muon_momentum_element(m[k], g[k], coef);
    }
  }
  __syncthreads();
  for (int di = threadIdx.y; di < kTile; di += kTileRows) {
    const int i = i0 + di, j = j0 + threadIdx.x;
    if (i < r && j < c) u[(long long)i * c + j] = tile[threadIdx.x][di];
  }
}

// Pass 1 of each member's norm, the per-matrix pass's order exactly: block
// (b, n) sums member n's elements b*kThreads + t + j*kNormBlocks*kThreads.
template <typename T>
__global__ void group_sumsq_partial_kernel(const float* U, double* partial, long long per) {
  const float* x = U + blockIdx.y * per;
  double s = 0;
  for (long long i = blockIdx.x * (long long)kThreads + threadIdx.x; i < per; i += (long long)kNormBlocks * kThreads) {
    const float v = rnd(x[i], (T*)nullptr);
    s += double(v) * double(v);
  }
  s = block_tree_sum(s);
  if (threadIdx.x == 0) partial[blockIdx.y * kNormBlocks + blockIdx.x] = s;
}

// Pass 2: block n reduces member n's kNormBlocks partials into partial[n * kNormBlocks].
__global__ void group_sumsq_final_kernel(double* partial) { sumsq_final_body(partial + blockIdx.x * kNormBlocks); }

// X[n] = T(U[n]) / T(T(||T(U[n])||) + eps), stored in T; member n = blockIdx.y.
template <typename T>
__global__ void group_normalize_kernel(T* X, const float* U, const double* partial, long long per) {
  const long long n = blockIdx.y;
  const float norm = rnd(float(sqrt(partial[n * kNormBlocks])), (T*)nullptr);
  const float denom = rnd(norm + kNewtonSchulzEps, (T*)nullptr);
  GRID_STRIDE(i, per) store(X, n * per + i, rnd(rnd(U[n * per + i], (T*)nullptr) / denom, (T*)nullptr));
}

// p *= decay; p -= step_size * X, member by member, back in each parameter's
// orientation (tiles as in group_momentum_kernel).
template <typename T>
__global__ void group_apply_kernel(MuonGroupTable t, const T* X, int r, int c, float decay, float step_size) {
  __shared__ float tile[kTile][kTile + 1];
  const int n = blockIdx.z, i0 = blockIdx.y * kTile, j0 = blockIdx.x * kTile;
  const T* x = X + (long long)n * r * c;
  float* p = t.p[n];
  if (!t.transposed[n]) {
    for (int di = threadIdx.y; di < kTile; di += kTileRows) {
      const int i = i0 + di, j = j0 + threadIdx.x;
      if (i < r && j < c) {
        const long long k = (long long)i * c + j;
        muon_apply_element(p[k], load(x, k), decay, step_size);
      }
    }
    return;
  }
  for (int di = threadIdx.y; di < kTile; di += kTileRows) {
    const int i = i0 + di, j = j0 + threadIdx.x;
    if (i < r && j < c) tile[di][threadIdx.x] = load(x, (long long)i * c + j);
  }
  __syncthreads();
  for (int dj = threadIdx.y; dj < kTile; dj += kTileRows) {
    const int i = i0 + threadIdx.x, j = j0 + dj;
    if (i < r && j < c) muon_apply_element(p[(long long)j * r + i], tile[threadIdx.x][dj], decay, step_size);
  }
}

// Row-major C[b] = op(A[b]) op(B[b]) for `count` matrices of one shape, each
// operand strided by its matrix size (see gemm_mixed for the column-major swap).
void gemm_batched(const Tensor& a, bool ta, const Tensor& b, bool tb, Tensor& c, int count, int64_t m, int64_t n,
                  int64_t k, DType compute) {
  const cudaDataType t = compute == DType::BF16 ? CUDA_R_16BF : CUDA_R_32F;
  const float alpha = 1.0f, beta = 0.0f;
  const int64_t a_cols = ta ? m : k, b_cols = tb ? k : n;
  CUBLAS_CHECK(cublasGemmStridedBatchedEx(cublas_handle(), tb ? CUBLAS_OP_T : CUBLAS_OP_N, ta ? CUBLAS_OP_T : CUBLAS_OP_N,
                                          int(n), int(m), int(k), &alpha, b.raw_data(), t, int(b_cols), k * n,
                                          a.raw_data(), t, int(a_cols), m * k, &beta, c.raw_data(), t, int(n), m * n,
                                          count, CUBLAS_COMPUTE_32F, CUBLAS_GEMM_DEFAULT));
}

template <typename T>
void muon_group(const MuonGroupTable& table, int count, int r, int c, float coef, int steps, DType compute,
                float decay, float step_size) {
  const long long per = (long long)r * c;
  Tensor U = Tensor::empty({count, r, c}, DType::F32, Device::CUDA);
  group_momentum_kernel<<<tile_grid(count, r, c), kTileBlock, 0, cuda_stream()>>>(table, U.data<float>(), r, c, coef);
  CUDA_CHECK_LAUNCH();
  Tensor partial = Tensor::empty({count * kNormBlocks * 2}, DType::F32, Device::CUDA);  // doubles
  double* pp = static_cast<double*>(partial.raw_data());
  group_sumsq_partial_kernel<T><<<dim3(kNormBlocks, count), kThreads, 0, cuda_stream()>>>(U.data<float>(), pp, per);
  CUDA_CHECK_LAUNCH();
  group_sumsq_final_kernel<<<count, kThreads, 0, cuda_stream()>>>(pp);
  CUDA_CHECK_LAUNCH();
  Tensor X = Tensor::empty({count, r, c}, compute, Device::CUDA), Xn = Tensor::empty({count, r, c}, compute, Device::CUDA);
  group_normalize_kernel<T><<<dim3(blocks_for(per, kThreads), count), kThreads, 0, cuda_stream()>>>(
      X.data<T>(), U.data<float>(), pp, per);
  CUDA_CHECK_LAUNCH();
  Tensor A = Tensor::empty({count, r, r}, compute, Device::CUDA), AA = Tensor::empty({count, r, r}, compute, Device::CUDA);
  Tensor B = Tensor::empty({count, r, r}, compute, Device::CUDA), BX = Tensor::empty({count, r, c}, compute, Device::CUDA);
  for (int it = 0; it < steps; it++) {
    gemm_batched(X, false, X, true, A, count, r, r, c, compute);    // A = X X^T
    gemm_batched(A, false, A, false, AA, count, r, r, r, compute);  // A A
    combine<T>(B, kNewtonSchulzB, A, kNewtonSchulzC, AA);          // B = b A + c A A
    gemm_batched(B, false, X, false, BX, count, r, c, r, compute);  // B X
    combine<T>(Xn, kNewtonSchulzA, X, 1.0f, BX);                   // X = a X + B X
    std::swap(X, Xn);
  }
  group_apply_kernel<T><<<tile_grid(count, r, c), kTileBlock, 0, cuda_stream()>>>(table, X.data<T>(), r, c, decay,
                                                                                  step_size);
  CUDA_CHECK_LAUNCH();
}

}  // namespace

void muon_update_group(std::vector<Tensor*> params, const std::vector<const Tensor*>& grads,
                       std::vector<Tensor*> momenta, float lr, float weight_decay, float momentum_coef,
                       int ns_steps, DType ns_compute) {
  const int count = static_cast<int>(params.size());
  const Tensor& first = *params[0];
  const int64_t r = std::min(first.size(0), first.size(1)), c = std::max(first.size(0), first.size(1));
  if (r * c == 0) return;
  MuonGroupTable table{};
  for (int n = 0; n < count; n++) {
    table.p[n] = params[n]->data<float>();
    table.g[n] = grads[n]->data<float>();
    table.m[n] = momenta[n]->data<float>();
    table.transposed[n] = params[n]->size(0) > params[n]->size(1);  // as newton_schulz_orthogonalize decides
  }
  const float decay = decoupled_decay(lr, weight_decay), step_size = muon_step_size(lr, r, c);
  if (ns_compute == DType::BF16)
    muon_group<bf16>(table, count, int(r), int(c), momentum_coef, ns_steps, ns_compute, decay, step_size);
  else
    muon_group<float>(table, count, int(r), int(c), momentum_coef, ns_steps, ns_compute, decay, step_size);
}

}  // namespace iflame::ops::cuda
