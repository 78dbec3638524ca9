// cuda/decode_position.cu: the position-counter ops on the GPU (see
// decode_position.h). They read or write the counters and flags in device
// memory, so a captured graph replays them correctly at every position; all
// are launched with launch_pdl (pdl.cuh) like the rest of a decoding step.
#include "ops/cuda/elem_util.cuh"
#include "ops/cuda/pdl.cuh"
#include "ops/decode_position.h"

namespace iflame::ops::cuda {

namespace {

__global__ void write_group_slot_kernel(float* __restrict__ group, const float* __restrict__ x, int B, int d,
                                        const int* __restrict__ position, int position_stride, int div) {
  pdl_wait();
  pdl_trigger();
  const long long n = (long long)B * d;
  for (long long i = blockIdx.x * (long long)blockDim.x + threadIdx.x; i < n;
       i += (long long)gridDim.x * blockDim.x) {
    const long long b = i / d;
    const int slot = (position[b * position_stride] / div) % 3;
    group[(b * 3 + slot) * d + i % d] = x[i];
  }
}

__global__ void advance_position_kernel(int* position, int n) {
  pdl_wait();
  pdl_trigger();
  for (int i = blockIdx.x * blockDim.x + threadIdx.x; i < n; i += gridDim.x * blockDim.x) position[i] += 1;
}

// The tensors zero_flagged_rows() clears: their first word and row length in words.
struct FlaggedRows {
  int32_t* data[kMaxZeroedTensors];
  long long row_words[kMaxZeroedTensors];
  int count;
};

// Block (b, i) clears row b of tensor i when flags[b] is set.
__global__ void zero_flagged_rows_kernel(FlaggedRows t, const int32_t* __restrict__ flags) {
  pdl_wait();
  pdl_trigger();
  const int b = blockIdx.x, i = blockIdx.y;
  if (!flags[b]) return;
  const long long n = t.row_words[i];
  int32_t* row = t.data[i] + b * n;
  for (long long j = threadIdx.x; j < n; j += blockDim.x) row[j] = 0;
}

}  // namespace

void write_group_slot(Tensor& group, const Tensor& x, const Tensor& position, int64_t div) {
  const int64_t B = group.size(0), d = group.size(2);
  if (B * d == 0) return;
  launch_pdl(write_group_slot_kernel, grid_stride_blocks(B * d, 256), 256, 0, group.data<float>(), x.data<float>(),
             int(B), int(d), position.data<int32_t>(), position_stride(position), int(div));
}

void advance_position(Tensor& position) {
  const int n = static_cast<int>(position.numel());
  if (n == 0) return;
  launch_pdl(advance_position_kernel, grid_stride_blocks(n, 256), 256, 0, position.data<int32_t>(), n);
}

void zero_flagged_rows(const std::vector<Tensor>& tensors, const Tensor& flags) {
  const int64_t B = flags.numel();
  if (B == 0 || tensors.empty()) return;
  FlaggedRows t{};
  t.count = static_cast<int>(tensors.size());
  for (int i = 0; i < t.count; i++) {
    t.data[i] = static_cast<int32_t*>(tensors[i].raw_data());
    t.row_words[i] = tensors[i].numel() / B;
  }
  launch_pdl(zero_flagged_rows_kernel, dim3(unsigned(B), unsigned(t.count)), 256, 0, t, flags.data<int32_t>());
}

}  // namespace iflame::ops::cuda
