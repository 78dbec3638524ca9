// cpu/rope.cpp: the reference RoPE rotation, plain loops in f32 (see rope.h for the formula).
#include <algorithm>
#include <cmath>

#include "ops/rope.h"

namespace iflame::ops::cpu {

namespace {
// direction +1: forward rotation; -1: its inverse (the backward).
Tensor rotate(const Tensor& x, int64_t pos_offset, float direction) {
  const int64_t B = x.size(0), T = x.size(1), H = x.size(2), D = x.size(3), half = D / 2;
  const std::vector<float> freq = rope_frequencies(D);
  Tensor y = Tensor::empty(x.shape(), DType::F32);
  const float* xp = x.data<float>();
  float* yp = y.data<float>();
  for (int64_t b = 0; b < B; b++)
    for (int64_t t = 0; t < T; t++) {
      const float pos = float(t + pos_offset);
      for (int64_t h = 0; h < H; h++) {
        const int64_t base = ((b * T + t) * H + h) * D;
        for (int64_t j = 0; j < half; j++) {
          const float angle = pos * freq[j];
          const float c = std::cos(angle), s = direction * std::sin(angle);
          const float x1 = xp[base + j], x2 = xp[base + half + j];
          yp[base + j] = x1 * c + x2 * s;
          yp[base + half + j] = -x1 * s + x2 * c;
        }
      }
    }
  return y;
}
}  // namespace

Tensor rope_forward(const Tensor& x, int64_t pos_offset) { return rotate(x, pos_offset, 1.0f); }
Tensor rope_backward(const Tensor& grad_y, int64_t pos_offset) { return rotate(grad_y, pos_offset, -1.0f); }

namespace {
// One decoding step of rows at one position pos: q and k rotated by the loops
// above, v copied; k and v land in row pos of a cache, or fill [B, H, D] tensors.
Tensor qkv_rope_rows(const Tensor& qkv, int64_t heads, int64_t pos, Tensor& k_dst, Tensor& v_dst) {
  const int64_t B = qkv.size(0), HD = qkv.size(1) / 3, D = HD / heads;
  const Shape split = {B, 1, heads, D};
  Tensor q = rotate(qkv.slice(1, 0, HD).contiguous().view(split), pos, 1.0f).view({B, heads, D});
  Tensor k = rotate(qkv.slice(1, HD, 2 * HD).contiguous().view(split), pos, 1.0f);
  Tensor v = qkv.slice(1, 2 * HD, 3 * HD).contiguous().view(split);
  if (k_dst.ndim() == 4) {
    k_dst.slice(1, pos, pos + 1).copy_from(k);
    v_dst.slice(1, pos, pos + 1).copy_from(v);
  } else {
    k_dst.copy_from(k.view(k_dst.shape()));
    v_dst.copy_from(v.view(v_dst.shape()));
  }
  return q;
}
}  // namespace

// The decoding step, row b at position pos[b]: all rows at once when they share
// a position, else one row at a time.
Tensor qkv_rope_step(const Tensor& qkv, int64_t heads, const std::vector<int64_t>& pos, Tensor& k_dst,
                     Tensor& v_dst) {
  const int64_t B = qkv.size(0);
  if (std::all_of(pos.begin(), pos.end(), [&](int64_t p) { return p == pos[0]; }))
    return qkv_rope_rows(qkv, heads, B == 0 ? 0 : pos[0], k_dst, v_dst);
  Tensor q = Tensor::empty({B, heads, qkv.size(1) / 3 / heads}, DType::F32);
  for (int64_t b = 0; b < B; b++) {
    Tensor k_row = k_dst.slice(0, b, b + 1), v_row = v_dst.slice(0, b, b + 1);
    q.slice(0, b, b + 1).copy_from(qkv_rope_rows(qkv.slice(0, b, b + 1), heads, pos[b], k_row, v_row));
  }
  return q;
}

}  // namespace iflame::ops::cpu
