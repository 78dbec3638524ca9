// gpu_capability.h: what the current GPU can do, and which of this build's code
// runs on it. The kernels with a Hopper-only path (thread-block clusters,
// programmatic dependent launch) and those that ask for more than the default
// 48 KiB of shared memory decide here, at run time, so one fat binary runs on
// every GPU from the A100 (sm_80) on; the programs print it (--bench).
//
// "The code's architecture" is what __CUDA_ARCH__ was when this build's kernels
// for this GPU were compiled: 90 for sm_90 code on an H100, 80 when an H100 runs
// the compute_80 PTX of `make ptx80` through the driver's JIT. A feature needs
// both the GPU and the code: sm_90 code on the H100 has clusters, compute_80 PTX
// on the same H100 does not (its kernels were compiled without them).
#pragma once
#include <cstdint>
#include <string>

namespace iflame {

struct GpuCapability {
  int device = -1;
  std::string name;                   // "NVIDIA H100 80GB HBM3"
  int major = 0, minor = 0;           // the GPU's compute capability
  int code_arch = 0;                  // the code's architecture (see above): 80, 86, 89, 90, 100, 120
  int binary_arch = 0;                // what the driver runs it as (= the GPU's, after a JIT)
  int multiprocessors = 0;
  int64_t shared_per_block = 0;       // bytes of shared memory a block may ask for (opt-in limit)
  int64_t shared_per_multiprocessor = 0;
  bool clusters = false;              // thread-block clusters: GPU and code sm_90 or newer
  bool pdl = false;                   // programmatic dependent launch: the same
  int arch() const { return 10 * major + minor; }
};

// The current GPU (cached per device). Needs cuda_available().
const GpuCapability& gpu_capability();

// Empty when this build can run on GPU `device`; else why not, naming the GPU
// and what is needed (older than sm_80; with load_code, also no code for it in
// this binary or a driver too old for the code's PTX: that loads the code, so
// it makes the device's context). Does not need cuda_available() (device.cpp
// asks it: the GPU's age when probing, the code once the GPU is chosen, before
// any kernel runs). "" in a CPU-only build.
std::string gpu_support_problem(int device, bool load_code = true);

// The message gpu_support_problem builds, apart so that it can be tested without
// such a GPU: `code` says what loading the build's kernels on it gave, `error`
// the driver's words for it.
enum class GpuCode { Runs, None, PtxTooNew, Other };
std::string gpu_support_message(int device, const std::string& name, int major, int minor, GpuCode code,
                                const std::string& error = "");

// The kernel paths chosen for the current GPU, one line for the programs'
// headers: "sm_90 code; clusters, PDL; 227 KiB shared memory per block".
std::string gpu_paths_description();

// The architectures this binary carries code for ("sm_80 sm_86 ... compute_120").
const char* gpu_code_built();

}  // namespace iflame
