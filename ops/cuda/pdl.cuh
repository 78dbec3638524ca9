// pdl.cuh: programmatic dependent launch (Hopper), for the short kernels of a
// decoding step, where a kernel's launch and ramp-up cost as much as its work.
//
// A kernel launched with launch_pdl() may start while the kernel before it in
// the stream is still running. The contract every such kernel keeps:
//   - pdl_wait() before its first access to memory that an earlier kernel
//     writes, and before its first write to anything: griddepcontrol.wait
//     returns once the grids this one depends on have completed and their
//     writes are visible. Reading constant data (weights) before it is fine,
//     and is the point: those loads overlap the previous kernel.
//   - pdl_trigger() after pdl_wait(): it lets the next PDL kernel begin its
//     own prologue; before it, the next kernel launches only when this one
//     ends. Triggering after the wait keeps at most one kernel waiting ahead.
// A kernel launched the ordinary way runs both instructions as no-ops, so the
// kernels below stay correct under <<<>>> launches too. Stream capture turns
// these launches into programmatic edges of the CUDA graph.
// The kernel choice `pdl` (ops/kernel_choices.h; IFLAME_PDL=0) launches them the
// ordinary way.
#pragma once

#include "core/cuda_check.h"
#include "core/device.h"
#include "ops/kernel_choices.h"

namespace iflame::ops::cuda {

__device__ __forceinline__ void pdl_wait() {
#if defined(__CUDA_ARCH__) && __CUDA_ARCH__ >= 900
  asm volatile("griddepcontrol.wait;" ::: "memory");
#endif
}

__device__ __forceinline__ void pdl_trigger() {
#if defined(__CUDA_ARCH__) && __CUDA_ARCH__ >= 900
  asm volatile("griddepcontrol.launch_dependents;" ::: "memory");
#endif
}

// kernel<<<grid, block, shared, cuda_stream()>>>(args...), allowed to overlap
// the previous kernel in the stream (see above), then checked.
template <typename... Params, typename... Args>
void launch_pdl(void (*kernel)(Params...), dim3 grid, dim3 block, size_t shared, Args&&... args) {
  cudaLaunchConfig_t config = {};
  config.gridDim = grid;
  config.blockDim = block;
  config.dynamicSmemBytes = shared;
  config.stream = cuda_stream();
  cudaLaunchAttribute attribute[1];
  attribute[0].id = cudaLaunchAttributeProgrammaticStreamSerialization;
  attribute[0].val.programmaticStreamSerializationAllowed = kernel_choices().pdl ? 1 : 0;
  config.attrs = attribute;
  config.numAttrs = 1;
  CUDA_CHECK(cudaLaunchKernelEx(&config, kernel, static_cast<Params>(std::forward<Args>(args))...));
}

}  // namespace iflame::ops::cuda
