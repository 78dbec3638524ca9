// dispatch.h: how an op picks its implementation.
//
// Every op `name` is declared three times in its header ops/<op>.h:
//   iflame::ops::name        the public entry point, in ops/<op>.cpp, which checks
//                            arguments and calls one of the two below by device;
//   iflame::ops::cpu::name   the plain-loop reference, in ops/cpu/<op>.cpp (f32 only);
//   iflame::ops::cuda::name  the kernel launcher, in ops/cuda/<op>.cu (f32 or bf16
//                            activations, f32 parameters, f32 arithmetic).
// In a CPU-only build the cuda:: functions do not exist; CUDA_ONLY() turns the
// call into an error instead (it cannot happen: no CUDA tensor can be made there).
#pragma once
#include "core/error.h"
#include "core/tensor.h"

#ifdef IFLAME_CUDA
#define CUDA_ONLY(stmt) stmt
#else
#define CUDA_ONLY(stmt) IFLAME_FAIL("this build has no CUDA support")
#endif
