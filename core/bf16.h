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

// Two floats as two bf16 in one 4-byte word (the first in the low half), by
// float_to_bf16 (its NaN handling too; the mma code's pack_bf16x2 is the cvt
// instruction's).
__device__ __forceinline__ uint32_t bf16_pair_bits(float lo, float hi) {
  return uint32_t(float_to_bf16(lo).bits) | (uint32_t(float_to_bf16(hi).bits) << 16);
}

__device__ __forceinline__ uint4 pack_bf16x8(const float* v) {
  return make_uint4(bf16_pair_bits(v[0], v[1]), bf16_pair_bits(v[2], v[3]), bf16_pair_bits(v[4], v[5]),
                    bf16_pair_bits(v[6], v[7]));
}

// Four bf16 as one 8-byte word, from floats.
__device__ __forceinline__ uint2 pack_bf16x4(const float* v) {
  return make_uint2(bf16_pair_bits(v[0], v[1]), bf16_pair_bits(v[2], v[3]));
}
#endif

}  // namespace iflame
