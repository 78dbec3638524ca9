// cuda/column_sums.cu: the second half of the deterministic column sums (column_sums.cuh).
#include "ops/cuda/column_sums.cuh"

#include "core/cuda_check.h"

namespace iflame::ops::cuda {

namespace {
__global__ void add_column_partials_kernel(const float* __restrict__ partials, int blocks, int cols,
                                           float* __restrict__ target) {
  const int c = blockIdx.x * blockDim.x + threadIdx.x;
  if (c >= cols) return;
  float sum = 0.0f;
  for (int b = 0; b < blocks; b++) sum += partials[(long long)b * cols + c];
  target[c] += sum;
}
}  // namespace

void add_column_partials(const Tensor& partials, int blocks, int cols, float* target) {
  if (cols == 0) return;
  add_column_partials_kernel<<<blocks_for(cols, 256), 256, 0, cuda_stream()>>>(partials.data<float>(), blocks, cols,
                                                                               target);
  CUDA_CHECK_LAUNCH();
}

}  // namespace iflame::ops::cuda
