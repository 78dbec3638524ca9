// kernel_choices.h: the one place that says which of two equivalent GPU paths
// an op takes, where the project keeps both to compare them (speed, or the
// last bits). Every choice defaults to the faster path; the programs read the
// environment once, at start-up (read_kernel_choices_from_environment), and
// print the choices with --bench; code (the tests) may set them.
//
//   variable                          field                 off means
//   IFLAME_FLASH_ATTENTION=0          flash_attention       bf16 causal attention on the f32-FMA
//                                                           kernels (ops/cuda/causal_attention.cu), not
//                                                           the tensor-core ones (flash_attention_bf16.cu)
//   IFLAME_LINEAR_ATTENTION_MMA=0     linear_attention_mma  bf16 linear attention on the f32-FMA kernels
//                                                           (linear_attention.cu), not linear_attention_bf16.cu
//   IFLAME_LT_BIAS=0                  lt_bias               biased bf16 products as a bias fill + cublasGemmEx,
//                                                           not cuBLASLt with the bias in the epilogue (linear.cu)
//   IFLAME_PDL=0                      pdl                   decoding's kernels launched the ordinary way, not
//                                                           with programmatic dependent launch (ops/cuda/pdl.cuh)
// Only the value 0 turns a choice off; anything else (or nothing) leaves it on.
#pragma once
#include <string>

namespace iflame::ops {

struct KernelChoices {
  bool flash_attention = true;
  bool linear_attention_mma = true;
  bool lt_bias = true;
  bool pdl = true;
};

// The choices in force (the defaults until read or set).
KernelChoices kernel_choices();
// Replaces them; returns the ones before (tests restore them).
KernelChoices set_kernel_choices(const KernelChoices& choices);
// Sets them from the environment variables above (the programs call this once
// at start-up; kernels never read the environment themselves).
void read_kernel_choices_from_environment();
// "flash_attention=on linear_attention_mma=on lt_bias=on pdl=on", for --bench.
std::string describe_kernel_choices();

}  // namespace iflame::ops
