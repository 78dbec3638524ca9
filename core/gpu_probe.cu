// gpu_probe.cu: an empty kernel compiled like every other, whose attributes
// tell which of this build's code a GPU runs (core/gpu_capability.h): the
// architecture it was compiled for, or the error of a GPU it has no code for.
#include "core/gpu_probe.h"

namespace iflame {

namespace {
__global__ void gpu_probe_kernel() {}
}  // namespace

cudaError_t gpu_probe_attributes(cudaFuncAttributes* attributes) {
  return cudaFuncGetAttributes(attributes, gpu_probe_kernel);
}

}  // namespace iflame
