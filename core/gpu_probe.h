// gpu_probe.h: the attributes of an empty kernel built like all others
// (core/gpu_probe.cu), for core/gpu_capability.cpp. CUDA builds only.
#pragma once
#include <cuda_runtime.h>

namespace iflame {

// cudaFuncGetAttributes of the probe kernel on the current device: ptxVersion
// is the code's architecture, binaryVersion what runs; an error when this
// binary has no code the device can run.
cudaError_t gpu_probe_attributes(cudaFuncAttributes* attributes);

}  // namespace iflame
