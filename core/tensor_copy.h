// tensor_copy.h: the device-side copy and fill used by Tensor (internal).
#pragma once
#include "core/tensor.h"

namespace iflame {

// dst and src on the GPU, same shape, any strides and dtypes (converted).
void cuda_copy_convert(Tensor& dst, const Tensor& src);
// Fill a contiguous GPU tensor.
void cuda_fill(Tensor& t, float value);
// Raw copies between host and device memory, ordered on the project stream.
void cuda_memcpy_to_device(void* dst, const void* src, size_t bytes);
void cuda_memcpy_to_host(void* dst, const void* src, size_t bytes);

}  // namespace iflame
