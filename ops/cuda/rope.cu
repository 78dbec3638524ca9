// cuda/rope.cu: RoPE on the GPU, one thread per rotated pair (b, t, h, j < D/2);
// consecutive threads take consecutive j, so both halves are read coalesced
// (bf16 with D/2 a multiple of 8: one thread per 8 pairs, 16-byte accesses).
// The frequencies come from the host (rope_frequencies) as a kernel argument,
// so CPU and GPU use the same float32 values; sinf/cosf (full precision, no
// fast-math) of the float32 angle, as on the CPU, once per (t, j) in a table.
// qkv_rope_step, decoding's form, reads its position from the device counter
// (ops/decode_position.h) and writes k and v straight into the caches.
#include <climits>
#include <cstdint>

#include "ops/cuda/elem_util.cuh"
#include "ops/cuda/pdl.cuh"
#include "ops/decode_position.h"
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

// The same rotation, 8 pairs per thread for bf16 with half a multiple of 8:
// both halves' 8 values in one 16-byte access each (a D = 32 head row is two
// threads), the 8 angles' (cos, sin) in four 16-byte loads, and the index
// arithmetic once per 8 pairs instead of once per pair.
template <typename Index>
__global__ void rope_bf16x8_kernel(const bf16* __restrict__ x, bf16* __restrict__ y, Index groups, int T_len, int H,
                                   int half, float direction, const float2* __restrict__ table) {
  const int per_row = half / 8;
  for (Index g = blockIdx.x * (Index)blockDim.x + threadIdx.x; g < groups; g += (Index)gridDim.x * blockDim.x) {
    const Index head_row = g / per_row;  // (b * T + t) * H + h
    const int j0 = (int)(g - head_row * per_row) * 8;
    const int t = (int)((head_row / H) % T_len);
    const Index base = head_row * (2 * (Index)half) + j0;
    float x1[8], x2[8], y1[8], y2[8], cs[16];
    load_vec<8>(x, base, x1);
    load_vec<8>(x, base + half, x2);
    const float4* angles = reinterpret_cast<const float4*>(table + (long long)t * half + j0);
#pragma unroll
    for (int k = 0; k < 4; k++) {
      const float4 w = angles[k];
      cs[4 * k] = w.x, cs[4 * k + 1] = w.y, cs[4 * k + 2] = w.z, cs[4 * k + 3] = w.w;
    }
#pragma unroll
    for (int k = 0; k < 8; k++) {
      const float c = cs[2 * k], s = direction * cs[2 * k + 1];
      y1[k] = x1[k] * c + x2[k] * s;
      y2[k] = -x1[k] * s + x2[k] * c;
    }
    store_vec<8>(y, base, y1);
    store_vec<8>(y, base + half, y2);
  }
}

// qkv_rope_step: one thread per rotated pair (b, h, j < D/2): q and k rotated,
// v copied; the outputs stored as T (f32, or bf16 for bf16 caches). The angle's
// sinf/cosf are computed in place (one position per row and step: no table).
template <typename T>
__global__ void qkv_rope_kernel(const float* __restrict__ qkv, T* __restrict__ q, T* __restrict__ k_dst,
                                T* __restrict__ v_dst, int B, int H, int half, int capacity,
                                const int* __restrict__ position, int position_stride, int div,
                                RopeFrequencies freq) {
  pdl_wait();  // launched with launch_pdl (pdl.cuh), as every kernel of a decoding step
  pdl_trigger();
  const long long pairs = (long long)B * H * half;
  const int D = 2 * half;
  const long long HD = (long long)H * D;
  for (long long i = blockIdx.x * (long long)blockDim.x + threadIdx.x; i < pairs;
       i += (long long)gridDim.x * blockDim.x) {
    const int j = (int)(i % half);
    const long long bh = i / half;  // b * H + h
    const int b = (int)(bh / H), h = (int)(bh % H);
    const int pos = position[b * position_stride] / div;
    if (capacity > 0 && pos >= capacity) continue;  // the host refuses such steps; never write out of bounds
    const float* row = qkv + (long long)b * 3 * HD + (long long)h * D;
    const float a = (float)pos * freq.f[j];
    const float c = cosf(a), s = sinf(a);
    const float q1 = row[j], q2 = row[half + j];
    const float k1 = row[HD + j], k2 = row[HD + half + j];
    store_f32(q, bh * D + j, q1 * c + q2 * s);
    store_f32(q, bh * D + half + j, -q1 * s + q2 * c);
    const long long dst = capacity > 0 ? (((long long)b * capacity + pos) * H + h) * D : bh * D;
    store_f32(k_dst, dst + j, k1 * c + k2 * s);
    store_f32(k_dst, dst + half + j, -k1 * s + k2 * c);
    store_f32(v_dst, dst + j, row[2 * HD + j]);
    store_f32(v_dst, dst + half + j, row[2 * HD + half + j]);
  }
}

RopeFrequencies frequencies_for(int D, const char* op) {
  IFLAME_CHECK(D / 2 <= kMaxHalf, op, ": head dim ", D, " above the supported ", 2 * kMaxHalf);
  RopeFrequencies freq{};
  const std::vector<float> host_freq = rope_frequencies(D);
  for (int j = 0; j < D / 2; j++) freq.f[j] = host_freq[j];
  return freq;
}

Tensor rotate(const Tensor& x, int64_t pos_offset, float direction, const char* op) {
  const int T_len = (int)x.size(1), H = (int)x.size(2), D = (int)x.size(3), half = D / 2;
  const RopeFrequencies freq = frequencies_for(D, op);
  Tensor y = Tensor::empty(x.shape(), x.dtype(), Device::CUDA);
  const long long pairs = x.numel() / 2;
  if (pairs == 0) return y;
  IFLAME_CHECK((long long)T_len * half <= INT_MAX, op, ": ", T_len, " positions of ", D, " do not fit the angle table");
  Tensor table = Tensor::empty({(int64_t)T_len * half * 2}, DType::F32, Device::CUDA);
  float2* tab = reinterpret_cast<float2*>(table.data<float>());
  rope_table_kernel<<<grid_stride_blocks((long long)T_len * half, 256), 256, 0, cuda_stream()>>>(
      tab, T_len, half, (long long)pos_offset, freq);
  CUDA_CHECK_LAUNCH();
  const bool vec = x.dtype() == DType::BF16 && half % 8 == 0 &&
                   reinterpret_cast<uintptr_t>(x.raw_data()) % 16 == 0 &&
                   reinterpret_cast<uintptr_t>(y.raw_data()) % 16 == 0;
  if (vec) {
    const long long groups = pairs / 8;
    if (groups <= INT_MAX / 2)
      rope_bf16x8_kernel<int><<<grid_stride_blocks(groups, 256), 256, 0, cuda_stream()>>>(
          x.data<bf16>(), y.data<bf16>(), (int)groups, T_len, H, half, direction, tab);
    else
      rope_bf16x8_kernel<long long><<<grid_stride_blocks(groups, 256), 256, 0, cuda_stream()>>>(
          x.data<bf16>(), y.data<bf16>(), groups, T_len, H, half, direction, tab);
    CUDA_CHECK_LAUNCH();
    return y;
  }
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

Tensor qkv_rope_step(const Tensor& qkv, int64_t heads, const Tensor& position, int64_t div, Tensor& k_dst,
                     Tensor& v_dst) {
  const int64_t B = qkv.size(0), HD = qkv.size(1) / 3, D = HD / heads, half = D / 2;
  const RopeFrequencies freq = frequencies_for(int(D), "qkv_rope_step");
  Tensor q = Tensor::empty({B, heads, D}, k_dst.dtype(), Device::CUDA);
  const long long pairs = B * heads * half;
  if (pairs == 0) return q;
  const int capacity = k_dst.ndim() == 4 ? static_cast<int>(k_dst.size(1)) : 0;
  IFLAME_DISPATCH_ACT(k_dst.dtype(), "qkv_rope_step", {
    launch_pdl(qkv_rope_kernel<T>, grid_stride_blocks(pairs, 256), 256, 0, qkv.data<float>(), q.data<T>(),
               k_dst.data<T>(), v_dst.data<T>(), static_cast<int>(B), static_cast<int>(heads),
               static_cast<int>(half), capacity, position.data<int32_t>(), position_stride(position),
               static_cast<int>(div), freq);
  });
  return q;
}

}  // namespace iflame::ops::cuda
