// cuda_check.h: checked CUDA and cuBLAS calls, and the project's stream.
// Only CUDA-enabled translation units include this. Every call is wrapped so a
// failure names the call, file:line and the library's own error string.
#pragma once
#include <cublas_v2.h>
#include <cuda_runtime.h>

#include "core/error.h"

#define CUDA_CHECK(call)                                                                   \
  do {                                                                                     \
    cudaError_t err_ = (call);                                                             \
    if (err_ != cudaSuccess)                                                               \
      ::iflame::fail_at(__FILE__, __LINE__,                                                \
                        ::iflame::str("CUDA error in ", #call, ": ", cudaGetErrorString(err_))); \
  } while (0)

#define CUBLAS_CHECK(call)                                                                   \
  do {                                                                                       \
    cublasStatus_t st_ = (call);                                                             \
    if (st_ != CUBLAS_STATUS_SUCCESS)                                                        \
      ::iflame::fail_at(__FILE__, __LINE__,                                                  \
                        ::iflame::str("cuBLAS error in ", #call, ": ", cublasGetStatusString(st_))); \
  } while (0)

// Checks the last kernel launch (bad configuration, missing kernel image, ...).
#define CUDA_CHECK_LAUNCH() CUDA_CHECK(cudaGetLastError())

namespace iflame {

// The stream every kernel, copy and cuBLAS call of the process is queued on.
// One stream keeps ordering trivial and lets freed memory be reused at once.
cudaStream_t cuda_stream();
// A cuBLAS handle bound to cuda_stream().
cublasHandle_t cublas_handle();

// Grid size for n elements with `threads` per block, capped for grid-stride loops.
inline unsigned blocks_for(long long n, int threads) {
  long long b = (n + threads - 1) / threads;
  if (b < 1) b = 1;
  if (b > 65535LL * 32) b = 65535LL * 32;
  return static_cast<unsigned>(b);
}

}  // namespace iflame
