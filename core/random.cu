// random.cu: the GPU side of the seeded fills (same formulas as the CPU).
#include "core/cuda_check.h"
#include "core/random.h"
#include "core/random_math.h"

namespace iflame {

namespace {
template <typename T>
__global__ void fill_random_kernel(T* out, long long n, uint64_t seed, uint64_t stream, bool normal,
                                   float a, float b) {
  for (long long i = blockIdx.x * (long long)blockDim.x + threadIdx.x; i < n;
       i += (long long)gridDim.x * blockDim.x) {
    float v = normal ? random_normal_at(seed, stream, i, a, b) : random_uniform_at(seed, stream, i, a, b);
    if constexpr (sizeof(T) == 4) out[i] = v;
    else out[i] = float_to_bf16(v);
  }
}
}  // namespace

void cuda_fill_random(Tensor& t, uint64_t seed, uint64_t stream, bool normal, float a, float b) {
  long long n = t.numel();
  if (t.dtype() == DType::F32)
    fill_random_kernel<<<blocks_for(n, 256), 256, 0, cuda_stream()>>>(t.data<float>(), n, seed, stream,
                                                                      normal, a, b);
  else
    fill_random_kernel<<<blocks_for(n, 256), 256, 0, cuda_stream()>>>(t.data<bf16>(), n, seed, stream,
                                                                     normal, a, b);
  CUDA_CHECK_LAUNCH();
}

}  // namespace iflame
