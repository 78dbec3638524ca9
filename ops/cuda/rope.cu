// cuda/rope.cu: RoPE on the GPU, one thread per rotated pair (b, t, h, j < D/2);
// consecutive threads take consecutive j, so both halves are read coalesced.
// The frequencies come from the host (rope_frequencies) as a kernel argument,
// so CPU and GPU use the same float32 values; sinf/cosf (full precision, no
// fast-math) of the float32 angle, as on the CPU.
#include "ops/cuda/elem_util.cuh"
#include "ops/rope.h"

namespace iflame::ops::cuda {

namespace {

constexpr int kMaxHalf = 128;  // D up to 256
struct RopeFrequencies {
  float f[kMaxHalf];
};

template <typename T>
__global__ void rope_kernel(const T* __restrict__ x, T* __restrict__ y, long long pairs, int T_len, int H,
                            int half, long long pos_offset, float direction, RopeFrequencies freq) {
  for (long long i = blockIdx.x * (long long)blockDim.x + threadIdx.x; i < pairs;
       i += (long long)gridDim.x * blockDim.x) {
    const int j = (int)(i % half);
    const long long head_row = i / half;  // (b * T + t) * H + h
    const long long bt = head_row / H;
    const int t = (int)(bt % T_len);
    const float angle = (float)(t + pos_offset) * freq.f[j];
    const float c = cosf(angle), s = direction * sinf(angle);
    const long long base = head_row * (2LL * half);
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
  IFLAME_DISPATCH_ACT(x.dtype(), op, {
    rope_kernel<T><<<grid_stride_blocks(pairs, 256), 256, 0, cuda_stream()>>>(
        x.data<T>(), y.data<T>(), pairs, T_len, H, half, (long long)pos_offset, direction, freq);
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
