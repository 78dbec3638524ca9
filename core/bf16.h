// bf16.h: bfloat16 as 16 raw bits, with host and device conversions.
// Conversion from float rounds to nearest even, like the hardware (and PyTorch)
// do, so CPU and GPU agree bit for bit; NaN stays NaN.
#pragma once
#include <cstdint>
#include <cstring>

#if defined(__CUDACC__)
#define IFLAME_HD __host__ __device__ __forceinline__
#else
#define IFLAME_HD inline
#endif

namespace iflame {

struct bf16 {
  uint16_t bits;
};

IFLAME_HD float bf16_to_float(bf16 h) {
  uint32_t u = static_cast<uint32_t>(h.bits) << 16;
  float f;
#if defined(__CUDA_ARCH__)
  f = __uint_as_float(u);
#else
  std::memcpy(&f, &u, 4);
#endif
  return f;
}

IFLAME_HD bf16 float_to_bf16(float f) {
  uint32_t u;
#if defined(__CUDA_ARCH__)
  u = __float_as_uint(f);
#else
  std::memcpy(&u, &f, 4);
#endif
  bf16 h;
  if ((u & 0x7fffffffu) > 0x7f800000u) {  // NaN: keep it quiet NaN
    h.bits = static_cast<uint16_t>((u >> 16) | 0x40);
    return h;
  }
  uint32_t rounding = 0x7fffu + ((u >> 16) & 1u);
  h.bits = static_cast<uint16_t>((u + rounding) >> 16);
  return h;
}

// Rounds a float to the nearest bf16 value and back: what storing in bf16 does.
IFLAME_HD float round_to_bf16(float f) { return bf16_to_float(float_to_bf16(f)); }

#if defined(__CUDACC__)
// Eight bf16 as one 16-byte word (element 0 in the low half of .x, as memory
// holds them) to floats, and back with float_to_bf16's rounding: the unit of
// the kernels' vectorized bf16 loads and stores.
__device__ __forceinline__ void unpack_bf16x8(const uint4 w, float* out) {
  const uint32_t words[4] = {w.x, w.y, w.z, w.w};
#pragma unroll
  for (int i = 0; i < 4; i++) {
    out[2 * i] = __uint_as_float(words[i] << 16);
    out[2 * i + 1] = __uint_as_float(words[i] & 0xffff0000u);
  }
}

__device__ __forceinline__ uint4 pack_bf16x8(const float* v) {
  uint32_t words[4];
#pragma unroll
  for (int i = 0; i < 4; i++)
    words[i] = uint32_t(float_to_bf16(v[2 * i]).bits) | (uint32_t(float_to_bf16(v[2 * i + 1]).bits) << 16);
  return make_uint4(words[0], words[1], words[2], words[3]);
}
#endif

}  // namespace iflame
