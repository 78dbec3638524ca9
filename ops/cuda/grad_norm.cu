// cuda/grad_norm.cu: global gradient norm, clipping and finiteness test on the GPU.
//
// The gradients are many separate tensors (311 in the model), so each launch
// takes a batch of up to kTensorsPerLaunch of them as a kernel argument:
// blockIdx.y picks the tensor, kBlocksPerTensor blocks stride over it. For the
// norm each block writes its sum of squares (double) to its own slot of a
// partials array; one block then adds the slots in a fixed order and takes the
// square root, so the norm is the same bit for bit from run to run. Clipping
// reads that norm from device memory: no host sync.
#include <cmath>

#include "ops/cuda/elem_util.cuh"
#include "ops/grad_norm.h"

namespace iflame::ops::cuda {

namespace {

constexpr int kThreads = 256;
constexpr int kBlocksPerTensor = 32;
constexpr int kTensorsPerLaunch = 64;  // 64 * 16 bytes: well inside the kernel argument limit
constexpr int kReduceThreads = 1024;

struct TensorBatch {
  float* ptr[kTensorsPerLaunch];
  long long numel[kTensorsPerLaunch];
};

// Calls f(batch, count, first) for consecutive batches of the gradient list.
template <typename F>
void for_each_batch(const std::vector<Tensor>& grads, F&& f) {
  for (size_t first = 0; first < grads.size(); first += kTensorsPerLaunch) {
    TensorBatch batch{};
    int count = 0;
    for (size_t i = first; i < grads.size() && count < kTensorsPerLaunch; i++, count++) {
      batch.ptr[count] = grads[i].data<float>();
      batch.numel[count] = grads[i].numel();
    }
    f(batch, count, (long long)first);
  }
}

__global__ void sum_squares_kernel(TensorBatch batch, long long first, double* __restrict__ partials) {
  const float* p = batch.ptr[blockIdx.y];
  const long long n = batch.numel[blockIdx.y];
  double sum = 0.0;
  for (long long i = blockIdx.x * (long long)blockDim.x + threadIdx.x; i < n;
       i += (long long)gridDim.x * blockDim.x) {
    const double v = p[i];
    sum += v * v;
  }
  sum = block_sum(sum);
  if (threadIdx.x == 0) partials[(first + blockIdx.y) * kBlocksPerTensor + blockIdx.x] = sum;
}

__global__ void finish_norm_kernel(const double* __restrict__ partials, long long count, float* __restrict__ norm) {
  double sum = 0.0;
  for (long long i = threadIdx.x; i < count; i += blockDim.x) sum += partials[i];
  sum = block_sum(sum);
  if (threadIdx.x == 0) norm[0] = (float)sqrt(sum);
}

__global__ void clip_kernel(TensorBatch batch, const float* __restrict__ norm, float max_norm) {
  const float coef = max_norm / (norm[0] + 1e-6f);
  const float clamped = coef > 1.0f ? 1.0f : coef;  // NaN stays NaN, as torch.clamp does
  float* p = batch.ptr[blockIdx.y];
  const long long n = batch.numel[blockIdx.y];
  for (long long i = blockIdx.x * (long long)blockDim.x + threadIdx.x; i < n;
       i += (long long)gridDim.x * blockDim.x)
    p[i] *= clamped;
}

__global__ void find_nonfinite_kernel(TensorBatch batch, int* __restrict__ found) {
  const float* p = batch.ptr[blockIdx.y];
  const long long n = batch.numel[blockIdx.y];
  for (long long i = blockIdx.x * (long long)blockDim.x + threadIdx.x; i < n;
       i += (long long)gridDim.x * blockDim.x)
    if (!isfinite(p[i])) *found = 1;  // every writer writes the same value
}

}  // namespace

Tensor global_grad_norm(const std::vector<Tensor>& grads) {
  if (grads.empty()) return Tensor::zeros({1}, DType::F32);
  Tensor norm = Tensor::empty({1}, DType::F32, Device::CUDA);
  const long long slots = (long long)grads.size() * kBlocksPerTensor;
  // Tensor has no f64 dtype: the partial sums live in an f32 tensor of twice the
  // length (device allocations are at least 256-byte aligned).
  Tensor partials = Tensor::empty({2 * slots}, DType::F32, Device::CUDA);
  double* partial_ptr = reinterpret_cast<double*>(partials.data<float>());
  for_each_batch(grads, [&](const TensorBatch& batch, int count, long long first) {
    sum_squares_kernel<<<dim3(kBlocksPerTensor, count), kThreads, 0, cuda_stream()>>>(batch, first, partial_ptr);
    CUDA_CHECK_LAUNCH();
  });
  finish_norm_kernel<<<1, kReduceThreads, 0, cuda_stream()>>>(partial_ptr, slots, norm.data<float>());
  CUDA_CHECK_LAUNCH();
  return norm;
}

Tensor clip_grad_norm(std::vector<Tensor>& grads, float max_norm) {
  Tensor norm = global_grad_norm(grads);
  if (grads.empty()) return norm;
  for_each_batch(grads, [&](const TensorBatch& batch, int count, long long) {
    clip_kernel<<<dim3(kBlocksPerTensor, count), kThreads, 0, cuda_stream()>>>(batch, norm.data<float>(), max_norm);
    CUDA_CHECK_LAUNCH();
  });
  return norm;
}

bool all_finite(const std::vector<Tensor>& grads) {
  if (grads.empty()) return true;
  Tensor found = Tensor::zeros({1}, DType::I32, Device::CUDA);
  for_each_batch(grads, [&](const TensorBatch& batch, int count, long long) {
    find_nonfinite_kernel<<<dim3(kBlocksPerTensor, count), kThreads, 0, cuda_stream()>>>(batch,
                                                                                        found.data<int32_t>());
    CUDA_CHECK_LAUNCH();
  });
  return found.to_ints()[0] == 0;  // waits for the kernels
}

}  // namespace iflame::ops::cuda
