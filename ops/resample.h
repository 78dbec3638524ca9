// resample.h: the hourglass's down- and up-sampling along the sequence (dim 1)
// of x [B, T, d] (spec §2).
//
// avg_pool3:       y[b, s] = mean of x[b, 3s .. min(3s+3, T)-1]    -> [B, ceil(T/3), d]
//                  (a last partial group averages only the elements it has)
// repeat3_shift2:  y[b, t] = x[b, (t-2)/3] when t >= 2 and (t-2)/3 < S, else 0  -> [B, T_out, d]
//                  (each token repeated 3 times, shifted right by 2 so position t
//                  only sees coarse tokens built from positions <= t: causality)
#pragma once
#include "core/tensor.h"

namespace iflame::ops {

Tensor avg_pool3_forward(const Tensor& x);
// grad_y [B, ceil(T/3), d] -> grad_x [B, T, d].
Tensor avg_pool3_backward(const Tensor& grad_y, int64_t T);
Tensor repeat3_shift2_forward(const Tensor& x, int64_t T_out);
// grad_y [B, T_out, d] -> grad_x [B, S, d]: grad_x[b, s] = sum of grad_y[b, 3s+2 .. 3s+4] within T_out.
Tensor repeat3_shift2_backward(const Tensor& grad_y, int64_t S);

namespace cpu {
Tensor avg_pool3_forward(const Tensor& x);
Tensor avg_pool3_backward(const Tensor& grad_y, int64_t T);
Tensor repeat3_shift2_forward(const Tensor& x, int64_t T_out);
Tensor repeat3_shift2_backward(const Tensor& grad_y, int64_t S);
}  // namespace cpu

namespace cuda {
Tensor avg_pool3_forward(const Tensor& x);
Tensor avg_pool3_backward(const Tensor& grad_y, int64_t T);
Tensor repeat3_shift2_forward(const Tensor& x, int64_t T_out);
Tensor repeat3_shift2_backward(const Tensor& grad_y, int64_t S);
}  // namespace cuda

}  // namespace iflame::ops
