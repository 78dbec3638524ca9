// cuda/rope.cu: RoPE on the GPU, one thread per rotated pair (b, t, h, j < D/2);
// consecutive threads take consecutive j, so both halves are read coalesced.
// The frequencies come from the host (rope_frequencies) as a kernel argument,
// so CPU and GPU use the same float32 values; sinf/cosf (full precision, no
// fast-math) of the float32 angle, as on the CPU, once per (t, j) in a table.
#include <climits>

#include "ops/cuda/elem_util.cuh"
#include "ops/rope.h"

namespace iflame::ops::cuda {

namespace {

constexpr int kMaxHalf = 128;  // D up to 256
struct RopeFrequencies {
  float f[kMaxHalf];
};

// table[t * half + j] = (cos, sin) of the angle (t + pos_offset) * freq[j]: the
// T x D/2 angles are shared by every batch row and head, so they are computed
// once per call (the same sinf/cosf of the same float angle as before, so the
// same bits) instead of once per element, where full-precision sin and cos of
// angles up to thousands of radians cost more than the memory traffic.
__global__ void rope_table_kernel(float2* __restrict__ table, int T_len, int half, long long pos_offset,
                                  RopeFrequencies freq) {
  const int n = T_len * half;
  for (int i = blockIdx.x * blockDim.x + threadIdx.x; i < n; i += gridDim.x * blockDim.x) {
    const int t = i / half, j = i - t * half;
    const float angle = (float)(t + pos_offset) * freq.f[j];
    table[i] = make_float2(cosf(angle), sinf(angle));
  }
}

// One thread per rotated pair; Index is int where the pair count allows it
// (32-bit division is several times cheaper than 64-bit).
template <typename T, typename Index>
__global__ void rope_kernel(const T* __restrict__ x, T* __restrict__ y, Index pairs, int T_len, int H, int half,
                            float direction, const float2* __restrict__ table) {
  for (Index i = blockIdx.x * (Index)blockDim.x + threadIdx.x; i < pairs; i += (Index)gridDim.x * blockDim.x) {
    const Index head_row = i / half;  // (b * T + t) * H + h
    const int j = (int)(i - head_row * half);
    const int t = (int)((head_row / H) % T_len);
    const float2 cs = table[t * half + j];
    const float c = cs.x, s = direction * cs.y;
    const Index base = head_row * (2 * (Index)half);
    const float x1 = load_f32(x, base + j), x2 = load_f32(x, base + half + j);
    store_f32(y, base + j, x1 * c + x2 * s);
    store_f32(y, base + half + j, -x1 * s + x2 * c);
  }
}

Tensor rotate(const Tensor& x, int64_t pos_offset, float direction, const char* op) {
  const int T_len = (int)x.size(1), H = (int)x.size(2), D = (int)x.size(3), half = D / 2;
  IFLAME_CHECK(half <= kMaxHalf, op, ": head dim ", D, " above the supported ", 2 * kMaxHalf);
  RopeFrequencies freq{};
  const std::vector<float> host_freq = rope_frequencies(D);
  for (int j = 0; j < half; j++) freq.f[j] = host_freq[j];
  Tensor y = Tensor::empty(x.shape(), x.dtype(), Device::CUDA);
  const long long pairs = x.numel() / 2;
  if (pairs == 0) return y;
  IFLAME_CHECK((long long)T_len * half <= INT_MAX, op, ": ", T_len, " positions of ", D, " do not fit the angle table");
  Tensor table = Tensor::empty({(int64_t)T_len * half * 2}, DType::F32, Device::CUDA);
  float2* tab = reinterpret_cast<float2*>(table.data<float>());
  rope_table_kernel<<<grid_stride_blocks((long long)T_len * half, 256), 256, 0, cuda_stream()>>>(
      tab, T_len, half, (long long)pos_offset, freq);
  CUDA_CHECK_LAUNCH();
  IFLAME_DISPATCH_ACT(x.dtype(), op, {
    if (pairs <= INT_MAX / 2)
      rope_kernel<T, int><<<grid_stride_blocks(pairs, 256), 256, 0, cuda_stream()>>>(
          x.data<T>(), y.data<T>(), (int)pairs, T_len, H, half, direction, tab);
    else
      rope_kernel<T, long long><<<grid_stride_blocks(pairs, 256), 256, 0, cuda_stream()>>>(
          x.data<T>(), y.data<T>(), pairs, T_len, H, half, direction, tab);
  });
  CUDA_CHECK_LAUNCH();
  return y;
}

}  // namespace

Tensor rope_forward(const Tensor& x, int64_t pos_offset) { return rotate(x, pos_offset, 1.0f, "rope_forward"); }
Tensor rope_backward(const Tensor& grad_y, int64_t pos_offset) {
  return rotate(grad_y, pos_offset, -1.0f, "rope_backward");
}

}  // namespace iflame::ops::cuda
