// cuda/decode_position.cu: the position-counter ops on the GPU (see
// decode_position.h). Both read or write the counter in device memory, so a
// captured graph replays them correctly at every position; both are launched
// with launch_pdl (pdl.cuh) like the rest of a decoding step.
#include "ops/cuda/elem_util.cuh"
#include "ops/cuda/pdl.cuh"
#include "ops/decode_position.h"

namespace iflame::ops::cuda {

namespace {

__global__ void write_group_slot_kernel(float* __restrict__ group, const float* __restrict__ x, int B, int d,
                                        const int* __restrict__ position, int div) {
  pdl_wait();
  pdl_trigger();
  const int slot = (position[0] / div) % 3;
  const long long n = (long long)B * d;
  for (long long i = blockIdx.x * (long long)blockDim.x + threadIdx.x; i < n;
       i += (long long)gridDim.x * blockDim.x) {
    const long long b = i / d;
    group[(b * 3 + slot) * d + i % d] = x[i];
  }
}

__global__ void advance_position_kernel(int* position) {
  pdl_wait();
  pdl_trigger();
  position[0] += 1;
}

}  // namespace

void write_group_slot(Tensor& group, const Tensor& x, const Tensor& position, int64_t div) {
  const int64_t B = group.size(0), d = group.size(2);
  if (B * d == 0) return;
  launch_pdl(write_group_slot_kernel, grid_stride_blocks(B * d, 256), 256, 0, group.data<float>(), x.data<float>(),
             int(B), int(d), position.data<int32_t>(), int(div));
}

void advance_position(Tensor& position) {
  launch_pdl(advance_position_kernel, 1, 1, 0, position.data<int32_t>());
}

}  // namespace iflame::ops::cuda
